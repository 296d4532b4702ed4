//! An attachment whose forwarder lags past resizes is still told each
//! resize at its place in the output. The forwarder catches up on a lag
//! by reading the missed bytes from the ring or disk, which hold no
//! resize: a `session.resized` in the overflowed part of its queue was
//! lost, and the client went on drawing at the old size; resizes still
//! queued must keep their places too.
//!
//! Every test floods a pty while its socket does not read, so they run
//! one at a time, on servers that wait for pongs longer than the tests
//! stall, and each checks that its forwarder did lag. Under `cargo test`
//! [`FLOODING`] serialises them; nextest runs each test in its own process,
//! where `.config/nextest.toml` runs them alone instead.

mod common;

use common::focus::focus;
use common::metrics::metric;
use common::ws::{Incoming, WsClient};
use common::{TestServer, secs, wait_until};
use serde_json::json;

/// One flood at a time: two at once on a small machine slow each other
/// past their waits, and their own timing matters.
static FLOODING: tokio::sync::Mutex<()> = tokio::sync::Mutex::const_new(());

/// Floods the pty twice, on a line of input each time, then prints a
/// marker with a third line (`x` gives `marker-x`) and waits. The first
/// flood is 16,000,000 `a` after the echo of its line (`go\r\n`).
const FLOODS: &str = "read a; head -c 16000000 /dev/zero | tr '\\0' a; \
    read b; head -c 8000000 /dev/zero | tr '\\0' b; echo; echo floods-done; \
    read c; echo marker-$c; exec sleep 600";

/// Where the first flood ends: its line's echo and its bytes.
const FIRST_END: u64 = 4 + 16_000_000;

/// A server for a flood: `env` and a pong timeout longer than any stall
/// here (the client does not answer pings while it does not read).
async fn server(env: &[(&str, &str)]) -> TestServer {
    let mut env = env.to_vec();
    env.push(("TERMSTREAM_WS_PONG_TIMEOUT_MS", "600000"));
    TestServer::start_with(&[], &env).await
}

/// How many slow clients `server` caught up by replay.
async fn replays(server: &TestServer) -> f64 {
    metric(server, "termstream_catchups_total{reason=\"replay\"}")
        .await
        .unwrap_or(0.0)
}

/// Whether `r` has printed at least `bytes`.
async fn output_past(server: &TestServer, bytes: u64) -> bool {
    server.info("r").await["outputOffset"].as_u64().unwrap() >= bytes
}

/// Waits until `r` has printed at least `bytes`, and answers how much it
/// printed then.
async fn wait_output(server: &TestServer, bytes: u64, what: &str) -> u64 {
    assert!(wait_until(secs(45), || output_past(server, bytes)).await, "{what}");
    server.info("r").await["outputOffset"].as_u64().unwrap()
}

/// Resizes `r`.
async fn resize(server: &TestServer, cols: u16, rows: u16) {
    let (status, body) = server
        .post("/api/sessions/r/resize", json!({"cols":cols,"rows":rows}))
        .await;
    assert_eq!(status, 200, "{body}");
}

/// Attaches `ws` to `r`, a pty session at 80×24 running `script`, with
/// `stream` (`"live"` or `"focus"`); a fresh attach also gets the screen.
async fn attach(server: &TestServer, ws: &mut WsClient, script: &str, stream: &str) {
    server
        .create(json!({"id":"r","argv":["sh","-c",script],"cols":80,"rows":24}))
        .await;
    if stream == "focus" {
        focus(server, "r", true).await;
    }
    ws.send(json!({"type":"session.attach","sessionId":"r","output":"binary","stream":stream}))
        .await;
    let attached = ws.until_type("session.attached", secs(10)).await;
    assert_eq!(
        (attached["cols"].as_u64(), attached["rows"].as_u64()),
        (Some(80), Some(24))
    );
    ws.until_type("terminal.restore", secs(10)).await;
}

/// What the client read up to a marker: where each output frame ended,
/// checked contiguous, and each `session.resized` with the offset the
/// output had reached when it came.
#[derive(Default, Debug)]
struct Read {
    end: Option<u64>,
    resizes: Vec<(u64, u64, u64)>,
    tail: Vec<u8>,
}

