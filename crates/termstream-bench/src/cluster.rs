//! Scenario 13: three nodes joined through Redis (`--cluster`), against
//! one node.
//!
//! - Fan-out: the 4 MiB file to the largest `--fanout` count of viewers
//!   spread round-robin over three nodes (the session on the first),
//!   against as many on one plain node.
//! - Echo: keystroke round trips through a node that does not own the
//!   session, against through its owner.
//! - Redis commands per output chunk: `INFO commandstats` calls before and
//!   after the owner prints the 4 MiB file to one viewer on another node,
//!   over the chunks the owner's log holds (heartbeats included).
//!
//! The bench starts its own `redis-server` (nothing kept on disk) on a free
//! loopback port, and the nodes itself; needs Debian's `redis-server`.

use std::io::{Read, Write};
use std::path::Path;
use std::process::Stdio;
use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use futures_util::future::join_all;
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::client::Client;
use crate::latency::ECHO;
use crate::report::{Percentiles, Row};
use crate::server::{Launcher, Target};
use crate::{Ctx, shell_quote};

const S13: &str = "13 cluster";
/// The longest one measurement may take.
const LIMIT: Duration = Duration::from_secs(120);

/// A redis-server and three nodes; killed when dropped.
struct Cluster {
    redis: Child,
    redis_port: u16,
    children: Vec<Child>,
    nodes: Vec<Target>,
}

impl Cluster {
    async fn start(bin: &Path, work: &Path) -> anyhow::Result<Cluster> {
        let redis_port = std::net::TcpListener::bind("127.0.0.1:0")?.local_addr()?.port();
        let dir = work.join(format!("redis-{redis_port}"));
        std::fs::create_dir_all(&dir)?;
        let redis = Command::new("redis-server")
            .args(["--port", &redis_port.to_string(), "--bind", "127.0.0.1"])
            .args(["--save", "", "--appendonly", "no", "--dir"])
            .arg(&dir)
            .stdout(Stdio::null())
            .kill_on_drop(true)
            .spawn()
            .context("cannot start redis-server (apt-get install redis-server)")?;
        let deadline = Instant::now() + Duration::from_secs(10);
        while redis_calls(redis_port).is_err() {
            if Instant::now() > deadline {
                bail!("redis-server did not answer");
            }
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
        let url = format!("redis://127.0.0.1:{redis_port}");
        let mut children = Vec::new();
        let mut nodes = Vec::new();
        for i in 0..3 {
            let (child, target) = node(bin, &work.join(format!("node-{redis_port}-{i}")), Some(&url)).await?;
            children.push(child);
            nodes.push(target);
        }
        for n in &nodes {
            let deadline = Instant::now() + Duration::from_secs(10);
            while reqwest::get(format!("{}/readyz", n.http))
                .await
                .map(|r| r.status().as_u16())
                .ok()
                != Some(200)
            {
                if Instant::now() > deadline {
                    bail!("a node did not become ready");
                }
                tokio::time::sleep(Duration::from_millis(50)).await;
            }
        }
        Ok(Cluster {
            redis,
            redis_port,
            children,
            nodes,
        })
    }

    async fn stop(mut self) {
        for c in &mut self.children {
            let _ = c.kill().await;
        }
        let _ = self.redis.kill().await;
    }
}

/// Starts one node (in a cluster when `url` is given).
async fn node(bin: &Path, data: &Path, url: Option<&str>) -> anyhow::Result<(Child, Target)> {
    std::fs::create_dir_all(data)?;
    let mut cmd = Command::new(bin);
    cmd.args(["serve", "--listen", "127.0.0.1:0", "--data-dir"]).arg(data);
    if let Some(url) = url {
        cmd.args(["--cluster", url]);
    }
    let mut child = cmd
        .env("TERMSTREAM_MAX_CONNECTIONS", "30000")
        .env("TERMSTREAM_MAX_CONNECTIONS_PER_IP", "30000")
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(Stdio::null())
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {}", bin.display()))?;
    let mut lines = BufReader::new(child.stdout.take().context("no stdout")?).lines();
    let first = tokio::time::timeout(Duration::from_secs(30), lines.next_line())
        .await
        .context("the node did not print its address")??
        .context("the node exited")?;
    let url = first
        .strip_prefix("listening on ")
        .with_context(|| format!("unexpected first line {first:?}"))?
        .to_owned();
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let pid = child.id();
    let mut target = Launcher::Running { url, pid }.start().await?;
    target.started = crate::settle::settle(pid).await;
    Ok((child, target))
}

/// The sum of `calls=` over Redis's `INFO commandstats`.
fn redis_calls(port: u16) -> anyhow::Result<u64> {
    let mut s = std::net::TcpStream::connect(("127.0.0.1", port))?;
    s.set_read_timeout(Some(Duration::from_secs(2)))?;
    s.write_all(b"INFO commandstats\r\n")?;
    let mut got = Vec::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf)?;
        if n == 0 {
            break;
        }
        got.extend_from_slice(&buf[..n]);
        let text = String::from_utf8_lossy(&got);
        if let Some((head, body)) = text.split_once("\r\n")
            && let Ok(len) = head.trim_start_matches('$').parse::<usize>()
            && body.len() >= len
        {
            break;
        }
    }
    let text = String::from_utf8_lossy(&got);
    Ok(text
        .lines()
        .filter_map(|l| l.split("calls=").nth(1))
        .filter_map(|r| r.split(',').next()?.parse::<u64>().ok())
        .sum())
}

