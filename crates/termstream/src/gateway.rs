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
//!
//! Messages over `ws_max_message_bytes` are answered with close 1009.
//! Every socket holds the connection permit the guard took for its upgrade
//! ([`ClientGuard`]); an upgrade that has none is refused ([`Permit`]).

pub mod connection;
pub mod focus_watch;
pub mod forward;
pub mod legacy;
pub mod liveness;
pub mod outbox;
pub mod render;
pub mod session_feed;
pub mod shapes;
pub mod terminal;

use std::sync::Arc;
use std::sync::atomic::{AtomicUsize, Ordering};
use std::time::Duration;

use axum::Extension;
use axum::extract::ws::rejection::WebSocketUpgradeRejection;
use axum::extract::ws::{Message, close_code};
use axum::extract::{FromRequestParts, State, WebSocketUpgrade};
use axum::http::request::Parts;
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use termstream_proto::{ErrorBody, ErrorCode, ProjectId, SessionId};

use crate::auth::{BearerProtocol, Grant, Permit};
use crate::error::{ApiError, Path, Query};
use crate::observe::audit::SocketAudit;
use crate::observe::metrics::ConnectionGauge;
use crate::registry::{Registry, RegistryEvent};
use crate::session::SessionHandle;
use crate::state::AppState;
use render::Dialect;

/// How long one input message from a socket may wait for room in a
/// program's input queue (1 MiB) before it is answered `busy`: meanwhile
/// the socket's other messages, for its other sessions too, wait behind it.
pub const INPUT_WAIT: Duration = Duration::from_secs(1);

/// Counts a connected client while it lives, and holds its connection
/// permit ([`crate::limits`]) until the socket's task ends.
#[derive(Debug)]
pub struct ClientGuard {
    /// The count of connected clients ([`AppState::clients`]): one added
    /// by [`ClientGuard::new`], taken back on drop.
    count: Arc<AtomicUsize>,
    /// Held, never read: its drop gives the connection back to the limits.
    _permit: Permit,
    /// The connection gauge and the audit of the socket, once
    /// [`ClientGuard::on`] named its endpoint; both end on drop.
    observed: Option<(ConnectionGauge, SocketAudit)>,
}

impl ClientGuard {
    /// Counts a client in `count`, holding `permit` for as long as it is
    /// counted.
    pub fn new(count: &Arc<AtomicUsize>, permit: Permit) -> ClientGuard {
        count.fetch_add(1, Ordering::Relaxed);
        ClientGuard {
            count: count.clone(),
            _permit: permit,
            observed: None,
        }
    }

    /// Counts the client in the connection metrics of `endpoint`, and
    /// audits its connection and (when the guard drops) its close.
    pub fn on(mut self, endpoint: &'static str, grant: &Grant) -> ClientGuard {
        self.observed = Some((ConnectionGauge::open(endpoint), SocketAudit::connected(grant, endpoint)));
        self
    }
}

/// The message every socket gets when the server shuts down, before its
/// close frame (1001, going away).
pub const SHUTDOWN_MESSAGE: &str = r#"{"type":"server.shutdown"}"#;

/// Tells a socket that the server is shutting down: [`SHUTDOWN_MESSAGE`],
/// then close 1001, then reads what the client still sends (at most 1 s)
/// so that its close reply is taken and the socket ends cleanly.
pub async fn tell_shutdown(
    out: &outbox::Outbox,
    stream: &mut futures_util::stream::SplitStream<axum::extract::ws::WebSocket>,
) {
    use axum::extract::ws::{Message, close_code};
    use futures_util::StreamExt;
    let _ = out.reply(Message::Text(SHUTDOWN_MESSAGE.into())).await;
    out.close(close_code::AWAY, "the server is shutting down").await;
    let _ = tokio::time::timeout(Duration::from_secs(1), async {
        while let Some(Ok(_)) = stream.next().await {}
    })
    .await;
}

