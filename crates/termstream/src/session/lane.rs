//! The bulk lane: where a flooding session's actor runs while someone types
//! into another session.
//!
//! Every actor starts on the server's runtime, beside the sockets. tokio has
//! no priorities: a task woken by I/O joins the back of a worker's queue, so
//! under load a typed key's echo, read by its session's actor, waited behind
//! the polls of every flooding actor (64 KiB read, written to disk and
//! broadcast each). Instrumented in the benchmark's load scenario, the echo
//! was ready in the PTY 50–250 µs after the key was written, and read
//! 1–3 ms later.
//!
//! So while a session floods and someone types elsewhere (the flood
//! watch's `wants_lane`), its actor moves to this lane: a runtime of one
//! thread at a lower priority ([`NICE`]). The server's workers are then
//! free for the sockets and the interactive sessions, and the kernel runs
//! them ahead of the lane's thread. The actor moves back once the flood
//! ends or nobody types. Nothing is paused: the lane's thread uses
//! whatever CPU the interactive work leaves.
//!
//! A move hands the actor's future, boxed, to a new task on the other
//! runtime; its first poll makes the new task the one its waits wake. Its
//! pipes, pidfd and any timer it made at home stay with the server's
//! runtime, whose drivers wake it there. Its PTY's output is registered
//! with the runtime it is read on (`process/pty.rs`): on the lane, the
//! edges of a flooding PTY wake the lane's thread, not the server's idle
//! worker. What it starts while on the lane (a `meta.json` write, a `/proc`
//! scan) runs on the lane too, whose blocking pool has a few threads at the
//! same priority. One thread for all sessions, not one per session.
//!
//! A viewer's forwarder follows its session ([`spawn_follower`]): while
//! the socket keeps up, the lane's thread reads a chunk, broadcasts it and
//! writes it to the flood's sockets (a forwarder writes directly when
//! nothing is queued, `gateway/outbox.rs`) without waking a server worker
//! per chunk; a socket that falls behind has its home writer woken per
//! batch, as before. Measured with keys paced at one a millisecond, 36
//! alternating rounds of benchmark scenario 4 beside ttyd in four sets:
//! our per-run echo p99 under load had a median of 1.68 ms against 1.86,
//! lower in 22 of the 36 rounds, the CPU per MB the same. A small gain,
//! within what the sets disagree on (one showed a clear gain, three
//! little or none); with keys back to back, moving the forwarders had
//! looked like a loss. Its costs: a forwarder on
//! the lane does not wait holding a socket (`outbox.rs`; unless the
//! socket's queue has no room, all but impossible), but a frame it is
//! writing holds a session sharing the socket for that one write; a detach
//! waits for the lane's thread to drop the forwarder; a change of wish
//! moves every viewer's forwarder (a new task each); about 0.3 KiB per
//! attachment (benchmark scenario 12).
//!
//! The lane's runtime is never shut down. When the server stops,
//! [`stop_lane`] drops whatever actor or forwarder is still there (a
//! session that did not end within the shutdown's wait), as the server's
//! runtime drops its own tasks: its session's cgroup is killed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use futures_util::FutureExt;
use futures_util::future::{AbortHandle, Abortable};
use tokio::runtime::{Handle, Runtime};
use tokio::sync::futures::OwnedNotified;
use tokio::sync::{Notify, oneshot};

use crate::observe::metrics;

/// The nice value of the lane's threads: below the server's workers (0, or
/// whatever the server was started with: raising a nice value needs no
/// privilege, lowering one does), above the screen model's background
/// parsing (10). `SCHED_IDLE` instead shortened the echo's p99 under the
/// benchmark's load by 13–22 %, but cut floods' rate by up to half on a
/// machine busy with other work, and an unprivileged thread cannot leave it
/// again (`bench/RESULTS.md`, "Tried on 2026-12-04, not kept").
pub const NICE: i32 = 5;
/// The lane's thread's name, as `/proc` shows it.
pub const THREAD_NAME: &str = "termstream-bulk";

fn lane_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            // What an actor starts there runs there too (meta.json writes,
            // `/proc` scans): a few, so that they do not queue behind one.
            .max_blocking_threads(4)
            .thread_name(THREAD_NAME)
            .on_thread_start(|| {
                // Linux applies a nice value to the calling thread only.
                // Raising it needs no privilege; failing leaves it at 0.
                let _ = rustix::process::setpriority_process(None, NICE);
                ON_LANE.set(true);
            })
            .enable_all()
            .build()
            .expect("a runtime of one thread needs no resources to build")
    })
}

