//! Catching up by offset: what an attach replays, the holes a lagging
//! forwarder fills from the ring or disk, and the gaps it announces
//! instead (a snapshot for a pty client too far behind, output no longer
//! held).

use termstream_proto::ws::GapReason;

use super::{Closed, Forwarder, READ_PAGE};
use crate::gateway::render::OutEvent;
use crate::observe::metrics;
use crate::session::SessionError;
use crate::session::log::RingRead;

impl Forwarder {
    /// The earliest offset held, when output from `offset` is no longer
    /// held anywhere (deleted from disk by retention).
    pub(super) async fn gone_before(&self, offset: u64) -> Option<u64> {
        match self.handle.read(offset, 1).await {
            Err(SessionError::Gone { earliest }) => Some(earliest),
            _ => None,
        }
    }

    /// The broadcast moved on without us: decide between replaying the
    /// missed bytes (next events will trigger `fill`) and a snapshot, then
    /// tell a resize whose event the lag may have taken.
    pub(super) async fn fell_behind(&mut self) -> Result<(), Closed> {
        let end = self.handle.output_offset();
        if !self.is_pty() || end.saturating_sub(self.next) <= self.max_replay {
            metrics::catchup("replay");
            tracing::debug!(session = %self.id, from = self.next, to = end, "resync by replay");
        } else {
            metrics::catchup("snapshot");
            tracing::debug!(session = %self.id, from = self.next, to = end, "resync by snapshot");
            self.snapshot_gap(GapReason::SlowClient).await?;
        }
        self.lagged_resize().await
    }

    /// Tells the session's last resize at its place when it is at or past
    /// `next` and the client has another size: its event may have been
    /// among those the lag lost. Asked of the actor, not read from the
    /// info's size: the bytes before the resize were drawn at the old size,
    /// so the client must have them first. Sends the output up to it now
    /// (read by offset, as any fill: nothing is held for the client).
    async fn lagged_resize(&mut self) -> Result<(), Closed> {
        if !self.is_pty() {
            return Ok(());
        }
        let Ok(Some((at, cols, rows))) = self.handle.last_resize().await else {
            return Ok(());
        };
        if at < self.next || (cols, rows) == self.told_size {
            return Ok(());
        }
        self.fill(at).await?;
        // Past it (a snapshot instead of the bytes): the snapshot holds the
        // size already.
        if self.next <= at && (cols, rows) != self.told_size {
            self.resized(cols, rows).await?;
            self.caught_resize = Some((at, cols, rows));
        }
        Ok(())
    }

    /// Skips to a fresh snapshot, announcing the gap.
    pub(super) async fn snapshot_gap(&mut self, reason: GapReason) -> Result<(), Closed> {
        let snap = match self.handle.snapshot().await {
            Ok(s) => s,
            Err(_) => return Ok(()),
        };
        if snap.offset <= self.next {
            return Ok(());
        }
        self.skip_to(snap.offset, reason).await?;
        self.emit(OutEvent::Restore {
            session: &self.id,
            snapshot: &snap,
        })
        .await?;
        self.told_size = (snap.cols, snap.rows);
        Ok(())
    }

    /// Announces that output from `next` to `to` will not be sent, and goes
    /// on from `to`. Bytes held back for an incomplete UTF-8 sequence are
    /// part of the gap: `next` already counts them.
    pub(super) async fn skip_to(&mut self, to: u64, reason: GapReason) -> Result<(), Closed> {
        let held = self.carry.take().map_or(0, |(_, h)| h.len() as u64);
        self.emit(OutEvent::Gap {
            session: &self.id,
            from: self.next - held,
            to,
            reason,
        })
        .await?;
        self.next = to;
        Ok(())
    }

