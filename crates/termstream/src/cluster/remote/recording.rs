//! A remote session's stored log, read from its owner a page at a time for
//! its recording (`recording.cast`).
//!
//! The recording is made on the node that serves it, by the same writer as
//! for a local session (`crate::session::cast`), from the owner's disk log:
//! each page is one request to the owner ([`Op::Events`]) answered with
//! about [`PAGE_BYTES`] of output and resizes and a cursor to the next
//! page, and the next page is asked for only once the last one's lines
//! went out to the client. The owner keeps nothing between pages. So a
//! transfer holds at most a page and a few lines here and a page at the
//! owner, whatever the log's size, and at most [`TRANSFERS`] run on a node
//! at once (more are refused with `capacity`). A client that reads nothing
//! for `download_stall_ms` ends its transfer, which gives the slot
//! back (see `crate::session::cast`).

use std::sync::Arc;

use futures_util::future::BoxFuture;
use termstream_proto::{Epoch, ErrorCode, SessionId, SessionStatus};
use tokio::sync::{OwnedSemaphorePermit, Semaphore};

use super::Remote;
use crate::cluster::Cluster;
use crate::cluster::requests::{ASK_TIMEOUT, ask};
use crate::cluster::wire::{self, Answer, Op};
use crate::session::SessionError;
use crate::session::remote::EventPages;
use crate::session::store::Event;
use crate::session::store::page::Cursor;

/// The output bytes one page carries, about.
const PAGE_BYTES: usize = 256 << 10;
/// Recordings of other nodes' sessions one node streams at once.
pub const TRANSFERS: usize = 8;

/// A node's slots for transfers.
#[derive(Debug)]
pub struct Transfers(Arc<Semaphore>);

impl Default for Transfers {
    fn default() -> Transfers {
        Transfers(Arc::new(Semaphore::new(TRANSFERS)))
    }
}

/// One transfer of a remote session's stored log.
#[derive(Debug)]
struct Pages {
    c: Arc<Cluster>,
    id: SessionId,
    /// The incarnation whose log this is: once it is gone, its owner
    /// answers not found, even when a newer session took its id.
    epoch: Epoch,
    owner: String,
    /// Where the next page starts; `None` before the first.
    at: Option<Cursor>,
    done: bool,
    /// Given back when the transfer ends (its body finished or dropped).
    _slot: OwnedSemaphorePermit,
}

/// Starts a transfer of `remote`'s stored log.
pub(super) fn start(remote: &Remote) -> Result<Box<dyn EventPages>, SessionError> {
    let lost = remote
        .info
        .get()
        .and_then(std::sync::Weak::upgrade)
        .is_some_and(|i| i.borrow().status == SessionStatus::Lost);
    if lost {
        return Err(SessionError::Remote {
            code: ErrorCode::Busy,
            message: format!(
                "session {} is lost: its recording is on node {}, which stopped answering",
                remote.id, remote.owner
            ),
        });
    }
    let slot = remote
        .c
        .transfers
        .0
        .clone()
        .try_acquire_owned()
        .map_err(|_| SessionError::Remote {
            code: ErrorCode::Capacity,
            message: format!("this node streams {TRANSFERS} recordings of other nodes already; try again"),
        })?;
    Ok(Box::new(Pages {
        c: remote.c.clone(),
        id: remote.id.clone(),
        epoch: remote.epoch,
        owner: remote.owner.clone(),
        at: None,
        done: false,
        _slot: slot,
    }))
}

impl EventPages for Pages {
    fn next_page(&mut self) -> BoxFuture<'_, Result<Option<Vec<Event>>, SessionError>> {
        Box::pin(async move {
            if self.done {
                return Ok(None);
            }
            let op = Op::Events {
                at: self.at,
                max: PAGE_BYTES,
            };
            match ask(&self.c, &self.owner, &self.id, self.epoch, op, ASK_TIMEOUT).await? {
                Answer::Events { events, next } => {
                    let events = wire::decode_events(events).ok_or_else(|| SessionError::Remote {
                        code: ErrorCode::Internal,
                        message: format!("node {} sent a page of the log that cannot be read", self.owner),
                    })?;
                    self.done = next.is_none();
                    self.at = next;
                    Ok(Some(events))
                }
                _ => Err(SessionError::Busy(self.id.clone())),
            }
        })
    }

    fn stall_timeout(&self) -> std::time::Duration {
        self.c.transfer_stall
    }
}
