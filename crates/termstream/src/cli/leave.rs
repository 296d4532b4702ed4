//! What `attach` (and `run --tty`) writes when it ends, to give the local
//! terminal back in a usable state, worked out from the bytes it drew.
//!
//! Leaving the alternate screen (`CSI ? 1049 l`) also restores a saved
//! cursor, and terminals do that even when the alternate screen is not in
//! use: xterm and VTE move the cursor to the last `DECSC` (the top-left
//! corner when there was none), tmux to where the last full-screen program
//! started. So it is sent only when the session's program left the local
//! terminal on the alternate screen. And the closing line
//! (`[detached (from session work)]`) starts on a line of its own: after a
//! prompt such as `$ ` a line break comes first, and none when the cursor
//! is at the start of an empty row: after a line feed, or (followed from
//! the reset before a snapshot, [`grid`]) where a snapshot put it.

mod grid;

use grid::Grid;

/// Modes a full-screen program may have set, all put back: a hidden cursor,
/// application keys, mouse reports, bracketed paste, the pen.
const MODES: &[u8] = b"\x1b[?25h\x1b[?1l\x1b>\x1b[?1000l\x1b[?1002l\x1b[?1003l\x1b[?1006l\x1b[?2004l\x1b[0m";
/// Leaves the alternate screen and restores the cursor saved on entering it.
const LEAVE_ALTERNATE: &[u8] = b"\x1b[?1049l";
/// The scroll region reset (the cursor goes home), then the bottom row.
const TO_THE_BOTTOM: &[u8] = b"\x1b[r\x1b[999;1H";
/// The longest parameter string kept of one control sequence; longer ones
/// are not mode changes this cares about.
const MAX_PARAMS: usize = 32;
/// Private modes (`CSI ? n h`, `CSI ? n l`) known to leave the cursor and
/// the screen's rows as they are: cursor keys, blinking and shown cursor,
/// mouse reports, focus reports, bracketed paste, synchronized output.
/// Any other ends the following (origin mode homes the cursor, `1048`
/// restores one, reverse wrap, ...).
const STILL_MODES: &[&[u8]] = &[
    b"1", b"9", b"12", b"25", b"1000", b"1002", b"1003", b"1004", b"1005", b"1006", b"1015", b"2004", b"2026",
];
/// The modes that switch screens.
const ALTERNATE_MODES: &[&[u8]] = &[b"1049", b"1047", b"47"];

/// Where the byte scanner is within an escape sequence.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Scan {
    Ground,
    /// After ESC.
    Escape,
    /// After `ESC` and an intermediate byte (`ESC ( B`): the next final
    /// byte ends it.
    Intermediate,
    /// After `ESC [`; `private` once a `?` was seen.
    Csi {
        private: bool,
    },
    /// Inside a string (OSC, DCS, ...) until ST or BEL.
    Str,
    /// ESC inside a string: `\` ends it.
    StrEscape,
}

/// Follows the bytes written to the local terminal just far enough to know
/// whether it is on the alternate screen and whether the cursor is at the
/// start of a line. Sequences split across writes are followed across them.
#[derive(Debug)]
pub struct Leave {
    scan: Scan,
    params: Vec<u8>,
    alternate: bool,
    /// The cursor is at the start of an empty line (as far as is known).
    line_start: bool,
    /// `line_start` when the alternate screen was entered: leaving it puts
    /// the cursor back there.
    line_start_before_alternate: bool,
    /// Where the cursor was when the alternate screen was entered, when
    /// known exactly: a snapshot enters it with `CSI ? 1047 h`, which saves
    /// no cursor, so leaving it with `CSI ? 1049 l` would put the cursor
    /// where the terminal pleases (the top-left corner, or where it is on
    /// the alternate screen), and it is moved there after.
    cursor_before_alternate: Option<(u32, u32)>,
    /// The window changed while on the alternate screen: where leaving it
    /// puts the cursor on the reflowed primary screen is not known (tmux
    /// leaves it where the program's was, on the primary's text), so it is
    /// sent to the bottom row, and the line break scrolls a blank row in.
    resized_under_alternate: bool,
    /// The local terminal's size `(cols, rows)`, when known: a reset then
    /// starts `grid`.
    size: Option<(u16, u16)>,
    /// The cursor followed since the last reset, while that is possible.
    grid: Option<Grid>,
    /// The row of attach's own status line ("the server is away"), while
    /// it is on the screen: nothing the program drew, so it is wiped.
    status_row: Option<u16>,
}

impl Default for Leave {
    fn default() -> Leave {
        Leave {
            scan: Scan::Ground,
            params: Vec::new(),
            alternate: false,
            line_start: false,
            line_start_before_alternate: false,
            cursor_before_alternate: None,
            resized_under_alternate: false,
            size: None,
            grid: None,
            status_row: None,
        }
    }
}

