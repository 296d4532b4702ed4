//! The keys `attach` holds while it attaches again after a release (see
//! [`Followed`](crate::cli::followed::Followed)), and those it sent
//! that the server refused because it had let go of the session already.
//!
//! Every message `attach` sends on the socket naming the session (keys, a
//! window size) goes into a bounded log first. When the re-attach is
//! answered, [`Step::Reattached`](crate::cli::followed::Step::Reattached) says how
//! many of them the server refused (`session_not_found`): the last that
//! many, since each refusal answers one message in order. The keys among
//! them go out again, before the keys typed while re-attaching, so the
//! program gets them all, in the order typed.
//!
//! At most [`HOLD_MAX`] bytes go out again: the oldest, up to there; the
//! rest is dropped and counted, for the one line [`Held::note`] that
//! `attach` prints once the terminal is given back.

use std::collections::VecDeque;

use termstream_proto::SessionId;

/// The most bytes of keys held for the session while it is attached
/// again (those refused and those typed meanwhile, in all); later keys
/// are dropped (as the server would drop input it cannot queue).
pub const HOLD_MAX: usize = 64 * 1024;
/// The most bytes of keys the log of sent messages keeps: refusals of
/// more than that (a paste sent in the instant before the `released` was
/// read) cannot all be sent again.
const LOG_BYTES: usize = 4 * HOLD_MAX;
/// The most messages the log of sent messages keeps.
const LOG_MESSAGES: usize = 4096;

/// A message `attach` sent naming the session.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Sent {
    /// `terminal.input` of this many bytes, in [`Held::sent_text`].
    Keys(usize),
    Resize,
}

/// Keys sent and held for one `attach`.
#[derive(Debug, Default)]
pub struct Held {
    /// The newest messages sent naming the session, oldest first; at most
    /// [`LOG_MESSAGES`], and cleared when a re-attach is answered.
    sent: VecDeque<Sent>,
    /// The keys of the [`Sent::Keys`] in `sent`, in order; at most
    /// [`LOG_BYTES`].
    sent_text: VecDeque<u8>,
    /// Keys typed while re-attaching, oldest first; at most [`HOLD_MAX`].
    typed: String,
    /// Keys were dropped while re-attaching: later ones are dropped too,
    /// so what goes out is what was typed up to a point, nothing after a
    /// gap.
    cut: bool,
    /// Bytes of keys dropped over [`HOLD_MAX`], over the whole attach.
    dropped: u64,
    /// Refused messages older than the log kept, over the whole attach.
    forgotten: usize,
}

impl Held {
    /// Keys are sent now.
    pub fn sent_keys(&mut self, text: &str) {
        self.sent.push_back(Sent::Keys(text.len()));
        self.sent_text.extend(text.as_bytes());
        self.trim();
    }

    /// A window size is sent now.
    pub fn sent_resize(&mut self) {
        self.sent.push_back(Sent::Resize);
        self.trim();
    }

    /// Keys typed while re-attaching, held until attached again.
    pub fn hold(&mut self, text: &str) {
        let room = if self.cut {
            0
        } else {
            HOLD_MAX.saturating_sub(self.typed.len())
        };
        let kept = text.floor_char_boundary(room);
        self.typed.push_str(&text[..kept]);
        self.drop_bytes(text.len() - kept);
    }

    /// Attached again, after `refused` of the messages sent were refused
    /// (`None`: unknown, and none is sent again): the keys to send now,
    /// those refused then those typed meanwhile, [`HOLD_MAX`] bytes at
    /// most.
    pub fn reattached(&mut self, refused: Option<usize>) -> String {
        let refused = refused.unwrap_or(0);
        let known = refused.min(self.sent.len());
        self.forgotten += refused - known;
        let skip: usize = self
            .sent
            .iter()
            .take(self.sent.len() - known)
            .map(|s| match s {
                Sent::Keys(n) => *n,
                Sent::Resize => 0,
            })
            .sum();
        let again: Vec<u8> = self.sent_text.iter().skip(skip).copied().collect();
        // Whole strings were logged, so the tail from one is whole too.
        let mut keys = String::from_utf8(again).unwrap_or_else(|e| String::from_utf8_lossy(e.as_bytes()).into_owned());
        self.sent.clear();
        self.sent_text.clear();
        keys.push_str(&std::mem::take(&mut self.typed));
        let kept = keys.floor_char_boundary(HOLD_MAX);
        self.drop_bytes(keys.len() - kept);
        keys.truncate(kept);
        // Keys typed from now on go out as they come.
        self.cut = false;
        keys
    }

    /// The line to print at the end when keys were dropped.
    pub fn note(&self, id: &SessionId) -> Option<String> {
        let mut note = match self.dropped {
            0 if self.forgotten == 0 => return None,
            0 => format!("termstream: keys typed while attaching {id} again were lost"),
            n => format!(
                "termstream: {n} bytes typed while attaching {id} again were dropped (over the {} KiB held)",
                HOLD_MAX / 1024
            ),
        };
        if self.forgotten > 0 {
            note.push_str(&format!(
                "; {} messages the server refused were too far back to send again",
                self.forgotten
            ));
        }
        Some(note)
    }

    fn drop_bytes(&mut self, n: usize) {
        if n > 0 {
            self.cut = true;
            self.dropped += n as u64;
        }
    }

    /// Forgets the oldest messages sent past the log's bounds.
    fn trim(&mut self) {
        while self.sent.len() > LOG_MESSAGES || self.sent_text.len() > LOG_BYTES {
            if let Some(Sent::Keys(n)) = self.sent.pop_front() {
                self.sent_text.drain(..n);
            }
        }
    }
}

/// What [`Held`] sends again once attached again, and what it drops.
#[cfg(test)]
mod tests {
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
}
