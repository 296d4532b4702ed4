//! [`FocusRelay`]: how focus changes of every node of a cluster reach this
//! node's sockets, once each and in version order.
//!
//! Each node follows the [`CHANGES`] channel
//! ([`FocusRelay::run`]) and remembers, per project, the last state it
//! delivered to its broadcast. A change is delivered when it is the next
//! version; an older one (this node's own change, already delivered when
//! it was made, or a repeat) is dropped; a newer one first delivers the
//! versions in between, read back from the project's log in Redis. A change
//! the log no longer holds is skipped, and sockets fill that gap from the
//! state (`sync_complete`), as they do when they fall behind.
//!
//! Architecture invariant: a project's delivery runs under that project's
//! lock, and [`FocusRelay::current`] delivers every change up to the
//! version it answers before it answers it, so a socket that subscribed to
//! the broadcast and then read the state misses no later version (the
//! promise `gateway::focus_watch` relies on, on one node or many).
//!
//! Redis restarts empty. When this node finds Redis behind the state it
//! delivered (after its subscription comes back, or at its next read or
//! change of the project), it puts its own view back with the same version
//! ([`RedisStore::restore`]): versions never go back, and clients need no
//! new handling. This node's sessions are registered again too.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::StreamExt;
use termstream_proto::ProjectId;

use super::Focus;
use super::redis::{CHANGES, Change, RedisStore};
use super::store::FocusState;

/// What this node delivered of one project: the last state, `None` before
/// the first read or change. Its lock orders the project's delivery.
type Delivered = Arc<tokio::sync::Mutex<Option<FocusState>>>;

/// Delivers every node's focus changes to this node's sockets.
#[derive(Debug)]
pub struct FocusRelay {
    client: redis::Client,
    store: RedisStore,
    /// Per project touched on this node (bounded by the cluster's
    /// projects): the last state delivered.
    delivered: Mutex<HashMap<ProjectId, Delivered>>,
}

impl FocusRelay {
    /// A relay over the Redis at `client`.
    pub fn new(client: redis::Client) -> anyhow::Result<Arc<FocusRelay>> {
        Ok(Arc::new(FocusRelay {
            store: RedisStore::new(client.clone())?,
            client,
            delivered: Mutex::new(HashMap::new()),
        }))
    }

    /// The shared store.
    pub fn store(&self) -> &RedisStore {
        &self.store
    }

    fn slot(&self, project: &ProjectId) -> Delivered {
        let mut all = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
        all.entry(project.clone()).or_default().clone()
    }

    /// Delivers `change` to this node's sockets, after the versions before
    /// it not yet delivered; drops it if it was delivered already.
    pub async fn deliver(&self, focus: &Focus, change: Change) {
        let slot = self.slot(&change.project);
        let mut last = slot.lock().await;
        let seen = last.as_ref().map(|s| s.version);
        if seen.is_some_and(|v| change.version <= v) {
            return;
        }
        if let Some(v) = seen {
            self.fill(focus, &mut last, &change.project, v, change.version - 1)
                .await;
        }
        focus.emit(
            &change.project,
            change.session.as_ref(),
            change.focused,
            &change.state(),
        );
        *last = Some(change.state());
    }

    /// Delivers the logged changes of `project` after version `from` up to
    /// `to`, those still logged.
    async fn fill(&self, focus: &Focus, last: &mut Option<FocusState>, project: &ProjectId, from: u64, to: u64) {
        if to <= from {
            return;
        }
        let missed = match self.store.changes(project, from + 1, to).await {
            Ok(missed) => missed,
            Err(e) => return tracing::warn!(%project, error = %e, "cannot read missed focus changes"),
        };
        for c in missed {
            if last.as_ref().is_none_or(|s| c.version > s.version) {
                focus.emit(project, c.session.as_ref(), c.focused, &c.state());
                *last = Some(c.state());
            }
        }
    }

    /// The state of `project` in Redis, once every change up to it is
    /// delivered here; when Redis cannot be reached, the last state
    /// delivered here (if any).
    pub async fn current(&self, focus: &Focus, project: &ProjectId) -> anyhow::Result<FocusState> {
        match self.current_for_change(focus, project).await {
            Ok(state) => Ok(state),
            Err(e) => {
                let slot = self.slot(project);
                let last = slot.lock().await.clone();
                last.ok_or(e)
            }
        }
    }

    /// [`FocusRelay::current`] without the fallback: a change must be made
    /// on Redis's state.
    pub async fn current_for_change(&self, focus: &Focus, project: &ProjectId) -> anyhow::Result<FocusState> {
        let slot = self.slot(project);
        let mut last = slot.lock().await;
        let state = self.store.read(project).await?;
        let Some(seen) = last.as_ref().map(|s| s.version) else {
            // Nothing delivered here yet: readers start from this state.
            *last = Some(state.clone());
            return Ok(state);
        };
        if state.version < seen {
            // Redis lost the project (it restarted empty): put our view back.
            let mine = last.clone().unwrap_or_default();
            if self.store.restore(project, &mine).await? {
                tracing::info!(%project, version = mine.version, "focus state put back into the cluster");
                return Ok(mine);
            }
            // Another node put back a later one meanwhile.
            let state = self.store.read(project).await?;
            self.catch_up(focus, &mut last, project, &state).await;
            return Ok(state);
        }
        self.catch_up(focus, &mut last, project, &state).await;
        Ok(state)
    }

    /// Delivers what is missing here up to `state`; a version the log no
    /// longer holds reaches sockets as the state itself (`sync_complete`).
    async fn catch_up(&self, focus: &Focus, last: &mut Option<FocusState>, project: &ProjectId, state: &FocusState) {
        let seen = last.as_ref().map_or(0, |s| s.version);
        if state.version <= seen {
            return;
        }
        self.fill(focus, last, project, seen, state.version).await;
        if last.as_ref().is_none_or(|s| s.version < state.version) {
            focus.emit(project, None, false, state);
            *last = Some(state.clone());
        }
    }

    /// Follows every node's changes until the process ends: subscribes,
    /// catches up every project
    /// delivered here (putting back what a restarted Redis lost), then
    /// delivers each published change. Reconnects after an outage.
    pub async fn run(self: Arc<Self>, focus: Arc<Focus>) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.follow(&focus).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => {
                    tracing::debug!(error = %e, "focus relay: Redis unreachable; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }

    /// One subscription, until its connection ends.
    async fn follow(&self, focus: &Focus) -> anyhow::Result<()> {
        let mut pubsub = tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub())
            .await
            .map_err(|_| anyhow::anyhow!("connecting timed out"))??;
        pubsub.subscribe(CHANGES).await?;
        tracing::info!("focus relay subscribed to the cluster's changes");
        let projects: Vec<ProjectId> = {
            let all = self.delivered.lock().unwrap_or_else(|p| p.into_inner());
            all.keys().cloned().collect()
        };
        for project in projects {
            self.current_for_change(focus, &project).await?;
        }
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            match serde_json::from_str::<Change>(&payload) {
                Ok(change) => self.deliver(focus, change).await,
                Err(e) => tracing::warn!(error = %e, "focus relay: a change that is not one"),
            }
        }
        Ok(())
    }
}
