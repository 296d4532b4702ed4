//! Scenarios 3, 4 and 7: the round trip of one typed byte, idle, under
//! load, and beside a client that stopped reading.
//!
//! The echo session runs `stty raw -echo; exec cat`, so a byte sent with
//! `terminal.input` comes back exactly once in an output frame.

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::sync::watch;

use crate::Ctx;
use crate::baseline;
use crate::client::{Client, EchoSession};
use crate::load::{self, Load};
use crate::paced;
use crate::relay::{Relay, RelayConn};
use crate::report::{Goal, Percentiles, Row};
use crate::server::{CpuUse, Target, ms_per_mb, stat_cpu_ms};

/// The longest one series of samples may take.
pub(crate) const LIMIT: Duration = Duration::from_secs(60);
/// How long an attach to a session that prints without pause may take.
const ATTACH_BUSY_WAIT: Duration = Duration::from_secs(15);
/// How long `stty` in [`ECHO`] is given to take effect, so that the first
/// byte is not echoed twice.
pub const STTY_WAIT: Duration = Duration::from_millis(300);
/// The program of the echo session.
pub const ECHO: &str = "stty raw -echo; exec cat";

const S3: &str = "3 echo latency";
const S4: &str = "4 echo under load";
const S7: &str = "7 slow client";

/// A connected client attached to a fresh echo session, warmed up.
pub async fn echo_client(target: &Target) -> anyhow::Result<(Client, termstream_proto::SessionId)> {
    let id = target.pty_sh(ECHO).await?;
    let mut client = Client::connect(&target.ws).await?;
    client.attach(&id).await?;
    tokio::time::sleep(STTY_WAIT).await;
    Ok((client, id))
}

/// Percentile rows for `pct` against a baseline (`None`: no baseline).
pub(crate) fn pct_rows(
    scenario: &str,
    what: &str,
    pct: Option<Percentiles>,
    base: Option<(&'static str, Percentiles)>,
    why: &str,
) -> Vec<Row> {
    let names = ["p50", "p90", "p99", "max"];
    (0..4)
        .map(|i| {
            let metric = format!("{what} {}", names[i]);
            let mut row = match pct {
                Some(p) => Row::info(scenario, metric, "µs", p.named()[i].1),
                None => Row::missing(scenario, metric, "µs", why),
            };
            if let Some((label, b)) = base {
                row = row.baseline(label, b.named()[i].1);
            }
            row
        })
        .collect()
}

/// Idle echo percentiles and what one round trip cost the process that
/// relayed it (server or bare relay).
#[derive(Debug, Clone, Copy)]
struct Idle {
    pct: Percentiles,
    cost: Option<TripCost>,
}

/// CPU time and context switches of one round trip, averaged.
#[derive(Debug, Clone, Copy)]
struct TripCost {
    cpu_us: f64,
    switches: f64,
}

/// The average cost of `trips` round trips, from readings before and after.
fn per_trip(before: Option<CpuUse>, after: Option<CpuUse>, trips: usize) -> Option<TripCost> {
    let used = before?.since(after?);
    let n = trips.max(1) as f64;
    Some(TripCost {
        cpu_us: used.cpu_ns as f64 / 1e3 / n,
        switches: used.switches as f64 / n,
    })
}

/// Rows of what one idle round trip cost, termstream against the relay.
fn cost_rows(server: Option<Idle>, relay: Idle, why: &str) -> Vec<Row> {
    let one = |metric: &str, unit: &'static str, f: fn(TripCost) -> f64| {
        let row = match server.and_then(|s| s.cost) {
            Some(c) => Row::info(S3, metric, unit, f(c)),
            None => Row::missing(
                S3,
                metric,
                unit,
                if why.is_empty() { "server pid unknown" } else { why },
            ),
        };
        match relay.cost {
            Some(c) => row.baseline("bare relay", f(c)),
            None => row,
        }
    };
    vec![
        one("CPU per idle round trip (all threads)", "µs", |c| c.cpu_us),
        one("context switches per idle round trip", "", |c| c.switches),
    ]
}

