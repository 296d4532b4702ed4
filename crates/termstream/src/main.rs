//! The `termstream` binary: `termstream serve` runs the server; the client
//! verbs (`run`, `attach`, `ls`, ...) live in [`cli`], a module per verb.

mod cli;

use std::io::Write;
use std::net::SocketAddr;
use std::path::PathBuf;

use clap::{CommandFactory, FromArgMatches, Parser, Subcommand};
use serde::Serialize;
use termstream::config::Config;
use termstream::observe::logging::{self, LogFormat};
use termstream::server::{Server, shutdown_signal};

#[derive(Debug, Parser)]
#[command(
    name = "termstream",
    version,
    about = "Runs terminal sessions and streams them live over WebSocket."
)]
struct Cli {
    #[command(flatten)]
    global: cli::GlobalArgs,
    #[command(subcommand)]
    command: Command,
}

#[derive(Debug, Subcommand)]
enum Command {
    /// Run the server.
    Serve(Box<ServeArgs>),
    /// Manage access tokens.
    #[command(subcommand)]
    Token(TokenCommand),
    #[command(flatten)]
    Client(cli::ClientCommand),
}

#[derive(Debug, Subcommand)]
enum TokenCommand {
    /// Print a new random token, and the config entry (its hash) to add.
    Create(TokenCreateArgs),
}

#[derive(Debug, clap::Args)]
struct TokenCreateArgs {
    /// A name for logs.
    #[arg(long)]
    name: Option<String>,
    /// Everything, on every project.
    #[arg(long, conflicts_with_all = ["project", "read_only"])]
    admin: bool,
    /// A project the token may use (repeatable).
    #[arg(long, required_unless_present = "admin")]
    project: Vec<String>,
    /// Watch only: no input, resize, create or terminate.
    #[arg(long)]
    read_only: bool,
}

/// Flags of `serve`; each one given overrides the config file and the
/// environment.
#[derive(Debug, clap::Args, Serialize)]
struct ServeArgs {
    /// A TOML config file; when none is named, the first that exists of
    /// $XDG_CONFIG_HOME/termstream/config.toml (~/.config when unset) and
    /// /etc/termstream/config.toml.
    #[arg(long, env = "TERMSTREAM_CONFIG")]
    #[serde(skip)]
    config: Option<PathBuf>,
    /// Print the effective configuration (tokens redacted) and exit.
    #[arg(long)]
    #[serde(skip)]
    print_config: bool,
    /// How log lines on stderr are written; `RUST_LOG` filters them (e.g.
    /// `termstream=debug`, `termstream::audit=info`; default
    /// `termstream=info`).
    // Its one declaration: `log_format_before_the_verb` takes it before
    // the verb too.
    #[arg(long, value_enum, default_value_t, env = "TERMSTREAM_LOG_FORMAT")]
    #[serde(skip)]
    log_format: LogFormat,
    /// Address to listen on.
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
    /// Milliseconds shutdown may take after SIGTERM or SIGINT before the
    /// server exits anyway.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    shutdown_timeout_ms: Option<u64>,
    /// Serve without a token on a non-loopback address (anyone who can
    /// reach the port can run commands).
    #[arg(long)]
    #[serde(skip_serializing_if = "std::ops::Not::not")]
    insecure_no_auth: bool,
    /// An origin allowed besides the server's own, exactly
    /// `scheme://host[:port]` (repeatable).
    #[arg(long = "allowed-origin")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_origins: Vec<String>,
    /// A host name allowed in `Host` when bound to loopback (repeatable).
    #[arg(long = "allowed-host")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    allowed_hosts: Vec<String>,
    /// A reverse proxy (address or CIDR) whose Forwarded and X-Forwarded-*
    /// headers are believed (repeatable).
    #[arg(long = "trusted-proxy")]
    #[serde(skip_serializing_if = "Vec::is_empty")]
    trusted_proxies: Vec<String>,
    /// Serve HTTPS and WSS with this certificate chain (PEM); needs
    /// --tls-key.
    #[arg(long, requires = "tls_key")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_cert: Option<PathBuf>,
    /// The private key (PEM) of --tls-cert.
    #[arg(long, requires = "tls_cert")]
    #[serde(skip_serializing_if = "Option::is_none")]
    tls_key: Option<PathBuf>,
    /// Milliseconds a client has to send a request head (and to finish its
    /// TLS handshake) before it is disconnected.
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    http_header_timeout_ms: Option<u64>,
    /// Join a cluster of nodes through this Redis (redis://host:port).
    #[arg(long)]
    #[serde(skip_serializing_if = "Option::is_none")]
    cluster: Option<String>,
}

fn main() -> anyhow::Result<()> {
    let matches = with_defaults(log_format_before_the_verb(Cli::command())).get_matches();
    let cli = match Cli::from_arg_matches(&matches) {
        Ok(cli) => cli,
        Err(e) => e.exit(),
    };
    let log_format_before = matches.get_one::<LogFormat>(LOG_FORMAT).copied();
    if let Command::Client(command) = cli.command {
        if log_format_before.is_some() {
            // Taken before any verb, but only serve logs.
            Cli::command()
                .error(
                    clap::error::ErrorKind::ArgumentConflict,
                    "--log-format is an option of `serve` (the server's log); a client verb writes none",
                )
                .exit();
        }
        std::process::exit(cli::main(cli.global, command, Cli::command()));
    }
    match cli.command {
        Command::Serve(args) => {
            // serve's own option, when given, over the one before the verb
            // (which is over the environment and the default).
            let own = matches
                .subcommand_matches("serve")
                .and_then(|m| m.value_source(LOG_FORMAT))
                == Some(clap::parser::ValueSource::CommandLine);
            logging::init(match log_format_before {
                Some(before) if !own => before,
                _ => args.log_format,
            });
            serve(*args)
        }
        Command::Token(TokenCommand::Create(args)) => match cli::print(&token_create(args)) {
            0 => Ok(()),
            code => std::process::exit(code),
        },
        Command::Client(_) => unreachable!("client verbs return above"),
    }
}

