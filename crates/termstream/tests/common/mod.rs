//! The test harness: a real `termstream serve` process and helpers to drive it.
//!
//! [`TestServer`] spawns the binary Cargo built for these tests on
//! `127.0.0.1:0` with a temporary data dir, reads the bound address from the
//! first line of its stdout, and stops the process when dropped (SIGTERM, so
//! that it terminates its sessions, then SIGKILL after a bounded wait). The
//! data dir outlives [`TestServer::crash`] and [`TestServer::restart`], so a
//! test can restart a server on the data it left; it is removed when the
//! server is dropped, unless `TERMSTREAM_KEEP_TEST_DATA` is set.
//!
//! Every wait is on a condition with a timeout ([`wait_until`]); nothing
//! sleeps and hopes.
//!
//! Beside this file: `rest.rs` (the REST calls on a [`TestServer`]),
//! `procs.rs` (crashing and stopping the server, and the processes the
//! tests watch), `ws.rs` (a WebSocket client), `secured.rs` (servers with
//! tokens), `tls.rs`, `cli.rs`, `client.rs`, `redis.rs`, `nginx.rs`, `cluster.rs`,
//! `focus.rs`, `route_proxy.rs` (a proxy that routes and holds back
//! WebSockets) and `strace.rs` (strace attached to a server).

#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use serde_json::Value;

pub mod cli;
pub mod client;
pub mod cluster;
pub mod focus;
pub mod metrics;
pub mod nginx;
mod procs;
pub mod pty;
pub mod redis;
pub mod redis_proxy;
mod rest;
pub mod route_proxy;
pub mod secured;
pub mod strace;
pub mod tls;
pub mod ws;

// Not every test binary uses them.
#[allow(unused_imports)]
pub use procs::{Paused, ProcStat, all_stats, kill_marked, marked_processes};

/// How long a server may take to print its address.
const START_TIMEOUT: Duration = Duration::from_secs(30);
/// How often [`wait_until`] checks its condition.
const POLL: Duration = Duration::from_millis(20);

/// Whether a test server serves TLS.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Transport {
    Plain,
    Tls,
}

/// A running `termstream serve` on an ephemeral port.
pub struct TestServer {
    child: Child,
    /// The server's stdout, kept open so that it never writes to a closed pipe.
    _stdout: BufReader<ChildStdout>,
    addr: String,
    /// `http` or `https`, as the server announced.
    scheme: String,
    /// The certificate of a TLS server, which its clients trust.
    cert: Option<std::sync::Arc<tls::TestCert>>,
    /// The data dir; shared by every restart of this server.
    data: tempfile::TempDir,
    /// The folder of the config file it was started with, if any: kept as
    /// long as the server, for restarts.
    config: Option<tempfile::TempDir>,
    args: Vec<String>,
    env: Vec<(String, String)>,
    /// Where the server's stderr (its log) goes, when captured; else it is
    /// the test's.
    log: Option<PathBuf>,
    pub client: reqwest::Client,
}

impl TestServer {
    /// Starts a server with default settings.
    pub async fn start() -> TestServer {
        TestServer::start_with(&[], &[]).await
    }

    /// Starts a server with extra `serve` flags and environment variables.
    pub async fn start_with(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let data = tempfile::Builder::new()
            .prefix("termstream-test-")
            .tempdir()
            .expect("tempdir");
        let args = args.iter().map(|s| s.to_string()).collect();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TestServer::spawn(data, args, env, None, None)
    }

    /// Starts a server whose log (stderr) is written to a file, read with
    /// [`TestServer::log`]; `RUST_LOG` is given in `env` or defaults to the
    /// harness's.
    pub async fn start_logged(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let data = tempfile::Builder::new()
            .prefix("termstream-test-")
            .tempdir()
            .expect("tempdir");
        let log = data.path().with_extension("log");
        let args = args.iter().map(|s| s.to_string()).collect();
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TestServer::spawn(data, args, env, None, Some(log))
    }

    /// What the server logged so far (see [`TestServer::start_logged`]).
    pub fn log(&self) -> String {
        let path = self.log.as_ref().expect("started with start_logged");
        std::fs::read_to_string(path).unwrap_or_default()
    }

    /// The JSON lines of the log whose `event` is `name` (a server started
    /// with [`TestServer::start_logged`] and `--log-format json`).
    pub fn log_events(&self, name: &str) -> Vec<Value> {
        self.log()
            .lines()
            .filter_map(|l| serde_json::from_str::<Value>(l).ok())
            .filter(|v| v["event"] == name)
            .collect()
    }

