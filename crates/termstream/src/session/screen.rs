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
//!
//! Bound: a model holds at most [`SCREEN_BUDGET`] bytes of cells, whatever
//! its size. Its primary and alternate screens cost `2 × rows` lines of
//! `cols` cells; the scrollback gets what is left of the budget, up to the
//! lines asked for (see [`scrollback_within`]), and is cut again when a
//! resize changes what fits. The largest window the server accepts
//! (`max_cols` × `max_rows`) must leave its screens within the budget: the
//! configuration is refused otherwise.

mod combining;
mod modes;
mod skip;
mod snapshot;
pub(crate) mod utf8;

use avt::{Cell, Cursor, Line, ScreenKind, Terminal};

use self::combining::MarkFolder;
use self::modes::ModeTracker;
pub use self::modes::{InputModes, MouseEncoding, MouseTracking};
use self::skip::ParserRest;
pub(crate) use self::skip::{is_plain, line_feeds, plain_prefix};
use self::utf8::Utf8Carry;

/// The most bytes of cells one screen model holds: its two screens and its
/// scrollback. 64 MiB: the two screens of the default largest window
/// (1000 × 1000) take half of it, and its full default scrollback fits.
pub const SCREEN_BUDGET: usize = 64 << 20;

/// What one line of `cols` cells costs.
fn line_bytes(cols: u16) -> usize {
    usize::from(cols.max(1)) * size_of::<Cell>() + size_of::<Line>()
}

/// What the primary and alternate screens of a `cols` × `rows` window cost.
pub fn screens_bytes(cols: u16, rows: u16) -> usize {
    2 * usize::from(rows.max(1)) * line_bytes(cols)
}

/// The window a model takes for `cols` × `rows`: the same, unless its two
/// screens would not fit in [`SCREEN_BUDGET`] (a session stored before
/// `max_cols` or `max_rows` were lowered): then fewer rows, and fewer
/// columns if even one row is too wide.
fn window_within_budget(cols: u16, rows: u16) -> (u16, u16) {
    let half = SCREEN_BUDGET / 2;
    let widest = (half - size_of::<Line>()) / size_of::<Cell>();
    let cols = cols.max(1).min(u16::try_from(widest).unwrap_or(u16::MAX));
    let tallest = (half / line_bytes(cols)).max(1);
    let rows = rows.max(1).min(u16::try_from(tallest).unwrap_or(u16::MAX));
    (cols, rows)
}

/// The lines of scrollback, at most `wanted`, that fit in `budget` bytes
/// beside the two screens of a `cols` × `rows` window.
pub fn scrollback_within(budget: usize, cols: u16, rows: u16, wanted: usize) -> usize {
    (budget.saturating_sub(screens_bytes(cols, rows)) / line_bytes(cols)).min(wanted)
}

/// A terminal emulator fed with a session's output.
pub struct ScreenModel {
    terminal: Terminal,
    carry: Utf8Carry,
    /// Parses the output for `terminal`, folding combining marks.
    marks: MarkFolder,
    modes: ModeTracker,
    /// Whether the parser is at rest, for [`ScreenModel::skip_plain`].
    rest: ParserRest,
    /// The scrollback kept now: `wanted_scrollback`, or less when the
    /// window is too large for that much within [`SCREEN_BUDGET`].
    scrollback_lines: usize,
    /// The scrollback asked for.
    wanted_scrollback: usize,
}

impl ScreenModel {
    /// A blank screen of `cols` × `rows` keeping up to `scrollback_lines` of
    /// primary-screen history (less if they do not fit in
    /// [`SCREEN_BUDGET`]). A zero dimension is treated as one.
    pub fn new(cols: u16, rows: u16, scrollback_lines: usize) -> ScreenModel {
        let kept = scrollback_within(SCREEN_BUDGET, cols, rows, scrollback_lines);
        ScreenModel::with_limit(cols, rows, kept, scrollback_lines)
    }

