//! The REST API: `/api/sessions` ([`sessions`]), the older `/terminal`
//! shapes ([`compat`]), focus and projects ([`focus`]), `POST /api/events` ([`events`]), `/openapi.json`
//! ([`openapi`]), and the router of every route, the WebSocket endpoints
//! included ([`ROUTES`]). Every error is an [`ApiError`] with a JSON body.

pub mod compat;
pub mod events;
pub mod focus;
pub mod openapi;
pub mod sessions;

use axum::Router;
use axum::extract::DefaultBodyLimit;
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use termstream_proto::ErrorCode;

use crate::error::ApiError;
use crate::observe::{health, metrics};
use crate::state::AppState;
use crate::{auth, gateway, page};

/// Declares every route once: the router is built from this table, and
/// [`ROUTES`] lists it for the test that the OpenAPI description covers it.
/// A WebSocket endpoint is marked `[websocket]`, which lists it in
/// [`WEBSOCKET_ROUTES`].
macro_rules! route_table {
    ($($method:ident $path:literal => $handler:path $([$kind:ident])?,)*) => {
        /// Every route the server serves, as `(method, path)`: the router is
        /// built from the same table.
        pub const ROUTES: &[(&str, &str)] = &[$((stringify!($method), $path)),*];

        /// The paths of the WebSocket endpoints: only a request the router
        /// matched to one of these (its `MatchedPath`), with an `Upgrade:
        /// websocket` header, is a socket to the guard ([`auth::guard`]).
        /// The OpenAPI test checks that they are exactly the routes
        /// described as answering 101.
        pub const WEBSOCKET_ROUTES: &[&str] = &[$($({
            route_kind!($kind);
            $path
        },)?)*];

        fn routes(router: Router<AppState>) -> Router<AppState> {
            router$(.route($path, axum::routing::$method($handler)))*
        }
    };
}

/// The one mark a route of the table may have: any other word does not
/// compile.
macro_rules! route_kind {
    (websocket) => {};
}

route_table! {
    get "/api/sessions" => sessions::list,
    post "/api/sessions" => sessions::create,
    get "/api/sessions/{id}" => sessions::get,
    delete "/api/sessions/{id}" => sessions::delete,
    post "/api/sessions/{id}/input" => sessions::input,
    post "/api/sessions/{id}/resize" => sessions::resize,
    post "/api/sessions/{id}/terminate" => sessions::terminate,
    get "/api/sessions/{id}/output" => sessions::output,
    get "/api/sessions/{id}/snapshot" => sessions::snapshot,
    get "/api/sessions/{id}/recording.cast" => sessions::recording,
    post "/terminal/start" => compat::start,
    get "/terminal/sessions" => compat::sessions,
    get "/terminal/{session_id}" => compat::status,
    post "/terminal/{session_id}/terminate" => compat::terminate,
    post "/api/events" => events::publish,
    put "/api/terminal/focus" => focus::put_focus,
    get "/api/terminal/focus" => focus::get_focus,
    get "/api/projects" => focus::projects,
    post "/api/ws-ticket" => auth::ws_ticket,
    post "/api/login-codes" => auth::login::issue_code,
    post "/api/logout" => auth::login::logout,
    get "/login" => auth::login::login,
    get "/ws" => gateway::ws [websocket],
    get "/ws/terminal/all" => gateway::legacy_all [websocket],
    get "/ws/terminal/{session_id}" => gateway::legacy_one [websocket],
    get "/openapi.json" => openapi::serve,
    get "/health" => openapi::health,
    get "/healthz" => health::healthz,
    get "/readyz" => health::readyz,
    get "/metrics" => metrics::render,
    get "/" => page::index,
    get "/assets/{*path}" => page::asset,
}

/// The REST routes and the WebSocket endpoints.
pub fn router(state: AppState) -> Router {
    let max_body = state.registry.config().max_body_bytes;
    routes(Router::new())
        .fallback(|| async { ApiError::new(ErrorCode::NotFound, "no such route") })
        .method_not_allowed_fallback(|| async {
            ApiError::new(ErrorCode::MethodNotAllowed, "this route does not take that method")
        })
        .layer(DefaultBodyLimit::max(max_body))
        .layer(axum::middleware::map_response(json_errors))
        .layer(axum::middleware::from_fn_with_state(state.clone(), auth::guard))
        .with_state(state)
}

/// Makes an error answered as plain text (by axum, or a layer) the JSON
/// error body every error has, with the same status. Handlers' own errors
/// are [`ApiError`]s already and pass unchanged, as does a page written for
/// a person (`text/html`: a refused login link opened in a browser).
async fn json_errors(resp: Response) -> Response {
    let status = resp.status();
    let kept = resp
        .headers()
        .get(header::CONTENT_TYPE)
        .is_some_and(|v| v.as_bytes().starts_with(b"application/json") || v.as_bytes().starts_with(b"text/html"));
    if !(status.is_client_error() || status.is_server_error()) || kept {
        return resp;
    }
    let code = match status {
        StatusCode::NOT_FOUND => ErrorCode::NotFound,
        StatusCode::METHOD_NOT_ALLOWED => ErrorCode::MethodNotAllowed,
        StatusCode::PAYLOAD_TOO_LARGE => ErrorCode::PayloadTooLarge,
        StatusCode::UPGRADE_REQUIRED => ErrorCode::UpgradeRequired,
        StatusCode::UNAUTHORIZED => ErrorCode::Unauthorized,
        StatusCode::FORBIDDEN => ErrorCode::Forbidden,
        StatusCode::TOO_MANY_REQUESTS => ErrorCode::RateLimited,
        StatusCode::SERVICE_UNAVAILABLE => ErrorCode::Capacity,
        s if s.is_client_error() => ErrorCode::BadRequest,
        _ => ErrorCode::Internal,
    };
    let (mut parts, body) = resp.into_parts();
    // The texts axum writes are one line; more is not read.
    let text = axum::body::to_bytes(body, 4096).await.unwrap_or_default();
    let message = match std::str::from_utf8(&text).map(str::trim) {
        Ok(t) if !t.is_empty() => t.to_owned(),
        _ => status.canonical_reason().unwrap_or("error").to_owned(),
    };
    let fresh = ApiError::new(code, message).into_response();
    parts.headers.remove(header::CONTENT_LENGTH);
    parts.headers.extend(fresh.headers().clone());
    parts.extensions.insert(code);
    let mut resp = Response::from_parts(parts, fresh.into_body());
    *resp.status_mut() = status;
    resp
}
