//! [`Grant`]: what a request's credential allows (its name, scope and
//! peer), the checks handlers ask of it, and its extractor. The guard in
//! [`crate::auth`] makes a request's grant; handlers only read it.

use std::net::IpAddr;
use std::sync::Arc;

use axum::extract::FromRequestParts;
use axum::http::request::Parts;
use termstream_proto::ErrorCode;

use super::token::{Access, Scope};
use crate::error::ApiError;

/// What a request's credential allows. Cheap to clone.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Grant {
    /// The token's name, or `local` without auth.
    pub name: Arc<str>,
    pub scope: Arc<Scope>,
    /// Whether this grant came from a configured token (per-token limits
    /// apply), not from running without auth.
    pub token: bool,
    /// The client's address, for the audit trail: set by the guard on
    /// every request (a ticket's grant gets its redeemer's).
    pub peer: Option<IpAddr>,
}

impl Grant {
    /// Everything: a loopback client of a server with no token configured.
    pub fn open() -> Grant {
        Grant {
            name: "local".into(),
            scope: Arc::new(Scope::Admin),
            token: false,
            peer: None,
        }
    }

    pub fn is_admin(&self) -> bool {
        matches!(*self.scope, Scope::Admin)
    }

    pub fn access(&self, project: &str) -> Option<Access> {
        self.scope.access(project)
    }

    pub fn can_read(&self, project: &str) -> bool {
        self.access(project).is_some()
    }

    /// `access` to session `id` of `project`: 404 when the project is not
    /// readable (as if the id did not exist), 403 `read_only` when a write
    /// is asked of a read-only grant.
    pub fn check_session(&self, project: &str, id: &str, access: Access) -> Result<(), ApiError> {
        match self.access(project) {
            None => Err(ApiError::not_found(id)),
            Some(have) if have < access => Err(read_only()),
            Some(_) => Ok(()),
        }
    }

    /// Publishing an event about `project` (none: admin only).
    pub fn check_publish(&self, project: Option<&str>) -> Result<(), ApiError> {
        match project {
            _ if self.is_admin() => Ok(()),
            None => Err(ApiError::new(
                ErrorCode::Forbidden,
                "an event without a project needs an admin token",
            )),
            Some(p) => self.check_create(p),
        }
    }

    /// Whether a socket with this grant receives an event about `project`.
    pub fn sees_event(&self, project: Option<&str>) -> bool {
        self.is_admin() || project.is_some_and(|p| self.can_read(p))
    }

    /// Creating a session in `project`.
    pub fn check_create(&self, project: &str) -> Result<(), ApiError> {
        match self.access(project) {
            None => Err(ApiError::new(
                ErrorCode::Forbidden,
                format!("this token cannot use project {project:?}"),
            )),
            Some(Access::Read) => Err(read_only()),
            Some(Access::Write) => Ok(()),
        }
    }
}

fn read_only() -> ApiError {
    ApiError::new(
        ErrorCode::ReadOnly,
        "this token may only watch: input, resize and changes are refused",
    )
}

impl<S: Send + Sync> FromRequestParts<S> for Grant {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Grant, ApiError> {
        parts
            .extensions
            .get::<Grant>()
            .cloned()
            .ok_or_else(|| ApiError::new(ErrorCode::Unauthorized, "no credential was checked for this route"))
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn grants() {
        let g = Grant {
            name: "v".into(),
            scope: Arc::new(Scope::Projects([("web".to_string(), Access::Read)].into())),
            token: true,
            peer: None,
        };
        assert!(g.check_session("web", "a", Access::Read).is_ok());
        assert_eq!(
            g.check_session("web", "a", Access::Write).unwrap_err().code,
            ErrorCode::ReadOnly
        );
        assert_eq!(
            g.check_session("api", "a", Access::Read).unwrap_err().code,
            ErrorCode::SessionNotFound
        );
        assert_eq!(g.check_create("api").unwrap_err().code, ErrorCode::Forbidden);
    }
}
