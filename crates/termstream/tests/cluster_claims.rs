//! Claims of session ids that outlived what they claimed for: after any of
//! them the id answered 409 on every node for good, as nothing else
//! removes a claim. Each test plays one interleaving on real nodes, one of
//! them (A) joined through a proxy that holds a command back
//! (`common::redis_proxy`), and checks that the id can be created again on
//! the other node (B); three check what a node does about a claim of its
//! own (a late claim landing on a later session's, a publisher whose id a
//! permanent or an expiring claim of another node took). (That a forget
//! leaves the claim of a create still under way on its node is tested in
//! `cluster::directory::claim`'s unit tests, written when holding a
//! create's program start stalled the whole node; since creates run on
//! the blocking pool, `tests/slow_start.rs` shows that window can be held
//! open.)
//!
//! A command held back is sent to Redis by the proxy on a connection of
//! its own when the test releases it (its node gave up on it and dropped
//! its connection long before): the same bytes, to the same Redis, as a
//! command stalled in the network arrives late.

mod common;

use std::time::Duration;

use common::TestServer;
use common::cluster::{HEARTBEAT_MS, listed, ready};
use common::metrics::metric;
use common::redis::TestRedis;
use common::redis_proxy::ReplyLosingProxy;
use redis::aio::MultiplexedConnection;
use serde_json::json;

const T: Duration = Duration::from_secs(20);

/// Redis, node A through a proxy, node B straight; every node counting
/// another lost after `lost_ms`.
struct Pair {
    // Dropped first: the nodes, then the proxy, then Redis.
    a: TestServer,
    b: TestServer,
    proxy: ReplyLosingProxy,
    _redis: TestRedis,
    conn: MultiplexedConnection,
}

impl Pair {
    async fn start(lost_ms: u64) -> Pair {
        let redis = TestRedis::start().await;
        let proxy = ReplyLosingProxy::start(redis.port()).await;
        let (hb, lost) = (HEARTBEAT_MS.to_string(), lost_ms.to_string());
        let env = [
            ("TERMSTREAM_CLUSTER_HEARTBEAT_MS", hb.as_str()),
            ("TERMSTREAM_CLUSTER_LOST_MS", lost.as_str()),
        ];
        let a = TestServer::start_with(&["--cluster", &proxy.url()], &env).await;
        let b = TestServer::start_with(&["--cluster", &redis.url()], &env).await;
        for node in [&a, &b] {
            assert!(ready(node, T).await, "a node did not become ready");
        }
        let client = redis::Client::open(redis.url()).expect("redis url");
        let conn = client.get_multiplexed_async_connection().await.expect("redis");
        Pair {
            a,
            b,
            proxy,
            _redis: redis,
            conn,
        }
    }

    /// Runs `cmd` on the test's own connection to Redis.
    async fn run<V: redis::FromRedisValue>(&self, cmd: &mut redis::Cmd) -> V {
        cmd.query_async(&mut self.conn.clone()).await.expect("a Redis command")
    }

    /// Whether the claim of `id` is in Redis.
    async fn claimed(&self, id: &str) -> bool {
        self.run(redis::cmd("EXISTS").arg(format!("termstream:id:{id}"))).await
    }

    /// Whether the record of `id` is in Redis.
    async fn recorded(&self, id: &str) -> bool {
        self.run(redis::cmd("HEXISTS").arg("termstream:dir").arg(id)).await
    }

    /// Waits until A has no removal from Redis pending.
    async fn a_settled(&self) {
        let settled = common::wait_until(T, || async {
            metric(&self.a, "termstream_cluster_forgets_pending").await == Some(0.0)
        })
        .await;
        assert!(settled, "A's removals from Redis went through");
    }

    /// Waits until B creates session `id`; panics with its last answer
    /// after [`T`].
    async fn b_creates(&self, id: &str) {
        creates(&self.b, id).await;
    }

    /// The time to live of the claim of `id`, in ms (-1: permanent, -2:
    /// none).
    async fn claim_ttl(&self, id: &str) -> i64 {
        self.run(redis::cmd("PTTL").arg(format!("termstream:id:{id}"))).await
    }
}

/// Waits until `node` creates session `id`; panics with its last answer
/// after [`T`].
async fn creates(node: &TestServer, id: &str) {
    let body = json!({"id":id,"argv":["/bin/sh"]});
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let (status, answer) = node.request("POST", "/api/sessions", Some(&body)).await;
        if status == 201 {
            return;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "cannot create {id}: {status} {answer}"
        );
        tokio::time::sleep(Duration::from_millis(50)).await;
    }
}

