//! The task that keeps a pty session's screen model, off the PTY's path.
//!
//! The terminal emulator parses 15–20 MB/s, slower than a PTY can produce,
//! so the task does not parse as output arrives: it catches up from the log,
//! by offset, when the output has been quiet for [`QUIET`] or when a
//! snapshot is asked for. Large catch-ups run off the async workers: on
//! low-priority background threads ([`super::background`]) when nobody
//! waits, on the blocking pool when a snapshot (or any request) waits.
//!
//! Nor is the task woken per chunk: a wake-up per chunk costs a task poll
//! and, with two workers, often a thread wake-up, on the path of every
//! typed key's echo. The actor rings a [`ScreenBell`] instead, which wakes
//! the task only when the log's end reaches the offset the task asked for:
//! the first output after a quiet spell, or [`UNWATCHED_LAG`] more when
//! nobody watches. While output flows to viewers, the task checks the log's
//! end every [`QUIET`] and catches up once it stopped moving, or once it
//! ran `follow_lag` past where the model last caught up or scanned ahead
//! (below). Resizes come as messages with their offsets.
//!
//! Two approximations, both rare and both documented in ARCHITECTURE.md:
//! - When the model is more than [`MAX_LAG`] behind ([`WAITED_MAX_LAG`]
//!   when a snapshot waits) and cannot skip exactly (below), it restarts
//!   from the log's tail instead of parsing everything (after a flood, what is on screen comes from its
//!   end): the last [`TAIL`] bytes, or fewer, from the line feed that
//!   leaves a screen and a scrollback's worth of lines; likewise when the
//!   start of what it needs was deleted from disk. A catch-up that nobody
//!   waited for stops when a snapshot is asked (at its next 16 KiB), and
//!   leaves the rest to the snapshot's catch-up.
//! - Resizes are replayed at their offsets while at most [`RESIZES`] wait;
//!   past that only the latest size is applied at the end.
//!
//! A catch-up of at least [`SKIP_MIN`], with at most [`MAX_LAG`] left to
//! scan past what was scanned ahead, first tries an exact skip:
//! when the model's parser is at rest and everything up to the last
//! `rows + scrollback` lines is plain text (checked by a vectorized scan,
//! far faster than parsing), the model skips to those lines and parses
//! only them, with the same result as parsing everything (see
//! `screen::skip`). A flood of text (`cat`, build logs) is then never
//! parsed but for its end, and while catch-ups skip, a model that viewers
//! watch is followed every [`SKIPPING_LAG`] instead of [`UNWATCHED_LAG`].
//! While such a flood goes on, following is mostly scanning ahead: every
//! [`SKIPPING_LAG`] the task only scans the new text (`catch_up::Scanned`),
//! and the model catches up (skips all that was scanned, parses the last
//! lines) once it is more than [`SCAN_AHEAD_MAX`] behind, when the text
//! is not plain, when a resize waits, when the output pauses, or when a
//! snapshot is asked.
//!
//! An idle model is frozen into its own snapshot (text, a few KiB) and
//! thawed by feeding that snapshot to a fresh model, which reproduces it
//! exactly (see the golden tests): idle sessions cost little memory. A
//! session nobody watches is not followed at all until it is
//! [`UNWATCHED_LAG`] behind or someone asks for its screen.

use std::collections::VecDeque;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::time::Duration;

use termstream_proto::Snapshot;
use tokio::sync::Notify;
use tokio::time::Instant;

use super::screen::ScreenModel;
use super::{ScreenRequest, SessionHandle};