impl Drop for ClientGuard {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What the auth guard found for an upgrade: the grant, the connection
/// permit (an upgrade without one is refused, see [`Permit`]'s extractor)
/// and the subprotocol that carried the token.
type Admitted = (Grant, Permit, Option<Extension<BearerProtocol>>);

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[serde(rename_all = "camelCase")]
#[into_params(parameter_in = Query)]
pub struct WsQuery {
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

/// Bytes a socket reads at a time. The buffer stays allocated (and
/// touched) for the socket's life, and clients send short messages (a
/// keystroke, an attach: well under 256 bytes): 256 bytes instead of 4 KiB
/// keeps 3.75 KiB less per idle socket; a larger message (a paste) still
/// arrives whole, in more reads, and its frame's room is reserved at once.
const READ_BUFFER: usize = 256;
/// Bytes a socket gathers before writing.
const WRITE_BUFFER: usize = 64 * 1024;

/// `/ws`: the multiplexed WebSocket (see `docs/protocol.md`).
#[utoipa::path(get, path = "/ws", params(WsQuery),
    responses((status = 101, description = "Switching Protocols: the socket speaks the protocol of docs/protocol.md."),
              (status = 426, body = ErrorBody, description = "Not a WebSocket upgrade.")))]
pub async fn ws(
    Upgrade(ws): Upgrade,
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
        let guard = ClientGuard::new(&state.clients, permit).on("ws_terminal", &grant);
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
    let guard = ClientGuard::new(&state.clients, permit).on("ws", &grant);
    let upgrade = upgrade(ws, &state, proto);
    // Boxed: axum's task keeps the callback's captures as long as the
    // socket lives (about 200 bytes of them), a box only a pointer.
    let args = Box::new((state, client_id, dialect, guard, grant));
    upgrade.on_upgrade(move |socket| {
        let (state, client_id, dialect, guard, grant) = *args;
        connection::run(socket, state, client_id, dialect, guard, grant)
    })
}

/// `/ws/terminal/{session_id}`: the older one-session socket.
#[utoipa::path(get, path = "/ws/terminal/{session_id}", params(("session_id" = String, Path, description = "The session id.")),
    responses((status = 101, description = "Switching Protocols: the older one-session messages. Once the session is deleted the socket sends its terminal_end (if not sent yet; exit_code null when deleted while running) and closes with 1000, reason session_deleted: ID (in a cluster, when this node let go of its copy of another node's session: session_replaced: ID if it holds another copy of the same session by then, the lost session's copy replaced when its node came back, or one whose directory record was missed 3 times and is listed again: connect again to follow it; else session_deleted: ID); the close waits for room, and then the server waits for the client's close reply, both within one pong timeout (ws_pong_timeout_ms); a server shutting down meanwhile stops waiting."),
              (status = 426, body = ErrorBody, description = "Not a WebSocket upgrade.")))]
pub async fn legacy_one(
    Upgrade(ws): Upgrade,
    State(state): State<AppState>,
    Path(raw): Path<String>,
    (grant, permit, proto): Admitted,
) -> Response {
    let guard = ClientGuard::new(&state.clients, permit).on("legacy_one", &grant);
    upgrade(ws, &state, proto).on_upgrade(move |socket| legacy::one(socket, state, raw, guard, grant))
}

/// `/ws/terminal/all`: the older all-sessions socket.
#[utoipa::path(get, path = "/ws/terminal/all",
    responses((status = 101, description = "Switching Protocols: the older all-sessions messages. A deleted session's remaining output and terminal_end come before the terminal_start of a new session under its id; a copy of another node's session let go and listed again (or a lost one's copy replaced) goes on from the first byte the client lacks, with no second terminal_start (bytes no longer held, past max_replay_bytes for a pty session or deleted from disk, are skipped without notice)."),
              (status = 426, body = ErrorBody, description = "Not a WebSocket upgrade.")))]
pub async fn legacy_all(
    Upgrade(ws): Upgrade,
    State(state): State<AppState>,
    (grant, permit, proto): Admitted,
) -> Response {
    let guard = ClientGuard::new(&state.clients, permit).on("legacy_all", &grant);
    upgrade(ws, &state, proto).on_upgrade(move |socket| legacy::all(socket, state, guard, grant))
}

/// axum's `WebSocketUpgrade`, refused with an [`ApiError`] instead of plain
/// text: a plain GET of a WebSocket endpoint is answered 426
/// `upgrade_required`, another method 405, a malformed handshake 400.
pub struct Upgrade(pub WebSocketUpgrade);

