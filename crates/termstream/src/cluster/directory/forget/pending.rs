//! What the forgets of [`mod@super`] share: which are pending, and which creates
//! are under way on this node (their claims no forget takes), under one
//! lock.

use std::collections::{HashMap, HashSet};
use std::sync::{Mutex, MutexGuard};
use std::time::Duration;

use termstream_proto::SessionId;
use tokio::sync::watch;

/// The ids whose forget (removal from Redis) has not gone through yet: set
/// when it is asked for, cleared by its task once it succeeded. One task
/// per id; one asked for again while it runs (a registration wrote the
/// session back after its script) runs once more before it ends. And the
/// ids of the creates under way here, whose claims no forget takes.
#[derive(Debug)]
pub struct Forgets {
    /// The pending forgets, and the creates under way; one lock, so that a
    /// create's look for a pending forget and its mark are one step (see
    /// [`Forgets::settle_and_mark`]).
    state: Mutex<State>,
    /// Sent each time a forget is done, for [`Forgets::settle_and_mark`].
    done: watch::Sender<()>,
    /// Set, never cleared, by [`Forgets::hurry`] (the server stops);
    /// received by each forget's task while it waits to try again, which
    /// then tries at once and every heartbeat after (see [`super::wait_to_retry`]).
    pub(super) hurry: watch::Sender<bool>,
}

impl Default for Forgets {
    fn default() -> Forgets {
        Forgets {
            state: Mutex::default(),
            done: watch::channel(()).0,
            hurry: watch::channel(false).0,
        }
    }
}

/// What [`Forgets`] guards.
#[derive(Debug, Default)]
struct State {
    /// Each id whose forget is pending, with `Some(outlived)` when it was
    /// asked for again while its task ran (`outlived` only if every such
    /// ask was).
    pending: HashMap<SessionId, Option<bool>>,
    /// The ids of the creates under way on this node: marked before their
    /// claim is sent, unmarked once the create failed or its session is in
    /// the registry. A forget leaves the claim of a marked id alone (it is
    /// the create's), the heartbeat keeps its claim from expiring, and a
    /// second create of the id here is refused at once.
    claiming: HashSet<SessionId>,
    /// The ids whose claim the heartbeat renews: each create's, from just
    /// before its claim is sent ([`Forgets::renew`]) until its session's
    /// first record went through (which makes the claim permanent), or
    /// until the create failed or its session was forgotten. Not touched
    /// by a create refused for a local session with the id: that
    /// session's claim is renewed as before.
    unrecorded: HashSet<SessionId>,
}

/// Whether a create may claim its id ([`Forgets::settle_and_mark`]).
#[derive(Debug, PartialEq, Eq)]
pub enum Mark {
    /// Marked: no forget of the id is pending; claim it.
    Marked,
    /// A forget of the id is still pending after the wait.
    Removing,
    /// Another create of the id is under way here.
    Claiming,
}

impl Forgets {
    fn lock(&self) -> MutexGuard<'_, State> {
        // Each operation is an insert, remove or lookup: poison is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many forgets have not gone through yet.
    pub fn count(&self) -> usize {
        self.lock().pending.len()
    }

    /// Whether a forget of `id` has not gone through yet.
    pub fn pending(&self, id: &SessionId) -> bool {
        self.lock().pending.contains_key(id)
    }

    /// Whether a create of `id` is under way here (marked).
    pub fn claiming(&self, id: &SessionId) -> bool {
        self.lock().claiming.contains(id)
    }

    /// The ids whose claims the heartbeat renews: the creates under way
    /// here, and the sessions created here whose first record has not gone
    /// through yet.
    pub fn claims_to_renew(&self) -> Vec<SessionId> {
        self.lock().unrecorded.iter().cloned().collect()
    }

    /// Unmarks a create of `id` that failed: its claim is renewed no more.
    pub fn unmark(&self, id: &SessionId) {
        let mut state = self.lock();
        state.claiming.remove(id);
        state.unrecorded.remove(id);
    }

    /// Unmarks a create of `id` whose session is in the registry: its
    /// claim is still renewed, until [`Forgets::recorded`]. Also a create
    /// refused before its claim (a local session has the id): the claim
    /// is that session's, and is renewed as it was before the mark.
    pub fn created(&self, id: &SessionId) {
        self.lock().claiming.remove(id);
    }

    /// Has the heartbeat renew the claim of the create of `id` (marked):
    /// from before its claim is sent until [`Forgets::recorded`], or the
    /// create failed ([`Forgets::unmark`]).
    pub fn renew(&self, id: &SessionId) {
        self.lock().unrecorded.insert(id.clone());
    }

    /// The first record of the session `id` went through (its claim is
    /// permanent), or the session was forgotten: its claim is renewed no
    /// more, unless a create of the id is under way here.
    pub fn recorded(&self, id: &SessionId) {
        let mut state = self.lock();
        if !state.claiming.contains(id) {
            state.unrecorded.remove(id);
        }
    }

    /// Waits, at most `bound`, until no forget of `id` is pending, then
    /// marks a create of `id` under way, in the same step as the last look:
    /// a forget begun before is done, and one begun after sees the mark.
    /// Its claim is renewed only from [`Forgets::renew`].
    pub async fn settle_and_mark(&self, id: &SessionId, bound: Duration) -> Mark {
        // Subscribed before the first look: no end is missed.
        let mut done = self.done.subscribe();
        let marked = async {
            loop {
                {
                    let mut state = self.lock();
                    if !state.pending.contains_key(id) {
                        return if state.claiming.insert(id.clone()) {
                            Mark::Marked
                        } else {
                            Mark::Claiming
                        };
                    }
                }
                // The sender lives in `self`: never closed.
                let _ = done.changed().await;
            }
        };
        tokio::time::timeout(bound, marked).await.unwrap_or(Mark::Removing)
    }

