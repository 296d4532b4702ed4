//! Focus: which sessions of a project are focused, as the server owns it.
//!
//! Per project the server keeps an ordered set of at most `maxFocused`
//! focused sessions and a `version`, a number that grows by exactly one with
//! every change of that project's set. Clients ask for changes (`focus`,
//! `blur` on a WebSocket, `PUT /api/terminal/focus`) and render what the
//! server says: every change goes to every socket of the project as a
//! [`FocusMessage::FocusUpdate`]. The shapes follow the focus-sync design
//! the dashboards were written from (see `docs/protocol.md`).

use serde::{Deserialize, Serialize};

use crate::error::{ErrorCode, ErrorDetail};
use crate::ids::{ProjectId, SessionId};

/// The state a connection reports with its first message about a project.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ConnectionState {
    Connected,
    Disconnected,
    Error,
}

/// Focus messages, server → client, on `/ws` and the per-terminal socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum FocusMessage {
    /// One change of a project's focus set: `sessionId` became focused or
    /// not, and this is the set and version after it.
    #[serde(rename = "focus_update", rename_all = "camelCase")]
    FocusUpdate {
        project_id: ProjectId,
        session_id: SessionId,
        focused: bool,
        focused_sessions: Vec<SessionId>,
        total_focused: usize,
        max_focused: usize,
        version: u64,
        /// Unix ms of the change.
        timestamp: u64,
    },
    /// The first message about a project on a socket: the state updates
    /// follow from.
    #[serde(rename = "connection_status", rename_all = "camelCase")]
    ConnectionStatus {
        status: ConnectionState,
        project_id: ProjectId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        focused_sessions: Vec<SessionId>,
        version: u64,
        max_focused: usize,
        timestamp: u64,
    },
    /// The answer to `sync_request`, and what a socket that fell behind
    /// gets instead of the updates it missed.
    #[serde(rename = "sync_complete", rename_all = "camelCase")]
    SyncComplete {
        project_id: ProjectId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        focused_sessions: Vec<SessionId>,
        version: u64,
        max_focused: usize,
        timestamp: u64,
    },
    /// A focus request whose `expectedVersion` was stale: nothing changed;
    /// this is the current state. `code` is `version_conflict`.
    #[serde(rename = "error", rename_all = "camelCase")]
    Conflict {
        code: ErrorCode,
        message: String,
        project_id: ProjectId,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        focused_sessions: Vec<SessionId>,
        version: u64,
        max_focused: usize,
        timestamp: u64,
    },
}

/// `PUT /api/terminal/focus`: focus or unfocus one session.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FocusRequest {
    pub session_id: SessionId,
    /// The session's project; when given it must be the session's own.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub project_id: Option<ProjectId>,
    pub focused: bool,
    /// The version the client last saw; a stale one changes nothing (409).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub expected_version: Option<u64>,
}

/// The answer to `PUT /api/terminal/focus`: the project's state after the
/// request; with a 409, `success` is false and `error` says why.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct FocusResponse {
    pub success: bool,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<ErrorDetail>,
    pub project_id: ProjectId,
    pub focused_sessions: Vec<SessionId>,
    pub version: u64,
    pub max_focused: usize,
}

/// `GET /api/terminal/focus?projectId=P`: a project's focus state.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProjectFocus {
    pub project_id: ProjectId,
    pub focused_sessions: Vec<SessionId>,
    pub version: u64,
    pub max_focused: usize,
}

/// What the asking credential may do in a project (`GET /api/projects`'s
/// `access`). The server sends `read` or `write` only: `Unknown` is what a
/// client reads from any other value, or from none, and is not in the
/// OpenAPI schema (its `PartialSchema` below).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum ProjectAccess {
    /// List, attach, read output and snapshots, watch focus; every change
    /// (create, input, resize, terminate, delete, focus) is refused with
    /// 403 `read_only`.
    Read,
    /// Everything `read` allows, and every change.
    Write,
    /// A right this version does not know (from a newer server), or none
    /// said (an older server): learn it from the answers to changes.
    #[default]
    #[serde(other)]
    Unknown,
}

/// The schema of what the server sends: `read` or `write` (never `unknown`).
#[cfg(feature = "openapi")]
impl utoipa::PartialSchema for ProjectAccess {
    fn schema() -> utoipa::openapi::RefOr<utoipa::openapi::schema::Schema> {
        utoipa::openapi::ObjectBuilder::new()
            .schema_type(utoipa::openapi::schema::Type::String)
            .enum_values(Some(["read", "write"]))
            .description(Some(
                "What the asking credential may do in the project: `read` (list, attach, \
                 read output, watch focus; every change is refused with 403 `read_only`) or \
                 `write` (every change too). A client should read any other value as unknown.",
            ))
            .into()
    }
}

#[cfg(feature = "openapi")]
impl utoipa::ToSchema for ProjectAccess {}

/// One project in `GET /api/projects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ProjectSummary {
    pub project_id: ProjectId,
    /// What the asking credential may do here: `read` or `write` (an admin
    /// token, and a server without tokens to a loopback client: `write`).
    #[serde(default)]
    pub access: ProjectAccess,
    /// Sessions of the project, running or ended.
    pub total_sessions: usize,
    /// Sessions of the project that run now.
    pub running_sessions: usize,
    pub focused_sessions: Vec<SessionId>,
    pub version: u64,
    pub max_focused: usize,
}

/// `GET /api/projects`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ProjectList {
    pub projects: Vec<ProjectSummary>,
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn focus_update_has_the_design_shape() {
        let id = SessionId::new("a").unwrap();
        let m = FocusMessage::FocusUpdate {
            project_id: ProjectId::new("p").unwrap(),
            session_id: id.clone(),
            focused: true,
            focused_sessions: vec![id],
            total_focused: 1,
            max_focused: 4,
            version: 7,
            timestamp: 5,
        };
        assert_eq!(
            serde_json::to_value(&m).unwrap(),
            serde_json::json!({"type":"focus_update","projectId":"p","sessionId":"a","focused":true,
                "focusedSessions":["a"],"totalFocused":1,"maxFocused":4,"version":7,"timestamp":5})
        );
    }

    #[test]
    fn project_access_reads_what_it_knows_and_tolerates_the_rest() {
        let summary = |extra: serde_json::Value| {
            let mut v = serde_json::json!({"projectId":"p","totalSessions":1,"runningSessions":1,
                "focusedSessions":[],"version":0,"maxFocused":4});
            v.as_object_mut().unwrap().extend(extra.as_object().unwrap().clone());
            serde_json::from_value::<ProjectSummary>(v).unwrap().access
        };
        assert_eq!(summary(serde_json::json!({"access":"read"})), ProjectAccess::Read);
        assert_eq!(summary(serde_json::json!({"access":"write"})), ProjectAccess::Write);
        assert_eq!(summary(serde_json::json!({"access":"admin"})), ProjectAccess::Unknown);
        assert_eq!(summary(serde_json::json!({})), ProjectAccess::Unknown);
        assert_eq!(serde_json::to_value(ProjectAccess::Write).unwrap(), "write");
    }
}
