//! Zero-width characters (combining marks) in the screen model.
//!
//! `avt` gives every printed character at least one cell, so `e` followed
//! by U+0301 (a combining acute accent, width 0) takes two cells and moves
//! the cursor two columns, where a real terminal and xterm.js attach the
//! mark to the previous cell and move one. Every later cell of the row would
//! then be one column off in the snapshot.
//!
//! [`MarkFolder`] therefore parses the output with `avt`'s own parser and
//! executes its functions on the terminal itself, except the printing of a
//! zero-width character: that one is folded into the cell before the
//! cursor (the cell xterm.js attaches it to). When Unicode has one
//! precomposed character for the pair (`e` + U+0301 is `é`), that character
//! is written over the cell. Otherwise (`e` + U+0353, `q` + U+0301) the
//! cell's text becomes a *cluster*, the base and its marks, which an `avt`
//! cell (one `char`) cannot hold: the folder keeps the cluster in a table
//! ([`Clusters`]) and writes a stand-in character from Unicode's plane 16
//! private use area (U+100000 on, one cell wide as any private use
//! character) over the cell; [`Clusters::expand`] puts the clusters back
//! in snapshots. A plane 16 character the program itself prints is kept as
//! a cluster of its own, so every stand-in in a cell is the folder's. A mark
//! on a wide or continuation cell, in the first column, past
//! [`MAX_CLUSTER_BYTES`] or once [`MAX_CLUSTERS`] are in the table is
//! dropped (a rebuild of the model from its snapshot, as on resize or thaw,
//! starts a fresh table). Either way the cursor and every later cell land
//! where a terminal puts them. The rewritten cell takes the current pen,
//! which is the cell's own in the usual case of a mark that directly
//! follows its base character.

use std::borrow::Cow;
use std::collections::HashMap;

use avt::parser::{EdScope, Function, State};
use avt::{Parser, Terminal};
use icu_normalizer::properties::CanonicalCompositionBorrowed;
use unicode_width::UnicodeWidthChar;

/// The most characters of a sequence under way kept to reproduce the
/// parser's state (see [`MarkFolder::pending`]). A longer string (an OSC
/// or DCS payload) is cut: its start already puts a parser in the state
/// that matters, and only the payload is shortened.
const PENDING_MAX: usize = 4096;

/// Feeds text to a terminal, folding zero-width characters into the
/// previous cell.
///
/// Invariant: the terminal is fed only through one folder, so this parser's
/// state is the terminal's (the terminal's own parser stays idle).
#[derive(Debug, Default)]
pub(crate) struct MarkFolder {
    parser: Parser,
    /// The characters fed since the parser last left its ground state:
    /// an escape sequence or string under way, which a snapshot cannot
    /// express but these characters can (see [`MarkFolder::pending`]).
    pending: String,
    /// The clusters whose stand-ins are in the terminal's cells.
    clusters: Clusters,
}

/// The first stand-in character: the start of plane 16's private use area.
const FIRST: u32 = 0x10_0000;
/// The most clusters a model keeps (stand-ins U+100000 to U+1003FF).
const MAX_CLUSTERS: usize = 1024;
/// The longest cluster kept, in UTF-8 bytes (a base and a few marks): a
/// run of marks on one cell cannot grow the table without bound.
const MAX_CLUSTER_BYTES: usize = 32;

/// Texts of cells that `avt` cannot hold in one `char`, each standing in
/// the cells as the private use character `FIRST + index`.
#[derive(Debug, Default)]
pub(crate) struct Clusters {
    texts: Vec<Box<str>>,
    index: HashMap<Box<str>, u32>,
}

impl Clusters {
    /// The stand-in of `text`, interned; `None` when the table is full or
    /// `text` too long.
    fn intern(&mut self, text: &str) -> Option<char> {
        if let Some(&i) = self.index.get(text) {
            return char::from_u32(FIRST + i);
        }
        if self.texts.len() >= MAX_CLUSTERS || text.len() > MAX_CLUSTER_BYTES {
            return None;
        }
        let i = self.texts.len() as u32;
        self.texts.push(text.into());
        self.index.insert(text.into(), i);
        char::from_u32(FIRST + i)
    }

    /// The cluster `ch` stands in for, if it is a stand-in.
    fn get(&self, ch: char) -> Option<&str> {
        let i = (ch as u32).checked_sub(FIRST)?;
        self.texts.get(i as usize).map(|t| &**t)
    }

    /// `text` with every stand-in replaced by its cluster.
    pub(crate) fn expand<'t>(&self, text: &'t str) -> Cow<'t, str> {
        if self.texts.is_empty() || !text.chars().any(is_stand_in) {
            return Cow::Borrowed(text);
        }
        let mut out = String::with_capacity(text.len());
        for ch in text.chars() {
            match self.get(ch) {
                Some(cluster) => out.push_str(cluster),
                None => out.push(ch),
            }
        }
        Cow::Owned(out)
    }
}

