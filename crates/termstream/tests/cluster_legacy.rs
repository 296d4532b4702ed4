//! The older WebSocket endpoints on a node of a cluster, for sessions
//! another node owns: `/ws/terminal/all` lists them at connect, and streams
//! a session created again under a deleted one's id; `/ws/terminal/{id}`
//! closes when the owner deletes its session, after its `terminal_end`.
//! A session that was `lost` (its node cut off) and runs again when its
//! node comes back is a new copy of the same one: `/ws/terminal/{id}`
//! closes with `session_replaced`, and `/ws/terminal/all`, which sent the
//! lost copy's `terminal_end`, sends a `terminal_start` again before the
//! new copy's output.

mod common;

use std::time::Duration;

use common::cluster::{NOT_LOST, TestCluster, listed, status_is};
use common::ws::{Incoming, WsClient};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);

/// Reads `ws` until the `terminal_output` of `id` holding `text`; the
/// messages before it.
async fn output_of(ws: &mut WsClient, id: &str, text: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + T;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.recv(left).await {
            Some(Incoming::Json(m)) => {
                if m["type"] == "terminal_output"
                    && m["session_id"] == id
                    && m["output"].as_str().is_some_and(|o| o.contains(text))
                {
                    return seen;
                }
                seen.push(m);
            }
            other => panic!("no output {text:?} of {id} ({other:?}); before it: {seen:?}"),
        }
    }
}

#[tokio::test]
async fn one_session_socket_on_another_node_closes_when_the_owner_deletes() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"far","kind":"command","argv":["sleep","1000"]}))
        .await;
    listed(b, "far", T).await.expect("listed on B");
    let mut ws = WsClient::connect_raw(b, "/ws/terminal/far").await;
    assert_eq!(ws.next_json(T).await["type"], "terminal_connected");
    assert_eq!(ws.next_json(T).await["type"], "terminal_start");
    let (status, body) = a.request("DELETE", "/api/sessions/far", None).await;
    assert!(status.is_success(), "{status} {body}");
    let (seen, close) = ws.until_closed(T).await;
    let ends = seen.iter().filter(|m| m["type"] == "terminal_end").count();
    assert_eq!(ends, 1, "one terminal_end before the close: {seen:?}");
    assert_eq!(close, Some((1000, "session_deleted: far".to_owned())), "{seen:?}");
}

#[tokio::test]
async fn all_sessions_socket_on_another_node_lists_follows_and_restreams_a_reused_id() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"early","kind":"command","argv":["sh","-c","read go; echo one-$0","early"]}))
        .await;
    listed(b, "early", T).await.expect("listed on B");
    let mut ws = WsClient::connect_raw(b, "/ws/terminal/all").await;
    assert_eq!(ws.next_json(T).await["type"], "terminal_connected");
    // A session of A, there before the socket: listed at connect.
    let start = ws.next_json(T).await;
    assert_eq!(
        (start["type"].as_str(), start["session_id"].as_str()),
        (Some("terminal_start"), Some("early"))
    );
    a.input("early", "go\n").await;
    output_of(&mut ws, "early", "one-early").await;
    // Deleted on A and created again at once under the same id: the new
    // session's start and output reach the socket.
    let (status, body) = a.request("DELETE", "/api/sessions/early", None).await;
    assert!(status.is_success(), "{status} {body}");
    a.create(json!({"id":"early","kind":"command","argv":["sh","-c","echo two-$0; read go","early"]}))
        .await;
    let before = output_of(&mut ws, "early", "two-early").await;
    assert!(
        before
            .iter()
            .any(|m| m["type"] == "terminal_start" && m["session_id"] == "early"),
        "no terminal_start of the new session: {before:?}"
    );
}

#[tokio::test]
async fn a_lost_session_taken_up_again_is_replaced_and_started_again() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let ticking = "echo started; while true; do echo tick; sleep 0.05; done";
    a.create(json!({"id":"kept","kind":"command","argv":["sh","-c",ticking]}))
        .await;
    listed(b, "kept", T).await.expect("listed on B");
    b.read_output_until("kept", "started", T).await;
    let mut one = WsClient::connect_raw(b, "/ws/terminal/kept").await;
    assert_eq!(one.next_json(T).await["type"], "terminal_connected");
    assert_eq!(one.next_json(T).await["type"], "terminal_start");
    let mut all = WsClient::connect_raw(b, "/ws/terminal/all").await;
    assert_eq!(all.next_json(T).await["type"], "terminal_connected");
    output_of(&mut all, "kept", "tick").await;
    // A is cut off (stopped: its heartbeats stop, its session runs on),
    // then comes back.
    let paused = a.pause();
    status_is(b, "kept", "lost", T).await.expect("marked lost on B");
    drop(paused);
    status_is(b, "kept", "running", T).await.expect("running again on B");
    let (_, close) = one.until_closed(T).await;
    assert_eq!(close, Some((1000, "session_replaced: kept".to_owned())));
    // The lost copy's end, then a new start before any more output.
    let mut ended = false;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = match all.recv(left).await {
            Some(Incoming::Json(m)) if m["session_id"] == "kept" => m,
            Some(_) => continue,
            other => panic!("no new start of the session taken up again ({other:?}); ended: {ended}"),
        };
        match m["type"].as_str() {
            Some("terminal_end") => ended = true,
            Some("terminal_start") if ended => break,
            Some("terminal_output") if ended => panic!("output after the lost copy's end, with no start: {m}"),
            _ => {}
        }
    }
    output_of(&mut all, "kept", "tick").await;
}
