//! `/ws` resume: a client that drops mid-stream and comes back with
//! `since` gets exactly the missing bytes (and a resize it missed, at its
//! place); a client too far behind, or resuming from output deleted from
//! disk, gets a snapshot and a gap notice; `session.attached` says where
//! live output starts. Backpressure (stalled and silent peers, input a
//! program does not read) is `gateway_backpressure.rs`.

mod common;

use common::ws::{Incoming, WsClient};
use common::{TestServer, secs};
use serde_json::json;

/// Reads binary output of `id` until at least `want` bytes arrived; returns
/// the bytes and the epoch.
async fn read_some(ws: &mut WsClient, id: &str, want: usize) -> (Vec<u8>, String) {
    let attached = ws.until_type("session.attached", secs(10)).await;
    let epoch = attached["epoch"].as_str().unwrap().to_owned();
    let mut next = attached["offset"].as_u64().unwrap();
    let mut data = Vec::new();
    while data.len() < want {
        match ws.recv(secs(20)).await {
            Some(Incoming::Output {
                session,
                offset,
                data: d,
                ..
            }) if session == id => {
                assert_eq!(offset, next);
                next += d.len() as u64;
                data.extend_from_slice(&d);
            }
            Some(Incoming::Json(_)) => {}
            other => panic!("{other:?}"),
        }
    }
    (data, epoch)
}

#[tokio::test]
async fn a_reconnecting_client_gets_exactly_the_missing_bytes() {
    let server = TestServer::start().await;
    // Enough output that the client drops in the middle of it.
    server
        .create(json!({"id":"long","kind":"command","argv":["sh","-c","read go; seq 1 400000"]}))
        .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"session.attach","sessionId":"long","output":"binary"}))
        .await;
    server.input("long", "go\n").await;
    let (first, epoch) = read_some(&mut ws, "long", 100_000).await;
    drop(ws); // the laptop sleeps
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"session.attach","sessionId":"long","output":"binary",
        "since":{"epoch":epoch,"offset":first.len()}}))
        .await;
    let got = ws.collect_until_exit(&["long"], secs(60)).await;
    let attached = &got[0].messages[0];
    assert_eq!(attached["type"], "session.attached");
    assert_eq!(attached["recovered"], true);
    assert_eq!(attached["offset"], first.len() as u64);
    let mut all = first;
    all.extend_from_slice(&got[0].data);
    let expected: String = (1..=400000).map(|i| format!("{i}\n")).collect();
    assert!(
        all == expected.as_bytes(),
        "every byte once, in order ({} of {})",
        all.len(),
        expected.len()
    );
}

#[tokio::test]
async fn resuming_a_pty_session_with_since_replays_the_bytes() {
    let server = TestServer::start().await;
    server
        .create(json!({"id":"p","argv":["bash","--norc","--noprofile"]}))
        .await;
    server.read_output_until("p", "bash", secs(10)).await;
    let info = server.info("p").await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    let mark = info["outputOffset"].as_u64().unwrap();
    server.input("p", "echo resumed-$((7*6))\r").await;
    server.read_output_until("p", "resumed-42", secs(10)).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"session.attach","sessionId":"p","since":{"epoch":epoch,"offset":mark}}))
        .await;
    let attached = ws.until_type("session.attached", secs(10)).await;
    assert_eq!(attached["recovered"], true);
    let out = ws.until_type("terminal.output", secs(10)).await;
    assert_eq!(
        out["offset"], mark,
        "output resumes at the offset asked for, with no snapshot"
    );
    assert!(out["data"].as_str().unwrap().contains("resumed-42"));
    // Input sent again after a reconnect with a seq already applied is not
    // applied twice.
    ws.send(json!({"type":"terminal.input","sessionId":"p","data":"echo once-$((1+1))\r","seq":7}))
        .await;
    let mut again = WsClient::connect(&server, &format!("/ws?clientId={}", ws.client_id)).await;
    again
        .send(json!({"type":"terminal.input","sessionId":"p","data":"echo once-$((1+1))\r","seq":7}))
        .await;
    again
        .send(json!({"type":"terminal.input","sessionId":"p","data":"echo after-$((2+2))\r","seq":8}))
        .await;
    let text = server.read_output_until("p", "after-4\r", secs(10)).await;
    assert_eq!(text.matches("once-2\r").count(), 1, "{text}");
}

