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
//! So while a session floods and someone types elsewhere (the flood watch's
//! `want_low`, which also lowers the program's priority), its actor moves
//! to this lane: a runtime of one thread at a lower priority ([`NICE`]).
//! The server's workers are then free for the sockets and the interactive
//! sessions, and the kernel runs them ahead of the lane's thread. The actor
//! moves back once the flood ends or nobody types. Nothing is paused: the
//! lane's thread uses whatever CPU the interactive work leaves.
//!
//! A move hands the actor's future, boxed, to a new task on the other
//! runtime; its first poll makes the new task the one its waits wake. Its
//! pipes, pidfd and any timer it made at home stay with the server's
//! runtime, whose drivers wake it there. Its PTY's output is registered
//! with the runtime it is read on (`process/pty.rs`): on the lane, the
//! edges of a flooding PTY wake the lane's thread, not the server's idle
//! worker. What it starts while on the lane
//! (a `meta.json` write, a `/proc` scan) runs on the lane too, whose
//! blocking pool has a few threads at the same priority. One thread for all
//! sessions, not one per session. The viewers' forwarders stay home: moving
//! them too cost more CPU and load than it gained.
//!
//! The lane's runtime is never shut down. When the server stops,
//! [`stop_lane`] drops whatever actor is still there (a session that did not
//! end within the shutdown's wait), as the server's runtime drops its own
//! tasks: its session's cgroup is killed.

use std::collections::HashMap;
use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Runtime};

use crate::observe::metrics;

/// The nice value of the lane's threads: below the server's workers (0, or
/// whatever the server was started with: raising a nice value needs no
/// privilege, lowering one does), above the screen model's background
/// parsing (10).
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

/// Which lane an actor should run on: set by the actor, read by its task.
#[derive(Debug, Clone, Default)]
pub struct LaneWish(Arc<AtomicBool>);

impl LaneWish {
    /// Asks for the bulk lane (`true`) or the server's runtime; the move
    /// happens when the actor next waits.
    pub fn set(&self, bulk: bool) {
        self.0.store(bulk, Ordering::Relaxed);
    }

    fn bulk(&self) -> bool {
        self.0.load(Ordering::Relaxed)
    }
}

type BoxedActor = Pin<Box<dyn Future<Output = ()> + Send>>;

/// An actor's future in the task of one lane.
struct Laned {
    actor: Option<BoxedActor>,
    /// On the lane: its number in [`on_lane`].
    on_bulk: Option<u64>,
    wish: LaneWish,
    /// The server's runtime, to move back to.
    home: Handle,
}

impl Future for Laned {
    type Output = ();

    fn poll(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<()> {
        let Some(actor) = self.actor.as_mut() else {
            return Poll::Ready(());
        };
        if actor.as_mut().poll(cx).is_ready() {
            self.actor = None;
            return Poll::Ready(());
        }
        let bulk = self.wish.bulk();
        if bulk != self.on_bulk.is_some() {
            let mut moved = Laned {
                actor: self.actor.take(),
                on_bulk: None,
                wish: self.wish.clone(),
                home: self.home.clone(),
            };
            if bulk {
                static NEXT: AtomicU64 = AtomicU64::new(0);
                let n = NEXT.fetch_add(1, Ordering::Relaxed);
                moved.on_bulk = Some(n);
                metrics::get().bulk_lane.increment(1.0);
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
        if let Some(n) = self.on_bulk {
            lock_on_lane().remove(&n);
            metrics::get().bulk_lane.decrement(1.0);
        }
    }
}

/// Drops every actor still on the lane and waits (at most `wait`) until
/// they are gone: called once the server's runtime has stopped serving, so
/// that an actor there is dropped as the runtime's own tasks are (its
/// session's cgroup killed) rather than left running past the server.
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
    let home = Handle::current();
    tokio::spawn(Laned {
        actor: Some(Box::pin(actor)),
        on_bulk: None,
        wish,
        home,
    });
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
}
