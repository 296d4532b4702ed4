//! Event channels across the nodes of a cluster: three real nodes share a
//! real `redis-server`; an event posted on one node reaches the subscribed
//! sockets of every node exactly once, each publisher's events in the
//! order it posted them, and posting refuses with 503
//! `cluster_unavailable` while Redis is down, then works again. A post whose
//! client hangs up while Redis holds its event reaches this node's sockets
//! as well as the other nodes'. A node whose `sessions` channel lags
//! resynchronizes with every session readable there, its own and the other
//! nodes'.

mod common;

use std::sync::Arc;

use common::redis::TestRedis;
use common::ws::{Incoming, WsClient};
use common::{TestServer, secs, wait_until};
use serde_json::{Value, json};

/// Starts `n` nodes of one cluster and waits until each follows the
/// cluster's event channel (so no event posted from now on is missed).
async fn nodes(redis: &TestRedis, n: usize) -> Vec<Arc<TestServer>> {
    let mut out = Vec::new();
    for _ in 0..n {
        out.push(Arc::new(
            TestServer::start_with(&["--cluster", &redis.url()], &[]).await,
        ));
    }
    wait_subscribed(redis, n).await;
    out
}

/// Waits until `n` nodes follow the event channel in Redis.
async fn wait_subscribed(redis: &TestRedis, n: usize) {
    let client = redis::Client::open(redis.url()).expect("redis url");
    let ready = wait_until(secs(10), || {
        let client = client.clone();
        async move {
            let Ok(mut conn) = client.get_multiplexed_async_connection().await else {
                return false;
            };
            let counts: Vec<(String, usize)> = redis::cmd("PUBSUB")
                .arg("NUMSUB")
                .arg("termstream:events")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            counts.first().is_some_and(|(_, c)| *c >= n)
        }
    })
    .await;
    assert!(ready, "{n} nodes did not follow the event channel within 10 s");
}

/// A `/ws` socket subscribed to `channels`.
async fn subscriber(node: &TestServer, channels: &[&str]) -> WsClient {
    let mut ws = WsClient::connect(node, "/ws").await;
    ws.send(json!({"type":"subscribe","channels":channels})).await;
    ws.until_type("subscribed", secs(10)).await;
    ws
}

async fn post(node: &TestServer, event: Value) -> (u16, Value) {
    let (s, b) = node.post("/api/events", event).await;
    (s.as_u16(), b)
}

/// Reads events until the notification titled `end`; answers the others.
async fn until_end(ws: &mut WsClient) -> Vec<Value> {
    let mut got = Vec::new();
    loop {
        match ws.recv(secs(10)).await {
            Some(Incoming::Json(m)) if m["type"] == "notification" && m["title"] == "end" => return got,
            Some(Incoming::Json(m)) if m["type"] == "notification" || m["type"] == "task_status" => got.push(m),
            Some(Incoming::Json(_)) | Some(Incoming::Output { .. }) => {}
            other => panic!("no end event within 10 s: {other:?} after {got:?}"),
        }
    }
}

