//! `termstream attach` under a real PTY driven from the test: it draws the
//! screen of a running full-screen program, sends keys, passes window
//! changes on (the program sees the new `stty size`), detaches with the
//! detach keys leaving the session running, and gives the local terminal its
//! mode back. Closing lines start on a line of their own, with no empty row
//! above them. `run` on a terminal: `tests/cli_run_tty.rs`.
//! What `attach` prints is read through a screen model (avt), as a terminal
//! would show it (`common::pty`). When the terminal goes, or is not there:
//! `tests/cli_attach_signals.rs`.

mod common;

use std::time::Duration;

use common::pty::{PROGRAM, Screen, read_until, spawn_on_pty};
use common::{TestServer, secs};
use rustix::termios::{self, LocalModes};
use tokio::io::AsyncWriteExt;

#[tokio::test]
async fn shell_starts_a_shell_and_attaches() {
    let server = TestServer::start().await;
    let (mut screen, mut writer, _pts, mut child) = spawn_on_pty(&server.url(""), &["shell", "--id", "sh1"]);
    let made = common::wait_until(secs(10), || async { server.get("/api/sessions/sh1").await.0 == 200 }).await;
    assert!(made, "shell created no session");
    assert_eq!(server.info("sh1").await["kind"], "pty");
    writer.write_all(b"echo sum-$((6*7))\r").await.unwrap();
    screen.wait_for("sum-42", secs(10)).await;
    writer.write_all(b"exit\r").await.unwrap();
    let status = common::exit_within_10s(&mut child, "shell ends").await;
    assert_eq!(status.code(), Some(0));
    screen.wait_for("[exited (session sh1, code 0)]", secs(5)).await;
}

#[tokio::test]
async fn attach_redraws_the_screen_after_a_cut_connection() {
    let mut proxy = common::cli::CuttingProxy::bind().await;
    let server = TestServer::start_with(&["--allowed-host", &proxy.addr], &[]).await;
    server
        .create(serde_json::json!({"id":"rc","argv":["sh","-c",PROGRAM],"cols":100,"rows":30}))
        .await;
    server.read_output_until("rc", "FULL", secs(10)).await;
    // The first connection past 3 KiB towards the client is cut once.
    proxy.start(server.addr(), 3 * 1024, 1);
    let url = format!("http://{}", proxy.addr);
    let (mut screen, mut writer, _pts, mut child) = spawn_on_pty(&url, &["attach", "rc"]);
    screen.wait_for("|FULL|", secs(10)).await;
    let long = "x".repeat(2000);
    writer.write_all(format!("{long}\r").as_bytes()).await.unwrap();
    // The socket is cut; attach says so, reconnects, and draws the screen again.
    let cut = common::wait_until(secs(10), || async {
        proxy.cut.load(std::sync::atomic::Ordering::SeqCst) == 1
    })
    .await;
    assert!(cut, "the proxy did not cut the socket");
    writer.write_all(b"after\r").await.unwrap();
    screen.wait_for("got:after", secs(20)).await;
    assert!(
        screen.text().contains(&format!("got:{}", &long[..90])),
        "{}",
        screen.text()
    );
    assert!(
        String::from_utf8_lossy(&screen.all).contains("the server is away"),
        "a status line while away"
    );
    writer.write_all(b"\x1cd").await.unwrap();
    let status = common::exit_within_10s(&mut child, "detached").await;
    assert_eq!(status.code(), Some(0));
    server.terminate("rc").await;
}

