//! Server configuration: every setting ([`Config`]), its default, and
//! what the rest of the server derives from it (the sessions' settings,
//! the default shell, the printed configuration). Where the settings come
//! from (defaults, then a TOML file, then `TERMSTREAM_*` environment
//! variables, then command-line flags, each overriding the last) and how
//! they are checked is `config/load.rs`'s ([`Config::load`]).

use std::net::SocketAddr;
use std::path::PathBuf;
use std::time::Duration;

use serde::{Deserialize, Serialize};

mod load;
pub mod tokens;

pub use load::{NOT_SETTINGS, STRING_LISTS, default_files, find_file, keys, unknown_variables};

use crate::session::SessionSettings;
use crate::session::cgroup::CgroupMode;
use crate::session::store::DiskLimits;
use tokens::TokenEntry;

/// The most spare session directories `spare_sessions` may ask for.
pub const MAX_SPARE_SESSIONS: usize = 4096;

/// The most `session_changes_queue` may be: the queue holds this many
/// events whoever reads it.
pub const MAX_SESSION_CHANGES_QUEUE: usize = 1 << 16;

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
    /// Lines of scrollback a screen snapshot carries (fewer for windows too
    /// large for that much within the screen model's budget).
    pub scrollback_lines: usize,
    /// Ignored; accepted so that old config files and environments keep
    /// working. It was the CPU priority (autogroup nice) flooding sessions
    /// were lowered to, removed because it made the echo's latency worse
    /// (see `bench/RESULTS.md`); a value other than 0 is warned about once.
    pub flood_nice: i32,
    /// The widest window a pty session may have (create and resize).
    pub max_cols: u16,
    /// The tallest window a pty session may have (create and resize).
    pub max_rows: u16,
    /// Bytes per on-disk log segment.
    pub disk_segment_bytes: u64,
    /// Output kept on disk per session; the oldest segments go first.
    pub disk_max_bytes: u64,
    /// Session directories kept made ahead (in `DATA_DIR/spare`), so that
    /// a create makes no file; 0: every create makes its own. 256: a burst
    /// of 100 creates leaves more than a quarter of the pool, so the refill
    /// never competes with it (with 128 it did; the open rate at 100 was
    /// better in 7 of 9 alternating benchmark runs, by about 5 %).
    pub spare_sessions: usize,
    /// Milliseconds between SIGTERM and SIGKILL when terminating.
    pub terminate_grace_ms: u64,
    /// Milliseconds the server may take to shut down (tell sockets,
    /// terminate sessions) after SIGTERM or SIGINT before it exits anyway.
    pub shutdown_timeout_ms: u64,
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
    /// Session creates and deletes (this node's, and other nodes' sessions
    /// appearing or going here) a reader of the registry's changes may fall
    /// behind by before it misses some; 1 to [`MAX_SESSION_CHANGES_QUEUE`],
    /// rounded up to a power of two. One queue for every reader: the
    /// monitors (`/ws/terminal/all`, the `sessions` event channel), which
    /// then resynchronize from the list of sessions, and the waits for a
    /// session's id (attach, `/ws/terminal/{id}`), focus's deletions.
    pub session_changes_queue: usize,

    /// Milliseconds a client has to send each request head, and to finish
    /// its TLS handshake; then it is disconnected.
    pub http_header_timeout_ms: u64,
    /// Milliseconds a client has to send a whole request body, from the
    /// first read that waits for it; then it is answered 408 and
    /// disconnected.
    pub http_body_timeout_ms: u64,
    /// Certificate chain (PEM) to serve HTTPS and WSS with; needs `tls_key`.
    pub tls_cert: Option<PathBuf>,
    /// Private key (PEM) of `tls_cert`.
    pub tls_key: Option<PathBuf>,

    // Security (see `crate::auth` and the README's "Security" section).
    /// Tokens by SHA-256, with their scopes. None: only loopback clients.
    pub tokens: Vec<TokenEntry>,
    /// Serve without a token on a non-loopback address, or behind a
    /// reverse proxy.
    pub insecure_no_auth: bool,
    /// Reverse proxies (addresses or CIDRs) whose `Forwarded` and
    /// `X-Forwarded-*` headers are believed, for the client's address and
    /// the page's origin.
    pub trusted_proxies: Vec<String>,
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
    /// `auto`: each session in its own cgroup where the server can create
    /// them, ended by `cgroup.kill`; `off`: the process scan only. See
    /// `crate::session::cgroup`.
    pub cgroup: CgroupMode,
    /// Join a cluster of nodes through this Redis (`redis://host:port/db`);
    /// unset: one node, no Redis. See `ARCHITECTURE.md` ("Scale-out").
    pub cluster: Option<String>,
    /// How often a cluster node renews its liveness key in Redis and
    /// refreshes its view of the directory.
    pub cluster_heartbeat_ms: u64,
    /// How long a node may miss its heartbeats before the others mark its
    /// sessions `lost` (its liveness key expires after this).
    pub cluster_lost_ms: u64,
    /// The bytes of output each session's Redis stream keeps; older output
    /// is read from the owner's disk.
    pub cluster_stream_bytes: u64,
    /// How long a `recording.cast` download may wait for its client to
    /// read before it ends (for another node's session, giving its
    /// transfer slot back).
    pub download_stall_ms: u64,
}

impl Default for Config {
    fn default() -> Self {
        Config {
            listen: SocketAddr::from(([127, 0, 0, 1], 8000)),
            data_dir: default_data_dir(),
            ring_bytes: 1 << 20,
            scrollback_lines: 1000,
            flood_nice: 0,
            max_cols: 1000,
            max_rows: 1000,
            disk_segment_bytes: 16 << 20,
            disk_max_bytes: 256 << 20,
            spare_sessions: 256,
            terminate_grace_ms: 2000,
            shutdown_timeout_ms: 10_000,
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
            session_changes_queue: 1024,
            http_header_timeout_ms: 10_000,
            http_body_timeout_ms: 30_000,
            tls_cert: None,
            tls_key: None,
            tokens: Vec::new(),
            insecure_no_auth: false,
            trusted_proxies: Vec::new(),
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
            cluster: None,
            cluster_heartbeat_ms: 1000,
            cluster_lost_ms: 3000,
            cluster_stream_bytes: 16 << 20,
            download_stall_ms: 30_000,
            rlimit_nproc: None,
            rlimit_as_bytes: None,
            rlimit_nofile: None,
            cgroup: CgroupMode::Auto,
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
    /// The configuration as TOML, with every token's hash redacted; unset
    /// settings are listed as comments.
    pub fn to_toml_redacted(&self) -> String {
        let mut shown = self.clone();
        for t in &mut shown.tokens {
            t.sha256 = "<redacted>".into();
        }
        let table = toml::Table::try_from(&shown).unwrap_or_default();
        let mut out = String::new();
        let mut unset = Vec::new();
        let mut tables = toml::Table::new();
        for key in keys() {
            match table.get(&key) {
                None => unset.push(key),
                Some(v @ toml::Value::Array(a)) if a.iter().any(toml::Value::is_table) => {
                    tables.insert(key, v.clone());
                }
                Some(v) => out.push_str(&format!("{key} = {v}\n")),
            }
        }
        for key in unset {
            out.push_str(&format!("# {key}: unset\n"));
        }
        if !tables.is_empty() {
            out.push('\n');
            out.push_str(&toml::to_string(&tables).unwrap_or_default());
        }
        out
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
            max_cols: self.max_cols,
            max_rows: self.max_rows,
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

#[cfg(test)]
mod tests;
