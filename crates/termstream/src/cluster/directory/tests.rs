//! [`super::REGISTER`] and [`super::mark_lost`] run on a real
//! `redis-server`: which claims of another node a registration takes over,
//! and when a dead node's record is marked `lost`.

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

/// A sync that read a dead node's running record before Redis was emptied
/// (FLUSHALL, a restart with nothing saved) finds the owner's liveness key
/// missing, and marks the record lost: it must not write it back into the
/// empty Redis (every later sync would see a false `lost` record, and the
/// stand-in would never be released). With the record there, it is
/// marked; a record already marked is left alone.
#[tokio::test]
async fn mark_lost_writes_nothing_once_the_record_is_gone() {
    let redis = TestRedis::start().await;
    let (_dir, cluster) = test_redis::node(&redis.url(), Config::default());
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
