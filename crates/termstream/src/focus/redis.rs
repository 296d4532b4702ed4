//! [`RedisStore`]: focus sets kept in Redis, shared by every node of a
//! cluster (`--cluster redis://…`).
//!
//! Per project, Redis holds:
//! - the state, a hash `termstream:focus:state:<project>` with `version`
//!   and `focused` (the set as a JSON array);
//! - the recent changes, a stream `termstream:focus:log:<project>` whose
//!   entry ids are `<version>-0`, so a node that missed a change reads it
//!   back by version ([`RedisStore::changes`]), trimmed to about
//!   [`LOG_LENGTH`] entries.
//!
//! Every change is also published on [`CHANGES`], which each node's relay
//! ([`super::relay`]) follows. The compare-and-set, the write, the log
//! entry and the publish are one Lua script (`CAS`): one atomic step,
//! so no two nodes make the same version and the published changes of a
//! project go out in version order.
//!
//! Sessions of other nodes are found in the registry, which holds the
//! cluster's directory. Every key and channel name is in this file.
//!
//! When Redis cannot be reached, calls fail with [`ClusterUnavailable`],
//! which clients are answered as 503 `cluster_unavailable`.

use std::time::Duration;

use anyhow::Context;
use futures_util::future::BoxFuture;
use redis::aio::ConnectionManager;
use redis::{AsyncCommands, Script};
use serde::{Deserialize, Serialize};
use termstream_proto::{ProjectId, SessionId};

use super::store::{FocusState, FocusStore, Stale};

/// The channel every focus change is published on.
pub const CHANGES: &str = "termstream:focus:changes";

/// About how many changes each project's log keeps for nodes that missed
/// some (more than a socket may fall behind before it is synced anyway).
pub const LOG_LENGTH: usize = 512;

const PROJECTS: &str = "termstream:focus:projects";

fn state_key(project: &ProjectId) -> String {
    format!("termstream:focus:state:{project}")
}

fn log_key(project: &ProjectId) -> String {
    format!("termstream:focus:log:{project}")
}

/// The compare-and-set: if the stored version is `ARGV[1]`, stores the set
/// `ARGV[2]` as the next version, logs and publishes the change `ARGV[3]`.
/// Answers `{1, version, set}` when stored, else `{0, version, set}` with
/// the current state. The log entry is added with `pcall`: a log that
/// cannot take it (an id not above its last) must not undo the write.
const CAS: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v ~= tonumber(ARGV[1]) then
  return {0, v, redis.call('HGET', KEYS[1], 'focused') or '[]'}
end
local nv = v + 1
redis.call('HSET', KEYS[1], 'version', nv, 'focused', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[4])
redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], nv .. '-0', 'change', ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[3])
return {1, nv, ARGV[2]}
";

/// The restore: after Redis lost a project (it restarted empty), a node
/// puts back the state it last delivered, `ARGV[2]` at version `ARGV[1]`,
/// unless Redis holds that version or a later one. Answers 1 if restored.
const RESTORE: &str = r"
local v = tonumber(redis.call('HGET', KEYS[1], 'version') or '0')
if v >= tonumber(ARGV[1]) then
  return 0
end
redis.call('HSET', KEYS[1], 'version', ARGV[1], 'focused', ARGV[2])
redis.call('SADD', KEYS[3], ARGV[4])
redis.pcall('XADD', KEYS[2], 'MAXLEN', '~', ARGV[6], ARGV[1] .. '-0', 'change', ARGV[3])
redis.call('PUBLISH', ARGV[5], ARGV[3])
return 1
";

/// Redis could not be reached, or did not answer in time.
#[derive(Debug, thiserror::Error)]
#[error("the cluster's shared state (Redis) is unavailable: {0}")]
pub struct ClusterUnavailable(pub String);

