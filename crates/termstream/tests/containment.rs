//! What a session's programs run as, and how all of them are ended: the
//! configured user with its supplementary groups, terminate against jobs
//! that leave the session and drop its marker, and a crashed server's
//! programs ended when it starts again (and by terminate and delete of the
//! `lost` sessions).

mod common;

use std::os::fd::OwnedFd;
use std::path::{Path, PathBuf};
use std::process::Command;

use common::{TestServer, marked_processes, secs, wait_until};
use serde_json::json;
use tokio::io::unix::AsyncFd;

/// The user and group the run_as test creates (when the tests run as root).
const TEST_USER: &str = "termstream-test";
const TEST_GROUP: &str = "termstream-test-extra";

/// Creates `TEST_GROUP` and `TEST_USER` (a member of it) unless they exist;
/// returns the group's gid.
fn ensure_test_user() -> String {
    let getent = |db: &str, key: &str| {
        let out = Command::new("getent").args([db, key]).output().expect("getent");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    if getent("group", TEST_GROUP).is_none() {
        // Another test run may create it at the same time: judge by getent.
        let _ = Command::new("groupadd").arg(TEST_GROUP).status();
    }
    if getent("passwd", TEST_USER).is_none() {
        let _ = Command::new("useradd")
            .args(["--no-create-home", "--home-dir", "/nonexistent", "--groups", TEST_GROUP])
            .arg(TEST_USER)
            .status();
    }
    assert!(getent("passwd", TEST_USER).is_some(), "cannot create user {TEST_USER}");
    let group = getent("group", TEST_GROUP).expect("the test group");
    group.split(':').nth(2).expect("a gid").to_owned()
}

#[tokio::test]
async fn programs_run_as_the_configured_user_with_its_supplementary_groups() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: switching users and creating a test user need the tests to run as root");
        return;
    }
    let extra_gid = ensure_test_user();
    let server = TestServer::start_with(&[], &[("TERMSTREAM_RUN_AS", TEST_USER)]).await;
    for kind in ["command", "pty"] {
        let id = format!("groups-{kind}");
        let script = "echo user=$(id -un) groups=[$(id -G)] end";
        server
            .create(json!({"id": id, "kind": kind, "cwd": "/", "argv": ["sh", "-c", script]}))
            .await;
        let out = server.read_output_until(&id, "end", secs(10)).await;
        let groups: Vec<&str> = out
            .split("groups=[")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .expect("the groups")
            .split_whitespace()
            .collect();
        assert!(out.contains(&format!("user={TEST_USER}")), "{kind}: {out:?}");
        assert!(
            groups.contains(&extra_gid.as_str()),
            "{kind}: the supplementary group {extra_gid} is missing: {out:?}"
        );
        assert!(
            !groups.contains(&"0"),
            "{kind}: root's group leaked into the program: {out:?}"
        );
    }
}

/// Whether this machine should give sessions cgroups: a cgroup v2
/// hierarchy is mounted and the tests run as root (so the server, their
/// child, can write it).
fn cgroups_expected() -> bool {
    let mounted =
        std::fs::read_to_string("/proc/self/mountinfo").is_ok_and(|m| m.lines().any(|l| l.contains(" - cgroup2 ")));
    mounted && rustix::process::geteuid().is_root()
}

/// The cgroup directory of process `pid` when it is a session's own
/// (`.../termstream-sessions/<epoch>`).
fn session_cgroup(pid: u32, epoch: &str) -> Option<PathBuf> {
    let own = std::fs::read_to_string(format!("/proc/{pid}/cgroup")).ok()?;
    let path = own.lines().find_map(|l| l.strip_prefix("0::"))?.to_owned();
    if !path.ends_with(&format!("/termstream-sessions/{epoch}")) {
        return None;
    }
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").ok()?;
    let mount = mounts.lines().find_map(|l| {
        let (left, right) = l.split_once(" - ")?;
        right
            .starts_with("cgroup2 ")
            .then(|| left.split(' ').nth(4).map(str::to_owned))?
    })?;
    Some(Path::new(&mount).join(path.trim_start_matches('/')))
}

