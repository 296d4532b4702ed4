//! Scenario 12: opening sessions, and what an idle one costs with its
//! viewer attached.
//!
//! For each count `n` (`--idle`, default 100 and 1000), on a fresh server:
//! one session is opened and closed (what the first one costs once is not
//! spread over `n`); then [`ONE_AT_A_TIME`] are opened and closed one by
//! one, [`ONE_PAUSE`] apart, as a person opens terminals, and the median
//! time to the first prompt is kept; then `n` sessions are opened, [`OPEN_CONCURRENCY`] at a
//! time, each to its first prompt: termstream `POST /api/sessions`
//! (`/bin/sh`, 80 × 24), a `/ws` connection, `session.attach` and the
//! first output that ends like a prompt. The viewers stay connected and
//! attached; after a second of rest the server's PSS (from
//! `/proc/PID/smaps_rollup`) is read, and its growth over the warm server,
//! divided by `n`, is the cost of one idle session with its viewer. Those
//! sessions are then closed, and `n` more are opened and closed again,
//! [`BURSTS`] bursts in all. Before each burst the server has ended every
//! shell the bench opened (waited for, up to 30 s; a running server's own
//! sessions are left out) and rested [`REST_BEFORE`]; the rate is the median of
//! the bursts, each listed in the rows' notes (`burst.rs`).
//!
//! Two CPU figures per session opened, medians of the bursts too: the
//! server's own (`utime + stime` of all its threads, not its children's),
//! steadier than the rate on a busy machine; and the whole machine's
//! (`/proc/stat`: the shells, the kernel's threads and the bench as well),
//! what the opens share the machine's cores for, less the machine's busy
//! rate over half a second before the burst times the burst's length. That
//! takes off at most what else ran: when the opens fill the cores, the
//! rest gets less than before. The machine's counts the bench's client,
//! which does more for termstream (a REST request, then a WebSocket and
//! JSON) than for ttyd or the relay (one WebSocket), and the relay's shell
//! starts through `sh -c exec`. Both count 10 ms clock ticks: over 100
//! opens, about 0.1 ms per open.
//!
//! The same is measured, in the same run, through the bare relay (a socket
//! and a PTY per session, nothing else) and, with `--peer ttyd=PATH`,
//! through ttyd (connect with subprotocol `tty`, the size message, the
//! first prompt).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use termstream_proto::{SessionId, SessionKind};
use tokio::sync::watch;

use crate::Ctx;
use crate::client::{Client, Event};
use crate::peer::{Ttyd, TtydConn};
use crate::relay::{Relay, RelayConn};
use crate::report::{Goal, Row, median};
use crate::server::{Target, children};
use burst::{Burst, burst, close_all, opened_and_error, per_burst};

mod burst;

/// Sessions being opened at once.
pub const OPEN_CONCURRENCY: usize = 16;
/// Times `n` sessions are opened on each server; the rate and CPU figures
/// are the medians. One burst of 100 lasts 0.10–0.18 s here, and single
/// bursts' rates were seen 30 % and more apart in one run.
const BURSTS: usize = 3;
/// Time a server rests before its memory is read, and before
/// each burst.
const REST_BEFORE: Duration = Duration::from_secs(1);
/// The longest opening `n` sessions may take.
const OPEN_LIMIT: Duration = Duration::from_secs(240);
/// The longest one open may take.
const ONE_OPEN: Duration = Duration::from_secs(30);
/// Sessions opened one by one, each timed to its first prompt.
pub const ONE_AT_A_TIME: usize = 9;
/// The pause before each of them: long enough for the server (and the
/// kernel) to be idle again.
pub const ONE_PAUSE: Duration = Duration::from_millis(100);

const S12: &str = "12 open and attached idle";

/// Whether output ends like `/bin/sh`'s prompt (`$ ` or `# `).
pub fn is_prompt(out: &[u8]) -> bool {
    out.ends_with(b"$ ") || out.ends_with(b"# ")
}

