//! `termstream run` on a real PTY driven from the test, read through a
//! screen model (avt, `common::pty`): `run --tty` gives the terminal back
//! after a full-screen program was killed, and `run`'s notes start on a
//! line of their own after a `^C` or output that ended mid-line, with no
//! empty row above them, also with stdin a file.

mod common;

use common::pty::{Screen, spawn_on_pty, spawn_on_pty_with_stdin};
use common::{TestServer, secs};
use tokio::io::AsyncWriteExt;

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
    // Why it ended is said where it stays in view, on the row where the
    // program started: no empty row above it.
    screen
        .wait_for("ran past its timeout and was terminated", secs(5))
        .await;
    // The note at the timeout, on the alternate screen, was on a line of
    // its own there too.
    let raw = String::from_utf8_lossy(&screen.all).into_owned();
    assert!(raw.contains("FULL\r\ntermstream: "), "{raw:?}");
    let text = screen.text();
    assert!(
        text.lines()
            .next()
            .is_some_and(|l| l.ends_with("ran past its timeout and was terminated")),
        "{text}\nraw: {:?}",
        String::from_utf8_lossy(&screen.all)
    );
}

#[tokio::test]
async fn the_first_note_comes_with_no_empty_row_above_it() {
    // `run --timeout 1s -- sleep 5` typed at a prompt: the cursor is at the
    // start of a fresh line, and the note goes there.
    let server = TestServer::start().await;
    let (mut screen, _writer, _pts, mut child) =
        spawn_on_pty(&server.url(""), &["run", "--timeout", "1s", "--", "sleep", "5"]);
    let status = tokio::time::timeout(secs(20), child.wait())
        .await
        .expect("run ends at its timeout")
        .unwrap();
    assert_eq!(status.code(), Some(124));
    screen.wait_for("ran past its timeout; terminating it", secs(5)).await;
    let text = screen.text();
    assert!(
        text.lines().next().is_some_and(|l| l.starts_with("termstream: ")),
        "{text}\nraw: {:?}",
        String::from_utf8_lossy(&screen.all)
    );
}

#[tokio::test]
async fn run_notes_start_on_a_line_of_their_own_after_a_ctrl_c() {
    let server = TestServer::start_with(&["--terminate-grace-ms", "200"], &[]).await;
    let lines = |screen: &Screen| screen.text().lines().map(str::to_owned).collect::<Vec<_>>();
    let after = |screen: &Screen, line: &str| -> Vec<String> {
        let all = lines(screen);
        let at = all
            .iter()
            .position(|l| l == line)
            .unwrap_or_else(|| panic!("no {line:?}:\n{}", screen.text()));
        all[at + 1..].to_vec()
    };

    // Without --tty the terminal echoes the Ctrl-C (`^C`) and the note
    // follows on the next line.
    let (mut screen, mut writer, _pts, mut child) = spawn_on_pty(
        &server.url(""),
        &["run", "--id", "n1", "--", "sh", "-c", "echo ready; sleep 60"],
    );
    screen.wait_for("ready", secs(10)).await;
    writer.write_all(b"\x03").await.unwrap();
    screen.wait_for("termstream: terminating n1", secs(10)).await;
    let status = common::exit_within_10s(&mut child, "ends").await;
    assert_eq!(status.code(), Some(130));
    let next = after(&screen, "ready");
    assert_eq!(next.first().map(String::as_str), Some("^C"), "{}", screen.text());
    assert!(next[1].starts_with("termstream: terminating n1"), "{}", screen.text());

    // With --tty the program's terminal echoes it; a later note starts
    // on the next line all the same.
    let (mut screen, mut writer, _pts, mut child) = spawn_on_pty(
        &server.url(""),
        &[
            "run",
            "--tty",
            // Counted from the session's start: the Ctrl-C below must be
            // echoed before it, also on a loaded machine.
            "--timeout",
            "6s",
            "--id",
            "n2",
            "--",
            "sh",
            "-c",
            "trap '' INT; echo ready; sleep 60",
        ],
    );
    screen.wait_for("ready", secs(10)).await;
    writer.write_all(b"\x03").await.unwrap();
    screen.wait_for("ran past its timeout", secs(10)).await;
    let status = common::exit_within_10s(&mut child, "ends").await;
    assert_eq!(status.code(), Some(124));
    let next = after(&screen, "ready");
    assert_eq!(next.first().map(String::as_str), Some("^C"), "{}", screen.text());
    assert_eq!(
        next[1],
        "termstream: n2 ran past its timeout; terminating it",
        "{}",
        screen.text()
    );

    // A program the Ctrl-C ended, mid-line: the terminal is given back on
    // a new line, as a shell does after a local one (not `ask^C$ `).
    let (mut screen, mut writer, _pts, mut child) = spawn_on_pty(
        &server.url(""),
        &[
            "run",
            "--tty",
            "--id",
            "n3",
            "--",
            "sh",
            "-c",
            "printf ask; exec sleep 60",
        ],
    );
    screen.wait_for("ask", secs(10)).await;
    writer.write_all(b"\x03").await.unwrap();
    let status = common::exit_within_10s(&mut child, "ends").await;
    assert_eq!(status.code(), Some(130));
    screen
        .wait_until(
            "the cursor on the row after ask",
            |vt| vt.cursor().col == 0 && vt.cursor().row == 1,
            secs(5),
        )
        .await;
}

#[tokio::test]
async fn a_note_after_an_echoed_ctrl_c_starts_a_line_with_stdin_a_file() {
    // `run -- job < input` at a terminal: stdin is not the terminal, but
    // the terminal still echoes a typed Ctrl-C (`^C`).
    let server = TestServer::start_with(&["--terminate-grace-ms", "200"], &[]).await;
    let (mut screen, mut writer, _pts, mut child) = spawn_on_pty_with_stdin(
        &server.url(""),
        &["run", "--", "sh", "-c", "echo ask; sleep 60"],
        Some(std::process::Stdio::null()),
    );
    screen.wait_for("ask", secs(10)).await;
    writer.write_all(b"\x03").await.unwrap();
    screen.wait_for("termstream: terminating", secs(10)).await;
    let lines: Vec<String> = screen.text().lines().map(str::to_owned).collect();
    assert_eq!(lines[..2], ["ask", "^C"], "{lines:?}");
    assert!(lines[2].starts_with("termstream: terminating"), "{lines:?}");
    let status = common::exit_within_10s(&mut child, "ends once terminated").await;
    assert_eq!(status.code(), Some(130));
}
