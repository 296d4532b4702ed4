//! Focus-aware forwarding (`"stream":"focus"`): live output while the
//! session is focused in its project; otherwise at most one update per
//! `unfocused_interval_ms`, holding everything the log gained since the
//! last one, coalesced into frames and still exact by offset.
//!
//! While unfocused the forwarder drops its live receiver, so a busy session
//! costs it one wake-up per interval instead of one per chunk. When the
//! session becomes focused it subscribes again from `next`, sends the
//! missing bytes at once and goes on live. A client further behind than
//! `max_replay_bytes` gets a screen and a gap, as a slow client does.

use std::sync::Arc;

use termstream_proto::{ProjectId, SessionId};
use tokio::sync::broadcast::{self, error::RecvError};
use tokio::time::MissedTickBehavior;

use super::{Closed, Flow, FocusFollow, Forwarder};
use crate::focus::{Focus, FocusEvent};
use crate::gateway::render::OutEvent;
use crate::session::LogEvent;
use crate::session::log::RingRead;

/// Whether the forwarder's session is focused, kept current from the
/// focus broadcast.
pub struct FocusTrack {
    focus: Arc<Focus>,
    changes: broadcast::Receiver<Arc<FocusEvent>>,
    project: ProjectId,
    session: SessionId,
    pub focused: bool,
}

impl FocusTrack {
    /// Subscribes first, then reads the state: no change in between is lost.
    async fn new(focus: Arc<Focus>, project: ProjectId, session: SessionId) -> FocusTrack {
        let changes = focus.subscribe();
        let focused = focus
            .get(&project)
            .await
            .map(|s| s.focused.contains(&session))
            .unwrap_or(true);
        FocusTrack {
            focus,
            changes,
            project,
            session,
            focused,
        }
    }

    /// Waits for the session's focus to change; answers the new value.
    /// Cancel-safe: a change not yet answered is answered next time.
    pub async fn changed(&mut self) -> bool {
        loop {
            let now = match self.changes.recv().await {
                Ok(ev) if ev.project == self.project => ev.state.focused.contains(&self.session),
                Ok(_) => continue,
                // Boxed: rare, and every focus-aware attachment's idle
                // task would carry the state of the read.
                Err(RecvError::Lagged(_)) => match Box::pin(self.focus.get(&self.project)).await {
                    Ok(s) => s.focused.contains(&self.session),
                    Err(_) => continue,
                },
                Err(RecvError::Closed) => return std::future::pending().await,
            };
            if now != self.focused {
                self.focused = now;
                return now;
            }
        }
    }
}

impl Forwarder {
    /// Follows the session, live while it is focused and at intervals
    /// while it is not, until the log ends.
    pub(super) async fn follow_focus(
        &mut self,
        live: broadcast::Receiver<LogEvent>,
        follow: FocusFollow,
    ) -> Result<(), Closed> {
        let project = self.handle.project().clone();
        let mut track = FocusTrack::new(follow.focus, project, self.id.clone()).await;
        let mut live = Some(live);
        loop {
            let flow = if track.focused {
                let rx = match live.take() {
                    Some(rx) => rx,
                    None => match self.resubscribe().await? {
                        Some(rx) => rx,
                        None => return Ok(()),
                    },
                };
                self.follow(rx, Some(&mut track)).await?
            } else {
                live = None;
                self.unfocused(&mut track, follow.interval).await?
            };
            if let Flow::Ended = flow {
                return Ok(());
            }
        }
    }

    /// Sends what the log gained once per `interval` until the session is
    /// focused again (`Unfocused` is not returned) or the log ends.
    async fn unfocused(&mut self, track: &mut FocusTrack, interval: std::time::Duration) -> Result<Flow, Closed> {
        let mut size = self.handle.size();
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                focused = track.changed() => {
                    if focused {
                        // Caught up by the resubscription, at once.
                        return Ok(Flow::Unfocused);
                    }
                    continue;
                }
            }
            let running = self.handle.is_running();
            let end = self.handle.output_offset();
            if end > self.next {
                self.coalesce = true;
                let filled = self.fill(end).await;
                self.coalesce = false;
                filled?;
            }
            if self.handle.size() != size {
                size = self.handle.size();
                self.emit(OutEvent::Resized {
                    session: &self.id,
                    cols: size.0,
                    rows: size.1,
                })
                .await?;
            }
            if !running {
                let info = Arc::new(self.handle.info());
                self.fill(info.output_offset).await?;
                self.finish(&info).await?;
                return Ok(Flow::Ended);
            }
        }
    }

    /// Subscribes again from `next` and sends what is missing up to the
    /// live events; `None` when the log ended or the session is gone.
    async fn resubscribe(&mut self) -> Result<Option<broadcast::Receiver<LogEvent>>, Closed> {
        let Ok(sub) = self.handle.subscribe(self.next).await else {
            self.detached().await?;
            return Ok(None);
        };
        match sub.backlog {
            RingRead::Held(chunks) => self.send_chunks(chunks).await?,
            RingRead::Evicted { .. } | RingRead::Future { .. } => self.fill(sub.end).await?,
        }
        if let Some(ended) = sub.ended {
            self.finish(&ended).await?;
            return Ok(None);
        }
        Ok(Some(sub.live))
    }
}
