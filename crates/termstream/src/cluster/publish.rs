//! The owner's side of a session's output: its Redis stream.
//!
//! One task per local session follows the session like any other reader
//! (a subscription to its actor, so the program never waits for it) and
//! appends to `termstream:out:<id>:<epoch>`: contiguous output merged into
//! entries of up to 256 KiB, every batch in one transaction, each
//! `XADD` trimming the stream to `cluster_stream_bytes` by the lowest
//! offset kept (`MINID ~`). When the task falls behind (the broadcast moved
//! on) or Redis failed and came back, it asks Redis where the stream ends
//! and carries on from there with the session's own log (ring, else disk),
//! so the stream catches up without the program noticing; the session's
//! last resize goes out again with that output, as its event may be what
//! was missed. After a failed command, while Redis kept the node's
//! registration, it starts following again once a later heartbeat reached
//! Redis ([`wait_to_retry`]). Its record in the directory is written again
//! on every change of status or size.

use std::sync::Arc;

use redis::RedisResult;
use termstream_proto::{Epoch, SessionId};
use tokio::sync::broadcast::error::{RecvError, TryRecvError};

use super::Cluster;
use super::directory;
use super::redis::stream_key;
use super::wire::{self, Entry};
use crate::session::log::{Chunk, RingRead};
use crate::session::{LogEvent, SessionError, SessionHandle};

/// The most bytes merged into one stream entry.
const ENTRY_BYTES: usize = 256 << 10;
/// The most entries appended in one transaction.
const BATCH: usize = 64;
/// The most bytes read back from the log at once while catching up.
const CATCH_UP: usize = 1 << 20;

/// Why following stopped.
enum Stop {
    /// The session was deleted: the task ends.
    Deleted,
    /// Look again where the stream ends, then go on.
    Resync,
    /// Another node's claim has the id ([`directory::Put::Taken`]): wait
    /// for the next registration, which may find it free (Redis came back
    /// empty, or the other session was deleted), or `lost_after`, after
    /// which that claim may have expired (see [`taken`]), then resync.
    Taken,
}

/// How following stops after a put; `None`: it goes on.
fn stop(put: directory::Put) -> Option<Stop> {
    match put {
        directory::Put::Written => None,
        directory::Put::Deleted => Some(Stop::Deleted),
        directory::Put::Taken => Some(Stop::Taken),
    }
}

/// Publishes one local session's output until it is deleted.
pub async fn run(c: Arc<Cluster>, handle: SessionHandle) {
    let mut registered = c.registered.subscribe();
    // Failures in a row, for the wait before the next try; reset once
    // following reaches the live events.
    let mut failures = 0u32;
    // Whether the last put found the id taken: said once in the log, not
    // at each put again (see [`taken`]).
    let mut was_taken = false;
    loop {
        let never = *registered.borrow_and_update() == 0;
        if never {
            if registered.changed().await.is_err() {
                return;
            }
            continue;
        }
        // Deleted while this task waited: following would write its
        // record again (`directory::put`), which the delete had removed.
        if !still_local(&c, &handle) {
            return drop_stream(&c, &handle).await;
        }
        match follow(&c, &handle, &mut registered, &mut failures, &mut was_taken).await {
            Ok(Stop::Deleted) => return drop_stream(&c, &handle).await,
            Ok(Stop::Resync) => failures = 0,
            Ok(Stop::Taken) => {
                failures = 0;
                if !was_taken {
                    tracing::warn!(
                        session = %handle.id(),
                        "another node's session has taken this session's id: it stays on this node only"
                    );
                }
                was_taken = true;
                if !taken(&c, &mut registered, &handle).await {
                    return drop_stream(&c, &handle).await;
                }
            }
            Err(e) => {
                if failures == 0 {
                    tracing::warn!(
                        event = "cluster.publish_failed",
                        session = %handle.id(),
                        error = %e,
                        "publishing the session to the cluster's Redis failed; trying again"
                    );
                }
                failures += 1;
                wait_to_retry(&c, &mut registered, failures).await;
            }
        }
    }
}

