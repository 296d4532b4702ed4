//! `/ws/terminal/all`: the start and output of every session the socket's
//! credential may read, on one socket, for dashboards.
//!
//! The socket's task keeps one forwarder per session it streams, by id,
//! with the incarnation it streams (the session's info channel: a session
//! deleted and created again under its id, or a new copy of another node's
//! session, is another). It follows the registry's changes:
//! - `Created`: acted on only if the registry holds that very incarnation
//!   now (after a lag the channel resumes at events older than the
//!   resync's listing: an incarnation since deleted must not replace the
//!   current one). A session it does not stream yet gets its
//!   `terminal_start` and all its output; one whose id it streams for
//!   another incarnation replaces that one's forwarder (a new session:
//!   start and all output; a new copy of the same one, of the same epoch:
//!   its output from the old copy's end on, after a second start only if
//!   the old copy had ended). The incarnation it streams already (created
//!   between the subscription and the first listing) is skipped.
//! - `Deleted`: the id's entry is forgotten, unless the registry holds the
//!   very incarnation it streams (the event was of an older one, sent
//!   after the newer was created).
//! - a lag (more than `session_changes_queue` changes while the task was
//!   busy): which changes it missed is unknown, so it resynchronizes with
//!   the registry: what it streams that is gone is forgotten, what is
//!   another incarnation now is replaced, and what it does not stream yet
//!   is started, as if created.
//!
//! A forwarder of a deleted session ends by itself, after what it still
//! holds and the session's `terminal_end` (a session deleted right after
//! its exit, say by a create past `max_sessions`): a forgotten entry's
//! forwarder is not stopped but left to end (`Streams::leaving`). A new
//! session under its id starts only once it has ended (at most the pong
//! timeout, then it is stopped, its end lost): nothing of the old session
//! comes after the new one's `terminal_start`. The leaving are bounded
//! (a slow client must not hold every deleted session's forwarder): one
//! leaving longer than the pong timeout, or the oldest past
//! [`MAX_LEAVING`], is stopped, and the rest of its session's output and
//! its `terminal_end` are lost. One replaced by another incarnation (or
//! copy) of its id is stopped at once (the old one's end may then be
//! lost); the new one starts once it is gone.

use std::collections::hash_map::Entry;
use std::collections::{HashMap, HashSet, VecDeque};
use std::time::{Duration, Instant};

use axum::extract::ws::WebSocket;
use futures_util::StreamExt;
use termstream_proto::ws::LogPosition;
use termstream_proto::{Epoch, SessionId, SessionInfo};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;

use super::super::ClientGuard;
use super::super::forward;
use super::super::liveness::{Beat, Liveness};
use super::super::outbox::Outbox;
use super::{LegacyMessage, attach, start_message, text};
use crate::auth::Grant;
use crate::registry::RegistryEvent;
use crate::session::SessionHandle;
use crate::session::lane::Follower;
use crate::state::AppState;

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
    let leaving = streams.leaving.into_iter().map(|(_, _, task)| task);
    for task in streams.by_id.into_values().map(|s| s.task).chain(leaving) {
        task.abort();
    }
    drop(out);
    writer.finish().await;
}

