//! The keys `attach` holds while it attaches again after a release (see
//! [`Followed`](crate::cli::followed::Followed)), and those it sent that
//! the server refused because it had let go of the session already.
//!
//! Every input `attach` sends goes into a bounded log first, under the
//! seq the client library gave it. The server's refusal of an input names
//! its seq (`request` `terminal.input`); a `session_not_found` one marks
//! that input refused. When the re-attach is answered
//! ([`Step::Reattached`](crate::cli::followed::Step::Reattached)), the
//! keys refused after the last input the server took go out again, in seq
//! order, before the keys typed while re-attaching, so the program gets
//! them in the order typed; keys the server took (the session back on the
//! node before `attach` read the `released`) are never sent twice, and
//! keys refused before some it took are dropped (sent now, they would
//! reach the program after those later keys), and counted for the note.
//! Refusals answered by an attach of the session that is not a re-attach
//! after a release (the first attach waiting on a node not yet synced,
//! the re-attach after a reconnect) are dropped and counted when it is
//! answered, never sent at some later re-attach. A refusal after a
//! reconnect of an input the client library sent again (unacknowledged on
//! the old socket, perhaps applied there) may be of a duplicate: it is
//! dropped, and counted as keys that may be lost. A server before the seq
//! does not say which input it refused: then nothing is sent again, and
//! the note says how many bytes may be lost, at most.
//!
//! At most [`HOLD_MAX`] bytes go out again: the oldest, up to there; the
//! rest is dropped and counted, for the note [`Held::note`] that `attach`
//! prints once the terminal is given back.

use std::collections::VecDeque;

use termstream_client::Event;
use termstream_client::proto::ws::INPUT_REQUEST;
use termstream_proto::{ErrorCode, SessionId};

/// The most bytes of keys held for the session while it is attached
/// again (those refused and those typed meanwhile, in all); later keys
/// are dropped (as the server would drop input it cannot queue).
pub const HOLD_MAX: usize = 64 * 1024;
/// The most bytes of keys the log of sent input keeps: refusals of more
/// than that (a paste sent in the instant before the `released` was read)
/// cannot all be sent again.
const LOG_BYTES: usize = 4 * HOLD_MAX;
/// The most inputs the log of sent input keeps.
const LOG_MESSAGES: usize = 4096;

/// An input `attach` sent.
#[derive(Debug)]
struct Sent {
    /// Its seq, from the client library.
    seq: u64,
    keys: String,
    /// The server refused it as `session_not_found`.
    refused: bool,
}

/// Keys sent and held for one `attach`.
#[derive(Debug, Default)]
pub struct Held {
    /// The inputs sent since the last re-attach was answered, by seq,
    /// oldest first; at most [`LOG_MESSAGES`] and [`LOG_BYTES`].
    sent: VecDeque<Sent>,
    /// The bytes of keys in `sent`.
    sent_bytes: usize,
    /// Keys typed while re-attaching, oldest first; at most [`HOLD_MAX`].
    typed: String,
    /// Keys were dropped while re-attaching: later ones are dropped too,
    /// so what goes out is what was typed up to a point, nothing after a
    /// gap.
    cut: bool,
    /// Bytes of keys dropped over [`HOLD_MAX`], over the whole attach.
    dropped: u64,
    /// Refusals of input or a resize that named no request (a server
    /// before the field) since the last re-attach was answered.
    unnamed: usize,
    /// Bytes of keys a server before the field may have refused, at
    /// most, over the whole attach.
    maybe_lost: u64,
    /// Refused inputs no longer in the log, over the whole attach.
    forgotten: usize,
    /// The highest seq logged when the connection last came back: the
    /// client library may have sent again any input up to it.
    resent_upto: Option<u64>,
    /// Bytes of keys refused before the session was attached (the first
    /// attach, or the one after a reconnect), not sent again.
    refused_unattached: u64,
    /// Bytes of keys refused before keys the server took, not sent again
    /// at a re-attach.
    overtaken: u64,
}

impl Held {
    /// Keys are sent now, as input `seq` (higher than every seq before).
    pub fn sent_keys(&mut self, seq: u64, keys: &str) {
        self.sent_bytes += keys.len();
        self.sent.push_back(Sent {
            seq,
            keys: keys.to_owned(),
            refused: false,
        });
        while self.sent.len() > LOG_MESSAGES || self.sent_bytes > LOG_BYTES {
            if let Some(old) = self.sent.pop_front() {
                self.sent_bytes -= old.keys.len();
            }
        }
    }

