//! How a session's program is started: a session leader with its PTY as
//! controlling terminal (so job control and Ctrl-C work), its cwd and
//! environment, a clean signal state and only fds 0-2, and the same errors
//! as ever for what cannot be started.

mod common;

use std::time::Duration;

use common::{TestServer, secs, wait_until};
use serde_json::{Value, json};

/// The fields of `/proc/PID/stat` these tests read.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
struct Stat {
    pgrp: u32,
    session: u32,
    tty_nr: u64,
    /// The foreground process group of the process's controlling terminal.
    tpgid: i64,
}

/// `/proc/PID/stat` of `pid`, fields counted from the last `)`.
fn stat(pid: u32) -> Option<(String, Stat)> {
    let text = std::fs::read_to_string(format!("/proc/{pid}/stat")).ok()?;
    let comm = text[text.find('(')? + 1..text.rfind(')')?].to_string();
    let f: Vec<&str> = text[text.rfind(')')? + 2..].split(' ').collect();
    Some((
        comm,
        Stat {
            pgrp: f.get(2)?.parse().ok()?,
            session: f.get(3)?.parse().ok()?,
            tty_nr: f.get(4)?.parse().ok()?,
            tpgid: f.get(5)?.parse().ok()?,
        },
    ))
}

/// The pid of a live `sleep` in session `sid`.
fn sleep_in(sid: u32) -> Option<u32> {
    std::fs::read_dir("/proc")
        .ok()?
        .filter_map(|e| e.ok()?.file_name().to_str()?.parse::<u32>().ok())
        .find(|&pid| stat(pid).is_some_and(|(comm, s)| comm == "sleep" && s.session == sid))
}

fn pid_of(info: &Value) -> u32 {
    info["pid"].as_u64().expect("a running session has a pid") as u32
}

#[tokio::test]
async fn a_pty_program_leads_its_session_with_the_pty_as_controlling_terminal() {
    let server = TestServer::start().await;
    // `/dev/tty` opens only for a process with a controlling terminal.
    let info = server
        .create(json!({ "argv": ["sh", "-c", "tty; exec 3</dev/tty && echo ctty-ok; exec sleep 1000"] }))
        .await;
    let id = info["id"].as_str().unwrap();
    let pid = pid_of(&info);
    let out = server.read_output_until(id, "ctty-ok", secs(10)).await;
    assert!(out.contains("/dev/pts/"), "`tty` printed no PTY: {out:?}");
    let (_, s) = stat(pid).expect("the program runs");
    assert_eq!(s.session, pid, "the program is not a session leader: {s:?}");
    assert_eq!(s.pgrp, pid, "the program does not lead its process group: {s:?}");
    assert_ne!(s.tty_nr, 0, "the program has no controlling terminal: {s:?}");
    assert_eq!(
        s.tpgid, pid as i64,
        "the program's group is not the terminal's foreground: {s:?}"
    );
    server.terminate(id).await;
}

#[tokio::test]
async fn ctrl_c_interrupts_a_foreground_job_of_an_interactive_shell() {
    let server = TestServer::start().await;
    let info = server
        .create(json!({ "argv": ["bash", "--norc", "--noprofile", "-i"] }))
        .await;
    let id = info["id"].as_str().unwrap();
    let shell = pid_of(&info);
    server.input(id, "sleep 1000\n").await;
    assert!(
        wait_until(secs(10), || async { sleep_in(shell).is_some() }).await,
        "no sleep started in the shell's session"
    );
    let sleeper = sleep_in(shell).expect("the sleep runs");
    // Job control: the job has a process group of its own, in the
    // terminal's foreground.
    let (_, s) = stat(sleeper).expect("the sleep runs");
    assert_eq!(s.pgrp, sleeper, "the job has no process group of its own: {s:?}");
    assert_eq!(s.tpgid, sleeper as i64, "the job is not in the foreground: {s:?}");
    server.input(id, "\x03").await;
    assert!(
        wait_until(secs(10), || async {
            stat(sleeper).is_none_or(|(comm, _)| comm != "sleep")
        })
        .await,
        "Ctrl-C did not end the foreground sleep"
    );
    server.input(id, "echo back-$((20+22))\n").await;
    server.read_output_until(id, "back-42", secs(10)).await;
    server.terminate(id).await;
}