/// A create's claim is held up in the network; the create gives up on it
/// (503 after Redis's response timeout) and forgets it, finding nothing to
/// remove; then the claim reaches Redis. It stayed there for good. Now a
/// create's claim expires until its session's first record, so the late
/// one goes by itself.
#[tokio::test]
async fn a_claim_that_reaches_redis_after_its_create_gave_up_expires() {
    // A claim lives 4 × lost_ms unrenewed: 6 s here.
    let p = Pair::start(1500).await;
    // A's claims so far went through: Redis knows the claim's script.
    p.a.create(json!({"id":"warm","argv":["/bin/sh"]})).await;

    p.proxy.hold(&["termstream:id:late"]);
    let body = json!({"id":"late","argv":["/bin/sh"]});
    let (status, answer) = p.a.request("POST", "/api/sessions", Some(&body)).await;
    assert_eq!(status, 503, "{answer}");
    assert!(p.proxy.holding(), "the claim was held back");
    p.a_settled().await;
    assert!(!p.claimed("late").await, "the claim is not in Redis yet");

    let reply = p.proxy.release().await;
    assert!(p.claimed("late").await, "the late claim went through: {reply:?}");
    p.b_creates("late").await;
}

/// A create's claim is held up in the network and given up (503), and
/// the client creates the id again on the same node: that session's first
/// record makes its claim permanent. Then the first claim reaches Redis.
/// It gave the claim an expiry again, so the idle session (no record to
/// make it permanent again) lost its claim after it, and another node
/// could create the id beside it. Now a claim of this node that is
/// permanent stays so.
#[tokio::test]
async fn a_late_claim_leaves_the_claim_of_a_later_session_permanent() {
    const LOST_MS: u64 = 3000;
    let p = Pair::start(LOST_MS).await;
    p.a.create(json!({"id":"warm","argv":["/bin/sh"]})).await;

    p.proxy.hold(&["termstream:id:again"]);
    let body = json!({"id":"again","argv":["/bin/sh"]});
    let (status, answer) = p.a.request("POST", "/api/sessions", Some(&body)).await;
    assert_eq!(status, 503, "{answer}");
    assert!(p.proxy.holding(), "the claim was held back");
    p.a_settled().await;

    creates(&p.a, "again").await;
    let recorded = common::wait_until(T, || async { p.recorded("again").await }).await;
    assert!(recorded, "the session's first record went through");
    assert_eq!(p.claim_ttl("again").await, -1, "its record made the claim permanent");

    let reply = p.proxy.release().await;
    assert!(
        ReplyLosingProxy::has_reply(&reply, ":1"),
        "the late claim ran: {:?}",
        String::from_utf8_lossy(&reply)
    );
    // The claim stays permanent. A late claim that gave it an expiry shows
    // at once (PTTL above 0: the first look failed on the old code), so
    // the claim is watched for 20 heartbeats (renewals run in each), not
    // until the expiry the late claim asked for (4 × LOST_MS).
    let deadline = tokio::time::Instant::now() + Duration::from_millis(HEARTBEAT_MS * 20);
    while tokio::time::Instant::now() < deadline {
        let ttl = p.claim_ttl("again").await;
        assert_eq!(ttl, -1, "the claim of the running session stays permanent");
        tokio::time::sleep(Duration::from_millis(200)).await;
    }
    let (status, answer) = p.b.request("POST", "/api/sessions", Some(&body)).await;
    assert_eq!(status, 409, "B cannot create the id A's session has: {answer}");
}

/// A registration (the liveness key was lost) is held up in the network
/// with a session in it; the session is deleted and forgotten meanwhile
/// (record and claim), and the registration's answer never comes (A
/// registers again without the session). Then the registration reaches
/// Redis and writes the record and the claim back. The heartbeat removed
/// the record but left the claim, for good.
#[tokio::test]
async fn a_registration_that_lands_after_its_sessions_forget_leaves_the_id_free() {
    // Nodes count each other lost only after a minute: B marks A's
    // sessions lost only when the test deletes A's liveness key below.
    let p = Pair::start(60_000).await;
    let info = p.a.create(json!({"id":"echo","argv":["/bin/sh"]})).await;
    listed(&p.b, "echo", T).await.expect("listed on B");
    let registered = common::wait_until(T, || async { p.recorded("echo").await && p.claimed("echo").await }).await;
    assert!(registered, "echo's record and claim are in Redis: {info}");
    let record: String = p.run(redis::cmd("HGET").arg("termstream:dir").arg("echo")).await;
    let record: serde_json::Value = serde_json::from_str(&record).expect("a record");
    let node = record["node"].as_str().expect("the owner's name").to_owned();

    let register = termstream::cluster::directory::register_script_sha();
    p.proxy.hold(&["evalsha", &register]);
    let _: () = p.run(redis::cmd("DEL").arg(format!("termstream:node:{node}"))).await;
    let held = common::wait_until(T, || async { p.proxy.holding() }).await;
    assert!(held, "A registered again, and its registration was held back");
    let (status, answer) = p.a.request("DELETE", "/api/sessions/echo", None).await;
    assert_eq!(status, 204, "{answer}");
    p.a_settled().await;
    assert!(
        !p.recorded("echo").await && !p.claimed("echo").await,
        "the delete removed echo's record and claim"
    );

    let reply = p.proxy.release().await;
    assert!(
        ReplyLosingProxy::has_reply(&reply, "*2"),
        "the late registration ran: {:?}",
        String::from_utf8_lossy(&reply)
    );
    p.b_creates("echo").await;
}

