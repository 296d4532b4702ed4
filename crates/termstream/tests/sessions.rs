//! Pty and command sessions: input reaches the program, output and exit come
//! back, the window size reaches the child, and sessions outlive clients.

mod common;

use common::{TestServer, secs};
use serde_json::{Value, json};

fn bash() -> Value {
    json!(["bash", "--norc", "--noprofile"])
}

#[tokio::test]
async fn pty_input_is_evaluated_by_the_shell() {
    let server = TestServer::start().await;
    let info = server.create(json!({ "argv": bash() })).await;
    assert_eq!(info["kind"], "pty");
    assert_eq!(info["status"], "running");
    assert_eq!((info["cols"].as_u64(), info["rows"].as_u64()), (Some(80), Some(24)));
    let id = info["id"].as_str().unwrap();
    server.input(id, "echo hi-$((40+2))\n").await;
    // Only the shell's arithmetic produces `hi-42`; the echoed line does not.
    server.read_output_until(id, "hi-42", secs(10)).await;
}

#[tokio::test]
async fn resize_is_seen_by_the_child() {
    let server = TestServer::start().await;
    let info = server.create(json!({ "argv": bash(), "cols": 80, "rows": 24 })).await;
    let id = info["id"].as_str().unwrap();
    server.input(id, "stty size\n").await;
    server.read_output_until(id, "24 80", secs(10)).await;

    let (status, resized) = server
        .post(
            &format!("/api/sessions/{id}/resize"),
            json!({ "cols": 123, "rows": 45 }),
        )
        .await;
    assert_eq!(status, 200, "{resized}");
    assert_eq!(
        (resized["cols"].as_u64(), resized["rows"].as_u64()),
        (Some(123), Some(45))
    );
    server.input(id, "stty size\n").await;
    server.read_output_until(id, "45 123", secs(10)).await;

    // The snapshot is at the new size too.
    let (status, snap) = server.get(&format!("/api/sessions/{id}/snapshot")).await;
    assert_eq!(status, 200, "{snap}");
    assert_eq!((snap["cols"].as_u64(), snap["rows"].as_u64()), (Some(123), Some(45)));
}

/// The JSON output of a session, every chunk from 0.
async fn json_chunks(server: &TestServer, id: &str) -> Vec<Value> {
    let (status, page) = server
        .get(&format!("/api/sessions/{id}/output?since=0&format=json"))
        .await;
    assert_eq!(status, 200, "{page}");
    page["chunks"].as_array().unwrap().clone()
}

fn text_of(chunks: &[Value], stream: &str) -> String {
    chunks
        .iter()
        .filter(|c| c["stream"] == stream)
        .map(|c| {
            assert_eq!(c["encoding"], "utf8", "{c}");
            c["data"].as_str().unwrap().to_owned()
        })
        .collect()
}

#[tokio::test]
async fn command_session_keeps_stdout_and_stderr_apart() {
    let server = TestServer::start().await;
    let info = server
        .create(json!({ "kind": "command", "command": "echo to-out; echo to-err >&2; echo more-out; exit 7" }))
        .await;
    assert_eq!(info["kind"], "command");
    let id = info["id"].as_str().unwrap();
    let ended = server.wait_status(id, "exited", secs(10)).await;
    assert_eq!(ended["exitCode"], 7, "{ended}");
    assert!(ended.get("signal").is_none(), "{ended}");

    let chunks = json_chunks(&server, id).await;
    assert_eq!(text_of(&chunks, "stdout"), "to-out\nmore-out\n");
    assert_eq!(text_of(&chunks, "stderr"), "to-err\n");
    assert!(chunks.iter().all(|c| c["stream"] != "pty"), "{chunks:?}");
    // Offsets are contiguous across both streams.
    let mut next = 0;
    for c in &chunks {
        assert_eq!(c["offset"].as_u64().unwrap(), next, "{chunks:?}");
        next += c["data"].as_str().unwrap().len() as u64;
    }
    assert_eq!(ended["outputOffset"].as_u64(), Some(next));
}