/// Scenarios 3 and 4, with one server: the baselines, idle echo, then echo
/// while three other sessions stream the big file to readers.
pub async fn echo(ctx: &Ctx, under_load: bool) -> anyhow::Result<Vec<Row>> {
    let (w, n) = (ctx.warmup, ctx.samples);
    let pty = Percentiles::of(&baseline::pty_echo(w, n, LIMIT).await?);
    let ws = Percentiles::of(&baseline::ws_echo(w, n, LIMIT).await?);
    let sum = Percentiles {
        p50: pty.p50 + ws.p50,
        p90: pty.p90 + ws.p90,
        p99: pty.p99 + ws.p99,
        max: pty.max + ws.max,
    };
    let (relay_idle, relay_loaded) = relay_echo(ctx, under_load).await?;
    let mut rows = pct_rows(S3, "bare PTY echo", Some(pty), None, "");
    rows.extend(pct_rows(S3, "bare WebSocket echo", Some(ws), None, ""));
    rows.extend(pct_rows(
        S3,
        "bare relay echo",
        Some(relay_idle.pct),
        Some(("bare PTY + bare WS", sum)),
        "",
    ));
    let (idle, loaded, why) = match ctx.ws_target().await {
        Err(why) => (None, None, why),
        Ok(target) => {
            let r = measure(ctx, &target, under_load).await;
            target.stop().await;
            match r {
                Ok((idle, loaded)) => (Some(idle), loaded, String::new()),
                Err(e) => (None, None, format!("failed: {e:#}")),
            }
        }
    };
    let mut server = pct_rows(
        S3,
        "termstream echo",
        idle.map(|i| i.pct),
        Some(("bare PTY + bare WS", sum)),
        &why,
    );
    server[0] = server[0]
        .clone()
        .goal(Goal::RatioAtMost(2.0), "≤ 2× (bare PTY + bare WS)");
    server[2] = server[2].clone().goal(Goal::AtMost(300.0), "≤ 300 µs");
    rows.extend(server);
    rows.extend(pct_rows(
        S3,
        "termstream echo vs relay",
        idle.map(|i| i.pct),
        Some(("bare relay", relay_idle.pct)),
        &why,
    ));
    rows.extend(cost_rows(idle, relay_idle, &why));
    let peer = match &ctx.peer {
        Some(p) => {
            let load_script = under_load.then_some(ctx.load_script.as_str());
            Some(crate::peer::echo(&p.path, (w, n, ctx.pace), load_script, LIMIT).await?)
        }
        None => None,
    };
    if let Some((peer_idle, _)) = &peer {
        let p = Percentiles::of(peer_idle);
        rows.extend(pct_rows(
            S3,
            "ttyd echo",
            Some(p),
            Some(("bare PTY + bare WS", sum)),
            "",
        ));
        rows.extend(pct_rows(
            S3,
            "termstream echo vs ttyd",
            idle.map(|i| i.pct),
            Some(("ttyd", p)),
            &why,
        ));
    }
    if let Some((relay_loaded, relay_mbps, relay_cpu)) = relay_loaded {
        let (bare, bare_mbps) = baseline::pty_echo_loaded(&ctx.load_script, w, n, ctx.pace, LIMIT).await?;
        rows.extend(pct_rows(
            S4,
            "bare PTY echo, 3 bare PTYs streaming",
            Some(Percentiles::of(&bare)),
            None,
            "",
        ));
        rows.extend(pct_rows(
            S4,
            "bare relay echo, 3 relayed PTYs streaming",
            Some(relay_loaded),
            None,
            "",
        ));
        let why = if idle.is_some() && loaded.is_none() {
            "failed under load"
        } else {
            why.as_str()
        };
        let mut load = pct_rows(
            S4,
            "echo, 3 sessions streaming",
            loaded.map(|l| l.0),
            Some(("bare relay, same load", relay_loaded)),
            why,
        );
        load[2] = load[2].clone().goal(Goal::AtMost(500.0), "≤ 500 µs");
        rows.extend(load);
        // Whether the setups carried the same load: a server that streams
        // less has an easier time echoing.
        let delivered = "load delivered to the 3 readers";
        rows.push(match loaded {
            Some((_, mbps, _)) => Row::info(S4, delivered, "MB/s", mbps).baseline("bare relay", relay_mbps),
            None => Row::missing(S4, delivered, "MB/s", why),
        });
        rows.push(Row::info(S4, "load delivered to 3 bare PTY readers", "MB/s", bare_mbps));
        let cpu_metric = "server CPU per MB, 3 streams + echo probe";
        let ours_cpu = loaded.and_then(|l| l.2);
        let cpu_row = |metric: String, label: &'static str, base: Option<f64>| {
            let row = match ours_cpu {
                Some(ms) => Row::info(S4, metric, "ms", ms),
                None => Row::missing(
                    S4,
                    metric,
                    "ms",
                    if why.is_empty() { "server pid unknown" } else { why },
                ),
            };
            match base {
                Some(b) => row.baseline(label, b),
                None => row,
            }
        };
        rows.push(cpu_row(cpu_metric.into(), "bare relay", relay_cpu));
        if let Some((_, Some((peer_loaded, peer_mbps, peer_cpu)))) = &peer {
            let mut prow = pct_rows(
                S4,
                "echo, 3 sessions streaming, vs ttyd",
                loaded.map(|l| l.0),
                Some(("ttyd, same load", Percentiles::of(peer_loaded))),
                why,
            );
            prow[0] = prow[0].clone().goal(Goal::RatioAtMost(1.2), "≤ 1.2× ttyd");
            prow[2] = prow[2].clone().goal(Goal::RatioAtMost(1.0), "≤ ttyd");
            rows.extend(prow);
            rows.push(match loaded {
                Some((_, mbps, _)) => Row::info(S4, "load delivered to the 3 readers, vs ttyd", "MB/s", mbps)
                    .baseline("ttyd", *peer_mbps)
                    .goal(Goal::RatioAtLeast(1.0), "≥ ttyd"),
                None => Row::missing(S4, "load delivered to the 3 readers, vs ttyd", "MB/s", why),
            });
            rows.push(
                cpu_row(format!("{cpu_metric}, vs ttyd"), "ttyd", *peer_cpu).goal(Goal::RatioAtMost(1.0), "≤ ttyd"),
            );
        }
    }
    Ok(rows)
}

