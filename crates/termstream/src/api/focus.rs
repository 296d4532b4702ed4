//! The focus routes: `PUT`/`GET /api/terminal/focus` and `GET /api/projects`.
//!
//! A change made here is broadcast exactly as one made on a WebSocket
//! ([`crate::focus`]); the answer carries the project's state after it.

use std::collections::BTreeMap;

use axum::Json;
use axum::extract::{Query, State};
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use termstream_proto::focus::{FocusRequest, FocusResponse, ProjectAccess, ProjectFocus, ProjectList, ProjectSummary};
use termstream_proto::{ErrorBody, ErrorCode, ErrorDetail, ProjectId};
use utoipa::IntoParams;

use super::AppState;
use crate::auth::Grant;
use crate::auth::token::Access;
use crate::error::{ApiError, Body};
use crate::focus::FocusError;
use crate::focus::store::FocusState;

impl From<FocusError> for ApiError {
    fn from(e: FocusError) -> ApiError {
        if let FocusError::Store(err) = &e {
            tracing::warn!(error = %err, "a focus change failed");
        }
        ApiError::new(e.code(), e.to_string())
    }
}

/// Focus or unfocus a session; every client of its project is told.
#[utoipa::path(put, path = "/api/terminal/focus", request_body = FocusRequest,
    responses((status = 200, body = FocusResponse, description = "Done (or nothing to do): the project's focus state after it."),
              (status = 403, body = ErrorBody, description = "`forbidden`: the Host or the Origin is not allowed here, a \
                  request came through a reverse proxy to a server with no token, or one authenticated by the login \
                  cookie carries an Origin that is not allowed; `read_only`: the credential may only read the \
                  session's project, so it may not change its focus (nothing changed)."),
              (status = 404, body = ErrorBody, description = "`session_not_found`: no session has that id, or the \
                  credential cannot read its project."),
              (status = 409, body = FocusResponse, description = "`expectedVersion` is stale: nothing changed; the current state"),
              (status = 422, body = ErrorBody, description = "`project_mismatch`: `projectId` is not the session's project."),
              (status = 500, body = ErrorBody, description = "internal: the focus store failed."),
              (status = 503, body = ErrorBody, description = "cluster_unavailable: on a cluster, Redis is unreachable: nothing changed.")))]
pub async fn put_focus(
    State(state): State<AppState>,
    grant: Grant,
    Body(req): Body<FocusRequest>,
) -> Result<Response, ApiError> {
    let focus = &state.focus;
    let answer = |project: ProjectId, s: FocusState, error: Option<ErrorDetail>| FocusResponse {
        success: error.is_none(),
        error,
        project_id: project,
        focused_sessions: s.focused,
        version: s.version,
        max_focused: focus.max_focused(),
    };
    match focus
        .request(
            &grant,
            &req.session_id,
            req.project_id.as_ref(),
            req.focused,
            req.expected_version,
        )
        .await
    {
        Ok(applied) => Ok(Json(answer(applied.project, applied.state, None)).into_response()),
        Err(e @ FocusError::Conflict { .. }) => {
            let detail = ErrorBody::new(ErrorCode::VersionConflict, e.to_string()).error;
            let FocusError::Conflict { project, current, .. } = e else {
                unreachable!("matched above")
            };
            Ok((StatusCode::CONFLICT, Json(answer(project, current, Some(detail)))).into_response())
        }
        Err(e) => Err(e.into()),
    }
}

#[derive(Debug, Deserialize, IntoParams)]
#[serde(rename_all = "camelCase")]
pub struct FocusQuery {
    /// The project (default `default`).
    project_id: Option<String>,
}

/// A project's focus state.
#[utoipa::path(get, path = "/api/terminal/focus", params(FocusQuery),
    responses((status = 200, body = ProjectFocus, description = "The project's focus state."), (status = 404, body = ErrorBody, description = "`not_found`: the credential cannot read that project."), (status = 500, body = ErrorBody, description = "internal: the focus store failed."), (status = 503, body = ErrorBody, description = "cluster_unavailable: on a cluster, Redis is unreachable.")))]
pub async fn get_focus(
    State(state): State<AppState>,
    grant: Grant,
    query: Result<Query<FocusQuery>, axum::extract::rejection::QueryRejection>,
) -> Result<Json<ProjectFocus>, ApiError> {
    let Query(q) = query.map_err(|e| ApiError::bad_request(e.body_text()))?;
    let project = match q.project_id {
        Some(p) => ProjectId::new(p).map_err(|e| ApiError::bad_request(format!("invalid projectId: {e}")))?,
        None => ProjectId::default(),
    };
    if !grant.can_read(project.as_str()) {
        return Err(ApiError::new(
            ErrorCode::NotFound,
            format!("no project {project:?} is visible to this credential"),
        ));
    }
    let s = state.focus.get(&project).await.map_err(FocusError::Store)?;
    Ok(Json(ProjectFocus {
        project_id: project,
        focused_sessions: s.focused,
        version: s.version,
        max_focused: state.focus.max_focused(),
    }))
}

/// Every project this credential can read: its sessions, its focus state,
/// and what the credential may do there (`access`).
#[utoipa::path(get, path = "/api/projects", responses((status = 200, body = ProjectList, description = "Every project the credential can read, with its sessions, its focus state, and what the credential may do there (access: read or write)."), (status = 500, body = ErrorBody, description = "internal: the focus store failed."), (status = 503, body = ErrorBody, description = "cluster_unavailable: on a cluster, Redis is unreachable.")))]
pub async fn projects(State(state): State<AppState>, grant: Grant) -> Result<Json<ProjectList>, ApiError> {
    let mut by_project: BTreeMap<ProjectId, (usize, usize, FocusState)> = BTreeMap::new();
    for info in state.registry.list(None, None) {
        let e = by_project.entry(info.project).or_default();
        e.0 += 1;
        e.1 += usize::from(info.status.is_running());
    }
    for (project, s) in state.focus.all().await.map_err(FocusError::Store)? {
        by_project.entry(project).or_default().2 = s;
    }
    let max_focused = state.focus.max_focused();
    let projects = by_project
        .into_iter()
        .filter_map(|(project_id, (total, running, s))| {
            let access = match grant.access(project_id.as_str())? {
                Access::Read => ProjectAccess::Read,
                Access::Write => ProjectAccess::Write,
            };
            Some(ProjectSummary {
                project_id,
                access,
                total_sessions: total,
                running_sessions: running,
                focused_sessions: s.focused,
                version: s.version,
                max_focused,
            })
        })
        .collect();
    Ok(Json(ProjectList { projects }))
}
