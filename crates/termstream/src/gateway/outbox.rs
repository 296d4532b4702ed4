//! A socket's outbound side: its queue, bounded in bytes, and its writer.
//!
//! Every frame bound for a socket goes through its [`Outbox`]. When nothing
//! is queued and nobody else is writing, the sender writes the frame to the
//! socket itself: a typed key's echo then costs no extra task wake-up on its
//! way out (the forwarder writes what the actor broadcast). Otherwise the
//! frame is queued and the socket's writer task ([`Writer`]) feeds it, with
//! whatever else is ready, and flushes once.
//!
//! A queued frame holds permits of the socket's byte budget until the writer
//! has flushed it, so at most `budget` bytes of output wait per socket; a
//! forwarder whose socket is full waits, and its session's broadcast moves
//! on without it (it catches up by offset later; see `forward`). A reply or
//! an event waits at most the pong timeout ([`Outbox::reply`]) and a close
//! frame 1 s ([`Outbox::close`]): a task that answers a client never hangs
//! on one that stopped reading; the socket is done instead. When the
//! writer ends, however it ends, the queue's room and the budget close:
//! every sender waiting for either answers `Closed` at once.
//!
//! A direct write polls the sink once with a waker that does nothing. The
//! socket's reads and writes share their wake-ups (tungstenite wakes both
//! the reading and the writing task when the socket becomes ready), so a
//! forwarder left registered as the writer would be woken with every
//! message the client sends. Two tasks woken by one event make tokio hand
//! one to the other worker thread: a cross-thread wake-up per typed key.
//! When the frame does not go out at once, what is left to flush is handed
//! to the writer task, which waits for the socket properly.
//! A forwarder on the bulk lane (`session/lane.rs`) does not wait holding
//! the sink: where another would wait for an earlier frame's flush, it
//! queues its frame, so that a session sharing the socket does not wait
//! for the lane's low-priority thread (only a queue with no room, all but
//! impossible when nothing was queued, is still waited for there).
//! A direct send is not cancel-safe (stopped while a busy sink flushes,
//! it may have handed its frame over); a queued one is
//! ([`Outbox::queue_output`]), and is what a sender that accounts for
//! each frame uses (`forward::hand_over`).
//!
//! Architecture invariant: a frame whose `send` returned goes out before any
//! frame whose `send` started later. A sender writes directly only while it
//! holds the sink and no frame is queued; the writer counts a queued frame
//! as gone only once it is fed to the sink, under the same lock.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicUsize, Ordering};
use std::task::{Context, Poll, Waker};
use std::time::{Duration, Instant};

use axum::extract::ws::{CloseFrame, Message, WebSocket};
use futures_util::stream::SplitSink;
use futures_util::{Sink as _, SinkExt};
use tokio::sync::{Mutex, OwnedSemaphorePermit, Semaphore, TryAcquireError};
use tokio::task::JoinHandle;

use crate::config::Config;
use crate::observe::metrics;
use crate::session::lane;

/// Frames in flight per socket, whatever their size.
const FRAMES_IN_FLIGHT: usize = 256;

/// How long a closing socket's queued frames may take to go out before its
/// writer is stopped: a client that stopped reading cannot hold the socket.
const FINISH_WAIT: Duration = Duration::from_secs(5);
/// The longest a close frame waits for room: a peer being closed is often
/// one that stopped reading.
const CLOSE_WAIT: Duration = Duration::from_secs(1);

type Sink = SplitSink<WebSocket, Message>;

/// One queued frame and the budget it holds; no message: only a flush of
/// what a direct write left in the sink. Queued boxed: a queue slot
/// holding a pointer instead of a frame (72 bytes) keeps its queue small
/// after a burst.
#[derive(Debug)]
struct Frame {
    msg: Option<Message>,
    permit: Option<OwnedSemaphorePermit>,
    /// When the output in `msg` was read from the program, for the
    /// delivery latency recorded once the frame is flushed.
    read_at: Option<Instant>,
}

/// The socket is gone.
#[derive(Debug, Clone, Copy, thiserror::Error)]
#[error("the socket is closed")]
pub struct Closed;

/// What the senders and the writer of one socket share.
#[derive(Debug)]
struct Shared {
    sink: Mutex<Sink>,
    /// Frames sent to the queue and not yet fed to the sink.
    queued: AtomicUsize,
    /// Room in the queue, [`FRAMES_IN_FLIGHT`] frames: a sender takes a
    /// permit (and forgets it) before it queues a frame, the writer gives
    /// it back when it takes the frame; closed when the writer ends. The
    /// queue itself is a `flume` channel, which allocates only while frames
    /// wait (tokio's `mpsc` allocates 32 slots and cache-padded state up
    /// front, about 800 bytes per socket).
    room: Semaphore,
    /// The socket failed or a close frame went out: nothing more is sent.
    done: AtomicBool,
    /// The socket's byte budget: a queued frame holds its size until the
    /// writer has flushed it. Closed when the writer ends, with `room`: a
    /// frame queued in the instant after the writer's last look at its
    /// queue keeps its permits there while any sender lives (`flume` keeps
    /// what is queued until the last sender goes), and a sender waiting
    /// for them would wait until something else stopped it: a reply for
    /// the pong timeout, a forwarder until its connection aborts it.
    budget: Arc<Semaphore>,
}