    /// Takes in `ev` if it is the server's `session_not_found` refusal of
    /// input to `id` (named by its seq), or of input or a resize from a
    /// server that does not name it.
    /// A reconnect (`Event::Connected` with `reconnect`) is noted too:
    /// refusals after it of inputs sent before it may be of the client
    /// library's copies.
    pub fn saw(&mut self, id: &SessionId, ev: &Event) {
        if let Event::Connected { reconnect: true, .. } = ev {
            if let Some(last) = self.sent.back() {
                self.resent_upto = Some(last.seq);
            }
            return;
        }
        let Event::ServerError {
            code: ErrorCode::SessionNotFound,
            session_id: Some(of),
            request,
            refused_input,
            ..
        } = ev
        else {
            return;
        };
        if of != id {
            return;
        }
        match (request.as_deref(), refused_input) {
            (Some(INPUT_REQUEST), Some(seq)) => {
                let i = self.sent.partition_point(|s| s.seq < *seq);
                match self.sent.get_mut(i) {
                    // Sent again after a reconnect: the refusal of the
                    // copy says nothing of the first, perhaps applied.
                    Some(s) if s.seq == *seq && self.resent_upto.is_some_and(|upto| *seq <= upto) => {
                        self.maybe_lost += s.keys.len() as u64;
                    }
                    Some(s) if s.seq == *seq => s.refused = true,
                    _ => self.forgotten += 1,
                }
            }
            (None, _) => self.unnamed += 1,
            _ => {}
        }
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

    /// Attached, not again after a release (the first attach, the one
    /// after a reconnect): inputs refused before are not sent again, ever
    /// (they would reach the program after keys typed since), and are
    /// counted for the note; the log starts again.
    pub fn attached(&mut self) {
        let mut taken: Vec<usize> = Vec::new();
        for s in self.sent.drain(..) {
            if s.refused {
                self.refused_unattached += s.keys.len() as u64;
            } else {
                taken.push(s.keys.len());
            }
        }
        self.sent_bytes = 0;
        self.unnamed_may_be_lost(taken);
    }

    /// Attached again: the keys to send now, [`HOLD_MAX`] bytes at most:
    /// those refused after the last input the server took (in seq order),
    /// then those typed meanwhile. Every input sent before the re-attach
    /// has been answered by then, so one not refused was taken: refused
    /// keys before it are dropped and counted, as sent now they would
    /// reach the program after it. Refusals that named no input add, to
    /// what may be lost, the bytes of as many of the largest inputs sent
    /// (no more can be lost).
    pub fn reattached(&mut self) -> String {
        let last_taken = self.sent.iter().filter(|s| !s.refused).map(|s| s.seq).max();
        let mut keys = String::new();
        let mut taken: Vec<usize> = Vec::new();
        for s in self.sent.drain(..) {
            if !s.refused {
                taken.push(s.keys.len());
            } else if last_taken.is_some_and(|m| s.seq < m) {
                self.overtaken += s.keys.len() as u64;
            } else {
                keys.push_str(&s.keys);
            }
        }
        self.sent_bytes = 0;
        self.unnamed_may_be_lost(taken);
        keys.push_str(&std::mem::take(&mut self.typed));
        let kept = keys.floor_char_boundary(HOLD_MAX);
        self.drop_bytes(keys.len() - kept);
        keys.truncate(kept);
        // Keys typed from now on go out as they come.
        self.cut = false;
        keys
    }

    /// Counts, for refusals that named no input, the bytes of as many of
    /// the largest inputs `taken` (their sizes) as may be lost.
    fn unnamed_may_be_lost(&mut self, mut taken: Vec<usize>) {
        if self.unnamed > 0 {
            taken.sort_unstable_by(|a, b| b.cmp(a));
            self.maybe_lost += taken.iter().take(self.unnamed).sum::<usize>() as u64;
            self.unnamed = 0;
        }
    }

    /// The lines to print at the end when keys were dropped or may be
    /// lost.
    pub fn note(&self, id: &SessionId) -> Option<String> {
        let mut lines = Vec::new();
        if self.dropped > 0 {
            lines.push(format!(
                "termstream: {} bytes typed while attaching {id} again were dropped (over the {} KiB held)",
                self.dropped,
                HOLD_MAX / 1024
            ));
        }
        if self.maybe_lost > 0 {
            lines.push(format!(
                "termstream: up to {} bytes typed into {id} may be lost (refused: unclear which, or a copy)",
                self.maybe_lost
            ));
        }
        if self.refused_unattached > 0 {
            lines.push(format!(
                "termstream: {} bytes typed before {id} was attached were refused, and not sent again",
                self.refused_unattached
            ));
        }
        if self.overtaken > 0 {
            lines.push(format!(
                "termstream: {} bytes refused while attaching {id} again were not sent: later keys had reached it",
                self.overtaken
            ));
        }
        if self.forgotten > 0 {
            lines.push(format!(
                "termstream: {} inputs to {id} the server refused were too far back to send again",
                self.forgotten
            ));
        }
        (!lines.is_empty()).then(|| lines.join("\n"))
    }

    fn drop_bytes(&mut self, n: usize) {
        if n > 0 {
            self.cut = true;
            self.dropped += n as u64;
        }
    }
}

/// What [`Held`] sends again once attached again, and what it drops.
#[cfg(test)]
mod tests {
    use termstream_client::Event;
    use termstream_client::proto::ws::{INPUT_REQUEST, RESIZE_REQUEST};
    use termstream_proto::{ErrorCode, SessionId};

