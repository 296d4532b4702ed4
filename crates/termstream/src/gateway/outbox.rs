//! A socket's outbound queue, bounded in bytes.
//!
//! Every frame bound for a socket goes through its [`Outbox`]: forwarders
//! and the connection task put frames in, the socket's writer task takes
//! them out, feeds them to the WebSocket and flushes once per batch. A frame
//! holds permits of the socket's byte budget until the writer has flushed
//! it, so at most `budget` bytes of output wait per socket; a forwarder whose
//! socket is full waits, and its session's broadcast moves on without it
//! (it catches up by offset later; see `forward`).

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket};
use futures_util::SinkExt;
use futures_util::stream::SplitSink;
use tokio::sync::{OwnedSemaphorePermit, Semaphore, mpsc};
use tokio::task::JoinHandle;

/// Frames in flight per socket, whatever their size.
const FRAMES_IN_FLIGHT: usize = 256;

/// One frame and the budget it holds.
#[derive(Debug)]
pub struct Frame {
    pub msg: Message,
    pub permit: Option<OwnedSemaphorePermit>,
}

/// The socket is gone.
#[derive(Debug, Clone, Copy)]
pub struct Closed;

/// The sending side of a socket's queue; cheap to clone.
#[derive(Debug, Clone)]
pub struct Outbox {
    tx: mpsc::Sender<Frame>,
    budget: Arc<Semaphore>,
    budget_bytes: usize,
}

impl Outbox {
    /// A queue of `budget_bytes` and the receiver its writer drains.
    pub fn new(budget_bytes: usize) -> (Outbox, mpsc::Receiver<Frame>) {
        let (tx, rx) = mpsc::channel(FRAMES_IN_FLIGHT);
        let budget_bytes = budget_bytes.clamp(1, Semaphore::MAX_PERMITS);
        let outbox = Outbox {
            tx,
            budget: Arc::new(Semaphore::new(budget_bytes)),
            budget_bytes,
        };
        (outbox, rx)
    }

    /// Queues `msg`, waiting while the socket's budget is spent.
    pub async fn send(&self, msg: Message) -> Result<(), Closed> {
        let cost = message_len(&msg).clamp(1, self.budget_bytes) as u32;
        let permit = self.budget.clone().acquire_many_owned(cost).await.map_err(|_| Closed)?;
        self.tx
            .send(Frame { msg, permit: Some(permit) })
            .await
            .map_err(|_| Closed)
    }

    /// Queues a small control frame without waiting; `false` when the queue
    /// is full or gone (the peer is not reading).
    pub fn try_send(&self, msg: Message) -> bool {
        self.tx.try_send(Frame { msg, permit: None }).is_ok()
    }

    /// Whether the socket's writer is gone.
    pub fn is_closed(&self) -> bool {
        self.tx.is_closed()
    }
}

fn message_len(msg: &Message) -> usize {
    match msg {
        Message::Text(t) => t.len(),
        Message::Binary(b) => b.len(),
        _ => 16,
    }
}

/// Drains a socket's queue into its sink: feeds every frame that is ready,
/// then flushes once. Ends when the queue closes or the socket fails; a
/// `Close` frame is the last thing written.
/// How long a closing socket's queued frames may take to go out before its
/// writer is stopped: a client that stopped reading cannot hold the socket.
const FINISH_WAIT: Duration = Duration::from_secs(5);

/// A socket's running writer task.
#[derive(Debug)]
pub struct Writer(JoinHandle<()>);

impl Writer {
    /// Starts the writer that drains `rx` into `sink`.
    pub fn spawn(sink: SplitSink<WebSocket, Message>, rx: mpsc::Receiver<Frame>) -> Writer {
        Writer(tokio::spawn(write_loop(sink, rx)))
    }

    /// Once every [`Outbox`] of the socket is dropped: waits for what is
    /// queued to go out, at most [`FINISH_WAIT`], then stops the writer.
    pub async fn finish(mut self) {
        if tokio::time::timeout(FINISH_WAIT, &mut self.0).await.is_err() {
            self.0.abort();
        }
    }
}

async fn write_loop(mut sink: SplitSink<WebSocket, Message>, mut rx: mpsc::Receiver<Frame>) {
    let mut held = Vec::new();
    while let Some(first) = rx.recv().await {
        let mut closing = matches!(first.msg, Message::Close(_));
        let mut ok = sink.feed(first.msg).await.is_ok();
        held.push(first.permit);
        while ok && !closing {
            match rx.try_recv() {
                Ok(frame) => {
                    closing = matches!(frame.msg, Message::Close(_));
                    ok = sink.feed(frame.msg).await.is_ok();
                    held.push(frame.permit);
                }
                Err(_) => break,
            }
        }
        ok = ok && sink.flush().await.is_ok();
        held.clear();
        if !ok || closing {
            break;
        }
    }
    rx.close();
    let _ = sink.close().await;
}
