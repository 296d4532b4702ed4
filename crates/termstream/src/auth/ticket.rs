//! WebSocket tickets: short-lived, single-use credentials for `/ws?token=`.
//!
//! A browser cannot set an `Authorization` header on a WebSocket, and a
//! long-lived token in a URL ends up in logs and history. So a client that
//! holds a token asks `POST /api/ws-ticket` for a ticket, and opens the
//! socket with it in the query string. A ticket carries the [`Grant`] of the
//! token that asked for it, works once, and expires after `ticket_ttl_ms`.
//!
//! The store is bounded (`max_tickets`): when full, expired tickets are
//! dropped, and if it is still full the request is answered 503.

use std::collections::HashMap;
use std::sync::Mutex;
use std::time::{Duration, Instant};

use super::Grant;

/// Outstanding tickets.
#[derive(Debug)]
pub struct TicketStore {
    /// Ticket → (grant, expiry). Redeeming removes the entry.
    tickets: Mutex<HashMap<String, (Grant, Instant)>>,
    ttl: Duration,
    max: usize,
}

/// The store is full of live tickets.
#[derive(Debug, thiserror::Error)]
#[error("{0} tickets are outstanding, the most allowed")]
pub struct StoreFull(pub usize);

impl TicketStore {
    pub fn new(ttl: Duration, max: usize) -> TicketStore {
        TicketStore { tickets: Mutex::default(), ttl, max }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<String, (Grant, Instant)>> {
        self.tickets.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Issues a ticket carrying `grant`.
    pub fn issue(&self, grant: Grant) -> Result<String, StoreFull> {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= self.max {
            map.retain(|_, (_, expiry)| *expiry > now);
            if map.len() >= self.max {
                return Err(StoreFull(map.len()));
            }
        }
        let ticket = format!("tkt_{}", hex::encode(rand::random::<[u8; 24]>()));
        map.insert(ticket.clone(), (grant, now + self.ttl));
        Ok(ticket)
    }

    /// The grant of `ticket` if it is live; it cannot be used again.
    pub fn redeem(&self, ticket: &str) -> Option<Grant> {
        let (grant, expiry) = self.lock().remove(ticket)?;
        (expiry > Instant::now()).then_some(grant)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_ticket_works_once() {
        let store = TicketStore::new(Duration::from_secs(30), 10);
        let t = store.issue(Grant::open()).unwrap();
        assert!(store.redeem(&t).is_some());
        assert!(store.redeem(&t).is_none());
        assert!(store.redeem("tkt_forged").is_none());
    }

    #[test]
    fn an_expired_ticket_fails_and_the_store_is_bounded() {
        let store = TicketStore::new(Duration::ZERO, 2);
        let t = store.issue(Grant::open()).unwrap();
        assert!(store.redeem(&t).is_none(), "expired");
        store.issue(Grant::open()).unwrap();
        store.issue(Grant::open()).unwrap();
        // Full of expired tickets: they are swept and the issue succeeds.
        store.issue(Grant::open()).unwrap();
        let live = TicketStore::new(Duration::from_secs(30), 1);
        live.issue(Grant::open()).unwrap();
        assert!(live.issue(Grant::open()).is_err());
    }
}