/// Echo percentiles under load, the MB/s the load's readers got, and the
/// server's CPU milliseconds per MB they got.
pub(crate) type Loaded = (Percentiles, f64, Option<f64>);

/// The echo through the bare relay (see [`crate::relay`]), idle and, when
/// `under_load`, while three more relayed PTYs stream the big file.
async fn relay_echo(ctx: &Ctx, under_load: bool) -> anyhow::Result<(Idle, Option<Loaded>)> {
    let relay = Relay::start().await?;
    let mut echo = relay.open(ECHO).await?;
    tokio::time::sleep(STTY_WAIT).await;
    let before = relay.cpu();
    let samples = paced::idle_samples(&mut echo, ctx.warmup, ctx.samples, LIMIT).await?;
    let idle = Idle {
        pct: Percentiles::of(&samples),
        cost: per_trip(before, relay.cpu(), ctx.warmup + samples.len()),
    };
    if !under_load {
        relay.stop().await;
        return Ok((idle, None));
    }
    // The probe under load is a client of its own (see `load`), on a
    // fresh echo program as with ttyd, ready before the load starts.
    drop(echo);
    let (url, (warmup, samples, pace)) = (relay.url().to_owned(), (ctx.warmup, ctx.samples, ctx.pace));
    let probe =
        load::on_own_thread(
            move || async move {
                let echo = RelayConn::connect(&url, ECHO).await?;
                tokio::time::sleep(STTY_WAIT).await;
                Ok(echo)
            },
            move |mut echo| async move {
                paced::echo_samples(&mut echo, warmup, samples, pace, Instant::now() + LIMIT).await
            },
        )
        .await?;
    let script = &ctx.load_script;
    let cpu0 = relay.pid().and_then(stat_cpu_ms);
    let mut load = Load::new();
    for _ in 0..load::STREAMS {
        load.add(relay.open(script).await?.drain(load.stop_signal()));
    }
    let (loaded, mbps, bytes) = load.during_counted("bare relay", probe.run()).await;
    let cpu = ms_per_mb(cpu0, relay.pid().and_then(stat_cpu_ms), bytes);
    relay.stop().await;
    Ok((idle, Some((Percentiles::of(&loaded?), mbps, cpu))))
}

