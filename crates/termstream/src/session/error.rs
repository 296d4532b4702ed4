//! Why a session operation failed, and the code a client is answered with
//! for it: one error for local sessions and for those another node owns.

use termstream_proto::{ErrorCode, SessionId, SessionKind};

/// Why a session operation failed.
#[derive(Debug, thiserror::Error)]
pub enum SessionError {
    #[error("session {0} is not running")]
    NotRunning(SessionId),
    #[error("session {id} is a {kind} session; {what} needs a pty session")]
    WrongKind {
        id: SessionId,
        kind: SessionKind,
        what: &'static str,
    },
    #[error("a {cols}x{rows} window is larger than the most allowed, {max_cols}x{max_rows}")]
    WindowTooLarge {
        cols: u16,
        rows: u16,
        max_cols: u16,
        max_rows: u16,
    },
    #[error("output before offset {earliest} is no longer held")]
    Gone { earliest: u64 },
    #[error("offset {since} is past the end of the output ({end})")]
    PastEnd { since: u64, end: u64 },
    #[error("session {0} was deleted")]
    Closed(SessionId),
    #[error("session {0} did not answer in time")]
    Busy(SessionId),
    #[error(
        "the program is not reading its input: {taken} of {total} bytes were taken and will reach it; send only the rest, later"
    )]
    InputBusy { taken: usize, total: usize },
    #[error("reading the output log failed: {0}")]
    Io(#[from] std::io::Error),
    /// An error the session's owner node answered with, or why it could
    /// not be asked (cluster only).
    #[error("{message}")]
    Remote { code: ErrorCode, message: String },
}

impl SessionError {
    /// The code a client is answered with, over REST and WebSocket alike.
    pub fn code(&self) -> ErrorCode {
        match self {
            SessionError::NotRunning(_) => ErrorCode::SessionNotRunning,
            SessionError::WrongKind { .. } => ErrorCode::WrongKind,
            SessionError::WindowTooLarge { .. } => ErrorCode::InvalidMessage,
            SessionError::Gone { .. } => ErrorCode::OutputGone,
            SessionError::PastEnd { .. } => ErrorCode::BadRequest,
            SessionError::Closed(_) => ErrorCode::SessionNotFound,
            SessionError::Busy(_) | SessionError::InputBusy { .. } => ErrorCode::Busy,
            SessionError::Io(_) => ErrorCode::Internal,
            SessionError::Remote { code, .. } => *code,
        }
    }
}
