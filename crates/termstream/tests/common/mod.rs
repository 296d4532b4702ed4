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

#![allow(dead_code)]

use std::future::Future;
use std::io::{BufRead, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, ChildStdout, Command, Stdio};
use std::time::{Duration, Instant};

use reqwest::StatusCode;
use serde_json::Value;

pub mod cli;
pub mod cluster;
pub mod focus;
pub mod nginx;
pub mod redis;
pub mod secured;
pub mod tls;
pub mod ws;

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

    /// Kills the server with SIGKILL, as a crash would, and waits for it.
    /// Its sessions' processes are orphaned, not terminated.
    pub fn crash(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }

    /// Sends SIGTERM, as a service manager would, and waits up to `timeout`
    /// for the server to exit; its exit status, or `None` if it did not.
    pub fn stop(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        let deadline = Instant::now() + timeout;
        loop {
            if let Ok(Some(status)) = self.child.try_wait() {
                return Some(status);
            }
            if Instant::now() >= deadline {
                return None;
            }
            std::thread::sleep(POLL);
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

    /// Sends a request and returns the status and the body as JSON (or
    /// `Value::Null` when the body is empty or not JSON).
    pub async fn request(&self, method: &str, path: &str, body: Option<&Value>) -> (StatusCode, Value) {
        let method = reqwest::Method::from_bytes(method.as_bytes()).expect("method");
        let mut req = self.client.request(method, self.url(path));
        if let Some(body) = body {
            req = req.json(body);
        }
        let resp = req.send().await.expect("request failed");
        let status = resp.status();
        let bytes = resp.bytes().await.expect("body");
        (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null))
    }

    pub async fn get(&self, path: &str) -> (StatusCode, Value) {
        self.request("GET", path, None).await
    }

    pub async fn post(&self, path: &str, body: Value) -> (StatusCode, Value) {
        self.request("POST", path, Some(&body)).await
    }

    /// Creates a session; asserts 201 and returns its info.
    pub async fn create(&self, body: Value) -> Value {
        let (status, info) = self.post("/api/sessions", body.clone()).await;
        assert_eq!(status, StatusCode::CREATED, "create {body} answered {info}");
        info
    }

    /// The info of a session; asserts 200.
    pub async fn info(&self, id: &str) -> Value {
        let (status, info) = self.get(&format!("/api/sessions/{id}")).await;
        assert_eq!(status, StatusCode::OK, "get {id} answered {info}");
        info
    }

    /// Sends text to a session's input; asserts 200.
    pub async fn input(&self, id: &str, data: &str) {
        let (status, body) = self
            .post(
                &format!("/api/sessions/{id}/input"),
                serde_json::json!({ "data": data }),
            )
            .await;
        assert_eq!(status, StatusCode::OK, "input to {id} answered {body}");
    }

    /// Terminates a session; asserts 200 and returns the final info.
    pub async fn terminate(&self, id: &str) -> Value {
        let (status, info) = self.post(&format!("/api/sessions/{id}/terminate"), Value::Null).await;
        assert_eq!(status, StatusCode::OK, "terminate {id} answered {info}");
        info
    }

    /// Raw output bytes from `since` (as much as one read returns); asserts 200.
    pub async fn output(&self, id: &str, since: u64) -> Vec<u8> {
        let resp = self
            .client
            .get(self.url(&format!("/api/sessions/{id}/output?since={since}")))
            .send()
            .await
            .expect("output request");
        assert_eq!(resp.status(), StatusCode::OK, "output of {id} from {since}");
        resp.bytes().await.expect("output body").to_vec()
    }

    /// All output from `since` to the end the server holds now, over as many
    /// reads as it takes.
    pub async fn output_all(&self, id: &str, mut since: u64) -> Vec<u8> {
        let mut all = Vec::new();
        loop {
            let part = self.output(id, since).await;
            if part.is_empty() {
                return all;
            }
            since += part.len() as u64;
            all.extend_from_slice(&part);
        }
    }

    /// Polls the output of a session until it contains `needle`; returns the
    /// whole output then, or panics with what was seen after `timeout`.
    pub async fn read_output_until(&self, id: &str, needle: &str, timeout: Duration) -> String {
        let deadline = Instant::now() + timeout;
        loop {
            let text = String::from_utf8_lossy(&self.output_all(id, 0).await).into_owned();
            if text.contains(needle) {
                return text;
            }
            assert!(
                Instant::now() < deadline,
                "{needle:?} not in the output of {id} after {timeout:?}: {text:?}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// Polls a session until its status is `status`; returns its info.
    pub async fn wait_status(&self, id: &str, status: &str, timeout: Duration) -> Value {
        let deadline = Instant::now() + timeout;
        loop {
            let info = self.info(id).await;
            if info["status"] == status {
                return info;
            }
            assert!(
                Instant::now() < deadline,
                "{id} is not {status} after {timeout:?}: {info}"
            );
            tokio::time::sleep(POLL).await;
        }
    }

    /// How many fds the server process has open.
    pub fn fd_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/fd", self.pid()))
            .expect("/proc/PID/fd")
            .count()
    }

    /// How many threads the server process has.
    pub fn thread_count(&self) -> usize {
        std::fs::read_dir(format!("/proc/{}/task", self.pid()))
            .expect("/proc/PID/task")
            .count()
    }

    /// The server's resident set size in bytes.
    pub fn rss_bytes(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.pid())).expect("status");
        let kb = status
            .lines()
            .find_map(|l| l.strip_prefix("VmRSS:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse::<u64>().ok())
            .expect("VmRSS");
        kb * 1024
    }

    /// Children of the server that are zombies (exited, never waited for).
    pub fn zombie_children(&self) -> Vec<u32> {
        let me = self.pid();
        all_stats()
            .into_iter()
            .filter(|s| s.ppid == me && s.state == 'Z')
            .map(|s| s.pid)
            .collect()
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

/// One line of `/proc/PID/stat`, the fields the tests need.
#[derive(Debug, Clone, Copy)]
pub struct ProcStat {
    pub pid: u32,
    pub state: char,
    pub ppid: u32,
}

/// The stat of every process; the command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
pub fn all_stats() -> Vec<ProcStat> {
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    dir.filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter_map(|pid| {
            let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
            let mut rest = stat[stat.rfind(')')? + 2..].split(' ');
            let state = rest.next()?.chars().next()?;
            let ppid = rest.next()?.parse().ok()?;
            Some(ProcStat { pid, state, ppid })
        })
        .collect()
}

/// Live (not zombie) processes whose environment holds the session marker
/// `TERMSTREAM_SESSION=<epoch>`.
pub fn marked_processes(epoch: &str) -> Vec<u32> {
    let needle = format!("TERMSTREAM_SESSION={epoch}\0");
    all_stats()
        .into_iter()
        .filter(|s| s.state != 'Z')
        .filter(|s| {
            std::fs::read(format!("/proc/{}/environ", s.pid))
                .is_ok_and(|env| env.windows(needle.len()).any(|w| w == needle.as_bytes()))
        })
        .map(|s| s.pid)
        .collect()
}

/// Kills every process marked with `epoch` (cleanup after a crash test).
pub fn kill_marked(epoch: &str) {
    for pid in marked_processes(epoch) {
        if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
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
