//! What wakes a `/ws` connection's task, and acting on it: the optional
//! waits of its `select!` (a pending attach's deadline, the registry's
//! creations), and one [`Step`] for each thing that woke it. A step runs
//! boxed (see `Connection::serve`).

use std::ops::ControlFlow;
use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::StreamExt;
use futures_util::stream::SplitStream;
use termstream_proto::{ErrorCode, SessionId};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::Instant;

use super::Connection;
use crate::events::PublishedEvent;
use crate::focus::FocusEvent;
use crate::gateway::forward::Released;
use crate::gateway::liveness::Beat;
use crate::registry::RegistryEvent;

/// Sleeps until `deadline`, or forever when there is none. The timer is
/// made (boxed) only while an attach waits: an idle socket's task does not
/// carry one.
pub(super) async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => Box::pin(tokio::time::sleep_until(at)).await,
        None => std::future::pending().await,
    }
}

/// The next creation in the registry, or never when nothing is pending.
pub(super) async fn next_change(
    created: &mut Option<broadcast::Receiver<RegistryEvent>>,
) -> Result<RegistryEvent, RecvError> {
    match created {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}

/// What woke the connection.
pub(super) enum Step {
    Inbound(Option<Result<Message, axum::Error>>),
    /// A session was created (or the registry's news lagged).
    Created(Result<RegistryEvent, RecvError>),
    /// The earliest pending attach's wait is over.
    AttachWaited,
    /// An attachment's session was deleted.
    Released(Released),
    Event(Result<Arc<PublishedEvent>, RecvError>),
    Focus(Result<Arc<FocusEvent>, RecvError>),
    Ping,
}

/// The connection's limits, from the config.
pub(super) struct Limits {
    pub(super) max_message: usize,
}

impl Connection {
    /// Acts on one step; `Break` ends the connection.
    pub(super) async fn step(
        &mut self,
        step: Step,
        stream: &mut SplitStream<WebSocket>,
        limits: &Limits,
    ) -> ControlFlow<()> {
        match step {
            Step::Inbound(Some(msg))
                if let Some((code, reason)) = crate::gateway::refusal(&msg, limits.max_message) =>
            {
                self.out.close(code, reason).await;
                if msg.is_ok() {
                    drain(stream).await;
                }
                return ControlFlow::Break(());
            }
            Step::Inbound(msg) => match msg {
                Some(Ok(Message::Text(text))) => self.on_text(&text).await,
                Some(Ok(Message::Binary(_))) => {
                    self.error(
                        ErrorCode::InvalidMessage,
                        "binary frames are not accepted from clients; send JSON text".into(),
                        None,
                    )
                    .await;
                }
                Some(Ok(pong @ Message::Pong(_))) => self.liveness.saw(&pong),
                // Pings are answered by the socket itself; a close is answered
                // when the stream ends (keep polling until then).
                Some(Ok(Message::Ping(_) | Message::Close(_))) => {}
                Some(Err(_)) | None => return ControlFlow::Break(()),
            },
            Step::Created(change) => match change {
                Ok(RegistryEvent::Created(h)) => {
                    if self.pending.contains_key(h.id()) && self.grant.can_read(h.project().as_str()) {
                        self.attach_pending(h).await;
                    }
                }
                Ok(RegistryEvent::Deleted(_)) => {}
                // Creations were missed: look each pending id up.
                Err(RecvError::Lagged(_)) => {
                    let ids: Vec<SessionId> = self.pending.keys().cloned().collect();
                    for id in ids {
                        if let Some(h) = self.readable(&id) {
                            self.attach_pending(h).await;
                        }
                    }
                }
                Err(RecvError::Closed) => self.created = None,
            },
            Step::AttachWaited => {
                let now = Instant::now();
                let over: Vec<SessionId> = self
                    .pending
                    .iter()
                    .filter(|(_, p)| p.deadline <= now)
                    .map(|(id, _)| id.clone())
                    .collect();
                for id in over {
                    self.pending.remove(&id);
                    self.attach_refused(&id).await;
                }
                self.forget_creations();
            }
            Step::Released(released) => self.released(released).await,
            Step::Event(ev) => match ev {
                Ok(ev) if self.channels.contains(ev.channel) && self.grant.sees_event(ev.project.as_deref()) => {
                    let _ = self.out.reply(Message::Text(ev.json.clone().into())).await;
                }
                Ok(_) => {}
                Err(RecvError::Lagged(n)) => {
                    self.error(
                        ErrorCode::RateLimited,
                        format!("{n} events were skipped: this socket fell behind"),
                        None,
                    )
                    .await;
                }
                Err(RecvError::Closed) => self.channels.clear(),
            },
            Step::Focus(change) => {
                for msg in self.focus.on_change(change).await {
                    let _ = self.out.reply(msg).await;
                }
            }
            Step::Ping => {
                if self.liveness.beat(&self.out).await == Beat::Gone {
                    return ControlFlow::Break(());
                }
            }
        }
        ControlFlow::Continue(())
    }
}

/// Reads and drops what the client still sends after we closed, until it
/// closes too (at most two seconds).
async fn drain(stream: &mut SplitStream<WebSocket>) {
    let _ = tokio::time::timeout(Duration::from_secs(2), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}
