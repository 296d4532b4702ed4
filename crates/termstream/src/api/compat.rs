//! The older `/terminal` REST API, answered in its exact shapes.

use std::time::Duration;

use axum::extract::State;
use axum::{Extension, Json};
use termstream_proto::compat::{
    SessionEntry, SessionStatusBody, SessionsResponse, StartRequest, StartResponse, StatusResponse, TerminateResponse,
    command_of,
};
use termstream_proto::{CreateSession, ErrorBody, SessionId, SessionKind};

use crate::auth::Grant;
use crate::error::{ApiError, Body, Path, session_id};
use crate::session::TerminateOutcome;
use crate::state::AppState;

/// Start a command session running `/bin/sh -c COMMAND`.
#[utoipa::path(post, path = "/terminal/start", operation_id = "compat_start", request_body = StartRequest,
    responses((status = 200, body = StartResponse, description = "Started: the new session's id."), (status = 409, body = ErrorBody, description = "`duplicate_id`: a session has that id already."), (status = 422, body = ErrorBody, description = "`spawn_failed`: the program could not be started; `bad_cwd`: the working directory cannot be used."), (status = 429, description = "rate_limited: the token runs `max_sessions_per_token` sessions already", body = ErrorBody),
              (status = 503, description = "capacity (full, or shutting down), cluster_unavailable, or busy (an earlier session with the id is still being removed from the cluster)", body = ErrorBody), (status = 500, description = "internal: the create failed on the server", body = ErrorBody)))]
pub async fn start(
    State(state): State<AppState>,
    grant: Grant,
    Body(req): Body<StartRequest>,
) -> Result<Json<StartResponse>, ApiError> {
    let id = req
        .session_id
        .map(|raw| SessionId::new(raw).map_err(|e| ApiError::bad_request(format!("invalid session_id: {e}"))))
        .transpose()?;
    let create = CreateSession {
        id,
        kind: Some(SessionKind::Command),
        command: Some(req.command.clone()),
        cwd: req.cwd,
        ..CreateSession::default()
    };
    let handle = state.create_session(&grant, create).await?;
    let info = handle.info();
    Ok(Json(StartResponse {
        success: true,
        session_id: info.id.to_string(),
        command: req.command,
        cwd: info.cwd,
        message: "Terminal session started".into(),
    }))
}

/// Every session.
#[utoipa::path(get, path = "/terminal/sessions", operation_id = "compat_sessions", responses((status = 200, body = SessionsResponse, description = "The sessions of the projects the credential can read.")))]
pub async fn sessions(State(state): State<AppState>, grant: Grant) -> Json<SessionsResponse> {
    let sessions: Vec<SessionEntry> = state
        .registry
        .handles()
        .iter()
        .filter(|h| grant.can_read(h.project().as_str()))
        .map(|h| {
            let info = h.info();
            SessionEntry {
                session_id: info.id.to_string(),
                command: command_of(&info),
                cwd: info.cwd.clone(),
                is_running: info.status.is_running(),
                start_time: crate::clock::secs(info.started_at.unwrap_or(info.created_at)),
                exit_code: info.exit_code,
                connections: h.viewers(),
            }
        })
        .collect();
    Json(SessionsResponse {
        total: sessions.len(),
        sessions,
    })
}

/// One session's status.
#[utoipa::path(get, path = "/terminal/{session_id}", operation_id = "compat_status", params(("session_id" = String, Path, description = "The session id.")), responses((status = 200, body = StatusResponse, description = "The session's status.")))]
pub async fn status(State(state): State<AppState>, Path(raw): Path<String>) -> Result<Json<StatusResponse>, ApiError> {
    let id = session_id(&raw)?;
    let h = state.registry.get(&id).ok_or_else(|| ApiError::not_found(&raw))?;
    let info = h.info();
    Ok(Json(StatusResponse {
        status: SessionStatusBody {
            session_id: info.id.to_string(),
            command: command_of(&info),
            is_running: info.status.is_running(),
            exit_code: info.exit_code,
            connections: h.viewers(),
        },
    }))
}

/// End a session.
#[utoipa::path(post, path = "/terminal/{session_id}/terminate", operation_id = "compat_terminate", params(("session_id" = String, Path, description = "The session id.")),
    responses((status = 200, body = TerminateResponse, description = "The session ended."), (status = 503, description = "busy: the session did not end within its grace period and 5 s more (for a session another node owns, also when that node did not answer and the session did not end in that time); cluster_unavailable: the session is another node's and the cluster's Redis could not be used, so the terminate may not have been sent (a terminate is safe to repeat)", body = ErrorBody), (status = 500, description = "internal", body = ErrorBody)))]
pub async fn terminate(
    State(state): State<AppState>,
    Path(raw): Path<String>,
) -> Result<(Extension<TerminateOutcome>, Json<TerminateResponse>), ApiError> {
    let id = session_id(&raw)?;
    let h = state.registry.get(&id).ok_or_else(|| ApiError::not_found(&raw))?;
    let wait = state.registry.config().session_settings().grace + Duration::from_secs(5);
    let ended = h.terminate(wait).await?;
    // What the audit needs (`auth/ending.rs`): whether this terminate
    // ended the session.
    Ok((
        Extension(ended.outcome()),
        Json(TerminateResponse {
            success: true,
            session_id: id.to_string(),
            message: "Session terminated".into(),
        }),
    ))
}
