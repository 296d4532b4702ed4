//! The `sessions` event channel: every `/ws` client subscribed to it hears
//! when a session is created, changes status (starts terminating, exits),
//! gains or loses viewers, or is deleted, so a list of sessions (the web page's) stays live without
//! polling.
//!
//! One task ([`run`]) follows the registry's changes and every session,
//! without a task or a `watch` receiver per session: a session marks itself
//! in the task's [`Changed`] set when its info wakes receivers or its
//! viewer count changes (`session/presence.rs`), and the task compares each
//! marked session with what it published last. Events carry the session's
//! project, so a socket hears only about sessions its credential may read.
//! They say what changed, not the whole record: a client that wants the
//! details asks `GET /api/sessions`.
//!
//! It follows every session readable on this node (in a cluster, other
//! nodes' too), one incarnation per id: the registry's current one (a
//! session deleted and created again under its id, or a new copy of
//! another node's session, is another). A lag of the registry's changes
//! (more than `session_changes_queue` while the task was busy) is met with
//! a resync against that listing: what is gone or another incarnation now
//! is published `deleted`, what is new `created`; the stale events the
//! channel then still holds are skipped.
//!
//! A `deleted` of another node's session that this node only let go of
//! (its stand-in released: three directory misses, or a lost session's
//! node came back) carries `"reason": "released"`: the session may still
//! exist and be `created` again here. The stand-in's [`Departure`] says so;
//! it is marked before the registry drops the handle, so it is known when
//! the `Deleted` (or a resync) is seen.

use std::collections::{HashMap, VecDeque};
use std::sync::Arc;

use termstream_proto::ws::DetachReason;
use termstream_proto::{SessionId, SessionInfo, SessionStatus};
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::watch;
use tokio::time::Instant;

use crate::clock::now_ms;
use crate::events::{EventHub, PublishedEvent};
use crate::registry::{Registry, RegistryEvent};
use crate::session::kin::Kin;
use crate::session::remote::Departure;
use crate::session::{Changed, Presence, SessionHandle};

/// The channel's name.
pub const CHANNEL: &str = "sessions";

/// Publishes the sessions' changes to `hub` until the registry closes:
/// `created`, every change of a session's status, its viewer count (at
/// most one `viewers` event per [`VIEWERS_EVERY`] and session, with the
/// count at that time) and `deleted`.
pub async fn run(registry: Arc<Registry>, hub: EventHub) {
    // Subscribe before listing, so a session created in between is seen
    // (listed silently, then published at its `Created`).
    let mut changes = registry.changes();
    let changed = Arc::new(Changed::default());
    let mut feed = Feed {
        hub,
        changed: changed.clone(),
        sessions: HashMap::new(),
        viewers_due: VecDeque::new(),
    };
    for h in registry.all_handles() {
        feed.listed(&registry, h);
    }
    loop {
        let due = feed.viewers_due.front().map(|(at, _)| *at);
        tokio::select! {
            event = changes.recv() => match event {
                Ok(RegistryEvent::Created(h)) => feed.created(&registry, h),
                Ok(RegistryEvent::Deleted(id)) => feed.deleted(&registry, &id),
                Err(RecvError::Lagged(missed)) => {
                    tracing::debug!(missed, "the sessions channel missed session changes: resynchronizing");
                    feed.resync(&registry);
                }
                Err(RecvError::Closed) => break,
            },
            () = changed.marked() => feed.look(),
            () = sleep_until_opt(due), if due.is_some() => feed.viewers_now(),
        }
    }
}

/// The task's state: what it last published of each session.
struct Feed {
    hub: EventHub,
    changed: Arc<Changed>,
    sessions: HashMap<SessionId, Followed>,
    /// Sessions whose viewer count changed, in the order their
    /// [`VIEWERS_EVERY`] ends (each at most once).
    viewers_due: VecDeque<(Instant, SessionId)>,
}

/// One followed session. Holds a receiver of its info and its viewer
/// count, not its handle: it keeps nothing of the session alive.
struct Followed {
    presence: Arc<Presence>,
    /// The copy's info channel, which tells it apart from any other under
    /// its id ([`Kin::is_same`]).
    info: watch::Receiver<SessionInfo>,
    /// Why the session went, read once it left the registry: `released`
    /// for a stand-in this node let go of.
    departure: Departure,
    project: String,
    status: SessionStatus,
    viewers: usize,
    /// Whether the session waits in `viewers_due`.
    viewers_waiting: bool,
    /// Whether its `created` was published (not for one listed at start,
    /// until its `Created` comes).
    announced: bool,
}

impl Feed {
    /// A session listed at start: followed silently (its `created` is
    /// published if its `Created` comes after), if it is the registry's
    /// current incarnation of its id and not followed yet.
    fn listed(&mut self, registry: &Registry, h: SessionHandle) {
        if is_current(registry, &h) && !self.sessions.contains_key(h.id()) {
            self.follow(h, false);
        }
    }

