//! Removing sessions from Redis: this node's own after a delete (or a
//! create that failed), and a dead node's through any node.
//!
//! A session this node deleted is forgotten in one script ([`FORGET`]):
//! its record (only this node's, of an incarnation the registry no longer
//! holds), its stream, the change-log entry that tells the other nodes,
//! and its claim (only while no local session has the id, nor a create of
//! it is under way here), in one step
//! that an out-of-memory Redis cannot cut short. The registry asks for it
//! as it removes the session ([`forget`], through `ClusterLink::forget`),
//! so the forget is pending before the delete answers. Each forget runs in its own task, one per
//! id, kept in [`Forgets`]; one that fails (Redis down, refusing, or
//! timing out) is tried again once a heartbeat begun after the failure
//! reached Redis, backing off while it keeps failing, until it goes
//! through. While it is pending, a create of the id on this node waits for
//! it ([`Forgets::settle_and_mark`], at most [`SETTLE`]): the old
//! incarnation is not gone from the cluster yet. A stopping server waits
//! for every pending forget ([`Forgets::settle_all`], within its shutdown
//! budget): one left behind would leave the session's record and claim in
//! Redis for good, as nothing else removes a claim that a session's record
//! made permanent. The stop hurries them first ([`Forgets::hurry`], as it
//! begins): each is tried at once, then every heartbeat, instead of after
//! its backoff (which grows to `lost_after`, far longer than the few
//! seconds a stop has), while the sessions are terminated; the wait for
//! them comes after.
//!
//! A forget needs no word of which incarnation was deleted: it removes the
//! record of `id` when the record is this node's and names an incarnation
//! the registry no longer holds. So the heartbeat also reconciles
//! ([`reconcile`]): every record of this node with no such local session
//! is forgotten (a record a publisher or a registration wrote back just
//! after its session's forget, or one a forget that never ran left), claim
//! and all. A record is written only for a session already in the
//! registry, so a session still being created has none. A session deleted
//! while it is still launching is already in the registry, so its delete
//! forgets its record like any other's; its claim stays while its create
//! is under way (see below), and the create's end gives it up
//! ([`super::claim::created`] finds the session gone and forgets again).
//!
//! No forget takes a claim that is in use here: a claim is valued the
//! node's name (one per start), so it is this process's, and the process
//! knows each use of it: a local session with the id, or a create of it
//! under way ([`Forgets::claiming`], marked before its claim is sent, in
//! one step with its wait for a pending forget of the id). Every forget
//! looks at both just before its script, and takes the claim only if
//! neither holds it.

use std::collections::HashMap;
use std::sync::{Arc, LazyLock};
use std::time::Duration;

use redis::RedisResult;
use termstream_proto::{Epoch, SessionId};

use super::TOMBSTONE;
use super::view::LOG_KEEP;
use crate::cluster::Cluster;
use crate::cluster::redis::{DIR_KEY, DIR_LOG_KEY, gone_key, id_key, node_key, stream_key};
use crate::cluster::wire::Record;

mod pending;

pub use pending::{Forgets, Mark};

/// A claim that went unanswered is forgotten only while fewer forgets (of
/// any kind) wait (see [`super::claim()`]): each create tried while Redis
/// does not answer would add one. Beyond, it is left to expire.
pub const MAX_UNANSWERED: usize = 4096;

/// How long a create waits for the pending forget of an earlier session
/// with its id before it is answered 503.
pub const SETTLE: Duration = Duration::from_secs(5);

/// Forgets `id` in its own task (tried until it goes through); if a forget
/// of it is pending already, that task runs once more instead.
pub fn forget(c: &Arc<Cluster>, id: SessionId, deleted: Option<Epoch>) {
    c.forgets.recorded(&id);
    start(c, id, false, deleted);
}

/// Starts the task forgetting `id`, or asks the one that runs to run once
/// more; `outlived`: asked by [`reconcile`], not after a delete (for the
/// log only).
fn start(c: &Arc<Cluster>, id: SessionId, outlived: bool, deleted: Option<Epoch>) {
    if c.forgets.begin(&id, outlived) {
        tokio::spawn(retry(c.clone(), id, 0, outlived, deleted));
    }
}

