//! The `termstream` binary: `termstream serve` runs the server.

use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{Parser, Subcommand};
use serde::Serialize;
use termstream::config::Config;
use termstream::server::{Server, shutdown_signal};

#[derive(Debug, Parser)]
#[command(name = "termstream", version, about = "Runs terminal sessions and streams them live over WebSocket.")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(ServeArgs),
}

/// Flags of `serve`; each one given overrides the config file and the
/// environment.
#[derive(Debug, clap::Args, Serialize)]
struct ServeArgs {
    /// A TOML config file.
    #[arg(long, env = "TERMSTREAM_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Address to listen on (default 127.0.0.1:8000).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    listen: Option<SocketAddr>,
    /// Where session records and output are kept.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    data_dir: Option<PathBuf>,
    /// Sessions allowed to run at once.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    max_running_sessions: Option<usize>,
    /// Milliseconds between SIGTERM and SIGKILL on terminate.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    terminate_grace_ms: Option<u64>,
}

fn main() -> anyhow::Result<()> {
    let cli = Cli::parse();
    tracing_subscriber::fmt()
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env().unwrap_or_else(|_| "termstream=info".into()),
        )
        .with_writer(std::io::stderr)
        .init();
    match cli.command {
        Command::Serve(args) => serve(args),
    }
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let config = Config::load(args.config.as_deref(), &args)?;
    raise_fd_limit();
    let runtime = tokio::runtime::Builder::new_multi_thread().enable_all().build()?;
    runtime.block_on(async {
        let server = Server::bind(config).await?;
        let addr = server.local_addr()?;
        // The first line on stdout is the address, for scripts and tests.
        println!("listening on http://{addr}");
        tracing::info!(%addr, "termstream is serving");
        server.run(shutdown_signal()).await
    })
}

/// Raises the soft limit on open files to the hard limit. Each running
/// session holds a PTY or three pipes plus two log files, so the common
/// default soft limit of 1024 would cap the server at a few hundred sessions,
/// far below `max_running_sessions`.
fn raise_fd_limit() {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let limit = getrlimit(Resource::Nofile);
    if limit.current != limit.maximum {
        let raised = Rlimit { current: limit.maximum, maximum: limit.maximum };
        if let Err(e) = setrlimit(Resource::Nofile, raised) {
            tracing::warn!(error = %e, "cannot raise the open-file limit");
        }
    }
}
