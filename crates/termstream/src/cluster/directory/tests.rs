//! [`super::REGISTER`] and [`super::mark_lost`] run on a real
//! `redis-server`: which claims of another node a registration takes over,
//! when a dead node's record is marked `lost`, and what a failed sync
//! keeps.

use termstream_proto::{Epoch, SessionId, SessionStatus};

use crate::cluster::redis::{DIR_KEY, DIR_LOG_KEY, gone_key, id_key, node_key};
use crate::cluster::test_redis::{self, TestRedis};
use crate::cluster::wire::Record;
use crate::config::Config;

/// Registers session `id` (incarnation 1, no record) for node `me`;
/// answers the ids refused as taken.
async fn register(redis: &TestRedis, id: &SessionId) -> Vec<String> {
    let (_, taken): (Vec<String>, Vec<String>) = redis
        .query(
            redis::cmd("EVAL")
                .arg(super::REGISTER)
                .arg(5)
                .arg(DIR_KEY)
                .arg(node_key("me"))
                .arg(DIR_LOG_KEY)
                .arg(gone_key(id, Epoch(1)))
                .arg(id_key(id))
                .arg("me")
                .arg(3000)
                .arg(100)
                .arg(id.as_str())
                .arg("1")
                .arg("{}"),
        )
        .await
        .expect("REGISTER");
    taken
}

/// Which node claims `id`.
async fn owner(redis: &TestRedis, id: &SessionId) -> Option<String> {
    redis.query(redis::cmd("GET").arg(id_key(id))).await.expect("GET")
}

/// Another node's claim that still expires is a create of the id under
/// way there: a registration took it over (its create had no record yet),
/// and both nodes ran a session with the id. Its permanent claim with no
/// record is still taken over (this node restarted under a new name).
#[tokio::test]
async fn a_registration_takes_over_only_a_permanent_claim_of_another_node() {
    let redis = TestRedis::start().await;

    let creating = SessionId::new("creating").unwrap();
    let _: () = redis
        .query(
            redis::cmd("SET")
                .arg(id_key(&creating))
                .arg("other")
                .arg("PX")
                .arg(60_000),
        )
        .await
        .expect("SET");
    assert_eq!(register(&redis, &creating).await, ["creating"], "taken");
    assert_eq!(
        owner(&redis, &creating).await.as_deref(),
        Some("other"),
        "the other node keeps its claim"
    );

    let left = SessionId::new("left").unwrap();
    let _: () = redis
        .query(redis::cmd("SET").arg(id_key(&left)).arg("other"))
        .await
        .expect("SET");
    assert!(register(&redis, &left).await.is_empty(), "not taken");
    assert_eq!(owner(&redis, &left).await.as_deref(), Some("me"), "taken over");
}

/// The record of `id` in the directory, if any, and how many changes the
/// change log holds.
async fn record_and_changes(redis: &TestRedis, id: &SessionId) -> (Option<String>, usize) {
    let rec: Option<String> = redis
        .query(redis::cmd("HGET").arg(DIR_KEY).arg(id.as_str()))
        .await
        .expect("HGET");
    let changes: usize = redis.query(redis::cmd("XLEN").arg(DIR_LOG_KEY)).await.expect("XLEN");
    (rec, changes)
}

/// A node whose own heartbeat stays out of the way: one beat an hour,
/// and the immediate first beat (its sync reads the whole directory, and
/// would mark a dead owner's record lost itself) already over before the
/// test writes anything.
async fn quiet_node(redis: &TestRedis) -> (tempfile::TempDir, std::sync::Arc<crate::cluster::Cluster>) {
    let config = Config {
        cluster_heartbeat_ms: 3_600_000,
        cluster_lost_ms: 7_200_000,
        ..Config::default()
    };
    let (dir, cluster) = test_redis::node(&redis.url(), config);
    let mut reached = cluster.beat_reached.subscribe();
    tokio::time::timeout(std::time::Duration::from_secs(10), reached.wait_for(|&n| n >= 1))
        .await
        .expect("the first heartbeat within 10 s")
        .expect("the sender lives in the cluster");
    (dir, cluster)
}

