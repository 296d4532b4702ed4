//! The older WebSocket endpoints when sessions are deleted.
//!
//! `/ws/terminal/{id}` closes (1000, `session_deleted: ID`) once its
//! session is deleted, after the session's `terminal_end`, sent once:
//! whether the session was running (deleted before its program's exit was
//! seen: `exit_code` null) or had ended.
//!
//! A slow reader still gets every byte, the `terminal_end` and the close:
//! the server waits for the client's close reply (within the pong
//! timeout) before it drops the connection, whose reset would have the
//! client's kernel drop what it had not read.
//!
//! A shutdown does not wait for such a close reply.
//!
//! `/ws/terminal/all` lets the forwarder of a session deleted right after
//! its exit send its last output and `terminal_end`, all before the
//! `terminal_start` of a new session under its id; it keeps only so many
//! such forwarders for a client that does not read. It keeps its
//! bookkeeping in step with the registry even when it misses changes: a
//! burst of deletes larger than `session_changes_queue` (1 here; evictions
//! past `max_sessions`, made in one step by a create) makes it lag, for
//! real, and it resynchronizes; the ids it missed the deletes of are then
//! created again, and the new sessions' starts and output reach the
//! socket.

mod common;

use std::time::Duration;

use common::metrics::metric;
use common::ws::{Incoming, WsClient};
use common::{TestServer, secs, wait_until};
use serde_json::{Value, json};

async fn delete(server: &TestServer, id: &str) {
    let (status, body) = server.request("DELETE", &format!("/api/sessions/{id}"), None).await;
    assert!(status.is_success(), "delete {id} answered {status} {body}");
}

fn types(msgs: &[Value]) -> Vec<&str> {
    msgs.iter().map(|m| m["type"].as_str().unwrap_or("?")).collect()
}

#[tokio::test]
async fn one_session_socket_closes_when_its_running_session_is_deleted() {
    let server = TestServer::start().await;
    server
        .create(json!({"id":"busy","kind":"command","argv":["sleep","1000"]}))
        .await;
    let mut ws = WsClient::connect_raw(&server, "/ws/terminal/busy").await;
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_connected");
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_start");
    delete(&server, "busy").await;
    let (seen, close) = ws.until_closed(secs(10)).await;
    let ends: Vec<&Value> = seen.iter().filter(|m| m["type"] == "terminal_end").collect();
    assert_eq!(ends.len(), 1, "one terminal_end before the close: {seen:?}");
    // Deleted while running: no exit code, and the time it ran.
    assert_eq!(ends[0]["exit_code"], Value::Null, "{}", ends[0]);
    assert!(ends[0]["duration"].as_f64().is_some_and(|d| d >= 0.0), "{}", ends[0]);
    assert_eq!(
        seen.last().map(|m| &m["type"]),
        Some(&json!("terminal_end")),
        "{seen:?}"
    );
    assert_eq!(close, Some((1000, "session_deleted: busy".to_owned())), "{seen:?}");
}

#[tokio::test]
async fn one_session_socket_of_an_ended_session_closes_at_its_delete() {
    let server = TestServer::start().await;
    server
        .create(json!({"id":"done","kind":"command","argv":["sh","-c","read go; echo bye; exit 3"]}))
        .await;
    let mut ws = WsClient::connect_raw(&server, "/ws/terminal/done").await;
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_connected");
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_start");
    server.input("done", "go\n").await;
    let end = ws.until_type("terminal_end", secs(10)).await;
    assert_eq!(end["exit_code"], 3);
    // Ended, not deleted: the socket stays open.
    assert!(ws.recv(Duration::from_millis(300)).await.is_none());
    delete(&server, "done").await;
    let (seen, close) = ws.until_closed(secs(10)).await;
    assert_eq!(types(&seen), Vec::<&str>::new(), "nothing after the end but the close");
    assert_eq!(close, Some((1000, "session_deleted: done".to_owned())));
}

