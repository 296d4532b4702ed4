//! `termstream run` through a TCP proxy that cuts the connection again and
//! again: the client reconnects by itself and resumes from the first offset
//! it lacks, so every line arrives exactly once, in order. Ctrl-C and
//! timeouts with the server down; `run --tty` sends a window change made
//! during an outage once it is back.

mod common;

use std::sync::atomic::Ordering;

use tokio::io::AsyncBufReadExt;

use common::TestServer;
use common::cli::{self, CuttingProxy, GateProxy};

#[tokio::test]
async fn run_prints_every_line_once_across_cut_connections() {
    let mut proxy = CuttingProxy::bind().await;
    let server = TestServer::start_with(&["--allowed-host", &proxy.addr], &[]).await;
    // About 1.3 MB of output; each connection is cut after 100 KiB, ten times.
    proxy.start(server.addr(), 100 * 1024, 10);
    let url = format!("http://{}", proxy.addr);
    let out = cli::run(&url, &["run", "--", "seq", "1", "200000"], b"").await;
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let expected: String = (1..=200_000).map(|n| format!("{n}\n")).collect();
    let text = out.stdout_text();
    if text != expected {
        let lines: Vec<&str> = text.lines().collect();
        let first_bad = lines
            .iter()
            .enumerate()
            .find(|(i, l)| **l != (i + 1).to_string())
            .map(|(i, l)| (i, l.to_string()));
        panic!("{} lines, first wrong: {first_bad:?}", lines.len());
    }
    assert_eq!(proxy.cut.load(Ordering::SeqCst), 10, "the proxy cut the stream");
}

#[tokio::test]
async fn run_of_a_session_lost_in_a_server_restart_says_so_and_exits_255() {
    let mut proxy = CuttingProxy::bind().await;
    let server = TestServer::start_with(&["--allowed-host", &proxy.addr], &[]).await;
    proxy.start(server.addr(), usize::MAX, 0);
    let url = format!("http://{}", proxy.addr);
    let mut cmd = cli::command(
        &url,
        &["run", "--id", "lost1", "--", "sh", "-c", "echo started; sleep 60"],
    );
    cmd.stdout(std::process::Stdio::piped());
    let run = tokio::spawn(cli::run_cmd(cmd, b""));
    wait_created(&server, "lost1").await;
    server.read_output_until("lost1", "started", common::secs(10)).await;
    let epoch = server.info("lost1").await["epoch"].as_str().unwrap().to_owned();
    let server = server.restart();
    common::kill_marked(&epoch);
    *proxy.upstream.lock().unwrap() = server.addr().to_owned();
    let out = run.await.unwrap();
    assert_eq!(out.code, 255, "{out:?}");
    assert_eq!(out.stdout_text(), "started\n");
    assert!(out.stderr.contains("lost1 was lost"), "{out:?}");
}

#[tokio::test]
async fn ctrl_c_terminates_and_a_second_one_only_detaches() {
    use rustix::process::{Pid, Signal, kill_process};
    let server = TestServer::start().await;
    let url = server.url("");
    for (id, presses) in [("int1", 1), ("int2", 2)] {
        let mut cmd = cli::command(&url, &["run", "--id", id, "--", "sh", "-c", "echo up; sleep 60"]);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        let mut child = cmd.spawn().unwrap();
        wait_created(&server, id).await;
        // The CLI shows the output: it is attached and watching for Ctrl-C.
        let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
        let first = tokio::time::timeout(common::secs(10), stdout.next_line()).await;
        assert_eq!(first.ok().and_then(|l| l.ok()).flatten().as_deref(), Some("up"), "{id}");
        let pid = Pid::from_raw(child.id().unwrap() as i32).unwrap();
        kill_process(pid, Signal::INT).unwrap();
        // The first press is announced; the second comes after it (two
        // signals sent at once would merge into one).
        let mut stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
        let line = tokio::time::timeout(common::secs(10), stderr.next_line())
            .await
            .unwrap()
            .unwrap();
        assert!(line.is_some_and(|l| l.contains("Ctrl-C again")), "{id}");
        if presses == 2 {
            kill_process(pid, Signal::INT).unwrap();
        }
        let rest = tokio::spawn(async move {
            let mut all = String::new();
            while let Ok(Some(l)) = stderr.next_line().await {
                all.push_str(&l);
            }
            all
        });
        let out = tokio::time::timeout(common::secs(30), child.wait_with_output())
            .await
            .expect("run ends after Ctrl-C")
            .unwrap();
        assert_eq!(out.status.code(), Some(130), "{id}: {out:?}");
        let status = server.info(id).await["status"].clone();
        if presses == 1 {
            assert_eq!(status, "terminated", "one Ctrl-C terminates");
        } else {
            assert_eq!(status, "running", "a second Ctrl-C only detaches");
            let said = rest.await.unwrap();
            assert!(said.contains("keeps running"), "{said}");
            // A command session is followed with `logs`; `attach` refuses it.
            assert!(said.contains("termstream logs --follow int2"), "{said}");
            assert!(!said.contains("attach"), "{said}");
            server.terminate(id).await;
        }
    }
}