    /// Starts a server serving HTTPS and WSS with a certificate made now;
    /// `client` and [`ws::WsClient`] trust it.
    pub async fn start_tls(args: &[&str], env: &[(&str, &str)]) -> TestServer {
        let cert = std::sync::Arc::new(tls::TestCert::generate());
        let data = tempfile::Builder::new()
            .prefix("termstream-test-")
            .tempdir()
            .expect("tempdir");
        let mut all = cert.args();
        all.extend(args.iter().map(|s| s.to_string()));
        let env = env.iter().map(|(k, v)| (k.to_string(), v.to_string())).collect();
        TestServer::spawn(data, all, env, Some(cert), None)
    }

    /// Starts a server reading `toml` as its config file.
    pub async fn start_configured(toml: &str, env: &[(&str, &str)], transport: Transport) -> TestServer {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("termstream.toml");
        std::fs::write(&path, toml).expect("config file");
        let args = ["--config", path.to_str().expect("a UTF-8 path")];
        let mut server = match transport {
            Transport::Plain => TestServer::start_with(&args, env).await,
            Transport::Tls => TestServer::start_tls(&args, env).await,
        };
        server.config = Some(dir);
        server
    }

    fn spawn(
        data: tempfile::TempDir,
        args: Vec<String>,
        env: Vec<(String, String)>,
        cert: Option<std::sync::Arc<tls::TestCert>>,
        log: Option<PathBuf>,
    ) -> TestServer {
        let mut cmd = Command::new(env!("CARGO_BIN_EXE_termstream"));
        cmd.arg("serve")
            .args(["--listen", "127.0.0.1:0", "--data-dir"])
            .arg(data.path())
            .args(&args)
            .env(
                "RUST_LOG",
                std::env::var("RUST_LOG").unwrap_or_else(|_| "termstream=warn".into()),
            )
            // Hundreds of test servers start: a few spare session
            // directories each exercise the pool without making 64.
            .env("TERMSTREAM_SPARE_SESSIONS", "4")
            .envs(env.iter().map(|(k, v)| (k, v)))
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(match &log {
                Some(path) => Stdio::from(
                    std::fs::OpenOptions::new()
                        .create(true)
                        .append(true)
                        .open(path)
                        .expect("log file"),
                ),
                None => Stdio::inherit(),
            });
        let mut child = cmd.spawn().expect("cannot start termstream");
        let mut stdout = BufReader::new(child.stdout.take().expect("stdout is piped"));
        // Read the first line on a thread, so that a server that never prints
        // fails the test after a timeout instead of hanging it.
        let (tx, rx) = std::sync::mpsc::channel();
        let reader = std::thread::spawn(move || {
            let mut line = String::new();
            let n = stdout.read_line(&mut line);
            let _ = tx.send((n.map(|_| line), ()));
            stdout
        });
        let line = match rx.recv_timeout(START_TIMEOUT) {
            Ok((Ok(line), ())) => line,
            other => {
                let _ = child.kill();
                panic!("termstream did not print its address: {other:?}");
            }
        };
        let stdout = reader.join().expect("reader thread");
        let (scheme, addr) = line
            .trim()
            .strip_prefix("listening on ")
            .and_then(|url| url.split_once("://"))
            .filter(|(scheme, _)| ["http", "https"].contains(scheme))
            .unwrap_or_else(|| panic!("unexpected first line {line:?}"));
        let (scheme, addr) = (scheme.to_owned(), addr.to_owned());
        let client = match &cert {
            Some(cert) => cert.reqwest_client(),
            None => reqwest::Client::builder()
                .pool_max_idle_per_host(8)
                .build()
                .expect("client"),
        };
        TestServer {
            child,
            _stdout: stdout,
            addr,
            scheme,
            cert,
            data,
            config: None,
            args,
            env,
            log,
            client,
        }
    }

    /// Kills the server (SIGKILL) and starts a new one on the same data dir
    /// with the same flags and environment.
    pub fn restart(mut self) -> TestServer {
        self.crash();
        // Move the data dir out; `self` is dropped with a dead child.
        let data = std::mem::replace(&mut self.data, tempfile::tempdir().expect("tempdir"));
        let (args, env) = (self.args.clone(), self.env.clone());
        let mut server = TestServer::spawn(data, args, env, self.cert.clone(), self.log.take());
        server.config = self.config.take();
        server
    }

    pub fn url(&self, path: &str) -> String {
        format!("{}://{}{}", self.scheme, self.addr, path)
    }

