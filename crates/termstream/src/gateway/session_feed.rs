//! The `sessions` event channel: every `/ws` client subscribed to it hears
//! when a session is created, changes status (starts terminating, exits),
//! gains or loses viewers, or is deleted, so a list of sessions (the web page's) stays live without
//! polling.
//!
//! One task ([`run`]) follows the registry's changes and, for each session,
//! one small task follows its info until the session is deleted or the
//! server stops. Events carry the session's project, so a socket hears only
//! about sessions its credential may read. They say what changed, not the
//! whole record: a client that wants the details asks `GET /api/sessions`.

use std::collections::HashMap;

use termstream_proto::{SessionId, SessionInfo, SessionStatus};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::task::JoinHandle;

use crate::clock::now_ms;
use crate::events::{EventHub, PublishedEvent};
use crate::registry::{Registry, RegistryEvent};
use crate::session::SessionHandle;

/// The channel's name.
pub const CHANNEL: &str = "sessions";

/// Publishes the sessions' changes to `hub` until the registry closes.
pub async fn run(registry: std::sync::Arc<Registry>, hub: EventHub) {
    // Subscribe before listing, so a session created in between is seen
    // (twice at most, and the second watcher replaces the first).
    let mut changes = registry.changes();
    let mut watchers: HashMap<SessionId, Watcher> = HashMap::new();
    for h in registry.handles() {
        watchers.insert(h.id().clone(), Watcher::start(h, &hub, false));
    }
    loop {
        match changes.recv().await {
            Ok(RegistryEvent::Created(h)) => {
                let id = h.id().clone();
                if let Some(old) = watchers.insert(id, Watcher::start(h, &hub, true)) {
                    old.task.abort();
                }
            }
            Ok(RegistryEvent::Deleted(id)) => {
                let project = watchers.remove(&id).map(|w| {
                    w.task.abort();
                    w.project
                });
                publish(&hub, project, &id, "deleted", None, None);
            }
            Err(RecvError::Lagged(_)) => {
                // Resynchronize: follow sessions we missed, drop the gone.
                let live: HashMap<SessionId, SessionHandle> =
                    registry.handles().into_iter().map(|h| (h.id().clone(), h)).collect();
                watchers.retain(|id, w| {
                    let keep = live.contains_key(id);
                    if !keep {
                        w.task.abort();
                        publish(&hub, Some(w.project.clone()), id, "deleted", None, None);
                    }
                    keep
                });
                for (id, h) in live {
                    watchers.entry(id).or_insert_with(|| Watcher::start(h, &hub, true));
                }
            }
            Err(RecvError::Closed) => break,
        }
    }
    for (_, w) in watchers {
        w.task.abort();
    }
}

/// The task following one session, and the session's project (for the
/// `deleted` event, sent once the handle is gone).
struct Watcher {
    task: JoinHandle<()>,
    project: String,
}

impl Watcher {
    fn start(h: SessionHandle, hub: &EventHub, announce: bool) -> Watcher {
        let project = h.project().as_str().to_owned();
        Watcher {
            task: tokio::spawn(follow(h, hub.clone(), announce)),
            project,
        }
    }
}

/// Publishes `created` (when `announce`), then every change of the
/// session's status, and of its viewer count (at most one `viewers` event
/// per [`VIEWERS_EVERY`], with the count at that time).
/// Holds only receivers, not the handle, so it keeps nothing of the session
/// alive; it ends when the actor drops the info's sender. A plain function
/// returning the task's `async` block: an `async fn` would keep its
/// arguments (the handle) in every session's task for its whole life.
fn follow(h: SessionHandle, hub: EventHub, announce: bool) -> impl Future<Output = ()> + Send + 'static {
    let info = h.watch_info();
    let viewers = h.watch_viewers();
    let id = h.id().clone();
    let project = Some(h.project().as_str().to_owned());
    drop(h);
    follow_changes(info, viewers, id, project, hub, announce)
}

/// [`follow`]'s loop, given the receivers.
async fn follow_changes(
    mut info: watch::Receiver<SessionInfo>,
    mut viewers: watch::Receiver<usize>,
    id: SessionId,
    project: Option<String>,
    hub: EventHub,
    announce: bool,
) {
    let mut status = info.borrow_and_update().status;
    let mut count = *viewers.borrow_and_update();
    let mut watching_viewers = true;
    if announce {
        publish(&hub, project.clone(), &id, "created", Some(status), None);
    }
    loop {
        tokio::select! {
            changed = info.changed() => {
                if changed.is_err() {
                    break;
                }
                let now = info.borrow_and_update().status;
                if now != status {
                    status = now;
                    publish(&hub, project.clone(), &id, "status", Some(status), None);
                }
            }
            changed = viewers.changed(), if watching_viewers => {
                if changed.is_err() {
                    watching_viewers = false;
                    continue;
                }
                // Attaches and detaches in a burst make one event. The
                // timer is boxed: it is not part of the idle task.
                Box::pin(tokio::time::sleep(VIEWERS_EVERY)).await;
                let now = *viewers.borrow_and_update();
                if now != count {
                    count = now;
                    publish(&hub, project.clone(), &id, "viewers", None, Some(count));
                }
            }
        }
    }
}

/// The least time between two `viewers` events of one session.
const VIEWERS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

fn publish(
    hub: &EventHub,
    project: Option<String>,
    id: &SessionId,
    change: &str,
    status: Option<SessionStatus>,
    viewers: Option<usize>,
) {
    let mut json = serde_json::json!({
        "type": "session_update",
        "sessionId": id,
        "project": project,
        "change": change,
        "status": status,
        "timestamp": now_ms(),
    });
    if let Some(n) = viewers {
        json["viewers"] = n.into();
    }
    hub.deliver_here(PublishedEvent {
        channel: CHANNEL,
        project,
        json: json.to_string(),
    });
}
