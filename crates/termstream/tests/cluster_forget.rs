//! A session deleted on its owner is removed from Redis, and so from every
//! other node's list, even when Redis refused part or all of the removal:
//! the owner forgets it in one step, tries again until that goes through,
//! and forgets any record of its own whose session it no longer has. Redis
//! is never restarted empty here: it keeps everything it held.

mod common;

use std::time::Duration;

use common::TestServer;
use common::cluster::{HEARTBEAT_MS, LOST_MS, NOT_LOST, TestCluster, listed};
use redis::aio::MultiplexedConnection;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

/// A connection of the test's own to the cluster's Redis.
async fn connect(cluster: &TestCluster) -> MultiplexedConnection {
    let client = redis::Client::open(cluster.redis.url()).expect("redis url");
    client.get_multiplexed_async_connection().await.expect("redis")
}

/// Runs `cmd` on `conn`, which must work.
async fn run<T: redis::FromRedisValue>(conn: &MultiplexedConnection, cmd: &mut redis::Cmd) -> T {
    cmd.query_async(&mut conn.clone()).await.expect("a Redis command")
}

/// Whether `node` lists session `id` now.
async fn lists(node: &TestServer, id: &str) -> bool {
    let (status, list) = node.get("/api/sessions").await;
    assert_eq!(status, 200, "{list}");
    list["sessions"]
        .as_array()
        .is_some_and(|s| s.iter().any(|i| i["id"] == id))
}

/// What Redis holds of session `id`, incarnation `epoch`: whether its
/// record, its claim and its stream exist.
async fn held(conn: &MultiplexedConnection, id: &str, epoch: &str) -> (bool, bool, bool) {
    let record: bool = run(conn, redis::cmd("HEXISTS").arg("termstream:dir").arg(id)).await;
    let claim: bool = run(conn, redis::cmd("EXISTS").arg(format!("termstream:id:{id}"))).await;
    let stream: bool = run(conn, redis::cmd("EXISTS").arg(format!("termstream:out:{id}:{epoch}"))).await;
    (record, claim, stream)
}

/// Waits until neither Redis nor `node`'s list has session `id` (of
/// `epoch`); panics with what is left after [`T`].
async fn gone_everywhere(conn: &MultiplexedConnection, node: &TestServer, id: &str, epoch: &str) {
    let gone = common::wait_until(T, || async {
        held(conn, id, epoch).await == (false, false, false) && !lists(node, id).await
    })
    .await;
    assert!(
        gone,
        "{id} is left: (record, claim, stream) in Redis {:?}, listed by the other node: {}",
        held(conn, id, epoch).await,
        lists(node, id).await
    );
}

/// How many calls of `command` Redis refused so far (`INFO commandstats`:
/// out of memory, or no permission).
async fn refused(conn: &MultiplexedConnection, command: &str) -> u64 {
    let stats: String = run(conn, redis::cmd("INFO").arg("commandstats")).await;
    stats
        .lines()
        .find_map(|l| l.strip_prefix(&format!("cmdstat_{command}:")))
        .and_then(|l| l.split(',').find_map(|kv| kv.strip_prefix("rejected_calls=")))
        .map_or(0, |n| n.trim().parse().expect("a count"))
}

/// Creates session `id` on `a` (a shell, with a stream: its prompt), waits
/// until `b` lists it, and returns its epoch.
async fn created(a: &TestServer, b: &TestServer, conn: &MultiplexedConnection, id: &str) -> String {
    let info = a.create(json!({"id":id,"argv":["/bin/sh"]})).await;
    let epoch = info["epoch"].as_str().expect("epoch").to_owned();
    listed(b, id, T).await.expect("listed on B");
    let streamed = common::wait_until(T, || async { held(conn, id, &epoch).await == (true, true, true) }).await;
    assert!(streamed, "the session's record, claim and stream are in Redis");
    epoch
}

