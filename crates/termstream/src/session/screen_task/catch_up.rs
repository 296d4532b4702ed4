//! How the screen task brings its model to the log's end: the catch-up
//! itself, with its exact skip over plain text ([`Scan`]), the scan ahead
//! of a flowing model that a later skip goes on from ([`Scanned`]), its
//! restart from the log's tail, and its feeding off the async workers
//! ([`feed_slices`]).

use std::collections::VecDeque;
use std::sync::atomic::Ordering;

use super::{
    FEED_SLICE, INLINE_FEED, MAX_LAG, Model, READ, READ_BACKGROUND, SCAN_AHEAD_MAX, SKIP_MIN, SKIPPING_LAG, ScreenTask,
    TAIL, TAIL_SCAN, UNWATCHED_LAG, Urgency, WAITED_MAX_LAG,
};
use crate::session::SessionError;
use crate::session::log::Chunk;
use crate::session::screen::{ScreenModel, is_plain, line_feeds, plain_prefix};

impl ScreenTask {
    /// Where a restarted model starts parsing: [`TAIL`] bytes before
    /// `target`, or later, just after the line feed that leaves a screen
    /// of `rows` and a scrollback's worth of lines to parse. A flood of
    /// short lines (`yes`) then costs a few KiB of parsing, not a million
    /// scrolls. `rows` is the caller's: one reading of the window for the
    /// whole decision, which a resize cannot change halfway.
    pub(super) async fn tail_start(&self, target: u64, rows: u16) -> u64 {
        self.tail_read(target, rows).await.0
    }

    /// [`tail_start`](Self::tail_start), and the output from there to
    /// `target` as it was read (at most [`TAIL`]) when it holds the lines
    /// that fill a screen and scrollback: not when it stopped at [`TAIL`]
    /// (lines that long may not fill them), nor when the log could not be
    /// read back that far or a read came back short.
    async fn tail_read(&self, target: u64, rows: u16) -> (u64, Option<Vec<Chunk>>) {
        let floor = target.saturating_sub(TAIL);
        let mut lines_left = usize::from(rows.max(1)) + self.scrollback;
        let mut end = target;
        // What was read, from the end back, and whether each read was whole.
        let mut pieces: Vec<Vec<Chunk>> = Vec::new();
        let mut whole = true;
        while end > floor {
            let start = end.saturating_sub(TAIL_SCAN as u64).max(floor);
            let chunks = match self.handle.read(start, (end - start) as usize).await {
                Ok(c) if !c.is_empty() => c,
                Err(SessionError::Gone { earliest }) => return (earliest.max(floor), None),
                _ => return (floor, None),
            };
            whole &= chunks.last().is_some_and(|c| c.end() == end);
            for (k, c) in chunks.iter().enumerate().rev() {
                for (i, _) in c.data.iter().enumerate().rev().filter(|&(_, &b)| b == b'\n') {
                    lines_left -= 1;
                    if lines_left == 0 {
                        let at = c.offset + i as u64 + 1;
                        if !whole {
                            return (at, None);
                        }
                        let mut tail = vec![c.from_offset(at)];
                        tail.extend_from_slice(&chunks[k + 1..]);
                        tail.extend(pieces.into_iter().rev().flatten());
                        return (at, Some(tail));
                    }
                }
            }
            pieces.push(chunks);
            end = start;
        }
        (floor, None)
    }

    /// Where a skip before `target` may end: just after the line feed that
    /// leaves the lines that fill a screen and scrollback before `target`,
    /// or, when a byte among them is not plain text, before the first such
    /// byte (counted back again from it, at most [`SKIP_POINT_TRIES`]
    /// times). Every line parsed after a skip then scrolls the screen as
    /// plain text does, which is what makes the skip exact whatever
    /// follows them: an escape sequence among them (the alternate screen,
    /// a cursor movement) could keep line feeds from scrolling, and leave
    /// rows of the skip in the scrollback.
    async fn skip_point(&self, target: u64, rows: u16) -> Option<u64> {
        let mut end = target;
        for _ in 0..SKIP_POINT_TRIES {
            let (to, tail) = self.tail_read(end, rows).await;
            match first_not_plain(&tail?) {
                None => return Some(to),
                Some(at) => end = at,
            }
        }
        None
    }