/// A sync that read a dead node's running record before Redis was emptied
/// (FLUSHALL, a restart with nothing saved) finds the owner's liveness key
/// missing, and marks the record lost: it must not write it back into the
/// empty Redis (every later sync would see a false `lost` record, and the
/// stand-in would never be released). With the record there, it is
/// marked; a record already marked is left alone.
#[tokio::test]
async fn mark_lost_writes_nothing_once_the_record_is_gone() {
    let redis = TestRedis::start().await;
    let (_dir, cluster) = quiet_node(&redis).await;
    let id = SessionId::new("elsewhere").unwrap();
    let running = Record {
        node: "dead".into(),
        info: crate::session::test_info("elsewhere"),
    };

    let mut rec = running.clone();
    super::mark_lost(&cluster, &mut rec).await.expect("mark_lost");
    assert_eq!(record_and_changes(&redis, &id).await, (None, 0), "nothing written");
    assert!(
        rec.info.status.is_running(),
        "nothing written: the record stays as read"
    );

    let json = serde_json::to_string(&running).unwrap();
    let _: () = redis
        .query(redis::cmd("HSET").arg(DIR_KEY).arg(id.as_str()).arg(&json))
        .await
        .expect("HSET");
    let mut rec = running.clone();
    super::mark_lost(&cluster, &mut rec).await.expect("mark_lost");
    assert_eq!(rec.info.status, SessionStatus::Lost);
    let (written, changes) = record_and_changes(&redis, &id).await;
    let written: Record = serde_json::from_str(&written.expect("a record")).unwrap();
    assert_eq!(written.info.status, SessionStatus::Lost, "marked lost");
    assert_eq!(changes, 1, "one change noted");

    let mut again = running.clone();
    super::mark_lost(&cluster, &mut again).await.expect("mark_lost");
    assert!(again.info.status.is_running(), "already marked: left as read");
    assert_eq!(record_and_changes(&redis, &id).await.1, 1, "no second change");
}

/// Writes `rec` as the record of its session and notes it in the change
/// log (as a node's put does); `None`: removes the record (a delete).
async fn change(redis: &TestRedis, id: &SessionId, rec: Option<&Record>) {
    let mut p = redis::pipe();
    match rec {
        Some(r) => p
            .cmd("HSET")
            .arg(DIR_KEY)
            .arg(id.as_str())
            .arg(serde_json::to_string(r).unwrap()),
        None => p.cmd("HDEL").arg(DIR_KEY).arg(id.as_str()),
    };
    p.cmd("XADD").arg(DIR_LOG_KEY).arg("*").arg("id").arg(id.as_str());
    let client = redis::Client::open(redis.url()).unwrap();
    let mut conn = client.get_multiplexed_async_connection().await.unwrap();
    let _: () = p.query_async(&mut conn).await.expect("a change");
}

/// A sync that read a removal from the change log and then failed (Redis
/// refused a later command) keeps the removal for the next sync: its view
/// moved past that log entry, so a removal taken and dropped was never
/// seen again, and the stand-in of the deleted session ended `released`
/// instead of `deleted`.
#[tokio::test]
async fn a_failed_sync_keeps_the_removals_it_read() {
    let redis = TestRedis::start().await;
    let (_dir, cluster) = quiet_node(&redis).await;
    let (deleted, running) = (SessionId::new("deleted").unwrap(), SessionId::new("running").unwrap());
    let record = |id: &str| Record {
        node: "other".into(),
        info: crate::session::test_info(id),
    };
    // The owner is alive, so nothing is marked lost.
    let _: () = redis
        .query(redis::cmd("SET").arg(node_key("other")).arg("other"))
        .await
        .expect("SET");
    change(&redis, &deleted, Some(&record("deleted"))).await;
    change(&redis, &running, Some(&record("running"))).await;
    let mut view = super::View::default();
    super::sync(&cluster, &mut view).await.expect("the first sync");

    change(&redis, &deleted, None).await;
    // The liveness check (EXISTS) after the read of the log fails.
    let _: () = redis
        .query(redis::cmd("ACL").arg("SETUSER").arg("default").arg("-exists"))
        .await
        .expect("ACL SETUSER");
    assert!(super::sync(&cluster, &mut view).await.is_err(), "EXISTS is refused");
    let removed = view.take_removed();
    assert!(
        removed.contains("deleted"),
        "the removal is kept for the next sync: {removed:?}"
    );
}
