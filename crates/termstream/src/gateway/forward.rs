//! The forwarder: one task per (socket, attached session) that delivers the
//! session's log to the socket, exactly once and in order.
//!
//! It keeps `next`, the first offset the client does not have. Live events
//! come from the session's broadcast; whatever is missing before an event
//! (the broadcast lagged while the socket was slow, or the attach resumed
//! from an older offset) is read from the log by offset, from the ring or
//! from disk. So a slow client costs no memory beyond its socket budget and
//! loses nothing, with two honest exceptions, each announced by a
//! `session.gap` notice:
//! - a pty client more than `max_replay_bytes` behind gets a screen snapshot
//!   (`terminal.restore`) instead of the missed bytes;
//! - output that is no longer held anywhere (disk retention) is skipped.
//!
//! Architecture invariant: every output frame starts at `next` and advances
//! it by its length; nothing before `next` is ever sent again.
//!
//! A replay on attach (or a focus-aware catch-up) that crosses the
//! session's last resize carries its `session.resized` at its place (the
//! live event went out before the subscription): the output after it was
//! drawn at the new size. Only the last resize is kept for this; earlier
//! ones in the same replay are not repeated. For a session owned by
//! another node, it is the last resize this node's stand-in read from the
//! cluster's stream (`cluster/remote/stand_in.rs`), none if it may have
//! missed one.
//!
//! Input a socket sends after an attach waits until the attach's forwarder
//! is subscribed ([`Started`]): what the input makes the program print
//! comes to that socket as output, after the screen it was sent, and a
//! terminal answers the queries in it (it does not answer those in a
//! restored screen).
//!
//! A focus-aware attachment (`"stream":"focus"`) follows live events only
//! while its session is focused ([`focused`]); otherwise it sends what the
//! log gained at most once per interval, by offset, so nothing is lost.

mod focused;
mod live;
mod send;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use termstream_proto::ws::{GapReason, LogPosition, OutputMode};
use termstream_proto::{ErrorCode, SessionId, SessionKind, Stream};
use tokio::sync::oneshot;

use super::outbox::{Closed, Outbox};
use super::render::{Dialect, OutEvent};
use crate::focus::Focus;
use crate::observe::metrics::{self, AttachmentGauge};
use crate::session::lane::Follower;
use crate::session::log::RingRead;
use crate::session::{SessionError, SessionHandle};

/// The largest output frame the forwarder builds by merging chunks.
pub const MAX_FRAME: usize = 64 * 1024;
/// In binary mode, chunks at least this large go out as their own frame,
/// shared with every other socket (no copy), instead of being merged.
const ZERO_COPY_MIN: usize = 16 * 1024;
/// The most bytes one catch-up read asks for.
const READ_PAGE: usize = 256 * 1024;

/// What to forward, and how.
#[derive(Debug, Clone)]
pub struct Attach {
    pub handle: SessionHandle,
    pub since: Option<LogPosition>,
    pub mode: OutputMode,
    pub dialect: Dialect,
    pub max_replay: u64,
    /// Messages sent once the forwarder is subscribed, before anything
    /// else: a client that read them knows that every later event of the
    /// session reaches it.
    pub preamble: Vec<Message>,
    /// `"stream":"focus"`: live only while the session is focused.
    pub focus: Option<FocusFollow>,
}

/// How a focus-aware attachment follows its session's focus.
#[derive(Debug, Clone)]
pub struct FocusFollow {
    pub focus: Arc<Focus>,
    /// At most one update per this while the session is not focused.
    pub interval: Duration,
}

struct Forwarder {
    handle: SessionHandle,
    id: SessionId,
    mode: OutputMode,
    dialect: Dialect,
    max_replay: u64,
    out: Outbox,
    /// The first offset the client does not have.
    next: u64,
    /// An incomplete UTF-8 sequence held back from JSON output: its stream
    /// and bytes; it starts at `next - carry.len()`.
    carry: Option<(Stream, Vec<u8>)>,
    /// When the oldest bytes of the output being sent were read from the
    /// program (for the delivery latency metric).
    read_at: Option<Instant>,
    /// `"stream":"focus"`: how to follow the session's focus.
    focus: Option<FocusFollow>,
    /// Merge every chunk into frames of up to [`MAX_FRAME`], large ones
    /// too (an unfocused session's updates: fewer frames beat no copy).
    coalesce: bool,
}

/// How following the live events ended.
enum Flow {
    /// The log ended (or the session was deleted): nothing more to send.
    Ended,
    /// A focus-aware attachment's session is no longer focused.
    Unfocused,
}

