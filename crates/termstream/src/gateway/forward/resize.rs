//! Resizes the forwarder learns of without their live event: the session's
//! last resize, answered by a subscription (a replay) or asked after a lag
//! or while unfocused. Each is kept pending, with its offset, and told
//! just before the first byte at or past that offset goes out: all output
//! passes through `send_chunks`, which splits there. So the client reads
//! every resize after the bytes drawn at the old size and before those
//! drawn at the new one, whichever way the bytes come (a replay, a fill
//! that stopped short and resumed later, the next live chunk).
//!
//! A live `Resized` still tells its resize at its place; it also settles
//! every pending resize at or before its offset (its own, or an older one
//! it supersedes). So a resize whose event was not lost after all is told
//! once, and resizes still queued keep their order. A pending resize is
//! told without a byte after it only where no live event can come for it:
//! after a replay (the subscription came after the event), while
//! unfocused (no receiver), at the end, or when the live queue is empty
//! (its event, sent before the session answered, was lost).
//!
//! Only the session's last resize can be asked: of several whose events
//! one lag lost, the client is told the last, and draws the output
//! between them at the size it had.

use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::{Closed, Forwarder};
use crate::session::LogEvent;
use crate::session::log::Chunk;

/// A resize: log offset, cols, rows.
pub(super) type Resize = (u64, u16, u16);

impl Forwarder {
    /// The size the client has once it has read every pending resize.
    pub(super) fn eventual_size(&self) -> (u16, u16) {
        self.pending_resizes.last().map_or(self.told_size, |&(_, c, r)| (c, r))
    }

    /// Asks the session for its last resize and keeps it pending when the
    /// client lacks it (see [`learn`]). Asked only when the session's size
    /// differs from the one the client will have: the size is published
    /// before the resize's event is sent, so an equal size means no resize
    /// the client lacks is known.
    pub(super) async fn learn_last_resize(&mut self) {
        if !self.is_pty() || self.handle.size() == self.eventual_size() {
            return;
        }
        if let Ok(Some(resize)) = self.handle.last_resize().await {
            learn(&mut self.pending_resizes, self.told_size, self.next, resize);
        }
    }

    /// Tells the first pending resize. Even to the size the client was
    /// told: `session.attached` gives the session's size now, and a resume
    /// replays the output from before a resize to it, which still needs
    /// its `session.resized` at its place.
    pub(super) async fn tell_pending(&mut self) -> Result<(), Closed> {
        if self.pending_resizes.is_empty() {
            return Ok(());
        }
        let (_, cols, rows) = self.pending_resizes.remove(0);
        self.resized(cols, rows).await
    }

    /// Tells every pending resize whose place the client has reached. Only
    /// where no live event can tell it (see the module's comment).
    pub(super) async fn tell_due(&mut self) -> Result<(), Closed> {
        while self.resize_due() {
            self.tell_pending().await?;
        }
        Ok(())
    }

    /// Whether the client reached a pending resize's place.
    pub(super) fn resize_due(&self) -> bool {
        self.pending_resizes.first().is_some_and(|&(at, ..)| at <= self.next)
    }

    /// Before the forwarder waits for a live event: when a pending resize's
    /// place is reached, takes the next event if one is queued (it may be
    /// the resize's own), or, the queue being empty, tells the resize: its
    /// event was sent before the session answered, so it was lost.
    pub(super) async fn before_wait(
        &mut self,
        live: &mut crate::session::log_events::Receiver,
    ) -> Result<Option<Result<LogEvent, RecvError>>, Closed> {
        if !self.resize_due() {
            return Ok(None);
        }
        match live.try_recv() {
            Ok(ev) => Ok(Some(Ok(ev))),
            Err(TryRecvError::Lagged(n)) => Ok(Some(Err(RecvError::Lagged(n)))),
            Err(TryRecvError::Closed) => Ok(Some(Err(RecvError::Closed))),
            Err(TryRecvError::Empty) => self.tell_due().await.map(|()| None),
        }
    }
}

/// Keeps `resize`, the session's last resize, pending when the client will
/// not otherwise reach its size: it is at or past `next` (an older one is
/// behind the client, which a snapshot or an earlier tell covered) and
/// differs from the size the client has once the pending ones are told
/// (`told`, when none is).
pub(super) fn learn(pending: &mut Vec<Resize>, told: (u16, u16), next: u64, resize: Resize) {
    let (at, cols, rows) = resize;
    let eventual = pending.last().map_or(told, |&(_, c, r)| (c, r));
    if at < next || (cols, rows) == eventual {
        return;
    }
    keep(pending, resize);
}

