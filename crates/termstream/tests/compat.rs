//! The older `/terminal` API answers in its exact shapes, `/openapi.json`
//! lists every route, and `recording.cast` is valid asciicast v2.

mod common;

use std::collections::BTreeSet;

use common::{TestServer, secs};
use serde_json::{Value, json};

fn keys(v: &Value) -> BTreeSet<&str> {
    v.as_object()
        .unwrap_or_else(|| panic!("not an object: {v}"))
        .keys()
        .map(String::as_str)
        .collect()
}

fn set<'a>(names: &[&'a str]) -> BTreeSet<&'a str> {
    names.iter().copied().collect()
}

#[tokio::test]
async fn terminal_routes_answer_in_their_exact_shapes() {
    let server = TestServer::start().await;
    let (status, started) = server
        .post(
            "/terminal/start",
            json!({ "session_id": "old-1", "command": "echo hello; exit 3", "cwd": "/tmp" }),
        )
        .await;
    assert_eq!(status, 200, "{started}");
    assert_eq!(
        started,
        json!({ "success": true, "session_id": "old-1", "command": "echo hello; exit 3", "cwd": "/tmp",
                "message": "Terminal session started" })
    );
    // It is a command session running `/bin/sh -c`.
    let info = server.wait_status("old-1", "exited", secs(10)).await;
    assert_eq!(info["kind"], "command");
    assert_eq!(info["argv"], json!(["/bin/sh", "-c", "echo hello; exit 3"]));
    server.read_output_until("old-1", "hello", secs(5)).await;

    let (status, body) = server.get("/terminal/old-1").await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(keys(&body), set(&["status"]));
    assert_eq!(
        body["status"],
        json!({ "session_id": "old-1", "command": "echo hello; exit 3", "is_running": false, "exit_code": 3, "connections": 0 })
    );

    // Without an id one is generated; without a cwd the server's is used.
    let (status, long) = server.post("/terminal/start", json!({ "command": "sleep 1000" })).await;
    assert_eq!(status, 200, "{long}");
    assert_eq!(
        keys(&long),
        set(&["success", "session_id", "command", "cwd", "message"])
    );
    let long_id = long["session_id"].as_str().unwrap().to_owned();
    assert!(!long_id.is_empty());
    let (_, body) = server.get(&format!("/terminal/{long_id}")).await;
    assert_eq!(body["status"]["is_running"], true);
    assert_eq!(
        body["status"]["exit_code"],
        Value::Null,
        "exit_code is null while running, not absent"
    );

    let (status, list) = server.get("/terminal/sessions").await;
    assert_eq!(status, 200, "{list}");
    assert_eq!(keys(&list), set(&["sessions", "total"]));
    assert_eq!(list["total"], 2);
    let entries = list["sessions"].as_array().unwrap();
    assert_eq!(entries.len(), 2);
    for e in entries {
        assert_eq!(
            keys(e),
            set(&[
                "session_id",
                "command",
                "cwd",
                "is_running",
                "start_time",
                "exit_code",
                "connections"
            ]),
            "{e}"
        );
        assert!(e["start_time"].is_f64(), "start_time is float seconds: {e}");
        let now = std::time::SystemTime::now()
            .duration_since(std::time::UNIX_EPOCH)
            .unwrap()
            .as_secs_f64();
        assert!(
            (e["start_time"].as_f64().unwrap() - now).abs() < 60.0,
            "start_time is not in seconds: {e}"
        );
    }
    let old = entries.iter().find(|e| e["session_id"] == "old-1").unwrap();
    assert_eq!(
        (
            old["is_running"].as_bool(),
            old["exit_code"].as_i64(),
            old["cwd"].as_str()
        ),
        (Some(false), Some(3), Some("/tmp"))
    );

    let (status, body) = server
        .post(&format!("/terminal/{long_id}/terminate"), Value::Null)
        .await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        body,
        json!({ "success": true, "session_id": long_id, "message": "Session terminated" })
    );
    let (_, body) = server.get(&format!("/terminal/{long_id}")).await;
    assert_eq!(body["status"]["is_running"], false);
    assert_eq!(server.info(&long_id).await["status"], "terminated");
}

