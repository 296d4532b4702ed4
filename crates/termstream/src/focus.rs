//! Focus: per project, the ordered set of focused sessions and its version,
//! owned by the server and broadcast to every client of the project.
//!
//! Clients only ask for changes ([`Focus::set`]); every change goes out as a
//! [`FocusEvent`] on one broadcast ([`Focus::subscribe`]), in version order
//! per project, and each socket forwards the events of the projects it
//! touched (`gateway::focus_watch`).
//!
//! The model:
//! - at most `max_focused` sessions are focused per project; focusing one
//!   more first unfocuses the least recently active (focused or typed into
//!   by a client), as its own change;
//! - a request that changes nothing bumps nothing;
//! - a deleted session leaves its project's set; an ended one stays;
//! - sets and versions live in a [`store::FocusStore`] (the data dir, here)
//!   and survive a restart.
//!
//! Architecture invariant: changes of one project are made one at a time
//! (under the project's lock, across the store's compare-and-set and the
//! broadcast: `focus/change.rs`), so the broadcast carries each project's versions in
//! increasing order with none missing.
//!
//! In a cluster ([`Focus::shared`]) the sets live in Redis
//! ([`redis::RedisStore`]) and every node's changes reach this node's
//! broadcast through [`relay::FocusRelay`], which keeps the same
//! invariant across nodes.

mod change;
mod deletions;
pub mod redis;
pub mod relay;
pub mod store;
#[cfg(test)]
pub(crate) mod tests;

use std::collections::HashMap;
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};

use axum::extract::ws::Utf8Bytes;
use termstream_proto::{ErrorCode, ProjectId, SessionId};
use tokio::sync::broadcast;

use crate::auth::{Grant, ProjectAccess as Access};
use crate::registry::Registry;
use store::{FocusState, FocusStore};

/// How many changes a socket may fall behind before it gets a
/// `sync_complete` instead of the updates it missed.
pub const CHANGE_QUEUE: usize = 256;

/// One change of a project's focus set, as every socket of the project
/// receives it.
#[derive(Debug)]
pub struct FocusEvent {
    pub project: ProjectId,
    /// The session that became focused or not; `None` for a state put
    /// back after the cluster's Redis restarted (sent as `sync_complete`).
    pub session: Option<SessionId>,
    pub focused: bool,
    /// The set and version after the change.
    pub state: FocusState,
    /// The `focus_update` message, rendered once for every socket.
    pub json: Utf8Bytes,
}

/// Why a focus request changed nothing.
#[derive(Debug, thiserror::Error)]
pub enum FocusError {
    /// The request's `expectedVersion` is not the project's version.
    #[error("expected version {expected}, but project {project} is at version {}", current.version)]
    Conflict {
        project: ProjectId,
        expected: u64,
        current: FocusState,
    },
    /// No session has that id, or the credential cannot read its project.
    #[error("no session has id {0:?}")]
    NotFound(SessionId),
    /// The request named another project than the session's.
    #[error("session {session:?} belongs to project {actual:?}, not {asked:?}")]
    ProjectMismatch {
        session: SessionId,
        actual: ProjectId,
        asked: ProjectId,
    },
    /// The credential may only watch the project.
    #[error("this credential may only watch project {0:?}: focus changes are refused")]
    ReadOnly(ProjectId),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] anyhow::Error),
}

impl FocusError {
    /// The code a client is answered with, over REST and WebSocket alike.
    pub fn code(&self) -> ErrorCode {
        match self {
            FocusError::Conflict { .. } => ErrorCode::VersionConflict,
            FocusError::NotFound(_) => ErrorCode::SessionNotFound,
            FocusError::ProjectMismatch { .. } => ErrorCode::ProjectMismatch,
            FocusError::ReadOnly(_) => ErrorCode::ReadOnly,
            FocusError::Store(e) if e.is::<redis::ClusterUnavailable>() => ErrorCode::ClusterUnavailable,
            FocusError::Store(_) => ErrorCode::Internal,
        }
    }
}

/// What a focus request did.
#[derive(Debug, Clone)]
pub struct Applied {
    pub project: ProjectId,
    /// The project's state after the request.
    pub state: FocusState,
    /// Whether the request changed the set (else it was answered with the
    /// state as it was).
    pub changed: bool,
}