    /// The session's window, as a model has it.
    fn window(&self) -> (u16, u16) {
        let (cols, rows) = self.handle.size();
        (cols.max(1), rows.max(1))
    }

    /// Where a model at `self.offset` may skip to, exactly (see
    /// [`ScreenModel::skip_plain`]): the [`skip_point`](Self::skip_point)
    /// before `target`, when everything before it is plain text that holds
    /// at least `rows` line feeds and ends with CR LF. The scan runs where the urgency puts parsing. It goes on from
    /// what was [`Scanned`] from the model's offset already, when that
    /// ends at or before the new stopping point, and what it finds
    /// skippable replaces it. When the text after that is not plain, or
    /// the log cannot be read, the answer is the end of what was scanned
    /// before, if anything was.
    pub(super) async fn plain_until(&mut self, target: u64, rows: u16, urgency: Urgency) -> Option<u64> {
        let skippable = |s: &Scan| s.plain && s.line_feeds >= u64::from(rows) && s.last_two == *b"\r\n";
        let saved = self.scanned.filter(|s| s.from == self.offset && skippable(&s.scan));
        let fallback = saved.map(|s| s.to);
        let Some(to) = self.skip_point(target, rows).await else {
            return fallback;
        };
        if to < self.offset + SKIP_MIN / 2 {
            return fallback;
        }
        let (mut scan, mut at) = match saved {
            Some(s) if s.not_plain_after || s.to > to => return fallback,
            Some(s) => (s.scan, s.to),
            None => (Scan::default(), self.offset),
        };
        while at < to {
            let want = ((to - at) as usize).min(READ);
            let chunks = match self.handle.read(at, want).await {
                Ok(c) if !c.is_empty() => c,
                _ => return fallback,
            };
            at = chunks.last().map_or(at, Chunk::end).min(to);
            let (limit, mut s) = (to, scan);
            let step = move || {
                s.add(&chunks, limit);
                s
            };
            let scanned = match urgency {
                Urgency::Background => crate::session::background::spawn(step).await.ok(),
                Urgency::Waited => tokio::task::spawn_blocking(step).await.ok(),
            };
            let Some(next) = scanned else {
                return fallback;
            };
            scan = next;
            if !scan.plain {
                if let Some(s) = &mut self.scanned
                    && saved.is_some()
                {
                    s.not_plain_after = true;
                }
                return fallback;
            }
        }
        if !skippable(&scan) {
            return fallback;
        }
        self.scanned = Some(Scanned {
            from: self.offset,
            to,
            end: target,
            scan,
            not_plain_after: false,
        });
        Some(to)
    }

    /// How far the log is known to be plain text ahead of the model: the
    /// end of what was [`Scanned`], or the model's offset.
    pub(super) fn scanned_to(&self) -> u64 {
        self.scanned
            .filter(|s| s.from == self.offset)
            .map_or(self.offset, |s| s.to)
    }

    /// Where the log's end was when the model last caught up or scanned
    /// ahead, for pacing the next one. The model's offset while a resize
    /// waits: the catch-up then comes `follow_lag` after the model's
    /// offset (at once, when that far behind), not after the scan's end.
    pub(super) fn followed_to(&self) -> u64 {
        match self.scanned {
            Some(s) if s.from == self.offset && !self.resizes_wait() => s.end,
            _ => self.offset,
        }
    }

    /// Whether resizes wait to be applied, or some were lost.
    fn resizes_wait(&self) -> bool {
        !self.resizes.as_ref().is_some_and(VecDeque::is_empty) || self.bell.resize_lost.load(Ordering::Acquire)
    }

