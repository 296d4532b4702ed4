//! The stand-in task of one remote session; its stream reader is
//! [`read`].
//!
//! The task owns the stand-in's ring, broadcast and end, as an actor owns
//! a session's: nothing else touches them. Commands from the handle and
//! updates (records from the directory, entries from the reader) arrive on
//! two channels. The task ends when its commands close (every handle
//! dropped), or earlier when the directory lets it go; its end closes the
//! broadcast and tells every viewer the session is gone. The updates never
//! close first: the task keeps a sender of them for its reader. A stand-in
//! the directory drops (`drop_stand_in`, or records missing from `sync` 3
//! reads in a row) loses the directory's entry and the registry's handle;
//! one that `sync` replaces (a `lost` session come
//! back, or a newer incarnation) loses them too. Its viewers are told
//! `deleted` when the session was deleted (through this node, its record's
//! removal in the change log, a newer incarnation), else `released` (it
//! was let go: `Tracked::let_go` in the parent module). Either way the task
//! ends then, as a deleted session's actor does, though viewers may still
//! hold handles: its broadcast and the handles' info close (a `/ws` viewer
//! is told `session.detached`, and its attachment ends, focus-aware and
//! ended ones too), and what a held handle sends through the task (resize,
//! terminate, read, subscribe) fails as `session_not_found`. Input,
//! snapshots and recordings do not pass through the task: [`Remote`] asks
//! the owner for them, so they still reach it through such a handle.
//! [`Remote`] holds the info's sender weakly, so the task's is the last.

use std::sync::Arc;

use termstream_proto::SessionInfo;
use tokio::sync::{mpsc, oneshot};
use tokio::task::JoinHandle;

mod read;

