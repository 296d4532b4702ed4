//! The echo probe under load: keys sent at a steady pace, each timed to
//! its own echo, whether or not the echoes before it came back.
//!
//! Round trips sent back to back (the next key only once the last one's
//! echo came back, as scenario 3 does at idle) measure a server under load
//! unevenly. A stall holds one key instead of every key a person would
//! have typed meanwhile, so the tail counts each stall once (coordinated
//! omission). And the faster a server echoes, the more keys it is sent:
//! termstream's 2,000 back-to-back keys under load took about 0.45 s and
//! ttyd's about 1.1 s, so the two were measured over windows of different
//! length, and termstream served more than twice the keys per second,
//! which its CPU per MB also counted. Paced keys give every server the
//! same keys per second over the same time, and count every key a stall
//! holds. A key is timed from just before it is sent until its echo is
//! read; a key the probe sends late (its own thread was not running) is
//! timed from when it was sent.
//!
//! The echoing program is `stty raw -echo; exec cat`: its output is the
//! keys, in order. Keys cycle through `a`..=`z`. Output while no key is in
//! flight (a screen sent on attach) is skipped; once keys are in flight,
//! any byte but the next key awaited is an error (a key lost or doubled).

use std::collections::VecDeque;
use std::time::{Duration, Instant};

use anyhow::bail;

/// The pace of scenario 4's and 14's keys unless `--echo-pace-us` says otherwise:
/// a key every millisecond, a burst far faster than typing that still
/// leaves termstream's and ttyd's p50 under load (0.2–0.5 ms) room before
/// the next key (the bare relay's is several ms: its keys queue). tokio's
/// timer counts whole milliseconds, so a shorter pace sends its keys in
/// bursts, one per tick.
pub const DEFAULT_PACE: Duration = Duration::from_millis(1);

/// A wait longer than any probe: [`echo_samples`] keeps its own deadline,
/// so the connections' reads need none.
pub const NO_DEADLINE: Duration = Duration::from_secs(3600);

/// A connection to an echoing program.
pub trait Echo {
    /// Sends one key.
    async fn key(&mut self, key: u8) -> anyhow::Result<()>;
    /// The next output; `None` once the connection or program ended. Must
    /// be cancel-safe: output not yet returned stays for the next call.
    async fn output(&mut self) -> anyhow::Result<Option<Vec<u8>>>;
}

/// Scenario 3's idle echo: [`echo_samples`] with no pace (each key once
/// the last one's echo came back), within `limit` from now.
pub async fn idle_samples(
    echo: &mut impl Echo,
    warmup: usize,
    samples: usize,
    limit: Duration,
) -> anyhow::Result<Vec<Duration>> {
    echo_samples(echo, warmup, samples, Duration::ZERO, Instant::now() + limit).await
}

/// Sends `warmup + samples` keys, one every `pace` (`pace` zero: each once
/// the last one's echo came back, the old back-to-back method), and
/// returns the round trips of the last `samples`; fewer (said on stderr)
/// if `deadline` passes first (keys still in flight then are not counted),
/// an error if none came back or a key could not be sent by then. Output
/// that comes while no key is in flight (a screen sent on attach) is
/// skipped; once keys are in flight, a byte other than the next key
/// awaited is an error (a key lost or doubled), as timing the echoes after
/// it against the wrong keys would be. Scenario 3's idle echoes of the bare
/// PTY, the relay and ttyd use it with no pace ([`idle_samples`]).
pub async fn echo_samples(
    echo: &mut impl Echo,
    warmup: usize,
    samples: usize,
    pace: Duration,
    deadline: Instant,
) -> anyhow::Result<Vec<Duration>> {
    let total = warmup + samples;
    let key = |i: usize| b'a' + (i % 26) as u8;
    // When each key in flight was sent: at most `total`.
    let mut in_flight: VecDeque<Instant> = VecDeque::new();
    let mut out = Vec::with_capacity(samples);
    let (mut sent, mut got) = (0, 0);
    let mut next = Instant::now();
    while got < total {
        let may_send = sent < total && (!pace.is_zero() || in_flight.is_empty());
        let send_at = if may_send { next } else { deadline };
        // Echoes already read are timed before overdue keys go out, so a
        // burst of sends (the probe's thread ran late) does not add to them.
        tokio::select! {
            biased;
            () = tokio::time::sleep_until(deadline.into()) => break,
            output = echo.output() => {
                let Some(bytes) = output? else { bail!("the echo ended") };
                let now = Instant::now();
                for b in bytes {
                    let Some(&t0) = in_flight.front() else { continue };
                    if b != key(got) {
                        bail!("echo {got}: read {:?} awaiting {:?}", b as char, key(got) as char);
                    }
                    in_flight.pop_front();
                    if got >= warmup {
                        out.push(now - t0);
                    }
                    got += 1;
                }
            }
            () = tokio::time::sleep_until(send_at.into()), if may_send => {
                let t0 = Instant::now();
                tokio::time::timeout_at(deadline.into(), echo.key(key(sent)))
                    .await
                    .map_err(|_| anyhow::anyhow!("key {sent} not sent before the deadline"))??;
                in_flight.push_back(t0);
                sent += 1;
                next += pace;
            }
        }
    }
    anyhow::ensure!(!out.is_empty(), "no echo came back before the deadline");
    if out.len() < samples {
        eprintln!(
            "bench: only {} of {samples} echoes came back before the deadline",
            out.len()
        );
    }
    Ok(out)
}