#[tokio::test]
async fn a_signal_is_reported() {
    let server = TestServer::start().await;
    let info = server
        .create(json!({ "kind": "command", "command": "kill -9 $$" }))
        .await;
    let id = info["id"].as_str().unwrap();
    let ended = server.wait_status(id, "exited", secs(10)).await;
    assert_eq!(ended["signal"], 9, "{ended}");
    assert!(ended.get("exitCode").is_none(), "{ended}");
}

#[tokio::test]
async fn stdin_is_written_and_closed() {
    let server = TestServer::start().await;
    let info = server.create(json!({ "kind": "command", "argv": ["wc", "-c"] })).await;
    let id = info["id"].as_str().unwrap();
    server.input(id, "hello ").await;
    let (status, body) = server
        .post(
            &format!("/api/sessions/{id}/input"),
            json!({ "data": "world", "eof": true }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    // `wc` prints only after its stdin is closed.
    let ended = server.wait_status(id, "exited", secs(10)).await;
    assert_eq!(ended["exitCode"], 0);
    let chunks = json_chunks(&server, id).await;
    assert_eq!(text_of(&chunks, "stdout").trim(), "11");

    // Base64 input carries any bytes, and `eof` alone closes stdin.
    let info = server
        .create(json!({ "kind": "command", "argv": ["od", "-An", "-tx1"] }))
        .await;
    let id = info["id"].as_str().unwrap();
    let (status, body) = server
        .post(&format!("/api/sessions/{id}/input"), json!({ "dataBase64": "AP8=" }))
        .await;
    assert_eq!((status.as_u16(), &body), (200, &json!({ "bytes": 2 })));
    let (status, _) = server
        .post(&format!("/api/sessions/{id}/input"), json!({ "eof": true }))
        .await;
    assert_eq!(status, 200);
    server.wait_status(id, "exited", secs(10)).await;
    assert_eq!(text_of(&json_chunks(&server, id).await, "stdout").trim(), "00 ff");
}

#[tokio::test]
async fn a_session_outlives_its_clients() {
    let server = TestServer::start().await;
    let info = server
        .create(json!({ "kind": "command", "command": "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo tick-$i; sleep 0.01; done" }))
        .await;
    let id = info["id"].as_str().unwrap().to_owned();
    // No client watches and nobody reads: output still accumulates.
    let id2 = id.clone();
    let server = &server;
    assert!(
        common::wait_until(secs(10), move || {
            let id = id2.clone();
            async move { server.info(&id).await["outputOffset"].as_u64().unwrap() > 200 }
        })
        .await,
        "the session produced no output while nobody watched"
    );
    // A fresh client (a new connection pool) reads everything from 0.
    let fresh = reqwest::Client::new();
    let text = fresh
        .get(server.url(&format!("/api/sessions/{id}/output?since=0")))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(text.starts_with("tick-1\ntick-2\n"), "{text:?}");
    assert!(text.contains("tick-20\n"), "{text:?}");
    assert_eq!(server.info(&id).await["status"], "running");
    let ended = server.terminate(&id).await;
    assert_eq!(ended["status"], "terminated");
}

/// Input that must wait for the program (its queue is full) is not split by
/// input sent meanwhile: senders take turns, each whole.
#[tokio::test]
async fn a_paste_that_waits_for_room_is_not_split_by_other_input() {
    let server = TestServer::start().await;
    // The program reads nothing for a second: the pipe and the session's
    // 1 MiB input queue fill, and the second paste waits for room.
    let info = server
        .create(json!({ "kind": "command", "argv": ["sh", "-c", "sleep 1; exec cat"] }))
        .await;
    let id = info["id"].as_str().unwrap();
    const PASTE: usize = 900 * 1024;
    server.input(id, &"a".repeat(PASTE)).await;
    let paste = async { server.input(id, &"b".repeat(PASTE)).await };
    let keys = async {
        for _ in 0..20 {
            server.input(id, "c").await;
        }
    };
    tokio::join!(paste, keys);
    let (status, body) = server
        .post(&format!("/api/sessions/{id}/input"), json!({ "data": "", "eof": true }))
        .await;
    assert_eq!(status, 200, "{body}");
    server.wait_status(id, "exited", secs(30)).await;
    let out = String::from_utf8(server.output_all(id, 0).await).expect("utf-8");
    assert_eq!(out.len(), 2 * PASTE + 20, "every byte reaches the program once");
    assert!(out.starts_with(&"a".repeat(PASTE)), "the first paste goes first, whole");
    let (first_b, last_b) = (out.find('b').expect("a b"), out.rfind('b').expect("a b"));
    assert_eq!(
        last_b - first_b + 1,
        PASTE,
        "the waiting paste is not split by keys sent meanwhile"
    );
}

/// Input to a program that does not read it: when the wait runs out, the
/// 503 says how many bytes were taken. Exactly those reach the program once
/// it reads, so the client can send the rest without repeating any.
#[tokio::test]
async fn input_the_program_does_not_read_says_what_was_taken() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_MAX_BODY_BYTES", "4194304")]).await;
    let dir = tempfile::tempdir().unwrap();
    let go = dir.path().join("go");
    let script = format!("while [ ! -e '{}' ]; do sleep 0.05; done; wc -c", go.display());
    let info = server
        .create(json!({ "kind": "command", "argv": ["sh", "-c", script] }))
        .await;
    let id = info["id"].as_str().unwrap();
    let total = 3usize << 20;
    let data = "a".repeat(total);
    let path = format!("/api/sessions/{id}/input");
    let (status, body) = server.post(&path, json!({ "data": data })).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "busy", "{body}");
    let taken = body["error"]["acceptedBytes"].as_u64().expect("acceptedBytes") as usize;
    assert!(taken > 0 && taken < total, "taken {taken} of {total}");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains(&format!("{taken} of {total} bytes")), "{message}");
    std::fs::write(&go, "").unwrap();
    let (status, body) = server.post(&path, json!({ "data": &data[taken..], "eof": true })).await;
    assert_eq!(status, 200, "{body}");
    server.wait_status(id, "exited", secs(20)).await;
    let out = server.output_all(id, 0).await;
    assert_eq!(
        String::from_utf8_lossy(&out).trim(),
        total.to_string(),
        "the program got every byte once"
    );
}