/// Output quiet for this long triggers a catch-up.
pub const QUIET: Duration = Duration::from_millis(30);
/// A model idle for this long is frozen.
pub const FREEZE_AFTER: Duration = Duration::from_secs(2);
/// Further behind than this, the model restarts from the log's tail.
pub const MAX_LAG: u64 = 16 << 20;
/// The same when a snapshot waits: a late joiner of a session in full
/// flood waits for at most 2 MiB of parsing (0.05–0.2 s), not 16.
pub const WAITED_MAX_LAG: u64 = 4 << 20;
/// How much of the log's end a restarted model parses at most (less when
/// that much holds more lines than the screen and its scrollback).
pub const TAIL: u64 = 2 << 20;
/// The pieces in which the tail is scanned for line feeds, from its end.
const TAIL_SCAN: usize = 64 * 1024;
/// A session nobody watches catches up only this far behind (or when a
/// snapshot is asked), and freezes right after.
pub const UNWATCHED_LAG: u64 = 1 << 20;
/// A catch-up at least this long tries to skip plain text exactly.
pub const SKIP_MIN: u64 = 256 * 1024;
/// How far output that flows to viewers runs, while it is plain text,
/// past where the model last caught up or scanned ahead before the next
/// scan ahead or catch-up: each scans (not parses) that much.
pub const SKIPPING_LAG: u64 = WAITED_MAX_LAG;
/// A flowing model scans ahead (see [`catch_up::Scanned`]) only while it
/// is at most this far behind; past it, the next check catches up. So a
/// catch-up comes at most this plus [`SKIPPING_LAG`] and one check's
/// output behind (12 MiB and 30 ms of output with a scan's time, about
/// 1.5 MiB at 50 MB/s), within [`MAX_LAG`], where a background catch-up
/// still parses exactly what it cannot skip: a model parses a screen and
/// scrollback of lines every 8–12 MiB of a flood instead of every 4. (A
/// snapshot that finds the model that far behind and cannot skip, after
/// a resize that came before a scan's end or was lost, restarts from the
/// tail beyond [`WAITED_MAX_LAG`], where before it found the model at
/// most 4 MiB and a check's output behind.)
pub const SCAN_AHEAD_MAX: u64 = MAX_LAG - 2 * SKIPPING_LAG;
/// Resizes remembered between catch-ups.
pub const RESIZES: usize = 16;
/// A frozen model that viewers watch is thawed to catch up only once this
/// much output waits for it (or a snapshot is asked, or half of
/// [`RESIZES`] wait): the echo of typing and a shell's prompts then never
/// thaw it. A snapshot then thaws the model (parses its frozen screen)
/// and parses what it lacks: at most this much (2–4 ms) once the bell was
/// armed while watched. The first viewer to come without asking for a
/// snapshot (a resume within the replay limit) finds the bell still armed
/// for an unwatched model, [`UNWATCHED_LAG`] ahead.
pub const FROZEN_LAG: u64 = 64 * 1024;
/// Pieces of at least this many bytes are parsed off the tokio workers;
/// smaller ones (the echo of a few keys) in place. Below every log read's
/// size, so that no flood is ever parsed on the workers.
const INLINE_FEED: usize = 4 * 1024;
/// The most bytes one log read asks for when a snapshot waits.
const READ: usize = 1 << 20;
/// The most bytes one log read asks for when nobody waits, parsed at low
/// priority (a snapshot asked meanwhile stops it at the next
/// [`FEED_SLICE`]). Smaller pieces cost the workers more: each is a read
/// from the actor and a wake-up from the background thread, and 32 KiB
/// pieces raised the echo's p50 under load from about 0.2 ms to 3 ms in
/// the benchmark.
const READ_BACKGROUND: usize = 128 * 1024;
const _: () = assert!(
    INLINE_FEED < READ_BACKGROUND,
    "a background piece must not be parsed on the workers"
);
/// How often a background feed looks whether a snapshot was asked: about
/// 2 ms of parsing at worst.
const FEED_SLICE: usize = 16 * 1024;

/// Who waits for a catch-up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Urgency {
    /// Nobody: the parsing runs at background priority.
    Background,
    /// A snapshot: the parsing runs on the blocking pool, at normal priority.
    Waited,
}

/// Requests the screen task can hold before a resize is dropped (and the
/// latest size applied instead).
const REQUESTS: usize = 16;
/// `wake_at` when the task waits for no offset.
const NOT_WAITING: u64 = u64::MAX;

/// How the actor wakes the screen task: only when the log's end reaches
/// the offset the task asked for.
#[derive(Debug)]
pub(crate) struct ScreenBell {
    /// Wake the task once the log's end is at least this.
    wake_at: AtomicU64,
    notify: Notify,
    /// A resize could not be queued: the task applies the latest size.
    resize_lost: AtomicBool,
    /// A snapshot is on its way: a background catch-up stops at its next
    /// slice, so the snapshot's own catch-up starts sooner.
    snapshot_asked: AtomicBool,
    /// How many scans ahead got further, for tests of the task's loop.
    #[cfg(test)]
    scans_ahead: AtomicU64,
}