async fn measure(ctx: &Ctx, target: &Target, under_load: bool) -> anyhow::Result<(Idle, Option<Loaded>)> {
    let (mut client, id) = echo_client(target).await?;
    let before = target.cpu();
    let samples = client
        .echo_samples(&id, ctx.warmup, ctx.samples, Instant::now() + LIMIT)
        .await?;
    let idle = Idle {
        pct: Percentiles::of(&samples),
        cost: per_trip(before, target.cpu(), ctx.warmup + samples.len()),
    };
    if !under_load {
        return Ok((idle, None));
    }
    client.close().await;
    let loaded = loaded_echo(ctx, target, &id, &ctx.load_script, "termstream").await?;
    Ok((idle, Some(loaded)))
}

/// The paced echo of `target`'s session `id` (running [`ECHO`], raw mode
/// already set) while three more sessions run `script`, each read by a
/// client of its own: the echo percentiles, the MB/s the readers got and
/// the server's CPU per MB. `what` names the setup in the log. The three
/// sessions and the echo session are deleted after, whatever the result.
pub(crate) async fn loaded_echo(
    ctx: &Ctx,
    target: &Target,
    id: &termstream_proto::SessionId,
    script: &str,
    what: &str,
) -> anyhow::Result<Loaded> {
    // The probe under load is a client of its own (see `load`), ready
    // before the load starts.
    let (ws, probe_id, (warmup, samples, pace)) = (target.ws.clone(), id.clone(), (ctx.warmup, ctx.samples, ctx.pace));
    let probe =
        load::on_own_thread(
            move || async move {
                let mut client = Client::connect(&ws).await?;
                client.attach(&probe_id).await?;
                Ok(EchoSession::new(client, &probe_id))
            },
            move |mut echo| async move {
                paced::echo_samples(&mut echo, warmup, samples, pace, Instant::now() + LIMIT).await
            },
        )
        .await?;
    let cpu0 = target.pid.and_then(stat_cpu_ms);
    let mut load = Load::new();
    let mut load_ids = vec![];
    for _ in 0..load::STREAMS {
        let lid = target.pty_sh(script).await?;
        let mut reader = Client::connect(&target.ws).await?;
        reader.attach(&lid).await?;
        let mut stop = load.stop_signal();
        load.add(async move { reader.drain(&mut stop, Instant::now() + LIMIT * 2).await });
        load_ids.push(lid);
    }
    let (loaded, mbps, bytes) = load.during_counted(what, probe.run()).await;
    let cpu = ms_per_mb(cpu0, target.pid.and_then(stat_cpu_ms), bytes);
    target.delete_all(&load_ids).await;
    target.delete(id).await?;
    Ok((Percentiles::of(&loaded?), mbps, cpu))
}

/// Scenario 7: a client attached to `yes` stops reading for `ctx.stall`;
/// the server's memory, and another client's echo, meanwhile.
pub async fn slow_client(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let target = match ctx.ws_target().await {
        Ok(t) => t,
        Err(why) => {
            return Ok([
                "RSS growth while stalled",
                "echo p50 while stalled",
                "echo p99 while stalled",
            ]
            .iter()
            .map(|m| Row::missing(S7, *m, if m.starts_with("RSS") { "MiB" } else { "µs" }, why.clone()))
            .collect());
        }
    };
    let r = stall(ctx, &target).await;
    target.stop().await;
    r
}

