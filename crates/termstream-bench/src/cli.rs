//! Scenario 9: the command-line client, as a person or a pipeline uses it.
//!
//! - `termstream run -- cat FILE > /dev/null`, timed from the client's start
//!   to its exit (session creation, the stream over `/ws`, the exit code),
//!   beside a bare pipe of the same file.
//! - `termstream attach` on a PTY driven by the bench: one typed byte's
//!   round trip through the attach process, the server and an echo session,
//!   beside a bare `/ws` client's round trip on the same server.

use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::client::Client;
use crate::latency::ECHO;
use crate::report::{Goal, Percentiles, Row};
use crate::{Ctx, baseline};

/// The longest one transfer or series may take.
const LIMIT: Duration = Duration::from_secs(120);

const S9: &str = "9 CLI";

/// Both rows groups of scenario 9.
pub async fn cli(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let mut rows = run_throughput(ctx).await?;
    rows.extend(attach_echo(ctx).await?);
    Ok(rows)
}

async fn run_throughput(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let file = ctx.file_big.to_str().context("a UTF-8 path")?;
    let bare = baseline::pipe_read(&format!("cat {}", crate::shell_quote(&ctx.file_big)), LIMIT).await?;
    let row = Row::info(S9, "`termstream run -- cat` 64 MiB > /dev/null", "MB/s", 0.0)
        .baseline("bare pipe", bare.mb_per_s())
        .goal(Goal::RatioAtLeast(0.5), "≥ 50% of bare pipe");
    let target = ctx.launcher.start().await?;
    let run_id = crate::server::bench_id();
    let t0 = Instant::now();
    let status = tokio::time::timeout(
        LIMIT,
        tokio::process::Command::new(&ctx.cli)
            // Named by the bench, like every session it makes: `run`
            // leaves its ended session on the server, and a `--url`
            // server's is deleted by the bench's sweep at the end.
            .args([
                "--server",
                &target.http,
                "run",
                "--id",
                run_id.as_str(),
                "--",
                "cat",
                file,
            ])
            .stdin(Stdio::null())
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .status(),
    )
    .await;
    let elapsed = t0.elapsed();
    target.stop().await;
    let row = match status {
        Ok(Ok(s)) if s.success() => {
            let bytes = std::fs::metadata(&ctx.file_big)?.len();
            Row {
                value: Some(bytes as f64 / elapsed.as_secs_f64() / 1e6),
                ..row
            }
            .note(format!("{bytes} bytes, client start to exit"))
        }
        Ok(Ok(s)) => Row {
            value: None,
            note: format!("termstream run exited with {s}"),
            ..row
        },
        Ok(Err(e)) => Row {
            value: None,
            note: format!("cannot start {}: {e}", ctx.cli.display()),
            ..row
        },
        Err(_) => Row {
            value: None,
            note: format!("did not finish within {LIMIT:?}"),
            ..row
        },
    };
    Ok(vec![row])
}

async fn attach_echo(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let target = ctx.launcher.start().await?;
    let result = async {
        // The baseline: a bare /ws client on the same server.
        let id = target.pty_sh(ECHO).await?;
        let mut ws = Client::connect(&target.ws).await?;
        ws.attach(&id).await?;
        tokio::time::sleep(Duration::from_millis(300)).await;
        let bare = ws
            .echo_samples(&id, ctx.warmup, ctx.samples, Instant::now() + LIMIT)
            .await?;
        ws.close().await;
        let through = attach_samples(&ctx.cli, &target.http, id.as_str(), ctx.warmup, ctx.samples).await?;
        anyhow::Ok((Percentiles::of(&through), Percentiles::of(&bare)))
    }
    .await;
    target.stop().await;
    let names = ["p50", "p99"];
    Ok(match result {
        Ok((through, bare)) => [(through.p50, bare.p50), (through.p99, bare.p99)]
            .iter()
            .zip(names)
            .map(|((t, b), name)| {
                Row::info(S9, format!("`termstream attach` keystroke echo {name}"), "µs", *t)
                    .baseline("bare /ws client", *b)
            })
            .collect(),
        Err(e) => names
            .iter()
            .map(|name| {
                Row::missing(
                    S9,
                    format!("`termstream attach` keystroke echo {name}"),
                    "µs",
                    format!("failed: {e:#}"),
                )
            })
            .collect(),
    })
}

/// Runs `termstream attach ID` on a PTY and times typed bytes until each
/// comes back on that PTY.
async fn attach_samples(
    cli: &Path,
    http: &str,
    id: &str,
    warmup: usize,
    samples: usize,
) -> anyhow::Result<Vec<Duration>> {
    let (pty, pts) = pty_process::open()?;
    pty.resize(pty_process::Size::new(24, 80))?;
    let mut child = pty_process::Command::new(cli)
        .args(["--server", http, "attach", id])
        .kill_on_drop(true)
        .spawn(pts)?;
    let (mut reader, mut writer) = pty.into_split();
    let deadline = Instant::now() + LIMIT;
    let mut buf = vec![0u8; 4096];
    let mut out = Vec::with_capacity(samples);
    // The first echo proves the attach is live; keep typing until it comes.
    let mut live = false;
    while !live {
        if Instant::now() > deadline {
            bail!("attach never echoed");
        }
        writer.write_all(b"a").await?;
        if let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(500), reader.read(&mut buf)).await {
            live = n > 0 && buf[..n].contains(&b'a');
        }
    }
    // Let stray echoes of the start drain.
    while let Ok(Ok(n)) = tokio::time::timeout(Duration::from_millis(200), reader.read(&mut buf)).await {
        if n == 0 {
            break;
        }
    }
    for i in 0..warmup + samples {
        let want = b'b' + (i % 24) as u8;
        let t0 = Instant::now();
        writer.write_all(&[want]).await?;
        loop {
            let left = deadline.saturating_duration_since(Instant::now());
            let n = tokio::time::timeout(left, reader.read(&mut buf))
                .await
                .context("no echo before the deadline")??;
            if n == 0 {
                bail!("attach ended");
            }
            if buf[..n].last() == Some(&want) {
                break;
            }
        }
        if i >= warmup {
            out.push(t0.elapsed());
        }
    }
    // Detach (Ctrl-\ then d) and let it end.
    writer.write_all(b"\x1cd").await?;
    let _ = tokio::time::timeout(Duration::from_secs(5), child.wait()).await;
    Ok(out)
}