impl ScreenBell {
    fn new() -> ScreenBell {
        ScreenBell {
            wake_at: AtomicU64::new(NOT_WAITING),
            notify: Notify::new(),
            resize_lost: AtomicBool::new(false),
            snapshot_asked: AtomicBool::new(false),
            #[cfg(test)]
            scans_ahead: AtomicU64::new(0),
        }
    }

    /// The actor's call after output moved the log's end to `end`: one
    /// atomic load, and a wake-up at most once per arming.
    pub(crate) fn output(&self, end: u64) {
        if end >= self.wake_at.load(Ordering::Acquire)
            && self.wake_at.swap(NOT_WAITING, Ordering::AcqRel) != NOT_WAITING
        {
            self.notify.notify_one();
        }
    }

    /// A handle's call before it asks for a snapshot.
    pub(crate) fn snapshot_asked(&self) {
        self.snapshot_asked.store(true, Ordering::Release);
    }

    /// The actor's call when a resize did not fit in the request queue.
    pub(crate) fn resize_lost(&self) {
        self.resize_lost.store(true, Ordering::Release);
    }
}

/// The way to a screen task, for the actor (resizes, the bell) and for
/// handles (snapshots).
#[derive(Debug, Clone)]
pub(crate) struct ScreenLink {
    /// A `flume` channel: it allocates its queue only when requests wait
    /// (tokio's allocates 32 slots and cache-padded state up front, about
    /// 800 bytes per session).
    pub(crate) requests: flume::Sender<ScreenRequest>,
    pub(crate) bell: Arc<ScreenBell>,
}

/// The model, live or frozen.
enum Model {
    /// Boxed: the model is large, and the task's futures stay small.
    Live(Box<ScreenModel>),
    /// The snapshot of a model, and its size.
    Frozen { snapshot: String, cols: u16, rows: u16 },
}

struct ScreenTask {
    handle: SessionHandle,
    model: Option<Model>,
    scrollback: usize,
    /// The log offset the model reflects.
    offset: u64,
    /// How far output that flows to viewers may run past where the model
    /// last caught up or scanned ahead before it catches up or scans
    /// again: [`UNWATCHED_LAG`], or [`SKIPPING_LAG`] while the last
    /// catch-up skipped plain text or the last scan ahead got further
    /// (each catch-up then costs about one screen and scrollback of
    /// parsing, however long the flood).
    follow_lag: u64,
    /// Plain text scanned ahead of the model, not parsed yet.
    scanned: Option<catch_up::Scanned>,
    /// Resizes not applied yet: (offset, cols, rows); `None` after overflow.
    resizes: Option<VecDeque<(u64, u16, u16)>>,
    /// Rung by the actor when the log's end reaches what the task asked.
    bell: Arc<ScreenBell>,
    /// The actor ended (the session was deleted): the task ends too.
    actor_gone: bool,
    /// Requests from handles and the actor; the task ends when every
    /// handle and the actor are gone.
    requests: flume::Receiver<ScreenRequest>,
}

/// Starts the screen task of `handle`'s session; returns its request
/// channel and bell.
pub(crate) fn spawn(handle: &SessionHandle, scrollback: usize) -> ScreenLink {
    let (tx, requests) = flume::bounded(REQUESTS);
    let bell = Arc::new(ScreenBell::new());
    let (cols, rows) = handle.size();
    let task = ScreenTask {
        handle: handle.clone(),
        // Blank and frozen: nothing is allocated until there is output.
        model: Some(Model::Frozen {
            snapshot: String::new(),
            cols: cols.max(1),
            rows: rows.max(1),
        }),
        scrollback,
        offset: 0,
        follow_lag: UNWATCHED_LAG,
        scanned: None,
        resizes: Some(VecDeque::new()),
        bell: bell.clone(),
        actor_gone: false,
        requests,
    };
    tokio::spawn(task.run());
    ScreenLink { requests: tx, bell }
}

