//! Where a client verb that follows one session (`attach`, `run`, `logs
//! --follow`) is in the session's log, and the handling, shared by the
//! three, of the server letting go of the session without its being
//! deleted: [`Followed::step`], called with every event.
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
//! the id meanwhile and refuses input and resizes naming it
//! (`session_not_found` with request `terminal.input` or `terminal.resize`,
//! or none from a server before the field), which the verb must not take for
//! the session's end; only the refusal of the attach itself (request
//! `session.attach`: the session did not come back within the server's
//! attach wait) says it is gone.
//!
//! The server drops its copy before the socket's task learns of it, so
//! input sent just before the verb read the `released` is refused too,
//! and that refusal comes before the `released` (or, the session back on
//! the node by then, some of that input is taken). Each refusal of input
//! names the input's seq (`request` `terminal.input`), so `attach` sends
//! again exactly the keys refused (see `attach/held.rs`); the refusals
//! are its to read, with every event.

use termstream_client::proto::ws::{ATTACH_REQUEST, DetachReason, LogPosition};
use termstream_client::{Connection, Event, Resume};
use termstream_proto::{ErrorCode, SessionId};

use super::exit::{self, Failure};

/// Whether a socket error answers the verb's attach (it did not come back
/// within the server's attach wait): only that one ends the verb. Others
/// naming the id answer input or a resize (`request` `terminal.input` or
/// `terminal.resize`; none from a server before the field).
pub fn refuses_attach(request: Option<&str>) -> bool {
    request == Some(ATTACH_REQUEST)
}

/// What [`Followed::step`] made of an event, for the verb to act on.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// Not the release handling's (output, an exit, the verb's first
    /// attach or its refusal, ...): the verb handles the event itself.
    Pass,
    /// Handled here (a release answered by attaching again; a refusal of
    /// input or a resize while re-attaching): nothing for the verb to do.
    Taken,
    /// Attached again to the incarnation followed: the verb carries on,
    /// and sends what it held back (window size, keys).
    Reattached,
    /// The session followed is gone: deleted (`session.detached` other
    /// than `released`), its id taken by another incarnation, or not back
    /// within the server's attach wait. The verb ends as for a deletion.
    Gone,
}

/// What [`Followed::take`] asks [`Followed::step`] to do.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Next {
    Step(Step),
    /// A release: attach again from [`Followed::at`], then [`Step::Taken`].
    AttachAgain,
}

/// The first byte of a session's log the verb has not printed, and
/// whether the verb is attaching again after a release.
#[derive(Debug, Clone, Copy)]
pub struct Followed {
    /// `None` until the first `session.attached` (or `since`) says where
    /// the log is.
    at: Option<LogPosition>,
    /// How the client library attaches again after a reconnect.
    resume: Resume,
    /// Attached again after a release, not answered yet.
    reattaching: bool,
}

impl Followed {
    /// Following from `since` (where the verb attached from), if given;
    /// attaching again (after a release, or a reconnect) as `resume` says.
    pub fn new(since: Option<LogPosition>, resume: Resume) -> Followed {
        Followed {
            at: since,
            resume,
            reattaching: false,
        }
    }

    /// From a release until the next `session.attached` of the session.
    pub fn reattaching(&self) -> bool {
        self.reattaching
    }

    /// Moves on past `ev` (see [`Followed::see`]) and handles what a
    /// release brings: the `released` itself (attaching again), the
    /// refusals while re-attaching, and the end of the re-attach. Fails
    /// when the connection is closed, or the server refused the attach
    /// again for another reason than the session's absence
    /// (`rate_limited`: the session may still exist).
    pub async fn step(&mut self, conn: &Connection, id: &SessionId, ev: &Event) -> Result<Step, Failure> {
        match self.take(id, ev)? {
            Next::Step(step) => Ok(step),
            Next::AttachAgain => {
                conn.attach(id.clone(), self.at, self.resume)
                    .await
                    .map_err(|e| Failure::new(exit::FAILURE, e.to_string()))?;
                Ok(Step::Taken)
            }
        }
    }

    /// [`Followed::step`] but the attach again, which it asks for.
    fn take(&mut self, id: &SessionId, ev: &Event) -> Result<Next, Failure> {
        let reattaching = self.reattaching;
        let step = match ev {
            Event::Attached { session_id, epoch, .. } if session_id == id => {
                self.reattaching = false;
                if reattaching && self.at.is_some_and(|at| at.epoch != *epoch) {
                    // The session was deleted and its id taken again.
                    return Ok(Next::Step(Step::Gone));
                }
                self.see(id, ev);
                if reattaching { Step::Reattached } else { Step::Pass }
            }
            Event::Detached { session_id, reason } if session_id == id => {
                if *reason != Some(DetachReason::Released) {
                    return Ok(Next::Step(Step::Gone));
                }
                self.reattaching = true;
                return Ok(Next::AttachAgain);
            }
            Event::ServerError {
                code,
                message,
                session_id,
                request,
                ..
            } if session_id.as_ref() == Some(id) => {
                if !refuses_attach(request.as_deref()) {
                    // Input or a resize naming the id: refused while the
                    // server holds no session of it, which says nothing of
                    // its end.
                    return Ok(Next::Step(if reattaching { Step::Taken } else { Step::Pass }));
                }
                if !reattaching {
                    // The verb's own attach.
                    return Ok(Next::Step(Step::Pass));
                }
                self.reattaching = false;
                if *code != ErrorCode::SessionNotFound {
                    return Err(Failure::from_socket(*code, message.clone()));
                }
                // Not back within the server's attach wait.
                return Ok(Next::Step(Step::Gone));
            }
            _ => {
                self.see(id, ev);
                Step::Pass
            }
        };
        Ok(Next::Step(step))
    }

    /// Moves on past `ev`, when it is an event of `id`'s log: an attach
    /// says where output follows, a screen snapshot where output after it
    /// starts, output where it ends.
    fn see(&mut self, id: &SessionId, ev: &Event) {
        match ev {
            Event::Attached {
                session_id,
                epoch,
                offset,
                ..
            } if session_id == id => {
                self.at = Some(LogPosition {
                    epoch: *epoch,
                    offset: *offset,
                });
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
    }
}

#[cfg(test)]
mod tests;
