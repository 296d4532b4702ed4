//! The `/api/sessions` routes.

use std::time::Duration;

use axum::body::Body as HttpBody;
use axum::extract::{Query, State};
use axum::http::{HeaderValue, StatusCode, header};
use axum::response::{IntoResponse, Response};
use axum::{Extension, Json};
use base64::Engine as _;
use bytes::Bytes;
use serde::Deserialize;
use termstream_proto::replies::InputTaken;
use termstream_proto::{
    ChunkEncoding, CreateSession, ErrorBody, ErrorCode, InputRequest, OutputChunk, OutputPage, ResizeRequest,
    SessionInfo, SessionKind, SessionList, SessionStatus, Snapshot,
};
use utoipa::IntoParams;

use crate::auth::Grant;
use crate::error::{ApiError, Body, Path, session_id};
use crate::session::log::Chunk;
use crate::session::{SessionHandle, TerminateOutcome};
use crate::state::AppState;

/// How long an input request waits for room in a session's input queue.
const INPUT_WAIT: Duration = Duration::from_secs(5);
/// The most output one read returns.
const MAX_READ: usize = 16 << 20;

fn handle(state: &AppState, raw: &str) -> Result<SessionHandle, ApiError> {
    let id = session_id(raw)?;
    state.registry.get(&id).ok_or_else(|| ApiError::not_found(raw))
}

/// Start a session.
#[utoipa::path(post, path = "/api/sessions", operation_id = "create_session", request_body = CreateSession,
    responses((status = 201, body = SessionInfo, description = "Created: the new session's info."), (status = 409, body = ErrorBody, description = "`duplicate_id`: a session has that id already."),
              (status = 422, body = ErrorBody, description = "`spawn_failed`: the program could not be started; `bad_cwd`: the working directory cannot be used; `invalid_message`: the window is larger than `max_cols` × `max_rows`."), (status = 429, description = "rate_limited: the token runs `max_sessions_per_token` sessions already", body = ErrorBody), (status = 503, description = "capacity (full, or shutting down), cluster_unavailable, or busy (an earlier session with the id is still being removed from the cluster)", body = ErrorBody), (status = 500, description = "internal: the create failed on the server", body = ErrorBody)))]
pub async fn create(
    State(state): State<AppState>,
    grant: Grant,
    Body(req): Body<CreateSession>,
) -> Result<Response, ApiError> {
    let handle = state.create_session(&grant, req).await?;
    Ok((StatusCode::CREATED, Json(handle.info())).into_response())
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct ListQuery {
    /// Only sessions of this project.
    project: Option<String>,
    /// Only sessions with this status.
    status: Option<SessionStatus>,
}

/// List sessions, newest first.
#[utoipa::path(get, path = "/api/sessions", operation_id = "list_sessions", params(ListQuery), responses((status = 200, body = SessionList, description = "The sessions of the projects the credential can read.")))]
pub async fn list(
    State(state): State<AppState>,
    grant: Grant,
    query: Result<Query<ListQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<SessionList>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let mut sessions = state.registry.list(q.project.as_deref(), q.status);
    sessions.retain(|s| grant.can_read(s.project.as_str()));
    Ok(Json(SessionList {
        total: sessions.len(),
        sessions,
    }))
}

/// One session.
#[utoipa::path(get, path = "/api/sessions/{id}", operation_id = "get_session", params(("id" = String, Path, description = "The session id.")), responses((status = 200, body = SessionInfo, description = "The session's info.")))]
pub async fn get(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<SessionInfo>, ApiError> {
    // A session of another node: its end offset brought up to date first.
    Ok(Json(handle(&state, &id)?.info_now().await))
}

/// Write to the program's input.
#[utoipa::path(post, path = "/api/sessions/{id}/input", request_body = InputRequest, params(("id" = String, Path, description = "The session id.")), 
    responses((status = 200, description = "The bytes the program took or that wait for it.", body = InputTaken), (status = 409, body = ErrorBody, description = "`session_not_running`: the session has ended."),
              (status = 422, body = ErrorBody, description = "`wrong_kind`: `eof` to a pty session."),
              (status = 503, description = "busy: the input queue stayed full for 5 s (`acceptedBytes` says how much was taken); for a session another node owns, also busy (that node did not answer in time) or cluster_unavailable (the cluster's Redis cannot be reached)", body = ErrorBody)))]
