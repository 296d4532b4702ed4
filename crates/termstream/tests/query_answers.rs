//! A terminal's answers to queries in the output (`terminal.input` with
//! `response: true`): every viewer's terminal answers every query it
//! parses, and the server passes on one viewer's answers per session. The
//! viewer typed into last answers; when nobody typed, or the one who did
//! left, the first to answer does. Two real sockets watch one pty session
//! whose program writes all its input to a file.

mod common;

use std::path::Path;

use common::ws::WsClient;
use common::{TestServer, secs, wait_until};
use serde_json::json;

/// Sends input from `ws` to session `id`: an answer when `response`.
async fn send(ws: &mut WsClient, id: &str, data: &str, response: bool) {
    let mut m = json!({"type":"terminal.input","sessionId":id,"data":data});
    if response {
        m["response"] = json!(true);
    }
    ws.send(m).await;
}

/// Starts session `asks`, a pty whose program writes all its input, raw,
/// to the file returned.
async fn asking_session(server: &TestServer) -> std::path::PathBuf {
    let log = server.data_dir().join("input.log");
    server
        .create(json!({
            "id": "asks",
            "kind": "pty",
            "argv": ["sh", "-c", "stty raw -echo && exec cat > \"$0\"", log.to_str().unwrap()],
        }))
        .await;
    assert!(
        wait_until(secs(10), || async { log.exists() }).await,
        "the program did not start"
    );
    log
}

/// Waits until the program's input log ends with `tail`.
async fn arrived(log: &Path, tail: &str) {
    let ok = wait_until(secs(10), || async {
        std::fs::read_to_string(log).unwrap_or_default().ends_with(tail)
    })
    .await;
    assert!(
        ok,
        "{tail:?} did not arrive; the program got {:?}",
        std::fs::read_to_string(log)
    );
}

#[tokio::test]
async fn one_viewer_answers_the_typist_else_the_first_to_answer() {
    let server = TestServer::start().await;
    let log = asking_session(&server).await;
    let mut a = WsClient::connect(&server, "/ws").await;
    let mut b = WsClient::connect(&server, "/ws").await;
    for ws in [&mut a, &mut b] {
        ws.attach("asks", "binary").await;
        ws.until_type("session.attached", secs(10)).await;
    }

    // Nobody typed: the first to answer answers, the other's answer is dropped.
    send(&mut a, "asks", "<a1>", true).await;
    arrived(&log, "<a1>").await;
    send(&mut b, "asks", "<b1>", true).await;
    // Typing makes b the answerer (its earlier answer would stand before this).
    send(&mut b, "asks", "<typed-b>", false).await;
    arrived(&log, "<a1><typed-b>").await;
    send(&mut a, "asks", "<a2>", true).await;
    send(&mut b, "asks", "<b2>", true).await;
    arrived(&log, "<a1><typed-b><b2>").await;
    // Attaching again (as a page does to switch stream mode) keeps b the answerer.
    b.send(json!({"type":"session.attach","sessionId":"asks","output":"binary","stream":"focus"}))
        .await;
    b.until_type("session.attached", secs(10)).await;
    send(&mut a, "asks", "<a-again>", true).await;
    // A socket's messages are handled in order: after the pong, a's answer was.
    a.send(json!({"type":"ping"})).await;
    a.until_type("pong", secs(10)).await;
    send(&mut b, "asks", "<b-again>", true).await;
    arrived(&log, "<b2><b-again>").await;
    // The answerer leaves: the next to answer takes over.
    b.send(json!({"type":"session.detach","sessionId":"asks"})).await;
    b.until_type("session.detached", secs(10)).await;
    send(&mut a, "asks", "<a3>", true).await;
    send(&mut a, "asks", "<end>", false).await;
    arrived(&log, "<end>").await;
    assert_eq!(
        std::fs::read_to_string(&log).unwrap(),
        "<a1><typed-b><b2><b-again><a3><end>",
        "one answer per query, from the answerer"
    );
}

#[tokio::test]
async fn an_unattached_socket_never_answers() {
    let server = TestServer::start().await;
    let log = asking_session(&server).await;
    // Not attached: it saw no query, so its answer is dropped (typing still goes in).
    let mut a = WsClient::connect(&server, "/ws").await;
    send(&mut a, "asks", "<unattached>", true).await;
    send(&mut a, "asks", "<typed>", false).await;
    arrived(&log, "<typed>").await;
    assert_eq!(std::fs::read_to_string(&log).unwrap(), "<typed>");
}

/// A socket that types but never answers (a script, a dashboard without a
/// terminal) does not take the answerer's place: the page's answers still
/// reach the program.
#[tokio::test]
async fn a_socket_that_never_answers_does_not_silence_the_answers() {
    let server = TestServer::start().await;
    let log = asking_session(&server).await;
    let mut page = WsClient::connect(&server, "/ws").await;
    let mut script = WsClient::connect(&server, "/ws").await;
    for ws in [&mut page, &mut script] {
        ws.attach("asks", "binary").await;
        ws.until_type("session.attached", secs(10)).await;
    }
    send(&mut page, "asks", "<p1>", true).await;
    arrived(&log, "<p1>").await;
    send(&mut script, "asks", "<typed-by-script>", false).await;
    arrived(&log, "<p1><typed-by-script>").await;
    send(&mut page, "asks", "<p2>", true).await;
    arrived(&log, "<p1><typed-by-script><p2>").await;
}