    use super::{HOLD_MAX, Held, LOG_BYTES, LOG_MESSAGES};

    fn id() -> SessionId {
        SessionId::new("s").unwrap()
    }

    /// The server's refusal of input `seq` (`None`: a server before the
    /// field, which names neither request nor seq).
    fn refused(h: &mut Held, code: ErrorCode, seq: Option<u64>) {
        let ev = Event::ServerError {
            code,
            message: String::new(),
            session_id: Some(id()),
            request: seq.map(|_| INPUT_REQUEST.to_owned()),
            refused_input: seq,
        };
        h.saw(&id(), &ev);
    }

    /// The inputs refused after the last one taken go out again, in seq
    /// order and before the keys typed while re-attaching: an input the
    /// server took (the session back) is not sent twice, and one refused
    /// before it is dropped, not sent after it, and counted.
    #[test]
    fn the_keys_refused_after_those_taken_go_again_before_the_keys_typed_meanwhile() {
        let mut h = Held::default();
        h.sent_keys(1, "taken ");
        h.sent_keys(2, "one ");
        h.sent_keys(3, "back ");
        h.sent_keys(4, "two ");
        refused(&mut h, ErrorCode::SessionNotFound, Some(4));
        refused(&mut h, ErrorCode::SessionNotFound, Some(2));
        // Other codes, a resize, another session: not sent again.
        refused(&mut h, ErrorCode::RateLimited, Some(1));
        let resize = Event::ServerError {
            code: ErrorCode::SessionNotFound,
            message: String::new(),
            session_id: Some(id()),
            request: Some(RESIZE_REQUEST.to_owned()),
            refused_input: None,
        };
        h.saw(&id(), &resize);
        let other = Event::ServerError {
            code: ErrorCode::SessionNotFound,
            message: String::new(),
            session_id: Some(SessionId::new("t").unwrap()),
            request: Some(INPUT_REQUEST.to_owned()),
            refused_input: Some(3),
        };
        h.saw(&id(), &other);
        h.hold("three");
        assert_eq!(h.reattached(), "two three");
        assert_eq!(
            h.note(&id()).as_deref(),
            Some("termstream: 4 bytes refused while attaching s again were not sent: later keys had reached it")
        );
        // The log starts again: a later re-attach sends nothing of before.
        h.sent_keys(5, "four");
        refused(&mut h, ErrorCode::SessionNotFound, Some(5));
        assert_eq!(h.reattached(), "four");
        assert_eq!(h.reattached(), "");
    }

    /// Refusals before an attach that is not a re-attach after a release
    /// (the first one, waiting on a node not yet synced) are dropped when
    /// it is answered, and told in the note: never sent at a later
    /// re-attach, into what is typed then.
    #[test]
    fn refusals_before_an_attach_are_not_sent_at_a_later_reattach() {
        let mut h = Held::default();
        h.sent_keys(1, "k");
        refused(&mut h, ErrorCode::SessionNotFound, Some(1));
        h.attached();
        h.hold("x");
        assert_eq!(h.reattached(), "x");
        assert_eq!(
            h.note(&id()).as_deref(),
            Some("termstream: 1 bytes typed before s was attached were refused, and not sent again")
        );
    }

