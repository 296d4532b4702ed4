//! Focus-aware streaming (`"stream":"focus"`): live while focused, at most
//! one update per interval while not, and never a byte lost or repeated,
//! nor a resize.

mod common;

use std::sync::Arc;
use std::time::Duration;

use common::focus::focus;
use common::ws::{Incoming, WsClient};
use common::{TestServer, secs, wait_until};
use serde_json::json;

/// Prints numbered lines for about two seconds, then exits.
const STEADY: &str =
    "i=0; while [ $i -lt 400 ]; do echo line-$i-abcdefghijklmnopqrstuvwxyz; i=$((i+1)); sleep 0.005; done";

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

/// Prints `before-` and `after-` lines, on a line of input each, then waits.
const TWO_LINES: &str = "read a; echo before-$a; read b; echo after-$b; exec sleep 600";

/// Creates `r`, a pty session at 80×24 running [`TWO_LINES`], and attaches
/// `ws` to it with `"stream":"focus"`, focused or not.
async fn attach_two_lines(server: &TestServer, ws: &mut WsClient, focused: bool) {
    server
        .create(json!({"id":"r","argv":["sh","-c",TWO_LINES],"cols":80,"rows":24}))
        .await;
    focus(server, "r", focused).await;
    ws.send(json!({"type":"session.attach","sessionId":"r","output":"binary","stream":"focus"}))
        .await;
    ws.until_type("session.attached", secs(10)).await;
}

/// Resizes `r`.
async fn resize(server: &TestServer, cols: u16, rows: u16) {
    let (status, body) = server
        .post("/api/sessions/r/resize", json!({"cols":cols,"rows":rows}))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Reads until the output holds `marker`; answers the `session.resized`
/// that came meanwhile.
async fn resizes_to(ws: &mut WsClient, marker: &str) -> Vec<serde_json::Value> {
    let (mut text, mut resized) = (String::new(), Vec::new());
    while !text.contains(marker) {
        match ws.recv(secs(10)).await {
            Some(Incoming::Output { data, .. }) => text.push_str(&String::from_utf8_lossy(&data)),
            Some(Incoming::Json(m)) if m["type"] == "session.resized" => resized.push(m),
            Some(Incoming::Json(_)) => {}
            other => panic!("the output ended before {marker} ({other:?}): {text:?}"),
        }
    }
    resized
}

/// A focused client is told a resize live, with no output after it (the
/// resize is at the client's `next`); focus goes and comes back. The
/// subscription on focus answers that resize (it is at or past `next`),
/// and the catch-up told it again. No update while unfocused: the second
/// line can only come through the catch-up, after which it is typed.
#[tokio::test]
async fn a_resize_told_live_is_not_told_again_on_focus() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "600000")]).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    attach_two_lines(&server, &mut ws, true).await;
    server.input("r", "x\n").await;
    assert!(resizes_to(&mut ws, "before-x").await.is_empty());
    resize(&server, 100, 30).await;
    let told = ws.until_type("session.resized", secs(10)).await;
    assert_eq!((told["cols"].as_u64(), told["rows"].as_u64()), (Some(100), Some(30)));
    focus(&server, "r", false).await;
    focus(&server, "r", true).await;
    server.input("r", "y\n").await;
    let again = resizes_to(&mut ws, "after-y").await;
    assert!(again.is_empty(), "told again on focus: {again:?}");
}

/// An unfocused client is told a resize at its place in the updates:
/// after the output from before it, before the output after it. The
/// updates told it after all the output they carried, since they only
/// compared sizes. Both lines are printed within one interval.
#[tokio::test]
async fn an_unfocused_update_tells_a_resize_at_its_place() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "1000")]).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    attach_two_lines(&server, &mut ws, false).await;
    server.input("r", "x\n").await;
    assert!(
        wait_until(secs(10), || async {
            server.output_all("r", 0).await.windows(8).any(|w| w == b"before-x")
        })
        .await,
        "the first line"
    );
    resize(&server, 100, 30).await;
    server.input("r", "y\n").await;
    ws.assert_resize_between("before-x", "after-y", (100, 30), secs(10))
        .await;
}
