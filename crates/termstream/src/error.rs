//! The REST error type: every failure becomes `{"error":{"code","message"}}`
//! with the status its code implies, and carries its [`ErrorCode`] as a
//! response extension, for middleware that reports answers by their code.

use axum::Json;
use axum::extract::rejection::BytesRejection;
use axum::extract::{FromRequest, FromRequestParts};
use axum::http::StatusCode;
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::de::DeserializeOwned;
use termstream_proto::{ErrorBody, ErrorCode, SessionId};

use crate::registry::CreateError;
use crate::session::SessionError;
use crate::session::process::SpawnError;

/// An error answered to a REST client.
#[derive(Debug)]
pub struct ApiError {
    pub code: ErrorCode,
    pub message: String,
    pub earliest_offset: Option<u64>,
    pub accepted_bytes: Option<u64>,
}

impl ApiError {
    pub fn new(code: ErrorCode, message: impl Into<String>) -> ApiError {
        ApiError {
            code,
            message: message.into(),
            earliest_offset: None,
            accepted_bytes: None,
        }
    }

    pub fn bad_request(message: impl Into<String>) -> ApiError {
        ApiError::new(ErrorCode::BadRequest, message)
    }

    pub fn not_found(id: &str) -> ApiError {
        ApiError::new(ErrorCode::SessionNotFound, format!("no session has id {id:?}"))
    }
}

/// The HTTP status of each error code.
pub fn status_of(code: ErrorCode) -> StatusCode {
    match code {
        ErrorCode::BadRequest | ErrorCode::UnknownType => StatusCode::BAD_REQUEST,
        // Over REST: a well-formed value out of range (a window larger than
        // `max_cols` × `max_rows`).
        ErrorCode::InvalidMessage => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::NotAttached | ErrorCode::VersionConflict => StatusCode::CONFLICT,
        ErrorCode::ProjectMismatch => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::ClusterUnavailable => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::ReadOnly => StatusCode::FORBIDDEN,
        ErrorCode::MessageTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::SessionNotFound | ErrorCode::NotFound => StatusCode::NOT_FOUND,
        ErrorCode::MethodNotAllowed => StatusCode::METHOD_NOT_ALLOWED,
        ErrorCode::UpgradeRequired => StatusCode::UPGRADE_REQUIRED,
        ErrorCode::DuplicateId | ErrorCode::SessionNotRunning => StatusCode::CONFLICT,
        ErrorCode::SpawnFailed | ErrorCode::BadCwd | ErrorCode::WrongKind => StatusCode::UNPROCESSABLE_ENTITY,
        ErrorCode::OutputGone => StatusCode::GONE,
        ErrorCode::PayloadTooLarge => StatusCode::PAYLOAD_TOO_LARGE,
        ErrorCode::RequestTimeout => StatusCode::REQUEST_TIMEOUT,
        ErrorCode::RateLimited => StatusCode::TOO_MANY_REQUESTS,
        ErrorCode::Capacity | ErrorCode::Busy => StatusCode::SERVICE_UNAVAILABLE,
        ErrorCode::Internal => StatusCode::INTERNAL_SERVER_ERROR,
        ErrorCode::Unauthorized => StatusCode::UNAUTHORIZED,
        ErrorCode::Forbidden => StatusCode::FORBIDDEN,
    }
}

impl IntoResponse for ApiError {
    fn into_response(self) -> Response {
        crate::observe::metrics::error(self.code);
        let mut body = ErrorBody::new(self.code, self.message);
        body.error.earliest_offset = self.earliest_offset;
        body.error.accepted_bytes = self.accepted_bytes;
        let mut resp = (status_of(self.code), Json(body)).into_response();
        // For the middleware that reports answers by their code (the
        // audit of a terminate or delete), without reading the body.
        resp.extensions_mut().insert(self.code);
        resp
    }
}

impl From<SessionError> for ApiError {
    fn from(e: SessionError) -> ApiError {
        let mut err = ApiError::new(e.code(), e.to_string());
        match e {
            SessionError::Gone { earliest } => err.earliest_offset = Some(earliest),
            // What was taken stays taken: the client sends only the rest.
            SessionError::InputBusy { taken, .. } => err.accepted_bytes = Some(taken as u64),
            _ => {}
        }
        err
    }
}

