//! Starting a program without copying the server's page tables, and
//! awaiting its exit through a pidfd.
//!
//! `fork()` copies the whole server's page tables into the child only for
//! the child to throw them away at `execve`; with thousands of sessions
//! (each with its buffers and tasks) that copy was about half of the CPU an
//! open costs. The child is made instead with `CLONE_VM | CLONE_VFORK`,
//! which is how glibc's `posix_spawn` works inside: the child runs on a
//! small stack of its own inside the server's memory, and the calling
//! thread sleeps until the child has called `execve` (or exited), so
//! nothing is copied. A session with a cgroup has its child made in it by
//! `clone3` ([`super::clone3`]); elsewhere, or where `clone3` is refused,
//! nix's [`nix::sched::clone`] makes it, and it joins its cgroup itself.
//! glibc's `posix_spawn` is not used because it cannot do what our child
//! does besides: give back the original open-files limit, set resource
//! limits and switch users (and glibc 2.36 cannot start it in a cgroup).
//!
//! A PTY session's child shares the server's fd table too (`CLONE_FILES`)
//! until it is in its cgroup (a child that joins it writes through an fd of
//! that table), then unshares it keeping only fds 0-2 (see
//! [`Stdio::Tty`]), so the cost of a spawn does not grow with the number of
//! fds the server holds (several per session and viewer).
//!
//! Rules for the child, which shares the server's memory while the other
//! server threads run on: it makes only raw system calls (rustix, or the
//! thin libc wrappers of `sigaction`, `sigprocmask` and `execve`) on data
//! prepared before the clone; it allocates nothing, takes no lock and never
//! unwinds; and every signal the server catches is set back to the default
//! before the signal mask (all blocked across the clone) is cleared, so no
//! handler of the server can run in the child. A failing step stores its
//! errno where the parent reads it once the clone returns.
//!
//! The child's stack is a mapping of its own ([`stack::ChildStack`]) with
//! an inaccessible guard page below it: a child that overflowed it dies of
//! SIGSEGV (the session then ends with signal 11, as a program that
//! crashes at once does) instead of writing over the server's heap. Stacks
//! are kept for later spawns once their clone returned ([`stack`]).

use std::convert::Infallible;
use std::ffi::{CStr, CString, c_char};
use std::io;
use std::os::fd::{AsFd, AsRawFd, BorrowedFd, IntoRawFd, OwnedFd, RawFd};
use std::os::unix::process::ExitStatusExt;
use std::process::ExitStatus;
use std::sync::atomic::{AtomicI32, Ordering};

use nix::sched::CloneFlags;
use rustix::process::{Pid, WaitOptions};
use tokio::io::unix::AsyncFd;

use self::stack::POOL;
use super::clone3;
use crate::confine::Confinement;

mod stack;

/// Everything the child needs, prepared (and allocated) before the clone.
pub struct Plan<'a> {
    /// The program's path: a name found on `PATH`, or as given when it holds
    /// a `/` (then relative to `cwd`).
    pub program: CString,
    pub argv: Vec<CString>,
    /// `NAME=value` strings: the program's complete environment.
    pub envp: Vec<CString>,
    pub cwd: CString,
    /// What becomes the child's fds 0, 1 and 2.
    pub stdio: Stdio<'a>,
    /// The directory of the session's cgroup, which the child starts in
    /// (or joins before `execve`, where `clone3` is refused).
    pub cgroup: Option<&'a OwnedFd>,
    /// The user and limits.
    pub confine: Option<&'a Confinement>,
}

