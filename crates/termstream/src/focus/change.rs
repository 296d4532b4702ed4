//! How a focus change is made: the request checked against the project's
//! version, the least recently active session evicted from a full set (as a
//! change of its own), the store's compare-and-set, and the broadcast of
//! each change, all under the project's lock.

use std::sync::Arc;
use std::sync::atomic::Ordering;

use termstream_proto::focus::FocusMessage;
use termstream_proto::{ProjectId, SessionId};

use super::store::{FocusState, Stale};
use super::{Focus, FocusError, FocusEvent, Project, redis};
use crate::clock::now_ms;

impl Focus {
    /// Focuses (or unfocuses) `session` of `project`, if the project's
    /// version is `expected` (when given). Answers the state after the
    /// request, and whether it changed; a request that changes nothing
    /// answers the current state.
    ///
    /// In a cluster another node may change the project between the read
    /// and the compare-and-set: a request without `expected` is then made
    /// again on the new state (a few times at most).
    ///
    /// It runs to its end even when the caller is dropped (a request whose
    /// client hung up; see [`crate::registry::Registry::finish`]): on one
    /// node, cut off between its write and its broadcast, the change was
    /// stored but never told, and every reader was answered the version
    /// before it until the next change; anywhere, an eviction could be
    /// made without the focus it made room for. Not to be called holding
    /// the project's lock, which the task takes.
    pub async fn set(
        self: &Arc<Self>,
        project: &ProjectId,
        session: &SessionId,
        focused: bool,
        expected: Option<u64>,
    ) -> Result<(FocusState, bool), FocusError> {
        let (focus, project, session) = (self.clone(), project.clone(), session.clone());
        self.registry
            .finish("a focus change", async move {
                let mut tries = 0;
                loop {
                    match focus.set_once(&project, &session, focused, expected).await {
                        Err(FocusError::Conflict { .. }) if expected.is_none() && tries < 16 => tries += 1,
                        done => return done,
                    }
                }
            })
            .await
            .unwrap_or_else(|| {
                Err(FocusError::Store(anyhow::anyhow!(
                    "the focus change failed on the server"
                )))
            })
    }

    async fn set_once(
        &self,
        project: &ProjectId,
        session: &SessionId,
        focused: bool,
        expected: Option<u64>,
    ) -> Result<(FocusState, bool), FocusError> {
        let p = self.project(project);
        let _changing = p.changing.lock().await;
        let mut state = match &self.cluster {
            // Puts this node's view back first if Redis lost it.
            Some(relay) => relay.current_for_change(self, project).await?,
            None => self.store.get(project).await?,
        };
        if let Some(expected) = expected
            && expected != state.version
        {
            return Err(FocusError::Conflict {
                project: project.clone(),
                expected,
                current: state,
            });
        }
        let is_focused = state.focused.contains(session);
        if focused {
            // Checked under the lock: a deletion after this removes it again.
            if self.project_of(session).await?.as_ref() != Some(project) {
                return Err(FocusError::NotFound(session.clone()));
            }
            self.seed_activity(&p, &state);
            let tick = self.ticks.fetch_add(1, Ordering::Relaxed);
            if is_focused {
                p.activity
                    .lock()
                    .unwrap_or_else(|p| p.into_inner())
                    .insert(session.clone(), tick);
                return Ok((state, false));
            }
            while state.focused.len() >= self.max_focused {
                let victim = self.least_active(&p, &state);
                let next: Vec<SessionId> = state.focused.iter().filter(|s| **s != victim).cloned().collect();
                state = self.change(project, &p, state, &victim, false, next).await?;
            }
            let mut next = state.focused.clone();
            next.push(session.clone());
            p.activity
                .lock()
                .unwrap_or_else(|p| p.into_inner())
                .insert(session.clone(), tick);
            Ok((self.change(project, &p, state, session, true, next).await?, true))
        } else {
            if !is_focused {
                return Ok((state, false));
            }
            let next = state.focused.iter().filter(|s| *s != session).cloned().collect();
            Ok((self.change(project, &p, state, session, false, next).await?, true))
        }
    }