/// Waits, after a put found the id taken by another node's claim, for the
/// next registration or `lost_after` (`true`: put again), or for the
/// session's end (`false`). The publisher ended for good before, and a
/// session that a registration later wrote to Redis (the id free again)
/// had no output there. A registration alone is not enough: the claim may
/// be one that expires (another node's create of the id, under way or
/// dead with it, or a node that restarted under a new name within the
/// expiry), and no registration follows its expiry in steady state. A put
/// writes only when the claim is missing or this node's, so one every
/// `lost_after` is safe, and cheap.
async fn taken(c: &Cluster, registered: &mut tokio::sync::watch::Receiver<u64>, handle: &SessionHandle) -> bool {
    let mut info = handle.watch_info();
    let again = tokio::time::sleep(c.lost_after);
    tokio::pin!(again);
    loop {
        tokio::select! {
            changed = registered.changed() => return changed.is_ok(),
            () = &mut again => return true,
            changed = info.changed() => {
                if changed.is_err() {
                    return false;
                }
            }
        }
    }
}

/// Removes the stream of `handle`'s incarnation once it was deleted here.
/// The delete's forget removes it too, but an append of this task may land
/// after that, and would leave a stream no record names. After this task's
/// last append, nothing writes it again. Best effort: one try.
async fn drop_stream(c: &Cluster, handle: &SessionHandle) {
    if still_local(c, handle) {
        return;
    }
    let key = stream_key(handle.id(), handle.epoch());
    let _: RedisResult<i64> = c.redis.run(redis::cmd("DEL").arg(key)).await;
}

/// Whether `handle`'s session is still this node's, as this incarnation.
fn still_local(c: &Cluster, handle: &SessionHandle) -> bool {
    directory::forget::holds(c, handle.id(), handle.epoch())
}

/// Waits after `failures` failed tries in a row until following may start
/// again.
///
/// If Redis lost this node's registration (it restarted empty, or the node
/// was cut off past `lost_after`), the heartbeat registers the node again
/// and says so through `registered`. But a command can fail while the
/// registration stays (one timed out, or Redis refused writes for a moment,
/// out of memory): nothing would say so then, and the session's stream
/// would stop for good while its record went stale. So the task also tries
/// again once a heartbeat begun after the failure has reached Redis (none
/// does while Redis is down), and no sooner than a heartbeat after the
/// failure, doubled with each failure in a row up to `lost_after`: an error
/// only this task meets is not repeated every heartbeat.
async fn wait_to_retry(c: &Cluster, registered: &mut tokio::sync::watch::Receiver<u64>, failures: u32) {
    tokio::select! {
        _ = registered.changed() => {}
        _ = c.wait_to_retry(failures) => {}
    }
}

/// Where a session's stream ends: the offset after its last entry, and
/// whether that entry is the end of the session. `None`: no stream.
pub async fn stream_end(c: &Cluster, id: &SessionId, epoch: Epoch) -> RedisResult<Option<(u64, bool)>> {
    let v: redis::Value = c
        .redis
        .run(
            redis::cmd("XREVRANGE")
                .arg(stream_key(id, epoch))
                .arg("+")
                .arg("-")
                .arg("COUNT")
                .arg(1),
        )
        .await?;
    Ok(wire::entries(&v).pop().map(|r| match r.entry {
        Entry::Output(chunk) => (chunk.end(), false),
        Entry::Ended(_) => (r.offset, true),
        _ => (r.offset, false),
    }))
}

/// An appender of one session's entries.
struct Appender<'a> {
    c: &'a Cluster,
    key: String,
    /// The offset up to which the stream has the output.
    published: u64,
    /// Whether the stream is known to exist: appends then never create it
    /// (`NOMKSTREAM`), so a stream deleted meanwhile (its session deleted
    /// through another node while this one was cut off) stays deleted.
    exists: bool,
    batch: Vec<(u64, Entry)>,
}