/// The claim of [`ticking_node`]'s session.
const TICKS_CLAIM: &str = "termstream:id:ticks";

/// The session's output reaches Redis again: `stream` grows by more than
/// five entries within [`T`].
async fn output_reaches_redis_again(conn: &MultiplexedConnection, stream: &str) {
    let len = || async {
        let n: u64 = redis::cmd("XLEN")
            .arg(stream)
            .query_async(&mut conn.clone())
            .await
            .expect("XLEN");
        n
    };
    let from = len().await;
    let grows = common::wait_until(T, || async { len().await > from + 5 }).await;
    assert!(grows, "the session's output reaches Redis again (stream length {from})");
}

/// A node with `cluster_lost_ms` = `lost_ms` on `redis`, running a session
/// `ticks` that prints all the time; a connection to `redis`, and the key
/// of the session's stream.
async fn ticking_node(redis: &TestRedis, lost_ms: &str) -> (TestServer, MultiplexedConnection, String) {
    let hb = HEARTBEAT_MS.to_string();
    let env = [
        ("TERMSTREAM_CLUSTER_HEARTBEAT_MS", hb.as_str()),
        ("TERMSTREAM_CLUSTER_LOST_MS", lost_ms),
    ];
    let a = TestServer::start_logged(&["--cluster", &redis.url()], &env).await;
    assert!(ready(&a, T).await, "the node did not become ready");
    let client = redis::Client::open(redis.url()).expect("redis url");
    let conn = client.get_multiplexed_async_connection().await.expect("redis");
    let info = a
        .create(json!({"id":"ticks","argv":["/bin/sh","-c","while :; do echo tick; sleep 0.05; done"]}))
        .await;
    let epoch = info["epoch"].as_str().expect("an epoch").to_owned();
    (a, conn, format!("termstream:out:ticks:{epoch}"))
}

/// A session's record finds its id taken by another node's claim (its
/// create's claim expired, or Redis lost it and another node claimed the
/// id): its publisher ended for good. When a later registration found the
/// id free again and wrote the session back, its output no longer reached
/// Redis. Now the publisher waits for that registration and goes on.
#[tokio::test]
async fn a_session_whose_id_was_taken_publishes_again_once_registered_again() {
    let redis = TestRedis::start().await;
    let (a, mut conn, stream) = ticking_node(&redis, "60000").await;
    let claim = TICKS_CLAIM;
    let node: String = redis::cmd("GET").arg(claim).query_async(&mut conn).await.expect("GET");

    // Another node's claim, as if it had created the id meanwhile.
    let _: () = redis::cmd("SET")
        .arg(claim)
        .arg("other")
        .query_async(&mut conn)
        .await
        .expect("SET");
    let taken = common::wait_until(T, || async { a.log().contains("has taken this session's id") }).await;
    assert!(taken, "a put found the id taken: {}", a.log());

    // The id is free again, and the node registers again (its liveness
    // key is gone, as after Redis came back empty).
    let _: () = redis::cmd("DEL")
        .arg(claim)
        .arg(format!("termstream:node:{node}"))
        .query_async(&mut conn)
        .await
        .expect("DEL");
    let registered = common::wait_until(T, || async {
        let owner: Option<String> = redis::cmd("GET")
            .arg(claim)
            .query_async(&mut conn.clone())
            .await
            .expect("GET");
        owner.as_deref() == Some(node.as_str())
    })
    .await;
    assert!(registered, "the registration claimed the id again");
    output_reaches_redis_again(&conn, &stream).await;
}

/// As above, but the claim that holds the id is one that expires (another
/// node's create of it under way, or a node that died in one, or this
/// node's former name after a restart within the expiry), and no
/// registration follows its expiry. The publisher waited for a
/// registration only, so the session stayed out of the cluster for good;
/// now it puts again every `lost_after`, and writes once the claim is gone.
#[tokio::test]
async fn a_session_whose_id_an_expiring_claim_held_publishes_again_once_it_expired() {
    let redis = TestRedis::start().await;
    let (a, conn, stream) = ticking_node(&redis, "1500").await;
    let claim = TICKS_CLAIM;

    // Another node's claim, expiring as a create's does.
    let _: () = redis::cmd("SET")
        .arg(claim)
        .arg("other")
        .arg("PX")
        .arg(2000)
        .query_async(&mut conn.clone())
        .await
        .expect("SET");
    let taken = common::wait_until(T, || async { a.log().contains("has taken this session's id") }).await;
    assert!(taken, "a put found the id taken: {}", a.log());
    output_reaches_redis_again(&conn, &stream).await;
    let owner: Option<String> = redis::cmd("GET")
        .arg(claim)
        .query_async(&mut conn.clone())
        .await
        .expect("GET");
    assert!(
        owner.is_some_and(|o| o != "other"),
        "the session's put claimed the id again"
    );
    let log = a.log();
    assert_eq!(
        log.matches("has taken this session's id").count(),
        1,
        "said once, not at each put: {log}"
    );
}
