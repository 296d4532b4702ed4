//! The older WebSocket shapes: `/ws/terminal/{id}`, `/ws/terminal/all`, and
//! the flat message names on `/ws`.

mod common;

use common::ws::{Incoming, WsClient};
use common::{TestServer, secs};
use serde_json::{Value, json};

fn keys(v: &Value) -> Vec<String> {
    let mut k: Vec<String> = v.as_object().expect("an object").keys().cloned().collect();
    k.sort();
    k
}

#[tokio::test]
async fn one_session_endpoint_restores_then_streams_then_ends() {
    let server = TestServer::start().await;
    server
        .create(json!({"id":"job","kind":"command","argv":["sh","-c","echo before; read go; echo out-line; echo err-line >&2; exit 4"]}))
        .await;
    server.read_output_until("job", "before", secs(10)).await;
    let mut ws = WsClient::connect_raw(&server, "/ws/terminal/job").await;
    let connected = ws.next_json(secs(10)).await;
    assert_eq!(connected["type"], "terminal_connected");
    assert_eq!(keys(&connected), ["message", "session_id", "timestamp", "type"]);
    // Exactly the message of the design this endpoint follows.
    assert_eq!(connected["message"], "Connected to terminal session: job");
    let start = ws.next_json(secs(10)).await;
    assert_eq!(start["type"], "terminal_start");
    assert_eq!(keys(&start), ["command", "cwd", "session_id", "timestamp", "type"]);
    assert_eq!(
        start["command"],
        "sh -c echo before; read go; echo out-line; echo err-line >&2; exit 4"
    );
    // What it printed so far comes first.
    let restore = ws.next_json(secs(10)).await;
    assert_eq!(restore["type"], "terminal_output");
    assert_eq!(restore["output"], "before\n");
    assert_eq!(
        keys(&restore),
        ["is_error", "output", "session_id", "stream", "timestamp", "type"]
    );
    server.input("job", "go\n").await;
    let mut lines = Vec::new();
    let end = loop {
        let m = ws.next_json(secs(10)).await;
        match m["type"].as_str() {
            Some("terminal_output") => lines.push((m["stream"].clone(), m["is_error"].clone(), m["output"].clone())),
            Some("terminal_end") => break m,
            other => panic!("unexpected {other:?}: {m}"),
        }
    };
    assert!(
        lines.contains(&(json!("stdout"), json!(false), json!("out-line\n"))),
        "{lines:?}"
    );
    assert!(
        lines.contains(&(json!("stderr"), json!(true), json!("err-line\n"))),
        "{lines:?}"
    );
    assert_eq!(end["exit_code"], 4);
    assert_eq!(keys(&end), ["duration", "exit_code", "session_id", "timestamp", "type"]);
}

#[tokio::test]
async fn one_session_endpoint_waits_for_the_session_then_closes_1008() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_ATTACH_WAIT_MS", "3000")]).await;
    // A client may connect right after asking for the session.
    let mut early = WsClient::connect_raw(&server, "/ws/terminal/soon").await;
    server
        .create(json!({"id":"soon","kind":"command","argv":["sh","-c","read go; echo hello"]}))
        .await;
    assert_eq!(early.next_json(secs(10)).await["type"], "terminal_connected");
    // An id that never appears is refused with 1008 after the wait.
    let mut ws = WsClient::connect_raw(&server, "/ws/terminal/never").await;
    match ws.recv(secs(10)).await {
        Some(Incoming::Closed(code)) => assert_eq!(code, Some(1008)),
        other => panic!("expected close 1008, got {other:?}"),
    }
}

#[tokio::test]
async fn terminating_is_announced_before_the_end() {
    let server = TestServer::start().await;
    server
        .create(json!({"id":"t","kind":"command","argv":["sleep","1000"]}))
        .await;
    let mut ws = WsClient::connect_raw(&server, "/ws/terminal/t").await;
    ws.next_json(secs(10)).await;
    ws.next_json(secs(10)).await;
    server.terminate("t").await;
    let m = ws.next_json(secs(10)).await;
    assert_eq!(m["type"], "terminal_terminating");
    let end = ws.next_json(secs(10)).await;
    assert_eq!(end["type"], "terminal_end");
}