/// A process a test watches: a pidfd, readable once the process has exited
/// (so a pid reused meanwhile cannot fool the wait).
struct Watched {
    pid: u32,
    what: String,
    fd: AsyncFd<OwnedFd>,
}

impl Watched {
    fn new(pid: u32) -> Option<Watched> {
        let what = std::fs::read_to_string(format!("/proc/{pid}/cmdline"))
            .ok()?
            .replace('\0', " ");
        let fd = rustix::process::pidfd_open(
            rustix::process::Pid::from_raw(pid as i32)?,
            rustix::process::PidfdFlags::empty(),
        )
        .ok()?;
        // SAFETY: the `OwnedFd` moves into the `AsyncFd` and stays open as
        // long as it.
        let fd = unsafe { AsyncFd::register(fd) }.ok()?;
        Some(Watched { pid, what, fd })
    }
}

/// Waits (at most 10 s) until every watched process has exited; panics
/// naming the survivors.
async fn assert_all_exit(watched: &[Watched], what: &str) {
    let mut left = Vec::new();
    for w in watched {
        if tokio::time::timeout(secs(10), w.fd.readable()).await.is_err() {
            left.push(format!("{} ({})", w.pid, w.what.trim()));
        }
    }
    assert!(left.is_empty(), "{what}: these processes survive: {left:?}");
}

/// Every process of a session found by its marker, watched.
async fn watch_marked(epoch: &str, at_least: usize) -> Vec<Watched> {
    assert!(
        wait_until(secs(10), || async { marked_processes(epoch).len() >= at_least }).await,
        "expected {at_least} processes with the marker, found {:?}",
        marked_processes(epoch)
    );
    marked_processes(epoch).into_iter().filter_map(Watched::new).collect()
}

/// Reads `escaped=PID` from a session's output and watches that process.
async fn watch_escaped(server: &TestServer, id: &str) -> Watched {
    let out = server.read_output_until(id, "escaped=", secs(10)).await;
    let pid: u32 = out
        .split("escaped=")
        .nth(1)
        .and_then(|r| r.split_whitespace().next())
        .and_then(|p| p.parse().ok())
        .expect("the escaped job's pid");
    // `$!` is known before the job has run `setsid` and `env -i`: wait
    // until it is `sleep` itself.
    let cmdline = || std::fs::read(format!("/proc/{pid}/cmdline")).unwrap_or_default();
    assert!(
        wait_until(secs(10), || async { cmdline() == b"sleep\x001000\x00" }).await,
        "the job is {:?}",
        String::from_utf8_lossy(&cmdline())
    );
    let env = std::fs::read(format!("/proc/{pid}/environ")).unwrap_or_default();
    assert!(
        !env.windows(b"TERMSTREAM_SESSION".len())
            .any(|w| w == b"TERMSTREAM_SESSION"),
        "the job kept its marker"
    );
    Watched::new(pid).expect("the escaped job runs")
}

#[tokio::test]
async fn terminate_ends_a_job_that_left_the_session_and_dropped_its_marker() {
    if !cgroups_expected() {
        eprintln!("skipped: no cgroup v2 hierarchy this test can write (the process scan cannot see such a job)");
        return;
    }
    let server = TestServer::start_with(&["--terminate-grace-ms", "300"], &[]).await;
    let info = server
        .create(json!({"id": "escape", "kind": "command",
            "command": "setsid env -i sleep 1000 & echo escaped=$! ; sleep 1000"}))
        .await;
    let epoch = info["epoch"].as_str().unwrap();
    let escaped = watch_escaped(&server, "escape").await;
    let cgroup = session_cgroup(info["pid"].as_u64().unwrap() as u32, epoch).expect("the session has its own cgroup");
    assert_eq!(
        session_cgroup(escaped.pid, epoch).as_ref(),
        Some(&cgroup),
        "the job is in it"
    );

    let ended = server.terminate("escape").await;
    assert_eq!(ended["status"], "terminated", "{ended}");
    assert_all_exit(&[escaped], "setsid env -i").await;
    assert!(
        wait_until(secs(10), || async { !cgroup.exists() }).await,
        "the session's cgroup {} is not removed",
        cgroup.display()
    );
}