/// The 4 MiB file to `n` viewers spread over `targets`; seconds taken.
async fn fan_out(targets: &[&Target], n: usize, file: &str) -> anyhow::Result<f64> {
    let id = targets[0].pty_sh(&format!("read x; cat {file}")).await?;
    let mut clients = Vec::with_capacity(n);
    for start in (0..n).step_by(100) {
        let batch = (start..n.min(start + 100)).map(|i| {
            let id = id.clone();
            let ws = targets[i % targets.len()].ws.clone();
            async move {
                let mut c = Client::connect(&ws).await?;
                // A remote node learns of the session within a heartbeat.
                let from = c.attach_within(&id, Duration::from_secs(5)).await?;
                anyhow::Ok((c, from))
            }
        });
        for r in join_all(batch).await {
            clients.push(r.context("connecting the viewers")?);
        }
    }
    let t0 = Instant::now();
    let mut first = true;
    let mut tasks = Vec::new();
    for (mut c, from) in clients {
        if first {
            c.input(&id, "\n").await?;
            first = false;
        }
        tasks.push(tokio::spawn(async move {
            let r = c.read_to_exit(from, Instant::now() + LIMIT).await;
            c.close().await;
            (r.exited, Instant::now())
        }));
    }
    let mut last = t0;
    for t in tasks {
        let (exited, at) = t.await?;
        anyhow::ensure!(exited, "a viewer saw no session.exit within {LIMIT:?}");
        last = last.max(at);
    }
    targets[0].delete(&id).await?;
    Ok(last.duration_since(t0).as_secs_f64())
}

/// Echo round trips of a session on `owner`, typed through `through`.
async fn echo(ctx: &Ctx, owner: &Target, through: &Target) -> anyhow::Result<Percentiles> {
    let id = owner.pty_sh(ECHO).await?;
    let mut c = Client::connect(&through.ws).await?;
    c.attach_within(&id, Duration::from_secs(5)).await?;
    tokio::time::sleep(Duration::from_millis(300)).await;
    let samples = c
        .echo_samples(&id, ctx.warmup, ctx.samples, Instant::now() + LIMIT)
        .await?;
    c.close().await;
    owner.delete(&id).await?;
    Ok(Percentiles::of(&samples))
}

pub async fn cluster(ctx: &Ctx) -> anyhow::Result<Vec<Row>> {
    let Launcher::Binary { path, work_dir, .. } = &ctx.launcher else {
        bail!("scenario 13 starts its own nodes: run it without --url");
    };
    let file = shell_quote(&ctx.file_small);
    let n = ctx.fanout.iter().copied().max().unwrap_or(1000);
    let (child, single) = node(path, &work_dir.join("single-node"), None).await?;
    let alone = fan_out(&[&single], n, &file).await;
    drop(child);
    let c = Cluster::start(path, work_dir).await?;
    let targets: Vec<&Target> = c.nodes.iter().collect();
    let spread = fan_out(&targets, n, &file).await;
    let mut rows = vec![];
    let metric = format!("4 MiB to {n} viewers over 3 nodes");
    rows.push(match (spread, alone) {
        (Ok(s), Ok(a)) => Row::info(S13, metric, "s", s).baseline("one node", a),
        (Err(e), _) | (_, Err(e)) => Row::missing(S13, metric, "s", format!("failed: {e:#}")),
    });
    let via_owner = echo(ctx, &c.nodes[0], &c.nodes[0]).await?;
    let via_other = echo(ctx, &c.nodes[0], &c.nodes[1]).await?;
    for (name, i) in [("p50", 0), ("p99", 2)] {
        rows.push(
            Row::info(
                S13,
                format!("echo through a non-owner {name}"),
                "µs",
                via_other.named()[i].1,
            )
            .baseline("through the owner", via_owner.named()[i].1),
        );
    }
    // Redis commands per output chunk, one viewer on another node.
    let id = c.nodes[0].command_sh(&format!("read x; cat {file}")).await?;
    let mut viewer = Client::connect(&c.nodes[1].ws).await?;
    let from = viewer.attach_within(&id, Duration::from_secs(5)).await?;
    let before = redis_calls(c.redis_port)?;
    let t0 = Instant::now();
    viewer.input(&id, "\n").await?;
    viewer.read_to_exit(from, Instant::now() + LIMIT).await;
    let calls = redis_calls(c.redis_port)?.saturating_sub(before);
    let took = t0.elapsed();
    let page: serde_json::Value = reqwest::get(format!("{}/api/sessions/{id}/output?format=json", c.nodes[0].http))
        .await?
        .json()
        .await?;
    let chunks = page["chunks"].as_array().map_or(1, |a| a.len().max(1));
    rows.push(
        Row::info(S13, "Redis commands per output chunk", "", calls as f64 / chunks as f64).note(format!(
            "{calls} commands for {chunks} chunks of 4 MiB in {:.2} s, heartbeats included",
            took.as_secs_f64()
        )),
    );
    c.stop().await;
    Ok(rows)
}
