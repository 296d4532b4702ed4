//! Tests of [`super::Leave`]: the bytes that give the terminal back, and
//! where the closing line goes, from the exact bytes a terminal was sent.

use super::*;

fn after(chunks: &[&[u8]]) -> Leave {
    let mut l = Leave::default();
    for c in chunks {
        l.feed(c);
    }
    l
}

#[test]
fn the_alternate_screen_is_left_only_when_in_use() {
    let shell = after(&[b"\x1b[?2004h$ exit\r\n"]);
    assert!(!shell.alternate());
    assert!(!shell.bytes().starts_with(LEAVE_ALTERNATE));
    assert!(!shell.bytes().ends_with(b"\r\n"), "already on a fresh line");

    // Split across writes, and among other modes.
    let vi = after(&[b"$ vi\r\n\x1b[?10", b"49;1h\x1b[H~"]);
    assert!(vi.alternate());
    assert_eq!(vi.bytes(), [LEAVE_ALTERNATE, MODES].concat(), "back where vi started");

    let quit = after(&[b"$ vi\r\n\x1b[?1049h~\x1b[?1049l$ "]);
    assert!(!quit.alternate());
    assert!(quit.bytes().ends_with(b"\r\n"));
    assert!(after(&[b"\x1b[?47h", b"x\x1bc"]).bytes().starts_with(MODES));
}

#[test]
fn a_status_line_is_wiped_unless_a_reset_did() {
    let mut l = after(&[b"$ "]);
    l.status_line(24);
    assert!(l.bytes().starts_with(b"\x1b7\x1b[24;1H\x1b[0m\x1b[2K\x1b8"));
    l.feed(b"\x1bc$ ");
    assert!(l.bytes().starts_with(MODES));
}

#[test]
fn the_closing_line_starts_a_line_of_its_own() {
    assert!(after(&[b"$ "]).bytes().ends_with(b"\r\n"));
    assert!(after(&[b"done\r\n\x1b[0m"]).bytes().ends_with(MODES));
    // An OSC title with a newline-free body, ended by BEL or ST.
    assert!(after(&[b"a\n\x1b]0;title\x07"]).bytes().ends_with(MODES));
    assert!(after(&[b"a\n\x1b]0;t\x1b\\"]).bytes().ends_with(MODES));
    // A carriage return alone leaves text on the line.
    assert!(after(&[b"50%\r"]).bytes().ends_with(b"\r\n"));
    // A cursor move makes the column unknown.
    assert!(after(&[b"a\n\x1b[5;1H"]).bytes().ends_with(b"\r\n"));
}

/// What `attach` feeds: a reset, then a snapshot as the server draws
/// it (tab stops set, the cursor put last).
fn snapshot(rows: &str, cursor: &str) -> Leave {
    let mut l = Leave::sized(Some((100, 24)));
    l.feed(b"\x1bc");
    l.feed(rows.as_bytes());
    l.feed(b"\x1b[5W\x1b[9G\x1b[0W\x1b[17G\x1b[0W\x1b[0m");
    l.feed(cursor.as_bytes());
    l.feed(b"\x1b[0m");
    l
}

#[test]
fn no_line_break_where_a_snapshot_left_the_cursor_on_an_empty_row() {
    assert!(snapshot("", "\x1b[1;1H").bytes().ends_with(MODES), "a blank screen");
    let two = "hello \x1b[94b\r\nhello \x1b[94b\r\n";
    assert!(snapshot(two, "\x1b[3;1H").bytes().ends_with(MODES));
    assert!(snapshot(two, "\x1b[2;1H").bytes().ends_with(b"\r\n"), "row 2 has text");
    assert!(snapshot("$ ", "\x1b[1;3H").bytes().ends_with(b"\r\n"), "after a prompt");
    // A full-screen program: the primary screen's cursor counts, and
    // the cursor is put back there (1047 saved none).
    let mut vi = snapshot(two, "\x1b[3;1H");
    vi.feed(b"\x1b[?1047h\x1b[1;1HFULL \x1b[95b\r\n\x1b[2;1H");
    assert_eq!(vi.bytes(), [LEAVE_ALTERNATE, b"\x1b[3;1H", MODES].concat());
    // Into a file the alternate screen is not left: its own line counts.
    vi.feed(b"got:x\r\n");
    assert_eq!(vi.line_break_in_place(), b"");
    assert_eq!(after(&[b"\x1b[?1049hgot:x"]).line_break_in_place(), b"\r\n");
    // Without a width the row's contents stay unknown.
    let mut no_width = Leave::default();
    no_width.feed(b"\x1bc\x1b[1;1H");
    assert!(no_width.bytes().ends_with(b"\r\n"));
}

#[test]
fn after_a_window_change_the_cursor_is_not_moved_to_where_it_was() {
    let mut vi = snapshot("one\r\ntwo\r\n", "\x1b[3;1H");
    vi.feed(b"\x1b[?1047h\x1b[1;1HFULL\x1b[2;1H");
    vi.resized(Some((40, 24)));
    // The primary screen was reflowed: row 3 may hold its text now, and
    // where tmux leaves the cursor (the program's place) too. The bottom
    // row, and a line feed there, scroll a blank row in.
    assert_eq!(vi.modes(), [LEAVE_ALTERNATE, TO_THE_BOTTOM, MODES].concat());
    assert_eq!(vi.line_break(), b"\r\n");
    // Not after the program left the alternate screen itself.
    vi.feed(b"\x1b[?1049l$ ");
    assert_eq!(vi.modes(), MODES);
}