/// Redis out of memory refuses `XADD` but takes `HDEL` and `DEL`: a delete
/// removed the record and the claim but not the change-log entry that
/// tells the other nodes, so they listed the session for good.
#[tokio::test]
async fn a_session_deleted_while_redis_is_out_of_memory_leaves_every_list() {
    // Nodes count each other lost only after a minute: no node registers
    // again while Redis refuses (that would read the directory whole).
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_CLUSTER_LOST_MS", "60000")]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let conn = connect(&cluster).await;
    let epoch = created(a, b, &conn, "doomed").await;

    for (key, value) in [("maxmemory-policy", "noeviction"), ("maxmemory", "1")] {
        let _: () = run(&conn, redis::cmd("CONFIG").arg("SET").arg(key).arg(value)).await;
    }
    let (status, body) = a.request("DELETE", "/api/sessions/doomed", None).await;
    assert_eq!(status, 204, "{body}");
    // The owner's removal reached Redis (the record is gone whether or
    // not the change log took its entry).
    let tried = common::wait_until(T, || async { !held(&conn, "doomed", &epoch).await.0 }).await;
    assert!(tried, "the owner removed the record");
    let _: () = run(&conn, redis::cmd("CONFIG").arg("SET").arg("maxmemory").arg("0")).await;

    gone_everywhere(&conn, b, "doomed", &epoch).await;
}

/// Redis refuses the owner's removal of a deleted session for a while
/// (here: `HDEL` not permitted), and takes it again: the removal was tried
/// once and never again, and every node listed the session for good.
#[tokio::test]
async fn a_removal_refused_by_redis_is_tried_again_until_it_goes_through() {
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_CLUSTER_LOST_MS", "60000")]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let conn = connect(&cluster).await;
    let epoch = created(a, b, &conn, "doomed").await;

    let before = refused(&conn, "hdel").await;
    let _: () = run(&conn, redis::cmd("ACL").arg("SETUSER").arg("default").arg("-hdel")).await;
    let (status, body) = a.request("DELETE", "/api/sessions/doomed", None).await;
    assert_eq!(status, 204, "{body}");
    let tried = common::wait_until(T, || async { refused(&conn, "hdel").await > before }).await;
    assert!(tried, "Redis refused the owner's removal");
    assert!(held(&conn, "doomed", &epoch).await.0, "the record stayed while refused");
    assert!(lists(b, "doomed").await, "B lists it while its removal is refused");
    // A create of the id on A waits for the removal, then gives up (503).
    let (status, body) = a
        .request(
            "POST",
            "/api/sessions",
            Some(&json!({"id":"doomed","argv":["/bin/sh"]})),
        )
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "busy", "{body}");
    let message = body["error"]["message"].as_str().unwrap_or_default();
    assert!(message.contains("still being removed"), "{body}");
    let _: () = run(&conn, redis::cmd("ACL").arg("SETUSER").arg("default").arg("+hdel")).await;

    gone_everywhere(&conn, b, "doomed", &epoch).await;
    // The id is free again, on any node.
    b.create(json!({"id":"doomed","argv":["/bin/sh"]})).await;
}

/// A node that stops while the removal of a session it deleted is still
/// refused by Redis finishes that removal (within its shutdown budget)
/// before it exits. It exited at once, leaving the session's record and
/// its claim in Redis: nothing else removes a claim, so the id could never
/// be created again on any node. And it waited without trying again: a
/// removal that had failed for a while was next tried after its backoff,
/// here past the node's exit, so the stop now hurries it.
#[tokio::test]
async fn a_stopping_node_finishes_removing_what_it_deleted() {
    let mut cluster = TestCluster::start_with(2, &[("TERMSTREAM_CLUSTER_LOST_MS", "60000")]).await;
    let conn = connect(&cluster).await;
    let epoch = created(&cluster.nodes[0], &cluster.nodes[1], &conn, "leftover").await;
    let a = cluster.nodes.remove(0);

    let before = refused(&conn, "hdel").await;
    let _: () = run(&conn, redis::cmd("ACL").arg("SETUSER").arg("default").arg("-hdel")).await;
    let (status, body) = a.request("DELETE", "/api/sessions/leftover", None).await;
    assert_eq!(status, 204, "{body}");
    // Refused so often that the removal's next try, after its backoff (a
    // heartbeat, doubled with each failure in a row), would come after A
    // exited: a stop keeps its 10 s mostly for the sessions' termination
    // and the sockets, and leaves the removals about 3.5 s.
    let failures = (1..).find(|&n: &u32| HEARTBEAT_MS << (n - 1) >= 6000).expect("a count");
    let backed_off = common::wait_until(T, || async {
        refused(&conn, "hdel").await >= before + u64::from(failures)
    })
    .await;
    assert!(backed_off, "Redis refused the owner's removal {failures} times");
    let pending = common::metrics::metric(&a, "termstream_cluster_forgets_pending").await;
    assert_eq!(pending, Some(1.0), "the pending removal is counted");

    // A is stopped (SIGTERM, by its drop); once it stopped accepting,
    // Redis takes the removal again.
    let health = a.url("/health");
    let stopped = tokio::task::spawn_blocking(move || drop(a));
    let stopping = common::wait_until(T, || {
        let health = health.clone();
        async move { reqwest::get(&health).await.is_err() }
    })
    .await;
    assert!(stopping, "A stopped accepting");
    let _: () = run(&conn, redis::cmd("ACL").arg("SETUSER").arg("default").arg("+hdel")).await;
    stopped.await.expect("A stopped");

    let (record, claim, _) = held(&conn, "leftover", &epoch).await;
    assert_eq!(
        (record, claim),
        (false, false),
        "A left (record, claim) of its deleted session"
    );
    // The id is free on the node left.
    cluster.nodes[0]
        .create(json!({"id":"leftover","argv":["/bin/sh"]}))
        .await;
}