/// Gives up the claim of a create that failed: tried once before this
/// returns, then in the background like [`forget`] if that failed (with a
/// forget of the id pending already, that one runs once more and this
/// returns at once). The
/// first try runs in a task of its own, so a caller dropped meanwhile
/// (its request cancelled) leaves no forget pending for good.
pub async fn release(c: &Arc<Cluster>, id: &SessionId) {
    // Unmarked first, so that the forget takes the claim; a create of the
    // id marked in between takes it over instead (`claim::CLAIM`).
    c.forgets.unmark(id);
    if !c.forgets.begin(id, false) {
        return;
    }
    let (c, id) = (c.clone(), id.clone());
    let first = tokio::spawn(async move {
        match once(&c, &id, None).await {
            Ok(_) => {
                if let Some(outlived) = c.forgets.end(&id) {
                    tokio::spawn(retry(c, id, 0, outlived, None));
                }
            }
            Err(e) => {
                tracing::warn!(session = %id, error = %e, "cannot give up a session's id in the cluster; trying again");
                tokio::spawn(retry(c, id, 1, false, None));
            }
        }
    });
    // Only a panic ends the task otherwise; the id then stays pending, and
    // its creates are answered 503, as for a forget that cannot go through.
    let _ = first.await;
}

/// Forgets each of `epochs` (id to incarnation, as registered in one
/// step) whose session the registry no longer holds: a delete whose
/// forget ran before the registration wrote its record and claim back.
pub fn forget_unheld(c: &Arc<Cluster>, epochs: &HashMap<String, Epoch>) {
    for (id, &epoch) in epochs {
        match SessionId::new(id.clone()) {
            Ok(id) if !holds(c, &id, epoch) => forget(c, id, Some(epoch)),
            _ => {}
        }
    }
}

/// Forgets every record of this node whose session the registry no longer
/// holds (`records`: the directory as just read).
pub fn reconcile(c: &Arc<Cluster>, records: &[Record]) {
    for rec in records.iter().filter(|r| r.node == c.node) {
        if !holds(c, &rec.info.id, rec.info.epoch) {
            start(c, rec.info.id.clone(), true, None);
        }
    }
}

/// Whether the registry holds the local session `id` as incarnation `epoch`.
pub(in crate::cluster) fn holds(c: &Cluster, id: &SessionId, epoch: Epoch) -> bool {
    c.registry.local_epoch(id) == Some(epoch)
}

/// Whether the registry holds a local session `id`, of any incarnation.
pub(in crate::cluster) fn local(c: &Cluster, id: &SessionId) -> bool {
    c.registry.local_epoch(id).is_some()
}

/// Tries the forget of `id` until it goes through, `failures` failed
/// tries behind it (`outlived`: see [`start`]).
async fn retry(c: Arc<Cluster>, id: SessionId, mut failures: u32, mut outlived: bool, deleted: Option<Epoch>) {
    loop {
        if failures > 0 {
            wait_to_retry(&c, failures).await;
        }
        match once(&c, &id, deleted).await {
            Ok(removed) => {
                if outlived && removed {
                    tracing::info!(session = %id, "the record of a deleted session outlived its delete: removed it from the cluster");
                } else if failures > 0 {
                    tracing::info!(session = %id, "removed the deleted session from the cluster");
                }
                match c.forgets.end(&id) {
                    None => return,
                    Some(again) => (outlived, failures) = (again, 0),
                }
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

/// Waits before the next try of a forget that failed `failures` times in
/// a row: as any command that must get through ([`Cluster::wait_to_retry`]),
/// unless the server stops ([`Forgets::hurry`]): then at once when it
/// begins to stop, and a heartbeat after each try from then on. A stop
/// waits only a few seconds, and the backoff of a forget that has failed
/// for a while (up to `lost_after`) would give it one try at a random
/// moment in them, or none.
async fn wait_to_retry(c: &Cluster, failures: u32) {
    let mut hurry = c.forgets.hurry.subscribe();
    if *hurry.borrow_and_update() {
        tokio::time::sleep(c.heartbeat).await;
        return;
    }
    tokio::select! {
        () = c.wait_to_retry(failures) => {}
        // The sender lives in `c`: never closed.
        _ = hurry.wait_for(|&hurry| hurry) => {}
    }
}

/// Removes, in one step, the record of `id` (`KEYS[2]`, field `ARGV[1]`)
/// if it is this node's (`ARGV[2]`) and of incarnation `ARGV[3]` (empty:
/// none is to go), with a change-log entry (`KEYS[3]`, about `ARGV[4]`
/// kept) and that incarnation's stream (`KEYS[4]`); and, if `ARGV[5]` is
/// 1, the claim (`KEYS[1]`) if it is this node's; and, if `ARGV[6]` is 1,
/// the stream of the deleted incarnation (`KEYS[5]`). The claim does not
/// depend on the record: a record put between the caller's read and the
/// script (a publisher's, just before its session went) is left for the
/// heartbeat's [`reconcile`], and the claim still goes. 2 when the record
/// was removed, else 1. The record goes first: a Redis out of memory
/// refuses a script only before its first write, and it never refuses
/// `HDEL` or `DEL` for memory, so the whole step goes through (a delete
/// frees memory). A refusal of the first write (no permission, say)
/// leaves everything as it was.
static FORGET: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
local removed = false
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if rec and ARGV[3] ~= '' then
  local ok, r = pcall(cjson.decode, rec)
  if ok and type(r) == 'table' and r.node == ARGV[2] and type(r.info) == 'table'
      and r.info.epoch == ARGV[3] then
    redis.call('HDEL', KEYS[2], ARGV[1])
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[4], '*', 'id', ARGV[1])
    removed = true
  end
end
if ARGV[3] ~= '' then redis.call('DEL', KEYS[4]) end
if ARGV[6] == '1' then redis.call('DEL', KEYS[5]) end
if ARGV[5] == '1' and redis.call('GET', KEYS[1]) == ARGV[2] then
  redis.call('DEL', KEYS[1])
end
if removed then return 2 end
return 1
"#,
    )
});