impl Leave {
    /// For a terminal of `size` `(cols, rows)` (when known), which lets the
    /// cursor be followed after a reset (`attach` resets before a snapshot).
    pub fn sized(size: Option<(u16, u16)>) -> Leave {
        Leave {
            size,
            ..Leave::default()
        }
    }

    /// For a terminal whose cursor is at the start of an empty line (a
    /// command was just typed at a prompt: `run`).
    pub fn at_fresh_line() -> Leave {
        Leave {
            line_start: true,
            ..Leave::default()
        }
    }

    /// Takes note of the reset written before a snapshot of a session of
    /// `session` `(cols, rows)`: the terminal is reset whatever sequence
    /// the bytes before it ended in. The cursor is followed from here only when
    /// the session's size is the terminal's (else the snapshot's rows and
    /// moves are not where they land: a taller session's row 30 is the
    /// terminal's last).
    pub fn reset(&mut self, session: (u16, u16)) {
        self.scan = Scan::Ground;
        self.feed(b"\x1bc");
        if self.size != Some(session) {
            self.grid = None;
        }
    }

    /// The session was resized: when to another size than the terminal's
    /// (a web viewer's), its moves are no longer followed.
    pub fn session_resized(&mut self, session: (u16, u16)) {
        if self.size != Some(session) {
            self.grid = None;
        }
    }

    /// The terminal's window changed: rows may have been rewrapped, so the
    /// cursor is no longer followed until the next reset, and a place
    /// recorded before the change is not moved to (terminals reflow the
    /// primary screen: it may now be on its text). On the alternate screen,
    /// leaving it sends the cursor to the bottom row instead.
    pub fn resized(&mut self, size: Option<(u16, u16)>) {
        self.size = size;
        self.grid = None;
        self.cursor_before_alternate = None;
        // Nor is the restored cursor known to be at an empty line's start.
        self.line_start_before_alternate = false;
        self.resized_under_alternate |= self.alternate;
    }

    /// The cursor is at the start of an empty line, as far as is known.
    fn at_line_start(&self) -> bool {
        self.line_start || self.grid.is_some_and(|g| g.at_empty_line_start())
    }

    /// Takes note of bytes written to the terminal.
    pub fn feed(&mut self, bytes: &[u8]) {
        for &b in bytes {
            self.byte(b);
        }
    }

    fn byte(&mut self, b: u8) {
        match self.scan {
            Scan::Ground => {
                if let Some(g) = &mut self.grid {
                    g.byte(b);
                }
                match b {
                    0x1b => self.scan = Scan::Escape,
                    b'\n' => self.line_start = true,
                    // Bell, and the shift controls, do not move the cursor.
                    0x07 | 0x0e | 0x0f => {}
                    _ => self.line_start = false,
                }
            }
            Scan::Escape => {
                self.params.clear();
                self.scan = match b {
                    b'[' => Scan::Csi { private: false },
                    b']' | b'P' | b'X' | b'^' | b'_' => Scan::Str,
                    // ESC again starts anew.
                    0x1b => Scan::Escape,
                    // A character set chosen (`ESC ( B`) leaves the cursor;
                    // anything else (`ESC # 6` halves the line's width) ends
                    // the following.
                    b'(' | b')' | b'*' | b'+' | b'-' | b'.' | b'/' => Scan::Intermediate,
                    0x20..=0x2f => {
                        self.line_start = false;
                        self.grid = None;
                        Scan::Intermediate
                    }
                    0x00..=0x1f => self.control_in_sequence(b, Scan::Escape),
                    _ => {
                        self.escape_end(b);
                        Scan::Ground
                    }
                };
            }
            Scan::Intermediate => match b {
                0x1b => self.scan = Scan::Escape,
                0x00..=0x1f => self.scan = self.control_in_sequence(b, Scan::Intermediate),
                0x20..=0x2f => {}
                _ => self.scan = Scan::Ground,
            },
            Scan::Csi { private } => match b {
                b'?' if self.params.is_empty() && !private => self.scan = Scan::Csi { private: true },
                0x20..=0x3f if self.params.len() < MAX_PARAMS => self.params.push(b),
                0x20..=0x3f => {}
                0x40..=0x7e => {
                    self.csi_end(private, b);
                    self.scan = Scan::Ground;
                }
                0x1b => self.scan = Scan::Escape,
                0x00..=0x1f => self.scan = self.control_in_sequence(b, self.scan),
                _ => {}
            },
            Scan::Str => match b {
                0x07 => self.scan = Scan::Ground,
                0x1b => self.scan = Scan::StrEscape,
                0x18 | 0x1a => self.scan = self.control_in_sequence(b, Scan::Str),
                _ => {}
            },
            // ESC ends the string and, but for `\`, starts a sequence
            // (`ESC c` resets the terminal there too).
            Scan::StrEscape if b == b'\\' => self.scan = Scan::Ground,
            Scan::StrEscape => {
                self.scan = Scan::Escape;
                self.byte(b);
            }
        }
    }

