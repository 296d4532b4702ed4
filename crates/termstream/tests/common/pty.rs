//! The CLI under a real PTY driven from a test: [`spawn_on_pty`] starts
//! `termstream ARGS` on a fresh 100 x 30 PTY, and [`Screen`] reads what it
//! prints through a screen model (avt), as a terminal would show it. For
//! `tests/cli_attach.rs`, `tests/cli_attach_signals.rs` and
//! `tests/cli_run_tty.rs`.

use std::time::{Duration, Instant};

use tokio::io::{AsyncRead, AsyncReadExt};
use tokio::sync::mpsc;

/// A program that takes the alternate screen, draws, and answers lines:
/// `size` with `stty size`, anything else with `got:LINE`.
pub const PROGRAM: &str = r#"printf '\033[?1049h\033[H\033[2J+----+\n|FULL|\n+----+\n'; while read -r l; do if [ "$l" = size ]; then stty size; else echo "got:$l"; fi; done"#;

/// The attach process's terminal as a person would see it.
pub struct Screen {
    pub vt: avt::Terminal,
    rx: mpsc::Receiver<Vec<u8>>,
    /// Everything attach printed, for failure messages and the last line.
    pub all: Vec<u8>,
}

impl Screen {
    pub fn text(&self) -> String {
        screen_text(&self.vt)
    }

    /// Reads attach's output until the screen shows `needle`.
    pub async fn wait_for(&mut self, needle: &str, timeout: Duration) {
        self.wait_until(needle, |vt| screen_text(vt).contains(needle), timeout)
            .await;
    }

    /// Reads the output until `done` holds of the terminal (`what` names
    /// it in the failure).
    pub async fn wait_until(&mut self, what: &str, done: impl Fn(&avt::Terminal) -> bool, timeout: Duration) {
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
pub async fn read_until(from: &mut (impl AsyncRead + Unpin), seen: &mut Vec<u8>, needle: &str, timeout: Duration) {
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
pub fn screen_text(vt: &avt::Terminal) -> String {
    vt.screen()
        .visible_lines()
        .map(|l| l.text().trim_end().to_owned())
        .collect::<Vec<_>>()
        .join("\n")
}

/// Starts `termstream ARGS` on a fresh PTY of 100 x 30 against `server`.
pub fn spawn_on_pty(
    server: &str,
    args: &[&str],
) -> (
    Screen,
    pty_process::OwnedWritePty,
    pty_process::Pts,
    tokio::process::Child,
) {
    spawn_on_pty_with_stdin(server, args, None)
}

/// [`spawn_on_pty`] with another stdin than the PTY (still the controlling
/// terminal: a typed Ctrl-C is SIGINT, echoed as `^C`).
pub fn spawn_on_pty_with_stdin(
    server: &str,
    args: &[&str],
    stdin: Option<std::process::Stdio>,
) -> (
    Screen,
    pty_process::OwnedWritePty,
    pty_process::Pts,
    tokio::process::Child,
) {
    let (pty, pts) = pty_process::open().expect("a pty");
    pty.resize(pty_process::Size::new(30, 100)).expect("resize");
    let mut cmd = pty_process::Command::new(env!("CARGO_BIN_EXE_termstream"))
        .args(args)
        .env("TERMSTREAM_SERVER", server)
        .env_remove("TERMSTREAM_TOKEN");
    if let Some(stdin) = stdin {
        cmd = cmd.stdin(stdin);
    }
    let child = cmd.spawn_borrowed(&pts).expect("termstream starts");
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