#[tokio::test]
async fn openapi_lists_every_route() {
    let server = TestServer::start().await;
    let (status, doc) = server.get("/openapi.json").await;
    assert_eq!(status, 200);
    assert!(
        doc["openapi"].as_str().is_some_and(|v| v.starts_with('3')),
        "{}",
        doc["openapi"]
    );
    let paths = keys(&doc["paths"]);
    for p in [
        "/api/sessions",
        "/api/sessions/{id}",
        "/api/sessions/{id}/input",
        "/api/sessions/{id}/resize",
        "/api/sessions/{id}/terminate",
        "/api/sessions/{id}/output",
        "/api/sessions/{id}/snapshot",
        "/api/sessions/{id}/recording.cast",
        "/terminal/start",
        "/terminal/sessions",
        "/terminal/{session_id}",
        "/terminal/{session_id}/terminate",
        "/api/terminal/focus",
        "/api/projects",
    ] {
        assert!(paths.contains(p), "{p} missing from {paths:?}");
    }
    assert!(doc["paths"]["/api/terminal/focus"]["put"].is_object());
    assert!(doc["paths"]["/api/terminal/focus"]["get"].is_object());
    for schema in ["FocusRequest", "FocusResponse", "ProjectFocus", "ProjectList"] {
        assert!(doc["components"]["schemas"][schema].is_object(), "no schema {schema}");
    }
    // Each project says what the credential may do there.
    assert!(
        doc["components"]["schemas"]["ProjectSummary"]["properties"]["access"].is_object(),
        "no access in {}",
        doc["components"]["schemas"]["ProjectSummary"]
    );
    // What the server sends: read or write; a client's catch-all `unknown` is not in it.
    assert_eq!(
        doc["components"]["schemas"]["ProjectAccess"]["enum"],
        serde_json::json!(["read", "write"]),
        "{}",
        doc["components"]["schemas"]["ProjectAccess"]
    );
    assert!(doc["paths"]["/api/sessions"]["post"].is_object());
    assert!(doc["paths"]["/api/sessions/{id}"]["delete"].is_object());
    // Routes that create or end a session name their 503 and 500 answers.
    for (path, method) in [
        ("/api/sessions", "post"),
        ("/api/sessions/{id}", "delete"),
        ("/api/sessions/{id}/terminate", "post"),
        ("/terminal/start", "post"),
        ("/terminal/{session_id}/terminate", "post"),
    ] {
        let responses = &doc["paths"][path][method]["responses"];
        for code in ["503", "500"] {
            assert!(
                responses[code]["description"].as_str().is_some_and(|d| !d.is_empty()),
                "{method} {path} does not describe {code}: {responses}"
            );
        }
    }
}

/// Fetches a recording and checks it line by line; returns the header, the
/// concatenated `"o"` text and the `"r"` sizes.
async fn fetch_cast(server: &TestServer, id: &str) -> (Value, String, Vec<String>) {
    let resp = server
        .client
        .get(server.url(&format!("/api/sessions/{id}/recording.cast")))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    assert_eq!(resp.headers()["content-type"], "application/x-asciicast");
    let text = resp.text().await.unwrap();
    assert!(text.ends_with('\n'), "every line ends with a newline");
    let mut lines = text.lines();
    let header: Value = serde_json::from_str(lines.next().expect("a header line")).unwrap();
    assert_eq!(header["version"], 2, "{header}");
    assert!(header["width"].as_u64().is_some_and(|w| w > 0), "{header}");
    assert!(header["height"].as_u64().is_some_and(|h| h > 0), "{header}");
    let (mut out, mut sizes, mut last) = (String::new(), Vec::new(), 0.0f64);
    for line in lines {
        let ev: Value = serde_json::from_str(line).unwrap_or_else(|e| panic!("bad event line {line:?}: {e}"));
        let ev = ev.as_array().unwrap_or_else(|| panic!("event is not an array: {line}"));
        assert_eq!(ev.len(), 3, "{line}");
        let t = ev[0].as_f64().unwrap_or_else(|| panic!("time is not a number: {line}"));
        assert!(t >= last, "time goes back from {last} to {t}: {line}");
        last = t;
        let data = ev[2].as_str().unwrap_or_else(|| panic!("data is not a string: {line}"));
        match ev[1].as_str() {
            Some("o") => out.push_str(data),
            Some("r") => sizes.push(data.to_owned()),
            other => panic!("unknown event type {other:?}: {line}"),
        }
    }
    (header, out, sizes)
}

