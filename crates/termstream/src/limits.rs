//! Limits that keep one client from taking the server: WebSocket connections
//! per IP and in total, running sessions per token, and the input rate of
//! one socket.
//!
//! Every limit answers rather than hangs: a connection over a cap is answered
//! before the upgrade (429 `rate_limited` per IP, 503 `capacity` in total), a
//! create over the per-token cap is 429 `rate_limited`, and input over the
//! rate is dropped with a `rate_limited` error on the socket (the bytes never
//! reach the program; the client may send them again later).

use std::collections::HashMap;
use std::net::IpAddr;
use std::sync::{Arc, Mutex};
use std::time::Instant;

use crate::session::SessionHandle;

/// Why a connection or a session was refused.
#[derive(Debug, thiserror::Error)]
pub enum LimitError {
    #[error("{max} WebSocket connections from this address are open, the most allowed")]
    PerIp { max: usize },
    #[error("{max} WebSocket connections are open, the most allowed")]
    Total { max: usize },
    #[error("this token runs {max} sessions, the most allowed")]
    SessionsPerToken { max: usize },
}

#[derive(Debug, Default)]
struct Counts {
    total: usize,
    per_ip: HashMap<IpAddr, usize>,
}

/// Counts open WebSocket connections. A [`ConnPermit`] is one of them; it is
/// released when dropped (when the socket's task ends).
#[derive(Debug)]
pub struct ConnLimiter {
    counts: Mutex<Counts>,
    max_total: usize,
    max_per_ip: usize,
}

/// One counted connection.
#[derive(Debug)]
pub struct ConnPermit {
    limiter: Arc<ConnLimiter>,
    ip: IpAddr,
}

impl ConnLimiter {
    pub fn new(max_total: usize, max_per_ip: usize) -> Arc<ConnLimiter> {
        Arc::new(ConnLimiter {
            counts: Mutex::default(),
            max_total,
            max_per_ip,
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, Counts> {
        self.counts.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Counts a connection from `ip`, unless a cap is reached.
    pub fn acquire(self: &Arc<Self>, ip: IpAddr) -> Result<ConnPermit, LimitError> {
        let mut c = self.lock();
        if c.total >= self.max_total {
            return Err(LimitError::Total { max: self.max_total });
        }
        let n = c.per_ip.entry(ip).or_insert(0);
        if *n >= self.max_per_ip {
            return Err(LimitError::PerIp { max: self.max_per_ip });
        }
        *n += 1;
        c.total += 1;
        Ok(ConnPermit {
            limiter: self.clone(),
            ip,
        })
    }
}

impl Drop for ConnPermit {
    fn drop(&mut self) {
        let mut c = self.limiter.lock();
        c.total -= 1;
        if let Some(n) = c.per_ip.get_mut(&self.ip) {
            *n -= 1;
            if *n == 0 {
                c.per_ip.remove(&self.ip);
            }
        }
    }
}

/// Running sessions per token. A create under way counts as running from
/// the check on, so concurrent creates cannot overshoot the cap; the
/// create itself runs outside the lock (it waits for its program's start,
/// which can take seconds, and must not hold up other tokens' creates).
#[derive(Debug)]
pub struct SessionQuota {
    max: usize,
    /// Token name → what it runs.
    owned: Mutex<HashMap<Arc<str>, Owned>>,
}

/// A token's sessions.
#[derive(Debug, Default)]
struct Owned {
    /// Sessions it created (ended ones are pruned on each check).
    sessions: Vec<SessionHandle>,
    /// Its creates under way.
    creating: usize,
}

/// A create under way, counted until dropped.
struct Creating<'a> {
    quota: &'a SessionQuota,
    owner: &'a Arc<str>,
}

impl Drop for Creating<'_> {
    fn drop(&mut self) {
        if let Some(o) = self.quota.lock().get_mut(self.owner) {
            o.creating -= 1;
        }
    }
}

impl SessionQuota {
    pub fn new(max: usize) -> SessionQuota {
        SessionQuota {
            max,
            owned: Mutex::default(),
        }
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<Arc<str>, Owned>> {
        self.owned.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Runs `create` for `owner` if it runs (or is creating) fewer than the
    /// cap. A create that fails or panics stops counting.
    pub fn create<E: From<LimitError>>(
        &self,
        owner: &Arc<str>,
        create: impl FnOnce() -> Result<SessionHandle, E>,
    ) -> Result<SessionHandle, E> {
        {
            let mut owned = self.lock();
            let mine = owned.entry(owner.clone()).or_default();
            mine.sessions.retain(|h| h.is_running());
            if mine.sessions.len() + mine.creating >= self.max {
                return Err(LimitError::SessionsPerToken { max: self.max }.into());
            }
            mine.creating += 1;
        }
        let creating = Creating { quota: self, owner };
        let h = create()?;
        // Counted as a session before it stops counting as a create.
        self.lock().entry(owner.clone()).or_default().sessions.push(h.clone());
        drop(creating);
        Ok(h)
    }
}

/// A token bucket of bytes: `rate` per second, holding at most `burst`.
#[derive(Debug)]
pub struct TokenBucket {
    rate: f64,
    burst: f64,
    level: f64,
    at: Instant,
}

impl TokenBucket {
    /// A full bucket.
    pub fn new(rate_per_sec: u64, burst: u64) -> TokenBucket {
        TokenBucket {
            rate: rate_per_sec as f64,
            burst: burst as f64,
            level: burst as f64,
            at: Instant::now(),
        }
    }

    /// Takes `n` bytes if the bucket holds them; takes nothing otherwise.
    pub fn take(&mut self, n: usize) -> bool {
        let now = Instant::now();
        self.level = (self.level + now.duration_since(self.at).as_secs_f64() * self.rate).min(self.burst);
        self.at = now;
        if n as f64 <= self.level {
            self.level -= n as f64;
            true
        } else {
            false
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn permits_are_counted_and_released() {
        let l = ConnLimiter::new(3, 2);
        let a: IpAddr = "127.0.0.1".parse().unwrap();
        let b: IpAddr = "127.0.0.2".parse().unwrap();
        let p1 = l.acquire(a).unwrap();
        let _p2 = l.acquire(a).unwrap();
        assert!(matches!(l.acquire(a), Err(LimitError::PerIp { .. })));
        let _p3 = l.acquire(b).unwrap();
        assert!(matches!(l.acquire(b), Err(LimitError::Total { .. })));
        drop(p1);
        l.acquire(a).unwrap();
    }

    #[test]
    fn the_bucket_refuses_past_its_burst() {
        let mut b = TokenBucket::new(0, 10);
        assert!(b.take(6));
        assert!(!b.take(6), "only 4 left and nothing refills");
        assert!(b.take(4));
    }
}
