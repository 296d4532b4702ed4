//! Claims of session ids: taken before a create, kept alive while it is
//! under way, made permanent by the session's registration.
//!
//! A claim, `termstream:id:<id>`, is valued the name of the node that
//! holds it, as it always was (nodes of an older version compare that
//! value, and keep working beside this one). A create claims its id with
//! an expiry of four times `lost_after` ([`CLAIM`], [`expiry`]); the
//! heartbeat renews it while the create is under way and until the
//! session's first record went through ([`renew`]), and that record
//! ([`super::put`]) or a registration ([`super::REGISTER`]) makes it
//! permanent. So a create's claim expires under it only when this node
//! is cut off from Redis, or Redis refuses writes (out of memory:
//! `maxmemory`), so that no renewal reaches it, for longer than the
//! expiry. And a claim that reaches Redis late, after the create gave
//! it up (its `SET` held up in the network past its timeout and the
//! forget that followed), expires by itself instead of keeping the id
//! taken on every node for good; as does the claim of a node that died
//! in the middle of a create.
//!
//! Within this node, a claim holding its name is this process's (the name
//! is drawn at each start), and the process knows each use of it: a local
//! session, or a create under way, marked in [`super::forget::Forgets`]
//! before its claim is sent. One create of an id at a time on a node; a
//! forget never takes a claim in use ([`mod@super::forget`]); and a create
//! takes over a claim of this node that nothing here uses (one written
//! back by a registration or a record that landed after its session's
//! forget), rather than answering 409 for it.

use std::sync::{Arc, LazyLock};

use redis::RedisResult;
use termstream_proto::{Epoch, SessionId};

use super::forget::{self, Mark, forget};
use crate::cluster::Cluster;
use crate::cluster::redis::id_key;
use crate::registry::remote::ClaimError;

/// Claims `KEYS[1]` for this node (`ARGV[1]`), expiring after `ARGV[2]`
/// ms: when it is free, or already this node's (the caller made sure
/// that nothing here uses it). 1 when claimed, 0 when another node has it.
///
/// A claim of this node that is permanent already is kept as it is, not
/// given an expiry: the claim may be a late one (held up in the network
/// past its create's timeout) landing on the permanent claim of a later
/// session with the id on this node, which would otherwise expire under
/// it while it is idle (no record to make it permanent again), and let
/// another node create the id too. Such a claim returns before any write;
/// the one write, `SET`, is one a Redis out of memory refuses whole.
static CLAIM: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local owner = redis.call('GET', KEYS[1])
if owner and owner ~= ARGV[1] then return 0 end
if owner and redis.call('PTTL', KEYS[1]) == -1 then return 1 end
redis.call('SET', KEYS[1], ARGV[1], 'PX', ARGV[2])
return 1
"#,
    )
});

/// Renews, for `ARGV[2]` ms, each claim of `KEYS` that is still this
/// node's (`ARGV[1]`) and still expiring (not made permanent meanwhile).
static RENEW: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
for i = 1, #KEYS do
  if redis.call('GET', KEYS[i]) == ARGV[1] and redis.call('PTTL', KEYS[i]) > 0 then
    redis.call('PEXPIRE', KEYS[i], ARGV[2])
  end
end
return 0
"#,
    )
});

/// Claims `id` for a session this node creates; the create then ends with
/// [`created`], or with `forget::release` if it failed. A forget of an
/// earlier session with the id still pending here is waited for first, at
/// most [`forget::SETTLE`].
pub async fn claim(c: &Arc<Cluster>, id: &SessionId) -> Result<(), ClaimError> {
    match c.forgets.settle_and_mark(id, forget::SETTLE).await {
        Mark::Marked => {}
        Mark::Removing => return Err(ClaimError::Removing(id.clone())),
        Mark::Claiming => return Err(ClaimError::Duplicate(id.clone())),
    }
    // Marked: no session with the id can enter the registry but this
    // create's, so a local one now is an older one. Its claim is renewed
    // as before (until its first record): only the mark goes.
    if forget::local(c, id) {
        c.forgets.created(id);
        return Err(ClaimError::Duplicate(id.clone()));
    }
    c.forgets.renew(id);
    // Connected first: a claim that could not be sent needs no forget.
    let mut conn = match c.redis.conn().await {
        Ok(conn) => conn,
        Err(e) => {
            c.forgets.unmark(id);
            c.set_down(Some(e.to_string()));
            return Err(ClaimError::Unavailable(e.to_string()));
        }
    };
    let mut invocation = CLAIM.prepare_invoke();
    invocation.key(id_key(id)).arg(&c.node).arg(expiry(c));
    let claimed: RedisResult<i64> = invocation.invoke_async(&mut conn).await;
    match claimed {
        Ok(1) => Ok(()),
        Ok(_) => {
            c.forgets.unmark(id);
            Err(ClaimError::Duplicate(id.clone()))
        }
        Err(e) => {
            c.forgets.unmark(id);
            c.redis.failed(&e).await;
            c.set_down(Some(e.to_string()));
            // The claim may have been taken before the answer was lost:
            // it is given up once Redis answers again (while fewer than
            // `forget::MAX_UNANSWERED` forgets of any kind wait: beyond,
            // it is left to expire). One that reaches Redis after that
            // forget expires by itself.
            if e.is_timeout() || e.is_connection_dropped() {
                if c.forgets.count() < forget::MAX_UNANSWERED {
                    forget(c, id.clone(), None);
                } else {
                    tracing::warn!(session = %id, "too many removals wait: the id of a create whose claim went unanswered stays claimed until its claim expires");
                }
            }
            Err(ClaimError::Unavailable(e.to_string()))
        }
    }
}

