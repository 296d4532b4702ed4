//! The client's error type: what went wrong, in terms a caller can act on.
//!
//! A server's `{"error":{code,message}}` answer becomes [`Error::Api`] with
//! its [`ErrorCode`]; a server that cannot be reached at all is
//! [`Error::Unreachable`], apart from one that answered something the
//! protocol does not allow ([`Error::Protocol`]).

use termstream_proto::{ErrorCode, ErrorDetail};

/// A boxed error from a lower layer.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;

/// Everything a client call can fail with.
#[derive(Debug, thiserror::Error)]
pub enum Error {
    /// The server URL is not one the client can use.
    #[error("invalid server URL {url:?}: {reason}")]
    InvalidUrl {
        /// The URL as given.
        url: String,
        /// What is wrong with it.
        reason: String,
    },
    /// The TLS settings could not be built (e.g. an unreadable CA file).
    #[error("TLS setup failed: {0}")]
    Tls(String),
    /// No connection could be made, or it broke before an answer came. The
    /// message names the innermost cause ("Connection refused (os error
    /// 111)"), not only the outer "error sending request".
    #[error("cannot reach the server at {url}: {}", root_cause(source.as_ref()))]
    Unreachable {
        /// The server's REST base.
        url: String,
        /// What failed (a `reqwest` error).
        #[source]
        source: BoxError,
    },
    /// The server answered with an error body.
    #[error("{} ({})", detail.message, status)]
    Api {
        /// The HTTP status (or 0 for an `error` message on the socket).
        status: u16,
        /// The server's code ([`Error::code`]) and message, and the details
        /// some codes carry.
        detail: ErrorDetail,
    },
    /// The server answered something the protocol does not allow.
    #[error("unexpected answer from the server: {0}")]
    Protocol(String),
    /// The connection was closed by its owner.
    #[error("the connection is closed")]
    Closed,
}

impl Error {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            Error::Api { detail, .. } => Some(detail.code),
            _ => None,
        }
    }

    /// Whether the credential was missing, bad, or not enough.
    pub fn is_auth(&self) -> bool {
        matches!(
            self.code(),
            Some(ErrorCode::Unauthorized | ErrorCode::Forbidden | ErrorCode::ReadOnly)
        )
    }

    /// Whether retrying later might work (the server could not be reached).
    pub fn is_transient(&self) -> bool {
        matches!(self, Error::Unreachable { .. })
    }

    pub(crate) fn api(status: u16, code: ErrorCode, message: impl Into<String>) -> Error {
        Error::Api {
            status,
            detail: ErrorDetail {
                code,
                message: message.into(),
                earliest_offset: None,
                accepted_bytes: None,
            },
        }
    }
}

/// The message of the innermost error of a chain: what actually failed.
fn root_cause(e: &(dyn std::error::Error + 'static)) -> String {
    let mut cur = e;
    while let Some(next) = cur.source() {
        cur = next;
    }
    cur.to_string()
}

/// A client call's result.
pub type Result<T, E = Error> = std::result::Result<T, E>;

/// The code a status stands for when the body is not an error body (a proxy
/// in between answered, say).
pub(crate) fn code_for_status(status: u16) -> ErrorCode {
    match status {
        400 => ErrorCode::BadRequest,
        401 => ErrorCode::Unauthorized,
        403 => ErrorCode::Forbidden,
        404 => ErrorCode::NotFound,
        405 => ErrorCode::MethodNotAllowed,
        409 => ErrorCode::SessionNotRunning,
        410 => ErrorCode::OutputGone,
        413 => ErrorCode::PayloadTooLarge,
        429 => ErrorCode::RateLimited,
        503 => ErrorCode::Capacity,
        _ => ErrorCode::Internal,
    }
}
