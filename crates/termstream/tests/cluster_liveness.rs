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

#[tokio::test]
async fn a_dead_nodes_lost_session_is_deleted_from_any_node() {
    let mut cluster = TestCluster::start(3).await;
    let info = cluster.nodes[0]
        .create(json!({"id":"orphan","kind":"command","argv":["sh","-c","echo orphan-output; sleep 60"]}))
        .await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    for node in &cluster.nodes[1..] {
        listed(node, "orphan", T).await.expect("listed");
        node.read_output_until("orphan", "orphan-output", T).await;
    }
    cluster.nodes[0].crash();
    for node in &cluster.nodes[1..] {
        status_is(node, "orphan", "lost", T).await.expect("marked lost");
    }
    // Its output stays readable until it is deleted.
    assert_eq!(cluster.nodes[2].output_all("orphan", 0).await, b"orphan-output\n");
    // Its recording is on the dead node: asking for it says so at once
    // (rather than waiting for the dead node to answer).
    let (status, body) = tokio::time::timeout(
        Duration::from_secs(5),
        cluster.nodes[2].get("/api/sessions/orphan/recording.cast"),
    )
    .await
    .expect("answered without waiting for the dead node");
    assert_eq!(
        (status.as_u16(), &body["error"]["code"]),
        (503, &json!("busy")),
        "{body}"
    );

    // Deleted through B, as a local delete is answered (before: B waited
    // for the dead owner and timed out).
    let (status, body) = tokio::time::timeout(T, cluster.nodes[1].request("DELETE", "/api/sessions/orphan", None))
        .await
        .expect("the delete answered in time");
    assert_eq!(status, 204, "{body}");
    assert_eq!(cluster.nodes[1].get("/api/sessions/orphan").await.0, 404);
    // Every other node drops it from its list.
    let gone_on_c = common::wait_until(T, || async {
        let (_, list) = cluster.nodes[2].get("/api/sessions").await;
        list["sessions"]
            .as_array()
            .is_some_and(|s| !s.iter().any(|i| i["id"] == "orphan"))
    })
    .await;
    assert!(gone_on_c, "C still lists the deleted session");
    assert_eq!(cluster.nodes[2].get("/api/sessions/orphan").await.0, 404);
    // Its record, claim and stream are gone from Redis.
    let client = redis::Client::open(cluster.redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let in_dir: bool = redis::cmd("HEXISTS")
        .arg("termstream:dir")
        .arg("orphan")
        .query_async(&mut conn)
        .await
        .unwrap();
    let keys: u64 = redis::cmd("EXISTS")
        .arg("termstream:id:orphan")
        .arg(format!("termstream:out:orphan:{epoch}"))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!in_dir && keys == 0, "left in Redis: record {in_dir}, keys {keys}");
    // A second delete is a 404, and the id can be used again.
    assert_eq!(
        cluster.nodes[2].request("DELETE", "/api/sessions/orphan", None).await.0,
        404
    );
    cluster.nodes[2]
        .create(json!({"id":"orphan","kind":"command","argv":["true"]}))
        .await;
    common::kill_marked(&epoch);
}

#[tokio::test]
async fn a_lost_session_deleted_while_its_node_was_cut_off_stays_deleted() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    // Both print while A is stopped, so A has output to publish and records
    // to write the moment it runs again.
    let ticking = "echo started; while true; do echo tick; sleep 0.05; done";
    let mut epochs = Vec::new();
    for id in ["revenant", "kept"] {
        let info = a
            .create(json!({"id":id,"kind":"command","argv":["sh","-c",ticking]}))
            .await;
        epochs.push(info["epoch"].as_str().unwrap().to_owned());
        listed(b, id, T).await.expect("listed on B");
        b.read_output_until(id, "started", T).await;
    }
    // A is cut off (stopped: its heartbeats stop, its sessions run on);
    // a failed assert below still lets it run again (the guard's drop).
    let paused = a.pause();
    for id in ["revenant", "kept"] {
        status_is(b, id, "lost", T).await.expect("marked lost");
    }
    let (status, body) = b.request("DELETE", "/api/sessions/revenant", None).await;
    assert_eq!(status, 204, "{body}");
    drop(paused);

    // A comes back: the delete wins there too (session, process and files),
    // and the session does not come back on B.
    let deleted_on_a = common::wait_until(T, || async { a.get("/api/sessions/revenant").await.0 == 404 }).await;
    assert!(deleted_on_a, "A still has the session deleted while it was cut off");
    assert!(
        common::wait_until(T, || async { common::marked_processes(&epochs[0]).is_empty() }).await,
        "its program still runs"
    );
    // The files go last (after the program and the last record), a moment
    // after the session left the list.
    assert!(
        common::wait_until(T, || async { !common::session_dir(a.data_dir(), "revenant").exists() }).await,
        "its files are left"
    );
    // A's other session runs again everywhere, and B still lacks the
    // deleted one (A registered everything it has by now).
    status_is(b, "kept", "running", T)
        .await
        .expect("the kept session runs again on B");
    assert_eq!(b.get("/api/sessions/revenant").await.0, 404);
    let client = redis::Client::open(cluster.redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let in_dir: bool = redis::cmd("HEXISTS")
        .arg("termstream:dir")
        .arg("revenant")
        .query_async(&mut conn)
        .await
        .unwrap();
    let keys: u64 = redis::cmd("EXISTS")
        .arg("termstream:id:revenant")
        .arg(format!("termstream:out:revenant:{}", epochs[0]))
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!in_dir && keys == 0, "left in Redis: record {in_dir}, keys {keys}");
    // Its output keeps flowing to B.
    let before = b.info("kept").await["outputOffset"].as_u64().unwrap();
    let flowing = common::wait_until(T, || async {
        b.info("kept").await["outputOffset"].as_u64().unwrap() > before
    })
    .await;
    assert!(flowing, "the kept session's output does not reach B");
    for epoch in &epochs {
        common::kill_marked(epoch);
    }
}