#[tokio::test]
async fn attach_shows_the_screen_types_resizes_and_detaches() {
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"fs","argv":["sh","-c",PROGRAM],"cols":80,"rows":24}))
        .await;
    server.read_output_until("fs", "FULL", secs(10)).await;

    // A fresh PTY's mode is what attach must leave behind.
    let (_master, fresh) = pty_process::open().expect("a pty");
    let cooked = termios::tcgetattr(&fresh).expect("termios");
    assert!(cooked.local_modes.contains(LocalModes::ICANON | LocalModes::ECHO));
    let (mut screen, mut writer, pts, mut child) = spawn_on_pty(&server.url(""), &["attach", "fs"]);
    // The program's screen, drawn at our size, in raw mode.
    screen.wait_for("|FULL|", secs(10)).await;
    assert!(screen.text().starts_with("+----+\n|FULL|\n+----+"), "{}", screen.text());
    let raw = termios::tcgetattr(&pts).expect("termios");
    assert!(
        !raw.local_modes.contains(LocalModes::ICANON),
        "attach puts the terminal in raw mode"
    );
    let info = server.info("fs").await;
    assert_eq!((info["cols"].as_u64(), info["rows"].as_u64()), (Some(100), Some(30)));

    // Keys reach the program; the program sees our window size.
    writer.write_all(b"hello\r").await.unwrap();
    screen.wait_for("got:hello", secs(10)).await;
    writer.write_all(b"size\r").await.unwrap();
    screen.wait_for("30 100", secs(10)).await;

    // A local resize reaches the session and its program.
    writer.resize(pty_process::Size::new(40, 120)).expect("resize");
    let resized = common::wait_until(secs(10), || async {
        let info = server.info("fs").await;
        info["cols"] == 120 && info["rows"] == 40
    })
    .await;
    assert!(resized, "the session was not resized: {}", server.info("fs").await);
    writer.write_all(b"size\r").await.unwrap();
    screen.wait_for("40 120", secs(10)).await;

    // Ctrl-\ then d detaches; the session runs on.
    writer.write_all(b"\x1cd").await.unwrap();
    let status = common::exit_within_10s(&mut child, "attach ends after the detach keys").await;
    assert_eq!(status.code(), Some(0));
    screen.wait_for("[detached (from session fs)]", secs(5)).await;
    assert_eq!(server.info("fs").await["status"], "running");
    let after = termios::tcgetattr(&pts).expect("termios");
    assert_eq!(after.local_modes, cooked.local_modes, "local modes restored");
    assert_eq!(after.input_modes, cooked.input_modes, "input modes restored");
    assert_eq!(after.output_modes, cooked.output_modes, "output modes restored");
    server.terminate("fs").await;
}

#[tokio::test]
async fn a_read_only_attach_sends_no_keys_and_a_command_session_is_refused() {
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"ro","argv":["sh","-c",PROGRAM],"cols":80,"rows":24}))
        .await;
    server.read_output_until("ro", "FULL", secs(10)).await;
    let (mut screen, mut writer, _pts, mut child) = spawn_on_pty(
        &server.url(""),
        &["attach", "--read-only", "--detach-keys", "ctrl-a,q", "ro"],
    );
    screen.wait_for("|FULL|", secs(10)).await;
    writer.write_all(b"typed\r\x01q").await.unwrap();
    let status = common::exit_within_10s(&mut child, "detached").await;
    assert_eq!(status.code(), Some(0));
    // Nothing reached the program, and the window size was left alone.
    let info = server.info("ro").await;
    assert_eq!((info["cols"].as_u64(), info["rows"].as_u64()), (Some(80), Some(24)));
    server.input("ro", "probe\n").await;
    let out = server.read_output_until("ro", "got:probe", secs(10)).await;
    assert!(!out.contains("typed"), "{out:?}");

    server
        .create(serde_json::json!({"id":"cmd","kind":"command","argv":["sleep","30"]}))
        .await;
    let out = common::cli::run(&server.url(""), &["attach", "cmd"], b"").await;
    assert_eq!(out.code, 2, "{out:?}");
    assert!(out.stderr.contains("logs --follow cmd"), "{out:?}");
}

