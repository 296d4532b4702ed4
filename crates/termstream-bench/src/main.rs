//! `termstream-bench`: end-to-end figures of a termstream server, taken
//! through its public protocol (REST to start sessions, `/ws` to watch and
//! type), each beside a baseline measured in the same run.
//!
//! # Layout
//! - [`server`]: launching the server (or using a running one), REST calls
//!   (sessions named by the bench, and the sweep that deletes what it left
//!   on a `--url` server), `/proc` readings; [`settle`]: waiting for a
//!   started server to go quiet.
//! - [`client`]: the WebSocket client of `/ws`.
//! - [`baseline`]: the same work with no server (bare PTY, pipe, WebSocket).
//! - [`relay`]: the least a WebSocket terminal server can do, as a baseline.
//! - [`load`]: the streams of scenarios 4 and 14 and their readers, the
//!   same for every setup.
//! - [`pacer`]: scenario 14's streams, the file written at a fixed rate.
//! - [`paced`]: the echo probe of scenarios 4 and 14, keys at a steady pace.
//! - [`equal`] (14): scenario 4's echo at a load the same for every target.
//! - [`throughput`] (scenarios 1, 2), [`latency`] (3, 4, 7), [`fanout`] (5),
//!   [`scale`] (6, 8), [`focus`] (10, 11): one file per scenario group.
//! - [`cli`] (9): the `termstream` command-line client.
//! - [`cluster`] (13): three nodes through Redis against one node.
//! - [`report`]: percentiles, medians over runs, the markdown table.
//!
//! Every loop is bounded in count and time; only loopback addresses are
//! used. `scripts/bench` builds the release binaries and runs this.

mod baseline;
mod cli;
mod client;
mod cluster;
mod equal;
mod fanout;
mod focus;
mod latency;
mod load;
mod open;
mod paced;
mod pacer;
mod peer;
mod relay;
mod report;
mod scale;
mod server;
mod settle;
mod throughput;

use std::path::{Path, PathBuf};
use std::time::{Duration, Instant, SystemTime};

use anyhow::Context;
use clap::Parser;

use report::Row;
use server::{Launcher, Target};

#[derive(Debug, Parser)]
#[command(name = "termstream-bench", about = "End-to-end benchmark of a termstream server.")]
struct Args {
    /// The server binary to launch (a fresh one per scenario).
    #[arg(long, default_value = "target/release/termstream")]
    server: PathBuf,
    /// Use the running server at this http://127.0.0.1:PORT instead.
    #[arg(long)]
    url: Option<String>,
    /// With --url: the server's pid, for memory and thread figures.
    #[arg(long)]
    server_pid: Option<u32>,
    /// Runs of every scenario; the table shows medians.
    #[arg(long, default_value_t = 3)]
    runs: usize,
    /// One run, 10 s stall, 200 + 1000 echo samples, 2000 connections.
    #[arg(long)]
    quick: bool,
    /// Scenarios to run, e.g. `1,3,6` (default: all).
    #[arg(long, value_delimiter = ',')]
    only: Vec<u8>,
    /// Echo warm-up round trips.
    #[arg(long, default_value_t = 200)]
    warmup: usize,
    /// Echo samples recorded.
    #[arg(long)]
    samples: Option<usize>,
    /// Microseconds between the keys of the echo probe under load
    /// (scenarios 4 and 14); 0 sends each once the last one's echo came back.
    /// Under 1000, keys go out in bursts (tokio's timer counts whole ms).
    #[arg(long, default_value_t = paced::DEFAULT_PACE.as_micros() as u64)]
    echo_pace_us: u64,
    /// Seconds the slow client stops reading (scenario 7).
    #[arg(long)]
    stall_secs: Option<u64>,
    /// Viewer counts of scenario 5.
    #[arg(long, value_delimiter = ',', default_value = "10,100,1000")]
    fanout: Vec<usize>,
    /// Session counts of scenario 6.
    #[arg(long, value_delimiter = ',', default_value = "100,1000")]
    idle: Vec<usize>,
    /// Connections of scenario 8.
    #[arg(long)]
    connections: Option<usize>,
    /// The `termstream` client binary of scenario 9 (default: --server).
    #[arg(long)]
    cli: Option<PathBuf>,
    /// Bytes a command session prints in scenario 2.
    #[arg(long, default_value_t = 256 << 20)]
    command_bytes: u64,
    /// Seconds one scenario may take before it is abandoned.
    #[arg(long, default_value_t = 600)]
    scenario_timeout: u64,
    /// Also write the report here (markdown).
    #[arg(long)]
    output: Option<PathBuf>,
    /// A peer server measured beside termstream in the same run, as
    /// `ttyd=PATH` (scenarios 1, 3, 4, 12 and 14); built by hand, never part of
    /// this repository.
    #[arg(long)]
    peer: Option<String>,
    /// The load of scenario 14 in MB/s (10^6 bytes a second, split evenly
    /// among its streams), the same for every target.
    #[arg(long, default_value_t = 30.0)]
    equal_mbps: f64,
    /// Run as the bare relay baseline (started by the bench itself).
    #[arg(long, hide = true)]
    relay: bool,
    /// Run as a paced stream of scenario 14: write --pace-file at this many
    /// bytes per second (started by the streams' shells).
    #[arg(long, hide = true, requires = "pace_file")]
    pace_rate: Option<u64>,
    #[arg(long, hide = true, requires = "pace_rate")]
    pace_file: Option<PathBuf>,
}