impl<S: Send + Sync> FromRequestParts<S> for Upgrade {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, state: &S) -> Result<Self, ApiError> {
        let e = match WebSocketUpgrade::from_request_parts(parts, state).await {
            Ok(ws) => return Ok(Upgrade(ws)),
            Err(e) => e,
        };
        let code = match e {
            WebSocketUpgradeRejection::MethodNotGet(_) => ErrorCode::MethodNotAllowed,
            WebSocketUpgradeRejection::InvalidConnectionHeader(_)
            | WebSocketUpgradeRejection::InvalidUpgradeHeader(_)
            | WebSocketUpgradeRejection::ConnectionNotUpgradable(_) => ErrorCode::UpgradeRequired,
            _ => ErrorCode::BadRequest,
        };
        let message = match code {
            ErrorCode::UpgradeRequired => format!("this is a WebSocket endpoint: {}", e.body_text()),
            _ => e.body_text(),
        };
        Err(ApiError::new(code, message))
    }
}

/// The connection permit the guard took for an upgrade ([`crate::auth`],
/// step 5). An upgrade without one fails closed: refused with 500
/// `internal` (and logged), never run uncounted by the connection limits.
/// Only a route the guard does not count as a WebSocket endpoint (one
/// missing from [`crate::api::WEBSOCKET_ROUTES`], or mounted outside the
/// guard) comes here without one. Extracted after [`Upgrade`], so a plain
/// GET of the endpoint (which takes no permit) is still answered 426.
impl<S: Send + Sync> FromRequestParts<S> for Permit {
    type Rejection = ApiError;

    async fn from_request_parts(parts: &mut Parts, _: &S) -> Result<Self, ApiError> {
        if let Some(permit) = parts.extensions.get::<Permit>() {
            return Ok(permit.clone());
        }
        tracing::error!(
            path = parts.uri.path(),
            "a WebSocket upgrade came without a connection permit: refused (is its route marked [websocket]?)"
        );
        Err(ApiError::new(
            ErrorCode::Internal,
            "this WebSocket upgrade was not counted against the connection limits, so it is refused",
        ))
    }
}

/// The close frame that ends a socket because of what it received: a
/// message over `max` bytes (1009), text that is not UTF-8 (1007), a
/// broken frame (1002). `None` for a good message, or a failure there is
/// nothing to say about (the connection is gone).
pub fn refusal(msg: &Result<Message, axum::Error>, max: usize) -> Option<(u16, &'static str)> {
    let too_large = (close_code::SIZE, "message too large");
    match msg {
        Ok(Message::Text(t)) if t.len() > max => Some(too_large),
        Ok(Message::Binary(b)) if b.len() > max => Some(too_large),
        Ok(_) => None,
        Err(e) => match std::error::Error::source(e).and_then(|s| s.downcast_ref::<tungstenite::Error>()) {
            Some(tungstenite::Error::Capacity(_)) => Some(too_large),
            Some(tungstenite::Error::Utf8(_)) => Some((close_code::INVALID, "text is not UTF-8")),
            Some(tungstenite::Error::Protocol(_)) => Some((close_code::PROTOCOL, "protocol error")),
            _ => None,
        },
    }
}

/// The session `id` if `grant` may read it, waiting up to `wait` for one
/// to be created. A session the grant may not read is waited past exactly
/// as a missing one: both answer `None` after `wait`, so the time of the
/// answer does not tell whether another project's session has that id.
pub async fn wait_for_session(
    registry: &Registry,
    id: &SessionId,
    wait: Duration,
    grant: &Grant,
) -> Option<SessionHandle> {
    let readable = |h: SessionHandle| grant.can_read(h.project().as_str()).then_some(h);
    // Subscribe before looking, so a creation in between is not missed.
    let mut changes = registry.changes();
    if let Some(h) = registry.get(id).and_then(readable) {
        return Some(h);
    }
    let found = async {
        loop {
            match changes.recv().await {
                Ok(RegistryEvent::Created(h)) if h.id() == id => {
                    if let Some(h) = readable(h) {
                        return Some(h);
                    }
                }
                Ok(_) => {}
                Err(tokio::sync::broadcast::error::RecvError::Lagged(_)) => {
                    if let Some(h) = registry.get(id).and_then(readable) {
                        return Some(h);
                    }
                }
                // The registry is gone (shutdown): wait out the time anyway.
                Err(_) => std::future::pending::<()>().await,
            }
        }
    };
    tokio::time::timeout(wait, found).await.ok().flatten()
}

#[cfg(test)]
mod tests;