/// The tasks on the lane, by number, for [`stop_lane`].
fn on_lane() -> &'static Mutex<HashMap<u64, tokio::task::AbortHandle>> {
    static TASKS: OnceLock<Mutex<HashMap<u64, tokio::task::AbortHandle>>> = OnceLock::new();
    TASKS.get_or_init(Default::default)
}

fn lock_on_lane() -> std::sync::MutexGuard<'static, HashMap<u64, tokio::task::AbortHandle>> {
    on_lane().lock().unwrap_or_else(|e| e.into_inner())
}

/// Which lane an actor should run on: set by the actor, read by its task
/// and its followers'.
#[derive(Debug, Clone, Default)]
pub struct LaneWish {
    bulk: Arc<AtomicBool>,
    /// Wakes the followers on the lane when the wish changes: an idle
    /// forwarder there would otherwise stay until its session's next
    /// output, and send that from the lane.
    changed: Arc<Notify>,
}

impl LaneWish {
    /// Asks for the bulk lane (`true`) or the server's runtime; the actor
    /// moves when it next waits, its followers on the lane at once (those
    /// at home when next woken).
    pub fn set(&self, bulk: bool) {
        if self.bulk.swap(bulk, Ordering::Relaxed) != bulk {
            self.changed.notify_waiters();
        }
    }

    fn bulk(&self) -> bool {
        self.bulk.load(Ordering::Relaxed)
    }

    /// A wait for the next change, registered at once.
    fn next_change(&self) -> Pin<Box<OwnedNotified>> {
        let mut wait = Box::pin(self.changed.clone().notified_owned());
        wait.as_mut().enable();
        wait
    }
}

type BoxedActor = Pin<Box<dyn Future<Output = ()> + Send>>;

/// What a task on the lane is, for its gauge.
#[derive(Debug, Clone, Copy)]
enum Kind {
    Actor,
    Forwarder,
}

impl Kind {
    fn gauge(self) -> &'static ::metrics::Gauge {
        match self {
            Kind::Actor => &metrics::get().bulk_lane,
            Kind::Forwarder => &metrics::get().bulk_lane_forwarders,
        }
    }
}

/// An actor's or a forwarder's future in the task of one lane.
struct Laned {
    actor: Option<BoxedActor>,
    /// On the lane: its number in [`on_lane`].
    on_bulk: Option<u64>,
    wish: LaneWish,
    /// The server's runtime, to move back to.
    home: Handle,
    kind: Kind,
    /// A follower's wait for its wish to change while on the lane, made
    /// anew after each.
    change: Option<Pin<Box<OwnedNotified>>>,
    /// A follower's [`Follower::gone`], answered when this is dropped:
    /// after `actor` (fields drop in order) and after the task has left
    /// the lane's gauge.
    gone: Option<oneshot::Sender<()>>,
}

impl Future for Laned {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        // A follower on the lane waits for its wish to change as well, so
        // that it goes home once its flood is over even while it has
        // nothing to send. One at home does not: it moves at its next
        // output, which a flood brings soon, and an idle attachment then
        // holds no wait. Registered before the wish is read below: a
        // change after that read wakes this task.
        if let (Kind::Forwarder, Some(_)) = (self.kind, self.on_bulk) {
            while self.change.as_mut().is_none_or(|c| c.as_mut().poll(cx).is_ready()) {
                self.change = Some(self.wish.next_change());
            }
        }
        let Some(actor) = self.actor.as_mut() else {
            return Poll::Ready(());
        };
        if actor.as_mut().poll(cx).is_ready() {
            self.leave_lane();
            self.actor = None;
            self.gone = None;
            return Poll::Ready(());
        }
        let bulk = self.wish.bulk();
        if bulk != self.on_bulk.is_some() {
            // Off the lane's list and gauge before the moved task can end.
            self.leave_lane();
            let Some(actor) = self.actor.take() else {
                return Poll::Ready(());
            };
            let gone = self.gone.take();
            let mut moved = Laned::new(actor, self.wish.clone(), self.home.clone(), self.kind, gone);
            if bulk {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                moved.on_bulk = Some(n);
                self.kind.gauge().increment(1.0);
                // Under the lock, so that the task's end (its drop) cannot
                // remove its entry before it is there.
                let mut tasks = lock_on_lane();
                tasks.insert(n, lane_runtime().spawn(moved).abort_handle());
            } else {
                // On a runtime that shut down the task is dropped, and the
                // actor with it, as the runtime's own tasks were.
                drop(self.home.spawn(moved));
            }
            return Poll::Ready(());
        }
        Poll::Pending
    }
}