/// Nodes A and B each post 20 events at once; then C posts `end`. Every
/// subscribed socket of every node gets each of the 40 events once, A's in
/// A's order and B's in B's order, and nothing of A's or B's after `end`
/// (which went through Redis after them: an echo would come before it).
#[tokio::test]
async fn events_posted_on_two_nodes_reach_every_node_once_in_each_publishers_order() {
    let redis = TestRedis::start().await;
    let all = nodes(&redis, 3).await;
    let mut sockets = Vec::new();
    for node in &all {
        sockets.push(subscriber(node, &["notification", "task_status"]).await);
        sockets.push(subscriber(node, &["notification", "task_status"]).await);
    }
    let publish = |node: Arc<TestServer>, who: &'static str| {
        tokio::spawn(async move {
            for i in 0..20 {
                let event = if who == "a" {
                    json!({"type":"notification","title":"a","message":i.to_string()})
                } else {
                    json!({"type":"task_status","taskId":"b","status":i.to_string()})
                };
                let (status, body) = post(&node, event).await;
                assert_eq!(status, 202, "{body}");
            }
        })
    };
    let (a, b) = (publish(all[0].clone(), "a"), publish(all[1].clone(), "b"));
    a.await.unwrap();
    b.await.unwrap();
    let (status, body) = post(&all[2], json!({"type":"notification","title":"end","message":"."})).await;
    assert_eq!(status, 202, "{body}");
    let numbers: Vec<String> = (0..20).map(|i| i.to_string()).collect();
    for (i, ws) in sockets.iter_mut().enumerate() {
        let got = until_end(ws).await;
        let from_a: Vec<String> = got
            .iter()
            .filter(|m| m["title"] == "a")
            .map(|m| m["message"].as_str().unwrap().to_owned())
            .collect();
        let from_b: Vec<String> = got
            .iter()
            .filter(|m| m["taskId"] == "b")
            .map(|m| m["status"].as_str().unwrap().to_owned())
            .collect();
        assert_eq!(from_a, numbers, "socket {i} (node {}): A's events", i / 2);
        assert_eq!(from_b, numbers, "socket {i} (node {}): B's events", i / 2);
        assert_eq!(got.len(), 40, "socket {i}: other events: {got:?}");
        assert!(got.iter().all(|m| m["timestamp"].is_u64()), "{got:?}");
    }
}

/// With Redis down, posting an event is 503 `cluster_unavailable` and
/// nobody gets it; after Redis restarts (empty), posting works again and
/// reaches the other nodes.
#[tokio::test]
async fn posting_is_refused_while_redis_is_down_and_works_again_after() {
    let mut redis = TestRedis::start().await;
    let all = nodes(&redis, 2).await;
    let mut here = subscriber(&all[0], &["notification"]).await;
    let mut there = subscriber(&all[1], &["notification"]).await;
    redis.stop();
    let (status, body) = post(&all[0], json!({"type":"notification","title":"lost","message":"."})).await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "cluster_unavailable", "{body}");
    redis.start_again().await;
    wait_subscribed(&redis, 2).await;
    let (status, body) = post(&all[0], json!({"type":"notification","title":"back","message":"."})).await;
    assert_eq!(status, 202, "{body}");
    let (status, body) = post(&all[0], json!({"type":"notification","title":"end","message":"."})).await;
    assert_eq!(status, 202, "{body}");
    for ws in [&mut here, &mut there] {
        let got = until_end(ws).await;
        let titles: Vec<&str> = got.iter().filter_map(|m| m["title"].as_str()).collect();
        assert_eq!(
            titles,
            ["back"],
            "the refused event was delivered, or the later one lost"
        );
    }
}

/// The `sessions` channel on node B announces a session created on node A
/// exactly once: B learns of it from the cluster's directory, and A must
/// not also relay its own announcement through the event bridge.
#[tokio::test]
async fn a_session_of_another_node_is_announced_once_on_the_sessions_channel() {
    let redis = TestRedis::start().await;
    let all = nodes(&redis, 2).await;
    let mut watcher = subscriber(&all[1], &["sessions", "notification"]).await;
    let (status, body) = all[0]
        .post(
            "/api/sessions",
            json!({"id":"announced-once","kind":"command","argv":["sleep","30"]}),
        )
        .await;
    assert_eq!(status.as_u16(), 201, "{body}");
    let created =
        |m: &Value| m["type"] == "session_update" && m["sessionId"] == "announced-once" && m["change"] == "created";
    // B lists it once its directory has it; then two markers from A go
    // through Redis, and a duplicate announcement has their time to come.
    let listed = wait_until(secs(10), || async {
        let (status, _) = all[1].get("/api/sessions/announced-once").await;
        status.as_u16() == 200
    })
    .await;
    assert!(listed, "node B never listed node A's session");
    let mut count = 0;
    for _ in 0..2 {
        let (status, body) = post(&all[0], json!({"type":"notification","title":"end","message":"."})).await;
        assert_eq!(status, 202, "{body}");
        loop {
            match watcher.recv(secs(10)).await {
                Some(Incoming::Json(m)) if created(&m) => count += 1,
                Some(Incoming::Json(m)) if m["type"] == "notification" && m["title"] == "end" => break,
                Some(_) => {}
                None => panic!("no marker within 10 s (announced {count} times)"),
            }
        }
    }
    assert_eq!(count, 1, "the session of node A was announced {count} times on node B");
}

