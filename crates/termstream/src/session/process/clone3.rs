//! `clone3` for a child that shares the server's memory, started directly
//! in its session's cgroup (`CLONE_INTO_CGROUP`, Linux 5.7).
//!
//! A child that joins its cgroup itself, by writing `cgroup.procs`, makes
//! the kernel take the write side of a lock every fork and exit reads
//! (`cgroup_threadgroup_rwsem`), and taking it after a quiet spell waits
//! for an RCU grace period: 11–18 ms on the benchmark's machines, with the
//! server's worker asleep in `clone(CLONE_VFORK)` all the while (0.2–0.4 ms
//! without a cgroup; 10–27 ms in the server under `perf trace`). A child
//! made *in* the cgroup takes no such lock.
//!
//! glibc has no wrapper for `clone3` (its `posix_spawn` uses one inside),
//! and a child that shares the caller's memory cannot return from a system
//! call wrapper: it wakes on a new, empty stack. So the call is made here
//! in assembly, as libc's own `clone` is: in the child, the call jumps
//! straight into [`entry`] on its stack. x86-64 only; elsewhere (and where
//! a seccomp filter refuses `clone3`, as container runtimes' defaults do)
//! the caller falls back to `clone` and `cgroup.procs`.

use std::ffi::c_void;
use std::io;
use std::os::fd::{AsRawFd, BorrowedFd};
use std::sync::atomic::{AtomicBool, Ordering};

/// Whether `clone3` may be tried: cleared when the call is refused.
static AVAILABLE: AtomicBool = AtomicBool::new(cfg!(target_arch = "x86_64"));

/// `CLONE_INTO_CGROUP` (libc's constant is a deprecated, overflowing `int`).
const CLONE_INTO_CGROUP: u64 = 0x2_0000_0000;

/// What the child runs: the caller's closure, returning its exit code.
type Body<'a> = &'a mut dyn FnMut() -> i32;

/// Whether [`clone_into`] is worth trying.
pub fn available() -> bool {
    AVAILABLE.load(Ordering::Relaxed)
}

/// Starts a child with `flags` (which must hold `CLONE_VM | CLONE_VFORK`)
/// in the cgroup whose directory is `cgroup`, running `body` on `stack`
/// and exiting with what it returns. Returns the child's pid once it has
/// called `execve` or exited.
///
/// A refusal of the call itself (`ENOSYS`: no `clone3` here, or a seccomp
/// filter's usual answer; `EPERM`: an older filter's) makes [`available`]
/// false from then on, and no child was made: the caller may fall back.
/// (Were the `EPERM` the cgroup's, the fallback's `cgroup.procs` write is
/// refused the same way.)
///
/// # Safety
/// As for `clone(CLONE_VM)`: the child shares the caller's memory, so
/// `body` may only do what is safe there (see `child.rs`), and `stack` must
/// be the child's alone until this returns.
pub unsafe fn clone_into(flags: u64, stack: &mut [u8], cgroup: BorrowedFd<'_>, body: Body<'_>) -> io::Result<i32> {
    let mut body = body;
    // The kernel starts the child at the top, which must be 16-aligned.
    let top = (stack.as_mut_ptr() as usize + stack.len()) & !15;
    let args = libc::clone_args {
        flags: flags | CLONE_INTO_CGROUP,
        pidfd: 0,
        child_tid: 0,
        parent_tid: 0,
        exit_signal: libc::SIGCHLD as u64,
        stack: stack.as_mut_ptr() as u64,
        stack_size: (top - stack.as_mut_ptr() as usize) as u64,
        tls: 0,
        set_tid: 0,
        set_tid_size: 0,
        cgroup: cgroup.as_raw_fd() as u64,
    };
    // SAFETY: passed on to the caller.
    let ret = unsafe { raw_clone3(&args, (&raw mut body).cast()) };
    if ret < 0 {
        let e = io::Error::from_raw_os_error(-ret as i32);
        if matches!(e.raw_os_error(), Some(libc::ENOSYS | libc::EPERM)) {
            AVAILABLE.store(false, Ordering::Relaxed);
        }
        return Err(e);
    }
    Ok(ret as i32)
}

/// Where the child starts, on its own stack: runs the body `arg` points to
/// and exits with its code. Never returns (there is nothing to return to).
extern "C" fn entry(arg: *mut c_void) -> ! {
    // SAFETY: `arg` is the `Body` of `clone_into`, whose frame outlives
    // the child's use of it (the caller sleeps until `execve` or exit).
    let body = unsafe { &mut *arg.cast::<Body<'_>>() };
    let code = body();
    // SAFETY: ends the child only (it is a process of its own).
    unsafe { libc::_exit(code) }
}

/// The system call: returns the child's pid (or `-errno`) in the caller,
/// and in the child calls [`entry`] with `arg` on the new stack.
#[cfg(target_arch = "x86_64")]
unsafe fn raw_clone3(args: &libc::clone_args, arg: *mut c_void) -> i64 {
    let ret: i64;
    // SAFETY: the caller's contract. `syscall` keeps every register but
    // rax, rcx and r11, in the child too, whose rsp is the new stack's top;
    // the child clears the frame pointer and calls `entry`, which never
    // returns. The caller's path uses no stack.
    unsafe {
        std::arch::asm!(
            "syscall",
            "test rax, rax",
            "jnz 2f",
            "xor ebp, ebp",
            "mov rdi, r12",
            "call r13",
            "ud2",
            "2:",
            inlateout("rax") libc::SYS_clone3 => ret,
            in("rdi") std::ptr::from_ref(args),
            in("rsi") std::mem::size_of::<libc::clone_args>(),
            in("r12") arg,
            in("r13") entry as extern "C" fn(*mut c_void) -> !,
            lateout("rcx") _,
            lateout("r11") _,
            options(nostack),
        );
    }
    ret
}

#[cfg(not(target_arch = "x86_64"))]
unsafe fn raw_clone3(_: &libc::clone_args, _: *mut c_void) -> i64 {
    -(libc::ENOSYS as i64)
}
