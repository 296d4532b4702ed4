//! `termstream attach` under a real PTY driven from the test: it draws the
//! screen of a running full-screen program, sends keys, passes window
//! changes on (the program sees the new `stty size`), detaches with the
//! detach keys leaving the session running, and gives the local terminal its
//! mode back; so does `run --tty` after a full-screen program was killed.
//! With stdout a file (`> rec`), neither writes the mode resets into it.
//! What `attach` prints is read through a screen model (avt), as a terminal
//! would show it.

mod common;

use std::time::{Duration, Instant};

use common::{TestServer, secs};
use rustix::termios::{self, LocalModes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWriteExt};
use tokio::sync::mpsc;

/// A program that takes the alternate screen, draws, and answers lines:
/// `size` with `stty size`, anything else with `got:LINE`.
const PROGRAM: &str = r#"printf '\033[?1049h\033[H\033[2J+----+\n|FULL|\n+----+\n'; while read -r l; do if [ "$l" = size ]; then stty size; else echo "got:$l"; fi; done"#;

/// The attach process's terminal as a person would see it.
struct Screen {
    vt: avt::Terminal,
    rx: mpsc::Receiver<Vec<u8>>,
    /// Everything attach printed, for failure messages and the last line.
    all: Vec<u8>,
}

impl Screen {
    fn text(&self) -> String {
        screen_text(&self.vt)
    }

    /// Reads attach's output until the screen shows `needle`.
    async fn wait_for(&mut self, needle: &str, timeout: Duration) {
        self.wait_until(needle, |vt| screen_text(vt).contains(needle), timeout)
            .await;
    }

    /// Reads the output until `done` holds of the terminal (`what` names
    /// it in the failure).
    async fn wait_until(&mut self, what: &str, done: impl Fn(&avt::Terminal) -> bool, timeout: Duration) {
        let deadline = Instant::now() + timeout;
        while !done(&self.vt) {
            let left = deadline.saturating_duration_since(Instant::now());
            match tokio::time::timeout(left, self.rx.recv()).await {
                Ok(Some(bytes)) => {
                    self.vt.feed(String::from_utf8_lossy(&bytes).as_ref());
                    self.all.extend_from_slice(&bytes);
                }
                _ => panic!(
                    "{what:?} not so after {timeout:?}:\n{}\nraw: {:?}",
                    self.text(),
                    String::from_utf8_lossy(&self.all)
                ),
            }
        }
    }
}

/// Reads `from` into `seen` until it holds `needle`; fails at its end or
/// after `timeout`.
async fn read_until(from: &mut (impl AsyncRead + Unpin), seen: &mut Vec<u8>, needle: &str, timeout: Duration) {
    let deadline = Instant::now() + timeout;
    while !String::from_utf8_lossy(seen).contains(needle) {
        let mut buf = [0u8; 4096];
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, from.read(&mut buf)).await {
            Ok(Ok(n)) if n > 0 => seen.extend_from_slice(&buf[..n]),
            other => panic!("{needle:?} not seen ({other:?}): {:?}", String::from_utf8_lossy(seen)),
        }
    }
}

