//! Scale-out: several nodes serve as one, through Redis (`--cluster`).
//!
//! # Layout
//! - [`redis`]: the connections, and the name of every key.
//! - [`wire`]: records, stream entries, requests and answers.
//! - [`directory`]: the heartbeat, id claims, the directory of session
//!   records, liveness (sessions of a dead node become `lost`), and
//!   removing deleted sessions from Redis, retried until it goes through
//!   ([`mod@directory::forget`]).
//! - [`publish`]: the owner's side of a session's output: one task per
//!   local session appends its output to the session's Redis stream.
//! - [`remote`]: the other nodes' side: a stand-in per remote session
//!   behind a [`crate::session::SessionHandle`] (the one seam the gateway
//!   reads through), with one stream reader per session while it has
//!   viewers.
//! - [`requests`]: input, resize, terminate, delete, snapshots and old
//!   output asked of a session's owner, answered once.
//!
//! The node that spawns a session owns it: its process, its disk log (the
//! source of truth) and its screen. Every other node learns of it from the
//! directory and reads it from its stream. Without `--cluster` none of
//! this runs.

pub mod directory;
pub mod publish;
pub mod redis;
pub mod remote;
pub mod requests;
#[cfg(test)]
mod test_redis;
pub mod wire;

use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use futures_util::future::BoxFuture;
use termstream_proto::{Epoch, SessionId};
use tokio::sync::watch;

use crate::registry::Registry;
use crate::registry::remote::{ClaimError, ClusterLink};
use crate::session::{SessionError, SessionHandle};

/// This node's part in a cluster.
#[derive(Debug)]
pub struct Cluster {
    /// This node's name in Redis: random per start.
    pub node: String,
    pub redis: redis::Redis,
    pub registry: Arc<Registry>,
    /// How often the heartbeat runs.
    pub heartbeat: Duration,
    /// After how long a silent node is dead.
    pub lost_after: Duration,
    /// The output bytes a stream keeps.
    pub stream_bytes: u64,
    /// How long a transfer waits for its client to read.
    pub transfer_stall: Duration,
    /// Why Redis cannot be used now; `None` while it works.
    down: Mutex<Option<String>>,
    /// Bumped each time this node (re)registered its sessions in Redis
    /// (at start, and after Redis came back empty): publishers then check
    /// what their stream lacks. Sent by the heartbeat; received by every
    /// publisher.
    pub registered: watch::Sender<u64>,
    /// How many heartbeats have begun; the number of the last one that
    /// reached Redis is in `beat_reached`. A publisher whose command
    /// failed waits for a beat begun after the failure to reach Redis.
    pub beats_begun: AtomicU64,
    /// The number of the last heartbeat that reached Redis (after it
    /// registered the node again, if it had to). Sent by the heartbeat;
    /// received by publishers after a failure.
    pub beat_reached: watch::Sender<u64>,
    /// Request ids of this node.
    next_request: AtomicU64,
    /// Answers awaited from owners.
    pub pending: requests::Pending,
    /// The stand-ins of remote sessions, kept by the directory sync.
    pub stand_ins: remote::StandIns,
    /// Slots for recordings of remote sessions streamed through this node.
    pub transfers: remote::recording::Transfers,
    /// Ids whose forget (removal from Redis) is still to go through; kept
    /// by the deletes, the failed creates, the heartbeat and the forgets'
    /// own tasks.
    pub forgets: directory::forget::Forgets,
}

impl Cluster {
    /// Joins the cluster at `url`: starts the heartbeat, the request loops,
    /// and a publisher for every session loaded so far (later creates start
    /// theirs through [`ClusterLink::publish`]). To be called before anything
    /// creates sessions, or a create racing it may be published twice. Redis need
    /// not be reachable yet: the node serves anyway and says so in
    /// `/readyz` until it is.
    pub fn start(url: &str, registry: Arc<Registry>) -> anyhow::Result<Arc<Cluster>> {
        let config = registry.config();
        let cluster = Arc::new(Cluster {
            node: format!("n{:012x}", rand::random::<u64>() >> 16),
            redis: redis::Redis::new(url)?,
            heartbeat: Duration::from_millis(config.cluster_heartbeat_ms.max(10)),
            lost_after: Duration::from_millis(config.cluster_lost_ms.max(config.cluster_heartbeat_ms * 2)),
            stream_bytes: config.cluster_stream_bytes.max(1 << 16),
            transfer_stall: Duration::from_millis(config.download_stall_ms.max(1)),
            registry: registry.clone(),
            down: Mutex::new(Some("not connected to the cluster's Redis yet".into())),
            registered: watch::channel(0).0,
            beats_begun: AtomicU64::new(0),
            beat_reached: watch::channel(0).0,
            next_request: AtomicU64::new(1),
            pending: requests::Pending::default(),
            stand_ins: remote::StandIns::default(),
            transfers: remote::recording::Transfers::default(),
            forgets: directory::forget::Forgets::default(),
        });
        tracing::info!(node = %cluster.node, "joining the cluster");
        registry.remote().set_link(Arc::new(Link(cluster.clone())));
        // Sessions launched from here on are published by their create
        // (`ClusterLink::publish`); none is launched before the server
        // serves, so none is published twice.
        for handle in registry.handles() {
            tokio::spawn(publish::run(cluster.clone(), handle));
        }
        tokio::spawn(directory::heartbeat(cluster.clone()));
        tokio::spawn(requests::serve(cluster.clone()));
        tokio::spawn(requests::collect(cluster.clone()));
        Ok(cluster)
    }