/// A server sessions are opened on.
enum Server<'a> {
    Termstream(&'a Target),
    Relay(&'a Relay),
    Ttyd(&'a Ttyd),
}

/// A viewer of termstream session `id`, connected and attached, once its
/// first prompt came.
async fn to_prompt(t: &Target, id: &SessionId) -> anyhow::Result<Client> {
    let mut c = Client::connect_small(&t.ws).await?;
    c.attach(id).await?;
    let deadline = Instant::now() + ONE_OPEN;
    loop {
        match c.next(deadline).await? {
            Event::Restore { data, .. } if data.contains("$ ") || data.contains("# ") => return Ok(c),
            Event::Output { data, .. } if is_prompt(&data) => return Ok(c),
            Event::Exit | Event::Closed => bail!("the session ended before its prompt"),
            Event::Error(e) => bail!("error before the prompt: {e}"),
            _ => {}
        }
    }
}

/// One open session's viewer, held until the figures are read.
enum Viewer {
    Termstream(Client, SessionId),
    Relay(RelayConn),
    Ttyd(TtydConn),
}

/// Why an open ended at its deadline: told apart from the errors that say
/// what went wrong, which a cut-short burst reports first.
#[derive(Debug)]
pub(super) struct Cut;

impl std::fmt::Display for Cut {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("cut short by the time limit")
    }
}

impl std::error::Error for Cut {}

impl Server<'_> {
    fn pid(&self) -> Option<u32> {
        match self {
            Server::Termstream(t) => t.pid,
            Server::Relay(r) => r.pid(),
            Server::Ttyd(t) => t.pid(),
        }
    }

    /// Opens one session to its first prompt, giving up at `deadline`.
    ///
    /// A termstream session that does not reach its prompt is deleted: it
    /// is not left running on someone's server (`--url`). Its create is not
    /// cut off at `deadline` but let finish (within the REST client's 30 s),
    /// so that its id is known: a create dropped on its way may still make
    /// a session that only the bench's sweep of a `--url` server (after a
    /// failed scenario, and at the end) would delete, by its id prefix (a
    /// burst cut short by its limit used to leave every session it made).
    /// The relay's and ttyd's shells end with their sockets.
    async fn open(&self, deadline: Instant) -> anyhow::Result<Viewer> {
        let cut = || anyhow::Error::new(Cut);
        let deadline = tokio::time::Instant::from_std(deadline);
        match self {
            Server::Termstream(t) => {
                let id = t.start(SessionKind::Pty, vec!["/bin/sh".into()]).await?;
                let viewer = tokio::time::timeout_at(deadline, to_prompt(t, &id)).await;
                match viewer.unwrap_or_else(|_| Err(cut())) {
                    Ok(c) => Ok(Viewer::Termstream(c, id)),
                    Err(e) => {
                        let _ = t.delete(&id).await;
                        Err(e)
                    }
                }
            }
            Server::Relay(r) => {
                let open = async {
                    let mut c = r.open_small("exec /bin/sh").await?;
                    c.wait_prompt(Instant::now() + ONE_OPEN).await?;
                    Ok::<_, anyhow::Error>(Viewer::Relay(c))
                };
                tokio::time::timeout_at(deadline, open)
                    .await
                    .unwrap_or_else(|_| Err(cut()))
            }
            Server::Ttyd(t) => {
                let open = async {
                    let mut c = t.open(None, true).await?;
                    c.wait_prompt().await?;
                    Ok::<_, anyhow::Error>(Viewer::Ttyd(c))
                };
                tokio::time::timeout_at(deadline, open)
                    .await
                    .unwrap_or_else(|_| Err(cut()))
            }
        }
    }

    /// Ends one session opened by [`Server::open`].
    async fn close(&self, viewer: Viewer) {
        match (self, viewer) {
            (Server::Termstream(t), Viewer::Termstream(c, id)) => {
                c.close().await;
                let _ = t.delete(&id).await;
            }
            (_, v) => drop(v),
        }
    }
}