/// A new token on the first line, then the TOML entry to add to the
/// config file. Only the hash is ever stored.
fn token_create(args: TokenCreateArgs) -> String {
    use std::fmt::Write;
    use termstream::auth::token;
    let t = token::generate();
    let hash = token::hash(&t);
    let mut s = format!("{t}\n\n# Add to the config file; the token above is shown only once.\n[[tokens]]\n");
    if let Some(name) = &args.name {
        let _ = writeln!(s, "name = {name:?}");
    }
    let _ = writeln!(s, "sha256 = \"{hash}\"");
    if args.admin {
        s.push_str("admin = true\n");
    } else {
        let access = if args.read_only { "read" } else { "write" };
        let projects: Vec<String> = args.project.iter().map(|p| format!("{p:?} = \"{access}\"")).collect();
        let _ = writeln!(s, "projects = {{ {} }}", projects.join(", "));
    }
    s
}

/// The id of `serve --log-format` ([`ServeArgs::log_format`]).
const LOG_FORMAT: &str = "log_format";

/// Takes `serve --log-format` before the verb too, as it once was taken
/// for every verb (`termstream --log-format json serve`): `serve`'s own
/// declaration, copied to the top, hidden there, and without its default
/// and its variable (which `serve` reads itself). So it is declared once,
/// and shown only in `serve --help`: a global option would be offered by
/// every client verb's help, where it means nothing. A client verb given
/// it before its name is told that it is `serve`'s.
fn log_format_before_the_verb(cmd: clap::Command) -> clap::Command {
    let serves = cmd
        .find_subcommand("serve")
        .and_then(|s| s.get_arguments().find(|a| a.get_id() == LOG_FORMAT))
        .cloned()
        .expect("serve declares --log-format");
    cmd.arg(
        serves
            .hide(true)
            .env(None::<&'static str>)
            .default_value(None::<&'static str>),
    )
}

/// Appends each `serve` setting's default to its help, from
/// [`Config::default`], so `--help` shows what an absent flag means.
fn with_defaults(cmd: clap::Command) -> clap::Command {
    let defaults = serde_json::to_value(Config::default()).unwrap_or_default();
    cmd.mut_subcommand("serve", |mut serve| {
        let ids: Vec<String> = serve.get_arguments().map(|a| a.get_id().to_string()).collect();
        for id in ids {
            let shown = match &defaults[id.as_str()] {
                serde_json::Value::Null if defaults.get(id.as_str()).is_some() => "unset".to_owned(),
                serde_json::Value::Null => continue,
                serde_json::Value::String(s) => s.clone(),
                serde_json::Value::Array(a) if a.is_empty() => "none".to_owned(),
                serde_json::Value::Array(a) => a
                    .iter()
                    .map(|v| v.as_str().map_or_else(|| v.to_string(), str::to_owned))
                    .collect::<Vec<_>>()
                    .join(" "),
                v => v.to_string(),
            };
            serve = serve.mut_arg(id.as_str(), |a| {
                let help = a.get_help().map(ToString::to_string).unwrap_or_default();
                a.help(format!("{help} [default: {shown}]"))
            });
        }
        serve
    })
}

fn serve(args: ServeArgs) -> anyhow::Result<()> {
    let file = termstream::config::find_file(args.config.as_deref());
    let config = Config::load(file.as_deref(), &args)?;
    if args.print_config {
        let head = match &file {
            Some(f) => format!("# config file: {}\n", f.display()),
            None => "# no config file\n".to_owned(),
        };
        return match cli::print(&(head + &config.to_toml_redacted())) {
            0 => Ok(()),
            code => std::process::exit(code),
        };
    }
    if let Err(e) = termstream::confine::raise_fd_limit() {
        tracing::warn!(error = %e, "cannot raise the open-file limit");
    }
    // Under load (sessions streaming at full speed), tokio's default of
    // polling for I/O every 61 tasks lets a typed key wait behind dozens of
    // bulk polls; every 8 keeps interactive sessions responsive (echo p50
    // under load 59-82 µs against 218-360 µs in scenario 4 of the bench).
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .event_interval(8)
        .max_blocking_threads(termstream::server::BLOCKING_THREADS)
        .enable_all()
        .build()?;
    let served = runtime.block_on(async {
        // First: from here a SIGTERM starts the shutdown (once serving) and
        // a SIGHUP is caught, even while stored sessions load.
        let shutdown = shutdown_signal(std::time::Duration::from_millis(config.shutdown_timeout_ms));
        let server = Server::bind(config).await?.with_reload(move || {
            let file = termstream::config::find_file(args.config.as_deref());
            Config::load(file.as_deref(), &args)
        });
        let addr = server.local_addr()?;
        // The first line on stdout is the address, for scripts and tests.
        // Not `println!`: a server whose stdout nobody reads serves on.
        let _ = writeln!(std::io::stdout(), "listening on {}://{addr}", server.scheme());
        tracing::info!(%addr, "termstream is serving");
        // Under systemd (Type=notify) the unit counts as started now.
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Ready]);
        server.run(shutdown).await
    });
    // The runtime's tasks are dropped first, as before the bulk lane
    // (sessions that did not end within the shutdown's wait: their cgroups
    // killed; blocking work waited for), so that no actor can move onto
    // the lane any more; then whatever actor is still there is dropped the
    // same way.
    drop(runtime);
    termstream::session::lane::stop_lane(std::time::Duration::from_secs(2));
    served
}
