//! The older WebSocket endpoints on a node of a cluster, for sessions
//! another node owns: `/ws/terminal/all` lists them at connect, and streams
//! a session created again under a deleted one's id; `/ws/terminal/{id}`
//! closes when the owner deletes its session, after its `terminal_end`.
//! A session that was `lost` (its node cut off) and runs again when its
//! node comes back is a new copy of the same one: `/ws/terminal/{id}`
//! closes with `session_replaced`, and `/ws/terminal/all`, which sent the
//! lost copy's `terminal_end`, sends a `terminal_start` again before the
//! new copy's output. A session whose copy the node let go of (its record
//! missed in three directory reads) and lists again goes on, on
//! `/ws/terminal/all`, where the client got: no second `terminal_start`,
//! no byte twice, and nothing more for a session whose end it had.

mod common;

use std::time::Duration;

use common::cluster::{NOT_LOST, TestCluster, listed, owner_away_with_redis_emptied, status_is};
use common::wait_until;
use common::ws::{Incoming, WsClient};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);

/// Reads `ws` until the `terminal_output` of `id` holding `text`; the
/// messages before it.
async fn output_of(ws: &mut WsClient, id: &str, text: &str) -> Vec<Value> {
    let mut seen = through_output(ws, id, text).await;
    seen.pop();
    seen
}

/// Reads `ws` until the `terminal_output` of `id` holding `text`; every
/// message up to it, that one included.
async fn through_output(ws: &mut WsClient, id: &str, text: &str) -> Vec<Value> {
    let deadline = tokio::time::Instant::now() + T;
    let mut seen = Vec::new();
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.recv(left).await {
            Some(Incoming::Json(m)) => {
                let hit = m["type"] == "terminal_output"
                    && m["session_id"] == id
                    && m["output"].as_str().is_some_and(|o| o.contains(text));
                seen.push(m);
                if hit {
                    return seen;
                }
            }
            other => panic!("no output {text:?} of {id} ({other:?}); before it: {seen:?}"),
        }
    }
}

/// The messages of `id` in `seen`.
fn of<'a>(seen: &'a [Value], id: &str) -> Vec<&'a Value> {
    seen.iter().filter(|m| m["session_id"] == id).collect()
}

/// Has B let go of its copies of A's sessions `ids`, then list them again:
/// Redis is emptied while A is stopped, so that B misses their records in
/// three directory reads (a release: they may still exist, and B cannot
/// tell), then A runs again and registers them anew.
async fn let_go_and_list_again(cluster: &TestCluster, ids: &[&str]) {
    let b = &cluster.nodes[1];
    let paused = owner_away_with_redis_emptied(cluster).await;
    for id in ids {
        let path = format!("/api/sessions/{id}");
        let gone = wait_until(T, || async { b.get(&path).await.0 == 404 }).await;
        assert!(gone, "B did not let go of {id}");
    }
    drop(paused);
    for id in ids {
        listed(b, id, T).await.expect("listed again on B");
    }
}

/// B lets go of its copy of a running session of A and lists it again: a
/// `/ws/terminal/all` socket on B went silent, then sent a second
/// `terminal_start` of the session and its output again from the oldest
/// held. Now it goes on from the first byte it had not sent.
#[tokio::test]
async fn all_sessions_socket_goes_on_where_it_got_across_a_release() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let echo = "while read l; do echo got-$l; done";
    a.create(json!({"id":"back","kind":"command","argv":["sh","-c",echo]}))
        .await;
    listed(b, "back", T).await.expect("listed on B");
    let mut all = WsClient::connect_raw(b, "/ws/terminal/all").await;
    let mut seen = vec![all.next_json(T).await];
    a.input("back", "one\n").await;
    seen.extend(through_output(&mut all, "back", "got-one").await);
    let_go_and_list_again(&cluster, &["back"]).await;
    a.input("back", "two\n").await;
    seen.extend(through_output(&mut all, "back", "got-two").await);
    let back = of(&seen, "back");
    let starts = back.iter().filter(|m| m["type"] == "terminal_start").count();
    assert_eq!(starts, 1, "one terminal_start: {back:?}");
    let output: String = back
        .iter()
        .filter(|m| m["type"] == "terminal_output")
        .filter_map(|m| m["output"].as_str())
        .collect();
    assert_eq!(output, "got-one\ngot-two\n", "each byte once: {back:?}");
}