#[tokio::test]
async fn without_cgroups_terminate_still_ends_setsid_jobs() {
    let server = TestServer::start_with(&["--terminate-grace-ms", "300"], &[("TERMSTREAM_CGROUP", "off")]).await;
    let info = server
        .create(json!({"kind": "command", "command": "trap '' TERM HUP; setsid sleep 1000 & sleep 1000"}))
        .await;
    let epoch = info["epoch"].as_str().unwrap();
    let watched = watch_marked(epoch, 3).await;
    assert!(
        session_cgroup(info["pid"].as_u64().unwrap() as u32, epoch).is_none(),
        "cgroup = off"
    );
    server.terminate(info["id"].as_str().unwrap()).await;
    assert_all_exit(&watched, "terminate without cgroups").await;
}

/// Crashes a server with a running session, restarts it on the same data,
/// and checks that every process of the session is ended; returns the
/// restarted server and the session's epoch.
async fn crash_and_restart(mode: &str) -> (TestServer, String) {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_CGROUP", mode)]).await;
    let with_cgroups = mode == "auto" && cgroups_expected();
    let command = if with_cgroups {
        "setsid sleep 1000 & setsid env -i sleep 1000 & echo escaped=$! ; sleep 1000"
    } else {
        "setsid sleep 1000 & echo escaped=none ; sleep 1000"
    };
    let info = server
        .create(json!({"id": "crashed", "kind": "command", "command": command}))
        .await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    server.read_output_until("crashed", "escaped=", secs(10)).await;
    let mut watched = watch_marked(&epoch, 3).await;
    let mut cgroup = None;
    if with_cgroups {
        watched.push(watch_escaped(&server, "crashed").await);
        cgroup = session_cgroup(info["pid"].as_u64().unwrap() as u32, &epoch);
        assert!(cgroup.is_some(), "the session has its own cgroup");
    }

    let mut server = server;
    server.crash();
    // Orphaned, not ended: the check below can fail.
    assert!(
        !marked_processes(&epoch).is_empty(),
        "the crash ended the session's processes"
    );
    let server = server.restart();
    assert_all_exit(&watched, &format!("after a restart (cgroup = {mode})")).await;
    if let Some(cgroup) = cgroup {
        assert!(
            wait_until(secs(10), || async { !cgroup.exists() }).await,
            "the lost session's cgroup {} is not removed",
            cgroup.display()
        );
    }
    assert_eq!(server.info("crashed").await["status"], "lost");
    (server, epoch)
}

#[tokio::test]
async fn a_crashed_servers_programs_are_ended_when_it_starts_again() {
    crash_and_restart("auto").await;
}

#[tokio::test]
async fn a_crashed_servers_programs_are_ended_when_it_starts_again_without_cgroups() {
    crash_and_restart("off").await;
}

/// A process of a lost session that the start missed (started by the test
/// with the session's marker) is ended by terminate, and another by delete.
#[tokio::test]
async fn terminate_and_delete_end_what_is_left_of_a_lost_session() {
    let (server, epoch) = crash_and_restart("auto").await;
    let leftover = || {
        Command::new("sleep")
            .arg("1000")
            .env("TERMSTREAM_SESSION", &epoch)
            .spawn()
            .expect("sleep")
    };
    let exits = |mut child: std::process::Child| async move {
        wait_until(secs(10), || {
            let exited = matches!(child.try_wait(), Ok(Some(_)));
            async move { exited }
        })
        .await
    };

    let child = leftover();
    assert_eq!(server.terminate("crashed").await["status"], "lost");
    assert!(exits(child).await, "terminate of a lost session left a process of it");

    let child = leftover();
    let (status, _) = server.request("DELETE", "/api/sessions/crashed", None).await;
    assert_eq!(status, 204);
    assert!(exits(child).await, "delete of a lost session left a process of it");
}
