//! What a session is, and the REST bodies that create and drive one.
//!
//! Times are Unix milliseconds (`u64`); durations are milliseconds. JSON
//! field names are camelCase, as in the WebSocket protocol.

use std::collections::BTreeMap;

use serde::{Deserialize, Serialize};

use crate::ids::{Epoch, ProjectId, SessionId};

/// How a session's program is connected.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SessionKind {
    /// On a pseudo-terminal: the program is a session leader with the PTY as
    /// its controlling terminal; output is one stream; the window has a size.
    Pty,
    /// With pipes: stdout and stderr are read apart, stdin can be written and
    /// closed.
    Command,
}

impl SessionKind {
    /// The kind's name on the wire: `pty` or `command`.
    pub fn as_str(self) -> &'static str {
        match self {
            SessionKind::Pty => "pty",
            SessionKind::Command => "command",
        }
    }
}

impl std::fmt::Display for SessionKind {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

/// Where a session is in its life.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum SessionStatus {
    /// The program runs.
    Running,
    /// The program ended by itself (exit code or signal recorded).
    Exited,
    /// The program was ended by a terminate request.
    Terminated,
    /// The program could not be started, or its I/O failed.
    Failed,
    /// The server stopped while the session ran; its end was not seen.
    Lost,
}

impl SessionStatus {
    /// Whether the session's program may still produce output.
    pub fn is_running(self) -> bool {
        self == SessionStatus::Running
    }
}

/// Everything known about a session. The server publishes a fresh copy on
/// every change of status or size; it is also what the data dir stores.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct SessionInfo {
    pub id: SessionId,
    pub kind: SessionKind,
    /// The program and its arguments, as started.
    pub argv: Vec<String>,
    /// The working directory the program started in.
    pub cwd: String,
    pub project: ProjectId,
    pub status: SessionStatus,
    /// The output log's epoch; see [`Epoch`].
    pub epoch: Epoch,
    /// The offset one past the last byte of output so far.
    pub output_offset: u64,
    /// The window size (pty sessions; command sessions report 0 × 0).
    pub cols: u16,
    pub rows: u16,
    /// The program's process id while it runs.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub pid: Option<u32>,
    pub created_at: u64,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub started_at: Option<u64>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub ended_at: Option<u64>,
    /// The exit code, when the program exited normally.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub exit_code: Option<i32>,
    /// The signal that ended the program, when one did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signal: Option<i32>,
    /// Milliseconds from start to end (or to now, while running).
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub duration_ms: Option<u64>,
    /// Why the session failed, when it did.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub error: Option<String>,
}

/// `POST /api/sessions`: start a session.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct CreateSession {
    /// The id to give the session; generated when absent. A duplicate is 409.
    #[serde(default)]
    pub id: Option<SessionId>,
    /// `pty` when absent.
    #[serde(default)]
    pub kind: Option<SessionKind>,
    /// Program and arguments. For a pty session the default is the user's
    /// shell. Give either `argv` or `command`.
    #[serde(default)]
    pub argv: Option<Vec<String>>,
    /// A shell command line, run as `/bin/sh -c COMMAND`.
    #[serde(default)]
    pub command: Option<String>,
    /// Working directory; the server's default cwd when absent.
    #[serde(default)]
    pub cwd: Option<String>,
    /// Extra environment variables for the program, on top of the allowlist.
    #[serde(default)]
    pub env: BTreeMap<String, String>,
    /// The window's columns (default 80); the documented bound is 1000.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub cols: Option<u16>,
    /// The window's rows (default 24); the documented bound is 1000.
    #[serde(default)]
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub rows: Option<u16>,
    /// `default` when absent.
    #[serde(default)]
    pub project: Option<ProjectId>,
}

/// `POST /api/sessions/{id}/input`: bytes for the program's input.
///
/// Give `data` (UTF-8 text) or `dataBase64` (any bytes), or neither with
/// `eof` set. `eof` closes a command session's stdin after the data.
#[derive(Debug, Clone, Default, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase", deny_unknown_fields)]
pub struct InputRequest {
    #[serde(default)]
    pub data: Option<String>,
    #[serde(default)]
    pub data_base64: Option<String>,
    #[serde(default)]
    pub eof: bool,
}

/// `POST /api/sessions/{id}/resize`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(deny_unknown_fields)]
pub struct ResizeRequest {
    /// The documented bound is 1000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub cols: u16,
    /// The documented bound is 1000.
    #[cfg_attr(feature = "openapi", schema(minimum = 1, maximum = 1000))]
    pub rows: u16,
}

/// `GET /api/sessions`: the list, newest first.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct SessionList {
    pub sessions: Vec<SessionInfo>,
    pub total: usize,
}

/// `GET /api/sessions/{id}/snapshot`: escape sequences that rebuild the
/// screen of a pty session on a fresh terminal of `cols` × `rows`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct Snapshot {
    pub epoch: Epoch,
    /// The log offset the snapshot reflects: output from here on follows it.
    pub offset: u64,
    pub cols: u16,
    pub rows: u16,
    /// Escape sequences and text (recent scrollback first, then the screen).
    pub data: String,
}