/// The state of one project beside the store: what this node needs to
/// change it one request at a time.
#[derive(Debug, Default)]
struct Project {
    /// Held while a change is made and broadcast.
    changing: tokio::sync::Mutex<()>,
    /// The state of the last change broadcast from this node: what
    /// sockets are told, so that no answer runs ahead of the broadcast.
    /// On one node its lock is held across the broadcast, so the two move
    /// together (in a cluster the relay orders them, and this is not read).
    published: Mutex<Option<FocusState>>,
    /// When each focused session was last active (a tick of
    /// [`Focus::ticks`]): focused, or typed into. Only focused sessions
    /// are here.
    activity: Mutex<HashMap<SessionId, u64>>,
}

/// Every project's focus: the service REST handlers and sockets share.
#[derive(Debug)]
pub struct Focus {
    store: Arc<dyn FocusStore>,
    registry: Arc<Registry>,
    max_focused: usize,
    /// Projects that had a change on this node (bounded by the projects of
    /// sessions: a change needs an existing session).
    projects: Mutex<HashMap<ProjectId, Arc<Project>>>,
    /// Every change of every project; sockets filter by project.
    changes: broadcast::Sender<Arc<FocusEvent>>,
    /// Orders activity: each focus or input takes the next tick.
    ticks: AtomicU64,
    /// How many changes went to `changes`, counted after each is sent: a
    /// forwarder that sees it unmoved knows, with one load, that no change
    /// is queued for it (`gateway/forward/focused.rs`).
    sent: AtomicU64,
    /// In a cluster: the store is Redis, and changes reach the broadcast
    /// through the relay, in order, from every node.
    cluster: Option<Arc<relay::FocusRelay>>,
}

impl Focus {
    /// The focus service over `store`, for the sessions of `registry`.
    /// Call [`Focus::follow_deletions`] once to keep sets free of deleted
    /// sessions.
    pub fn new(store: Arc<dyn FocusStore>, registry: Arc<Registry>) -> Arc<Focus> {
        let max_focused = registry.config().max_focused.max(1);
        Arc::new(Focus {
            store,
            registry,
            max_focused,
            projects: Mutex::new(HashMap::new()),
            changes: broadcast::channel(CHANGE_QUEUE).0,
            // Above any seeded activity (a set's positions).
            ticks: AtomicU64::new(1 << 32),
            sent: AtomicU64::new(0),
            cluster: None,
        })
    }

    /// The focus service of one node of a cluster: sets in Redis, changes
    /// of every node delivered through `relay` (run [`relay::FocusRelay::run`]).
    pub fn shared(relay: Arc<relay::FocusRelay>, registry: Arc<Registry>) -> Arc<Focus> {
        let store: Arc<dyn FocusStore> = Arc::new(relay.store().clone());
        let mut focus = Arc::into_inner(Focus::new(store, registry)).expect("just made");
        focus.cluster = Some(relay);
        Arc::new(focus)
    }

    pub fn max_focused(&self) -> usize {
        self.max_focused
    }

    /// Every change from now on, of every project.
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<FocusEvent>> {
        self.changes.subscribe()
    }

    /// How many changes were sent to the subscribers so far. Counted after
    /// the send: once it moved, the change is in every receiver's queue.
    pub fn sent(&self) -> u64 {
        self.sent.load(std::sync::atomic::Ordering::Acquire)
    }

    /// Sends `event` to the subscribers and counts it (see [`Focus::sent`]).
    fn broadcast(&self, event: Arc<FocusEvent>) {
        let _ = self.changes.send(event);
        self.sent.fetch_add(1, std::sync::atomic::Ordering::Release);
    }

    /// The state of `project` now: the last one broadcast (so every
    /// change up to its version is on the broadcast already), or the
    /// store's for a project with no change since the start.
    pub async fn get(&self, project: &ProjectId) -> anyhow::Result<FocusState> {
        if let Some(relay) = &self.cluster {
            return relay.current(self, project).await;
        }
        if let Some(s) = self.published(project) {
            return Ok(s);
        }
        let stored = self.store.get(project).await?;
        // A first change may have begun while the store was read: its
        // state can be in the store before its event is on the broadcast.
        // It sets `published` before it writes the store, so a read that
        // saw nothing published before and finds it set now answers that.
        Ok(self.published(project).unwrap_or(stored))
    }

