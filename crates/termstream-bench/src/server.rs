//! The server under test: launching the release binary, or pointing at one
//! that runs already; the REST calls the scenarios need are in `rest.rs`.
//!
//! A launched server listens on `127.0.0.1:0` with a fresh data dir; its
//! first stdout line (`listening on http://ADDR`) tells the address, and it
//! is measured once it has gone quiet (`crate::settle`). It is
//! stopped with SIGTERM (it then terminates its sessions), and killed if it
//! has not exited after a bounded wait; `kill_on_drop` covers panics.

use std::collections::HashSet;
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::Duration;

use anyhow::{Context, bail};
use tokio::io::{AsyncBufReadExt, BufReader};
use tokio::process::{Child, Command};

use crate::settle::{Settled, settle};

mod rest;

pub(crate) use rest::bench_id;
pub use rest::bench_prefix;

/// How long a launched server may take to print its address.
const START_WAIT: Duration = Duration::from_secs(15);
/// How long a stopping server may take before it is killed.
const STOP_WAIT: Duration = Duration::from_secs(20);

/// How to get a server for a scenario.
#[derive(Debug, Clone)]
pub enum Launcher {
    /// Start this binary, once per scenario, with `env` set on top of
    /// what the bench sets (a test asks for fewer spare directories; the
    /// cluster's nodes of scenario 13 are started without it).
    Binary {
        path: PathBuf,
        work_dir: PathBuf,
        env: Vec<(String, String)>,
    },
    /// Use the running server at this `http://host:port`; its pid, when
    /// given, lets memory be measured.
    Running { url: String, pid: Option<u32> },
}

impl Launcher {
    /// A server ready for requests.
    pub async fn start(&self) -> anyhow::Result<Target> {
        match self {
            Launcher::Running { url, pid } => Ok(Target::new(url.trim_end_matches('/').to_string(), *pid, None)),
            Launcher::Binary { path, work_dir, env } => launch(path, work_dir, env).await,
        }
    }
}

/// A server the bench talks to.
pub struct Target {
    /// `http://127.0.0.1:PORT`.
    pub http: String,
    /// `ws://127.0.0.1:PORT/ws`.
    pub ws: String,
    /// The server's process id, when known (for `/proc`).
    pub pid: Option<u32>,
    /// The launched process; `None` for a server we did not start.
    child: Option<Child>,
    /// What a launched server did from its start until it went quiet
    /// (`crate::settle`).
    pub started: Option<Settled>,
    rest: reqwest::Client,
}

/// CPU time and context switches of a process, summed over its live
/// threads, and each one's own, so that [`CpuUse::since`] can tell what
/// was used between two readings even when threads exit meanwhile. What
/// `since` returns holds only the sums.
#[derive(Debug, Default, Clone)]
pub struct CpuUse {
    pub cpu_ns: u64,
    pub switches: u64,
    /// (thread id, CPU ns, switches), by thread id.
    threads: Vec<(u32, u64, u64)>,
}

impl CpuUse {
    /// What was used between `self` (earlier) and `later`, thread by
    /// thread: a thread in both readings counts its growth, one that
    /// started since counts all it used. A thread that exited since counts
    /// nothing, and its last stretch is lost; the plain difference of the
    /// sums took its whole life's time off the others' (a thread that had
    /// used 40 ms and exited hid 40 ms of the others' work).
    pub fn since(self, later: CpuUse) -> CpuUse {
        let (mut cpu_ns, mut switches) = (0, 0);
        for &(tid, ns, sw) in &later.threads {
            match self.threads.binary_search_by_key(&tid, |t| t.0) {
                Ok(i) => {
                    cpu_ns += ns.saturating_sub(self.threads[i].1);
                    switches += sw.saturating_sub(self.threads[i].2);
                }
                Err(_) => {
                    cpu_ns += ns;
                    switches += sw;
                }
            }
        }
        CpuUse {
            cpu_ns,
            switches,
            threads: Vec::new(),
        }
    }
}

/// Memory and threads of a process, from `/proc/PID/status`.
#[derive(Debug, Clone, Copy)]
pub struct ProcStatus {
    pub rss_kib: u64,
    pub threads: u64,
}