impl Drop for Laned {
    fn drop(&mut self) {
        self.leave_lane();
    }
}

impl Laned {
    /// `actor` at home (its task is not on the lane's list yet).
    fn new(actor: BoxedActor, wish: LaneWish, home: Handle, kind: Kind, gone: Option<oneshot::Sender<()>>) -> Laned {
        Laned {
            actor: Some(actor),
            on_bulk: None,
            wish,
            home,
            kind,
            change: None,
            gone,
        }
    }

    /// Takes the task off the lane's list and gauge: when its future ends
    /// or moves (before tokio drops the task, and before the moved task
    /// can end: a follower's `gone` is answered with the gauge already
    /// down), or when it is dropped.
    fn leave_lane(&mut self) {
        if let Some(n) = self.on_bulk.take() {
            lock_on_lane().remove(&n);
            self.kind.gauge().decrement(1.0);
        }
    }
}

/// Drops every actor and forwarder still on the lane and waits (at most
/// `wait`) until they are gone: called once the server's runtime has
/// stopped serving, so that an actor there is dropped as the runtime's own
/// tasks are (its session's cgroup killed) rather than left running past
/// the server.
pub fn stop_lane(wait: std::time::Duration) {
    let tasks: Vec<_> = lock_on_lane().drain().map(|(_, t)| t).collect();
    tasks.iter().for_each(|t| t.abort());
    let deadline = std::time::Instant::now() + wait;
    while tasks.iter().any(|t| !t.is_finished()) && std::time::Instant::now() < deadline {
        std::thread::sleep(std::time::Duration::from_millis(1));
    }
}

/// Spawns a session's actor on the current runtime; it moves to the bulk
/// lane and back as `wish` says.
pub fn spawn_actor(actor: impl Future<Output = ()> + Send + 'static, wish: LaneWish) {
    spawn(Box::pin(actor), wish, Kind::Actor, None);
}

fn spawn(future: BoxedActor, wish: LaneWish, kind: Kind, gone: Option<oneshot::Sender<()>>) {
    tokio::spawn(Laned::new(future, wish, Handle::current(), kind, gone));
}

/// A task that follows its session to the lane and back
/// ([`spawn_follower`]). Unlike a tokio `JoinHandle` it outlives the
/// moves: each move ends one tokio task and starts another.
#[derive(Debug)]
pub struct Follower {
    abort: AbortHandle,
    /// Closed once the task's future is dropped, ended or aborted.
    gone: oneshot::Receiver<()>,
}

impl Follower {
    /// Stops the task at its next wait, wherever it runs; it is dropped
    /// there. Dropping the `Follower` does not stop it.
    pub fn abort(&self) {
        self.abort.abort();
    }

    /// A handle that stops the task as [`Follower::abort`] does, kept
    /// apart from the `Follower` (whose [`Follower::gone`] takes it).
    pub fn abort_handle(&self) -> AbortHandle {
        self.abort.clone()
    }

    /// Waits until the task's future is gone: after [`Follower::abort`],
    /// nothing it would have done happens after this returns. At once for
    /// one [`Follower::is_gone`] found gone already (its answer was taken
    /// then: awaiting it again would panic).
    pub async fn gone(mut self) {
        if !self.is_gone() {
            let _ = self.gone.await;
        }
    }

    /// Whether the task's future is gone (ended by itself, or aborted).
    pub fn is_gone(&mut self) -> bool {
        !matches!(self.gone.try_recv(), Err(oneshot::error::TryRecvError::Empty))
    }
}

/// Spawns a viewer's forwarder on the current runtime; it runs where its
/// session's actor does (`wish` is the actor's), so that a flood's output
/// goes from its PTY to its sockets on one thread.
pub fn spawn_follower(task: impl Future<Output = ()> + Send + 'static, wish: LaneWish) -> Follower {
    let (abort, registration) = AbortHandle::new_pair();
    let (gone_tx, gone) = oneshot::channel();
    // A combinator, not an `async` block awaiting it: the block would keep
    // the task twice (captured, and moved into its await), and every idle
    // attachment would carry a dead copy of its forwarder.
    let task = Abortable::new(task, registration).map(drop);
    spawn(Box::pin(task), wish, Kind::Forwarder, Some(gone_tx));
    Follower { abort, gone }
}