/// A replay that crosses a resize carries `session.resized` at its place:
/// after the output from before it, before the output drawn at the new
/// size. The resize's live event went out while this client was away, so
/// without it the client would draw what follows at the old size (a page's
/// full-screen program drawn into too few rows).
#[tokio::test]
async fn a_resume_from_before_a_resize_gets_the_resize_at_its_place() {
    let server = TestServer::start().await;
    server
        .create(json!({"id":"r","argv":["bash","--norc","--noprofile"],"cols":80,"rows":24}))
        .await;
    server.read_output_until("r", "bash", secs(10)).await;
    let info = server.info("r").await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    let mark = info["outputOffset"].as_u64().unwrap();
    server.input("r", "echo before-$((1+1))\r").await;
    server.read_output_until("r", "before-2", secs(10)).await;
    let mut sizer = WsClient::connect(&server, "/ws").await;
    sizer.attach("r", "binary").await;
    // Attached (so following the session) before resizing: a resize made
    // before the attach's snapshot is in the snapshot, with no
    // session.resized to wait for.
    sizer.until_type("session.attached", secs(10)).await;
    sizer
        .send(json!({"type":"terminal.resize","sessionId":"r","cols":100,"rows":30}))
        .await;
    sizer.until_type("session.resized", secs(10)).await;
    server.input("r", "echo after-$((2+2))\r").await;
    server.read_output_until("r", "after-4", secs(10)).await;

    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"session.attach","sessionId":"r","output":"binary",
        "since":{"epoch":epoch,"offset":mark}}))
        .await;
    ws.until_type("session.attached", secs(10)).await;
    ws.assert_resize_between("before-2", "after-4", (100, 30), secs(10))
        .await;
}

#[tokio::test]
async fn an_unknown_epoch_or_a_far_offset_gets_a_snapshot_and_a_gap_notice() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_MAX_REPLAY_BYTES", "10000")]).await;
    server
        .create(json!({"id":"p","argv":["bash","--norc","--noprofile"]}))
        .await;
    server.input("p", "seq 1 20000; echo end-$((3*3))\r").await;
    server.read_output_until("p", "end-9", secs(20)).await;
    let epoch = server.info("p").await["epoch"].as_str().unwrap().to_owned();
    for since in [
        json!({"epoch":"00000000000000aa","offset":5}),
        json!({"epoch":epoch,"offset":10}),
    ] {
        let mut ws = WsClient::connect(&server, "/ws").await;
        ws.send(json!({"type":"session.attach","sessionId":"p","since":since}))
            .await;
        let attached = ws.until_type("session.attached", secs(10)).await;
        assert_eq!(attached["recovered"], false);
        let gap = ws.next_json(secs(10)).await;
        assert_eq!(gap["type"], "session.gap", "{gap}");
        assert_eq!(gap["recovered"], false);
        assert_eq!(gap["to"], attached["offset"]);
        let restore = ws.next_json(secs(10)).await;
        assert_eq!(restore["type"], "terminal.restore");
        assert!(restore["data"].as_str().unwrap().contains("end-9"));
    }
}

