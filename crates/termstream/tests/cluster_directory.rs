//! What the directory costs Redis: with nothing changing, a heartbeat does
//! not read the whole directory again on every node (which cost sessions ×
//! nodes), only the change log; a change still reaches every node.

mod common;

use std::collections::HashMap;
use std::time::Duration;

use common::cluster::{NOT_LOST, TestCluster, listed, status_is};
use serde_json::json;

const T: Duration = Duration::from_secs(15);
/// Sessions in the directory (`TERMSTREAM_TEST_DIRECTORY_SESSIONS` to
/// measure with more).
fn sessions() -> usize {
    std::env::var("TERMSTREAM_TEST_DIRECTORY_SESSIONS")
        .ok()
        .and_then(|n| n.parse().ok())
        .unwrap_or(20)
}
/// Heartbeats (of every node) measured.
const BEATS: u64 = 10;

/// `INFO commandstats` as command → (calls, usec), and `INFO stats`'
/// `total_net_output_bytes` less what `seen` (the answers to these INFO
/// commands so far) took.
async fn stats(conn: &mut redis::aio::MultiplexedConnection, seen: &mut u64) -> (HashMap<String, (u64, u64)>, u64) {
    let info: String = redis::cmd("INFO").arg("commandstats").query_async(conn).await.unwrap();
    *seen += info.len() as u64 + 16;
    let mut commands = HashMap::new();
    for line in info.lines() {
        let Some((name, rest)) = line.strip_prefix("cmdstat_").and_then(|l| l.split_once(':')) else {
            continue;
        };
        let field = |key: &str| {
            rest.split(',')
                .find_map(|kv| kv.strip_prefix(key))
                .and_then(|v| v.parse::<u64>().ok())
                .unwrap_or(0)
        };
        commands.insert(name.to_owned(), (field("calls="), field("usec=")));
    }
    let net: String = redis::cmd("INFO").arg("stats").query_async(conn).await.unwrap();
    let out: u64 = net
        .lines()
        .find_map(|l| l.strip_prefix("total_net_output_bytes:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or(0);
    let out = out.saturating_sub(*seen);
    *seen += net.len() as u64 + 16;
    commands.remove("info");
    commands.remove("config|resetstat");
    (commands, out)
}

#[tokio::test]
async fn an_unchanged_directory_is_not_read_whole_every_heartbeat() {
    let cluster = TestCluster::start_with(3, &[NOT_LOST]).await;
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let sessions = sessions();
    let mut epochs = Vec::new();
    for i in 0..sessions {
        let info = a
            .create(json!({"id":format!("idle{i}"),"kind":"command","argv":["sleep","60"]}))
            .await;
        epochs.push(info["epoch"].as_str().unwrap().to_owned());
    }
    for node in [b, c] {
        listed(node, &format!("idle{}", sessions - 1), T).await.expect("listed");
    }
    let client = redis::Client::open(cluster.redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let _: () = redis::cmd("CONFIG")
        .arg("RESETSTAT")
        .query_async(&mut conn)
        .await
        .unwrap();
    // Every node renews its liveness key once a heartbeat: count those.
    let beats = 3 * BEATS;
    let deadline = tokio::time::Instant::now() + T;
    let mut seen = 0;
    let (commands, bytes) = loop {
        let (commands, bytes) = stats(&mut conn, &mut seen).await;
        if commands.get("set").map_or(0, |s| s.0) >= beats {
            break (commands, bytes);
        }
        assert!(tokio::time::Instant::now() < deadline, "the heartbeats stopped");
        tokio::time::sleep(Duration::from_millis(100)).await;
    };
    let calls: u64 = commands.values().map(|c| c.0).sum();
    let usec: u64 = commands.values().map(|c| c.1).sum();
    let mut list: Vec<_> = commands.iter().collect();
    list.sort();
    eprintln!(
        "{sessions} sessions, 3 nodes, {beats} node heartbeats: {:.1} commands, {:.0} usec, {:.0} bytes out of Redis per node heartbeat; {list:?}",
        calls as f64 / beats as f64,
        usec as f64 / beats as f64,
        bytes as f64 / beats as f64
    );
    let full_reads = commands.get("hgetall").map_or(0, |c| c.0);
    assert!(
        full_reads <= 3,
        "the whole directory was read {full_reads} times in {beats} heartbeats with nothing changed"
    );

    // A change still reaches every node.
    let (status, _) = a.post("/api/sessions/idle0/terminate", json!(null)).await;
    assert_eq!(status, 200);
    for node in [b, c] {
        status_is(node, "idle0", "terminated", T)
            .await
            .expect("the change is seen");
    }
    let (status, _) = b.request("DELETE", "/api/sessions/idle1", None).await;
    assert_eq!(status, 204);
    for node in [a, c] {
        let gone = common::wait_until(T, || async { node.get("/api/sessions/idle1").await.0 == 404 }).await;
        assert!(gone, "the delete is seen");
    }
    for epoch in &epochs {
        common::kill_marked(epoch);
    }
}