    /// After a reconnect the client library sends again the inputs not
    /// acknowledged: a refusal of one sent before the reconnect may be of
    /// the copy (the first applied on the old socket), so it is not sent
    /// again but counted as may be lost; one sent after is.
    #[test]
    fn a_refusal_of_an_input_sent_before_a_reconnect_is_not_sent_again() {
        let mut h = Held::default();
        h.sent_keys(1, "ab");
        h.sent_keys(2, "cd");
        h.saw(
            &id(),
            &Event::Connected {
                client_id: "c".to_owned(),
                reconnect: true,
            },
        );
        refused(&mut h, ErrorCode::SessionNotFound, Some(2));
        h.sent_keys(3, "ef");
        refused(&mut h, ErrorCode::SessionNotFound, Some(3));
        assert_eq!(h.reattached(), "ef");
        assert_eq!(
            h.note(&id()).as_deref(),
            Some("termstream: up to 2 bytes typed into s may be lost (refused: unclear which, or a copy)")
        );
    }

    /// A server that names no input sends nothing again, and the note
    /// says how many bytes may be lost at most: the largest inputs, as
    /// many as it refused.
    #[test]
    fn a_server_that_names_no_input_gets_nothing_again_and_a_note() {
        let mut h = Held::default();
        h.sent_keys(1, "a");
        h.sent_keys(2, "bbbb");
        h.sent_keys(3, "cc");
        refused(&mut h, ErrorCode::SessionNotFound, None);
        refused(&mut h, ErrorCode::SessionNotFound, None);
        h.hold("typed");
        assert_eq!(h.reattached(), "typed");
        assert_eq!(
            h.note(&id()).as_deref(),
            Some("termstream: up to 6 bytes typed into s may be lost (refused: unclear which, or a copy)")
        );
    }

    /// Over [`HOLD_MAX`] in all, the oldest keys up to it go out (cut on a
    /// character's boundary), nothing typed after a gap, and the note counts
    /// the bytes dropped, over the whole attach.
    #[test]
    fn keys_over_the_limit_are_dropped_and_counted() {
        let mut h = Held::default();
        let refused_keys = "r".repeat(HOLD_MAX - 10);
        h.sent_keys(1, &refused_keys);
        refused(&mut h, ErrorCode::SessionNotFound, Some(1));
        h.hold("0123456");
        h.hold("é€"); // 2 + 3 bytes: the euro sign no longer fits.
        h.hold("a"); // After a gap: dropped.
        let keys = h.reattached();
        assert_eq!(keys.len(), HOLD_MAX - 1);
        assert!(keys.ends_with("0123456é"), "{:?}", &keys[keys.len() - 12..]);
        let note = h.note(&id()).expect("a note");
        assert_eq!(
            note,
            "termstream: 4 bytes typed while attaching s again were dropped (over the 64 KiB held)"
        );
        // Held again from nothing at the next re-attach; the count goes on.
        h.hold("x");
        assert_eq!(h.reattached(), "x");
        h.sent_keys(2, &"y".repeat(HOLD_MAX + 6));
        refused(&mut h, ErrorCode::SessionNotFound, Some(2));
        assert_eq!(h.reattached().len(), HOLD_MAX);
        assert!(h.note(&id()).unwrap().contains(" 10 bytes "), "{:?}", h.note(&id()));
    }

    /// The log of sent input is bounded; refusals of inputs it no longer
    /// holds are told in the note.
    #[test]
    fn the_log_is_bounded() {
        let mut h = Held::default();
        for seq in 1..=(LOG_MESSAGES + 10) as u64 {
            h.sent_keys(seq, "k");
        }
        assert_eq!(h.sent.len(), LOG_MESSAGES);
        let chunk = "k".repeat(4096);
        let first = LOG_MESSAGES as u64 + 11;
        let last = first + (LOG_BYTES / 4096) as u64 + 3;
        for seq in first..last {
            h.sent_keys(seq, &chunk);
        }
        assert!(h.sent_bytes <= LOG_BYTES, "{}", h.sent_bytes);
        refused(&mut h, ErrorCode::SessionNotFound, Some(1));
        refused(&mut h, ErrorCode::SessionNotFound, Some(first));
        refused(&mut h, ErrorCode::SessionNotFound, Some(last - 1));
        assert_eq!(h.reattached(), chunk, "the newest, still in the log");
        let note = h.note(&id()).expect("a note");
        assert_eq!(
            note,
            "termstream: 2 inputs to s the server refused were too far back to send again"
        );
    }
}
