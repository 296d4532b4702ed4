//! Composition of a screen snapshot: scrollback first, then `avt`'s dump.
//!
//! `avt::Terminal::dump` rebuilds the visible buffers, cursor and modes of a
//! fresh terminal, but omits retained scrollback. It emits no reset and no
//! cursor-home: it assumes the receiving terminal is in its power-on state
//! with the cursor at the top-left corner, and starts printing the primary
//! screen's first row there. So the scrollback is rendered first, as ordinary
//! lines pushed off the top of the screen by line feeds, and then the
//! terminal is returned to the state `dump` expects (default pen, cursor
//! home, every visible row blank) before the dump itself is appended.

use std::fmt::Write as _;

use avt::{Color, Line, Pen};

/// Appends escape sequences that leave `lines` in the scrollback of a fresh
/// `rows`-row terminal, with a blank screen, the default pen and the cursor
/// at home afterwards.
pub(crate) fn push_scrollback<'a>(out: &mut String, lines: impl ExactSizeIterator<Item = &'a Line>, rows: usize) {
    let count = lines.len();

    if count == 0 {
        return;
    }

    let mut pen = Pen::default();
    let mut continues = false;

    for (i, line) in lines.enumerate() {
        push_line(out, line, &mut pen, continues);
        continues = line.is_wrapped();

        // A soft-wrapped line is printed to the last column and continues
        // through the terminal's own auto-wrap, so the receiver marks it as
        // wrapped too. The last line always ends with a hard break, since
        // its continuation (if any) is the first visible row, which the dump
        // prints from the top-left corner.
        if line.is_wrapped() && i + 1 < count {
            continue;
        }

        // The pen is reset before each line feed: terminals fill new rows
        // with the current background colour (xterm.js does).
        if !pen.is_default() {
            out.push_str("\x1b[m");
            pen = Pen::default();
        }

        out.push_str("\r\n");
    }

    if !pen.is_default() {
        out.push_str("\x1b[m");
    }

    // The cursor is now on the row just below the last scrollback line. One
    // more line feed per remaining screen row scrolls every scrollback line
    // above the screen and leaves only blank rows visible.
    for _ in 1..rows {
        out.push('\n');
    }

    out.push_str("\x1b[H");
}

/// Appends one line's cells, switching the pen where it changes. Trailing
/// blank cells with the default pen are left out of unwrapped lines, except
/// that a line continuing a wrapped one prints at least one cell: that first
/// character is what makes the terminal perform the pending wrap.
fn push_line(out: &mut String, line: &Line, pen: &mut Pen, continues: bool) {
    let cells = line.cells();
    let end = if line.is_wrapped() {
        cells.len()
    } else {
        cells
            .iter()
            .rposition(|cell| !(cell.char() == ' ' && cell.pen().is_default()))
            .map_or(0, |last| last + 1)
    };
    let end = if continues { end.max(1) } else { end }.min(cells.len());

    for cell in &cells[..end] {
        // The second half of a wide character holds no character of its own.
        if cell.width() == 0 {
            continue;
        }

        if cell.pen() != pen {
            push_sgr(out, cell.pen());
            *pen = *cell.pen();
        }

        out.push(cell.char());
    }
}

/// Appends a full SGR sequence (starting with a reset) selecting `pen`.
pub(crate) fn push_sgr(out: &mut String, pen: &Pen) {
    out.push_str("\x1b[0");

    if pen.is_bold() {
        out.push_str(";1");
    } else if pen.is_faint() {
        out.push_str(";2");
    }

    if pen.is_italic() {
        out.push_str(";3");
    }

    if pen.is_underline() {
        out.push_str(";4");
    }

    if pen.is_blink() {
        out.push_str(";5");
    }

    if pen.is_inverse() {
        out.push_str(";7");
    }

    if pen.is_strikethrough() {
        out.push_str(";9");
    }

    if let Some(color) = pen.foreground() {
        push_color(out, color, 30);
    }

    if let Some(color) = pen.background() {
        push_color(out, color, 40);
    }

    out.push('m');
}