/// Ends with the line break before the closing line.
fn breaks(l: &Leave) -> bool {
    l.bytes().ends_with(b"\r\n")
}

#[test]
fn scrollback_erased_leaves_the_screen_as_it_is() {
    let mut l = snapshot("one\r\n", "\x1b[2;1H");
    l.feed(b"\x1b[3J\x1b[H");
    assert!(breaks(&l), "row 1 still has text");
}

#[test]
fn rows_are_clamped_to_the_height_and_a_session_of_another_size_is_not_followed() {
    let mut l = Leave::sized(Some((100, 24)));
    l.reset((100, 24));
    l.feed(b"\x1b[30;1Hhello\x1b[35;1H");
    assert!(breaks(&l), "both on row 24");
    let mut l = Leave::sized(Some((100, 24)));
    l.reset((100, 24));
    l.feed(b"\x1b[24;1Hhello\x1b[30d\r");
    assert!(breaks(&l), "VPA clamped too");
    // A taller session: its rows land elsewhere.
    let mut l = Leave::sized(Some((100, 24)));
    l.reset((100, 40));
    l.feed(b"hello\x1b[3;1H");
    assert!(breaks(&l));
    // Resized to another size than the terminal's after the snapshot.
    let mut l = snapshot("", "\x1b[1;1H");
    l.session_resized((80, 24));
    assert!(breaks(&l));
    let mut l = snapshot("", "\x1b[1;1H");
    l.session_resized((100, 24));
    assert!(!breaks(&l));
}

#[test]
fn the_reset_is_heard_after_output_that_ended_inside_a_sequence() {
    for before in [&b"$ \x1b]0;a ti"[..], b"$ \x1b", b"$ \x1b[1;3", b"$ \x1bP1$"] {
        let mut l = Leave::sized(Some((100, 24)));
        l.feed(before);
        l.reset((100, 24));
        l.feed(b"hello\r\n\x1b[2;1H");
        assert!(!breaks(&l), "{}", String::from_utf8_lossy(before).escape_debug());
    }
    // Written in a string, ESC c resets a terminal too.
    let mut l = Leave::sized(Some((100, 24)));
    l.feed(b"$ \x1b]0;a ti\x1bchello\r\n\x1b[2;1H");
    assert!(!breaks(&l));
    let mut l = Leave::sized(Some((100, 24)));
    l.feed(b"$ \x1b\x1bchello\r\n\x1b[2;1H");
    assert!(!breaks(&l));
}

#[test]
fn what_moves_the_cursor_unseen_ends_the_following() {
    let two = "one\r\ntwo\r\n";
    // Origin mode, a restored cursor, reverse wrap, no autowrap: the cursor
    // may be on text.
    for seq in [
        &b"\x1b[?6h"[..],
        b"\x1b[?6l",
        b"\x1b[?1048l",
        b"\x1b[?45h\x08",
        b"\x1b[?7l",
        b"\x1b[4h",
    ] {
        let mut l = snapshot(two, "\x1b[3;1H");
        l.feed(seq);
        assert!(breaks(&l), "{}", String::from_utf8_lossy(seq).escape_debug());
    }
    // Known modes leave it.
    let mut l = snapshot(two, "\x1b[3;1H");
    l.feed(b"\x1b[?25h\x1b[?2004;1000h\x1b[?2026l\x1b=\x1b(B\x1b7");
    assert!(!breaks(&l));
    // A line's width doubled.
    let mut l = snapshot("one", "\x1b[1;3H");
    l.feed(b"\x1b[2;1H\x1b#6");
    assert!(breaks(&l));
    // A control inside a sequence acts: the tab moves the cursor right.
    let mut l = snapshot(two, "\x1b[3;1H");
    l.feed(b"\x1b[0\tm");
    assert!(breaks(&l));
    // CAN ends a title: what follows is drawn.
    let mut l = snapshot(two, "\x1b[3;1H");
    l.feed(b"\x1b]0;t\x18x");
    assert!(breaks(&l));
    // A stray continuation byte is drawn (U+FFFD).
    let mut l = snapshot(two, "\x1b[3;1H");
    l.feed(b"\x1b[0m\xa9");
    assert!(breaks(&l));
}

#[test]
fn a_long_pen_keeps_the_following() {
    let mut l = snapshot("one\r\n", "\x1b[2;1H");
    l.feed(b"\x1b[38;2;100;100;100;48;2;200;200;200;1;3;4m");
    assert!(!breaks(&l));
}

#[test]
fn into_a_file_the_closing_line_follows_a_line_feed_only() {
    let l = snapshot("one\r\n", "\x1b[3;1H");
    assert_eq!(l.line_break_in_place(), b"\r\n");
    assert_eq!(after(&[b"one\r\n"]).line_break_in_place(), b"");
}
