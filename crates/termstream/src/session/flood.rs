//! The flood watch: tells when a session's program floods output while
//! someone types into another session, which moves the session's actor to
//! the bulk lane (`lane.rs`).
//!
//! A session whose program has streamed output fast (at least
//! [`FLOOD_BYTES_PER_SEC`]) for [`FLOOD_AFTER`] with no input since is
//! *flooding* (a `cat` of a big file, a build's log, `yes`). While someone
//! types into another session (input within [`INTERACTIVE`], newer than
//! the session's own last input), the watch wants its actor on the bulk
//! lane, so that the server's workers are left to the sessions whose echo
//! someone waits for: without it the benchmark's echo p50 under load was
//! 3.2 ms, not 0.3. The wish ends as soon as input reaches the session,
//! its output pauses for [`QUIET`], or nobody has typed for
//! [`INTERACTIVE`]. A lone stream, with nobody typing, stays where it is
//! and runs as fast as ever. The program itself is never paused or
//! reniced (though an actor on the lane, at a lower priority, may read
//! more slowly, which can slow the writer through the PTY).
//!
//! The decisions are pure: the actor passes in when input last reached any
//! session ([`last_input`]), so the tests can give times of their own.
//!
//! Lowering floods' priority was tried and removed: in the benchmark it
//! doubled the echo p99 under load (figures in `bench/RESULTS.md`).

#[cfg(test)]
mod tests;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

/// How long a session must stream before it counts as flooding.
pub const FLOOD_AFTER: Duration = Duration::from_millis(500);
/// The output rate a flood keeps up (bytes per second, averaged over the
/// stream so far): a build log or a `top` is far below it.
pub const FLOOD_BYTES_PER_SEC: u64 = 1 << 20;
/// A pause in the output that ends a stream, and the wish for the lane.
pub const QUIET: Duration = Duration::from_millis(300);
/// How long after the last input to any session someone counts as typing.
pub const INTERACTIVE: Duration = Duration::from_secs(2);

/// When input last reached any session: milliseconds since [`base`], plus
/// one (0: never).
static LAST_INPUT: AtomicU64 = AtomicU64::new(0);

fn base() -> Instant {
    static BASE: OnceLock<Instant> = OnceLock::new();
    *BASE.get_or_init(Instant::now)
}

/// Notes that input reached a session (any session) just now.
pub fn input_arrived() {
    let ms = base().elapsed().as_millis() as u64 + 1;
    LAST_INPUT.fetch_max(ms, Ordering::Relaxed);
}

/// When input last reached any session, if ever: what the actor passes to
/// [`FloodWatch`]'s calls.
pub(crate) fn last_input() -> Option<Instant> {
    match LAST_INPUT.load(Ordering::Relaxed) {
        0 => None,
        ms => Some(base() + Duration::from_millis(ms - 1)),
    }
}

/// Whether someone typed into a session within [`INTERACTIVE`] of `now`,
/// given `last`, when input last reached any session, and `own`, when this
/// session's own input was last seen: a session's own input does not
/// count, or a `cat` started by a typed line would go to the lane.
fn typing(last: Option<Instant>, now: Instant, own: Option<Instant>) -> bool {
    last.is_some_and(|t| now.saturating_duration_since(t) < INTERACTIVE && own.is_none_or(|o| t > o))
}

/// One session's flood watch, owned by its actor.
pub(crate) struct FloodWatch {
    /// The current stream of output: when it began and its bytes.
    stream: Option<(Instant, u64)>,
    last_output: Instant,
    /// The input count last seen ([`super::input::Input::sends`]).
    inputs: u64,
    /// When a change of that count was last seen.
    own_input: Option<Instant>,
    /// Whether the session floods while someone types elsewhere.
    want_lane: bool,
}

impl FloodWatch {
    /// A watch that has seen no output yet.
    pub fn new() -> FloodWatch {
        FloodWatch {
            stream: None,
            last_output: Instant::now(),
            inputs: 0,
            own_input: None,
            want_lane: false,
        }
    }

    /// Notes `n` bytes of output read at `now`, with `inputs` the session's
    /// input count and `last_input` when input last reached any session.
    pub fn output(&mut self, n: usize, inputs: u64, now: Instant, last_input: Option<Instant>) {
        if self.stream.is_some() && now.duration_since(self.last_output) >= QUIET {
            self.stream = None;
        }
        self.last_output = now;
        if inputs != self.inputs {
            // Someone typed: the session is interactive again.
            self.inputs = inputs;
            self.own_input = Some(now);
            self.stream = None;
        }
        let (start, bytes) = self.stream.get_or_insert((now, 0));
        *bytes += n as u64;
        let age = now.duration_since(*start);
        let flooding = age >= FLOOD_AFTER && *bytes as f64 >= FLOOD_BYTES_PER_SEC as f64 * age.as_secs_f64();
        self.want_lane = flooding && typing(last_input, now, self.own_input);
    }

    /// Whether the session floods while someone types elsewhere: its actor
    /// belongs on the bulk lane.
    pub fn wants_lane(&self) -> bool {
        self.want_lane
    }

    /// When the actor should call [`FloodWatch::tick`]: while the watch
    /// wants the lane, to end the wish after a pause in the output or once
    /// nobody types, even with no more output to see; `last_input` is when
    /// input last reached any session.
    pub fn deadline(&self, last_input: Option<Instant>) -> Option<Instant> {
        self.want_lane.then(|| {
            let typed = last_input.map_or(self.last_output, |t| t + INTERACTIVE);
            (self.last_output + QUIET).min(typed)
        })
    }

    /// Ends the wish for the lane after a pause in the output, new input,
    /// or when nobody typed for a while (`last_input`: when input last
    /// reached any session).
    pub fn tick(&mut self, inputs: u64, now: Instant, last_input: Option<Instant>) {
        if inputs != self.inputs {
            self.inputs = inputs;
            self.own_input = Some(now);
        }
        if now.duration_since(self.last_output) >= QUIET
            || self.own_input == Some(now)
            || !typing(last_input, now, self.own_input)
        {
            self.stream = None;
            self.want_lane = false;
        }
    }
}