#[tokio::test]
async fn recording_is_asciicast_v2() {
    let server = TestServer::start().await;
    // A command session: the recording's text is the output itself.
    let info = server
        .create(json!({ "kind": "command", "command": "seq 1 3000; echo done >&2" }))
        .await;
    let id = info["id"].as_str().unwrap();
    server.wait_status(id, "exited", secs(10)).await;
    let (header, out, sizes) = fetch_cast(&server, id).await;
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(80), Some(24))
    );
    assert!(sizes.is_empty(), "{sizes:?}");
    // The output of pipes ends lines with a bare `\n`, which a player
    // would draw as a staircase: the recording has `\r\n`.
    let raw = String::from_utf8(server.output_all(id, 0).await).unwrap();
    assert_eq!(out, raw.replace('\n', "\r\n"));
    // stdout and stderr are two pipes: the log has them in the order they
    // were read, and `done` may come before the last of the numbers.
    let numbers: String = (1..=3000).map(|n| format!("{n}\r\n")).collect();
    assert_eq!(out.matches("done\r\n").count(), 1, "{:?}", &out[out.len() - 20..]);
    assert_eq!(out.replacen("done\r\n", "", 1), numbers);

    // Line ends that are whole already are kept, a lone `\r` too.
    let info = server
        .create(json!({ "kind": "command", "command": "printf 'a\\r\\nb\\rc\\n\\nd'" }))
        .await;
    let id = info["id"].as_str().unwrap();
    server.wait_status(id, "exited", secs(10)).await;
    assert_eq!(server.output_all(id, 0).await, b"a\r\nb\rc\n\nd");
    assert_eq!(fetch_cast(&server, id).await.1, "a\r\nb\rc\r\n\r\nd");

    // A pty session with a resize: the header has the first size, then "r".
    let info = server
        .create(json!({ "argv": ["bash", "--norc", "--noprofile"], "cols": 90, "rows": 20 }))
        .await;
    let id = info["id"].as_str().unwrap();
    server.input(id, "echo first-$((1+1))\n").await;
    server.read_output_until(id, "first-2", secs(10)).await;
    let (status, _) = server
        .post(
            &format!("/api/sessions/{id}/resize"),
            json!({ "cols": 100, "rows": 30 }),
        )
        .await;
    assert_eq!(status, 200);
    server.input(id, "echo second-$((2+1))\n").await;
    server.read_output_until(id, "second-3", secs(10)).await;
    server.terminate(id).await;
    let (header, out, sizes) = fetch_cast(&server, id).await;
    assert_eq!(
        (header["width"].as_u64(), header["height"].as_u64()),
        (Some(90), Some(20))
    );
    assert_eq!(sizes, ["100x30"]);
    let raw = server.output_all(id, 0).await;
    assert_eq!(
        out,
        String::from_utf8_lossy(&raw),
        "the recording's text differs from the raw output"
    );
    assert!(out.contains("first-2") && out.contains("second-3"));
}

/// Size changes with no output between them make one record in the log
/// (the last size): a client sending thousands of resizes does not grow
/// the session's index without bound. A size change that output follows
/// is kept, and so is the last one before the session ends.
#[tokio::test]
async fn resizes_without_output_between_make_one_record() {
    let server = TestServer::start().await;
    let info = server
        .create(json!({ "argv": ["sh", "-c", "stty raw -echo; echo ready; cat"], "cols": 80, "rows": 24 }))
        .await;
    let id = info["id"].as_str().unwrap();
    server.read_output_until(id, "ready", secs(10)).await;
    for i in 0..200u64 {
        let (status, body) = server
            .post(
                &format!("/api/sessions/{id}/resize"),
                json!({ "cols": 81 + i % 2, "rows": 25 }),
            )
            .await;
        assert_eq!(status, 200, "{body}");
    }
    server.input(id, "one").await;
    server.read_output_until(id, "one", secs(10)).await;
    let (status, _) = server
        .post(&format!("/api/sessions/{id}/resize"), json!({ "cols": 90, "rows": 30 }))
        .await;
    assert_eq!(status, 200);
    server.terminate(id).await;
    let (_, out, sizes) = fetch_cast(&server, id).await;
    assert!(out.ends_with("ready\none"), "{out:?}");
    // 200 changes alternate 81 and 82 columns; the last is 82.
    assert_eq!(sizes, ["82x25", "90x30"]);
}
