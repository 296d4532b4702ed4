//! [`super::REGISTER`] run on a real `redis-server`: which claims of
//! another node a registration takes over.

use termstream_proto::{Epoch, SessionId};

use crate::cluster::redis::{DIR_KEY, DIR_LOG_KEY, gone_key, id_key, node_key};
use crate::cluster::test_redis::TestRedis;

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
