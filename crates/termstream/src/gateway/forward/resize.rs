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
//! it supersedes). One behind `next` is told only when the client would
//! otherwise miss the session's size, and then settles those pending at or
//! before `next` ([`take_late`]). So a resize whose event was not lost after all is told
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
            learn(
                &mut self.pending_resizes,
                self.told_size,
                self.next,
                self.handle.size(),
                resize,
            );
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
        free_if_empty(&mut self.pending_resizes);
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
/// not otherwise reach its size: it differs from the size the client has
/// once the pending ones are told (`told`, when none is). One at or past
/// `next` waits for its place. One behind `next` is kept at `next`, told
/// before the next byte (or when the live queue is empty, or at the end),
/// but only when it is the session's size `now`: then its event was lost
/// (a lag, a dropped receiver) and the client would stay at an older size.
/// One behind `next` at another size is older than the session's size,
/// and a newer resize will be learned or told.
pub(super) fn learn(pending: &mut Vec<Resize>, told: (u16, u16), next: u64, now: (u16, u16), resize: Resize) {
    let (at, cols, rows) = resize;
    let eventual = pending.last().map_or(told, |&(_, c, r)| (c, r));
    if (cols, rows) == eventual {
        return;
    }
    if at >= next {
        keep(pending, resize);
    } else if (cols, rows) == now {
        keep(pending, (next, cols, rows));
    }
}

/// The most resizes kept pending. Each lag or update adds at most one, so
/// the list stays short unless the client is far behind through many
/// lags; past this, the oldest are dropped (their output is drawn at the
/// size the client has), so a forwarder holds a few dozen bytes at most.
pub(super) const MAX_PENDING: usize = 4;

/// Keeps `resize` pending after the older ones. One pending at the same
/// offset is older (learned before it), and replaced; one older than the
/// last pending is stale (a re-read), and ignored. Past [`MAX_PENDING`]
/// the oldest is dropped.
pub(super) fn keep(pending: &mut Vec<Resize>, resize: Resize) {
    match pending.last_mut() {
        Some(last) if last.0 == resize.0 => *last = resize,
        Some(last) if last.0 > resize.0 => {}
        _ => {
            if pending.len() >= MAX_PENDING {
                pending.remove(0);
            }
            pending.push(resize);
        }
    }
}

/// Whether a live resize to `size` whose offset is behind `next` is told.
/// Its output went already (a fill read past it, or a cluster stand-in
/// read its entry again), so it cannot be told at its place; told anyway
/// it could take the client back to an older size. It is told only when
/// the client would not otherwise reach it (`eventual`, the size the
/// client has once its pending resizes are told) and it is the session's
/// size `now`: then its output was drawn at it, and no later event will
/// carry it.
pub(super) fn tell_late(size: (u16, u16), eventual: (u16, u16), now: (u16, u16)) -> bool {
    size != eventual && size == now
}

/// A live resize behind `next`: whether to tell it now ([`tell_late`],
/// with `told` the size the client was last told). When it is told, the
/// pending ones at or before `next` go: a resize kept at `next` from an
/// older last resize (learned after a lag, before the re-read reached this
/// newer one) would otherwise be told after it and leave the client at
/// the older size.
pub(super) fn take_late(
    pending: &mut Vec<Resize>,
    told: (u16, u16),
    next: u64,
    now: (u16, u16),
    size: (u16, u16),
) -> bool {
    let eventual = pending.last().map_or(told, |&(_, c, r)| (c, r));
    if !tell_late(size, eventual, now) {
        return false;
    }
    settle_through(pending, next);
    true
}

/// Whether an unfocused update, with no resize pending and the session's
/// size not the one the client was told, tells that size at once, after
/// its output. Only when the session's last resize (`last`, asked after
/// the size was read) is behind `next` or unknown (a cluster stand-in
/// that knows the size only from the directory's records): no place in
/// the output is left for it. One at or past `next` landed after the
/// update's first look: it is kept pending and told at its place by a
/// later update, since telling it now would put it before the bytes
/// drawn at the old size, for good.
pub(super) fn tell_unplaced(last: Option<Resize>, next: u64) -> bool {
    last.is_none_or(|(at, ..)| at < next)
}

