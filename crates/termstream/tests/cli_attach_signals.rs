//! `attach` and `run --tty` when their terminal goes or is not there, under
//! a real PTY: SIGTERM and a closed terminal give the terminal back and
//! detach (exit 128+N, the session left running), with or without output
//! under way; without a terminal they leave SIGHUP to whoever set it
//! (`nohup`); with stdout a file they write no mode resets into it, and
//! the closing line on a line of its own.

mod common;

use common::pty::{PROGRAM, read_until, spawn_on_pty};
use common::{TestServer, secs};
use rustix::termios;
use tokio::io::AsyncWriteExt;

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
        let status = common::exit_within_10s(&mut child, "ends at SIGTERM").await;
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
    closed_terminal_under("hu", PROGRAM, "|FULL|", false).await;
}

#[tokio::test]
async fn a_closed_terminal_under_a_chatty_program_is_a_hang_up() {
    // The program prints all the time, so a write to the closed terminal
    // (EIO) can come before SIGHUP is seen; it must end the same way (it
    // panicked writing the error line to the dead terminal: exit 101).
    // SIGHUP is held blocked in termstream to make that order certain.
    let chatty = "echo CHAT; while :; do echo x; sleep 0.01; done";
    closed_terminal_under("ch", chatty, "CHAT", true).await;
}

/// Session `id` runs `program` (`sh -c`); `attach` to it, then `run --tty`
/// of the same program as `ID2`, each closed under by [`hang_up_under`]
/// once it shows `needle`; both sessions must run on.
async fn closed_terminal_under(id: &str, program: &str, needle: &str, block_hup: bool) {
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":id,"argv":["sh","-c",program],"cols":100,"rows":30}))
        .await;
    server.read_output_until(id, needle, secs(10)).await;
    let id2 = format!("{id}2");
    let runs: [&[&str]; 2] = [
        &["attach", id],
        &["run", "--tty", "--id", &id2, "--", "sh", "-c", program],
    ];
    for args in runs {
        hang_up_under(&server, args, needle, block_hup).await;
    }
    for id in [id, id2.as_str()] {
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
    let status = common::exit_within_10s(&mut child, "ends when its terminal goes").await;
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
    common::exit_within_10s(&mut child, "ends with the session").await;
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
    let mut rec = AttachIntoFile::start(&server, "rec");
    // Keys still reach the program (stdin is the terminal).
    rec.writer.write_all(b"hello\r").await.unwrap();
    rec.wait_for("got:hello").await;
    let written = rec.detach().await;
    // The closing line right after the last line: no empty one between.
    assert!(
        written.ends_with("got:hello\r\n[detached (from session rec)]\n"),
        "{written:?}"
    );
    assert!(!written.contains("\x1b[?1049l"), "{written:?}");
    server.terminate("rec").await;
}

#[tokio::test]
async fn into_a_file_the_closing_line_is_a_line_of_its_own_after_a_snapshot() {
    // `termstream attach job > rec` from a terminal, the session's output
    // ending with a line feed: the snapshot puts the cursor at the start of
    // the empty row below, by a move, so the file's last bytes are that
    // move. The closing line still gets a line of its own (`tail -1`,
    // `grep '^\[detached'`).
    let server = TestServer::start().await;
    server
        .create(serde_json::json!({"id":"rf","argv":["sh","-c","printf 'one\\ntwo\\n'; exec sleep 60"],"cols":100,"rows":30}))
        .await;
    server.read_output_until("rf", "two", secs(10)).await;
    let rec = AttachIntoFile::start(&server, "rf");
    rec.wait_for("two").await;
    let written = rec.detach().await;
    assert_eq!(
        written.lines().last(),
        Some("[detached (from session rf)]"),
        "{written:?}"
    );
    server.terminate("rf").await;
}

/// `termstream attach ID > rec` from a 100x30 terminal, stdout a file.
struct AttachIntoFile {
    /// Holds `rec`; removed when this is dropped.
    _dir: tempfile::TempDir,
    rec: std::path::PathBuf,
    child: tokio::process::Child,
    /// The terminal: what is written here is typed.
    writer: pty_process::OwnedWritePty,
    _reader: pty_process::OwnedReadPty,
    _pts: pty_process::Pts,
}

impl AttachIntoFile {
    fn start(server: &TestServer, id: &str) -> Self {
        let dir = tempfile::tempdir().unwrap();
        let rec = dir.path().join("rec");
        let (pty, pts) = pty_process::open().expect("a pty");
        pty.resize(pty_process::Size::new(30, 100)).expect("resize");
        let child = pty_process::Command::new(env!("CARGO_BIN_EXE_termstream"))
            .args(["attach", id])
            .env("TERMSTREAM_SERVER", server.url(""))
            .env_remove("TERMSTREAM_TOKEN")
            .stdout(std::fs::File::create(&rec).unwrap())
            .spawn_borrowed(&pts)
            .expect("termstream starts");
        let (reader, writer) = pty.into_split();
        Self {
            _dir: dir,
            rec,
            child,
            writer,
            _reader: reader,
            _pts: pts,
        }
    }

    /// What the file holds so far.
    fn written(&self) -> String {
        String::from_utf8_lossy(&std::fs::read(&self.rec).unwrap()).into_owned()
    }

    /// Waits (up to 10 s) until the file holds `text`.
    async fn wait_for(&self, text: &str) {
        let came = common::wait_until(secs(10), || async { self.written().contains(text) }).await;
        assert!(came, "{:?}", self.written());
    }

    /// Detaches by the keys (`Ctrl-\ d`), expects exit 0, and gives the
    /// whole file.
    async fn detach(mut self) -> String {
        self.writer.write_all(b"\x1cd").await.unwrap();
        let status = common::exit_within_10s(&mut self.child, "detached").await;
        assert_eq!(status.code(), Some(0));
        self.written()
    }
}
