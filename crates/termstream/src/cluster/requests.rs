//! Requests to a session's owner, and their answers.
//!
//! A node that is asked to act on a session another node owns (input,
//! resize, terminate, delete, a snapshot, output older than the stream
//! keeps, a page of its stored log for a recording) pushes a [`Request`] on the owner's list `termstream:req:<owner>`
//! and waits for the [`Reply`] with the same id on its own list
//! `termstream:rep:<node>`. Each node pops its request list with `BLPOP` on
//! a connection of its own ([`serve`]): a pop takes a request exactly once,
//! so each is applied once, on the owner, by the same code a local request
//! runs (input keeps its `seq`: a repeat is dropped there), and only to the
//! incarnation it names (its `epoch`): a request that sat in the list while
//! the session was deleted and its id reused is answered as for an id the
//! owner does not have, and changes nothing. Another loop
//! ([`collect`]) pops the node's answers and hands each to its waiter.
//! A waiter that times out forgets its request; an answer that comes later
//! is dropped. Both lists expire when nobody uses them.

use std::collections::HashMap;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use base64::Engine as _;
use bytes::Bytes;
use termstream_proto::{Epoch, ErrorCode, SessionId};
use tokio::sync::oneshot;

use super::Cluster;
use super::redis::{BLOCK, replies_key, requests_key};
use super::wire::{self, Answer, Failure, Op, Reply, Request};
use crate::session::SessionError;
use crate::session::store::page;

/// How long a request waits for its answer, beyond its own wait.
pub const ASK_TIMEOUT: Duration = Duration::from_secs(10);
/// The most output one read from an owner returns.
const READ_MAX: usize = 1 << 20;

/// Answers awaited, by request id.
#[derive(Debug, Default)]
pub struct Pending(Mutex<HashMap<u64, oneshot::Sender<Reply>>>);

impl Pending {
    fn lock(&self) -> std::sync::MutexGuard<'_, HashMap<u64, oneshot::Sender<Reply>>> {
        self.0.lock().unwrap_or_else(|p| p.into_inner())
    }
}

/// One awaited answer's slot in [`Pending`], taken out however the wait
/// ends: a caller dropped while it waited (a request whose client hung up)
/// left it there for good when no answer came.
struct Awaited<'a>(&'a Pending, u64);

impl Drop for Awaited<'_> {
    fn drop(&mut self) {
        self.0.lock().remove(&self.1);
    }
}

/// The error of a request whose owner did not answer in time.
fn no_answer(message: String) -> SessionError {
    SessionError::Remote {
        code: ErrorCode::Busy,
        message,
    }
}

/// The error of a request that could not reach the cluster's Redis: 503
/// `cluster_unavailable`, as a create, a focus change or an event post
/// there answers.
pub(crate) fn redis_unreachable(message: String) -> SessionError {
    SessionError::Remote {
        code: ErrorCode::ClusterUnavailable,
        message,
    }
}

/// Asks `owner` to apply `op` to `session` in its incarnation `epoch` (the
/// one this node's record of it names), and waits for its answer. An owner
/// whose session of that id has another epoch answers as for an id it does
/// not have.
pub async fn ask(
    c: &Cluster,
    owner: &str,
    session: &SessionId,
    epoch: Epoch,
    op: Op,
    timeout: Duration,
) -> Result<Answer, SessionError> {
    let id = c.request_id();
    let (tx, rx) = oneshot::channel();
    c.pending.lock().insert(id, tx);
    let _slot = Awaited(&c.pending, id);
    let req = Request {
        id,
        from: c.node.clone(),
        session: session.clone(),
        epoch: Some(epoch),
        op,
    };
    let key = requests_key(owner);
    let mut p = redis::pipe();
    p.cmd("RPUSH")
        .arg(&key)
        .arg(serde_json::to_string(&req).unwrap_or_default())
        .ignore();
    p.cmd("PEXPIRE").arg(&key).arg(expiry(c)).ignore();
    if let Err(e) = c.redis.pipe::<()>(&p).await {
        return Err(redis_unreachable(format!("the cluster's Redis cannot be reached: {e}")));
    }
    match tokio::time::timeout(timeout, rx).await {
        Ok(Ok(reply)) => reply.result.map_err(SessionError::from),
        _ => Err(no_answer(format!(
            "node {owner}, which runs session {session}, did not answer in time"
        ))),
    }
}

/// How long an unused request or answer list lives.
fn expiry(c: &Cluster) -> u64 {
    (c.lost_after.as_millis() as u64).max(1000) * 4
}

/// Pops this node's requests and applies each, forever.
pub async fn serve(c: Arc<Cluster>) {
    let key = requests_key(&c.node);
    blpop_loop(&c, &key, |c, raw| {
        let Ok(req) = serde_json::from_str::<Request>(&raw) else {
            return;
        };
        tokio::spawn(async move {
            let result = apply(&c, &req).await;
            let reply = Reply { id: req.id, result };
            let to = replies_key(&req.from);
            let mut p = redis::pipe();
            p.cmd("RPUSH")
                .arg(&to)
                .arg(serde_json::to_string(&reply).unwrap_or_default())
                .ignore();
            p.cmd("PEXPIRE").arg(&to).arg(expiry(&c)).ignore();
            if let Err(e) = c.redis.pipe::<()>(&p).await {
                tracing::warn!(error = %e, node = %req.from, "cannot answer a request");
            }
        });
    })
    .await
}

