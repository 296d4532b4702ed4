//! What a session shows the `sessions` event channel: how many WebSocket
//! clients watch it, and a mark when its status may have changed.
//!
//! The channel's task follows every session without a task or a `watch`
//! receiver per session: the session's [`Presence`] (shared by its handles)
//! counts viewers, and it and the [`InfoSender`] of its info mark the
//! session in a [`Changed`] set once the channel follows it. The task takes
//! the set when it is woken and compares each marked session with what it
//! published last. An idle session then costs the channel an entry of its
//! map, not a task (about 1 KiB less per session).
//!
//! It also names the session's *answerer*: the one viewer whose terminal's
//! responses to queries in the output (a cursor position report, device
//! attributes) reach the program. Every viewer's terminal answers every
//! query it parses; the program must get one answer, not one per viewer.

use std::collections::HashSet;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};

use termstream_proto::{SessionId, SessionInfo};
use tokio::sync::{Notify, watch};

/// Sessions marked since their follower last took the set: at most one
/// entry per session, however often they change.
#[derive(Debug, Default)]
pub struct Changed {
    ids: Mutex<HashSet<SessionId>>,
    notify: Notify,
}

impl Changed {
    /// Marks `id` and wakes the follower (now, or at its next wait).
    pub fn mark(&self, id: &SessionId) {
        let new = self.ids.lock().unwrap_or_else(|e| e.into_inner()).insert(id.clone());
        if new {
            self.notify.notify_one();
        }
    }

    /// The sessions marked since the last call.
    pub fn take(&self) -> HashSet<SessionId> {
        std::mem::take(&mut *self.ids.lock().unwrap_or_else(|e| e.into_inner()))
    }

    /// Waits until a session is marked (returns at once when one was
    /// marked since the last wait).
    pub async fn marked(&self) {
        self.notify.notified().await;
    }
}

/// One session's viewer count and the [`Changed`] set that follows it.
#[derive(Debug)]
pub struct Presence {
    id: SessionId,
    viewers: AtomicUsize,
    /// The viewer whose responses are forwarded ([`ViewerGuard::answers`]),
    /// by its token; 0 when none is.
    answerer: AtomicU64,
    follower: OnceLock<Arc<Changed>>,
}

/// The source of viewer tokens (never 0: that means no answerer).
static NEXT_VIEWER: AtomicU64 = AtomicU64::new(1);

impl Presence {
    pub fn new(id: SessionId) -> Arc<Presence> {
        Arc::new(Presence {
            id,
            viewers: AtomicUsize::new(0),
            answerer: AtomicU64::new(0),
            follower: OnceLock::new(),
        })
    }

    /// How many WebSocket clients watch the session now.
    pub fn viewers(&self) -> usize {
        self.viewers.load(Ordering::Acquire)
    }

    /// Counts a viewer until the guard drops.
    pub fn add_viewer(self: &Arc<Self>) -> ViewerGuard {
        self.viewers.fetch_add(1, Ordering::AcqRel);
        self.mark();
        ViewerGuard(self.clone(), NEXT_VIEWER.fetch_add(1, Ordering::Relaxed))
    }

    /// Marks the session in `changed` from now on (the first follower
    /// stays: a server has one `sessions` channel).
    pub fn follow(&self, changed: &Arc<Changed>) {
        let _ = self.follower.set(changed.clone());
    }

    fn mark(&self) {
        if let Some(changed) = self.follower.get() {
            changed.mark(&self.id);
        }
    }
}

/// Counts one viewer of a session while it lives.
#[derive(Debug)]
pub struct ViewerGuard(Arc<Presence>, u64);

impl ViewerGuard {
    /// The viewer sent typed input: its terminal answers queries from now
    /// on (the user is at that one).
    pub fn typed(&self) {
        self.0.answerer.store(self.1, Ordering::Release);
    }

    /// Whether this viewer is the session's answerer now.
    pub fn is_answerer(&self) -> bool {
        self.0.answerer.load(Ordering::Acquire) == self.1
    }

    /// Whether a response from this viewer's terminal should reach the
    /// program: it is the answerer, or there is none and it becomes one
    /// (the first viewer to answer a query, when nobody typed).
    pub fn answers(&self) -> bool {
        match self
            .0
            .answerer
            .compare_exchange(0, self.1, Ordering::AcqRel, Ordering::Acquire)
        {
            Ok(_) => true,
            Err(current) => current == self.1,
        }
    }
}

impl Drop for ViewerGuard {
    fn drop(&mut self) {
        // Never below zero: every guard added one.
        self.0.viewers.fetch_sub(1, Ordering::AcqRel);
        // A viewer that leaves stops answering; the next to answer takes over.
        let _ = self
            .0
            .answerer
            .compare_exchange(self.1, 0, Ordering::AcqRel, Ordering::Relaxed);
        self.0.mark();
    }
}

/// The sender of a session's info: a `watch` sender that marks the session
/// in its follower's set whenever it wakes the receivers (a change of
/// status or size; not the output offset, which changes silently).
#[derive(Debug)]
pub struct InfoSender {
    tx: watch::Sender<SessionInfo>,
    presence: Arc<Presence>,
}

impl InfoSender {
    pub(crate) fn new(tx: watch::Sender<SessionInfo>, presence: Arc<Presence>) -> InfoSender {
        InfoSender { tx, presence }
    }

    /// As [`watch::Sender::send_if_modified`].
    pub fn send_if_modified(&self, modify: impl FnOnce(&mut SessionInfo) -> bool) -> bool {
        let woke = self.tx.send_if_modified(modify);
        if woke {
            self.presence.mark();
        }
        woke
    }

    /// As [`watch::Sender::send_modify`].
    pub fn send_modify(&self, modify: impl FnOnce(&mut SessionInfo)) {
        self.tx.send_modify(modify);
        self.presence.mark();
    }

    /// As [`watch::Sender::send_replace`].
    pub fn send_replace(&self, info: SessionInfo) -> SessionInfo {
        let old = self.tx.send_replace(info);
        self.presence.mark();
        old
    }

    /// As [`watch::Sender::borrow`].
    pub fn borrow(&self) -> watch::Ref<'_, SessionInfo> {
        self.tx.borrow()
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SessionId {
        serde_json::from_value(serde_json::json!(s)).unwrap()
    }

    #[tokio::test]
    async fn viewers_mark_only_once_followed_and_once_per_take() {
        let p = Presence::new(id("a"));
        let changed = Arc::new(Changed::default());
        let g = p.add_viewer();
        assert_eq!(p.viewers(), 1);
        assert!(changed.take().is_empty(), "not followed yet: nothing marked");
        p.follow(&changed);
        let g2 = p.add_viewer();
        drop(g);
        assert_eq!(p.viewers(), 1);
        // Marked since the last wait: returns at once.
        tokio::time::timeout(std::time::Duration::from_secs(5), changed.marked())
            .await
            .expect("a mark wakes the follower");
        assert_eq!(changed.take(), HashSet::from([id("a")]));
        assert!(changed.take().is_empty());
        drop(g2);
        assert_eq!(p.viewers(), 0);
        assert_eq!(changed.take(), HashSet::from([id("a")]));
    }

    #[test]
    fn one_viewer_answers_the_typist_first_then_the_first_to_answer() {
        let p = Presence::new(id("a"));
        let (a, b) = (p.add_viewer(), p.add_viewer());
        assert!(b.answers(), "nobody typed: the first to answer answers");
        assert!(!a.answers());
        a.typed();
        assert!(a.answers() && !b.answers(), "the typist answers");
        drop(a);
        assert!(b.answers(), "the typist left: another takes over");
    }
}