/// One change as published and logged: what every node needs to tell its
/// sockets.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
pub struct Change {
    pub project: ProjectId,
    pub version: u64,
    /// The session focused or unfocused; `None` for a state a node put
    /// back after Redis restarted (sockets get it as `sync_complete`).
    pub session: Option<SessionId>,
    pub focused: bool,
    /// The set after the change.
    pub set: Vec<SessionId>,
}

impl Change {
    pub fn state(&self) -> FocusState {
        FocusState {
            version: self.version,
            focused: self.set.clone(),
        }
    }
}

/// Focus sets in Redis; cheap to clone (one multiplexed connection that
/// reconnects by itself).
#[derive(Clone)]
pub struct RedisStore {
    conn: ConnectionManager,
    cas: Script,
    restore: Script,
}

impl std::fmt::Debug for RedisStore {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("RedisStore")
    }
}

/// Runs a Redis call, and once more if its connection had dropped (the
/// connection reconnects on the first failure: after Redis comes back, the
/// first call would otherwise fail on the old, dead connection). A call
/// whose connection dropped after Redis ran it runs twice: for the focus
/// script that answers a stale version (a no-op request without
/// `expectedVersion`, a conflict with one); for an event, a repeat.
pub(crate) async fn once_more<T, Fut>(mut call: impl FnMut() -> Fut) -> redis::RedisResult<T>
where
    Fut: std::future::Future<Output = redis::RedisResult<T>>,
{
    match call().await {
        Err(e) if e.is_connection_dropped() || e.is_io_error() => call().await,
        done => done,
    }
}

/// A Redis error as [`ClusterUnavailable`].
fn unavailable(e: redis::RedisError) -> anyhow::Error {
    anyhow::Error::new(ClusterUnavailable(e.to_string()))
}

impl RedisStore {
    /// A store on `client`; connects at the first call, so a node starts
    /// while Redis is down. A call waits at most about two seconds.
    pub fn new(client: redis::Client) -> anyhow::Result<RedisStore> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn =
            ConnectionManager::new_lazy_with_config(client, config).context("cannot set up a Redis connection")?;
        Ok(RedisStore {
            conn,
            cas: Script::new(CAS),
            restore: Script::new(RESTORE),
        })
    }

    /// Stores `change` (its `version` is the expected one plus one) if the
    /// project is at `change.version - 1`, and publishes it, in one step.
    pub async fn apply(&self, change: &Change) -> anyhow::Result<Result<FocusState, Stale>> {
        let set = serde_json::to_string(&change.set)?;
        let json = serde_json::to_string(change)?;
        let mut invocation = self.cas.prepare_invoke();
        invocation
            .key(state_key(&change.project))
            .key(log_key(&change.project))
            .key(PROJECTS)
            .arg(change.version - 1)
            .arg(set)
            .arg(json)
            .arg(change.project.as_str())
            .arg(CHANGES)
            .arg(LOG_LENGTH);
        let (stored, version, focused): (u8, u64, String) = once_more(|| {
            let (mut conn, invocation) = (self.conn.clone(), &invocation);
            async move { invocation.invoke_async(&mut conn).await }
        })
        .await
        .map_err(unavailable)?;
        let state = FocusState {
            version,
            focused: serde_json::from_str(&focused).context("a focus set in Redis is not JSON")?,
        };
        Ok(if stored == 1 { Ok(state) } else { Err(Stale(state)) })
    }

    /// Puts `state` back for `project` unless Redis has it or a later
    /// version; answers whether it did.
    pub async fn restore(&self, project: &ProjectId, state: &FocusState) -> anyhow::Result<bool> {
        let change = Change {
            project: project.clone(),
            version: state.version,
            session: None,
            focused: false,
            set: state.focused.clone(),
        };
        let mut invocation = self.restore.prepare_invoke();
        invocation
            .key(state_key(project))
            .key(log_key(project))
            .key(PROJECTS)
            .arg(state.version)
            .arg(serde_json::to_string(&state.focused)?)
            .arg(serde_json::to_string(&change)?)
            .arg(project.as_str())
            .arg(CHANGES)
            .arg(LOG_LENGTH);
        let restored: u8 = once_more(|| {
            let (mut conn, invocation) = (self.conn.clone(), &invocation);
            async move { invocation.invoke_async(&mut conn).await }
        })
        .await
        .map_err(unavailable)?;
        Ok(restored == 1)
    }

    /// The logged changes of `project` from version `from` to `to`
    /// (inclusive), in order; those no longer logged are missing.
    pub async fn changes(&self, project: &ProjectId, from: u64, to: u64) -> anyhow::Result<Vec<Change>> {
        let mut conn = self.conn.clone();
        let entries: Vec<(String, Vec<(String, String)>)> = redis::cmd("XRANGE")
            .arg(log_key(project))
            .arg(format!("{from}-0"))
            .arg(format!("{to}-0"))
            .query_async(&mut conn)
            .await
            .map_err(unavailable)?;
        Ok(entries
            .into_iter()
            .flat_map(|(_, fields)| fields)
            .filter(|(k, _)| k == "change")
            .filter_map(|(_, v)| serde_json::from_str(&v).ok())
            .collect())
    }

    pub(crate) async fn read(&self, project: &ProjectId) -> anyhow::Result<FocusState> {
        let cmd = redis::cmd("HMGET")
            .arg(state_key(project))
            .arg("version")
            .arg("focused")
            .to_owned();
        let (version, focused): (Option<u64>, Option<String>) = once_more(|| {
            let (mut conn, cmd) = (self.conn.clone(), &cmd);
            async move { cmd.query_async(&mut conn).await }
        })
        .await
        .map_err(unavailable)?;
        Ok(FocusState {
            version: version.unwrap_or(0),
            focused: match focused {
                Some(f) => serde_json::from_str(&f).context("a focus set in Redis is not JSON")?,
                None => Vec::new(),
            },
        })
    }
}

