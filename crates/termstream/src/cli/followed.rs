//! Where a client verb that follows one session (`attach`, `run`, `logs
//! --follow`) is in the session's log, so that it can attach again from
//! there when the server lets go of the session without its being deleted.
//!
//! A server's node of a cluster ends an attachment of another node's
//! session with `session.detached` `released` when it let go of its copy
//! (the directory lacked the session's record, or a `lost` session came
//! back): the session may still run, and attaching again follows it. The
//! verb then attaches again with `since` at the first byte it has not
//! printed, so the output goes on with nothing lost and nothing repeated,
//! as after a reconnect. `deleted`, and no reason (a server before the
//! field), end the verb as a deletion always did.

use termstream_client::proto::ws::{DetachReason, LogPosition};
use termstream_client::{Connection, Event, Resume};
use termstream_proto::SessionId;

use super::exit::{self, Failure};

/// The first byte of a session's log the verb has not printed.
#[derive(Debug, Clone, Copy, Default)]
pub struct Followed {
    /// `None` until the first `session.attached` (or `since`) says where
    /// the log is.
    at: Option<LogPosition>,
}

impl Followed {
    /// Following from `since` (where the verb attached from), if given.
    pub fn from(since: Option<LogPosition>) -> Followed {
        Followed { at: since }
    }

    /// Moves on past `ev`, when it is an event of `id`'s log: an attach
    /// says where output follows, a screen snapshot where output after it
    /// starts, output where it ends.
    pub fn see(&mut self, id: &SessionId, ev: &Event) {
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
            Event::Restore { session_id, offset, .. } if session_id == id => {
                if let Some(at) = &mut self.at {
                    at.offset = *offset;
                }
            }
            Event::Output {
                session_id,
                offset,
                data,
                ..
            } if session_id == id => {
                if let Some(at) = &mut self.at {
                    at.offset = offset + data.len() as u64;
                }
            }
            _ => {}
        }
    }

    /// Attaches `id` again from the first byte not printed, when `reason`
    /// says the server let go of the session but did not delete it:
    /// `Ok(true)` then, and the verb carries on; `Ok(false)` for any other
    /// reason (the attachment ended for good).
    pub async fn again_if_released(
        &self,
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
        Ok(true)
    }
}
