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

/// Floods the pty twice, on a line of input each time, then prints a
/// marker with a third line (`x` gives `marker-x`) and waits.
const FLOODS: &str = "read a; head -c 16000000 /dev/zero | tr '\\0' a; \
    read b; head -c 8000000 /dev/zero | tr '\\0' b; echo; echo floods-done; \
    read c; echo marker-$c; exec sleep 600";

/// Attaches `ws` with `"stream":"focus"` to `r`, a focused pty session at
/// 80×24, and resizes it to 100×30 where the forwarder's queue loses the
/// resize's live event: the socket stops reading while the session floods
/// (16 MB, more than the outbox and the socket buffers hold), so the
/// forwarder waits on the socket; the resize and 8 MB more output follow
/// (about 128 chunks: far more than the queue's 32 events), which push
/// the event out of the forwarder's queue (it lags, and reads
/// the bytes from the log; the event is not there). Reads nothing after
/// the attach: the forwarder has not met the lag yet.
async fn attach_and_lose_a_resize(server: &TestServer, ws: &mut WsClient) {
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
        wait_until(secs(60), || output_past(server, 24_000_000)).await,
        "the second flood"
    );
}

/// Whether `r` has printed at least `bytes`.
async fn output_past(server: &TestServer, bytes: u64) -> bool {
    server.info("r").await["outputOffset"].as_u64().unwrap() >= bytes
}

/// Reads `r`'s output until it holds `marker`; answers how many
/// `session.resized` (each to 100×30) came meanwhile.
async fn read_to(ws: &mut WsClient, marker: &str) -> usize {
    let (mut tail, mut resized) = (Vec::new(), 0);
    while !tail.windows(marker.len()).any(|w| w == marker.as_bytes()) {
        match ws.recv(secs(30)).await {
            Some(Incoming::Output { data, .. }) => {
                tail.extend_from_slice(&data);
                tail.drain(..tail.len().saturating_sub(64));
            }
            Some(Incoming::Json(m)) if m["type"] == "session.resized" => {
                assert_eq!((m["cols"].as_u64(), m["rows"].as_u64()), (Some(100), Some(30)), "{m}");
                resized += 1;
            }
            Some(Incoming::Json(_)) => {}
            other => panic!("the output ended before {marker} ({other:?})"),
        }
    }
    resized
}

/// Prints `marker-x` and reads up to it; answers how many
/// `session.resized` came before it. Everything the forwarder tells about
/// the output before the input comes before the marker.
async fn resizes_to_the_marker(server: &TestServer, ws: &mut WsClient) -> usize {
    server.input("r", "x\n").await;
    read_to(ws, "marker-x").await
}

/// A resize whose live event the forwarder's queue lost, with focus gone
/// before the forwarder met the lag, is told once. The forwarder meets
/// the lag or the focus change first (both are ready when the socket
/// reads again): the catch-up after the lag tells it at its place, or the
/// updates while unfocused, which compare with the size the client was
/// told, tell it after the output. They compared with the size read when
/// focus went, already the new one, so the client was never told.
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
    attach_and_lose_a_resize(&server, &mut ws).await;
    focus(&server, "r", false).await;
    let told = read_to(&mut ws, "floods-done").await + resizes_to_the_marker(&server, &mut ws).await;
    assert_eq!(told, 1, "session.resized to 100x30, once");
}

/// A resize whose live event a focused forwarder's queue lost is told by
/// the catch-up after the lag, and not again when the session is focused
/// again: that catch-up compares with the size the client was told. (A
/// resize from before the output the client has, never told, which the
/// catch-up on focus tells too, is no longer left by a lag on one node.)
#[tokio::test]
async fn a_resize_the_forwarder_missed_is_told_once_focused() {
    let server = TestServer::start_with(
        &[],
        &[
            // No update comes while unfocused: only the focus sends more.
            ("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "600000"),
            ("TERMSTREAM_MAX_REPLAY_BYTES", "1000000000"),
        ],
    )
    .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    attach_and_lose_a_resize(&server, &mut ws).await;
    assert_eq!(read_to(&mut ws, "floods-done").await, 1, "told while focused, once");
    focus(&server, "r", false).await;
    focus(&server, "r", true).await;
    assert_eq!(resizes_to_the_marker(&server, &mut ws).await, 0, "told again on focus");
}