    /// A session was created (or another node's session appeared here):
    /// see [`on_created`].
    fn created(&mut self, registry: &Registry, h: SessionHandle) {
        let follows = match self.sessions.get(h.id()) {
            None => Follows::Nothing,
            Some(f) if Kin::is_same(&h, &f.info) => Follows::This { announced: f.announced },
            Some(_) => Follows::Another,
        };
        match on_created(is_current(registry, &h), follows) {
            OnCreated::Skip => {}
            OnCreated::Announce => {
                if let Some(f) = self.sessions.get_mut(h.id()) {
                    f.announced = true;
                    publish(
                        &self.hub,
                        Some(f.project.clone()),
                        h.id(),
                        "created",
                        Some(f.status),
                        None,
                    );
                }
            }
            OnCreated::Follow => self.follow(h, true),
        }
    }

    /// A session was deleted (or this node let go of its copy of another
    /// node's session): see [`publishes_deleted`].
    fn deleted(&mut self, registry: &Registry, id: &SessionId) {
        let follows = self.sessions.get(id).map(|f| {
            if registry.get(id).is_some_and(|cur| Kin::is_same(&cur, &f.info)) {
                Follows::This { announced: f.announced }
            } else {
                Follows::Another
            }
        });
        if publishes_deleted(follows.unwrap_or(Follows::Nothing))
            && let Some(f) = self.sessions.remove(id)
        {
            publish_deleted(&self.hub, f.project, id, &f.departure);
        }
    }

    /// After changes were missed: what is followed but gone from this node
    /// (its own sessions and other nodes'), or another incarnation (or
    /// copy) now, is published `deleted` and dropped; what is not followed
    /// is followed and published `created`.
    fn resync(&mut self, registry: &Registry) {
        let mut live: HashMap<SessionId, SessionHandle> = HashMap::new();
        for h in registry.all_handles() {
            if is_current(registry, &h) {
                live.insert(h.id().clone(), h);
            }
        }
        let hub = self.hub.clone();
        self.sessions.retain(|id, f| {
            let keep = live.get(id).is_some_and(|h| Kin::is_same(h, &f.info));
            if !keep {
                publish_deleted(&hub, f.project.clone(), id, &f.departure);
            }
            keep
        });
        for (id, h) in live {
            if !self.sessions.contains_key(&id) {
                self.follow(h, true);
            }
        }
    }

    /// Starts following `h` (replacing an earlier follow of its id), and
    /// publishes `created` when `announce`.
    fn follow(&mut self, h: SessionHandle, announce: bool) {
        // Marks from here on: what changes after the look below is seen.
        h.follow_changes(&self.changed);
        let info = h.watch_info();
        let status = info.borrow().status;
        let project = h.project().as_str().to_owned();
        if announce {
            publish(&self.hub, Some(project.clone()), h.id(), "created", Some(status), None);
        }
        let f = Followed {
            announced: announce,
            departure: h.departure(),
            viewers: h.viewers(),
            presence: h.presence().clone(),
            info,
            project,
            status,
            viewers_waiting: false,
        };
        self.sessions.insert(h.id().clone(), f);
    }

    /// Publishes the status changes of the marked sessions, and starts the
    /// wait of those whose viewer count changed.
    fn look(&mut self) {
        for id in self.changed.take() {
            let Some(f) = self.sessions.get_mut(&id) else {
                continue;
            };
            let now = f.info.borrow().status;
            if now != f.status {
                f.status = now;
                publish(&self.hub, Some(f.project.clone()), &id, "status", Some(now), None);
            }
            // Attaches and detaches in a burst make one event.
            if f.presence.viewers() != f.viewers && !f.viewers_waiting {
                f.viewers_waiting = true;
                self.viewers_due.push_back((Instant::now() + VIEWERS_EVERY, id));
            }
        }
    }

    /// Publishes the viewer counts whose wait is over, where they changed.
    fn viewers_now(&mut self) {
        let now = Instant::now();
        while let Some((at, _)) = self.viewers_due.front()
            && *at <= now
        {
            let Some((_, id)) = self.viewers_due.pop_front() else {
                break;
            };
            let Some(f) = self.sessions.get_mut(&id) else {
                continue;
            };
            f.viewers_waiting = false;
            let count = f.presence.viewers();
            if count != f.viewers {
                f.viewers = count;
                publish(&self.hub, Some(f.project.clone()), &id, "viewers", None, Some(count));
            }
        }
    }
}

/// What the feed follows under an id, as it stands to a handle coming in
/// (`Created`), or to the registry's handle of the id (`Deleted`).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Follows {
    Nothing,
    /// That very incarnation (and copy); whether its `created` was
    /// published.
    This {
        announced: bool,
    },
    /// Another incarnation or copy (for a `Deleted`: the registry holds
    /// another than the one followed, or none).
    Another,
}

/// What a `Created` does.
#[derive(Debug, PartialEq, Eq)]
enum OnCreated {
    Skip,
    /// Publishes `created` of the session followed (listed at start).
    Announce,
    /// Follows the handle (replacing what was followed under its id) and
    /// publishes `created`.
    Follow,
}