#[tokio::test]
async fn all_sessions_socket_resynchronizes_after_missing_deletes() {
    const N: usize = 16;
    let server = TestServer::start_logged(
        &[],
        &[
            ("TERMSTREAM_SESSION_CHANGES_QUEUE", "1"),
            ("TERMSTREAM_MAX_SESSIONS", "1"),
            ("RUST_LOG", "termstream::gateway::legacy=debug"),
        ],
    )
    .await;
    let ids: Vec<String> = (0..N).map(|i| format!("a{i}")).collect();
    // Running, so that none is evicted yet: past `max_sessions`, only
    // ended sessions go.
    for id in &ids {
        server
            .create(json!({"id":id,"kind":"command","argv":["sh","-c","read go"]}))
            .await;
    }
    let mut ws = WsClient::connect_raw(&server, "/ws/terminal/all").await;
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_connected");
    let mut started = 0;
    while started < N {
        if ws.next_json(secs(10)).await["type"] == "terminal_start" {
            started += 1;
        }
    }
    // One create evicts the N ended sessions in one step: N deletes in a
    // row into a queue of 1.
    server.end_and_evict(&ids, "trigger").await;
    // The same ids again: new sessions, whose output must reach the socket.
    for id in &ids {
        server
            .create(json!({"id":id,"kind":"command","argv":["sh","-c","echo again-$0; read go", id]}))
            .await;
    }
    let mut missing: Vec<String> = ids.iter().map(|id| format!("again-{id}\n")).collect();
    let deadline = tokio::time::Instant::now() + secs(20);
    while !missing.is_empty() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.recv(left).await {
            Some(Incoming::Json(m)) if m["type"] == "terminal_output" => {
                let out = m["output"].as_str().unwrap_or_default();
                missing.retain(|want| want != out);
            }
            Some(Incoming::Json(_)) => {}
            other => panic!("the output of {missing:?} never came ({other:?})"),
        }
    }
    // The lag was real: the socket's task said it resynchronized.
    assert!(
        server.log().contains("missed session changes"),
        "no lag was produced: {}",
        server.log()
    );
}

#[tokio::test]
async fn one_session_socket_of_a_slow_reader_gets_all_output_before_the_close() {
    // Within the ring: the legacy shape skips what a slow reader lost.
    const SIZE: u64 = 512 << 10;
    let server = TestServer::start().await;
    let script = format!("head -c {SIZE} /dev/zero | tr '\\0' a; sleep 1000");
    server
        .create(json!({"id":"big","kind":"command","argv":["sh","-c",script]}))
        .await;
    let mut ws = WsClient::connect_raw(&server, "/ws/terminal/big").await;
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_connected");
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_start");
    // The socket is not read while all is printed and the session deleted.
    assert!(
        wait_until(secs(30), || async {
            server.info("big").await["outputOffset"].as_u64() == Some(SIZE)
        })
        .await,
        "the session did not print its {SIZE} bytes: {}",
        server.info("big").await
    );
    delete(&server, "big").await;
    // Longer than a close's short wait, and the client sends before it
    // reads (as one typing does): to a connection the server dropped, that
    // is answered by a reset.
    tokio::time::sleep(Duration::from_secs(2)).await;
    ws.send(json!({"type":"ping"})).await;
    let (seen, close) = ws.until_closed(secs(30)).await;
    let got: usize = seen
        .iter()
        .filter(|m| m["type"] == "terminal_output")
        .map(|m| m["output"].as_str().map_or(0, str::len))
        .sum();
    let last = seen.last().map(|m| m["type"].clone());
    assert_eq!(got as u64, SIZE, "bytes before the close {close:?}, last {last:?}");
    assert_eq!(last, Some(json!("terminal_end")), "{close:?}");
    assert_eq!(close, Some((1000, "session_deleted: big".to_owned())));
}

/// A `/ws/terminal/all` socket that reads slowly (over a 4 KiB receive
/// buffer), and `gush`, a session that printed more than the socket's
/// budget and the kernel's buffers hold, ended and was deleted while its
/// output still waits in the server.
async fn gush_deleted(server: &TestServer) -> WsClient {
    let mut ws = WsClient::connect_narrow(server, "/ws/terminal/all", 4096).await;
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_connected");
    server
        .create(json!({"id":"gush","kind":"command","argv":["sh","-c","head -c 4194304 /dev/zero | tr '\\0' b"]}))
        .await;
    server.wait_status("gush", "exited", secs(30)).await;
    delete(server, "gush").await;
    ws
}

/// A session deleted right after its exit, while `/ws/terminal/all` still
/// has its output to send (the client reads slowly, over a 4 KiB receive
/// buffer, so the output waits in the server): the socket still gets the
/// session's `terminal_end`.
#[tokio::test]
async fn all_sessions_socket_gets_the_end_of_a_session_deleted_right_after_its_exit() {
    let server = TestServer::start().await;
    let mut ws = gush_deleted(&server).await;
    // (The only session on the socket.)
    let end = ws.until_type("terminal_end", secs(30)).await;
    assert_eq!(end["session_id"], "gush", "{end}");
    assert_eq!(end["exit_code"], 0, "{end}");
}