    /// A control inside a sequence: acted on there (a line feed moves the
    /// cursor; CAN and SUB end the sequence), which is not followed.
    fn control_in_sequence(&mut self, b: u8, scan: Scan) -> Scan {
        self.line_start = false;
        self.grid = None;
        if matches!(b, 0x18 | 0x1a) { Scan::Ground } else { scan }
    }

    /// The end of `ESC final`.
    fn escape_end(&mut self, b: u8) {
        // `ESC c` resets the terminal: the cursor goes home, the screen
        // (and a status line on it) is cleared.
        if b == b'c' {
            self.alternate = false;
            self.resized_under_alternate = false;
            self.status_row = None;
            self.line_start = false;
            self.grid = self.size.map(|(cols, rows)| Grid::reset(cols, rows));
            return;
        }
        // Saving the cursor, keypad modes, a tab stop, a string's end, a
        // character set chosen: the cursor stays. Anything else (reverse
        // index, restoring the cursor, `ESC # 6`, ...) ends the following.
        if !matches!(b, b'7' | b'=' | b'>' | b'H' | b'\\') {
            self.line_start = false;
            self.grid = None;
        }
    }

    fn csi_end(&mut self, private: bool, last: u8) {
        // The pen leaves the cursor where it is, however long its
        // parameters.
        if !private && last == b'm' {
            return;
        }
        if private && (last == b'h' || last == b'l') {
            let modes = || self.params.split(|&c| c == b';');
            let alternate_mode = modes().any(|p| ALTERNATE_MODES.contains(&p));
            let still = modes().all(|p| STILL_MODES.contains(&p) || ALTERNATE_MODES.contains(&p));
            if !still || self.params.len() >= MAX_PARAMS {
                self.grid = None;
                self.line_start = false;
            }
            if alternate_mode {
                let on = last == b'h';
                if on != self.alternate {
                    self.resized_under_alternate = false;
                }
                if on && !self.alternate {
                    self.line_start_before_alternate = self.at_line_start();
                    self.cursor_before_alternate = self.grid.and_then(|g| g.cursor());
                    self.line_start = false;
                } else if !on && self.alternate {
                    self.line_start = self.line_start_before_alternate;
                    self.cursor_before_alternate = None;
                }
                // The other screen's rows (and, after it, a cursor put back
                // as the terminal does it) are not followed.
                self.grid = None;
                self.alternate = on;
            }
            return;
        }
        if private || self.params.len() >= MAX_PARAMS {
            // Not a sequence followed, or perhaps cut short: its numbers are
            // not to be trusted.
            self.grid = None;
        } else {
            self.grid = self.grid.and_then(|g| g.csi(&self.params, last));
        }
        // Anything else (a move, an erase of the line) is taken as a move.
        self.line_start = false;
    }

    /// Takes note of a status line drawn on `row` (1-based) over the
    /// program's screen, to be wiped at the end unless a reset does first.
    pub fn status_line(&mut self, row: u16) {
        self.status_row = Some(row);
    }

    /// Whether the local terminal is on the alternate screen.
    pub fn alternate(&self) -> bool {
        self.alternate
    }

    /// The bytes that give the terminal's modes back: a status line wiped,
    /// the alternate screen left if it is in use, the other modes reset.
    pub fn modes(&self) -> Vec<u8> {
        let mut out = Vec::new();
        if let Some(row) = self.status_row {
            // Saved and restored around: the cursor stays where it was.
            out.extend_from_slice(format!("\x1b7\x1b[{row};1H\x1b[0m\x1b[2K\x1b8").as_bytes());
        }
        if self.alternate {
            out.extend_from_slice(LEAVE_ALTERNATE);
            if self.resized_under_alternate {
                // No scroll region (the line feed scrolls), the bottom row.
                out.extend_from_slice(TO_THE_BOTTOM);
            } else if let Some((row, col)) = self.cursor_before_alternate {
                out.extend_from_slice(format!("\x1b[{row};{col}H").as_bytes());
            }
        }
        out.extend_from_slice(MODES);
        out
    }

    /// [`Leave::modes`], then [`Leave::line_break`].
    pub fn bytes(&self) -> Vec<u8> {
        let mut out = self.modes();
        out.extend_from_slice(self.line_break());
        out
    }

    /// [`Leave::line_break`] where the modes are not given back (the bytes
    /// go to a file): the alternate screen, if in use, is not left, so the
    /// cursor on it is the one that counts. Only a line feed last counts
    /// (not a followed cursor), so the file's closing line is a line of its
    /// own, as the file is read line by line.
    pub fn line_break_in_place(&self) -> &'static [u8] {
        if self.line_start { b"" } else { b"\r\n" }
    }

    /// What puts the cursor on a line of its own for a closing line
    /// (nothing when it is at the start of one).
    pub fn line_break(&self) -> &'static [u8] {
        let at_line_start = if self.alternate {
            self.line_start_before_alternate
        } else {
            self.at_line_start()
        };
        if at_line_start { b"" } else { b"\r\n" }
    }
}

#[cfg(test)]
mod tests;