/// Runs the session `body` asks for to its end and returns its output.
async fn run(server: &TestServer, body: Value) -> String {
    let info = server.create(body).await;
    let id = info["id"].as_str().unwrap();
    server.wait_status(id, "exited", secs(10)).await;
    String::from_utf8_lossy(&server.output_all(id, 0).await).into_owned()
}

#[tokio::test]
async fn cwd_and_env_reach_the_program_of_either_kind() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let cwd = dir.path().canonicalize().unwrap();
    for kind in ["pty", "command"] {
        let out = run(
            &server,
            json!({
                "kind": kind,
                "argv": ["sh", "-c", "echo \"cwd=$(pwd) foo=$FOO marker=${TERMSTREAM_SESSION:+set}\""],
                "cwd": cwd.display().to_string(),
                "env": { "FOO": "bar baz" },
            }),
        )
        .await;
        let want = format!("cwd={} foo=bar baz marker=set", cwd.display());
        assert!(out.contains(&want), "{kind}: {out:?} lacks {want:?}");
    }
}

#[tokio::test]
async fn programs_start_with_no_blocked_signals_and_only_fds_0_to_2() {
    let server = TestServer::start().await;
    for kind in ["pty", "command"] {
        // `cat` itself is the program: its status is what it was given.
        let status = run(&server, json!({ "kind": kind, "argv": ["cat", "/proc/self/status"] })).await;
        let field = |name: &str| {
            let line = status
                .lines()
                .find(|l| l.starts_with(name))
                .unwrap_or_else(|| panic!("{status}"));
            u64::from_str_radix(line[name.len()..].trim(), 16).unwrap()
        };
        assert_eq!(field("SigBlk:"), 0, "{kind}: signals blocked at start");
        let sigpipe = 1 << (13 - 1);
        assert_eq!(field("SigIgn:") & sigpipe, 0, "{kind}: SIGPIPE ignored at start");
        // `ls` lists its own directory fd too; a plain `sh` opens nothing.
        let fds = run(&server, json!({ "kind": kind, "argv": ["sh", "-c", "ls /proc/$$/fd"] })).await;
        let fds: Vec<&str> = fds.split_whitespace().collect();
        assert_eq!(fds, ["0", "1", "2"], "{kind}: the program got other fds");
    }
}

#[tokio::test]
async fn what_cannot_be_started_gets_the_same_errors() {
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    // An executable whose interpreter is missing: found, but `execve` fails
    // in the child, which must come back as the request's error.
    let broken = dir.path().join("broken");
    std::fs::write(&broken, "#!/no/such/interpreter\n").unwrap();
    // An executable without `#!` runs through /bin/sh, as with `execvp`.
    let script = dir.path().join("script");
    std::fs::write(&script, "echo script-ran-$((1+1))\n").unwrap();
    for f in [&broken, &script] {
        std::fs::set_permissions(f, std::os::unix::fs::PermissionsExt::from_mode(0o755)).unwrap();
    }
    for kind in ["pty", "command"] {
        let cases = [
            (
                json!({ "kind": kind, "argv": ["no-such-program-xyz"] }),
                422,
                "spawn_failed",
                "program not found",
            ),
            (
                json!({ "kind": kind, "argv": ["true"], "cwd": "/no/such/dir" }),
                422,
                "bad_cwd",
                "does not exist",
            ),
            (
                json!({ "kind": kind, "argv": [broken] }),
                422,
                "spawn_failed",
                "No such file or directory",
            ),
        ];
        for (body, status, code, message) in cases {
            let (got, answer) = server.post("/api/sessions", body.clone()).await;
            assert_eq!(got.as_u16(), status, "{body} answered {answer}");
            assert_eq!(answer["error"]["code"], code, "{body} answered {answer}");
            let text = answer["error"]["message"].as_str().unwrap_or_default();
            assert!(text.contains(message), "{body} answered {answer}");
        }
        let out = run(&server, json!({ "kind": kind, "argv": [script] })).await;
        assert!(out.contains("script-ran-2"), "{kind}: {out:?}");
    }
    // The children that failed before exec were reaped.
    assert!(
        wait_until(Duration::from_secs(5), || async { server.zombie_children().is_empty() }).await,
        "zombies left: {:?}",
        server.zombie_children()
    );
}