/// Reads until the output holds `marker`.
async fn read_to(ws: &mut WsClient, read: &mut Read, marker: &str) {
    while !read.tail.windows(marker.len()).any(|w| w == marker.as_bytes()) {
        match ws.recv(secs(30)).await {
            Some(Incoming::Output { offset, data, .. }) => {
                if let Some(end) = read.end {
                    assert_eq!(offset, end, "every byte, once, in order");
                }
                read.end = Some(offset + data.len() as u64);
                read.tail.extend_from_slice(&data);
                read.tail.drain(..read.tail.len().saturating_sub(64));
            }
            Some(Incoming::Json(m)) if m["type"] == "session.resized" => {
                let at = read.end.unwrap_or(0);
                read.resizes
                    .push((at, m["cols"].as_u64().unwrap(), m["rows"].as_u64().unwrap()));
            }
            Some(Incoming::Json(m)) if m["type"] == "focus_update" => {}
            Some(Incoming::Json(m)) => panic!("unexpected while reading to {marker}: {m}"),
            other => panic!("the output ended before {marker} ({other:?})"),
        }
    }
}

/// The socket stops reading while the session floods (16 MB, more than the
/// outbox and the socket buffers hold), so the forwarder waits on the
/// socket; the resize and 8 MB more output follow (about 128 chunks, far
/// more than the queue's 32 events), which overflow its queue with the
/// resize's event in the part it loses. Then the client reads everything:
/// the resize must come after the whole first flood and before the second.
#[tokio::test]
async fn a_lagging_attachment_is_told_a_resize_at_its_place() {
    let _one = FLOODING.lock().await;
    // Replayed, not skipped: a screen would carry the size.
    let server = server(&[("TERMSTREAM_MAX_REPLAY_BYTES", "1000000000")]).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    attach(&server, &mut ws, FLOODS, "live").await;
    server.input("r", "go\n").await;
    wait_output(&server, FIRST_END, "the first flood").await;
    resize(&server, 100, 30).await;
    server.input("r", "more\n").await;
    wait_output(&server, FIRST_END + 8_000_000, "the second flood").await;

    // The forwarder waits on the socket: the lag it meets once the client
    // reads is the one that took the resize's event.
    let replayed = replays(&server).await;
    let mut read = Read::default();
    read_to(&mut ws, &mut read, "floods-done").await;
    assert!(replays(&server).await > replayed, "the forwarder did not lag");
    assert_eq!(
        read.resizes,
        vec![(FIRST_END, 100, 30)],
        "the session.resized to 100x30 (none: never told, the client draws at 80x24 for good), \
         at the offset the output had reached"
    );
}

/// Two resizes while the client is stalled, with output between them and
/// after: the lag loses flood output from before both, and both events
/// stay queued (a handful of events after the flood, in a queue of 32).
/// Each is told at its place. The first fix of the lag filled to the last
/// resize and told it there, then dropped the first one's event as stale:
/// the client never had 100×30, and drew the output between them at 80×24.
#[tokio::test]
async fn resizes_queued_behind_a_lag_are_each_told_at_their_place() {
    let _one = FLOODING.lock().await;
    let script = "read a; head -c 16000000 /dev/zero | tr '\\0' a; \
        read b; echo mid-$b; read c; echo end-$c; exec sleep 600";
    let server = server(&[("TERMSTREAM_MAX_REPLAY_BYTES", "1000000000")]).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    attach(&server, &mut ws, script, "live").await;
    server.input("r", "go\n").await;
    let first = wait_output(&server, FIRST_END, "the flood").await;
    resize(&server, 100, 30).await;
    // The line's echo (`b\r\n`) and `mid-b\r\n`.
    server.input("r", "b\n").await;
    let second = wait_output(&server, first + 10, "mid-b").await;
    resize(&server, 120, 40).await;
    server.input("r", "c\n").await;
    wait_output(&server, second + 10, "end-c").await;

    let replayed = replays(&server).await;
    let mut read = Read::default();
    read_to(&mut ws, &mut read, "end-c").await;
    assert!(replays(&server).await > replayed, "the forwarder did not lag");
    assert_eq!(
        read.resizes,
        vec![(first, 100, 30), (second, 120, 40)],
        "each session.resized once, at the offset the output had reached"
    );
}

/// Attaches `ws` with `"stream":"focus"` to `r`, a focused pty session at
/// 80×24, and resizes it to 100×30 where the forwarder's queue loses the
/// resize's live event (as in the first test). Reads nothing after the
/// attach: the forwarder has not met the lag yet. Answers how many
/// catch-ups by replay the server made so far.
async fn attach_and_lose_a_resize(server: &TestServer, ws: &mut WsClient) -> f64 {
    attach(server, ws, FLOODS, "focus").await;
    server.input("r", "go\n").await;
    wait_output(server, FIRST_END, "the first flood").await;
    resize(server, 100, 30).await;
    server.input("r", "more\n").await;
    wait_output(server, FIRST_END + 8_000_000, "the second flood").await;
    replays(server).await
}

