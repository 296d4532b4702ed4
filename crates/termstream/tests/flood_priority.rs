//! A session whose program floods output with nobody typing into it yields
//! the CPU while someone types into another session: its autogroup nice
//! (`/proc/PID/autogroup`, the priority that weighs one session's processes
//! against everything else) is raised to `flood_nice`, and set back when
//! input arrives, the output pauses, or nobody types any more; a group
//! whose leader exits while lowered is set back through the processes left
//! in it. The lowering is off by default (`flood_nice = 0`): these tests
//! set it, except the one that checks the default. Real server,
//! real PTYs, real programs; skipped where the kernel does not schedule by
//! autogroup.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, secs, wait_until};
use serde_json::json;
use tokio::task::JoinHandle;

/// Types a key into a `cat` session of `server` every 100 ms, until aborted.
async fn typist(server: &TestServer) -> JoinHandle<()> {
    let info = server.create(json!({ "argv": ["cat"], "cols": 80, "rows": 24 })).await;
    let url = server.url(&format!("/api/sessions/{}/input", info["id"].as_str().unwrap()));
    let client = server.client.clone();
    tokio::spawn(async move {
        loop {
            let sent = client.post(&url).json(&json!({ "data": "k" })).send().await;
            assert_eq!(sent.map(|r| r.status().as_u16()).ok(), Some(200), "typing failed");
            tokio::time::sleep(Duration::from_millis(100)).await;
        }
    })
}

/// Waits until `id` has streamed at least 8 MiB and 2 s have passed since
/// `started`: long enough to be lowered, were it to be.
async fn flooded(server: &TestServer, id: &str, started: Instant) {
    assert!(
        wait_until(secs(10), || async {
            started.elapsed() > Duration::from_secs(2) && server.info(id).await["outputOffset"].as_u64() > Some(8 << 20)
        })
        .await,
        "the program did not flood"
    );
}

/// The autogroup nice of `pid`.
fn group_nice(pid: u32) -> Option<i32> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/autogroup")).ok()?;
    text.split_whitespace().nth(2)?.parse().ok()
}

/// Whether a session's program gets an autogroup of its own whose nice we
/// may change, as the server's sessions do: a new session (`setsid`)
/// sets its group's nice to 1 and reads it back. Not so where the kernel
/// does not schedule by autogroup, or may not let us change it. The kernel
/// refuses more than about ten such changes a second in all (`EAGAIN`), and
/// other tests' servers make some: a refused write is tried again for a
/// second before the answer is no. Asked once per test process.
fn autogroups() -> bool {
    static OWN: std::sync::OnceLock<bool> = std::sync::OnceLock::new();
    *OWN.get_or_init(|| {
        let on = std::fs::read_to_string("/proc/sys/kernel/sched_autogroup_enabled").is_ok_and(|s| s.trim() == "1");
        let probe = "for i in 1 2 3 4 5 6 7 8 9 10; do echo 1 2>/dev/null >/proc/self/autogroup && break; sleep 0.11; done; \
                     cat /proc/self/autogroup";
        let own = on
            && std::process::Command::new("setsid")
                .args(["-w", "sh", "-c", probe])
                .output()
                .is_ok_and(|out| String::from_utf8_lossy(&out.stdout).trim_end().ends_with(" nice 1"));
        if !own {
            eprintln!("autogroups are not in effect here (or not ours to change); nothing to observe");
        }
        own
    })
}

/// The autogroup nice of the server: 0 in the default group, whose file is
/// empty (a server started outside any new session, as under some CI).
fn server_nice(server: &TestServer) -> i32 {
    group_nice(server.pid()).unwrap_or(0)
}

/// Polls the nice of `pid` every millisecond until it is `want`.
async fn nice_becomes(pid: u32, want: i32, timeout: Duration) -> bool {
    let deadline = Instant::now() + timeout;
    while Instant::now() < deadline {
        if group_nice(pid) == Some(want) {
            return true;
        }
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    false
}

#[tokio::test]
async fn a_flooding_program_is_lowered_and_restored_on_input_or_pause() {
    if !autogroups() {
        return;
    }
    let server = TestServer::start_with(&[], &[("TERMSTREAM_FLOOD_NICE", "10")]).await;
    let info = server
        .create(json!({ "argv": ["sh", "-c", "read x; exec yes"], "cols": 80, "rows": 24 }))
        .await;
    let id = info["id"].as_str().unwrap().to_owned();
    let pid = info["pid"].as_u64().unwrap() as u32;
    let own = server_nice(&server);
    assert_eq!(group_nice(pid), Some(own), "a session starts at the server's priority");

    // A lone flood started by a typed line, nobody typing elsewhere: left
    // alone (its own input does not count).
    let started = Instant::now();
    server.input(&id, "go\n").await;
    // Watched while its own line is recent input (2 s): never lowered.
    assert!(
        !nice_becomes(pid, 10, Duration::from_millis(1800)).await,
        "a flood was lowered for its own input"
    );
    flooded(&server, &id, started).await;
    assert_eq!(group_nice(pid), Some(own), "a lone flood was lowered");

    // Someone types into another session: the flood is lowered (to
    // flood_nice, 10 here).
    let typing = typist(&server).await;
    assert!(
        nice_becomes(pid, 10, secs(10)).await,
        "a flooding session was not lowered: {:?}",
        group_nice(pid)
    );
    assert_eq!(server_nice(&server), own, "the server's own group is untouched");

    // Input: restored at once (the stream starts over, so it is lowered
    // again only after a while).
    server.input(&id, "x").await;
    assert!(
        nice_becomes(pid, own, secs(1)).await,
        "input did not restore the priority: {:?}",
        group_nice(pid)
    );
    // Still flooding with nobody typing into it: lowered again.
    assert!(nice_becomes(pid, 10, secs(10)).await, "not lowered again");

    // Nobody types any more: restored.
    typing.abort();
    assert!(
        nice_becomes(pid, own, secs(10)).await,
        "not restored once nobody typed: {:?}",
        group_nice(pid)
    );
    let typing = typist(&server).await;
    assert!(nice_becomes(pid, 10, secs(10)).await, "not lowered a third time");

    // The program stops writing (stopped by the test, not the server): a
    // pause restores it.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::STOP,
    )
    .expect("SIGSTOP");
    assert!(
        nice_becomes(pid, own, secs(5)).await,
        "a pause did not restore the priority: {:?}",
        group_nice(pid)
    );
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::CONT,
    )
    .expect("SIGCONT");
    typing.abort();
    server.terminate(&id).await;
}