/// Keeps `resize`, the session's last resize, pending after the older ones;
/// one pending at the same offset is older, and replaced.
pub(super) fn keep(pending: &mut Vec<Resize>, resize: Resize) {
    match pending.last_mut() {
        Some(last) if last.0 >= resize.0 => *last = resize,
        _ => pending.push(resize),
    }
}

/// Drops the pending resizes at or before `offset`, where the client is
/// told a size another way: a live resize there is the pending one or
/// newer, and a screen (`terminal.restore`) carries the size of its time.
pub(super) fn settle_through(pending: &mut Vec<Resize>, offset: u64) {
    pending.retain(|&(at, ..)| at > offset);
}

/// Splits contiguous `chunks` at `at`: they keep the bytes before it, and
/// the bytes from it on are returned.
pub(super) fn split_at(chunks: &mut Vec<Chunk>, at: u64) -> Vec<Chunk> {
    let i = chunks.iter().position(|c| c.end() > at).unwrap_or(chunks.len());
    let mut after = chunks.split_off(i);
    if let Some(first) = after.first_mut()
        && first.offset < at
    {
        let keep = (at - first.offset) as usize;
        chunks.push(Chunk {
            data: first.data.slice(..keep),
            // The frame holds the whole chunk, which this part is not.
            wire: None,
            ..first.clone()
        });
        *first = first.from_offset(at);
    }
    after
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use termstream_proto::Stream;

    use super::{Chunk, learn, settle_through, split_at};

    /// The client was told 80×24 (A), the session went to 100×30 (B) at
    /// 1000, then to 120×40 (C) at 2000; a lag lost only output before
    /// 1000, so both resizes' events are still queued. The lag learns C;
    /// B's live event is told at its place and leaves C pending; C's live
    /// event settles it. The first fix told C at 2000 and dropped B.
    #[test]
    fn resizes_still_queued_keep_their_order() {
        let a = (80, 24);
        let mut pending = Vec::new();
        learn(&mut pending, a, 500, (2000, 120, 40));
        assert_eq!(pending, vec![(2000, 120, 40)]);
        settle_through(&mut pending, 1000);
        assert_eq!(pending, vec![(2000, 120, 40)], "B's event leaves C pending");
        settle_through(&mut pending, 2000);
        assert!(pending.is_empty(), "C's own event settles it");
    }

    /// What is kept pending: a resize at or past `next` that changes the
    /// size the client ends with; after a second lag, the newer one too
    /// (in offset order), so a resize back to the told size is not lost.
    #[test]
    fn a_resize_is_kept_when_the_client_would_not_reach_its_size() {
        let a = (80, 24);
        let mut pending = Vec::new();
        learn(&mut pending, a, 500, (400, 100, 30));
        assert!(pending.is_empty(), "behind the client");
        learn(&mut pending, a, 500, (600, 80, 24));
        assert!(pending.is_empty(), "the size the client has");
        learn(&mut pending, a, 500, (500, 100, 30));
        assert_eq!(pending, vec![(500, 100, 30)], "exactly at next");
        learn(&mut pending, a, 500, (500, 100, 30));
        assert_eq!(pending, vec![(500, 100, 30)], "learned twice");
        learn(&mut pending, a, 500, (900, 80, 24));
        assert_eq!(pending, vec![(500, 100, 30), (900, 80, 24)], "back to 80x24");
        learn(&mut pending, a, 500, (900, 90, 20));
        assert_eq!(pending, vec![(500, 100, 30), (900, 90, 20)], "newer at the same offset");
    }

    fn chunk(offset: u64, data: &'static [u8]) -> Chunk {
        Chunk {
            offset,
            stream: Stream::Stdout,
            time_ms: 0,
            read_at: None,
            data: Bytes::from_static(data),
            wire: None,
        }
    }

    #[test]
    fn chunks_split_at_an_offset() {
        let mut chunks = vec![chunk(10, b"abc"), chunk(13, b"defg"), chunk(17, b"h")];
        let after = split_at(&mut chunks, 15);
        let offsets = |cs: &[Chunk]| cs.iter().map(|c| (c.offset, c.data.clone())).collect::<Vec<_>>();
        assert_eq!(
            offsets(&chunks),
            vec![(10, Bytes::from_static(b"abc")), (13, Bytes::from_static(b"de"))]
        );
        assert_eq!(
            offsets(&after),
            vec![(15, Bytes::from_static(b"fg")), (17, Bytes::from_static(b"h"))]
        );
        let mut chunks = vec![chunk(10, b"abc")];
        assert!(split_at(&mut chunks, 13).is_empty(), "at the end");
        let mut chunks = vec![chunk(10, b"abc")];
        assert_eq!(split_at(&mut chunks, 5).len(), 1, "before the start");
        assert!(chunks.is_empty());
    }
}