    fn with_limit(cols: u16, rows: u16, kept: usize, wanted: usize) -> ScreenModel {
        let (cols, rows) = window_within_budget(cols, rows);
        let (cols, rows) = (usize::from(cols), usize::from(rows));
        let terminal =
            Terminal::with_scrollback(cols, rows, Some(kept)).expect("dimensions clamped to at least one are valid");

        ScreenModel {
            terminal,
            carry: Utf8Carry::default(),
            marks: MarkFolder::default(),
            modes: ModeTracker::default(),
            rest: ParserRest::default(),
            scrollback_lines: kept,
            wanted_scrollback: wanted,
        }
    }

    /// The lines of scrollback the model keeps at its size now.
    pub fn scrollback_limit(&self) -> usize {
        self.scrollback_lines
    }

    /// Rebuilds the model, at its size, keeping `kept` lines of scrollback:
    /// a fresh model fed with this one's snapshot.
    fn rebuild(&mut self, kept: usize) {
        let (cols, rows) = self.size();
        let mut fresh = ScreenModel::with_limit(cols, rows, kept, self.wanted_scrollback);
        fresh.feed(self.snapshot().as_bytes());
        fresh.carry = std::mem::take(&mut self.carry);
        fresh.rest = std::mem::take(&mut self.rest);
        *self = fresh;
    }

    /// Feeds output bytes, carrying an incomplete UTF-8 sequence.
    pub fn feed(&mut self, bytes: &[u8]) {
        self.modes.feed(bytes);
        self.rest.feed(bytes);
        let (terminal, marks) = (&mut self.terminal, &mut self.marks);
        let scrollback = self.scrollback_lines;
        self.carry.decode(bytes, |text| marks.feed(terminal, scrollback, text));
    }

    /// Whether plain text may be skipped: the parser is in its ground
    /// state and no scroll region is set (see [`skip`]).
    pub fn can_skip_plain(&self) -> bool {
        self.rest.at_rest() && self.modes.is_ground()
    }

    /// Takes the place of feeding plain text ([`is_plain`]) that holds at
    /// least as many line feeds as the model has rows and ends with CR LF:
    /// both leave the cursor at column 0 of a fresh bottom row, with the
    /// same pen and modes. They differ only in the rows scrolled up, which
    /// the caller then scrolls out of the scrollback by feeding at least
    /// `rows + scrollback - 1` line feeds of plain text, which all scroll.
    /// Only when [`Self::can_skip_plain`].
    pub fn skip_plain(&mut self) {
        let (_, rows) = self.terminal.size();
        let mut bytes = Vec::with_capacity(rows + 1);
        bytes.push(b'\r');
        bytes.resize(rows + 1, b'\n');
        self.feed(&bytes);
    }

