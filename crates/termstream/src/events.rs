//! The event hub: where `POST /api/events` ([`crate::api::events`])
//! publishes `task_status`, `notification` and `activity_log` events for
//! every `/ws` client subscribed to their channel.
//!
//! The hub is one broadcast channel of pre-serialized events; a client that
//! falls more than [`EVENT_QUEUE`] events behind skips the oldest (and is
//! told so with an error message).

use std::sync::Arc;

use tokio::sync::broadcast;

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
    tx: broadcast::Sender<Arc<PublishedEvent>>,
}

impl Default for EventHub {
    fn default() -> Self {
        EventHub {
            tx: broadcast::channel(EVENT_QUEUE).0,
        }
    }
}

impl EventHub {
    pub fn subscribe(&self) -> broadcast::Receiver<Arc<PublishedEvent>> {
        self.tx.subscribe()
    }

    /// Publishes an event; returns how many sockets may receive it.
    pub fn publish(&self, event: PublishedEvent) -> usize {
        self.tx.send(Arc::new(event)).unwrap_or(0)
    }
}
