//! The audit trail: one `info` event per act worth answering for, under the
//! target `termstream::audit` (so `RUST_LOG=termstream::audit=info` keeps
//! only these).
//!
//! Every event names the credential by its *name* (a token's configured
//! name, the first 8 hex digits of its hash when it has none, or `local`
//! without auth), never the token itself; the client's address (the peer,
//! or the address a trusted proxy forwarded); and the session and project
//! when there is one. Events: `session.created`, `session.terminated`,
//! `session.already_ended` (a terminate that ended nothing: the session had
//! ended before it, or by itself while it came, or another terminate, or a
//! shutdown's, began the end; `ended_as` says how it ended),
//! `session.deleted`,
//! `session.terminate_failed` and `session.delete_failed` (a terminate or
//! delete the handler answered with an error, with its `status` and
//! `code`), `input.refused` (a read-only credential tried to write),
//! `socket.connected`, `socket.closed` and `auth.failed`.
//!
//! So every terminate or delete naming a valid session id leaves a record
//! once answered: refused by the guard, `auth.failed` (and `input.refused`
//! for a read-only credential); else one of the five session-ending
//! events, which carry the answer's `status`. A malformed id (answered
//! `400`) and an ending cut off by the process's exit leave none.
//!
//! Of several terminates of one running session (or one and a shutdown's),
//! only the one that began the end is `session.terminated`: the session's
//! actor says which. For a session another node owns this node cannot
//! tell (the owner's answer does not say): a terminate of a session that
//! ran when it came and ended as `terminated` is `session.terminated`, so
//! two racing there are both.

use std::net::IpAddr;
use std::time::Instant;

use crate::auth::Grant;

/// The target every audit event is logged under.
pub const TARGET: &str = "termstream::audit";

/// A session was created.
pub fn session_created(grant: &Grant, session: &str, project: &str) {
    session_event("session.created", grant, session, project);
}

/// A request to terminate (`how`: `terminated`) or delete (`deleted`) a
/// session was answered `status`: a success when `code` is `None`
/// (`session.terminated`, `session.deleted`), else an error with that
/// code (`session.terminate_failed`, `session.delete_failed`; `-` for an
/// answer that carried none). A terminate answered `busy` or
/// `cluster_unavailable` may still end the session (the owner may have
/// been asked); `project` is empty for a session this node does not know.
pub fn session_ended(grant: &Grant, how: &'static str, session: &str, project: &str, status: u16, code: Option<&str>) {
    let event = match (how == "deleted", code.is_some()) {
        (true, false) => "session.deleted",
        (false, false) => "session.terminated",
        (true, true) => "session.delete_failed",
        (false, true) => "session.terminate_failed",
    };
    tracing::info!(
        target: TARGET,
        event,
        credential = &*grant.name,
        peer = %Peer(grant.peer),
        session,
        project,
        status,
        code,
    );
}

/// A request to terminate a session was answered `status` (a success), but
/// ended nothing: the session had ended before it came, or by itself while
/// it came, or another terminate (or a shutdown's) began the end; `ended_as`
/// is how (`exited`, `terminated`, `failed`, `lost`), never `running`.
/// A `lost` session's terminate sweeps once more for what is left of its
/// processes, as the server did when it started; the session had ended
/// all the same.
pub fn session_already_ended(grant: &Grant, session: &str, project: &str, status: u16, ended_as: &str) {
    tracing::info!(
        target: TARGET,
        event = "session.already_ended",
        credential = &*grant.name,
        peer = %Peer(grant.peer),
        session,
        project,
        status,
        ended_as,
    );
}

/// Input (or a resize) from a read-only credential was refused.
pub fn input_refused(grant: &Grant, session: &str, project: &str) {
    session_event("input.refused", grant, session, project);
}

/// The record of an act of `grant`'s credential on a session.
fn session_event(event: &'static str, grant: &Grant, session: &str, project: &str) {
    tracing::info!(
        target: TARGET,
        event,
        credential = &*grant.name,
        peer = %Peer(grant.peer),
        session,
        project,
    );
}

/// A request was refused before any handler ran, at guard step `reason`.
pub fn auth_failed(peer: IpAddr, reason: &'static str, method: &str, path: &str, message: &str) {
    tracing::info!(
        target: TARGET,
        event = "auth.failed",
        %peer,
        reason,
        method,
        path,
        message,
    );
}

/// A WebSocket was opened on `endpoint`; [`SocketAudit`]'s drop logs its
/// close.
#[derive(Debug)]
pub struct SocketAudit {
    grant: Grant,
    endpoint: &'static str,
    opened: Instant,
}

impl SocketAudit {
    pub fn connected(grant: &Grant, endpoint: &'static str) -> SocketAudit {
        tracing::info!(
            target: TARGET,
            event = "socket.connected",
            credential = &*grant.name,
            peer = %Peer(grant.peer),
            endpoint,
        );
        SocketAudit {
            grant: grant.clone(),
            endpoint,
            opened: Instant::now(),
        }
    }
}

impl Drop for SocketAudit {
    fn drop(&mut self) {
        tracing::info!(
            target: TARGET,
            event = "socket.closed",
            credential = &*self.grant.name,
            peer = %Peer(self.grant.peer),
            endpoint = self.endpoint,
            duration_ms = self.opened.elapsed().as_millis() as u64,
        );
    }
}

/// An optional address, shown as `-` when unknown.
struct Peer(Option<IpAddr>);

impl std::fmt::Display for Peer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.0 {
            Some(ip) => ip.fmt(f),
            None => f.write_str("-"),
        }
    }
}
