//! The REST API: `/api/sessions` ([`sessions`]), focus and projects
//! ([`focus`]), the older `/terminal`
//! shapes ([`compat`]), and `/openapi.json`. Every error is an
//! [`error::ApiError`] with a JSON body.

pub mod compat;
pub mod error;
pub mod focus;
pub mod sessions;

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::Json;
use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::routing::{get, post};
use termstream_proto::ErrorCode;
use utoipa::OpenApi;

use crate::auth::{self, Security};
use crate::focus::Focus;
use crate::gateway::events::{self, EventHub};
use crate::registry::Registry;
use error::ApiError;

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Event channels of `/ws` clients.
    pub events: EventHub,
    /// WebSocket clients connected now.
    pub clients: Arc<AtomicUsize>,
    /// Tokens, tickets, browser checks and limits ([`crate::auth`]).
    pub security: Arc<Security>,
    /// Every project's focus set ([`crate::focus`]).
    pub focus: Arc<Focus>,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, security: Arc<Security>, focus: Arc<Focus>) -> AppState {
        AppState {
            registry,
            events: EventHub::default(),
            clients: Arc::default(),
            security,
            focus,
        }
    }
}

#[derive(OpenApi)]
#[openapi(
    info(title = "termstream", description = "Runs terminal sessions and streams them live."),
    paths(
        sessions::create,
        sessions::list,
        sessions::get,
        sessions::input,
        sessions::resize,
        sessions::terminate,
        sessions::delete,
        sessions::output,
        sessions::snapshot,
        sessions::recording,
        compat::start,
        compat::sessions,
        compat::status,
        compat::terminate,
        events::publish,
        focus::put_focus,
        focus::get_focus,
        focus::projects,
    )
)]
struct ApiDoc;

/// The OpenAPI description of the REST API.
pub fn openapi() -> utoipa::openapi::OpenApi {
    ApiDoc::openapi()
}

/// The REST routes.
pub fn router(state: AppState) -> Router {
    let max_body = state.registry.config().max_body_bytes;
    Router::new()
        .route("/api/sessions", get(sessions::list).post(sessions::create))
        .route("/api/sessions/{id}", get(sessions::get).delete(sessions::delete))
        .route("/api/sessions/{id}/input", post(sessions::input))
        .route("/api/sessions/{id}/resize", post(sessions::resize))
        .route("/api/sessions/{id}/terminate", post(sessions::terminate))
        .route("/api/sessions/{id}/output", get(sessions::output))
        .route("/api/sessions/{id}/snapshot", get(sessions::snapshot))
        .route("/api/sessions/{id}/recording.cast", get(sessions::recording))
        .route("/terminal/start", post(compat::start))
        .route("/terminal/sessions", get(compat::sessions))
        .route("/terminal/{session_id}", get(compat::status))
        .route("/terminal/{session_id}/terminate", post(compat::terminate))
        .route("/api/events", post(events::publish))
        .route("/api/terminal/focus", get(focus::get_focus).put(focus::put_focus))
        .route("/api/projects", get(focus::projects))
        .route("/api/ws-ticket", post(auth::ws_ticket))
        .route("/api/login-codes", post(auth::login::issue_code))
        .route("/api/logout", post(auth::login::logout))
        .route("/login", get(auth::login::login))
        .merge(crate::gateway::router())
        .route("/openapi.json", get(|| async { Json(openapi()) }))
        .route("/health", get(|| async { Json(serde_json::json!({ "status": "ok" })) }))
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take that method")
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard))
        .with_state(state)
}
