//! Window sizes are bounded: a create or resize past `max_cols` ×
//! `max_rows` is refused on every path (REST 422 `invalid_message`, an
//! `error` with code `invalid_message` on sockets) and the server and the
//! connection carry on; a session at the largest size that prints a lot
//! keeps the server's memory within the screen model's budget. A
//! 65535 × 65535 window once made the screen model allocate every cell and
//! the server abort.

mod common;

use common::ws::WsClient;
use common::{TestServer, secs};
use serde_json::json;

#[tokio::test]
async fn windows_past_the_largest_are_refused_everywhere() {
    let server = TestServer::start().await;
    for (body, what) in [
        (json!({"argv":["cat"],"cols":65535,"rows":65535}), "65535x65535"),
        (json!({"argv":["cat"],"cols":1001,"rows":24}), "too wide"),
        (json!({"argv":["cat"],"cols":80,"rows":1001}), "too tall"),
        (
            json!({"kind":"command","argv":["true"],"cols":65535,"rows":1}),
            "a command session too",
        ),
    ] {
        let (status, err) = server.post("/api/sessions", body).await;
        assert_eq!(
            (status.as_u16(), err["error"]["code"].as_str()),
            (422, Some("invalid_message")),
            "{what}: {err}"
        );
    }
    // The largest window is accepted.
    let info = server
        .create(json!({"id":"big","argv":["cat"],"cols":1000,"rows":1000}))
        .await;
    assert_eq!((info["cols"].as_u64(), info["rows"].as_u64()), (Some(1000), Some(1000)));

    // REST resize.
    let (status, err) = server
        .post("/api/sessions/big/resize", json!({"cols":65535,"rows":65535}))
        .await;
    assert_eq!(
        (status.as_u16(), err["error"]["code"].as_str()),
        (422, Some("invalid_message")),
        "{err}"
    );

    // `/ws` in both dialects: an error, and the socket carries on.
    let mut ws = WsClient::connect(&server, "/ws").await;
    for msg in [
        json!({"type":"terminal.resize","sessionId":"big","cols":65535,"rows":65535}),
        json!({"type":"terminal_resize","sessionName":"big","cols":1001,"rows":1000}),
    ] {
        ws.send(msg.clone()).await;
        let err = ws.until_type("error", secs(10)).await;
        assert_eq!(
            (err["code"].as_str(), err["sessionId"].as_str()),
            (Some("invalid_message"), Some("big")),
            "{msg}: {err}"
        );
    }
    ws.send(json!({"type":"ping"})).await;
    ws.until_type("pong", secs(10)).await;

    // The older one-session socket.
    let mut legacy = WsClient::connect_raw(&server, "/ws/terminal/big").await;
    legacy.until_type("terminal_start", secs(10)).await;
    legacy
        .send(json!({"type":"terminal_resize","cols":65535,"rows":65535}))
        .await;
    let err = legacy.until_type("error", secs(10)).await;
    assert!(err["message"].as_str().unwrap().starts_with("invalid_message"), "{err}");
    legacy.send(json!({"type":"ping"})).await;
    legacy.until_type("pong", secs(10)).await;

    // Nothing changed size, and the server is well.
    let info = server.info("big").await;
    assert_eq!((info["cols"].as_u64(), info["rows"].as_u64()), (Some(1000), Some(1000)));
    let (status, _) = server
        .post("/api/sessions/big/resize", json!({"cols":1000,"rows":999}))
        .await;
    assert_eq!(status, 200);
    assert_eq!(server.get("/health").await.0, 200);
}

/// A session at the largest window printing far more lines than fit, with
/// a scrollback setting far larger than fits: the screen model stays
/// within its budget (64 MiB). Unbounded, 20,000 lines of 1000 cells
/// (16 bytes each) held 320 MB.
#[tokio::test]
async fn a_session_at_the_largest_size_keeps_memory_bounded() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_SCROLLBACK_LINES", "100000")]).await;
    let before = server.rss_bytes();
    server
        .create(json!({"id":"big","argv":["seq","1","20000"],"cols":1000,"rows":1000}))
        .await;
    server.wait_status("big", "exited", secs(20)).await;
    // The snapshot makes the model catch up with every line.
    let (status, snap) = server.get("/api/sessions/big/snapshot").await;
    assert_eq!(status, 200, "{snap}");
    assert!(snap["data"].as_str().unwrap().contains("20000"));
    let grown = server.rss_bytes().saturating_sub(before);
    eprintln!("server RSS grew by {} MiB", grown >> 20);
    assert!(grown < 128 << 20, "server RSS grew by {} MiB", grown >> 20);
}