impl Viewer {
    /// Reads and drops whatever comes until `stop` turns true; then what
    /// is left to close: a termstream session outlives its socket, the
    /// others' shells end with theirs.
    async fn hold(self, mut stop: watch::Receiver<bool>) -> Option<Viewer> {
        match self {
            Viewer::Termstream(mut c, id) => {
                c.drain(&mut stop, Instant::now() + OPEN_LIMIT * 2).await;
                Some(Viewer::Termstream(c, id))
            }
            Viewer::Relay(c) => {
                c.drain(stop).await;
                None
            }
            Viewer::Ttyd(c) => {
                c.drain(stop).await;
                None
            }
        }
    }
}

/// What opening `n` sessions on one server showed.
#[derive(Debug)]
struct Opened {
    /// Sessions opened per second: the median of the bursts.
    rate: f64,
    /// Each burst's figures, in order.
    bursts: Vec<Burst>,
    /// PSS growth per idle session with its viewer, KiB.
    pss_kib: f64,
    /// The server's PSS before and with the sessions, KiB.
    pss_before: u64,
    pss_with: u64,
    /// Growth of the anonymous part of PSS (heap, stacks) per session,
    /// KiB: the file-backed rest is mostly the binary's code, faulted in
    /// (or back in, after the kernel dropped it) once, not per session.
    anon_kib: Option<f64>,
    /// The server's own CPU time (all threads, not its children) per
    /// session opened, ms: steadier than the rate on a busy machine.
    cpu_ms: Option<f64>,
    /// The whole machine's CPU per session opened, ms (see [`Burst`]).
    machine_ms: Option<f64>,
    /// The median time to the first prompt of a session opened alone, ms.
    one_ms: f64,
}

/// The PSS of process `pid`, KiB.
pub fn pss_kib(pid: u32) -> Option<u64> {
    rollup_kib(pid, "Pss:")
}

/// The anonymous PSS (`Pss_Anon`: heap, stacks) of process `pid`, KiB.
pub fn pss_anon_kib(pid: u32) -> Option<u64> {
    rollup_kib(pid, "Pss_Anon:")
}

/// A `KEY: N kB` line of `/proc/PID/smaps_rollup`.
fn rollup_kib(pid: u32, key: &str) -> Option<u64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/smaps_rollup")).ok()?;
    let line = text.lines().find(|l| l.starts_with(key))?;
    line[key.len()..].split_whitespace().next()?.parse().ok()
}

async fn open_on(server: &Server<'_>, n: usize) -> anyhow::Result<Opened> {
    let pid = server.pid().context("the server's pid is unknown")?;
    // A running server (`--url`) may hold sessions of its own: their
    // programs are not waited for before a burst.
    let theirs = children(pid);
    let first = server
        .open(Instant::now() + ONE_OPEN)
        .await
        .context("the first session")?;
    server.close(first).await;
    let mut one = Vec::with_capacity(ONE_AT_A_TIME);
    for _ in 0..ONE_AT_A_TIME {
        tokio::time::sleep(ONE_PAUSE).await;
        let t = Instant::now();
        let v = server
            .open(Instant::now() + ONE_OPEN)
            .await
            .context("a session opened alone")?;
        one.push(t.elapsed().as_secs_f64() * 1e3);
        server.close(v).await;
    }
    one.sort_by(f64::total_cmp);
    tokio::time::sleep(REST_BEFORE).await;
    let pss_before = pss_kib(pid).context("no smaps_rollup")?;
    let anon_before = pss_anon_kib(pid);
    let (stop_tx, stop_rx) = watch::channel(false);
    let (first, opened) = burst(server, pid, &theirs, n, OPEN_LIMIT).await?;
    let (opened, failed) = opened_and_error(opened);
    let got = opened.len();
    let holders: Vec<_> = opened
        .into_iter()
        .map(|v| tokio::spawn(v.hold(stop_rx.clone())))
        .collect();
    tokio::time::sleep(REST_BEFORE).await;
    // Read, not yet checked: the holders are stopped and their sessions
    // closed before any error returns.
    let pss_with = pss_kib(pid);
    let anon_with = pss_anon_kib(pid);
    let _ = stop_tx.send(true);
    let left = futures_util::future::join_all(holders).await;
    close_all(server, left.into_iter().filter_map(|v| v.ok().flatten())).await;
    if let Some(e) = failed {
        return Err(e.context(format!("only {got} of {n} sessions opened")));
    }
    let pss_with = pss_with.context("no smaps_rollup")?;
    // The memory was read with the first burst's sessions; the others are
    // opened and closed again, each on a server holding none.
    let mut bursts = vec![first];
    for _ in 1..BURSTS {
        let (b, opened) = burst(server, pid, &theirs, n, OPEN_LIMIT).await?;
        let (opened, failed) = opened_and_error(opened);
        let got = opened.len();
        close_all(server, opened).await;
        if let Some(e) = failed {
            return Err(e.context(format!("only {got} of {n} sessions opened (a later burst)")));
        }
        bursts.push(b);
    }
    let median_of = |f: fn(&Burst) -> Option<f64>| median(bursts.iter().filter_map(f).collect());
    Ok(Opened {
        rate: median_of(|b| Some(b.rate)).context("no burst")?,
        cpu_ms: median_of(|b| b.cpu_ms),
        machine_ms: median_of(|b| b.machine_ms),
        pss_kib: (pss_with as f64 - pss_before as f64) / n as f64,
        pss_before,
        pss_with,
        anon_kib: anon_before
            .zip(anon_with)
            .map(|(b, w)| (w as f64 - b as f64) / n as f64),
        one_ms: one[one.len() / 2],
        bursts,
    })
}

