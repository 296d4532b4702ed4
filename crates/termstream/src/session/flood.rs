//! Flooding programs can be made to yield the CPU to interactive ones.
//!
//! A session whose program has streamed output fast (at least
//! [`FLOOD_BYTES_PER_SEC`]) for [`FLOOD_AFTER`] with no input since is
//! *flooding* (a `cat` of a big file, a build's log, `yes`). While someone
//! types into another session (input within [`INTERACTIVE`]), a flood
//! yields to them; with nobody typing it keeps its priority, so a lone
//! stream runs as fast as ever. On a machine
//! with few cores such programs take the CPU that a typed key's echo needs
//! in another session: the shell that echoes it, the kernel's tty layer
//! and our own relay all wait behind them. So, with `flood_nice` set, the
//! actor lowers a flooding
//! session's CPU priority to the `flood_nice` setting, and restores it as
//! soon as input arrives or the output pauses for [`QUIET`]. The program
//! is never paused: it only gets less of a CPU that others want, and all of
//! it when nobody else does.
//!
//! **Off by default** (`flood_nice = 0`). The watch still says when a
//! session floods while someone types, which moves its actor to the bulk
//! lane (`lane.rs`); that is what keeps an echo fast under load (without
//! it the benchmark's echo p50 under load was 3.2 ms, not 0.3). Lowering
//! the programs as well made the echo's tail worse once the benchmark sent
//! its keys at a steady pace (scenario 4, a key per millisecond): over ten
//! alternating runs, the p99 under load had a median of 5.0 ms with floods
//! lowered to 10 and 2.3 ms without, at the same CPU per MB. Lowered floods
//! leave the CPU to their readers (the load delivered rose from 1.2 to 1.4
//! of ttyd's in the same runs), and with them the kernel's tty work, which
//! is what keeps the echoing program waiting: traced, it was runnable and
//! not run for 13 ms while the server's threads took turns on its CPU.
//! Keys sent back to back, the earlier probe, showed no difference.
//!
//! The priority lowered is the session's *autogroup* nice
//! (`/proc/PID/autogroup`): where the kernel groups processes by session
//! for scheduling (`kernel.sched_autogroup_enabled`, the default of most
//! distributions for processes outside CPU cgroups), every session's
//! program, a session leader, has a group of its own, and a process's
//! own nice only divides its group's share. The autogroup nice is the one
//! that weighs against other sessions, the server and everything else,
//! and any user may set it back to 0 (a process nice, once raised, needs
//! privilege to lower again). Where autogroups are not in effect, or the
//! program shares the server's group, nothing is changed.
//!
//! The kernel lets an unprivileged process change an autogroup's nice at
//! most ten times a second in all (`EAGAIN` otherwise). All sessions share
//! that budget (`flood/autogroup.rs`): restores go first, and
//! lowerings leave room for them.

mod autogroup;
#[cfg(test)]
mod tests;

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use autogroup::Autogroups;

/// How long a session must stream before it counts as flooding.
pub const FLOOD_AFTER: Duration = Duration::from_millis(500);
/// The output rate a flood keeps up (bytes per second, averaged over the
/// stream so far): a build log or a `top` is far below it.
pub const FLOOD_BYTES_PER_SEC: u64 = 1 << 20;
/// A pause in the output that ends a stream, and restores the priority.
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

/// When input last reached any session, if ever.
fn last_input() -> Option<Instant> {
    match LAST_INPUT.load(Ordering::Relaxed) {
        0 => None,
        ms => Some(base() + Duration::from_millis(ms - 1)),
    }
}

/// Whether someone typed into a session within [`INTERACTIVE`] of `now`,
/// after `own` (when this session's own input was last seen): a session's
/// own input does not make it yield, or a `cat` started by a typed line
/// would run lowered.
fn typing(now: Instant, own: Option<Instant>) -> bool {
    last_input().is_some_and(|t| now.saturating_duration_since(t) < INTERACTIVE && own.is_none_or(|o| t > o))
}

/// One session's flood watch, owned by its actor.
pub(crate) struct FloodPriority {
    /// The budget of changes all sessions share, and the kernel's calls.
    kernel: &'static Autogroups,
    /// The autogroup nice of a flooding session; 0: never lowered.
    nice: i32,
    /// The session leader, whose autogroup is the session's.
    leader: Option<u32>,
    /// The current stream of output: when it began and its bytes.
    stream: Option<(Instant, u64)>,
    last_output: Instant,
    /// The input count last seen ([`super::input::Input::sends`]).
    inputs: u64,
    /// When a change of that count was last seen.
    own_input: Option<Instant>,
    /// Whether the session should be lowered now.
    want_low: bool,
    /// The autogroup nice to restore, while lowered.
    lowered: Option<i32>,
    /// The leader's autogroup (its name in `/proc/PID/autogroup`), once
    /// lowered: what to restore should the leader exit while lowered.
    group: Option<String>,
    /// When a refused or deferred change may be tried again.
    retry_at: Option<Instant>,
    /// Whether this watch counts in the budget as a waiting restore.
    waiting: bool,
}

impl std::fmt::Debug for FloodPriority {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("FloodPriority")
            .field("leader", &self.leader)
            .field("want_low", &self.want_low)
            .field("lowered", &self.lowered)
            .finish_non_exhaustive()
    }
}

impl Drop for FloodPriority {
    fn drop(&mut self) {
        self.set_waiting(false);
    }
}

impl FloodPriority {
    /// The watch of the session whose leader is `leader`; `nice` 0 turns it off.
    pub fn new(nice: i32, leader: Option<u32>) -> FloodPriority {
        FloodPriority::with(&autogroup::KERNEL, nice, leader)
    }

