//! Every bad request is answered with its status and error code, in the JSON
//! error body, and the server keeps answering afterwards. Table-driven: one
//! [`check`] per case.

mod common;

use common::{TestServer, secs, session_dir, session_ids};
use serde_json::{Value, json};

/// Sends `method path` with `body` as raw JSON text and asserts the status
/// and, when given, the error code of a `{"error":{"code","message"}}` body.
async fn check(
    server: &TestServer,
    method: &str,
    path: &str,
    body: Option<&str>,
    status: u16,
    code: Option<&str>,
) -> Value {
    let mut req = server.client.request(
        reqwest::Method::from_bytes(method.as_bytes()).unwrap(),
        server.url(path),
    );
    if let Some(body) = body {
        req = req.header("content-type", "application/json").body(body.to_owned());
    }
    let resp = req.send().await.unwrap();
    let got = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    let json: Value = serde_json::from_str(&text).unwrap_or(Value::Null);
    assert_eq!(got, status, "{method} {path} {body:?} answered {got} {text}");
    if let Some(code) = code {
        assert_eq!(json["error"]["code"], code, "{method} {path} {body:?} answered {text}");
        assert!(
            json["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{text}"
        );
    }
    json
}

#[tokio::test]
async fn bad_requests_get_their_errors() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_MAX_BODY_BYTES", "65536")]).await;
    server
        .create(json!({ "id": "live", "kind": "command", "argv": ["sleep", "1000"] }))
        .await;
    server
        .create(json!({ "id": "ended", "kind": "command", "argv": ["true"] }))
        .await;
    server.wait_status("ended", "exited", secs(10)).await;
    let big_input = json!({ "data": "x".repeat(100_000) }).to_string();

    #[rustfmt::skip]
    let table: &[(&str, &str, Option<&str>, u16, &str)] = &[
        // Malformed bodies and wrong shapes.
        ("POST", "/api/sessions", Some("{not json"), 400, "bad_request"),
        ("POST", "/api/sessions", Some(""), 400, "bad_request"),
        ("POST", "/api/sessions", Some("[]"), 400, "bad_request"),
        ("POST", "/api/sessions", Some(r#"{"argv":"ls"}"#), 400, "bad_request"),
        ("POST", "/api/sessions", Some(r#"{"argv":["ls"],"bogus":1}"#), 400, "bad_request"),
        ("POST", "/api/sessions", Some(r#"{"argv":["ls"],"command":"ls"}"#), 400, "bad_request"),
        ("POST", "/api/sessions", Some(r#"{"kind":"command"}"#), 400, "bad_request"),
        ("POST", "/api/sessions", Some(r#"{"kind":"teletype"}"#), 400, "bad_request"),
        ("POST", "/api/sessions", Some(r#"{"argv":["ls"],"cols":0}"#), 400, "bad_request"),
        ("POST", "/api/sessions", Some(r#"{"argv":["ls"],"cols":70000}"#), 400, "bad_request"),
        ("POST", "/api/sessions", Some(r#"{"argv":["ls"],"env":{"A=B":"c"}}"#), 400, "bad_request"),
        ("POST", "/api/sessions/live/input", Some(r#"{"data":"a","dataBase64":"YQ=="}"#), 400, "bad_request"),
        ("POST", "/api/sessions/live/input", Some(r#"{"dataBase64":"%%%"}"#), 400, "bad_request"),
        ("POST", "/api/sessions/live/input", Some("{}"), 400, "bad_request"),
        ("POST", "/api/sessions/live/input", Some(r#"{"data":5}"#), 400, "bad_request"),
        ("POST", "/api/sessions/live/resize", Some(r#"{"cols":80}"#), 400, "bad_request"),
        ("GET", "/api/sessions/live/output?since=abc", None, 400, "bad_request"),
        ("GET", "/api/sessions/live/output?format=xml", None, 400, "bad_request"),
        ("GET", "/api/sessions?status=sleeping", None, 400, "bad_request"),
        // Invalid ids, in paths and bodies.
        ("GET", "/api/sessions/bad%20id", None, 400, "bad_request"),
        ("GET", "/api/sessions/.hidden", None, 400, "bad_request"),
        ("GET", &format!("/api/sessions/{}", "a".repeat(129)), None, 400, "bad_request"),
        ("POST", "/api/sessions", Some(r#"{"id":"a/b","argv":["true"]}"#), 400, "bad_request"),
        ("POST", "/api/sessions", Some(r#"{"id":"..","argv":["true"]}"#), 400, "bad_request"),
        ("POST", "/terminal/start", Some(r#"{"session_id":"x y","command":"true"}"#), 400, "bad_request"),
        ("POST", "/terminal/start", Some(r#"{"session_id":"ok"}"#), 400, "bad_request"),
        // Unknown sessions, on every route.
        ("GET", "/api/sessions/nope", None, 404, "session_not_found"),
        ("DELETE", "/api/sessions/nope", None, 404, "session_not_found"),
        ("POST", "/api/sessions/nope/input", Some(r#"{"data":"x"}"#), 404, "session_not_found"),
        ("POST", "/api/sessions/nope/resize", Some(r#"{"cols":80,"rows":24}"#), 404, "session_not_found"),
        ("POST", "/api/sessions/nope/terminate", None, 404, "session_not_found"),
        ("GET", "/api/sessions/nope/output", None, 404, "session_not_found"),
        ("GET", "/api/sessions/nope/snapshot", None, 404, "session_not_found"),
        ("GET", "/api/sessions/nope/recording.cast", None, 404, "session_not_found"),
        ("GET", "/terminal/nope", None, 404, "session_not_found"),
        ("POST", "/terminal/nope/terminate", None, 404, "session_not_found"),
        ("PUT", "/api/sessions", Some("{}"), 405, "method_not_allowed"),
        ("PATCH", "/api/sessions/nope", None, 405, "method_not_allowed"),
        // Unknown routes.
        ("GET", "/nope", None, 404, "not_found"),
        ("GET", "/api/sessions/live/nope", None, 404, "not_found"),
        // Conflicts and state.
        ("POST", "/api/sessions", Some(r#"{"id":"live","argv":["true"]}"#), 409, "duplicate_id"),
        ("POST", "/terminal/start", Some(r#"{"session_id":"live","command":"true"}"#), 409, "duplicate_id"),
        ("POST", "/api/sessions/ended/input", Some(r#"{"data":"x"}"#), 409, "session_not_running"),
        ("POST", "/api/sessions/ended/input", Some(r#"{"eof":true}"#), 409, "session_not_running"),
        // What cannot be started, or does not apply.
        ("POST", "/api/sessions", Some(r#"{"id":"ghost","argv":["/no/such/program"]}"#), 422, "spawn_failed"),
        ("POST", "/api/sessions", Some(r#"{"id":"ghost","kind":"command","argv":["no-such-program-xyz"]}"#), 422, "spawn_failed"),
        ("POST", "/api/sessions", Some(r#"{"id":"ghost","argv":["/etc/passwd"]}"#), 422, "spawn_failed"),
        ("POST", "/api/sessions", Some(r#"{"id":"ghost","argv":[]}"#), 422, "spawn_failed"),
        ("POST", "/api/sessions", Some(r#"{"id":"ghost","argv":["true"],"cwd":"/no/such/dir"}"#), 422, "bad_cwd"),
        ("POST", "/api/sessions", Some(r#"{"id":"ghost","argv":["true"],"cwd":"/etc/passwd"}"#), 422, "bad_cwd"),
        ("POST", "/terminal/start", Some(r#"{"session_id":"ghost","command":"true","cwd":"/no/such/dir"}"#), 422, "bad_cwd"),
        ("POST", "/api/sessions/live/resize", Some(r#"{"cols":80,"rows":24}"#), 422, "wrong_kind"),
        ("GET", "/api/sessions/live/snapshot", None, 422, "wrong_kind"),
        // Too large.
        ("POST", "/api/sessions/live/input", Some(&big_input), 413, "payload_too_large"),
        ("POST", "/api/sessions", Some(&big_input), 413, "payload_too_large"),
    ];
    for (method, path, body, status, code) in table {
        check(&server, method, path, *body, *status, Some(code)).await;
    }

    // Failed creates left nothing: not listed, no directory.
    let (_, list) = server.get("/api/sessions").await;
    let ids = session_ids(&list);
    assert_eq!(list["total"], 2, "{list}");
    assert!(!ids.contains(&"ghost"), "{ids:?}");
    assert!(
        !session_dir(server.data_dir(), "ghost").exists(),
        "a failed create left its directory"
    );
    let dirs = std::fs::read_dir(server.data_dir().join("sessions")).unwrap().count();
    assert_eq!(dirs, 2, "only the two sessions have directories");

    // The server keeps answering, and the ghost id is free.
    let (status, body) = server.get("/health").await;
    assert_eq!((status.as_u16(), body), (200, json!({ "status": "ok" })));
    let info = server
        .create(json!({ "id": "ghost", "kind": "command", "argv": ["echo", "real"] }))
        .await;
    assert_eq!(info["id"], "ghost");
    server.read_output_until("ghost", "real", secs(10)).await;
    server.terminate("live").await;
}

#[tokio::test]
async fn a_deleted_session_is_gone_everywhere() {
    let server = TestServer::start().await;
    server
        .create(json!({ "id": "short", "kind": "command", "argv": ["sleep", "1000"] }))
        .await;
    check(&server, "DELETE", "/api/sessions/short", None, 204, None).await;
    assert!(
        !session_dir(server.data_dir(), "short").exists(),
        "delete left the directory"
    );
    for (method, path) in [
        ("GET", "/api/sessions/short"),
        ("GET", "/api/sessions/short/output"),
        ("DELETE", "/api/sessions/short"),
    ] {
        check(&server, method, path, None, 404, Some("session_not_found")).await;
    }
}

/// Deleting a session while a new one takes its id: the new session keeps
/// its own output and files, whatever the order the two requests run in.
#[tokio::test]
async fn an_id_deleted_and_created_at_once_keeps_the_new_session_whole() {
    let server = TestServer::start().await;
    for round in 0..8 {
        server
            .create(json!({ "id": "again", "kind": "command", "argv": ["sh", "-c", "echo first; sleep 1000"] }))
            .await;
        server.read_output_until("again", "first", secs(10)).await;
        let body = json!({ "id": "again", "kind": "command", "argv": ["sh", "-c", "echo second; sleep 1000"] });
        let ((deleted, _), (created, _)) = tokio::join!(
            server.request("DELETE", "/api/sessions/again", None),
            server.post("/api/sessions", body)
        );
        assert_eq!(deleted, 204, "round {round}");
        if created == 201 {
            let out = server.read_output_until("again", "second", secs(10)).await;
            assert_eq!(out, "second\n", "round {round}: the new session's output");
            assert!(
                session_dir(server.data_dir(), "again").exists(),
                "round {round}: the new session lost its files"
            );
            check(&server, "DELETE", "/api/sessions/again", None, 204, None).await;
        } else {
            assert_eq!(created, 409, "round {round}: the id was still taken");
        }
    }
}

/// A client that hangs up while its create runs does not cut the create
/// short: the session runs, ends and is kept like any other. The request's
/// future used to be dropped while the session's first record was written,
/// and with it the session's actor: its program ran unwatched and the
/// session stayed `running` for good. The client hangs up once the
/// session's directory exists, which the create makes before that record.
#[tokio::test]
async fn a_create_whose_client_hangs_up_runs_to_its_end() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start().await;
    for round in 0..3 {
        let id = format!("cut{round}");
        let body = json!({ "id": id, "kind": "command", "argv": ["sh", "-c", "echo hi"] }).to_string();
        let request = format!(
            "POST /api/sessions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
            server.addr(),
            body.len()
        );
        let mut socket = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
        socket.write_all(request.as_bytes()).await.expect("send");
        // Looked for every millisecond: the record after it takes a disk sync.
        let deadline = std::time::Instant::now() + secs(10);
        while !session_dir(server.data_dir(), &id).exists() {
            assert!(
                std::time::Instant::now() < deadline,
                "{id}: the create made no directory"
            );
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        drop(socket);
        let path = format!("/api/sessions/{id}");
        assert!(
            common::wait_until(secs(10), || async { server.get(&path).await.0 == 200 }).await,
            "{id}: the create left no session"
        );
        let info = server.wait_status(&id, "exited", secs(10)).await;
        assert_eq!(info["exitCode"], 0, "{id}: {info}");
        let out = server.read_output_until(&id, "hi", secs(10)).await;
        assert_eq!(out, "hi\n", "{id}");
    }
}

/// A client that hangs up while its delete runs does not cut the delete
/// short: the session's files go, the delete is audited, and a restart
/// does not bring the session back. The request's future used to be
/// dropped while the program was ended, before its directory was removed
/// and before the audit.
#[tokio::test]
async fn a_delete_whose_client_hangs_up_removes_the_session_for_good() {
    use tokio::io::AsyncWriteExt;
    let server = TestServer::start_logged(&["--log-format", "json"], &[("RUST_LOG", "termstream::audit=info")]).await;
    for round in 0..5 {
        let id = format!("gone{round}");
        server
            .create(
                json!({ "id": id, "kind": "command", "argv": ["sh", "-c", "trap '' HUP TERM; echo up; sleep 1000"] }),
            )
            .await;
        server.read_output_until(&id, "up", secs(10)).await;
        let dir = session_dir(server.data_dir(), &id);
        let request = format!("DELETE /api/sessions/{id} HTTP/1.1\r\nhost: {}\r\n\r\n", server.addr());
        let mut socket = tokio::net::TcpStream::connect(server.addr()).await.expect("connect");
        socket.write_all(request.as_bytes()).await.expect("send");
        // Hung up once the delete has begun: the session is out of the list
        // before its program is ended.
        let path = format!("/api/sessions/{id}");
        let deadline = std::time::Instant::now() + secs(10);
        while server.get(&path).await.0 != 404 {
            assert!(std::time::Instant::now() < deadline, "{id}: the delete never began");
            tokio::time::sleep(std::time::Duration::from_millis(1)).await;
        }
        drop(socket);
        assert!(
            common::wait_until(secs(20), || async { !dir.exists() }).await,
            "{id}: its directory is left"
        );
    }
    let audited = || {
        let mut ids: Vec<String> = server
            .log_events("session.deleted")
            .iter()
            .filter_map(|e| e["session"].as_str().map(str::to_owned))
            .collect();
        ids.sort();
        ids
    };
    let all: Vec<String> = (0..5).map(|r| format!("gone{r}")).collect();
    assert!(
        common::wait_until(secs(10), || async { audited() == all }).await,
        "deletes audited: {:?}",
        audited()
    );
    let server = server.restart();
    let (_, list) = server.get("/api/sessions").await;
    assert!(session_ids(&list).is_empty(), "deleted sessions came back: {list}");
}