    /// While output flows to viewers: scans the plain text ahead of the
    /// model up to the last lines before `end`, without parsing it (a
    /// catch-up then skips it at once), and follows [`SKIPPING_LAG`]
    /// behind from then on. False when the model should catch up instead:
    /// it is not live, its parser is not at rest or its size not the
    /// window's, a resize waits or was lost, it is more than
    /// [`SCAN_AHEAD_MAX`] behind, or the scan got no further (the text is
    /// not plain, no line was completed, or the log could not be read).
    pub(super) async fn scan_ahead(&mut self, end: u64) -> bool {
        let rows = match &self.model {
            Some(Model::Live(m)) if m.can_skip_plain() && m.size() == self.window() => m.size().1,
            _ => return false,
        };
        if end.saturating_sub(self.offset) > SCAN_AHEAD_MAX || self.resizes_wait() {
            return false;
        }
        let before = self.scanned_to();
        let further = self
            .plain_until(end, rows, Urgency::Background)
            .await
            .is_some_and(|to| to > before);
        if further {
            self.follow_lag = SKIPPING_LAG;
            #[cfg(test)]
            self.bell.scans_ahead.fetch_add(1, Ordering::Relaxed);
        }
        further
    }

    /// Where `model` may skip to although resizes wait: the end of a scan
    /// ahead made before them, when the first (so all: they are in the
    /// order of their offsets) came at or after the log's end the scan
    /// was made for. The lines parsed after the skip, up to the
    /// first resize, then fill the screen and scrollback at the size the
    /// scan counted them for, as in any skip.
    fn skip_before_resizes(&self, model: &ScreenModel) -> Option<u64> {
        let s = self.scanned.filter(|s| s.from == self.offset)?;
        let first = self.resizes.as_ref()?.front().map(|&(at, ..)| at)?;
        (first >= s.end && model.can_skip_plain()).then_some(s.to)
    }