#[cfg(test)]
mod tests {
    use super::*;

    /// The bare PTY echo, counting the keys in flight.
    struct Counted {
        echo: crate::baseline::EchoPty,
        in_flight: usize,
        most: usize,
    }

    impl Echo for Counted {
        async fn key(&mut self, key: u8) -> anyhow::Result<()> {
            self.in_flight += 1;
            self.most = self.most.max(self.in_flight);
            self.echo.key(key).await
        }
        async fn output(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
            let out = self.echo.output().await?;
            if let Some(o) = &out {
                self.in_flight = self.in_flight.saturating_sub(o.len());
            }
            Ok(out)
        }
    }

    async fn counted() -> Counted {
        Counted {
            echo: crate::baseline::echo_pty().await.expect("an echo on a PTY"),
            in_flight: 0,
            most: 0,
        }
    }

    #[tokio::test]
    async fn a_lost_echo_is_an_error_not_a_wrong_time() {
        // An echo that drops every `c`: the `d` after it would otherwise be
        // timed as the `c`'s echo, and every echo after it a key late.
        let mut echo = crate::baseline::pty_ready("stty raw -echo; printf R; exec stdbuf -o0 tr -d c")
            .await
            .expect("an echo on a PTY");
        let deadline = Instant::now() + Duration::from_secs(20);
        let err = echo_samples(&mut echo, 0, 10, Duration::from_millis(2), deadline)
            .await
            .expect_err("a lost echo was timed");
        assert!(err.to_string().contains("awaiting 'c'"), "{err:#}");
    }

    #[tokio::test]
    async fn paced_keys_go_out_on_schedule_and_each_is_timed() {
        let mut echo = counted().await;
        let t0 = Instant::now();
        let deadline = t0 + Duration::from_secs(20);
        let got = echo_samples(&mut echo, 10, 90, Duration::from_millis(5), deadline)
            .await
            .unwrap();
        // 100 keys 5 ms apart: the last went out 495 ms after the first.
        assert!(t0.elapsed() >= Duration::from_millis(495), "{:?}", t0.elapsed());
        assert_eq!(got.len(), 90);
        assert!(got.iter().all(|d| *d < Duration::from_secs(5)));
    }

    #[tokio::test]
    async fn unpaced_keys_wait_for_the_last_echo() {
        let mut echo = counted().await;
        let deadline = Instant::now() + Duration::from_secs(20);
        let got = echo_samples(&mut echo, 5, 200, Duration::ZERO, deadline).await.unwrap();
        assert_eq!(got.len(), 200);
        assert_eq!(echo.most, 1, "back to back: one key in flight at a time");
    }

    #[tokio::test]
    async fn a_key_held_by_a_stall_is_timed_from_its_send() {
        // The program is stopped for 300 ms while keys keep going out:
        // every key sent meanwhile waits, and each is counted.
        let mut echo = counted().await;
        let pid = echo.echo.1.id().expect("the echo's pid");
        let deadline = Instant::now() + Duration::from_secs(20);
        let stall = tokio::spawn(async move {
            tokio::time::sleep(Duration::from_millis(100)).await;
            let pid = rustix::process::Pid::from_raw(pid as i32).expect("a pid");
            rustix::process::kill_process(pid, rustix::process::Signal::STOP).unwrap();
            tokio::time::sleep(Duration::from_millis(300)).await;
            rustix::process::kill_process(pid, rustix::process::Signal::CONT).unwrap();
        });
        let got = echo_samples(&mut echo, 0, 300, Duration::from_millis(2), deadline)
            .await
            .unwrap();
        stall.await.unwrap();
        assert_eq!(got.len(), 300, "every key came back and was timed");
        let held = got.iter().filter(|d| **d >= Duration::from_millis(100)).count();
        // About 150 keys went out while it was stopped (300 ms at 2 ms);
        // those sent in its first 200 ms waited at least 100 ms.
        assert!(held >= 50, "only {held} keys counted the stall: {got:?}");
        assert!(echo.most > 50, "keys kept going out: {}", echo.most);
    }
}
