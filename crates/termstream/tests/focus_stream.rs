//! Focus-aware streaming (`"stream":"focus"`): live while focused, at most
//! one update per interval while not, and never a byte lost or repeated,
//! nor a resize.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::ws::{Incoming, WsClient};
use common::{TestServer, secs, wait_until};
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

/// Floods the pty twice, on a line of input each time, then waits.
const FLOODS: &str = "read a; head -c 16000000 /dev/zero | tr '\\0' a; \
    read b; head -c 2000000 /dev/zero | tr '\\0' b; echo; echo floods-done; exec sleep 600";

/// Why the tests below expect no `session.resized` while focused.
const LOST: &str = "the resize was told while focused: the setup no longer loses its event \
    (a lag that tells the size would make these tests moot, not wrong)";

/// Attaches `ws` with `"stream":"focus"` to `r`, a focused pty session at
/// 80×24, and resizes it to 100×30 where the forwarder never takes the
/// resize's live event: the socket stops reading while the session floods
/// (16 MB, more than the outbox and the socket buffers hold), so the
/// forwarder waits on the socket; the resize and 2 MB more output follow,
/// which push the event out of the forwarder's queue (it lags, and reads
/// the bytes from the log; the event is not there). Then reads the output
/// to its end; answers whether a `session.resized` came with it.
async fn attach_and_lose_a_resize(server: &TestServer, ws: &mut WsClient) -> bool {
    server
        .create(json!({"id":"r","argv":["sh","-c",FLOODS],"cols":80,"rows":24}))
        .await;
    focus(server, "r", true).await;
    ws.send(json!({"type":"session.attach","sessionId":"r","output":"binary","stream":"focus"}))
        .await;
    let attached = ws.until_type("session.attached", secs(10)).await;
    assert_eq!(
        (attached["cols"].as_u64(), attached["rows"].as_u64()),
        (Some(80), Some(24))
    );
    server.input("r", "go\n").await;
    assert!(
        wait_until(secs(60), || output_past(server, 16_000_000)).await,
        "the first flood"
    );
    let (status, body) = server
        .post("/api/sessions/r/resize", json!({"cols":100,"rows":30}))
        .await;
    assert_eq!(status, 200, "{body}");
    server.input("r", "more\n").await;
    assert!(
        wait_until(secs(60), || output_past(server, 18_000_000)).await,
        "the second flood"
    );
    read_to(ws, "floods-done").await
}

/// Whether `r` has printed at least `bytes`.
async fn output_past(server: &TestServer, bytes: u64) -> bool {
    server.info("r").await["outputOffset"].as_u64().unwrap() >= bytes
}

/// Reads `r`'s output until it holds `marker`; answers whether a
/// `session.resized` to 100×30 came meanwhile.
async fn read_to(ws: &mut WsClient, marker: &str) -> bool {
    let (mut tail, mut resized) = (Vec::new(), false);
    while !tail.windows(marker.len()).any(|w| w == marker.as_bytes()) {
        match ws.recv(secs(30)).await {
            Some(Incoming::Output { data, .. }) => {
                tail.extend_from_slice(&data);
                tail.drain(..tail.len().saturating_sub(64));
            }
            Some(Incoming::Json(m)) if m["type"] == "session.resized" => resized |= resized_to_100x30(&m),
            Some(Incoming::Json(_)) => {}
            other => panic!("the output ended before {marker} ({other:?})"),
        }
    }
    resized
}

fn resized_to_100x30(m: &serde_json::Value) -> bool {
    assert_eq!((m["cols"].as_u64(), m["rows"].as_u64()), (Some(100), Some(30)), "{m}");
    true
}

/// Waits for a `session.resized` to 100×30 of `r`; panics after `timeout`.
async fn until_resized(ws: &mut WsClient, timeout: Duration) {
    let m = ws.until_type("session.resized", timeout).await;
    resized_to_100x30(&m);
}

/// A resize whose live event the forwarder never took (lost here to a lag;
/// focus going while it is queued drops it too) is told by the updates
/// while unfocused. They compared the size with the one read when focus
/// went, already the new one, so the client was never told.
#[tokio::test]
async fn a_resize_the_forwarder_missed_is_told_once_unfocused() {
    let server = TestServer::start_with(
        &[],
        &[
            ("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "200"),
            // Replayed, not skipped: a screen would carry the size.
            ("TERMSTREAM_MAX_REPLAY_BYTES", "1000000000"),
        ],
    )
    .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    assert!(!attach_and_lose_a_resize(&server, &mut ws).await, "{LOST}");
    focus(&server, "r", false).await;
    until_resized(&mut ws, secs(10)).await;
}

/// A resize whose live event the forwarder never took, from before the
/// output the client has, is told when the session is focused again,
/// before any update. The catch-up told only a resize at or past where it
/// started, so the client was never told.
#[tokio::test]
async fn a_resize_the_forwarder_missed_is_told_on_focus() {
    let server = TestServer::start_with(
        &[],
        &[
            // No update comes while unfocused: the focus must tell it.
            ("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "600000"),
            ("TERMSTREAM_MAX_REPLAY_BYTES", "1000000000"),
        ],
    )
    .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    assert!(!attach_and_lose_a_resize(&server, &mut ws).await, "{LOST}");
    focus(&server, "r", false).await;
    focus(&server, "r", true).await;
    until_resized(&mut ws, secs(10)).await;
}