/// A record of a node whose session that node no longer has (written back
/// by its publisher just after the delete's forget removed it and the
/// claim) is forgotten by that node's heartbeat, and the id can be taken
/// again.
#[tokio::test]
async fn a_record_whose_session_its_node_no_longer_has_is_forgotten() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let conn = connect(&cluster).await;
    created(a, b, &conn, "real").await;

    // A copy of A's record under another id, as if A had deleted it.
    let real: String = run(&conn, redis::cmd("HGET").arg("termstream:dir").arg("real")).await;
    let mut ghost: serde_json::Value = serde_json::from_str(&real).expect("a record");
    let epoch = "00000000000000ab";
    ghost["info"]["id"] = json!("ghost");
    ghost["info"]["epoch"] = json!(epoch);
    let mut p = redis::pipe();
    p.atomic()
        .cmd("XADD")
        .arg(format!("termstream:out:ghost:{epoch}"))
        .arg("0-1")
        .arg("k")
        .arg("v")
        .ignore()
        .cmd("HSET")
        .arg("termstream:dir")
        .arg("ghost")
        .arg(ghost.to_string())
        .ignore()
        .cmd("XADD")
        .arg("termstream:dirlog")
        .arg("*")
        .arg("id")
        .arg("ghost")
        .ignore();
    let _: () = p.query_async(&mut conn.clone()).await.expect("the ghost written");

    gone_everywhere(&conn, b, "ghost", epoch).await;
    // A's own session is left alone.
    assert!(lists(b, "real").await, "B lists A's session");
    assert!(lists(a, "real").await, "A lists its session");
    let (record, claim, _) = held(&conn, "real", "").await;
    assert!(record && claim, "A's session's record and claim are kept");
    // The id is free: B creates a session with it, and A lists it.
    created(b, a, &conn, "ghost").await;
}

/// A session deleted and created again at once, with the same id on the
/// same node, is created: the create waits for the removal of the deleted
/// one from Redis (its claim among it) instead of answering 409.
#[tokio::test]
async fn a_session_deleted_and_created_again_at_once_is_created() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let conn = connect(&cluster).await;
    let body = json!({"id":"phoenix","argv":["/bin/sh"]});
    let first = created(a, b, &conn, "phoenix").await;
    for round in 0..5 {
        let (status, answer) = a.request("DELETE", "/api/sessions/phoenix", None).await;
        assert_eq!(status, 204, "round {round}: {answer}");
        let (status, answer) = a.request("POST", "/api/sessions", Some(&body)).await;
        assert_eq!(status, 201, "round {round}: {answer}");
        assert_ne!(answer["epoch"], first.as_str(), "a new incarnation");
    }
    // The last one is the cluster's: listed by B, its claim kept.
    listed(b, "phoenix", T).await.expect("listed on B");
    assert!(held(&conn, "phoenix", "").await.1, "its claim is in Redis");
}

/// A create that fails on the node that claimed its id gives the id back:
/// it is free at once, on that node and on any other.
#[tokio::test]
async fn a_failed_create_gives_its_id_back() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let conn = connect(&cluster).await;
    let bad = json!({"id":"again","kind":"command","argv":["no-such-program-xyz"]});
    let (status, body) = a.request("POST", "/api/sessions", Some(&bad)).await;
    assert_eq!(status, 422, "{body}");
    assert_eq!(
        held(&conn, "again", "").await,
        (false, false, false),
        "nothing left in Redis"
    );
    let (status, body) = a.request("POST", "/api/sessions", Some(&bad)).await;
    assert_eq!(status, 422, "the id is claimable again on A: {body}");
    b.create(json!({"id":"again","argv":["/bin/sh"]})).await;
}

