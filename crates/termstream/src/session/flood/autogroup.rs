//! The kernel side of flood priority: reading and changing autogroup nice
//! values (`/proc/PID/autogroup`), and the budget of changes all sessions
//! share.
//!
//! The kernel lets an unprivileged process change an autogroup's nice at
//! most ten times a second system-wide (`EAGAIN` otherwise). With many
//! floods, lowering them would use up that budget and a restore (a
//! session someone typed into, or whose output paused) would wait behind
//! them. So every change asks the [`Autogroups`] budget first: a restore
//! may go as soon as the kernel allows another change, a lowering only
//! while no restore waits and when the last change is at least
//! [`LOWER_GAP`] old, which leaves half the budget to restores.

use std::path::PathBuf;
use std::sync::{Mutex, OnceLock};
use std::time::{Duration, Instant};

/// How often the kernel allows a change (one per 100 ms, counted in
/// jiffies), with a margin for the jiffy it rounds to.
pub(super) const RATE: Duration = Duration::from_millis(110);
/// How old the last change must be before a lowering may go: twice
/// [`RATE`], so lowerings take at most half the kernel's budget.
pub(super) const LOWER_GAP: Duration = Duration::from_millis(220);
/// How long a leader's exit keeps trying to restore its group through the
/// processes left in it.
const EXIT_RESTORE_FOR: Duration = Duration::from_secs(10);

/// The changes this server made, the restores waiting for one, and the
/// calls that reach the kernel (real ones; tests put a model in).
pub(crate) struct Autogroups {
    budget: Mutex<Budget>,
    /// Sets the autogroup nice of a process.
    pub(super) set_nice: fn(u32, i32) -> std::io::Result<()>,
    /// The group and nice of a process's autogroup, when it is one of its
    /// own (not the server's) and autogroups are in effect.
    pub(super) own_group: fn(u32) -> Option<(String, i32)>,
}

/// What the budget remembers.
#[derive(Debug)]
struct Budget {
    /// When the last change was allowed (or the kernel refused one, which
    /// means someone else made one).
    last: Option<Instant>,
    /// How many restores wait for the budget.
    restores_waiting: usize,
}

/// The process-wide budget, over the real kernel.
pub(crate) static KERNEL: Autogroups = Autogroups {
    budget: Mutex::new(Budget {
        last: None,
        restores_waiting: 0,
    }),
    set_nice: write_nice,
    own_group: real_own_group,
};

impl Autogroups {
    /// A budget of its own over other calls (for tests).
    #[cfg(test)]
    pub(super) fn new(
        set_nice: fn(u32, i32) -> std::io::Result<()>,
        own_group: fn(u32) -> Option<(String, i32)>,
    ) -> Autogroups {
        Autogroups {
            budget: Mutex::new(Budget {
                last: None,
                restores_waiting: 0,
            }),
            set_nice,
            own_group,
        }
    }

    fn budget(&self) -> std::sync::MutexGuard<'_, Budget> {
        self.budget.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Asks to make a change at `now`: `Ok` takes the budget's turn,
    /// `Err` says when to ask again. A restore goes once the kernel
    /// allows another change; a lowering waits while any restore waits,
    /// and until [`LOWER_GAP`] after the last change.
    pub(super) fn ask(&self, restore: bool, now: Instant) -> Result<(), Instant> {
        let mut b = self.budget();
        let gap = if restore { RATE } else { LOWER_GAP };
        let free = b.last.map_or(now, |t| t + gap);
        if now < free {
            return Err(free);
        }
        if !restore && b.restores_waiting > 0 {
            return Err(now + RATE);
        }
        b.last = Some(now);
        Ok(())
    }

    /// Notes that the kernel refused a change at `now` (someone else made
    /// one): the next try waits a full turn.
    pub(super) fn refused(&self, now: Instant) {
        let mut b = self.budget();
        b.last = Some(b.last.map_or(now, |t| t.max(now)));
    }

