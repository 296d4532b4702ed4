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
    /// learn the session's last resize, whose event the lag may have taken:
    /// the ring and disk hold no resize. It is kept pending and told at its
    /// place (`resize.rs`), not now: the output before it was drawn at the
    /// old size, and older resizes' events may still be queued.
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
        self.learn_last_resize().await;
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
        // The screen is drawn at the size of its time, past any resize
        // pending before it.
        super::resize::settle_through(&mut self.pending_resizes, snap.offset);
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
        self.account_sent();
        Ok(())
    }

    /// Sends a subscription's backlog (up to `end`) after `next`. The
    /// session's last resize, when the replay crosses it, went out before
    /// the subscription (between an attach's snapshot and it, while a
    /// resuming client was away, or while a focus-aware one was not
    /// following): it is told at its place, or the client would draw what
    /// follows at the old size. A fill that stops short of it leaves it
    /// pending until the bytes before it went.
    pub(super) async fn replay(
        &mut self,
        backlog: RingRead,
        end: u64,
        last_resize: Option<(u64, u16, u16)>,
    ) -> Result<(), Closed> {
        if let Some(resize) = last_resize.filter(|&(at, ..)| at >= self.next) {
            super::resize::keep(&mut self.pending_resizes, resize);
        }
        match backlog {
            RingRead::Held(chunks) => self.send_chunks(chunks).await?,
            RingRead::Evicted { .. } | RingRead::Future { .. } => self.fill(end).await?,
        }
        // Its event came before the subscription: none will tell it.
        self.tell_due().await
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
