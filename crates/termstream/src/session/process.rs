//! Starting a session's program, and ending every process it left behind.
//!
//! Every session's program is a session leader (`setsid`): a pty session's
//! on its PTY (which becomes its controlling terminal), a command session's
//! with pipes. Its environment is built from an allowlist, never the server's
//! own, plus a marker `TERMSTREAM_SESSION=<epoch>` that its descendants
//! inherit. Where cgroups are in force ([`super::cgroup`]) the child starts in
//! its session's cgroup, and the session ends by `cgroup.kill`.
//! Otherwise (the fallback) we signal the leader's process group, then kill
//! every process whose session id is the leader's or whose environment holds
//! the marker, so jobs that moved to their own process group or called
//! `setsid` themselves go too (a job that also dropped the marker, as
//! `setsid env -i ...` does, escapes this scan). A process found by a scan
//! of `/proc` is signalled through a pidfd opened and checked against the
//! scan (same start time), so a pid reused since is never signalled.
//!
//! The child gets only fds 0–2: the server's own fds are close-on-exec
//! (Rust's default, and the PTY master's flag), and the child marks every
//! other fd so before exec, also any the server inherited open. How the
//! child is started without copying the server's page tables is in
//! [`child`].

use std::collections::{BTreeMap, BTreeSet};
use std::ffi::CString;
use std::io;
use std::os::fd::{AsFd, OwnedFd};
use std::os::unix::ffi::OsStringExt;
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use crate::confine::Confinement;
use rustix::process::{Pid, Signal};
use termstream_proto::SessionKind;
use tokio::process::{ChildStderr, ChildStdin, ChildStdout};

pub use self::child::ChildProcess;
pub use self::pty::{PtyReader, PtyWriter};

mod child;
mod clone3;
mod pty;

/// The environment variable that marks a session's processes.
pub const MARKER_VAR: &str = "TERMSTREAM_SESSION";

/// What to start.
#[derive(Debug, Clone)]
pub struct SpawnSpec {
    pub kind: SessionKind,
    pub argv: Vec<String>,
    pub cwd: PathBuf,
    /// The complete environment of the program.
    pub env: BTreeMap<String, String>,
    pub cols: u16,
    pub rows: u16,
    /// The user and limits to run the program with.
    pub confine: Option<Arc<Confinement>>,
    /// The directory of the session's cgroup, which the program starts in
    /// ([`super::cgroup`]).
    pub cgroup: Option<Arc<OwnedFd>>,
}

