//! Server configuration: defaults, then a TOML file, then `TERMSTREAM_*`
//! environment variables, then command-line flags, each overriding the last.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::time::Duration;

use anyhow::Context;
use figment::Figment;
use figment::providers::{Env, Format, Serialized, Toml};
use serde::{Deserialize, Serialize};

use crate::auth::token::{self, TokenEntry};
use crate::session::SessionSettings;
use crate::session::store::DiskLimits;

/// Everything the server can be told.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct Config {
    /// Address to listen on.
    pub listen: SocketAddr,
    /// Where session records and output logs are kept.
    pub data_dir: PathBuf,
    /// In-memory output kept per session, in bytes.
    pub ring_bytes: usize,
    /// Lines of scrollback a screen snapshot carries.
    pub scrollback_lines: usize,
    /// Bytes per on-disk log segment.
    pub disk_segment_bytes: u64,
    /// Output kept on disk per session; the oldest segments go first.
    pub disk_max_bytes: u64,
    /// Milliseconds between SIGTERM and SIGKILL when terminating.
    pub terminate_grace_ms: u64,
    /// Sessions running at once; more is answered 503.
    pub max_running_sessions: usize,
    /// Sessions kept, running or ended; past it the oldest ended ones go.
    pub max_sessions: usize,
    /// Seconds an ended session is kept before it is deleted.
    pub retention_secs: u64,
    /// Variables of the server's environment passed to programs.
    pub env_allowlist: Vec<String>,
    /// The program of a pty session when none is given; the user's shell
    /// (`$SHELL`, else `/bin/sh`) when unset.
    pub default_shell: Option<String>,
    /// The working directory when none is given; the server's own when unset.
    pub default_cwd: Option<PathBuf>,
    /// Largest REST body accepted, in bytes.
    pub max_body_bytes: usize,
    /// Largest WebSocket message or frame accepted, in bytes (close 1009).
    pub ws_max_message_bytes: usize,
    /// Bytes of output queued for one socket before its forwarders wait.
    pub ws_outbound_budget: usize,
    /// Milliseconds between the server's pings.
    pub ws_ping_interval_ms: u64,
    /// Milliseconds without a pong before the server closes the socket.
    pub ws_pong_timeout_ms: u64,
    /// Milliseconds an attach to an unknown id waits for it to appear.
    pub attach_wait_ms: u64,
    /// Sessions one socket may be attached to at once.
    pub max_attachments_per_socket: usize,
    /// A pty client further behind than this gets a snapshot and a gap
    /// notice instead of the missed bytes.
    pub max_replay_bytes: u64,
    /// Sessions focused at once per project; focusing one more unfocuses
    /// the least recently active.
    pub max_focused: usize,
    /// Milliseconds between the updates of an unfocused session attached
    /// with `"stream":"focus"`.
    pub unfocused_interval_ms: u64,

    /// Milliseconds a client has to send each request head, and to finish
    /// its TLS handshake; then it is disconnected.
    pub http_header_timeout_ms: u64,
    /// Certificate chain (PEM) to serve HTTPS and WSS with; needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,

    // Security (see `crate::auth` and the README's "Security" section).
    /// Tokens by SHA-256, with their scopes. None: only loopback clients.
    pub tokens: Vec<TokenEntry>,
    /// Serve without a token on a non-loopback address.
    pub insecure_no_auth: bool,
    /// Origins allowed besides the server's own (`scheme://host[:port]`).
    pub allowed_origins: Vec<String>,
    /// Host names allowed in `Host` besides localhost, 127.0.0.1 and `[::1]`
    /// (checked only when bound to loopback).
    pub allowed_hosts: Vec<String>,
    /// Accept a long-lived token in `?token=` (tickets are always accepted).
    pub allow_token_in_query: bool,
    /// Milliseconds a WebSocket ticket stays valid.
    pub ticket_ttl_ms: u64,
    /// Milliseconds a login code (`POST /api/login-codes`) stays valid.
    pub login_code_ttl_ms: u64,
    /// Seconds a login session (the cookie `GET /login` sets) lasts.
    pub login_session_ttl_secs: u64,
    /// Login sessions open at once (503 past it).
    pub max_login_sessions: usize,
    /// Tickets outstanding at once; login codes too.
    pub max_tickets: usize,
    /// WebSocket connections open at once (503 past it).
    pub max_connections: usize,
    /// WebSocket connections open at once from one IP address (429 past it).
    pub max_connections_per_ip: usize,
    /// Sessions one token may run at once (429 past it).
    pub max_sessions_per_token: usize,
    /// Input bytes per second one socket may send; more is refused
    /// (`rate_limited`) and dropped.
    pub ws_input_bytes_per_sec: u64,
    /// Input bytes one socket may send at once after being quiet.
    pub ws_input_burst_bytes: u64,
    /// Run programs as this user (name or uid; needs root). See
    /// `crate::confine`.
    pub run_as: Option<String>,
    /// RLIMIT_NPROC of programs: processes of their user.
    pub rlimit_nproc: Option<u64>,
    /// RLIMIT_AS of programs: address space in bytes.
    pub rlimit_as_bytes: Option<u64>,
    /// RLIMIT_NOFILE of programs: open files.
    pub rlimit_nofile: Option<u64>,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: default_data_dir(),
            ring_bytes: 1 << 20,
            scrollback_lines: 1000,
            disk_segment_bytes: 16 << 20,
            disk_max_bytes: 256 << 20,
            terminate_grace_ms: 2000,
            max_running_sessions: 2048,
            max_sessions: 10_000,
            retention_secs: 7 * 24 * 3600,
            env_allowlist: [
                "PATH", "HOME", "LANG", "LC_ALL", "LC_CTYPE", "USER", "LOGNAME", "SHELL", "TZ",
            ]
            .map(String::from)
            .to_vec(),
            default_shell: None,
            default_cwd: None,
            max_body_bytes: 1 << 20,
            ws_max_message_bytes: 1 << 20,
            ws_outbound_budget: 1 << 20,
            ws_ping_interval_ms: 10_000,
            ws_pong_timeout_ms: 60_000,
            attach_wait_ms: 3_000,
            max_attachments_per_socket: 256,
            max_replay_bytes: 4 << 20,
            max_focused: 4,
            unfocused_interval_ms: 1000,
            http_header_timeout_ms: 10_000,
            tls_cert: None,
            tls_key: None,
            tokens: Vec::new(),
            insecure_no_auth: false,
            allowed_origins: Vec::new(),
            allowed_hosts: Vec::new(),
            allow_token_in_query: false,
            ticket_ttl_ms: 30_000,
            max_tickets: 10_000,
            login_code_ttl_ms: 60_000,
            login_session_ttl_secs: 12 * 3600,
            max_login_sessions: 10_000,
            max_connections: 4096,
            max_connections_per_ip: 512,
            max_sessions_per_token: 256,
            ws_input_bytes_per_sec: 1 << 20,
            ws_input_burst_bytes: 4 << 20,
            run_as: None,
            rlimit_nproc: None,
            rlimit_as_bytes: None,
            rlimit_nofile: None,
        }
    }
}

