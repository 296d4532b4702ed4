//! Attaches that wait: an attach to an id that does not exist yet waits
//! `attach_wait_ms` for it. Another project's session is answered exactly
//! as a missing id, after the same wait (on `/ws` and
//! `/ws/terminal/{id}`); a detach cancels an attach still waiting; and
//! waiting attaches give their slot back when detached, so a storm of
//! attach/detach exhausts nothing.

mod common;

use std::time::{Duration, Instant};

use common::secured::{call, secured};
use common::ws::{Incoming, WsClient};
use common::{TestServer, Transport, secs};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

const WAIT_MS: u64 = 400;

/// A `/ws` socket opened with `token`, past its `connected`.
async fn ws_as(server: &TestServer, path: &str, token: &str) -> WsClient {
    let (mut ws, _) = WsClient::try_connect(server, path, &[("authorization", &format!("Bearer {token}"))])
        .await
        .expect("upgrade");
    assert_eq!(ws.next_json(secs(10)).await["type"], "connected");
    ws
}

/// Attaches to `id` and times the error that answers it; returns the
/// error with the id replaced by `ID`, and how long it took.
async fn attach_error(ws: &mut WsClient, id: &str) -> (String, Duration) {
    let started = Instant::now();
    ws.attach(id, "json").await;
    let err = ws.until_type("error", secs(10)).await;
    (err.to_string().replace(id, "ID"), started.elapsed())
}

/// Opens `/ws/terminal/{id}` and times its close; returns the close code
/// and reason (the id replaced by `ID`), and how long it took.
async fn legacy_close(server: &TestServer, id: &str, token: &str) -> (u16, String, Duration) {
    let started = Instant::now();
    let (mut ws, _) = WsClient::try_connect(
        server,
        &format!("/ws/terminal/{id}"),
        &[("authorization", &format!("Bearer {token}"))],
    )
    .await
    .expect("upgrade");
    loop {
        match tokio::time::timeout(secs(10), ws.inner().next()).await {
            Ok(Some(Ok(Message::Close(Some(frame))))) => {
                return (u16::from(frame.code), frame.reason.replace(id, "ID"), started.elapsed());
            }
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close frame, got {other:?}"),
        }
    }
}

/// Another project's session and a missing id get the same answer after
/// the same wait: the attach wait, on `/ws` and on `/ws/terminal/{id}`.
/// The first once answered at once, telling that the id exists.
#[tokio::test]
async fn another_projects_session_is_answered_as_a_missing_one_after_the_same_wait() {
    let (server, t) = secured(&format!("attach_wait_ms = {WAIT_MS}"), &[], Transport::Plain).await;
    let wait = Duration::from_millis(WAIT_MS);
    let (status, body, _) = call(
        &server,
        "POST",
        "/api/sessions",
        Some(&t.admin),
        Some(json!({"id":"hidden","kind":"command","argv":["sleep","100"],"project":"api"})),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{body}");

    let mut ws = ws_as(&server, "/ws", &t.web_writer).await;
    let (hidden, hidden_took) = attach_error(&mut ws, "hidden").await;
    let (missing, missing_took) = attach_error(&mut ws, "missing").await;
    assert_eq!(hidden, missing, "the two answers differ");
    assert!(hidden.contains("session_not_found"), "{hidden}");
    assert!(
        hidden_took >= wait,
        "another project's session answered after {hidden_took:?}"
    );
    assert!(missing_took >= wait, "a missing id answered after {missing_took:?}");

    let (code, reason, hidden_took) = legacy_close(&server, "hidden", &t.web_writer).await;
    let (code2, reason2, missing_took) = legacy_close(&server, "missing", &t.web_writer).await;
    assert_eq!((code, &reason), (code2, &reason2), "the legacy closes differ");
    assert_eq!(code, 1008, "{reason}");
    assert!(
        hidden_took >= wait,
        "legacy: another project's session closed after {hidden_took:?}"
    );
    assert!(
        missing_took >= wait,
        "legacy: a missing id closed after {missing_took:?}"
    );

    // The session the credential may read still attaches at once.
    let mut admin = ws_as(&server, "/ws", &t.admin).await;
    admin.attach("hidden", "json").await;
    assert_eq!(
        admin.until_type("session.attached", secs(10)).await["sessionId"],
        "hidden"
    );
}

/// Sends a ping and collects what comes until its pong: every message
/// sent before was acted on by then.
async fn round_trip(ws: &mut WsClient, seen: &mut Vec<Incoming>) {
    ws.send(json!({"type":"ping"})).await;
    loop {
        match ws.recv(secs(10)).await {
            Some(Incoming::Json(v)) if v["type"] == "pong" => return,
            Some(msg) => seen.push(msg),
            None => panic!("no pong"),
        }
    }
}

/// A detach cancels an attach that waits for its session: when the
/// session appears, the socket is not attached. It once answered
/// `not_attached` and attached anyway.
#[tokio::test]
async fn a_detach_cancels_a_waiting_attach() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_ATTACH_WAIT_MS", "20000")]).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.attach("later", "json").await;
    ws.send(json!({"type":"session.detach","sessionId":"later"})).await;
    let answer = ws.next_json(secs(10)).await;
    assert_eq!(
        (answer["type"].as_str(), answer["sessionId"].as_str()),
        (Some("session.detached"), Some("later")),
        "{answer}"
    );
    server.create(json!({"id":"later","argv":["cat"]})).await;
    // The creation of `later` was announced before the answer to its
    // create: by the time a later attach is answered (and a ping after
    // it), an attach still waiting would have been acted on.
    server.create(json!({"id":"other","argv":["cat"]})).await;
    ws.attach("other", "json").await;
    let mut seen = Vec::new();
    let other_attached =
        |m: &Incoming| matches!(m, Incoming::Json(v) if v["type"] == "session.attached" && v["sessionId"] == "other");
    while !seen.iter().any(other_attached) {
        seen.push(ws.recv(secs(10)).await.expect("other is attached"));
    }
    round_trip(&mut ws, &mut seen).await;
    let of_later = |m: &Incoming| matches!(m, Incoming::Json(v) if v["sessionId"] == "later");
    assert!(!seen.iter().any(of_later), "attached after the detach: {seen:?}");
}

