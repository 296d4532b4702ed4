//! Keeping focus sets free of deleted sessions: [`Focus::follow_deletions`]
//! takes a deleted session out of every set that holds it (a change,
//! broadcast like any other), now for sessions deleted while the server was
//! down and from then on as the registry deletes them. In a cluster the
//! registry holds every node's sessions (the directory), so a start first
//! waits for the directory's first read: until then the sessions of other
//! nodes would look deleted.

use std::sync::Arc;

use termstream_proto::{ProjectId, SessionId};
use tokio::sync::broadcast;

use super::Focus;
use crate::registry::RegistryEvent;

impl Focus {
    /// Removes `session` from every set that holds it (it was deleted).
    async fn forget(&self, session: &SessionId) {
        let projects = match self.store.all().await {
            Ok(all) => all,
            Err(e) => return tracing::warn!(error = %e, "cannot list focus sets"),
        };
        for (project, state) in projects {
            if state.focused.contains(session) {
                self.unfocus_gone(&project, session).await;
            }
        }
    }

    /// Unfocuses `session` of `project` if it is focused and no longer exists.
    async fn unfocus_gone(&self, project: &ProjectId, session: &SessionId) {
        let p = self.project(project);
        let _changing = p.changing.lock().await;
        let result = async {
            let state = self.store.get(project).await?;
            if !state.focused.contains(session) || self.project_of(session).await?.as_ref() == Some(project) {
                return Ok(());
            }
            let next = state.focused.iter().filter(|s| *s != session).cloned().collect();
            self.change(project, &p, state, session, false, next).await.map(drop)
        }
        .await;
        if let Err(e) = result {
            tracing::warn!(%project, %session, error = %e, "cannot unfocus a deleted session");
        }
    }

    /// Takes deleted sessions out of their sets, now (sessions deleted
    /// while the server was down) and whenever one is deleted. Runs until
    /// the registry is gone.
    pub async fn follow_deletions(self: Arc<Self>) {
        let mut changes = self.registry.changes();
        self.registry.remote().wait_synced().await;
        self.forget_missing().await;
        // Input before the first focus request after a start counts too.
        if let Ok(all) = self.store.all().await {
            for (project, state) in all {
                self.seed_activity(&self.project(&project), &state);
            }
        }
        loop {
            match changes.recv().await {
                Ok(RegistryEvent::Deleted(id)) => self.forget(&id).await,
                Ok(RegistryEvent::Created(_)) => {}
                Err(broadcast::error::RecvError::Lagged(_)) => self.forget_missing().await,
                Err(broadcast::error::RecvError::Closed) => return,
            }
        }
    }

    /// Unfocuses every focused session that no longer exists.
    async fn forget_missing(&self) {
        let projects = match self.store.all().await {
            Ok(all) => all,
            Err(e) => return tracing::warn!(error = %e, "cannot list focus sets"),
        };
        for (project, state) in projects {
            for s in &state.focused {
                if self.project_of(s).await.is_ok_and(|p| p.as_ref() != Some(&project)) {
                    self.unfocus_gone(&project, s).await;
                }
            }
        }
    }
}
