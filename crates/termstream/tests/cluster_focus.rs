//! Focus across the nodes of a cluster: three real nodes on loopback ports
//! share one real `redis-server` (`--cluster`); clients on every node see
//! one version sequence per project, in order; conflicts are answered as
//! on one node; REST on any node answers the cluster's state; and focus
//! works again after Redis restarts empty (this node's view is put back,
//! versions carry on); a focus-aware viewer on a node that does not own
//! its session is told a resize made while unfocused once, at its place,
//! and a resize it missed before a newer one, before the output drawn at it.

mod common;

use std::sync::Arc;

use common::cluster::{HEARTBEAT_MS, NOT_LOST, TestCluster, holds, listed};
use common::focus::{FocusView, strings};
use common::redis::TestRedis;
use common::ws::{Incoming, WsClient};
use common::{TestServer, secs, wait_until};
use serde_json::{Value, json};

/// Starts `n` nodes of one cluster.
async fn nodes(redis: &TestRedis, n: usize) -> Vec<Arc<TestServer>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Arc::new(
            TestServer::start_with(&["--cluster", &redis.url()], &[]).await,
        ));
    }
    out
}

async fn put_focus(node: &TestServer, body: Value) -> (u16, Value) {
    let (s, b) = node.request("PUT", "/api/terminal/focus", Some(&body)).await;
    (s.as_u16(), b)
}

async fn get_focus(node: &TestServer, project: &str) -> Value {
    let (s, b) = node.get(&format!("/api/terminal/focus?projectId={project}")).await;
    assert_eq!(s, 200, "{b}");
    b
}

/// Creates session `id` of `project` on `owner` (running `cat`), and waits
/// until every node can name it in a focus request: a request with an
/// impossible `expectedVersion` is 409 once the session is known, and
/// changes nothing.
async fn session(owner: &TestServer, all: &[Arc<TestServer>], project: &str, id: &str) {
    owner
        .create(json!({"id":id,"kind":"command","argv":["cat"],"project":project}))
        .await;
    for node in all {
        let probe = json!({"sessionId":id,"focused":true,"expectedVersion":u64::MAX});
        let known = wait_until(secs(10), || async { put_focus(node, probe.clone()).await.0 == 409 }).await;
        assert!(known, "session {id} is not known on {} within 10 s", node.addr());
    }
}

/// Three nodes with four clients each (half over WebSocket, half over
/// REST) focus and blur sessions of all three nodes at once. Every client,
/// on whichever node, ends with the same set and version, and saw every
/// version after the one it connected at, in order, as an update.
#[tokio::test]
async fn focus_changes_on_three_nodes_form_one_version_sequence_seen_in_order_everywhere() {
    let redis = TestRedis::start().await;
    let all = nodes(&redis, 3).await;
    let ids: Vec<String> = (0..6).map(|i| format!("s{i}")).collect();
    for (i, id) in ids.iter().enumerate() {
        session(&all[i % 3], &all, "p", id).await;
    }
    // Every client follows the project before the first change (opening
    // skips what comes before its `sync_complete`).
    let mut views = Vec::new();
    for c in 0..12usize {
        views.push(FocusView::open(&all[c % 3], "p", &[]).await);
    }
    let mut tasks = Vec::new();
    for (c, mut view) in views.into_iter().enumerate() {
        let node = all[c % 3].clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            for k in 0..5usize {
                let id = &ids[(c * 5 + k * 3) % ids.len()];
                let focused = (c + k) % 3 != 0;
                if c % 2 == 0 {
                    let ty = if focused { "focus" } else { "blur" };
                    view.ws.send(json!({"type":ty,"sessionId":id,"projectId":"p"})).await;
                } else {
                    let (status, body) = put_focus(&node, json!({"sessionId":id,"focused":focused})).await;
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(body["projectId"], "p");
                }
            }
            view
        }));
    }
    let mut views = Vec::new();
    for t in tasks {
        views.push(t.await.expect("client task"));
    }
    // WebSocket requests may still be under way: wait until the state
    // stops moving (asked of a different node each round).
    let mut last = get_focus(&all[0], "p").await;
    for round in 1.. {
        for v in &mut views {
            v.until_version(last["version"].as_u64().unwrap(), secs(30)).await;
        }
        let now = get_focus(&all[round % 3], "p").await;
        if now == last {
            break;
        }
        last = now;
    }
    let (version, set) = (last["version"].as_u64().unwrap(), strings(&last["focusedSessions"]));
    assert!(version >= 6, "too few changes: {last}");
    for node in &all {
        assert_eq!(get_focus(node, "p").await, last, "a node answers another state");
    }
    for v in &views {
        assert_eq!((v.version, &v.focused), (version, &set), "a client disagrees");
        assert_eq!(v.jumps, 0, "a client got a state instead of updates");
        let seen: Vec<u64> = v.updates.iter().map(|u| u["version"].as_u64().unwrap()).collect();
        assert_eq!((v.first, seen), (0, (1..=version).collect::<Vec<_>>()), "versions seen");
    }
    // One sequence: every client saw the same update for each version.
    for v in &views {
        for u in &v.updates {
            let n = u["version"].as_u64().unwrap();
            let other = views
                .iter()
                .flat_map(|w| &w.updates)
                .find(|w| w["version"].as_u64() == Some(n))
                .unwrap();
            assert_eq!(
                (&u["sessionId"], &u["focused"], &u["focusedSessions"]),
                (&other["sessionId"], &other["focused"], &other["focusedSessions"]),
                "version {n} differs between clients"
            );
        }
    }
}

