//! `/ws` backpressure and liveness: a stalled client neither stalls others
//! nor grows the server's memory, and is told what it missed; a peer that
//! answers no pings, and one that takes no replies, is let go; input a
//! program does not read does not hold the socket. Resuming by offset is
//! `gateway_resume.rs`.

mod common;

use std::time::{Duration, Instant};

use common::ws::{Incoming, WsClient};
use common::{TestServer, secs};
use serde_json::json;

/// Round trips of one byte through `stty raw -echo; cat` on session `id`.
async fn echo_times(ws: &mut WsClient, id: &str, n: usize) -> Vec<Duration> {
    let mut times = Vec::new();
    for i in 0..n {
        let ch = (b'a' + (i % 26) as u8) as char;
        let start = Instant::now();
        ws.send(json!({"type":"terminal.input","sessionId":id,"data":ch.to_string()}))
            .await;
        loop {
            match ws.recv(secs(10)).await {
                Some(Incoming::Json(v))
                    if v["type"] == "terminal.output" && v["data"].as_str().unwrap().contains(ch) =>
                {
                    break;
                }
                Some(Incoming::Json(_)) => {}
                other => panic!("no echo: {other:?}"),
            }
        }
        times.push(start.elapsed());
    }
    times
}

/// What the flood's program must write while a client stalls on it: many
/// times what the stalled path can hold (unrelated to the disk cap the
/// test sets, which happens to be the same).
const FLOODED_AT_LEAST: u64 = 64 << 20;

#[tokio::test]
async fn a_stalled_client_stalls_nobody_and_memory_stays_flat() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_DISK_MAX_BYTES", "67108864")]).await;
    server.create(json!({"id":"flood","argv":["yes","termstream"]})).await;
    server
        .create(json!({"id":"echo","argv":["sh","-c","stty raw -echo; cat"]}))
        .await;
    let mut talker = WsClient::connect(&server, "/ws").await;
    talker.attach("echo", "json").await;
    talker.until_type("terminal.restore", secs(10)).await;
    let baseline = echo_times(&mut talker, "echo", 20).await;
    // The stalled client attaches to the flood and never reads again.
    let mut stalled = WsClient::connect(&server, "/ws").await;
    stalled.attach("flood", "binary").await;
    let rss_before = server.rss_bytes();
    let flood_at = |info: serde_json::Value| info["outputOffset"].as_u64().unwrap();
    let flood_before = flood_at(server.info("flood").await);
    let until = Instant::now() + secs(30);
    let mut during = Vec::new();
    while Instant::now() < until {
        during.extend(echo_times(&mut talker, "echo", 10).await);
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let rss_after = server.rss_bytes();
    // Nobody waits for the stalled socket. A broadcast that waited for it
    // would stop the flood's program once the stalled path is full (its
    // outbox, the ring, the kernel's buffers: under 8 MiB), so the program
    // must have gone on far past that (700 MB here beside builds; a slow
    // runner's lane makes 64 MiB in a fraction of the 30 s). A wait that
    // held something shared (a worker, a lock) would hold every echo: each
    // came (`echo_times` gives each 10 s), and the bound on the slowest is
    // loose on purpose for a busy 2-core runner (it read 517 ms there once
    // beside builds); speed is the benchmark's to measure.
    let flooded = flood_at(server.info("flood").await) - flood_before;
    assert!(
        flooded > FLOODED_AT_LEAST,
        "the flood wrote only {flooded} bytes while a client stalled on it"
    );
    let max = |v: &[Duration]| v.iter().max().copied().unwrap_or_default();
    assert!(
        max(&during) < Duration::from_secs(2),
        "echo while a client stalls: max {:?} (before {:?})",
        max(&during),
        max(&baseline)
    );
    let growth = rss_after.saturating_sub(rss_before);
    assert!(
        growth < 48 << 20,
        "server RSS grew {growth} bytes while a client stalled"
    );
    // The stalled client, reading again, is told what it missed and gets the
    // screen instead of gigabytes of history.
    let mut saw_gap = false;
    let deadline = Instant::now() + secs(30);
    while Instant::now() < deadline && !saw_gap {
        match stalled.recv(secs(10)).await {
            Some(Incoming::Json(v)) if v["type"] == "session.gap" => {
                assert_eq!(v["reason"], "slow_client");
                saw_gap = true;
            }
            Some(Incoming::Closed(c)) => panic!("stalled client closed: {c:?}"),
            None => break,
            _ => {}
        }
    }
    assert!(saw_gap, "a gap notice after falling behind");
}

