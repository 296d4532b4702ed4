//! Three (or more) real nodes joined through a real `redis-server`, for the
//! scale-out tests (`tests/cluster*.rs`).
//!
//! Each node is a [`TestServer`] started with `--cluster` and a fast
//! heartbeat (100 ms, a node silent 600 ms is dead), so that liveness can
//! be tested within seconds. [`Stream`] gathers one session's output from
//! a WebSocket by offset, checking that nothing is lost or repeated.

use std::time::Duration;

use serde_json::{Value, json};

use super::redis::TestRedis;
use super::ws::{Incoming, WsClient};
use super::{TestServer, wait_until};

/// How often the waits here check their condition.
const POLL: Duration = Duration::from_millis(20);

/// The heartbeat the test nodes use.
pub const HEARTBEAT_MS: u64 = 100;
/// After how long the test nodes count a silent node as dead.
pub const LOST_MS: u64 = 600;

/// The environment entry for [`TestCluster::start_with`] of a test that
/// must not see a session marked `lost` (it stops a node, or needs its
/// heartbeat kept within [`LOST_MS`] on a loaded machine): a node silent
/// 5 s is dead. It comes after the default one, and the later entry wins.
/// [`LOST_MS`] is kept for the tests that wait for `lost`.
pub const NOT_LOST: (&str, &str) = ("TERMSTREAM_CLUSTER_LOST_MS", "5000");

/// A Redis and the nodes joined through it.
pub struct TestCluster {
    /// Dropped (stopped) before Redis, so they do not log its loss.
    pub nodes: Vec<TestServer>,
    pub redis: TestRedis,
}

impl TestCluster {
    /// Starts a Redis and `n` nodes, and waits until every node is ready.
    pub async fn start(n: usize) -> TestCluster {
        TestCluster::start_with(n, &[]).await
    }

    /// As [`TestCluster::start`], with extra environment for every node.
    pub async fn start_with(n: usize, env: &[(&str, &str)]) -> TestCluster {
        let redis = TestRedis::start().await;
        let url = redis.url();
        let (hb, lost) = (HEARTBEAT_MS.to_string(), LOST_MS.to_string());
        let mut all = vec![
            ("TERMSTREAM_CLUSTER_HEARTBEAT_MS", hb.as_str()),
            ("TERMSTREAM_CLUSTER_LOST_MS", lost.as_str()),
        ];
        all.extend_from_slice(env);
        let mut nodes = Vec::new();
        for _ in 0..n {
            nodes.push(TestServer::start_with(&["--cluster", &url], &all).await);
        }
        for node in &nodes {
            assert!(
                ready(node, Duration::from_secs(10)).await,
                "a node did not become ready"
            );
        }
        TestCluster { nodes, redis }
    }
}

/// Waits until `node` answers `/readyz` with 200.
pub async fn ready(node: &TestServer, timeout: Duration) -> bool {
    wait_until(timeout, || async { node.get("/readyz").await.0 == 200 }).await
}

/// Waits until `node` lists session `id`, and returns its info.
pub async fn listed(node: &TestServer, id: &str, timeout: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (status, list) = node.get("/api/sessions").await;
        let hit = list["sessions"]
            .as_array()
            .and_then(|s| s.iter().find(|i| i["id"] == id).cloned());
        if status == 200 && hit.is_some() {
            return hit;
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// Waits until `node` says session `id` has `status`, and returns its info.
pub async fn status_is(node: &TestServer, id: &str, status: &str, timeout: Duration) -> Option<Value> {
    let deadline = tokio::time::Instant::now() + timeout;
    loop {
        let (code, info) = node.get(&format!("/api/sessions/{id}")).await;
        if code == 200 && info["status"] == status {
            return Some(info);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// One session's output as one client received it.
#[derive(Debug, Default)]
pub struct Stream {
    /// The offset of `data`'s first byte.
    pub start: u64,
    pub data: Vec<u8>,
    /// The session's JSON messages, in order.
    pub messages: Vec<Value>,
    /// Whether `session.exit` came.
    pub exited: bool,
}

impl Stream {
    /// The offset after the last byte received.
    pub fn end(&self) -> u64 {
        self.start + self.data.len() as u64
    }

    /// The bytes in `[from, to)`, which must have been received.
    pub fn range(&self, from: u64, to: u64) -> &[u8] {
        &self.data[(from - self.start) as usize..(to - self.start) as usize]
    }
}

/// Attaches `ws` to `id` in binary mode (from `since`, when given) and
/// returns the stream, started at the attached offset.
pub async fn attach(ws: &mut WsClient, id: &str, since: Option<(&str, u64)>) -> Stream {
    let mut msg = json!({"type":"session.attach","sessionId":id,"output":"binary"});
    if let Some((epoch, offset)) = since {
        msg["since"] = json!({"epoch":epoch,"offset":offset});
    }
    ws.send(msg).await;
    let attached = ws.until_type("session.attached", Duration::from_secs(10)).await;
    Stream {
        start: attached["offset"].as_u64().expect("offset"),
        messages: vec![attached],
        ..Stream::default()
    }
}

/// Reads `ws` into `s` until `done(s)` holds; panics after `timeout`, on a
/// gap, on a repeat, or when the socket closes.
pub async fn read_until(ws: &mut WsClient, s: &mut Stream, timeout: Duration, done: impl Fn(&Stream) -> bool) {
    let deadline = tokio::time::Instant::now() + timeout;
    while !done(s) {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.recv(left).await {
            Some(Incoming::Output { offset, data, .. }) => {
                assert_eq!(
                    offset,
                    s.end(),
                    "output must start where the last ended (no loss, no repeat)"
                );
                s.data.extend_from_slice(&data);
            }
            Some(Incoming::Json(v)) => {
                if v["type"] == "session.exit" {
                    s.exited = true;
                }
                if v["type"] == "terminal.restore" {
                    // Output follows the snapshot from its offset.
                    s.start = v["offset"].as_u64().expect("offset");
                    s.data.clear();
                }
                s.messages.push(v);
            }
            Some(Incoming::Closed(c)) => panic!("socket closed ({c:?})"),
            None => panic!(
                "timed out after {timeout:?} with {} bytes from {}; messages {:?}",
                s.data.len(),
                s.start,
                s.messages
            ),
        }
    }
}

/// Whether `hay` holds `needle`.
pub fn holds(hay: &[u8], needle: &str) -> bool {
    hay.windows(needle.len()).any(|w| w == needle.as_bytes())
}

/// A SHA-256 of `bytes`, in hex.
pub fn checksum(bytes: &[u8]) -> String {
    use sha2::Digest;
    sha2::Sha256::digest(bytes).iter().map(|b| format!("{b:02x}")).collect()
}

/// Stops the first node (the owner) and empties Redis, as a Redis that
/// restarted empty would be with the owner not registered again yet; the
/// owner runs again when the caller drops the answer, once the other node
/// let go. Callers start the cluster with [`NOT_LOST`]: the release (three
/// reads missing the record, 100 ms apart) comes long before `lost`. Connected
/// first, so the flush follows the stop at once: a node marks
/// the stopped owner's sessions `lost` after `cluster_lost_ms`, and a
/// connect on a loaded machine could take longer (the viewers would then
/// get `session.exit` lost, not a release).
pub async fn owner_away_with_redis_emptied(cluster: &TestCluster) -> super::Paused<'_> {
    let client = redis::Client::open(cluster.redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let stopped = cluster.nodes[0].pause();
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.expect("FLUSHALL");
    stopped
}