/// The sending side of a socket; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: flume::Sender<Box<Frame>>,
    shared: Arc<Shared>,
    budget_bytes: usize,
    /// How long a reply may wait for room (the pong timeout): a peer that
    /// makes none for as long is not reading.
    reply_wait: Duration,
}

impl Outbox {
    /// The outbound side of `sink`, with a queue of `ws_outbound_budget`
    /// bytes, and the writer task that drains the queue.
    pub fn open(sink: Sink, cfg: &Config) -> (Outbox, Writer) {
        // Unbounded itself: `Shared::room` bounds it.
        let (tx, rx) = flume::unbounded();
        let budget_bytes = cfg.ws_outbound_budget.clamp(1, Semaphore::MAX_PERMITS);
        let shared = Arc::new(Shared {
            sink: Mutex::new(sink),
            queued: AtomicUsize::new(0),
            room: Semaphore::new(FRAMES_IN_FLIGHT),
            done: AtomicBool::new(false),
            budget: Arc::new(Semaphore::new(budget_bytes)),
        });
        let writer = Writer(tokio::spawn(write_loop(shared.clone(), rx)));
        let outbox = Outbox {
            tx,
            shared,
            budget_bytes,
            reply_wait: Duration::from_millis(cfg.ws_pong_timeout_ms),
        };
        (outbox, writer)
    }

    /// Sends `msg`: straight to the socket when nothing waits before it,
    /// else through the queue, waiting while the socket's budget is spent.
    /// After a close frame the socket is done: that send, and every later
    /// one, answers `Closed`.
    pub async fn send(&self, msg: Message) -> Result<(), Closed> {
        self.send_output(msg, None).await
    }

    /// [`Outbox::send`] for output the actor read at `read_at`: the time
    /// from then to the frame's write is recorded as its delivery latency.
    pub async fn send_output(&self, msg: Message, read_at: Option<Instant>) -> Result<(), Closed> {
        if self.is_closed() {
            return Err(Closed);
        }
        let msg = match self.shared.sink.try_lock() {
            Ok(mut sink) if self.shared.queued.load(Ordering::Acquire) == 0 => {
                let closing = matches!(msg, Message::Close(_));
                let sent = if closing {
                    sink.send(msg).await
                } else {
                    match self.write_now(&mut sink, msg).await {
                        Direct::Written(res) => res,
                        // On the lane with the sink busy: queued for the
                        // home writer.
                        Direct::Queue(msg) => {
                            drop(sink);
                            return self.queue_output(msg, read_at).await;
                        }
                    }
                };
                return match sent {
                    Ok(()) if !closing => {
                        metrics::delivered(read_at);
                        Ok(())
                    }
                    _ => {
                        self.shared.done.store(true, Ordering::Release);
                        Err(Closed)
                    }
                };
            }
            _ => msg,
        };
        self.queue_output(msg, read_at).await
    }

    /// Queues `msg` for the writer, waiting while the socket's budget is
    /// spent, then for room in the queue; the frame is queued in the poll
    /// that finds room. Cancel-safe: a send stopped while it waits has
    /// queued nothing, and one that returned has queued its frame, so a
    /// sender that accounts for what it sent (a forwarder with a
    /// `forward::Progress`) sends this way, never directly. After a close
    /// frame, `Closed`, as [`Outbox::send`].
    pub async fn queue_output(&self, msg: Message, read_at: Option<Instant>) -> Result<(), Closed> {
        if self.is_closed() {
            return Err(Closed);
        }
        let cost = message_len(&msg).clamp(1, self.budget_bytes) as u32;
        let permit = self
            .shared
            .budget
            .clone()
            .acquire_many_owned(cost)
            .await
            .map_err(|_| Closed)?;
        self.queue(Frame {
            msg: Some(msg),
            permit: Some(permit),
            read_at,
        })
        .await
    }

    /// [`Outbox::send`] for a reply or an event, which the peer must make
    /// room for within the pong timeout: a peer that has not by then is not
    /// reading, and the socket is done (its connection ends; the writer is
    /// stopped at the end).
    pub async fn reply(&self, msg: Message) -> Result<(), Closed> {
        self.send_within(msg, self.reply_wait).await
    }