/// A stale `expectedVersion` is refused on every node, over REST (409 with
/// the current state) and WebSocket (`version_conflict`), and changes
/// nothing; REST on node B answers a change made through node C.
#[tokio::test]
async fn conflicts_are_answered_on_every_node_and_rest_reflects_other_nodes() {
    let redis = TestRedis::start().await;
    let all = nodes(&redis, 3).await;
    let (a, b, c) = (&all[0], &all[1], &all[2]);
    session(a, &all, "p", "one").await;
    session(b, &all, "p", "two").await;
    let (status, body) = put_focus(c, json!({"sessionId":"one","focused":true,"expectedVersion":0})).await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(1)), "{body}");
    let on_b = get_focus(b, "p").await;
    assert_eq!(
        (on_b["version"].as_u64(), strings(&on_b["focusedSessions"])),
        (Some(1), vec!["one".into()])
    );
    // A second writer that read version 0 loses, on another node.
    let (status, body) = put_focus(a, json!({"sessionId":"two","focused":true,"expectedVersion":0})).await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(
        (body["success"].as_bool(), body["version"].as_u64()),
        (Some(false), Some(1))
    );
    assert_eq!(body["error"]["code"], "version_conflict");
    assert_eq!(strings(&body["focusedSessions"]), ["one"]);
    let mut view = FocusView::open(b, "p", &[]).await;
    view.ws
        .send(json!({"type":"focus","sessionId":"two","projectId":"p","expectedVersion":0}))
        .await;
    let err = view.ws.until_type("error", secs(10)).await;
    assert_eq!(
        (err["code"].as_str(), err["version"].as_u64()),
        (Some("version_conflict"), Some(1)),
        "{err}"
    );
    // The right version goes through, from node B, for a session of B.
    view.ws
        .send(json!({"type":"focus","sessionId":"two","projectId":"p","expectedVersion":1}))
        .await;
    view.until_version(2, secs(10)).await;
    for node in &all {
        let s = get_focus(node, "p").await;
        assert_eq!(
            (s["version"].as_u64(), strings(&s["focusedSessions"])),
            (Some(2), vec!["one".into(), "two".into()])
        );
    }
    let (s, projects) = c.get("/api/projects").await;
    assert_eq!(s, 200);
    let p = projects["projects"]
        .as_array()
        .unwrap()
        .iter()
        .find(|p| p["projectId"] == "p")
        .cloned()
        .unwrap_or_else(|| panic!("no project p on node C: {projects}"));
    assert_eq!(
        (p["version"].as_u64(), strings(&p["focusedSessions"])),
        (Some(2), vec!["one".into(), "two".into()])
    );
}