async fn launch(bin: &Path, work_dir: &Path, env: &[(String, String)]) -> anyhow::Result<Target> {
    let data_dir = work_dir.join(format!("data-{}", unique()));
    std::fs::create_dir_all(&data_dir)?;
    let log = std::fs::File::create(data_dir.with_extension("log"))?;
    let mut child = Command::new(bin)
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(&data_dir)
        // The bench opens thousands of sockets from one loopback address:
        // lift the per-IP and total connection caps meant for real clients.
        .env("TERMSTREAM_MAX_CONNECTIONS", "30000")
        .env("TERMSTREAM_MAX_CONNECTIONS_PER_IP", "30000")
        .envs(env.iter().map(|(k, v)| (k, v)))
        .stdin(Stdio::null())
        .stdout(Stdio::piped())
        .stderr(log)
        .kill_on_drop(true)
        .spawn()
        .with_context(|| format!("cannot start {} (build it with `cargo build --release`)", bin.display()))?;
    let stdout = child.stdout.take().context("no stdout")?;
    let mut lines = BufReader::new(stdout).lines();
    let first = tokio::time::timeout(START_WAIT, lines.next_line())
        .await
        .context("the server did not print its address in time")??
        .context("the server exited before printing its address")?;
    let addr = first
        .strip_prefix("listening on http://")
        .with_context(|| format!("unexpected first line {first:?}"))?;
    if !addr.starts_with("127.0.0.1:") {
        bail!("the server listens on {addr}, not on loopback");
    }
    // Keep draining stdout so that a later print never blocks the server.
    tokio::spawn(async move { while let Ok(Some(_)) = lines.next_line().await {} });
    let pid = child.id();
    let mut target = Target::new(format!("http://{addr}"), pid, Some(child));
    target.started = settle(pid).await;
    Ok(target)
}

fn unique() -> String {
    use std::sync::atomic::{AtomicU64, Ordering};
    static N: AtomicU64 = AtomicU64::new(0);
    format!("{}-{}", std::process::id(), N.fetch_add(1, Ordering::Relaxed))
}

impl Target {
    fn new(http: String, pid: Option<u32>, child: Option<Child>) -> Target {
        let ws = format!("{}/ws", http.replacen("http://", "ws://", 1));
        let rest = reqwest::Client::builder()
            .timeout(Duration::from_secs(30))
            .pool_max_idle_per_host(64)
            .build()
            .expect("a reqwest client");
        Target {
            http,
            ws,
            pid,
            child,
            started: None,
            rest,
        }
    }

    /// Whether `/ws` answers a WebSocket handshake; the error when not.
    pub async fn ws_available(&self) -> Result<(), String> {
        match tokio::time::timeout(Duration::from_secs(5), crate::client::Client::connect(&self.ws)).await {
            Ok(Ok(_)) => Ok(()),
            Ok(Err(e)) => Err(format!("no WebSocket gateway at /ws ({})", e.root_cause())),
            Err(_) => Err("no WebSocket gateway at /ws (timed out)".into()),
        }
    }

    /// The server's memory and threads now, when its pid is known.
    pub fn status(&self) -> Option<ProcStatus> {
        let text = std::fs::read_to_string(format!("/proc/{}/status", self.pid?)).ok()?;
        let field = |name: &str| -> Option<u64> {
            let line = text.lines().find(|l| l.starts_with(name))?;
            line[name.len()..].split_whitespace().next()?.parse().ok()
        };
        Some(ProcStatus {
            rss_kib: field("VmRSS:")?,
            threads: field("Threads:")?,
        })
    }

    /// The server's CPU time and context switches so far (see [`cpu_of`]).
    pub fn cpu(&self) -> Option<CpuUse> {
        cpu_of(self.pid?)
    }

    /// Stops a launched server: SIGTERM, then SIGKILL after [`STOP_WAIT`].
    pub async fn stop(mut self) {
        let Some(mut child) = self.child.take() else { return };
        if let Some(pid) = child.id().and_then(|p| rustix::process::Pid::from_raw(p as i32)) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        }
        if tokio::time::timeout(STOP_WAIT, child.wait()).await.is_err() {
            eprintln!("bench: the server did not stop within {STOP_WAIT:?}; killing it");
            let _ = child.kill().await;
        }
    }
}

