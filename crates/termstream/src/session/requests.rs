//! What a [`SessionHandle`] asks of its session: the commands to the
//! actor ([`Command`]) and the requests to the screen task
//! ([`ScreenRequest`]), and the handle's methods that send them (input,
//! resize, reads, subscribe, snapshot, shutdown) and await their answers,
//! which end with the session's info when the actor is gone
//! ([`SessionHandle::answer`]). Terminate is `session/terminate.rs`'s.

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use termstream_proto::{SessionInfo, Snapshot};
use tokio::sync::oneshot;

use super::log::{Chunk, RingRead};
use super::store::{self, DiskRead};
use super::{Began, SessionError, SessionHandle, input, log_events};

/// A request to a session's actor. Sent boxed: the channel allocates its
/// first 32 slots up front, and a pointer (8 bytes, not 32) in each keeps
/// 768 bytes less per session.
#[derive(Debug)]
pub(crate) enum Command {
    /// Sets the window size (pty sessions). With `info`, a stand-in asks
    /// the owner for its info after the resize and answers with it (`None`
    /// from an owner too old to give it); an actor always answers `None`,
    /// as its published info shows the new size already.
    Resize {
        cols: u16,
        rows: u16,
        info: bool,
        reply: oneshot::Sender<Result<Option<SessionInfo>, SessionError>>,
    },
    /// Starts ending the program: SIGHUP and SIGTERM now, SIGKILL after the
    /// grace period. Watch the info to see the end. `reply` says the
    /// terminate was taken: an actor answers `Ok` once it began, with
    /// whether this command began the end ([`Began`]); a stand-in answers
    /// with its owner's answer ([`Began::Unknown`] when taken), or why the
    /// owner could not be asked (the cluster's Redis cannot be reached, or
    /// the owner did not answer: `busy`, which does not mean it was not
    /// taken: see [`SessionHandle::terminate`]).
    Terminate {
        reply: oneshot::Sender<Result<Began, SessionError>>,
    },
    /// Reads held output from the ring.
    Read {
        since: u64,
        max_bytes: usize,
        reply: oneshot::Sender<RingRead>,
    },
    /// Subscribes to live events, atomically with a read of the ring from
    /// `since`: the answer's backlog plus the receiver miss nothing and
    /// repeat nothing.
    Subscribe {
        since: u64,
        reply: oneshot::Sender<Subscription>,
    },
    /// Answers the last resize (offset, cols, rows), for a follower that may have lost its event.
    LastResize(oneshot::Sender<Option<(u64, u16, u16)>>),
    /// Kills whatever still runs and ends the actor (the session is deleted).
    Shutdown { reply: oneshot::Sender<()> },
}

/// The answer to a subscribe.
#[derive(Debug)]
pub struct Subscription {
    /// The ring read from `since`: chunks, or where the ring starts now.
    pub backlog: RingRead,
    /// The log's end when the receiver was created: live events start here.
    pub end: u64,
    /// Live events after `end`.
    pub live: log_events::Receiver,
    /// The final info when the log had ended already: no `Ended` event
    /// will come on `live` then.
    pub ended: Option<Arc<SessionInfo>>,
    /// The session's last resize (log offset, cols, rows) when it is at or
    /// after `since`: its `Resized` event went out before this receiver
    /// existed, but a replay of the log from `since` crosses it.
    pub last_resize: Option<(u64, u16, u16)>,
    /// A terminate was accepted before the receiver was created: its
    /// `Terminating` event will not come on `live`.
    pub terminating: bool,
}

/// Requests to the screen task.
#[derive(Debug)]
pub(crate) enum ScreenRequest {
    Snapshot {
        reply: oneshot::Sender<Snapshot>,
    },
    /// From the actor: the terminal was resized at log offset `offset`.
    Resized {
        offset: u64,
        cols: u16,
        rows: u16,
    },
}

impl SessionHandle {
    pub(super) fn closed(&self) -> SessionError {
        SessionError::Closed(self.id.clone())
    }

    /// Sends input to the program, then closes its stdin if `eof`. `seq`:
    /// the sender's client id and sequence number (input with a seq
    /// already applied for that client is dropped). Waits at most `wait`
    /// while the program's input queue is full; then `InputBusy` says how
    /// much went in.
    pub async fn input(
        &self,
        data: Bytes,
        eof: bool,
        seq: Option<(Arc<str>, u64)>,
        wait: Duration,
    ) -> Result<(), SessionError> {
        if !self.is_running() {
            return Err(SessionError::NotRunning(self.id.clone()));
        }
        if let Some(remote) = &self.remote {
            return remote.input(data, eof, seq, wait).await;
        }
        let m = crate::observe::metrics::get();
        let len = data.len();
        self.input.send(data, eof, seq, wait).await.map_err(|e| match e {
            input::InputError::Closed => SessionError::NotRunning(self.id.clone()),
            input::InputError::Busy { taken, total } => {
                m.input_busy.increment(1);
                m.bytes_in.increment(taken as u64);
                SessionError::InputBusy { taken, total }
            }
        })?;
        m.bytes_in.increment(len as u64);
        Ok(())
    }