impl Appender<'_> {
    fn push(&mut self, entry: Entry) {
        let offset = match &entry {
            Entry::Output(chunk) => {
                if chunk.end() <= self.published {
                    return;
                }
                let chunk = chunk.from_offset(self.published.max(chunk.offset));
                if let Some((_, Entry::Output(last))) = self.batch.last_mut()
                    && last.stream == chunk.stream
                    && last.end() == chunk.offset
                    && last.data.len() + chunk.data.len() <= ENTRY_BYTES
                {
                    let mut data = Vec::with_capacity(last.data.len() + chunk.data.len());
                    data.extend_from_slice(&last.data);
                    data.extend_from_slice(&chunk.data);
                    last.data = data.into();
                    last.wire = None;
                    self.published = last.end();
                    return;
                }
                self.published = chunk.end();
                self.batch.push((chunk.offset, Entry::Output(chunk)));
                return;
            }
            Entry::Resized { offset, .. } => (*offset).max(self.published),
            Entry::Terminating => self.published,
            Entry::Ended(info) => info.output_offset.max(self.published),
        };
        self.batch.push((offset, entry));
    }

    fn full(&self) -> bool {
        self.batch.len() >= BATCH
    }

    /// Appends the batch in one transaction (`MULTI`/`EXEC`).
    async fn flush(&mut self) -> RedisResult<()> {
        if self.batch.is_empty() {
            return Ok(());
        }
        let min = self.published.saturating_sub(self.c.stream_bytes);
        // In one transaction: a batch goes in whole or not at all. Each
        // command of a plain pipeline could be refused on its own (out of
        // memory for a moment), and a later one taken would leave a hole
        // that the next try, resuming where the stream ends, never fills.
        let mut p = redis::pipe();
        p.atomic();
        for (offset, entry) in self.batch.drain(..) {
            let cmd = p.cmd("XADD").arg(&self.key);
            if self.exists {
                cmd.arg("NOMKSTREAM");
            }
            cmd.arg("MINID").arg("~").arg(min);
            cmd.arg(format!("{offset}-*"));
            for (k, v) in wire::fields(&entry) {
                cmd.arg(k).arg(v);
            }
            cmd.ignore();
        }
        self.c.redis.pipe::<()>(&p).await?;
        self.exists = true;
        Ok(())
    }
}

