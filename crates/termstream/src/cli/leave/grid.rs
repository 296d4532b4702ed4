//! Whether the cursor sits at the start of a row nothing was drawn on,
//! followed from a reset (`ESC c`: a blank screen, the cursor home) through
//! what is drawn after it, for [`super::Leave`].
//!
//! A snapshot ends by moving the cursor (`CSI row;col H`); without this,
//! a move makes the column and the row's contents unknown, and the closing
//! line gets a line break first, which leaves an empty row above it when
//! the cursor was already at the start of an empty one.
//!
//! Rows are counted high, never low: a character that is not ASCII (and a
//! stray UTF-8 continuation byte, shown as U+FFFD) is taken as two columns
//! wide (it may wrap sooner), rows drawn on stay drawn when
//! the screen scrolls (their text moved up), so a row counted `r` is never
//! above where it really is, and the lowest row drawn on is never
//! under-counted. A row below it is therefore really empty. Rows are clamped
//! to the screen's height, as the terminal clamps them (the session's size
//! must be the terminal's: [`super::Leave`] sees to it). Only sequences whose
//! effect on the cursor is modelled exactly are followed; anything else
//! (that could move drawn rows down or the cursor to an unknown place) ends
//! the following
//! until the next reset.

/// The cursor's place and the drawn rows since the last reset (1-based).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Grid {
    /// The terminal's width in columns.
    width: u32,
    /// The terminal's height in rows.
    height: u32,
    row: u32,
    /// `width + 1` when a character was written in the last column and the
    /// next one wraps.
    col: u32,
    /// The lowest row anything may have been drawn on; 0 for none.
    drawn: u32,
    /// The width taken by the last character drawn (for `CSI n b`).
    last: u32,
    /// `row` and `col` are where the cursor is, not counted high: since the
    /// reset or the last absolute move (`CSI row;col H`), nothing moved it.
    exact: bool,
    /// UTF-8 continuation bytes still expected by the last lead byte.
    utf8_left: u8,
}

impl Grid {
    /// A blank screen of `width` columns and `height` rows with the cursor
    /// home.
    pub fn reset(width: u16, height: u16) -> Grid {
        Grid {
            width: u32::from(width.max(1)),
            height: u32::from(height.max(1)),
            row: 1,
            col: 1,
            drawn: 0,
            last: 1,
            exact: true,
            utf8_left: 0,
        }
    }

    /// The cursor `(row, col)`, when known exactly.
    pub fn cursor(&self) -> Option<(u32, u32)> {
        self.exact.then_some((self.row, self.col))
    }

    /// Whether the cursor is in the first column of a row nothing was drawn on.
    pub fn at_empty_line_start(&self) -> bool {
        self.col == 1 && self.row > self.drawn
    }

    /// A control character or a printable byte (a UTF-8 continuation byte
    /// that a lead byte announced counts for nothing, a lead byte for two
    /// columns). ESC, which starts a sequence, cuts a UTF-8 sequence short.
    pub fn byte(&mut self, b: u8) {
        let continues = (0x80..=0xbf).contains(&b) && self.utf8_left > 0;
        if !continues && !matches!(b, 0x00..=0x07 | 0x0e..=0x1f | 0x7f) {
            self.exact = false;
        }
        self.utf8_left = match b {
            _ if continues => self.utf8_left - 1,
            0xc2..=0xdf => 1,
            0xe0..=0xef => 2,
            0xf0..=0xf4 => 3,
            _ => 0,
        };
        match b {
            _ if continues => {}
            b'\r' => self.col = 1,
            b'\n' | 0x0b | 0x0c => self.line_feed(),
            0x08 => self.col = self.col.saturating_sub(1).max(1),
            // To the next tab stop, not past the last column: taken as the
            // last column, so the next character is counted as wrapping.
            b'\t' => self.col = self.width,
            0x00..=0x1f | 0x7f => {}
            0x20..=0x7e => self.draw(1, 1),
            // A lead byte, or one shown as U+FFFD (a stray continuation).
            _ => self.draw(2, 1),
        }
    }

    /// Down a row; on the bottom row the screen scrolls (the rows drawn on
    /// are still counted where they were: high).
    fn line_feed(&mut self) {
        self.row = self.row.saturating_add(1).min(self.height);
    }