/// Scenario 14's load: its rate, and the program of each of its streams
/// ([`load::script`], paced).
pub struct EqualLoad {
    /// MB/s in all (10^6 bytes a second), split evenly among the streams.
    pub mbps: f64,
    pub script: String,
}

/// What every scenario gets.
pub struct Ctx {
    pub launcher: Launcher,
    /// The 64 MiB text file.
    pub file_big: PathBuf,
    /// The program of each of scenario 4's streams ([`load::script`]).
    pub load_script: String,
    /// Scenario 14's load.
    pub equal: EqualLoad,
    /// The 4 MiB text file.
    pub file_small: PathBuf,
    pub warmup: usize,
    pub samples: usize,
    /// The pace of the echo probe under load ([`paced`]).
    pub pace: Duration,
    pub stall: Duration,
    pub fanout: Vec<usize>,
    pub idle: Vec<usize>,
    pub connections: usize,
    pub command_bytes: u64,
    /// The `termstream` binary used as a client (scenario 9).
    pub cli: PathBuf,
    /// A peer server measured beside, when given.
    pub peer: Option<peer::Peer>,
}

impl Ctx {
    /// A server whose `/ws` answers, or why there is none.
    pub async fn ws_target(&self) -> Result<Target, String> {
        let target = self
            .launcher
            .start()
            .await
            .map_err(|e| format!("cannot start the server: {e:#}"))?;
        match target.ws_available().await {
            Ok(()) => Ok(target),
            Err(why) => {
                target.stop().await;
                Err(why)
            }
        }
    }
}

/// Deletes what this bench left on a server it did not start (`--url`):
/// the sessions under its own id prefix ([`server::bench_prefix`]), within
/// a minute; says how many when there were any. A server the
/// bench launched is stopped after each scenario, its sessions with it.
async fn sweep(launcher: &Launcher, when: &str) {
    if !matches!(launcher, Launcher::Running { .. }) {
        return;
    }
    // Only a REST client: a running server is not touched to make one.
    let target = match launcher.start().await {
        Ok(t) => t,
        Err(e) => {
            eprintln!("bench: {when}: no sweep: {e:#}");
            return;
        }
    };
    match target.sweep().await {
        Ok(s) if s.found > 0 => eprintln!(
            "bench: {when}: deleted {} of the {} sessions the bench had left on {} (ids {}*)",
            s.deleted,
            s.found,
            target.http,
            server::bench_prefix()
        ),
        Ok(_) => {}
        Err(e) => eprintln!("bench: {when}: sweeping {}: {e:#}", target.http),
    }
}

/// Quotes a path for `sh -c`.
pub fn shell_quote(p: &Path) -> String {
    format!("'{}'", p.display().to_string().replace('\'', r"'\''"))
}

/// The scenarios in order, with the name used in logs.
const SCENARIOS: [(u8, &str); 14] = [
    (1, "pty throughput"),
    (2, "command throughput"),
    (3, "echo latency"),
    (4, "echo under load"),
    (14, "echo under equal load"),
    (5, "fan-out"),
    (6, "idle sessions"),
    (7, "slow client"),
    (8, "connections"),
    (9, "command-line client"),
    (10, "focus streaming"),
    (11, "focus fan-out"),
    (12, "open and attached idle"),
    (13, "cluster"),
];

async fn run_one(ctx: &Ctx, n: u8, run_3_alone: bool) -> anyhow::Result<Vec<Row>> {
    match n {
        1 => throughput::pty(ctx).await,
        2 => throughput::command(ctx).await,
        3 if run_3_alone => latency::echo(ctx, false).await,
        3 => Ok(vec![]), // measured together with 4, on one server
        4 => latency::echo(ctx, true).await,
        5 => fanout::fanout(ctx).await,
        6 => scale::idle(ctx).await,
        7 => latency::slow_client(ctx).await,
        8 => scale::connections(ctx).await,
        9 => cli::cli(ctx).await,
        10 => focus::streaming(ctx).await,
        11 => focus::fanout(ctx).await,
        12 => open::open(ctx).await,
        13 => cluster::cluster(ctx).await,
        14 => equal::echo(ctx).await,
        _ => anyhow::bail!("no scenario {n}"),
    }
}

fn main() -> anyhow::Result<()> {
    let args = Args::parse();
    if let (Some(rate), Some(file)) = (args.pace_rate, &args.pace_file) {
        return pacer::pace_out(file, rate);
    }
    let nofile = server::raise_nofile();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    if args.relay {
        return runtime.block_on(relay::serve());
    }
    runtime.block_on(run(args, nofile))
}