/// Why a program could not be started.
#[derive(Debug, thiserror::Error)]
pub enum SpawnError {
    #[error("argv is empty: name a program to run")]
    EmptyArgv,
    #[error("program not found: {program:?} is not an executable file nor on PATH")]
    NotFound { program: String },
    #[error("cwd {cwd:?} {reason}")]
    BadCwd { cwd: String, reason: &'static str },
    #[error("cannot start {program:?}: {source}")]
    Io { program: String, source: io::Error },
}

impl SpawnError {
    /// Whether the server, not the request, ran out of something (open
    /// files, PTYs, processes): worth retrying later.
    pub fn is_exhaustion(&self) -> bool {
        match self {
            SpawnError::Io { source, .. } => is_exhaustion(source),
            _ => false,
        }
    }
}

/// Whether `e` says the system or process ran out of descriptors, PTYs or
/// processes: a plain one (the spawn's, from rustix and std), or the
/// innermost of a wrapped one (as pty-process, which tests use, wraps an
/// `io::Error` or a rustix `Errno`).
pub fn is_exhaustion(e: &io::Error) -> bool {
    let inner = e.get_ref().and_then(|i| i.source());
    let inner_errno = inner.and_then(|s| {
        s.downcast_ref::<io::Error>()
            .and_then(io::Error::raw_os_error)
            .or_else(|| s.downcast_ref::<rustix::io::Errno>().map(|e| e.raw_os_error()))
    });
    let errno = e.raw_os_error().or(inner_errno);
    [
        rustix::io::Errno::MFILE,
        rustix::io::Errno::NFILE,
        rustix::io::Errno::AGAIN,
        rustix::io::Errno::NOSPC,
    ]
    .iter()
    .any(|x| Some(x.raw_os_error()) == errno)
}

/// The program's side of the session: a PTY, or three pipes.
pub enum SessionIo {
    Pty {
        reader: PtyReader,
        writer: PtyWriter,
    },
    Pipes {
        stdin: ChildStdin,
        stdout: ChildStdout,
        stderr: ChildStderr,
    },
}

/// A started program.
pub struct Spawned {
    pub child: ChildProcess,
    pub pid: u32,
    /// The program's input (the PTY master, or the stdin pipe), nonblocking;
    /// owned by `io`.
    pub input_fd: std::os::fd::RawFd,
    pub io: SessionIo,
}

/// Builds a program's environment: the allowlisted variables of the server's
/// environment, then `extra` (the request's), then the session marker.
pub fn build_env(
    allowlist: &[String],
    extra: &BTreeMap<String, String>,
    marker: &str,
    kind: SessionKind,
) -> BTreeMap<String, String> {
    let mut env: BTreeMap<String, String> = allowlist
        .iter()
        .filter_map(|k| std::env::var(k).ok().map(|v| (k.clone(), v)))
        .collect();
    env.entry("PATH".into())
        .or_insert_with(|| "/usr/local/bin:/usr/bin:/bin".into());
    if kind == SessionKind::Pty {
        env.insert("TERM".into(), "xterm-256color".into());
        env.insert("COLORTERM".into(), "truecolor".into());
    }
    env.extend(extra.iter().map(|(k, v)| (k.clone(), v.clone())));
    env.insert(MARKER_VAR.into(), marker.into());
    env
}

fn check_cwd(cwd: &Path) -> Result<(), SpawnError> {
    let bad = |reason| SpawnError::BadCwd {
        cwd: cwd.display().to_string(),
        reason,
    };
    match std::fs::metadata(cwd) {
        Ok(m) if m.is_dir() => Ok(()),
        Ok(_) => Err(bad("is not a directory")),
        Err(e) if e.kind() == io::ErrorKind::NotFound => Err(bad("does not exist")),
        Err(_) => Err(bad("cannot be read")),
    }
}

/// The path to execute for `program`: as given when it holds a `/`
/// (relative to `cwd`), else the first executable file of that name in a
/// directory of `path` (a relative directory counts from `cwd`, as it would
/// for `execvp` in the child). `None` when there is none.
fn resolve_program(program: &str, path: &str, cwd: &Path) -> Option<PathBuf> {
    let executable =
        |p: &Path| std::fs::metadata(cwd.join(p)).is_ok_and(|m| m.is_file() && m.permissions().mode() & 0o111 != 0);
    if program.contains('/') {
        return executable(Path::new(program)).then(|| PathBuf::from(program));
    }
    path.split(':')
        .filter(|d| !d.is_empty())
        .map(|d| Path::new(d).join(program))
        .find(|p| executable(p))
}

/// Starts the program (see [`child`] for how). Nothing is left behind on
/// failure.
pub fn spawn(spec: &SpawnSpec) -> Result<Spawned, SpawnError> {
    let program = spec.argv.first().ok_or(SpawnError::EmptyArgv)?.clone();
    check_cwd(&spec.cwd)?;
    let path = spec.env.get("PATH").map_or("", String::as_str);
    let Some(resolved) = resolve_program(&program, path, &spec.cwd) else {
        return Err(SpawnError::NotFound { program });
    };
    let io_err = |source| SpawnError::Io {
        program: program.clone(),
        source,
    };
    let cstring = |s: Vec<u8>| CString::new(s).map_err(|e| io_err(io::Error::new(io::ErrorKind::InvalidInput, e)));
    let argv = spec
        .argv
        .iter()
        .map(|a| cstring(a.clone().into_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let envp = spec
        .env
        .iter()
        .map(|(k, v)| cstring(format!("{k}={v}").into_bytes()))
        .collect::<Result<Vec<_>, _>>()?;
    let program_c = cstring(resolved.into_os_string().into_vec())?;
    let cwd = cstring(spec.cwd.clone().into_os_string().into_vec())?;
    let plan = move |stdio| child::Plan {
        program: program_c,
        argv,
        envp,
        cwd,
        stdio,
        cgroup: spec.cgroup.as_deref(),
        confine: spec.confine.as_deref(),
    };
    match spec.kind {
        SessionKind::Pty => {
            // Only the child opens the slave (see `pty::open_master`).
            let (master, pts_path) = pty::open_master(spec.cols, spec.rows).map_err(io_err)?;
            // Registered before the child: nothing may fail after it.
            let (reader, writer) = pty::split(master).map_err(io_err)?;
            let child = child::start(&plan(child::Stdio::Tty(&pts_path))).map_err(io_err)?;
            let pid = child.id();
            let input_fd = writer.raw_fd();
            Ok(Spawned {
                child,
                pid,
                input_fd,
                io: SessionIo::Pty { reader, writer },
            })
        }
        SessionKind::Command => {
            let pipe = || rustix::pipe::pipe_with(rustix::pipe::PipeFlags::CLOEXEC).map_err(|e| io_err(e.into()));
            let (stdin_r, stdin_w) = pipe()?;
            let (stdout_r, stdout_w) = pipe()?;
            let (stderr_r, stderr_w) = pipe()?;
            let child = child::start(&plan(child::Stdio::Fds([
                stdin_r.as_fd(),
                stdout_w.as_fd(),
                stderr_w.as_fd(),
            ])))
            .map_err(io_err)?;
            drop((stdin_r, stdout_w, stderr_w));
            let pid = child.id();
            let pipes = (|| -> io::Result<SessionIo> {
                Ok(SessionIo::Pipes {
                    stdin: ChildStdin::from_std(std::process::ChildStdin::from(stdin_w))?,
                    stdout: ChildStdout::from_std(std::process::ChildStdout::from(stdout_r))?,
                    stderr: ChildStderr::from_std(std::process::ChildStderr::from(stderr_r))?,
                })
            })();
            // On failure the child is dropped (reaped once it exits: its
            // pipes are gone, so it sees EOF or EPIPE).
            let io = pipes.map_err(io_err)?;
            let SessionIo::Pipes { stdin, .. } = &io else {
                unreachable!("pipes were just made")
            };
            Ok(Spawned {
                child,
                pid,
                input_fd: std::os::fd::AsRawFd::as_raw_fd(stdin),
                io,
            })
        }
    }
}

/// Sends `signal` to the process group `pgid`; a group that is gone is fine.
pub fn signal_group(pgid: u32, signal: Signal) {
    if let Some(pid) = Pid::from_raw(pgid as i32) {
        let _ = rustix::process::kill_process_group(pid, signal);
    }
}

/// A process found by a scan of `/proc`: its pid and start time (in clock
/// ticks since boot), which tell it from a later process given the same pid.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Found {
    pub pid: u32,
    pub start: u64,
}

/// A pidfd of `pid`; `None` when it is gone.
pub fn pidfd(pid: u32) -> Option<OwnedFd> {
    let pid = Pid::from_raw(pid as i32)?;
    rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::empty()).ok()
}

/// Sends `signal` to each process found, through a pidfd opened and then
/// checked against the scan (the same start time): a process that exited
/// since, and any other that took its pid, is left alone. Blocking (reads
/// `/proc`).
pub fn signal_found(found: &[Found], signal: Signal) {
    for f in found {
        let Some(fd) = pidfd(f.pid) else { continue };
        let same = read_stat(f.pid).is_some_and(|s| s.start == f.start);
        if same {
            let _ = rustix::process::pidfd_send_signal(&fd, signal);
        }
    }
}

fn read_stat(pid: u32) -> Option<Stat> {
    parse_stat(&std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?)
}

/// The process ids of this server's live session leaders. A process whose
/// session id is one of them belongs to that session, so the marker scan of
/// [`session_processes`] can skip it.
static LEADERS: std::sync::Mutex<BTreeSet<u32>> = std::sync::Mutex::new(BTreeSet::new());

fn leaders() -> std::sync::MutexGuard<'static, BTreeSet<u32>> {
    LEADERS.lock().unwrap_or_else(|p| p.into_inner())
}