    /// `n` characters `cols` wide, as the terminal wraps them; worked
    /// out, not drawn one by one (`CSI n b` repeats any number of times).
    fn draw(&mut self, cols: u32, n: u32) {
        if n == 0 {
            return;
        }
        let (width, cols, n) = (u64::from(self.width), u64::from(cols.min(self.width)), u64::from(n));
        // Whole characters that fit: on the cursor's row, on a fresh one.
        let room = (width + 1).saturating_sub(u64::from(self.col)) / cols;
        let per_row = width / cols;
        if n <= room {
            self.col += u32::try_from(n * cols).unwrap_or(u32::MAX);
        } else {
            // The rest start this many rows below; the last holds `last_n`.
            let rest = n - room;
            let rows = rest.div_ceil(per_row);
            let last_n = rest - (rows - 1) * per_row;
            let rows = u32::try_from(rows).unwrap_or(u32::MAX);
            self.row = self.row.saturating_add(rows).min(self.height);
            self.col = u32::try_from(1 + last_n * cols).unwrap_or(u32::MAX);
        }
        self.drawn = self.drawn.max(self.row);
        self.last = u32::try_from(cols).unwrap_or(1);
    }

    /// The end of a (non-private) control sequence `CSI params final`;
    /// `None` when it ends the following.
    pub fn csi(mut self, params: &[u8], last: u8) -> Option<Grid> {
        // The pen, tab stops: the cursor stays, whatever the parameters
        // (`CSI > 4 ; 1 m` too). Modes (`CSI 4 h`, insert) are not followed.
        if matches!(last, b'm' | b'W' | b'g') {
            return Some(self);
        }
        let text = std::str::from_utf8(params).ok()?;
        let nums: Option<Vec<u32>> = text
            .split(';')
            .map(|p| if p.is_empty() { Some(0) } else { p.parse().ok() })
            .collect();
        let nums = nums?;
        // A parameter of 0 or none means 1 for moves.
        let at = |i: usize| nums.get(i).copied().unwrap_or(0).max(1);
        match last {
            b'H' | b'f' => {
                self.row = at(0).min(self.height);
                self.col = at(1).min(self.width);
                self.exact = true;
            }
            b'G' | b'`' => self.col = at(0).min(self.width),
            b'd' => self.row = at(0).min(self.height),
            b'b' => {
                self.exact = false;
                self.draw(self.last, at(0));
            }
            b'J' => match nums.first().copied().unwrap_or(0) {
                // Below the cursor, and the cursor's row from it.
                0 if self.col == 1 => self.drawn = self.drawn.min(self.row - 1),
                0 => self.drawn = self.drawn.min(self.row),
                2 => self.drawn = 0,
                // Above the cursor (nothing below changes), the scrollback.
                _ => {}
            },
            _ => return None,
        }
        Some(self)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn after(width: u16, bytes: &[u8], csis: &[(&[u8], u8)]) -> Option<Grid> {
        let mut g = Grid::reset(width, 24);
        for &b in bytes {
            g.byte(b);
        }
        csis.iter().try_fold(g, |g, (p, f)| g.csi(p, *f))
    }

    #[test]
    fn a_row_below_what_was_drawn_is_empty() {
        let g = after(80, b"hello\r\nhello\r\n", &[(b"3;1", b'H')]).unwrap();
        assert!(g.at_empty_line_start());
        let g = after(80, b"hello\r\nhello\r\n", &[(b"2;1", b'H')]).unwrap();
        assert!(!g.at_empty_line_start(), "row 2 has text");
        assert!(!after(80, b"", &[(b"1;5", b'H')]).unwrap().at_empty_line_start());
        assert!(
            after(80, b"x", &[(b"", b'H'), (b"2", b'J')])
                .unwrap()
                .at_empty_line_start()
        );
    }

    #[test]
    fn wrapped_text_counts_its_rows() {
        // Ten columns: 10 characters fill row 1 (the cursor waits to wrap),
        // the eleventh is on row 2.
        let g = after(10, b"0123456789x", &[(b"2;1", b'H')]).unwrap();
        assert!(!g.at_empty_line_start());
        let g = after(10, b"0123456789", &[(b"2;1", b'H')]).unwrap();
        assert!(g.at_empty_line_start());
        // A repeat of the last character draws as far.
        let g = after(10, b"ab", &[(b"9", b'b'), (b"2;1", b'H')]).unwrap();
        assert!(!g.at_empty_line_start());
        // Not ASCII: taken as wide, so five of them may fill the row.
        let g = after(10, "éééééé".as_bytes(), &[(b"2;1", b'H')]).unwrap();
        assert!(!g.at_empty_line_start());
    }

    #[test]
    fn the_cursor_is_known_after_an_absolute_move_until_it_moves() {
        assert_eq!(after(80, b"", &[]).unwrap().cursor(), Some((1, 1)));
        let g = after(80, b"one\r\ntwo\r\n", &[(b"3;1", b'H'), (b"0", b'm')]).unwrap();
        assert_eq!(g.cursor(), Some((3, 1)));
        let mut g = g;
        g.byte(b'x');
        assert_eq!(g.cursor(), None);
        g.byte(0x07);
        assert_eq!(g.csi(b"", b'H').unwrap().cursor(), Some((1, 1)));
    }

    #[test]
    fn what_may_move_rows_ends_the_following() {
        assert_eq!(after(80, b"", &[(b"", b'L')]), None);
        assert_eq!(after(80, b"", &[(b"2", b'A')]), None);
        assert_eq!(after(80, b"", &[(b">4;1", b'H')]), None, "not parameters it knows");
        assert!(after(80, b"", &[(b">4;1", b'm')]).unwrap().at_empty_line_start());
    }

    #[test]
    fn erasing_the_scrollback_erases_no_row() {
        let g = after(80, b"one", &[(b"3", b'J'), (b"", b'H')]).unwrap();
        assert!(!g.at_empty_line_start());
        assert!(
            after(80, b"one", &[(b"2", b'J'), (b"", b'H')])
                .unwrap()
                .at_empty_line_start()
        );
    }

    #[test]
    fn rows_are_clamped_to_the_height() {
        let g = after(80, b"", &[(b"30;1", b'H')]).unwrap();
        assert_eq!(g.cursor(), Some((24, 1)));
        let mut g = after(80, b"", &[(b"24;1", b'H')]).unwrap();
        g.byte(b'x');
        g.byte(b'\n');
        g.byte(b'\r');
        assert!(!g.at_empty_line_start(), "scrolled: row 24 is counted drawn");
    }

    #[test]
    fn a_stray_continuation_byte_is_drawn() {
        // Shown as U+FFFD: eleven of them wrap onto row 2.
        let g = after(10, &[0x80; 11], &[(b"2;1", b'H')]).unwrap();
        assert!(!g.at_empty_line_start());
        // Announced by a lead byte they draw nothing more.
        let g = after(10, "ééééé".as_bytes(), &[(b"2;1", b'H')]).unwrap();
        assert!(g.at_empty_line_start());
    }
    #[test]
    fn a_repeat_is_worked_out_and_numbers_do_not_overflow() {
        // Ten columns, 24 rows: 2 + 4000 characters fill every row.
        let g = after(10, b"ab", &[(b"4000", b'b'), (b"24;1", b'H')]).unwrap();
        assert!(!g.at_empty_line_start());
        let g = after(10, b"ab", &[(b"4294967295", b'b')]).unwrap();
        assert_eq!((g.row, g.drawn), (24, 24));
        // Exactly a row: the cursor waits in the last column, not wrapped.
        let g = after(10, b"a", &[(b"9", b'b'), (b"2;1", b'H')]).unwrap();
        assert!(g.at_empty_line_start());
        let mut g = after(80, b"", &[(b"4294967295;4294967295", b'H')]).unwrap();
        g.byte(b'\n');
        g.byte(b'x');
        assert_eq!(g.row, 24);
    }

    #[test]
    fn a_repeat_draws_as_far_as_one_character_at_a_time() {
        for width in 1..8u16 {
            for start in 0..10 {
                for cols in 1..=2 {
                    for n in 0..40 {
                        let mut g = Grid::reset(width, 6);
                        g.col = start % (u32::from(width) + 1) + 1;
                        let mut one = g;
                        // As the terminal draws them, one at a time.
                        let c = cols.min(one.width);
                        for _ in 0..n {
                            if one.col + c - 1 > one.width {
                                one.row = (one.row + 1).min(one.height);
                                one.col = 1;
                            }
                            one.drawn = one.drawn.max(one.row);
                            one.col += c;
                            one.last = c;
                        }
                        g.draw(cols, n);
                        assert_eq!(g, one, "width {width}, col {}, {n} of {cols}", one.col);
                    }
                }
            }
        }
    }
}
