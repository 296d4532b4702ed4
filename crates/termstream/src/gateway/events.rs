//! Event channels: `POST /api/events` publishes a `task_status`,
//! `notification` or `activity_log` event to every `/ws` client subscribed
//! to its channel.
//!
//! The hub is one broadcast channel of pre-serialized events; a client that
//! falls more than [`EVENT_QUEUE`] events behind skips the oldest (and is
//! told so with an error message).

use std::sync::Arc;

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use termstream_proto::ErrorBody;
use tokio::sync::broadcast;

use crate::api::AppState;
use crate::api::error::{ApiError, Body};
use crate::auth::Grant;
use crate::clock::now_ms;

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

fn require_str(obj: &Map<String, Value>, field: &str) -> Result<(), ApiError> {
    match obj.get(field) {
        Some(Value::String(_)) => Ok(()),
        Some(_) => Err(ApiError::bad_request(format!("{field} must be a string"))),
        None => Err(ApiError::bad_request(format!("{field} is required"))),
    }
}

/// Checks an event's shape and names its channel.
pub fn validate(event: &Value) -> Result<&'static str, ApiError> {
    let Some(obj) = event.as_object() else {
        return Err(ApiError::bad_request("an event is a JSON object"));
    };
    let channel = match obj.get("type").and_then(Value::as_str) {
        Some("task_status") => {
            require_str(obj, "taskId")?;
            require_str(obj, "status")?;
            "task_status"
        }
        Some("notification") => {
            require_str(obj, "title")?;
            require_str(obj, "message")?;
            if let Some(p) = obj.get("priority")
                && !(p.is_string() || p.is_number())
            {
                return Err(ApiError::bad_request("priority must be a string or a number"));
            }
            "notification"
        }
        Some("activity_log") => {
            require_str(obj, "level")?;
            require_str(obj, "message")?;
            if obj.get("metadata").is_some_and(|m| !m.is_object() && !m.is_null()) {
                return Err(ApiError::bad_request("metadata must be an object"));
            }
            "activity_log"
        }
        Some(other) => {
            return Err(ApiError::bad_request(format!(
                "unknown event type {other:?}; use task_status, notification or activity_log"
            )));
        }
        None => return Err(ApiError::bad_request("type is required")),
    };
    Ok(channel)
}

/// Publish an event to subscribed WebSocket clients.
#[utoipa::path(post, path = "/api/events", request_body = Object,
    responses((status = 202, description = "published; `{\"receivers\":N}`"), (status = 400, body = ErrorBody)))]
pub async fn publish(
    State(state): State<AppState>,
    grant: Grant,
    Body(mut event): Body<Value>,
) -> Result<(StatusCode, Json<Value>), ApiError> {
    let channel = validate(&event)?;
    let project = match event.get("project") {
        None | Some(Value::Null) => None,
        Some(Value::String(p)) => Some(p.clone()),
        Some(_) => return Err(ApiError::bad_request("project must be a string")),
    };
    grant.check_publish(project.as_deref())?;
    if let Some(obj) = event.as_object_mut() {
        obj.entry("timestamp").or_insert_with(|| now_ms().into());
    }
    let receivers = state.events.publish(PublishedEvent {
        channel,
        project,
        json: event.to_string(),
    });
    Ok((
        StatusCode::ACCEPTED,
        Json(serde_json::json!({ "receivers": receivers })),
    ))
}
