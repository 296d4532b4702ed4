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
//! cluster's stream (`cluster/remote/stand_in.rs`), none after the stream
//! was trimmed past what it held.
//!
//! A lag can take a `session.resized` with the events it loses, and the
//! ring and disk the forwarder catches up from hold no resize. So on a lag
//! the forwarder asks the session for its last resize and, when it is at
//! or past `next` and the client would not otherwise reach its size, keeps
//! it pending; it is told just before the first byte at or past its offset
//! (`resize.rs`). One behind `next` that is the session's size is told
//! before the next byte. Resize events still queued are told at their
//! places, in order, and settle a pending resize they reach; one behind
//! `next` is told only when the client would otherwise miss the session's
//! size. As on attach, only the last resize is known: earlier ones lost in
//! the same lag are not told, and a resize away and back (A to B to A)
//! inside one lag is not told at all.
//!
//! The first input a socket sends after an attach waits until the attach's
//! forwarder is subscribed ([`Started`], at most a limit): what the input
//! makes the program print then comes after the screen, as output.
//!
//! A focus-aware attachment (`"stream":"focus"`) follows live events only
//! while its session is focused ([`focused`]); otherwise it sends what the
//! log gained at most once per interval, by offset, so nothing is lost.
//!
//! A `/ws` attachment ends when its session is deleted, not when it merely
//! ends: once the ended session's output and `session.exit` are sent, its
//! forwarder waits for the session's info to close (its actor, or its
//! cluster stand-in, gone), then gives the attachment back to its socket's
//! task ([`release`]), as one whose session is deleted while running does.
//! Meanwhile it holds the session's id, a receiver of its info, its
//! [`Release`], its attachment gauge and its detach log line, nothing more.

mod catchup;
mod focused;
mod live;
mod progress;
mod release;
mod resize;
mod send;
mod start;
mod started;

pub use progress::{Next, Progress};
pub use release::{Release, Released};
pub use started::Started;

use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::Message;
use termstream_proto::ws::{LogPosition, OutputMode};
use termstream_proto::{ErrorCode, SessionId, SessionKind, Stream};

use super::outbox::{Closed, Outbox};
use super::render::{Dialect, OutEvent};
use crate::focus::Focus;
use crate::observe::metrics::{self, AttachmentGauge};
use crate::session::SessionHandle;
use crate::session::lane::Follower;

/// The largest output frame the forwarder builds by merging chunks.
pub const MAX_FRAME: usize = 64 * 1024;
/// In binary mode, chunks at least this large go out as their own frame,
/// shared with every other socket (no copy), not merged.
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
    /// A `/ws` attachment: when the session is deleted, the socket's task
    /// is told (and answers `session.detached` itself, once it has given
    /// the slot back); the attachment outlives the session's end until
    /// then. `/ws/terminal/{id}` has one too: told, it closes (its
    /// forwarder sends `terminal_end` first if its end was not seen; see
    /// `detached`). `None`: the forwarder sends its dialect's
    /// `session.detached`, if any, and ends with the session.
    pub release: Option<Release>,
    /// Where what goes out is accounted for, for a next forwarder ([`Progress`]).
    pub progress: Option<Arc<Progress>>,
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
    /// The window size the client was last told, in the order it reads
    /// them: by `session.attached`, a `terminal.restore` or a
    /// `session.resized`. A resize whose live event the forwarder never
    /// took (dropped with its receiver when focus went) is found by
    /// comparing the session's size with this, not with a size read
    /// later, which may already be the new one.
    told_size: (u16, u16),
    /// Resizes the client lacks whose live event the forwarder may never
    /// take (learned from a subscription, or asked after a lag), in offset
    /// order, each told just before the first byte at or past its offset
    /// (`resize.rs`). Usually empty; one waits here until the bytes at
    /// its offset go out, which for an unfocused session's updates, or a
    /// fill that stopped short, may be a later update or fill. At most
    /// [`resize::MAX_PENDING`], the oldest dropped past it.
    pending_resizes: Vec<resize::Resize>,
    /// Taken when the session is found deleted (see [`Attach::release`]).
    release: Option<Release>,
    /// See [`Attach::progress`].
    progress: Option<Arc<Progress>>,
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
    let (tell, started) = started::pair();
    (handle.spawn_follower(run(attach, out, tell)), started)
}

