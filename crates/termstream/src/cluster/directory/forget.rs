//! Removing sessions from Redis: this node's own after a delete (or a
//! create that failed), and a dead node's through any node.
//!
//! A session this node deleted is forgotten in one script ([`FORGET`]):
//! its record (only this node's, of the incarnation deleted), its stream,
//! the change-log entry that tells the other nodes, and its claim, all or
//! nothing. A forget that fails (Redis down, refusing, or timing out) is
//! kept in [`Forgets`], one entry per id, and tried again by its own task
//! once a heartbeat begun after the failure reached Redis, backing off
//! while it keeps failing, until it goes through. While it is kept, the id
//! cannot be claimed again on this node: the old incarnation is not gone
//! from the cluster yet.
//!
//! A forget needs no word of which incarnation was deleted: it removes the
//! record of `id` when the record is this node's and names an incarnation
//! the registry no longer holds. So the heartbeat also reconciles
//! ([`reconcile`]): every record of this node with no such local session
//! is forgotten. That catches a delete whose event the cluster's events
//! loop lost to a lag, and a record a publisher wrote back just after its
//! session's forget. After a lag the events loop also starts
//! [`sweep_claims`], for the claims of sessions deleted before their first
//! record was written. A record is written only by the publisher of a
//! session already in the registry, so a session still being created
//! (claimed, not yet registered) has none and is never touched; and the
//! claim of an id is removed only while no create on this node holds it
//! ([`Forgets::begin_claim`]) and no local session has the id.

use std::collections::HashSet;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};

use redis::RedisResult;
use termstream_proto::{Epoch, SessionId};

use super::TOMBSTONE;
use super::view::LOG_KEEP;
use crate::cluster::Cluster;
use crate::cluster::redis::{DIR_KEY, DIR_LOG_KEY, ID_KEY_PREFIX, gone_key, id_key, node_key, stream_key};
use crate::cluster::wire::Record;

/// The ids this node is claiming and forgetting.
#[derive(Debug, Default)]
pub struct Forgets {
    inner: Mutex<Ids>,
    /// Whether a [`sweep_claims`] runs: one at a time, however many lags.
    sweeping: AtomicBool,
}

#[derive(Debug, Default)]
struct Ids {
    /// Ids claimed by a create on this node that has not finished: set by
    /// [`Forgets::begin_claim`] before the claim is asked of Redis, cleared
    /// when the create is over (its session is in the registry, or the
    /// claim is released). A forget leaves their claims alone.
    claiming: HashSet<SessionId>,
    /// Ids whose forget has not gone through yet: set when it is asked
    /// for, cleared by its task once it succeeded. One task per id.
    pending: HashSet<SessionId>,
}

impl Forgets {
    fn lock(&self) -> MutexGuard<'_, Ids> {
        // Each operation is an insert, remove or lookup: poison is ignored.
        self.inner.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that a create on this node is about to claim `id`; `false`
    /// when it may not: another create here is claiming it, or the
    /// forget of an older incarnation has not gone through yet.
    pub fn begin_claim(&self, id: &SessionId) -> bool {
        let mut ids = self.lock();
        if ids.pending.contains(id) || ids.claiming.contains(id) {
            return false;
        }
        ids.claiming.insert(id.clone())
    }

    /// Notes that the create that claimed `id` is over, its session in the
    /// registry.
    pub fn settled(&self, id: &SessionId) {
        self.lock().claiming.remove(id);
    }

    /// Whether a forget of `id` is kept, waiting to be tried again.
    pub fn pending(&self, id: &SessionId) -> bool {
        self.lock().pending.contains(id)
    }
}

/// Forgets `id` in its own task (tried until it goes through), unless a
/// forget of it is under way already.
pub fn forget(c: &Arc<Cluster>, id: SessionId) {
    start(c, id, false);
}

/// Starts the task forgetting `id`, unless one runs; `outlived`: asked by
/// [`reconcile`], not after a delete.
fn start(c: &Arc<Cluster>, id: SessionId, outlived: bool) {
    if c.forgets.lock().pending.insert(id.clone()) {
        tokio::spawn(retry(c.clone(), id, 0, outlived));
    }
}

/// Gives up the claim of a create that failed: tried once here, then in a
/// task like [`forget`] if that failed.
pub async fn release(c: &Arc<Cluster>, id: &SessionId) {
    {
        let mut ids = c.forgets.lock();
        ids.claiming.remove(id);
        if !ids.pending.insert(id.clone()) {
            return;
        }
    }
    match once(c, id).await {
        Ok(_) => {
            c.forgets.lock().pending.remove(id);
        }
        Err(e) => {
            tracing::warn!(session = %id, error = %e, "cannot give up a session's id in the cluster; trying again");
            tokio::spawn(retry(c.clone(), id.clone(), 1, false));
        }
    }
}