/// Starts [`run`] where `attach`'s session's actor runs, following it to the
/// bulk lane and back (`session/lane.rs`); the [`Started`] tells when it
/// is subscribed.
pub fn spawn(attach: Attach, out: Outbox) -> (Follower, Started) {
    let handle = attach.handle.clone();
    let (tx, rx) = oneshot::channel();
    (handle.spawn_follower(run(attach, out, Some(tx))), Started(Some(rx)))
}

/// When a forwarder has fixed where it starts (taken its snapshot and
/// subscribed): input to its session waits for that, so that the output
/// the input causes is not folded into the attach's screen.
#[derive(Debug, Default)]
pub struct Started(Option<oneshot::Receiver<()>>);

impl Started {
    /// Waits until the forwarder is subscribed, has ended, or `limit` has
    /// passed; only the first call waits.
    pub async fn wait(&mut self, limit: Duration) {
        if let Some(rx) = self.0.take() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }
}

/// Delivers `attach`'s session to `out` until the log ends, the session is
/// deleted, or the socket closes; `started` is told once it is subscribed
/// (dropped unsent if it never is).
///
/// A plain function returning the task's `async` block, not an `async
/// fn`: an `async fn`'s future keeps its arguments twice (as passed, and
/// moved into its body), and every idle attachment would carry a dead copy
/// of its `Attach` and outbox.
pub fn run(
    attach: Attach,
    out: Outbox,
    started: Option<oneshot::Sender<()>>,
) -> impl Future<Output = ()> + Send + 'static {
    let attached = AttachmentGauge::open(attach.dialect == Dialect::Legacy);
    tracing::debug!(session = %attach.handle.id(), since = ?attach.since, "attach");
    // Logged however the forwarder ends, aborted by its socket included.
    let detach = DetachLog(attach.handle.id().clone());
    let Attach {
        handle,
        since,
        mode,
        dialect,
        max_replay,
        preamble,
        focus,
    } = attach;
    let mut f = Forwarder {
        id: handle.id().clone(),
        handle,
        mode,
        dialect,
        max_replay,
        out,
        next: 0,
        carry: None,
        read_at: None,
        focus,
        coalesce: false,
    };
    async move {
        let _attached = attached;
        let _detach = detach;
        // The start runs boxed and is freed before the following begins:
        // an idle attachment keeps only the state of waiting for the next
        // event. Following the focus (rare) is boxed too, so that plain
        // attachments do not carry its state.
        let followed = match Box::pin(f.start(since, preamble, started)).await {
            Ok(Some(live)) => match f.focus.take() {
                Some(follow) => Box::pin(f.follow_focus(live, follow)).await,
                None => f.follow(live, None).await.map(drop),
            },
            Ok(None) => Ok(()),
            Err(Closed) => Err(Closed),
        };
        if let Err(Closed) = followed {
            tracing::debug!(session = %f.id, "socket closed while forwarding");
        }
    }
}

/// Logs the end of an attachment when dropped.
struct DetachLog(SessionId);

impl Drop for DetachLog {
    fn drop(&mut self) {
        tracing::debug!(session = %self.0, "detach");
    }
}

impl Forwarder {
    async fn emit(&self, ev: OutEvent<'_>) -> Result<(), Closed> {
        self.emit_at(None, ev).await
    }

    /// Sends `ev`; output read from the program at `read_at` has its
    /// delivery latency recorded when written.
    async fn emit_at(&self, read_at: Option<Instant>, ev: OutEvent<'_>) -> Result<(), Closed> {
        match &ev {
            OutEvent::Output { data, .. } => {
                let m = metrics::get();
                m.output_frames.increment(1);
                m.bytes_out.increment(data.len() as u64);
            }
            OutEvent::Gap { from, to, reason, .. } => {
                metrics::gap(*reason);
                tracing::debug!(session = %self.id, from, to, ?reason, "gap");
            }
            _ => {}
        }
        match self.dialect.render(ev, self.mode) {
            Some(msg) => self.out.send_output(msg, read_at).await,
            None => Ok(()),
        }
    }

    async fn error(&self, code: ErrorCode, message: String) -> Result<(), Closed> {
        let msg = termstream_proto::ws::ServerMessage::Error {
            code,
            message,
            session_id: Some(self.id.clone()),
        };
        // The legacy dialect has no error message of its own: dotted JSON.
        let rendered = self
            .dialect
            .render_control(&msg)
            .unwrap_or_else(|| Message::Text(serde_json::to_string(&msg).unwrap_or_default().into()));
        self.out.send(rendered).await
    }