/// Sessions deleted right after their create, most before their first
/// record is put, leave nothing in Redis: a record put between the
/// forget's read and its script is left to the heartbeat, and the claim
/// still goes; every id is then free on the other node.
#[tokio::test]
async fn sessions_deleted_right_after_their_create_leave_their_ids_free() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let conn = connect(&cluster).await;
    let mut ids = Vec::new();
    for i in 0..24 {
        let id = format!("brief{i}");
        let body = json!({"id":id,"argv":["/bin/sh"]});
        let (status, answer) = a.request("POST", "/api/sessions", Some(&body)).await;
        assert_eq!(status, 201, "{id}: {answer}");
        let epoch = answer["epoch"].as_str().expect("epoch").to_owned();
        let (status, answer) = a.request("DELETE", &format!("/api/sessions/{id}"), None).await;
        assert_eq!(status, 204, "{id}: {answer}");
        ids.push((id, epoch));
    }
    for (id, epoch) in &ids {
        let clean = common::wait_until(T, || async { held(&conn, id, epoch).await == (false, false, false) }).await;
        assert!(
            clean,
            "{id} is left in Redis: (record, claim, stream) {:?}",
            held(&conn, id, epoch).await
        );
        let body = json!({"id":id,"argv":["/bin/sh"]});
        let (status, answer) = b.request("POST", "/api/sessions", Some(&body)).await;
        assert_eq!(status, 201, "{id} on B: {answer}");
    }
}

/// A node stopped while Redis is down terminates its sessions at once; the
/// removal from Redis of a session it deleted, tried meanwhile, is waited
/// for after that, within the same part of the budget. The node waited
/// out that part first (about 3.5 s with the defaults), every try
/// refused, and only then terminated its sessions.
#[tokio::test]
async fn a_node_stopped_with_redis_down_terminates_its_sessions_before_waiting_for_removals() {
    const GAVE_UP: &str = "still to be removed from the cluster's Redis";
    let mut redis = common::redis::TestRedis::start().await;
    let url = redis.url();
    let (hb, lost) = (HEARTBEAT_MS.to_string(), LOST_MS.to_string());
    let env = [
        ("TERMSTREAM_CLUSTER_HEARTBEAT_MS", hb.as_str()),
        ("TERMSTREAM_CLUSTER_LOST_MS", lost.as_str()),
        ("RUST_LOG", "termstream=info"),
    ];
    let mut a = TestServer::start_logged(&["--cluster", &url], &env).await;
    assert!(common::cluster::ready(&a, T).await, "A is ready");
    // Says when it gets SIGHUP or SIGTERM from the shutdown.
    let dir = tempfile::tempdir().expect("tempdir");
    let signalled = dir.path().join("signalled");
    let script = format!(
        "trap 'echo got > {}; exit 0' HUP TERM; while :; do sleep 0.05; done",
        signalled.display()
    );
    a.create(json!({"id":"runner","kind":"command","argv":["sh","-c",script]}))
        .await;
    a.create(json!({"id":"doomed","kind":"command","argv":["sleep","1000"]}))
        .await;

    redis.stop();
    let unready = common::wait_until(T, || async { a.get("/readyz").await.0 == 503 }).await;
    assert!(unready, "A saw Redis go");
    let (status, body) = a.request("DELETE", "/api/sessions/doomed", None).await;
    assert_eq!(status, 204, "{body}");
    let pending = common::wait_until(T, || async {
        common::metrics::metric(&a, "termstream_cluster_forgets_pending").await == Some(1.0)
    })
    .await;
    assert!(pending, "the removal of the deleted session is pending");

    a.sigterm();
    let told = common::wait_until(T, || async { signalled.exists() }).await;
    assert!(told, "the running session was never terminated:\n{}", a.log());
    assert!(
        !a.log().contains(GAVE_UP),
        "the sessions were terminated only once the wait for the removals was over:\n{}",
        a.log()
    );
    let exit = a.exited(T).await;
    assert!(exit.is_some(), "A did not exit:\n{}", a.log());
    assert!(
        a.log().contains(GAVE_UP),
        "the removal was waited for, and could not go through:\n{}",
        a.log()
    );
}
