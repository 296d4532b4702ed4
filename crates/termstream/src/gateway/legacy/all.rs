//! `/ws/terminal/all`: the start and output of every session the socket's
//! credential may read, on one socket, for dashboards.
//!
//! The socket's task keeps one forwarder per session it streams, by id,
//! with the incarnation it streams (the session's epoch and info channel:
//! a session deleted and created again under its id is another
//! incarnation; a new copy of another node's session, of the same epoch,
//! is the same session, see [`Kin`]). It follows the registry's changes:
//! - `Created`: acted on only if the registry holds that very copy now
//!   (after a lag the channel resumes at events older than the resync's
//!   listing: an incarnation since deleted must not replace the current
//!   one). A new session (the id not streamed, or streamed last for
//!   another incarnation) gets its `terminal_start` and all its output. A
//!   new copy of the session the socket streamed last under the id (still
//!   streamed: a `lost` session's copy replaced when its node came back;
//!   or left: a copy this node let go of, taken up again) goes on where
//!   the client got, once the old copy's forwarder is gone ([`Next`]):
//!   from the first byte not handed to the socket, with no second
//!   `terminal_start`, unless the client had the old copy's end (then a
//!   `terminal_start` comes again if the new copy's end differs, and
//!   nothing at all if it is the same). The copy it streams already
//!   (created between the subscription and the first listing) is skipped.
//! - `Deleted`: the id's entry is left, unless the registry holds the
//!   very copy it streams (the event was of an older one, sent after the
//!   newer was created).
//! - a lag (more than `session_changes_queue` changes while the task was
//!   busy): which changes it missed is unknown, so it resynchronizes with
//!   the registry: what it streams that is gone is left, what is another
//!   incarnation or copy now is replaced (as above), and what it does not
//!   stream yet is started, as if created.
//!
//! A forwarder of a deleted session ends by itself, after what it still
//! holds and the session's `terminal_end` (a session deleted right after
//! its exit, say by a create past `max_sessions`): a left entry's
//! forwarder is not stopped but let end (`Streams::leaving`). A new
//! session under its id starts only once it has ended (at most the pong
//! timeout, then it is stopped, its end lost): nothing of the old session
//! comes after the new one's `terminal_start`. The leaving are bounded
//! (a slow client must not hold every deleted session's forwarder): one
//! leaving longer than the pong timeout, or the oldest past
//! [`MAX_LEAVING`] still running, is stopped, and the rest of its
//! session's output and its `terminal_end` are lost. One replaced by
//! another incarnation of its id is stopped at once (the old one's end
//! may then be lost); the new one starts once it is gone. Left entries
//! stay known after their forwarder ended, the last [`MAX_LEFT`], so that
//! a copy taken up again goes on where the client got.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::sync::Arc;
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocket;
use futures_util::StreamExt;
use termstream_proto::ws::LogPosition;
use termstream_proto::{Epoch, SessionId, SessionInfo};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::super::ClientGuard;
use super::super::forward::{self, Next, Progress};
use super::super::liveness::{Beat, Liveness};
use super::super::outbox::Outbox;
use super::{LegacyMessage, attach, start_message, text};
use crate::auth::Grant;
use crate::registry::RegistryEvent;
use crate::session::SessionHandle;
use crate::session::kin::Kin;
use crate::session::lane::Follower;
use crate::state::AppState;

mod choose;

use choose::{Action, Before, choose};

