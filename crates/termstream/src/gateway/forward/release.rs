//! How a `/ws` forwarder gives its attachment back when its session is
//! deleted (or, on a node of a cluster, let go: see
//! [`Departure`](crate::session::remote::Departure)).
//!
//! The socket's task owns its attachments (the slots, the viewer counts);
//! a forwarder only learns that its session went (its live events close,
//! or its start finds the session gone). So the forwarder does not tell
//! the client itself: it sends a [`Released`] to the socket's task, which
//! removes the attachment, if it is still the one that forwarder served,
//! and then answers `session.detached` with the release's reason. Every frame the forwarder sent is
//! queued before that answer, and an attach the client sends after reading
//! it finds the slot free.
//!
//! Each attachment has a generation, new at every attach: a release that
//! arrives after the socket attached the id again (a new session with the
//! same id, or another stream mode) names an older generation and is
//! dropped; the newer attachment stays.
//!
//! A forwarder sends at most one release, and the socket's task drops its
//! attachment's forwarder when it takes one, so the channel holds at most
//! one message per forwarder the socket started since it last looked.

use termstream_proto::SessionId;
use termstream_proto::ws::DetachReason;

/// A forwarder's way back to its socket's task. [`Release::send`] takes
/// it by value, so a forwarder sends at most once; it is `Clone` only
/// because [`Attach`](super::Attach) is, and the socket's task makes one
/// per attachment and clones none.
#[derive(Debug, Clone)]
pub struct Release {
    tx: flume::Sender<Released>,
    generation: u64,
}

/// A forwarder's session went: attachment `generation` of `id` ends, for
/// `reason` (`deleted` or `released`).
#[derive(Debug)]
pub struct Released {
    pub id: SessionId,
    pub generation: u64,
    pub reason: DetachReason,
}

impl Release {
    /// The release of attachment `generation`, sent on `tx`.
    pub fn new(tx: flume::Sender<Released>, generation: u64) -> Release {
        Release { tx, generation }
    }

    /// Tells the socket's task that `id`'s session is gone, for `reason`
    /// (nothing when the socket's task ended: its attachments went with
    /// it). The channel is unbounded: this never waits.
    pub fn send(self, id: SessionId, reason: DetachReason) {
        let _ = self.tx.send(Released {
            id,
            generation: self.generation,
            reason,
        });
    }
}