/// Creates made at once with one id: one session, the others refused as
/// duplicates, and one directory on disk (each create takes a spare).
#[tokio::test]
async fn concurrent_creates_of_one_id_make_one_session() {
    let server = TestServer::start().await;
    let creates = (0..8).map(|_| server.post("/api/sessions", json!({ "id": "twin", "argv": ["cat"] })));
    let answers = futures_util::future::join_all(creates).await;
    let created = answers.iter().filter(|(s, _)| s.as_u16() == 201).count();
    let duplicates = answers
        .iter()
        .filter(|(s, b)| s.as_u16() == 409 && b["error"]["code"] == "duplicate_id")
        .count();
    assert_eq!((created, duplicates), (1, 7), "{answers:?}");
    let (_, list) = server.get("/api/sessions").await;
    assert_eq!(list["total"], 1, "{list}");
    assert_eq!(sessions_on_disk(&server), 1);
}

/// Creates made at once past `max_running_sessions`: exactly the limit
/// run, the others are refused and leave no files.
#[tokio::test]
async fn concurrent_creates_stop_at_the_running_limit() {
    let server = TestServer::start_with(&["--max-running-sessions", "3"], &[]).await;
    let creates = (0..8).map(|_| server.post("/api/sessions", json!({ "argv": ["cat"] })));
    let answers = futures_util::future::join_all(creates).await;
    let created = answers.iter().filter(|(s, _)| s.as_u16() == 201).count();
    let refused = answers
        .iter()
        .filter(|(s, b)| s.as_u16() == 503 && b["error"]["code"] == "capacity")
        .count();
    assert_eq!((created, refused), (3, 5), "{answers:?}");
    assert_eq!(sessions_on_disk(&server), 3);
}

/// How many session directories the server's data dir holds.
fn sessions_on_disk(server: &TestServer) -> usize {
    std::fs::read_dir(server.data_dir().join("sessions"))
        .expect("sessions dir")
        .count()
}