/// Whether `ch` is in plane 16 (where stand-ins are).
fn is_stand_in(ch: char) -> bool {
    ch as u32 >= FIRST
}

impl MarkFolder {
    /// Parses `text` and applies it to `terminal`, which keeps at most
    /// `scrollback` lines of history.
    pub(crate) fn feed(&mut self, terminal: &mut Terminal, scrollback: usize, text: &str) {
        let mut chars = text.chars();
        loop {
            // One execution per run of text up to a mark, as
            // `Terminal::feed` does for the whole text.
            let mut mark = None;
            let mut erase_history = false;
            let (parser, pending, clusters) = (&mut self.parser, &mut self.pending, &mut self.clusters);
            terminal.execute(std::iter::from_fn(|| {
                for ch in chars.by_ref() {
                    let function = parser.feed(ch);
                    note_pending(pending, parser.state, ch);
                    match function {
                        Some(Function::Print(c)) if is_zero_width(c) => {
                            mark = Some(c);
                            return None;
                        }
                        // `CSI 3 J`, which avt ignores: applied below.
                        Some(Function::Ed(EdScope::SavedLines)) => {
                            erase_history = true;
                            return None;
                        }
                        // The program's own plane 16 character: a cluster
                        // of itself, so stand-ins stay unambiguous.
                        Some(Function::Print(c)) if is_stand_in(c) => {
                            let mut buf = [0; 4];
                            return Some(Function::Print(
                                clusters.intern(c.encode_utf8(&mut buf)).unwrap_or('\u{fffd}'),
                            ));
                        }
                        Some(function) => return Some(function),
                        None => {}
                    }
                }
                None
            }));
            if erase_history {
                erase_scrollback(terminal, scrollback);
                continue;
            }
            match mark {
                Some(mark) => fold(terminal, &mut self.clusters, mark),
                None => return,
            }
        }
    }

    /// The clusters of the cells, for [`Clusters::expand`].
    pub(crate) fn clusters(&self) -> &Clusters {
        &self.clusters
    }

    /// The characters of an escape sequence or string under way (empty
    /// in the parser's ground state): fed to a fresh parser after a
    /// snapshot, they leave it where this one is, so that the bytes after
    /// them complete the sequence as they do here.
    pub(crate) fn pending(&self) -> &str {
        &self.pending
    }
}

/// Keeps `pending` the characters that bring a fresh parser to `state`
/// after `ch`: nothing in the ground state; an introducer (ESC, or a C1
/// control such as CSI) starts a sequence afresh; other C0 controls are
/// left out, since the parser executes them where they stand (a line feed
/// inside `ESC [ 1 … H` moves the cursor once, not again on every replay)
/// or, inside a string, ignores them.
fn note_pending(pending: &mut String, state: State, ch: char) {
    if state == State::Ground {
        pending.clear();
    } else if ch == '\x1b' || ('\u{80}'..='\u{9f}').contains(&ch) {
        pending.clear();
        pending.push(ch);
    } else if ch >= ' ' && pending.len() + ch.len_utf8() <= PENDING_MAX {
        pending.push(ch);
    }
}

/// Erases the terminal's history (`CSI 3 J`, as `clear` sends after
/// `CSI 2 J`), which avt ignores: the terminal is rebuilt from the dump of
/// its screens, which holds everything but the history. Without it, the
/// lines that `CSI 2 J` scrolled into the history came back on the screen
/// when the window grew, where xterm.js, having erased them, shows none.
fn erase_scrollback(terminal: &mut Terminal, scrollback: usize) {
    let (cols, rows) = terminal.size();
    let mut dump = String::new();
    super::snapshot::push_dump(&mut dump, &terminal.dump());
    let Ok(mut fresh) = Terminal::with_scrollback(cols, rows, Some(scrollback)) else {
        return;
    };
    fresh.feed(dump.as_str());
    *terminal = fresh;
}

/// Whether `ch` takes no cell of its own in a terminal (combining marks,
/// zero-width joiners and spaces, variation selectors).
fn is_zero_width(ch: char) -> bool {
    ch > '\u{7e}' && ch.width() == Some(0)
}

/// Folds `mark` into the cell before the cursor: its precomposed
/// character, or a cluster of the cell's text and the mark.
fn fold(terminal: &mut Terminal, clusters: &mut Clusters, mark: char) {
    let cursor = terminal.cursor();
    let Some(col) = cursor.col.checked_sub(1) else {
        return;
    };
    let Some(base) = terminal
        .screen()
        .line(cursor.row)
        .and_then(|line| line.cells().get(col))
        .filter(|cell| cell.width() == 1)
        .map(|cell| cell.char())
    else {
        return;
    };
    let composed = match clusters.get(base) {
        Some(cluster) => {
            let mut text = String::with_capacity(cluster.len() + mark.len_utf8());
            text.push_str(cluster);
            text.push(mark);
            clusters.intern(&text)
        }
        None => CanonicalCompositionBorrowed::new().compose(base, mark).or_else(|| {
            let mut text = String::with_capacity(base.len_utf8() + mark.len_utf8());
            text.push(base);
            text.push(mark);
            clusters.intern(&text)
        }),
    };
    let (Some(composed), Ok(column)) = (composed, u16::try_from(cursor.col)) else {
        return;
    };
    // Back to the cell (`CHA` counts from one, so the cell before the cursor
    // is the cursor's zero-based column) and print over it: the cursor ends
    // where it was, including the pending wrap after the last column.
    terminal.execute([Function::Cha(column), Function::Print(composed)]);
}