impl ScreenTask {
    /// The task's loop. Catch-ups and snapshots run boxed: the task of an
    /// idle session (nearly every session, nearly all the time) then holds
    /// only the state of its waits, not that of parsing or reading the log.
    ///
    /// A plain function around an `async` block: an `async fn` taking
    /// `self` keeps a second, dead copy of the task's state in its future
    /// (its argument, moved into its body).
    fn run(self) -> impl Future<Output = ()> + Send + 'static {
        let mut task = self;
        async move { task.run_loop().await }
    }

    async fn run_loop(&mut self) {
        // While output flows to viewers: when to look at the log's end
        // again, and where it was the last time.
        let mut check_at: Option<Instant> = None;
        let mut seen_end = 0;
        // When to freeze an idle live model.
        let mut freeze_at: Option<Instant> = Some(Instant::now() + FREEZE_AFTER);
        self.arm();
        while !self.actor_gone {
            let wake = check_at.or(freeze_at);
            tokio::select! {
                _ = self.bell.notify.notified() => {
                    if self.handle.viewers() > 0 {
                        seen_end = self.handle.output_offset();
                        check_at = Some(Instant::now() + QUIET);
                        freeze_at = None;
                    } else {
                        if self.handle.output_offset().saturating_sub(self.offset) > UNWATCHED_LAG {
                            Box::pin(self.catch_up(Urgency::Background)).await;
                            self.freeze();
                        }
                        self.arm();
                    }
                }
                _ = sleep_opt(wake), if wake.is_some() => {
                    if check_at.is_some() {
                        let end = self.handle.output_offset();
                        let far_behind = end.saturating_sub(self.followed_to()) > self.follow_lag;
                        let flowing = end != seen_end && self.handle.viewers() > 0;
                        // Still flowing: look again later. Output that
                        // never pauses is caught up (or, while it is plain
                        // text, scanned) every `follow_lag`, so a joining
                        // viewer's snapshot stays quick.
                        if flowing && (!far_behind || Box::pin(self.scan_ahead(end)).await) {
                            seen_end = end;
                            check_at = Some(Instant::now() + QUIET);
                            continue;
                        }
                        check_at = None;
                        if self.stays_frozen(end) {
                            self.arm();
                            continue;
                        }
                        Box::pin(self.catch_up(Urgency::Background)).await;
                        freeze_at = Some(Instant::now() + FREEZE_AFTER);
                        self.arm();
                    } else {
                        freeze_at = None;
                        self.freeze();
                        self.arm();
                    }
                }
                req = self.requests.recv_async() => match req {
                    Ok(ScreenRequest::Snapshot { reply }) => {
                        self.bell.snapshot_asked.store(false, Ordering::Release);
                        let idle = check_at.is_none();
                        let snapshot = Box::pin(self.serve_snapshot(idle)).await;
                        if idle {
                            freeze_at = Some(Instant::now() + FREEZE_AFTER);
                            self.arm();
                        }
                        let _ = reply.send(snapshot);
                    }
                    Ok(ScreenRequest::Resized { offset, cols, rows }) => {
                        self.note_resize(offset, cols, rows);
                        // Resizes pile up behind a frozen model: catch up
                        // soon, before they overflow and only the latest
                        // size is kept.
                        if check_at.is_none() && !self.resizes_fit() {
                            check_at = Some(Instant::now() + QUIET);
                            freeze_at = None;
                        }
                    }
                    Err(_) => return,
                },
            }
        }
    }

    /// The screen at the log's end. A model thawed only for it, while
    /// output is `idle` (a viewer joining an idle session), is frozen again
    /// at once, not after [`FREEZE_AFTER`]: a thousand viewers joining a
    /// thousand idle sessions never hold a thousand live models (60 KB or
    /// more each).
    async fn serve_snapshot(&mut self, idle: bool) -> Snapshot {
        let was_frozen = matches!(self.model, Some(Model::Frozen { .. }));
        self.catch_up(Urgency::Waited).await;
        let snapshot = self.snapshot();
        if was_frozen && idle {
            // The screen just rendered is the frozen one: not rendered twice.
            self.freeze_as(Some(snapshot.data.clone()));
        }
        snapshot
    }

    /// Asks the actor for a wake-up: at the first byte the model lacks when
    /// someone watches a live model (output that came during a catch-up
    /// rings at once, and the 30 ms check paces any retry), after
    /// [`FROZEN_LAG`] when someone watches a frozen one, else after
    /// [`UNWATCHED_LAG`] more, counted from the log's end so that a model
    /// that could not catch up does not ring at once again.
    fn arm(&self) {
        let at = if self.handle.viewers() > 0 {
            match self.model {
                Some(Model::Frozen { .. }) => self.offset + FROZEN_LAG + 1,
                _ => self.offset + 1,
            }
        } else {
            self.handle.output_offset() + UNWATCHED_LAG + 1
        };
        self.bell.wake_at.store(at, Ordering::Release);
        self.bell.output(self.handle.output_offset());
    }

    /// Whether a model that output left behind, with the log's end at
    /// `end`, stays frozen for now: it is frozen, at most [`FROZEN_LAG`]
    /// behind, and its resizes fit. Thawing it would cost more than the
    /// few bytes it lacks, and hold a live model (60 KB or more) for
    /// [`FREEZE_AFTER`]; a snapshot catches it up when one is asked.
    fn stays_frozen(&self, end: u64) -> bool {
        matches!(self.model, Some(Model::Frozen { .. }))
            && end.saturating_sub(self.offset) <= FROZEN_LAG
            && self.resizes_fit()
            && !self.bell.resize_lost.load(Ordering::Acquire)
    }

    /// Whether the resizes waiting for a catch-up are fewer than half of
    /// [`RESIZES`] (none were lost).
    fn resizes_fit(&self) -> bool {
        self.resizes.as_ref().is_some_and(|q| q.len() < RESIZES / 2)
    }

    fn note_resize(&mut self, offset: u64, cols: u16, rows: u16) {
        if let Some(q) = &mut self.resizes {
            if q.len() >= RESIZES {
                self.resizes = None;
            } else {
                q.push_back((offset, cols.max(1), rows.max(1)));
            }
        }
    }

    fn live(&mut self) -> Box<ScreenModel> {
        match self.model.take() {
            Some(Model::Live(m)) => m,
            Some(Model::Frozen { snapshot, cols, rows }) => {
                let mut m = Box::new(ScreenModel::new(cols, rows, self.scrollback));
                m.feed(snapshot.as_bytes());
                m
            }
            None => self.fresh(),
        }
    }

    fn fresh(&self) -> Box<ScreenModel> {
        let (cols, rows) = self.handle.size();
        Box::new(ScreenModel::new(cols.max(1), rows.max(1), self.scrollback))
    }

    /// Turns a live model into its snapshot; a frozen one stays as it is
    /// (an idle session is frozen again and again).
    ///
    /// The snapshot holds an escape sequence under way; a character split
    /// by the last read is left out, and the model's offset goes back to
    /// its start, to be read again from the log.
    fn freeze(&mut self) {
        self.freeze_as(None);
    }

    /// Freezes a live model into `rendered`, its snapshot when the caller
    /// has it already, else into one rendered now.
    fn freeze_as(&mut self, rendered: Option<String>) {
        if let Some(Model::Live(m)) = &self.model {
            let (cols, rows) = m.size();
            let snapshot = rendered.unwrap_or_else(|| m.snapshot());
            self.offset -= m.carried() as u64;
            self.model = Some(Model::Frozen { snapshot, cols, rows });
        }
    }

    fn snapshot(&mut self) -> Snapshot {
        // A live model's snapshot leaves out a character split by the last
        // read: it reflects the output up to the character's start.
        let (data, (cols, rows), carried) = match &self.model {
            Some(Model::Live(m)) => (m.snapshot(), m.size(), m.carried()),
            Some(Model::Frozen { snapshot, cols, rows }) => (snapshot.clone(), (*cols, *rows), 0),
            None => (String::new(), (1, 1), 0),
        };
        Snapshot {
            epoch: self.handle.epoch(),
            offset: self.offset - carried as u64,
            cols,
            rows,
            data,
        }
    }
}

/// Sleeps until `deadline`, or forever when there is none. The timer is
/// made (boxed) only when there is a deadline: `select!` builds every
/// branch's future, and a tokio `Sleep` inline would stay in every idle
/// session's task.
async fn sleep_opt(deadline: Option<Instant>) {
    match deadline {
        Some(at) => Box::pin(tokio::time::sleep_until(at)).await,
        None => std::future::pending().await,
    }
}

mod catch_up;

#[cfg(test)]
mod tests;
