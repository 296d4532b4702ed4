//! What the connection remembers to resume after a reconnect, as pure state:
//! each attached session's log position, and input sent but not yet known
//! to be applied.
//!
//! Invariant: `position.offset` is the first byte of the session's log the
//! user has **not** been given. Output that starts before it is trimmed, so
//! the user never sees a byte twice, and a re-attach asks for exactly
//! `since = position`.

use std::collections::{HashMap, VecDeque};

use bytes::Bytes;
use termstream_proto::SessionId;
use termstream_proto::ws::LogPosition;

/// How a session is re-attached after a reconnect.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum Resume {
    /// With `since` = the first offset not yet received: exactly the missing
    /// bytes follow (or a `session.gap` says why not).
    #[default]
    Exact,
    /// Without `since`: a pty session answers with its current screen
    /// (`terminal.restore`), which is what a viewer wants.
    Screen,
}

/// One attached session.
#[derive(Debug, Clone)]
pub struct Tracked {
    pub resume: Resume,
    /// Where the user's copy of the log ends; `None` before the first attach.
    pub position: Option<LogPosition>,
}

/// Every session the connection is attached to.
#[derive(Debug, Default)]
pub struct Sessions {
    map: HashMap<SessionId, Tracked>,
}

impl Sessions {
    /// Starts tracking `id`, from `since` if given.
    pub fn attach(&mut self, id: SessionId, since: Option<LogPosition>, resume: Resume) {
        self.map.insert(
            id,
            Tracked {
                resume,
                position: since,
            },
        );
    }

    /// Stops tracking `id`.
    pub fn forget(&mut self, id: &SessionId) {
        self.map.remove(id);
    }

    /// The `since` to attach `id` with now, and whether it is tracked.
    pub fn since(&self, id: &SessionId) -> Option<Option<LogPosition>> {
        self.map.get(id).map(|t| match t.resume {
            Resume::Exact => t.position,
            Resume::Screen => None,
        })
    }

    /// The tracked sessions and the `since` each re-attaches with.
    pub fn reattach_list(&self) -> Vec<(SessionId, Option<LogPosition>)> {
        self.map
            .keys()
            .map(|id| (id.clone(), self.since(id).flatten()))
            .collect()
    }

    /// `session.attached`: output from `position` follows.
    pub fn attached(&mut self, id: &SessionId, position: LogPosition) {
        if let Some(t) = self.map.get_mut(id) {
            t.position = Some(position);
        }
    }

    /// A snapshot or a gap moved the log to `offset` (never backwards).
    pub fn skip_to(&mut self, id: &SessionId, offset: u64) {
        if let Some(p) = self.map.get_mut(id).and_then(|t| t.position.as_mut()) {
            p.offset = p.offset.max(offset);
        }
    }

    /// Output `data` at `offset`: returns the part the user has not seen
    /// (empty when all of it was seen), and moves the position past it.
    pub fn output(&mut self, id: &SessionId, offset: u64, data: Bytes) -> Bytes {
        let Some(p) = self.map.get_mut(id).and_then(|t| t.position.as_mut()) else {
            return data;
        };
        let end = offset + data.len() as u64;
        if end <= p.offset {
            return Bytes::new();
        }
        let skip = p.offset.saturating_sub(offset) as usize;
        p.offset = end;
        data.slice(skip..)
    }
}

/// Input sent and not yet acknowledged by a `pong` that followed it.
///
/// The server handles one socket's messages in order, and an input is
/// queued for the program (or refused with an error) before the next message
/// is read, so a `pong` acknowledges every input sent before its `ping`.
#[derive(Debug, Default)]
pub struct PendingInput {
    /// The seq of the newest input kept.
    last_seq: u64,
    /// `(seq, session, data)`, oldest first.
    unacked: VecDeque<(u64, SessionId, String)>,
    bytes: usize,
    /// The highest seq sent before each `ping` in flight, oldest first.
    pings: VecDeque<u64>,
}

impl PendingInput {
    /// Keeps a new input, numbered `seq` (higher than every seq before),
    /// until acknowledged.
    pub fn push(&mut self, seq: u64, session: SessionId, data: String) {
        self.last_seq = seq;
        self.bytes += data.len();
        self.unacked.push_back((seq, session, data));
    }

