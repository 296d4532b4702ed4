//! Sessions other nodes own: a stand-in task per session behind a
//! [`crate::session::SessionHandle`] (see [`crate::session::remote`], the seam).
//!
//! The stand-in serves the handle's commands as a session's actor does:
//! reads come from its ring, else from the session's Redis stream, else
//! from the owner's disk (asked through [`super::requests`]); subscriptions
//! get the ring's backlog and a live receiver. While the session has
//! subscribers, one reader task per stand-in follows the stream with
//! `XREAD BLOCK` on a connection of its own and fans each entry out to
//! every local viewer through the broadcast, so Redis serves one reader per
//! node and session, however many viewers the node has. The reader stops
//! once nobody subscribes (checked every heartbeat).
//!
//! The directory ([`super::directory`]) keeps the stand-ins' info current.
//! The window size comes from the stream's resizes while a reader runs, and
//! from a record only when it is known to be newer than the last of them,
//! its end past that resize's offset (see `stand_in::record_size_applies`):
//! a record is read before it arrives, and may predate a resize the reader
//! already gave. A newer record at that same offset (a resize the stream
//! lost in a Redis outage, with no output since) is refused as well; the
//! stream brings that size, as a publisher that catches its stream up
//! sends the session's last resize again. A record that is no
//! longer running (exited, terminated, or `lost` when its node died) ends
//! the stand-in's log for its viewers, who read what the stream holds up
//! to the end, and its final info then holds the size. A stand-in whose
//! record is missing from `GONE_AFTER` (3) directory reads in a row is
//! dropped (its session was deleted, most likely); a single miss is not
//! enough, as a Redis that restarted empty lacks every record until the
//! owners register again.
//!
//! A stand-in dropped while its session may still exist (missed without
//! the directory's change log saying its record was removed, as after a
//! Redis that restarted empty; or a `lost` session's stand-in replaced by a
//! fresh one of the same incarnation when its node came back) is marked let
//! go first ([`RemoteSession::let_go`]): its viewers' attachments then end
//! as `released`, not `deleted`, and attaching again follows the session.
//! One whose record the log removed, one deleted through this node, and
//! one replaced by a newer incarnation of its id (on another node or on
//! this one) are deleted.

use std::collections::{HashMap, HashSet};
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex, OnceLock, Weak};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use futures_util::future::BoxFuture;
use termstream_proto::{Epoch, SessionId, SessionInfo, SessionStatus, Snapshot};
use tokio::sync::{mpsc, oneshot};

use super::Cluster;
use super::redis::stream_key;
use super::requests::{ASK_TIMEOUT, ask};
use super::wire::{self, Answer, Entry, Op, Record};
use crate::session::log::{Chunk, OutputRing, RingRead};
use crate::session::remote::{RemoteSession, StandIn as Parts, remote_handle};
use crate::session::{Command, EVENT_QUEUE, InfoSender, SessionError, Subscription};

mod fetch;
pub mod recording;
mod stand_in;

/// Directory reads in a row without a record before a stand-in is dropped.
const GONE_AFTER: u32 = 3;

/// A stand-in as the directory sync sees it.
#[derive(Debug)]
struct Tracked {
    owner: String,
    epoch: Epoch,
    updates: mpsc::Sender<Update>,
    misses: u32,
    /// The directory's change log removed its record (the session was
    /// deleted) since it was last seen.
    removed: bool,
    /// The status of the last record it was given.
    status: SessionStatus,
    /// Shared with its [`Remote`]: set just before this entry is dropped
    /// while the session may still exist ([`Tracked::let_go`]).
    let_go: Arc<AtomicBool>,
    /// Dropped with this entry (the session deleted, or a newer stand-in
    /// in its place): the stand-in's task then ends.
    _tracked: oneshot::Sender<()>,
}

impl Tracked {
    /// Marks the entry's stand-in as let go while its session may still
    /// exist, before anything ends it (the entry dropped, or the last
    /// handle of it replaced in the registry): its viewers are told
    /// `released`.
    fn let_go(&self) {
        self.let_go.store(true, Ordering::Release);
    }
}

/// Every stand-in of this node.
#[derive(Debug, Default)]
pub struct StandIns(Mutex<HashMap<SessionId, Tracked>>);