/// The visible rows of `vt`, without trailing blanks.
fn screen_text(vt: &avt::Terminal) -> String {
    vt.screen()
        .visible_lines()
        .map(|l| l.text().trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts `termstream ARGS` on a fresh PTY of 100 x 30 against `server`.
fn spawn_on_pty(
    server: &str,
    args: &[&str],
) -> (
    Screen,
    pty_process::OwnedWritePty,
    pty_process::Pts,
    tokio::process::Child,
) {
    let (pty, pts) = pty_process::open().expect("a pty");
    pty.resize(pty_process::Size::new(30, 100)).expect("resize");
    let child = pty_process::Command::new(env!("CARGO_BIN_EXE_termstream"))
        .args(args)
        .env("TERMSTREAM_SERVER", server)
        .env_remove("TERMSTREAM_TOKEN")
        .spawn_borrowed(&pts)
        .expect("termstream starts");
    let (mut reader, writer) = pty.into_split();
    let (tx, rx) = mpsc::channel(64);
    tokio::spawn(async move {
        let mut buf = vec![0u8; 8192];
        while let Ok(n) = reader.read(&mut buf).await {
            if n == 0 || tx.send(buf[..n].to_vec()).await.is_err() {
                break;
            }
        }
    });
    let screen = Screen {
        vt: avt::Terminal::new(100, 30).unwrap(),
        rx,
        all: Vec::new(),
    };
    (screen, writer, pts, child)
}

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
    let status = tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("shell ends")
        .unwrap();
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
    let status = tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("detached")
        .unwrap();
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
    let status = tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("attach ends after the detach keys")
        .unwrap();
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
    let status = tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("detached")
        .unwrap();
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
    let status = tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("detached")
        .unwrap();
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
    let status = tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("ended")
        .unwrap();
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
async fn run_tty_gives_the_screen_back_after_a_killed_full_screen_program() {
    // A program that takes the alternate screen, hides the cursor and
    // ignores SIGHUP and SIGTERM: the timeout ends it by SIGKILL, so it
    // cannot give the terminal back itself.
    let server = TestServer::start_with(&["--terminate-grace-ms", "200"], &[]).await;
    let program = r#"printf '\033[?1049h\033[?25lFULL'; trap '' HUP TERM; sleep 60"#;
    let (mut screen, _writer, _pts, mut child) = spawn_on_pty(
        &server.url(""),
        &["run", "--tty", "--timeout", "1s", "--", "sh", "-c", program],
    );
    screen.wait_for("FULL", secs(10)).await;
    let status = tokio::time::timeout(secs(20), child.wait())
        .await
        .expect("run ends at its timeout")
        .unwrap();
    assert_eq!(status.code(), Some(124));
    screen
        .wait_until(
            "the primary screen with a visible cursor",
            |vt| vt.active_screen_kind() == avt::ScreenKind::Primary && vt.cursor().visible,
            secs(5),
        )
        .await;
    // Why it ended is said where it stays in view.
    screen
        .wait_for("ran past its timeout and was terminated", secs(5))
        .await;
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
    let status = tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("ends")
        .unwrap();
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
    let status = tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("detached")
        .unwrap();
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
    let status = tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("ends")
        .unwrap();
    // SIGHUP is the first signal of a terminate.
    assert_eq!(status.code(), Some(129));
    // Not "[exited ...]": the program did not end by itself.
    screen.wait_for("[terminated (session tm, code 129)]", secs(5)).await;
}

#[tokio::test]
async fn sigterm_gives_the_terminal_back_and_leaves_the_session_running() {
    use rustix::process::{Pid, Signal, kill_process};
    // `kill PID` of an attach or a `run --tty` from another terminal: the
    // default action would end it with its terminal raw and on the
    // alternate screen.
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"st","argv":["sh","-c",PROGRAM],"cols":100,"rows":30}))
        .await;
    server.read_output_until("st", "FULL", secs(10)).await;
    let (_master, fresh) = pty_process::open().expect("a pty");
    let cooked = termios::tcgetattr(&fresh).expect("termios");
    let runs: [&[&str]; 2] = [
        &["attach", "st"],
        &["run", "--tty", "--id", "st2", "--", "sh", "-c", PROGRAM],
    ];
    for args in runs {
        let (mut screen, _writer, pts, mut child) = spawn_on_pty(&server.url(""), args);
        screen.wait_for("|FULL|", secs(10)).await;
        let pid = Pid::from_raw(child.id().unwrap() as i32).unwrap();
        kill_process(pid, Signal::TERM).unwrap();
        let status = tokio::time::timeout(secs(10), child.wait())
            .await
            .expect("ends at SIGTERM")
            .unwrap();
        assert_eq!(status.code(), Some(143), "{args:?}: {status:?}");
        let after = termios::tcgetattr(&pts).expect("termios");
        assert_eq!(after.local_modes, cooked.local_modes, "{args:?}: local modes restored");
        screen
            .wait_until(
                "the primary screen with a visible cursor",
                |vt| vt.active_screen_kind() == avt::ScreenKind::Primary && vt.cursor().visible,
                secs(5),
            )
            .await;
    }
    for id in ["st", "st2"] {
        assert_eq!(server.info(id).await["status"], "running", "{id}");
        server.terminate(id).await;
    }
}

