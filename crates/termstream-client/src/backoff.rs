//! Reconnect delays: exponential backoff with full jitter, as a pure value.
//!
//! The n-th retry waits a random time in `[d/2, d]` where
//! `d = min(first * 2^n, cap)`. The attempt count resets only after a
//! connection stayed up for [`BackoffPolicy::reset_after`] or made progress
//! (delivered output), so a server that accepts and drops at once is not
//! hammered at the first delay forever, while a link that keeps breaking
//! under a working transfer does not slow it down more and more.

use std::time::Duration;

/// How reconnects are spaced.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct BackoffPolicy {
    /// The delay before the first retry (100 ms by default).
    pub first: Duration,
    /// The longest delay (10 s by default).
    pub cap: Duration,
    /// A connection that lasted this long resets the delay to `first`.
    pub reset_after: Duration,
}

impl Default for BackoffPolicy {
    fn default() -> Self {
        BackoffPolicy {
            first: Duration::from_millis(100),
            cap: Duration::from_secs(10),
            reset_after: Duration::from_secs(10),
        }
    }
}

/// The state of a run of retries.
#[derive(Debug, Clone)]
pub struct Backoff {
    policy: BackoffPolicy,
    attempt: u32,
}

impl Backoff {
    /// A fresh run: the next delay is about `policy.first`.
    pub fn new(policy: BackoffPolicy) -> Backoff {
        Backoff { policy, attempt: 0 }
    }

    /// Retries so far in this run.
    pub fn attempt(&self) -> u32 {
        self.attempt
    }

    /// The ceiling of the next delay, before jitter.
    pub fn ceiling(&self) -> Duration {
        let factor = 1u32.checked_shl(self.attempt.min(31)).unwrap_or(u32::MAX);
        self.policy.first.saturating_mul(factor).min(self.policy.cap)
    }

    /// The next delay, with jitter drawn from `unit` (a number in `[0, 1]`),
    /// and counts the attempt.
    pub fn next_with(&mut self, unit: f64) -> Duration {
        let ceiling = self.ceiling();
        self.attempt = self.attempt.saturating_add(1);
        let half = ceiling / 2;
        half + half.mul_f64(unit.clamp(0.0, 1.0))
    }

    /// The next delay with random jitter.
    pub fn next_delay(&mut self) -> Duration {
        self.next_with(rand::random::<f64>())
    }

    /// Tells the backoff that a connection ended after being up for `uptime`:
    /// a long enough one, or one that made `progress`, starts a fresh run.
    pub fn connection_ended(&mut self, uptime: Duration, progress: bool) {
        if progress || uptime >= self.policy.reset_after {
            self.attempt = 0;
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn delays_double_up_to_the_cap() {
        let mut b = Backoff::new(BackoffPolicy::default());
        let ceilings: Vec<u64> = (0..10)
            .map(|_| {
                let c = b.ceiling().as_millis() as u64;
                b.next_with(1.0);
                c
            })
            .collect();
        assert_eq!(ceilings, [100, 200, 400, 800, 1600, 3200, 6400, 10_000, 10_000, 10_000]);
    }

    #[test]
    fn jitter_stays_between_half_and_the_ceiling() {
        let mut b = Backoff::new(BackoffPolicy::default());
        assert_eq!(b.clone().next_with(0.0), Duration::from_millis(50));
        assert_eq!(b.next_with(1.0), Duration::from_millis(100));
        for _ in 0..100 {
            let ceiling = b.ceiling();
            let d = b.next_delay();
            assert!(
                d >= ceiling / 2 && d <= ceiling,
                "{d:?} outside [{:?}, {ceiling:?}]",
                ceiling / 2
            );
        }
        // Many attempts never overflow.
        assert_eq!(b.ceiling(), Duration::from_secs(10));
    }

    #[test]
    fn only_a_long_connection_resets_the_run() {
        let policy = BackoffPolicy {
            first: Duration::from_millis(10),
            cap: Duration::from_secs(1),
            reset_after: Duration::from_secs(5),
        };
        let mut b = Backoff::new(policy);
        b.next_with(1.0);
        b.next_with(1.0);
        b.connection_ended(Duration::from_secs(1), false);
        assert_eq!(b.ceiling(), Duration::from_millis(40));
        b.connection_ended(Duration::from_secs(5), false);
        assert_eq!(b.ceiling(), Duration::from_millis(10));
        b.next_with(1.0);
        b.connection_ended(Duration::ZERO, true);
        assert_eq!(
            b.ceiling(),
            Duration::from_millis(10),
            "a connection that delivered output was good"
        );
    }
}