/// Forgets every record of this node whose session the registry no longer
/// holds (`records`: the directory as just read).
pub fn reconcile(c: &Arc<Cluster>, records: &[Record]) {
    for rec in records.iter().filter(|r| r.node == c.node) {
        if !holds(c, &rec.info.id, rec.info.epoch) && !c.forgets.pending(&rec.info.id) {
            start(c, rec.info.id.clone(), true);
        }
    }
}

/// After the events loop lost events to a lag: forgets every id claimed
/// by this node (`termstream:id:*`) whose session the registry does not
/// hold, tried until a scan goes through. [`reconcile`] finds the records
/// of such sessions; this finds claims whose session never had a record
/// (deleted before its first record was written).
pub async fn sweep_claims(c: Arc<Cluster>) {
    if c.forgets.sweeping.swap(true, Ordering::SeqCst) {
        return;
    }
    sweep(&c).await;
    c.forgets.sweeping.store(false, Ordering::SeqCst);
}

async fn sweep(c: &Arc<Cluster>) {
    let mut failures = 0;
    loop {
        if failures > 0 {
            c.wait_to_retry(failures).await;
        }
        match claims(c).await {
            Ok(ids) => {
                for id in ids {
                    if c.registry.get(&id).is_none_or(|h| h.is_remote()) {
                        forget(c, id);
                    }
                }
                return;
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(error = %e, "cannot look for this node's claims in the cluster; trying again");
                }
                failures += 1;
            }
        }
    }
}

/// The ids this node holds claims of.
async fn claims(c: &Cluster) -> RedisResult<Vec<SessionId>> {
    let mut mine = Vec::new();
    let mut cursor = 0u64;
    loop {
        let (next, keys): (u64, Vec<String>) = c
            .redis
            .run(
                redis::cmd("SCAN")
                    .arg(cursor)
                    .arg("MATCH")
                    .arg(format!("{ID_KEY_PREFIX}*"))
                    .arg("COUNT")
                    .arg(1000),
            )
            .await?;
        if !keys.is_empty() {
            let owners: Vec<Option<String>> = c.redis.run(redis::cmd("MGET").arg(&keys)).await?;
            for (key, owner) in keys.iter().zip(owners) {
                if owner.as_deref() == Some(c.node.as_str())
                    && let Ok(id) = SessionId::new(&key[ID_KEY_PREFIX.len()..])
                {
                    mine.push(id);
                }
            }
        }
        if next == 0 {
            return Ok(mine);
        }
        cursor = next;
    }
}

/// Whether the registry holds the local session `id` as incarnation `epoch`.
fn holds(c: &Cluster, id: &SessionId, epoch: Epoch) -> bool {
    c.registry.get(id).is_some_and(|h| !h.is_remote() && h.epoch() == epoch)
}

/// Tries the forget of `id` until it goes through, `failures` failed
/// tries behind it (`outlived`: see [`start`]).
async fn retry(c: Arc<Cluster>, id: SessionId, mut failures: u32, outlived: bool) {
    loop {
        if failures > 0 {
            c.wait_to_retry(failures).await;
        }
        match once(&c, &id).await {
            Ok(removed) => {
                if outlived && removed {
                    tracing::info!(session = %id, "the record of a deleted session outlived its delete: removed it from the cluster");
                } else if failures > 0 {
                    tracing::info!(session = %id, "removed the deleted session from the cluster");
                }
                c.forgets.lock().pending.remove(&id);
                return;
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(session = %id, error = %e, "cannot remove a deleted session from the cluster; trying again");
                }
                failures += 1;
            }
        }
    }
}

/// Removes, in one step, the record of `id` (`KEYS[2]`, field `ARGV[1]`)
/// if it is this node's (`ARGV[2]`) and of incarnation `ARGV[3]`, with a
/// change-log entry (`KEYS[3]`, about `ARGV[4]` kept) and that
/// incarnation's stream (`KEYS[4]`); then, if `ARGV[5]` is 1, the claim
/// (`KEYS[1]`) if it is this node's. A record that is not this node's, or
/// of another incarnation (`ARGV[3]` empty: none is to go), leaves
/// everything as it is (0); 2 when the record was removed, else 1. The
/// record goes first: a Redis out of memory refuses a script only before
/// its first write, and it never refuses `HDEL` for memory, so the whole
/// step goes through (a delete frees memory). A refusal of the first write
/// (no permission, say) leaves everything as it was.
const FORGET: &str = r#"
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if rec then
  local ok, r = pcall(cjson.decode, rec)
  if not ok or type(r) ~= 'table' or r.node ~= ARGV[2] or type(r.info) ~= 'table'
      or r.info.epoch ~= ARGV[3] then
    return 0
  end
  redis.call('HDEL', KEYS[2], ARGV[1])
  redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'id', ARGV[1])
