//! One `/ws` connection: the task that reads the client's messages and
//! manages its attachments.
//!
//! The socket is split: a writer task ([`Writer`](super::outbox::Writer)) owns the
//! sending half and drains the socket's [`Outbox`]; this task owns the
//! receiving half. Each attached session gets a forwarder task
//! ([`forward::run`](super::forward::run)) that writes into the same outbox, so sessions never
//! wait for each other beyond the socket's shared byte budget. Closing the
//! socket aborts every forwarder (detaching everything) and ends the writer.
//! A detach (or a second attach of the same session) waits for the aborted
//! forwarder to be gone before it answers, so no frame of the old stream
//! follows the answer.
//!
//! An attach to an id that does not exist yet (or that this socket may not
//! read: the two are answered alike, after the same wait) waits in
//! `pending` until a readable session with that id is created or
//! `attach_wait_ms` passes. A detach or a new attach of the id replaces
//! it; pending and attached sessions share the socket's attachment slots.
//!
//! An attachment ends when the client detaches, the socket closes, or the
//! session is deleted (not when it merely ends): its forwarder then tells
//! this task ([`Released`]), which gives the slot and the viewer back and
//! answers `session.detached`, unless the id was attached again meanwhile
//! (each attachment has a generation; see `forward/release.rs`).
//!
//! Replies and events wait for room in the outbox at most the pong timeout:
//! a client that makes none for that long is not reading, and its
//! connection ends instead of hanging on one reply forever.

mod attach;
mod focus;
mod input;
mod step;

use std::collections::{HashMap, HashSet};
use std::sync::Arc;

use axum::extract::ws::WebSocket;
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use termstream_proto::ws::{
    CHANNELS, ClientMessage, DetachReason, LogPosition, OutputMode, ParseError, ServerMessage, StreamMode,
};
use termstream_proto::{ErrorCode, SessionId};
use tokio::sync::broadcast;
use tokio::time::Instant;

use super::ClientGuard;
use super::focus_watch::FocusWatch;
use super::forward::{Released, Started};
use super::liveness::Liveness;
use super::outbox::Outbox;
use super::render::Dialect;
use crate::auth::Grant;
use crate::clock::now_ms;
use crate::limits::TokenBucket;
use crate::registry::RegistryEvent;
use crate::session::lane::Follower;
use crate::session::{SessionHandle, ViewerGuard};
use crate::state::AppState;

/// An attached session: its forwarder, when it started, and its place in
/// the viewer count.
struct Attached {
    task: Follower,
    started: Started,
    viewer: ViewerGuard,
    /// Which attach of the id this is: a release from the forwarder of an
    /// earlier one is not this one's.
    generation: u64,
}

/// An attach waiting for its session to appear.
struct Pending {
    /// When the attach is answered `session_not_found`.
    deadline: Instant,
    since: Option<LogPosition>,
    mode: OutputMode,
    stream: StreamMode,
}

struct Connection {
    state: AppState,
    client_id: Arc<str>,
    dialect: Dialect,
    /// Whether the dialect was chosen at connect (not switched by messages).
    dialect_fixed: bool,
    out: Outbox,
    /// Attached sessions; at most `max_attachments_per_socket` together
    /// with `pending`.
    attached: HashMap<SessionId, Attached>,
    /// The generation of the last attachment made.
    generation: u64,
    /// Given (cloned) to every forwarder, to tell this task its session
    /// was deleted; each sends at most once.
    releases: flume::Sender<Released>,
    /// The forwarders' releases, taken by this task only. `flume`: no
    /// buffer up front (its queue grows only while releases wait). Kept as
    /// one stream, so the waker it registers when empty stays registered
    /// across the loop's turns: a turn that finds it empty again takes the
    /// channel's lock once and allocates nothing (a fresh `recv_async` per
    /// turn allocated a waker and locked twice).
    released: flume::r#async::RecvStream<'static, Released>,
    /// Attaches waiting for their session, one per id; a detach removes one.
    pending: HashMap<SessionId, Pending>,
    /// The registry's creations, subscribed while an attach is pending
    /// (before the registry is looked at, so none is missed).
    created: Option<broadcast::Receiver<RegistryEvent>>,
    /// Event channels subscribed to (a subset of [`CHANNELS`]).
    channels: HashSet<&'static str>,
    liveness: Liveness,
    /// What this socket's credential allows: which sessions it may see,
    /// attach, and write to, and which events it receives.
    grant: Grant,
    /// Input bytes this socket may still send now.
    input_budget: TokenBucket,
    /// This socket has sent an answer to a terminal query: it has a
    /// terminal that answers, so its typing may make it the answerer.
    answers_queries: bool,
    /// The projects this socket touched, and the focus versions it saw.
    focus: FocusWatch,
}