/// Waits until `old`, the forwarder of an earlier session under an id,
/// is gone, for at most `wait` (then stops it, and waits until it is
/// gone): what it sends all comes before what the next one sends. Dropped
/// before (the next one stopped), it stops `old`.
fn after(old: Follower, wait: Duration) -> impl Future<Output = ()> + Send + 'static {
    let stop = StopOnDrop(old.abort_handle());
    async move {
        let mut gone = std::pin::pin!(old.gone());
        if tokio::time::timeout(wait, gone.as_mut()).await.is_err() {
            tracing::debug!("/ws/terminal/all: a deleted session's forwarder did not end in time: stopped");
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

/// How many forwarders of deleted sessions a socket lets end by
/// themselves at most; past it, the oldest is stopped.
const MAX_LEAVING: usize = 32;

/// What one socket streams.
struct Streams<'a> {
    state: &'a AppState,
    out: &'a Outbox,
    grant: &'a Grant,
    /// The sessions streamed, by id; an entry leaves when its session is
    /// deleted (or found gone at a resync), or when another incarnation
    /// of its id replaces it.
    by_id: HashMap<SessionId, Streamed>,
    /// Forwarders of sessions deleted (or found gone at a resync), oldest
    /// first, with their ids and when they were left, to send what they
    /// still hold and the `terminal_end`, and to end by themselves (a
    /// session's log closes once it is deleted). At each push those gone
    /// are dropped, and those left longer than the pong timeout, and the
    /// oldest past [`MAX_LEAVING`], stopped; a new session under an id
    /// takes its entry and starts after it; the rest are stopped with the
    /// socket.
    leaving: VecDeque<(SessionId, Instant, Follower)>,
}

/// One streamed session.
struct Streamed {
    /// The incarnation's epoch.
    epoch: Epoch,
    /// The incarnation's info channel, which tells it apart from any other
    /// under the same id (a new copy of another node's session has the
    /// same epoch but its own channel).
    info: watch::Receiver<SessionInfo>,
    task: Follower,
}

impl Streams<'_> {
    /// Every session (this node's, then the cluster's others) this socket
    /// may read.
    fn readable(&self) -> Vec<SessionHandle> {
        let mut handles = self.state.registry.all_handles();
        handles.retain(|h| self.grant.can_read(h.project().as_str()));
        handles
    }

    /// Starts forwarding `handle`'s session from `since` (`None`: all the
    /// output still held), after its `terminal_start` when `announce`. A
    /// forwarder of another incarnation under its id is stopped; one of a
    /// deleted session under its id is let end first (see [`after`]); the
    /// new one starts once the old one is gone.
    fn start(&mut self, handle: SessionHandle, since: Option<LogPosition>, announce: bool) {
        let preamble = if announce {
            vec![start_message(&handle.info())]
        } else {
            Vec::new()
        };
        let (id, epoch, info) = (handle.id().clone(), handle.epoch(), handle.watch_info());
        let replaced = self.by_id.remove(&id).map(|old| {
            old.task.abort();
            old.task
        });
        let leaving = self.leaving.iter().position(|(i, ..)| *i == id);
        let old = replaced.or_else(|| leaving.and_then(|at| self.leaving.remove(at)).map(|(.., task)| task));
        let attach = attach(handle, since, self.state, preamble, None);
        let task = match old {
            Some(old) => forward::spawn_after(attach, self.out.clone(), after(old, self.out.reply_wait())),
            None => forward::spawn(attach, self.out.clone()).0,
        };
        self.by_id.insert(id, Streamed { epoch, info, task });
    }

    /// A session was created (or another node's session appeared here),
    /// or is listed (at connect, or at a resync): acted on only if it is
    /// the registry's incarnation of its id now (see [`choose`]).
    fn created(&mut self, handle: SessionHandle) {
        if !self.grant.can_read(handle.project().as_str()) {
            return;
        }
        let current = self.state.registry.get(handle.id()).map(|h| kin(&h, &handle));
        let streamed = self.by_id.get(handle.id()).map(|s| Streaming {
            kin: if handle.is_incarnation(&s.info) {
                Kin::Same
            } else if s.epoch == handle.epoch() {
                Kin::Copy
            } else {
                Kin::Other
            },
            running: s.info.borrow().status.is_running(),
            end: s.info.borrow().output_offset,
        });
        match choose(current, streamed) {
            Action::Skip => {}
            Action::Start => self.start(handle, None, true),
            Action::Resume { from, announce } => {
                let since = LogPosition {
                    epoch: handle.epoch(),
                    offset: from,
                };
                self.start(handle, Some(since), announce);
            }
        }
    }

    /// A session was deleted (or this node let go of its copy of another
    /// node's session).
    fn deleted(&mut self, id: &SessionId) {
        let Entry::Occupied(e) = self.by_id.entry(id.clone()) else {
            return;
        };
        // The event of an older incarnation, sent after this one was
        // created: this one stays.
        if self
            .state
            .registry
            .get(id)
            .is_some_and(|h| h.is_incarnation(&e.get().info))
        {
            return;
        }
        let s = e.remove();
        self.leave(id.clone(), s.task);
    }

    /// Lets `task`, a deleted session's forwarder, end by itself; stops
    /// those left too long, and the oldest past [`MAX_LEAVING`].
    fn leave(&mut self, id: SessionId, task: Follower) {
        let now = Instant::now();
        let too_old = self.out.reply_wait();
        self.leaving.retain_mut(|(id, since, t)| {
            if t.is_gone() {
                return false;
            }
            let keep = now.duration_since(*since) < too_old;
            if !keep {
                tracing::debug!(session = %id, "/ws/terminal/all: a deleted session's forwarder left too long: stopped");
                t.abort();
            }
            keep
        });
        while self.leaving.len() >= MAX_LEAVING
            && let Some((id, _, t)) = self.leaving.pop_front()
        {
            tracing::debug!(session = %id, "/ws/terminal/all: too many deleted sessions' forwarders: the oldest stopped");
            t.abort();
        }
        self.leaving.push_back((id, now, task));
    }

    /// After changes were missed: stops and forgets what is gone, and
    /// takes every session there is as created (what it streams already
    /// is skipped; a new one, or a new incarnation of an id, is started).
    fn resync(&mut self) {
        let live = self.readable();
        let ids: HashSet<&SessionId> = live.iter().map(SessionHandle::id).collect();
        let gone: Vec<SessionId> = self.by_id.keys().filter(|id| !ids.contains(id)).cloned().collect();
        for id in gone {
            if let Some(s) = self.by_id.remove(&id) {
                self.leave(id, s.task);
            }
        }
        for handle in live {
            self.created(handle);
        }
    }

    /// A session listed at connect: its start, and its live output from
    /// now on; only the registry's incarnation of its id (the listing,
    /// local then remote, can hold an id twice for a moment).
    fn listed(&mut self, handle: SessionHandle) {
        let current = self.state.registry.get(handle.id()).map(|h| kin(&h, &handle));
        if self.by_id.contains_key(handle.id()) || choose(current, None) != Action::Start {
            return;
        }
        let since = end_of(&handle);
        self.start(handle, Some(since), true);
    }
}