    fn is_pty(&self) -> bool {
        self.handle.kind() == SessionKind::Pty
    }

    /// Subscribes and sends what comes before the live events (the
    /// preamble, `session.attached`, any gap and snapshot, the held
    /// output); returns the live receiver to follow, or `None` when there
    /// is nothing to follow (the log ended, the session is gone).
    async fn start(
        &mut self,
        since: Option<LogPosition>,
        preamble: Vec<Message>,
        started: Option<oneshot::Sender<()>>,
    ) -> Result<Option<crate::session::log_events::Receiver>, Closed> {
        let info = self.handle.info_now().await;
        let end = info.output_offset;
        let mut snapshot = false;
        let mut recovered = None;
        let mut gap = None;
        match since {
            Some(pos) if pos.epoch == info.epoch && pos.offset <= end => {
                if self.is_pty() && end - pos.offset > self.max_replay {
                    snapshot = true;
                    recovered = Some(false);
                    gap = Some((pos.offset, GapReason::Evicted));
                } else if let Some(earliest) = self.gone_before(pos.offset).await {
                    // What the client lacks was deleted: the resume is not
                    // exact, and says so before the gap.
                    recovered = Some(false);
                    gap = Some((pos.offset, GapReason::Evicted));
                    if self.is_pty() {
                        snapshot = true;
                    } else {
                        self.next = earliest;
                    }
                } else {
                    self.next = pos.offset;
                    recovered = Some(true);
                }
            }
            Some(pos) if pos.epoch == info.epoch => {
                self.error(
                    ErrorCode::BadRequest,
                    format!("since.offset {} is past the end of the output ({end})", pos.offset),
                )
                .await?;
                snapshot = self.is_pty();
            }
            Some(_) => {
                snapshot = self.is_pty();
                recovered = Some(false);
                gap = Some((0, GapReason::EpochChanged));
            }
            // Legacy clients get the held output instead of a snapshot.
            None => snapshot = self.is_pty() && self.dialect != Dialect::Legacy,
        }
        let snap = if snapshot {
            match self.handle.snapshot().await {
                Ok(s) => {
                    self.next = s.offset;
                    Some(s)
                }
                Err(e) => {
                    return self
                        .error(ErrorCode::Internal, format!("cannot take a snapshot: {e}"))
                        .await
                        .map(|()| None);
                }
            }
        } else {
            None
        };
        let sub = self.handle.subscribe(self.next).await;
        if let Some(tx) = started {
            let _ = tx.send(());
        }
        for msg in preamble {
            self.out.send(msg).await?;
        }
        let Ok(sub) = sub else {
            return self.detached().await.map(|()| None);
        };
        // A fresh attach without a snapshot starts at the oldest output
        // still in memory.
        if since.is_none()
            && snap.is_none()
            && let RingRead::Evicted { start } = sub.backlog
        {
            self.next = start;
        }
        let info = self.handle.info();
        self.emit(OutEvent::Attached {
            info: &info,
            offset: self.next,
            recovered,
        })
        .await?;
        if let Some((from, reason)) = gap {
            self.emit(OutEvent::Gap {
                session: &self.id,
                from,
                to: self.next,
                reason,
            })
            .await?;
        }
        if let Some(snap) = &snap {
            self.emit(OutEvent::Restore {
                session: &self.id,
                snapshot: snap,
            })
            .await?;
        }
        // The forwarder lives as long as the attachment: nothing it no
        // longer needs may stay alive in it.
        drop(snap);
        drop(info);
        self.replay(sub.backlog, sub.end, sub.last_resize).await?;
        if let Some(ended) = sub.ended {
            return self.finish(&ended).await.map(|()| None);
        }
        if sub.terminating {
            self.emit(OutEvent::Terminating { session: &self.id }).await?;
        }
        Ok(Some(sub.live))
    }

    /// The earliest offset held, when output from `offset` is no longer
    /// held anywhere (deleted from disk by retention).
    async fn gone_before(&self, offset: u64) -> Option<u64> {
        match self.handle.read(offset, 1).await {
            Err(SessionError::Gone { earliest }) => Some(earliest),
            _ => None,
        }
    }

