//! A `/ws` attachment through a node of a cluster ends when the node lets
//! go of its copy (stand-in) of another node's session while the session
//! may still exist: `session.detached` then says `released` (not
//! `deleted`), its slot is free, and attaching again follows the session.
//! Two ways a node lets go: the directory in Redis lacked the session's
//! record in three reads in a row (Redis emptied), or a `lost` session's
//! node came back. (Deleted sessions: `attach_deleted.rs`.)

mod common;

use common::cluster::{TestCluster, listed, status_is};
use common::ws::{Incoming, WsClient};
use common::{TestServer, secs};
use serde_json::{Value, json};

/// Waits until the socket answers `ty` for `id`; an error fails the test.
async fn answer(ws: &mut WsClient, ty: &str, id: &str) -> Value {
    loop {
        match ws.recv(secs(10)).await {
            Some(Incoming::Json(v)) if v["type"] == ty && v["sessionId"] == id => return v,
            Some(Incoming::Json(v)) if v["type"] == "error" => panic!("{v} while waiting for {ty} of {id}"),
            Some(Incoming::Closed(c)) => panic!("closed ({c:?}) while waiting for {ty} of {id}"),
            None => panic!("no {ty} of {id} within 10 s"),
            Some(_) => {}
        }
    }
}

/// Waits for `session.detached` of `id`, and checks it says `released`.
async fn released(ws: &mut WsClient, id: &str) {
    let v = answer(ws, "session.detached", id).await;
    assert_eq!(v["reason"], "released", "{v}");
}

/// Types `word` into `id` (a `cat`) on `node` and waits for its echo: the
/// socket is attached again. A `session.detached` first fails the test.
async fn echoes(ws: &mut WsClient, node: &TestServer, id: &str, word: &str) {
    node.input(id, &format!("{word}\n")).await;
    loop {
        match ws.recv(secs(10)).await {
            Some(Incoming::Json(v)) if v["type"] == "terminal.output" => {
                if v["data"].as_str().is_some_and(|d| d.contains(word)) {
                    break;
                }
            }
            Some(Incoming::Json(v)) if v["type"] == "session.detached" || v["type"] == "error" => {
                panic!("the new attachment ended: {v}")
            }
            Some(Incoming::Json(_)) => {}
            other => panic!("no echo of {word}: {other:?}"),
        }
    }
}

/// The owner is stopped and Redis emptied (as a Redis restarted empty
/// would be, with the owner not registered again yet): the viewer's node
/// misses the session's record three reads in a row and lets go of it.
/// The attachment ends as `released`; once the owner runs and registers
/// again, attaching again (one slot: it was freed) follows the session.
#[tokio::test]
async fn a_session_missing_from_the_directory_is_released() {
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET", "1")]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"kept","argv":["cat"]})).await;
    listed(b, "kept", secs(15)).await.expect("listed on b");
    let mut ws = WsClient::connect(b, "/ws").await;
    ws.attach("kept", "json").await;
    answer(&mut ws, "session.attached", "kept").await;
    signal(a, rustix::process::Signal::STOP);
    let client = redis::Client::open(cluster.redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.expect("FLUSHALL");
    released(&mut ws, "kept").await;
    signal(a, rustix::process::Signal::CONT);
    status_is(b, "kept", "running", secs(15))
        .await
        .expect("listed again on b");
    ws.attach("kept", "json").await;
    answer(&mut ws, "session.attached", "kept").await;
    echoes(&mut ws, b, "kept", "still-here").await;
}

/// Through another node of a cluster: a session whose node is cut off
/// (stopped) is marked `lost` and its viewer there gets `session.exit`
/// (`lost`); when the node runs again, the session's record says running,
/// the viewer's node replaces its stand-in, and the old attachment ends
/// with `session.detached` (`released`; one slot here: it is free again),
/// although the session runs. Attaching again follows it.
#[tokio::test]
async fn a_lost_session_come_back_ends_its_old_attachment() {
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET", "1")]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"back","argv":["cat"]})).await;
    listed(b, "back", secs(15)).await.expect("listed on b");
    let mut ws = WsClient::connect(b, "/ws").await;
    ws.attach("back", "json").await;
    answer(&mut ws, "session.attached", "back").await;
    signal(a, rustix::process::Signal::STOP);
    let exit = answer(&mut ws, "session.exit", "back").await;
    signal(a, rustix::process::Signal::CONT);
    assert_eq!(exit["status"], "lost", "{exit}");
    released(&mut ws, "back").await;
    status_is(b, "back", "running", secs(15))
        .await
        .expect("running again on b");
    ws.attach("back", "json").await;
    let attached = answer(&mut ws, "session.attached", "back").await;
    assert_eq!(attached["status"], "running", "{attached}");
    echoes(&mut ws, b, "back", "here-again").await;
}

/// Sends `signal` to a node's process.
fn signal(node: &TestServer, signal: rustix::process::Signal) {
    let pid = rustix::process::Pid::from_raw(node.pid() as i32).expect("pid");
    rustix::process::kill_process(pid, signal).expect("kill");
}