use self::read::{kept_after_trim, read_stream, resize_is_new, without_overtaken_resizes};
use super::{Commands, Remote, Update, Updates, after, subscription};
use crate::cluster::requests::{ASK_TIMEOUT, ask};
use crate::cluster::wire::{self, Answer, Entry, Op};
use crate::session::log::OutputRing;
use crate::session::{Began, Command, InfoSender, LogEvent};

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
    /// replay that crosses it; forgotten when the stream was trimmed past
    /// it ([`kept_after_trim`]).
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
    /// Serves the handles' commands and the updates until every handle is
    /// gone, or `untracked` closes (the directory dropped the stand-in).
    pub async fn run(mut self, commands: Commands, mut updates: Updates, mut untracked: oneshot::Receiver<()>) {
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
                _ = &mut untracked => break,
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
        // The incarnation this stand-in was made for: the owner applies a
        // request only to it.
        let epoch = self.remote.epoch;
        match cmd {
            Command::Resize {
                cols,
                rows,
                info,
                reply,
            } => {
                tokio::spawn(async move {
                    // The owner's info only when the caller uses it (the REST
                    // route): a window dragged over a WebSocket sends many.
                    let op = Op::Resize { cols, rows, info };
                    let r = ask(&c, &owner, &id, epoch, op, ASK_TIMEOUT)
                        .await
                        .map(|answer| match answer {
                            Answer::Info(info) => Some(info),
                            // Not asked for, or an owner that predates `info`
                            // answered `Done`: the handle's own info is all there is.
                            _ => None,
                        });
                    let _ = reply.send(r);
                });
            }
            Command::Terminate { reply } => {
                tokio::spawn(async move {
                    // The owner answers once its session took it (the end
                    // comes through the directory and the stream); a Redis
                    // that cannot be reached or an owner that does not
                    // answer is the caller's answer, and the caller waits
                    // for the end after `busy` (no answer in time: the
                    // request stays in the owner's list, which may apply it
                    // yet; see `SessionHandle::terminate`).
                    let r = ask(&c, &owner, &id, epoch, Op::Terminate, ASK_TIMEOUT)
                        .await
                        .map(|_| Began::Unknown);
                    // Not silent when its caller is gone (a client that
                    // hung up).
                    if let Err(Err(e)) = reply.send(r) {
                        tracing::warn!(session = %id, owner = %owner, error = %e, "a terminate may not have been taken by the session's owner");
                    }
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
                let stream_resize = self.last_resize.map(|(at, ..)| at);
                if !record_size_applies(
                    info.output_offset,
                    self.ended.is_some(),
                    self.reader.is_some(),
                    stream_resize,
                ) {
                    return;
                }
                self.handle_info.send_if_modified(|i| {
                    let changed = i.cols != info.cols || i.rows != info.rows;
                    i.cols = info.cols;
                    i.rows = info.rows;
                    changed
                });
            }
            Update::Entries { entries, reread } => {
                if reread {
                    for entry in without_overtaken_resizes(entries) {
                        self.entry(entry);
                    }
                } else {
                    for r in entries {
                        self.entry(r.entry);
                    }
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
                    self.last_resize = kept_after_trim(self.last_resize, chunk.offset);
                }
                let Some(chunk) = after(chunk, self.ring.end()) else {
                    return;
                };
                self.ring.push(chunk.clone());
                self.raise_end(self.ring.end());
                let _ = self.events.send(LogEvent::Output(Arc::new(chunk)));
            }
            Entry::Resized { offset, cols, rows } => {
                if !resize_is_new(self.last_resize, (offset, cols, rows)) {
                    return;
                }
                self.last_resize = Some((offset, cols, rows));
                self.handle_info.send_modify(|i| {
                    i.cols = cols;
                    i.rows = rows;
                });
                let _ = self.events.send(LogEvent::Resized { offset, cols, rows });
            }
            // Once, as from an actor: a publisher that catches up writes it
            // again, and a reader that lost its connection reads it again.
            Entry::Terminating if self.terminating => {}
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

/// Whether a running directory record's size may replace the size a
/// stand-in shows. The record was read some time before it arrives, so it
/// may predate a resize the stream reader delivered meanwhile: the stream
/// is in the owner's order and the directory is not. A record is a copy of
/// the owner's info when its log ended at `record_end`, and a resize at
/// offset `at` happened when the log ended at `at`; so a record whose end
/// lies past the last resize the stream gave (`stream_resize`) was written
/// after it and may be taken, while one at or before it may be older (two
/// resizes with no output between share an offset). Without a running
/// reader the stream says nothing new, and the directory, read in order,
/// is the only source. After the end the final info holds the size: a
/// record that still says running is older than the end.
///
/// A record at `at` may also be newer: a resize the stream lost (Redis
/// restarted empty meanwhile) with no output since. Refusing it is safe
/// only because the stream never loses the last resize for good: a
/// publisher that catches its stream up sends the last resize again, and a
/// reader that lost its connection reads the entries at its last offset
/// again ([`read::again_at_offset`]).
fn record_size_applies(record_end: u64, ended: bool, reader: bool, stream_resize: Option<u64>) -> bool {
    if ended {
        return false;
    }
    match stream_resize {
        Some(at) if reader => record_end > at,
        _ => true,
    }
}

#[cfg(test)]
mod tests {
    use super::read::again_at_offset;
    use super::record_size_applies;
    use crate::cluster::wire;

    #[test]
    fn a_record_read_before_a_resize_the_stream_gave_is_not_taken() {
        // The owner resized at offset 500 with no output since; the
        // record was read before its put, when the log also ended at 500
        // (or earlier), and arrives after the stream's `Resized`.
        assert!(!record_size_applies(500, false, true, Some(500)));
        assert!(!record_size_applies(420, false, true, Some(500)));
    }

    #[test]
    fn a_record_written_after_the_last_resize_the_stream_gave_is_taken() {
        // Output followed the resize, so the record was written after it.
        assert!(record_size_applies(501, false, true, Some(500)));
    }

    #[test]
    fn a_newer_record_at_the_offset_of_the_streamed_resize_is_refused_too() {
        // Resized to 100x30 at 500 and streamed; Redis restarted empty, and
        // a resize to 120x40, also at 500, never reached the stream. The
        // owner's record (120x40, end 500) cannot be told from one older
        // than the streamed resize, and is refused: the size must come from
        // the stream. The publisher sends its last resize again, at 500, in
        // a stream whose ids start anew: the entry may get the id the
        // reader last read, so the reader goes on from before every entry
        // at 500, not from that id.
        assert!(!record_size_applies(500, false, true, Some(500)));
        assert_eq!(again_at_offset("500-0"), wire::before(500));
        assert_eq!(again_at_offset("500-0"), format!("499-{}", u64::MAX));
    }

    #[test]
    fn without_a_reader_or_a_streamed_resize_the_directory_decides() {
        assert!(record_size_applies(0, false, false, Some(500)));
        assert!(record_size_applies(0, false, true, None));
        assert!(record_size_applies(0, false, false, None));
    }

    #[test]
    fn after_the_end_no_running_record_changes_the_size() {
        // The final info came from the stream (or a record that said so);
        // a record that still says running was read before the end.
        assert!(!record_size_applies(900, true, false, None));
        assert!(!record_size_applies(900, true, true, Some(500)));
    }
}