pub async fn input(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<InputRequest>,
) -> Result<Json<InputTaken>, ApiError> {
    let h = handle(&state, &id)?;
    let data = match (req.data, req.data_base64) {
        (Some(_), Some(_)) => return Err(ApiError::bad_request("give either data or dataBase64, not both")),
        (Some(text), None) => Bytes::from(text),
        (None, Some(b64)) => Bytes::from(
            base64::engine::general_purpose::STANDARD
                .decode(b64)
                .map_err(|e| ApiError::bad_request(format!("dataBase64 is not valid base64: {e}")))?,
        ),
        (None, None) if req.eof => Bytes::new(),
        (None, None) => return Err(ApiError::bad_request("give data, dataBase64 or eof")),
    };
    if req.eof && h.kind() == SessionKind::Pty {
        return Err(ApiError::new(
            ErrorCode::WrongKind,
            "eof closes a command session's stdin; a pty session takes \\u0004 (Ctrl-D) as data",
        ));
    }
    let n = data.len();
    // Typing into a session is activity: it is evicted from focus last.
    state.focus.touch(h.project(), h.id());
    h.input(data, req.eof, None, INPUT_WAIT).await?;
    Ok(Json(InputTaken { bytes: n as u64 }))
}

/// Set the window size of a pty session.
#[utoipa::path(post, path = "/api/sessions/{id}/resize", request_body = ResizeRequest, params(("id" = String, Path, description = "The session id.")), 
    responses((status = 200, body = SessionInfo, description = "The session's info after the resize."), (status = 409, body = ErrorBody, description = "`session_not_running`: the session has ended."),
              (status = 422, body = ErrorBody, description = "`wrong_kind`: a command session has no window; `invalid_message`: the window is larger than `max_cols` × `max_rows`."), (status = 503, description = "For a session another node owns: busy (that node did not answer in time) or cluster_unavailable (the cluster's Redis cannot be reached).", body = ErrorBody)))]
pub async fn resize(
    State(state): State<AppState>,
    Path(id): Path<String>,
    Body(req): Body<ResizeRequest>,
) -> Result<Json<SessionInfo>, ApiError> {
    let h = handle(&state, &id)?;
    if req.cols == 0 || req.rows == 0 {
        return Err(ApiError::bad_request("cols and rows must be at least 1"));
    }
    // The info after the resize: on a node that does not own the session,
    // the owner's, as this node's copy may not show the new size yet.
    Ok(Json(h.resize_with_info(req.cols, req.rows).await?))
}

/// End the program: SIGHUP and SIGTERM, then SIGKILL after the grace period.
#[utoipa::path(post, path = "/api/sessions/{id}/terminate", params(("id" = String, Path, description = "The session id.")),
    responses((status = 200, body = SessionInfo, description = "The session ended: its info."), (status = 503, description = "busy: the session did not end within its grace period and 5 s more (for a session another node owns, also when that node did not answer and the session did not end in that time); cluster_unavailable: the session is another node's and the cluster's Redis could not be used, so the terminate may not have been sent (a terminate is safe to repeat)", body = ErrorBody), (status = 500, description = "internal", body = ErrorBody)))]
pub async fn terminate(
    State(state): State<AppState>,
    Path(id): Path<String>,
) -> Result<(Extension<TerminateOutcome>, Json<SessionInfo>), ApiError> {
    let h = handle(&state, &id)?;
    let wait = state.registry.config().session_settings().grace + Duration::from_secs(5);
    let ended = h.terminate(wait).await?;
    // What the audit needs (`auth/ending.rs`): whether this terminate
    // ended the session.
    Ok((Extension(ended.outcome()), Json(ended.info)))
}

/// Delete a session: end it if it runs, forget it, remove its output.
#[utoipa::path(delete, path = "/api/sessions/{id}", operation_id = "delete_session", params(("id" = String, Path, description = "The session id.")),
    responses((status = 204, description = "Deleted: the program was ended, the session forgotten and its output removed."), (status = 503, description = "for a session another node owns: busy (that node did not answer in time) or cluster_unavailable (the cluster's Redis cannot be reached)", body = ErrorBody), (status = 500, description = "internal", body = ErrorBody)))]
pub async fn delete(State(state): State<AppState>, Path(id): Path<String>) -> Result<StatusCode, ApiError> {
    let sid = session_id(&id)?;
    let remote = state.registry.remote();
    if state.registry.delete(&sid).await {
        Ok(StatusCode::NO_CONTENT)
    } else if let Some(link) = remote.link().filter(|_| remote.get(&sid).is_some())
        && link.delete(&sid).await?
    {
        Ok(StatusCode::NO_CONTENT)
    } else {
        Err(ApiError::not_found(&id))
    }
}

#[derive(Debug, Clone, Copy, Default, Deserialize, utoipa::ToSchema)]
#[serde(rename_all = "lowercase")]
pub enum OutputFormat {
    /// The bytes themselves, with the offsets in `X-Termstream-*` headers.
    #[default]
    Raw,
    /// An `OutputPage` with chunks tagged by stream.
    Json,
}

#[derive(Debug, Deserialize, IntoParams)]
#[into_params(parameter_in = Query)]
pub struct OutputQuery {
    /// The first offset wanted (default 0).
    since: Option<u64>,
    /// The most bytes to return (default and maximum 16 MiB).
    limit: Option<usize>,
    format: Option<OutputFormat>,
}

