//! Messages on one socket take effect in order: input sent right after an
//! attach reaches the program only once the attach's starting point is
//! fixed, so what the input makes the program print comes to that socket
//! live, after the screen it was sent, not folded into the screen (unless
//! fixing the start takes over the 1 s the input waits at most). A
//! terminal answers the queries in live output and not those in a restored
//! screen, so this is what lets a program that asks right after a
//! keystroke get its answer. Without the wait, the echo came inside the
//! screen for about one attach in three here.

mod common;

use common::ws::{Incoming, WsClient};
use common::{TestServer, secs};
use serde_json::json;

/// Sessions `o0`..`o{N-1}`, each a pty running `cat` (the tty echoes
/// input at once, before the program runs).
const N: usize = 40;

async fn sessions(server: &TestServer) {
    for i in 0..N {
        server
            .create(json!({"id": format!("o{i}"), "argv": ["cat"], "cols": 80, "rows": 24}))
            .await;
    }
}

/// Asserts that no session's echo came in its screen.
fn none_folded(folded: &[String]) {
    assert!(
        folded.is_empty(),
        "the echo came in the screen of {} of {N}: {folded:?}",
        folded.len()
    );
}

#[tokio::test]
async fn input_sent_right_after_an_attach_comes_back_live() {
    let server = TestServer::start().await;
    sessions(&server).await;
    let mut folded = Vec::new();
    for i in 0..N {
        let id = format!("o{i}");
        let mut ws = WsClient::connect(&server, "/ws").await;
        ws.send(json!({"type":"session.attach","sessionId":id,"output":"binary"}))
            .await;
        let word = format!("mark{i}x");
        ws.send(json!({"type":"terminal.input","sessionId":id,"data":format!("{word}\r")}))
            .await;
        let mut live = Vec::new();
        let mut restored = String::new();
        while !String::from_utf8_lossy(&live).contains(&word) && !restored.contains(&word) {
            match ws.recv(secs(10)).await {
                Some(Incoming::Output { data, .. }) => live.extend_from_slice(&data),
                Some(Incoming::Json(v)) if v["type"] == "terminal.restore" => {
                    restored.push_str(v["data"].as_str().unwrap_or_default())
                }
                Some(Incoming::Json(_)) => {}
                other => panic!("{id}: {other:?}"),
            }
        }
        if restored.contains(&word) {
            folded.push(id);
        }
    }
    none_folded(&folded);
}

/// The per-terminal socket (`/ws?sessionId=`) attaches when it opens; its
/// screen is the first `stream` message, starting with a reset.
#[tokio::test]
async fn input_sent_as_the_terminal_socket_opens_comes_back_live() {
    let server = TestServer::start().await;
    sessions(&server).await;
    let mut folded = Vec::new();
    for i in 0..N {
        let id = format!("o{i}");
        let mut ws = WsClient::connect_raw(&server, &format!("/ws?sessionId={id}")).await;
        let word = format!("mark{i}x");
        ws.send(json!({"type":"input","sessionId":id,"data":format!("{word}\r")}))
            .await;
        let mut screen = None;
        let mut live = String::new();
        while !live.contains(&word) {
            let v = match ws.recv(secs(10)).await {
                Some(Incoming::Json(v)) => v,
                other => panic!("{id}: {other:?}"),
            };
            if v["type"] != "stream" {
                continue;
            }
            let data = v["data"].as_str().unwrap_or_default();
            match &screen {
                None => {
                    assert!(
                        data.starts_with("\x1bc"),
                        "{id}: the first stream is not the screen: {data:?}"
                    );
                    screen = Some(data.to_owned());
                }
                Some(_) => live.push_str(data),
            }
            if screen.as_deref().is_some_and(|s| s.contains(&word)) {
                folded.push(id.clone());
                break;
            }
        }
    }
    none_folded(&folded);
}
