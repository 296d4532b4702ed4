//! A node that dies (SIGKILL) has its sessions marked `lost` on the others
//! within the bound, its viewers elsewhere are told, and its output up to
//! the kill stays readable on every other node.

mod common;

use std::time::{Duration, Instant};

use common::cluster::{HEARTBEAT_MS, LOST_MS, TestCluster, attach, holds, listed, read_until, status_is};
use common::ws::WsClient;
use serde_json::json;

const T: Duration = Duration::from_secs(15);

#[tokio::test]
async fn killing_a_node_marks_its_sessions_lost_elsewhere_and_keeps_their_output() {
    let mut cluster = TestCluster::start(3).await;
    let mut epochs = Vec::new();
    for id in ["doomed1", "doomed2"] {
        let script = format!("echo {id}-before-the-kill; sleep 60");
        let info = cluster.nodes[0]
            .create(json!({"id":id,"kind":"command","argv":["sh","-c",script]}))
            .await;
        epochs.push(info["epoch"].as_str().unwrap().to_owned());
    }
    // A session of B lives on.
    cluster.nodes[1]
        .create(json!({"id":"survivor","kind":"command","argv":["sleep","60"]}))
        .await;
    for node in &cluster.nodes[1..] {
        for id in ["doomed1", "doomed2"] {
            listed(node, id, T).await.expect("listed");
            let out = node.read_output_until(id, &format!("{id}-before-the-kill"), T).await;
            assert!(out.contains("before-the-kill"));
        }
    }
    // A viewer on C follows doomed1.
    let mut viewer = WsClient::connect(&cluster.nodes[2], "/ws").await;
    let mut seen = attach(&mut viewer, "doomed1", Some((&epochs[0], 0))).await;
    read_until(&mut viewer, &mut seen, T, |s| holds(&s.data, "before-the-kill")).await;

    let killed = Instant::now();
    cluster.nodes[0].crash();
    for node in &cluster.nodes[1..] {
        for id in ["doomed1", "doomed2"] {
            let info = status_is(node, id, "lost", T).await.expect("marked lost");
            assert!(info["endedAt"].is_u64(), "{info}");
        }
    }
    let took = killed.elapsed();
    // A generous correctness bound: the liveness key expires after
    // LOST_MS, and the next heartbeat of a live node sees it.
    let bound = Duration::from_millis(LOST_MS + 3 * HEARTBEAT_MS) + Duration::from_secs(3);
    assert!(took < bound, "marked lost after {took:?}, more than {bound:?}");

    // The viewer is told, after all the output.
    read_until(&mut viewer, &mut seen, T, |s| s.exited).await;
    let exit = seen.messages.iter().find(|m| m["type"] == "session.exit").unwrap();
    assert_eq!(exit["status"], "lost", "{exit}");

    // The output up to the kill is still readable on B and C.
    for node in &cluster.nodes[1..] {
        for id in ["doomed1", "doomed2"] {
            let out = node.output_all(id, 0).await;
            assert_eq!(out, format!("{id}-before-the-kill\n").as_bytes());
        }
    }
    // B's own session was not touched.
    let survivor = cluster.nodes[2].info("survivor").await;
    assert_eq!(survivor["status"], "running");
    for epoch in &epochs {
        common::kill_marked(epoch);
    }
}