/// Decides on a `Created`: `current`, whether its handle is the
/// registry's current one of its id. Only that is acted on: after a lag
/// the channel resumes at events older than the resync's listing, whose
/// incarnations must not replace the current one, nor be followed when the
/// id is gone (they were deleted: a session created and deleted before the
/// feed read its `Created` is told neither `created` nor `deleted`). Its
/// `created` is published once per incarnation (or copy).
fn on_created(current: bool, follows: Follows) -> OnCreated {
    match follows {
        _ if !current => OnCreated::Skip,
        Follows::This { announced: true } => OnCreated::Skip,
        Follows::This { announced: false } => OnCreated::Announce,
        Follows::Nothing | Follows::Another => OnCreated::Follow,
    }
}

/// Whether a `Deleted` publishes `deleted`: `follows`, how what the feed
/// follows under the id stands to the registry's handle of it. Only for
/// an id followed (a stale `Deleted` after a resync that published it
/// already, or of a session never followed, says nothing), and not when
/// the registry holds the very incarnation followed (the event was of an
/// older one, seen after a resync followed the newer).
fn publishes_deleted(follows: Follows) -> bool {
    follows == Follows::Another
}

/// Whether `h` is the registry's current handle of its id.
fn is_current(registry: &Registry, h: &SessionHandle) -> bool {
    registry.get(h.id()).is_some_and(|cur| cur.kin(h) == Kin::Same)
}

/// Sleeps until `at`; never returns without one (the branch is disabled).
async fn sleep_until_opt(at: Option<Instant>) {
    match at {
        Some(at) => tokio::time::sleep_until(at).await,
        None => std::future::pending().await,
    }
}

/// The least time between two `viewers` events of one session.
const VIEWERS_EVERY: std::time::Duration = std::time::Duration::from_millis(100);

/// Publishes the `deleted` of a session gone from this node: with
/// `"reason": "released"` when this node let go of its copy of another
/// node's session (see [`deleted_reason`]), with no reason when it was
/// deleted.
fn publish_deleted(hub: &EventHub, project: String, id: &SessionId, departure: &Departure) {
    let mut json = event_json(Some(&project), id, "deleted", None);
    if let Some(reason) = deleted_reason(departure.reason()) {
        json["reason"] = reason.into();
    }
    deliver(hub, Some(project), json);
}

/// The `reason` a `deleted` carries for a session that went from this
/// node for `why`: only a release has one.
fn deleted_reason(why: DetachReason) -> Option<&'static str> {
    match why {
        DetachReason::Released => Some("released"),
        _ => None,
    }
}

fn publish(
    hub: &EventHub,
    project: Option<String>,
    id: &SessionId,
    change: &str,
    status: Option<SessionStatus>,
    viewers: Option<usize>,
) {
    let mut json = event_json(project.as_deref(), id, change, status);
    if let Some(n) = viewers {
        json["viewers"] = n.into();
    }
    deliver(hub, project, json);
}

/// A `session_update` event's common fields.
fn event_json(project: Option<&str>, id: &SessionId, change: &str, status: Option<SessionStatus>) -> serde_json::Value {
    serde_json::json!({
        "type": "session_update",
        "sessionId": id,
        "project": project,
        "change": change,
        "status": status,
        "timestamp": now_ms(),
    })
}

/// Hands a built event to the hub, for this node's subscribers.
fn deliver(hub: &EventHub, project: Option<String>, json: serde_json::Value) {
    hub.deliver_here(PublishedEvent {
        channel: CHANNEL,
        project,
        json: json.to_string(),
    });
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn only_the_current_incarnation_is_followed_and_announced_once() {
        // Stale: the registry holds another incarnation, or none.
        for follows in [Follows::Nothing, Follows::Another, Follows::This { announced: false }] {
            assert_eq!(on_created(false, follows), OnCreated::Skip, "{follows:?}");
        }
        assert_eq!(on_created(true, Follows::Nothing), OnCreated::Follow);
        assert_eq!(on_created(true, Follows::Another), OnCreated::Follow);
        assert_eq!(
            on_created(true, Follows::This { announced: false }),
            OnCreated::Announce
        );
        assert_eq!(on_created(true, Follows::This { announced: true }), OnCreated::Skip);
    }

    #[test]
    fn deleted_is_published_once_and_only_for_what_is_followed() {
        // Not followed: deleted published already (a resync), or never
        // followed (its Created was skipped).
        assert!(!publishes_deleted(Follows::Nothing));
        // The registry holds what is followed: the event was of an older one.
        assert!(!publishes_deleted(Follows::This { announced: true }));
        assert!(!publishes_deleted(Follows::This { announced: false }));
        assert!(publishes_deleted(Follows::Another));
    }

    #[test]
    fn only_a_release_gives_deleted_a_reason() {
        assert_eq!(deleted_reason(DetachReason::Released), Some("released"));
        assert_eq!(deleted_reason(DetachReason::Deleted), None);
    }
}
