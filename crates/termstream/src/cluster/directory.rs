//! The heartbeat, id claims, the directory, and liveness.
//!
//! Every `cluster_heartbeat_ms` a node renews its liveness key
//! (`SET … PX cluster_lost_ms XX`). When the key is missing (the node just
//! started, or Redis restarted empty, or the node was cut off longer than
//! the bound) it registers everything again in one `MULTI`: the claim of
//! each local session's id, each session's record, then its liveness key.
//! Because a node's records and its key are written together, a record
//! whose owner has no key means the owner stopped renewing: it is dead (or
//! cut off), and whichever node sees that first marks the record `lost`.
//! A registration that failed is made again at the next beat even if the
//! key is there (its answer may have been lost after it went through).
//! So a dead node's sessions are marked within `cluster_lost_ms` plus one
//! heartbeat.
//!
//! A lost session deleted through another node leaves a tombstone. A node
//! that was only cut off finds it when it registers again (or writes the
//! record): the delete wins, and the node deletes its own copy (process
//! and files) and says so in its log, rather than bringing the session
//! back.
//!
//! The same tick reads what changed in the directory since the last tick
//! ([`view`]: the change log, and only the records it names), forgets any
//! record of this node whose session is gone ([`forget::reconcile`]), and
//! brings this node's stand-ins of remote sessions up to date
//! ([`super::remote::sync`]), after renewing the claims of the creates
//! under way here. Removing sessions from Redis, with its retries, is
//! [`mod@forget`]'s; claims, how they expire and become permanent, are
//! [`mod@claim`]'s.

use std::collections::{HashMap, HashSet};
use std::sync::Arc;
use std::time::Duration;

use redis::RedisResult;
use termstream_proto::{Epoch, SessionId, SessionInfo, SessionStatus};

use super::Cluster;
use super::redis::{DIR_KEY, DIR_LOG_KEY, gone_key, id_key, node_key, stream_key};
use super::wire::Record;
use crate::clock::now_ms;

mod claim;
pub mod forget;
mod view;

pub use claim::{claim, created};
pub use forget::{forget, forget_lost, release};
use view::{LOG_KEEP, View};

/// Renews this node's liveness and refreshes its view, forever.
pub async fn heartbeat(c: Arc<Cluster>) {
    let mut tick = tokio::time::interval(c.heartbeat);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    let mut view = View::default();
    // A registration failed: the next beat registers again, whatever the
    // liveness key says (see `beat`).
    let mut register = false;
    loop {
        tick.tick().await;
        let number = c.beats_begun.fetch_add(1, std::sync::atomic::Ordering::SeqCst) + 1;
        match beat(&c, &mut view, &mut register).await {
            Ok(()) => {
                c.set_down(None);
                c.beat_reached.send_replace(number);
            }
            Err(e) => c.set_down(Some(e.to_string())),
        }
    }
}

/// How long the tombstone of a lost session deleted elsewhere lasts: a
/// node cut off for longer that comes back registers the session again.
const TOMBSTONE: Duration = Duration::from_secs(7 * 24 * 3600);

/// One heartbeat. `register`: a registration failed since the last one
/// that went through, so this beat registers again even when the liveness
/// key is there: a registration whose answer was lost (a timeout, a
/// dropped connection) may have gone through and set the key, and the next
/// beat's renewal would then succeed and nothing tell the publishers to
/// write their streams again (appends to a stream known to exist do not
/// create it: after a Redis that came back empty, a session's output
/// reached no other node), nor delete the sessions tombstoned meanwhile.
async fn beat(c: &Arc<Cluster>, view: &mut View, register: &mut bool) -> RedisResult<()> {
    let renewed: Option<String> = c
        .redis
        .run(
            redis::cmd("SET")
                .arg(node_key(&c.node))
                .arg(&c.node)
                .arg("PX")
                .arg(c.lost_after.as_millis() as u64)
                .arg("XX"),
        )
        .await?;
    claim::renew(c).await?;
    if renewed.is_none() || *register {
        *register = true;
        register_all(c).await?;
        *register = false;
        // Redis may have restarted empty, or this node was cut off.
        view.invalidate();
        c.registered.send_modify(|g| *g += 1);
        tracing::info!(node = %c.node, "registered this node's sessions in the cluster");
    }
    sync(c, view).await
}

