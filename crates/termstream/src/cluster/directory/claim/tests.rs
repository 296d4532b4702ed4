//! A create's claim, while the create is under way on its node (claimed,
//! its session not in the registry yet): no forget on that node takes it,
//! and the heartbeat keeps it from expiring. A forget took it before (a
//! second create of the id there whose claim went unanswered starts one,
//! as does a registration that wrote back a session deleted meanwhile),
//! and another node could then create the same id beside it.
//!
//! A real `redis-server` and a real [`Cluster`] over a registry in a
//! temporary data dir, its heartbeat running. The create's window (its
//! program starting) cannot be held open in a running server without
//! stalling it, so the test plays the create's steps itself.

use std::sync::Arc;
use std::time::Duration;

use termstream_proto::SessionId;

use crate::cluster::directory::{claim, forget, release};
use crate::cluster::test_redis::TestRedis;
use crate::cluster::{Cluster, Link};
use crate::config::Config;
use crate::registry::Registry;
use crate::registry::remote::{ClaimError, Claimed, ClusterLink};

/// How long each wait here may take.
const WAIT: Duration = Duration::from_secs(10);

/// Waits, at most [`WAIT`], until `done()` holds.
async fn until(mut done: impl FnMut() -> bool) -> bool {
    tokio::time::timeout(WAIT, async {
        while !done() {
            tokio::time::sleep(Duration::from_millis(10)).await;
        }
    })
    .await
    .is_ok()
}

/// Whether the time to live of `key` goes up within [`WAIT`] (a renewal),
/// the key still expiring.
async fn renewed(redis: &TestRedis, key: &str) -> bool {
    let pttl = || async { redis.query::<i64>(redis::cmd("PTTL").arg(key)).await.expect("PTTL") };
    let mut last = pttl().await;
    tokio::time::timeout(WAIT, async {
        loop {
            tokio::time::sleep(Duration::from_millis(20)).await;
            let now = pttl().await;
            if now > last && last > 0 {
                return;
            }
            last = now;
        }
    })
    .await
    .is_ok()
}

#[tokio::test]
async fn a_forget_leaves_the_claim_of_a_create_under_way_and_the_heartbeat_keeps_it() {
    let redis = TestRedis::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_owned(),
        spare_sessions: 0,
        cluster_heartbeat_ms: 50,
        cluster_lost_ms: 1500,
        ..Config::default()
    };
    let registry = Registry::load(Arc::new(config)).expect("registry");
    let cluster = Cluster::start(&redis.url(), registry).expect("cluster");
    let id = SessionId::new("twin").unwrap();
    let key = crate::cluster::redis::id_key(&id);
    let owner = || async {
        redis
            .query::<Option<String>>(redis::cmd("GET").arg(&key))
            .await
            .expect("GET")
    };

    claim(&cluster, &id).await.expect("the create claims its id");
    let ttl: i64 = redis.query(redis::cmd("PTTL").arg(&key)).await.expect("PTTL");
    assert!(
        ttl > 1500,
        "the claim outlives a lost node's silence (4 × 1500 ms): {ttl} ms"
    );
    let second = claim(&cluster, &id).await;
    assert!(matches!(second, Err(ClaimError::Duplicate(_))), "{second:?}");
    // The forget a second create of the id starts when its claim goes
    // unanswered.
    forget(&cluster, id.clone(), None);
    assert!(until(|| cluster.forgets.count() == 0).await, "the forget went through");
    assert_eq!(owner().await, Some(cluster.node.clone()), "the forget took the claim");

    // The heartbeat renews it: its time to live goes up again.
    assert!(renewed(&redis, &key).await, "the claim of the create is renewed");
    assert_eq!(owner().await, Some(cluster.node.clone()), "the claim expired");

    // The create fails: the id is free again.
    release(&cluster, &id).await;
    assert_eq!(owner().await, None, "the failed create's claim is left");
}

/// A create that panics between its claim and its end (`Claimed` dropped
/// unended) releases the claim and its mark: the mark stayed before, so
/// every create of the id on the node was 409, and the claim was renewed,
/// until the node stopped.
#[tokio::test]
async fn a_create_that_panics_releases_its_claim() {
    let redis = TestRedis::start().await;
    let dir = tempfile::tempdir().expect("tempdir");
    let config = Config {
        data_dir: dir.path().to_owned(),
        spare_sessions: 0,
        ..Config::default()
    };
    let registry = Registry::load(Arc::new(config)).expect("registry");
    let cluster = Cluster::start(&redis.url(), registry).expect("cluster");
    let id = SessionId::new("panics").unwrap();
    let key = crate::cluster::redis::id_key(&id);
    let link: Arc<dyn ClusterLink> = Arc::new(Link(cluster.clone()));

    let claimed = Claimed::claim(link, &id).await.expect("the create claims its id");
    assert!(cluster.forgets.claiming(&id), "the create is marked");
    let create = tokio::spawn(async move {
        let _claimed = claimed;
        panic!("a create panics");
    });
    assert!(create.await.is_err_and(|e| e.is_panic()), "the create panicked");

    let released = until(|| !cluster.forgets.claiming(&id) && cluster.forgets.count() == 0).await;
    assert!(released, "the mark and the release's forget are gone");
    let owner: Option<String> = redis.query(redis::cmd("GET").arg(&key)).await.expect("GET");
    assert_eq!(owner, None, "the claim is released");
    assert!(claim(&cluster, &id).await.is_ok(), "the id can be created again");
}