/// With Redis down a focus change is refused with 503
/// `cluster_unavailable` (REST) and the socket gets that error code; when
/// Redis comes back empty, the nodes put their focus state back, versions
/// carry on where they were, and every client sees the next change as the
/// next version.
#[tokio::test]
async fn focus_works_again_after_redis_restarts_empty_and_versions_carry_on() {
    let mut redis = TestRedis::start().await;
    let all = nodes(&redis, 3).await;
    let (a, b) = (&all[0], &all[1]);
    session(a, &all, "p", "one").await;
    session(b, &all, "p", "two").await;
    let (status, body) = put_focus(a, json!({"sessionId":"one","focused":true})).await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(1)), "{body}");
    let mut views = Vec::new();
    for node in &all {
        let mut v = FocusView::open(node, "p", &[]).await;
        v.until_version(1, secs(10)).await;
        views.push(v);
    }
    redis.stop();
    let (status, body) = put_focus(b, json!({"sessionId":"two","focused":true})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "cluster_unavailable", "{body}");
    views[2]
        .ws
        .send(json!({"type":"focus","sessionId":"two","projectId":"p"}))
        .await;
    let err = views[2].ws.until_type("error", secs(10)).await;
    assert_eq!(err["code"], "cluster_unavailable", "{err}");
    // Reads answer the last state this node knows.
    assert_eq!(get_focus(&all[2], "p").await["version"].as_u64(), Some(1));
    redis.start_again().await;
    let node = b.clone();
    let back = wait_until(secs(20), || {
        let node = node.clone();
        async move { put_focus(&node, json!({"sessionId":"two","focused":true})).await.0 == 200 }
    })
    .await;
    assert!(back, "focus did not work again within 20 s of Redis restarting");
    for v in &mut views {
        v.until_version(2, secs(10)).await;
        assert_eq!(v.jumps, 0, "a client got a state instead of the next update");
        assert_eq!(v.updates.last().unwrap()["version"].as_u64(), Some(2));
        assert_eq!(v.focused, ["one", "two"]);
    }
    for node in &all {
        let s = get_focus(node, "p").await;
        assert_eq!(
            (s["version"].as_u64(), strings(&s["focusedSessions"])),
            (Some(2), vec!["one".into(), "two".into()])
        );
    }
}

