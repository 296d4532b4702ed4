//! The paced streams of scenario 14: the bench's own binary, run as a
//! stream's program (`--pace-rate`, `--pace-file`), writes a file at a
//! fixed rate, so that every target carries the same load.
//!
//! It writes [`CHUNK`]s on an absolute schedule (`sent / rate` after the
//! start), so a late wake-up is made up by the next write rather than
//! lost. A terminal that stays full puts it behind: up to [`DEBT`] is
//! caught up, back to back; beyond that the debt is dropped and the
//! schedule starts over, so a stall is never paid back in a burst.
//!
//! Like the `cat` loop it stands in for, it ends by itself when its file is
//! gone (each pass opens the file again by path) or its terminal hung up
//! (a write fails, or SIGHUP).

use std::io::{Read, Write};
use std::os::fd::AsFd;
use std::path::Path;
use std::time::{Duration, Instant};

/// Bytes written at a time: one `write` each.
const CHUNK: usize = 16 << 10;
/// How far behind its schedule a stream may fall and still catch up.
const DEBT: Duration = Duration::from_millis(50);

/// What to do after a write, by the schedule.
#[derive(Debug, PartialEq)]
enum Step {
    /// Ahead of the schedule: wait this long.
    Sleep(Duration),
    /// On time, or less than [`DEBT`] behind: write again now.
    Go,
    /// More than [`DEBT`] behind: start the schedule over from now.
    StartOver,
}

/// The schedule's verdict when `sent` bytes went out since `start` and it
/// is `now`, at `rate` bytes per second.
fn step(start: Instant, sent: u64, rate: u64, now: Instant) -> Step {
    let due = start + Duration::from_secs_f64(sent as f64 / rate as f64);
    if due > now {
        Step::Sleep(due - now)
    } else if now - due > DEBT {
        Step::StartOver
    } else {
        Step::Go
    }
}

/// Writes `file` to standard output again and again at `rate` bytes per
/// second, until the file is gone or a write fails. Standard output is
/// written unbuffered, a [`CHUNK`] per `write`.
pub fn pace_out(file: &Path, rate: u64) -> anyhow::Result<()> {
    let mut out = std::fs::File::from(std::io::stdout().as_fd().try_clone_to_owned()?);
    pace_into(&mut out, file, rate)
}

/// [`pace_out`] into `out`; returns the error that ended it.
fn pace_into(out: &mut impl Write, file: &Path, rate: u64) -> anyhow::Result<()> {
    anyhow::ensure!(rate > 0, "--pace-rate must be above 0");
    let mut buf = vec![0u8; CHUNK];
    let (mut start, mut sent) = (Instant::now(), 0u64);
    loop {
        let mut f = std::fs::File::open(file)?;
        let mut pass = 0;
        loop {
            let n = f.read(&mut buf)?;
            if n == 0 {
                break;
            }
            pass += n;
            out.write_all(&buf[..n])?;
            sent += n as u64;
            match step(start, sent, rate, Instant::now()) {
                Step::Sleep(d) => std::thread::sleep(d),
                Step::Go => {}
                Step::StartOver => (start, sent) = (Instant::now(), 0),
            }
        }
        anyhow::ensure!(pass > 0, "{} is empty", file.display());
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Takes what it is given until it holds `cap` bytes, then fails.
    struct Capped {
        got: Vec<u8>,
        cap: usize,
    }

    impl Write for Capped {
        fn write(&mut self, b: &[u8]) -> std::io::Result<usize> {
            if self.got.len() >= self.cap {
                return Err(std::io::ErrorKind::BrokenPipe.into());
            }
            let n = b.len().min(self.cap - self.got.len());
            self.got.extend_from_slice(&b[..n]);
            Ok(n)
        }
        fn flush(&mut self) -> std::io::Result<()> {
            Ok(())
        }
    }

    #[test]
    fn a_paced_stream_repeats_its_file_until_a_write_fails() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.txt");
        let text: Vec<u8> = (0..CHUNK + 1000).map(|i| b'a' + (i % 26) as u8).collect();
        std::fs::write(&file, &text).unwrap();
        let mut out = Capped {
            got: vec![],
            cap: text.len() * 2 + 10,
        };
        let err = pace_into(&mut out, &file, u64::MAX / 2).unwrap_err();
        assert!(err.to_string().contains("pipe"), "{err:#}");
        let want: Vec<u8> = text.iter().chain(&text).chain(&text[..10]).copied().collect();
        assert!(out.got == want, "the file twice and 10 bytes, in order");
    }

    #[test]
    fn a_paced_stream_ends_when_its_file_is_gone_or_empty() {
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.txt");
        let mut out = Capped {
            got: vec![],
            cap: 1 << 20,
        };
        assert!(pace_into(&mut out, &file, 1000).is_err(), "no file");
        std::fs::write(&file, b"").unwrap();
        let err = pace_into(&mut out, &file, 1000).unwrap_err();
        assert!(err.to_string().contains("empty"), "{err:#}");
        assert!(out.got.is_empty());
    }

    #[test]
    fn the_schedule_waits_when_ahead_catches_up_when_a_little_late_and_starts_over_when_far_behind() {
        let t0 = Instant::now();
        let rate = 1_000_000; // a byte a microsecond
        // 10 ms of bytes sent 4 ms in: wait the other 6.
        assert_eq!(
            step(t0, 10_000, rate, t0 + Duration::from_millis(4)),
            Step::Sleep(Duration::from_millis(6))
        );
        assert_eq!(step(t0, 10_000, rate, t0 + Duration::from_millis(10)), Step::Go);
        // 10 ms late: write on, back to back.
        assert_eq!(step(t0, 10_000, rate, t0 + Duration::from_millis(20)), Step::Go);
        // More than DEBT late: the schedule starts over.
        assert_eq!(
            step(
                t0,
                10_000,
                rate,
                t0 + Duration::from_millis(10) + DEBT + Duration::from_millis(1)
            ),
            Step::StartOver
        );
    }

    #[test]
    fn a_paced_stream_takes_at_least_its_schedule() {
        // 4 chunks at 1 MB/s: at least 65 ms (a lower bound only, which a
        // busy machine cannot break).
        let dir = tempfile::tempdir().unwrap();
        let file = dir.path().join("f.txt");
        std::fs::write(&file, vec![b'x'; CHUNK * 4]).unwrap();
        let mut out = Capped {
            got: vec![],
            cap: CHUNK * 4,
        };
        let t0 = Instant::now();
        pace_into(&mut out, &file, 1_000_000).unwrap_err();
        assert!(t0.elapsed() >= Duration::from_millis(60), "{:?}", t0.elapsed());
    }
}
