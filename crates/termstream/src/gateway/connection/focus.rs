//! A `/ws` connection's focus messages: `focus`, `blur` and
//! `sync_request`, and the first touch of a project (`connection_status`).

use axum::extract::ws::Message;
use termstream_proto::{ErrorCode, ProjectId, SessionId};

use super::Connection;
use crate::focus::FocusError;
use crate::gateway::focus_watch::{MAX_PROJECTS, TooManyProjects, conflict_message};

impl Connection {
    /// Touches `project` (see [`crate::gateway::focus_watch::FocusWatch::touch`]): sends
    /// `connection_status` the first time.
    pub(super) async fn touch(&mut self, project: &ProjectId, session: Option<&SessionId>) {
        match self.focus.touch(project, session).await {
            Ok(Some(msg)) => {
                let _ = self.out.reply(msg).await;
            }
            Ok(None) => {}
            Err(TooManyProjects) => {
                self.error(
                    ErrorCode::RateLimited,
                    format!("a socket may follow the focus of at most {MAX_PROJECTS} projects"),
                    session.cloned(),
                )
                .await
            }
        }
    }

    /// `focus` or `blur`: the change reaches this socket, as every socket
    /// of the project, as `focus_update`; a request that changes nothing is
    /// answered with `sync_complete`.
    pub(super) async fn focus_request(
        &mut self,
        session: SessionId,
        asked: Option<ProjectId>,
        focused: bool,
        expected: Option<u64>,
    ) {
        let focus = self.state.focus.clone();
        let project = match focus.resolve(&self.grant, &session, asked.as_ref()).await {
            Ok(p) => p,
            Err(e) => return self.focus_error(e, session).await,
        };
        // A read-only socket is refused, but follows the project's updates.
        self.touch(&project, Some(&session)).await;
        let answer = self
            .focus
            .request(&self.grant, &session, asked.as_ref(), focused, expected)
            .await;
        match answer {
            Ok(msgs) => {
                for msg in msgs {
                    let _ = self.out.reply(msg).await;
                }
            }
            Err(e) => self.focus_error(e, session).await,
        }
    }

    async fn focus_error(&self, e: FocusError, session: SessionId) {
        if let Some(msg) = conflict_message(&e, Some(&session), self.state.focus.max_focused()) {
            let _ = self
                .out
                .reply(Message::Text(serde_json::to_string(&msg).unwrap_or_default().into()))
                .await;
            return;
        }
        if let FocusError::Store(err) = &e {
            tracing::warn!(error = %err, "a focus change failed");
        }
        self.error(e.code(), e.to_string(), Some(session)).await;
    }

    /// `sync_request`: the project named, or `sessionId`'s.
    pub(super) async fn sync_request(&mut self, project: Option<ProjectId>, session: Option<SessionId>) {
        let project = match (project, &session) {
            (Some(p), _) => {
                if !self.grant.can_read(p.as_str()) {
                    return self
                        .error(
                            ErrorCode::NotFound,
                            format!("no project {p:?} is visible to this socket"),
                            session,
                        )
                        .await;
                }
                p
            }
            (None, Some(s)) => match self.state.focus.resolve(&self.grant, s, None).await {
                Ok(p) => p,
                Err(e) => return self.focus_error(e, s.clone()).await,
            },
            (None, None) => {
                return self
                    .error(
                        ErrorCode::InvalidMessage,
                        "sync_request needs a projectId or a sessionId".into(),
                        None,
                    )
                    .await;
            }
        };
        self.touch(&project, session.as_ref()).await;
        for msg in self.focus.sync(&project, session.as_ref()).await {
            let _ = self.out.reply(msg).await;
        }
    }
}
