//! Redis goes away: nodes say so in `/readyz` and keep their sessions
//! running and recording; when Redis comes back empty, every live session
//! is registered again and can be resumed from any node without loss. And
//! when Redis refuses writes for a moment but keeps the nodes'
//! registrations, a session's stream carries on after it, as it does when
//! an owner's registration went through but its answer was lost.

mod common;

use std::time::Duration;

use common::TestServer;
use common::cluster::{HEARTBEAT_MS, NOT_LOST, TestCluster, attach, holds, listed, read_until};
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
    let mut cluster = TestCluster::start_with(3, &[NOT_LOST]).await;
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
    assert_eq!(body["error"]["code"], "cluster_unavailable", "{body}");
    // Input through a node that does not own the session cannot be handed
    // over: the same answer.
    let (status, body) = cluster.nodes[1]
        .post("/api/sessions/ticker/input", json!({"data":"x"}))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (503, Some("cluster_unavailable")),
        "{body}"
    );
    // So does a terminate through it, on both routes: it used to wait out
    // the grace period and 5 s more, then answer busy as if the owner had
    // not ended the session in time.
    for path in ["/api/sessions/ticker/terminate", "/terminal/ticker/terminate"] {
        let (status, body) = cluster.nodes[1].post(path, json!(null)).await;
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (503, Some("cluster_unavailable")),
            "{path}: {body}"
        );
    }
    assert_eq!(
        a.info("ticker").await["status"],
        "running",
        "the terminates did nothing"
    );

    cluster.redis.start_again().await;
    for node in &cluster.nodes {
        readyz_is(node, 200).await.expect("ready again");
    }
    // Redis came back empty: a node that joins now learns of the session
    // only if its owner registered it again.
    let url = cluster.redis.url();
    let hb = HEARTBEAT_MS.to_string();
    let d = TestServer::start_with(
        &["--cluster", &url],
        &[("TERMSTREAM_CLUSTER_HEARTBEAT_MS", hb.as_str()), NOT_LOST],
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

/// Whether `node` (started with [`TestServer::start_logged`], a JSON log
/// and warnings kept) logged that publishing session `id` to Redis failed
/// (`cluster.publish_failed`): per session, where Redis's count of refused
/// `XADD`s is the whole server's.
fn publish_failed(node: &TestServer, id: &str) -> bool {
    node.log_events("cluster.publish_failed")
        .iter()
        .any(|v| v["session"] == id)
}

/// Redis refuses writes (out of memory) while two sessions print, then
/// takes them again; it never lost the nodes' registrations. The owner's
/// stream of a session failed at the refused `XADD`, and nothing started it
/// again (only a new registration did), so a viewer on another node saw no
/// more of the session. Now it starts again; and the other session,
/// deleted meanwhile, does not have its record written back when its
/// publisher wakes.
///
/// Each publisher's failure is read from the owner's log, session by
/// session. This test once counted Redis's refused `XADD`s instead, for
/// the whole server, and waited for one more after each session's input:
/// a publisher that had failed already (on output printed after the line
/// the test waited for, such as the shell's prompt, or on the record's put
/// that follows a write) waits for a heartbeat that reaches Redis, and none
/// does while Redis refuses writes, so it tried no `XADD` for the input,
/// and the wait timed out on a loaded machine. Here `steady` always fails
/// first on output printed before its input of the window (`early`).
#[tokio::test]
async fn a_stream_refused_by_redis_for_a_moment_carries_on_after_it() {
    let redis = common::redis::TestRedis::start().await;
    // Nodes count each other lost only after a minute: the registrations
    // outlast the refusal, so no node registers again.
    let hb = HEARTBEAT_MS.to_string();
    let env = [
        ("TERMSTREAM_CLUSTER_HEARTBEAT_MS", hb.as_str()),
        ("TERMSTREAM_CLUSTER_LOST_MS", "60000"),
    ];
    // The owner's warnings are read (`publish_failed`), whatever RUST_LOG
    // the tests run with.
    let mut logged = env.to_vec();
    logged.push(("RUST_LOG", "termstream=warn"));
    let a = TestServer::start_logged(&["--cluster", &redis.url(), "--log-format", "json"], &logged).await;
    let b = TestServer::start_with(&["--cluster", &redis.url()], &env).await;
    for node in [&a, &b] {
        readyz_is(node, 200).await.expect("ready");
    }
    let info = a.create(json!({"id":"steady","argv":["/bin/sh"]})).await;
    a.create(json!({"id":"doomed","argv":["/bin/sh"]})).await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    listed(&b, "steady", T).await.expect("listed on B");
    let mut on_b = WsClient::connect(&b, "/ws").await;
    let mut seen_b = attach(&mut on_b, "steady", Some((&epoch, 0))).await;
    a.input("steady", "echo before-$((6*7))\n").await;
    read_until(&mut on_b, &mut seen_b, T, |s| holds(&s.data, "before-42")).await;

    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    for (key, value) in [("maxmemory-policy", "noeviction"), ("maxmemory", "1")] {
        let _: () = redis::cmd("CONFIG")
            .arg("SET")
            .arg(key)
            .arg(value)
            .query_async(&mut conn)
            .await
            .expect("CONFIG SET");
    }
    // Output while Redis refuses writes: each session's publisher fails
    // (steady's on `early`), then waits for a heartbeat that reaches Redis.
    for (id, line) in [("steady", "early"), ("doomed", "during")] {
        a.input(id, &format!("echo {line}-$((6*7))\n")).await;
        let failed = common::wait_until(T, || async { publish_failed(&a, id) }).await;
        assert!(failed, "publishing {id} to Redis failed:\n{}", a.log());
    }
    // Printed while steady's publisher waits: it tries no XADD of it now.
    a.input("steady", "echo during-$((6*7))\n").await;
    // Deleted while its publisher waits to try again.
    let (status, body) = a.request("DELETE", "/api/sessions/doomed", None).await;
    assert_eq!(status, 204, "{body}");
    let _: () = redis::cmd("CONFIG")
        .arg("SET")
        .arg("maxmemory")
        .arg("0")
        .query_async(&mut conn)
        .await
        .expect("CONFIG SET");

    // What was printed while Redis refused it, and what comes after.
    a.input("steady", "echo after-$((6*7))\n").await;
    read_until(&mut on_b, &mut seen_b, T, |s| {
        holds(&s.data, "early-42") && holds(&s.data, "during-42") && holds(&s.data, "after-42")
    })
    .await;
    // The deleted session's publisher woke with steady's, whose output B
    // has now seen, and did not write its record back (the delete had
    // removed it from the directory).
    let record: Option<String> = redis::cmd("HGET")
        .arg("termstream:dir")
        .arg("doomed")
        .query_async(&mut conn)
        .await
        .expect("HGET");
    assert_eq!(record, None, "the deleted session's record came back");
    let truth = a.output_all("steady", 0).await;
    read_until(&mut on_b, &mut seen_b, T, |s| s.end() >= truth.len() as u64).await;
    assert_eq!(
        seen_b.range(0, truth.len() as u64),
        &truth[..],
        "B's client saw the session whole"
    );
    a.terminate("steady").await;
}

/// Redis comes back empty (here: flushed) and the owner's registration
/// goes through, but its answer is lost. The owner's next heartbeat found
/// its liveness key (the lost registration had set it) and never
/// registered again, so its publishers were never told to write their
/// streams again: a session's stream was gone, appends to it (which never
/// create a stream known to exist) went nowhere, and a viewer on another
/// node saw no more output. Now a failed registration is made again at the
/// next beat.
#[tokio::test]
async fn an_owner_whose_registration_answer_was_lost_publishes_on() {
    let redis = common::redis::TestRedis::start().await;
    let proxy = common::redis_proxy::ReplyLosingProxy::start(redis.port()).await;
    // Nodes count each other lost only after a minute: the key the lost
    // registration set outlasts the owner's timeout.
    let hb = HEARTBEAT_MS.to_string();
    let env = [
        ("TERMSTREAM_CLUSTER_HEARTBEAT_MS", hb.as_str()),
        ("TERMSTREAM_CLUSTER_LOST_MS", "60000"),
    ];
    let a = TestServer::start_with(&["--cluster", &proxy.url()], &env).await;
    let b = TestServer::start_with(&["--cluster", &redis.url()], &env).await;
    for node in [&a, &b] {
        readyz_is(node, 200).await.expect("ready");
    }
    let info = a.create(json!({"id":"quiet","argv":["/bin/sh"]})).await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    listed(&b, "quiet", T).await.expect("listed on B");
    let mut on_b = WsClient::connect(&b, "/ws").await;
    let mut seen_b = attach(&mut on_b, "quiet", Some((&epoch, 0))).await;
    a.input("quiet", "echo before-$((6*7))\n").await;
    read_until(&mut on_b, &mut seen_b, T, |s| holds(&s.data, "before-42")).await;

    // The registration script, by its SHA1: a heartbeat's renewal of the
    // liveness key and a publisher's script, pipelined in one write, also
    // hold "evalsha" and "termstream:node:".
    let register = termstream::cluster::directory::register_script_sha();
    proxy.lose_reply_to(&["evalsha", &register]);
    let client = redis::Client::open(redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let _: () = redis::cmd("FLUSHALL").query_async(&mut conn).await.expect("FLUSHALL");
    let lost = common::wait_until(T, || async { proxy.lost() }).await;
    assert!(lost, "the owner registered again, and its answer was lost");
    // It went through: the record is back. The owner waits for its answer
    // until it times out, then its heartbeat reaches Redis again.
    let back = common::wait_until(T, || {
        let mut conn = conn.clone();
        async move {
            let exists: bool = redis::cmd("HEXISTS")
                .arg("termstream:dir")
                .arg("quiet")
                .query_async(&mut conn)
                .await
                .expect("HEXISTS");
            exists
        }
    })
    .await;
    assert!(back, "the lost registration wrote the record");
    // The owner writes the session's stream again (from its own log).
    let stream = format!("termstream:out:quiet:{epoch}");
    let again = common::wait_until(T, || {
        let (mut conn, stream) = (conn.clone(), stream.clone());
        async move {
            let exists: bool = redis::cmd("EXISTS")
                .arg(&stream)
                .query_async(&mut conn)
                .await
                .expect("EXISTS");
            exists
        }
    })
    .await;
    assert!(again, "the owner never wrote the session's stream again");

    a.input("quiet", "echo after-$((6*7))\n").await;
    read_until(&mut on_b, &mut seen_b, T, |s| holds(&s.data, "after-42")).await;
    let truth = a.output_all("quiet", 0).await;
    read_until(&mut on_b, &mut seen_b, T, |s| s.end() >= truth.len() as u64).await;
    assert_eq!(
        seen_b.range(0, truth.len() as u64),
        &truth[..],
        "B saw the session whole"
    );
}
