//! Where a client verb that follows one session (`attach`, `run`, `logs
//! --follow`) is in the session's log, so that it can attach again from
//! there when the server lets go of the session without its being deleted.
//!
//! A server's node of a cluster ends an attachment of another node's
//! session with `session.detached` `released` when it let go of its copy
//! (the directory lacked the session's record; or a `lost` session came
//! back, but each verb has ended at that session's `session.exit` `lost`
//! before then): the session may still run, and attaching again follows it. The
//! verb then attaches again with `since` at the first byte it has not
//! printed, so the output goes on with nothing lost and nothing repeated,
//! as after a reconnect. `deleted`, and no reason (a server before the
//! field), end the verb as a deletion always did.
//!
//! From the release until the next `session.attached` the verb is
//! re-attaching ([`Followed::reattaching`]): the server holds no session of
//! the id meanwhile and refuses input and resizes naming it (an error with
//! no request), which the verb must not take for the session's end; only
//! the refusal of the attach itself (request `session.attach`: the session
//! did not come back within the server's attach wait) says it is gone.
//! `attach` holds the keys typed meanwhile ([`HOLD_MAX`] bytes at most)
//! and sends them, after the window size, once attached again.

use termstream_client::proto::ws::{ATTACH_REQUEST, DetachReason, LogPosition};
use termstream_client::{Connection, Event, Resume};
use termstream_proto::SessionId;

use super::exit::{self, Failure};

/// The most bytes of keys `attach` holds while re-attaching; keys typed
/// beyond are dropped (as the server would drop input it cannot queue).
pub const HOLD_MAX: usize = 64 * 1024;

/// Whether a socket error answers the verb's attach (it did not come back
/// within the server's attach wait): only that one ends the verb. Without
/// a request the error answers input or a resize naming the id.
pub fn refuses_attach(request: Option<&str>) -> bool {
    request == Some(ATTACH_REQUEST)
}

/// What [`Followed::see`] made of an event.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Seen {
    /// Anything but the end of a re-attach.
    Other,
    /// Attached again to the incarnation followed: the verb carries on.
    Reattached,
    /// Attached again to another incarnation of the id (the one followed
    /// was deleted, and the id taken again): the verb ends as for a
    /// deletion.
    Replaced,
}

/// The first byte of a session's log the verb has not printed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Followed {
    /// `None` until the first `session.attached` (or `since`) says where
    /// the log is.
    at: Option<LogPosition>,
    /// Attached again after a release, not answered yet.
    reattaching: bool,
}

impl Followed {
    /// Following from `since` (where the verb attached from), if given.
    pub fn from(since: Option<LogPosition>) -> Followed {
        Followed {
            at: since,
            reattaching: false,
        }
    }

    /// From a release until the next `session.attached` of the session.
    pub fn reattaching(&self) -> bool {
        self.reattaching
    }

    /// Moves on past `ev`, when it is an event of `id`'s log: an attach
    /// says where output follows, a screen snapshot where output after it
    /// starts, output where it ends. Says whether `ev` is the
    /// `session.attached` that ends a re-attach, and of which incarnation.
    pub fn see(&mut self, id: &SessionId, ev: &Event) -> Seen {
        match ev {
            Event::Attached {
                session_id,
                epoch,
                offset,
                ..
            } if session_id == id => {
                let reattached = std::mem::take(&mut self.reattaching);
                if reattached && self.at.is_some_and(|at| at.epoch != *epoch) {
                    // The session was deleted and its id taken again.
                    return Seen::Replaced;
                }
                self.at = Some(LogPosition {
                    epoch: *epoch,
                    offset: *offset,
                });
                return if reattached { Seen::Reattached } else { Seen::Other };
            }
            // Only forward: the client library gives no output before
            // what it gave (a snapshot or output from further back is
            // trimmed), so the position never goes back either.
            Event::Restore { session_id, offset, .. } if session_id == id => {
                if let Some(at) = &mut self.at {
                    at.offset = at.offset.max(*offset);
                }
            }
            Event::Output {
                session_id,
                offset,
                data,
                ..
            } if session_id == id => {
                if let Some(at) = &mut self.at {
                    at.offset = at.offset.max(offset + data.len() as u64);
                }
            }
            _ => {}
        }
        Seen::Other
    }

    /// Attaches `id` again from the first byte not printed, when `reason`
    /// says the server let go of the session but did not delete it:
    /// `Ok(true)` then, and the verb carries on, re-attaching; `Ok(false)`
    /// for any other reason (the attachment ended for good).
    pub async fn again_if_released(
        &mut self,
        conn: &Connection,
        id: &SessionId,
        reason: Option<DetachReason>,
        resume: Resume,
    ) -> Result<bool, Failure> {
        if reason != Some(DetachReason::Released) {
            return Ok(false);
        }
        conn.attach(id.clone(), self.at, resume)
            .await
            .map_err(|e| Failure::new(exit::FAILURE, e.to_string()))?;
        self.reattaching = true;
        Ok(true)
    }
}

#[cfg(test)]
mod tests {
    use termstream_client::Event;
    use termstream_client::proto::ws::LogPosition;
    use termstream_proto::{Epoch, SessionId, Stream};

    use super::{Followed, Seen};

    /// A snapshot or output from before the position leaves it where it
    /// is: attaching again from there would print what was printed.
    #[test]
    fn the_position_only_moves_forward() {
        let id = SessionId::new("s").unwrap();
        let mut f = Followed::from(Some(LogPosition {
            epoch: Epoch(1),
            offset: 100,
        }));
        let restore = Event::Restore {
            session_id: id.clone(),
            data: String::new(),
            offset: 50,
            cols: 80,
            rows: 24,
        };
        f.see(&id, &restore);
        assert_eq!(f.at.map(|p| p.offset), Some(100), "a snapshot from further back");
        let output = |offset: u64, data: &'static [u8]| Event::Output {
            session_id: id.clone(),
            stream: Stream::Pty,
            offset,
            data: bytes::Bytes::from_static(data),
        };
        f.see(&id, &output(90, b"12345"));
        assert_eq!(f.at.map(|p| p.offset), Some(100), "output from further back");
        f.see(&id, &output(100, b"12345"));
        assert_eq!(f.at.map(|p| p.offset), Some(105), "output on from the position");
    }

    /// A re-attach answered by another incarnation of the id (the one
    /// followed was deleted, the id taken again) is told apart.
    #[test]
    fn a_reattach_to_another_incarnation_is_replaced() {
        let id = SessionId::new("s").unwrap();
        let attached = |epoch: u64| Event::Attached {
            session_id: id.clone(),
            epoch: Epoch(epoch),
            offset: 0,
            cols: 80,
            rows: 24,
            status: termstream_proto::SessionStatus::Running,
            recovered: None,
        };
        let mut f = Followed::default();
        assert_eq!(f.see(&id, &attached(1)), Seen::Other, "the first attach");
        f.reattaching = true;
        assert_eq!(f.see(&id, &attached(1)), Seen::Reattached);
        f.reattaching = true;
        assert_eq!(f.see(&id, &attached(2)), Seen::Replaced);
        assert!(!f.reattaching());
    }
}