/// How a handle stands to another of the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Kin {
    /// The very same incarnation (and copy).
    Same,
    /// Another copy of the same incarnation (another node's session, of
    /// the same epoch, whose stand-in here was replaced).
    Copy,
    /// Another incarnation: the id deleted and created again.
    Other,
}

/// How `b` stands to `a`.
fn kin(a: &SessionHandle, b: &SessionHandle) -> Kin {
    if a.same_incarnation(b) {
        Kin::Same
    } else if a.epoch() == b.epoch() {
        Kin::Copy
    } else {
        Kin::Other
    }
}

/// What a socket streams under an id, as it stands to a handle coming in.
#[derive(Clone, Copy, Debug)]
struct Streaming {
    kin: Kin,
    /// Whether the streamed copy still ran (else the client had its
    /// `terminal_end`).
    running: bool,
    /// The end of the streamed copy's output.
    end: u64,
}

/// What to do with a handle coming in (created, or listed).
#[derive(Debug, PartialEq, Eq)]
enum Action {
    /// Nothing: not the registry's incarnation of its id now (an event
    /// older than the listing a resync took, or an id listed twice), or
    /// streamed already.
    Skip,
    /// Its `terminal_start` and all its output (replacing what is streamed
    /// under its id).
    Start,
    /// A new copy of the session streamed: its output from `from`, the end
    /// of the old copy's; after a `terminal_start` when the old copy had
    /// ended (its `terminal_end` was sent).
    Resume { from: u64, announce: bool },
}

/// Decides on a handle coming in: `current`, how the registry's handle of
/// its id stands to it (`None`: the registry has none); `streamed`, what
/// the socket streams under the id. Only the registry's current
/// incarnation is acted on: after a lag the channel resumes at the oldest
/// event it still holds, older than the listing the resync took, and a
/// `Created` of an incarnation since deleted would replace the current one.
fn choose(current: Option<Kin>, streamed: Option<Streaming>) -> Action {
    if current != Some(Kin::Same) {
        return Action::Skip;
    }
    match streamed {
        Some(Streaming { kin: Kin::Same, .. }) => Action::Skip,
        Some(Streaming {
            kin: Kin::Copy,
            running,
            end,
        }) => Action::Resume {
            from: end,
            announce: !running,
        },
        _ => Action::Start,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn streaming(kin: Kin) -> Option<Streaming> {
        Some(Streaming {
            kin,
            running: true,
            end: 7,
        })
    }

    /// After a resync that started X2, the channel's tail
    /// `[Created(X1), Deleted(X), Created(X2)]`: nothing is started again.
    #[test]
    fn stale_creates_after_a_resync_are_skipped() {
        // Created(X1): the registry holds X2, another incarnation than X1;
        // the socket streams X2, also another than X1.
        assert_eq!(choose(Some(Kin::Other), streaming(Kin::Other)), Action::Skip);
        // The same-epoch variant: an old copy of a cluster session.
        assert_eq!(choose(Some(Kin::Copy), streaming(Kin::Copy)), Action::Skip);
        // Created(X2) (after Deleted(X) kept X2's entry): streamed already.
        assert_eq!(choose(Some(Kin::Same), streaming(Kin::Same)), Action::Skip);
        // A deleted session's Created, the id unused now.
        assert_eq!(choose(None, None), Action::Skip);
    }

    #[test]
    fn the_current_incarnation_is_started_or_resumed() {
        assert_eq!(choose(Some(Kin::Same), None), Action::Start);
        assert_eq!(choose(Some(Kin::Same), streaming(Kin::Other)), Action::Start);
        assert_eq!(
            choose(Some(Kin::Same), streaming(Kin::Copy)),
            Action::Resume {
                from: 7,
                announce: false
            }
        );
        // The old copy had ended: the client had its terminal_end.
        let ended = Some(Streaming {
            kin: Kin::Copy,
            running: false,
            end: 9,
        });
        assert_eq!(
            choose(Some(Kin::Same), ended),
            Action::Resume {
                from: 9,
                announce: true
            }
        );
    }
}
