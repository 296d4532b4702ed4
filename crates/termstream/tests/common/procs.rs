//! The processes the tests act on and watch: the server's own (crashed or
//! stopped by a signal; its fds, threads, memory and zombie children, read
//! from `/proc`) and the programs of its sessions, found by the marker
//! `TERMSTREAM_SESSION=<epoch>` in their environment.

use std::time::{Duration, Instant};

use super::{POLL, TestServer};

/// A server stopped by SIGSTOP until this is dropped (SIGCONT), a panic
/// included: a stopped server would otherwise wait for its
/// `TestServer`'s drop to be killed.
pub struct Paused<'a>(&'a TestServer);

impl Drop for Paused<'_> {
    fn drop(&mut self) {
        self.0.signal(rustix::process::Signal::CONT);
    }
}

impl TestServer {
    /// Stops the server (SIGSTOP: its heartbeats and syncs stop, its
    /// sessions run on) until the answer is dropped.
    pub fn pause(&self) -> Paused<'_> {
        self.signal(rustix::process::Signal::STOP);
        Paused(self)
    }

    /// Sends `signal` to the server's process (no panic: used in drops).
    fn signal(&self, signal: rustix::process::Signal) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, signal);
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
        self.sigterm();
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exited) = self.exit_by(deadline) {
                return exited;
            }
            std::thread::sleep(POLL);
        }
    }

    /// Sends SIGTERM and returns at once: the shutdown begins (a second
    /// signal would make the server exit at once).
    pub fn sigterm(&self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
    }

    /// Waits up to `timeout`, without blocking the test's runtime, for the
    /// server to exit; its exit status, or `None` if it did not.
    pub async fn exited(&mut self, timeout: Duration) -> Option<std::process::ExitStatus> {
        let deadline = Instant::now() + timeout;
        loop {
            if let Some(exited) = self.exit_by(deadline) {
                return exited;
            }
            tokio::time::sleep(POLL).await;
        }
    }

    /// One look for the server's exit, for [`TestServer::stop`] and
    /// [`TestServer::exited`]: `Some` of its status once it exited, `Some(None)`
    /// once `deadline` passed, `None` to look again.
    fn exit_by(&mut self, deadline: Instant) -> Option<Option<std::process::ExitStatus>> {
        match self.child.try_wait() {
            Ok(Some(status)) => Some(Some(status)),
            _ if Instant::now() >= deadline => Some(None),
            _ => None,
        }
    }

    /// The server's live (not zombie) child processes: its sessions'
    /// programs, and a program being started.
    pub fn children(&self) -> Vec<u32> {
        let me = self.pid();
        all_stats()
            .into_iter()
            .filter(|s| s.ppid == me && s.state != 'Z')
            .map(|s| s.pid)
            .collect()
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