/// One try at forgetting `id`: what Redis holds of it for this node that
/// the registry no longer has. `true` when it removed a record. The claim
/// goes if this node's, unless a local session has the id or a create of
/// it is under way here ([`Forgets::claiming`]): that create's claim may
/// be in Redis before its session is in the registry. A create that marks
/// itself after this look waited for this forget to end first
/// ([`Forgets::settle_and_mark`]), so the look cannot be overtaken.
/// `deleted`: the incarnation a delete removed, whose stream goes even
/// with no record of it (its publisher may have appended before any put).
async fn once(c: &Cluster, id: &SessionId, deleted: Option<Epoch>) -> RedisResult<bool> {
    let rec: Option<String> = c.redis.run(redis::cmd("HGET").arg(DIR_KEY).arg(id.as_str())).await?;
    let rec = rec.and_then(|r| serde_json::from_str::<Record>(&r).ok());
    if rec.as_ref().is_some_and(|r| r.node != c.node) {
        // Another node's session (this one's is gone already): its claim too.
        return Ok(false);
    }
    let mut conn = c.redis.conn().await?;
    // Read as late as can be, just before the script: the incarnation to
    // remove (this node's, no longer in the registry), and whether the
    // claim may go (no local session has the id, no create of it is under
    // way here).
    let epoch = rec.as_ref().map(|r| r.info.epoch).filter(|&e| !holds(c, id, e));
    // The mark first: a create enters the registry before it unmarks, so
    // one that does so between the two looks is seen by the second.
    let unclaim = !c.forgets.claiming(id) && !local(c, id);
    let deleted = deleted.filter(|&e| !holds(c, id, e));
    if epoch.is_none() && !unclaim && deleted.is_none() {
        return Ok(false);
    }
    let mut invocation = FORGET.prepare_invoke();
    invocation
        .key(id_key(id))
        .key(DIR_KEY)
        .key(DIR_LOG_KEY)
        .key(stream_key(id, epoch.unwrap_or(Epoch(0))))
        .key(stream_key(id, deleted.unwrap_or(Epoch(0))))
        .arg(id.as_str())
        .arg(&c.node)
        .arg(epoch.map(|e| e.to_string()).unwrap_or_default())
        .arg(LOG_KEEP)
        .arg(if unclaim { 1 } else { 0 })
        .arg(if deleted.is_some() { 1 } else { 0 });
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
static FORGET_LOST: LazyLock<redis::Script> = LazyLock::new(|| {
    redis::Script::new(
        r#"
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
"#,
    )
});

/// Deletes from Redis a session whose owner is dead (no liveness key):
/// `Some(deleted)` when the owner is dead, `None` when it is alive and
/// must be asked.
pub async fn forget_lost(c: &Cluster, id: &SessionId, owner: &str, epoch: Epoch) -> RedisResult<Option<bool>> {
    let mut invocation = FORGET_LOST.prepare_invoke();
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