/// [`spawn`] (with no [`Started`]) of the attach that `before` makes once
/// done; nothing (no subscription, no frame, no attachment gauge) until
/// then, and nothing at all for `None`. A combinator, as [`run`] says.
pub fn spawn_after(
    handle: &SessionHandle,
    out: Outbox,
    before: impl Future<Output = Option<Attach>> + Send + 'static,
) -> Follower {
    use futures_util::future::Either;
    let (tell, _) = started::pair();
    handle.spawn_follower(futures_util::FutureExt::then(before, move |attach| match attach {
        Some(attach) => Either::Left(run(attach, out, tell)),
        None => Either::Right(std::future::ready(())),
    }))
}

/// Delivers `attach`'s session to `out` until the log ends, the session is
/// deleted, or the socket closes; `started` is told once it is subscribed
/// (dropped unsent if it never is).
///
/// A plain function returning the task's `async` block, not an `async
/// fn`: an `async fn`'s future keeps its arguments twice (as passed, and
/// moved into its body), and every idle attachment would carry a dead copy
/// of its `Attach` and outbox.
pub fn run(attach: Attach, out: Outbox, started: started::Tell) -> impl Future<Output = ()> + Send + 'static {
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
        release,
        progress,
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
        told_size: (0, 0),
        pending_resizes: Vec::new(),
        release,
        progress,
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
        // The session ended (or its start failed) and was not deleted: the
        // attachment stays until it is. Only the id, a receiver of the info,
        // the departure (which says why it ends: deleted, or released) and
        // the release are kept meanwhile (with the gauge and the log line
        // above); the rest of the forwarder, its handle included, is
        // dropped first.
        if followed.is_ok()
            && let Some(release) = f.release.take()
        {
            let (mut info, id, departure) = f.into_waiting();
            // Closed when the session's actor is gone: it was deleted (or,
            // another node's, let go here).
            while info.changed().await.is_ok() {}
            release.send(id, departure.reason());
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
    /// What an ended session's forwarder keeps while it waits for the
    /// delete: a receiver of the session's info, its id, and what tells
    /// why it went. Everything else goes with `self` here.
    fn into_waiting(
        self,
    ) -> (
        tokio::sync::watch::Receiver<termstream_proto::SessionInfo>,
        SessionId,
        crate::session::remote::Departure,
    ) {
        (self.handle.watch_info(), self.id, self.handle.departure())
    }

    /// Hands `msg` to the socket (see [`hand_over`]).
    async fn put(&self, msg: Message, read_at: Option<Instant>) -> Result<(), Closed> {
        hand_over(&self.out, self.progress.as_deref(), msg, read_at).await
    }

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
            Some(msg) => self.put(msg, read_at).await,
            None => Ok(()),
        }
    }

    async fn error(&self, code: ErrorCode, message: String) -> Result<(), Closed> {
        let msg = termstream_proto::ws::ServerMessage::Error {
            code,
            message,
            session_id: Some(self.id.clone()),
            request: None,
            seq: None,
        };
        // The legacy dialect has no error message of its own: dotted JSON.
        let rendered = self
            .dialect
            .render_control(&msg)
            .unwrap_or_else(|| Message::Text(serde_json::to_string(&msg).unwrap_or_default().into()));
        self.put(rendered, None).await
    }

    fn is_pty(&self) -> bool {
        self.handle.kind() == SessionKind::Pty
    }
}

/// Hands a forwarder's frame to `out`. One that accounts for what it sent
/// (`progress`, `/ws/terminal/all`) queues it, which is cancel-safe: a
/// forwarder stopped while it waits has queued nothing, and one whose send
/// returned accounts for it in the same poll, so the next forwarder of the
/// session neither skips nor repeats a frame. Every other writes directly
/// when it can (`outbox.rs`): a send stopped while the sink is busy may
/// have handed its frame over, which nothing counts.
pub(in crate::gateway) async fn hand_over(
    out: &Outbox,
    progress: Option<&Progress>,
    msg: Message,
    read_at: Option<Instant>,
) -> Result<(), Closed> {
    match progress {
        Some(_) => out.queue_output(msg, read_at).await,
        None => out.send_output(msg, read_at).await,
    }
}