/// `/ws/terminal/all`.
pub async fn all(socket: WebSocket, state: AppState, _guard: ClientGuard, grant: Grant) {
    let (sink, mut stream) = socket.split();
    let (out, writer) = Outbox::open(sink, state.registry.config());
    // Subscribed before the listing: a session created in between is in
    // both, and skipped the second time.
    let mut changes = state.registry.changes();
    let _ = out
        .send(text(
            "terminal_connected",
            "all",
            LegacyMessage {
                message: "Connected to all terminal sessions",
            },
        ))
        .await;
    let mut streams = Streams {
        state: &state,
        out: &out,
        grant: &grant,
        by_id: HashMap::new(),
        leaving: VecDeque::new(),
    };
    for handle in streams.readable() {
        streams.listed(handle);
    }
    let mut liveness = Liveness::new(state.registry.config());
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) if let Some((code, reason)) = super::super::refusal(&msg, state.registry.config().ws_max_message_bytes) => {
                    out.close(code, reason).await;
                    break;
                }
                Some(Ok(msg)) => liveness.saw(&msg),
                _ => break,
            },
            _ = liveness.tick() => if liveness.beat(&out).await == Beat::Gone {
                break;
            },
            () = state.shutdown.cancelled() => {
                super::super::tell_shutdown(&out, &mut stream).await;
                break;
            }
            change = changes.recv() => match change {
                Ok(RegistryEvent::Created(handle)) => streams.created(handle),
                Ok(RegistryEvent::Deleted(id)) => streams.deleted(&id),
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "/ws/terminal/all missed session changes: resynchronizing");
                    streams.resync();
                }
                Err(RecvError::Closed) => break,
            },
        }
        if out.is_closed() {
            break;
        }
    }
    let leaving = streams.leaving.into_iter().map(|l| l.streamed.task);
    for task in streams.by_id.into_values().map(|s| s.task).chain(leaving) {
        task.abort();
    }
    drop(out);
    writer.finish().await;
}

/// Waits until `old`, the forwarder of an earlier session (or copy) under
/// an id, is gone, for at most `wait` (then stops it, and waits until it
/// is gone): what it sends all comes before what the next one sends.
/// Dropped before (the next one stopped), it stops `old`.
fn after(old: Follower, wait: Duration) -> impl Future<Output = ()> + Send + 'static {
    let stop = StopOnDrop(old.abort_handle());
    async move {
        let mut gone = std::pin::pin!(old.gone());
        if tokio::time::timeout(wait, gone.as_mut()).await.is_err() {
            tracing::debug!("/ws/terminal/all: an earlier forwarder of a session's id did not end in time: stopped");
            stop.0.abort();
            gone.await;
        }
    }
}

/// Stops a forwarder when dropped (no-op once it is gone).
struct StopOnDrop(futures_util::future::AbortHandle);

impl Drop for StopOnDrop {
    fn drop(&mut self) {
        self.0.abort();
    }
}

/// The position just past `handle`'s output so far.
fn end_of(handle: &SessionHandle) -> LogPosition {
    LogPosition {
        epoch: handle.epoch(),
        offset: handle.output_offset(),
    }
}

/// How many forwarders of deleted (or let go) sessions a socket lets end
/// by themselves at most; past it, the oldest still running is stopped.
const MAX_LEAVING: usize = 32;

/// How many left sessions a socket keeps known at most (those whose
/// forwarder ended included), for a copy taken up again; past it, the
/// oldest whose forwarder ended is forgotten first.
const MAX_LEFT: usize = 2 * MAX_LEAVING;

/// What one socket streams.
struct Streams<'a> {
    state: &'a AppState,
    out: &'a Outbox,
    grant: &'a Grant,
    /// The sessions streamed, by id; an entry leaves when its session is
    /// deleted or let go (or found gone at a resync), or when another
    /// incarnation or copy of its id replaces it.
    by_id: HashMap<SessionId, Streamed>,
    /// Sessions deleted or let go (or found gone at a resync), oldest
    /// first, at most one per id: their forwarders send what they still
    /// hold (and a deleted session's `terminal_end`) and end by themselves
    /// (a session's log closes once it is gone). At each push, forwarders
    /// left longer than the pong timeout, and the oldest still running
    /// past [`MAX_LEAVING`], are stopped, and the oldest entries past
    /// [`MAX_LEFT`] forgotten. A new session (or copy) under an id takes
    /// its entry and starts after its forwarder is gone; the rest are
    /// stopped with the socket.
    leaving: VecDeque<Left>,
}

