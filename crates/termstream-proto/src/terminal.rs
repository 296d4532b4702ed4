//! The per-terminal socket `/ws?sessionId=ID&projectId=P`: one socket per
//! terminal, in the shapes of the focus-sync design's `XTermViewV2`.
//!
//! The URL names the session, so messages need no `sessionId` (one that is
//! given must be the socket's own). Besides the focus messages of
//! [`crate::focus`], the server sends output as [`TerminalServerMessage::Stream`]
//! and errors as [`TerminalServerMessage::Error`].

use serde::{Deserialize, Serialize};

use crate::ids::{ProjectId, SessionId};

/// A window size, as the design's `resize` carries it in `data`.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct WindowSize {
    pub cols: u16,
    pub rows: u16,
}

/// Client → server on the per-terminal socket.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalClientMessage {
    /// Text for the program's input.
    #[serde(rename_all = "camelCase")]
    Input {
        #[serde(default)]
        session_id: Option<SessionId>,
        data: String,
    },
    /// The window size: in `data` (`{cols, rows}`) or as `cols`/`rows`.
    #[serde(rename_all = "camelCase")]
    Resize {
        #[serde(default)]
        session_id: Option<SessionId>,
        #[serde(default)]
        data: Option<WindowSize>,
        #[serde(default)]
        cols: Option<u16>,
        #[serde(default)]
        rows: Option<u16>,
    },
    /// Focus this socket's session (or `sessionId`, of the same project).
    #[serde(rename_all = "camelCase")]
    Focus {
        #[serde(default)]
        session_id: Option<SessionId>,
        #[serde(default)]
        project_id: Option<ProjectId>,
        #[serde(default)]
        expected_version: Option<u64>,
    },
    /// Unfocus this socket's session (or `sessionId`).
    #[serde(rename_all = "camelCase")]
    Blur {
        #[serde(default)]
        session_id: Option<SessionId>,
        #[serde(default)]
        project_id: Option<ProjectId>,
        #[serde(default)]
        expected_version: Option<u64>,
    },
    /// Answered with `sync_complete`.
    #[serde(rename_all = "camelCase")]
    SyncRequest {
        #[serde(default)]
        session_id: Option<SessionId>,
        #[serde(default)]
        project_id: Option<ProjectId>,
    },
    /// Answered with `heartbeat`, `sessionId` and the server's time.
    #[serde(rename_all = "camelCase")]
    Heartbeat {
        #[serde(default)]
        session_id: Option<SessionId>,
    },
}

impl TerminalClientMessage {
    /// Every `type` a client may send on the per-terminal socket.
    pub const TYPES: [&'static str; 6] = ["input", "resize", "focus", "blur", "sync_request", "heartbeat"];
}

/// Server → client on the per-terminal socket (besides the focus messages).
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type", rename_all = "snake_case")]
pub enum TerminalServerMessage {
    /// Output of the session (text; the screen comes first as one of these).
    #[serde(rename_all = "camelCase")]
    Stream {
        session_id: SessionId,
        data: String,
        /// Unix ms.
        timestamp: u64,
    },
    /// Something was wrong; `data` says what. The socket stays open.
    #[serde(rename_all = "camelCase")]
    Error { session_id: SessionId, data: String },
    /// The answer to `heartbeat`.
    #[serde(rename_all = "camelCase")]
    Heartbeat { session_id: SessionId, timestamp: u64 },
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn resize_takes_either_shape() {
        let a: TerminalClientMessage =
            serde_json::from_str(r#"{"type":"resize","sessionId":"s","data":{"cols":90,"rows":30}}"#).unwrap();
        let b: TerminalClientMessage = serde_json::from_str(r#"{"type":"resize","cols":90,"rows":30}"#).unwrap();
        assert!(matches!(
            a,
            TerminalClientMessage::Resize {
                data: Some(WindowSize { cols: 90, rows: 30 }),
                ..
            }
        ));
        assert!(matches!(
            b,
            TerminalClientMessage::Resize {
                cols: Some(90),
                rows: Some(30),
                ..
            }
        ));
    }
}
