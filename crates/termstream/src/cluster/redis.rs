//! The node's connections to Redis, and the names of every key it uses.
//!
//! One shared multiplexed connection carries every short command (claims,
//! the directory, stream appends and reads, requests). A command that blocks
//! (`XREAD BLOCK`, `BLPOP`) would hold up everything queued behind it on a
//! multiplexed connection, so each blocking loop opens its own with
//! [`Redis::reconnects`] (again a heartbeat after a failure). Every command
//! has a response timeout: a Redis that stopped answering fails commands
//! instead of hanging them, and the shared connection is dropped and opened
//! again on the next use.
//!
//! Keys (all under `termstream:`):
//! - `node:<node>`: the node's liveness, expiring after `cluster_lost_ms`;
//! - `id:<session>`: the claim of a session id, valued the owner's name;
//!   expiring after four times `cluster_lost_ms` (at least 4 s), renewed by
//!   the heartbeat from its create until the session's first record, then
//!   permanent;
//! - `dir`: a hash of session id → record (owner and info, JSON);
//! - `dirlog`: a stream of the ids of the records written or removed, in
//!   order, for nodes to read only what changed;
//! - `out:<session>:<epoch>`: the session's output stream, entry ids
//!   `<offset>-<n>`;
//! - `req:<node>` and `rep:<node>`: lists of requests to a node and of
//!   answers to it;
//! - `gone:<session>:<epoch>`: the tombstone of a lost session deleted
//!   through another node, so that its node, if only cut off, does not
//!   register it again (expires after a week).

use std::time::Duration;

use redis::aio::MultiplexedConnection;
use redis::{AsyncConnectionConfig, Client, RedisError, RedisResult};
use termstream_proto::{Epoch, SessionId};
use tokio::sync::Mutex;

/// How long connecting may take.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(1);
/// How long a short command may take to be answered.
const RESPONSE_TIMEOUT: Duration = Duration::from_secs(2);
/// How long a blocking command waits in Redis before it returns empty.
pub const BLOCK: Duration = Duration::from_millis(1000);

/// The node's way to Redis.
#[derive(Debug)]
pub struct Redis {
    client: Client,
    /// The shared connection while it works; `None` after a failure, until
    /// the next command connects again.
    shared: Mutex<Option<MultiplexedConnection>>,
}

impl Redis {
    /// A client for `url` (checked now; nothing is connected yet).
    pub fn new(url: &str) -> anyhow::Result<Redis> {
        let client = Client::open(url).map_err(|e| anyhow::anyhow!("cluster URL {url:?}: {e}"))?;
        Ok(Redis {
            client,
            shared: Mutex::new(None),
        })
    }

    /// The shared connection, connecting first if needed.
    pub async fn conn(&self) -> RedisResult<MultiplexedConnection> {
        let mut shared = self.shared.lock().await;
        if let Some(c) = shared.as_ref() {
            return Ok(c.clone());
        }
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(RESPONSE_TIMEOUT));
        let c = self
            .client
            .get_multiplexed_async_connection_with_config(&config)
            .await?;
        *shared = Some(c.clone());
        Ok(c)
    }

    /// Drops the shared connection after `e`, when `e` says it is broken.
    pub async fn failed(&self, e: &RedisError) {
        if e.is_io_error() || e.is_connection_dropped() || e.is_timeout() || e.is_connection_refusal() {
            *self.shared.lock().await = None;
        }
    }

    /// Runs `cmd` on the shared connection, dropping it if it broke.
    pub async fn run<T: redis::FromRedisValue>(&self, cmd: &redis::Cmd) -> RedisResult<T> {
        let mut c = self.conn().await?;
        let r = cmd.query_async(&mut c).await;
        if let Err(e) = &r {
            self.failed(e).await;
        }
        r
    }

    /// Runs `pipe` on the shared connection, dropping it if it broke.
    pub async fn pipe<T: redis::FromRedisValue>(&self, pipe: &redis::Pipeline) -> RedisResult<T> {
        let mut c = self.conn().await?;
        let r = pipe.query_async(&mut c).await;
        if let Err(e) = &r {
            self.failed(e).await;
        }
        r
    }

    /// A connection of its own, for a loop of blocking commands.
    pub async fn dedicated(&self) -> RedisResult<MultiplexedConnection> {
        let config = AsyncConnectionConfig::new()
            .set_connection_timeout(Some(CONNECT_TIMEOUT))
            .set_response_timeout(Some(BLOCK + RESPONSE_TIMEOUT));
        self.client.get_multiplexed_async_connection_with_config(&config).await
    }

    /// Dedicated connections for a loop of blocking commands, one after
    /// another ([`Reconnects::next`]).
    pub fn reconnects(&self, retry: Duration) -> Reconnects<'_> {
        Reconnects {
            redis: self,
            retry,
            started: false,
        }
    }
}

/// The dedicated connections of one loop of blocking commands: the loop
/// takes the next when its last one failed.
#[derive(Debug)]
pub struct Reconnects<'a> {
    redis: &'a Redis,
    /// How long to wait before each connection after the first, and
    /// between tries to open one.
    retry: Duration,
    /// Whether a connection was asked for already.
    started: bool,
}

impl Reconnects<'_> {
    /// The next connection: at once the first time, else `retry` after
    /// the last one failed; one that cannot be opened is tried again every
    /// `retry`, until one opens.
    pub async fn next(&mut self) -> MultiplexedConnection {
        loop {
            if std::mem::replace(&mut self.started, true) {
                tokio::time::sleep(self.retry).await;
            }
            if let Ok(conn) = self.redis.dedicated().await {
                return conn;
            }
        }
    }
}

/// The liveness key of `node`.
pub fn node_key(node: &str) -> String {
    format!("termstream:node:{node}")
}

/// The claim of a session id.
pub fn id_key(id: &SessionId) -> String {
    format!("termstream:id:{id}")
}

/// The hash of every session's record.
pub const DIR_KEY: &str = "termstream:dir";

/// The directory's change log: a stream of the ids of changed records.
pub const DIR_LOG_KEY: &str = "termstream:dirlog";

/// The output stream of one incarnation of a session.
pub fn stream_key(id: &SessionId, epoch: Epoch) -> String {
    format!("termstream:out:{id}:{epoch}")
}

/// The tombstone of one incarnation of a session deleted while lost.
pub fn gone_key(id: &SessionId, epoch: Epoch) -> String {
    format!("termstream:gone:{id}:{epoch}")
}

/// The list of requests to `node`.
pub fn requests_key(node: &str) -> String {
    format!("termstream:req:{node}")
}

/// The list of answers to `node`.
pub fn replies_key(node: &str) -> String {
    format!("termstream:rep:{node}")
}
