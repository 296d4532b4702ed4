//! The headless terminal that follows a pty session's output.
//!
//! [`ScreenModel`] wraps `avt::Terminal`: it takes output bytes (carrying a
//! UTF-8 sequence split across reads to the next call) and gives a snapshot:
//! escape sequences that rebuild recent scrollback and the exact current
//! screen on a fresh terminal of the same size.
//!
//! Memory: `avt` keeps scrollback as a deque of rows and allocates a row's
//! cells only when a row scrolls into history, so a session that prints
//! little pays for its visible rows only. The one eager cost is that `avt`
//! reserves the deque's slots when the terminal is created: one row header
//! (`size_of::<avt::Line>()`, 56 bytes) per line of the limit, i.e. 56 KB for
//! 1000 lines, whose pages the kernel only backs once they are written.

mod modes;
mod snapshot;
pub(crate) mod utf8;

use avt::{Cursor, Line, ScreenKind, Terminal};

use self::modes::ModeTracker;
pub use self::modes::{InputModes, MouseEncoding, MouseTracking};
use self::utf8::Utf8Carry;

/// A terminal emulator fed with a session's output.
pub struct ScreenModel {
    terminal: Terminal,
    carry: Utf8Carry,
    modes: ModeTracker,
    scrollback_lines: usize,
}

impl ScreenModel {
    /// A blank screen of `cols` × `rows` keeping up to `scrollback_lines` of
    /// primary-screen history. A zero dimension is treated as one.
    pub fn new(cols: u16, rows: u16, scrollback_lines: usize) -> ScreenModel {
        let cols = usize::from(cols.max(1));
        let rows = usize::from(rows.max(1));
        let terminal = Terminal::with_scrollback(cols, rows, Some(scrollback_lines))
            .expect("dimensions clamped to at least one are valid");

        ScreenModel {
            terminal,
            carry: Utf8Carry::default(),
            modes: ModeTracker::default(),
            scrollback_lines,
        }
    }

    /// Feeds output bytes, carrying an incomplete UTF-8 sequence.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.modes.feed(bytes);
        let terminal = &mut self.terminal;
        self.carry.decode(bytes, |text| terminal.feed(text));
    }

    /// Changes the size, as the program's window changed. A zero dimension is
    /// treated as one.
    pub fn resize(&mut self, cols: u16, rows: u16) {
        self.terminal.resize(usize::from(cols.max(1)), usize::from(rows.max(1)));
    }

    /// The current size as (cols, rows).
    pub fn size(&self) -> (u16, u16) {
        let (cols, rows) = self.terminal.size();
        // Sizes only ever come from u16 values, so the conversions saturate
        // merely as a matter of form.
        (
            u16::try_from(cols).unwrap_or(u16::MAX),
            u16::try_from(rows).unwrap_or(u16::MAX),
        )
    }

    /// Escape sequences that, written to a fresh terminal of the same size,
    /// reproduce recent scrollback, the screen, the cursor and the modes.
    ///
    /// Input modes `avt` does not model (bracketed paste, focus events,
    /// mouse tracking and encoding, application keypad) are set first.
    /// The scrollback always comes from the primary buffer, also while the
    /// alternate screen is active (the alternate buffer has no history).
    /// Bytes of an incomplete UTF-8 sequence still carried by [`feed`] are
    /// not part of the snapshot.
    ///
    /// [`feed`]: ScreenModel::feed
    pub fn snapshot(&self) -> String {
        let (_, rows) = self.terminal.size();
        let history = self.scrollback();
        let mut out = String::new();
        self.modes.modes().push_sequences(&mut out);
        snapshot::push_scrollback(&mut out, history.into_iter(), rows);
        snapshot::push_dump(&mut out, &self.terminal.dump());

        out
    }

    /// The text of the visible rows (for tests and logs), one string per
    /// row with trailing spaces removed. Wide characters appear once.
    pub fn text(&self) -> Vec<String> {
        self.terminal
            .screen()
            .visible_lines()
            .map(|line| line.text().trim_end().to_owned())
            .collect()
    }

    /// The retained primary-screen history, oldest line first, at most
    /// `scrollback_lines` long.
    pub fn scrollback(&self) -> Vec<&Line> {
        let (_, rows) = self.terminal.size();
        let primary = self.terminal.primary_screen();
        let total = primary.all_lines().count();
        let history = total.saturating_sub(rows);
        let skip = history.saturating_sub(self.scrollback_lines);

        primary.all_lines().take(history).skip(skip).collect()
    }

    /// The visible rows of the active screen, with their cells and pens.
    pub fn visible_lines(&self) -> Vec<&Line> {
        self.terminal.screen().visible_lines().collect()
    }

    /// The cursor position and visibility.
    pub fn cursor(&self) -> Cursor {
        self.terminal.cursor()
    }

    /// The input modes (bracketed paste, mouse, focus, keypad) in effect.
    pub fn input_modes(&self) -> InputModes {
        self.modes.modes()
    }

    /// Whether the alternate screen is active.
    pub fn is_alternate_screen(&self) -> bool {
        self.terminal.active_screen_kind() == ScreenKind::Alternate
    }
}