/// Read output from an offset: from memory, else from disk; 410 when gone.
#[utoipa::path(get, path = "/api/sessions/{id}/output", params(("id" = String, Path, description = "The session id."), OutputQuery),
    responses((status = 200, description = "The output: raw bytes (the default) with their offsets in headers, or an `OutputPage` with `format=json`.",
        content((OutputPage = "application/json"), ("application/octet-stream")),
        headers(("x-termstream-epoch" = String, description = "With raw output: the log's epoch."),
                ("x-termstream-offset" = u64, description = "With raw output: the offset of the first byte."),
                ("x-termstream-next-offset" = u64, description = "With raw output: the offset after the last byte."),
                ("x-termstream-end-offset" = u64, description = "With raw output: the end of the log now."))), (status = 410, body = ErrorBody, description = "`output_gone`: the bytes from `since` were pruned from the log; `earliestOffset` says where it starts now."),
        (status = 500, description = "internal: the disk log could not be read.", body = ErrorBody),
        (status = 503, description = "For a session another node owns: busy (that node did not answer in time) or cluster_unavailable (the cluster's Redis cannot be reached).", body = ErrorBody)))]
pub async fn output(
    State(state): State<AppState>,
    Path(id): Path<String>,
    query: Result<Query<OutputQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Response, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let h = handle(&state, &id)?;
    let since = q.since.unwrap_or(0);
    let limit = q.limit.unwrap_or(MAX_READ).clamp(1, MAX_READ);
    let chunks = h.read(since, limit).await?;
    let info = h.info_now().await;
    let next = chunks.last().map_or(since, Chunk::end);
    match q.format.unwrap_or_default() {
        OutputFormat::Json => Ok(Json(OutputPage {
            epoch: info.epoch,
            offset: since,
            next_offset: next,
            end_offset: info.output_offset,
            running: info.status.is_running(),
            chunks: chunks.iter().map(to_json_chunk).collect(),
        })
        .into_response()),
        OutputFormat::Raw => {
            let mut body = Vec::with_capacity((next - since) as usize);
            for c in &chunks {
                body.extend_from_slice(&c.data);
            }
            let mut resp = Response::new(HttpBody::from(body));
            let headers = resp.headers_mut();
            headers.insert(
                header::CONTENT_TYPE,
                HeaderValue::from_static("application/octet-stream"),
            );
            let num = |n: u64| HeaderValue::from(n);
            headers.insert(
                "x-termstream-epoch",
                HeaderValue::from_str(&info.epoch.to_string()).expect("hex"),
            );
            headers.insert("x-termstream-offset", num(since));
            headers.insert("x-termstream-next-offset", num(next));
            headers.insert("x-termstream-end-offset", num(info.output_offset));
            Ok(resp)
        }
    }
}

fn to_json_chunk(c: &Chunk) -> OutputChunk {
    let (encoding, data) = match std::str::from_utf8(&c.data) {
        Ok(s) => (ChunkEncoding::Utf8, s.to_owned()),
        Err(_) => (
            ChunkEncoding::Base64,
            base64::engine::general_purpose::STANDARD.encode(&c.data),
        ),
    };
    OutputChunk {
        offset: c.offset,
        stream: c.stream,
        time_ms: c.time_ms,
        encoding,
        data,
    }
}

/// The screen of a pty session as escape sequences, and the offset it reflects.
#[utoipa::path(get, path = "/api/sessions/{id}/snapshot", params(("id" = String, Path, description = "The session id.")), 
    responses((status = 200, body = Snapshot, description = "The screen now, as escape sequences, and the log offset it reflects."), (status = 422, body = ErrorBody, description = "`wrong_kind`: a command session has no screen."),
        (status = 503, description = "For a session another node owns: busy (that node did not answer in time) or cluster_unavailable (the cluster's Redis cannot be reached).", body = ErrorBody)))]
pub async fn snapshot(State(state): State<AppState>, Path(id): Path<String>) -> Result<Json<Snapshot>, ApiError> {
    Ok(Json(handle(&state, &id)?.snapshot().await?))
}

/// The session as an asciicast v2 recording (on any node of a cluster: a
/// session of another node is read from its node's disk log).
#[utoipa::path(get, path = "/api/sessions/{id}/recording.cast", params(("id" = String, Path, description = "The session id.")), 
    responses((status = 200, content_type = "application/x-asciicast", description = "The session's recording, in asciicast v2."),
              (status = 500, body = ErrorBody, description = "internal: the disk log could not be read."),
              (status = 503, body = ErrorBody, description = "In a cluster: the session's node is gone or did not answer, or this node streams too many recordings of other nodes now.")))]
pub async fn recording(State(state): State<AppState>, Path(id): Path<String>) -> Result<Response, ApiError> {
    let h = handle(&state, &id)?;
    let stall = Duration::from_millis(state.registry.config().download_stall_ms.max(1));
    let stream = crate::session::cast::recording(&h, stall).await?;
    let mut resp = Response::new(HttpBody::from_stream(stream));
    resp.headers_mut().insert(
        header::CONTENT_TYPE,
        HeaderValue::from_static("application/x-asciicast"),
    );
    Ok(resp)
}