    /// Brings the model to the log's end as it is now. A background
    /// catch-up turns urgent as soon as a snapshot is asked.
    pub(super) async fn catch_up(&mut self, urgency: Urgency) {
        if self.bell.resize_lost.swap(false, Ordering::AcqRel) {
            self.resizes = None;
        }
        let target = self.handle.output_offset();
        if self.offset >= target && self.resizes.as_ref().is_some_and(|q| q.is_empty()) {
            return;
        }
        // A frozen model with a few bytes to take (a viewer joining an
        // idle session) is thawed only once they are read: thawing, feeding
        // and the snapshot then run with no wait between them, so that a
        // thousand viewers joining at once do not hold a thousand thawed
        // models (60 KB or more each) waiting for their reads.
        let mut prefetched = None;
        if matches!(self.model, Some(Model::Frozen { .. }))
            && target - self.offset < INLINE_FEED as u64
            && self.resizes.as_ref().is_some_and(VecDeque::is_empty)
            && let Ok(chunks) = self.handle.read(self.offset, (target - self.offset) as usize).await
        {
            prefetched = Some(chunks);
        }
        let mut model = self.live();
        if let Some(chunks) = prefetched {
            for c in &chunks {
                model.feed(&c.data);
            }
            self.offset = chunks.last().map_or(self.offset, Chunk::end);
        }
        // An exact skip first, with as much as MAX_LAG left to scan past what
        // was scanned ahead (a scan of that much takes milliseconds); then
        // the approximate restart of a model too far behind.
        let lag = target.saturating_sub(self.offset);
        let to_scan = target.saturating_sub(self.scanned_to());
        if lag >= SKIP_MIN
            && to_scan <= MAX_LAG
            && self.resizes.as_ref().is_some_and(VecDeque::is_empty)
            && model.can_skip_plain()
            && model.size() == self.window()
            && let Some(to) = self.plain_until(target, model.size().1, urgency).await
        {
            model.skip_plain();
            self.offset = to;
            self.follow_lag = SKIPPING_LAG;
        } else if let Some(to) = self.skip_before_resizes(&model) {
            // A resize came after a scan ahead: the skip goes as far as
            // that scan, whose last lines come before the resize.
            model.skip_plain();
            self.offset = to;
        } else if lag >= SKIP_MIN {
            self.follow_lag = UNWATCHED_LAG;
        }
        self.scanned = None;
        let max_lag = match urgency {
            Urgency::Background => MAX_LAG,
            Urgency::Waited => WAITED_MAX_LAG,
        };
        if target.saturating_sub(self.offset) > max_lag {
            tracing::debug!(session = %self.handle.id(), behind = target - self.offset, "screen model restarts from the log's tail");
            model = self.fresh();
            self.offset = self.tail_start(target, self.window().1).await;
            self.resizes = Some(VecDeque::new());
        }
        while self.offset < target {
            // Stop at the next resize, to apply it where it happened.
            let stop = match self.resizes.as_ref().and_then(|q| q.front()) {
                Some(&(at, cols, rows)) if at <= self.offset => {
                    model.resize(cols, rows);
                    self.resizes.as_mut().map(VecDeque::pop_front);
                    continue;
                }
                Some(&(at, _, _)) => at.min(target),
                None => target,
            };
            let urgency = if self.requests.is_empty() {
                // A flag with no request behind it is stale (a snapshot
                // whose sending was cancelled) or early: it must not stop
                // background feeds for good.
                self.bell.snapshot_asked.store(false, Ordering::Release);
                urgency
            } else if urgency == Urgency::Background
                && self.bell.snapshot_asked.load(Ordering::Acquire)
                && target.saturating_sub(self.offset) > WAITED_MAX_LAG
            {
                // The snapshot's own catch-up restarts from the tail sooner
                // than this one would end.
                self.model = Some(Model::Live(model));
                return;
            } else {
                Urgency::Waited
            };
            let read = if urgency == Urgency::Waited {
                READ
            } else {
                READ_BACKGROUND
            };
            let want = ((stop - self.offset) as usize).min(read);
            let chunks = match self.handle.read(self.offset, want).await {
                Ok(c) if c.is_empty() => break,
                Ok(c) => c,
                Err(SessionError::Gone { earliest }) => {
                    // What the model needs was deleted: a restart, as for a
                    // model too far behind, and never before what is held.
                    model = self.fresh();
                    self.offset = self.tail_start(target, self.window().1).await.max(earliest);
                    continue;
                }
                Err(SessionError::Closed(_)) => {
                    self.actor_gone = true;
                    break;
                }
                Err(e) => {
                    tracing::warn!(session = %self.handle.id(), error = %e, "screen model cannot catch up");
                    break;
                }
            };
            let bytes: usize = chunks.iter().map(|c| c.data.len()).sum();
            let start = self.offset;
            let end = chunks.last().map_or(start, |c| c.end());
            if bytes >= INLINE_FEED {
                let fed = match urgency {
                    Urgency::Background => {
                        // Stops early when a snapshot is asked meanwhile.
                        let bell = self.bell.clone();
                        let stop = move || bell.snapshot_asked.load(Ordering::Acquire);
                        crate::session::background::spawn(move || feed_slices(model, &chunks, stop)).await
                    }
                    Urgency::Waited => tokio::task::spawn_blocking(move || feed_slices(model, &chunks, || false)).await,
                };
                match fed {
                    Ok((m, n)) => {
                        model = m;
                        self.offset = start + n as u64;
                    }
                    Err(_) => {
                        model = self.fresh();
                        self.offset = end;
                    }
                }
            } else {
                for c in &chunks {
                    model.feed(&c.data);
                }
                self.offset = end;
            }
        }
        // Resizes after the end, or lost to overflow: apply the latest size.
        for (_, cols, rows) in self.resizes.take().unwrap_or_default() {
            model.resize(cols, rows);
        }
        self.resizes = Some(VecDeque::new());
        let (cols, rows) = self.handle.size();
        let size = (cols.max(1), rows.max(1));
        if model.size() != size {
            model.resize(size.0, size.1);
        }
        self.model = Some(Model::Live(model));
    }
}