/// The CPU time and context switches of process `pid` so far, summed over
/// its live threads and kept for each (from `/proc/PID/task/*/schedstat`
/// and `status`).
/// Nanosecond counts: steadier than wall-clock latency on a busy machine.
pub fn cpu_of(pid: u32) -> Option<CpuUse> {
    let mut total = CpuUse::default();
    // A thread that exits meanwhile is skipped, not the whole reading.
    for task in std::fs::read_dir(format!("/proc/{pid}/task")).ok()?.flatten() {
        let Some(tid) = task.file_name().to_str().and_then(|t| t.parse::<u32>().ok()) else {
            continue;
        };
        let dir = task.path();
        let Ok(sched) = std::fs::read_to_string(dir.join("schedstat")) else {
            continue;
        };
        let ns = sched
            .split_whitespace()
            .next()
            .and_then(|v| v.parse::<u64>().ok())
            .unwrap_or(0);
        let status = std::fs::read_to_string(dir.join("status")).unwrap_or_default();
        let mut switches = 0;
        for line in status.lines() {
            if let Some(v) = line
                .strip_prefix("voluntary_ctxt_switches:")
                .or_else(|| line.strip_prefix("nonvoluntary_ctxt_switches:"))
            {
                switches += v.trim().parse::<u64>().unwrap_or(0);
            }
        }
        total.cpu_ns += ns;
        total.switches += switches;
        total.threads.push((tid, ns, switches));
    }
    total.threads.sort_unstable_by_key(|t| t.0);
    Some(total)
}

/// The user and system CPU time process `pid` has used so far, all its
/// threads (those that ended too), in milliseconds: `utime + stime` of
/// `/proc/PID/stat`, in clock ticks of 10 ms (Linux's `USER_HZ` is 100).
pub fn stat_cpu_ms(pid: u32) -> Option<f64> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    // Fields after the command name (which may hold spaces), from field 3.
    let rest = &text[text.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let utime: u64 = fields.get(11)?.parse().ok()?;
    let stime: u64 = fields.get(12)?.parse().ok()?;
    Some((utime + stime) as f64 * 10.0)
}

/// The CPU time every CPU of the machine has spent busy so far, ms: the
/// first line of `/proc/stat`, in clock ticks of 10 ms.
pub fn machine_busy_ms() -> Option<f64> {
    let text = std::fs::read_to_string("/proc/stat").ok()?;
    busy_ticks(text.lines().next()?).map(|t| t as f64 * 10.0)
}

/// The busy ticks of a `/proc/stat` `cpu` line: user, nice, system, irq
/// and softirq. Not idle, not waiting for I/O, not steal (time the
/// hypervisor gave to other machines); guest time is counted in user
/// already.
fn busy_ticks(line: &str) -> Option<u64> {
    let f: Vec<u64> = line
        .strip_prefix("cpu ")?
        .split_whitespace()
        .map(|v| v.parse().ok())
        .collect::<Option<_>>()?;
    let at = |i: usize| f.get(i).copied().unwrap_or(0);
    Some(at(0) + at(1) + at(2) + at(5) + at(6))
}

/// The child processes of process `pid` (of all its threads: the kernel
/// files a child under the thread that started it). A thread that exits
/// during the scan hands its children to one already read, which may then
/// be missed: a wait on this only ends a little early.
pub fn children(pid: u32) -> HashSet<u32> {
    let Ok(tasks) = std::fs::read_dir(format!("/proc/{pid}/task")) else {
        return HashSet::new();
    };
    let lists = tasks
        .flatten()
        .filter_map(|t| std::fs::read_to_string(t.path().join("children")).ok());
    lists
        .flat_map(|l| {
            l.split_whitespace()
                .filter_map(|c| c.parse().ok())
                .collect::<Vec<u32>>()
        })
        .collect()
}

/// CPU milliseconds per MB (10^6 bytes) between two readings of
/// [`stat_cpu_ms`]; `None` when either is missing or nothing was moved.
pub fn ms_per_mb(before: Option<f64>, after: Option<f64>, bytes: u64) -> Option<f64> {
    (bytes > 0).then_some(())?;
    Some((after? - before?) / (bytes as f64 / 1e6))
}

/// Raises this process's open-file limit to its hard limit (children, such
/// as a launched server, inherit it); returns the new soft limit.
pub fn raise_nofile() -> u64 {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let lim = getrlimit(Resource::Nofile);
    let want = Rlimit {
        current: lim.maximum,
        maximum: lim.maximum,
    };
    match setrlimit(Resource::Nofile, want) {
        Ok(()) => lim.maximum.unwrap_or(u64::MAX),
        Err(_) => lim.current.unwrap_or(u64::MAX),
    }
}