/// Registers sessions in one step: for each (keys: its tombstone and its
/// claim; args: its id, epoch and record) the id is claimed for this node,
/// for good (a create's expiring claim is made permanent: see
/// [`mod@claim`]), and the record written, unless its incarnation has a
/// tombstone (deleted elsewhere while this node was cut off), or another
/// node claimed the id for another incarnation (the id was taken again
/// since, or a create of it is under way there: its claim still expires,
/// see [`mod@claim`]). Another node's permanent claim for the same
/// incarnation, or with no record (this node restarted under a new name),
/// is taken over. Each record written is
/// noted in the change log (`KEYS[3]`). Then the liveness key (`KEYS[2]`)
/// is set. Answers the ids refused for a tombstone, and those refused as
/// taken.
const REGISTER: &str = r#"
local gone, taken = {}, {}
for i = 4, #KEYS, 2 do
  local j = (i - 4) / 2 * 3 + 4
  local id, epoch, rec = ARGV[j], ARGV[j + 1], ARGV[j + 2]
  local mine = true
  if redis.call('EXISTS', KEYS[i]) == 1 then
    table.insert(gone, id)
    mine = false
  else
    local owner = redis.call('GET', KEYS[i + 1])
    if owner == ARGV[1] then
      -- Made permanent; SET, not PERSIST: a Redis out of memory refuses
      -- it, and so the whole script, as before the first write.
      redis.call('SET', KEYS[i + 1], ARGV[1])
    elseif owner then
      local old = redis.call('HGET', KEYS[1], id)
      local ok, r = pcall(cjson.decode, old or 'null')
      if redis.call('PTTL', KEYS[i + 1]) > 0
        or (old and (not ok or r == nil or r.info == nil or r.info.epoch ~= epoch)) then
        table.insert(taken, id)
        mine = false
      else
        redis.call('SET', KEYS[i + 1], ARGV[1])
      end
    else
      redis.call('SET', KEYS[i + 1], ARGV[1])
    end
  end
  if mine then
    redis.call('HSET', KEYS[1], id, rec)
    redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'id', id)
  end
end
redis.call('SET', KEYS[2], ARGV[1], 'PX', ARGV[2])
return {gone, taken}
"#;

/// The SHA1 of [`REGISTER`], which names it when it is run (`EVALSHA`):
/// for a test that loses the answer to a registration, and only that.
#[doc(hidden)]
pub fn register_script_sha() -> String {
    redis::Script::new(REGISTER).get_hash().to_owned()
}

/// Claims every local session's id, writes its record, then the liveness
/// key, atomically. A session deleted elsewhere meanwhile is deleted here;
/// one whose id another node's session took is left out of the cluster.
async fn register_all(c: &Arc<Cluster>) -> RedisResult<()> {
    let script = redis::Script::new(REGISTER);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(DIR_KEY)
        .key(node_key(&c.node))
        .key(DIR_LOG_KEY)
        .arg(&c.node)
        .arg(c.lost_after.as_millis() as u64)
        .arg(LOG_KEEP);
    let mut epochs = HashMap::new();
    for h in c.registry.handles().into_iter().filter(|h| !h.is_remote()) {
        let info = h.info();
        invocation.key(gone_key(&info.id, info.epoch)).key(id_key(&info.id));
        invocation
            .arg(info.id.as_str())
            .arg(info.epoch.to_string())
            .arg(record(c, info.clone()));
        epochs.insert(info.id.to_string(), info.epoch);
    }
    let mut conn = c.redis.conn().await?;
    let refused: RedisResult<(Vec<String>, Vec<String>)> = invocation.invoke_async(&mut conn).await;
    if let Err(e) = &refused {
        c.redis.failed(e).await;
    }
    let (gone, taken) = refused?;
    // A session deleted while the script was on its way: its forget may
    // have run before the script wrote it back. After a lost answer, the
    // heartbeat's reconcile finds what it wrote back (a record, written
    // with each claim) and forgets it, claim and all.
    forget::forget_unheld(c, &epochs);
    for id in gone {
        if let (Ok(sid), Some(&epoch)) = (SessionId::new(id.clone()), epochs.get(&id)) {
            tokio::spawn(delete_here(c.clone(), sid, epoch));
        }
    }
    for id in taken {
        tracing::warn!(
            session = %id,
            "another node's session has taken this session's id: it stays on this node only"
        );
    }
    Ok(())
}

