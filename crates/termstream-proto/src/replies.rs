//! The small JSON answers of REST routes that are not sessions: input
//! taken, an event published, a WebSocket ticket, a login code, health.

use serde::{Deserialize, Serialize};

/// `POST /api/sessions/{id}/input`: how many bytes were taken.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct InputTaken {
    pub bytes: u64,
}

/// `POST /api/events`: how many sockets may receive the event.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Published {
    pub receivers: u64,
}

/// `POST /api/ws-ticket`: a single-use ticket for `/ws?token=TICKET`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct WsTicket {
    pub ticket: String,
    /// Milliseconds the ticket stays valid.
    pub expires_in_ms: u64,
}

/// `POST /api/login-codes`: a one-time code for `GET /login?code=CODE`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct LoginCode {
    pub code: String,
    /// The path that redeems it: `/login?code=CODE`.
    pub path: String,
    /// Milliseconds the code stays valid.
    pub expires_in_ms: u64,
}

/// `GET /health`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
pub struct Health {
    /// Always `ok`.
    pub status: String,
}
