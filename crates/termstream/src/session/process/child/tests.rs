//! The child's stack (kept and used again), and the two ways a child gets
//! into its session's cgroup, on real cgroups: made in it by `clone3`, or
//! joining it through `cgroup.procs` where `clone3` is refused. Each must have the program in the cgroup from its
//! first instruction, and report a failing step as its errno.

use std::ffi::CString;
use std::io::Read;
use std::os::fd::{AsFd, OwnedFd};

use termstream_proto::Epoch;

use super::stack::{ChildStack, Pool, STACK_SIZE};
use super::{Cgroup, Plan, Stdio, clone3, start_on, start_with};
use crate::session::cgroup::{self, Cgroups, SessionCgroup};

/// The session cgroups of this machine: where the server could use them
/// (root and a cgroup v2 mount), they must be found, so the tests below do
/// not pass by skipping.
fn cgroups() -> Option<Cgroups> {
    let found = Cgroups::detect();
    let expected = rustix::process::geteuid().is_root()
        && std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.contains(" - cgroup2 "));
    match found {
        Ok(c) => Some(c),
        Err(why) if expected => panic!("cgroups expected here: {why}"),
        Err(_) => None,
    }
}

/// An epoch no other session has: the cgroup's name.
fn fresh_epoch() -> Epoch {
    Epoch(rand::random())
}

fn plan<'a>(argv: &[&str], cwd: &str, stdio: Stdio<'a>, cgroup: &'a OwnedFd) -> Plan<'a> {
    let argv: Vec<CString> = argv.iter().map(|a| CString::new(*a).unwrap()).collect();
    Plan {
        program: argv[0].clone(),
        argv,
        envp: vec![c"PATH=/usr/bin:/bin".to_owned()],
        cwd: CString::new(cwd).unwrap(),
        stdio,
        cgroup: Some(cgroup),
        confine: None,
    }
}

/// A session cgroup made for a test, removed when dropped (also when the
/// test fails).
struct Made(SessionCgroup);

impl Drop for Made {
    fn drop(&mut self) {
        self.0.kill();
        let _ = std::fs::remove_dir(self.0.path());
    }
}

/// Starts `plan` made in its cgroup (`into`) or joining it; `None` when
/// `clone3` is refused here (a container's seccomp filter).
fn start_either(plan: &Plan<'_>, dir: &OwnedFd, into: bool) -> Option<std::io::Result<super::ChildProcess>> {
    if !into {
        let procs = cgroup::open_procs(dir).expect("cgroup.procs");
        return Some(start_with(plan, Cgroup::Join(procs.as_fd())));
    }
    if !clone3::available() {
        return None;
    }
    match start_with(plan, Cgroup::StartIn(dir.as_fd())) {
        Err(_) if !clone3::available() => None,
        done => Some(done),
    }
}

/// Runs `cat /proc/self/cgroup` in a new cgroup, made in it (`into`) or
/// joining it: what the program saw, and the cgroup's name; `None` when
/// `clone3` is refused here.
async fn cgroup_seen(cgroups: &Cgroups, into: bool) -> Option<(String, String)> {
    let cg = Made(cgroups.create(fresh_epoch()).expect("a session cgroup"));
    let dir = cg.0.open_dir().expect("its directory");
    let (mut read, write) = std::io::pipe().expect("a pipe");
    let write: OwnedFd = write.into();
    let fds = [write.as_fd(), write.as_fd(), write.as_fd()];
    let plan = plan(&["/bin/cat", "/proc/self/cgroup"], "/", Stdio::Fds(fds), &dir);
    let mut child = start_either(&plan, &dir, into)?.expect("started");
    drop(plan);
    drop(write);
    let mut seen = String::new();
    read.read_to_string(&mut seen).expect("the output");
    let status = child.wait().await.expect("exited");
    assert!(status.success(), "{status:?}: {seen}");
    let name = cg.0.path().file_name().unwrap().to_str().unwrap().to_owned();
    // Empty now (the program was reaped): removable.
    std::fs::remove_dir(cg.0.path()).expect("the cgroup removed");
    Some((seen, name))
}

#[tokio::test]
async fn a_child_runs_in_its_cgroup_whether_made_there_or_joining() {
    let Some(cgroups) = cgroups() else { return };
    for into in [true, false] {
        let Some((seen, name)) = cgroup_seen(&cgroups, into).await else {
            continue;
        };
        let own = seen.lines().find_map(|l| l.strip_prefix("0::")).unwrap_or_default();
        assert!(
            own.ends_with(&format!("/termstream-sessions/{name}")),
            "made in it: {into}; the program saw {seen:?}"
        );
    }
}