#[tokio::test]
async fn a_closed_terminal_detaches_attach_and_run_tty_with_129() {
    // The terminal window is closed: SIGHUP, and every write to the
    // terminal fails from then on, the closing line too.
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"hu","argv":["sh","-c",PROGRAM],"cols":100,"rows":30}))
        .await;
    server.read_output_until("hu", "FULL", secs(10)).await;
    let runs: [&[&str]; 2] = [
        &["attach", "hu"],
        &["run", "--tty", "--id", "hu2", "--", "sh", "-c", PROGRAM],
    ];
    for args in runs {
        hang_up_under(&server, args, "|FULL|", false).await;
    }
    for id in ["hu", "hu2"] {
        assert_eq!(server.info(id).await["status"], "running", "{id}");
        server.terminate(id).await;
    }
}

#[tokio::test]
async fn a_closed_terminal_under_a_chatty_program_is_a_hang_up() {
    // The program prints all the time, so a write to the closed terminal
    // (EIO) can come before SIGHUP is seen; it must end the same way (it
    // panicked writing the error line to the dead terminal: exit 101).
    // SIGHUP is held blocked in termstream to make that order certain.
    let server = TestServer::start().await;
    let chatty = "echo CHAT; while :; do echo x; sleep 0.01; done";
    server
        .create(serde_json::json!({"id":"ch","argv":["sh","-c",chatty],"cols":100,"rows":30}))
        .await;
    server.read_output_until("ch", "CHAT", secs(10)).await;
    let runs: [&[&str]; 2] = [
        &["attach", "ch"],
        &["run", "--tty", "--id", "ch2", "--", "sh", "-c", chatty],
    ];
    for args in runs {
        hang_up_under(&server, args, "CHAT", true).await;
    }
    for id in ["ch", "ch2"] {
        assert_eq!(server.info(id).await["status"], "running", "{id}");
        server.terminate(id).await;
    }
}

/// Runs `termstream ARGS` on a PTY until it shows `needle`, closes the
/// PTY, and expects an exit with 129. `block_hup`: SIGHUP is blocked in
/// termstream, so only the failed writes can tell it the terminal is gone.
async fn hang_up_under(server: &TestServer, args: &[&str], needle: &str, block_hup: bool) {
    let (mut pty, pts) = pty_process::open().expect("a pty");
    pty.resize(pty_process::Size::new(30, 100)).expect("resize");
    let mut cmd = pty_process::Command::new(env!("CARGO_BIN_EXE_termstream"))
        .args(args)
        .env("TERMSTREAM_SERVER", server.url(""))
        .env_remove("TERMSTREAM_TOKEN");
    if block_hup {
        // SAFETY: only async-signal-safe calls between fork and exec.
        cmd = unsafe {
            cmd.pre_exec(|| {
                let mut set: libc::sigset_t = std::mem::zeroed();
                libc::sigemptyset(&mut set);
                libc::sigaddset(&mut set, libc::SIGHUP);
                libc::sigprocmask(libc::SIG_BLOCK, &set, std::ptr::null_mut());
                Ok(())
            })
        };
    }
    let mut child = cmd.spawn_borrowed(&pts).expect("termstream starts");
    drop(pts);
    read_until(&mut pty, &mut Vec::new(), needle, secs(10)).await;
    drop(pty);
    let status = tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("ends when its terminal goes")
        .unwrap();
    assert_eq!(status.code(), Some(129), "{args:?}: {status:?}");
}

