//! [`EventBridge`]: event channels across the nodes of a cluster.
//!
//! Every event published on a node goes to Redis on one channel,
//! [`EVENTS`], tagged with the node's random id; every node follows that
//! channel and hands the events of *other* nodes to its local hub. So each
//! socket of the cluster gets an event once (its own node's copy comes
//! straight from the hub, never back through Redis), and the events of one
//! publisher in the order it published them: a node publishes on one
//! connection, one after the other, and Redis delivers a channel's
//! messages in the order it took them.
//!
//! `POST /api/events` publishes to Redis first and answers 503
//! `cluster_unavailable` (nothing delivered) when Redis is down. The
//! `sessions` channel does not cross the bridge: every node's registry
//! holds every session of the cluster (`crate::cluster`), so every node
//! announces each session to its own sockets, once.

use std::sync::Arc;
use std::time::Duration;

use futures_util::StreamExt;
use redis::aio::ConnectionManager;
use serde::{Deserialize, Serialize};
use termstream_proto::ws::CHANNELS;

use super::{EventHub, PublishedEvent};
use crate::focus::redis::{ClusterUnavailable, once_more};

/// The Redis channel every node publishes its events on.
pub const EVENTS: &str = "termstream:events";

/// An event as it travels between nodes.
#[derive(Debug, Serialize, Deserialize)]
struct Wire {
    /// The publishing node, so it skips its own events.
    node: u64,
    channel: String,
    project: Option<String>,
    json: String,
}

/// This node's link to the other nodes' event channels.
pub struct EventBridge {
    /// A random id for this process, told apart from the other nodes by it.
    node: u64,
    client: redis::Client,
    conn: ConnectionManager,
}

impl std::fmt::Debug for EventBridge {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("EventBridge").field("node", &self.node).finish()
    }
}

impl EventBridge {
    /// A bridge over the Redis at `client`; connects lazily.
    pub fn new(client: redis::Client) -> anyhow::Result<Arc<EventBridge>> {
        let config = redis::aio::ConnectionManagerConfig::new()
            .set_connection_timeout(Some(Duration::from_secs(1)))
            .set_response_timeout(Some(Duration::from_secs(2)))
            .set_number_of_retries(1)
            .set_max_delay(Duration::from_millis(500));
        let conn = ConnectionManager::new_lazy_with_config(client.clone(), config)?;
        Ok(Arc::new(EventBridge {
            node: rand::random(),
            client,
            conn,
        }))
    }

    /// Publishes `event` to the other nodes.
    pub async fn publish(&self, event: &PublishedEvent) -> Result<(), ClusterUnavailable> {
        let wire = Wire {
            node: self.node,
            channel: event.channel.to_owned(),
            project: event.project.clone(),
            json: event.json.clone(),
        };
        let payload = serde_json::to_string(&wire).map_err(|e| ClusterUnavailable(e.to_string()))?;
        let cmd = redis::cmd("PUBLISH").arg(EVENTS).arg(payload).to_owned();
        once_more(|| {
            let (mut conn, cmd) = (self.conn.clone(), &cmd);
            async move { cmd.query_async::<i64>(&mut conn).await }
        })
        .await
        .map(drop)
        .map_err(|e| ClusterUnavailable(e.to_string()))
    }

    /// Runs until the process ends: hands other nodes' events to `hub`'s
    /// sockets. Reconnects after an outage.
    pub async fn run(self: Arc<Self>, hub: EventHub) {
        let mut backoff = Duration::from_millis(50);
        loop {
            match self.receive(&hub).await {
                Ok(()) => backoff = Duration::from_millis(50),
                Err(e) => {
                    tracing::debug!(error = %e, "event bridge: Redis unreachable; retrying");
                    backoff = (backoff * 2).min(Duration::from_secs(1));
                }
            }
            tokio::time::sleep(backoff).await;
        }
    }

    /// One subscription, until its connection ends.
    async fn receive(&self, hub: &EventHub) -> anyhow::Result<()> {
        let mut pubsub = tokio::time::timeout(Duration::from_secs(2), self.client.get_async_pubsub())
            .await
            .map_err(|_| anyhow::anyhow!("connecting timed out"))??;
        pubsub.subscribe(EVENTS).await?;
        let mut messages = pubsub.on_message();
        while let Some(msg) = messages.next().await {
            let Ok(payload) = msg.get_payload::<String>() else {
                continue;
            };
            let Ok(wire) = serde_json::from_str::<Wire>(&payload) else {
                tracing::warn!("event bridge: a message that is not an event");
                continue;
            };
            if wire.node == self.node {
                continue;
            }
            // Only the channels this build knows (a static name each).
            let Some(channel) = CHANNELS.iter().find(|c| **c == wire.channel) else {
                continue;
            };
            hub.deliver_here(PublishedEvent {
                channel,
                project: wire.project,
                json: wire.json,
            });
        }
        Ok(())
    }
}
