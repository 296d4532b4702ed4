//! The stand-in task of one remote session, and its stream reader.
//!
//! The task owns the stand-in's ring, broadcast and end, as an actor owns
//! a session's: nothing else touches them. Commands from the handle and
//! updates (records from the directory, entries from the reader) arrive on
//! two channels. The task ends when its commands close, that is when every
//! handle is dropped, which closes the broadcast and tells every viewer the
//! session is gone. The updates never close first: the task keeps a sender
//! of them for its reader. A stand-in the directory drops (`drop_stand_in`,
//! or records missing from `sync`) loses the directory's entry and the
//! registry's handle, and the session is announced deleted; one that `sync`
//! replaces (a `lost` session come back) loses them unannounced.
//! Either way the task lives on while viewers still hold handles.

use std::sync::Arc;

use termstream_proto::SessionInfo;
use tokio::sync::mpsc;
use tokio::task::JoinHandle;

use super::{Commands, Remote, Update, Updates, after, subscription};
use crate::cluster::Cluster;
use crate::cluster::redis::BLOCK;
use crate::cluster::requests::{ASK_TIMEOUT, ask};
use crate::cluster::wire::{self, Entry, Op};
use crate::session::log::OutputRing;
use crate::session::{Command, InfoSender, LogEvent};

/// The most entries one `XREAD` returns.
const READ_COUNT: usize = 256;

/// A remote session's stand-in.
pub(super) struct Task {
    /// Recent output read from the stream, contiguous.
    pub ring: OutputRing,
    /// Live events to local viewers.
    pub events: crate::session::log_events::Sender,
    /// The final info, once the session ended.
    pub ended: Option<Arc<SessionInfo>>,
    pub terminating: bool,
    /// The last resize read from the stream (offset, cols, rows), for a
    /// replay that crosses it; forgotten when the stream was trimmed past the ring.
    pub last_resize: Option<(u64, u16, u16)>,
    /// The stream reader while there are subscribers.
    pub reader: Option<JoinHandle<()>>,
    pub remote: Arc<Remote>,
    /// The info every handle reads (shared with [`Remote`]'s refresh).
    pub handle_info: Arc<InfoSender>,
    /// For the reader to send entries on.
    pub updates_tx: mpsc::Sender<Update>,
}

impl Task {
    pub async fn run(mut self, commands: Commands, mut updates: Updates) {
        let heartbeat = self.remote.c.heartbeat;
        let mut tick = tokio::time::interval(heartbeat);
        loop {
            tokio::select! {
                cmd = commands.recv_async() => match cmd {
                    Ok(cmd) => self.command(*cmd),
                    Err(_) => break,
                },
                up = updates.recv() => match up {
                    Some(up) => self.update(up),
                    // Never: the task holds a sender (`updates_tx`).
                    None => break,
                },
                _ = tick.tick() => {
                    if self.events.receiver_count() == 0
                        && let Some(r) = self.reader.take()
                    {
                        r.abort();
                    }
                }
            }
        }
        if let Some(r) = self.reader.take() {
            r.abort();
        }
    }

    /// The end offset the handles see: the most known from any source.
    fn raise_end(&self, end: u64) {
        self.handle_info.send_if_modified(|i| {
            i.output_offset = i.output_offset.max(end);
            false
        });
    }

    fn known_end(&self) -> u64 {
        self.handle_info.borrow().output_offset
    }