    /// Records that Redis failed (`Some`) or works again (`None`).
    pub fn set_down(&self, why: Option<String>) {
        let mut down = self.down.lock().unwrap_or_else(|p| p.into_inner());
        match (&*down, &why) {
            (None, Some(w)) => tracing::warn!(reason = %w, "the cluster's Redis is unreachable"),
            (Some(_), None) => tracing::info!("the cluster's Redis is reachable"),
            _ => {}
        }
        *down = why;
    }

    /// Why Redis cannot be used now.
    pub fn down(&self) -> Option<String> {
        self.down.lock().unwrap_or_else(|p| p.into_inner()).clone()
    }

    /// Waits after `failures` failed tries in a row (at least 1) of a
    /// command this node must get through: until a heartbeat begun after
    /// the failure has reached Redis (none does while Redis is down), and
    /// no sooner than a heartbeat after the failure, doubled with each
    /// failure in a row up to `lost_after`, so that an error only this
    /// command meets is not repeated every heartbeat.
    pub async fn wait_to_retry(&self, failures: u32) {
        let failed_at = self.beats_begun.load(Ordering::SeqCst);
        let backoff = self
            .heartbeat
            .saturating_mul(1 << failures.saturating_sub(1).min(10))
            .min(self.lost_after);
        let not_before = tokio::time::Instant::now() + backoff;
        let mut reached = self.beat_reached.subscribe();
        // The sender lives in `self`: never closed.
        let _ = reached.wait_for(|&n| n > failed_at).await;
        tokio::time::sleep_until(not_before).await;
    }

    /// A fresh request id.
    pub fn request_id(&self) -> u64 {
        self.next_request.fetch_add(1, Ordering::Relaxed)
    }
}

/// The registry's link to the cluster ([`ClusterLink`]).
#[derive(Debug)]
struct Link(Arc<Cluster>);

impl ClusterLink for Link {
    fn claim<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<(), ClaimError>> {
        Box::pin(directory::claim(&self.0, id))
    }

    fn release<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, ()> {
        Box::pin(directory::release(&self.0, id))
    }

    fn created(&self, id: &SessionId, epoch: Epoch) {
        directory::created(&self.0, id, epoch);
    }

    fn forget(&self, id: &SessionId, epoch: Epoch) {
        directory::forget(&self.0, id.clone(), Some(epoch));
    }

    fn publish(&self, handle: &SessionHandle) {
        tokio::spawn(publish::run(self.0.clone(), handle.clone()));
    }

    fn delete<'a>(&'a self, id: &'a SessionId) -> BoxFuture<'a, Result<bool, SessionError>> {
        Box::pin(async move {
            let Some((owner, epoch)) = remote::owner_and_epoch(&self.0, id) else {
                return Ok(false);
            };
            // A dead owner cannot be asked: its session (`lost`) is
            // removed from Redis here, and every node's sync drops it.
            match directory::forget_lost(&self.0, id, &owner, epoch).await {
                Ok(Some(deleted)) => {
                    if deleted {
                        remote::drop_stand_in(&self.0, id);
                    }
                    return Ok(deleted);
                }
                Ok(None) => {}
                Err(e) => return Err(requests::redis_unreachable(e.to_string())),
            }
            let answer = requests::ask(&self.0, &owner, id, epoch, wire::Op::Delete, requests::ASK_TIMEOUT).await?;
            let deleted = matches!(answer, wire::Answer::Deleted(true));
            if deleted {
                remote::drop_stand_in(&self.0, id);
            }
            Ok(deleted)
        })
    }

    fn unready(&self) -> Option<String> {
        self.0
            .down()
            .map(|why| format!("the cluster's Redis cannot be used: {why}"))
    }

    fn forgets_pending(&self) -> usize {
        self.0.forgets.count()
    }

    fn hurry_forgets(&self) {
        self.0.forgets.hurry();
    }

    fn settle_forgets(&self, limit: Duration) -> BoxFuture<'_, bool> {
        Box::pin(self.0.forgets.settle_all(limit))
    }
}