#[tokio::test]
async fn all_sessions_endpoint_sees_every_session() {
    let server = TestServer::start().await;
    server
        .create(json!({"id":"old","kind":"command","argv":["sh","-c","read go; echo from-old"]}))
        .await;
    let mut ws = WsClient::connect_raw(&server, "/ws/terminal/all").await;
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_connected");
    let start = ws.next_json(secs(10)).await;
    assert_eq!(
        (start["type"].as_str(), start["session_id"].as_str()),
        (Some("terminal_start"), Some("old"))
    );
    server
        .create(json!({"id":"new","kind":"command","argv":["sh","-c","read go; echo from-new"]}))
        .await;
    server.input("old", "go\n").await;
    server.input("new", "go\n").await;
    let mut seen = Vec::new();
    while seen.len() < 2 {
        let m = ws.next_json(secs(10)).await;
        if m["type"] == "terminal_output" {
            seen.push((
                m["session_id"].as_str().unwrap().to_owned(),
                m["output"].as_str().unwrap().to_owned(),
            ));
        }
    }
    seen.sort();
    assert_eq!(
        seen,
        [
            ("new".to_owned(), "from-new\n".to_owned()),
            ("old".to_owned(), "from-old\n".to_owned())
        ]
    );
}

#[tokio::test]
async fn flat_names_are_aliases_and_get_flat_answers() {
    let server = TestServer::start().await;
    server.create(json!({"id":"f","kind":"command","argv":["cat"]})).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"terminal_attach","sessionName":"f"})).await;
    // The project's focus state comes first (the attach touched it).
    assert_eq!(ws.next_json(secs(10)).await["type"], "connection_status");
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_attached");
    ws.send(json!({"type":"terminal_input","sessionName":"f","data":"flat-hello\n"}))
        .await;
    let out = ws.until_type("terminal_output", secs(10)).await;
    assert_eq!(out["sessionName"], "f");
    assert_eq!(out["sessionId"], "f");
    assert_eq!(out["data"], "flat-hello\n");
    // Unix milliseconds, as in the event-streaming design.
    let ts = out["timestamp"].as_u64().expect("a timestamp in ms");
    let now = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64;
    assert!(
        ts <= now && now - ts < 60_000,
        "timestamp {ts} is not Unix ms near {now}"
    );
    // `terminal_detached` keeps its older shape: no `reason` (the dotted
    // `session.detached` has one), whether detached or deleted.
    ws.send(json!({"type":"terminal_detach","sessionName":"f"})).await;
    let detached = ws.until_type("terminal_detached", secs(10)).await;
    assert_eq!(keys(&detached), ["sessionId", "sessionName", "type"], "{detached}");
    ws.send(json!({"type":"terminal_attach","sessionName":"f"})).await;
    ws.until_type("terminal_attached", secs(10)).await;
    let (status, body) = server.request("DELETE", "/api/sessions/f", None).await;
    assert!(status.is_success(), "{status} {body}");
    let detached = ws.until_type("terminal_detached", secs(10)).await;
    assert_eq!(keys(&detached), ["sessionId", "sessionName", "type"], "{detached}");
}

/// A client that connects while a terminate is under way is told so, even
/// though the announcement went out before it subscribed.
#[tokio::test]
async fn a_client_connecting_during_a_terminate_is_told_of_it() {
    let server = TestServer::start().await;
    // Ignores SIGHUP and SIGTERM: it ends only at the grace period's SIGKILL.
    server
        .create(json!({"id":"stubborn","kind":"command","argv":["sh","-c","trap '' TERM HUP; exec sleep 1000"]}))
        .await;
    let mut first = WsClient::connect_raw(&server, "/ws/terminal/stubborn").await;
    assert_eq!(first.next_json(secs(10)).await["type"], "terminal_connected");
    let terminate = server.terminate("stubborn");
    let late_joiner = async {
        // Once the first client saw the announcement, the terminate is under way.
        while first.next_json(secs(10)).await["type"] != "terminal_terminating" {}
        let mut late = WsClient::connect_raw(&server, "/ws/terminal/stubborn").await;
        let mut types = Vec::new();
        while types.last().map(String::as_str) != Some("terminal_end") {
            types.push(
                late.next_json(secs(10)).await["type"]
                    .as_str()
                    .unwrap_or_default()
                    .to_owned(),
            );
        }
        types
    };
    let (_, types) = tokio::join!(terminate, late_joiner);
    assert_eq!(
        types,
        [
            "terminal_connected",
            "terminal_start",
            "terminal_terminating",
            "terminal_end"
        ]
    );
}

/// The flat dialect's refusal of input keeps its older shape: neither
/// `request` nor `seq`, which the dotted one has (`gateway.rs`).
#[tokio::test]
async fn a_flat_refusal_of_input_keeps_its_older_shape() {
    let server = TestServer::start().await;
    let mut flat = WsClient::connect(&server, "/ws?dialect=flat").await;
    flat.send(json!({"type":"terminal_input","sessionName":"ghost","data":"x","seq":9}))
        .await;
    let e = flat.until_type("error", secs(10)).await;
    assert_eq!(keys(&e), ["code", "message", "sessionId", "sessionName", "type"], "{e}");
    assert_eq!(e["code"], "session_not_found", "{e}");
}