    /// The `ws://` or `wss://` URL of `path`.
    pub fn ws_url(&self, path: &str) -> String {
        let scheme = if self.scheme == "https" { "wss" } else { "ws" };
        format!("{scheme}://{}{}", self.addr, path)
    }

    /// The bound address, `127.0.0.1:PORT`.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// The certificate of a TLS server.
    pub fn cert(&self) -> Option<&tls::TestCert> {
        self.cert.as_deref()
    }

    pub fn pid(&self) -> u32 {
        self.child.id()
    }

    pub fn data_dir(&self) -> &Path {
        self.data.path()
    }

    /// Waits until the spare pool (4 here) is made and offered, and the
    /// thread that made it is gone: the next create takes a spare this
    /// server made (and synced, with the room for its first record).
    pub async fn wait_spares_made(&self) {
        let spares = self.data_dir().join("spare");
        let numbered = |dir: &Path| {
            std::fs::read_dir(dir)
                .into_iter()
                .flatten()
                .flatten()
                .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u64>().is_ok()))
                .count()
        };
        let tasks = format!("/proc/{}/task", self.pid());
        // `termstream-spare`, cut to the 15 bytes a thread's name keeps.
        const SPARE_THREAD: &str = "termstream-spar";
        let making = || {
            std::fs::read_dir(&tasks)
                .into_iter()
                .flatten()
                .flatten()
                .any(|t| std::fs::read_to_string(t.path().join("comm")).is_ok_and(|c| c.trim() == SPARE_THREAD))
        };
        let made = wait_until(Duration::from_secs(30), || async {
            numbered(&spares) >= 4 && numbered(&spares.join("new")) == 0 && !making()
        })
        .await;
        assert!(made, "the spare pool was not made");
    }
}

impl Drop for TestServer {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            // SIGTERM first: the server terminates its sessions on the way out.
            let _ = rustix::process::kill_process(
                rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid"),
                rustix::process::Signal::TERM,
            );
            let deadline = Instant::now() + Duration::from_secs(15);
            while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
                std::thread::sleep(POLL);
            }
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
        if let Some(log) = &self.log
            && std::env::var_os("TERMSTREAM_KEEP_TEST_DATA").is_none()
        {
            let _ = std::fs::remove_file(log);
        }
        if std::env::var_os("TERMSTREAM_KEEP_TEST_DATA").is_some() {
            let dir = std::mem::replace(&mut self.data, tempfile::tempdir().expect("tempdir")).keep();
            eprintln!("kept test data dir {}", dir.display());
        }
    }
}

/// Waits up to 10 s for `child` to end and gives its status; `what`
/// (the end expected) is the message if it does not.
pub async fn exit_within_10s(child: &mut tokio::process::Child, what: &str) -> std::process::ExitStatus {
    tokio::time::timeout(secs(10), child.wait()).await.expect(what).unwrap()
}

/// Polls `cond` until it holds or `timeout` passes; returns whether it held.
pub async fn wait_until<F, Fut>(timeout: Duration, mut cond: F) -> bool
where
    F: FnMut() -> Fut,
    Fut: Future<Output = bool>,
{
    let deadline = Instant::now() + timeout;
    loop {
        if cond().await {
            return true;
        }
        if Instant::now() >= deadline {
            return false;
        }
        tokio::time::sleep(POLL).await;
    }
}

/// The session's directory in a data dir.
pub fn session_dir(data_dir: &Path, id: &str) -> PathBuf {
    // `<id>.<epoch>`: the one directory of the session's incarnation (or a
    // path that does not exist).
    let sessions = data_dir.join("sessions");
    std::fs::read_dir(&sessions)
        .into_iter()
        .flatten()
        .flatten()
        .map(|e| e.path())
        .find(|p| {
            p.file_name()
                .and_then(|n| n.to_str())
                .and_then(|n| n.rsplit_once('.'))
                .is_some_and(|(i, _)| i == id)
        })
        .unwrap_or_else(|| sessions.join(id))
}

/// The ids of the sessions in a `GET /api/sessions` answer, in its order.
pub fn session_ids(list: &Value) -> Vec<&str> {
    list["sessions"]
        .as_array()
        .unwrap_or_else(|| panic!("no sessions array in {list}"))
        .iter()
        .map(|s| s["id"].as_str().expect("a session id"))
        .collect()
}

/// Seconds as a `Duration`, to keep call sites short.
pub fn secs(n: u64) -> Duration {
    Duration::from_secs(n)
}