/// Records a live session leader (at spawn).
pub fn register_leader(pid: u32) {
    leaders().insert(pid);
}

/// Forgets a session leader (once its session has ended).
pub fn unregister_leader(pid: u32) {
    leaders().remove(&pid);
}

/// Every live process that belongs to the session led by `leader`: its
/// session id is `leader`, or it descends from such a process, or its
/// environment holds `MARKER_VAR=marker` (a job that called `setsid` and lost
/// its parent). Environments are read only of processes in no other live
/// session of this server, so ending one of many sessions stays cheap.
/// Blocking (reads `/proc`); call it under `spawn_blocking`.
pub fn session_processes(leader: u32, marker: &str) -> Vec<Found> {
    let others: BTreeSet<u32> = leaders().iter().copied().filter(|&p| p != leader).collect();
    scan(|pid, s| s.sid == leader || (!others.contains(&s.sid) && has_marker(pid, |m| m == marker)))
}

/// Every live process whose environment holds the marker of one of
/// `markers`, and their descendants: what is left of sessions whose server
/// died (their leaders' pids may belong to anyone by now, so only markers
/// count). Blocking (reads `/proc`).
pub fn marked_processes(markers: &BTreeSet<String>) -> Vec<Found> {
    if markers.is_empty() {
        return Vec::new();
    }
    scan(|pid, _| has_marker(pid, |m| markers.contains(m)))
}