/// A session created on one node a moment ago is focused through another
/// at once: the request waits for the directory as an attach does, and
/// focus keeps no map of sessions of its own in Redis.
#[tokio::test]
async fn a_session_just_created_on_another_node_is_found_through_the_directory() {
    let redis = TestRedis::start().await;
    let all = nodes(&redis, 2).await;
    all[0]
        .create(json!({"id":"fresh","kind":"command","argv":["cat"],"project":"pf"}))
        .await;
    let (status, body) = put_focus(&all[1], json!({"sessionId":"fresh","focused":true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(strings(&get_focus(&all[0], "pf").await["focusedSessions"]), ["fresh"]);
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let map: bool = redis::cmd("EXISTS")
        .arg("termstream:focus:sessions")
        .query_async(&mut conn)
        .await
        .unwrap();
    assert!(!map, "focus keeps its own map of sessions");
}

/// Session `r` on `a`, a shell script that prints `before-`, `mid-` and
/// `after-` each after a line of input, at 80×24; a focus-aware viewer on
/// `b` with `r` focused, that saw `before-x` and no resize. Returns the
/// viewer and what it saw.
async fn focused_viewer(a: &TestServer, b: &TestServer, t: std::time::Duration) -> (WsClient, String) {
    let script = "read a; echo before-$a; read b; echo mid-$b; read c; echo after-$c; exec sleep 600";
    a.create(json!({"id":"r","argv":["sh","-c",script],"cols":80,"rows":24}))
        .await;
    listed(b, "r", t).await.expect("listed on B");
    assert_eq!(put_focus(b, json!({"sessionId":"r","focused":true})).await.0, 200);
    let mut ws = WsClient::connect(b, "/ws").await;
    ws.send(json!({"type":"session.attach","sessionId":"r","output":"binary","stream":"focus"}))
        .await;
    ws.until_type("session.attached", t).await;
    a.input("r", "x\n").await;
    let mut seen = String::new();
    while !seen.contains("before-x") {
        match ws.recv(t).await {
            Some(Incoming::Output { data, .. }) => seen.push_str(&String::from_utf8_lossy(&data)),
            Some(Incoming::Json(m)) => assert_ne!(m["type"], "session.resized", "{m}"),
            other => panic!("the output ended before before-x ({other:?})"),
        }
    }
    (ws, seen)
}

/// A focus-aware viewer on a node that does not own the session is told a
/// resize made while the session was unfocused once, at its place. That
/// node's stand-in, with no receiver left, stopped reading the session's
/// stream, so it learned the new size from the directory's records, not
/// the resize's entry; its last resize is older. The catch-up on focus
/// took that size for a resize from before the output the client had and
/// told it before the replay; the restarted reader then read the entry,
/// and its event told it again, at its place.
#[tokio::test]
async fn a_resize_made_while_unfocused_is_told_once_at_its_place_on_another_node() {
    let t = secs(20);
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "600000"), NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let focus = |focused: bool| put_focus(b, json!({"sessionId":"r","focused":focused}));
    let (mut ws, _) = focused_viewer(a, b, t).await;
    assert_eq!(focus(false).await.0, 200);
    // B's stand-in stops its reader at a heartbeat with no receiver.
    tokio::time::sleep(std::time::Duration::from_millis(10 * HEARTBEAT_MS)).await;
    a.input("r", "y\n").await;
    let printed = |text: &'static str| async move { holds(&a.output_all("r", 0).await, text) };
    assert!(wait_until(t, || printed("mid-y")).await, "mid-y");
    let (status, body) = a.post("/api/sessions/r/resize", json!({"cols":100,"rows":30})).await;
    assert_eq!(status, 200, "{body}");
    assert!(
        wait_until(t, || async { b.info("r").await["cols"] == 100 }).await,
        "B never learned the size"
    );
    a.input("r", "z\n").await;
    assert!(wait_until(t, || printed("after-z")).await, "after-z");
    assert_eq!(focus(true).await.0, 200);
    ws.assert_resize_between("mid-y", "after-z", (100, 30), t).await;
}

/// A resize the unfocused viewer missed, read by its node's stand-in while
/// another viewer kept the stand-in's reader running, is told at its place
/// on refocus even when a newer resize came after the reader stopped: the
/// bytes between them were drawn at it. The stand-in's last resize is then
/// at the client's position but no longer the session's size (the newer
/// one is known from the directory's records); the catch-up dropped it as
/// stale, and the output up to the newer resize reached the client at its
/// old size.
#[tokio::test]
async fn a_missed_resize_is_told_before_output_drawn_at_it_when_a_newer_one_followed() {
    let t = secs(20);
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "600000"), NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let focus = |focused: bool| put_focus(b, json!({"sessionId":"r","focused":focused}));
    let (mut ws, mut seen) = focused_viewer(a, b, t).await;
    assert_eq!(focus(false).await.0, 200);
    // A full-stream viewer on B keeps B's stand-in reading while the
    // session is resized, so the stand-in reads the resize's entry; the
    // unfocused viewer holds no receiver and misses its event.
    let mut full = WsClient::connect(b, "/ws").await;
    full.send(json!({"type":"session.attach","sessionId":"r","output":"binary"}))
        .await;
    full.until_type("session.attached", t).await;
    let (status, body) = a.post("/api/sessions/r/resize", json!({"cols":90,"rows":28})).await;
    assert_eq!(status, 200, "{body}");
    let resized = full.until_type("session.resized", t).await;
    assert_eq!(
        (resized["cols"].as_u64(), resized["rows"].as_u64()),
        (Some(90), Some(28)),
        "{resized}"
    );
    drop(full);
    // B's stand-in stops its reader at a heartbeat with no receiver.
    tokio::time::sleep(std::time::Duration::from_millis(10 * HEARTBEAT_MS)).await;
    a.input("r", "y\n").await;
    let printed = |text: &'static str| async move { holds(&a.output_all("r", 0).await, text) };
    assert!(wait_until(t, || printed("mid-y")).await, "mid-y");
    let (status, body) = a.post("/api/sessions/r/resize", json!({"cols":100,"rows":30})).await;
    assert_eq!(status, 200, "{body}");
    a.input("r", "z\n").await;
    assert!(wait_until(t, || printed("after-z")).await, "after-z");
    assert!(
        wait_until(t, || async { b.info("r").await["cols"] == 100 }).await,
        "B never learned the size"
    );
    assert_eq!(focus(true).await.0, 200);
    // Every resize told from here, with the output seen before it.
    let mut told = Vec::new();
    while !seen.contains("after-z") {
        match ws.recv(t).await {
            Some(Incoming::Output { data, .. }) => seen.push_str(&String::from_utf8_lossy(&data)),
            Some(Incoming::Json(m)) if m["type"] == "session.resized" => {
                told.push((
                    m["cols"].as_u64().unwrap_or(0),
                    m["rows"].as_u64().unwrap_or(0),
                    seen.clone(),
                ));
            }
            Some(Incoming::Json(_)) => {}
            other => panic!("the replay ended before after-z ({other:?}): {seen:?}"),
        }
    }
    let sizes: Vec<(u64, u64)> = told.iter().map(|&(c, r, _)| (c, r)).collect();
    assert_eq!(sizes, [(90, 28), (100, 30)], "the resizes told: {told:?}");
    assert!(
        !told[0].2.contains("mid-y"),
        "90x28 came after mid-y, drawn at it: {told:?}"
    );
    assert!(
        told[1].2.contains("mid-y") && !told[1].2.contains("after-z"),
        "100x30 not between mid-y and after-z: {told:?}"
    );
}