/// For tests: the server binary cargo built beside the test (which runs as
/// `target/debug/deps/termstream_bench-HASH`), or `TERMSTREAM_BIN`,
/// launched in `work_dir` with 4 spare session directories, not 256 (a
/// few seconds of work before the server is quiet, see `settle`).
#[cfg(test)]
pub fn test_server(work_dir: &Path) -> Launcher {
    let path = std::env::var_os("TERMSTREAM_BIN").map_or_else(
        || {
            let exe = std::env::current_exe().expect("this test's path");
            exe.parent()
                .and_then(|d| d.parent())
                .expect("target/debug")
                .join("termstream")
        },
        Into::into,
    );
    assert!(
        path.exists(),
        "no server at {} (build it: `cargo build -p termstream`, or set TERMSTREAM_BIN)",
        path.display()
    );
    Launcher::Binary {
        path,
        work_dir: work_dir.to_owned(),
        env: vec![("TERMSTREAM_SPARE_SESSIONS".into(), "4".into())],
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Spins until this thread has used `ms` more of CPU.
    fn burn(ms: u64) {
        let own = || -> u64 {
            let s = std::fs::read_to_string("/proc/thread-self/schedstat").unwrap();
            s.split_whitespace().next().unwrap().parse().unwrap()
        };
        let end = own() + ms * 1_000_000;
        let give_up = std::time::Instant::now() + Duration::from_secs(30);
        while own() < end {
            assert!(
                std::time::Instant::now() < give_up,
                "this thread's schedstat does not grow"
            );
        }
    }

    #[test]
    fn a_thread_that_exits_hides_none_of_the_others_use() {
        let pid = std::process::id();
        let (burnt_tx, burnt) = std::sync::mpsc::channel();
        let (go_tx, go) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            burn(40);
            burnt_tx.send(()).unwrap();
            let _ = go.recv();
        });
        burnt.recv().unwrap();
        let before = cpu_of(pid).unwrap();
        go_tx.send(()).unwrap();
        thread.join().unwrap();
        burn(10);
        let used = before.since(cpu_of(pid).unwrap());
        // The plain difference of the sums read 10 - 40 ms here: nothing.
        assert!(used.cpu_ns >= 10_000_000, "counted {} ns", used.cpu_ns);
    }

    #[test]
    fn busy_ticks_leave_out_idle_io_wait_and_steal() {
        // user nice system idle iowait irq softirq steal guest guest_nice
        assert_eq!(busy_ticks("cpu  10 1 5 1000 50 2 3 4 7 0"), Some(21));
        assert_eq!(busy_ticks("cpu0 10 1 5 1000 50 2 3 4 7 0"), None);
        assert_eq!(busy_ticks("cpu  10 x"), None);
    }

    /// A program in a process group of its own, the group killed (and the
    /// program reaped) when dropped: a shell's `sleep` goes with it.
    struct Grouped(std::process::Child);

    impl Grouped {
        fn start(program: &str, args: &[&str]) -> Grouped {
            use std::os::unix::process::CommandExt;
            let child = std::process::Command::new(program).args(args).process_group(0).spawn();
            Grouped(child.expect("spawn"))
        }
    }

    impl Drop for Grouped {
        fn drop(&mut self) {
            let group = rustix::process::Pid::from_raw(self.0.id() as i32).expect("pid");
            let _ = rustix::process::kill_process_group(group, rustix::process::Signal::KILL);
            let _ = self.0.wait();
        }
    }

    fn wait_for(mut ready: impl FnMut() -> bool) -> bool {
        let deadline = std::time::Instant::now() + Duration::from_secs(10);
        while !ready() {
            if std::time::Instant::now() > deadline {
                return false;
            }
            std::thread::sleep(Duration::from_millis(5));
        }
        true
    }

    #[test]
    fn a_shell_waiting_for_a_command_has_it_as_its_child_and_the_command_none() {
        let lone = Grouped::start("sleep", &["60"]);
        // `; :` keeps sh from exec'ing sleep in its place.
        let shell = Grouped::start("sh", &["-c", "sleep 60; :"]);
        assert!(wait_for(|| children(shell.0.id()).len() == 1));
        assert!(children(lone.0.id()).is_empty());
    }

    #[test]
    fn a_child_started_by_another_thread_is_found() {
        let (started, take) = std::sync::mpsc::channel();
        let (done, hold) = std::sync::mpsc::channel::<()>();
        let thread = std::thread::spawn(move || {
            let s = Grouped::start("sleep", &["60"]);
            started.send(s.0.id()).expect("send");
            // The thread stays alive, holding its child, until told.
            let _ = hold.recv();
        });
        let child = take.recv().expect("started");
        assert!(children(std::process::id()).contains(&child));
        done.send(()).expect("send");
        thread.join().expect("join");
    }
}