#[tokio::test]
async fn the_closing_line_follows_the_output_where_the_cursor_was() {
    // A program that never takes the alternate screen: leaving it, which
    // restores a saved cursor even then (the top-left corner in xterm and
    // avt), must not be sent, or the closing line lands on the first row.
    let server = TestServer::start().await;
    let program = r#"printf 'one\ntwo\nask$ '; read -r l; echo "got:$l""#;
    server
        .create(serde_json::json!({"id":"pr","argv":["sh","-c",program],"cols":100,"rows":30}))
        .await;
    server.read_output_until("pr", "ask$", secs(10)).await;
    let lines = |screen: &Screen| screen.text().lines().map(str::to_owned).collect::<Vec<_>>();

    // Detached at the prompt: the closing line gets a row of its own.
    let (mut screen, mut writer, _pts, mut child) = spawn_on_pty(&server.url(""), &["attach", "pr"]);
    screen.wait_for("ask$", secs(10)).await;
    writer.write_all(b"\x1cd").await.unwrap();
    let status = common::exit_within_10s(&mut child, "detached").await;
    assert_eq!(status.code(), Some(0));
    screen.wait_for("[detached (from session pr)]", secs(5)).await;
    assert_eq!(
        lines(&screen).get(..4),
        Some(&["one", "two", "ask$", "[detached (from session pr)]"].map(String::from)[..]),
        "{}",
        screen.text()
    );

    // Ended: the closing line follows the program's last line.
    let (mut screen, mut writer, _pts, mut child) = spawn_on_pty(&server.url(""), &["attach", "pr"]);
    screen.wait_for("ask$", secs(10)).await;
    writer.write_all(b"x\r").await.unwrap();
    let status = common::exit_within_10s(&mut child, "ended").await;
    assert_eq!(status.code(), Some(0));
    screen.wait_for("[exited (session pr, code 0)]", secs(5)).await;
    assert_eq!(
        lines(&screen).get(..5),
        Some(&["one", "two", "ask$ x", "got:x", "[exited (session pr, code 0)]"].map(String::from)[..]),
        "{}",
        screen.text()
    );
}

#[tokio::test]
async fn no_empty_row_comes_before_the_closing_line() {
    // The snapshot puts the cursor last (`CSI row;col H`); where that is
    // the start of an empty row, the closing line goes there, not a row
    // further down.
    let server = TestServer::start().await;
    for (id, program, above) in [
        ("nb", "echo one; echo two; exec sleep 60", &["one", "two"][..]),
        ("nb0", "exec sleep 60", &[][..]),
    ] {
        server
            .create(serde_json::json!({"id":id,"argv":["sh","-c",program],"cols":100,"rows":30}))
            .await;
        if !above.is_empty() {
            server.read_output_until(id, "two", secs(10)).await;
        }
        let (mut screen, mut writer, _pts, mut child) = spawn_on_pty(&server.url(""), &["attach", id]);
        // Attach resets the terminal, then draws the snapshot in the same
        // step: once this is wiped, the snapshot is drawn.
        screen.vt.feed("junk");
        screen
            .wait_until(
                "the screen reset",
                |vt| !common::pty::screen_text(vt).contains("junk"),
                secs(10),
            )
            .await;
        writer.write_all(b"\x1cd").await.unwrap();
        let status = common::exit_within_10s(&mut child, "detached").await;
        assert_eq!(status.code(), Some(0));
        let closing = format!("[detached (from session {id})]");
        screen.wait_for(&closing, secs(5)).await;
        let mut want: Vec<String> = above.iter().map(|s| s.to_string()).collect();
        want.push(closing);
        let lines: Vec<String> = screen.text().lines().map(str::to_owned).collect();
        assert_eq!(lines.get(..want.len()), Some(&want[..]), "{}", screen.text());
        server.terminate(id).await;
    }
}

#[tokio::test]
async fn the_closing_line_follows_the_screen_under_a_full_screen_program() {
    // The snapshot of a program on the alternate screen draws the screen
    // under it, saves the cursor (`ESC 7`) and enters the alternate screen
    // with `CSI ? 1047 h`. Leaving it with `CSI ? 1049 l`, xterm (and avt
    // here) restore that cursor, tmux does not (the cursor stays where it is
    // on the alternate screen, and the closing line went over `one`): attach
    // now moves the cursor back itself (a unit test in `cli/leave.rs`). Here
    // the move must agree with the restore.
    let server = TestServer::start().await;
    let program = r#"echo one; echo two; printf '\033[?1049h\033[H\033[2JFULL'; exec sleep 60"#;
    server
        .create(serde_json::json!({"id":"fs2","argv":["sh","-c",program],"cols":100,"rows":30}))
        .await;
    server.read_output_until("fs2", "FULL", secs(10)).await;
    let (mut screen, mut writer, _pts, mut child) = spawn_on_pty(&server.url(""), &["attach", "fs2"]);
    screen.wait_for("FULL", secs(10)).await;
    writer.write_all(b"\x1cd").await.unwrap();
    let status = common::exit_within_10s(&mut child, "detached").await;
    assert_eq!(status.code(), Some(0));
    screen.wait_for("[detached (from session fs2)]", secs(5)).await;
    let lines: Vec<String> = screen.text().lines().map(str::to_owned).collect();
    let want = ["one", "two", "[detached (from session fs2)]"].map(String::from);
    assert_eq!(lines.get(..3), Some(&want[..]), "{}", screen.text());
    server.terminate("fs2").await;
}