/// A peer that reads nothing answers no pings and is closed (1001) on
/// every endpoint, while a reading one stays.
#[tokio::test]
async fn a_peer_that_does_not_answer_pings_is_closed() {
    let server = TestServer::start_with(
        &[],
        &[
            ("TERMSTREAM_WS_PING_INTERVAL_MS", "100"),
            ("TERMSTREAM_WS_PONG_TIMEOUT_MS", "600"),
        ],
    )
    .await;
    server.create(json!({"id":"quiet","argv":["sleep","600"]})).await;
    // On every endpoint: a client that reads nothing for a while answers no
    // ping; a reading client answers them (the library replies while
    // reading) and stays connected meanwhile.
    let paths = ["/ws", "/ws/terminal/all", "/ws/terminal/quiet"];
    let mut quiet = Vec::new();
    let mut alive = Vec::new();
    for path in paths {
        quiet.push(WsClient::connect_raw(&server, path).await);
        alive.push(WsClient::connect_raw(&server, path).await);
    }
    let start = std::time::Instant::now();
    while start.elapsed() < secs(2) {
        for (client, path) in alive.iter_mut().zip(paths) {
            let got = client.recv(std::time::Duration::from_millis(20)).await;
            assert!(
                got.as_ref().is_none_or(|m| !matches!(m, Incoming::Closed(_))),
                "{path}: a reading client was closed: {got:?}"
            );
        }
    }
    for (client, path) in quiet.iter_mut().zip(paths) {
        let code = loop {
            match client.recv(secs(5)).await {
                Some(Incoming::Closed(code)) => break code,
                Some(_) => continue,
                None => panic!("{path}: the silent peer was not closed"),
            }
        };
        assert_eq!(code, Some(1001), "{path}");
    }
    alive[0].send(json!({"type":"ping"})).await;
    alive[0].until_type("pong", secs(5)).await;
}

/// A client that stops reading while the server owes it replies is let go
/// once a reply has waited the pong timeout: its connection does not hang
/// on forever behind a full outbox (nor does a legacy one).
#[tokio::test]
async fn a_client_that_takes_no_replies_is_let_go() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_WS_PONG_TIMEOUT_MS", "1000")]).await;
    // More than the outbox and the socket buffers hold, then quiet.
    let burst = "head -c 48000000 /dev/zero | tr '\\0' a; exec sleep 600";
    server.create(json!({"id":"burst","argv":["sh","-c",burst]})).await;
    for path in ["/ws", "/ws/terminal/burst"] {
        let before = server.fd_count();
        let mut client = WsClient::connect_raw(&server, path).await;
        if path == "/ws" {
            client.attach("burst", "binary").await;
        }
        // Replies are asked for until the server gives up on this client,
        // which reads nothing.
        let deadline = std::time::Instant::now() + secs(40);
        let mut gone = false;
        while !gone && std::time::Instant::now() < deadline {
            let sent = tokio::time::timeout(Duration::from_millis(200), client.try_send(json!({"type":"ping"}))).await;
            gone = matches!(sent, Ok(false)) || server.fd_count() <= before;
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        assert!(gone, "{path}: the server still holds a client that reads nothing");
    }
}

/// Input to a program that does not read it does not hold the socket: the
/// client is soon told `busy`, with how much was taken, and the socket's
/// other sessions are served meanwhile.
#[tokio::test]
async fn input_a_program_does_not_read_does_not_hold_the_socket() {
    let server = TestServer::start().await;
    server
        .create(json!({"id":"deaf","kind":"command","argv":["sleep","600"]}))
        .await;
    server
        .create(json!({"id":"echo","argv":["sh","-c","stty raw -echo; echo ready; cat"]}))
        .await;
    server.read_output_until("echo", "ready", secs(10)).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.attach("echo", "json").await;
    // More than the input queue (1 MiB) and the pipe hold together.
    let piece = "a".repeat(700_000);
    for _ in 0..3 {
        ws.send(json!({"type":"terminal.input","sessionId":"deaf","data":piece}))
            .await;
    }
    let err = ws.until_type("error", secs(10)).await;
    assert_eq!(
        (err["code"].as_str(), err["sessionId"].as_str()),
        (Some("busy"), Some("deaf")),
        "{err}"
    );
    assert!(
        err["message"].as_str().unwrap().contains("of 700000 bytes were taken"),
        "{err}"
    );
    ws.send(json!({"type":"terminal.input","sessionId":"echo","data":"still-here"}))
        .await;
    let mut seen = String::new();
    while !seen.contains("still-here") {
        match ws.recv(secs(10)).await {
            Some(Incoming::Json(v)) if v["type"] == "terminal.output" && v["sessionId"] == "echo" => {
                seen.push_str(v["data"].as_str().unwrap())
            }
            Some(_) => {}
            None => panic!("the other session's echo did not come: {seen:?}"),
        }
    }
}