    /// Sends a close frame, waiting at most [`CLOSE_WAIT`] for room; the
    /// socket is done after it either way.
    pub async fn close(&self, code: u16, reason: impl Into<String>) {
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into().into(),
        }));
        let _ = self.send_within(frame, CLOSE_WAIT).await;
    }

    /// Sends a close frame after what is queued, waiting at most `wait`
    /// for room (a normal close after a session's last output: a slow
    /// reader gets that output, which a short wait would drop); the socket
    /// is done after it either way. `Err` when the frame did not go out
    /// (the socket had ended, or no room came in time): no close reply
    /// will come. (A close written or queued leaves the outbox done, so
    /// [`Outbox::send`]'s own answer does not tell.)
    pub async fn close_within(&self, code: u16, reason: impl Into<String>, wait: Duration) -> Result<(), Closed> {
        if self.is_closed() {
            return Err(Closed);
        }
        let frame = Message::Close(Some(CloseFrame {
            code,
            reason: reason.into().into(),
        }));
        match tokio::time::timeout(wait, self.send(frame)).await {
            Ok(_) => Ok(()),
            Err(_) => {
                self.shared.done.store(true, Ordering::Release);
                Err(Closed)
            }
        }
    }

    /// How long a peer has to make room for a reply (the pong timeout).
    pub fn reply_wait(&self) -> Duration {
        self.reply_wait
    }

    async fn send_within(&self, msg: Message, wait: Duration) -> Result<(), Closed> {
        match tokio::time::timeout(wait, self.send(msg)).await {
            Ok(sent) => sent,
            Err(_) => {
                self.shared.done.store(true, Ordering::Release);
                Err(Closed)
            }
        }
    }

    /// Writes `msg` to the held sink without leaving this task registered
    /// for the socket's wake-ups (see the module's notes): one poll with a
    /// waker that does nothing, then, if the socket cannot take it all,
    /// the flush is the writer's. On the bulk lane a frame the sink cannot
    /// take yet is handed back, to be queued.
    ///
    /// Not cancel-safe: a send stopped while the sink is busy may have
    /// handed its frame over and not returned. A sender that must know
    /// what went out (a forwarder with a `forward::Progress`) queues
    /// instead ([`Outbox::queue_output`]).
    async fn write_now(&self, sink: &mut Sink, msg: Message) -> Direct {
        Direct::Written(match poll_once(sink, msg) {
            Attempt::Done(res) => res,
            // The sink is still flushing an earlier frame. On the bulk
            // lane, whose one low-priority thread also runs every flood,
            // the sink is not held while it waits: an interactive session
            // sharing the socket would wait for that thread. The frame
            // goes to the writer instead.
            Attempt::Busy(msg) if lane::on_bulk_lane() => return Direct::Queue(msg),
            // Elsewhere it waits as usual.
            Attempt::Busy(msg) => sink.send(msg).await,
            Attempt::Unflushed => match self.shared.room.try_acquire() {
                Ok(slot) => {
                    slot.forget();
                    self.enqueue(Frame {
                        msg: None,
                        permit: None,
                        read_at: None,
                    });
                    Ok(())
                }
                // The writer is gone, and the socket with it.
                Err(TryAcquireError::Closed) => Err(axum::Error::new(Closed)),
                // No room: the queue is full, yet nothing was queued when
                // the sink was taken; all but impossible.
                Err(TryAcquireError::NoPermits) => sink.flush().await,
            },
        })
    }

    /// Queues a small control frame without waiting; `false` when the queue
    /// is full or gone (the peer is not reading).
    pub fn try_send(&self, msg: Message) -> bool {
        match self.shared.room.try_acquire() {
            Ok(slot) => {
                slot.forget();
                self.enqueue(Frame {
                    msg: Some(msg),
                    permit: None,
                    read_at: None,
                });
                true
            }
            Err(_) => false,
        }
    }

    async fn queue(&self, frame: Frame) -> Result<(), Closed> {
        self.shared.room.acquire().await.map_err(|_| Closed)?.forget();
        self.enqueue(frame);
        Ok(())
    }

    /// Counts and queues a frame whose room was taken. Nothing waits in
    /// between: a send cancelled while it waits for room (an aborted
    /// forwarder) leaves the count as it was.
    fn enqueue(&self, frame: Frame) {
        self.shared.queued.fetch_add(1, Ordering::AcqRel);
        metrics::get().outbox_queued.increment(1.0);
        // Fails only once the writer is gone, and then the socket is done
        // (`room` is closed): the frame goes unsent, as with a failed write.
        let _ = self.tx.send(Box::new(frame));
    }

    /// Whether the socket is done: it failed, a close frame went out, or
    /// its writer is gone.
    pub fn is_closed(&self) -> bool {
        self.shared.done.load(Ordering::Acquire) || self.shared.room.is_closed() || self.tx.is_disconnected()
    }
}

