//! `strace` attached to a test server: the one way the tests trace a
//! sibling process (`tests/meta_durability.rs` records the server's system
//! calls; [`SlowExec`], for `tests/shutdown.rs` and `tests/slow_start.rs`,
//! delays its children's `execve`).
//!
//! Attaching to a process that is not one's child needs
//! `/proc/sys/kernel/yama/ptrace_scope` 0 (or no Yama) or `CAP_SYS_PTRACE`;
//! [`Strace::attach`] waits for strace to say it is attached, for at most
//! [`ATTACH_TIMEOUT`], and otherwise panics with what strace said and that
//! precondition. A thread reads strace's stderr to its end, so that strace
//! never blocks on a full pipe nor ends on a closed one.

use std::ffi::OsStr;
use std::io::{BufRead, BufReader};
use std::path::PathBuf;
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use super::TestServer;

/// How long strace may take to attach to every thread of the server.
pub const ATTACH_TIMEOUT: Duration = Duration::from_secs(10);

/// A running `strace -p`; killed when dropped.
pub struct Strace {
    child: Child,
    /// Every line strace wrote to its stderr so far, read by a thread of
    /// its own until strace ends.
    stderr: Arc<Mutex<Vec<String>>>,
}

impl Strace {
    /// Runs `strace ARGS -p PID` and returns once strace says it is attached
    /// (with `-f`, to every thread); panics after [`ATTACH_TIMEOUT`] or if
    /// strace ends first, with strace's stderr and the ptrace precondition.
    pub fn attach<S: AsRef<OsStr>>(pid: u32, args: &[S]) -> Strace {
        let mut child = Command::new("strace")
            .args(args)
            .args(["-p", &pid.to_string()])
            .stdin(Stdio::null())
            .stderr(Stdio::piped())
            .spawn()
            .expect("strace runs (CI installs it: .ci/run)");
        let stderr = Arc::new(Mutex::new(Vec::new()));
        let (attached, wait) = mpsc::channel();
        let reader = BufReader::new(child.stderr.take().expect("stderr is piped"));
        std::thread::spawn({
            let stderr = stderr.clone();
            move || {
                for line in reader.lines().map_while(Result::ok) {
                    if line.contains("attached") {
                        let _ = attached.send(());
                    }
                    stderr.lock().unwrap_or_else(|p| p.into_inner()).push(line);
                }
                // Dropping `attached` tells a waiter that strace ended.
            }
        });
        let mut strace = Strace { child, stderr };
        let start = Instant::now();
        match wait.recv_timeout(ATTACH_TIMEOUT) {
            Ok(()) => strace,
            Err(e) => {
                let why = match e {
                    mpsc::RecvTimeoutError::Timeout => format!("did not attach within {ATTACH_TIMEOUT:?}"),
                    mpsc::RecvTimeoutError::Disconnected => {
                        format!("ended without attaching after {:?}", start.elapsed())
                    }
                };
                let _ = strace.child.kill();
                let _ = strace.child.wait();
                panic!(
                    "strace {why} to pid {pid}; it said:\n{}\n\
                     Tracing a process that is not one's child needs /proc/sys/kernel/yama/ptrace_scope 0 or \
                     CAP_SYS_PTRACE; ptrace_scope is {}",
                    strace.stderr().join("\n"),
                    ptrace_scope()
                );
            }
        }
    }

    /// The lines strace wrote to its stderr so far.
    pub fn stderr(&self) -> Vec<String> {
        self.stderr.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Detaches strace (SIGINT) and waits for it to end, so that what it
    /// writes to its output file is complete.
    pub fn stop(mut self) {
        let _ = rustix::process::kill_process(
            rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid"),
            rustix::process::Signal::INT,
        );
        self.child.wait().expect("strace ends");
    }
}

impl Drop for Strace {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            let _ = self.child.kill();
            let _ = self.child.wait();
        }
    }
}

/// `strace` attached to a server, delaying each `execve` of `program`;
/// detached when dropped.
pub struct SlowExec {
    _strace: Strace,
    /// Holds `program`.
    _dir: tempfile::TempDir,
    pub program: PathBuf,
}

impl SlowExec {
    /// Copies `sleep` to a folder of its own and attaches `strace` to
    /// every thread of `server`, so that each `execve` of that copy waits
    /// `delay` first; returns once strace is attached. The copy keeps the
    /// name `sleep` (a multi-call binary, busybox or uutils, picks its
    /// command by it) and lives under Cargo's target dir, not in a `/tmp`
    /// that may be mounted `noexec`.
    pub fn attach(server: &TestServer, delay: Duration) -> SlowExec {
        let sleep = std::env::split_paths(&std::env::var_os("PATH").unwrap_or_default())
            .map(|d| d.join("sleep"))
            .find(|p| p.is_file())
            .expect("sleep on PATH");
        let dir = tempfile::Builder::new()
            .prefix("slow-exec-")
            .tempdir_in(env!("CARGO_TARGET_TMPDIR"))
            .expect("tempdir");
        let program = dir.path().join("sleep");
        std::fs::copy(&sleep, &program).expect("copy sleep");
        let inject = format!("inject=execve:delay_enter={}", delay.as_micros());
        let args: [&OsStr; 9] = [
            "-f".as_ref(),
            "-o".as_ref(),
            "/dev/null".as_ref(),
            "-e".as_ref(),
            "trace=execve".as_ref(),
            "-e".as_ref(),
            inject.as_ref(),
            "-P".as_ref(),
            program.as_ref(),
        ];
        SlowExec {
            _strace: Strace::attach(server.pid(), &args),
            _dir: dir,
            program,
        }
    }
}

/// What `/proc/sys/kernel/yama/ptrace_scope` holds, or why it says nothing.
fn ptrace_scope() -> String {
    match std::fs::read_to_string("/proc/sys/kernel/yama/ptrace_scope") {
        Ok(s) => s.trim().to_owned(),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => "absent (no Yama)".to_owned(),
        Err(e) => format!("unreadable ({e})"),
    }
}