impl StandIns {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, Tracked>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// What a stand-in learns besides its handle's commands.
#[derive(Debug)]
enum Update {
    /// The session's record, read from the directory.
    Record(SessionInfo),
    /// Entries its stream reader read; `reread` for the first read after
    /// the reader (re)connected, which may repeat entries given before.
    Entries { entries: Vec<wire::Read>, reread: bool },
}

/// The node that owns a remote session.
pub fn owner_of(c: &Cluster, id: &SessionId) -> Option<String> {
    c.stand_ins.lock().get(id).map(|t| t.owner.clone())
}

/// The node that owns a remote session, and the incarnation it knows.
pub fn owner_and_epoch(c: &Cluster, id: &SessionId) -> Option<(String, Epoch)> {
    c.stand_ins.lock().get(id).map(|t| (t.owner.clone(), t.epoch))
}

/// Forgets a remote session at once (it was deleted through this node).
pub fn drop_stand_in(c: &Cluster, id: &SessionId) {
    c.stand_ins.lock().remove(id);
    c.registry.remove_remote(id);
}

/// Brings the stand-ins in line with the directory's `records`; `removed`:
/// the ids whose record the directory's change log removed since the last
/// sync (deleted).
pub fn sync(c: &Arc<Cluster>, records: Vec<Record>, removed: &HashSet<String>) {
    let mut seen = HashSet::new();
    for rec in records {
        let id = rec.info.id.clone();
        // The id is this node's (its record, or a local session holds
        // it): a stand-in of another incarnation of it was of a session
        // deleted, whether or not a sync read its record's removal before
        // this node's put; its viewers are told `deleted` when it goes.
        let local = if rec.node == c.node {
            Some(rec.info.epoch)
        } else {
            c.registry.get(&id).filter(|h| !h.is_remote()).map(|h| h.epoch())
        };
        if let Some(epoch) = local {
            if let Some(t) = c.stand_ins.lock().get_mut(&id)
                && t.epoch != epoch
            {
                t.removed = true;
            }
            continue;
        }
        seen.insert(id.clone());
        let mut stand_ins = c.stand_ins.lock();
        // A `lost` session whose node came back runs again (or ended
        // meanwhile): its stand-in, which ended its viewers' logs as lost,
        // is replaced by a fresh one.
        if let Some(t) = stand_ins.get_mut(&id)
            && t.epoch == rec.info.epoch
            && t.owner == rec.node
            && (t.status.is_running() || t.status == rec.info.status)
        {
            t.misses = 0;
            t.removed = false;
            t.status = rec.info.status;
            let _ = t.updates.try_send(Update::Record(rec.info));
            continue;
        }
        let epoch = rec.info.epoch;
        let (tracked, handle) = start(c.clone(), rec);
        let old = stand_ins.insert(id, tracked);
        drop(stand_ins);
        // The same incarnation taken up afresh is let go (marked before its
        // registry handle, which may be its last, is replaced); an older
        // one was deleted.
        if let Some(old) = &old
            && old.epoch == epoch
        {
            old.let_go();
        }
        // The registry's handle is replaced before the old entry goes
        // (ending the old task), so a lookup between them finds the old
        // handle still served, not one whose task has ended.
        c.registry.add_remote(handle);
        drop(old);
    }
    // Missed in `GONE_AFTER` reads: deleted if the log said its record was
    // removed, else let go, as the session may still exist (a Redis that
    // restarted empty).
    let mut stand_ins = c.stand_ins.lock();
    let mut gone = Vec::new();
    for (id, t) in stand_ins.iter_mut() {
        if !seen.contains(id) {
            t.removed |= removed.contains(id.as_str());
            t.misses += 1;
            if t.misses >= GONE_AFTER {
                gone.push(id.clone());
            }
        }
    }
    drop_all(c, stand_ins, gone);
}

/// Drops the stand-ins `gone`: each is marked let go (unless its record
/// was removed), then its registry handle removed, and only then its
/// entry dropped, which ends its task: an attach between the two finds
/// no handle and waits for the session, rather than attaching the old
/// stand-in and being released a second time.
fn drop_all(c: &Cluster, mut stand_ins: std::sync::MutexGuard<'_, HashMap<SessionId, Tracked>>, gone: Vec<SessionId>) {
    let mut ended = Vec::with_capacity(gone.len());
    for id in &gone {
        if let Some(t) = stand_ins.remove(id) {
            if !t.removed {
                // Marked before the registry lets go of its handle below.
                t.let_go();
            }
            ended.push(t);
        }
    }
    drop(stand_ins);
    for id in &gone {
        c.registry.remove_remote(id);
    }
    drop(ended);
}

/// Starts the stand-in of a remote session.
fn start(c: Arc<Cluster>, rec: Record) -> (Tracked, crate::session::SessionHandle) {
    let (updates_tx, updates) = mpsc::channel(64);
    let (tracked, untracked) = oneshot::channel();
    let let_go = Arc::new(AtomicBool::new(false));
    let remote = Arc::new(Remote {
        c: c.clone(),
        id: rec.info.id.clone(),
        epoch: rec.info.epoch,
        owner: rec.node.clone(),
        info: OnceLock::new(),
        let_go: let_go.clone(),
    });
    let (handle, Parts { commands, info: tx }) = remote_handle(rec.info.clone(), remote.clone());
    let tx = Arc::new(tx);
    let _ = remote.info.set(Arc::downgrade(&tx));
    let task = stand_in::Task {
        ring: OutputRing::new(c.registry.config().ring_bytes, rec.info.output_offset),
        events: crate::session::log_events::channel(EVENT_QUEUE),
        ended: (!rec.info.status.is_running()).then(|| Arc::new(rec.info.clone())),
        terminating: false,
        last_resize: None,
        reader: None,
        remote,
        handle_info: tx,
        updates_tx: updates_tx.clone(),
    };
    tokio::spawn(task.run(commands, updates, untracked));
    let tracked = Tracked {
        owner: rec.node,
        epoch: rec.info.epoch,
        updates: updates_tx,
        misses: 0,
        removed: false,
        status: rec.info.status,
        let_go,
        _tracked: tracked,
    };
    (tracked, handle)
}

/// A remote session's way to its owner ([`RemoteSession`]).
#[derive(Debug)]
pub struct Remote {
    c: Arc<Cluster>,
    id: SessionId,
    epoch: Epoch,
    owner: String,
    /// The info the handles read (set once the handle is made); `refresh`
    /// raises its end offset. Weak: the stand-in's task holds the sender,
    /// and the handles' info closes when the task ends.
    info: OnceLock<Weak<InfoSender>>,
    /// Set when this node let go of the stand-in while the session may
    /// still exist (see [`Tracked::let_go`]).
    let_go: Arc<AtomicBool>,
}

impl Remote {
    fn key(&self) -> String {
        stream_key(&self.id, self.epoch)
    }
}

impl RemoteSession for Remote {
    fn input(
        &self,
        data: Bytes,
        eof: bool,
        seq: Option<(Arc<str>, u64)>,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(), SessionError>> {
        Box::pin(async move {
            let op = Op::Input {
                data: base64::engine::general_purpose::STANDARD.encode(&data),
                eof,
                seq: seq.map(|(client, n)| (client.to_string(), n)),
                wait_ms: wait.as_millis() as u64,
            };
            ask(&self.c, &self.owner, &self.id, self.epoch, op, wait + ASK_TIMEOUT)
                .await
                .map(drop)
        })
    }

    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, SessionError>> {
        Box::pin(async move {
            match ask(&self.c, &self.owner, &self.id, self.epoch, Op::Snapshot, ASK_TIMEOUT).await? {
                Answer::Snapshot(s) => Ok(s),
                _ => Err(SessionError::Busy(self.id.clone())),
            }
        })
    }

    fn events(&self) -> Result<Box<dyn crate::session::remote::EventPages>, SessionError> {
        recording::start(self)
    }

    fn let_go(&self) -> bool {
        self.let_go.load(Ordering::Acquire)
    }

    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async move {
            if let Ok(Some((end, _))) = super::publish::stream_end(&self.c, &self.id, self.epoch).await
                && let Some(info) = self.info.get().and_then(Weak::upgrade)
            {
                info.send_if_modified(|i| {
                    i.output_offset = i.output_offset.max(end);
                    false
                });
            }
        })
    }
}

