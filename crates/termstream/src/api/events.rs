//! `POST /api/events`: checks an event's shape and publishes it to the
//! [`EventHub`](crate::events::EventHub).

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use serde_json::{Map, Value};
use termstream_proto::replies::Published;
use termstream_proto::{ErrorBody, ErrorCode};

use crate::auth::Grant;
use crate::clock::now_ms;
use crate::error::{ApiError, Body};
use crate::events::PublishedEvent;
use crate::state::AppState;

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
    responses((status = 202, description = "Published.", body = Published),
        (status = 503, body = ErrorBody, description = "In a cluster, Redis is unreachable: nothing was delivered.")))]
pub async fn publish(
    State(state): State<AppState>,
    grant: Grant,
    Body(mut event): Body<Value>,
) -> Result<(StatusCode, Json<Published>), ApiError> {
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
    let receivers = state
        .events
        .publish_everywhere(PublishedEvent {
            channel,
            project,
            json: event.to_string(),
        })
        .await
        .map_err(|e| ApiError::new(ErrorCode::ClusterUnavailable, e.to_string()))?;
    Ok((
        StatusCode::ACCEPTED,
        Json(Published {
            receivers: receivers as u64,
        }),
    ))
}
