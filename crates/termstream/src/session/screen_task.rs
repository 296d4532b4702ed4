//! The task that keeps a pty session's screen model up to date.
//!
//! It follows the session's broadcast of [`LogEvent`]s and feeds a
//! [`ScreenModel`], off the PTY's hot path: the actor never waits for it.
//! When it falls behind (the broadcast lagged) or starts on a log that ended
//! before (a session loaded after a restart), it catches up by reading the
//! log itself, from the ring or from disk. Before answering a snapshot it
//! drains what was published and catches up to the log's end, so the
//! snapshot's offset is exact: output from there on follows it.

use termstream_proto::Snapshot;
use tokio::sync::broadcast::error::RecvError;
use tokio::sync::{broadcast, mpsc};

use super::screen::ScreenModel;
use super::{LogEvent, ScreenRequest, SessionError, SessionHandle};

/// The most bytes one catch-up read asks for.
const CATCH_UP_READ: usize = 1 << 20;

struct ScreenTask {
    handle: SessionHandle,
    model: ScreenModel,
    scrollback: usize,
    /// The log offset the model has seen up to.
    offset: u64,
    /// Live events from the actor; `None` once the actor closed it.
    events: Option<broadcast::Receiver<LogEvent>>,
    /// Requests from handles; the task ends when every handle is gone.
    requests: mpsc::Receiver<ScreenRequest>,
}

/// Starts the screen task of `handle`'s session and returns its request
/// channel.
pub(crate) fn spawn(
    handle: &SessionHandle,
    events: broadcast::Receiver<LogEvent>,
    scrollback: usize,
) -> mpsc::Sender<ScreenRequest> {
    let (tx, requests) = mpsc::channel(16);
    let info = handle.info();
    let task = ScreenTask {
        handle: handle.clone(),
        model: ScreenModel::new(info.cols.max(1), info.rows.max(1), scrollback),
        scrollback,
        offset: 0,
        events: Some(events),
        requests,
    };
    tokio::spawn(task.run());
    tx
}

impl ScreenTask {
    async fn run(mut self) {
        loop {
            tokio::select! {
                ev = recv(&mut self.events), if self.events.is_some() => match ev {
                    Ok(ev) => self.apply(ev).await,
                    Err(RecvError::Lagged(_)) => self.catch_up().await,
                    Err(RecvError::Closed) => self.events = None,
                },
                req = self.requests.recv() => match req {
                    Some(ScreenRequest::Snapshot { reply }) => {
                        self.drain().await;
                        self.catch_up().await;
                        let (cols, rows) = self.model.size();
                        let _ = reply.send(Snapshot {
                            epoch: self.handle.epoch(),
                            offset: self.offset,
                            cols,
                            rows,
                            data: self.model.snapshot(),
                        });
                    }
                    None => return,
                },
            }
        }
    }

    /// Applies every event already published.
    async fn drain(&mut self) {
        while let Some(events) = &mut self.events {
            match events.try_recv() {
                Ok(ev) => self.apply(ev).await,
                Err(broadcast::error::TryRecvError::Lagged(_)) => self.catch_up().await,
                Err(broadcast::error::TryRecvError::Closed) => self.events = None,
                Err(broadcast::error::TryRecvError::Empty) => return,
            }
        }
    }

    async fn apply(&mut self, ev: LogEvent) {
        match ev {
            LogEvent::Output(chunk) => {
                if chunk.end() <= self.offset {
                    return;
                }
                if chunk.offset > self.offset {
                    // A gap: fetch what is missing from the log first.
                    self.catch_up().await;
                    if chunk.end() <= self.offset {
                        return;
                    }
                }
                let part = chunk.from_offset(self.offset);
                self.model.feed(&part.data);
                self.offset = part.end();
            }
            LogEvent::Resized { cols, rows, .. } => self.model.resize(cols.max(1), rows.max(1)),
            LogEvent::Ended(_) | LogEvent::Terminating => {}
        }
    }

    /// Reads the log from `offset` to its end, as it is now.
    async fn catch_up(&mut self) {
        let target = self.handle.info().output_offset;
        while self.offset < target {
            match self.handle.read(self.offset, CATCH_UP_READ).await {
                Ok(chunks) if chunks.is_empty() => return,
                Ok(chunks) => {
                    for c in chunks {
                        self.model.feed(&c.data);
                        self.offset = c.end();
                    }
                }
                Err(SessionError::Gone { earliest }) => {
                    // The start of the log is gone: rebuild from what is held.
                    tracing::warn!(session = %self.handle.id(), earliest, "screen model restarts from the earliest output held");
                    let info = self.handle.info();
                    self.model = ScreenModel::new(info.cols.max(1), info.rows.max(1), self.scrollback);
                    self.offset = earliest;
                }
                Err(e) => {
                    tracing::warn!(session = %self.handle.id(), error = %e, "screen model cannot catch up");
                    return;
                }
            }
        }
        let (cols, rows) = {
            let info = self.handle.info();
            (info.cols.max(1), info.rows.max(1))
        };
        if self.model.size() != (cols, rows) {
            self.model.resize(cols, rows);
        }
    }
}

async fn recv(events: &mut Option<broadcast::Receiver<LogEvent>>) -> Result<LogEvent, RecvError> {
    match events {
        Some(rx) => rx.recv().await,
        None => std::future::pending().await,
    }
}
