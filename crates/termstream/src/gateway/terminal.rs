//! The per-terminal socket `/ws?sessionId=ID&projectId=P`: one socket per
//! terminal, as the focus-sync design's `XTermViewV2` opens them.
//!
//! The URL names the session, so no message attaches anything:
//! 1. registration waits for the session if it does not exist yet, with
//!    that design's retry schedule ([`REGISTRATION_RETRIES_MS`]), then
//!    closes with 1008 `Session registration failed after retries`;
//! 2. `connection_status` (the project's focus state, with `sessionId`);
//! 3. the screen, as one `stream` message (a reset, then the snapshot), or
//!    for a command session the output held in memory;
//! 4. output as `stream` messages, and the project's `focus_update`s.
//!
//! The client sends `input`, `resize`, `focus`, `blur`, `sync_request` and
//! `heartbeat`, with or without `sessionId` (the socket's own when absent);
//! mistakes are answered with `{"type":"error","sessionId","data"}` and the
//! socket carries on.

use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, close_code};
use bytes::Bytes;
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use termstream_proto::terminal::{TerminalClientMessage, TerminalServerMessage, WindowSize};
use termstream_proto::ws::OutputMode;
use termstream_proto::{ProjectId, SessionId};

use super::focus_watch::{FocusWatch, conflict_message};
use super::forward::{self, Attach, Started};
use super::liveness::{Beat, Liveness};
use super::outbox::Outbox;
use super::render::Dialect;
use super::{ClientGuard, INPUT_WAIT, wait_for_session};
use crate::auth::{Grant, ProjectAccess as Access};
use crate::clock::now_ms;
use crate::focus::FocusError;
use crate::limits::TokenBucket;
use crate::session::SessionHandle;
use crate::state::AppState;

/// How long registration waits before each new look for the session, as
/// in the design: given up 7.71 s after the socket opened. A session
/// created meanwhile is found at once.
pub const REGISTRATION_RETRIES_MS: [u64; 5] = [100, 500, 1000, 2000, 4110];

/// The close reason when the session never appeared.
pub const REGISTRATION_FAILED: &str = "Session registration failed after retries";

/// One per-terminal socket.
struct Terminal {
    state: AppState,
    grant: Grant,
    handle: SessionHandle,
    id: SessionId,
    project: ProjectId,
    out: Outbox,
    focus: FocusWatch,
    input_budget: TokenBucket,
    /// When the forwarder is subscribed: input waits for it.
    started: Started,
}

/// The session `id`, readable by `grant`, looked for on the retry schedule.
async fn register(state: &AppState, grant: &Grant, id: &SessionId) -> Option<SessionHandle> {
    let readable = |h: SessionHandle| grant.can_read(h.project().as_str()).then_some(h);
    if let Some(h) = state.registry.get(id).and_then(readable) {
        return Some(h);
    }
    for delay in REGISTRATION_RETRIES_MS {
        // A session the grant may not read is waited past as a missing one.
        if let Some(h) = wait_for_session(&state.registry, id, Duration::from_millis(delay), grant).await {
            return Some(h);
        }
    }
    None
}

