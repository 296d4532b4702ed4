//! A request to another node's session whose caller is dropped (a request
//! whose client hung up) gives its slot in [`Pending`] back, wherever the
//! wait was cut: while its request went to Redis, or while it awaited the
//! owner's answer. Before the [`Awaited`] guard a slot was taken out only
//! when Redis failed or the wait timed out, so each dropped caller left one
//! for good.
//!
//! A real `redis-server` (on a free loopback port, nothing kept on disk)
//! and a real [`Cluster`] over a registry in a temporary data dir; the
//! owners asked do not exist, and never answer.

use std::time::{Duration, Instant};

use termstream_proto::{Epoch, SessionId};

use super::{Pending, ask};
use crate::cluster::redis::requests_key;
use crate::cluster::test_redis::{self, TestRedis};
use crate::cluster::wire::Op;
use crate::config::Config;

fn slots(pending: &Pending) -> usize {
    pending.lock().len()
}

#[tokio::test]
async fn a_dropped_caller_frees_its_slot_while_sending_and_while_awaiting_the_answer() {
    let redis = TestRedis::start().await;
    let (_dir, cluster) = test_redis::node(&redis.url(), Config::default());
    let session = SessionId::new("elsewhere").unwrap();
    let asking = |owner| {
        ask(
            &cluster,
            owner,
            &session,
            Epoch(1),
            Op::Terminate,
            Duration::from_secs(60),
        )
    };

    // Cut while its request goes to Redis: polled once, it holds a slot.
    let mut first = Box::pin(asking("nobody"));
    assert!(futures_util::poll!(first.as_mut()).is_pending());
    assert_eq!(slots(&cluster.pending), 1, "a waiting request holds a slot");
    drop(first);
    assert_eq!(slots(&cluster.pending), 0, "dropped while sending, it kept its slot");

    // Cut while it awaits the answer: driven until Redis holds its request
    // (to another owner, so that the first's, if it went out, is not
    // counted).
    let queued = || async {
        let key = requests_key("nobody-else");
        redis.query::<usize>(redis::cmd("LLEN").arg(&key)).await.unwrap_or(0)
    };
    let mut second = Box::pin(asking("nobody-else"));
    let deadline = Instant::now() + Duration::from_secs(10);
    while queued().await == 0 {
        assert!(Instant::now() < deadline, "the request never reached Redis");
        let polled = tokio::time::timeout(Duration::from_millis(5), second.as_mut()).await;
        assert!(polled.is_err(), "answered with no owner: {polled:?}");
    }
    // Redis answers a connection's commands in order: once a later command
    // on the same connection is answered, the request's own answer is in,
    // and the next poll goes on to wait for the owner.
    let mut conn = cluster.redis.conn().await.expect("the shared connection");
    let _: String = redis::cmd("PING").query_async(&mut conn).await.expect("PING");
    let polled = tokio::time::timeout(Duration::from_millis(5), second.as_mut()).await;
    assert!(polled.is_err(), "answered with no owner: {polled:?}");
    assert_eq!(slots(&cluster.pending), 1, "a waiting request holds a slot");
    // What went out names the incarnation it was asked for.
    let sent: Vec<String> = redis
        .query(redis::cmd("LRANGE").arg(requests_key("nobody-else")).arg(0).arg(-1))
        .await
        .expect("LRANGE");
    let sent: serde_json::Value = serde_json::from_str(&sent[0]).expect("a request in JSON");
    assert_eq!(sent["epoch"], "0000000000000001", "{sent}");
    drop(second);
    assert_eq!(
        slots(&cluster.pending),
        0,
        "dropped while awaiting the owner's answer, it kept its slot"
    );
}