#[tokio::test]
async fn a_step_that_fails_in_a_child_made_in_its_cgroup_is_its_errno() {
    let Some(cgroups) = cgroups() else { return };
    let cg = Made(cgroups.create(fresh_epoch()).expect("a session cgroup"));
    let dir = cg.0.open_dir().expect("its directory");
    let null = std::fs::File::options()
        .read(true)
        .write(true)
        .open("/dev/null")
        .unwrap();
    let fds = [null.as_fd(), null.as_fd(), null.as_fd()];
    for into in [true, false] {
        let bad_cwd = plan(&["/bin/true"], "/no/such/dir", Stdio::Fds(fds), &dir);
        let missing = plan(&["/no/such/program"], "/", Stdio::Fds(fds), &dir);
        for plan in [bad_cwd, missing] {
            let Some(started) = start_either(&plan, &dir, into) else {
                continue;
            };
            let err = started.err().expect("a failure");
            assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "made in it: {into}: {err}");
            // A failing step leaves clone3 available: only a refusal of
            // the call itself makes spawns fall back.
            assert!(!into || clone3::available());
        }
    }
    // The failed children were reaped: nothing is left in the cgroup.
    std::fs::remove_dir(cg.0.path()).expect("the cgroup removed");
}

/// The permissions (`rw-p`) of the mapping of this process that holds
/// `addr`, from `/proc/self/maps`.
fn permissions(addr: usize) -> Option<String> {
    let maps = std::fs::read_to_string("/proc/self/maps").unwrap();
    maps.lines().find_map(|line| {
        let mut words = line.split_whitespace();
        let (start, end) = words.next()?.split_once('-')?;
        let (start, end) = (
            usize::from_str_radix(start, 16).ok()?,
            usize::from_str_radix(end, 16).ok()?,
        );
        (start <= addr && addr < end).then(|| words.next().unwrap_or("").to_owned())
    })
}

/// A stack's guard page, checked on a new stack and on the same stack once
/// a pool kept it and handed it out again.
#[test]
fn the_child_stack_has_an_inaccessible_page_below_it() {
    let pool = Pool::new(1);
    let mut first = pool.take().unwrap();
    let first_low = first.slice().as_ptr() as usize;
    check_guarded(&mut first);
    pool.give_back(first);
    let mut again = pool.take().unwrap();
    assert_eq!(
        again.slice().as_ptr() as usize,
        first_low,
        "the kept stack was not reused"
    );
    check_guarded(&mut again);
}

fn check_guarded(stack: &mut ChildStack) {
    let page = rustix::param::page_size();
    let slice = stack.slice();
    assert!(slice.len() >= STACK_SIZE);
    let low = slice.as_ptr() as usize;
    let high = low + slice.len() - 1;
    // The stack grows down from its top: the page under its lowest
    // byte is the guard.
    assert_eq!(permissions(low).as_deref().map(|p| &p[..2]), Some("rw"));
    assert_eq!(permissions(high).as_deref().map(|p| &p[..2]), Some("rw"));
    assert_eq!(
        permissions(low - 1).as_deref().map(|p| &p[..3]),
        Some("---"),
        "no guard page"
    );
    assert_eq!(permissions(low - page).as_deref().map(|p| &p[..3]), Some("---"));
    slice[0] = 1;
    slice[slice.len() - 1] = 1;
}

/// Spawns in a row run on the one stack their pool kept, each with its own
/// output and exit status, whether the child before it ran its program or
/// failed before `execve` (a missing directory): a stack is given back
/// once its clone returned, whatever the child did, and used again.
#[tokio::test]
async fn children_run_one_after_another_on_a_kept_stack() {
    let stacks = Pool::new(4);
    let mut kept_at = None;
    for i in 0..24 {
        let (mut read, write) = std::io::pipe().expect("a pipe");
        let write: OwnedFd = write.into();
        let fds = [write.as_fd(), write.as_fd(), write.as_fd()];
        let word = format!("child-{i}");
        let argv = [
            c"/bin/sh".to_owned(),
            c"-c".to_owned(),
            CString::new(format!("echo {word}; exit {}", i % 3)).unwrap(),
        ];
        let fails = i % 4 == 3;
        let plan = Plan {
            program: argv[0].clone(),
            argv: argv.to_vec(),
            envp: vec![c"PATH=/usr/bin:/bin".to_owned()],
            cwd: if fails {
                c"/no/such/dir".to_owned()
            } else {
                c"/".to_owned()
            },
            stdio: Stdio::Fds(fds),
            cgroup: None,
            confine: None,
        };
        let started = start_on(&plan, Cgroup::None, &stacks);
        drop(plan);
        drop(write);
        // One stack, kept and used again: never a second one mapped.
        assert_eq!(stacks.kept(), 1, "spawn {i}");
        let at = stacks.kept_at()[0];
        assert_eq!(*kept_at.get_or_insert(at), at, "spawn {i} ran on another stack");
        if fails {
            let err = started.err().expect("a failure");
            assert_eq!(err.raw_os_error(), Some(libc::ENOENT), "{err}");
            continue;
        }
        let mut child = started.expect("started");
        let mut seen = String::new();
        read.read_to_string(&mut seen).expect("the output");
        let status = child.wait().await.expect("exited");
        assert_eq!(seen.trim(), word);
        assert_eq!(status.code(), Some(i % 3), "{seen}");
    }
}