impl From<CreateError> for ApiError {
    fn from(e: CreateError) -> ApiError {
        let code = match &e {
            CreateError::Duplicate(_) => ErrorCode::DuplicateId,
            CreateError::Capacity { .. } => ErrorCode::Capacity,
            CreateError::ShuttingDown => ErrorCode::Capacity,
            CreateError::Invalid(_) => ErrorCode::BadRequest,
            CreateError::WindowTooLarge { .. } => ErrorCode::InvalidMessage,
            CreateError::Spawn(SpawnError::BadCwd { .. }) => ErrorCode::BadCwd,
            CreateError::Spawn(e) if e.is_exhaustion() => ErrorCode::Capacity,
            CreateError::Spawn(_) => ErrorCode::SpawnFailed,
            CreateError::Io(e) if crate::session::process::is_exhaustion(e) => ErrorCode::Capacity,
            CreateError::Io(_) => ErrorCode::Internal,
        };
        ApiError::new(code, e.to_string())
    }
}

/// A JSON body, parsed whatever its content type, whose rejections are
/// [`ApiError`]s: 400 for malformed JSON, a wrong shape or anything but an
/// object, 413 when too large.
pub struct Body<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequest<S> for Body<T> {
    type Rejection = ApiError;

    async fn from_request(req: axum::extract::Request, state: &S) -> Result<Self, ApiError> {
        let bytes = axum::body::Bytes::from_request(req, state)
            .await
            .map_err(body_rejection)?;
        parse_object(&bytes).map(Body)
    }
}

/// The [`ApiError`] for a body that could not be read: 413 when too large,
/// 408 when it did not arrive in time ([`crate::server::body`]).
pub fn body_rejection(e: BytesRejection) -> ApiError {
    if e.status() == StatusCode::PAYLOAD_TOO_LARGE {
        ApiError::new(ErrorCode::PayloadTooLarge, "the request body is larger than allowed")
    } else if crate::server::body::is_timeout(&e) {
        ApiError::new(ErrorCode::RequestTimeout, "the request body did not arrive in time")
    } else {
        ApiError::bad_request(format!("cannot read the request body: {e}"))
    }
}

/// Parses a JSON object body. Every body is an object: serde would also read
/// a struct from an array of its fields in order (`[]` would create a
/// default session), which is not a shape the API documents.
pub fn parse_object<T: DeserializeOwned>(bytes: &[u8]) -> Result<T, ApiError> {
    if bytes.iter().find(|b| !b.is_ascii_whitespace()) != Some(&b'{') {
        return Err(ApiError::bad_request("the request body must be a JSON object"));
    }
    serde_json::from_slice(bytes).map_err(|e| ApiError::bad_request(format!("invalid JSON body: {e}")))
}

/// Parses a session id from a path.
pub fn session_id(raw: &str) -> Result<SessionId, ApiError> {
    SessionId::new(raw).map_err(|e| ApiError::bad_request(format!("invalid session id: {e}")))
}

/// axum's `Path`, refused with an [`ApiError`] (400) instead of plain text:
/// a segment that is not UTF-8 once percent-decoded, say.
pub struct Path<T>(pub T);

impl<T: DeserializeOwned + Send, S: Send + Sync> FromRequestParts<S> for Path<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Path::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Path(t)) => Ok(Path(t)),
            Err(e) => Err(ApiError::bad_request(format!("invalid path: {}", e.body_text()))),
        }
    }
}

/// axum's `Query`, refused with an [`ApiError`] (400) instead of plain
/// text: a parameter given twice, say.
pub struct Query<T>(pub T);

impl<T: DeserializeOwned, S: Send + Sync> FromRequestParts<S> for Query<T> {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        match axum::extract::Query::<T>::from_request_parts(parts, state).await {
            Ok(axum::extract::Query(t)) => Ok(Query(t)),
            Err(e) => Err(ApiError::bad_request(e.body_text())),
        }
    }
}
