//! The directory of sessions: which ids exist, and their handles.
//!
//! A map from [`SessionId`] to [`SessionHandle`] behind a mutex held only for
//! map operations (never across an await). Session state itself lives in each
//! session's actor. The map is bounded: at most `max_running_sessions` run at
//! once (more is refused), and at most `max_sessions` are kept in all (the
//! oldest ended sessions are deleted to make room, and ended sessions are
//! deleted after `retention_secs`).
//!
//! Architecture invariant: an id in the map always has a live actor; delete
//! removes the id first, then shuts the actor down and removes its files.
//!
//! Loading the data dir at start (and ending what is left of the sessions
//! that were running when the server died) is `registry/load.rs`'s.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use termstream_proto::{Epoch, SessionId, SessionInfo, SessionStatus};
use tokio::sync::broadcast;

use crate::clock::now_ms;
use crate::config::Config;
use crate::confine::Confinement;
use crate::session::cgroup::Cgroups;
use crate::session::process::SpawnError;
use crate::session::store::spare::Spares;
use crate::session::{SessionHandle, SessionSettings};

mod create;
mod finishing;
mod load;
pub mod remote;
#[cfg(test)]
mod tests;

/// Why a session could not be created.
#[derive(Debug, thiserror::Error)]
pub enum CreateError {
    #[error("a session with id {0} exists already")]
    Duplicate(SessionId),
    #[error("{running} sessions are running, the most allowed")]
    Capacity { running: usize },
    #[error("the server is shutting down")]
    ShuttingDown,
    #[error("{0}")]
    Invalid(String),
    #[error("a {cols}x{rows} window is larger than the most allowed, {max_cols}x{max_rows}")]
    WindowTooLarge {
        cols: u16,
        rows: u16,
        max_cols: u16,
        max_rows: u16,
    },
    #[error(transparent)]
    Spawn(#[from] SpawnError),
    #[error("cannot create the session's log: {0}")]
    Io(#[from] std::io::Error),
}

/// A change in the set of sessions, for monitors.
#[derive(Debug, Clone)]
pub enum RegistryEvent {
    Created(SessionHandle),
    Deleted(SessionId),
}

/// All sessions of this server.
#[derive(Debug)]
pub struct Registry {
    sessions: Mutex<HashMap<SessionId, SessionHandle>>,
    /// Ids being created: reserved under `sessions`' lock, so that the
    /// slow part of a create (directory, cgroup, program) runs outside it.
    /// Locked after `sessions` when both are held.
    creating: Mutex<HashSet<SessionId>>,
    config: Arc<Config>,
    settings: SessionSettings,
    sessions_dir: PathBuf,
    /// Session directories made ahead: a create renames one rather than
    /// making its files ([`crate::session::store::spare`]).
    spares: Arc<Spares>,
    /// Tells monitors about created and deleted sessions, holding
    /// `session_changes_queue` events; lagging is fine (nothing that must
    /// see every event reads it: a monitor that lags resynchronizes from
    /// [`Registry::handles`] and [`Registry::remote`]).
    changes: broadcast::Sender<RegistryEvent>,
    /// The user and limits of every program ([`crate::confine`]).
    confine: Option<Arc<Confinement>>,
    /// Where sessions' cgroups are made; `None`: the process scan ends
    /// sessions ([`crate::session::cgroup`]).
    cgroups: Option<Arc<Cgroups>>,
    /// Sessions other nodes of a cluster own (empty without a cluster).
    remote: remote::RemoteSessions,
    /// Work that must not stop halfway (creates, terminates and deletes
    /// with their audits, retention's and eviction's deletes, focus
    /// changes):
    /// run by tasks of its own, whatever becomes of whoever asked for it,
    /// and waited for when the server stops ([`Registry::close`]).
    finishing: finishing::Finishing,
    /// Set (under `sessions`' lock) at the shutdown signal: creates are
    /// refused from then on.
    closing: AtomicBool,
}

impl Registry {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<SessionId, SessionHandle>> {
        // A panic while holding the lock leaves the map consistent (every
        // operation is a single insert or remove), so poisoning is ignored.
        self.sessions.lock().unwrap_or_else(|p| p.into_inner())
    }

    pub fn config(&self) -> &Config {
        &self.config
    }

    /// Monitors subscribe here for created and deleted sessions.
    pub fn changes(&self) -> broadcast::Receiver<RegistryEvent> {
        self.changes.subscribe()
    }

    fn spawn_delete(&self, id: SessionId) {
        if let Some(handle) = self.lock().remove(&id) {
            self.forget_in_cluster(&id, handle.epoch());
            let _ = self.changes.send(RegistryEvent::Deleted(id));
            self.finishing.detach(finish_delete(handle));
        }
    }

    /// In a cluster, has the session this node just took out of its map
    /// removed from Redis (claim, record, stream), in the background.
    fn forget_in_cluster(&self, id: &SessionId, epoch: Epoch) {
        if let Some(link) = self.remote.link() {
            link.forget(id, epoch);
        }
    }

    /// A session of this node, else one another node of the cluster owns.
    pub fn get(&self, id: &SessionId) -> Option<SessionHandle> {
        let local = self.lock().get(id).cloned();
        local.or_else(|| self.remote.get(id))
    }

    /// The incarnation of the local session `id` (not one another node
    /// owns), without cloning its handle.
    pub fn local_epoch(&self, id: &SessionId) -> Option<Epoch> {
        self.lock().get(id).filter(|h| !h.is_remote()).map(|h| h.epoch())
    }

    /// Sessions other nodes of the cluster own, and the cluster's link.
    pub fn remote(&self) -> &remote::RemoteSessions {
        &self.remote
    }

    /// Adds the handle of a session another node owns, and tells monitors
    /// (an attach waiting for its id is answered).
    pub fn add_remote(&self, handle: SessionHandle) {
        self.remote.insert(handle.clone());
        let _ = self.changes.send(RegistryEvent::Created(handle));
    }

    /// Forgets a session another node owned (deleted there), and tells
    /// monitors.
    pub fn remove_remote(&self, id: &SessionId) {
        if self.remote.remove(id).is_some() {
            let _ = self.changes.send(RegistryEvent::Deleted(id.clone()));
        }
    }

    /// Every session's info, newest first, filtered by project and status.
    pub fn list(&self, project: Option<&str>, status: Option<SessionStatus>) -> Vec<SessionInfo> {
        let mut handles: Vec<SessionHandle> = self.lock().values().cloned().collect();
        handles.extend(self.remote.handles());
        let mut infos: Vec<SessionInfo> = handles
            .iter()
            .map(SessionHandle::info)
            .filter(|i| project.is_none_or(|p| i.project.as_str() == p))
            .filter(|i| status.is_none_or(|s| i.status == s))
            .collect();
        infos.sort_by(|a, b| b.created_at.cmp(&a.created_at).then_with(|| a.id.cmp(&b.id)));
        infos
    }

    /// Every handle of this node's own sessions (for shutdown; a monitor
    /// wants [`Registry::all_handles`]).
    pub fn handles(&self) -> Vec<SessionHandle> {
        self.lock().values().cloned().collect()
    }

    /// Every session readable on this node: its own, then (in a cluster)
    /// those other nodes own. For a moment an id can be in both (a session
    /// moving between the maps): [`Registry::get`] says which handle is
    /// current.
    pub fn all_handles(&self) -> Vec<SessionHandle> {
        let mut handles = self.handles();
        handles.extend(self.remote.handles());
        handles
    }

    /// Deletes a session: kills what still runs and removes its files, to
    /// its end even when the caller is dropped (a request whose client hung
    /// up; see [`Registry::finish`]): cut off, it left the session's
    /// directory, which the next start loaded again.
    pub async fn delete(&self, id: &SessionId) -> bool {
        self.delete_epoch(id, None).await
    }

    /// Deletes a session as [`Registry::delete`] does, only if it is the
    /// incarnation `epoch` (any, when `None`): `false` otherwise, as for an
    /// id this node does not have. Checked as it leaves the map, so a
    /// session that replaced it meanwhile is left alone.
    pub async fn delete_epoch(&self, id: &SessionId, epoch: Option<Epoch>) -> bool {
        let handle = {
            let mut sessions = self.lock();
            match sessions.get(id) {
                Some(h) if epoch.is_none_or(|e| e == h.epoch()) => sessions.remove(id),
                _ => None,
            }
        };
        let Some(handle) = handle else {
            return false;
        };
        self.forget_in_cluster(id, handle.epoch());
        let _ = self.changes.send(RegistryEvent::Deleted(id.clone()));
        self.finish("deleting a session's files", finish_delete(handle)).await;
        true
    }

    /// Runs `work` to its end in a task of its own, whatever becomes of
    /// the caller (a request's future is dropped when its client hangs
    /// up), and answers its output. What must not stop halfway runs here:
    /// creates, terminates and deletes, focus changes. The server waits for
    /// it when it stops ([`Registry::close`]). `None` if it panicked (or
    /// the runtime stopped), which is logged as `what` having failed. See
    /// [`finishing::Finishing::run`].
    pub(crate) fn finish<F>(&self, what: &'static str, work: F) -> impl Future<Output = Option<F::Output>> + use<F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        self.finishing.run(what, work)
    }

    /// The server is stopping: creates are refused from now on, and in a
    /// cluster the removals from Redis of the sessions deleted here are
    /// hurried ([`remote::ClusterLink::hurry_forgets`]): they get the time
    /// open requests take to finish as well.
    pub(crate) fn refuse_creates(&self) {
        {
            let _sessions = self.lock();
            self.closing.store(true, Ordering::SeqCst);
        }
        if let Some(link) = self.remote.link() {
            link.hurry_forgets();
        }
    }

    /// The server stops: refuses creates and hurries the removals from
    /// Redis (if the signal did not already, [`Registry::refuse_creates`]),
    /// and waits, until
    /// `deadline` at most, for what [`Registry::finish`] runs (a create
    /// that had begun then launches its session, which the shutdown then
    /// terminates).
    pub(crate) async fn close(&self, deadline: tokio::time::Instant) {
        self.refuse_creates();
        self.finishing.close(deadline).await;
    }

    /// In a cluster, waits, until `deadline` at most, for the removals from
    /// Redis of the sessions deleted here ([`remote::ClusterLink::forget`])
    /// that have not gone through yet: left behind, their records and
    /// claims would stay in Redis for good. Called once the sessions were
    /// terminated, with [`Registry::close`]'s deadline: the removals, tried
    /// meanwhile, get the same time as when they were waited for first,
    /// and the sessions' end does not wait for them (with Redis down it
    /// waited out the whole time, every try refused).
    pub(crate) async fn settle_forgets(&self, deadline: tokio::time::Instant) {
        if let Some(link) = self.remote.link() {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            if !link.settle_forgets(left).await {
                tracing::warn!(
                    left = link.forgets_pending(),
                    "deleted sessions still to be removed from the cluster's Redis; stopping anyway"
                );
            }
        }
    }

    /// Whether the server is stopping ([`Registry::refuse_creates`]); read
    /// under `sessions`' lock by a create's reservation, and before a
    /// create's claim in a cluster.
    pub(crate) fn closing(&self) -> bool {
        self.closing.load(Ordering::SeqCst)
    }

    /// Deletes ended sessions older than the retention, every minute.
    pub async fn retention_loop(self: Arc<Self>) {
        let mut tick = tokio::time::interval(Duration::from_secs(60));
        loop {
            tick.tick().await;
            let cutoff = now_ms().saturating_sub(self.config.retention_secs * 1000);
            let expired: Vec<SessionId> = self
                .handles()
                .iter()
                .map(SessionHandle::info)
                .filter(|i| !i.status.is_running() && i.ended_at.is_some_and(|t| t < cutoff))
                .map(|i| i.id)
                .collect();
            for id in expired {
                self.spawn_delete(id);
            }
        }
    }

    /// The longest [`Registry::terminate_all`] waits for a session.
    pub(crate) fn terminate_wait(&self) -> Duration {
        self.settings.grace + Duration::from_secs(2)
    }

    /// Terminates every running session and waits for them (server shutdown).
    /// A session launched meanwhile, by a create that had begun before
    /// creates were refused and outlasted [`Registry::close`]'s wait, is
    /// terminated in a later round; the rounds go on while a create is
    /// under way, and all of them share one wait.
    pub(crate) async fn terminate_all(&self) {
        let deadline = tokio::time::Instant::now() + self.terminate_wait();
        let mut told: HashSet<(SessionId, Epoch)> = HashSet::new();
        loop {
            let running: Vec<SessionHandle> = self
                .handles()
                .into_iter()
                .filter(|h| h.is_running() && !told.contains(&(h.id().clone(), h.epoch())))
                .collect();
            if running.is_empty() {
                let creating = !self.creating.lock().unwrap_or_else(|p| p.into_inner()).is_empty();
                if !creating || tokio::time::Instant::now() >= deadline {
                    return;
                }
                // A create between its reservation and its insert: a few
                // system calls, or a spawn.
                tokio::time::sleep(Duration::from_millis(5)).await;
                continue;
            }
            told.extend(running.iter().map(|h| (h.id().clone(), h.epoch())));
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            futures_util::future::join_all(running.iter().map(|h| h.terminate(left))).await;
        }
    }
}

async fn finish_delete(handle: SessionHandle) {
    handle.shutdown().await;
    let dir = handle.dir().to_owned();
    let _ = tokio::task::spawn_blocking(move || std::fs::remove_dir_all(dir)).await;
}

/// A fresh random session id.
pub fn generated_id() -> SessionId {
    let raw: u64 = rand::random();
    SessionId::new(format!("s{:012x}", raw >> 16)).expect("hex is a valid id")
}