/// Every live process (but this one) that `is_member` takes, plus their
/// descendants.
fn scan(is_member: impl Fn(u32, &Stat) -> bool) -> Vec<Found> {
    let me = std::process::id();
    let Ok(dir) = std::fs::read_dir("/proc") else {
        return Vec::new();
    };
    let procs: Vec<(u32, Stat)> = dir
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != me)
        .filter_map(|pid| Some((pid, read_stat(pid)?)))
        .filter(|(_, s)| s.state != 'Z')
        .collect();
    let mut members: BTreeSet<u32> = procs
        .iter()
        .filter(|(pid, s)| is_member(*pid, s))
        .map(|(pid, _)| *pid)
        .collect();
    // Descendants of members belong too (until nothing changes).
    loop {
        let before = members.len();
        for (pid, s) in &procs {
            if members.contains(&s.ppid) {
                members.insert(*pid);
            }
        }
        if members.len() == before {
            break;
        }
    }
    procs
        .iter()
        .filter(|(pid, _)| members.contains(pid))
        .map(|(pid, s)| Found {
            pid: *pid,
            start: s.start,
        })
        .collect()
}

/// Whether the environment of `pid` holds `MARKER_VAR` with a value that
/// `wanted` takes.
fn has_marker(pid: u32, wanted: impl Fn(&str) -> bool) -> bool {
    let Ok(env) = std::fs::read(format!("/proc/{pid}/environ")) else {
        return false;
    };
    env.split(|&b| b == 0)
        .filter_map(|var| var.strip_prefix(MARKER_VAR.as_bytes())?.strip_prefix(b"="))
        .any(|value| std::str::from_utf8(value).is_ok_and(&wanted))
}

/// The fields of `/proc/PID/stat` we need.
#[derive(Debug, PartialEq, Eq)]
struct Stat {
    state: char,
    ppid: u32,
    sid: u32,
    /// Start time in clock ticks after boot.
    start: u64,
}

/// Parses `/proc/PID/stat`. The command name may hold spaces and
/// parentheses, so fields are counted from the last `)`.
fn parse_stat(stat: &str) -> Option<Stat> {
    let rest = &stat[stat.rfind(')')? + 2..];
    let mut fields = rest.split(' ');
    let state = fields.next()?.chars().next()?;
    let ppid = fields.next()?.parse().ok()?;
    let _pgrp = fields.next()?;
    let sid = fields.next()?.parse().ok()?;
    // tty_nr tpgid flags minflt cminflt majflt cmajflt utime stime cutime
    // cstime priority nice num_threads itrealvalue, then starttime.
    let start = fields.nth(15)?.parse().ok()?;
    Some(Stat {
        state,
        ppid,
        sid,
        start,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// Out of descriptors is exhaustion whether it comes plain (as the
    /// spawn's errors do) or wrapped (as pty-process wraps an `io::Error`
    /// or a rustix `Errno`); a missing file is not.
    #[test]
    fn exhaustion_is_found_in_plain_and_wrapped_errors() {
        let wrapped = |e: pty_process::Error| io::Error::other(e);
        let emfile = rustix::io::Errno::MFILE;
        assert!(is_exhaustion(&wrapped(pty_process::Error::Rustix(emfile))));
        assert!(is_exhaustion(&wrapped(pty_process::Error::Io(emfile.into()))));
        assert!(is_exhaustion(&io::Error::from(emfile)));
        let missing = rustix::io::Errno::NOENT;
        assert!(!is_exhaustion(&wrapped(pty_process::Error::Rustix(missing))));
    }

    #[test]
    fn parses_stat_with_odd_command_names() {
        let line = "1234 (we ird) (name)) S 1 1234 5678 0 -1 4194560 9 0 0 0 1 2 0 0 20 0 1 0 424242 100 200";
        assert_eq!(
            parse_stat(line),
            Some(Stat {
                state: 'S',
                ppid: 1,
                sid: 5678,
                start: 424242,
            })
        );
    }

    #[test]
    fn a_found_process_is_signalled_only_if_its_start_time_matches() {
        let mut child = std::process::Command::new("sleep").arg("1000").spawn().unwrap();
        let pid = child.id();
        let start = read_stat(pid).unwrap().start;
        // Another process that had the pid before (an earlier start time).
        signal_found(&[Found { pid, start: start - 1 }], Signal::KILL);
        assert!(
            child.try_wait().unwrap().is_none(),
            "a pid with another start time was signalled"
        );
        signal_found(&[Found { pid, start }], Signal::KILL);
        let status = child.wait().unwrap();
        assert_eq!(std::os::unix::process::ExitStatusExt::signal(&status), Some(9));
    }

    #[test]
    fn env_is_built_from_the_allowlist_only() {
        // SAFETY: tests in this module do not read this variable concurrently.
        unsafe { std::env::set_var("TERMSTREAM_TEST_SECRET", "hunter2") };
        let extra = BTreeMap::from([("FOO".to_string(), "bar".to_string())]);
        let env = build_env(&["PATH".into(), "HOME".into()], &extra, "abc", SessionKind::Pty);
        assert!(!env.contains_key("TERMSTREAM_TEST_SECRET"));
        assert_eq!(env["FOO"], "bar");
        assert_eq!(env["TERM"], "xterm-256color");
        assert_eq!(env[MARKER_VAR], "abc");
    }
}