    /// Sets the window size of a pty session.
    pub async fn resize(&self, cols: u16, rows: u16) -> Result<(), SessionError> {
        self.send_resize(cols, rows, false).await.map(drop)
    }

    /// Sets the window size, and returns the session's info after it: for
    /// a session another node owns, the owner's (this node's copy may not
    /// show the size yet), unless the owner is too old to give it; else
    /// this handle's.
    pub async fn resize_with_info(&self, cols: u16, rows: u16) -> Result<SessionInfo, SessionError> {
        let from_owner = self.send_resize(cols, rows, true).await?;
        Ok(from_owner.unwrap_or_else(|| self.info()))
    }

    async fn send_resize(&self, cols: u16, rows: u16, info: bool) -> Result<Option<SessionInfo>, SessionError> {
        let (reply, answer) = oneshot::channel();
        let cmd = Command::Resize {
            cols,
            rows,
            info,
            reply,
        };
        self.commands
            .send_async(Box::new(cmd))
            .await
            .map_err(|_| self.closed())?;
        self.answer(answer).await?
    }

    /// Reads output from `since`, at most about `max_bytes`: from the ring,
    /// else from disk.
    pub async fn read(&self, since: u64, max_bytes: usize) -> Result<Vec<Chunk>, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send_async(Box::new(Command::Read {
                since,
                max_bytes,
                reply,
            }))
            .await
            .map_err(|_| self.closed())?;
        match self.answer(answer).await? {
            RingRead::Held(chunks) => Ok(chunks),
            RingRead::Future { end } => Err(SessionError::PastEnd { since, end }),
            // A remote session's stand-in looked everywhere already.
            RingRead::Evicted { start } if self.remote.is_some() => Err(SessionError::Gone { earliest: start }),
            RingRead::Evicted { start } => match self.read_disk(since, max_bytes).await? {
                // The disk lacks what the ring let go (its writes failed):
                // say where output is held again, not "nothing more".
                chunks if chunks.is_empty() => Err(SessionError::Gone { earliest: start }),
                chunks => Ok(chunks),
            },
        }
    }

    /// Reads output from the disk log only.
    pub async fn read_disk(&self, since: u64, max_bytes: usize) -> Result<Vec<Chunk>, SessionError> {
        let dir = self.dir.clone();
        let read = tokio::task::spawn_blocking(move || store::read_output(&dir, since, max_bytes))
            .await
            .map_err(|e| SessionError::Io(std::io::Error::other(e)))??;
        match read {
            DiskRead::Chunks(chunks) => Ok(chunks),
            DiskRead::Gone { earliest } => Err(SessionError::Gone { earliest }),
        }
    }

    /// Subscribes to live events from `since` (see [`Command::Subscribe`]).
    pub async fn subscribe(&self, since: u64) -> Result<Subscription, SessionError> {
        let (reply, answer) = oneshot::channel();
        self.commands
            .send_async(Box::new(Command::Subscribe { since, reply }))
            .await
            .map_err(|_| self.closed())?;
        self.answer(answer).await
    }

    /// The screen of a pty session, as escape sequences, and the log offset
    /// it reflects.
    pub async fn snapshot(&self) -> Result<Snapshot, SessionError> {
        if let Some(remote) = &self.remote {
            return remote.snapshot().await;
        }
        let Some(screen) = &self.screen else {
            return Err(SessionError::WrongKind {
                id: self.id.clone(),
                kind: self.kind,
                what: "a screen snapshot",
            });
        };
        let (reply, answer) = oneshot::channel();
        // A background catch-up in hand stops at its next slice.
        screen.bell.snapshot_asked();
        screen
            .requests
            .send_async(ScreenRequest::Snapshot { reply })
            .await
            .map_err(|_| self.closed())?;
        self.answer(answer).await
    }

    /// Ends the actor, killing whatever still runs; used by delete.
    pub async fn shutdown(&self) {
        let (reply, answer) = oneshot::channel();
        if self
            .commands
            .send_async(Box::new(Command::Shutdown { reply }))
            .await
            .is_ok()
        {
            let _ = self.answer(answer).await;
        }
    }

    /// The answer to a request sent to the actor or the screen task, or
    /// [`SessionError::Closed`] once the actor is gone (its info's sender
    /// goes with it, and the screen task ends only after it). A request
    /// that lands in a channel just as its task ends is never read, and
    /// `flume` keeps the queue, and the reply's sender in it, while any
    /// sender of the channel lives: every handle holds one. Waiting on the
    /// answer alone then waited forever (the screen task's read of a
    /// session being deleted: 4 hangs in 600 runs of its test under load).
    ///
    /// A session on another node: its stand-in holds the info's sender
    /// there and may end while handles remain (the directory dropped or
    /// replaced it); the info closes with it, so a request left in its
    /// queue is answered [`SessionError::Closed`] here too.
    pub(super) async fn answer<T>(&self, mut answer: oneshot::Receiver<T>) -> Result<T, SessionError> {
        let mut info = self.info.clone();
        let gone = async move { while info.changed().await.is_ok() {} };
        tokio::select! {
            answer = &mut answer => answer.map_err(|_| self.closed()),
            // An answer sent just before the actor ended is still taken.
            () = gone => answer.try_recv().map_err(|_| self.closed()),
        }
    }
}