    /// Sends a subscription's backlog (up to `end`) after `next`. The
    /// session's last resize, when the replay crosses it, went out before
    /// the subscription (between an attach's snapshot and it, while a
    /// resuming client was away, or while a focus-aware one was not
    /// following): its event goes at its place, or the client would draw
    /// what follows at the old size.
    pub(super) async fn replay(
        &mut self,
        backlog: RingRead,
        end: u64,
        last_resize: Option<(u64, u16, u16)>,
    ) -> Result<(), Closed> {
        let resize = last_resize.filter(|&(at, ..)| at >= self.next);
        match backlog {
            RingRead::Held(chunks) => match resize {
                Some((at, cols, rows)) => {
                    let (before, after) = chunks.into_iter().partition(|c| c.offset < at);
                    self.send_chunks(before).await?;
                    self.resized(cols, rows).await?;
                    self.send_chunks(after).await
                }
                None => self.send_chunks(chunks).await,
            },
            RingRead::Evicted { .. } | RingRead::Future { .. } => {
                if let Some((at, cols, rows)) = resize {
                    self.fill(at).await?;
                    // Past it (a snapshot instead of the bytes): the
                    // snapshot holds the size already.
                    if self.next <= at {
                        self.resized(cols, rows).await?;
                    }
                }
                self.fill(end).await
            }
        }
    }

    /// Tells the client the session's window is now `cols` × `rows`.
    pub(super) async fn resized(&mut self, cols: u16, rows: u16) -> Result<(), Closed> {
        self.emit(OutEvent::Resized {
            session: &self.id,
            cols,
            rows,
        })
        .await?;
        self.told_size = (cols, rows);
        self.caught_resize = None;
        Ok(())
    }

    /// Sends the log from `next` up to `to`, read from the ring or disk.
    pub(super) async fn fill(&mut self, to: u64) -> Result<(), Closed> {
        while self.next < to {
            if self.is_pty() && self.handle.output_offset().saturating_sub(self.next) > self.max_replay {
                // Too far behind to replay: the screen says it better.
                self.snapshot_gap(GapReason::SlowClient).await?;
                if self.next >= to {
                    return Ok(());
                }
            }
            let want = ((to - self.next) as usize).min(READ_PAGE);
            match self.handle.read(self.next, want).await {
                Ok(chunks) if chunks.is_empty() => return Ok(()),
                Ok(chunks) => self.send_chunks(chunks).await?,
                Err(SessionError::Gone { earliest }) => {
                    if self.is_pty() {
                        self.snapshot_gap(GapReason::Evicted).await?;
                    }
                    if self.next < earliest {
                        self.skip_to(earliest, GapReason::Evicted).await?;
                    }
                }
                Err(SessionError::Closed(_)) => return Ok(()),
                Err(e) => {
                    tracing::warn!(session = %self.id, error = %e, "cannot read the log");
                    return Ok(());
                }
            }
        }
        Ok(())
    }
}

/// Whether a live `Resized` event (offset, cols, rows) tells nothing new
/// after `caught`, the resize a catch-up after a lag told at its place:
/// it is that resize (its event was not lost after all; then `caught` is
/// cleared), or an older one, whose place the client has passed. One at
/// the same offset but another size may be older or newer: it is told,
/// and the client ends at the right size either way.
pub(super) fn stale_resize(caught: &mut Option<(u64, u16, u16)>, event: (u64, u16, u16)) -> bool {
    let Some(told) = *caught else {
        return false;
    };
    if event == told {
        *caught = None;
        return true;
    }
    event.0 < told.0
}

#[cfg(test)]
mod tests {
    use super::stale_resize;

    /// The catch-up told 100×30 at 4096. The resize's own event, and any
    /// older one still queued, are not told again; a newer one is.
    #[test]
    fn a_resize_told_by_the_catch_up_is_not_told_again() {
        let mut caught = Some((4096, 100, 30));
        assert!(stale_resize(&mut caught, (1000, 90, 20)), "an older resize");
        assert!(stale_resize(&mut caught, (4096, 100, 30)), "the resize itself");
        assert_eq!(caught, None);
        assert!(!stale_resize(&mut caught, (4096, 100, 30)), "a later one, the same");

        let mut caught = Some((4096, 100, 30));
        assert!(!stale_resize(&mut caught, (5000, 120, 40)), "a newer resize");
        let mut caught = Some((4096, 100, 30));
        assert!(!stale_resize(&mut caught, (4096, 80, 24)), "at the same offset");
    }
}