/// The child's fds 0, 1 and 2.
pub enum Stdio<'a> {
    /// These fds of the server (pipes).
    Fds([BorrowedFd<'a>; 3]),
    /// The PTY whose slave has this path, opened by the child, which makes
    /// it its controlling terminal. The child then shares the server's fd
    /// table until, once in its cgroup, `close_range(3, ~0,
    /// CLOSE_RANGE_UNSHARE)` gives it a table of its own holding
    /// only fds 0-2: the server's thousands of fds are neither copied into
    /// the child nor closed again at `execve`.
    Tty(&'a CStr),
}

/// A started program: awaited through its pidfd, reaped once.
pub struct ChildProcess {
    pid: Pid,
    /// Readable once the program has exited; `None` once reaped.
    pidfd: Option<AsyncFd<OwnedFd>>,
}

impl ChildProcess {
    pub fn id(&self) -> u32 {
        self.pid.as_raw_pid() as u32
    }

    /// Waits (without blocking a thread) until the program exits, and reaps
    /// it. Cancel-safe; after it returned, it is not called again.
    pub async fn wait(&mut self) -> io::Result<ExitStatus> {
        std::future::poll_fn(|cx| self.poll_wait(cx)).await
    }

    /// [`ChildProcess::wait`] as a poll: a caller that waits on it through
    /// `poll_fn` keeps no future of its own (an idle session's actor waits
    /// on it for the session's whole life).
    pub fn poll_wait(&mut self, cx: &mut std::task::Context<'_>) -> std::task::Poll<io::Result<ExitStatus>> {
        use std::task::Poll;
        loop {
            let Some(pidfd) = &self.pidfd else {
                return Poll::Ready(Err(io::Error::other("the program was already reaped")));
            };
            let mut ready = match pidfd.poll_read_ready(cx) {
                Poll::Ready(Ok(ready)) => ready,
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => return Poll::Pending,
            };
            match rustix::process::waitpid(Some(self.pid), WaitOptions::NOHANG) {
                Ok(Some((_, status))) => {
                    self.pidfd = None;
                    return Poll::Ready(Ok(ExitStatus::from_raw(status.as_raw())));
                }
                Ok(None) => ready.clear_ready(),
                Err(e) => return Poll::Ready(Err(e.into())),
            }
        }
    }
}

impl Drop for ChildProcess {
    /// A program not yet reaped is reaped once it exits (by a task), so it
    /// does not stay a zombie.
    fn drop(&mut self) {
        let Some(pidfd) = self.pidfd.take() else { return };
        let pid = self.pid;
        if let Ok(Some(_)) = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG) {
            return;
        }
        if let Ok(handle) = tokio::runtime::Handle::try_current() {
            handle.spawn(async move {
                let _ = pidfd.readable().await;
                let _ = rustix::process::waitpid(Some(pid), WaitOptions::NOHANG);
            });
        }
    }
}

/// The data the child reads, with the pointer arrays `execve` takes.
struct Prepared<'p, 'a> {
    plan: &'p Plan<'a>,
    argv: Vec<*const c_char>,
    envp: Vec<*const c_char>,
    /// `/bin/sh program args...`, for a program `execve` calls no
    /// executable (`ENOEXEC`: a script without `#!`), as `execvp` does.
    sh_argv: Vec<*const c_char>,
    /// The cgroup's `cgroup.procs`, when the child must join it itself.
    join: Option<BorrowedFd<'p>>,
    /// The errno of the step that failed in the child; 0 while none did.
    failure: AtomicI32,
}

const SH: &CStr = c"/bin/sh";

/// Starts the program of `plan`. Returns once it has called `execve`; an
/// error of any step before (a bad cwd, a failed `execve`) is returned with
/// its errno, and the child that failed is reaped.
///
/// A child with a cgroup is made in it by `clone3` ([`super::clone3`]);
/// where that is refused, it is made by `clone` and joins the cgroup
/// through `cgroup.procs`.
pub fn start(plan: &Plan<'_>) -> io::Result<ChildProcess> {
    if let Some(cgroup) = plan.cgroup
        && clone3::available()
    {
        match start_with(plan, Cgroup::StartIn(cgroup.as_fd())) {
            // The call itself was refused (an error of the child's own steps
            // leaves clone3 available): no child was made.
            Err(e) if !clone3::available() => {
                tracing::info!(error = %e, "clone3 is refused here: session programs join their cgroup after the clone");
            }
            done => return done,
        }
    }
    let procs = plan.cgroup.map(crate::session::cgroup::open_procs).transpose()?;
    let cgroup = procs.as_ref().map_or(Cgroup::None, |fd| Cgroup::Join(fd.as_fd()));
    start_with(plan, cgroup)
}

/// How a child gets into its session's cgroup.
#[derive(Clone, Copy)]
enum Cgroup<'a> {
    /// It has none.
    None,
    /// Made in the cgroup whose directory this is (`clone3`).
    StartIn(BorrowedFd<'a>),
    /// Joins it by writing this `cgroup.procs` before `execve`.
    Join(BorrowedFd<'a>),
}

/// [`start`], with the child getting into its cgroup as `cgroup` says.
fn start_with(plan: &Plan<'_>, cgroup: Cgroup<'_>) -> io::Result<ChildProcess> {
    start_on(plan, cgroup, &POOL)
}

/// [`start_with`], the child's stack taken from `stacks` and given back.
fn start_on(plan: &Plan<'_>, cgroup: Cgroup<'_>, stacks: &stack::Pool) -> io::Result<ChildProcess> {
    let ptrs = |v: &[CString]| -> Vec<*const c_char> {
        v.iter()
            .map(|s| s.as_ptr())
            .chain(std::iter::once(std::ptr::null()))
            .collect()
    };
    let sh_argv = [SH.as_ptr(), plan.program.as_ptr()]
        .into_iter()
        .chain(plan.argv.iter().skip(1).map(|s| s.as_ptr()))
        .chain(std::iter::once(std::ptr::null()))
        .collect();
    let prepared = Prepared {
        plan,
        argv: ptrs(&plan.argv),
        envp: ptrs(&plan.envp),
        sh_argv,
        join: match cgroup {
            Cgroup::Join(procs) => Some(procs),
            _ => None,
        },
        failure: AtomicI32::new(0),
    };
    let mut stack = stacks.take()?;
    let mut flags = CloneFlags::CLONE_VM | CloneFlags::CLONE_VFORK;
    if matches!(plan.stdio, Stdio::Tty(_)) {
        flags |= CloneFlags::CLONE_FILES;
    }
    let mut child_main = || -> i32 {
        let Err(e) = run_child(&prepared);
        let errno = e.raw_os_error().filter(|&n| n != 0).unwrap_or(libc::EIO);
        prepared.failure.store(errno, Ordering::Relaxed);
        127
    };
    let blocked = BlockSignals::all();
    // SAFETY: the child shares our memory and runs only `run_child`, which
    // keeps to the rules of this module's doc; the stack is ours until the
    // clone returns, which with CLONE_VFORK is after the child's `execve`
    // or exit.
    let pid = match cgroup {
        Cgroup::StartIn(cgroup) => unsafe {
            clone3::clone_into(flags.bits() as u32 as u64, stack.slice(), cgroup, &mut child_main)
        },
        Cgroup::None | Cgroup::Join(_) => {
            let child_main = Box::new(|| child_main() as isize);
            unsafe { nix::sched::clone(child_main, stack.slice(), flags, Some(libc::SIGCHLD)) }
                .map(|pid| pid.as_raw())
                .map_err(io::Error::from)
        }
    };
    drop(blocked);
    // The clone returned: the child has called `execve` or exited (or was
    // never made), so nothing runs on the stack any more.
    stacks.give_back(stack);
    let pid = pid?;
    let pid = Pid::from_raw(pid).ok_or_else(|| io::Error::other("clone returned pid 0"))?;
    let failure = prepared.failure.load(Ordering::Relaxed);
    if failure != 0 {
        let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
        return Err(io::Error::from_raw_os_error(failure));
    }
    // Not yet reaped, so the pid is still this program's.
    let pidfd = rustix::process::pidfd_open(pid, rustix::process::PidfdFlags::NONBLOCK)
        .map_err(io::Error::from)
        // SAFETY: the `AsyncFd` owns the pidfd and closes it only when
        // dropped, after deregistering it.
        .and_then(|fd| unsafe { AsyncFd::register(fd) }.map_err(io::Error::from));
    match pidfd {
        Ok(pidfd) => Ok(ChildProcess {
            pid,
            pidfd: Some(pidfd),
        }),
        Err(e) => {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            let _ = rustix::process::waitpid(Some(pid), WaitOptions::empty());
            Err(e)
        }
    }
}

/// Blocks every signal in the calling thread while it lives, so none is
/// handled in the child before its handlers are reset.
struct BlockSignals(libc::sigset_t);

impl BlockSignals {
    fn all() -> BlockSignals {
        // SAFETY: plain signal-mask calls on sets we own.
        unsafe {
            let mut all: libc::sigset_t = std::mem::zeroed();
            let mut old: libc::sigset_t = std::mem::zeroed();
            libc::sigfillset(&mut all);
            libc::pthread_sigmask(libc::SIG_SETMASK, &all, &mut old);
            BlockSignals(old)
        }
    }
}

impl Drop for BlockSignals {
    fn drop(&mut self) {
        // SAFETY: restores the mask saved by `all`.
        unsafe { libc::pthread_sigmask(libc::SIG_SETMASK, &self.0, std::ptr::null_mut()) };
    }
}

/// The child, between clone and `execve`: signals back to their defaults,
/// the stdio fds (all others closed at exec), a new session (with the PTY as its controlling terminal),
/// the cwd, the cgroup, the server's original open-files limit, then the
/// configured limits and user (last: the steps before may need root), an
/// empty signal mask, and `execve`.
fn run_child(p: &Prepared<'_, '_>) -> Result<Infallible, io::Error> {
    let plan = p.plan;
    reset_signal_handlers();
    let (mut fds, ctty): ([RawFd; 3], bool) = match plan.stdio {
        Stdio::Fds(fds) => (fds.map(|fd| fd.as_raw_fd()), false),
        Stdio::Tty(path) => {
            // The table is still the server's: nothing may change an fd
            // before it is unshared. Joining the cgroup only writes through
            // one, which must be done now, while that fd is still here.
            if let Some(procs) = p.join {
                crate::session::cgroup::join_in_child(procs)?;
            }
            // Unshares the table keeping only fds 0-2 and closes the rest of
            // the copy: the kernel copies just the fds below 3. (With
            // `CLOSE_RANGE_CLOEXEC` it would copy the whole table, and
            // `execve` would close every server fd again.)
            // SAFETY: closes fds of the child's own copy only.
            if unsafe { libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_UNSHARE as libc::c_int) } != 0 {
                return Err(io::Error::last_os_error());
            }
            let mode = rustix::fs::Mode::empty();
            let flags = rustix::fs::OFlags::RDWR | rustix::fs::OFlags::NOCTTY | rustix::fs::OFlags::CLOEXEC;
            let fd = rustix::fs::open(path, flags, mode)?.into_raw_fd();
            ([fd; 3], true)
        }
    };
    // Move sources that sit on 0-2 out of the way first, so that one dup2
    // cannot overwrite another's source (the copies close at exec).
    for fd in &mut fds {
        if *fd < 3 {
            *fd = rustix::io::fcntl_dupfd_cloexec(borrow(*fd), 3)?.into_raw_fd();
        }
    }
    rustix::stdio::dup2_stdin(borrow(fds[0]))?;
    rustix::stdio::dup2_stdout(borrow(fds[1]))?;
    rustix::stdio::dup2_stderr(borrow(fds[2]))?;
    // Every other fd closes at exec, also any the server inherited open
    // (not close-on-exec) from whoever started it.
    // SAFETY: marks fds close-on-exec; closes nothing now.
    if !ctty && unsafe { libc::close_range(3, libc::c_uint::MAX, libc::CLOSE_RANGE_CLOEXEC as libc::c_int) } != 0 {
        return Err(io::Error::last_os_error());
    }
    rustix::process::setsid()?;
    if ctty {
        rustix::process::ioctl_tiocsctty(borrow(0))?;
    }
    rustix::process::chdir(plan.cwd.as_c_str())?;
    // A PTY child joined before it unshared its fd table.
    if let (Some(procs), false) = (p.join, ctty) {
        crate::session::cgroup::join_in_child(procs)?;
    }
    crate::confine::restore_fd_limit()?;
    if let Some(c) = plan.confine {
        c.apply_in_child()?;
    }
    // SAFETY: an empty mask on a set we own; `execve` with NUL-terminated
    // arrays of pointers into `plan`, alive until the clone returns.
    unsafe {
        let mut none: libc::sigset_t = std::mem::zeroed();
        libc::sigemptyset(&mut none);
        libc::sigprocmask(libc::SIG_SETMASK, &none, std::ptr::null_mut());
        libc::execve(plan.program.as_ptr(), p.argv.as_ptr(), p.envp.as_ptr());
        let e = io::Error::last_os_error();
        if e.raw_os_error() == Some(libc::ENOEXEC) {
            libc::execve(SH.as_ptr(), p.sh_argv.as_ptr(), p.envp.as_ptr());
        }
        Err(e)
    }
}

/// Sets every signal with a handler of the server (and `SIGPIPE`, which
/// Rust's runtime ignores) back to the default action; ignored signals stay
/// ignored, as across `fork` and `execve`.
fn reset_signal_handlers() {
    for signal in 1..=libc::SIGRTMAX() {
        if signal == libc::SIGKILL || signal == libc::SIGSTOP {
            continue;
        }
        // SAFETY: `sigaction` reads into and from structs we own; signals
        // glibc reserves answer EINVAL and are skipped.
        unsafe {
            let mut old: libc::sigaction = std::mem::zeroed();
            if libc::sigaction(signal, std::ptr::null(), &mut old) != 0 {
                continue;
            }
            let handled = old.sa_sigaction != libc::SIG_DFL && old.sa_sigaction != libc::SIG_IGN;
            if handled || (signal == libc::SIGPIPE && old.sa_sigaction == libc::SIG_IGN) {
                let mut default: libc::sigaction = std::mem::zeroed();
                default.sa_sigaction = libc::SIG_DFL;
                libc::sigaction(signal, &default, std::ptr::null_mut());
            }
        }
    }
}

fn borrow(fd: RawFd) -> BorrowedFd<'static> {
    // SAFETY: only for fds open in the child until `execve`.
    unsafe { BorrowedFd::borrow_raw(fd) }
}

#[cfg(test)]
mod tests;
