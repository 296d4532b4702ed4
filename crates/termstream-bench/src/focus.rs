//! Scenarios 9 and 10: focus.
//!
//! 9. Focus-aware streaming: one socket attached (binary) to 16 busy pty
//!    sessions, 4 of them focused, once with `"stream":"live"` and once
//!    with `"stream":"focus"` on a fresh server each: output frames and
//!    bytes delivered, and the server's CPU time, until every session
//!    ended. Both must deliver every byte (the count is checked equal).
//! 10. Focus fan-out: 50 sockets follow one project; one client changes
//!     focus with `PUT /api/terminal/focus`, 200 times, and the clock runs
//!     from the request until the last of the 50 has seen its
//!     `focus_update` (p50, p99).

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::future::join_all;
use termstream_proto::SessionId;
use termstream_proto::ws::{ClientMessage, StreamMode};
use tokio::sync::mpsc;

use crate::Ctx;
use crate::client::{Client, Event};
use crate::report::{Percentiles, Row};
use crate::server::Target;

const STREAMING: &str = "10 focus streaming";
const FANOUT: &str = "11 focus fan-out";
/// Sessions of scenario 10, and how many are focused.
const BUSY: usize = 16;
const FOCUSED: usize = 4;
/// What each busy session prints: ~5 s of `seq` bursts (about 1 MB/s).
const BUSY_SCRIPT: &str = "read x; i=0; while [ $i -lt 250 ]; do seq 1 1500; sleep 0.02; i=$((i+1)); done";
/// Clients and focus changes of scenario 10.
const WATCHERS: usize = 50;
const CHANGES: usize = 200;
/// The longest a scenario's phase may take.
const LIMIT: Duration = Duration::from_secs(120);

/// What one run of scenario 10 delivered.
struct Delivered {
    frames: u64,
    bytes: u64,
    cpu_ms: f64,
}

pub async fn streaming(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let live = streaming_once(ctx, StreamMode::Live).await?;
    let focus = streaming_once(ctx, StreamMode::Focus).await?;
    if live.bytes != focus.bytes {
        bail!(
            "live delivered {} bytes, focus {}: output was lost",
            live.bytes,
            focus.bytes
        );
    }
    let note = format!("{BUSY} sessions, {FOCUSED} focused, one socket; every byte delivered in both");
    Ok(vec![
        Row::info(STREAMING, "output frames, focus", "frames", focus.frames as f64)
            .baseline("live", live.frames as f64)
            .note(note),
        Row::info(STREAMING, "output bytes, focus", "MB", focus.bytes as f64 / 1e6)
            .baseline("live", live.bytes as f64 / 1e6),
        Row::info(STREAMING, "server CPU, focus", "ms", focus.cpu_ms).baseline("live", live.cpu_ms),
    ])
}

async fn streaming_once(ctx: &Ctx, mode: StreamMode) -> anyhow::Result<Delivered> {
    let target = ctx.ws_target().await.map_err(anyhow::Error::msg)?;
    let r = streaming_on(&target, mode).await;
    target.stop().await;
    r
}

async fn streaming_on(target: &Target, mode: StreamMode) -> anyhow::Result<Delivered> {
    let mut ids = Vec::with_capacity(BUSY);
    for _ in 0..BUSY {
        ids.push(target.pty_sh(BUSY_SCRIPT).await?);
    }
    for id in &ids[..FOCUSED] {
        target.focus(id, true).await?;
    }
    let mut c = Client::connect(&target.ws).await?;
    for id in &ids {
        c.attach_mode(id, mode, Duration::from_secs(10)).await?;
    }
    let before = target.cpu().unwrap_or_default();
    for id in &ids {
        c.input(id, "\n").await?;
    }
    let deadline = Instant::now() + LIMIT;
    let (mut frames, mut bytes, mut exits) = (0u64, 0u64, 0usize);
    while exits < BUSY {
        match c.next(deadline).await? {
            Event::Output { data, .. } => {
                frames += 1;
                bytes += data.len() as u64;
            }
            Event::Exit => exits += 1,
            Event::Closed => bail!("the server closed the socket"),
            Event::Gap { .. } => bail!("a gap: output was skipped"),
            _ => {}
        }
    }
    let cpu = before.since(target.cpu().unwrap_or_default());
    c.close().await;
    target.delete_all(&ids).await;
    Ok(Delivered {
        frames,
        bytes,
        cpu_ms: cpu.cpu_ns as f64 / 1e6,
    })
}

pub async fn fanout(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let target = ctx.ws_target().await.map_err(anyhow::Error::msg)?;
    let r = fanout_on(&target).await;
    target.stop().await;
    let p = r?;
    let metric = |q: &str| format!("focus request to the last of {WATCHERS} clients' focus_update, {q}");
    Ok(vec![
        Row::info(FANOUT, metric("p50"), "ms", p.p50 / 1e3).note(format!("{CHANGES} changes over REST")),
        Row::info(FANOUT, metric("p99"), "ms", p.p99 / 1e3),
    ])
}

async fn fanout_on(target: &Target) -> anyhow::Result<Percentiles> {
    let a = target.pty_sh("exec cat").await?;
    let (seen_tx, mut seen) = mpsc::unbounded_channel::<(u64, Instant)>();
    let clients = join_all((0..WATCHERS).map(|_| async {
        let mut c = Client::connect(&target.ws).await?;
        c.send(&ClientMessage::SyncRequest {
            project_id: None,
            session_id: Some(a.clone()),
        })
        .await?;
        anyhow::Ok(c)
    }))
    .await;
    let mut tasks = Vec::with_capacity(WATCHERS);
    for c in clients {
        let mut c = c.context("connecting the watchers")?;
        let tx = seen_tx.clone();
        tasks.push(tokio::spawn(async move {
            let deadline = Instant::now() + LIMIT;
            while let Ok(ev) = c.next(deadline).await {
                match ev {
                    Event::FocusUpdate { version } if tx.send((version, Instant::now())).is_err() => break,
                    Event::Closed => break,
                    _ => {}
                }
            }
        }));
    }
    drop(seen_tx);
    // Every watcher has touched the project once a first change reaches
    // them all; that change is not measured.
    let mut samples = Vec::with_capacity(CHANGES);
    for k in 0..=CHANGES {
        let t0 = Instant::now();
        let version = target.focus(&a, k % 2 == 0).await?;
        let mut last = t0;
        let mut arrived = 0;
        let deadline = tokio::time::Instant::now() + Duration::from_secs(30);
        while arrived < WATCHERS {
            let (v, at) = tokio::time::timeout_at(deadline, seen.recv())
                .await
                .context("a watcher never saw a focus_update")?
                .context("the watchers are gone")?;
            if v == version {
                arrived += 1;
                last = last.max(at);
            }
        }
        if k > 0 {
            samples.push(last.duration_since(t0));
        }
    }
    for t in tasks {
        t.abort();
    }
    let _ = target.delete(&SessionId::clone(&a)).await;
    Ok(Percentiles::of(&samples))
}
