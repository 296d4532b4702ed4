//! Scenarios 1 and 2: one client receives a large output in binary frames.
//!
//! The session's program waits for a line of input (`read x`) before it
//! prints, so the client attaches first and the clock starts when the line
//! is sent; it stops at `session.exit`, which the server sends after all
//! output. The baselines run the same program with no server.

use std::time::{Duration, Instant};

use anyhow::Context;

use crate::baseline;
use crate::client::{Client, Received};
use crate::relay::Relay;
use crate::report::{Goal, Row};
use crate::server::{ms_per_mb, stat_cpu_ms};
use crate::{Ctx, shell_quote};

/// The longest one transfer may take.
const LIMIT: Duration = Duration::from_secs(180);

const S1: &str = "1 pty throughput";
const S2: &str = "2 command throughput";

/// Scenario 1: a pty session `cat`s the 64 MiB file to one client.
pub async fn pty(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let file = shell_quote(&ctx.file_big);
    let bare = baseline::pty_read(&format!("cat {file}"), LIMIT).await?;
    let mut rows = vec![];
    let relay = relay_transfer(&format!("cat {file}")).await?;
    let peer = match &ctx.peer {
        Some(p) => Some(crate::peer::stream(&p.path, &format!("cat {file}"), LIMIT).await?),
        None => None,
    };
    let mut cpu = None;
    let mut start = None;
    let measured = match ctx.ws_target().await {
        Err(why) => Err(why),
        Ok(target) => {
            start = target.started;
            let before = target.pid.and_then(stat_cpu_ms);
            let r = one_transfer(&target, true, &format!("read x; cat {file}")).await;
            let after = target.pid.and_then(stat_cpu_ms);
            if let Ok((got, _)) = &r {
                cpu = ms_per_mb(before, after, got.bytes);
            }
            target.stop().await;
            r.map_err(|e| format!("failed: {e:#}"))
        }
    };
    let row = Row::info(S1, "64 MiB `cat`, one client", "MB/s", 0.0)
        .baseline("bare PTY", bare.mb_per_s())
        .goal(Goal::RatioAtLeast(0.95), "≥ 95% of bare PTY");
    match measured {
        Ok((r, elapsed)) => {
            let mbs = r.bytes as f64 / elapsed.as_secs_f64() / 1e6;
            rows.push(
                Row {
                    value: Some(mbs),
                    ..row
                }
                .note(transfer_note(&r, bare.bytes)),
            );
        }
        Err(why) => rows.push(Row {
            value: None,
            note: why,
            ..row
        }),
    }
    rows.push(
        Row::info(S1, "bare relay, 64 MiB `cat`", "MB/s", relay.transfer.mb_per_s())
            .baseline("bare PTY", bare.mb_per_s()),
    );
    let cpu_metric = "server CPU per MB, one stream";
    let cpu_row = |base_label: &'static str, base: Option<f64>| {
        let row = match cpu {
            Some(ms) => Row::info(S1, cpu_metric, "ms", ms),
            None => Row::missing(
                S1,
                cpu_metric,
                "ms",
                "not measured (server pid unknown, or no transfer)",
            ),
        };
        match base {
            Some(b) => row.baseline(base_label, b),
            None => row,
        }
    };
    rows.push(cpu_row("bare relay", relay.cpu_ms_per_mb));
    rows.push(start_row(
        start,
        peer.as_ref().and_then(|p| p.start_cpu_ms),
        relay.start_cpu_ms,
    ));
    if let Some(p) = peer {
        rows.push(
            Row::info(S1, "ttyd, 64 MiB `cat`", "MB/s", p.transfer.mb_per_s()).baseline("bare PTY", bare.mb_per_s()),
        );
        rows.push(
            Row {
                metric: format!("{cpu_metric}, vs ttyd"),
                ..cpu_row("ttyd", p.cpu_ms_per_mb)
            }
            .goal(Goal::RatioAtMost(1.0), "≤ ttyd"),
        );
    }
    Ok(rows)
}