/// Serves one per-terminal socket until it closes.
pub async fn run(
    socket: WebSocket,
    state: AppState,
    id: SessionId,
    asked: Option<ProjectId>,
    _guard: ClientGuard,
    grant: Grant,
) {
    let (sink, mut stream) = socket.split();
    let shutdown = state.shutdown.clone();
    let cfg = state.registry.config().clone();
    let (out, writer) = Outbox::open(sink, &cfg);
    let Some(handle) = register(&state, &grant, &id).await else {
        out.close(close_code::POLICY, REGISTRATION_FAILED).await;
        drain(&mut stream).await;
        drop(out);
        return writer.finish().await;
    };
    let project = handle.project().clone();
    if let Some(asked) = asked.filter(|a| *a != project) {
        let e = FocusError::ProjectMismatch {
            session: id.clone(),
            actual: project,
            asked,
        };
        let _ = out.reply(error_message(&id, e.to_string())).await;
        out.close(close_code::POLICY, "projectId is not the session's project")
            .await;
        drain(&mut stream).await;
        drop(out);
        return writer.finish().await;
    }
    let mut t = Terminal {
        focus: FocusWatch::new(state.focus.clone()),
        input_budget: TokenBucket::new(cfg.ws_input_bytes_per_sec, cfg.ws_input_burst_bytes),
        started: Started::default(),
        grant,
        handle: handle.clone(),
        id: id.clone(),
        project: project.clone(),
        out,
        state,
    };
    // First message: the project's focus state.
    if let Ok(Some(status)) = t.focus.touch(&project, Some(&id)).await {
        let _ = t.out.reply(status).await;
    }
    let _viewer = handle.add_viewer();
    let attach = Attach {
        handle,
        since: None,
        mode: OutputMode::Json,
        dialect: Dialect::Terminal,
        max_replay: cfg.max_replay_bytes,
        preamble: Vec::new(),
        focus: None,
        release: None,
        progress: None,
    };
    let (forwarder, started) = forward::spawn(attach, t.out.clone());
    t.started = started;
    let mut liveness = Liveness::new(&cfg);
    let max_message = cfg.ws_max_message_bytes;
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(Ok(Message::Text(text))) if text.len() > max_message => {
                    t.out.close(close_code::SIZE, "message too large").await;
                    drain(&mut stream).await;
                    break;
                }
                Some(Ok(Message::Text(text))) => Box::pin(t.on_text(&text)).await,
                Some(Ok(Message::Binary(_))) => t.error("binary frames are not accepted; send JSON text".into()).await,
                Some(Ok(pong @ Message::Pong(_))) => liveness.saw(&pong),
                Some(Ok(_)) => {}
                Some(Err(_)) | None => break,
            },
            change = t.focus.recv() => {
                for msg in t.focus.on_change(change).await {
                    let _ = t.out.reply(msg).await;
                }
            }
            _ = liveness.tick() => {
                if liveness.beat(&t.out).await == Beat::Gone {
                    break;
                }
            }
            () = shutdown.cancelled() => {
                super::tell_shutdown(&t.out, &mut stream).await;
                break;
            }
        }
        if t.out.is_closed() {
            break;
        }
    }
    forwarder.abort();
    drop(t);
    writer.finish().await;
}

