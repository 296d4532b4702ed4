//! The local terminal: raw mode that is always restored (on drop, on error
//! and on panic), and the window size, which `attach` and `run --tty` send
//! again after a reconnect.

use std::io::IsTerminal;
use std::sync::Mutex;

use rustix::termios::{self, OptionalActions, Termios};
use termstream_client::Connection;
use termstream_proto::SessionId;

/// The mode to restore, for the panic hook.
static SAVED: Mutex<Option<Termios>> = Mutex::new(None);

/// Raw mode on stdin while this value lives.
pub struct RawMode {
    saved: Termios,
}

impl RawMode {
    /// Puts stdin in raw mode; `None` when stdin is not a terminal.
    pub fn enter() -> std::io::Result<Option<RawMode>> {
        let stdin = std::io::stdin();
        if !stdin.is_terminal() {
            return Ok(None);
        }
        let saved = termios::tcgetattr(&stdin)?;
        let mut raw = saved.clone();
        raw.make_raw();
        install_panic_hook();
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = Some(saved.clone());
        termios::tcsetattr(&stdin, OptionalActions::Now, &raw)?;
        Ok(Some(RawMode { saved }))
    }
}

impl Drop for RawMode {
    fn drop(&mut self) {
        let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &self.saved);
        *SAVED.lock().unwrap_or_else(|e| e.into_inner()) = None;
    }
}

/// Restores the saved mode before a panic message is printed, so the
/// message is readable and the shell usable afterwards.
fn install_panic_hook() {
    static ONCE: std::sync::Once = std::sync::Once::new();
    ONCE.call_once(|| {
        let previous = std::panic::take_hook();
        std::panic::set_hook(Box::new(move |info| {
            if let Some(saved) = SAVED.lock().unwrap_or_else(|e| e.into_inner()).take() {
                let _ = termios::tcsetattr(std::io::stdin(), OptionalActions::Now, &saved);
            }
            previous(info);
        }));
    });
}

/// Whether the terminal on stderr (where `run`'s notes go) echoes a typed
/// Ctrl-C as `^C` (cooked, with `ECHO` and `ECHOCTL`): then what is written
/// next is on its line. Not stdin's: with `< file` the terminal still
/// echoes.
pub fn echoes_controls() -> bool {
    termios::tcgetattr(std::io::stderr()).is_ok_and(|t| {
        t.local_modes
            .contains(termios::LocalModes::ECHO | termios::LocalModes::ECHOCTL)
    })
}

/// The local window size `(cols, rows)`, from stdout or stdin.
pub fn window_size() -> Option<(u16, u16)> {
    let from = |ws: termios::Winsize| (ws.ws_col > 0 && ws.ws_row > 0).then_some((ws.ws_col, ws.ws_row));
    termios::tcgetwinsize(std::io::stdout())
        .ok()
        .and_then(from)
        .or_else(|| termios::tcgetwinsize(std::io::stdin()).ok().and_then(from))
}

/// Sends the local window size to session `id` over `conn`: after a
/// reconnect, as a window change while the server was away was not heard.
pub async fn send_window_size(conn: &Connection, id: &SessionId) {
    if let Some((cols, rows)) = window_size() {
        let _ = conn.resize(id.clone(), cols, rows).await;
    }
}