/// A resume from output deleted from disk is not exact and says so:
/// `session.attached` with `recovered: false`, then the gap (`evicted`) up
/// to the attached offset, then the screen (pty) or the output from the
/// earliest offset held (command). It once said `recovered: true` and
/// announced the gap after.
#[tokio::test]
async fn a_resume_from_deleted_output_is_not_recovered() {
    let server = TestServer::start_with(
        &[],
        &[
            ("TERMSTREAM_RING_BYTES", "4096"),
            ("TERMSTREAM_DISK_SEGMENT_BYTES", "4096"),
            ("TERMSTREAM_DISK_MAX_BYTES", "8192"),
        ],
    )
    .await;
    server
        .create(json!({"id":"c","kind":"command","argv":["seq","1","100000"]}))
        .await;
    server.create(json!({"id":"p","argv":["seq","1","100000"]})).await;
    for id in ["c", "p"] {
        let info = server.wait_status(id, "exited", secs(20)).await;
        let end = info["outputOffset"].as_u64().unwrap();
        assert!(end > 500_000, "{info}");
        let mut ws = WsClient::connect(&server, "/ws").await;
        ws.send(json!({"type":"session.attach","sessionId":id,"output":"json",
            "since":{"epoch":info["epoch"],"offset":0}}))
            .await;
        // The project's focus state comes first (the attach touched it).
        let status = ws.next_json(secs(10)).await;
        assert_eq!(status["type"], "connection_status", "{status}");
        let attached = ws.next_json(secs(10)).await;
        assert_eq!(attached["type"], "session.attached", "{attached}");
        assert_eq!(attached["recovered"], false, "{id}: {attached}");
        let start = attached["offset"].as_u64().unwrap();
        assert!(start > 0, "{id}: {attached}");
        let gap = ws.next_json(secs(10)).await;
        assert_eq!(
            (
                gap["type"].as_str(),
                gap["reason"].as_str(),
                gap["from"].as_u64(),
                gap["to"].as_u64()
            ),
            (Some("session.gap"), Some("evicted"), Some(0), Some(start)),
            "{id}: {gap}"
        );
        if id == "p" {
            let restore = ws.next_json(secs(10)).await;
            assert_eq!(restore["type"], "terminal.restore", "{restore}");
            assert!(restore["data"].as_str().unwrap().contains("100000"));
            continue;
        }
        // The command's output from the earliest offset held, to its end,
        // with no second gap.
        let mut next = start;
        loop {
            let msg = ws.next_json(secs(10)).await;
            match msg["type"].as_str() {
                Some("terminal.output") => {
                    assert_eq!(msg["offset"].as_u64(), Some(next), "{msg}");
                    next += msg["data"].as_str().unwrap().len() as u64;
                }
                Some("session.exit") => break,
                _ => panic!("{id}: unexpected {msg}"),
            }
        }
        assert_eq!(next, end);
    }
}

/// `session.attached` says where live output starts (`end`, the log's end
/// when the attachment subscribed), so a client knows which output is a
/// replay of what was printed before it attached: with `since`, and on a
/// fresh attach. The flat dialect keeps its old shape, without `end`.
#[tokio::test]
async fn session_attached_carries_the_log_end_at_the_attach() {
    let server = TestServer::start().await;
    server
        .create(json!({"id":"e","kind":"command","argv":["sh","-c","printf 0123456789; read x"]}))
        .await;
    let printed = common::wait_until(secs(10), || async {
        server.info("e").await["outputOffset"].as_u64() == Some(10)
    })
    .await;
    assert!(printed, "the program printed its 10 bytes");
    let epoch = server.info("e").await["epoch"].as_str().unwrap().to_owned();

    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"session.attach","sessionId":"e","output":"binary",
        "since":{"epoch":epoch,"offset":3}}))
        .await;
    let attached = ws.until_type("session.attached", secs(10)).await;
    assert_eq!(attached["recovered"], true, "{attached}");
    assert_eq!(attached["offset"], 3, "{attached}");
    assert_eq!(attached["end"], 10, "{attached}");

    let mut fresh = WsClient::connect(&server, "/ws").await;
    fresh.attach("e", "binary").await;
    let attached = fresh.until_type("session.attached", secs(10)).await;
    assert_eq!(attached["end"], 10, "{attached}");

    let mut flat = WsClient::connect(&server, "/ws").await;
    flat.send(json!({"type":"terminal_attach","sessionName":"e"})).await;
    let attached = flat.until_type("terminal_attached", secs(10)).await;
    assert!(attached.get("end").is_none(), "{attached}");
}