    fn command(&mut self, cmd: Command) {
        let (c, id, owner) = (self.remote.c.clone(), self.remote.id.clone(), self.remote.owner.clone());
        match cmd {
            Command::Resize { cols, rows, reply } => {
                tokio::spawn(async move {
                    let r = ask(&c, &owner, &id, Op::Resize { cols, rows }, ASK_TIMEOUT).await;
                    let _ = reply.send(r.map(drop));
                });
            }
            Command::Terminate => {
                tokio::spawn(async move {
                    let _ = ask(&c, &owner, &id, Op::Terminate, ASK_TIMEOUT).await;
                });
            }
            Command::Read {
                since,
                max_bytes,
                reply,
            } => {
                let end = self.known_end();
                // At or past the ring's end, the stream may hold more: a
                // session without subscribers has no reader filling it.
                if since >= self.ring.start() && since < self.ring.end() {
                    let _ = reply.send(self.ring.read(since, max_bytes));
                } else {
                    let remote = self.remote.clone();
                    tokio::spawn(async move {
                        let _ = reply.send(super::fetch::read(&remote, since, max_bytes, end).await);
                    });
                }
            }
            Command::Subscribe { since, reply } => {
                if self.reader.is_none() && self.ended.is_none() {
                    let key = self.remote.key();
                    let from = wire::before(self.ring.end());
                    self.reader = Some(tokio::spawn(read_stream(c, key, from, self.updates_tx.clone())));
                }
                let budget = self.remote.c.registry.config().ring_bytes;
                let sub = subscription(
                    &self.ring,
                    budget,
                    since,
                    &self.events,
                    self.ended.clone(),
                    self.terminating,
                    self.last_resize.filter(|&(at, ..)| at >= since),
                );
                let _ = reply.send(sub);
            }
            Command::LastResize(reply) => {
                let _ = reply.send(self.last_resize);
            }
            Command::Shutdown { reply } => {
                let _ = reply.send(());
            }
        }
    }

    fn update(&mut self, up: Update) {
        match up {
            Update::Record(info) => {
                self.raise_end(info.output_offset);
                if !info.status.is_running() {
                    let mut info = info;
                    info.output_offset = info.output_offset.max(self.known_end());
                    self.finish(Arc::new(info));
                    return;
                }
                self.handle_info.send_if_modified(|i| {
                    let changed = i.cols != info.cols || i.rows != info.rows;
                    i.cols = info.cols;
                    i.rows = info.rows;
                    changed
                });
            }
            Update::Entries(entries) => {
                for r in entries {
                    self.entry(r.entry);
                }
            }
        }
    }

    fn entry(&mut self, entry: Entry) {
        if self.ended.is_some() {
            return;
        }
        match entry {
            Entry::Output(chunk) => {
                if chunk.offset > self.ring.end() {
                    // The stream was trimmed past what this ring holds.
                    self.ring = OutputRing::new(self.remote.c.registry.config().ring_bytes, chunk.offset);
                    // A resize may have been trimmed with it.
                    self.last_resize = None;
                }
                let Some(chunk) = after(chunk, self.ring.end()) else {
                    return;
                };
                self.ring.push(chunk.clone());
                self.raise_end(self.ring.end());
                let _ = self.events.send(LogEvent::Output(Arc::new(chunk)));
            }
            Entry::Resized { offset, cols, rows } => {
                if self.last_resize == Some((offset, cols, rows)) {
                    // Read again: a restarted reader starts at the ring's
                    // end, where this resize is (its subscriber has it from
                    // the replay).
                    return;
                }
                self.last_resize = Some((offset, cols, rows));
                self.handle_info.send_modify(|i| {
                    i.cols = cols;
                    i.rows = rows;
                });
                let _ = self.events.send(LogEvent::Resized { offset, cols, rows });
            }
            Entry::Terminating => {
                self.terminating = true;
                let _ = self.events.send(LogEvent::Terminating);
            }
            Entry::Ended(info) => self.finish(info),
        }
    }

    /// Ends the stand-in's log: once, with the session's final info.
    fn finish(&mut self, info: Arc<SessionInfo>) {
        if self.ended.is_some() {
            return;
        }
        self.ended = Some(info.clone());
        self.handle_info.send_replace((*info).clone());
        let _ = self.events.send(LogEvent::Ended(info));
        if let Some(r) = self.reader.take() {
            r.abort();
        }
    }
}

/// Follows a stream from after `last` with `XREAD BLOCK` on a connection of
/// its own, sending what it reads to the stand-in, until aborted.
async fn read_stream(c: Arc<Cluster>, key: String, mut last: String, tx: mpsc::Sender<Update>) {
    loop {
        let mut conn = match c.redis.dedicated().await {
            Ok(conn) => conn,
            Err(_) => {
                tokio::time::sleep(c.heartbeat).await;
                continue;
            }
        };
        loop {
            let read: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&key)
                .arg(&last)
                .query_async(&mut conn)
                .await;
            let Ok(v) = read else { break };
            let entries = wire::xread_entries(&v);
            if let Some(e) = entries.last() {
                last = e.id.clone();
                if tx.send(Update::Entries(entries)).await.is_err() {
                    return;
                }
            }
        }
        tokio::time::sleep(c.heartbeat).await;
    }
}