/// Whether a refocus tells the new subscription's last resize (at or past
/// `next`): not one the client will have (`eventual`); one past `next`, at
/// its place; one at `next` that is no longer the session's `size` (a
/// stand-in's stale one: a newer one's event or record follows) only with
/// output past `next` (`ahead`, read after the size), as bytes may be
/// drawn at it before the newer resize. With the newer one at `next` too,
/// the client gets this size, then at once the newer, no bytes between.
pub(super) fn tell_on_refocus(last: Resize, next: u64, eventual: (u16, u16), size: (u16, u16), ahead: bool) -> bool {
    let (at, c, r) = last;
    (c, r) != eventual && (at > next || (c, r) == size || ahead)
}

/// Drops the pending resizes at or before `offset`, where the client is
/// told a size another way: a live resize there is the pending one or
/// newer, and a screen (`terminal.restore`) carries the size of its time.
pub(super) fn settle_through(pending: &mut Vec<Resize>, offset: u64) {
    pending.retain(|&(at, ..)| at > offset);
    free_if_empty(pending);
}

/// Frees an emptied list's buffer: pending resizes are rare, and every idle
/// forwarder would otherwise keep one.
pub(super) fn free_if_empty(pending: &mut Vec<Resize>) {
    if pending.is_empty() {
        *pending = Vec::new();
    }
}

/// A step of sending contiguous chunks with resizes pending among them.
#[derive(Debug)]
pub(super) enum Piece {
    /// Chunks to send, with no pending resize among them.
    Run(Vec<Chunk>),
    /// Tell the first pending resize.
    Tell,
}