end
if ARGV[3] ~= '' then redis.call('DEL', KEYS[4]) end
if ARGV[5] == '1' and redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
end
if rec then return 2 end
return 1
"#;

/// One try at forgetting `id`: what Redis holds of it for this node that
/// the registry no longer has. `true` when it removed a record.
async fn once(c: &Cluster, id: &SessionId) -> RedisResult<bool> {
    let rec: Option<String> = c.redis.run(redis::cmd("HGET").arg(DIR_KEY).arg(id.as_str())).await?;
    let rec = rec.and_then(|r| serde_json::from_str::<Record>(&r).ok());
    // The incarnation to remove: this node's, no longer in the registry.
    let epoch = rec
        .as_ref()
        .filter(|r| r.node == c.node && !holds(c, id, r.info.epoch))
        .map(|r| r.info.epoch);
    let live = rec.as_ref().is_some_and(|r| r.node == c.node && epoch.is_none());
    // The claim goes only with no session or create of the id here, and
    // no other node's record of it.
    let unclaim = !live
        && rec.as_ref().is_none_or(|r| r.node == c.node)
        && c.registry.get(id).is_none_or(|h| h.is_remote())
        && !c.forgets.lock().claiming.contains(id);
    if epoch.is_none() && !unclaim {
        return Ok(false);
    }
    let script = redis::Script::new(FORGET);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(id_key(id))
        .key(DIR_KEY)
        .key(DIR_LOG_KEY)
        .key(stream_key(id, epoch.unwrap_or(Epoch(0))))
        .arg(id.as_str())
        .arg(&c.node)
        .arg(epoch.map(|e| e.to_string()).unwrap_or_default())
        .arg(LOG_KEEP)
        .arg(if unclaim { 1 } else { 0 });
    let mut conn = c.redis.conn().await?;
    let r: RedisResult<i64> = invocation.invoke_async(&mut conn).await;
    if let Err(e) = &r {
        c.redis.failed(e).await;
    }
    r.map(|n| n == 2)
}

/// Removes a session whose owner is dead, in one step: only while the
/// owner's liveness key is missing and the record is still the owner's
/// incarnation `epoch` does it delete the record, the claim (if still the
/// owner's) and the stream, and leave a tombstone (`KEYS[5]`, for
/// [`TOMBSTONE`]) so that the owner, if it was only cut off, deletes the
/// session when it comes back instead of registering it again. Returns 1
/// when deleted, 0 when there was no such record, -1 when the owner is
/// alive (ask it instead).
const FORGET_LOST: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return -1 end
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if not rec then return 0 end
local ok, r = pcall(cjson.decode, rec)
if not ok or r.node ~= ARGV[2] or r.info == nil or r.info.epoch ~= ARGV[3] then return 0 end
redis.call('HDEL', KEYS[2], ARGV[1])
redis.call('XADD', KEYS[6], 'MAXLEN', '~', ARGV[5], '*', 'id', ARGV[1])
if redis.call('GET', KEYS[3]) == ARGV[2] then redis.call('DEL', KEYS[3]) end
redis.call('DEL', KEYS[4])
redis.call('SET', KEYS[5], ARGV[2], 'PX', ARGV[4])
return 1
"#;

/// Deletes from Redis a session whose owner is dead (no liveness key):
/// `Some(deleted)` when the owner is dead, `None` when it is alive and
/// must be asked.
pub async fn forget_lost(c: &Cluster, id: &SessionId, owner: &str, epoch: Epoch) -> RedisResult<Option<bool>> {
    let script = redis::Script::new(FORGET_LOST);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(node_key(owner))
        .key(DIR_KEY)
        .key(id_key(id))
        .key(stream_key(id, epoch))
        .key(gone_key(id, epoch))
        .key(DIR_LOG_KEY)
        .arg(id.as_str())
        .arg(owner)
        .arg(epoch.to_string())
        .arg(TOMBSTONE.as_millis() as u64)
        .arg(LOG_KEEP);
    let mut conn = c.redis.conn().await?;
    let r: RedisResult<i64> = invocation.invoke_async(&mut conn).await;
    if let Err(e) = &r {
        c.redis.failed(e).await;
    }
    Ok(match r? {
        n if n < 0 => None,
        n => Some(n == 1),
    })
}