async fn stall(ctx: &Ctx, target: &Target) -> anyhow::Result<Vec<Row>> {
    // `yes` waits for a line, so the slow client attaches to a quiet screen
    // (see the "attach to a busy session" row for why).
    let yes = target.pty_sh("read x; exec yes").await.context("starting yes")?;
    let mut slow = Client::connect(&target.ws)
        .await
        .context("connecting the slow client")?;
    slow.attach(&yes).await.context("attaching the slow client")?;
    let (mut echo, echo_id) = echo_client(target).await.context("starting the echo session")?;
    slow.input(&yes, "\n").await?;

    // Baseline: the same load, with the client on `yes` reading everything.
    let (stop_tx, mut stop_rx) = watch::channel(false);
    let (read_while_calm, calm) = tokio::join!(slow.drain(&mut stop_rx, Instant::now() + LIMIT), async {
        tokio::time::sleep(Duration::from_millis(500)).await;
        let r = echo
            .echo_samples(&echo_id, ctx.warmup, ctx.samples, Instant::now() + LIMIT)
            .await;
        let _ = stop_tx.send(true);
        r
    });
    let calm = calm.context("echo before the stall")?;
    anyhow::ensure!(!calm.is_empty(), "no echo came back before the stall");
    let calm = Percentiles::of(&calm);
    let rss = |t: &Target| t.status().map_or(0.0, |s| s.rss_kib as f64 / 1024.0);
    let before = rss(target);

    // From here on `slow` is not read until the stall ends.
    let stall_end = Instant::now() + ctx.stall;
    let mut peak = before;
    tokio::time::sleep(ctx.stall.min(Duration::from_secs(2))).await;
    let stalled = Percentiles::of(
        &echo
            .echo_samples(&echo_id, ctx.warmup, ctx.samples, Instant::now() + LIMIT)
            .await?,
    );
    while Instant::now() < stall_end {
        peak = peak.max(rss(target));
        tokio::time::sleep(Duration::from_millis(250)).await;
    }
    peak = peak.max(rss(target));
    // Resume reading for a moment: does the server say it skipped output?
    let resumed = slow.read_to_exit(0, Instant::now() + Duration::from_secs(2)).await;
    slow.close().await;
    tokio::time::sleep(Duration::from_secs(1)).await;
    let after = rss(target);

    // A fresh client attaching while `yes` prints.
    let busy = async {
        let mut c = Client::connect(&target.ws).await?;
        let t0 = Instant::now();
        c.attach_within(&yes, ATTACH_BUSY_WAIT).await?;
        let ms = t0.elapsed().as_secs_f64() * 1e3;
        c.close().await;
        anyhow::Ok(ms)
    };
    let busy_row = match busy.await {
        Ok(ms) => Row::info(S7, "attach to a busy session (`yes`)", "ms", ms),
        Err(e) => Row::missing(S7, "attach to a busy session (`yes`)", "ms", format!("{e:#}")),
    };
    target.delete_all(&[yes, echo_id]).await;

    let memory_known = target.status().is_some();
    let mem = |metric: &str, v: f64| {
        if memory_known {
            Row::info(S7, metric, "MiB", v)
        } else {
            Row::missing(S7, metric, "MiB", "server pid unknown")
        }
    };
    let stall_s = ctx.stall.as_secs();
    Ok(vec![
        mem("server RSS before stall", before),
        mem(&format!("server RSS peak during {stall_s} s stall"), peak),
        mem("RSS growth while stalled", peak - before)
            .goal(Goal::AtMost(64.0), "bounded (≤ 64 MiB, our reading)")
            .note(format!(
                "after resuming: {} gap(s) skipping {} bytes, {} bytes read in 2 s; RSS 1 s after disconnect {:.1} MiB",
                resumed.gaps, resumed.gap_bytes, resumed.bytes, after
            )),
        Row::info(S7, "echo p50 while stalled", "µs", stalled.p50).baseline("client on `yes` reading", calm.p50),
        Row::info(S7, "echo p99 while stalled", "µs", stalled.p99)
            .baseline("client on `yes` reading", calm.p99)
            .goal(Goal::RatioAtMost(1.5), "unchanged (≤ 1.5×, our reading)")
            .note(format!(
                "the reading client got {:.0} MB of `yes` meanwhile",
                read_while_calm as f64 / 1e6
            )),
        busy_row.goal(
            Goal::AtMost(ATTACH_BUSY_WAIT.as_millis() as f64),
            "answers (our reading)",
        ),
    ])
}
