//! The WebSocket endpoints.
//!
//! - `/ws`: one socket per client, any number of sessions multiplexed by
//!   `sessionId` ([`connection`]), each attached session delivered by its own
//!   forwarder task ([`forward`]) through the socket's byte-bounded
//!   [`outbox`], rendered per [`render::Dialect`].
//! - `/ws?sessionId=ID&projectId=P`: one socket per terminal, in the
//!   shapes of the focus-sync design ([`terminal`]).
//! - `/ws/terminal/{id}` and `/ws/terminal/all`: the older one-session and
//!   all-sessions shapes ([`legacy`]).
//! - `POST /api/events` and the event channels ([`events`]).
//!
//! Messages over `ws_max_message_bytes` are answered with close 1009.

pub mod connection;
pub mod events;
pub mod focus_watch;
pub mod forward;
pub mod legacy;
pub mod liveness;
pub mod outbox;
pub mod render;
pub mod terminal;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::Router;
use axum::extract::{Path, Query, State, WebSocketUpgrade};
use axum::response::{IntoResponse, Response};
use axum::routing::get;
use serde::Deserialize;
use termstream_proto::{ProjectId, SessionId};

use crate::api::AppState;
use crate::api::error::ApiError;
use crate::auth::{BearerProtocol, Grant, Permit};
use crate::registry::{Registry, RegistryEvent};
use crate::session::SessionHandle;
use render::Dialect;

/// How long one input message from a socket may wait for room in a
/// program's input queue (1 MiB) before it is answered `busy`: meanwhile
/// the socket's other messages, for its other sessions too, wait behind it.
pub const INPUT_WAIT: Duration = Duration::from_secs(1);

/// Counts a connected client while it lives, and holds its connection
/// permit ([`crate::limits`]) until the socket's task ends.
#[derive(Debug)]
pub struct ClientGuard(Arc<AtomicUsize>, Option<Permit>);

impl ClientGuard {
    pub fn new(count: &Arc<AtomicUsize>) -> ClientGuard {
        count.fetch_add(1, Ordering::Relaxed);
        ClientGuard(count.clone(), None)
    }

    /// Holds `permit` for as long as the client is counted.
    pub fn holding(mut self, permit: Option<Extension<Permit>>) -> ClientGuard {
        self.1 = permit.map(|Extension(p)| p);
        self
    }
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the auth guard found for an upgrade: the grant, the connection
/// permit and the subprotocol that carried the token.
type Admitted = (Grant, Option<Extension<Permit>>, Option<Extension<BearerProtocol>>);

/// The routes of the WebSocket endpoints.
pub fn router() -> Router<AppState> {
    Router::new()
        .route("/ws", get(ws))
        .route("/ws/terminal/all", get(legacy_all))
        .route("/ws/terminal/{session_id}", get(legacy_one))
}

#[derive(Debug, Deserialize)]
#[serde(rename_all = "camelCase")]
struct WsQuery {
    /// A client id from an earlier connection, kept across reconnects (it
    /// scopes input sequence numbers).
    client_id: Option<String>,
    /// `flat` to be answered with the older flat message names.
    dialect: Option<String>,
    /// The per-terminal socket: the one session this socket is for.
    session_id: Option<String>,
    /// With `sessionId`: its project (checked).
    project_id: Option<String>,
}

/// The socket's own hard limit is twice the configured one: a message over
/// the configured limit is read whole, answered with close 1009, and the
/// socket drained until the client closes (dropping a socket with unread
/// bytes would reset it, and the client might never see the close frame).
///
/// Buffers: tungstenite's default read buffer (128 KiB per socket) would be
/// most of an idle connection's cost; 4 KiB reads suffice for input. Writes
/// gather up to 64 KiB before a syscall (the writer also flushes after every
/// batch); the buffer grows only as used.
///
/// A client that sent its token as the subprotocol `bearer.TOKEN` gets it
/// echoed, as browsers require an offered protocol to be selected.
fn upgrade(ws: WebSocketUpgrade, state: &AppState, proto: Option<Extension<BearerProtocol>>) -> WebSocketUpgrade {
    let max = state.registry.config().ws_max_message_bytes.saturating_mul(2);
    let ws = ws
        .max_message_size(max)
        .max_frame_size(max)
        .read_buffer_size(READ_BUFFER)
        .write_buffer_size(WRITE_BUFFER);
    match proto {
        Some(Extension(BearerProtocol(p))) => ws.protocols([p]),
        None => ws,
    }
}

/// Bytes a socket reads at a time.
const READ_BUFFER: usize = 4096;
/// Bytes a socket gathers before writing.
const WRITE_BUFFER: usize = 64 * 1024;

async fn ws(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Query(q): Query<WsQuery>,
    (grant, permit, proto): Admitted,
) -> Response {
    if let Some(raw) = q.session_id {
        let id = match SessionId::new(raw) {
            Ok(id) => id,
            Err(e) => return ApiError::bad_request(format!("invalid sessionId: {e}")).into_response(),
        };
        let project = match q.project_id.map(ProjectId::new).transpose() {
            Ok(p) => p,
            Err(e) => return ApiError::bad_request(format!("invalid projectId: {e}")).into_response(),
        };
        let guard = ClientGuard::new(&state.clients).holding(permit);
        return upgrade(ws, &state, proto)
            .on_upgrade(move |socket| terminal::run(socket, state, id, project, guard, grant));
    }
    let client_id: Arc<str> = match q.client_id.and_then(|c| SessionId::new(c).ok()) {
        Some(id) => id.as_str().into(),
        None => format!("c{:012x}", rand::random::<u64>() >> 16).into(),
    };
    let dialect = match q.dialect.as_deref() {
        Some("flat") => Some(Dialect::Flat),
        Some("dotted") => Some(Dialect::Dotted),
        _ => None,
    };
    let guard = ClientGuard::new(&state.clients).holding(permit);
    upgrade(ws, &state, proto)
        .on_upgrade(move |socket| connection::run(socket, state, client_id, dialect, guard, grant))
}

async fn legacy_one(
    ws: WebSocketUpgrade,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    (grant, permit, proto): Admitted,
) -> Response {
    let guard = ClientGuard::new(&state.clients).holding(permit);
    upgrade(ws, &state, proto).on_upgrade(move |socket| legacy::one(socket, state, raw, guard, grant))
}

async fn legacy_all(ws: WebSocketUpgrade, State(state): State<AppState>, (grant, permit, proto): Admitted) -> Response {
    let guard = ClientGuard::new(&state.clients).holding(permit);
    upgrade(ws, &state, proto).on_upgrade(move |socket| legacy::all(socket, state, guard, grant))
}

/// The session `id`, waiting up to `wait` for it to be created.
pub async fn wait_for_session(registry: &Registry, id: &SessionId, wait: Duration) -> Option<SessionHandle> {
    // Subscribe before looking, so a creation in between is not missed.
    let mut changes = registry.changes();
    if let Some(h) = registry.get(id) {
        return Some(h);
    }
    let found = async {
        loop {
            match changes.recv().await {
                Ok(RegistryEvent::Created(h)) if h.id() == id => return Some(h),
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(h) = registry.get(id) {
                        return Some(h);
                    }
                }
                Err(_) => return None,
            }
        }
    };
    tokio::time::timeout(wait, found).await.ok().flatten()
}