/// Serves one `/ws` connection until it closes.
///
/// A plain function that sets the connection up and returns the `async`
/// block that serves it, not an `async fn`: an `async fn`'s future keeps
/// its arguments twice (as passed, and moved into its body), and every
/// idle socket's task would carry a dead copy of the socket and its
/// state.
pub fn run(
    socket: WebSocket,
    state: AppState,
    client_id: Arc<str>,
    dialect: Option<Dialect>,
    guard: ClientGuard,
    grant: Grant,
) -> impl Future<Output = ()> + Send + 'static {
    let (sink, stream) = socket.split();
    // Read from the config in place: a copy would live as long as the
    // socket (in this task's state), and every idle socket would carry it.
    let cfg = state.registry.config();
    let (out, writer) = Outbox::open(sink, cfg);
    let liveness = Liveness::new(cfg);
    let input_budget = TokenBucket::new(cfg.ws_input_bytes_per_sec, cfg.ws_input_burst_bytes);
    let limits = Limits {
        max_message: cfg.ws_max_message_bytes,
    };
    let (releases, released) = flume::unbounded();
    let mut conn = Connection {
        client_id,
        dialect: dialect.unwrap_or(Dialect::Dotted),
        dialect_fixed: dialect.is_some(),
        out,
        attached: HashMap::new(),
        generation: 0,
        releases,
        released: released.into_stream(),
        pending: HashMap::new(),
        created: None,
        channels: HashSet::new(),
        liveness,
        grant,
        input_budget,
        answers_queries: false,
        focus: FocusWatch::new(state.focus.clone()),
        state,
    };
    async move {
        let _guard = guard;
        conn.serve(stream, limits).await;
        // The outbox's last sender goes with the connection: the writer
        // sends what is queued and ends.
        drop(conn);
        writer.finish().await;
    }
}

use self::step::{Limits, Step, next_change, sleep_opt};

impl Connection {
    /// Greets the client, then serves its messages and everything else
    /// that wakes the socket until it closes; then aborts every
    /// attachment.
    async fn serve(&mut self, mut stream: SplitStream<WebSocket>, limits: Limits) {
        Box::pin(self.control(ServerMessage::Connected {
            message: format!("termstream {}", env!("CARGO_PKG_VERSION")),
            client_count: self.state.clients.load(std::sync::atomic::Ordering::Relaxed),
            client_id: self.client_id.to_string(),
        }))
        .await;
        let mut events = self.state.events.subscribe();
        // Waiting keeps little state; acting on what arrived runs boxed, so an
        // idle connection does not carry the state of handling a message.
        loop {
            let deadline = self.pending.values().map(|p| p.deadline).min();
            let step = tokio::select! {
                msg = stream.next() => Step::Inbound(msg),
                change = next_change(&mut self.created) => Step::Created(change),
                // Never closed: this task keeps a sender.
                Some(released) = self.released.next() => Step::Released(released),
                () = sleep_opt(deadline), if deadline.is_some() => Step::AttachWaited,
                ev = events.recv(), if !self.channels.is_empty() => Step::Event(ev),
                change = self.focus.recv() => Step::Focus(change),
                _ = self.liveness.tick() => Step::Ping,
                () = self.state.shutdown.cancelled() => {
                    // Boxed, as every step: its state is not the idle task's.
                    Box::pin(super::tell_shutdown(&self.out, &mut stream)).await;
                    break;
                }
            };
            if Box::pin(self.step(step, &mut stream, &limits)).await.is_break() || self.out.is_closed() {
                break;
            }
        }
        for (_, a) in self.attached.drain() {
            a.task.abort();
        }
    }
}

impl Connection {
    async fn control(&self, msg: ServerMessage) {
        if let Some(m) = self.dialect.render_control(&msg) {
            // A failure marks the outbox closed, which ends the connection.
            let _ = self.out.reply(m).await;
        }
    }

