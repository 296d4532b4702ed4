//! The channel a session's [`LogEvent`]s reach their followers by (the
//! forwarders of its viewers, a cluster's publisher and stand-ins).
//!
//! It behaves as `tokio::sync::broadcast` does, with the same error types:
//! a receiver sees every event sent after it subscribed, in order, until
//! it falls [`EVENT_QUEUE`] events behind; then it is told how many it
//! lost (`Lagged`) and goes on from the oldest held, and the session's log
//! has the rest by offset. Unlike tokio's, it allocates nothing up front:
//! tokio's allocates its whole ring of slots when made (about 1.4 KiB for
//! 32 events), which every session kept for its whole life. Here events
//! are queued only until every receiver has taken them, and an empty
//! queue gives its buffer back, so an idle session's channel is its
//! shared state alone (a lock, a queue's header and a `Notify`).
//!
//! An event is counted down by each receiver that takes it (or is dropped
//! before taking it) and leaves the queue once all have; one that falls
//! out of the queue's bound first is lost only to the receivers that had
//! not taken it.
//!
//! [`EVENT_QUEUE`]: super::EVENT_QUEUE

use std::collections::VecDeque;
use std::sync::{Arc, Mutex, MutexGuard, PoisonError};

use tokio::sync::Notify;
pub use tokio::sync::broadcast::error::{RecvError, SendError, TryRecvError};

use super::LogEvent;

struct State {
    /// Events not yet taken by every receiver, each with how many
    /// receivers have still to take it.
    queue: VecDeque<(LogEvent, usize)>,
    /// The sequence number of `queue[0]`.
    head: u64,
    /// How many events the queue holds at most.
    capacity: usize,
    receivers: usize,
    /// The sender is gone: receivers end once they took what is queued.
    closed: bool,
}

impl State {
    fn tail(&self) -> u64 {
        self.head + self.queue.len() as u64
    }

    /// Drops the events every receiver has taken from the front; an empty
    /// queue gives its buffer back.
    fn pop_taken(&mut self) {
        while self.queue.front().is_some_and(|(_, left)| *left == 0) {
            self.queue.pop_front();
            self.head += 1;
        }
        if self.queue.is_empty() && self.queue.capacity() > 0 {
            self.queue = VecDeque::new();
        }
    }
}

struct Shared {
    state: Mutex<State>,
    /// Woken on every send and when the sender goes.
    sent: Notify,
}

impl Shared {
    fn lock(&self) -> MutexGuard<'_, State> {
        // No code panics while holding the lock; a poisoned one is still whole.
        self.state.lock().unwrap_or_else(PoisonError::into_inner)
    }
}

/// The sending side: one per session (its actor, or a cluster stand-in).
pub struct Sender {
    shared: Arc<Shared>,
}

/// A follower's side; made by [`Sender::subscribe`].
pub struct Receiver {
    shared: Arc<Shared>,
    /// The sequence number of the next event this receiver takes.
    next: u64,
}

impl std::fmt::Debug for Sender {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Sender").finish_non_exhaustive()
    }
}

impl std::fmt::Debug for Receiver {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Receiver")
            .field("next", &self.next)
            .finish_non_exhaustive()
    }
}

/// A channel holding at most `capacity` events that some receiver has not
/// taken yet.
pub fn channel(capacity: usize) -> Sender {
    assert!(capacity > 0, "a log event channel holds at least one event");
    Sender {
        shared: Arc::new(Shared {
            state: Mutex::new(State {
                queue: VecDeque::new(),
                head: 0,
                capacity,
                receivers: 0,
                closed: false,
            }),
            sent: Notify::new(),
        }),
    }
}

impl Sender {
    /// Sends `event` to every receiver; with none, it is dropped and
    /// handed back as an error, as tokio's broadcast does.
    pub fn send(&self, event: LogEvent) -> Result<usize, SendError<LogEvent>> {
        let receivers = {
            let mut state = self.shared.lock();
            if state.receivers == 0 {
                return Err(SendError(event));
            }
            let receivers = state.receivers;
            if state.queue.len() >= state.capacity {
                // Lost to the receivers that had not taken it: they lag.
                // Made room for first, so the buffer never grows past the
                // bound.
                state.queue.pop_front();
                state.head += 1;
            }
            state.queue.push_back((event, receivers));
            receivers
        };
        self.shared.sent.notify_waiters();
        Ok(receivers)
    }

    /// A receiver of the events sent from now on.
    pub fn subscribe(&self) -> Receiver {
        let mut state = self.shared.lock();
        state.receivers += 1;
        Receiver {
            shared: self.shared.clone(),
            next: state.tail(),
        }
    }

    /// How many receivers there are.
    pub fn receiver_count(&self) -> usize {
        self.shared.lock().receivers
    }
}

impl Drop for Sender {
    fn drop(&mut self) {
        self.shared.lock().closed = true;
        self.shared.sent.notify_waiters();
    }
}

impl Receiver {
    /// The next event, if one is there now.
    pub fn try_recv(&mut self) -> Result<LogEvent, TryRecvError> {
        take(&self.shared, &mut self.next)
    }

    /// Waits for the next event. Cancel safe: an event is taken only when
    /// it is returned.
    pub async fn recv(&mut self) -> Result<LogEvent, RecvError> {
        let (shared, next) = (&*self.shared, &mut self.next);
        loop {
            let mut sent = std::pin::pin!(shared.sent.notified());
            // Registered before looking, so a send between the look and
            // the wait still wakes it.
            sent.as_mut().enable();
            match take(shared, next) {
                Ok(event) => return Ok(event),
                Err(TryRecvError::Lagged(n)) => return Err(RecvError::Lagged(n)),
                Err(TryRecvError::Closed) => return Err(RecvError::Closed),
                Err(TryRecvError::Empty) => sent.await,
            }
        }
    }
}

/// Takes the event numbered `next` for a receiver, if it is there.
fn take(shared: &Shared, next: &mut u64) -> Result<LogEvent, TryRecvError> {
    let mut state = shared.lock();
    if *next < state.head {
        let lost = state.head - *next;
        *next = state.head;
        return Err(TryRecvError::Lagged(lost));
    }
    if *next < state.tail() {
        let at = (*next - state.head) as usize;
        let (event, left) = &mut state.queue[at];
        let event = event.clone();
        *left -= 1;
        *next += 1;
        state.pop_taken();
        return Ok(event);
    }
    Err(if state.closed {
        TryRecvError::Closed
    } else {
        TryRecvError::Empty
    })
}

impl Drop for Receiver {
    fn drop(&mut self) {
        let mut state = self.shared.lock();
        let from = self.next.max(state.head);
        let head = state.head;
        for (_, left) in state.queue.iter_mut().skip((from - head) as usize) {
            *left -= 1;
        }
        state.receivers -= 1;
        state.pop_taken();
    }
}

#[cfg(test)]
mod tests;
