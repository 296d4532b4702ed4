//! Input and resizes from a `/ws` socket, and their refusals: each
//! refusal (`session_not_found`, `read_only`, `rate_limited`, `busy`,
//! `session_not_running`, `cluster_unavailable`, ...) names the request it
//! answers ([`Answering`]): `"request":"terminal.input"` with the input's
//! `seq`, or `"request":"terminal.resize"`, so a client knows exactly
//! which input was not applied (the flat dialect keeps its older shape,
//! without them: see `render.rs`).

use bytes::Bytes;
use termstream_proto::ws::{INPUT_REQUEST, RESIZE_REQUEST, ServerMessage};
use termstream_proto::{ErrorCode, SessionId};

use super::Connection;
use crate::auth::ProjectAccess as Access;
use crate::session::SessionHandle;

/// The request an error answers, named in it: which input (by its
/// `seq`) or resize was refused.
#[derive(Debug, Clone, Copy)]
pub(super) struct Answering {
    request: &'static str,
    seq: Option<u64>,
}

impl Answering {
    fn input(seq: Option<u64>) -> Answering {
        Answering {
            request: INPUT_REQUEST,
            seq,
        }
    }

    fn resize() -> Answering {
        Answering {
            request: RESIZE_REQUEST,
            seq: None,
        }
    }
}

impl Connection {
    /// `terminal.input`: applied to the session, or refused with an error
    /// that names it.
    pub(super) async fn input(&mut self, session_id: SessionId, data: String, seq: Option<u64>, response: bool) {
        let answering = Answering::input(seq);
        let Some(h) = self.writable(&session_id, answering).await else {
            return;
        };
        // One viewer's terminal answers each query (see
        // `ViewerGuard::answers`); the others' answers are dropped
        // without a word, as is one from a socket not attached.
        // Input that is dropped changes nothing, the answerer included.
        if !self.input_budget.take(data.len()) {
            let message = format!(
                "input over {} bytes/s was dropped; send it again later",
                self.state.registry.config().ws_input_bytes_per_sec
            );
            return self
                .refuse(ErrorCode::RateLimited, message, session_id, answering)
                .await;
        }
        // Only a socket whose terminal answers queries becomes the
        // answerer by typing: a script or dashboard that types and
        // has no terminal would silence every page's answers.
        let viewer = self.attached.get(&session_id).map(|a| &a.viewer);
        if response {
            self.answers_queries = true;
            if !viewer.is_some_and(|v| v.answers()) {
                return;
            }
        } else if let Some(v) = viewer
            && self.answers_queries
            && !data.is_empty()
        {
            v.typed();
        }
        if !response {
            self.state.focus.touch(h.project(), &session_id);
        }
        // After this socket's attach of the session has fixed its start.
        if let Some(a) = self.attached.get_mut(&session_id) {
            a.started.wait(crate::gateway::INPUT_WAIT).await;
        }
        let client_seq = seq.map(|s| (self.client_id.clone(), s));
        if let Err(e) = h
            .input(Bytes::from(data), false, client_seq, crate::gateway::INPUT_WAIT)
            .await
        {
            self.refuse(e.code(), e.to_string(), session_id, answering).await;
        }
    }

    /// `terminal.resize`: applied to the session, or refused with an
    /// error that names it.
    pub(super) async fn resize(&mut self, session_id: SessionId, cols: u16, rows: u16) {
        let answering = Answering::resize();
        let Some(h) = self.writable(&session_id, answering).await else {
            return;
        };
        if cols == 0 || rows == 0 {
            return self
                .refuse(
                    ErrorCode::InvalidMessage,
                    "cols and rows must be at least 1".into(),
                    session_id,
                    answering,
                )
                .await;
        }
        if let Err(e) = h.resize(cols, rows).await {
            self.refuse(e.code(), e.to_string(), session_id, answering).await;
        }
    }

    /// The session `id` if this socket may write to it; answers the error
    /// (`session_not_found` or `read_only`) otherwise.
    async fn writable(&self, id: &SessionId, answering: Answering) -> Option<SessionHandle> {
        let Some(h) = self.readable(id) else {
            let message = format!("no session has id \"{id}\"");
            self.refuse(ErrorCode::SessionNotFound, message, id.clone(), answering)
                .await;
            return None;
        };
        if self.grant.access(h.project().as_str()) != Some(Access::Write) {
            crate::observe::audit::input_refused(&self.grant, id.as_str(), h.project().as_str());
            self.refuse(
                ErrorCode::ReadOnly,
                "this socket may only watch: input and resize are refused".into(),
                id.clone(),
                answering,
            )
            .await;
            return None;
        }
        Some(h)
    }

    /// Answers the request `answering` names, of session `id`, with an
    /// error.
    async fn refuse(&self, code: ErrorCode, message: String, id: SessionId, answering: Answering) {
        crate::observe::metrics::error(code);
        self.control(ServerMessage::Error {
            code,
            message,
            session_id: Some(id),
            request: Some(answering.request.into()),
            seq: answering.seq,
        })
        .await;
    }
}