/// Cuts contiguous `chunks`, sent from `next`, at each `pending` resize
/// they reach: the bytes before it, the resize, the bytes from it on. A
/// resize no byte past `next` reaches stays pending (the pieces end
/// there), so it is told before the first byte that does, later.
pub(super) fn interleave(mut chunks: Vec<Chunk>, pending: &[Resize], mut next: u64) -> Vec<Piece> {
    let mut pieces = Vec::new();
    for &(at, ..) in pending {
        let from_at = split_at(&mut chunks, at);
        if !from_at.iter().any(|c| c.end() > next) {
            break;
        }
        if let Some(end) = chunks.last().map(Chunk::end) {
            next = next.max(end);
        }
        pieces.push(Piece::Run(std::mem::take(&mut chunks)));
        pieces.push(Piece::Tell);
        chunks = from_at;
    }
    pieces.push(Piece::Run(chunks));
    pieces
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

    use super::{
        Chunk, MAX_PENDING, Piece, interleave, keep, learn, settle_through, split_at, take_late, tell_late,
        tell_on_refocus, tell_unplaced,
    };

    /// The client was told 80×24 (A), the session went to 100×30 (B) at
    /// 1000, then to 120×40 (C) at 2000; a lag lost only output before
    /// 1000, so both resizes' events are still queued. The lag learns C;
    /// B's live event is told at its place and leaves C pending; C's live
    /// event settles it. The first fix told C at 2000 and dropped B.
    #[test]
    fn resizes_still_queued_keep_their_order() {
        let a = (80, 24);
        let mut pending = Vec::new();
        learn(&mut pending, a, 500, (120, 40), (2000, 120, 40));
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
        let now = (90, 20);
        let mut pending = Vec::new();
        learn(&mut pending, a, 500, now, (400, 100, 30));
        assert!(pending.is_empty(), "behind the client, not the session's size");
        learn(&mut pending, a, 500, now, (600, 80, 24));
        assert!(pending.is_empty(), "the size the client has");
        learn(&mut pending, a, 500, now, (500, 100, 30));
        assert_eq!(pending, vec![(500, 100, 30)], "exactly at next");
        learn(&mut pending, a, 500, now, (500, 100, 30));
        assert_eq!(pending, vec![(500, 100, 30)], "learned twice");
        learn(&mut pending, a, 500, now, (900, 80, 24));
        assert_eq!(pending, vec![(500, 100, 30), (900, 80, 24)], "back to 80x24");
        learn(&mut pending, a, 500, now, (900, 90, 20));
        assert_eq!(pending, vec![(500, 100, 30), (900, 90, 20)], "newer at the same offset");
    }

    /// The cluster case of the review: the client was told B by a
    /// stand-in's re-read, C's event was lost in a lag, and the lag learns
    /// C at an offset behind `next` (the entry was read again). C is the
    /// session's size: kept at `next`, or the client stays at B. Learned
    /// again, it is not kept twice; one behind `next` at another size than
    /// the session's is older, and dropped.
    #[test]
    fn a_last_resize_behind_next_at_the_sessions_size_is_kept_at_next() {
        let (b, c) = ((100, 30), (120, 40));
        let mut pending = Vec::new();
        learn(&mut pending, b, 5000, c, (2000, 120, 40));
        assert_eq!(pending, vec![(5000, 120, 40)], "told before the next byte");
        learn(&mut pending, b, 5000, c, (2000, 120, 40));
        assert_eq!(pending, vec![(5000, 120, 40)], "the client will have it");
        let mut pending = Vec::new();
        learn(&mut pending, b, 5000, (90, 20), (2000, 120, 40));
        assert!(pending.is_empty(), "not the session's size: a newer resize comes");
    }

    /// A live resize behind `next` is told only when it is the session's
    /// size and the client would not otherwise have it: the old B read
    /// again by a stand-in is not told over C.
    #[test]
    fn a_late_live_resize_is_told_only_when_the_client_lacks_the_sessions_size() {
        let (b, c) = ((100, 30), (120, 40));
        assert!(!tell_late(b, c, c), "an old size told again would stick");
        assert!(!tell_late(c, c, c), "the client has it, or will");
        assert!(tell_late(c, b, c), "lost otherwise");
        assert!(!tell_late(b, (80, 24), c), "not the session's size");
    }

    /// A lag learned D (behind `next`, the session's size then: kept at
    /// `next`); the re-read then gives C, newer, the session's size now,
    /// also behind `next`. C is told and D no longer pending: the client
    /// ends at C.
    #[test]
    fn a_late_resize_told_drops_an_older_one_kept_at_next() {
        let (a, c, d) = ((80, 24), (120, 40), (100, 30));
        let mut pending = Vec::new();
        learn(&mut pending, a, 5000, d, (4000, d.0, d.1));
        assert_eq!(pending, vec![(5000, d.0, d.1)]);
        assert!(take_late(&mut pending, a, 5000, c, c));
        assert!(pending.is_empty(), "D would be told after C");
        // Not the session's size: not told, nothing dropped.
        let mut pending = vec![(5000, d.0, d.1)];
        assert!(!take_late(&mut pending, a, 5000, d, c));
        assert_eq!(pending, vec![(5000, d.0, d.1)]);
    }

    /// The unfocused fallback tells the size at once only when its resize
    /// is behind `next` or unknown.
    #[test]
    fn an_unplaced_size_is_told_at_once_only_without_a_place_ahead() {
        assert!(tell_unplaced(None, 500), "a stand-in's size from the records");
        assert!(tell_unplaced(Some((400, 100, 30)), 500), "behind the client");
        assert!(!tell_unplaced(Some((500, 100, 30)), 500), "at its place: pending");
        assert!(!tell_unplaced(Some((700, 100, 30)), 500), "landed after the look");
    }

    /// `keep`: the same offset replaces, a newer one is pushed, an older
    /// one (a re-read) is ignored; past the cap the oldest goes.
    #[test]
    fn keep_orders_by_offset_and_is_bounded() {
        let mut pending = vec![(500, 100, 30)];
        keep(&mut pending, (500, 90, 20));
        assert_eq!(pending, vec![(500, 90, 20)], "same offset");
        keep(&mut pending, (400, 120, 40));
        assert_eq!(pending, vec![(500, 90, 20)], "older");
        keep(&mut pending, (600, 120, 40));
        assert_eq!(pending, vec![(500, 90, 20), (600, 120, 40)], "newer");
        for at in 700..700 + MAX_PENDING as u64 {
            keep(&mut pending, (at, 80, 24));
        }
        assert_eq!(pending.len(), MAX_PENDING);
        assert_eq!(pending[0].0, 700, "the oldest (500, 600) dropped");
        assert_eq!(pending[MAX_PENDING - 1].0, 700 + MAX_PENDING as u64 - 1);
        settle_through(&mut pending, u64::MAX);
        assert_eq!(pending.capacity(), 0, "an empty list holds no buffer");
    }

    /// What each piece holds: (offset, bytes) of each chunk, or `T`.
    fn pieces(ps: &[Piece]) -> Vec<String> {
        ps.iter()
            .map(|p| match p {
                Piece::Run(cs) => cs
                    .iter()
                    .map(|c| format!("{}:{}", c.offset, String::from_utf8_lossy(&c.data)))
                    .collect::<Vec<_>>()
                    .join(","),
                Piece::Tell => "T".into(),
            })
            .collect()
    }

    /// Two pending resizes inside one batch: each is told between the
    /// bytes before it and those from it on.
    #[test]
    fn two_pending_resizes_in_one_batch_are_each_told_at_their_place() {
        let chunks = vec![chunk(10, b"abc"), chunk(13, b"defg")];
        let ps = interleave(chunks, &[(12, 100, 30), (15, 120, 40)], 10);
        assert_eq!(pieces(&ps), ["10:ab", "T", "12:c,13:de", "T", "15:fg"]);
    }

    /// A pending resize the batch does not reach (its place is at or past
    /// the batch's end) stays pending: the pieces end before it, with no
    /// tell. One the batch reaches is told, the next one stays.
    #[test]
    fn a_pending_resize_past_the_batch_stays_pending() {
        let ps = interleave(vec![chunk(10, b"abc")], &[(13, 100, 30)], 10);
        assert_eq!(pieces(&ps), ["10:abc"], "at the end: told before the next byte");
        let ps = interleave(vec![chunk(10, b"abc")], &[(11, 100, 30), (20, 120, 40)], 10);
        assert_eq!(pieces(&ps), ["10:a", "T", "11:bc"]);
        let ps = interleave(vec![chunk(10, b"abc")], &[(30, 100, 30)], 10);
        assert_eq!(pieces(&ps), ["10:abc"]);
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

    /// The client has 80×24 and is at 500; the subscription's last resize
    /// is 90×28 at 500, the session is now 100×30 (a newer resize the
    /// stand-in knows from a record). Told only with output past 500.
    #[test]
    fn a_refocus_tells_a_stale_last_resize_only_with_output_ahead() {
        let (had, stale, now) = ((80, 24), (90, 28), (100, 30));
        assert!(
            tell_on_refocus((500, 90, 28), 500, had, now, true),
            "bytes may be drawn at it"
        );
        assert!(
            !tell_on_refocus((500, 90, 28), 500, had, now, false),
            "the newer one is at 500 too"
        );
        assert!(
            tell_on_refocus((500, 90, 28), 500, had, stale, false),
            "the session's size"
        );
        assert!(
            tell_on_refocus((700, 90, 28), 500, had, now, false),
            "at its place, ahead"
        );
        assert!(
            !tell_on_refocus((700, 90, 28), 500, stale, now, true),
            "the client will have it"
        );
    }
}
