//! Scenario 5: many clients attached (binary) to one session that prints
//! the 4 MiB file once all of them are attached.
//!
//! The session runs `read x; cat FILE`. Clients connect and attach in
//! batches; when every one has its `session.attached`, the first client
//! sends the line, and the clock runs until the last client has seen
//! `session.exit` (sent after all output).

use std::sync::Arc;
use std::time::{Duration, Instant};

use anyhow::Context;
use futures_util::future::join_all;
use tokio::sync::Barrier;

use crate::baseline;
use crate::client::{Client, Received};
use crate::report::{Goal, Row};
use crate::server::Target;
use crate::{Ctx, shell_quote};

/// The longest one fan-out may take once started.
const LIMIT: Duration = Duration::from_secs(60);
/// Clients that connect at once.
const BATCH: usize = 100;

const S5: &str = "5 fan-out";

/// The target time for `n` clients, from the issue.
fn goal(n: usize) -> Option<(f64, &'static str)> {
    match n {
        100 => Some((0.25, "≤ 0.25 s")),
        1000 => Some((3.0, "≤ 3 s")),
        _ => None,
    }
}

pub async fn fanout(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let file = shell_quote(&ctx.file_small);
    let bare = baseline::pty_read(&format!("cat {file}"), LIMIT).await?;
    let mut rows = vec![];
    for &n in &ctx.fanout {
        let metric = format!("4 MiB to {n} clients");
        let mut row = Row::info(S5, metric, "s", 0.0).baseline("bare PTY, 1 reader", bare.elapsed.as_secs_f64());
        if let Some((max, text)) = goal(n) {
            row = row.goal(Goal::AtMost(max), text);
        }
        let measured = match ctx.ws_target().await {
            Err(why) => Err(why),
            Ok(target) => {
                let r = once(&target, n, &format!("read x; cat {file}")).await;
                target.stop().await;
                r.map_err(|e| format!("failed: {e:#}"))
            }
        };
        rows.push(match measured {
            Ok((secs, note)) => Row {
                value: Some(secs),
                ..row
            }
            .note(note),
            Err(why) => Row {
                value: None,
                note: why,
                ..row
            },
        });
    }
    Ok(rows)
}

/// One fan-out to `n` clients; the seconds it took and a note.
async fn once(target: &Target, n: usize, script: &str) -> anyhow::Result<(f64, String)> {
    let id = target.pty_sh(script).await?;
    let mut clients = Vec::with_capacity(n);
    let mut offsets = Vec::with_capacity(n);
    for start in (0..n).step_by(BATCH) {
        let batch = (start..n.min(start + BATCH)).map(|_| async {
            let mut c = Client::connect(&target.ws).await?;
            let from = c.attach(&id).await?;
            anyhow::Ok((c, from))
        });
        for r in join_all(batch).await {
            let (c, from) = r.context("connecting the viewers")?;
            clients.push(c);
            offsets.push(from);
        }
    }
    let barrier = Arc::new(Barrier::new(n + 1));
    let mut tasks = Vec::with_capacity(n);
    for (i, (mut c, from)) in clients.into_iter().zip(offsets).enumerate() {
        let barrier = barrier.clone();
        let id = id.clone();
        tasks.push(tokio::spawn(async move {
            barrier.wait().await;
            if i == 0 {
                c.input(&id, "\n").await?;
            }
            let r = c.read_to_exit(from, Instant::now() + LIMIT).await;
            let done = Instant::now();
            c.close().await;
            anyhow::Ok((r, done))
        }));
    }
    barrier.wait().await;
    let t0 = Instant::now();
    let mut results: Vec<(Received, Instant)> = Vec::with_capacity(n);
    for t in tasks {
        results.push(t.await??);
    }
    target.delete(&id).await?;
    let last = results.iter().map(|(_, d)| *d).max().unwrap_or(t0);
    let unfinished = results.iter().filter(|(r, _)| !r.exited).count();
    let min = results.iter().map(|(r, _)| r.bytes).min().unwrap_or(0);
    let max = results.iter().map(|(r, _)| r.bytes).max().unwrap_or(0);
    let gaps: u64 = results.iter().map(|(r, _)| r.gaps).sum();
    anyhow::ensure!(
        unfinished == 0,
        "{unfinished} of {n} clients saw no session.exit within {LIMIT:?}"
    );
    let secs = last.duration_since(t0).as_secs_f64();
    let mut note = format!(
        "each client got {min}..{max} bytes; {:.0} MB/s delivered in all",
        (min * n as u64) as f64 / secs / 1e6
    );
    if gaps > 0 {
        note.push_str(&format!("; {gaps} gaps"));
    }
    Ok((secs, note))
}