#[tokio::test]
async fn ctrl_c_with_the_server_down_says_so_and_a_second_one_ends_run() {
    use rustix::process::{Pid, Signal, kill_process};
    let mut server = TestServer::start().await;
    let (child, mut stderr) = run_then_crash(
        &mut server,
        "down1",
        &["run", "--id", "down1", "--", "sh", "-c", "echo up; sleep 60"],
    )
    .await;
    let pid = Pid::from_raw(child.id().unwrap() as i32).unwrap();
    kill_process(pid, Signal::INT).unwrap();
    // The terminate cannot get through: run says so instead of waiting
    // silently for an end it will not see.
    let (told, said) = read_until(&mut stderr, "cannot reach the server to terminate down1").await;
    assert!(told.is_some(), "{said}");
    assert!(said.contains("Ctrl-C again stops waiting"), "{said}");
    // Another Ctrl-C stops waiting (it was ignored: run waited on forever).
    kill_process(pid, Signal::INT).unwrap();
    let out = tokio::time::timeout(common::secs(10), child.wait_with_output())
        .await
        .expect("run ends at the next Ctrl-C")
        .unwrap();
    assert_eq!(out.status.code(), Some(130), "{out:?}");
    // Read to the end: other notes (reconnecting) may come before it.
    let rest = read_rest(&mut stderr).await;
    assert!(rest.contains("may still be running"), "{rest}");
}

/// Waits until the CLI has created session `id`.
async fn wait_created(server: &TestServer, id: &str) {
    let path = format!("/api/sessions/{id}");
    let made = common::wait_until(common::secs(10), || async { server.get(&path).await.0 == 200 }).await;
    assert!(made, "the CLI did not create {id}");
}

/// Starts the CLI with `args` (a program whose first line is `up`) as
/// session `id`, waits for that line, then crashes the server; the crash
/// orphans the program, so it is ended here, not by the server. Gives the
/// CLI and its stderr.
async fn run_then_crash(server: &mut TestServer, id: &str, args: &[&str]) -> (tokio::process::Child, StderrLines) {
    let mut cmd = cli::command(&server.url(""), args);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let mut stdout = tokio::io::BufReader::new(child.stdout.take().unwrap()).lines();
    let first = tokio::time::timeout(common::secs(10), stdout.next_line()).await;
    assert_eq!(first.ok().and_then(|l| l.ok()).flatten().as_deref(), Some("up"));
    let epoch = server.info(id).await["epoch"].as_str().unwrap().to_owned();
    server.crash();
    common::kill_marked(&epoch);
    let stderr = tokio::io::BufReader::new(child.stderr.take().unwrap()).lines();
    (child, stderr)
}

/// The CLI's stderr, line by line.
type StderrLines = tokio::io::Lines<tokio::io::BufReader<tokio::process::ChildStderr>>;

/// Reads `lines` (for up to 20 s) until one contains `needle`: that line,
/// if it came, and all read up to it.
async fn read_until(lines: &mut StderrLines, needle: &str) -> (Option<String>, String) {
    let mut said = String::new();
    let found = tokio::time::timeout(common::secs(20), async {
        while let Ok(Some(l)) = lines.next_line().await {
            said.push_str(&l);
            said.push('\n');
            if l.contains(needle) {
                return Some(l);
            }
        }
        None
    })
    .await;
    (found.ok().flatten(), said)
}