    /// The watch of `leader`'s session over `kernel`.
    fn with(kernel: &'static Autogroups, nice: i32, leader: Option<u32>) -> FloodPriority {
        FloodPriority {
            kernel,
            nice: nice.clamp(0, 19),
            leader: leader.filter(|_| nice > 0),
            stream: None,
            last_output: Instant::now(),
            inputs: 0,
            own_input: None,
            want_low: false,
            lowered: None,
            group: None,
            retry_at: None,
            waiting: false,
        }
    }

    /// Notes `n` bytes of output read at `now`, with `inputs` the session's
    /// input count; lowers the priority once the session floods.
    pub fn output(&mut self, n: usize, inputs: u64, now: Instant) {
        if self.stream.is_some() && now.duration_since(self.last_output) >= QUIET {
            self.stream = None;
            self.want_low = false;
        }
        self.last_output = now;
        if inputs != self.inputs {
            // Someone typed: the session is interactive again.
            self.inputs = inputs;
            self.own_input = Some(now);
            self.stream = None;
            self.want_low = false;
        }
        let (start, bytes) = self.stream.get_or_insert((now, 0));
        *bytes += n as u64;
        let age = now.duration_since(*start);
        let flooding = age >= FLOOD_AFTER && *bytes as f64 >= FLOOD_BYTES_PER_SEC as f64 * age.as_secs_f64();
        self.want_low = flooding && typing(now, self.own_input);
        self.apply(now);
    }

    /// Whether the session floods while someone types elsewhere: the
    /// program runs lowered, and its actor on the bulk lane.
    pub fn wants_low(&self) -> bool {
        self.want_low
    }

    /// When the actor should call [`FloodPriority::tick`]: while lowered,
    /// to restore after a pause or once nobody types; while a change waits
    /// for a retry.
    pub fn deadline(&self) -> Option<Instant> {
        // Without a leader nothing is lowered or retried, but the watch
        // still says when the flood is over: the actor's bulk lane follows
        // `want_low`.
        let pending = (self.leader.is_some() && self.want_low != self.lowered.is_some())
            .then_some(self.retry_at)
            .flatten();
        let quiet = self.want_low.then(|| {
            let typed = last_input().map_or(self.last_output, |t| t + INTERACTIVE);
            (self.last_output + QUIET).min(typed)
        });
        match (pending, quiet) {
            (Some(a), Some(b)) => Some(a.min(b)),
            (a, b) => a.or(b),
        }
    }

    /// Restores the priority after a pause in the output, new input, or
    /// when nobody typed for a while, and retries a refused change.
    pub fn tick(&mut self, inputs: u64, now: Instant) {
        if inputs != self.inputs {
            self.inputs = inputs;
            self.own_input = Some(now);
        }
        if now.duration_since(self.last_output) >= QUIET || self.own_input == Some(now) || !typing(now, self.own_input)
        {
            self.stream = None;
            self.want_low = false;
        }
        self.apply(now);
    }

    /// Makes the kernel's priority what the watch wants, unless a refused
    /// change waits for its retry, or the shared budget defers it.
    fn apply(&mut self, now: Instant) {
        let Some(pid) = self.leader else {
            self.set_waiting(false);
            return;
        };
        let restore = self.lowered.is_some();
        if self.want_low == restore {
            self.retry_at = None;
            self.set_waiting(false);
            return;
        }
        self.set_waiting(restore);
        if self.retry_at.is_some_and(|t| now < t) {
            return;
        }
        if let Err(at) = self.kernel.ask(restore, now) {
            self.retry_at = Some(at);
            return;
        }
        self.retry_at = None;
        let result = match self.lowered {
            Some(before) => (self.kernel.set_nice)(pid, before).map(|()| None),
            None => match (self.kernel.own_group)(pid) {
                // Not a group of its own: leave it (and the server) alone.
                None => {
                    self.leader = None;
                    return;
                }
                Some((group, before)) => {
                    self.group = Some(group);
                    (self.kernel.set_nice)(pid, self.nice.max(before)).map(|()| Some(before))
                }
            },
        };
        match result {
            Ok(lowered) => {
                self.lowered = lowered;
                self.set_waiting(false);
            }
            Err(e) if e.raw_os_error() == Some(rustix::io::Errno::AGAIN.raw_os_error()) => {
                // Someone else (another program) took the kernel's turn.
                self.kernel.refused(now);
                self.retry_at = Some(now + autogroup::RATE);
            }
            Err(e) => {
                // The program is gone, or autogroups are not ours to change.
                tracing::debug!(pid, error = %e, "autogroup nice not changed");
                self.leader = None;
                self.set_waiting(false);
            }
        }
    }

    /// Ends the watch of a leader that was reaped (its pid may be anyone's
    /// now). Were its group lowered, the processes it left in the group
    /// (background jobs, daemons) would stay lowered for good: a task of
    /// its own sets the group back through any of them.
    pub fn leader_exited(&mut self) {
        if let (Some(before), Some(group), Some(_)) = (self.lowered, self.group.take(), self.leader) {
            self.kernel.restore_group(group, before);
        }
        self.leader = None;
        self.lowered = None;
        self.want_low = false;
        self.set_waiting(false);
    }

    /// Counts this watch in the budget as a waiting restore, or not.
    fn set_waiting(&mut self, waiting: bool) {
        if self.waiting != waiting {
            self.waiting = waiting;
            self.kernel.waiting(waiting);
        }
    }
}