    /// The state of the last change this node broadcast for `project`
    /// (or, while its first change is being made, the state before it).
    fn published(&self, project: &ProjectId) -> Option<FocusState> {
        // Not under the map's lock: a project's is held across its broadcast.
        let p = self
            .projects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(project)
            .cloned()?;
        let published = p.published.lock().unwrap_or_else(|p| p.into_inner());
        published.clone()
    }

    /// Every project with a stored state.
    pub async fn all(&self) -> anyhow::Result<Vec<(ProjectId, FocusState)>> {
        self.store.all().await
    }

    fn project(&self, id: &ProjectId) -> Arc<Project> {
        let mut projects = self.projects.lock().unwrap_or_else(|p| p.into_inner());
        projects.entry(id.clone()).or_default().clone()
    }

    /// Marks `session` of `project` active (a client typed into it), which
    /// keeps it from being the next evicted. Cheap: no store, no broadcast.
    pub fn touch(&self, project: &ProjectId, session: &SessionId) {
        let Some(p) = self
            .projects
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get(project)
            .cloned()
        else {
            return;
        };
        let mut activity = p.activity.lock().unwrap_or_else(|p| p.into_inner());
        if let Some(t) = activity.get_mut(session) {
            *t = self.ticks.fetch_add(1, Ordering::Relaxed);
        }
    }

    /// The project of `session`, a session of this node or (in a cluster,
    /// from the directory) of any node; `None` when there is no such
    /// session.
    async fn project_of(&self, session: &SessionId) -> anyhow::Result<Option<ProjectId>> {
        Ok(self.registry.get(session).map(|h| h.project().clone()))
    }

    /// As [`Focus::project_of`], but in a cluster a session this node does
    /// not know yet (created on another node a moment ago, before the next
    /// directory read) is waited for up to `attach_wait_ms`, as attaches
    /// wait.
    async fn project_waiting(&self, session: &SessionId) -> anyhow::Result<Option<ProjectId>> {
        let mut changes = self.registry.changes();
        if let Some(p) = self.project_of(session).await? {
            return Ok(Some(p));
        }
        if self.cluster.is_none() {
            return Ok(None);
        }
        let wait = std::time::Duration::from_millis(self.registry.config().attach_wait_ms);
        let found = tokio::time::timeout(wait, async {
            loop {
                match changes.recv().await {
                    Ok(crate::registry::RegistryEvent::Created(h)) if h.id() == session => {
                        return Some(h.project().clone());
                    }
                    Ok(_) => {}
                    Err(broadcast::error::RecvError::Lagged(_)) => {
                        if let Some(h) = self.registry.get(session) {
                            return Some(h.project().clone());
                        }
                    }
                    Err(broadcast::error::RecvError::Closed) => return None,
                }
            }
        })
        .await;
        Ok(found.ok().flatten())
    }

    /// The project of `session` as `grant` may see it: `NotFound` when it
    /// does not exist or its project is not readable (the two look the
    /// same), `ProjectMismatch` when `asked` is given and is another.
    pub async fn resolve(
        &self,
        grant: &Grant,
        session: &SessionId,
        asked: Option<&ProjectId>,
    ) -> Result<ProjectId, FocusError> {
        let project = self
            .project_waiting(session)
            .await?
            .filter(|p| grant.can_read(p.as_str()))
            .ok_or_else(|| FocusError::NotFound(session.clone()))?;
        match asked {
            Some(asked) if *asked != project => Err(FocusError::ProjectMismatch {
                session: session.clone(),
                actual: project,
                asked: asked.clone(),
            }),
            _ => Ok(project),
        }
    }

    /// A client's request: checks what `grant` allows, then [`Focus::set`].
    pub async fn request(
        self: &Arc<Self>,
        grant: &Grant,
        session: &SessionId,
        asked: Option<&ProjectId>,
        focused: bool,
        expected: Option<u64>,
    ) -> Result<Applied, FocusError> {
        let project = self.resolve(grant, session, asked).await?;
        if grant.access(project.as_str()) != Some(Access::Write) {
            return Err(FocusError::ReadOnly(project));
        }
        let (state, changed) = self.set(&project, session, focused, expected).await?;
        Ok(Applied {
            project,
            state,
            changed,
        })
    }
}