/// Appends `;<colour>` for a foreground (`base` 30) or background (40)
/// colour, using the semicolon forms that every terminal understands.
fn push_color(out: &mut String, color: Color, base: u8) {
    // Writing into a String cannot fail, so the results are ignored.
    let _ = match color {
        Color::Indexed(n) if n < 8 => write!(out, ";{}", base + n),
        Color::Indexed(n) if n < 16 => write!(out, ";{}", base + 60 + n - 8),
        Color::Indexed(n) => write!(out, ";{};5;{}", base + 8, n),
        Color::RGB(rgb) => write!(out, ";{};2;{};{};{}", base + 8, rgb.r, rgb.g, rgb.b),
    };
}

/// Appends `avt`'s dump, rewriting colour parameters of its SGR sequences
/// from the colon forms (`38:2:R:G:B`, `38:5:N`) into the semicolon forms
/// (`38;2;R;G;B`, `38;5;N`).
///
/// xterm.js reads `38:2:A:B:C` as the ITU T.416 form with a colour-space id,
/// i.e. as red B, green C and blue missing, so truecolor cells would change
/// colour in the browser. The semicolon forms mean the same to `avt` and to
/// every xterm-like terminal. Only complete `ESC [ <digits : ;> m` sequences
/// are touched: the dump prints no escape characters as cell text, so such a
/// sequence is always a real SGR.
pub(crate) fn push_dump(out: &mut String, dump: &str) {
    let mut rest = dump;

    while let Some(start) = rest.find("\x1b[") {
        let (before, seq) = rest.split_at(start);
        out.push_str(before);
        let params_len = seq[2..]
            .find(|c: char| !(c.is_ascii_digit() || c == ':' || c == ';'))
            .unwrap_or(seq.len() - 2);
        let params = &seq[2..2 + params_len];

        if seq[2 + params_len..].starts_with('m') && params.contains(':') {
            out.push_str("\x1b[");
            out.extend(params.chars().map(|c| if c == ':' { ';' } else { c }));
            out.push('m');
            rest = &seq[3 + params_len..];
        } else {
            out.push_str("\x1b[");
            rest = &seq[2..];
        }
    }

    out.push_str(rest);
}

#[cfg(test)]
mod tests {
    use super::push_dump;
    use crate::session::screen::ScreenModel;

    /// A snapshot taken with the output cut anywhere (inside an escape
    /// sequence, an OSC string, a UTF-8 character) and fed to a fresh
    /// model, followed by the rest of the output from the snapshot's own
    /// offset, gives the model that took the output whole. The screen task
    /// freezes idle models that way, and late joiners start that way; a
    /// cut inside `ESC [ H` used to print `[H` as text (a `clear` lost).
    #[test]
    fn a_snapshot_cut_anywhere_goes_on_as_the_output_does() {
        let output = "\x1b[?2004h$ printf osc52\r\n\x1b[?2004l\r\x1b]52;c;Y29waWVk\x07osc-sent\r\n\
                      $ clear\r\n\x1b[?2004l\r\x1b[H\x1b[2J\x1b[3J\u{754c}\u{9762} \u{1F600}\u{1F680} x\
                      \x1b[1;31mred\x1b[0m e\u{301}\x1b[5;10r\x1b[?1049h\x1bP1$r0m\x1b\\\x1b[2;4Halt\r\n\
                      \x1b(0lqk\x1b(B\x1b[?1049l\x1b[r\x1b[38:2:10:20:30mtrue colour\x1b[m\r\n$ \
                      \x1b[1\n2H\x1b]0;a\x1b\\x\x1b\r\n$ ";
        let output = output.as_bytes();
        let (cols, rows) = (30, 8);
        let mut whole = ScreenModel::new(cols, rows, 50);
        whole.feed(output);
        for cut in 0..=output.len() {
            let mut first = ScreenModel::new(cols, rows, 50);
            first.feed(&output[..cut]);
            let mut next = ScreenModel::new(cols, rows, 50);
            next.feed(first.snapshot().as_bytes());
            next.feed(&output[cut - first.carried()..]);
            assert_eq!(
                next.snapshot(),
                whole.snapshot(),
                "cut at {cut}: {:?}",
                String::from_utf8_lossy(&output[..cut])
            );
        }
    }

    #[test]
    fn colon_colour_parameters_become_semicolons_in_sgr_only() {
        let mut out = String::new();
        push_dump(&mut out, "a38:2:1\x1b[0;38:2:1:2:3;48:5:200mb\x1b[2;3H\x1b[1:2");
        assert_eq!(out, "a38:2:1\x1b[0;38;2;1;2;3;48;5;200mb\x1b[2;3H\x1b[1:2");
    }
}