/// Ends a create whose claim went through and whose session, incarnation
/// `epoch`, entered the registry: the claim is the session's from now on.
/// If the session was deleted already, its delete's forget may have left
/// the claim for this create's: it is forgotten again.
pub fn created(c: &Arc<Cluster>, id: &SessionId, epoch: Epoch) {
    c.forgets.created(id);
    if !forget::holds(c, id, epoch) {
        forget(c, id.clone(), None);
    }
}

/// How long a create's claim lives unrenewed, in ms: four times
/// `lost_after`, taken as at least a second (so at least 4 s), as long as
/// a list of requests to a node lives: a heartbeat that is late, or a
/// first record that waits for a Redis slow to answer, does not lose it; a
/// node cut off from Redis for that long, or a Redis refusing writes (out
/// of memory) that long, does.
pub(super) fn expiry(c: &Cluster) -> u64 {
    (c.lost_after.as_millis() as u64).max(1000) * 4
}

/// Renews the claims of the creates under way here, and of the sessions
/// created here whose first record has not gone through yet
/// ([`super::forget::Forgets::claims_to_renew`]), so that a create that
/// takes longer than the claim's [`expiry`], or a first record that waits
/// as long, keeps its id (a heartbeat's work).
pub(super) async fn renew(c: &Cluster) -> RedisResult<()> {
    let ids = c.forgets.claims_to_renew();
    if ids.is_empty() {
        return Ok(());
    }
    let mut invocation = RENEW.prepare_invoke();
    for id in &ids {
        invocation.key(id_key(id));
    }
    invocation.arg(&c.node).arg(expiry(c));
    let mut conn = c.redis.conn().await?;
    let renewed: RedisResult<i64> = invocation.invoke_async(&mut conn).await;
    if let Err(e) = &renewed {
        c.redis.failed(e).await;
    }
    renewed.map(drop)
}

/// The claims of creates under way, and of the sessions they created:
/// - a forget on the node leaves a create's claim (claimed, its session
///   not in the registry yet), and the heartbeat keeps it from expiring; a
///   forget took it before (a second create of the id there whose claim
///   went unanswered starts one, as does a registration that wrote back a
///   session deleted meanwhile), and another node could then create the
///   same id beside it;
/// - a create that panics releases its claim and its mark;
/// - a create refused for a local session with the id leaves that
///   session's claim renewed until its first record.
///
/// Real `redis-server`s (none for the last) and a real [`Cluster`] over a
/// registry in a temporary data dir, its heartbeat running. The create's
/// window (its program starting) cannot be held open in a running server
/// without stalling it, so the tests play the create's steps themselves.
#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use termstream_proto::{CreateSession, SessionId, SessionKind};

    use crate::cluster::Link;
    use crate::cluster::directory::{claim, forget, release};
    use crate::cluster::test_redis::{self, TestRedis};
    use crate::config::Config;
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
        let (_dir, cluster) = test_redis::node(
            &redis.url(),
            Config {
                cluster_heartbeat_ms: 50,
                cluster_lost_ms: 1500,
                ..Config::default()
            },
        );
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
        let (_dir, cluster) = test_redis::node(&redis.url(), Config::default());
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

    /// A create refused (409) because a local session has the id, whose
    /// first record has not gone through yet, leaves that session's claim
    /// renewed by the heartbeat: the refusal removed it from the renewed
    /// ones before, and the claim could expire under the session. No Redis
    /// here (the node cannot reach one): nothing records the session, and
    /// the refusal asks Redis nothing.
    #[tokio::test]
    async fn a_create_refused_for_a_local_session_leaves_its_claim_renewed() {
        let (_dir, cluster) = test_redis::node("redis://127.0.0.1:1", Config::default());
        let id = SessionId::new("dup").unwrap();

        // The first create's steps, up to its session in the registry.
        let marked = cluster.forgets.settle_and_mark(&id, forget::SETTLE).await;
        assert_eq!(marked, forget::Mark::Marked);
        cluster.forgets.renew(&id);
        let req = CreateSession {
            id: Some(id.clone()),
            kind: Some(SessionKind::Command),
            argv: Some(vec!["cat".into()]),
            ..Default::default()
        };
        cluster.registry.create(req).expect("the session starts");
        cluster.forgets.created(&id);
        assert_eq!(cluster.forgets.claims_to_renew(), vec![id.clone()]);

        let second = claim(&cluster, &id).await;
        assert!(matches!(second, Err(ClaimError::Duplicate(_))), "{second:?}");
        assert!(!cluster.forgets.claiming(&id), "the refused create is unmarked");
        assert_eq!(
            cluster.forgets.claims_to_renew(),
            vec![id.clone()],
            "the session's claim is still renewed"
        );
    }
}