/// Scenario 12 for every count of `ctx.idle`.
pub async fn open(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![];
    for &n in &ctx.idle {
        rows.extend(open_n(ctx, n).await?);
    }
    Ok(rows)
}

async fn open_n(ctx: &Ctx, n: usize) -> anyhow::Result<Vec<Row>> {
    let relay = Relay::start().await?;
    let bare = open_on(&Server::Relay(&relay), n).await;
    relay.stop().await;
    let bare = bare.context("through the bare relay")?;
    let peer = match &ctx.peer {
        None => None,
        Some(p) => {
            let ttyd = Ttyd::shell(&p.path).await?;
            let r = open_on(&Server::Ttyd(&ttyd), n).await;
            ttyd.stop().await;
            Some(r.context("through ttyd")?)
        }
    };
    let ours = match ctx.ws_target().await {
        Err(why) => Err(why),
        Ok(target) => {
            let r = open_on(&Server::Termstream(&target), n).await;
            target.stop().await;
            r.map_err(|e| format!("failed: {e:#}"))
        }
    };
    let rate_metric = format!("sessions opened per second (to first prompt), {n}");
    let mem_metric = format!("PSS per idle session with its viewer attached, {n}");
    let mut rows = vec![];
    match ours {
        Ok(o) => {
            rows.push(
                Row::info(S12, rate_metric.clone(), "/s", o.rate)
                    .baseline("bare relay", bare.rate)
                    .note(format!(
                        "{OPEN_CONCURRENCY} at a time; median of {BURSTS} bursts: {} (the relay's: {}){}",
                        per_burst(&o.bursts, |b| Some(b.rate), 0),
                        per_burst(&bare.bursts, |b| Some(b.rate), 0),
                        unsettled(&[&o, &bare])
                    )),
            );
            rows.push(
                Row::info(S12, mem_metric.clone(), "KiB", o.pss_kib)
                    .baseline("bare relay", bare.pss_kib)
                    .goal(Goal::AtMost(16.0), "≤ 16 KiB")
                    .note(format!("PSS {} → {} KiB", o.pss_before, o.pss_with)),
            );
            if let Some(anon) = o.anon_kib {
                let row = Row::info(
                    S12,
                    format!("anonymous PSS per idle session with its viewer attached, {n}"),
                    "KiB",
                    anon,
                )
                .note("heap and stacks only: the binary's code pages are not per session");
                rows.push(match (bare.anon_kib, peer.as_ref().and_then(|p| p.anon_kib)) {
                    (_, Some(t)) => row.baseline("ttyd", t),
                    (Some(b), None) => row.baseline("bare relay", b),
                    (None, None) => row,
                });
            }
            if let Some(cpu) = o.cpu_ms {
                let row = Row::info(S12, format!("server CPU per session opened, {n}"), "ms", cpu)
                    .note(format!("bursts: {}", per_burst(&o.bursts, |b| b.cpu_ms, 2)));
                rows.push(match bare.cpu_ms {
                    Some(b) => row.baseline("bare relay", b),
                    None => row,
                });
            }
            let machine_metric = format!("machine CPU per session opened, {n}");
            if let Some(m) = o.machine_ms {
                let row = Row::info(S12, machine_metric.clone(), "ms", m).note(format!(
                    "the shells', the kernel's and the bench's too, less the machine's load before; bursts: {}",
                    per_burst(&o.bursts, |b| b.machine_ms, 2)
                ));
                rows.push(match bare.machine_ms {
                    Some(b) => row.baseline("bare relay", b),
                    None => row,
                });
            }
            let one_metric = format!("time to first prompt, one session at a time, {n}");
            rows.push(
                Row::info(S12, one_metric.clone(), "ms", o.one_ms)
                    .baseline("bare relay", bare.one_ms)
                    .note(format!("median of {ONE_AT_A_TIME}, {} ms apart", ONE_PAUSE.as_millis())),
            );
            if let Some(p) = peer {
                rows.push(Row::info(S12, format!("{one_metric}, vs ttyd"), "ms", o.one_ms).baseline("ttyd", p.one_ms));
                if let (Some(ours), Some(theirs)) = (o.cpu_ms, p.cpu_ms) {
                    rows.push(
                        Row::info(S12, format!("server CPU per session opened, {n}, vs ttyd"), "ms", ours)
                            .baseline("ttyd", theirs)
                            .note(format!("ttyd's bursts: {}", per_burst(&p.bursts, |b| b.cpu_ms, 2))),
                    );
                }
                if let (Some(ours), Some(theirs)) = (o.machine_ms, p.machine_ms) {
                    rows.push(
                        Row::info(S12, format!("{machine_metric}, vs ttyd"), "ms", ours)
                            .baseline("ttyd", theirs)
                            .note(format!("ttyd's bursts: {}", per_burst(&p.bursts, |b| b.machine_ms, 2))),
                    );
                }
                rows.push(
                    Row::info(S12, format!("{rate_metric}, vs ttyd"), "/s", o.rate)
                        .baseline("ttyd", p.rate)
                        .note(format!(
                            "ttyd's bursts: {}{}",
                            per_burst(&p.bursts, |b| Some(b.rate), 0),
                            unsettled(&[&p])
                        ))
                        .goal(Goal::RatioAtLeast(1.0), "≥ ttyd"),
                );
                rows.push(
                    Row::info(S12, format!("{mem_metric}, vs ttyd"), "KiB", o.pss_kib)
                        .baseline("ttyd", p.pss_kib)
                        .note(format!("ttyd PSS {} → {} KiB", p.pss_before, p.pss_with)),
                );
            }
        }
        Err(why) => {
            rows.push(Row::missing(S12, rate_metric, "/s", why.clone()));
            rows.push(Row::missing(S12, mem_metric, "KiB", why));
        }
    }
    Ok(rows)
}

/// A warning for the notes when a burst began before the last one's
/// shells had all ended.
fn unsettled(targets: &[&Opened]) -> &'static str {
    let any = targets.iter().any(|o| o.bursts.iter().any(|b| b.unsettled));
    if any {
        "; a burst began before the last one's shells had all ended"
    } else {
        ""
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn prompts_are_recognised() {
        assert!(is_prompt(b"$ "));
        assert!(is_prompt(b"\r\n# "));
        assert!(!is_prompt(b"$"));
        assert!(!is_prompt(b"hello"));
    }
}