/// One streamed session.
struct Streamed {
    /// The incarnation's epoch.
    epoch: Epoch,
    /// The copy's info channel, which tells it apart from any other under
    /// the same id, with the epoch ([`Kin::of`]); its last value is the
    /// copy's last info.
    info: watch::Receiver<SessionInfo>,
    /// What the client got of the session, shared by the forwarders of its
    /// copies in turn.
    progress: Arc<Progress>,
    task: Follower,
}

/// A session deleted or let go, and when.
struct Left {
    id: SessionId,
    at: Instant,
    streamed: Streamed,
}

impl Streams<'_> {
    /// Every session (this node's, then the cluster's others) this socket
    /// may read.
    fn readable(&self) -> Vec<SessionHandle> {
        let mut handles = self.state.registry.all_handles();
        handles.retain(|h| self.grant.can_read(h.project().as_str()));
        handles
    }

    /// How what the socket streamed last under `handle`'s id stands to it.
    fn before(&self, handle: &SessionHandle) -> Option<Before> {
        if let Some(s) = self.by_id.get(handle.id()) {
            return Some(Before::Streaming(Kin::of(handle, &s.info, s.epoch)));
        }
        let left = self.leaving.iter().find(|l| l.id == *handle.id())?;
        Some(Before::Left(Kin::of(handle, &left.streamed.info, left.streamed.epoch)))
    }

    /// Starts forwarding `handle`'s session. What the socket streamed
    /// under its id before goes first. Another session (`take_over`
    /// false): stopped at once if still streamed, let end if left (see
    /// [`after`]); the new one sends its `terminal_start` and its output
    /// from `since` (`None`: all the output held). Another copy of the same
    /// session (`take_over`): let end, then the new one goes on where the
    /// client got ([`Next`]).
    fn start(&mut self, handle: SessionHandle, since: Option<LogPosition>, take_over: bool) {
        let id = handle.id().clone();
        let old = match self.by_id.remove(&id) {
            Some(old) => {
                if !take_over {
                    old.task.abort();
                }
                Some(old)
            }
            None => {
                let at = self.leaving.iter().position(|l| l.id == id);
                at.and_then(|at| self.leaving.remove(at)).map(|l| l.streamed)
            }
        };
        let max_replay = self.state.registry.config().max_replay_bytes;
        let (epoch, info) = (handle.epoch(), handle.watch_info());
        let (progress, task) = match old {
            Some(old) if take_over => {
                let progress = old.progress;
                let (told, gone) = (old.info, after(old.task, self.out.reply_wait()));
                let (p, h) = (progress.clone(), handle.clone());
                let next = async move {
                    gone.await;
                    let next = Next::after(&p, &told.borrow(), &h.info());
                    let preamble = match next {
                        Next::Nothing => return None,
                        Next::Continue => Vec::new(),
                        Next::Announce => {
                            p.reopen();
                            vec![start_message(&h.info())]
                        }
                    };
                    // Not past the new copy's end (a copy behind the
                    // old one): the forwarder would refuse the position.
                    let since = p.resume_at(h.epoch()).map(|at| LogPosition {
                        offset: at.offset.min(h.output_offset()),
                        ..at
                    });
                    Some(attach(h, since, max_replay, preamble, None, Some(p)))
                };
                (progress, forward::spawn_after(&handle, self.out.clone(), next))
            }
            old => {
                let progress = Arc::new(Progress::new(since.map(|s| s.offset)));
                let preamble = vec![start_message(&handle.info())];
                let attach = attach(
                    handle.clone(),
                    since,
                    max_replay,
                    preamble,
                    None,
                    Some(progress.clone()),
                );
                let task = match old {
                    Some(old) => {
                        let gone = after(old.task, self.out.reply_wait());
                        let next = futures_util::FutureExt::map(gone, move |()| Some(attach));
                        forward::spawn_after(&handle, self.out.clone(), next)
                    }
                    None => forward::spawn(attach, self.out.clone()).0,
                };
                (progress, task)
            }
        };
        self.by_id.insert(
            id,
            Streamed {
                epoch,
                info,
                progress,
                task,
            },
        );
    }

    /// A session was created (or another node's session appeared here),
    /// or is listed (at a resync): acted on only if it is the registry's
    /// copy of its id now (see [`choose()`]).
    fn created(&mut self, handle: SessionHandle) {
        if !self.grant.can_read(handle.project().as_str()) {
            return;
        }
        let current = self.state.registry.get(handle.id()).map(|h| h.kin(&handle));
        match choose(current, self.before(&handle)) {
            Action::Skip => {}
            Action::Start => self.start(handle, None, false),
            Action::TakeOver => self.start(handle, None, true),
        }
    }

    /// A session was deleted (or this node let go of its copy of another
    /// node's session).
    fn deleted(&mut self, id: &SessionId) {
        let Entry::Occupied(e) = self.by_id.entry(id.clone()) else {
            return;
        };
        // The event of an older incarnation (or copy), sent after this one
        // was created: this one stays.
        let streamed = e.get();
        if self
            .state
            .registry
            .get(id)
            .is_some_and(|h| Kin::of(&h, &streamed.info, streamed.epoch) == Kin::Same)
        {
            return;
        }
        let s = e.remove();
        self.leave(id.clone(), s);
    }

    /// Lets `streamed`'s forwarder, a deleted (or let go) session's, end by
    /// itself; stops those left too long, and the oldest still running past
    /// [`MAX_LEAVING`]; forgets the oldest past [`MAX_LEFT`].
    fn leave(&mut self, id: SessionId, streamed: Streamed) {
        let now = Instant::now();
        let too_old = self.out.reply_wait();
        let mut running = 0;
        for l in self.leaving.iter_mut().rev() {
            if l.streamed.task.is_gone() {
                continue;
            }
            running += 1;
            if now.duration_since(l.at) >= too_old {
                tracing::debug!(session = %l.id, "/ws/terminal/all: a deleted session's forwarder left too long: stopped");
                l.streamed.task.abort();
            } else if running >= MAX_LEAVING {
                tracing::debug!(session = %l.id, "/ws/terminal/all: too many deleted sessions' forwarders: the oldest stopped");
                l.streamed.task.abort();
            }
        }
        while self.leaving.len() >= MAX_LEFT {
            let oldest_ended = self.leaving.iter_mut().position(|l| l.streamed.task.is_gone());
            if let Some(l) = self.leaving.remove(oldest_ended.unwrap_or(0)) {
                l.streamed.task.abort();
            }
        }
        self.leaving.push_back(Left { id, at: now, streamed });
    }

    /// After changes were missed: leaves what is gone, and takes every
    /// session there is as created (what it streams already is skipped; a
    /// new one, or a new incarnation or copy of an id, is started).
    fn resync(&mut self) {
        let live = self.readable();
        let ids: HashSet<&SessionId> = live.iter().map(SessionHandle::id).collect();
        let gone: Vec<SessionId> = self.by_id.keys().filter(|id| !ids.contains(id)).cloned().collect();
        for id in gone {
            if let Some(s) = self.by_id.remove(&id) {
                self.leave(id, s);
            }
        }
        for handle in live {
            self.created(handle);
        }
    }

    /// A session listed at connect: its start, and its live output from
    /// now on; only the registry's copy of its id (the listing, local then
    /// remote, can hold an id twice for a moment).
    fn listed(&mut self, handle: SessionHandle) {
        let current = self.state.registry.get(handle.id()).map(|h| h.kin(&handle));
        if self.by_id.contains_key(handle.id()) || choose(current, None) != Action::Start {
            return;
        }
        let since = end_of(&handle);
        self.start(handle, Some(since), false);
    }
}