thread_local! {
    /// Set on the lane's threads when they start.
    static ON_LANE: std::cell::Cell<bool> = const { std::cell::Cell::new(false) };
}

/// Whether the calling thread is one of the bulk lane's (its worker or a
/// blocking thread).
pub fn on_bulk_lane() -> bool {
    ON_LANE.get()
}

#[cfg(test)]
mod tests {
    use super::*;
    use tokio::sync::oneshot;

    /// Yields once, so that the task's wrapper sees a new wish.
    async fn wait_once() {
        tokio::task::yield_now().await;
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn an_actor_moves_to_the_lane_and_back_and_keeps_its_state() {
        let wish = LaneWish::default();
        let (tx, rx) = oneshot::channel();
        let w = wish.clone();
        spawn_actor(
            async move {
                let mut seen = vec![on_bulk_lane()];
                let mut count = 0u32;
                w.set(true);
                wait_once().await;
                count += 1;
                seen.push(on_bulk_lane());
                let nice = rustix::process::getpriority_process(None).ok();
                w.set(false);
                wait_once().await;
                count += 1;
                seen.push(on_bulk_lane());
                let _ = tx.send((seen, count, nice));
            },
            wish,
        );
        let (seen, count, nice) = rx.await.expect("the actor ran to its end");
        assert_eq!(seen, [false, true, false], "home, lane, home");
        assert_eq!(count, 2, "its state went along");
        assert_eq!(nice, Some(NICE), "the lane runs at its lower priority");
    }

    /// A follower found gone by `is_gone` can still be waited for: it
    /// is gone. Awaiting it panicked ("called after complete"): the answer
    /// had been taken.
    #[tokio::test]
    async fn a_follower_found_gone_is_gone_at_once() {
        let mut f = spawn_follower(async {}, LaneWish::default());
        let found = tokio::time::timeout(std::time::Duration::from_secs(10), async {
            while !f.is_gone() {
                tokio::task::yield_now().await;
            }
        });
        found.await.expect("the follower ended");
        tokio::time::timeout(std::time::Duration::from_secs(10), f.gone())
            .await
            .expect("gone at once");
    }

    /// Sets a flag when dropped.
    struct Dropped(Arc<AtomicBool>);

    impl Drop for Dropped {
        fn drop(&mut self) {
            self.0.store(true, Ordering::SeqCst);
        }
    }

    /// The next report of where the follower was polled.
    async fn next(seen: &mut tokio::sync::mpsc::UnboundedReceiver<bool>) -> bool {
        tokio::time::timeout(std::time::Duration::from_secs(10), seen.recv())
            .await
            .expect("polled again")
            .expect("the follower's future is alive")
    }

    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn a_follower_goes_home_from_the_lane_even_while_idle_and_is_gone_once_aborted() {
        use std::time::Duration;
        let wish = LaneWish::default();
        let (seen_tx, mut seen) = tokio::sync::mpsc::unbounded_channel();
        let dropped = Arc::new(AtomicBool::new(false));
        let guard = Dropped(dropped.clone());
        // Output to send, as a session's broadcast would wake it.
        let output = Arc::new(Notify::new());
        let woken = output.clone();
        // Says where it runs each time it is polled, waits for output, and
        // never ends.
        let mut wait = Box::pin(woken.clone().notified_owned());
        let follower = spawn_follower(
            async move {
                let _guard = guard;
                std::future::poll_fn(|cx| {
                    let _ = seen_tx.send(on_bulk_lane());
                    while wait.as_mut().poll(cx).is_ready() {
                        wait = Box::pin(woken.clone().notified_owned());
                    }
                    Poll::<()>::Pending
                })
                .await
            },
            wish.clone(),
        );
        assert!(!next(&mut seen).await, "it starts home");
        // To the lane with its next output.
        wish.set(true);
        output.notify_one();
        while !next(&mut seen).await {}
        // Home with nothing to send: only the wish's change wakes it.
        wish.set(false);
        while next(&mut seen).await {}
        wish.set(true);
        output.notify_one();
        while !next(&mut seen).await {}
        assert!(!dropped.load(Ordering::SeqCst));
        follower.abort();
        tokio::time::timeout(Duration::from_secs(10), follower.gone())
            .await
            .expect("gone once aborted");
        assert!(
            dropped.load(Ordering::SeqCst),
            "its future was dropped before gone() returned"
        );
    }
}