/// Pops this node's answers and hands each to its waiter, forever.
pub async fn collect(c: Arc<Cluster>) {
    let key = replies_key(&c.node);
    blpop_loop(&c, &key, |c, raw| {
        if let Ok(reply) = serde_json::from_str::<Reply>(&raw)
            && let Some(tx) = c.pending.lock().remove(&reply.id)
        {
            let _ = tx.send(reply);
        }
    })
    .await
}

/// Pops `key` on a connection of its own, calling `each` with every item;
/// reconnects after a failure, once a heartbeat later.
async fn blpop_loop(c: &Arc<Cluster>, key: &str, each: impl Fn(Arc<Cluster>, String)) {
    let mut reconnects = c.redis.reconnects(c.heartbeat);
    loop {
        let mut conn = reconnects.next().await;
        loop {
            let popped: redis::RedisResult<Option<(String, String)>> = redis::cmd("BLPOP")
                .arg(key)
                .arg(BLOCK.as_secs_f64())
                .query_async(&mut conn)
                .await;
            match popped {
                Ok(Some((_, raw))) => each(c.clone(), raw),
                Ok(None) => {}
                Err(_) => break,
            }
        }
    }
}

/// Applies a request to a local session, as a local caller would: only to
/// the incarnation it names, when it names one; any other is answered as
/// an id this node does not have.
async fn apply(c: &Cluster, req: &Request) -> Result<Answer, Failure> {
    let fail = |e: SessionError| Failure::from(&e);
    let local = c.registry.get(&req.session).filter(|h| !h.is_remote());
    let Some(h) = local.clone().filter(|h| req.epoch.is_none_or(|e| e == h.epoch())) else {
        if matches!(req.op, Op::Delete) {
            return Ok(Answer::Deleted(false));
        }
        // The same words whether another incarnation has the id or none
        // does: which one is there is not the asker's to learn (the two are
        // indistinguishable on purpose, see docs/protocol.md).
        let id = req.session.as_str();
        let message = match req.epoch {
            Some(epoch) => format!("no session has id {id:?} and epoch {epoch}"),
            None => format!("no session has id {id:?}"),
        };
        return Err(Failure {
            code: ErrorCode::SessionNotFound,
            message,
            earliest: None,
            busy: None,
        });
    };
    match &req.op {
        Op::Input {
            data,
            eof,
            seq,
            wait_ms,
        } => {
            let data = base64::engine::general_purpose::STANDARD
                .decode(data)
                .map_err(|e| fail(SessionError::Io(std::io::Error::other(e))))?;
            let seq = seq.as_ref().map(|(client, n)| (Arc::from(client.as_str()), *n));
            let wait = Duration::from_millis(*wait_ms);
            h.input(Bytes::from(data), *eof, seq, wait).await.map_err(fail)?;
            Ok(Answer::Done)
        }
        Op::Resize { cols, rows, info: true } => {
            Ok(Answer::Info(h.resize_with_info(*cols, *rows).await.map_err(fail)?))
        }
        Op::Resize {
            cols,
            rows,
            info: false,
        } => {
            h.resize(*cols, *rows).await.map_err(fail)?;
            Ok(Answer::Done)
        }
        // Answered once the session took it (its signals went out); the
        // asker waits for the end, which reaches it through the directory
        // and the stream.
        // A stuck actor answers `busy` within half the asker's own wait, so
        // that the answer reaches it (it then waits for the end), and this
        // task does not wait for good.
        Op::Terminate => match tokio::time::timeout(ASK_TIMEOUT / 2, h.begin_terminate()).await {
            Ok(taken) => taken.map(|()| Answer::Done).map_err(fail),
            Err(_) => Err(fail(SessionError::Busy(req.session.clone()))),
        },
        // The epoch is checked again as the session leaves the map: another
        // incarnation may have replaced it since.
        Op::Delete => Ok(Answer::Deleted(c.registry.delete_epoch(&req.session, req.epoch).await)),
        Op::Snapshot => Ok(Answer::Snapshot(h.snapshot().await.map_err(fail)?)),
        Op::Read { since, max } => {
            let chunks = h.read(*since, (*max).min(READ_MAX)).await.map_err(fail)?;
            Ok(wire::encode_chunks(&chunks))
        }
        Op::Events { at, max } => {
            let (dir, at, max) = (h.dir().to_owned(), *at, (*max).min(READ_MAX));
            let page = tokio::task::spawn_blocking(move || page::read_page(&dir, at, max))
                .await
                .map_err(|e| fail(SessionError::Io(std::io::Error::other(e))))?
                .map_err(|e| fail(SessionError::Io(e)))?;
            Ok(wire::encode_page(page))
        }
    }
}

#[cfg(test)]
mod tests;
