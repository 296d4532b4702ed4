//! A plain attachment whose forwarder lags past a resize is still told
//! the resize, at its place in the output. The forwarder catches up on a
//! lag by reading the missed bytes from the ring or disk, which hold no
//! resize; the `session.resized` that was in the overflowed part of its
//! queue was lost, and the client went on drawing at the old size.

mod common;

use common::ws::{Incoming, WsClient};
use common::{TestServer, secs, wait_until};
use serde_json::json;

/// Floods the pty twice, on a line of input each time, then waits. The
/// first flood is 16,000,000 `a` after the echo of its line (`go\r\n`).
const FLOODS: &str = "read a; head -c 16000000 /dev/zero | tr '\\0' a; \
    read b; head -c 8000000 /dev/zero | tr '\\0' b; echo; echo floods-done; exec sleep 600";

/// Where the first flood ends: its line's echo and its bytes.
const FIRST_END: u64 = 4 + 16_000_000;

/// Whether `r` has printed at least `bytes`.
async fn output_past(server: &TestServer, bytes: u64) -> bool {
    server.info("r").await["outputOffset"].as_u64().unwrap() >= bytes
}

/// What the client read: the output's bytes of each kind, and where the
/// `session.resized` came (how many `a` and `b` had come before it).
#[derive(Default)]
struct Read {
    a: usize,
    b: usize,
    resized_after: Option<(usize, usize)>,
    tail: Vec<u8>,
}

/// The socket stops reading while the session floods (16 MB, more than the
/// outbox and the socket buffers hold), so the forwarder waits on the
/// socket; the resize and 8 MB more output follow (about 128 chunks, far
/// more than the queue's 32 events), which overflow its queue with the
/// resize's event in the part it loses. Then the client
/// reads everything: the resize must come after the whole first flood and
/// before the second.
#[tokio::test]
async fn a_lagging_attachment_is_told_a_resize_at_its_place() {
    // Replayed, not skipped: a screen would carry the size.
    let server = TestServer::start_with(&[], &[("TERMSTREAM_MAX_REPLAY_BYTES", "1000000000")]).await;
    server
        .create(json!({"id":"r","argv":["sh","-c",FLOODS],"cols":80,"rows":24}))
        .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"session.attach","sessionId":"r","output":"binary"}))
        .await;
    let attached = ws.until_type("session.attached", secs(10)).await;
    assert_eq!(
        (attached["cols"].as_u64(), attached["rows"].as_u64()),
        (Some(80), Some(24))
    );
    // The (empty) screen of a fresh attach.
    ws.until_type("terminal.restore", secs(10)).await;
    server.input("r", "go\n").await;
    assert!(
        wait_until(secs(60), || output_past(&server, FIRST_END)).await,
        "the first flood"
    );
    let (status, body) = server
        .post("/api/sessions/r/resize", json!({"cols":100,"rows":30}))
        .await;
    assert_eq!(status, 200, "{body}");
    server.input("r", "more\n").await;
    assert!(
        wait_until(secs(60), || output_past(&server, FIRST_END + 8_000_000)).await,
        "the second flood"
    );

    let mut read = Read::default();
    while !read.tail.windows(11).any(|w| w == b"floods-done") {
        match ws.recv(secs(30)).await {
            Some(Incoming::Output { data, .. }) => {
                read.a += data.iter().filter(|&&c| c == b'a').count();
                read.b += data.iter().filter(|&&c| c == b'b').count();
                read.tail.extend_from_slice(&data);
                read.tail.drain(..read.tail.len().saturating_sub(64));
            }
            Some(Incoming::Json(m)) if m["type"] == "session.resized" => {
                assert_eq!((m["cols"].as_u64(), m["rows"].as_u64()), (Some(100), Some(30)), "{m}");
                assert_eq!(read.resized_after, None, "the resize was told twice: {m}");
                read.resized_after = Some((read.a, read.b));
            }
            Some(Incoming::Json(m)) => panic!("unexpected while reading the floods: {m}"),
            other => panic!("the output ended before floods-done ({other:?})"),
        }
    }
    assert_eq!((read.a, read.b), (16_000_000, 8_000_000), "every byte, once");
    assert_eq!(
        read.resized_after,
        Some((16_000_000, 0)),
        "the session.resized to 100x30 (None: never told, the client draws at 80x24 for good), \
         told after this many a and b"
    );
}