/// Plain text ahead of the model, scanned and not parsed: while a flood of
/// text flows to viewers, the model is not parsed every [`SKIPPING_LAG`]
/// (a screen and scrollback of lines each time, most of the catch-ups'
/// cost), only scanned; a catch-up then skips all of it at once and
/// parses the lines before the log's end. Its `to` is a
/// [`skip_point`](ScreenTask::skip_point), so a skip to it is exact
/// whatever came after the scan. Stale once the model's offset moved.
#[derive(Debug, Clone, Copy)]
pub(super) struct Scanned {
    /// The model's offset when the scan began.
    from: u64,
    /// Where the model may skip to: `[from, to)` is plain text with at
    /// least a screen of line feeds, ending in CR LF.
    to: u64,
    /// The log's end the scan was made for: at least `rows + scrollback -
    /// 1` line feeds of plain text follow `to` before it.
    end: u64,
    /// The scan of `[from, to)`, to go on from `to`.
    scan: Scan,
    /// Text after `to`, before a later scan's stopping point, was found
    /// not to be plain: no use scanning from `to` again.
    not_plain_after: bool,
}

/// How many times a skip point is counted back from a byte that is not
/// plain text before the skip is given up (output with escape sequences
/// every few screens is parsed, not skipped). Each try reads and scans
/// its lines (about 80 KB at 80 columns, at most [`TAIL`]) on the
/// worker, as the line feeds were always counted there.
const SKIP_POINT_TRIES: usize = 4;

/// The offset of the first byte of `tail` (contiguous output, starting
/// after a line feed or where a skip could not end anyway) that is not
/// plain text.
fn first_not_plain(tail: &[Chunk]) -> Option<u64> {
    let mut lead_c2 = false;
    for c in tail {
        let plain = plain_prefix(&c.data, lead_c2);
        if plain < c.data.len() {
            return Some(c.offset + plain as u64);
        }
        if let Some(&last) = c.data.last() {
            lead_c2 = last == 0xc2;
        }
    }
    None
}

/// What a scan of a stretch of output found so far.
#[derive(Debug, Clone, Copy)]
struct Scan {
    plain: bool,
    /// The last byte scanned was 0xC2 (a C1 control may follow).
    lead_c2: bool,
    line_feeds: u64,
    last_two: [u8; 2],
}

impl Default for Scan {
    fn default() -> Scan {
        Scan {
            plain: true,
            lead_c2: false,
            line_feeds: 0,
            last_two: [0; 2],
        }
    }
}

impl Scan {
    /// Scans `chunks` (contiguous output) up to offset `limit`.
    fn add(&mut self, chunks: &[Chunk], limit: u64) {
        for c in chunks {
            let len = limit.saturating_sub(c.offset).min(c.data.len() as u64) as usize;
            let data = &c.data[..len];
            if data.is_empty() {
                continue;
            }
            let (plain, lead) = is_plain(data, self.lead_c2);
            if !plain {
                self.plain = false;
                return;
            }
            self.lead_c2 = lead;
            self.line_feeds += line_feeds(data);
            self.last_two = [self.last_two[1], data[data.len() - 1]];
            if data.len() >= 2 {
                self.last_two[0] = data[data.len() - 2];
            }
        }
    }
}

/// Feeds `chunks` (contiguous output) to `model` in slices of
/// [`FEED_SLICE`], until `stop` answers true before a slice; returns the
/// model and how many bytes it took.
pub(super) fn feed_slices(
    mut model: Box<ScreenModel>,
    chunks: &[Chunk],
    stop: impl Fn() -> bool,
) -> (Box<ScreenModel>, usize) {
    let mut fed = 0;
    for slice in chunks.iter().flat_map(|c| c.data.chunks(FEED_SLICE)) {
        if stop() {
            break;
        }
        model.feed(slice);
        fed += slice.len();
    }
    (model, fed)
}