/// CPU time (user + system, in clock ticks) of process `pid` so far.
fn cpu_ticks(pid: u32) -> u64 {
    let stat = std::fs::read_to_string(format!("/proc/{pid}/stat")).expect("the process's stat");
    // After the `(comm)` field: utime and stime are fields 14 and 15.
    let rest = &stat[stat.rfind(')').expect("comm") + 2..];
    let f: Vec<&str> = rest.split_whitespace().collect();
    f[11].parse::<u64>().unwrap() + f[12].parse::<u64>().unwrap()
}

#[tokio::test]
async fn attach_with_stdin_at_its_end_watches_without_spinning() {
    // `termstream attach job < /dev/null`: no keys will come, the screen
    // still does; the loop must not keep asking the closed key channel.
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"w","argv":["sh","-c","echo ready; read -r l; echo got:$l; sleep 60"],"cols":80,"rows":24}))
        .await;
    server.read_output_until("w", "ready", secs(10)).await;
    let mut cmd = common::cli::command(&server.url(""), &["attach", "w"]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().unwrap();
    let pid = child.id().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    read_until(&mut stdout, &mut seen, "ready", secs(10)).await;
    // A second of watching, measured: an idle attach uses next to no CPU
    // (the old loop spun on the closed channel, about a core).
    let before = cpu_ticks(pid);
    tokio::time::sleep(Duration::from_secs(1)).await;
    let used = cpu_ticks(pid) - before;
    assert!(used < 25, "attach used {used} ticks of CPU in a second while idle");
    // It still follows the session.
    server.input("w", "more\n").await;
    read_until(&mut stdout, &mut seen, "got:more", secs(10)).await;
    server.terminate("w").await;
    let status = common::exit_within_10s(&mut child, "ends").await;
    assert_ne!(status.code(), Some(0), "the program was terminated");
}

#[tokio::test]
async fn a_detach_while_the_server_is_away_wipes_the_status_line() {
    let mut server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"aw","argv":["sh","-c","printf 'ask$ '; read -r l"],"cols":100,"rows":30}))
        .await;
    server.read_output_until("aw", "ask$", secs(10)).await;
    let epoch = server.info("aw").await["epoch"].as_str().unwrap().to_owned();
    let (mut screen, mut writer, _pts, mut child) = spawn_on_pty(&server.url(""), &["attach", "aw"]);
    screen.wait_for("ask$", secs(10)).await;
    server.crash();
    // The crash orphans the program: it is ended here, not by the server.
    common::kill_marked(&epoch);
    screen.wait_for("the server is away", secs(10)).await;
    writer.write_all(b"\x1cd").await.unwrap();
    let status = common::exit_within_10s(&mut child, "detached").await;
    assert_eq!(status.code(), Some(0));
    screen.wait_for("[detached (from session aw)]", secs(5)).await;
    // Nothing is retrying any more: the line saying so is gone.
    assert!(!screen.text().contains("the server is away"), "{}", screen.text());
}

#[tokio::test]
async fn a_session_terminated_under_attach_is_said_to_be() {
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"tm","argv":["sh","-c","printf 'ask$ '; read -r l"],"cols":100,"rows":30}))
        .await;
    server.read_output_until("tm", "ask$", secs(10)).await;
    let (mut screen, _writer, _pts, mut child) = spawn_on_pty(&server.url(""), &["attach", "tm"]);
    screen.wait_for("ask$", secs(10)).await;
    server.terminate("tm").await;
    let status = common::exit_within_10s(&mut child, "ends").await;
    // SIGHUP is the first signal of a terminate.
    assert_eq!(status.code(), Some(129));
    // Not "[exited ...]": the program did not end by itself.
    screen.wait_for("[terminated (session tm, code 129)]", secs(5)).await;
}