async fn run(args: Args, nofile: u64) -> anyhow::Result<()> {
    let started = Instant::now();
    let since_epoch = SystemTime::now().duration_since(SystemTime::UNIX_EPOCH)?.as_secs();
    let work = tempfile::Builder::new().prefix("termstream-bench-").tempdir()?;
    let launcher = match &args.url {
        Some(url) => {
            anyhow::ensure!(
                url.starts_with("http://127.0.0.1:") || url.starts_with("http://localhost:"),
                "--url must be a loopback http:// address"
            );
            Launcher::Running {
                url: url.clone(),
                pid: args.server_pid,
            }
        }
        None => {
            let path = std::fs::canonicalize(&args.server).with_context(|| {
                format!(
                    "no server binary at {} (run scripts/bench, or pass --server)",
                    args.server.display()
                )
            })?;
            Launcher::Binary {
                path,
                work_dir: work.path().to_owned(),
                env: Vec::new(),
            }
        }
    };
    let file_big = work.path().join("text-64m.txt");
    let file_small = work.path().join("text-4m.txt");
    baseline::write_text_file(&file_big, 64 << 20)?;
    baseline::write_text_file(&file_small, 4 << 20)?;
    let runs = if args.quick { 1 } else { args.runs.max(1) };
    // The streams of scenario 14 run this binary: rebuilt during a run, the
    // path names the new build (or, rebuilt before this line, ends in
    // " (deleted)" and the streams fail to start: no load delivered).
    let bench = std::env::current_exe().context("finding the bench's own binary")?;
    let mbps = args.equal_mbps;
    anyhow::ensure!(mbps.is_finite() && mbps >= 1.0, "--equal-mbps must be at least 1");
    let per_stream = (mbps * 1e6 / load::STREAMS as f64) as u64;
    let ctx = Ctx {
        launcher,
        load_script: load::script(&file_big, None),
        equal: EqualLoad {
            mbps,
            script: load::script(&file_big, Some((&bench, per_stream))),
        },
        file_big,
        file_small,
        warmup: args.warmup,
        samples: args.samples.unwrap_or(if args.quick { 1000 } else { 2000 }),
        pace: Duration::from_micros(args.echo_pace_us),
        stall: Duration::from_secs(args.stall_secs.unwrap_or(if args.quick { 10 } else { 30 })),
        fanout: args.fanout.clone(),
        idle: args.idle.clone(),
        connections: args.connections.unwrap_or(if args.quick { 2000 } else { 10_000 }),
        command_bytes: args.command_bytes,
        cli: args
            .cli
            .clone()
            .unwrap_or_else(|| std::fs::canonicalize(&args.server).unwrap_or_else(|_| args.server.clone())),
        peer: args.peer.as_deref().map(peer::Peer::parse).transpose()?,
    };
    let wanted: Vec<u8> = if args.only.is_empty() {
        SCENARIOS.map(|(n, _)| n).to_vec()
    } else {
        args.only.clone()
    };
    let run_3_alone = !wanted.contains(&4);
    eprintln!(
        "bench: nofile limit {nofile}; {runs} run(s) of scenarios {wanted:?}; files in {}",
        work.path().display()
    );

    let mut all_runs: Vec<Vec<Row>> = Vec::with_capacity(runs);
    for run in 1..=runs {
        let mut rows = vec![];
        for &(n, name) in SCENARIOS.iter().filter(|(n, _)| wanted.contains(n)) {
            if n == 3 && !run_3_alone {
                continue;
            }
            eprintln!("bench: run {run}/{runs}: scenario {n} ({name})");
            let t0 = Instant::now();
            let limit = Duration::from_secs(args.scenario_timeout);
            let failed = match tokio::time::timeout(limit, run_one(&ctx, n, run_3_alone)).await {
                Ok(Ok(mut r)) => {
                    rows.append(&mut r);
                    None
                }
                Ok(Err(e)) => Some(format!("error: {e:#}")),
                Err(_) => Some(format!("timed out after {limit:?}")),
            };
            eprintln!("bench:   took {:.1} s", t0.elapsed().as_secs_f64());
            // A scenario dropped at its timeout, or ended by an error,
            // deleted nothing it had made.
            if let Some(why) = failed {
                rows.push(Row::missing(&format!("{n} {name}"), "(scenario)", "", why));
                sweep(&ctx.launcher, &format!("after scenario {n}")).await;
            }
        }
        eprintln!("{}", report::table(&rows));
        all_runs.push(rows);
    }
    // A create the server carried out after an earlier sweep, or a
    // session a scenario left although it ended well.
    sweep(&ctx.launcher, "at the end").await;
    let rows = report::medians(&all_runs);
    let command = std::env::args()
        .map(|a| if a.contains(' ') { format!("'{a}'") } else { a })
        .collect::<Vec<_>>()
        .join(" ");
    let text = report::render(&rows, &command, runs, &since_epoch.to_string(), started.elapsed());
    println!("{text}");
    if let Some(path) = &args.output {
        if let Some(dir) = path.parent() {
            std::fs::create_dir_all(dir)?;
        }
        std::fs::write(path, &text).with_context(|| format!("cannot write {}", path.display()))?;
        eprintln!("bench: wrote {}", path.display());
    }
    Ok(())
}