    /// The broadcast moved on without us: decide between replaying the
    /// missed bytes (next events will trigger `fill`) and a snapshot.
    async fn fell_behind(&mut self) -> Result<(), Closed> {
        let end = self.handle.output_offset();
        if !self.is_pty() || end.saturating_sub(self.next) <= self.max_replay {
            metrics::catchup("replay");
            tracing::debug!(session = %self.id, from = self.next, to = end, "resync by replay");
            return Ok(());
        }
        metrics::catchup("snapshot");
        tracing::debug!(session = %self.id, from = self.next, to = end, "resync by snapshot");
        self.snapshot_gap(GapReason::SlowClient).await
    }

    /// Skips to a fresh snapshot, announcing the gap.
    async fn snapshot_gap(&mut self, reason: GapReason) -> Result<(), Closed> {
        let snap = match self.handle.snapshot().await {
            Ok(s) => s,
            Err(_) => return Ok(()),
        };
        if snap.offset <= self.next {
            return Ok(());
        }
        self.skip_to(snap.offset, reason).await?;
        self.emit(OutEvent::Restore {
            session: &self.id,
            snapshot: &snap,
        })
        .await
    }

    /// Announces that output from `next` to `to` will not be sent, and goes
    /// on from `to`. Bytes held back for an incomplete UTF-8 sequence are
    /// part of the gap: `next` already counts them.
    async fn skip_to(&mut self, to: u64, reason: GapReason) -> Result<(), Closed> {
        let held = self.carry.take().map_or(0, |(_, h)| h.len() as u64);
        self.emit(OutEvent::Gap {
            session: &self.id,
            from: self.next - held,
            to,
            reason,
        })
        .await?;
        self.next = to;
        Ok(())
    }

    /// Sends a subscription's backlog (up to `end`) after `next`. The
    /// session's last resize, when the replay crosses it, went out before
    /// the subscription (between an attach's snapshot and it, while a
    /// resuming client was away, or while a focus-aware one was not
    /// following): its event goes at its place, or the client would draw
    /// what follows at the old size.
    async fn replay(
        &mut self,
        backlog: RingRead,
        end: u64,
        last_resize: Option<(u64, u16, u16)>,
    ) -> Result<(), Closed> {
        let resize = last_resize.filter(|&(at, ..)| at >= self.next);
        match backlog {
            RingRead::Held(chunks) => match resize {
                Some((at, cols, rows)) => {
                    let (before, after) = chunks.into_iter().partition(|c| c.offset < at);
                    self.send_chunks(before).await?;
                    self.resized(cols, rows).await?;
                    self.send_chunks(after).await
                }
                None => self.send_chunks(chunks).await,
            },
            RingRead::Evicted { .. } | RingRead::Future { .. } => {
                if let Some((at, cols, rows)) = resize {
                    self.fill(at).await?;
                    // Past it (a snapshot instead of the bytes): the
                    // snapshot holds the size already.
                    if self.next <= at {
                        self.resized(cols, rows).await?;
                    }
                }
                self.fill(end).await
            }
        }
    }

    /// Tells the client the session's window is now `cols` × `rows`.
    async fn resized(&mut self, cols: u16, rows: u16) -> Result<(), Closed> {
        self.emit(OutEvent::Resized {
            session: &self.id,
            cols,
            rows,
        })
        .await
    }

    /// Sends the log from `next` up to `to`, read from the ring or disk.
    async fn fill(&mut self, to: u64) -> Result<(), Closed> {
        while self.next < to {
            if self.is_pty() && self.handle.output_offset().saturating_sub(self.next) > self.max_replay {
                // Too far behind to replay: the screen says it better.
                self.snapshot_gap(GapReason::SlowClient).await?;
                if self.next >= to {
                    return Ok(());
                }
            }
            let want = ((to - self.next) as usize).min(READ_PAGE);
            match self.handle.read(self.next, want).await {
                Ok(chunks) if chunks.is_empty() => return Ok(()),
                Ok(chunks) => self.send_chunks(chunks).await?,
                Err(SessionError::Gone { earliest }) => {
                    if self.is_pty() {
                        self.snapshot_gap(GapReason::Evicted).await?;
                    }
                    if self.next < earliest {
                        self.skip_to(earliest, GapReason::Evicted).await?;
                    }
                }
                Err(SessionError::Closed(_)) => return Ok(()),
                Err(e) => {
                    tracing::warn!(session = %self.id, error = %e, "cannot read the log");
                    return Ok(());
                }
            }
        }
        Ok(())
    }

    async fn detached(&mut self) -> Result<(), Closed> {
        let msg = termstream_proto::ws::ServerMessage::Detached {
            session_id: self.id.clone(),
        };
        match self.dialect.render_control(&msg) {
            Some(m) => self.out.send(m).await,
            None => Ok(()),
        }
    }
}