    /// Changes the size, as the program's window changed. A zero dimension is
    /// treated as one.
    /// The scrollback kept follows what fits in [`SCREEN_BUDGET`] at the
    /// new size: cut before a resize that grows the screens (so the model
    /// never holds more than the budget), restored after one that shrinks
    /// them (as far as the lines are still there).
    pub fn resize(&mut self, cols: u16, rows: u16) {
        let (cols, rows) = window_within_budget(cols, rows);
        let fits = scrollback_within(SCREEN_BUDGET, cols, rows, self.wanted_scrollback);
        if fits < self.scrollback_lines {
            self.rebuild(fits);
        }
        self.terminal.resize(usize::from(cols), usize::from(rows));
        if fits > self.scrollback_lines {
            self.rebuild(fits);
        }
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
    ///
    /// An escape sequence or string under way (output cut anywhere, in the
    /// middle of `ESC [ 2 J` say) is reproduced too: its characters end the
    /// snapshot, so a terminal fed the snapshot takes the bytes after it as
    /// this model does. Bytes of an incomplete UTF-8 character still
    /// carried by [`feed`] ([`ScreenModel::carried`]) are not part of the
    /// snapshot: it reflects the output up to them, and whoever goes on
    /// from it goes on from their start.
    ///
    /// [`feed`]: ScreenModel::feed
    pub fn snapshot(&self) -> String {
        let (_, rows) = self.terminal.size();
        let history = self.scrollback();
        let mut out = String::new();
        self.modes.modes().push_sequences(&mut out);
        snapshot::push_scrollback(&mut out, history.into_iter(), rows);
        snapshot::push_dump(&mut out, &self.terminal.dump());
        let mut out = match self.marks.clusters().expand(&out) {
            std::borrow::Cow::Borrowed(_) => out,
            std::borrow::Cow::Owned(expanded) => expanded,
        };
        // After the expansion: a sequence under way is the program's own
        // characters, never stand-ins.
        out.push_str(self.marks.pending());
        out
    }

    /// How many bytes of an incomplete UTF-8 character [`feed`] holds: the
    /// snapshot reflects the output up to that many bytes before the end
    /// of what was fed.
    ///
    /// [`feed`]: ScreenModel::feed
    pub fn carried(&self) -> usize {
        self.carry.len()
    }

    /// The text of the visible rows (for tests and logs), one string per
    /// row with trailing spaces removed. Wide characters appear once.
    pub fn text(&self) -> Vec<String> {
        self.terminal
            .screen()
            .visible_lines()
            .map(|line| self.marks.clusters().expand(line.text().trim_end()).into_owned())
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

    /// The cells one model holds stay within the budget, however wide the
    /// window and however much scrollback is asked for, across resizes.
    #[test]
    fn scrollback_is_cut_to_the_budget() {
        let cells = |m: &ScreenModel| {
            let (cols, rows) = m.size();
            super::screens_bytes(cols, rows) + m.scrollback().len() * super::line_bytes(cols)
        };
        let line = "x".repeat(50);
        let mut screen = ScreenModel::new(1000, 1000, 1_000_000);
        assert!(screen.scrollback_limit() < 1_000_000);
        assert!(
            screen.scrollback_limit() > 1000,
            "the default window keeps a full scrollback"
        );
        for _ in 0..3000 {
            screen.feed(format!("{line}\r\n").as_bytes());
        }
        assert!(cells(&screen) <= super::SCREEN_BUDGET);
        // Wider: less scrollback fits, and it is cut before the resize.
        screen.resize(4000, 100);
        assert!(cells(&screen) <= super::SCREEN_BUDGET, "{}", cells(&screen));
        assert_eq!(screen.scrollback().len(), screen.scrollback_limit());
        let last = screen.scrollback().last().map(|l| l.text().trim_end().to_owned());
        assert_eq!(last.as_deref(), Some(line.as_str()), "the newest history is kept");
        // Narrower again: more fits, and new lines fill it.
        screen.resize(80, 24);
        for _ in 0..3000 {
            screen.feed(format!("{line}\r\n").as_bytes());
        }
        assert!(screen.scrollback().len() > 3000, "{}", screen.scrollback().len());
        assert!(cells(&screen) <= super::SCREEN_BUDGET);
    }

    /// A window whose screens alone are past the budget (65535 × 65535)
    /// gets a model that fits, not an abort.
    #[test]
    fn a_huge_window_gets_a_model_within_the_budget() {
        let mut screen = ScreenModel::new(65535, 65535, 1000);
        let (cols, rows) = screen.size();
        assert!(
            super::screens_bytes(cols, rows) <= super::SCREEN_BUDGET,
            "{cols}x{rows}"
        );
        assert_eq!(screen.scrollback_limit(), 0);
        screen.feed(b"hello\r\n");
        assert_eq!(screen.text()[0], "hello");
        screen.resize(65535, 3);
        let (cols, rows) = screen.size();
        assert!(
            super::screens_bytes(cols, rows) <= super::SCREEN_BUDGET,
            "{cols}x{rows}"
        );
        screen.resize(80, 24);
        assert_eq!(screen.size(), (80, 24));
    }

    /// Where the last `lines` rows of `bytes` start: just after the
    /// `lines`-th line feed from the end.
    fn after_last_lines(bytes: &[u8], lines: usize) -> usize {
        let feeds: Vec<usize> = bytes
            .iter()
            .enumerate()
            .filter(|&(_, &b)| b == b'\n')
            .map(|(i, _)| i)
            .collect();
        feeds[feeds.len() - lines] + 1
    }

    /// Skipping a flood of plain text gives exactly the model that parsed
    /// it, whatever state the output before it left: colours, modes, the
    /// alternate screen, a cursor above old rows, wide characters, tabs and
    /// lines that wrap in the flood, escapes after it.
    #[test]
    fn skipping_plain_text_equals_parsing_it() {
        let (cols, rows, scrollback) = (40u16, 10u16, 30usize);
        let befores: [&[u8]; 8] = [
            b"",
            b"$ \x1b[1;32mgreen and bold, never reset ",
            b"\x1b[?1049h\x1b[44malternate, blue",
            b"row\r\nrow\r\nrow\r\nrow\r\nrow\r\n\x1b[2;5Hup here",
            b"\x1b[4h\x1b[20hinsert and new-line modes",
            b"\x1b[?7lno wrap\x1b]0;a title\x07\x1b(0",
            b"\x1b[?2004h\x1b[?1000h\x1b[?1006hmouse\x1b=",
            "partial é".as_bytes(),
        ];
        let mut flood = Vec::new();
        for n in 0..400 {
            let line = match n % 5 {
                0 => format!("line {n}"),
                1 => format!("tab\there {n}\tand there"),
                2 => format!("wide 世界 {n} {}", "w".repeat(70)),
                3 => String::new(),
                _ => format!("ünïcödé {n}"),
            };
            flood.extend_from_slice(line.as_bytes());
            flood.extend_from_slice(b"\r\n");
        }
        let after = b"\x1b[31mred\x1b[m after\r\n$ \x1b[7mprompt";
        for before in befores {
            let mut all = before.to_vec();
            all.extend_from_slice(&flood);
            all.extend_from_slice(after);
            let mut parsed = ScreenModel::new(cols, rows, scrollback);
            parsed.feed(&all);

            let mut skipped = ScreenModel::new(cols, rows, scrollback);
            skipped.feed(before);
            assert!(skipped.can_skip_plain(), "{before:?}");
            // As the screen task cuts it: after the line feed that leaves
            // a screen and scrollback of rows, the cursor's row among them.
            let to = after_last_lines(&all, usize::from(rows) + scrollback);
            assert!(to > before.len() + 1000, "most of the flood is skipped");
            let (plain, _) = super::is_plain(&all[before.len()..to], false);
            assert!(plain);
            skipped.skip_plain();
            skipped.feed(&all[to..]);
            assert_eq!(skipped.snapshot(), parsed.snapshot(), "after {before:?}");
            assert_eq!(skipped.cursor(), parsed.cursor());
        }
    }

    #[test]
    fn plain_text_is_not_skipped_inside_a_sequence_or_a_scroll_region() {
        for before in [&b"\x1b]0;title"[..], b"\x1b[3", b"\x1b[2;8r", "x\u{9d}".as_bytes()] {
            let mut m = ScreenModel::new(40, 10, 30);
            m.feed(before);
            assert!(!m.can_skip_plain(), "{before:?}");
        }
        // A thawed model knows as much as the one it came from.
        let mut m = ScreenModel::new(40, 10, 30);
        m.feed(b"\x1b[31mred");
        let mut thawed = ScreenModel::new(40, 10, 30);
        thawed.feed(m.snapshot().as_bytes());
        assert!(thawed.can_skip_plain());
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