async fn follow(
    c: &Arc<Cluster>,
    handle: &SessionHandle,
    registered: &mut tokio::sync::watch::Receiver<u64>,
    failures: &mut u32,
    was_taken: &mut bool,
) -> RedisResult<Stop> {
    registered.mark_unchanged();
    let mut info = handle.watch_info();
    let first = info.borrow_and_update().clone();
    if let Some(stop) = stop(directory::put(c, first).await?) {
        return Ok(stop);
    }
    if std::mem::take(was_taken) {
        tracing::info!(session = %handle.id(), "the session's id is free again: publishing the session to the cluster again");
    }
    let start = stream_end(c, handle.id(), handle.epoch()).await?;
    let mut out = Appender {
        c,
        key: stream_key(handle.id(), handle.epoch()),
        published: start.map_or(handle.output_offset().saturating_sub(c.stream_bytes), |s| s.0),
        exists: start.is_some(),
        batch: Vec::new(),
    };
    if start.is_some_and(|s| s.1) {
        return idle(c, registered, &mut info).await;
    }
    let Ok(sub) = handle.subscribe(out.published).await else {
        return Ok(Stop::Deleted);
    };
    // The last resize goes out again with the output caught up: nothing
    // else sends again a resize event the stream missed (it lagged, or
    // Redis failed), and a non-owner keeps the size its stream last gave
    // when a record at the same offset cannot be told from an older one.
    let mut resize = sub.last_resize;
    match sub.backlog {
        RingRead::Held(chunks) => push_caught_up(&mut out, chunks, &mut resize),
        RingRead::Evicted { .. } | RingRead::Future { .. } => {
            while out.published < sub.end {
                let chunks: Vec<Chunk> = match handle.read(out.published, CATCH_UP).await {
                    Ok(chunks) if chunks.is_empty() => break,
                    Ok(chunks) => chunks,
                    Err(SessionError::Gone { earliest }) if earliest > out.published => {
                        out.published = earliest;
                        continue;
                    }
                    Err(_) => return Ok(Stop::Deleted),
                };
                push_caught_up(&mut out, chunks, &mut resize);
                out.flush().await?;
            }
        }
    }
    if let Some((offset, cols, rows)) = resize {
        out.push(Entry::Resized { offset, cols, rows });
    }
    if sub.terminating {
        out.push(Entry::Terminating);
    }
    if let Some(ended) = sub.ended {
        out.push(Entry::Ended(ended));
        out.flush().await?;
        return idle(c, registered, &mut info).await;
    }
    out.flush().await?;
    if *failures > 0 {
        tracing::info!(session = %handle.id(), "publishing the session to the cluster's Redis again");
        *failures = 0;
    }
    let mut live = sub.live;
    let mut last_put = std::time::Instant::now();
    loop {
        tokio::select! {
            ev = live.recv() => {
                let ended = match ev {
                    Ok(ev) => take(&mut out, ev),
                    Err(RecvError::Lagged(_)) => return Ok(Stop::Resync),
                    Err(RecvError::Closed) => return Ok(Stop::Deleted),
                };
                let mut ended = ended;
                while !ended && !out.full() {
                    match live.try_recv() {
                        Ok(ev) => ended = take(&mut out, ev),
                        Err(TryRecvError::Empty) => break,
                        Err(TryRecvError::Lagged(_)) => {
                            out.flush().await?;
                            return Ok(Stop::Resync);
                        }
                        Err(TryRecvError::Closed) => return Ok(Stop::Deleted),
                    }
                }
                out.flush().await?;
                // The record's end offset, for lists on other nodes; at
                // most once a heartbeat.
                if !ended && last_put.elapsed() >= c.heartbeat {
                    last_put = std::time::Instant::now();
                    if let Some(stop) = stop(directory::put(c, handle.info()).await?) {
                        return Ok(stop);
                    }
                }
                if ended {
                    if let Some(stop) = stop(directory::put(c, handle.info()).await?) {
                        return Ok(stop);
                    }
                    return idle(c, registered, &mut info).await;
                }
            }
            changed = info.changed() => {
                if changed.is_err() {
                    return Ok(Stop::Deleted);
                }
                let now = info.borrow_and_update().clone();
                if let Some(stop) = stop(directory::put(c, now).await?) {
                    return Ok(stop);
                }
            }
            _ = registered.changed() => return Ok(Stop::Resync),
        }
    }
}

/// Adds caught-up output, and the last resize (`resize`, taken) before the
/// first chunk that starts at or after it, so that its entry id is its own
/// offset, as when it was live. Ids only rise: a resize that falls inside
/// a chunk goes after it, at that chunk's end.
fn push_caught_up(out: &mut Appender<'_>, chunks: Vec<Chunk>, resize: &mut Option<(u64, u16, u16)>) {
    for ch in chunks {
        if let Some((offset, cols, rows)) = *resize
            && ch.offset >= offset
        {
            out.push(Entry::Resized { offset, cols, rows });
            *resize = None;
        }
        out.push(Entry::Output(ch));
    }
}

/// Adds one event; `true` when it ended the log.
fn take(out: &mut Appender<'_>, ev: LogEvent) -> bool {
    match ev {
        LogEvent::Output(chunk) => out.push(Entry::Output(Arc::unwrap_or_clone(chunk))),
        LogEvent::Resized { offset, cols, rows } => out.push(Entry::Resized { offset, cols, rows }),
        LogEvent::Terminating => out.push(Entry::Terminating),
        LogEvent::Ended(info) => {
            out.push(Entry::Ended(info));
            return true;
        }
    }
    false
}

/// After the end: keeps the record current until the session is deleted
/// or the node registers again (Redis came back empty).
async fn idle(
    c: &Arc<Cluster>,
    registered: &mut tokio::sync::watch::Receiver<u64>,
    info: &mut tokio::sync::watch::Receiver<termstream_proto::SessionInfo>,
) -> RedisResult<Stop> {
    loop {
        tokio::select! {
            changed = info.changed() => {
                if changed.is_err() {
                    return Ok(Stop::Deleted);
                }
                let now = info.borrow_and_update().clone();
                if let Some(stop) = stop(directory::put(c, now).await?) {
                    return Ok(stop);
                }
            }
            _ = registered.changed() => return Ok(Stop::Resync),
        }
    }
}