    /// Marks the forget of `id` pending; `false` when it was already, and
    /// its task is then asked to run once more.
    pub(super) fn begin(&self, id: &SessionId, outlived: bool) -> bool {
        let pending = &mut self.lock().pending;
        match pending.get_mut(id) {
            Some(again) => {
                *again = Some(again.unwrap_or(true) && outlived);
                false
            }
            None => {
                pending.insert(id.clone(), None);
                true
            }
        }
    }

    /// Notes that a try of the forget of `id` went through: `None` when it
    /// is done, `Some(outlived)` when it was asked for again meanwhile and
    /// is to run once more (still pending).
    pub(super) fn end(&self, id: &SessionId) -> Option<bool> {
        let mut state = self.lock();
        if let Some(again) = state.pending.get_mut(id).and_then(Option::take) {
            return Some(again);
        }
        state.pending.remove(id);
        drop(state);
        self.done.send_replace(());
        None
    }

    /// Hurries every forget (a stopping server): from now on one that
    /// failed is tried again at once, then every heartbeat, whatever its
    /// backoff.
    pub fn hurry(&self) {
        self.hurry.send_replace(true);
    }

    /// Hurries every pending forget ([`Forgets::hurry`]), and waits, at
    /// most `bound`, until no forget of any id is pending (a stopping
    /// server: one left pending would leave its record and claim in Redis
    /// for good); `false` when some still are.
    pub async fn settle_all(&self, bound: Duration) -> bool {
        self.hurry();
        // Subscribed before the first look: no end is missed.
        let mut done = self.done.subscribe();
        let settled = async {
            while self.count() > 0 {
                // The sender lives in `self`: never closed.
                let _ = done.changed().await;
            }
        };
        tokio::time::timeout(bound, settled).await.is_ok()
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use termstream_proto::SessionId;

    use super::{Forgets, Mark};

    #[test]
    fn a_forget_asked_for_again_while_it_runs_runs_once_more() {
        let (forgets, id) = (Forgets::default(), SessionId::new("x").unwrap());
        assert!(forgets.begin(&id, false), "the first ask starts a task");
        assert!(!forgets.begin(&id, true), "a second ask starts none");
        assert_eq!(forgets.end(&id), Some(true), "asked again, by a reconcile only");
        assert!(forgets.pending(&id), "still pending while it runs once more");
        assert_eq!(forgets.end(&id), None, "done");
        assert!(!forgets.pending(&id));
    }

    #[test]
    fn an_ask_after_a_delete_makes_the_next_run_not_outlived() {
        let (forgets, id) = (Forgets::default(), SessionId::new("x").unwrap());
        assert!(forgets.begin(&id, true));
        assert!(!forgets.begin(&id, true));
        assert!(!forgets.begin(&id, false));
        assert_eq!(forgets.end(&id), Some(false), "not only outlived");
        assert_eq!(forgets.end(&id), None);
        assert_eq!(forgets.count(), 0);
    }

    #[tokio::test]
    async fn one_create_of_an_id_at_a_time_is_marked() {
        let (forgets, id) = (Forgets::default(), SessionId::new("x").unwrap());
        let bound = Duration::from_secs(5);
        assert_eq!(forgets.settle_and_mark(&id, bound).await, Mark::Marked);
        assert!(forgets.claiming(&id));
        assert_eq!(forgets.settle_and_mark(&id, bound).await, Mark::Claiming);
        forgets.unmark(&id);
        assert!(!forgets.claiming(&id));
        assert_eq!(forgets.settle_and_mark(&id, bound).await, Mark::Marked);
    }

    #[tokio::test]
    async fn a_claim_is_renewed_from_its_mark_until_its_first_record() {
        let (forgets, id) = (Forgets::default(), SessionId::new("x").unwrap());
        let bound = Duration::from_secs(5);
        assert_eq!(forgets.settle_and_mark(&id, bound).await, Mark::Marked);
        forgets.renew(&id);
        forgets.recorded(&id);
        assert_eq!(
            forgets.claims_to_renew(),
            vec![id.clone()],
            "a create under way keeps it"
        );
        forgets.created(&id);
        assert!(!forgets.claiming(&id));
        assert_eq!(
            forgets.claims_to_renew(),
            vec![id.clone()],
            "renewed until the first record"
        );
        forgets.recorded(&id);
        assert!(forgets.claims_to_renew().is_empty());
        assert_eq!(forgets.settle_and_mark(&id, bound).await, Mark::Marked);
        forgets.renew(&id);
        forgets.unmark(&id);
        assert!(forgets.claims_to_renew().is_empty(), "a failed create's is not");
    }

    #[tokio::test]
    async fn a_create_is_marked_once_the_pending_forget_of_its_id_ended() {
        let (forgets, id) = (Forgets::default(), SessionId::new("x").unwrap());
        assert!(forgets.begin(&id, false));
        let short = forgets.settle_and_mark(&id, Duration::from_millis(20)).await;
        assert_eq!(short, Mark::Removing, "a pending forget is waited for");
        assert!(!forgets.claiming(&id), "not marked while the forget is pending");
        let marked = async {
            let waiting = forgets.settle_and_mark(&id, Duration::from_secs(5));
            tokio::pin!(waiting);
            assert!(futures_util::poll!(waiting.as_mut()).is_pending());
            assert_eq!(forgets.end(&id), None, "the forget is done");
            waiting.await
        };
        assert_eq!(marked.await, Mark::Marked);
        assert!(forgets.claiming(&id));
    }
}
