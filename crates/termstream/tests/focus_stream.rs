//! Focus-aware streaming (`"stream":"focus"`): live while focused, at most
//! one update per interval while not, and never a byte lost or repeated.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ws::WsClient;
use common::{TestServer, secs};
use serde_json::json;

/// Prints numbered lines for about two seconds, then exits.
const STEADY: &str =
    "i=0; while [ $i -lt 400 ]; do echo line-$i-abcdefghijklmnopqrstuvwxyz; i=$((i+1)); sleep 0.005; done";

async fn focus(server: &TestServer, id: &str, focused: bool) {
    let (status, body) = server
        .request(
            "PUT",
            "/api/terminal/focus",
            Some(&json!({"sessionId":id,"focused":focused})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}

/// An unfocused session's output comes coalesced, a focused one's live;
/// switching focus back and forth while both print loses no byte.
#[tokio::test]
async fn focus_streaming_coalesces_unfocused_output_and_loses_nothing() {
    let server = Arc::new(TestServer::start_with(&[], &[("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "400")]).await);
    for id in ["hot", "cold", "switch"] {
        server
            .create(json!({"id":id,"kind":"command","argv":["sh","-c",format!("read go; {STEADY}")]}))
            .await;
    }
    focus(&server, "hot", true).await;
    focus(&server, "switch", true).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    for id in ["hot", "cold", "switch"] {
        ws.send(json!({"type":"session.attach","sessionId":id,"output":"binary","stream":"focus"}))
            .await;
        ws.until_type("session.attached", secs(10)).await;
    }
    let started = std::time::Instant::now();
    for id in ["hot", "cold", "switch"] {
        server.input(id, "go\n").await;
    }
    // Switch `switch` in and out of focus while it prints.
    let toggler = {
        let server = server.clone();
        tokio::spawn(async move {
            for k in 0..8 {
                tokio::time::sleep(Duration::from_millis(230)).await;
                focus(&server, "switch", k % 2 == 1).await;
            }
        })
    };
    let got = ws.collect_until_exit(&["hot", "cold", "switch"], secs(60)).await;
    let took = started.elapsed();
    toggler.await.unwrap();
    for (c, id) in got.iter().zip(["hot", "cold", "switch"]) {
        let full = server.output_all(id, 0).await;
        assert_eq!(c.data.len(), full.len(), "{id}: every byte, once");
        assert!(c.data == full, "{id}: the bytes in order");
        assert!(
            String::from_utf8_lossy(&full).contains("line-399-"),
            "{id} printed everything"
        );
    }
    let (hot, cold) = (got[0].streams.len(), got[1].streams.len());
    // One update per 400 ms while it printed, plus the end (an update's
    // frames are at most 64 KiB: these are one each).
    let most = (took.as_millis() / 400) as usize + 2;
    assert!(cold <= most, "the unfocused session came in {cold} frames in {took:?}");
    assert!(
        hot > 2 * cold,
        "the focused session came live: {hot} frames against {cold}"
    );
}
