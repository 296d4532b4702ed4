//! The shapes of the older `/terminal` REST API, served exactly so that
//! clients written for it work unchanged. Field names are snake_case there;
//! times are Unix seconds as floats; `command` is a shell command line run by
//! `/bin/sh -c` as a command session.

use serde::{Deserialize, Serialize};

use crate::SessionInfo;

/// `POST /terminal/start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartRequest {
    #[serde(default)]
    pub session_id: Option<String>,
    pub command: String,
    #[serde(default)]
    pub cwd: Option<String>,
}

/// The answer to `POST /terminal/start`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StartResponse {
    pub success: bool,
    pub session_id: String,
    pub command: String,
    pub cwd: String,
    pub message: String,
}

/// One entry of `GET /terminal/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionEntry {
    pub session_id: String,
    pub command: String,
    pub cwd: String,
    pub is_running: bool,
    pub start_time: f64,
    pub exit_code: Option<i32>,
    pub connections: usize,
}

/// `GET /terminal/sessions`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionsResponse {
    pub sessions: Vec<SessionEntry>,
    pub total: usize,
}

/// The `status` of `GET /terminal/{session_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionStatusBody {
    pub session_id: String,
    pub command: String,
    pub is_running: bool,
    pub exit_code: Option<i32>,
    pub connections: usize,
}

/// `GET /terminal/{session_id}`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct StatusResponse {
    pub status: SessionStatusBody,
}

/// `POST /terminal/{session_id}/terminate`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct TerminateResponse {
    pub success: bool,
    pub session_id: String,
    pub message: String,
}

/// The `command` of the older shapes: the shell command line of a
/// `/bin/sh -c` session, else the argv joined by spaces.
pub fn command_of(info: &SessionInfo) -> String {
    match info.argv.as_slice() {
        [sh, c, cmd] if sh == "/bin/sh" && c == "-c" => cmd.clone(),
        argv => argv.join(" "),
    }
}