/// Deletes here a session of this node that was deleted through another
/// node while this one was cut off (its tombstone says so), or whose id
/// another node's session took since: the delete wins.
async fn delete_here(c: Arc<Cluster>, id: SessionId, epoch: Epoch) {
    if forget::holds(&c, &id, epoch) {
        tracing::warn!(
            session = %id,
            "the session was deleted through another node while this node was cut off from the cluster: deleting it here too"
        );
        // This incarnation only: another may have taken the id since.
        c.registry.delete_epoch(&id, Some(epoch)).await;
    }
    // What its publisher appended before it stopped.
    let _ = c.redis.run::<()>(redis::cmd("DEL").arg(stream_key(&id, epoch))).await;
}

/// A local session's record, as JSON.
pub fn record(c: &Cluster, info: SessionInfo) -> String {
    serde_json::to_string(&Record {
        node: c.node.clone(),
        info,
    })
    .unwrap_or_default()
}

/// Writes a record (`KEYS[1]` the directory, ARGV the id and record) and
/// notes it in the change log (`KEYS[3]`), unless its incarnation has a
/// tombstone (`KEYS[2]`), 0, or another node claimed the id (`KEYS[4]`),
/// 2; 1 when written. The claim, this node's (`ARGV[4]`), is made
/// permanent: its create's claim expires until its first record (see
/// [`mod@claim`]); a missing one (expired before this first record came)
/// is taken again. The first write is `HSET`, as it always was: a Redis
/// out of memory refuses a script only at its first write, and then
/// refuses the whole put.
const PUT: &str = r#"
if redis.call('EXISTS', KEYS[2]) == 1 then return 0 end
local owner = redis.call('GET', KEYS[4])
if owner and owner ~= ARGV[4] then return 2 end
redis.call('HSET', KEYS[1], ARGV[1], ARGV[2])
redis.call('SET', KEYS[4], ARGV[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[3], '*', 'id', ARGV[1])
return 1
"#;

/// What came of a [`put`].
#[derive(Debug, PartialEq, Eq)]
pub enum Put {
    /// The record is written.
    Written,
    /// The session was deleted through another node while this one was cut
    /// off, and is deleted here now (see [`delete_here`]).
    Deleted,
    /// Another node's claim holds its id (this node's claim expired before
    /// this first record, or Redis lost it, and another node created the
    /// id; or a claim of a create there still expires): nothing is written,
    /// and the session stays on this node only, as after a registration
    /// that found it taken, until a registration or a later put (its
    /// publisher tries again every `lost_after`) finds the id free again.
    Taken,
}

/// Writes a local session's record.
pub async fn put(c: &Arc<Cluster>, info: SessionInfo) -> RedisResult<Put> {
    let (id, epoch) = (info.id.clone(), info.epoch);
    let script = redis::Script::new(PUT);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(DIR_KEY)
        .key(gone_key(&id, epoch))
        .key(DIR_LOG_KEY)
        .key(id_key(&id))
        .arg(id.as_str())
        .arg(record(c, info))
        .arg(LOG_KEEP)
        .arg(&c.node);
    let mut conn = c.redis.conn().await?;
    let written: RedisResult<i64> = invocation.invoke_async(&mut conn).await;
    match &written {
        Err(e) => c.redis.failed(e).await,
        // Written (the claim made permanent), or never to be: the claim is
        // renewed no more.
        Ok(_) => c.forgets.recorded(&id),
    }
    match written? {
        1 => Ok(Put::Written),
        // Its publisher says so, once while it lasts.
        2 => Ok(Put::Taken),
        _ => {
            tokio::spawn(delete_here(c.clone(), id, epoch));
            Ok(Put::Deleted)
        }
    }
}

/// Reads what changed in the directory, marks the sessions of dead nodes
/// `lost`, and brings the stand-ins up to date.
async fn sync(c: &Arc<Cluster>, view: &mut View) -> RedisResult<()> {
    view.refresh(c).await?;
    let mut records = view.records();
    let owners: Vec<String> = records
        .iter()
        .filter(|r| r.node != c.node && r.info.status.is_running())
        .map(|r| r.node.clone())
        .collect::<HashSet<_>>()
        .into_iter()
        .collect();
    let mut alive = HashSet::new();
    if !owners.is_empty() {
        let mut p = redis::pipe();
        for o in &owners {
            p.cmd("EXISTS").arg(node_key(o));
        }
        let exists: Vec<bool> = c.redis.pipe(&p).await?;
        alive.extend(owners.iter().zip(exists).filter(|(_, e)| *e).map(|(o, _)| o.clone()));
    }
    for rec in &mut records {
        if rec.node != c.node && rec.info.status.is_running() && !alive.contains(&rec.node) {
            mark_lost(c, rec).await?;
        }
    }
    forget::reconcile(c, &records);
    // Taken only now, after every `?`: a sync that failed leaves the
    // removals it read for the next one (its view has moved past them in
    // the log), so their stand-ins still end `deleted`, not `released`.
    let removed = view.take_removed();
    super::remote::sync(c, records, &removed);
    c.registry.remote().mark_synced();
    Ok(())
}

/// Writes the `lost` record `ARGV[4]` of session `ARGV[1]` (owner
/// `ARGV[2]`, incarnation `ARGV[3]`) into the directory (`KEYS[2]`) and
/// notes it in the change log (`KEYS[3]`, kept to `ARGV[5]`), 1, only if
/// the owner's liveness key (`KEYS[1]`) is still missing and the
/// directory still holds that owner's running record of that incarnation;
/// otherwise 0 and nothing written. Checked in the script, not before it:
/// a Redis that restarted empty between a sync's read of the directory and
/// its liveness check would otherwise get the record back, marked `lost`,
/// for a session still running on its node (which registers it again as
/// running only if nothing holds it) and for one already released.
const MARK_LOST: &str = r#"
if redis.call('EXISTS', KEYS[1]) == 1 then return 0 end
local rec = redis.call('HGET', KEYS[2], ARGV[1])
if not rec then return 0 end
local ok, r = pcall(cjson.decode, rec)
if not ok or r == nil or r.node ~= ARGV[2] or r.info == nil
  or r.info.epoch ~= ARGV[3] or r.info.status ~= 'running' then
  return 0
end
redis.call('HSET', KEYS[2], ARGV[1], ARGV[4])
redis.call('XADD', KEYS[3], 'MAXLEN', '~', ARGV[5], '*', 'id', ARGV[1])
return 1
"#;

/// Marks the session of a dead node `lost`, ending where its stream ends,
/// unless the directory changed under the sync (see [`MARK_LOST`]): `rec`
/// becomes the `lost` record only when it was written.
async fn mark_lost(c: &Cluster, rec: &mut Record) -> RedisResult<()> {
    let mut lost = rec.clone();
    let info = &mut lost.info;
    if let Some((end, _)) = super::publish::stream_end(c, &info.id, info.epoch).await? {
        info.output_offset = info.output_offset.max(end);
    }
    let now = now_ms();
    info.status = SessionStatus::Lost;
    info.pid = None;
    info.ended_at = Some(now);
    info.duration_ms = info.started_at.map(|s| now.saturating_sub(s));
    let json = serde_json::to_string(&lost).unwrap_or_default();
    let script = redis::Script::new(MARK_LOST);
    let mut invocation = script.prepare_invoke();
    invocation
        .key(node_key(&rec.node))
        .key(DIR_KEY)
        .key(DIR_LOG_KEY)
        .arg(rec.info.id.as_str())
        .arg(&rec.node)
        .arg(rec.info.epoch.to_string())
        .arg(json)
        .arg(LOG_KEEP);
    let mut conn = c.redis.conn().await?;
    let written: RedisResult<i64> = invocation.invoke_async(&mut conn).await;
    if let Err(e) = &written {
        c.redis.failed(e).await;
    }
    if written? == 1 {
        tracing::warn!(session = %lost.info.id, node = %lost.node, "the session's node stopped answering: lost");
        *rec = lost;
    }
    Ok(())
}

#[cfg(test)]
mod tests;
