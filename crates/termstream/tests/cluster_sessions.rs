//! Three nodes through one Redis serve as one: a session created on one
//! node is listed, attached, typed into and resized through the others,
//! and an id is unique across the cluster.

mod common;

use std::time::Duration;

use common::cluster::{NOT_LOST, TestCluster, attach, checksum, holds, listed, read_until};
use common::ws::WsClient;
use serde_json::json;

const T: Duration = Duration::from_secs(15);

#[tokio::test]
async fn a_session_of_node_a_is_listed_driven_and_seen_identically_through_node_c() {
    let cluster = TestCluster::start_with(3, &[NOT_LOST]).await;
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    let info = a
        .create(json!({"id":"shared","argv":["/bin/sh"],"cols":80,"rows":24,"project":"p1"}))
        .await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();

    // Listed, and got, on every node, with the owner's epoch.
    for node in [b, c] {
        let seen = listed(node, "shared", T).await.expect("listed on every node");
        assert_eq!(seen["epoch"], epoch.as_str());
        assert_eq!(seen["status"], "running");
        assert_eq!(node.info("shared").await["project"], "p1");
    }
    // Filtered as on one node.
    let (_, other) = c.get("/api/sessions?project=p2").await;
    assert_eq!(other["total"], 0, "{other}");

    let mut on_a = WsClient::connect(a, "/ws").await;
    let mut on_c = WsClient::connect(c, "/ws?clientId=typist").await;
    let mut seen_a = attach(&mut on_a, "shared", None).await;
    let mut seen_c = attach(&mut on_c, "shared", None).await;

    // Resized through C: the owner applies it, every client hears of it.
    on_c.send(json!({"type":"terminal.resize","sessionId":"shared","cols":100,"rows":30}))
        .await;
    on_a.until_type("session.resized", T).await;
    on_c.until_type("session.resized", T).await;
    assert_eq!(a.info("shared").await["cols"], 100);

    // Typed through C.
    on_c.send(json!({"type":"terminal.input","sessionId":"shared","data":"stty size; echo done-$((6*7))\n","seq":1}))
        .await;
    read_until(&mut on_c, &mut seen_c, T, |s| holds(&s.data, "done-42\r\n")).await;
    // The same client, moved to B, resends seq 1 (dropped by the owner)
    // and goes on with seq 2.
    let mut on_b = WsClient::connect(b, "/ws?clientId=typist").await;
    for (seq, data) in [(1, "stty size; echo done-$((6*7))\n"), (2, "echo end-$((5*5))\n")] {
        on_b.send(json!({"type":"terminal.input","sessionId":"shared","data":data,"seq":seq}))
            .await;
    }
    read_until(&mut on_a, &mut seen_a, T, |s| holds(&s.data, "end-25\r\n")).await;
    read_until(&mut on_c, &mut seen_c, T, |s| holds(&s.data, "end-25\r\n")).await;
    let until = seen_a.end().min(seen_c.end());
    let from = seen_a.start.max(seen_c.start);
    assert!(from < until, "both saw the typed command");
    assert_eq!(
        checksum(seen_a.range(from, until)),
        checksum(seen_c.range(from, until)),
        "the same bytes at the same offsets on both nodes"
    );
    let typed = String::from_utf8_lossy(seen_c.range(from, until)).into_owned();
    assert!(typed.contains("30 100"), "stty saw the resize: {typed:?}");
    assert_eq!(typed.matches("done-42").count(), 1, "the repeat was dropped: {typed:?}");

    // The whole log read through C's REST is the owner's.
    let all_a = a.output_all("shared", 0).await;
    let all_c = c.output_all("shared", 0).await;
    assert!(holds(&all_c, "end-25"));
    assert_eq!(checksum(&all_a[..all_c.len()]), checksum(&all_c));

    // Terminated through B: it ends everywhere.
    let (status, _) = b.post("/api/sessions/shared/terminate", json!(null)).await;
    assert_eq!(status, 200);
    for node in [a, b, c] {
        assert!(
            common::cluster::status_is(node, "shared", "terminated", T)
                .await
                .is_some()
        );
    }
    read_until(&mut on_c, &mut seen_c, T, |s| s.exited).await;

    // An attach through another node right after the create waits for the
    // session to be known there (within the attach wait), as on one node.
    a.create(json!({"id":"fresh","kind":"command","argv":["sh","-c","echo fresh-out; sleep 30"]}))
        .await;
    let mut quick = WsClient::connect(c, "/ws").await;
    let mut fresh = attach(&mut quick, "fresh", None).await;
    read_until(&mut quick, &mut fresh, T, |s| holds(&s.data, "fresh-out")).await;

    // Deleted through B: gone everywhere.
    let (status, _) = b.request("DELETE", "/api/sessions/shared", None).await;
    assert_eq!(status, 204);
    for node in [a, b, c] {
        let gone = common::wait_until(T, || async { node.get("/api/sessions/shared").await.0 == 404 }).await;
        assert!(gone, "deleted everywhere");
    }
}

#[tokio::test]
async fn one_id_created_on_two_nodes_at_once_is_won_by_exactly_one() {
    let cluster = TestCluster::start_with(3, &[NOT_LOST]).await;
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    for round in 0..5 {
        let id = format!("dup{round}");
        let body = json!({"id": id, "kind":"command","argv":["sleep","30"]});
        let (on_b, on_c) = tokio::join!(
            b.post("/api/sessions", body.clone()),
            c.post("/api/sessions", body.clone())
        );
        let codes = [on_b.0.as_u16(), on_c.0.as_u16()];
        assert!(
            codes == [201, 409] || codes == [409, 201],
            "exactly one wins: {codes:?} {} {}",
            on_b.1,
            on_c.1
        );
        let loser = if codes[0] == 409 { &on_b.1 } else { &on_c.1 };
        assert_eq!(loser["error"]["code"], "duplicate_id", "{loser}");
        // A third node refuses it too, and lists exactly one.
        let (status, _) = a.post("/api/sessions", body).await;
        assert_eq!(status, 409);
        listed(a, &id, T).await.expect("listed");
        let (_, list) = a.get("/api/sessions").await;
        let n = list["sessions"]
            .as_array()
            .unwrap()
            .iter()
            .filter(|s| s["id"] == id.as_str())
            .count();
        assert_eq!(n, 1);
    }
}