/// B lets go of its copy of a session of A that ended (its
/// `terminal_end` sent), and lists it again: the client has everything,
/// and gets nothing more of it; not a second `terminal_start`, nor its
/// output and `terminal_end` again.
///
/// What B would send again of `done` is read for certain: `done` is then
/// deleted and created again, and a new session under an id starts on the
/// socket only after everything of the earlier one (its forwarder is let
/// end first); so the new one's output comes after anything more of the
/// ended one. (Reading only up to the output of another session, `back`,
/// saw it on the old code by an order that was likely, not certain.)
#[tokio::test]
async fn all_sessions_socket_sends_nothing_more_of_an_ended_session_across_a_release() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"done","kind":"command","argv":["sh","-c","read l; echo bye-$l"]}))
        .await;
    // Runs on: what it prints after the release is read after anything
    // the socket would send of `done` again.
    let echo = "while read l; do echo got-$l; done";
    a.create(json!({"id":"back","kind":"command","argv":["sh","-c",echo]}))
        .await;
    for id in ["done", "back"] {
        listed(b, id, T).await.expect("listed on B");
    }
    let mut all = WsClient::connect_raw(b, "/ws/terminal/all").await;
    assert_eq!(all.next_json(T).await["type"], "terminal_connected");
    a.input("done", "x\n").await;
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match all.recv(left).await {
            Some(Incoming::Json(m)) if m["session_id"] == "done" && m["type"] == "terminal_end" => break,
            Some(_) => {}
            None => panic!("no terminal_end of done"),
        }
    }
    let_go_and_list_again(&cluster, &["done", "back"]).await;
    a.input("back", "two\n").await;
    let seen = through_output(&mut all, "back", "got-two").await;
    assert_eq!(
        of(&seen, "done"),
        Vec::<&Value>::new(),
        "nothing more of the ended session"
    );
    let starts = of(&seen, "back")
        .iter()
        .filter(|m| m["type"] == "terminal_start")
        .count();
    assert_eq!(starts, 0, "no second terminal_start of the running one: {seen:?}");

    let (status, body) = a.request("DELETE", "/api/sessions/done", None).await;
    assert_eq!(status, 204, "{body}");
    let gone = wait_until(T, || async { b.get("/api/sessions/done").await.0 == 404 }).await;
    assert!(gone, "B saw done deleted");
    a.create(json!({"id":"done","kind":"command","argv":["sh","-c","echo fresh-$((6*7))"]}))
        .await;
    let mut seen = seen;
    seen.extend(through_output(&mut all, "done", "fresh-42").await);
    let done: Vec<&str> = of(&seen, "done").iter().filter_map(|m| m["type"].as_str()).collect();
    assert_eq!(
        done,
        ["terminal_start", "terminal_output"],
        "nothing more of the ended session before the new one's start: {seen:?}"
    );
}

/// A session being terminated (its program ignores the signals) that B
/// lets go of and lists again: `/ws/terminal/all` told
/// `terminal_terminating` once, and the copy that takes over, which finds
/// the session still terminating, does not tell it again.
#[tokio::test]
async fn all_sessions_socket_tells_a_terminate_once_across_a_release() {
    let grace = ("TERMSTREAM_TERMINATE_GRACE_MS", "60000");
    let cluster = TestCluster::start_with(2, &[NOT_LOST, grace]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    // Ends at the input "end" only (so that the nodes stop at once).
    let stubborn = "trap '' HUP TERM; while read l; do [ $l = end ] && exit; echo got-$l; done";
    a.create(json!({"id":"stubborn","kind":"command","argv":["sh","-c",stubborn]}))
        .await;
    listed(b, "stubborn", T).await.expect("listed on B");
    let mut all = WsClient::connect_raw(b, "/ws/terminal/all").await;
    let mut seen = vec![all.next_json(T).await];
    a.input("stubborn", "one\n").await;
    seen.extend(through_output(&mut all, "stubborn", "got-one").await);
    // Sent on its own: a terminate answers once the session ended, which
    // the program's trap puts off to the grace's end.
    let terminate = tokio::spawn(
        reqwest::Client::new()
            .post(a.url("/api/sessions/stubborn/terminate"))
            .send(),
    );
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match all.recv(left).await {
            Some(Incoming::Json(m)) => {
                let told = m["type"] == "terminal_terminating";
                seen.push(m);
                if told {
                    break;
                }
            }
            other => panic!("no terminal_terminating ({other:?}): {seen:?}"),
        }
    }
    let_go_and_list_again(&cluster, &["stubborn"]).await;
    a.input("stubborn", "two\n").await;
    // The same forwarder sends the start's terminating and then the output.
    seen.extend(through_output(&mut all, "stubborn", "got-two").await);
    let told = of(&seen, "stubborn")
        .iter()
        .filter(|m| m["type"] == "terminal_terminating")
        .count();
    assert_eq!(told, 1, "terminal_terminating once: {seen:?}");
    let starts = of(&seen, "stubborn")
        .iter()
        .filter(|m| m["type"] == "terminal_start")
        .count();
    assert_eq!(starts, 1, "one terminal_start: {seen:?}");
    a.input("stubborn", "end\n").await;
    terminate.abort();
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
