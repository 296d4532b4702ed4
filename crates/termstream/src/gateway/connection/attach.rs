//! How a connection attaches sessions: the per-socket limit, the wait for
//! a session that does not exist yet, the start of each attached
//! session's forwarder, and the end of an attachment (detached, replaced,
//! or its session deleted or let go): [`Connection::end_attachment`].

use std::collections::hash_map::Entry;
use std::time::Duration;

use termstream_proto::ErrorCode;
use termstream_proto::SessionId;
use termstream_proto::ws::{ATTACH_REQUEST, LogPosition, OutputMode, ServerMessage, StreamMode};
use tokio::time::Instant;

use super::{Attached, Connection, Pending};
use crate::gateway::forward::{self, Attach, Release, Released};
use crate::session::{SessionHandle, ViewerGuard};

impl Attached {
    /// Ends the attachment: its forwarder is aborted, and gone (with its
    /// gauge) before this returns, so nothing of it is sent after what the
    /// caller sends next. Gives back its place in the viewer count, which
    /// the caller drops when it is done with it.
    async fn end(self) -> ViewerGuard {
        self.task.abort();
        self.task.gone().await;
        self.viewer
    }
}

impl Connection {
    pub(super) async fn request_attach(
        &mut self,
        id: SessionId,
        since: Option<LogPosition>,
        mode: OutputMode,
        stream: StreamMode,
    ) {
        let max = self.state.registry.config().max_attachments_per_socket;
        let holds_slot = self.attached.contains_key(&id) || self.pending.contains_key(&id);
        if !holds_slot && self.attached.len() + self.pending.len() >= max {
            return self
                .refuse_attach(
                    ErrorCode::RateLimited,
                    format!("a socket may attach at most {max} sessions"),
                    id,
                )
                .await;
        }
        // Subscribed before the registry is looked at: a session created in
        // between is seen in the news.
        if self.created.is_none() {
            self.created = Some(self.state.registry.changes());
        }
        if let Some(h) = self.readable(&id) {
            self.pending.remove(&id);
            self.forget_creations();
            return self.attach(h, since, mode, stream).await;
        }
        // Missing, or of a project this socket may not read: both wait the
        // whole attach wait (unless a readable one appears), so the answer's
        // time does not tell them apart. A new attach of the id replaces
        // the earlier one, pending or live (a deleted session's attachment
        // whose release is not taken yet): that one ends unannounced, as a
        // live one replaced by a live attach does, and its release, if
        // any, names an older generation and is dropped.
        drop(self.end_attachment(&id).await);
        let wait = Duration::from_millis(self.state.registry.config().attach_wait_ms);
        let deadline = Instant::now() + wait;
        self.pending.insert(
            id,
            Pending {
                deadline,
                since,
                mode,
                stream,
            },
        );
    }

    /// Refuses an attach whose wait ended without its session: the
    /// `session_not_found` says it answers `session.attach`, so a client
    /// tells it from the same refusal of input, a resize or a focus naming
    /// the id, whatever order it sent them in.
    pub(super) async fn attach_refused(&self, id: &SessionId) {
        self.refuse_attach(
            ErrorCode::SessionNotFound,
            format!("no session has id \"{id}\""),
            id.clone(),
        )
        .await;
    }

    /// Answers an attach of `id` with an `error` that says it answers
    /// `session.attach` (`request`) and names the id: a client tells which
    /// attach was refused.
    async fn refuse_attach(&self, code: ErrorCode, message: String, id: SessionId) {
        crate::observe::metrics::error(code);
        self.control(ServerMessage::Error {
            code,
            message,
            session_id: Some(id),
            request: Some(ATTACH_REQUEST.into()),
            seq: None,
        })
        .await;
    }

    /// Attaches `handle`'s session, which an attach waited for.
    pub(super) async fn attach_pending(&mut self, handle: SessionHandle) {
        if let Some(p) = self.pending.remove(handle.id()) {
            self.forget_creations();
            self.attach(handle, p.since, p.mode, p.stream).await;
        }
    }

    /// Stops following the registry's creations once nothing waits.
    pub(super) fn forget_creations(&mut self) {
        if self.pending.is_empty() {
            self.created = None;
        }
    }

    pub(super) async fn attach(
        &mut self,
        handle: SessionHandle,
        since: Option<LogPosition>,
        mode: OutputMode,
        stream: StreamMode,
    ) {
        let id = handle.id().clone();
        // Attaching touches the session's project: its focus state first.
        self.touch(handle.project(), Some(&id)).await;
        // Gone before the new one starts: no frame of the old stream comes
        // after the new stream's first. Attaching again (another stream
        // mode, a resume) keeps the socket the session's answerer.
        let answered = self.end_attachment(&id).await.is_some_and(|old| old.is_answerer());
        let viewer = handle.add_viewer();
        if answered {
            viewer.typed();
        }
        self.generation += 1;
        let generation = self.generation;
        let attach = Attach {
            handle,
            since,
            mode,
            dialect: self.dialect,
            max_replay: self.state.registry.config().max_replay_bytes,
            preamble: Vec::new(),
            focus: (stream == StreamMode::Focus).then(|| forward::FocusFollow {
                focus: self.state.focus.clone(),
                interval: Duration::from_millis(self.state.registry.config().unfocused_interval_ms.max(1)),
            }),
            release: Some(Release::new(self.releases.clone(), generation)),
            progress: None,
        };
        let (task, started) = forward::spawn(attach, self.out.clone());
        self.attached.insert(
            id,
            Attached {
                task,
                started,
                viewer,
                generation,
            },
        );
    }

    /// A forwarder found its session deleted (running, ended, or while its
    /// attach started), or let go by this node: the attachment ends, giving
    /// its slot and viewer back, and the client is told why. A release of
    /// an earlier attachment of the id (replaced or detached since)
    /// changes nothing.
    pub(super) async fn released(&mut self, released: Released) {
        let Released { id, generation, reason } = released;
        let Entry::Occupied(entry) = self.attached.entry(id) else {
            return;
        };
        if entry.get().generation != generation {
            return;
        }
        let (id, a) = entry.remove_entry();
        // It sends nothing after its release; aborted, it is gone at its
        // next wait at the latest.
        let _viewer = a.end().await;
        self.control(ServerMessage::Detached {
            session_id: id,
            reason: Some(reason),
        })
        .await;
    }

    /// Ends `id`'s attachment, if the socket has one: removed, and its
    /// forwarder gone ([`Attached::end`]); its place in the viewer count
    /// is given back to the caller.
    pub(super) async fn end_attachment(&mut self, id: &SessionId) -> Option<ViewerGuard> {
        Some(self.attached.remove(id)?.end().await)
    }
}
