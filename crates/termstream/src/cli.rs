//! The client verbs of the `termstream` binary (`run`, `attach`, `ls`, ...),
//! one module per verb, all built on `termstream-client`.
//!
//! Every verb returns an exit code or a [`Failure`]: one line that says what
//! went wrong and what to do, with a distinct exit code ([`exit`]).

pub mod attach;
pub mod completions;
pub mod detach_keys;
pub mod events;
pub mod exit;
pub mod followed;
pub mod leave;
pub mod logs;
pub mod ls;
pub mod run;
pub mod shell;
pub mod term;

use std::io::Write;
use std::path::PathBuf;
use std::time::Duration;

use clap::Subcommand;
use termstream_client::{Client, Endpoint};
use termstream_proto::{ProjectId, SessionId};

pub use exit::Failure;

/// Options every client verb takes.
#[derive(Debug, Clone, clap::Args)]
pub struct GlobalArgs {
    /// The server: http(s)://HOST:PORT or ws(s)://HOST:PORT.
    #[arg(
        long,
        global = true,
        env = "TERMSTREAM_SERVER",
        default_value = "http://127.0.0.1:8000"
    )]
    pub server: String,
    /// The access token (sent as `Authorization: Bearer`).
    #[arg(long, global = true, env = "TERMSTREAM_TOKEN", hide_env_values = true)]
    pub token: Option<String>,
    /// A PEM file of CA certificates to trust besides the system's (for a
    /// server with a self-signed certificate).
    #[arg(long, global = true, env = "TERMSTREAM_CACERT")]
    pub cacert: Option<PathBuf>,
}

impl GlobalArgs {
    /// A REST client of the server these options name.
    pub fn client(&self) -> Result<Client, Failure> {
        let mut roots = Vec::new();
        if let Some(path) = &self.cacert {
            let pem = std::fs::read(path)
                .map_err(|e| Failure::new(exit::USAGE, format!("cannot read the CA file {}: {e}", path.display())))?;
            roots.push(pem);
        }
        let endpoint =
            Endpoint::new(&self.server, self.token.clone(), &roots).map_err(|e| Failure::from_client(e, self))?;
        Client::new(endpoint).map_err(|e| Failure::from_client(e, self))
    }
}

/// The client verbs.
#[derive(Debug, Subcommand)]
pub enum ClientCommand {
    /// Start a command on the server and stream it here; exit with its code.
    Run(run::RunArgs),
    /// Join a pty session like `tmux attach` (detach: Ctrl-\ then d).
    Attach(attach::AttachArgs),
    /// Start a new shell session on the server and attach to it.
    Shell(shell::ShellArgs),
    /// List sessions.
    Ls(ls::LsArgs),
    /// Print a session's output.
    Logs(logs::LogsArgs),
    /// Terminate a session's program.
    Kill(IdArg),
    /// Delete a session and its output (ending it if it runs).
    Rm(IdArg),
    /// Publish events to the server's event channels.
    #[command(subcommand)]
    Events(events::EventsCommand),
    /// Print a shell completion script.
    Completions(completions::CompletionsArgs),
    /// Print the man page (roff).
    Man,
}

/// A session id argument.
#[derive(Debug, clap::Args)]
pub struct IdArg {
    /// The session's id.
    pub id: String,
}

/// Runs a client verb; returns the process's exit code.
pub fn main(global: GlobalArgs, command: ClientCommand, cmd: clap::Command) -> i32 {
    // SIGPIPE stays ignored (Rust's default) for every verb: hyper and
    // rustls write to sockets without MSG_NOSIGNAL, so its default action
    // could end a verb silently on a reset connection. A closed stdout
    // (`termstream ls | head -1`) is an `EPIPE` instead, which
    // [`Failure::io`] turns into a quiet exit with 141, as `cat` ends.
    match command {
        ClientCommand::Completions(args) => return report(completions::completions(args, cmd)),
        ClientCommand::Man => return report(completions::man(cmd)),
        _ => {}
    }
    // An interactive attach runs on one thread: a typed key then crosses no
    // thread between the terminal, the socket task and back (fewer wake-ups
    // per keystroke). `run` decodes and writes output on two.
    let interactive = matches!(command, ClientCommand::Attach(_) | ClientCommand::Shell(_));
    let runtime = if interactive {
        tokio::runtime::Builder::new_current_thread().enable_all().build()
    } else {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(2)
            .enable_all()
            .build()
    }
    .expect("a tokio runtime");
    let result = runtime.block_on(async move {
        match command {
            ClientCommand::Run(args) => run::run(&global, args).await,
            ClientCommand::Attach(args) => attach::attach(&global, args).await,
            ClientCommand::Shell(args) => shell::shell(&global, args).await,
            ClientCommand::Ls(args) => ls::ls(&global, args).await,
            ClientCommand::Logs(args) => logs::logs(&global, args).await,
            ClientCommand::Kill(args) => kill(&global, args).await,
            ClientCommand::Rm(args) => rm(&global, args).await,
            ClientCommand::Events(c) => events::events(&global, c).await,
            ClientCommand::Completions(_) | ClientCommand::Man => unreachable!("handled above"),
        }
    });
    // Blocking reads of stdin may still be pending: do not wait for them.
    runtime.shutdown_timeout(Duration::from_millis(100));
    report(result)
}

/// Writes `text` to stdout for a server verb (`token create`, `serve
/// --print-config`) and gives the exit code: 141, quietly, when nobody
/// reads any more (`termstream token create | true`), as the client verbs
/// end; not `println!`, which panics there.
pub fn print(text: &str) -> i32 {
    let mut out = std::io::stdout();
    let written = out.write_all(text.as_bytes()).and_then(|()| out.flush());
    report(
        written
            .map(|()| exit::OK)
            .map_err(|e| Failure::io("cannot write the output", e)),
    )
}

/// The exit code of a verb's result, after its failure line if it has one.
fn report(result: Result<i32, Failure>) -> i32 {
    match result {
        Ok(code) => code,
        Err(f) => {
            // Not `eprintln!`, which panics when stderr is gone (a closed
            // terminal).
            if !f.message.is_empty() {
                let _ = writeln!(std::io::stderr(), "termstream: {}", f.message);
            }
            f.code
        }
    }
}

/// Parses a session id given on the command line.
pub fn session_id(raw: &str) -> Result<SessionId, Failure> {
    SessionId::new(raw).map_err(|e| Failure::new(exit::USAGE, format!("{raw:?} is not a session id: {e}")))
}

/// Parses a project given on the command line (`--project`).
pub fn project(raw: Option<&str>) -> Result<Option<ProjectId>, Failure> {
    raw.map(|p| {
        p.parse()
            .map_err(|e| Failure::new(exit::USAGE, format!("bad project {p:?}: {e}")))
    })
    .transpose()
}

async fn kill(global: &GlobalArgs, args: IdArg) -> Result<i32, Failure> {
    let client = global.client()?;
    let id = session_id(&args.id)?;
    let info = client
        .terminate(&id)
        .await
        .map_err(|e| Failure::from_client(e, global))?;
    writeln!(std::io::stdout(), "{}: {}", info.id, ls::describe_end(&info))
        .map_err(|e| Failure::io("cannot write the output", e))?;
    Ok(exit::OK)
}

async fn rm(global: &GlobalArgs, args: IdArg) -> Result<i32, Failure> {
    let client = global.client()?;
    let id = session_id(&args.id)?;
    client.delete(&id).await.map_err(|e| Failure::from_client(e, global))?;
    Ok(exit::OK)
}