/// The row of what the server used from its start until quiet, which the
/// other figures leave out (`crate::settle`), beside ttyd's; the relay's
/// goes in the note.
fn start_row(ours: Option<crate::settle::Settled>, ttyd: Option<f64>, relay: Option<f64>) -> Row {
    let metric = "server CPU from start until quiet (left out of the CPU per MB rows)";
    let mut row = match ours {
        Some(s) => Row::info(S1, metric, "ms", s.cpu_ms),
        None => Row::missing(
            S1,
            metric,
            "ms",
            "not measured (no pid, or a server the bench did not start)",
        ),
    };
    if let Some(b) = ttyd {
        row = row.baseline("ttyd", b);
    }
    let mut note =
        vec!["10 ms ticks; termstream's is mostly its spare session directories, made at idle priority".to_owned()];
    if let Some(r) = relay {
        note.push(format!("bare relay {r:.0} ms"));
    }
    if ours.is_some_and(|s| !s.quiet) {
        note.push(format!("still busy after {:?}", crate::settle::SETTLE_LIMIT));
    }
    if ours.is_some() {
        row = row.note(note.join("; "));
    }
    row
}

/// A stream through a relay-like server: its rate and the server's CPU.
pub struct Streamed {
    pub transfer: baseline::Transfer,
    /// The server's CPU milliseconds per MB delivered.
    pub cpu_ms_per_mb: Option<f64>,
    /// The server's CPU milliseconds from its start until it went quiet,
    /// before the stream (`crate::settle`).
    pub start_cpu_ms: Option<f64>,
}

/// `sh -c SCRIPT` through the bare relay, from connecting to the end.
async fn relay_transfer(script: &str) -> anyhow::Result<Streamed> {
    let relay = Relay::start().await?;
    let before = relay.pid().and_then(stat_cpu_ms);
    let t0 = Instant::now();
    let mut conn = relay.open(script).await?;
    let bytes = conn.read_to_close(t0 + LIMIT).await;
    let elapsed = t0.elapsed();
    let after = relay.pid().and_then(stat_cpu_ms);
    let start_cpu_ms = relay.started.map(|s| s.cpu_ms);
    relay.stop().await;
    Ok(Streamed {
        transfer: baseline::Transfer { bytes, elapsed },
        cpu_ms_per_mb: ms_per_mb(before, after, bytes),
        start_cpu_ms,
    })
}

/// Scenario 2: a command session prints `ctx.command_bytes` to stdout.
pub async fn command(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let produce = format!("head -c {} /dev/zero | tr '\\0' a", ctx.command_bytes);
    let bare = baseline::pipe_read(&produce, LIMIT).await?;
    let label = format!("{} MiB to stdout, one client", ctx.command_bytes >> 20);
    let row = Row::info(S2, label, "MB/s", 0.0)
        .baseline("bare pipe", bare.mb_per_s())
        .goal(Goal::RatioAtLeast(0.5), "≥ 50% of bare pipe");
    let measured = match ctx.ws_target().await {
        Err(why) => Err(why),
        Ok(target) => {
            let r = one_transfer(&target, false, &format!("read x; {produce}")).await;
            target.stop().await;
            r.map_err(|e| format!("failed: {e:#}"))
        }
    };
    Ok(vec![match measured {
        Ok((r, elapsed)) => {
            let mbs = r.bytes as f64 / elapsed.as_secs_f64() / 1e6;
            Row {
                value: Some(mbs),
                ..row
            }
            .note(transfer_note(&r, bare.bytes))
        }
        Err(why) => Row {
            value: None,
            note: why,
            ..row
        },
    }])
}

/// Starts `sh -c SCRIPT` (pty or command), attaches, sends the line that
/// starts the output, and reads to the end.
async fn one_transfer(target: &crate::server::Target, pty: bool, script: &str) -> anyhow::Result<(Received, Duration)> {
    let id = if pty {
        target.pty_sh(script).await?
    } else {
        target.command_sh(script).await?
    };
    let mut client = Client::connect(&target.ws).await?;
    let from = client.attach(&id).await.context("attach")?;
    client.input(&id, "\n").await?;
    let t0 = Instant::now();
    let r = client.read_to_exit(from, t0 + LIMIT).await;
    let elapsed = t0.elapsed();
    client.close().await;
    target.delete(&id).await?;
    anyhow::ensure!(r.exited, "no session.exit within {LIMIT:?} (got {} bytes)", r.bytes);
    Ok((r, elapsed))
}

/// What a reader should know about a transfer besides its rate.
fn transfer_note(r: &Received, bare_bytes: u64) -> String {
    let mut note = format!("{} bytes in {} frames (bare: {} bytes)", r.bytes, r.frames, bare_bytes);
    if r.gaps > 0 {
        note.push_str(&format!("; {} gaps skipped {} bytes", r.gaps, r.gap_bytes));
    }
    note
}