/// What a direct write did.
enum Direct {
    /// Sent, or handed to the writer to flush, or failed.
    Written(Result<(), axum::Error>),
    /// Not sent: to be queued.
    Queue(Message),
}

/// How one poll of a direct write went.
enum Attempt {
    /// Sent and flushed, or failed.
    Done(Result<(), axum::Error>),
    /// The sink could not take the frame yet.
    Busy(Message),
    /// The frame is in the sink, not all of it on the socket.
    Unflushed,
}

/// Polls `sink` once, with a waker that does nothing, to send `msg`.
fn poll_once(sink: &mut Sink, msg: Message) -> Attempt {
    let mut cx = Context::from_waker(Waker::noop());
    let mut sink = Pin::new(sink);
    match sink.as_mut().poll_ready(&mut cx) {
        Poll::Ready(Ok(())) => {
            if let Err(e) = sink.as_mut().start_send(msg) {
                return Attempt::Done(Err(e));
            }
        }
        Poll::Ready(Err(e)) => return Attempt::Done(Err(e)),
        Poll::Pending => return Attempt::Busy(msg),
    }
    match sink.poll_flush(&mut cx) {
        Poll::Ready(res) => Attempt::Done(res),
        Poll::Pending => Attempt::Unflushed,
    }
}

fn message_len(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        _ => 16,
    }
}

/// A socket's running writer task.
#[derive(Debug)]
pub struct Writer(JoinHandle<()>);

impl Writer {
    /// Once every [`Outbox`] of the socket is dropped: waits for what is
    /// queued to go out, at most [`FINISH_WAIT`], then stops the writer.
    pub async fn finish(mut self) {
        if tokio::time::timeout(FINISH_WAIT, &mut self.0).await.is_err() {
            self.0.abort();
        }
    }
}

/// Drains a socket's queue into its sink: feeds every frame that is ready,
/// then flushes once. Ends when the queue closes or the socket fails; a
/// `Close` frame is the last thing written.
async fn write_loop(shared: Arc<Shared>, rx: flume::Receiver<Box<Frame>>) {
    // However the writer ends (aborted, or a panic), senders waiting for
    // room or budget are let go.
    let _close = CloseOnEnd(shared.clone());
    let mut ok = true;
    while ok && let Ok(first) = rx.recv_async().await {
        shared.room.add_permits(1);
        // Per batch, not kept between batches: an idle socket's writer
        // holds no buffer that its last burst grew.
        let mut held = Vec::new();
        // Read times of the output fed since the last flush.
        let mut reads: Vec<Instant> = Vec::new();
        let mut sink = shared.sink.lock().await;
        if shared.done.load(Ordering::Acquire) {
            metrics::get().outbox_queued.decrement(1.0);
            break;
        }
        let mut frame = Some(first);
        let mut closing = false;
        while let Some(f) = frame.take() {
            let f = *f;
            closing = matches!(f.msg, Some(Message::Close(_)));
            if let Some(msg) = f.msg {
                ok = sink.feed(msg).await.is_ok();
            }
            shared.queued.fetch_sub(1, Ordering::AcqRel);
            metrics::get().outbox_queued.decrement(1.0);
            reads.extend(f.read_at);
            held.push(f.permit);
            if !ok || closing {
                break;
            }
            frame = rx.try_recv().ok();
            if frame.is_some() {
                shared.room.add_permits(1);
            }
        }
        ok = ok && sink.flush().await.is_ok() && !closing;
        for t in reads {
            metrics::delivered(ok.then_some(t));
        }
        if !ok {
            // Under the lock: no direct send slips in after a close.
            shared.done.store(true, Ordering::Release);
        }
        drop(held);
    }
    shared.done.store(true, Ordering::Release);
    // No room or budget any more: senders waiting for either, and later
    // ones, fail.
    shared.close();
    // Frames never written leave the queue gauge too.
    while rx.try_recv().is_ok() {
        metrics::get().outbox_queued.decrement(1.0);
    }
    let _ = shared.sink.lock().await.close().await;
}

/// Closes a socket's queue room and budget when dropped: see [`write_loop`].
struct CloseOnEnd(Arc<Shared>);

impl Drop for CloseOnEnd {
    fn drop(&mut self) {
        self.0.done.store(true, Ordering::Release);
        self.0.close();
    }
}

impl Shared {
    /// Closes the queue's room and the byte budget: see [`Shared::budget`].
    fn close(&self) {
        self.room.close();
        self.budget.close();
    }
}

#[cfg(test)]
mod tests;
