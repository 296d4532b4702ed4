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
//! runtime, which polls it at once: the wakers of its waits are then the new
//! task's. Its sockets and PTY stay registered with the server's runtime,
//! whose I/O driver wakes the lane's task. One thread for all sessions, not
//! one per session.

use std::future::Future;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, Ordering};
use std::sync::{Arc, OnceLock};
use std::task::{Context, Poll};

use tokio::runtime::{Handle, Runtime};

/// The nice value of the lane's thread: below the server's workers (0), above
/// the screen model's background parsing (10).
pub const NICE: i32 = 5;
/// The lane's thread's name, as `/proc` shows it.
pub const THREAD_NAME: &str = "termstream-bulk";

fn lane_runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_multi_thread()
            .worker_threads(1)
            .max_blocking_threads(1)
            .thread_name(THREAD_NAME)
            .on_thread_start(|| {
                // Linux applies a nice value to the calling thread only.
                // Raising it needs no privilege; failing leaves it at 0.
                let _ = rustix::process::setpriority_process(None, NICE);
            })
            .enable_all()
            .build()
            .expect("a runtime of one thread needs no resources to build")
    })
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
    on_bulk: bool,
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
        if bulk != self.on_bulk {
            let moved = Laned {
                actor: self.actor.take(),
                on_bulk: bulk,
                wish: self.wish.clone(),
                home: self.home.clone(),
            };
            if bulk {
                drop(lane_runtime().spawn(moved));
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

/// Spawns a session's actor on the current runtime; it moves to the bulk
/// lane and back as `wish` says.
pub fn spawn_actor(actor: impl Future<Output = ()> + Send + 'static, wish: LaneWish) {
    let home = Handle::current();
    tokio::spawn(Laned {
        actor: Some(Box::pin(actor)),
        on_bulk: false,
        wish,
        home,
    });
}

/// Whether the calling thread is the bulk lane's.
pub fn on_bulk_lane() -> bool {
    std::thread::current().name() == Some(THREAD_NAME)
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
