//! A socket's view of focus: the projects it touched, and the last version
//! of each that it was told.
//!
//! A socket touches a project by attaching one of its sessions or by
//! sending `focus`, `blur` or `sync_request` for it; the first touch is
//! answered with `connection_status` (the state updates follow from). From
//! then on every change of the project reaches the socket as
//! `focus_update`, in version order: an update whose version is not the
//! next one (the socket fell behind the change broadcast) is replaced by a
//! `sync_complete` with the current state, and older ones are dropped.
//!
//! Architecture invariant: the socket subscribes to the change broadcast
//! *before* it reads a project's state for `connection_status`, so every
//! change after that state reaches it (or is announced by a lag).

use std::collections::HashMap;
use std::sync::Arc;

use axum::extract::ws::Message;
use termstream_proto::focus::{ConnectionState, FocusMessage};
use termstream_proto::{ErrorCode, ProjectId, SessionId};
use tokio::sync::broadcast::{self, error::RecvError};

use crate::auth::Grant;
use crate::clock::now_ms;
use crate::focus::store::FocusState;
use crate::focus::{Focus, FocusError, FocusEvent};

/// The most projects one socket may touch.
pub const MAX_PROJECTS: usize = 64;

/// What a socket knows of focus.
#[derive(Debug)]
pub struct FocusWatch {
    focus: Arc<Focus>,
    /// Every focus change; subscribed at the first touch.
    changes: Option<broadcast::Receiver<Arc<FocusEvent>>>,
    /// The projects touched, and the last version the socket was told.
    seen: HashMap<ProjectId, u64>,
}

/// Why a project could not be touched.
#[derive(Debug)]
pub struct TooManyProjects;

/// A project's state as a message.
pub fn state_message(
    kind: StateKind,
    project: &ProjectId,
    session: Option<&SessionId>,
    state: &FocusState,
    max_focused: usize,
) -> Message {
    let (project_id, session_id, focused_sessions, version, timestamp) = (
        project.clone(),
        session.cloned(),
        state.focused.clone(),
        state.version,
        now_ms(),
    );
    let msg = match kind {
        StateKind::Connected => FocusMessage::ConnectionStatus {
            status: ConnectionState::Connected,
            project_id,
            session_id,
            focused_sessions,
            version,
            max_focused,
            timestamp,
        },
        StateKind::Sync => FocusMessage::SyncComplete {
            project_id,
            session_id,
            focused_sessions,
            version,
            max_focused,
            timestamp,
        },
    };
    Message::Text(serde_json::to_string(&msg).unwrap_or_default().into())
}

/// Which state message to build.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum StateKind {
    /// `connection_status`: the first message about a project.
    Connected,
    /// `sync_complete`: the answer to `sync_request`, or after a lag.
    Sync,
}

impl FocusWatch {
    pub fn new(focus: Arc<Focus>) -> FocusWatch {
        FocusWatch {
            focus,
            changes: None,
            seen: HashMap::new(),
        }
    }

    pub fn focus(&self) -> &Arc<Focus> {
        &self.focus
    }

    /// Touches `project`: the first time, answers `connection_status`
    /// (naming `session` when given) and follows the project from then on.
    pub async fn touch(
        &mut self,
        project: &ProjectId,
        session: Option<&SessionId>,
    ) -> Result<Option<Message>, TooManyProjects> {
        if self.seen.contains_key(project) {
            return Ok(None);
        }
        if self.seen.len() >= MAX_PROJECTS {
            return Err(TooManyProjects);
        }
        if self.changes.is_none() {
            self.changes = Some(self.focus.subscribe());
        }
        let state = self.read(project).await;
        self.seen.insert(project.clone(), state.version);
        Ok(Some(state_message(
            StateKind::Connected,
            project,
            session,
            &state,
            self.focus.max_focused(),
        )))
    }

    /// Applies a `focus` or `blur` of `session` asked by a socket with
    /// `grant`. A change reaches this socket as it reaches every socket of
    /// the project (as `focus_update`); a request that changed nothing is
    /// answered here: the messages to send (its `sync_complete`).
    pub async fn request(
        &mut self,
        grant: &Grant,
        session: &SessionId,
        asked: Option<&ProjectId>,
        focused: bool,
        expected: Option<u64>,
    ) -> Result<Vec<Message>, FocusError> {
        let focus = self.focus.clone();
        let applied = focus.request(grant, session, asked, focused, expected).await?;
        if applied.changed {
            return Ok(Vec::new());
        }
        Ok(self.sync(&applied.project, Some(session)).await)
    }