    /// Notes that a restore starts (`true`) or stops (`false`) waiting.
    pub(super) fn waiting(&self, start: bool) {
        let mut b = self.budget();
        if start {
            b.restores_waiting += 1;
        } else {
            b.restores_waiting = b.restores_waiting.saturating_sub(1);
        }
    }

    /// Sets the nice of `group` back to `nice` after its leader was reaped,
    /// through any process still in it; gives up when none is left, after
    /// [`EXIT_RESTORE_FOR`], or on an error other than the rate limit.
    /// Runs as a task of its own; it counts as a waiting restore.
    pub(super) fn restore_group(&'static self, group: String, nice: i32) {
        self.waiting(true);
        tokio::spawn(async move {
            let until = Instant::now() + EXIT_RESTORE_FOR;
            loop {
                let now = Instant::now();
                if now >= until {
                    tracing::debug!(group, "autogroup not restored after its leader exited");
                    break;
                }
                if let Err(at) = self.ask(true, now) {
                    tokio::time::sleep_until(at.into()).await;
                    continue;
                }
                let g = group.clone();
                let set_nice = self.set_nice;
                let done = tokio::task::spawn_blocking(move || match member(&g) {
                    None => Ok(()),
                    Some(pid) => set_nice(pid, nice),
                })
                .await;
                match done {
                    Ok(Err(e)) if e.raw_os_error() == Some(rustix::io::Errno::AGAIN.raw_os_error()) => {
                        self.refused(Instant::now());
                    }
                    // The member found exited since: look for another.
                    Ok(Err(e))
                        if e.kind() == std::io::ErrorKind::NotFound
                            || e.raw_os_error() == Some(rustix::io::Errno::SRCH.raw_os_error()) => {}
                    Ok(Err(e)) => {
                        tracing::debug!(group, error = %e, "autogroup not restored");
                        break;
                    }
                    _ => break,
                }
            }
            self.waiting(false);
        });
    }
}

/// A live process in autogroup `group` (its file names it), found by a
/// scan of `/proc`. Blocking.
fn member(group: &str) -> Option<u32> {
    let me = std::process::id();
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .find(|&pid| read(&path(Some(pid))).is_some_and(|(g, _)| g == group))
}

/// The autogroup of `pid` and its nice, if autogroups are in effect and
/// `pid`'s group is not the server's own. A server whose file is empty is
/// in the default group (started outside any new session), which no
/// session's group is.
fn real_own_group(pid: u32) -> Option<(String, i32)> {
    if !enabled() {
        return None;
    }
    let (group, nice) = read(&path(Some(pid)))?;
    let own = read(&path(None)).map(|(own, _)| own);
    (Some(&group) != own.as_ref()).then_some((group, nice))
}

/// Whether the kernel schedules by autogroup.
fn enabled() -> bool {
    static ENABLED: OnceLock<bool> = OnceLock::new();
    *ENABLED.get_or_init(|| {
        std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled").is_ok_and(|s| s.trim() == "1")
    })
}

pub(super) fn path(pid: Option<u32>) -> PathBuf {
    match pid {
        Some(pid) => PathBuf::from(format!("/proc/{pid}/autogroup")),
        None => PathBuf::from("/proc/self/autogroup"),
    }
}

/// Reads an autogroup file: `/autogroup-123 nice 0`. `None` where it
/// cannot be read, or is empty: the kernel writes nothing for a process in
/// the default group, one that never started a session of its own since
/// boot (as under some CI runners and containers).
pub(super) fn read(path: &std::path::Path) -> Option<(String, i32)> {
    parse(&std::fs::read_to_string(path).ok()?)
}

/// Parses an autogroup file's text.
pub(super) fn parse(text: &str) -> Option<(String, i32)> {
    let mut words = text.split_whitespace();
    let group = words.next()?.to_owned();
    (words.next()? == "nice").then_some(())?;
    Some((group, words.next()?.parse().ok()?))
}

fn write_nice(pid: u32, nice: i32) -> std::io::Result<()> {
    std::fs::write(path(Some(pid)), nice.to_string())
}
