//! What [`Held`] sends again once attached again, and what it drops.

use termstream_proto::SessionId;

use super::{HOLD_MAX, Held, LOG_BYTES, LOG_MESSAGES};

fn id() -> SessionId {
    SessionId::new("s").unwrap()
}

/// The last `refused` messages sent were refused: their keys go out
/// again, in order and before the keys typed while re-attaching; a
/// refused window size adds nothing (attach sends the size anyway).
#[test]
fn refused_keys_go_again_before_the_keys_typed_meanwhile() {
    let mut h = Held::default();
    h.sent_keys("taken ");
    h.sent_keys("one ");
    h.sent_resize();
    h.sent_keys("two ");
    h.hold("three");
    assert_eq!(h.reattached(Some(3)), "one two three");
    assert_eq!(h.note(&id()), None);
    // The log starts again: a later re-attach sends nothing of before.
    h.sent_keys("four");
    assert_eq!(h.reattached(Some(1)), "four");
    assert_eq!(h.reattached(Some(0)), "");
}

/// No refusal, or a count that says nothing (a reconnect came in
/// between): only the keys typed meanwhile.
#[test]
fn nothing_is_sent_again_without_a_known_refusal() {
    let mut h = Held::default();
    h.sent_keys("taken");
    h.hold("typed");
    assert_eq!(h.reattached(Some(0)), "typed");
    h.sent_keys("taken");
    h.hold("typed");
    assert_eq!(h.reattached(None), "typed");
}

/// Over [`HOLD_MAX`] in all, the oldest keys up to it go out (cut on a
/// character's boundary), nothing typed after a gap, and the note counts
/// the bytes dropped, over the whole attach.
#[test]
fn keys_over_the_limit_are_dropped_and_counted() {
    let mut h = Held::default();
    let refused = "r".repeat(HOLD_MAX - 10);
    h.sent_keys(&refused);
    h.hold("0123456");
    h.hold("é€"); // 2 + 3 bytes: the euro sign no longer fits.
    h.hold("a"); // After a gap: dropped.
    let keys = h.reattached(Some(1));
    assert_eq!(keys.len(), HOLD_MAX - 1);
    assert!(keys.ends_with("0123456é"), "{:?}", &keys[keys.len() - 12..]);
    let note = h.note(&id()).expect("a note");
    assert_eq!(
        note,
        "termstream: 4 bytes typed while attaching s again were dropped (over the 64 KiB held)"
    );
    // Held again from nothing at the next re-attach; the count goes on.
    h.hold("x");
    assert_eq!(h.reattached(Some(0)), "x");
    h.sent_keys(&"y".repeat(HOLD_MAX + 6));
    assert_eq!(h.reattached(Some(1)).len(), HOLD_MAX);
    assert!(h.note(&id()).unwrap().contains(" 10 bytes "), "{:?}", h.note(&id()));
}

/// The log of sent messages is bounded; refusals of messages it no
/// longer holds are told in the note.
#[test]
fn the_log_is_bounded() {
    let mut h = Held::default();
    for _ in 0..LOG_MESSAGES + 10 {
        h.sent_resize();
    }
    assert_eq!(h.sent.len(), LOG_MESSAGES);
    let chunk = "k".repeat(4096);
    for _ in 0..LOG_BYTES / 4096 + 3 {
        h.sent_keys(&chunk);
    }
    assert!(h.sent_text.len() <= LOG_BYTES, "{}", h.sent_text.len());
    let kept = h.sent.len();
    let keys = h.reattached(Some(kept + 2));
    assert_eq!(keys.len(), HOLD_MAX, "the oldest known keys, up to the limit");
    let note = h.note(&id()).expect("a note");
    assert!(
        note.ends_with("; 2 messages the server refused were too far back to send again"),
        "{note}"
    );
}