    /// The state of `project` now as `sync_complete`, after the updates
    /// already on their way to this socket (so it skips none): the
    /// messages to send, in order.
    ///
    /// The state is read *before* the queue is drained: every change up to
    /// the version read was broadcast before it became readable, so it is
    /// in the queue and goes out as an update. Read after the drain, a
    /// change landing in between made the answer skip a version. A change
    /// newer than the read one, found in the queue, is read again (a few
    /// times at most).
    pub async fn sync(&mut self, project: &ProjectId, session: Option<&SessionId>) -> Vec<Message> {
        let mut out = Vec::new();
        let mut state = self.read(project).await;
        for _ in 0..8 {
            while let Some(change) = self.pending() {
                out.extend(Box::pin(self.on_change(change)).await);
            }
            match self.seen.get(project) {
                Some(&seen) if seen > state.version => state = self.read(project).await,
                _ => break,
            }
        }
        if let Some(v) = self.seen.get_mut(project) {
            *v = (*v).max(state.version);
        }
        out.push(state_message(
            StateKind::Sync,
            project,
            session,
            &state,
            self.focus.max_focused(),
        ));
        out
    }

    /// A change already queued for this socket, without waiting.
    fn pending(&mut self) -> Option<Result<Arc<FocusEvent>, RecvError>> {
        match self.changes.as_mut()?.try_recv() {
            Ok(ev) => Some(Ok(ev)),
            Err(broadcast::error::TryRecvError::Lagged(n)) => Some(Err(RecvError::Lagged(n))),
            Err(_) => None,
        }
    }

    /// The state of `project` now as `sync_complete`; a touched project's
    /// socket counts as told that version.
    async fn sync_now(&mut self, project: &ProjectId, session: Option<&SessionId>) -> Message {
        let state = self.read(project).await;
        if let Some(v) = self.seen.get_mut(project) {
            *v = (*v).max(state.version);
        }
        state_message(StateKind::Sync, project, session, &state, self.focus.max_focused())
    }

    async fn read(&self, project: &ProjectId) -> FocusState {
        match self.focus.get(project).await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(%project, error = %e, "cannot read a focus state");
                FocusState::default()
            }
        }
    }

    /// The next change of any project (pending until a project is touched).
    pub async fn recv(&mut self) -> Result<Arc<FocusEvent>, RecvError> {
        match &mut self.changes {
            Some(rx) => rx.recv().await,
            None => std::future::pending().await,
        }
    }

    /// What the socket should send for what [`FocusWatch::recv`] answered:
    /// the update, a `sync_complete` in place of missed ones, or nothing.
    pub async fn on_change(&mut self, ev: Result<Arc<FocusEvent>, RecvError>) -> Vec<Message> {
        match ev {
            Ok(ev) => {
                let Some(&last) = self.seen.get(&ev.project) else {
                    return Vec::new();
                };
                if ev.state.version <= last {
                    Vec::new()
                } else if ev.state.version == last + 1 {
                    self.seen.insert(ev.project.clone(), ev.state.version);
                    vec![Message::Text(ev.json.clone())]
                } else {
                    vec![self.sync_now(&ev.project.clone(), None).await]
                }
            }
            Err(RecvError::Lagged(_)) => {
                let projects: Vec<ProjectId> = self.seen.keys().cloned().collect();
                let mut out = Vec::new();
                for p in projects {
                    let before = self.seen.get(&p).copied();
                    let msg = self.sync_now(&p, None).await;
                    if self.seen.get(&p).copied() != before {
                        out.push(msg);
                    }
                }
                out
            }
            Err(RecvError::Closed) => {
                self.changes = None;
                Vec::new()
            }
        }
    }
}

/// The `version_conflict` error of a stale focus request: the project's
/// current state, so the client can render it and retry.
pub fn conflict_message(err: &FocusError, session: Option<&SessionId>, max_focused: usize) -> Option<FocusMessage> {
    let FocusError::Conflict { project, current, .. } = err else {
        return None;
    };
    Some(FocusMessage::Conflict {
        code: ErrorCode::VersionConflict,
        message: err.to_string(),
        project_id: project.clone(),
        session_id: session.cloned(),
        focused_sessions: current.focused.clone(),
        version: current.version,
        max_focused,
        timestamp: now_ms(),
    })
}
