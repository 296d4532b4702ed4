//! Scenarios 6 and 8: what idle sessions and idle connections cost.
//!
//! Memory is the server's `VmRSS` from `/proc/PID/status`, as a delta over
//! the figure before the sessions (or connections) were made, divided by
//! their number. Each count runs on a fresh server.

use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::StreamExt;
use futures_util::future::join_all;
use termstream_proto::{SessionId, SessionKind};
use tokio::sync::watch;

use crate::Ctx;
use crate::client::Client;
use crate::latency::echo_client;
use crate::report::{Goal, Percentiles, Row};
use crate::server::{ProcStatus, Target};

/// Requests in flight while creating sessions.
const CREATE_CONCURRENCY: usize = 16;
/// Clients that connect at once.
const CONNECT_BATCH: usize = 250;
/// The longest the connecting phase may take.
const CONNECT_LIMIT: Duration = Duration::from_secs(300);
/// Time for the server to settle before memory is read.
const SETTLE: Duration = Duration::from_secs(1);

const S6: &str = "6 idle sessions";
const S8: &str = "8 connections";

/// Starts `n` idle pty sessions running `cat`.
async fn idle_sessions(target: &Target, n: usize) -> anyhow::Result<Vec<SessionId>> {
    let results: Vec<_> = futures_util::stream::iter(0..n)
        .map(|_| target.start(SessionKind::Pty, vec!["cat".into()]))
        .buffer_unordered(CREATE_CONCURRENCY)
        .collect()
        .await;
    let mut ids = Vec::with_capacity(n);
    let mut first_err = None;
    for r in results {
        match r {
            Ok(id) => ids.push(id),
            Err(e) => first_err = first_err.or(Some(e)),
        }
    }
    if let Some(e) = first_err {
        target.delete_all(&ids).await;
        return Err(e.context(format!("only {} of {n} sessions started", ids.len())));
    }
    Ok(ids)
}

async fn settled(target: &Target) -> anyhow::Result<ProcStatus> {
    tokio::time::sleep(SETTLE).await;
    target
        .status()
        .context("the server's pid is unknown (give --server-pid with --url)")
}

/// Scenario 6: `n` idle sessions for each `n` in `ctx.idle`.
pub async fn idle(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let mut rows = vec![];
    for &n in &ctx.idle {
        let target = ctx.launcher.start().await?;
        let r = idle_once(&target, n).await;
        target.stop().await;
        match r {
            Ok(mut r) => rows.append(&mut r),
            Err(e) => rows.push(Row::missing(
                S6,
                format!("RSS per session, {n} sessions"),
                "KiB",
                format!("failed: {e:#}"),
            )),
        }
    }
    Ok(rows)
}

/// The per-session figure is taken from a server that has already run one
/// session: what the first one costs once (the read buffer of each worker
/// thread, code paged in, the allocator's first arenas) is reported on its
/// own row instead of being spread over the `n`.
async fn idle_once(target: &Target, n: usize) -> anyhow::Result<Vec<Row>> {
    let fresh = settled(target).await?;
    let first = idle_sessions(target, 1).await?;
    target.delete_all(&first).await;
    let base = settled(target).await?;
    let t0 = Instant::now();
    let ids = idle_sessions(target, n).await?;
    let create_secs = t0.elapsed().as_secs_f64();
    let with = settled(target).await?;
    target.delete_all(&ids).await;
    let per = (with.rss_kib as f64 - base.rss_kib as f64) / n as f64;
    Ok(vec![
        Row::info(
            S6,
            format!("one-time cost of the first session (before {n})"),
            "KiB",
            base.rss_kib as f64 - fresh.rss_kib as f64,
        )
        .note(format!(
            "RSS {} → {} KiB with one session started and deleted",
            fresh.rss_kib, base.rss_kib
        )),
        Row::info(S6, format!("RSS per session, {n} sessions"), "KiB", per)
            .goal(Goal::AtMost(16.0), "≤ 16 KiB")
            .note(format!(
                "RSS {} → {} KiB; {n} sessions created in {create_secs:.2} s",
                base.rss_kib, with.rss_kib
            )),
        Row::info(
            S6,
            format!("server threads with {n} sessions"),
            "threads",
            with.threads as f64,
        )
        .baseline("before", base.threads as f64)
        .goal(
            Goal::AtMost(base.threads as f64 + 32.0),
            "no thread per session (≤ 32 more)",
        )
        .note(
            "new sessions write their first record on the blocking pool, 16 at a time; its threads end after 10 s idle",
        ),
    ])
}