#[cfg(test)]
mod tests {
    use super::ScreenModel;

    #[test]
    fn split_emoji_reaches_the_screen_intact() {
        let bytes = "ab😀cd".as_bytes();

        for split in 0..=bytes.len() {
            let mut screen = ScreenModel::new(10, 2, 0);
            screen.feed(&bytes[..split]);
            screen.feed(&bytes[split..]);
            assert_eq!(screen.text()[0], "ab😀cd", "split at {split}");
        }
    }

    #[test]
    fn invalid_bytes_are_shown_as_replacement_characters() {
        let mut screen = ScreenModel::new(10, 2, 0);
        screen.feed(b"a\xFF\xFEb\xE2\x82");
        screen.feed(b"c");
        assert_eq!(screen.text()[0], "a\u{FFFD}\u{FFFD}b\u{FFFD}c");
    }

    #[test]
    fn history_is_allocated_lazily() {
        assert_eq!(std::mem::size_of::<avt::Line>(), 56);
        let mut screen = ScreenModel::new(80, 24, 1000);
        screen.feed(b"one line\r\n");
        assert!(screen.scrollback().is_empty());
        assert!(!screen.snapshot().contains("\r\n\n"));
    }

    #[test]
    fn zero_sizes_do_not_panic() {
        let mut screen = ScreenModel::new(0, 0, 0);
        assert_eq!(screen.size(), (1, 1));
        screen.feed(b"hello\r\n\x1b[99;99H\x1b[5;1r");
        screen.resize(0, 3);
        assert_eq!(screen.size(), (1, 3));
    }

    #[test]
    fn scrollback_is_bounded_and_rebuilt_by_the_snapshot() {
        let mut screen = ScreenModel::new(10, 3, 5);

        for i in 0..20 {
            screen.feed(format!("\x1b[3{}mline{i}\x1b[m\r\n", i % 8).as_bytes());
        }

        let history: Vec<String> = screen.scrollback().iter().map(|l| l.text()).collect();
        assert_eq!(history.len(), 5);
        assert_eq!(history[4].trim_end(), "line17");

        let mut copy = ScreenModel::new(10, 3, 5);
        copy.feed(screen.snapshot().as_bytes());
        assert_eq!(copy.text(), screen.text());
        assert_eq!(copy.cursor(), screen.cursor());

        let copied: Vec<String> = copy.scrollback().iter().map(|l| l.text()).collect();
        assert_eq!(copied, history);
        assert_eq!(
            copy.scrollback()[4].cells()[0].pen(),
            screen.scrollback()[4].cells()[0].pen()
        );
    }
}
