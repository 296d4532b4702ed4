//! Which access each REST route needs, as one table.
//!
//! Routes about one session (`/api/sessions/{id}/...`, `/terminal/{id}...`)
//! are checked here, before their handler runs, against the project of that
//! session. Routes whose answer depends on the credential (lists, create,
//! events, tickets, the WebSocket endpoints) check in their handler. A route
//! this table does not know is refused to every credential but `admin`, so a
//! route added later is closed until it is classified here.
//!
//! A session of a project the credential cannot read answers 404
//! `session_not_found`, exactly as an id that does not exist: a scoped
//! token cannot learn which ids exist elsewhere. A session it can read but
//! not write answers 403 `read_only` to writes.

use axum::http::Method;
use termstream_proto::ErrorCode;

use super::Grant;
use super::token::Access;
use crate::error::ApiError;
use crate::registry::Registry;

/// What a route needs.
#[derive(Debug, PartialEq, Eq)]
pub enum Need<'a> {
    /// Any authenticated credential; the handler checks the rest.
    Handler,
    /// `access` to the session with this id.
    Session(&'a str, Access),
    /// Write access to this project (creating a session in it).
    Create(&'static str),
    /// Only `admin`.
    Admin,
}

/// The need of `method path`.
pub fn need<'a>(method: &Method, path: &'a str) -> Need<'a> {
    let segs: Vec<&str> = path.trim_start_matches('/').split('/').collect();
    let (get, post, put, delete) = (
        method == Method::GET || method == Method::HEAD,
        method == Method::POST,
        method == Method::PUT,
        method == Method::DELETE,
    );
    match segs.as_slice() {
        ["health"] | ["openapi.json"] => Need::Handler,
        ["api", "sessions"] if get || post => Need::Handler,
        ["api", "ws-ticket"] if post => Need::Handler,
        ["api", "events"] if post => Need::Handler,
        ["api", "login-codes"] if post => Need::Handler,
        // The session is named in the body: the handler checks its project
        // (404 unreadable, 403 read-only); lists show readable projects.
        ["api", "terminal", "focus"] if get || put => Need::Handler,
        ["api", "projects"] if get => Need::Handler,
        ["api", "sessions", id] if get => Need::Session(id, Access::Read),
        ["api", "sessions", id] if delete => Need::Session(id, Access::Write),
        ["api", "sessions", id, "input" | "resize" | "terminate"] if post => Need::Session(id, Access::Write),
        ["api", "sessions", id, "output" | "snapshot" | "recording.cast"] if get => Need::Session(id, Access::Read),
        ["terminal", "start"] if post => Need::Create("default"),
        ["terminal", "sessions"] if get => Need::Handler,
        ["terminal", id] if get => Need::Session(id, Access::Read),
        ["terminal", id, "terminate"] if post => Need::Session(id, Access::Write),
        ["ws"] | ["ws", "terminal", _] if get => Need::Handler,
        _ => Need::Admin,
    }
}

/// Checks `grant` against what `method path` needs.
pub fn check(grant: &Grant, registry: &Registry, method: &Method, path: &str) -> Result<(), ApiError> {
    if grant.is_admin() {
        return Ok(());
    }
    match need(method, path) {
        Need::Handler => Ok(()),
        Need::Admin => Err(ApiError::new(ErrorCode::Forbidden, "this route needs an admin token")),
        Need::Create(project) => grant.check_create(project),
        Need::Session(raw, access) => {
            let project = super::ending::path_session_id(raw)
                .and_then(|id| registry.get(&id))
                .map(|h| h.project().clone());
            let Some(project) = project else {
                return Err(ApiError::not_found(raw));
            };
            grant.check_session(project.as_str(), raw, access)
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_table() {
        assert_eq!(
            need(&Method::GET, "/api/sessions/a/output"),
            Need::Session("a", Access::Read)
        );
        assert_eq!(
            need(&Method::POST, "/api/sessions/a/input"),
            Need::Session("a", Access::Write)
        );
        assert_eq!(
            need(&Method::DELETE, "/api/sessions/a"),
            Need::Session("a", Access::Write)
        );
        assert_eq!(
            need(&Method::POST, "/terminal/a/terminate"),
            Need::Session("a", Access::Write)
        );
        assert_eq!(need(&Method::POST, "/terminal/start"), Need::Create("default"));
        assert_eq!(need(&Method::PUT, "/api/sessions/a"), Need::Admin);
        assert_eq!(need(&Method::GET, "/api/new-thing"), Need::Admin);
        assert_eq!(need(&Method::PUT, "/api/terminal/focus"), Need::Handler);
        assert_eq!(need(&Method::GET, "/api/terminal/focus"), Need::Handler);
        assert_eq!(need(&Method::GET, "/api/projects"), Need::Handler);
        assert_eq!(need(&Method::POST, "/api/projects"), Need::Admin);
    }
}
