//! Whether a socket's peer is still there, the same on every endpoint: a
//! ping every `ws_ping_interval_ms`, and a peer that has answered none for
//! `ws_pong_timeout_ms` is gone. Browsers answer pings by themselves, so
//! this costs a client nothing; a peer that vanished without closing its
//! connection (a laptop that slept, a dropped network) is let go instead
//! of holding its socket, forwarders and outbox.

use std::time::Duration;

use axum::extract::ws::{Message, close_code};
use bytes::Bytes;
use tokio::time::{Instant, Interval};

use super::outbox::Outbox;
use crate::config::Config;

/// A socket's ping timer and the time of its peer's last pong.
#[derive(Debug)]
pub struct Liveness {
    ping: Interval,
    last_pong: Instant,
    timeout: Duration,
}

/// What a ping time found.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Beat {
    /// A ping was queued.
    Alive,
    /// No pong for the timeout: a close frame (1001) was queued, and the
    /// connection ends.
    Gone,
}

impl Liveness {
    pub fn new(cfg: &Config) -> Liveness {
        Liveness {
            ping: tokio::time::interval(Duration::from_millis(cfg.ws_ping_interval_ms.max(10))),
            last_pong: Instant::now(),
            timeout: Duration::from_millis(cfg.ws_pong_timeout_ms),
        }
    }

    /// Waits for the next ping time.
    pub async fn tick(&mut self) {
        self.ping.tick().await;
    }

    /// Notes a message from the peer.
    pub fn saw(&mut self, msg: &Message) {
        if let Message::Pong(_) = msg {
            self.last_pong = Instant::now();
        }
    }

    /// At a ping time: whether the peer is gone (then a close frame is
    /// sent); if not, a ping is queued without waiting (a full outbox means
    /// the next ping time will tell).
    pub async fn beat(&self, out: &Outbox) -> Beat {
        if self.last_pong.elapsed() > self.timeout {
            out.close(close_code::AWAY, "no pong in time").await;
            return Beat::Gone;
        }
        out.try_send(Message::Ping(Bytes::new()));
        Beat::Alive
    }
}