/// Scenario 8: `ctx.connections` clients, each attached to one of 100
/// idle sessions; memory per connection, and a typed byte's round trip.
pub async fn connections(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let n = ctx.connections;
    let metric = format!("RSS per connection, {n} connections");
    let target = match ctx.ws_target().await {
        Ok(t) => t,
        Err(why) => {
            return Ok(vec![
                Row::missing(S8, metric, "KiB", why.clone()).goal(Goal::AtMost(16.0), "≤ 16 KiB"),
                Row::missing(S8, "echo p50 meanwhile", "µs", why.clone()),
                Row::missing(S8, "echo p99 meanwhile", "µs", why),
            ]);
        }
    };
    let r = connections_once(ctx, &target, n).await;
    target.stop().await;
    match r {
        Ok(rows) => Ok(rows),
        Err(e) => Ok(vec![Row::missing(S8, metric, "KiB", format!("failed: {e:#}"))]),
    }
}

async fn connections_once(ctx: &Ctx, target: &Target, n: usize) -> anyhow::Result<Vec<Row>> {
    let ids = idle_sessions(target, 100).await?;
    let (mut echo, echo_id) = echo_client(target).await?;
    let quiet = Percentiles::of(
        &echo
            .echo_samples(
                &echo_id,
                ctx.warmup,
                ctx.samples,
                Instant::now() + Duration::from_secs(60),
            )
            .await?,
    );
    let base = settled(target).await?;

    let (stop_tx, stop_rx) = watch::channel(false);
    let deadline = Instant::now() + CONNECT_LIMIT;
    let mut holders = Vec::with_capacity(n);
    let t0 = Instant::now();
    let mut failed = None;
    'batches: for start in (0..n).step_by(CONNECT_BATCH) {
        let batch = (start..n.min(start + CONNECT_BATCH)).map(|i| {
            let id = ids[i % ids.len()].clone();
            async move {
                let mut c = Client::connect_small(&target.ws).await?;
                c.attach(&id).await?;
                anyhow::Ok(c)
            }
        });
        for r in join_all(batch).await {
            match r {
                Ok(mut c) => {
                    let mut stop = stop_rx.clone();
                    holders.push(tokio::spawn(async move {
                        c.drain(&mut stop, deadline + Duration::from_secs(120)).await;
                        drop(c);
                    }));
                }
                Err(e) => {
                    failed = Some(e.context(format!("connection {} of {n}", holders.len() + 1)));
                    break 'batches;
                }
            }
        }
        if Instant::now() > deadline {
            failed = Some(anyhow::anyhow!("connecting took longer than {CONNECT_LIMIT:?}"));
            break;
        }
    }
    let connected = holders.len();
    let connect_secs = t0.elapsed().as_secs_f64();
    let with = settled(target).await?;
    let loaded = echo
        .echo_samples(
            &echo_id,
            ctx.warmup,
            ctx.samples,
            Instant::now() + Duration::from_secs(60),
        )
        .await;
    let _ = stop_tx.send(true);
    join_all(holders).await;
    target.delete_all(&ids).await;
    target.delete(&echo_id).await?;
    if let Some(e) = failed {
        return Err(e);
    }
    let loaded = Percentiles::of(&loaded?);
    let per = (with.rss_kib as f64 - base.rss_kib as f64) / connected.max(1) as f64;
    Ok(vec![
        Row::info(S8, format!("RSS per connection, {n} connections"), "KiB", per)
            .goal(Goal::AtMost(16.0), "≤ 16 KiB")
            .note(format!(
                "RSS {} → {} KiB; threads {} → {}; connected in {connect_secs:.1} s",
                base.rss_kib, with.rss_kib, base.threads, with.threads
            )),
        Row::info(S8, "echo p50 meanwhile", "µs", loaded.p50).baseline("before connecting", quiet.p50),
        Row::info(S8, "echo p99 meanwhile", "µs", loaded.p99).baseline("before connecting", quiet.p99),
    ])
}
