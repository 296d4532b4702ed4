//! A client moves between nodes in the middle of a large stream and
//! resumes without loss or repeat: what the new node's Redis stream no
//! longer holds comes from the owner's disk log.

mod common;

use std::time::Duration;

use common::cluster::{NOT_LOST, TestCluster, attach, checksum, holds, listed, read_until};
use common::ws::WsClient;
use serde_json::json;

const T: Duration = Duration::from_secs(25);

/// What the session prints: ten rounds of 110 000 numbered lines, about
/// 10 MB, with pauses so that it is still printing while the client moves.
const SCRIPT: &str = "for i in 1 2 3 4 5 6 7 8 9 10; do seq 1 110000 | sed \"s/^/$i:/\"; sleep 0.1; done";

fn expected() -> Vec<u8> {
    let mut out = Vec::with_capacity(11 << 20);
    for i in 1..=10 {
        for n in 1..=110_000 {
            out.extend_from_slice(format!("{i}:{n}\n").as_bytes());
        }
    }
    out
}

#[tokio::test]
async fn a_client_moving_from_b_to_c_mid_stream_resumes_without_loss_or_repeat() {
    // Streams keep 1 MiB: most of what C must send comes from A's disk.
    let cluster = TestCluster::start_with(3, &[("TERMSTREAM_CLUSTER_STREAM_BYTES", "1048576"), NOT_LOST]).await;
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let info = a
        .create(json!({"id":"flood","kind":"command","argv":["sh","-c",SCRIPT]}))
        .await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    listed(b, "flood", T).await.expect("listed on B");
    listed(c, "flood", T).await.expect("listed on C");

    // On B from the start until about 4 MB arrived.
    let mut on_b = WsClient::connect(b, "/ws").await;
    let mut first = attach(&mut on_b, "flood", Some((&epoch, 0))).await;
    assert_eq!(first.start, 0);
    read_until(&mut on_b, &mut first, T, |s| s.data.len() >= 4 << 20).await;
    on_b.close().await;

    // Then on C, from exactly where B stopped, to the end.
    let mut on_c = WsClient::connect(c, "/ws").await;
    let mut rest = attach(&mut on_c, "flood", Some((&epoch, first.end()))).await;
    assert_eq!(rest.start, first.end(), "resumed where the client stopped");
    assert_eq!(rest.messages[0]["recovered"], true, "{}", rest.messages[0]);
    read_until(&mut on_c, &mut rest, T, |s| s.exited).await;
    assert!(
        !rest.messages.iter().any(|m| m["type"] == "session.gap"),
        "no gap: {:?}",
        rest.messages
    );

    let mut got = first.data;
    got.extend_from_slice(&rest.data);
    let want = expected();
    assert_eq!(got.len(), want.len(), "every byte, once");
    assert_eq!(checksum(&got), checksum(&want));
}

/// A resume on a node that does not own the session, from before the
/// session's last resize, gets `session.resized` at its place in the
/// replay, as on the owner: B's stand-in kept the resize it read from the
/// stream.
#[tokio::test]
async fn a_resume_on_another_node_from_before_a_resize_gets_the_resize_at_its_place() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let info = a
        .create(json!({"id":"r","argv":["bash","--norc","--noprofile"],"cols":80,"rows":24}))
        .await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    listed(b, "r", T).await.expect("listed on B");
    a.read_output_until("r", "bash", T).await;
    // A viewer on B: B's stand-in follows the session's stream.
    let mut watcher = WsClient::connect(b, "/ws").await;
    let mut watched = attach(&mut watcher, "r", None).await;
    let mark = a.info("r").await["outputOffset"].as_u64().unwrap();
    a.input("r", "echo before-$((1+1))\r").await;
    read_until(&mut watcher, &mut watched, T, |s| holds(&s.data, "before-2")).await;
    // Resized (the answer comes once it is done) before the input: the
    // output after it is drawn at the new size.
    let (status, body) = a.post("/api/sessions/r/resize", json!({"cols":100,"rows":30})).await;
    assert_eq!(status, 200, "{body}");
    a.input("r", "echo after-$((2+2))\r").await;
    read_until(&mut watcher, &mut watched, T, |s| {
        holds(&s.data, "after-4") && s.messages.iter().any(|m| m["type"] == "session.resized")
    })
    .await;

    let mut ws = WsClient::connect(b, "/ws").await;
    let resumed = attach(&mut ws, "r", Some((&epoch, mark))).await;
    assert_eq!(resumed.messages[0]["recovered"], true, "{}", resumed.messages[0]);
    ws.assert_resize_between("before-2", "after-4", (100, 30), T).await;
}