/// How long [`an_event_whose_poster_hangs_up_during_its_publish_reaches_this_node_too`]
/// may hold the `PUBLISH`: under the node's 2 s response timeout, with a
/// margin.
const MAX_HOLD: std::time::Duration = std::time::Duration::from_millis(1500);

/// A post whose client hangs up while its event is on its way through Redis
/// still reaches this node's sockets, as it reaches the other nodes': the
/// publish and this node's delivery run in a task of their own. The
/// request's future used to do both, and dropped once the other nodes had
/// the event, it never handed it to this node's sockets. Redis holds the
/// event (`CLIENT PAUSE ... WRITE` holds a `PUBLISH`) until the node has
/// closed the connection, which it does once it dropped the request.
///
/// The node's Redis connection gives a `PUBLISH` 2 s to be answered
/// (`events/relay.rs`; past that it fails the post, and retries once): the
/// hold must end well before, or the test would check a failed publish
/// rather than a held one. It is bounded from the request's send to the
/// `UNPAUSE` at [`MAX_HOLD`], and the test says so when it took longer.
#[tokio::test]
async fn an_event_whose_poster_hangs_up_during_its_publish_reaches_this_node_too() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let redis = TestRedis::start().await;
    let all = nodes(&redis, 2).await;
    let mut here = subscriber(&all[0], &["notification"]).await;
    let mut there = subscriber(&all[1], &["notification"]).await;
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let watcher = conn.clone();
    let held_publish = || {
        let mut conn = watcher.clone();
        async move {
            let clients: String = redis::cmd("CLIENT")
                .arg("LIST")
                .query_async(&mut conn)
                .await
                .unwrap_or_default();
            clients
                .lines()
                .any(|c| c.contains(" cmd=publish ") && c.contains(" flags=b "))
        }
    };
    let () = redis::cmd("CLIENT")
        .arg("PAUSE")
        .arg(10_000)
        .arg("WRITE")
        .query_async(&mut conn)
        .await
        .expect("CLIENT PAUSE");
    let body = json!({"type":"notification","title":"cut","message":"."}).to_string();
    let request = format!(
        "POST /api/events HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        all[0].addr(),
        body.len()
    );
    let mut socket = tokio::net::TcpStream::connect(all[0].addr()).await.expect("connect");
    let sent = std::time::Instant::now();
    socket.write_all(request.as_bytes()).await.expect("send");
    assert!(
        wait_until(secs(10), held_publish).await,
        "the event never reached Redis"
    );
    // Hangs up, and waits until the node closed its end: the request's
    // future is gone by then.
    socket.shutdown().await.expect("hang up");
    let mut answer = Vec::new();
    let closed = tokio::time::timeout(secs(10), socket.read_to_end(&mut answer)).await;
    assert!(closed.is_ok(), "the node kept the connection of a client that hung up");
    assert!(
        answer.is_empty(),
        "answered while Redis held the event: {}",
        String::from_utf8_lossy(&answer)
    );
    let () = redis::cmd("CLIENT")
        .arg("UNPAUSE")
        .query_async(&mut conn)
        .await
        .expect("CLIENT UNPAUSE");
    let held = sent.elapsed();
    assert!(
        held < MAX_HOLD,
        "Redis held the PUBLISH for up to {held:?}, more than {MAX_HOLD:?}: near the node's 2 s response \
         timeout the test no longer checks a held publish (too slow a machine?)"
    );
    for (name, ws) in [("this node", &mut here), ("the other node", &mut there)] {
        loop {
            match ws.recv(secs(10)).await {
                Some(Incoming::Json(m)) if m["type"] == "notification" && m["title"] == "cut" => break,
                Some(Incoming::Json(_) | Incoming::Output { .. }) => {}
                other => panic!("{name}'s socket never got the event: {other:?}"),
            }
        }
    }
}

