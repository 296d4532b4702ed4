//! The seam between sessions and the cluster: a [`SessionHandle`] for a
//! session that runs on another node.
//!
//! Everything that reads or drives a session (the gateway's forwarders, the
//! REST API) does so through a [`SessionHandle`]. For a session of this
//! node, the handle's channels lead to the session's actor; for a session
//! owned by another node of a cluster, [`remote_handle`] makes a handle
//! whose channels lead to a local stand-in (`crate::cluster`'s remote
//! session task), which serves the same [`Command`]s from the session's
//! Redis stream and forwards resizes and terminates to the owner. Input
//! and snapshots, which do not pass through the actor for a local session
//! either, go through [`RemoteSession`], and so does the stored log a
//! recording is made of (read from the owner's disk, page by page, where a
//! local session's is read from its own). Protocol code never learns which
//! kind of handle it holds.
//!
//! The stand-in's duties toward the handle are the actor's:
//! - it publishes the session's info on the `watch` (status and size on
//!   every change, the end offset as output arrives);
//! - it answers `Read` with held chunks from the offset asked, or
//!   `Evicted { start }` only when the output is gone everywhere (the
//!   handle then answers `Gone`);
//! - it answers `Subscribe` with a backlog and a live receiver that miss
//!   nothing and repeat nothing, as the actor does.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use futures_util::future::BoxFuture;
use termstream_proto::ws::DetachReason;
use termstream_proto::{SessionInfo, Snapshot};
use tokio::sync::watch;

use super::store::Event;
use super::{Command, InfoSender, Presence, SessionError, SessionHandle, input::Input};

/// What a remote session's handle asks of the node that owns it.
pub trait RemoteSession: Send + Sync + std::fmt::Debug {
    /// Sends input to the program on the owner, with the same meaning as
    /// [`SessionHandle::input`] (`seq` is applied there, so a repeat is
    /// dropped whichever node it came through).
    fn input(
        &self,
        data: Bytes,
        eof: bool,
        seq: Option<(Arc<str>, u64)>,
        wait: Duration,
    ) -> BoxFuture<'_, Result<(), SessionError>>;

    /// The owner's screen snapshot and the offset it reflects.
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, SessionError>>;

    /// Brings the handle's info (above all its end offset) up to date, so
    /// that a client resuming at an offset it got through another node
    /// finds it within the log.
    fn refresh(&self) -> BoxFuture<'_, ()>;

    /// Starts reading the owner's stored log (output and resizes) for a
    /// recording. Fails at once, without asking the owner, when this node
    /// already runs as many such transfers as it allows, or when the owner
    /// is known to be gone.
    fn events(&self) -> Result<Box<dyn EventPages>, SessionError>;

    /// Whether this node let go of its stand-in while the session may
    /// still exist (rather than because it was deleted): read once the
    /// handle's info closed, it says why the session went from here.
    fn let_go(&self) -> bool;
}

/// Why a session went from a handle's holder, asked once the handle's info
/// closed: `deleted`, unless the session runs on another node and this
/// node let go of its stand-in ([`RemoteSession::let_go`]). Holds the
/// remote part of the handle only, so a forwarder waiting for its ended
/// session to go keeps this instead of the handle.
#[derive(Debug, Clone)]
pub struct Departure(pub(super) Option<Arc<dyn RemoteSession>>);

impl Departure {
    /// The `reason` of the `session.detached` that ends an attachment.
    pub fn reason(&self) -> DetachReason {
        match &self.0 {
            Some(remote) if remote.let_go() => DetachReason::Released,
            _ => DetachReason::Deleted,
        }
    }
}

/// A remote session's stored log, read from its owner a page at a time
/// (see [`crate::session::store::page`]); holding it holds one of the
/// node's transfer slots.
pub trait EventPages: Send + std::fmt::Debug {
    /// The next page of events, in the log's order; `None` once the last
    /// page was given.
    fn next_page(&mut self) -> BoxFuture<'_, Result<Option<Vec<Event>>, SessionError>>;

    /// How long the transfer may wait for its client to take a line before
    /// it ends (a stalled download would hold its slot for good).
    fn stall_timeout(&self) -> std::time::Duration;
}

/// The parts a remote session's stand-in keeps: the receiving end of the
/// handle's commands and the sender of its info.
#[derive(Debug)]
pub(crate) struct StandIn {
    /// Commands from every clone of the handle; closes when all are gone.
    pub commands: flume::Receiver<Box<Command>>,
    /// The info the handle reads; the stand-in publishes every change.
    pub info: InfoSender,
}

/// A handle for a session owned by another node, and the stand-in's side
/// of its channels.
pub(crate) fn remote_handle(info: SessionInfo, remote: Arc<dyn RemoteSession>) -> (SessionHandle, StandIn) {
    let (commands_tx, commands) = flume::bounded(64);
    let (info_tx, info_rx) = watch::channel(info.clone());
    let presence = Presence::new(info.id.clone());
    let handle = SessionHandle {
        id: info.id.clone(),
        project: info.project.clone(),
        epoch: info.epoch,
        kind: info.kind,
        // No local files: reads are served by the stand-in.
        dir: Arc::new(PathBuf::new()),
        commands: commands_tx,
        input: Input::new(None),
        info: info_rx,
        screen: None,
        viewers: presence.clone(),
        remote: Some(remote),
        // Its actor is on another node: its forwarders stay home.
        lane: Default::default(),
    };
    let stand_in = StandIn {
        commands,
        info: InfoSender::new(info_tx, presence),
    };
    (handle, stand_in)
}

/// An owner that is never asked (for tests): a test answers the
/// stand-in's commands itself.
#[cfg(test)]
#[derive(Debug)]
pub(crate) struct Unasked;

#[cfg(test)]
impl RemoteSession for Unasked {
    fn input(
        &self,
        _: Bytes,
        _: bool,
        _: Option<(Arc<str>, u64)>,
        _: Duration,
    ) -> BoxFuture<'_, Result<(), SessionError>> {
        unreachable!("no input in these tests")
    }
    fn snapshot(&self) -> BoxFuture<'_, Result<Snapshot, SessionError>> {
        unreachable!("no snapshot in these tests")
    }
    fn refresh(&self) -> BoxFuture<'_, ()> {
        Box::pin(async {})
    }
    fn events(&self) -> Result<Box<dyn EventPages>, SessionError> {
        unreachable!("no recording in these tests")
    }
    fn let_go(&self) -> bool {
        false
    }
}
