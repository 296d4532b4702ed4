//! The JSON error body: `{"error":{"code","message"}}`.
//!
//! Every error the server answers, over REST or WebSocket, carries one of the
//! [`ErrorCode`]s, written in snake_case. Codes are stable; messages are for
//! people and may change.

use serde::{Deserialize, Serialize};

/// A machine-readable error code.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "snake_case")]
pub enum ErrorCode {
    /// The body or a parameter is malformed (400).
    BadRequest,
    /// No session has that id (404).
    SessionNotFound,
    /// No such route (404).
    NotFound,
    /// The route does not take that method (405).
    MethodNotAllowed,
    /// A WebSocket endpoint was asked without a WebSocket upgrade (426).
    UpgradeRequired,
    /// A session with that id exists already (409).
    DuplicateId,
    /// The session does not accept this now, e.g. input after it ended (409).
    SessionNotRunning,
    /// The request names a program that cannot be started (422).
    SpawnFailed,
    /// The working directory does not exist or is not a directory (422).
    BadCwd,
    /// The operation does not apply to this kind of session (422).
    WrongKind,
    /// The output asked for is no longer held (410); see `earliestOffset`.
    OutputGone,
    /// The body is larger than allowed (413).
    PayloadTooLarge,
    /// The request body did not arrive in time (408).
    RequestTimeout,
    /// A per-client limit was reached (429).
    RateLimited,
    /// The server is at capacity (503).
    Capacity,
    /// The session did not answer in time (503).
    Busy,
    /// A WebSocket message is not JSON, or a field is wrong.
    InvalidMessage,
    /// A WebSocket message has a `type` the server does not know.
    UnknownType,
    /// The socket is not attached to that session.
    NotAttached,
    /// The credential only allows watching.
    ReadOnly,
    /// A message or frame is larger than allowed (close 1009).
    MessageTooLarge,
    /// Something failed on the server's side (500).
    Internal,
    /// No credential, or a bad one (401).
    Unauthorized,
    /// The credential does not allow this (403).
    Forbidden,
    /// A focus request's `expectedVersion` is not the project's version
    /// (409): nothing changed.
    VersionConflict,
    /// A `projectId` that is not the session's project (422).
    ProjectMismatch,
    /// The node runs in a cluster and cannot reach the cluster's Redis
    /// now (503): nothing changed; try again.
    ClusterUnavailable,
}

/// The inside of an error body.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct ErrorDetail {
    pub code: ErrorCode,
    pub message: String,
    /// With `output_gone`: the earliest offset still held.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub earliest_offset: Option<u64>,
    /// With `busy` for input: how many bytes of the request were taken
    /// anyway (they reach the program; send only the rest again).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub accepted_bytes: Option<u64>,
}

/// `{"error":{...}}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct ErrorBody {
    pub error: ErrorDetail,
}

impl ErrorBody {
    /// An error body with no extra fields.
    pub fn new(code: ErrorCode, message: impl Into<String>) -> Self {
        ErrorBody {
            error: ErrorDetail {
                code,
                message: message.into(),
                earliest_offset: None,
                accepted_bytes: None,
            },
        }
    }
}
