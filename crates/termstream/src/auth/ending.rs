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
//! A terminate that succeeded ended the session only if it began the end:
//! the handler's answer says so ([`TerminateOutcome`], from the session's
//! actor), and how the session ended. Of two terminates racing on one
//! session (or one and a shutdown's), one began it; the other, and one of a
//! session that had ended, or was ending by itself, ended nothing. For
//! another node's session the answer cannot say (the owner does not): the
//! session's status when the request came is the judge then, and its end
//! as the handler saw it; the status before counts only if the session in
//! the registry after the handler is still the one read before (a session
//! deleted and created again meanwhile, or a new copy of another node's,
//! is another), else the terminate is counted as the one that ended it.
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
use std::sync::Arc;

use axum::extract::Request;
use axum::middleware::Next;
use axum::response::{IntoResponse, Response};
use futures_util::FutureExt as _;
use termstream_proto::{ErrorCode, SessionId, SessionStatus};

use super::Grant;
use crate::error::ApiError;
use crate::observe::{audit, metrics};
use crate::registry::Registry;
use crate::session::kin::Kin;
use crate::session::{Began, SessionHandle, TerminateOutcome};

/// A request that ends a session (terminate or delete, REST or the older
/// routes), audited with its answer.
pub(super) struct Ending {
    grant: Grant,
    how: &'static str,
    id: SessionId,
    /// Empty when this node knows no such session.
    project: String,
    /// For a terminate, the session when the request came, if this node
    /// knew it: whether it ran then judges a terminate whose answer cannot
    /// say whether it ended the session.
    before: Option<SessionHandle>,
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
            id,
            project,
            was_running: handle.as_ref().is_some_and(SessionHandle::is_running),
            before: handle.filter(|_| how == "terminated"),
        })
    }

    /// Runs the rest of the request (`next`) as the registry's finishing
    /// work, started now, and audits its answer. A handler that panicked
    /// answers 500 `internal`, audited as such.
    pub(super) fn run(
        self,
        registry: &Arc<Registry>,
        req: Request,
        next: Next,
    ) -> impl Future<Output = Response> + use<> {
        let after = Arc::clone(registry);
        let ended = async move {
            let resp = match AssertUnwindSafe(next.run(req)).catch_unwind().await {
                Ok(resp) => resp,
                Err(_) => {
                    tracing::error!(session = %self.id, how = self.how, "the handler ending a session panicked");
                    internal()
                }
            };
            self.audit(&resp, after.get(&self.id).as_ref());
            resp
        };
        let finished = registry.finish("ending a session", ended);
        async move { finished.await.unwrap_or_else(internal) }
    }

    /// The audit event of this ending, answered `resp`; `now` is the
    /// registry's session after the handler. A terminate that succeeded
    /// and did not begin the end is `session.already_ended`.
    fn audit(&self, resp: &Response, now: Option<&SessionHandle>) {
        let status = resp.status();
        if status.is_success()
            && let Some(ended_as) = self.ended_before(resp, now)
        {
            let ended_as = metrics::snake(&ended_as);
            let session = self.id.as_str();
            audit::session_already_ended(&self.grant, session, &self.project, status.as_u16(), &ended_as);
            return;
        }
        let code = (!status.is_success()).then(|| {
            resp.extensions()
                .get::<ErrorCode>()
                .map_or_else(|| "-".to_owned(), metrics::snake)
        });
        audit::session_ended(
            &self.grant,
            self.how,
            self.id.as_str(),
            &self.project,
            status.as_u16(),
            code.as_deref(),
        );
    }
}

impl Ending {
    /// How the session had ended when this successful terminate, answered
    /// `resp`, ended nothing; `None` when it ended the session (or is no
    /// terminate). Its answer says whether it began the end; when it cannot
    /// (another node's session), the session ended nothing if it did not
    /// run when the request came, or did not end as `terminated`; the
    /// status before counts only if `now`, the registry's session after
    /// the handler, is the one read then. Never a running session.
    fn ended_before(&self, resp: &Response, now: Option<&SessionHandle>) -> Option<SessionStatus> {
        let outcome = *resp.extensions().get::<TerminateOutcome>()?;
        let ended_as = outcome.ended_as;
        let nothing = match outcome.began {
            Began::Yes => false,
            Began::No => true,
            Began::Unknown => {
                let before = self.before.as_ref()?;
                now.is_some_and(|now| now.kin(before) == Kin::Same)
                    && (!self.was_running || ended_as != SessionStatus::Terminated)
            }
        };
        (nothing && !ended_as.is_running()).then_some(ended_as)
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

    /// What a successful terminate is audited as: ended nothing (`Some`,
    /// how the session had ended) only when its answer says it did not
    /// begin the end; when the answer cannot say, only when the session
    /// in the registry after is the one that had ended when it came. The
    /// guard's own copy of a session replaced meanwhile never saw the end:
    /// its terminate was audited `session.already_ended` with `ended_as:
    /// running`.
    #[test]
    fn a_terminate_ended_nothing_only_when_it_did_not_begin_the_end() {
        use termstream_proto::SessionStatus::{Running, Terminated};

        use crate::session::remote::{Unasked, remote_handle};
        use crate::session::test_info;

        let copy = || remote_handle(test_info("s"), std::sync::Arc::new(Unasked)).0;
        let (before, other) = (copy(), copy());
        let ending = |was_running| Ending {
            grant: Grant::open(),
            how: "terminated",
            id: SessionId::new("s").unwrap(),
            project: String::new(),
            before: Some(before.clone()),
            was_running,
        };
        let answer = |began, ended_as| {
            let mut resp = Response::new(axum::body::Body::empty());
            resp.extensions_mut().insert(TerminateOutcome { began, ended_as });
            resp
        };
        let same = Some(&before);
        #[rustfmt::skip]
        let table = [
            (true, Began::Yes, Terminated, same, None),
            (false, Began::Yes, Terminated, same, None),
            (true, Began::No, Terminated, same, Some(Terminated)),
            (true, Began::No, SessionStatus::Exited, Some(&other), Some(SessionStatus::Exited)),
            (true, Began::No, Running, same, None),
            (true, Began::Unknown, Terminated, same, None),
            (true, Began::Unknown, SessionStatus::Exited, same, Some(SessionStatus::Exited)),
            (false, Began::Unknown, Terminated, same, Some(Terminated)),
            (false, Began::Unknown, Terminated, Some(&other), None),
            (false, Began::Unknown, Terminated, None, None),
            (false, Began::Unknown, Running, same, None),
        ];
        for (i, (was_running, began, ended_as, now, want)) in table.into_iter().enumerate() {
            let got = ending(was_running).ended_before(&answer(began, ended_as), now);
            assert_eq!(got, want, "row {i}: {was_running} {began:?} {ended_as:?}");
        }
        let no_answer = Response::new(axum::body::Body::empty());
        assert_eq!(
            ending(false).ended_before(&no_answer, same),
            None,
            "no outcome: no terminate"
        );
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