/// Node B's `sessions` channel lags (its registry's queue of changes holds
/// 1; B's sync adds a burst of node A's sessions in one step): it
/// resynchronizes with every session B can read, A's included, and tells
/// an id's incarnations apart. None of A's sessions is said deleted (but
/// the one deleted), each is announced, and each is still followed: its
/// exit is published, the new incarnation's of an id re-used too.
#[tokio::test]
async fn the_sessions_channel_resynchronizes_with_every_nodes_sessions_after_a_lag() {
    const N: usize = 8;
    let redis = TestRedis::start().await;
    let a = TestServer::start_with(&["--cluster", &redis.url()], &[]).await;
    let b = TestServer::start_logged(
        &["--cluster", &redis.url()],
        &[
            ("TERMSTREAM_SESSION_CHANGES_QUEUE", "1"),
            ("RUST_LOG", "termstream::gateway::session_feed=debug"),
        ],
    )
    .await;
    wait_subscribed(&redis, 2).await;
    let mut watcher = subscriber(&b, &["sessions"]).await;
    let create = |id: String| {
        let a = &a;
        async move {
            let (status, body) = a
                .post(
                    "/api/sessions",
                    json!({"id":id,"kind":"command","argv":["sh","-c","read go"]}),
                )
                .await;
            assert_eq!(status.as_u16(), 201, "create {id}: {body}");
        }
    };
    create("pre".into()).await;
    create("again".into()).await;
    let event = |m: &Value, id: &str, change: &str| {
        m["type"] == "session_update" && m["sessionId"] == id && m["change"] == change
    };
    let mut first = 0;
    while first < 2 {
        match watcher.recv(secs(10)).await {
            Some(Incoming::Json(m)) if event(&m, "pre", "created") || event(&m, "again", "created") => first += 1,
            Some(_) => {}
            None => panic!("node B never announced node A's first sessions"),
        }
    }
    // "again" deleted and created again, then the burst, while B is
    // stopped: B learns of all in one sync once it goes on (a lag of its
    // queue of 1), and may miss which incarnation of "again" is current.
    let paused = b.pause();
    let (status, body) = a.request("DELETE", "/api/sessions/again", None).await;
    assert!(status.is_success(), "{status} {body}");
    create("again".into()).await;
    let mut ids: Vec<String> = (0..N).map(|i| format!("burst{i}")).collect();
    futures_util::future::join_all(ids.iter().cloned().map(create)).await;
    ids.push("again".into());
    let on_a = wait_until(secs(10), || async {
        let (_, list) = a.get("/api/sessions").await;
        ids.iter().all(|id| common::session_ids(&list).contains(&id.as_str()))
    })
    .await;
    drop(paused);
    assert!(on_a, "node A never listed the burst");
    let listed = wait_until(secs(10), || async {
        let (_, list) = b.get("/api/sessions").await;
        ids.iter().all(|id| common::session_ids(&list).contains(&id.as_str()))
    })
    .await;
    assert!(listed, "node B never listed the burst");
    for id in &ids {
        a.input(id, "go\n").await;
    }
    // The new "again" is followed: its exit is published.
    let mut announced: Vec<&String> = Vec::new();
    let mut exited: Vec<&String> = Vec::new();
    let deadline = tokio::time::Instant::now() + secs(15);
    while exited.len() < ids.len() {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        let m = match watcher.recv(left).await {
            Some(Incoming::Json(m)) => m,
            Some(_) => continue,
            None => panic!("exits published on node B: {exited:?}; announced: {announced:?}"),
        };
        assert!(
            m["change"] != "deleted" || m["sessionId"] == "again",
            "a session of node A said deleted on node B: {m}"
        );
        for id in &ids {
            if event(&m, id, "created") && !announced.contains(&id) {
                announced.push(id);
            }
            if event(&m, id, "status") && m["status"] == "exited" && !exited.contains(&id) {
                exited.push(id);
            }
        }
    }
    assert_eq!(announced.len(), ids.len(), "announced: {announced:?}");
    // The lag was real.
    assert!(
        b.log().contains("missed session changes"),
        "no lag was produced: {}",
        b.log()
    );
}
