//! The event hub: where `POST /api/events` ([`crate::api::events`])
//! publishes `task_status`, `notification` and `activity_log` events for
//! every `/ws` client subscribed to their channel.
//!
//! The hub is one broadcast channel of pre-serialized events; a client that
//! falls more than [`EVENT_QUEUE`] events behind skips the oldest (and is
//! told so with an error message).
//!
//! In a cluster ([`EventHub::clustered`]) events also go to and come from
//! the other nodes through Redis ([`relay::EventBridge`]).

pub mod relay;

use std::sync::Arc;

use tokio::sync::broadcast;

use crate::focus::redis::ClusterUnavailable;
use relay::EventBridge;

/// Events a subscriber may fall behind before it skips some.
pub const EVENT_QUEUE: usize = 256;

/// One published event.
#[derive(Debug)]
pub struct PublishedEvent {
    pub channel: &'static str,
    /// The event's `project`, if it names one: only sockets that may read
    /// that project receive it; an event with none goes to admin sockets.
    pub project: Option<String>,
    /// The event as JSON text, as sent to clients.
    pub json: String,
}

/// Where events are published; cheap to clone.
#[derive(Debug, Clone)]
pub struct EventHub {
    /// This node's sockets; each subscribes.
    tx: broadcast::Sender<Arc<PublishedEvent>>,
    /// In a cluster: the bridge to the other nodes.
    cluster: Option<Arc<EventBridge>>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            tx: broadcast::channel(EVENT_QUEUE).0,
            cluster: None,
        }
    }
}

impl EventHub {
    /// A hub whose published events reach every node through `bridge`;
    /// run `bridge.run(hub)` for the other nodes' events to reach this one.
    pub fn clustered(bridge: Arc<EventBridge>) -> EventHub {
        EventHub {
            cluster: Some(bridge),
            ..EventHub::default()
        }
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PublishedEvent>> {
        self.tx.subscribe()
    }

    /// Publishes an event to every node: first to the others (an error if
    /// Redis cannot take it, and then nobody gets it), then to this node's
    /// sockets, whose number is answered. In a task of its own (not waited
    /// for at shutdown), so that a caller dropped after the others got the
    /// event (a post whose client hung up) does not keep it from this
    /// node's sockets.
    pub async fn publish_everywhere(&self, event: PublishedEvent) -> Result<usize, ClusterUnavailable> {
        let Some(bridge) = self.cluster.clone() else {
            return Ok(self.deliver_here(event));
        };
        let hub = self.clone();
        tokio::spawn(async move {
            bridge.publish(&event).await?;
            Ok(hub.deliver_here(event))
        })
        .await
        .unwrap_or_else(|e| match e.try_into_panic() {
            Ok(panic) => std::panic::resume_unwind(panic),
            // Cancelled: only when the runtime itself stops.
            Err(_) => Err(ClusterUnavailable("the server is shutting down".into())),
        })
    }

    /// Hands an event to this node's sockets only: one from another node,
    /// or one every node makes itself (the `sessions` channel: each node's
    /// registry holds the cluster's sessions, so each announces them).
    pub fn deliver_here(&self, event: PublishedEvent) -> usize {
        self.tx.send(Arc::new(event)).unwrap_or(0)
    }
}