    /// The server refused input `seq` (an `error` naming it): it is
    /// answered, and not sent again.
    pub fn forget(&mut self, seq: u64) {
        if let Some(i) = self.unacked.iter().position(|(s, _, _)| *s == seq) {
            let (_, _, data) = self.unacked.remove(i).expect("found");
            self.bytes -= data.len();
        }
    }

    /// Bytes kept for resending.
    pub fn bytes(&self) -> usize {
        self.bytes
    }

    /// A `ping` is sent now: its `pong` will acknowledge everything so far.
    /// Returns whether there was anything to acknowledge.
    pub fn ping_sent(&mut self) -> bool {
        let unacked = !self.unacked.is_empty() && self.pings.back() != Some(&self.last_seq);
        self.pings.push_back(self.last_seq);
        unacked
    }

    /// A `pong` arrived: drops the inputs its `ping` covered.
    pub fn pong(&mut self) {
        let Some(upto) = self.pings.pop_front() else { return };
        while let Some((seq, _, data)) = self.unacked.front() {
            if *seq > upto {
                break;
            }
            self.bytes -= data.len();
            self.unacked.pop_front();
        }
    }

    /// The connection dropped: pings in flight will never be answered, and
    /// every unacknowledged input is to be sent again, in order.
    pub fn resend(&mut self) -> Vec<(u64, SessionId, String)> {
        self.pings.clear();
        self.unacked.iter().cloned().collect()
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use termstream_proto::Epoch;

    fn id(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    #[test]
    fn output_seen_before_is_trimmed_and_since_is_the_first_missing_byte() {
        let mut s = Sessions::default();
        s.attach(id("a"), None, Resume::Exact);
        assert_eq!(s.since(&id("a")), Some(None));
        s.attached(
            &id("a"),
            LogPosition {
                epoch: Epoch(7),
                offset: 10,
            },
        );
        assert_eq!(s.output(&id("a"), 10, Bytes::from_static(b"hello")), "hello");
        // A resend overlapping what was seen gives only the new part.
        assert_eq!(s.output(&id("a"), 12, Bytes::from_static(b"llo world")), " world");
        assert_eq!(s.output(&id("a"), 0, Bytes::from_static(b"old")), "");
        assert_eq!(
            s.since(&id("a")),
            Some(Some(LogPosition {
                epoch: Epoch(7),
                offset: 21
            }))
        );
        s.skip_to(&id("a"), 30);
        s.skip_to(&id("a"), 25);
        assert_eq!(s.reattach_list()[0].1.unwrap().offset, 30);
        s.attach(id("b"), None, Resume::Screen);
        s.attached(
            &id("b"),
            LogPosition {
                epoch: Epoch(1),
                offset: 5,
            },
        );
        assert_eq!(s.since(&id("b")), Some(None));
        s.forget(&id("a"));
        assert_eq!(s.since(&id("a")), None);
    }

    #[test]
    fn a_pong_acknowledges_only_input_sent_before_its_ping() {
        let mut p = PendingInput::default();
        p.push(1, id("a"), "ab".into());
        assert!(p.ping_sent());
        assert!(!p.ping_sent(), "nothing new since the last ping");
        p.push(2, id("a"), "cde".into());
        assert_eq!(p.bytes(), 5);
        p.pong();
        assert_eq!(p.bytes(), 3);
        p.pong();
        assert_eq!(p.bytes(), 3, "the second ping was sent before input 2");
        assert!(p.ping_sent());
        let again = p.resend();
        assert_eq!(again, vec![(2, id("a"), "cde".to_owned())]);
        // The lost ping's pong never comes: a later pong counts for a later ping.
        p.pong();
        assert_eq!(p.bytes(), 3);
        p.ping_sent();
        p.pong();
        assert_eq!(p.bytes(), 0);
    }

    #[test]
    fn a_refused_input_is_not_sent_again() {
        let mut p = PendingInput::default();
        p.push(1, id("a"), "ab".into());
        p.push(2, id("a"), "cde".into());
        p.push(3, id("a"), "f".into());
        p.forget(2);
        p.forget(9);
        assert_eq!(p.bytes(), 3);
        assert_eq!(
            p.resend(),
            vec![(1, id("a"), "ab".to_owned()), (3, id("a"), "f".to_owned())]
        );
    }
}