#[tokio::test]
async fn attach_without_a_terminal_leaves_sighup_alone() {
    use rustix::process::{Pid, Signal, kill_process};
    // `nohup termstream attach job < /dev/null > rec &`: with no terminal
    // to give back, SIGHUP keeps the action it was given (ignored, by
    // nohup); the old attach took it up and detached at the hang-up.
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"nh","argv":["sh","-c","echo ready; read -r l; echo got:$l; sleep 60"],"cols":80,"rows":24}))
        .await;
    server.read_output_until("nh", "ready", secs(10)).await;
    let mut cmd = common::cli::command(&server.url(""), &["attach", "nh"]);
    cmd.stdin(std::process::Stdio::null())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    // SAFETY: only an async-signal-safe call between fork and exec.
    unsafe {
        cmd.pre_exec(|| {
            libc::signal(libc::SIGHUP, libc::SIG_IGN);
            Ok(())
        });
    }
    let mut child = cmd.spawn().unwrap();
    let mut stdout = child.stdout.take().unwrap();
    let mut seen = Vec::new();
    // Shown after the watches are set up (they come before the snapshot).
    read_until(&mut stdout, &mut seen, "ready", secs(10)).await;
    kill_process(Pid::from_raw(child.id().unwrap() as i32).unwrap(), Signal::HUP).unwrap();
    // Still recording: the output after the hang-up arrives.
    server.input("nh", "more\n").await;
    read_until(&mut stdout, &mut seen, "got:more", secs(10)).await;
    assert!(child.try_wait().unwrap().is_none(), "attach ended at an ignored SIGHUP");
    server.terminate("nh").await;
    tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("ends with the session")
        .unwrap();
}

#[tokio::test]
async fn run_tty_into_a_file_writes_only_the_programs_output() {
    // `run --tty -- make > log` from a terminal: the terminal's modes are
    // given back on the terminal, not written into the file (the old run
    // ended the file with the mode resets).
    let server = TestServer::start().await;
    let dir = tempfile::tempdir().unwrap();
    let log = dir.path().join("log");
    let (pty, pts) = pty_process::open().expect("a pty");
    pty.resize(pty_process::Size::new(30, 100)).expect("resize");
    let mut child = pty_process::Command::new(env!("CARGO_BIN_EXE_termstream"))
        .args(["run", "--tty", "--", "sh", "-c", "echo made"])
        .env("TERMSTREAM_SERVER", server.url(""))
        .env_remove("TERMSTREAM_TOKEN")
        .stdout(std::fs::File::create(&log).unwrap())
        .spawn_borrowed(&pts)
        .expect("termstream starts");
    let status = tokio::time::timeout(secs(20), child.wait())
        .await
        .expect("run ends with its program")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let written = std::fs::read(&log).unwrap();
    assert_eq!(String::from_utf8_lossy(&written), "made\r\n");
}

#[tokio::test]
async fn attach_into_a_file_writes_no_mode_resets() {
    // `termstream attach job > rec` from a terminal: the modes given back
    // at the end are the terminal's, not the file's (the old attach ended
    // the file with them, after leaving the alternate screen).
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"rec","argv":["sh","-c",PROGRAM],"cols":100,"rows":30}))
        .await;
    server.read_output_until("rec", "FULL", secs(10)).await;
    let dir = tempfile::tempdir().unwrap();
    let rec = dir.path().join("rec");
    let (pty, pts) = pty_process::open().expect("a pty");
    pty.resize(pty_process::Size::new(30, 100)).expect("resize");
    let mut child = pty_process::Command::new(env!("CARGO_BIN_EXE_termstream"))
        .args(["attach", "rec"])
        .env("TERMSTREAM_SERVER", server.url(""))
        .env_remove("TERMSTREAM_TOKEN")
        .stdout(std::fs::File::create(&rec).unwrap())
        .spawn_borrowed(&pts)
        .expect("termstream starts");
    let (_reader, mut writer) = pty.into_split();
    // Keys still reach the program (stdin is the terminal).
    writer.write_all(b"hello\r").await.unwrap();
    let typed = common::wait_until(secs(10), || async {
        String::from_utf8_lossy(&std::fs::read(&rec).unwrap()).contains("got:hello")
    })
    .await;
    assert!(typed, "{:?}", String::from_utf8_lossy(&std::fs::read(&rec).unwrap()));
    writer.write_all(b"\x1cd").await.unwrap();
    let status = tokio::time::timeout(secs(10), child.wait())
        .await
        .expect("detached")
        .unwrap();
    assert_eq!(status.code(), Some(0));
    let written = String::from_utf8_lossy(&std::fs::read(&rec).unwrap()).into_owned();
    assert!(
        written.ends_with("got:hello\r\n\r\n[detached (from session rec)]\n"),
        "{written:?}"
    );
    assert!(!written.contains("\x1b[?1049l"), "{written:?}");
    server.terminate("rec").await;
}