/// The rest of `lines`, to their end (or what came within 10 s).
async fn read_rest(lines: &mut StderrLines) -> String {
    let mut rest = String::new();
    let _ = tokio::time::timeout(common::secs(10), async {
        while let Ok(Some(l)) = lines.next_line().await {
            rest.push_str(&l);
            rest.push('\n');
        }
    })
    .await;
    rest
}

#[tokio::test]
async fn a_timeout_with_the_server_down_says_how_to_stop_waiting() {
    // No Ctrl-C was pressed: the note must not say "again". (A first
    // Ctrl-C now only asks to terminate, a second within 1 s detaches.)
    let mut server = TestServer::start().await;
    let (mut child, mut stderr) = run_then_crash(
        &mut server,
        "down2",
        &[
            "run",
            "--id",
            "down2",
            "--timeout",
            "1s",
            "--",
            "sh",
            "-c",
            "echo up; sleep 60",
        ],
    )
    .await;
    let (told, said) = read_until(&mut stderr, "cannot reach the server to terminate down2").await;
    let line = told.unwrap_or_else(|| panic!("no note: {said}"));
    assert!(line.contains("Ctrl-C twice within 1 s stops waiting"), "{line}");
    child.kill().await.unwrap();
}

#[tokio::test]
async fn run_tty_sends_a_window_change_made_while_away_after_it_reconnects() {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut proxy = GateProxy::bind().await;
    let server = TestServer::start_with(&["--allowed-host", &proxy.addr], &[]).await;
    proxy.start(server.addr());
    let (pty, pts) = pty_process::open().expect("a pty");
    pty.resize(pty_process::Size::new(30, 100)).expect("resize");
    let program = r#"while read -r l; do if [ "$l" = size ]; then stty size; else echo "got:$l"; fi; done"#;
    let mut child = pty_process::Command::new(env!("CARGO_BIN_EXE_termstream"))
        .args(["run", "--tty", "--id", "rz", "--", "sh", "-c", program])
        .env("TERMSTREAM_SERVER", format!("http://{}", proxy.addr))
        .env_remove("TERMSTREAM_TOKEN")
        .spawn_borrowed(&pts)
        .expect("termstream starts");
    let (mut reader, mut writer) = pty.into_split();
    let mut seen = Vec::new();
    writer.write_all(b"hello\r").await.unwrap();
    read_until(&mut reader, &mut seen, "got:hello").await;
    // An outage: every connection severed, new ones refused.
    proxy.down();
    // The client saw it (a reconnect refused): its pooled REST connections
    // are gone too, so the resize below opens a new one, refused.
    let away = common::wait_until(common::secs(10), || async { !proxy.refused.lock().unwrap().is_empty() }).await;
    assert!(away, "no reconnect tried");
    writer.resize(pty_process::Size::new(40, 120)).expect("resize");
    // The resize sent at the window change was refused.
    let refused = common::wait_until(common::secs(10), || async { proxy.refused_one("/resize") }).await;
    assert!(
        refused,
        "no resize tried while away: {:?}",
        proxy.refused.lock().unwrap()
    );
    assert_eq!(server.info("rz").await["cols"], 100);
    proxy.up();
    // Back: the size is sent again (it stayed 100 x 30).
    let resized = common::wait_until(common::secs(20), || async {
        let info = server.info("rz").await;
        info["cols"] == 120 && info["rows"] == 40
    })
    .await;
    assert!(resized, "not resized after the reconnect: {}", server.info("rz").await);
    writer.write_all(b"size\r").await.unwrap();
    read_until(&mut reader, &mut seen, "40 120").await;
    server.terminate("rz").await;
    let status = tokio::time::timeout(common::secs(10), child.wait())
        .await
        .expect("run ends with its program")
        .unwrap();
    assert_eq!(status.code(), Some(129));

    /// Reads the PTY into `seen` until it holds `needle` (10 s at most).
    async fn read_until(from: &mut pty_process::OwnedReadPty, seen: &mut Vec<u8>, needle: &str) {
        let found = tokio::time::timeout(common::secs(10), async {
            while !String::from_utf8_lossy(seen).contains(needle) {
                let mut buf = [0u8; 4096];
                match from.read(&mut buf).await {
                    Ok(n) if n > 0 => seen.extend_from_slice(&buf[..n]),
                    _ => return false,
                }
            }
            true
        })
        .await;
        assert!(
            matches!(found, Ok(true)),
            "{needle:?} not seen: {:?}",
            String::from_utf8_lossy(seen)
        );
    }
}
