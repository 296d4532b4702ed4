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

use tokio::sync::{broadcast, mpsc};

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
    /// In a cluster: the bridge to the other nodes, and the queue of
    /// events its task forwards in the background.
    cluster: Option<(Arc<EventBridge>, mpsc::Sender<Arc<PublishedEvent>>)>,
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
    /// A hub whose events reach every node through `bridge`; run
    /// `bridge.run(hub, queue)` with the queue answered.
    pub fn clustered(bridge: Arc<EventBridge>) -> (EventHub, mpsc::Receiver<Arc<PublishedEvent>>) {
        let (queue, rx) = mpsc::channel(relay::FORWARD_QUEUE);
        let hub = EventHub {
            cluster: Some((bridge, queue)),
            ..EventHub::default()
        };
        (hub, rx)
    }

    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PublishedEvent>> {
        self.tx.subscribe()
    }

    /// Publishes an event; returns how many sockets of this node may
    /// receive it. Other nodes get it in the background, as Redis allows.
    pub fn publish(&self, event: PublishedEvent) -> usize {
        let event = Arc::new(event);
        if let Some((_, queue)) = &self.cluster
            && let Err(mpsc::error::TrySendError::Full(_)) = queue.try_send(event.clone())
        {
            tracing::warn!(
                channel = event.channel,
                "an event reached this node only: the cluster queue is full"
            );
        }
        self.tx.send(event).unwrap_or(0)
    }

    /// Publishes an event to every node: first to the others (an error if
    /// Redis cannot take it, and then nobody gets it), then to this node's
    /// sockets, whose number is answered.
    pub async fn publish_everywhere(&self, event: PublishedEvent) -> Result<usize, ClusterUnavailable> {
        if let Some((bridge, _)) = &self.cluster {
            bridge.publish(&event).await?;
        }
        Ok(self.deliver_here(event))
    }

    /// Hands an event to this node's sockets only (one from another node).
    pub fn deliver_here(&self, event: PublishedEvent) -> usize {
        self.tx.send(Arc::new(event)).unwrap_or(0)
    }
}