/// A session deleted while `/ws/terminal/all` still has its output to
/// send (a slow reader), and at once created again under its id: the old
/// session's output and `terminal_end` all come before the new one's
/// `terminal_start`, and nothing of the old one after it.
#[tokio::test]
async fn all_sessions_socket_ends_a_deleted_session_before_a_new_one_under_its_id() {
    let server = TestServer::start().await;
    let mut ws = gush_deleted(&server).await;
    server
        .create(json!({"id":"gush","kind":"command","argv":["echo","second"]}))
        .await;
    let (mut starts, mut first_end, mut second) = (0, false, String::new());
    let deadline = tokio::time::Instant::now() + secs(60);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = match ws.recv(left).await {
            Some(Incoming::Json(m)) if m["session_id"] == "gush" => m,
            Some(Incoming::Json(_)) => continue,
            other => panic!("the sessions' ends never came ({other:?}): starts {starts}, first end {first_end}"),
        };
        match m["type"].as_str() {
            Some("terminal_start") => {
                starts += 1;
                assert!(starts == 1 || first_end, "the second start before the first's end");
            }
            Some("terminal_output") if starts == 2 => {
                let out = m["output"].as_str().unwrap_or_default();
                assert!(
                    !out.contains('b'),
                    "the first's output after the second start: {out:.40}"
                );
                second.push_str(out);
            }
            Some("terminal_end") if starts == 1 => {
                assert!(!first_end, "two ends of the first: {m}");
                assert_eq!(m["exit_code"], 0, "{m}");
                first_end = true;
            }
            Some("terminal_end") => {
                assert_eq!(second, "second\n", "{m}");
                break;
            }
            _ => {}
        }
    }
}

/// `/ws/terminal/all` of a client that never reads, while many sessions
/// print more than it takes and are deleted: it keeps only so many of
/// their forwarders (32, and the session streamed), not one per deleted
/// session until the client goes.
#[tokio::test]
async fn all_sessions_socket_keeps_a_bounded_number_of_deleted_sessions_forwarders() {
    const N: usize = 100;
    const GAUGE: &str = "termstream_attachments{endpoint=\"legacy\"}";
    let server = TestServer::start().await;
    let mut ws = WsClient::connect_narrow(&server, "/ws/terminal/all", 4096).await;
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_connected");
    // Not read again: the socket's budget fills with the first sessions'
    // output, and every later forwarder waits for room.
    for i in 0..N {
        let id = format!("f{i}");
        server
            .create(json!({"id":id,"kind":"command","argv":["sh","-c","head -c 262144 /dev/zero | tr '\\0' c"]}))
            .await;
        server.wait_status(&id, "exited", secs(30)).await;
        delete(&server, &id).await;
    }
    let last = std::cell::Cell::new(None);
    let bounded = wait_until(secs(10), || async {
        last.set(metric(&server, GAUGE).await);
        last.get().is_some_and(|g| g <= 33.0)
    })
    .await;
    let last = last.get();
    assert!(bounded, "{GAUGE} stayed at {last:?} after {N} deletes");
    // They were held for real: the last 32 still wait for room.
    assert!(last.is_some_and(|g| g >= 16.0), "{GAUGE} is {last:?}");
    drop(ws);
}

/// A `/ws/terminal/{id}` socket waiting for its client's close reply after
/// its session's delete (the client read the `terminal_end` and stopped
/// reading, so it never answers the close) does not hold up a shutdown:
/// the server does not wait out its sockets.
#[tokio::test]
async fn one_session_socket_waiting_for_a_close_reply_does_not_hold_up_a_shutdown() {
    const GAUGE: &str = "termstream_attachments{endpoint=\"legacy\"}";
    let mut server = TestServer::start_logged(&[], &[]).await;
    server
        .create(json!({"id":"quiet","kind":"command","argv":["sh","-c","echo hi; sleep 1000"]}))
        .await;
    let mut ws = WsClient::connect_raw(&server, "/ws/terminal/quiet").await;
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_connected");
    assert_eq!(ws.next_json(secs(10)).await["type"], "terminal_start");
    delete(&server, "quiet").await;
    ws.until_type("terminal_end", secs(10)).await;
    // The forwarder is gone once it told the socket's task of the delete.
    assert!(
        wait_until(secs(10), || async { metric(&server, GAUGE).await == Some(0.0) }).await,
        "the forwarder did not end at the delete"
    );
    server.sigterm();
    assert!(server.exited(secs(10)).await.is_some(), "the server did not exit");
    assert!(
        !server.log().contains("sockets still open"),
        "the shutdown waited for the socket: {}",
        server.log()
    );
    drop(ws);
}