impl FocusStore for RedisStore {
    fn get<'a>(&'a self, project: &'a ProjectId) -> BoxFuture<'a, anyhow::Result<FocusState>> {
        Box::pin(self.read(project))
    }

    fn compare_and_set<'a>(
        &'a self,
        project: &'a ProjectId,
        expected: u64,
        focused: Vec<SessionId>,
    ) -> BoxFuture<'a, anyhow::Result<Result<FocusState, Stale>>> {
        // Without a named change the diff of the sets names it.
        Box::pin(async move {
            let before = self.read(project).await?;
            let (session, on) = match focused.iter().find(|s| !before.focused.contains(s)) {
                Some(s) => (Some(s.clone()), true),
                None => (before.focused.iter().find(|s| !focused.contains(s)).cloned(), false),
            };
            self.apply(&Change {
                project: project.clone(),
                version: expected + 1,
                session,
                focused: on,
                set: focused,
            })
            .await
        })
    }

    fn compare_and_set_change<'a>(
        &'a self,
        project: &'a ProjectId,
        expected: u64,
        focused: Vec<SessionId>,
        session: &'a SessionId,
        on: bool,
    ) -> BoxFuture<'a, anyhow::Result<Result<FocusState, Stale>>> {
        Box::pin(async move {
            self.apply(&Change {
                project: project.clone(),
                version: expected + 1,
                session: Some(session.clone()),
                focused: on,
                set: focused,
            })
            .await
        })
    }

    fn all(&self) -> BoxFuture<'_, anyhow::Result<Vec<(ProjectId, FocusState)>>> {
        Box::pin(async move {
            let mut conn = self.conn.clone();
            let projects: Vec<String> = conn.smembers(PROJECTS).await.map_err(unavailable)?;
            let mut out = Vec::with_capacity(projects.len());
            for p in projects.into_iter().filter_map(|p| ProjectId::new(p).ok()) {
                let state = self.read(&p).await?;
                out.push((p, state));
            }
            Ok(out)
        })
    }
}