#[cfg(test)]
mod tests {
    use super::super::ScreenModel;

    /// `clear` sends `CSI 2 J` (which avt scrolls into the history) and
    /// `CSI 3 J` (which avt ignored): the lines came back on the screen
    /// when the window grew, and the server's cursor stood three rows below
    /// the page's (the OSC 52 browser check). Fails without the erase.
    #[test]
    fn erasing_the_history_keeps_cleared_lines_away_when_the_window_grows() {
        let mut screen = ScreenModel::new(20, 5, 100);
        screen.feed(b"$ one\r\nosc\r\n$ clear\r\n\x1b[1;31m\x1b[H\x1b[2J\x1b[3Jab x");
        assert!(screen.scrollback().is_empty(), "the history is erased");
        assert_eq!((screen.cursor().col, screen.cursor().row), (4, 0));
        screen.resize(20, 9);
        assert_eq!((screen.cursor().col, screen.cursor().row), (4, 0));
        assert_eq!(screen.text()[0], "ab x");
        // The pen and later history are as they were.
        screen.feed(b"\r\n1\r\n2\r\n3\r\n4\r\n5\r\n6\r\n7\r\n8\r\n9");
        assert_eq!(screen.scrollback().len(), 1);
        assert!(screen.snapshot().contains("31"), "{:?}", screen.snapshot());
    }

    #[test]
    fn a_combining_mark_joins_the_previous_cell() {
        let mut screen = ScreenModel::new(10, 2, 0);
        screen.feed("e\u{301}x".as_bytes());
        assert_eq!(screen.text()[0], "éx");
        assert_eq!(screen.cursor().col, 2);
    }

    #[test]
    fn a_mark_without_a_precomposed_form_stays_on_its_cell() {
        let mut screen = ScreenModel::new(10, 2, 0);
        screen.feed("e\u{353}q\u{301}\u{200d}x".as_bytes());
        assert_eq!(screen.text()[0], "e\u{353}q\u{301}\u{200d}x");
        assert_eq!(screen.cursor().col, 3);
        // The snapshot keeps them, and a model fed it has the same cells.
        let snapshot = screen.snapshot();
        assert!(snapshot.contains("e\u{353}q\u{301}\u{200d}x"), "{snapshot:?}");
        let mut copy = ScreenModel::new(10, 2, 0);
        copy.feed(snapshot.as_bytes());
        assert_eq!(copy.text(), screen.text());
        assert_eq!(copy.snapshot(), snapshot);
    }

    #[test]
    fn a_program_s_own_plane_16_characters_are_not_taken_for_clusters() {
        let mut screen = ScreenModel::new(10, 2, 0);
        screen.feed("\u{100000}a\u{353}\u{100001}".as_bytes());
        assert_eq!(screen.text()[0], "\u{100000}a\u{353}\u{100001}");
        assert!(screen.snapshot().contains("\u{100000}a\u{353}\u{100001}"));
    }

    #[test]
    fn marks_on_one_cell_are_bounded() {
        let mut screen = ScreenModel::new(10, 2, 0);
        let many: String = std::iter::once('e')
            .chain(std::iter::repeat_n('\u{353}', 1000))
            .collect();
        screen.feed(format!("{many}x").as_bytes());
        let row = &screen.text()[0];
        assert!(row.len() <= 32 + 1, "{} bytes", row.len());
        assert!(row.starts_with("e\u{353}") && row.ends_with('x'));
        assert_eq!(screen.cursor().col, 2);
    }

    #[test]
    fn a_mark_in_the_last_column_keeps_the_pending_wrap() {
        let mut screen = ScreenModel::new(3, 2, 0);
        screen.feed("abe\u{301}z".as_bytes());
        assert_eq!(screen.text(), ["abé", "z"]);
        assert_eq!((screen.cursor().col, screen.cursor().row), (1, 1));
    }

    #[test]
    fn a_mark_split_across_reads_and_inside_a_title_changes_nothing_else() {
        let mut screen = ScreenModel::new(10, 2, 0);
        let bytes = "\x1b]0;cafe\u{301}\x07ab".as_bytes();
        for split in 0..=bytes.len() {
            screen.feed(&bytes[..split]);
            screen.feed(&bytes[split..]);
            assert_eq!(screen.text()[0], "ab", "split at {split}");
            assert_eq!(screen.cursor().col, 2, "split at {split}");
            screen.feed(b"\x1b[2J\x1b[H");
        }
    }
}
