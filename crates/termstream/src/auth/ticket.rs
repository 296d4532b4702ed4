//! WebSocket tickets: short-lived, single-use credentials for `/ws?token=`.
//!
//! A browser cannot set an `Authorization` header on a WebSocket, and a
//! long-lived token in a URL ends up in logs and history. So a client that
//! holds a token asks `POST /api/ws-ticket` for a ticket, and opens the
//! socket with it in the query string. A ticket carries the [`Grant`] of the
//! token that asked for it, works once, and expires after `ticket_ttl_ms`.
//!
//! The store is bounded (`max_tickets`; see [`super::expiring`]): when
//! full of live tickets, the request is answered 503.

use std::time::Duration;

use super::Grant;
use super::expiring::{Expiring, StoreFull, Use};

/// Outstanding tickets.
#[derive(Debug)]
pub struct TicketStore(Expiring);

impl TicketStore {
    pub fn new(ttl: Duration, max: usize) -> TicketStore {
        TicketStore(Expiring::new("tickets", ttl, max))
    }

    pub fn ttl(&self) -> Duration {
        self.0.ttl()
    }

    /// Issues a ticket carrying `grant`.
    pub fn issue(&self, grant: Grant) -> Result<String, StoreFull> {
        self.0.insert("tkt_", grant)
    }

    /// The grant of `ticket` if it is live; it cannot be used again.
    pub fn redeem(&self, ticket: &str) -> Option<Grant> {
        self.0.get(ticket, Use::Once)
    }
}
