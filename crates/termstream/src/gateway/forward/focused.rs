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
//!
//! A `session.resized` can be lost with the dropped receiver (focus went
//! while the event was queued, or lost in a lag the forwarder had not met
//! yet). So both the updates and the catch-up on focus compare the
//! session's size with `told_size`, the size the client was last told (or
//! will have once its pending resizes are told, `resize.rs`), and when
//! they differ ask the session for its last resize: at or past `next`,
//! it is told at its place in the output; behind it and the session's
//! size, before the next byte (an update's, or the catch-up's). An
//! update that finds the size still untold after its output asks again:
//! a resize that landed meanwhile waits for its place in a later update,
//! and a size with no resize ahead of `next` is told at once (one whose
//! last resize is the client's size only when no output came past
//! `next`). (A lag while focused learns the same way, `catchup.rs`.)

use std::sync::Arc;

use termstream_proto::{ProjectId, SessionId};
use tokio::sync::broadcast::{
    self,
    error::{RecvError, TryRecvError},
};
use tokio::time::MissedTickBehavior;

use super::{Closed, Flow, FocusFollow, Forwarder, resize};
use crate::focus::{Focus, FocusEvent};

/// Whether the forwarder's session is focused, kept current from the
/// focus broadcast.
pub struct FocusTrack {
    focus: Arc<Focus>,
    changes: broadcast::Receiver<Arc<FocusEvent>>,
    project: ProjectId,
    session: SessionId,
    pub focused: bool,
    /// The broadcast lagged and the state has not been read since: the
    /// next [`FocusTrack::changed`] reads it first. Kept here, not in the
    /// future, because a `select!` may drop that future mid-read.
    stale: bool,
    /// [`Focus::sent`] when the queue was last drained: unmoved, no change
    /// is queued.
    seen: u64,
}