/// Prints `marker-x` and reads up to it. Everything the forwarder tells
/// about the output before the input comes before the marker.
async fn read_to_the_marker(server: &TestServer, ws: &mut WsClient, read: &mut Read) {
    server.input("r", "x\n").await;
    read_to(ws, read, "marker-x").await;
}

/// A resize whose live event the forwarder's queue lost, with focus gone
/// before the forwarder met the lag, is told once, at its place. The
/// forwarder looks at the focus first when both are ready: it drops the
/// queue, and the updates while unfocused find the resize by comparing the
/// session's size with the size the client was told (they compared with
/// the size read when focus went, already the new one, so the client was
/// never told), and place it by asking for the last resize.
#[tokio::test]
async fn a_resize_the_forwarder_missed_is_told_once_unfocused() {
    let _one = FLOODING.lock().await;
    let server = server(&[
        ("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "200"),
        // Replayed, not skipped: a screen would carry the size.
        ("TERMSTREAM_MAX_REPLAY_BYTES", "1000000000"),
    ])
    .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    attach_and_lose_a_resize(&server, &mut ws).await;
    focus(&server, "r", false).await;
    let mut read = Read::default();
    read_to(&mut ws, &mut read, "floods-done").await;
    read_to_the_marker(&server, &mut ws, &mut read).await;
    assert_eq!(
        read.resizes,
        vec![(FIRST_END, 100, 30)],
        "session.resized to 100x30, once"
    );
}

/// A resize whose live event a focused forwarder's queue lost is told by
/// the catch-up after the lag, and not again when the session is focused
/// again: that catch-up compares with the size the client was told.
#[tokio::test]
async fn a_resize_the_forwarder_missed_is_told_once_focused() {
    let _one = FLOODING.lock().await;
    let server = server(&[
        // No update comes while unfocused: only the focus sends more.
        ("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "600000"),
        ("TERMSTREAM_MAX_REPLAY_BYTES", "1000000000"),
    ])
    .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    let replayed = attach_and_lose_a_resize(&server, &mut ws).await;
    let mut read = Read::default();
    read_to(&mut ws, &mut read, "floods-done").await;
    assert!(replays(&server).await > replayed, "the forwarder did not lag");
    assert_eq!(read.resizes, vec![(FIRST_END, 100, 30)], "told while focused, once");
    focus(&server, "r", false).await;
    focus(&server, "r", true).await;
    read_to_the_marker(&server, &mut ws, &mut read).await;
    assert_eq!(read.resizes, vec![(FIRST_END, 100, 30)], "told again on focus");
}

/// An unfocused update that is still sending its output (a 16 MB flood
/// to a socket that does not read) when the session prints more and is
/// resized: the resize is told at its place, after the bytes printed
/// before it. The update looked at the size before the resize, so after
/// its output it told the new size at once, at its own end, before those
/// bytes; the next update found the size told and never moved it.
#[tokio::test]
async fn a_resize_made_while_an_unfocused_update_sends_is_told_at_its_place() {
    let _one = FLOODING.lock().await;
    let script = "read a; head -c 16000000 /dev/zero | tr '\\0' a; \
        read b; echo mid-$b; read c; echo end-$c; exec sleep 600";
    let server = server(&[
        ("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "300"),
        ("TERMSTREAM_MAX_REPLAY_BYTES", "1000000000"),
    ])
    .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    attach(&server, &mut ws, script, "focus").await;
    focus(&server, "r", false).await;
    // The forwarder drops its live receiver before the flood.
    tokio::time::sleep(std::time::Duration::from_millis(200)).await;
    server.input("r", "go\n").await;
    let first = wait_output(&server, FIRST_END, "the flood").await;
    // An update has started since, and waits on the socket: its frames
    // stay queued, as the client reads nothing.
    let stuck = wait_until(secs(45), || async {
        metric(&server, "termstream_outbox_queued_frames").await.unwrap_or(0.0) > 0.0
    })
    .await;
    assert!(stuck, "an update waits on the socket");
    server.input("r", "b\n").await;
    let second = wait_output(&server, first + 10, "mid-b").await;
    resize(&server, 100, 30).await;
    server.input("r", "c\n").await;
    wait_output(&server, second + 10, "end-c").await;

    let mut read = Read::default();
    read_to(&mut ws, &mut read, "end-c").await;
    assert_eq!(
        read.resizes,
        vec![(second, 100, 30)],
        "session.resized once, after mid-b (at {second}), not at an update's end before it"
    );
}