#[tokio::test]
async fn by_default_floods_are_left_alone() {
    if !autogroups() {
        return;
    }
    // The default flood_nice is 0.
    let server = TestServer::start().await;
    let info = server.create(json!({ "argv": ["yes"], "cols": 80, "rows": 24 })).await;
    let id = info["id"].as_str().unwrap().to_owned();
    let pid = info["pid"].as_u64().unwrap() as u32;
    let own = group_nice(pid).expect("autogroup");
    // Long enough a flood, while someone types into another session, to be
    // lowered with the setting on (more than 1 MB/s for more than half a
    // second; lowered within a few turns of the budget), then still at its
    // own priority.
    let typing = typist(&server).await;
    let started = Instant::now();
    assert!(
        wait_until(secs(10), || async {
            started.elapsed() > Duration::from_secs(1)
                && server.info(&id).await["outputOffset"].as_u64() > Some(4 << 20)
        })
        .await,
        "yes did not flood"
    );
    // Watched throughout, not once: a lowering undone by a pause would
    // pass a single look.
    assert!(!nice_becomes(pid, 10, secs(3)).await, "a flood was lowered by default");
    assert_eq!(group_nice(pid), Some(own));
    typing.abort();
    server.terminate(&id).await;
}

/// The processes other than `leader` in `leader`'s autogroup.
fn group_members(leader: u32) -> Vec<u32> {
    let text = std::fs::read_to_string(format!("/proc/{leader}/autogroup")).unwrap_or_default();
    let Some(group) = text.split_whitespace().next().map(str::to_owned) else {
        return Vec::new();
    };
    std::fs::read_dir("/proc")
        .unwrap()
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .filter(|&pid| pid != leader)
        .filter(|pid| {
            std::fs::read_to_string(format!("/proc/{pid}/autogroup"))
                .is_ok_and(|t| t.split_whitespace().next() == Some(group.as_str()))
        })
        .collect()
}

#[tokio::test]
async fn a_group_lowered_when_its_leader_exits_is_restored_through_what_is_left() {
    if !autogroups() {
        return;
    }
    // A long grace: what the leader leaves behind runs on (it holds the
    // terminal through its stderr) for the whole test.
    let server = TestServer::start_with(
        &[],
        &[
            ("TERMSTREAM_TERMINATE_GRACE_MS", "60000"),
            ("TERMSTREAM_FLOOD_NICE", "10"),
        ],
    )
    .await;
    let info = server
        .create(json!({
            "argv": ["sh", "-c", "trap '' HUP; yes > /dev/null & exec yes"],
            "cols": 80,
            "rows": 24,
        }))
        .await;
    let id = info["id"].as_str().unwrap().to_owned();
    let pid = info["pid"].as_u64().unwrap() as u32;
    let own = server_nice(&server);
    let typing = typist(&server).await;
    assert!(
        nice_becomes(pid, 10, secs(10)).await,
        "the flood was not lowered: {:?}",
        group_nice(pid)
    );
    let deadline = Instant::now() + secs(5);
    let mut left = group_members(pid);
    while left.is_empty() && Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
        left = group_members(pid);
    }
    // Killed however the test ends (a long grace would leave them running).
    let kill = KillOnDrop(left.clone());
    assert!(!left.is_empty(), "the background job is not in the leader's group");
    let job = left[0];
    assert_eq!(group_nice(job), Some(10), "the background job shares the lowered group");

    // The leader exits while lowered; its background job runs on.
    rustix::process::kill_process(
        rustix::process::Pid::from_raw(pid as i32).unwrap(),
        rustix::process::Signal::KILL,
    )
    .expect("SIGKILL");
    assert!(
        nice_becomes(job, own, secs(5)).await,
        "the group stayed lowered after its leader exited: {:?}",
        group_nice(job)
    );
    assert_eq!(group_nice(job), Some(own));
    typing.abort();
    drop(kill);
    server.terminate(&id).await;
}

/// Kills its processes when dropped.
struct KillOnDrop(Vec<u32>);

impl Drop for KillOnDrop {
    fn drop(&mut self) {
        for &pid in &self.0 {
            if let Some(pid) = rustix::process::Pid::from_raw(pid as i32) {
                let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
            }
        }
    }
}
