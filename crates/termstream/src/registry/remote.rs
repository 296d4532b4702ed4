//! Sessions of other nodes, when this node is part of a cluster.
//!
//! The registry's own map holds the sessions this node spawned and owns.
//! Beside it, [`RemoteSessions`] holds a handle for every session another
//! node owns (made by `crate::cluster` from the directory in Redis, with
//! [`crate::session::remote`]), so that `get` and `list` on any node see
//! every session. The cluster also installs a [`ClusterLink`]: the few
//! things the registry and the layers above it ask of it (claiming an id
//! across the cluster before a create, publishing a session just created,
//! removing one deleted here, deleting a session on its owner, whether the
//! node's link to the others works).
//!
//! Without a cluster the map stays empty and no link is installed:
//! nothing changes.

use std::collections::HashMap;
use std::sync::{Arc, Mutex, MutexGuard, OnceLock};

use futures_util::future::BoxFuture;
use termstream_proto::{Epoch, SessionId};

use tokio::sync::watch;

use crate::session::{SessionError, SessionHandle};

/// Why an id could not be claimed across the cluster.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another session, on any node, has the id.
    #[error("a session with id {0} exists already")]
    Duplicate(SessionId),
    /// Redis could not be asked, so uniqueness cannot be promised.
    #[error("the cluster cannot be reached to claim the id: {0}")]
    Unavailable(String),
    /// An earlier session with the id, deleted on this node (or an earlier
    /// create's claim whose answer was lost), is still being removed from
    /// the cluster's Redis.
    #[error("an earlier session or create with id {0} is still being removed from the cluster; retry")]
    Removing(SessionId),
}

/// A create's claim that went through, until the create ends: with
/// [`Claimed::created`] or [`Claimed::release`]. Dropped before either
/// (the create panicked, or its task was cut off), it releases the claim
/// in a task of its own; else the id stayed marked as a create under way
/// on this node (409 to every create of it there, its claim renewed)
/// until the node stopped.
#[must_use = "a claim is ended by created or release"]
pub struct Claimed {
    /// The cluster's link, and the id claimed; `None` once ended.
    claim: Option<(Arc<dyn ClusterLink>, SessionId)>,
}

impl Claimed {
    /// Claims `id` through `link` ([`ClusterLink::claim`]).
    pub async fn claim(link: Arc<dyn ClusterLink>, id: &SessionId) -> Result<Claimed, ClaimError> {
        link.claim(id).await?;
        Ok(Claimed {
            claim: Some((link, id.clone())),
        })
    }

    /// The session, incarnation `epoch`, is in the registry
    /// ([`ClusterLink::created`]).
    pub fn created(mut self, epoch: Epoch) {
        if let Some((link, id)) = self.claim.take() {
            link.created(&id, epoch);
        }
    }

    /// The create failed ([`ClusterLink::release`]).
    pub async fn release(mut self) {
        if let Some((link, id)) = self.claim.take() {
            link.release(&id).await;
        }
    }
}

impl Drop for Claimed {
    /// Releases a claim whose create ended neither way.
    fn drop(&mut self) {
        let Some((link, id)) = self.claim.take() else {
            return;
        };
        tracing::warn!(session = %id, "a create ended without an outcome; its claim is released");
        // Without a runtime the process is ending: nothing to release for.
        if let Ok(runtime) = tokio::runtime::Handle::try_current() {
            runtime.spawn(async move { link.release(&id).await });
        }
    }
}

/// What the registry and the layers above it ask of the cluster.
pub trait ClusterLink: Send + Sync + std::fmt::Debug {
    /// Claims `id` for a session this node is about to create.
    fn claim<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), ClaimError>>;

    /// Gives up a claim whose create failed.
    fn release<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, ()>;

    /// Ends a create whose claim went through and whose session,
    /// incarnation `epoch`, is in the registry (or was, if deleted
    /// meanwhile): the claim is the session's from now on.
    fn created(&self, id: &SessionId, epoch: Epoch);

    /// Removes a session this node just deleted (taken out of the
    /// registry) from the cluster, in the background; until that went
    /// through, a create of its id here waits. `epoch`: its incarnation.
    fn forget(&self, id: &SessionId, epoch: Epoch);

    /// Starts publishing a session this node just launched (its record and
    /// its output) to the cluster, until it is deleted. Called once per
    /// session, from the create itself: a broadcast that lags could lose it.
    fn publish(&self, handle: &SessionHandle);

    /// Deletes a session another node owns, on that node; `false` when it
    /// does not know the session.
    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, SessionError>>;

    /// Why this node cannot serve as part of the cluster now (Redis is
    /// unreachable), for `/readyz`; `None` when it can.
    fn unready(&self) -> Option<String>;

    /// How many removals from the cluster ([`ClusterLink::forget`], or a
    /// failed create's release) have not gone through yet.
    fn forgets_pending(&self) -> usize;

    /// Has every removal from the cluster tried at once, and every
    /// heartbeat from now on, whatever its backoff (a stopping server).
    fn hurry_forgets(&self);

    /// Waits, at most `limit`, until every removal from the cluster went
    /// through (a stopping server); `false` when some have not.
    fn settle_forgets(&self, limit: std::time::Duration) -> BoxFuture<'_, bool>;
}

/// Handles of sessions other nodes own, and the cluster's link.
#[derive(Debug, Default)]
pub struct RemoteSessions {
    map: Mutex<HashMap<SessionId, SessionHandle>>,
    link: OnceLock<Arc<dyn ClusterLink>>,
    /// Whether the map has been brought in line with the directory once.
    synced: watch::Sender<bool>,
}

impl RemoteSessions {
    fn lock(&self) -> MutexGuard<'_, HashMap<SessionId, SessionHandle>> {
        // Every operation is one insert, remove or read: poisoning leaves
        // the map consistent.
        self.map.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// The cluster's link, when this node is part of one.
    pub fn link(&self) -> Option<&Arc<dyn ClusterLink>> {
        self.link.get()
    }

    /// Installs the cluster's link (once, at start).
    pub fn set_link(&self, link: Arc<dyn ClusterLink>) {
        let _ = self.link.set(link);
    }

    /// The handle of a remote session.
    pub fn get(&self, id: &SessionId) -> Option<SessionHandle> {
        self.lock().get(id).cloned()
    }

    /// Every remote session's handle.
    pub fn handles(&self) -> Vec<SessionHandle> {
        self.lock().values().cloned().collect()
    }

    /// Adds (or replaces) the handle of a remote session.
    pub fn insert(&self, handle: SessionHandle) -> Option<SessionHandle> {
        self.lock().insert(handle.id().clone(), handle)
    }

    /// Forgets a remote session (deleted, or now owned here).
    pub fn remove(&self, id: &SessionId) -> Option<SessionHandle> {
        self.lock().remove(id)
    }

    /// Records that the map now holds every session of the directory.
    pub fn mark_synced(&self) {
        self.synced.send_if_modified(|s| !std::mem::replace(s, true));
    }

    /// Waits until the map has held the directory's sessions once (at
    /// once without a cluster, where there are none to wait for).
    pub async fn wait_synced(&self) {
        if self.link.get().is_none() {
            return;
        }
        let _ = self.synced.subscribe().wait_for(|s| *s).await;
    }

    /// The ids of every remote session.
    pub fn ids(&self) -> Vec<SessionId> {
        self.lock().keys().cloned().collect()
    }
}