/// The answer to a subscribe, from a stand-in's state.
fn subscription(
    ring: &OutputRing,
    budget: usize,
    since: u64,
    events: &crate::session::log_events::Sender,
    ended: Option<Arc<SessionInfo>>,
    terminating: bool,
    last_resize: Option<(u64, u16, u16)>,
) -> Subscription {
    let final_end = ended.as_ref().map_or(0, |i| i.output_offset);
    let (backlog, end) = if since < ring.start() || ring.end() < final_end {
        // What the owner's ring would still hold: a fresh attach starts
        // there, read from the stream (or the owner) by the forwarder.
        let held = ring.end().max(final_end).saturating_sub(budget as u64).max(since);
        (
            RingRead::Evicted {
                start: held.min(ring.start()),
            },
            ring.end().max(since).max(final_end),
        )
    } else if since > ring.end() {
        (RingRead::Held(Vec::new()), since)
    } else {
        (ring.read(since, usize::MAX), ring.end())
    };
    Subscription {
        backlog,
        end,
        live: events.subscribe(),
        ended,
        terminating,
        last_resize,
    }
}

/// A chunk cut to fit after `end`, or `None` when it holds nothing new.
fn after(chunk: Chunk, end: u64) -> Option<Chunk> {
    (chunk.end() > end).then(|| {
        if chunk.offset < end {
            chunk.from_offset(end)
        } else {
            chunk
        }
    })
}

/// The handled commands need these types only through the stand-in task.
type Commands = flume::Receiver<Box<Command>>;
type Updates = mpsc::Receiver<Update>;

fn entry_chunk(r: wire::Read) -> Option<Chunk> {
    match r.entry {
        Entry::Output(c) => Some(c),
        _ => None,
    }
}
