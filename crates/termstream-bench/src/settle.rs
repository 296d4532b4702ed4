//! Waiting for a freshly started server to go quiet before it is measured.
//!
//! A server may go on working after it answers: termstream fills its pool
//! of spare session directories (`DATA_DIR/spare`, 256 of them, about
//! 100 ms of CPU and three `fsync`s each on a fresh data dir) on a thread
//! of its own, at idle priority, from just before it listens. The
//! scenarios read a server's CPU counters around what they measure, so
//! that start-up work was charged to the first thing measured (scenario
//! 1's CPU per MB read about 1.5 ms per MB more, a sixth of the figure),
//! and it ran beside the first timings. So every server the bench starts
//! (termstream, the cluster's nodes, ttyd, the bare relay) is waited for
//! until it is quiet, within [`SETTLE_LIMIT`], and scenario 1 reports what
//! it used until then apart ([`Settled::cpu_ms`]).
//!
//! Quiet is three things at once over [`QUIET_FOR`], because none is
//! enough alone: no 10 ms tick of the whole process's CPU time
//! (`/proc/PID/stat`, which keeps the time of threads that exited, as the
//! spare thread does when its pool is full); under [`QUIET_CPU`] in its
//! live threads (`/proc/PID/task/*/schedstat`, in nanoseconds); and no
//! thread runnable or in uninterruptible sleep at any reading (an
//! idle-priority thread starved by a busy machine, or one waiting on a
//! slow disk, uses almost no CPU but is not done).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use crate::server::{CpuUse, cpu_of, stat_cpu_ms};

/// How often the process's CPU time is read while waiting.
const STEP: Duration = Duration::from_millis(50);
/// How long the process must stay under [`QUIET_CPU`] to count as quiet.
const QUIET_FOR: Duration = Duration::from_millis(300);
/// The CPU time a quiet process may use in [`QUIET_FOR`]: 1 % of a core.
const QUIET_CPU: Duration = Duration::from_millis(3);
/// The longest wait: a process busy longer is measured anyway.
pub const SETTLE_LIMIT: Duration = Duration::from_secs(10);

/// What a process did from its start until it went quiet.
#[derive(Debug, Clone, Copy)]
pub struct Settled {
    /// Its CPU time from its start until quiet, ms (in 10 ms ticks).
    pub cpu_ms: f64,
    /// Whether it went quiet within [`SETTLE_LIMIT`].
    pub quiet: bool,
}

/// Waits until process `pid` is quiet (see the module's header) or
/// [`SETTLE_LIMIT`] has passed; `None` when there is no pid (a child that
/// already exited) or its CPU time cannot be read (no such process, no
/// `/proc`).
pub async fn settle(pid: Option<u32>) -> Option<Settled> {
    let pid = pid?;
    let start = Instant::now();
    // (when, whole-process ms, live threads' use) readings, oldest first,
    // spanning at least QUIET_FOR.
    let mut readings: VecDeque<(Instant, f64, CpuUse)> = VecDeque::new();
    // When a thread was last seen runnable or in uninterruptible sleep.
    let mut last_busy = start;
    loop {
        let now = Instant::now();
        let total_ms = stat_cpu_ms(pid)?;
        let live = cpu_of(pid)?;
        if busy_threads(pid) > 0 {
            last_busy = now;
        }
        readings.push_back((now, total_ms, live.clone()));
        while readings.len() > 1 && now.duration_since(readings[1].0) >= QUIET_FOR {
            readings.pop_front();
        }
        let (first_at, first_ms, first) = readings[0].clone();
        let settled = |quiet| Settled {
            cpu_ms: total_ms,
            quiet,
        };
        let calm_since = first_at.max(last_busy);
        if is_quiet(
            now.duration_since(calm_since),
            total_ms - first_ms,
            first.since(live).cpu_ns,
        ) {
            return Some(settled(true));
        }
        if start.elapsed() >= SETTLE_LIMIT {
            eprintln!("bench: process {pid} was still busy after {SETTLE_LIMIT:?}; measuring it anyway");
            return Some(settled(false));
        }
        tokio::time::sleep(STEP).await;
    }
}

/// Whether a span with no thread seen busy, in which the whole process's
/// CPU time grew by `ticks_ms` and its live threads' by `live_ns`, is
/// quiet: the span is long enough, no tick was counted and the live
/// threads used under [`QUIET_CPU`].
fn is_quiet(span: Duration, ticks_ms: f64, live_ns: u64) -> bool {
    span >= QUIET_FOR && ticks_ms == 0.0 && live_ns < QUIET_CPU.as_nanos() as u64
}

/// How many of process `pid`'s threads are runnable (`R`) or in
/// uninterruptible sleep (`D`) now; a thread that exits meanwhile is
/// skipped.
fn busy_threads(pid: u32) -> usize {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return 0;
    };
    tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("stat")).ok())
        .filter(|stat| {
            // The state is the first field after the command name, which
            // may hold spaces and parentheses.
            let state = stat.rfind(')').and_then(|i| stat[i + 1..].split_whitespace().next());
            matches!(state, Some("R" | "D"))
        })
        .count()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn quiet_needs_the_whole_span_and_little_cpu() {
        assert!(!is_quiet(Duration::from_millis(100), 0.0, 0));
        assert!(is_quiet(QUIET_FOR, 0.0, 0));
        assert!(is_quiet(QUIET_FOR, 0.0, 2_999_999));
        assert!(!is_quiet(QUIET_FOR, 0.0, 3_000_000));
        // A thread that exits takes what it used in the span out of the
        // live count: the ticks still tell.
        assert!(!is_quiet(QUIET_FOR, 10.0, 0));
    }

    /// `sh -c SCRIPT`, killed when dropped.
    fn sh(script: &str) -> tokio::process::Child {
        tokio::process::Command::new("sh")
            .args(["-c", script])
            .kill_on_drop(true)
            .spawn()
            .unwrap()
    }

    #[tokio::test]
    async fn a_spinning_thread_is_busy() {
        let spin = sh("while :; do :; done");
        assert_eq!(busy_threads(spin.id().unwrap()), 1);
    }

    #[tokio::test]
    async fn a_busy_process_is_waited_for_and_an_idle_one_is_not() {
        // A shell loop (about 0.3 s of CPU with dash), then `sleep` in its place:
        // the same process, whose name tells whether the loop is done.
        let busy = sh("i=0; while [ $i -lt 200000 ]; do i=$((i+1)); done; exec sleep 30");
        let pid = busy.id().unwrap();
        let s = settle(Some(pid)).await.unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "sleep", "settled while the loop ran");
        assert!(s.quiet);
        assert!(s.cpu_ms >= 100.0, "counted {} ms of CPU", s.cpu_ms);
        assert_eq!(busy_threads(pid), 0);

        let idle = sh("exec sleep 30");
        let t0 = Instant::now();
        assert!(settle(idle.id()).await.unwrap().quiet);
        assert!(t0.elapsed() < Duration::from_secs(3));
    }
}