    async fn error(&self, code: ErrorCode, message: String, session_id: Option<SessionId>) {
        crate::observe::metrics::error(code);
        self.control(ServerMessage::Error {
            code,
            message,
            session_id,
            request: None,
            seq: None,
        })
        .await;
    }

    /// Parses a text message and acts on it; every failure is answered with
    /// an error message and the connection carries on.
    async fn on_text(&mut self, text: &str) {
        let parsed = ClientMessage::parse(text);
        // A flat name switches the socket to flat answers, even when the
        // rest of the message is wrong.
        let kind = match &parsed {
            Ok((kind, _)) => Some(*kind),
            Err(e) => e.kind(),
        };
        if kind.is_some_and(|k| k.starts_with("terminal_")) && !self.dialect_fixed {
            self.dialect = Dialect::Flat;
        }
        match parsed {
            Ok((_, msg)) => self.on_message(msg).await,
            Err(e) => {
                let code = match e {
                    ParseError::UnknownType(_) => ErrorCode::UnknownType,
                    _ => ErrorCode::InvalidMessage,
                };
                self.error(code, e.to_string(), None).await;
            }
        }
    }

    async fn on_message(&mut self, msg: ClientMessage) {
        match msg {
            ClientMessage::Attach {
                session_id,
                since,
                output,
                stream,
            } => self.request_attach(session_id, since, output, stream).await,
            ClientMessage::Detach { session_id } => match self.end_attachment(&session_id).await {
                // Gone before the answer: no output of it follows `detached`.
                Some(_viewer) => {
                    self.control(ServerMessage::Detached {
                        session_id,
                        reason: Some(DetachReason::Detach),
                    })
                    .await;
                }
                // An attach still waiting is cancelled: the session will
                // not be attached when it appears.
                None if self.pending.remove(&session_id).is_some() => {
                    self.forget_creations();
                    self.control(ServerMessage::Detached {
                        session_id,
                        reason: Some(DetachReason::Detach),
                    })
                    .await;
                }
                None => {
                    self.error(
                        ErrorCode::NotAttached,
                        format!("this socket is not attached to {session_id:?}"),
                        Some(session_id),
                    )
                    .await;
                }
            },
            ClientMessage::Input {
                session_id,
                data,
                seq,
                response,
            } => self.input(session_id, data, seq, response).await,
            ClientMessage::Resize { session_id, cols, rows } => self.resize(session_id, cols, rows).await,
            ClientMessage::Ping => self.control(ServerMessage::Pong).await,
            ClientMessage::Heartbeat { session_id } => {
                self.control(ServerMessage::Heartbeat {
                    session_id,
                    timestamp: now_ms(),
                })
                .await
            }
            ClientMessage::Focus {
                session_id,
                project_id,
                expected_version,
            } => self.focus_request(session_id, project_id, true, expected_version).await,
            ClientMessage::Blur {
                session_id,
                project_id,
                expected_version,
            } => {
                self.focus_request(session_id, project_id, false, expected_version)
                    .await
            }
            ClientMessage::SyncRequest { project_id, session_id } => self.sync_request(project_id, session_id).await,
            ClientMessage::Subscribe { channels } => self.subscribe(channels, true).await,
            ClientMessage::Unsubscribe { channels } => self.subscribe(channels, false).await,
        }
    }

    /// The session `id` if this socket may see it (else `session_not_found`,
    /// as for an id that does not exist), for reading.
    fn readable(&self, id: &SessionId) -> Option<SessionHandle> {
        self.state
            .registry
            .get(id)
            .filter(|h| self.grant.can_read(h.project().as_str()))
    }

    async fn subscribe(&mut self, names: Vec<String>, on: bool) {
        let mut chosen = Vec::new();
        for name in &names {
            if name == "*" {
                chosen.extend(CHANNELS);
            } else if let Some(c) = CHANNELS.iter().find(|c| **c == name) {
                chosen.push(*c);
            } else {
                return self
                    .error(
                        ErrorCode::InvalidMessage,
                        format!("unknown channel {name:?}; channels are {CHANNELS:?} or \"*\""),
                        None,
                    )
                    .await;
            }
        }
        for c in chosen {
            if on {
                self.channels.insert(c);
            } else {
                self.channels.remove(c);
            }
        }
        let mut channels: Vec<String> = self.channels.iter().map(|c| c.to_string()).collect();
        channels.sort();
        self.control(ServerMessage::Subscribed { channels }).await;
    }
}
