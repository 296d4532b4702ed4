//! One burst of scenario 12: `n` sessions opened at once (16 at a time),
//! timed, with the server's and the whole machine's CPU per open.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;

use super::{OPEN_CONCURRENCY, OPEN_LIMIT, REST_BEFORE, Server, Viewer};
use crate::server::{children, machine_busy_ms, stat_cpu_ms};

/// How long the machine's busy time is read before each burst, to take
/// what else runs on it out of the machine's CPU per open.
const BACKGROUND: Duration = Duration::from_millis(500);
/// The longest a server may take to end the last burst's shells.
const CHILDREN_GONE: Duration = Duration::from_secs(30);

/// What one burst of `n` opens showed.
#[derive(Debug)]
pub(super) struct Burst {
    /// Sessions opened per second.
    pub rate: f64,
    /// The server's CPU per session opened, ms.
    pub cpu_ms: Option<f64>,
    /// The whole machine's CPU per session opened (every process and the
    /// kernel's own threads: the sessions' shells, the bench, the server),
    /// less the busy rate read just before the burst over its length, ms:
    /// what the opens cost together on a machine they share. `None` when
    /// that leaves less than nothing (the load before stopped during the
    /// burst: the figure would mean nothing).
    pub machine_ms: Option<f64>,
    /// The last burst's shells had not all ended within [`CHILDREN_GONE`]
    /// when this one began.
    pub unsettled: bool,
}

/// Opens `n` sessions, [`OPEN_CONCURRENCY`] at a time, each to its first
/// prompt; the figures and the viewers. First it waits (at most
/// [`CHILDREN_GONE`]) until the server runs no child process but those in
/// `theirs` (what the last burst started has ended), rests [`REST_BEFORE`] and
/// reads the machine's busy rate over [`BACKGROUND`].
///
/// The spare session directories termstream makes after a burst (a thread
/// of the server at idle priority, 200 ms after creates pause) are not
/// waited for but by the rest; the background read then includes them.
pub(super) async fn burst(
    server: &Server<'_>,
    pid: u32,
    theirs: &HashSet<u32>,
    n: usize,
) -> anyhow::Result<(Burst, Vec<anyhow::Result<Viewer>>)> {
    let deadline = Instant::now() + CHILDREN_GONE;
    let mut unsettled = true;
    while Instant::now() < deadline {
        if children(pid).is_subset(theirs) {
            unsettled = false;
            break;
        }
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    tokio::time::sleep(REST_BEFORE).await;
    let before_background = machine_busy_ms();
    tokio::time::sleep(BACKGROUND).await;
    let cpu_before = stat_cpu_ms(pid);
    let machine_before = machine_busy_ms();
    // Busy ms per second of whatever else runs meanwhile.
    let background = before_background
        .zip(machine_before)
        .map(|(b, a)| (a - b) / BACKGROUND.as_secs_f64());
    let t0 = Instant::now();
    let opened: Vec<anyhow::Result<Viewer>> = tokio::time::timeout(
        OPEN_LIMIT,
        futures_util::stream::iter(0..n)
            .map(|_| server.open())
            .buffer_unordered(OPEN_CONCURRENCY)
            .collect(),
    )
    .await
    .with_context(|| format!("opening {n} sessions took longer than {OPEN_LIMIT:?}"))?;
    let secs = t0.elapsed().as_secs_f64();
    let per_open = |before: Option<f64>, after: Option<f64>| before.zip(after).map(|(b, a)| (a - b) / n as f64);
    let burst = Burst {
        rate: n as f64 / secs,
        cpu_ms: per_open(cpu_before, stat_cpu_ms(pid)),
        machine_ms: per_open(machine_before, machine_busy_ms())
            .zip(background)
            .map(|(m, bg)| m - bg * secs / n as f64)
            .filter(|m| *m >= 0.0),
        unsettled,
    };
    Ok((burst, opened))
}

/// The viewers that opened, and the first error of those that did not.
pub(super) fn opened_and_error(opened: Vec<anyhow::Result<Viewer>>) -> (Vec<Viewer>, Option<anyhow::Error>) {
    let mut ok = Vec::with_capacity(opened.len());
    let mut failed = None;
    for v in opened {
        match v {
            Ok(v) => ok.push(v),
            Err(e) => failed = failed.or(Some(e)),
        }
    }
    (ok, failed)
}

/// Closes `viewers` (and their sessions), [`OPEN_CONCURRENCY`] at a time.
pub(super) async fn close_all(server: &Server<'_>, viewers: impl IntoIterator<Item = Viewer>) {
    futures_util::stream::iter(viewers)
        .map(|v| server.close(v))
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect::<Vec<()>>()
        .await;
}

/// One figure of each burst as `a, b, c` (`?` where unknown).
pub(super) fn per_burst(bursts: &[Burst], figure: impl Fn(&Burst) -> Option<f64>, decimals: usize) -> String {
    let shown = bursts
        .iter()
        .map(|b| figure(b).map_or("?".to_owned(), |v| format!("{v:.decimals$}")));
    shown.collect::<Vec<_>>().join(", ")
}
