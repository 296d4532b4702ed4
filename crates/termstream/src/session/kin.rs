//! How one handle of a session id stands to another: the very same
//! session, another copy of the same session, or another session.
//!
//! An id names a session only for a while: deleted, it may be created
//! again, as another incarnation with an epoch of its own. And a node of a
//! cluster may let go of its copy (stand-in) of another node's session and
//! take it up again, or replace it: a new copy of the same incarnation,
//! with the same epoch but an info channel of its own. Code that keeps
//! something of a session across the registry's changes (the older
//! WebSocket endpoints, the `sessions` channel) asks [`SessionHandle::kin`]
//! or [`Kin::of`] which of the three a handle is ([`Kin::is_same`] for a
//! holder that tells only the very copy apart), and decides on that.

use termstream_proto::{Epoch, SessionInfo};
use tokio::sync::watch;

use super::SessionHandle;

/// How a handle stands to another of the same id.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Kin {
    /// The very same incarnation, and the same copy of it.
    Same,
    /// Another copy of the same incarnation (the same epoch): another
    /// node's session whose stand-in here was replaced, or let go and
    /// taken up again.
    Copy,
    /// Another incarnation: the id deleted and created again.
    Other,
}

impl Kin {
    /// How the session whose info `info` receives, of incarnation
    /// `epoch`, stands to `handle`'s: what a holder that keeps only those
    /// two of a session (not its handle) asks of a handle coming in.
    pub fn of(handle: &SessionHandle, info: &watch::Receiver<SessionInfo>, epoch: Epoch) -> Kin {
        if handle.is_incarnation(info) {
            Kin::Same
        } else if handle.epoch() == epoch {
            Kin::Copy
        } else {
            Kin::Other
        }
    }

    /// Whether `handle` is the very copy whose info `info` receives
    /// ([`Kin::Same`]): what a holder that tells only that apart asks,
    /// with no epoch kept.
    pub fn is_same(handle: &SessionHandle, info: &watch::Receiver<SessionInfo>) -> bool {
        handle.is_incarnation(info)
    }
}

impl SessionHandle {
    /// Whether `info` is a receiver of this very session's info: the same
    /// incarnation, and for another node's session the same copy of it
    /// (a session created again under its id, or a new copy, has its own).
    pub fn is_incarnation(&self, info: &watch::Receiver<SessionInfo>) -> bool {
        self.info.same_channel(info)
    }

    /// How `other`, a handle of the same id, stands to this one (either
    /// way round: the answer is the same).
    pub fn kin(&self, other: &SessionHandle) -> Kin {
        Kin::of(self, &other.info, other.epoch)
    }
}
