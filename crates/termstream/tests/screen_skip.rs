//! A late joiner after a flood of plain text that the screen model skipped
//! (parsing only its last screen and scrollback of lines) gets exactly the
//! screen of a model that parsed every byte, through the real server.

mod common;

use common::ws::{Incoming, WsClient};
use common::{TestServer, secs};
use serde_json::json;
use termstream::session::screen::ScreenModel;

#[tokio::test]
async fn a_late_joiner_after_a_skipped_flood_gets_the_exact_screen() {
    let server = TestServer::start().await;
    // State set before the flood and never reset (bold yellow, bracketed
    // paste), a flood of about 1.3 MB of plain lines, escapes after it.
    let script = "printf '\\033[1;33mbold yellow \\033[?2004h'; read x; seq 1 200000; \
                  printf '\\033[31mred\\033[m end\\r\\n'; exec sleep 100";
    server
        .create(json!({"id":"flood","argv":["sh","-c",script],"cols":80,"rows":24}))
        .await;
    // A viewer from the log's start (so that the model follows the flood
    // while it runs), collecting every byte.
    let mut viewer = WsClient::connect(&server, "/ws").await;
    viewer
        .send(json!({"type":"session.attach","sessionId":"flood","output":"binary",
                     "since":{"epoch":server.info("flood").await["epoch"],"offset":0}}))
        .await;
    viewer.until_type("session.attached", secs(10)).await;
    viewer
        .send(json!({"type":"terminal.input","sessionId":"flood","data":"go\r"}))
        .await;
    let mut log: Vec<u8> = Vec::new();
    let deadline = std::time::Instant::now() + secs(60);
    while !log.windows(7).any(|w| w == b"\x1b[m end") {
        assert!(std::time::Instant::now() < deadline, "no end after {} bytes", log.len());
        match viewer.recv(secs(30)).await {
            Some(Incoming::Output { offset, data, .. }) => {
                assert_eq!(offset, log.len() as u64, "output in order");
                log.extend_from_slice(&data);
            }
            Some(Incoming::Json(_)) => {}
            other => panic!("the flood did not end: {other:?} after {} bytes", log.len()),
        }
    }
    assert!(log.len() > 1_000_000, "a flood: {} bytes", log.len());
    let mut joiner = WsClient::connect(&server, "/ws").await;
    joiner.attach("flood", "binary").await;
    let restore = joiner.until_type("terminal.restore", secs(30)).await;
    let at = restore["offset"].as_u64().expect("offset") as usize;
    assert!(at <= log.len() && at > 1_000_000, "restore at {at} of {}", log.len());
    let mut parsed = ScreenModel::new(80, 24, 1000);
    parsed.feed(&log[..at]);
    assert_eq!(
        restore["data"].as_str().expect("data"),
        parsed.snapshot(),
        "the late joiner's screen is the model that parsed every byte"
    );
    assert!(parsed.text().iter().any(|l| l.contains("200000")));
}