impl FocusTrack {
    /// Subscribes first, then reads the state: no change in between is lost.
    async fn new(focus: Arc<Focus>, project: ProjectId, session: SessionId) -> FocusTrack {
        // Read before subscribing: a change counted after it is queued.
        let seen = focus.sent();
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
            stale: false,
            seen,
        }
    }

    /// Takes the focus changes already made, without waiting; answers the
    /// new value when the session's focus changed. When none was made it
    /// costs one atomic load: a busy live stream checks before each event,
    /// and registering a waiter on the server-wide broadcast each time
    /// (two locks) is what this spares. After a lag of the broadcast the
    /// state is read here, awaited to the end, not restarted by each
    /// `select!` that would drop it.
    pub async fn take_made(&mut self) -> Option<bool> {
        let sent = self.focus.sent();
        if !self.stale && sent == self.seen {
            return None;
        }
        self.seen = sent;
        let before = self.focused;
        loop {
            if self.stale {
                let read = Box::pin(self.focus.get(&self.project)).await;
                self.stale = false;
                if let Ok(s) = read {
                    self.focused = s.focused.contains(&self.session);
                }
            }
            match self.changes.try_recv() {
                Ok(ev) if ev.project == self.project => self.focused = ev.state.focused.contains(&self.session),
                Ok(_) => {}
                Err(TryRecvError::Lagged(_)) => self.stale = true,
                Err(TryRecvError::Empty | TryRecvError::Closed) => break,
            }
        }
        (self.focused != before).then_some(self.focused)
    }

    /// Waits for the session's focus to change; answers the new value.
    /// Cancel-safe: a change not yet answered is answered next time.
    pub async fn changed(&mut self) -> bool {
        loop {
            let now = if self.stale {
                // Boxed: rare, and every focus-aware attachment's idle
                // task would carry the state of the read.
                let read = Box::pin(self.focus.get(&self.project)).await;
                self.stale = false;
                match read {
                    Ok(s) => s.focused.contains(&self.session),
                    Err(_) => continue,
                }
            } else {
                match self.changes.recv().await {
                    Ok(ev) if ev.project == self.project => ev.state.focused.contains(&self.session),
                    Ok(_) => continue,
                    Err(RecvError::Lagged(_)) => {
                        self.stale = true;
                        continue;
                    }
                    Err(RecvError::Closed) => return std::future::pending().await,
                }
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
        live: crate::session::log_events::Receiver,
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
    /// focused again (`Unfocused` is not returned), the log ends (told as
    /// soon as the info says so, not at the next interval), or the
    /// session is deleted (then the attachment is given back, as
    /// [`Forwarder::detached`] does).
    async fn unfocused(&mut self, track: &mut FocusTrack, interval: std::time::Duration) -> Result<Flow, Closed> {
        let mut tick = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        tick.set_missed_tick_behavior(MissedTickBehavior::Delay);
        // With no live receiver, the session's deletion is seen here: its
        // info's sender goes with it (a local session's actor, a stand-in
        // the directory dropped), and a deleted running session's info
        // still says running.
        let mut info = self.handle.watch_info();
        loop {
            tokio::select! {
                _ = tick.tick() => {}
                changed = info.changed() => {
                    if changed.is_err() {
                        self.detached().await?;
                        return Ok(Flow::Ended);
                    }
                    // The end is told at once: a delete that follows soon
                    // closes the info before the next tick, and the
                    // attachment would end with no `session.exit`. An
                    // unseen value is still `Ok` after its sender went, so
                    // an end and a delete that both came first are told.
                    if self.handle.is_running() {
                        continue;
                    }
                }
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
            // A resize the client lacks, learned before the output is sent,
            // is told at its place in it (with no receiver, no event comes).
            self.learn_last_resize().await;
            if end > self.next {
                self.coalesce = true;
                let filled = self.fill(end).await;
                self.coalesce = false;
                filled?;
            }
            self.tell_due().await?;
            self.place_size().await?;
            if !running {
                let info = Arc::new(self.handle.info());
                self.fill(info.output_offset).await?;
                self.finish(&info).await?;
                return Ok(Flow::Ended);
            }
        }
    }

    /// After an update's output: a resize that landed while it was sent is
    /// learned again and told at its place if reached, or left pending.
    /// A size with no resize at or past `next` to place it (its resize is
    /// behind `next`, its event dropped with the live receiver, or a
    /// cluster stand-in knows it only from the directory's records) is told
    /// now, as the best place known. The size is read before the last
    /// resize is asked: a resize landing between them is seen at or past
    /// `next` and waits, instead of being told before its place for good
    /// (the next update would find the size told and never fix it). When
    /// that last resize is the client's size, the size is read again and
    /// told now only if no output came past `next`.
    async fn place_size(&mut self) -> Result<(), Closed> {
        self.learn_last_resize().await;
        self.tell_due().await?;
        let size = self.handle.size();
        if !self.pending_resizes.is_empty() || size == self.told_size {
            return Ok(());
        }
        match self.handle.last_resize().await {
            Ok(Some(last)) if !resize::tell_unplaced(Some(last), self.next) => {
                resize::learn(&mut self.pending_resizes, self.told_size, self.next, size, last);
                if self.pending_resizes.is_empty() {
                    // That last resize is the size the client has, so the
                    // size read came from a resize since (back to the
                    // client's size, and maybe on again), or from a
                    // stand-in whose reader stopped, which knows the size
                    // from the directory's records, with no resize to
                    // place it at. Told now only with no output past
                    // `next` (read after the size: a session publishes its
                    // output's end before a later resize's size), so that
                    // nothing drawn at the old size can follow it; else a
                    // later update learns a resize at its place, or finds
                    // the stale one behind `next` and tells the size then.
                    let now = self.handle.size();
                    if now != self.told_size && self.handle.output_offset() <= self.next {
                        return self.resized(now.0, now.1).await;
                    }
                }
                // One pending at `next` is told now, not an update later.
                self.tell_due().await
            }
            // No place ahead; or the session could not answer (deleted, a
            // node gone): as before, the size is told after the output.
            _ => self.resized(size.0, size.1).await,
        }
    }

    /// Subscribes again from `next` and sends what is missing up to the
    /// live events; `None` when the log ended or the session is gone.
    async fn resubscribe(&mut self) -> Result<Option<crate::session::log_events::Receiver>, Closed> {
        let Ok(sub) = self.handle.subscribe(self.next).await else {
            self.detached().await?;
            return Ok(None);
        };
        // The last resize is at or past `next`; see `tell_on_refocus` for
        // which is told. `ahead` is read after the size, as in `place_size`.
        let (size, eventual, next) = (self.handle.size(), self.eventual_size(), self.next);
        let ahead = self.handle.output_offset() > next;
        let last_resize = sub
            .last_resize
            .filter(|&last| resize::tell_on_refocus(last, next, eventual, size, ahead));
        if last_resize.is_none() {
            self.missed_resize().await?;
        }
        self.replay(sub.backlog, sub.end, last_resize).await?;
        if let Some(ended) = sub.ended {
            self.finish(&ended).await?;
            return Ok(None);
        }
        Ok(Some(sub.live))
    }

    /// Before a replay that crosses no resize: tells a resize from before
    /// `next` that the client missed (its event dropped with the live
    /// receiver when focus went), since the output replayed from `next`
    /// was drawn at it. Only when the session's last resize confirms it:
    /// before `next`, to the session's size. A cluster stand-in whose
    /// reader stopped while it had no receivers has a size from the
    /// directory's records and a last resize that predates it; the new
    /// subscription restarts the reader, which reads the resize's entry and
    /// sends its event, told at its place. Told here too, it would come
    /// before the output drawn at the old size, then again live.
    async fn missed_resize(&mut self) -> Result<(), Closed> {
        let size = self.handle.size();
        if !self.is_pty() || size == self.eventual_size() {
            return Ok(());
        }
        match self.handle.last_resize().await {
            Ok(Some((at, cols, rows))) if at < self.next && (cols, rows) == size => self.resized(cols, rows).await,
            _ => Ok(()),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::sync::Arc;
    use std::time::Duration;

    use termstream_proto::{ProjectId, SessionId};

    use super::FocusTrack;
    use crate::focus::store::FocusStore;
    use crate::focus::tests::Stops;
    use crate::focus::{CHANGE_QUEUE, Focus};

    /// A track of session `a` of project `p`, focused (version 1 of a
    /// store with read stops), with the store's directory (kept while used).
    async fn focused_track() -> (
        tempfile::TempDir,
        ProjectId,
        SessionId,
        Arc<Stops>,
        Arc<Focus>,
        FocusTrack,
    ) {
        let dir = tempfile::tempdir().expect("tempdir");
        let (p, a) = (ProjectId::new("p").unwrap(), SessionId::new("a").unwrap());
        let (stops, registry) = Stops::seeded(dir.path(), &p, std::slice::from_ref(&a)).await;
        let focus = Focus::new(stops.clone(), registry);
        let track = FocusTrack::new(focus.clone(), p.clone(), a.clone()).await;
        assert!(track.focused);
        (dir, p, a, stops, focus, track)
    }

    /// The broadcast lags past the change that unfocused the session, and
    /// the `select!` around [`FocusTrack::changed`] drops it while it reads
    /// the state (live output won the race). The next call must still read
    /// the state and answer the change; it used to wait for the project's
    /// next change, so a hidden terminal stayed on the full stream.
    #[tokio::test]
    async fn a_lag_is_not_forgotten_when_the_read_after_it_is_cancelled() {
        let (_dir, p, a, stops, focus, mut track) = focused_track().await;

        // `a` loses focus (made in the store, as another node would, so the
        // state is read from the store), then more changes of another
        // project than the broadcast holds push that change out of it.
        let blurred = stops.compare_and_set(&p, 1, Vec::new()).await.unwrap().unwrap();
        focus.emit(&p, Some(&a), false, &blurred);
        let other = ProjectId::new("other").unwrap();
        let state = crate::focus::store::FocusState::default();
        for _ in 0..CHANGE_QUEUE + 8 {
            focus.emit(&other, None, false, &state);
        }
        // The first wait sees the lag, reads the state, and is dropped
        // while the read is stopped.
        let go = stops.stop_next_read().await;
        let first = tokio::time::timeout(Duration::from_millis(100), track.changed()).await;
        assert!(first.is_err(), "the read was stopped, so no answer yet");
        drop(go);
        let next = tokio::time::timeout(Duration::from_secs(5), track.changed()).await;
        assert_eq!(next.ok(), Some(false), "the change behind the lag was forgotten");
        assert!(!track.focused);
    }

    /// [`FocusTrack::take_made`] answers a change already made without
    /// waiting, ignores other projects' changes, answers nothing when none
    /// was made (the live wait's per-event check), and after a lag of the
    /// broadcast reads the state.
    #[tokio::test]
    async fn a_change_made_is_taken_without_waiting() {
        let (_dir, p, a, stops, focus, mut track) = focused_track().await;
        assert_eq!(track.take_made().await, None, "nothing made");

        let other = ProjectId::new("other").unwrap();
        let state = crate::focus::store::FocusState::default();
        focus.emit(&other, None, false, &state);
        assert_eq!(track.take_made().await, None, "another project's change");

        let blurred = stops.compare_and_set(&p, 1, Vec::new()).await.unwrap().unwrap();
        focus.emit(&p, Some(&a), false, &blurred);
        assert_eq!(track.take_made().await, Some(false), "the blur");
        assert!(!track.focused);
        assert_eq!(track.take_made().await, None, "taken once");

        // Focused again in the store, its change pushed out of the
        // broadcast by other projects' changes: the state is read.
        stops.compare_and_set(&p, 2, vec![a.clone()]).await.unwrap().unwrap();
        for _ in 0..CHANGE_QUEUE + 8 {
            focus.emit(&other, None, false, &state);
        }
        let taken = tokio::time::timeout(Duration::from_secs(5), track.take_made()).await;
        assert_eq!(taken.ok(), Some(Some(true)), "the change behind the lag");
        assert!(track.focused);
    }
}
