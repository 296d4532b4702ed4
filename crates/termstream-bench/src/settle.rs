//! Waiting for a freshly started server to go quiet before it is measured.
//!
//! A server may go on working after it answers: termstream fills its pool
//! of spare session directories (`DATA_DIR/spare`, 256 of them, about
//! 100 ms of CPU on a fresh data dir) on a thread of its own once it
//! listens. The scenarios read a server's CPU counters around what they
//! measure, so that start-up work was charged to the first thing measured
//! (scenario 1's CPU per MB read about 1.4 ms per MB more, a sixth of the
//! figure), and it ran beside the first timings. Every server the bench
//! starts (termstream, ttyd, the bare relay) is therefore waited for until
//! its CPU time stops growing, within [`SETTLE_LIMIT`], and what it used
//! until then is reported apart ([`Settled::cpu_ms`]).

use std::time::{Duration, Instant};

use crate::server::{cpu_of, stat_cpu_ms};

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

/// Waits until process `pid` has used less than [`QUIET_CPU`] in the last
/// [`QUIET_FOR`], or [`SETTLE_LIMIT`] has passed; `None` when its CPU time
/// cannot be read (no such process, no `/proc`).
///
/// Two counters are read, because neither is enough alone: the live
/// threads' nanoseconds (`cpu_of`) lose a thread's time when it exits (as
/// termstream's spare-making thread does when its pool is full), and the
/// whole process's time (`/proc/PID/stat`, dead threads included) counts
/// in 10 ms ticks. Quiet is both standing still.
pub async fn settle(pid: u32) -> Option<Settled> {
    let start = Instant::now();
    // (when, whole-process ms, live threads' ns) readings, oldest first,
    // spanning at least QUIET_FOR.
    let mut readings = std::collections::VecDeque::new();
    loop {
        let now = Instant::now();
        let total_ms = stat_cpu_ms(pid)?;
        let live_ns = cpu_of(pid)?.cpu_ns;
        readings.push_back((now, total_ms, live_ns));
        while readings.len() > 1 && now.duration_since(readings[1].0) >= QUIET_FOR {
            readings.pop_front();
        }
        let (first_at, first_ms, first_ns) = readings[0];
        let settled = |quiet| Settled {
            cpu_ms: total_ms,
            quiet,
        };
        if is_quiet(
            now.duration_since(first_at),
            total_ms - first_ms,
            live_ns.saturating_sub(first_ns),
        ) {
            return Some(settled(true));
        }
        if start.elapsed() >= SETTLE_LIMIT {
            eprintln!("bench: process {pid} still used CPU after {SETTLE_LIMIT:?}; measuring it anyway");
            return Some(settled(false));
        }
        tokio::time::sleep(STEP).await;
    }
}

/// Whether a span in which the whole process's CPU time grew by `ticks_ms`
/// and its live threads' by `live_ns` is quiet: the span is long enough,
/// no tick was counted and the live threads used under [`QUIET_CPU`].
fn is_quiet(span: Duration, ticks_ms: f64, live_ns: u64) -> bool {
    span >= QUIET_FOR && ticks_ms == 0.0 && live_ns < QUIET_CPU.as_nanos() as u64
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
        // A thread that exits takes its time out of the live count: the
        // ticks still tell.
        assert!(!is_quiet(QUIET_FOR, 10.0, 0));
    }

    #[tokio::test]
    async fn a_busy_process_is_waited_for_and_an_idle_one_is_not() {
        // A shell loop (about 0.8 s of CPU here), then `sleep` in its place:
        // the same process, whose name tells whether the loop is done.
        let mut busy = tokio::process::Command::new("sh")
            .args(["-c", "i=0; while [ $i -lt 500000 ]; do i=$((i+1)); done; exec sleep 30"])
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let pid = busy.id().unwrap();
        let s = settle(pid).await.unwrap();
        let comm = std::fs::read_to_string(format!("/proc/{pid}/comm")).unwrap();
        assert_eq!(comm.trim(), "sleep", "settled while the loop ran");
        assert!(s.quiet);
        assert!(s.cpu_ms >= 100.0, "counted {} ms of CPU", s.cpu_ms);
        let _ = busy.kill().await;

        let mut idle = tokio::process::Command::new("sleep")
            .arg("30")
            .kill_on_drop(true)
            .spawn()
            .unwrap();
        let t0 = Instant::now();
        assert!(settle(idle.id().unwrap()).await.unwrap().quiet);
        assert!(t0.elapsed() < Duration::from_secs(3));
        let _ = idle.kill().await;
    }
}
