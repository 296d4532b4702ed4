//! A bounded map of expiring secrets: where WebSocket tickets, login codes
//! and login sessions are kept.
//!
//! Each entry is a random secret `<prefix><48 hex>` handed to a client and
//! kept only as its SHA-256 (a dump of memory yields no usable secret),
//! with the [`Grant`] it carries and its expiry. When the map is full,
//! expired entries are swept; if it is still full of live ones, the new
//! entry is refused ([`StoreFull`], answered 503) rather than pushing out
//! one that somebody holds.

use std::collections::HashMap;
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant};

use termstream_proto::ErrorCode;

use super::{Grant, token};
use crate::error::ApiError;

/// Entries by the SHA-256 of their secret, each with its expiry.
type Entries = HashMap<String, (Grant, Instant)>;

/// One bounded map of expiring secrets.
#[derive(Debug)]
pub struct Expiring {
    entries: Mutex<Entries>,
    ttl: Duration,
    max: usize,
    /// What the entries are, for errors: "tickets", "login codes".
    what: &'static str,
}

/// The store is full of live entries.
#[derive(Debug, thiserror::Error)]
#[error("{max} {what} are outstanding, the most allowed")]
pub struct StoreFull {
    what: &'static str,
    max: usize,
}

impl From<StoreFull> for ApiError {
    fn from(e: StoreFull) -> ApiError {
        ApiError::new(ErrorCode::Capacity, e.to_string())
    }
}

/// Whether looking an entry up uses it up.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Use {
    /// A single-use secret (a ticket, a login code): removed when read.
    Once,
    /// A secret that lasts until it expires (a login session).
    UntilExpiry,
}

impl Expiring {
    /// At most `max` live `what`, each living `ttl`.
    pub fn new(what: &'static str, ttl: Duration, max: usize) -> Expiring {
        Expiring {
            entries: Mutex::default(),
            ttl,
            max,
            what,
        }
    }

    pub fn ttl(&self) -> Duration {
        self.ttl
    }

    fn lock(&self) -> MutexGuard<'_, Entries> {
        self.entries.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// A new secret `<prefix><48 hex>` carrying `grant`.
    pub fn insert(&self, prefix: &str, grant: Grant) -> Result<String, StoreFull> {
        self.insert_until(prefix, grant, None)
    }

    /// As [`Expiring::insert`], expiring at `not_after` if that comes before
    /// the store's own lifetime.
    pub fn insert_until(&self, prefix: &str, grant: Grant, not_after: Option<Instant>) -> Result<String, StoreFull> {
        let now = Instant::now();
        let mut map = self.lock();
        if map.len() >= self.max {
            map.retain(|_, (_, expiry)| *expiry > now);
            if map.len() >= self.max {
                return Err(StoreFull {
                    what: self.what,
                    max: self.max,
                });
            }
        }
        let secret = format!("{prefix}{}", hex::encode(rand::random::<[u8; 24]>()));
        let expiry = not_after.map_or(now + self.ttl, |cap| cap.min(now + self.ttl));
        map.insert(token::hash(&secret), (grant, expiry));
        Ok(secret)
    }

    /// When a live `secret` expires.
    pub fn expiry(&self, secret: &str) -> Option<Instant> {
        let map = self.lock();
        let (_, expiry) = map.get(&token::hash(secret))?;
        (*expiry > Instant::now()).then_some(*expiry)
    }

    /// The grant of a live `secret`.
    pub fn get(&self, secret: &str, usage: Use) -> Option<Grant> {
        let key = token::hash(secret);
        let mut map = self.lock();
        let (grant, expiry) = match usage {
            Use::Once => map.remove(&key)?,
            Use::UntilExpiry => map.get(&key)?.clone(),
        };
        if expiry <= Instant::now() {
            map.remove(&key);
            return None;
        }
        Some(grant)
    }

    /// Forgets `secret`.
    pub fn remove(&self, secret: &str) {
        self.lock().remove(&token::hash(secret));
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_single_use_secret_works_once() {
        let store = Expiring::new("tickets", Duration::from_secs(30), 10);
        let t = store.insert("tkt_", Grant::open()).unwrap();
        assert!(t.starts_with("tkt_") && t.len() == 4 + 48, "{t}");
        assert!(store.get(&t, Use::Once).is_some());
        assert!(store.get(&t, Use::Once).is_none());
        assert!(store.get("tkt_forged", Use::Once).is_none());
    }

    #[test]
    fn a_lasting_secret_works_until_removed() {
        let store = Expiring::new("login sessions", Duration::from_secs(30), 10);
        let s = store.insert("ls_", Grant::open()).unwrap();
        assert!(store.get(&s, Use::UntilExpiry).is_some());
        assert!(store.get(&s, Use::UntilExpiry).is_some());
        assert!(
            store.lock().keys().all(|k| *k == token::hash(&s)),
            "only the hash is kept"
        );
        store.remove(&s);
        assert!(store.get(&s, Use::UntilExpiry).is_none());
    }

    #[test]
    fn expired_secrets_fail_and_the_store_is_bounded() {
        let store = Expiring::new("tickets", Duration::ZERO, 2);
        let t = store.insert("tkt_", Grant::open()).unwrap();
        assert!(store.get(&t, Use::Once).is_none(), "expired");
        store.insert("tkt_", Grant::open()).unwrap();
        store.insert("tkt_", Grant::open()).unwrap();
        // Full of expired entries: they are swept and the insert succeeds.
        store.insert("tkt_", Grant::open()).unwrap();
        let live = Expiring::new("login codes", Duration::from_secs(30), 1);
        live.insert("lc_", Grant::open()).unwrap();
        let full = live.insert("lc_", Grant::open()).unwrap_err();
        assert_eq!(full.to_string(), "1 login codes are outstanding, the most allowed");
    }
}
