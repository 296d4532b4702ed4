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
//! is written over the cell; otherwise (no precomposed form, a wide or
//! empty cell, the first column) the mark is dropped. Either way the cursor
//! and every later cell land where a terminal puts them. The rewritten cell
//! takes the current pen, which is the cell's own in the usual case of a
//! mark that directly follows its base character.

use avt::parser::{Function, State};
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
}

impl MarkFolder {
    /// Parses `text` and applies it to `terminal`.
    pub(crate) fn feed(&mut self, terminal: &mut Terminal, text: &str) {
        let mut chars = text.chars();
        loop {
            // One execution per run of text up to a mark, as
            // `Terminal::feed` does for the whole text.
            let mut mark = None;
            let (parser, pending) = (&mut self.parser, &mut self.pending);
            terminal.execute(std::iter::from_fn(|| {
                for ch in chars.by_ref() {
                    let function = parser.feed(ch);
                    if parser.state == State::Ground {
                        pending.clear();
                    } else if pending.len() + ch.len_utf8() <= PENDING_MAX {
                        pending.push(ch);
                    }
                    match function {
                        Some(Function::Print(c)) if is_zero_width(c) => {
                            mark = Some(c);
                            return None;
                        }
                        Some(function) => return Some(function),
                        None => {}
                    }
                }
                None
            }));
            match mark {
                Some(mark) => fold(terminal, mark),
                None => return,
            }
        }
    }
}

impl MarkFolder {
    /// The characters of an escape sequence or string under way (empty
    /// in the parser's ground state): fed to a fresh parser after a
    /// snapshot, they leave it where this one is, so that the bytes after
    /// them complete the sequence as they do here.
    pub(crate) fn pending(&self) -> &str {
        &self.pending
    }
}

/// Whether `ch` takes no cell of its own in a terminal (combining marks,
/// zero-width joiners and spaces, variation selectors).
fn is_zero_width(ch: char) -> bool {
    ch > '\u{7e}' && ch.width() == Some(0)
}

/// Folds `mark` into the cell before the cursor.
fn fold(terminal: &mut Terminal, mark: char) {
    let cursor = terminal.cursor();
    let Some(col) = cursor.col.checked_sub(1) else {
        return;
    };
    let base = terminal
        .screen()
        .line(cursor.row)
        .and_then(|line| line.cells().get(col))
        .filter(|cell| cell.width() == 1)
        .map(|cell| cell.char());
    let composed = base.and_then(|base| CanonicalCompositionBorrowed::new().compose(base, mark));
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

    #[test]
    fn a_combining_mark_joins_the_previous_cell() {
        let mut screen = ScreenModel::new(10, 2, 0);
        screen.feed("e\u{301}x".as_bytes());
        assert_eq!(screen.text()[0], "éx");
        assert_eq!(screen.cursor().col, 2);
    }

    #[test]
    fn a_mark_without_a_precomposed_form_takes_no_cell() {
        let mut screen = ScreenModel::new(10, 2, 0);
        screen.feed("q\u{301}\u{200d}x".as_bytes());
        assert_eq!(screen.text()[0], "qx");
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