    /// Gives focused sessions this node has no activity for (after a
    /// restart, or a change made elsewhere) the order of the set.
    pub(super) fn seed_activity(&self, p: &Project, state: &FocusState) {
        let mut activity = p.activity.lock().unwrap_or_else(|p| p.into_inner());
        activity.retain(|s, _| state.focused.contains(s));
        for s in &state.focused {
            if !activity.contains_key(s) {
                // Older than anything active on this node, in set order.
                let order = state.focused.iter().position(|x| x == s).unwrap_or(0) as u64;
                activity.insert(s.clone(), order);
            }
        }
    }

    /// The focused session least recently active.
    fn least_active(&self, p: &Project, state: &FocusState) -> SessionId {
        let activity = p.activity.lock().unwrap_or_else(|p| p.into_inner());
        state
            .focused
            .iter()
            .enumerate()
            .min_by_key(|(i, s)| (activity.get(*s).copied().unwrap_or(0), *i))
            .map(|(_, s)| s.clone())
            .expect("a full set is not empty")
    }

    /// Stores one change (version + 1) and broadcasts it. The caller holds
    /// the project's lock.
    pub(super) async fn change(
        &self,
        project: &ProjectId,
        p: &Project,
        state: FocusState,
        session: &SessionId,
        focused: bool,
        next: Vec<SessionId>,
    ) -> Result<FocusState, FocusError> {
        // Readers must not see the store's new version before its event is
        // on the broadcast: from now on they read `published`.
        p.published
            .lock()
            .unwrap_or_else(|p| p.into_inner())
            .get_or_insert_with(|| state.clone());
        let new = match self
            .store
            .compare_and_set_change(project, state.version, next, session, focused)
            .await?
        {
            Ok(new) => new,
            // Another node changed the project since we read it.
            Err(Stale(current)) => {
                return Err(FocusError::Conflict {
                    project: project.clone(),
                    expected: state.version,
                    current,
                });
            }
        };
        if !focused {
            p.activity.lock().unwrap_or_else(|p| p.into_inner()).remove(session);
        }
        match &self.cluster {
            Some(relay) => {
                let change = redis::Change {
                    project: project.clone(),
                    version: new.version,
                    session: Some(session.clone()),
                    focused,
                    set: new.focused.clone(),
                };
                relay.deliver(self, change).await;
                *p.published.lock().unwrap_or_else(|p| p.into_inner()) = Some(new.clone());
            }
            None => {
                // The broadcast and `published` move together: a socket
                // that subscribes and then reads either reads this version
                // or finds the change on its subscription. (Sent before
                // `published` moved, a socket subscribing in between read
                // the old version and never got this one.)
                let event = self.event(project, Some(session), focused, &new);
                let mut published = p.published.lock().unwrap_or_else(|p| p.into_inner());
                self.broadcast(event);
                *published = Some(new.clone());
            }
        }
        Ok(new)
    }

    /// Sends one change to this node's sockets: a `focus_update`, or (with
    /// no `session`) the state as `sync_complete`. The caller keeps the
    /// project's versions in order.
    pub(crate) fn emit(&self, project: &ProjectId, session: Option<&SessionId>, focused: bool, new: &FocusState) {
        self.broadcast(self.event(project, session, focused, new));
    }

    /// One change as [`Focus::emit`] sends it.
    fn event(
        &self,
        project: &ProjectId,
        session: Option<&SessionId>,
        focused: bool,
        new: &FocusState,
    ) -> Arc<FocusEvent> {
        let msg = match session {
            Some(session) => FocusMessage::FocusUpdate {
                project_id: project.clone(),
                session_id: session.clone(),
                focused,
                focused_sessions: new.focused.clone(),
                total_focused: new.focused.len(),
                max_focused: self.max_focused,
                version: new.version,
                timestamp: now_ms(),
            },
            None => FocusMessage::SyncComplete {
                project_id: project.clone(),
                session_id: None,
                focused_sessions: new.focused.clone(),
                version: new.version,
                max_focused: self.max_focused,
                timestamp: now_ms(),
            },
        };
        let json = serde_json::to_string(&msg).unwrap_or_default().into();
        Arc::new(FocusEvent {
            project: project.clone(),
            session: session.cloned(),
            focused,
            state: new.clone(),
            json,
        })
    }
}
