//! Redis goes away: nodes say so in `/readyz` and keep their sessions
//! running and recording; when Redis comes back empty, every live session
//! is registered again and can be resumed from any node without loss.

mod common;

use std::time::Duration;

use common::TestServer;
use common::cluster::{HEARTBEAT_MS, LOST_MS, TestCluster, attach, listed, read_until};
use common::ws::WsClient;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

/// Numbered lines, one every 20 ms.
const TICKER: &str = "i=0; while [ $i -lt 100000 ]; do i=$((i+1)); echo line-$i; sleep 0.02; done";

/// Waits until `node`'s `/readyz` answers `code`, and returns its body.
async fn readyz_is(node: &TestServer, code: u16) -> Option<serde_json::Value> {
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (status, body) = node.get("/readyz").await;
        if status == code {
            return Some(body);
        }
        if tokio::time::Instant::now() >= deadline {
            return None;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

#[tokio::test]
async fn sessions_outlive_a_redis_outage_and_are_resumable_everywhere_after() {
    let mut cluster = TestCluster::start(3).await;
    let info = cluster.nodes[0]
        .create(json!({"id":"ticker","kind":"command","argv":["sh","-c",TICKER]}))
        .await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    for node in &cluster.nodes[1..] {
        listed(node, "ticker", T).await.expect("listed");
    }
    let mut on_b = WsClient::connect(&cluster.nodes[1], "/ws").await;
    let mut seen_b = attach(&mut on_b, "ticker", Some((&epoch, 0))).await;
    read_until(&mut on_b, &mut seen_b, T, |s| s.data.len() > 200).await;

    cluster.redis.stop();
    for node in &cluster.nodes {
        let body = readyz_is(node, 503).await.expect("unready without Redis");
        assert!(body["failing"].to_string().contains("Redis"), "{body}");
    }
    // The owner keeps running and recording its session.
    let a = &cluster.nodes[0];
    let before = a.output_all("ticker", 0).await.len();
    let grew = common::wait_until(T, || async { a.output_all("ticker", 0).await.len() > before + 200 }).await;
    assert!(grew, "the session ran on while Redis was down");
    assert_eq!(a.info("ticker").await["status"], "running");
    // A new id cannot be promised unique: refused, and the node carries on.
    let (status, body) = a.post("/api/sessions", json!({"kind":"command","argv":["true"]})).await;
    assert_eq!(status, 503, "{body}");

    cluster.redis.start_again().await;
    for node in &cluster.nodes {
        readyz_is(node, 200).await.expect("ready again");
    }
    // Redis came back empty: a node that joins now learns of the session
    // only if its owner registered it again.
    let url = cluster.redis.url();
    let (hb, lost) = (HEARTBEAT_MS.to_string(), LOST_MS.to_string());
    let d = TestServer::start_with(
        &["--cluster", &url],
        &[
            ("TERMSTREAM_CLUSTER_HEARTBEAT_MS", hb.as_str()),
            ("TERMSTREAM_CLUSTER_LOST_MS", lost.as_str()),
        ],
    )
    .await;
    for node in cluster.nodes.iter().chain([&d]) {
        let seen = listed(node, "ticker", T).await.expect("listed again");
        assert_eq!(seen["status"], "running");
    }

    // What the owner holds now, resumed from every node: the same bytes.
    let truth = a.output_all("ticker", 0).await;
    read_until(&mut on_b, &mut seen_b, T, |s| s.end() >= truth.len() as u64).await;
    assert_eq!(
        seen_b.range(0, truth.len() as u64),
        &truth[..],
        "B's client, across the outage"
    );
    let half = truth.len() as u64 / 2;
    for node in [&cluster.nodes[2], &d] {
        let mut ws = WsClient::connect(node, "/ws").await;
        let mut s = attach(&mut ws, "ticker", Some((&epoch, half))).await;
        assert_eq!(s.start, half);
        read_until(&mut ws, &mut s, T, |s| s.end() >= truth.len() as u64).await;
        assert_eq!(s.range(half, truth.len() as u64), &truth[half as usize..]);
    }
    a.terminate("ticker").await;
}
