//! The headless terminal that follows a pty session's output.
//!
//! Interim version: no scrollback in snapshots yet (the full version is being
//! written on the `screen` branch).

/// A terminal emulator fed with a session's output.
pub struct ScreenModel {
    term: avt::Terminal,
    carry: Vec<u8>,
}

impl ScreenModel {
    /// A blank screen of `cols` × `rows`.
    pub fn new(cols: u16, rows: u16, scrollback_lines: usize) -> ScreenModel {
        let term = avt::Terminal::with_scrollback(cols.max(1).into(), rows.max(1).into(), Some(scrollback_lines))
            .expect("size is at least 1x1");
        ScreenModel { term, carry: Vec::new() }
    }

    /// Feeds output bytes, carrying an incomplete UTF-8 sequence.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.carry.extend_from_slice(bytes);
        let valid = match std::str::from_utf8(&self.carry) {
            Ok(_) => self.carry.len(),
            Err(e) if e.error_len().is_none() => e.valid_up_to(),
            Err(_) => {
                let s = String::from_utf8_lossy(&self.carry).into_owned();
                self.term.feed(s.as_str());
                self.carry.clear();
                return;
            }
        };
        let s = std::str::from_utf8(&self.carry[..valid]).unwrap_or_default().to_owned();
        self.term.feed(s.as_str());
        self.carry.drain(..valid);
    }

    /// Changes the size.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.term.resize(cols.max(1).into(), rows.max(1).into());
    }

    /// The current size as (cols, rows).
    pub fn size(&self) -> (u16, u16) {
        let (c, r) = self.term.size();
        (c as u16, r as u16)
    }

    /// Escape sequences that rebuild the screen.
    pub fn snapshot(&self) -> String {
        self.term.dump()
    }

    /// The text of the visible rows.
    pub fn text(&self) -> Vec<String> {
        self.term.screen().text()
    }
}
