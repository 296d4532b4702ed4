//! Requests that end a session, and the session id a path names.
//!
//! A terminate (`POST /api/sessions/{id}/terminate`, `POST
//! /terminal/{id}/terminate`) or a delete (`DELETE /api/sessions/{id}`) is
//! run by the guard ([`super::guard`]) as an [`Ending`]: its handler runs
//! under [`Registry::finish`], so the session's end and its audit event
//! happen even when the client hangs up, which drops the request's future
//! (a delete cut off before its audit went unrecorded). What the audit
//! needs is read before the handler runs, as the session may be gone after.
//!
//! Every ending the guard let through is audited with its answer: a success
//! as `session.terminated` or `session.deleted` (a terminate that ended
//! nothing, its session having ended before it, as
//! `session.already_ended`), an error (a 503 `busy` or
//! `cluster_unavailable`, which may still end the session; a 404 for a
//! session this node does not know; a handler's panic, answered 500) as
//! `session.terminate_failed` or `session.delete_failed`. What the guard
//! refused is audited there (`auth.failed`); a path segment that is no
//! session id names no session, and is not audited.
//!
//! [`path_session_id`] reads a session id from a path segment as the
//! handlers' `Path` does, percent-decoded; the endings, the route policy
//! ([`super::policy`]) and the audit of a refused write
//! ([`refused_write`]) all name the session the handler acts on.

use std::future::Future;
use std::panic::AssertUnwindSafe;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use termstream_proto::{ErrorCode, SessionId, SessionStatus};

use super::Grant;
use crate::error::ApiError;
use crate::observe::{audit, metrics};
use crate::registry::Registry;
use crate::session::SessionHandle;

/// A request that ends a session (terminate or delete, REST or the older
/// routes), audited with its answer.
pub(super) struct Ending {
    grant: Grant,
    how: &'static str,
    session: String,
    /// Empty when this node knows no such session.
    project: String,
    /// The session, when this node knows it: a terminate that succeeded
    /// is audited with what became of it.
    handle: Option<SessionHandle>,
    /// Whether the session ran when the request came.
    was_running: bool,
}

impl Ending {
    /// The ending `req` asks for: `None` when it is no terminate or delete,
    /// or its path names no valid session id, or it carries no grant.
    pub(super) fn of(registry: &Registry, req: &Request) -> Option<Ending> {
        let (how, id) = what_ends(req.method().as_str(), req.uri().path())?;
        let id = path_session_id(id)?;
        let handle = registry.get(&id);
        let project = handle.as_ref().map(|h| h.project().to_string()).unwrap_or_default();
        Some(Ending {
            grant: req.extensions().get::<Grant>()?.clone(),
            how,
            session: id.to_string(),
            project,
            was_running: handle.as_ref().is_some_and(SessionHandle::is_running),
            handle,
        })
    }

    /// Runs the rest of the request (`next`) as the registry's finishing
    /// work, started now, and audits its answer. A handler that panicked
    /// answers 500 `internal`, audited as such.
    pub(super) fn run(self, registry: &Registry, req: Request, next: Next) -> impl Future<Output = Response> + use<> {
        let ended = async move {
            let resp = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
                Ok(resp) => resp,
                Err(_) => {
                    tracing::error!(session = %self.session, how = self.how, "the handler ending a session panicked");
                    internal()
                }
            };
            self.audit(&resp);
            resp
        };
        let finished = registry.finish("ending a session", ended);
        async move { finished.await.unwrap_or_else(internal) }
    }

    /// The audit event of this ending, answered `resp`. A terminate that
    /// succeeded ended the session only if it ran when the request came
    /// and ended as `terminated`: else it had ended before (or, in the
    /// moment between, by itself), and its record says so.
    fn audit(&self, resp: &Response) {
        let status = resp.status();
        if self.how == "terminated"
            && status.is_success()
            && let Some(h) = &self.handle
        {
            let ended_as = h.info().status;
            if !self.was_running || ended_as != SessionStatus::Terminated {
                let ended_as = metrics::snake(&ended_as);
                audit::session_already_ended(&self.grant, &self.session, &self.project, status.as_u16(), &ended_as);
                return;
            }
        }
        let code = (!status.is_success()).then(|| {
            resp.extensions()
                .get::<ErrorCode>()
                .map_or_else(|| "-".to_owned(), metrics::snake)
        });
        audit::session_ended(
            &self.grant,
            self.how,
            &self.session,
            &self.project,
            status.as_u16(),
            code.as_deref(),
        );
    }
}

/// The answer to an ending whose handler failed on the server.
fn internal() -> Response {
    ApiError::new(ErrorCode::Internal, "ending the session failed on the server").into_response()
}

/// How `method path` ends a session (the audit's word for it), and the raw
/// path segment that names the session; `None` when it ends none.
fn what_ends<'a>(method: &str, path: &'a str) -> Option<(&'static str, &'a str)> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    match (method, segs.as_slice()) {
        ("POST", ["api", "sessions", id, "terminate"] | ["terminal", id, "terminate"]) => Some(("terminated", *id)),
        ("DELETE", ["api", "sessions", id]) => Some(("deleted", *id)),
        _ => None,
    }
}

/// Audits a write to a session (at `path`) refused to a read-only grant.
pub(super) fn refused_write(registry: &Registry, grant: &Grant, path: &str) {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let id = match segs.as_slice() {
        ["api", "sessions", id, ..] | ["terminal", id, ..] => *id,
        _ => return,
    };
    let Some(id) = path_session_id(id) else {
        return;
    };
    let project = registry.get(&id).map(|h| h.project().to_string()).unwrap_or_default();
    audit::input_refused(grant, id.as_str(), &project);
}

/// The session id in a path segment, percent-decoded as the handlers'
/// `Path` decodes it: read raw, `%67one` was no id here while the handler
/// deleted `gone`, unaudited.
pub(crate) fn path_session_id(raw: &str) -> Option<SessionId> {
    let id = percent_encoding::percent_decode_str(raw).decode_utf8().ok()?;
    SessionId::new(id).ok()
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn terminates_and_deletes_are_endings_and_nothing_else() {
        #[rustfmt::skip]
        let table = [
            ("POST", "/api/sessions/a/terminate", Some(("terminated", "a"))),
            ("POST", "/terminal/a/terminate", Some(("terminated", "a"))),
            ("DELETE", "/api/sessions/%65nc", Some(("deleted", "%65nc"))),
            ("GET", "/api/sessions/a/terminate", None),
            ("DELETE", "/terminal/a", None),
            ("DELETE", "/api/sessions/a/input", None),
            ("POST", "/api/sessions/a/input", None),
            ("POST", "/api/sessions/a/terminate/more", None),
            ("DELETE", "/api/sessions", None),
        ];
        for (method, path, want) in table {
            assert_eq!(what_ends(method, path), want, "{method} {path}");
        }
    }

    #[test]
    fn a_path_segment_is_an_id_once_percent_decoded() {
        let id = |raw| path_session_id(raw).map(|id| id.to_string());
        assert_eq!(id("gone").as_deref(), Some("gone"));
        assert_eq!(id("%67one").as_deref(), Some("gone"));
        assert_eq!(id("a%3Ab").as_deref(), Some("a:b"));
        for bad in [".hidden", "%2Ehidden", "a%2Fb", "a%20b", "%FF", ""] {
            assert_eq!(id(bad), None, "{bad:?}");
        }
    }
}
