//! One burst of scenario 12: `n` sessions opened at once (16 at a time),
//! timed, with the server's and the whole machine's CPU per open.

use std::collections::HashSet;
use std::time::{Duration, Instant};

use anyhow::anyhow;
use futures_util::StreamExt;

use super::{Cut, OPEN_CONCURRENCY, REST_BEFORE, Server, Viewer};
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
///
/// When the `n` have not all opened by `limit`, an error (the first open's
/// that failed, if any, under the limit's), once every session the burst
/// made is ended: the opens under way end at `limit`, each deleting its
/// termstream session (its create let finish, so up to a minute more on a
/// server that hangs), and the viewers that opened are closed as by
/// [`close_all`]. That close has no bound in total: each viewer takes up to
/// 2 s to close and 30 s to delete, [`OPEN_CONCURRENCY`] at a time, so on
/// a hanging server it lasts until `--scenario-timeout` drops the scenario;
/// what it then leaves on a server the bench did not start (`--url`), the
/// bench's sweep after the scenario deletes (`Target::sweep`, by the
/// bench's id prefix). Nothing else on the server is touched.
pub(super) async fn burst(
    server: &Server<'_>,
    pid: u32,
    theirs: &HashSet<u32>,
    n: usize,
    limit: Duration,
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
    let limit_at = t0 + limit;
    // No open begins after the limit, and those under way end at it (see
    // `Server::open`), each having deleted its session: not dropped, as
    // they were by a timeout around the burst, which left every session
    // the burst had made running (on someone's server with `--url`).
    let opened: Vec<anyhow::Result<Viewer>> = futures_util::stream::iter(0..n)
        .take_while(|_| std::future::ready(Instant::now() < limit_at))
        .map(|_| server.open(limit_at))
        .buffer_unordered(OPEN_CONCURRENCY)
        .collect()
        .await;
    let secs = t0.elapsed().as_secs_f64();
    if Instant::now() >= limit_at && opened.iter().filter(|v| v.is_ok()).count() < n {
        // The first open that failed other than by the limit may tell why
        // (the server refused, say): every open under way at the limit
        // failed by it.
        let (viewers, failed) = opened_and_error(opened.into_iter().filter(|v| !matches!(v, Err(e) if e.is::<Cut>())));
        close_all(server, viewers).await;
        let cut = format!("opening {n} sessions took longer than {limit:?}");
        return Err(match failed {
            Some(e) => e.context(cut),
            None => anyhow!(cut),
        });
    }
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
pub(super) fn opened_and_error(
    opened: impl IntoIterator<Item = anyhow::Result<Viewer>>,
) -> (Vec<Viewer>, Option<anyhow::Error>) {
    let mut ok = Vec::new();
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

#[cfg(test)]
mod tests {
    use super::*;
    use crate::server::{Target, test_server};

    /// The longest a REST call, or the wait for the list to empty, may take.
    const WAIT: Duration = Duration::from_secs(10);

    /// The sessions `target` says it created (its `/metrics`), within
    /// [`WAIT`].
    async fn created(target: &Target) -> u64 {
        let rest = reqwest::Client::builder().timeout(WAIT).build().expect("a client");
        let resp = rest.get(format!("{}/metrics", target.http)).send().await.expect("GET");
        let metrics = resp.text().await.expect("a body");
        metrics
            .lines()
            .filter(|l| l.starts_with("termstream_sessions_created_total"))
            .filter_map(|l| l.rsplit(' ').next()?.parse::<u64>().ok())
            .sum()
    }

    /// A burst used to be cut short by a timeout around it, which dropped
    /// its opens and viewers: every session it had made was left running.
    #[tokio::test]
    async fn a_burst_cut_short_by_its_limit_leaves_no_session() {
        let work = tempfile::tempdir().expect("a work dir");
        let target = test_server(work.path()).start().await.expect("a server");
        let pid = target.pid.expect("its pid");
        // Far more than can open within the limit; none begins after it.
        let cut = burst(
            &Server::Termstream(&target),
            pid,
            &HashSet::new(),
            10_000,
            Duration::from_millis(200),
        )
        .await;
        let err = cut.err().expect("10 000 opens within 200 ms");
        assert!(err.to_string().contains("took longer than"), "{err:#}");
        let created = created(&target).await;
        assert!(created > 0, "the burst made no session: nothing to check");
        let give_up = Instant::now() + WAIT;
        loop {
            let left = target.session_ids(WAIT).await.expect("the list");
            if left.is_empty() {
                break;
            }
            assert!(
                Instant::now() < give_up,
                "{} of the {created} sessions the burst made are left: {left:?}",
                left.len()
            );
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        target.stop().await;
    }
}