fn default_data_dir() -> PathBuf {
    if let Some(d) = std::env::var_os("XDG_DATA_HOME") {
        return PathBuf::from(d).join("termstream");
    }
    match std::env::var_os("HOME") {
        Some(h) => PathBuf::from(h).join(".local/share/termstream"),
        None => PathBuf::from("termstream-data"),
    }
}

impl Config {
    /// Loads the configuration: defaults < `file` (if given) <
    /// `TERMSTREAM_*` variables < `overrides` (the flags that were given).
    pub fn load(file: Option<&Path>, overrides: impl Serialize) -> anyhow::Result<Config> {
        let mut fig = Figment::from(Serialized::defaults(Config::default()));
        if let Some(file) = file {
            anyhow::ensure!(file.exists(), "config file {} does not exist", file.display());
            fig = fig.merge(Toml::file(file));
        }
        // `TERMSTREAM_CONFIG` names the file, and `TERMSTREAM_SESSION` is the
        // marker every session's processes carry: neither is a setting, and a
        // server started inside a session must not refuse the marker.
        // `TERMSTREAM_ADMIN_TOKEN` is a plain token, hashed here and kept
        // only as its hash.
        let mut config: Config = fig
            .merge(Env::prefixed("TERMSTREAM_").ignore(&["config", "session", "admin_token"]))
            .merge(Serialized::defaults(overrides))
            .extract()
            .context("invalid configuration")?;
        // 0 would cut off every client before its first header.
        anyhow::ensure!(
            config.http_header_timeout_ms > 0,
            "invalid configuration: http_header_timeout_ms must be at least 1"
        );
        anyhow::ensure!(
            config.max_focused > 0,
            "invalid configuration: max_focused must be at least 1"
        );
        if let Some(t) = std::env::var("TERMSTREAM_ADMIN_TOKEN").ok().filter(|t| !t.is_empty()) {
            config.tokens.push(TokenEntry {
                name: Some("env".into()),
                sha256: token::hash(&t),
                admin: true,
                projects: Default::default(),
            });
        }
        Ok(config)
    }

    /// The settings every session shares.
    pub fn session_settings(&self) -> SessionSettings {
        SessionSettings {
            ring_bytes: self.ring_bytes,
            disk: DiskLimits {
                segment_bytes: self.disk_segment_bytes.max(4096),
                max_bytes: self.disk_max_bytes,
            },
            grace: Duration::from_millis(self.terminate_grace_ms),
            scrollback_lines: self.scrollback_lines,
        }
    }

    /// The program of a pty session when the request names none.
    pub fn shell(&self) -> String {
        self.default_shell
            .clone()
            .or_else(|| std::env::var("SHELL").ok().filter(|s| !s.is_empty()))
            .unwrap_or_else(|| "/bin/sh".to_owned())
    }
}
