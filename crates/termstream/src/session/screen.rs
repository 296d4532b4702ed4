//! The headless terminal that follows a pty session's output.
//!
//! [`ScreenModel`] wraps `avt::Terminal`: it takes output bytes (carrying a
//! UTF-8 sequence split across reads to the next call) and gives a snapshot:
//! escape sequences that rebuild recent scrollback and the exact current
//! screen on a fresh terminal of the same size.

/// A terminal emulator fed with a session's output.
pub struct ScreenModel {
    _private: (),
}

impl ScreenModel {
    /// A blank screen of `cols` × `rows` keeping up to `scrollback_lines` of
    /// primary-screen history.
    pub fn new(cols: u16, rows: u16, scrollback_lines: usize) -> ScreenModel {
        let _ = (cols, rows, scrollback_lines);
        todo!()
    }

    /// Feeds output bytes. An incomplete UTF-8 sequence at the end is kept
    /// for the next call; invalid bytes become U+FFFD.
    pub fn feed(&mut self, bytes: &[u8]) {
        let _ = bytes;
        todo!()
    }

    /// Changes the size, as the program's window changed.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let _ = (cols, rows);
        todo!()
    }

    /// The current size as (cols, rows).
    pub fn size(&self) -> (u16, u16) {
        todo!()
    }

    /// Escape sequences that, written to a fresh terminal of the same size,
    /// reproduce recent scrollback, the screen, the cursor and the modes.
    pub fn snapshot(&self) -> String {
        todo!()
    }

    /// The text of the visible rows (for tests and logs).
    pub fn text(&self) -> Vec<String> {
        todo!()
    }
}