/// Attaches that wait give their slot back when detached, and a second
/// attach of a waiting id takes no second slot: a storm of attach and
/// detach of ids that do not exist is never refused. The slots still
/// bound what waits at once.
#[tokio::test]
async fn waiting_attaches_hold_no_slot_after_a_detach() {
    let server = TestServer::start_with(
        &[],
        &[
            ("TERMSTREAM_ATTACH_WAIT_MS", "20000"),
            ("TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET", "4"),
        ],
    )
    .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    // Five times the slots (each round trip costs the test client's Nagle
    // delay, 40 ms).
    for i in 0..20 {
        let id = format!("ghost-{i}");
        ws.attach(&id, "json").await;
        ws.attach(&id, "binary").await;
        ws.send(json!({"type":"session.detach","sessionId":id})).await;
        let answer: Value = ws.next_json(secs(10)).await;
        assert_eq!(
            (answer["type"].as_str(), answer["sessionId"].as_str()),
            (Some("session.detached"), Some(id.as_str())),
            "attach/detach {i}: {answer}"
        );
    }
    // Four wait at once; a fifth is refused; a detach makes room again.
    for i in 0..4 {
        ws.attach(&format!("wait-{i}"), "json").await;
    }
    ws.attach("wait-4", "json").await;
    let refused = ws.next_json(secs(10)).await;
    // It says which attach it refuses, as a waited attach's refusal does.
    assert_eq!(
        (
            refused["code"].as_str(),
            refused["sessionId"].as_str(),
            refused["request"].as_str()
        ),
        (Some("rate_limited"), Some("wait-4"), Some("session.attach")),
        "{refused}"
    );
    ws.send(json!({"type":"session.detach","sessionId":"wait-0"})).await;
    assert_eq!(ws.next_json(secs(10)).await["type"], "session.detached");
    server.create(json!({"id":"here","argv":["cat"]})).await;
    ws.attach("here", "json").await;
    assert_eq!(ws.until_type("session.attached", secs(10)).await["sessionId"], "here");
}

/// The refusal of an attach that waited in vain says it answers
/// `session.attach`; the refusal of input naming the same id, sent while
/// the attach waits, says `terminal.input` (and its seq): a client tells
/// them apart by the field, not by counting its messages. Their order is not asserted: on a loaded
/// machine the wait can end before the input is read.
#[tokio::test]
async fn a_waited_attachs_refusal_names_its_request() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_ATTACH_WAIT_MS", &WAIT_MS.to_string())]).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.attach("ghost", "binary").await;
    ws.send(json!({"type":"terminal.input","sessionId":"ghost","data":"x","seq":1}))
        .await;
    let refusals = [ws.next_json(secs(10)).await, ws.next_json(secs(10)).await];
    for r in &refusals {
        assert_eq!(
            (r["code"].as_str(), r["sessionId"].as_str()),
            (Some("session_not_found"), Some("ghost")),
            "{r}"
        );
    }
    let requests: Vec<Option<&str>> = refusals
        .iter()
        .map(|r| r.get("request").map(|v| v.as_str().unwrap_or("?")))
        .collect();
    assert!(
        requests == [Some("session.attach"), Some("terminal.input")]
            || requests == [Some("terminal.input"), Some("session.attach")],
        "each refusal names its request: {refusals:?}"
    );
    let seqs: Vec<Option<u64>> = refusals.iter().map(|r| r["seq"].as_u64()).collect();
    assert!(
        seqs.contains(&Some(1)) && seqs.contains(&None),
        "the input's names its seq: {refusals:?}"
    );
}
