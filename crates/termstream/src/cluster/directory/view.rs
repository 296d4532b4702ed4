//! This node's copy of the directory, kept current from its change log.
//!
//! Every write to the directory hash also appends the session's id to the
//! change log `termstream:dirlog` (a stream trimmed to about
//! [`LOG_KEEP`] entries), in the same script or pipeline. A node reads the
//! whole directory once (with the log's last id, atomically), then each
//! heartbeat only the log's entries from the last id it read and the
//! records those name (`HMGET`): with nothing changing that is one short
//! read, however many sessions there are, where reading the whole hash
//! every heartbeat cost sessions × nodes. When the log no longer holds the
//! last id read (trimmed past it, or Redis restarted empty) the node reads
//! the whole directory again.
//!
//! A record the log says was removed (its id logged, its record gone) was
//! deleted; one merely absent from a whole read may be a Redis that
//! restarted empty. The view tells the first kind apart
//! ([`View::take_removed`]), so that a viewer of a deleted session is told
//! `deleted`, and one of a session that may still exist `released`.

use std::collections::{HashMap, HashSet};

use redis::{RedisResult, Value};

use crate::cluster::Cluster;
use crate::cluster::redis::{DIR_KEY, DIR_LOG_KEY};
use crate::cluster::wire::Record;

/// About how many changes the log keeps.
pub const LOG_KEEP: usize = 4096;
/// The most log entries read at once; more means a whole read instead.
const LOG_COUNT: usize = 1024;

/// The directory as this node last read it.
#[derive(Debug, Default)]
pub struct View {
    /// The id of the last log entry read; `None`: read it all next time.
    last: Option<String>,
    /// Every record, by session id.
    records: HashMap<String, Record>,
    /// Ids whose record the log removed since the last
    /// [`View::take_removed`].
    removed: HashSet<String>,
}

impl View {
    /// Every record, as of the last [`View::refresh`].
    pub fn records(&self) -> Vec<Record> {
        self.records.values().cloned().collect()
    }

    /// The ids whose record a logged change removed since the last call
    /// (deleted sessions), taken.
    pub fn take_removed(&mut self) -> HashSet<String> {
        std::mem::take(&mut self.removed)
    }

    /// Forgets where it was: the next refresh reads the whole directory.
    pub fn invalidate(&mut self) {
        self.last = None;
    }

    /// Brings the copy up to date: only the records changed since the last
    /// read, or all of them when that cannot be known.
    pub async fn refresh(&mut self, c: &Cluster) -> RedisResult<()> {
        let r = match self.last.clone() {
            Some(last) => self.changes(c, &last).await,
            None => Ok(false),
        };
        match r {
            Ok(true) => Ok(()),
            Ok(false) => self.whole(c).await,
            Err(e) => {
                self.last = None;
                Err(e)
            }
        }
    }

    /// Reads the changes after `last`; `false` when the log cannot say.
    async fn changes(&mut self, c: &Cluster, last: &str) -> RedisResult<bool> {
        // From `last` itself: if it is not there, the log was trimmed past
        // it (or Redis restarted), and what changed cannot be known.
        let read: Value = c
            .redis
            .run(
                redis::cmd("XRANGE")
                    .arg(DIR_LOG_KEY)
                    .arg(last)
                    .arg("+")
                    .arg("COUNT")
                    .arg(LOG_COUNT + 1),
            )
            .await?;
        let mut news = log_entries(&read);
        if news.first().is_none_or(|(id, _)| id != last) || news.len() > LOG_COUNT {
            return Ok(false);
        }
        news.remove(0);
        let Some((top, _)) = news.last() else {
            return Ok(true);
        };
        let top = top.clone();
        let ids: Vec<String> = news
            .into_iter()
            .map(|(_, id)| id)
            .collect::<HashSet<_>>()
            .into_iter()
            .collect();
        let recs: Vec<Option<String>> = c.redis.run(redis::cmd("HMGET").arg(DIR_KEY).arg(&ids)).await?;
        for (id, rec) in ids.into_iter().zip(recs) {
            match rec.and_then(|r| serde_json::from_str::<Record>(&r).ok()) {
                Some(rec) => {
                    self.removed.remove(&id);
                    self.records.insert(id, rec);
                }
                None => {
                    if self.records.remove(&id).is_some() {
                        self.removed.insert(id);
                    }
                }
            }
        }
        self.last = Some(top);
        Ok(true)
    }

    /// Reads the whole directory and where the log ends, atomically.
    async fn whole(&mut self, c: &Cluster) -> RedisResult<()> {
        let mut p = redis::pipe();
        p.atomic();
        p.cmd("XREVRANGE")
            .arg(DIR_LOG_KEY)
            .arg("+")
            .arg("-")
            .arg("COUNT")
            .arg(1);
        p.cmd("HGETALL").arg(DIR_KEY);
        let (top, all): (Value, HashMap<String, String>) = c.redis.pipe(&p).await?;
        self.records = all
            .into_iter()
            .filter_map(|(id, r)| Some((id, serde_json::from_str(&r).ok()?)))
            .collect();
        // An empty log: every read is whole until something is written.
        self.last = log_entries(&top).pop().map(|(id, _)| id);
        Ok(())
    }
}

/// The `(entry id, session id)` pairs of an `XRANGE` answer on the log.
fn log_entries(v: &Value) -> Vec<(String, String)> {
    let Value::Array(items) = v else { return Vec::new() };
    items
        .iter()
        .filter_map(|item| {
            let Value::Array(pair) = item else { return None };
            let id = text(pair.first()?)?;
            let Value::Array(fields) = pair.get(1)? else {
                return None;
            };
            Some((id, text(fields.get(1)?)?))
        })
        .collect()
}

fn text(v: &Value) -> Option<String> {
    match v {
        Value::BulkString(b) => String::from_utf8(b.clone()).ok(),
        Value::SimpleString(s) => Some(s.clone()),
        _ => None,
    }
}