/// Reads and drops what the client still sends after we closed, until it
/// closes too (at most two seconds).
async fn drain(stream: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

fn error_message(id: &SessionId, data: String) -> Message {
    let msg = TerminalServerMessage::Error {
        session_id: id.clone(),
        data,
    };
    Message::Text(serde_json::to_string(&msg).unwrap_or_default().into())
}

impl Terminal {
    async fn error(&self, data: String) {
        let _ = self.out.reply(error_message(&self.id, data)).await;
    }

    /// A message's `sessionId` must be the socket's own, when given.
    async fn own(&self, given: Option<&SessionId>) -> bool {
        match given {
            Some(s) if *s != self.id => {
                self.error(format!("this socket is for session {:?}, not {s:?}", self.id))
                    .await;
                false
            }
            _ => true,
        }
    }

    async fn writable(&self) -> bool {
        if self.grant.access(self.project.as_str()) == Some(Access::Write) {
            return true;
        }
        self.error("this socket may only watch: input and resize are refused".into())
            .await;
        false
    }

    async fn on_text(&mut self, text: &str) {
        let value: serde_json::Value = match serde_json::from_str(text) {
            Ok(v) => v,
            Err(e) => return self.error(format!("malformed JSON: {e}")).await,
        };
        let Some(kind) = value.get("type").and_then(|t| t.as_str()).map(str::to_owned) else {
            return self.error("a message needs a string \"type\"".into()).await;
        };
        if !TerminalClientMessage::TYPES.contains(&kind.as_str()) {
            return self.error(format!("unknown message type {kind:?}")).await;
        }
        let msg: TerminalClientMessage = match serde_json::from_value(value) {
            Ok(m) => m,
            Err(e) => return self.error(format!("invalid {kind} message: {e}")).await,
        };
        self.on_message(msg).await;
    }

    async fn on_message(&mut self, msg: TerminalClientMessage) {
        match msg {
            TerminalClientMessage::Input { session_id, data } => {
                if !self.own(session_id.as_ref()).await || !self.writable().await {
                    return;
                }
                if !self.input_budget.take(data.len()) {
                    let limit = self.state.registry.config().ws_input_bytes_per_sec;
                    return self
                        .error(format!("input over {limit} bytes/s was dropped; send it again later"))
                        .await;
                }
                self.state.focus.touch(&self.project, &self.id);
                self.started.wait(INPUT_WAIT).await;
                if let Err(e) = self.handle.input(Bytes::from(data), false, None, INPUT_WAIT).await {
                    self.error(e.to_string()).await;
                }
            }
            TerminalClientMessage::Resize {
                session_id,
                data,
                cols,
                rows,
            } => {
                if !self.own(session_id.as_ref()).await || !self.writable().await {
                    return;
                }
                let size = data.or(match (cols, rows) {
                    (Some(cols), Some(rows)) => Some(WindowSize { cols, rows }),
                    _ => None,
                });
                match size {
                    Some(WindowSize { cols, rows }) if cols > 0 && rows > 0 => {
                        if let Err(e) = self.handle.resize(cols, rows).await {
                            self.error(e.to_string()).await;
                        }
                    }
                    _ => {
                        self.error("resize needs data: {cols, rows} (or cols and rows), each at least 1".into())
                            .await
                    }
                }
            }
            TerminalClientMessage::Focus {
                session_id,
                project_id,
                expected_version,
            } => self.focus_request(session_id, project_id, true, expected_version).await,
            TerminalClientMessage::Blur {
                session_id,
                project_id,
                expected_version,
            } => {
                self.focus_request(session_id, project_id, false, expected_version)
                    .await
            }
            TerminalClientMessage::SyncRequest { session_id, project_id } => {
                let project = match (project_id, session_id) {
                    (Some(p), _) => p,
                    (None, Some(s)) => match self.state.focus.resolve(&self.grant, &s, None).await {
                        Ok(p) => p,
                        Err(e) => return self.error(e.to_string()).await,
                    },
                    (None, None) => self.project.clone(),
                };
                if !self.grant.can_read(project.as_str()) {
                    return self
                        .error(format!("no project {project:?} is visible to this socket"))
                        .await;
                }
                let id = self.id.clone();
                if let Ok(Some(status)) = self.focus.touch(&project, Some(&id)).await {
                    let _ = self.out.reply(status).await;
                }
                for msg in self.focus.sync(&project, Some(&id)).await {
                    let _ = self.out.reply(msg).await;
                }
            }
            TerminalClientMessage::Heartbeat { session_id } => {
                if !self.own(session_id.as_ref()).await {
                    return;
                }
                let msg = TerminalServerMessage::Heartbeat {
                    session_id: self.id.clone(),
                    timestamp: now_ms(),
                };
                let _ = self
                    .out
                    .reply(Message::Text(serde_json::to_string(&msg).unwrap_or_default().into()))
                    .await;
            }
        }
    }

    /// `focus` or `blur` of this socket's session, or of another session
    /// of its project.
    async fn focus_request(
        &mut self,
        session: Option<SessionId>,
        asked: Option<ProjectId>,
        focused: bool,
        expected: Option<u64>,
    ) {
        let session = session.unwrap_or_else(|| self.id.clone());
        let asked = asked.unwrap_or_else(|| self.project.clone());
        let answer = self
            .focus
            .request(&self.grant, &session, Some(&asked), focused, expected)
            .await;
        match answer {
            Ok(msgs) => {
                for msg in msgs {
                    let _ = self.out.reply(msg).await;
                }
            }
            Err(e) => match conflict_message(&e, Some(&session), self.state.focus.max_focused()) {
                // The design's error shape, with the state beside it.
                Some(conflict) => {
                    let mut v = serde_json::to_value(&conflict).unwrap_or_default();
                    v["data"] = e.to_string().into();
                    let _ = self.out.reply(Message::Text(v.to_string().into())).await;
                }
                None => self.error(e.to_string()).await,
            },
        }
    }
}
