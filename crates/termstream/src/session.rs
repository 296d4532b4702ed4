//! Sessions: a program on a PTY or on pipes, its output log and its screen.
//!
//! Each session is one actor task ([`actor`]) that owns the program, its I/O,
//! the in-memory [`log::OutputRing`] and the on-disk [`store`]; nothing else
//! touches that state, and no lock guards it. Everyone else holds a
//! [`SessionHandle`]: channels to the actor, a `watch` of the session's
//! [`SessionInfo`], and the broadcast of its [`LogEvent`]s. A pty session
//! also has a screen task ([`screen_task`]) that follows the log with a
//! headless terminal ([`screen::ScreenModel`]) off the PTY's hot path.

pub mod actor;
pub mod background;
pub mod cast;
pub mod cgroup;
mod error;
pub mod flood;
pub mod input;
pub mod kin;
pub mod lane;
pub mod log;
pub mod log_events;
mod meta;
pub mod presence;
pub mod process;
pub mod remote;
pub mod screen;
pub mod screen_task;
pub mod store;
mod terminate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use termstream_proto::{Epoch, ProjectId, SessionId, SessionInfo, SessionKind, Snapshot};
use tokio::sync::{oneshot, watch};

pub use self::error::SessionError;
use self::log::{Chunk, RingRead};
pub use self::presence::{Changed, InfoSender, Presence, ViewerGuard};
use self::store::{DiskLimits, DiskRead};

/// How many log events a subscriber may fall behind before it lags. Small on
/// purpose: a lagging receiver pins up to this many chunks; subscribers that
/// lag catch up by offset from the log. Nothing is allocated for it up front
/// (see [`log_events`]).
pub const EVENT_QUEUE: usize = 32;

/// Settings every session shares.
#[derive(Debug, Clone)]
pub struct SessionSettings {
    /// Byte budget of each session's in-memory ring.
    pub ring_bytes: usize,
    /// Limits of each session's disk log.
    pub disk: DiskLimits,
    /// How long terminate waits between SIGTERM and SIGKILL.
    pub grace: Duration,
    /// Lines of scrollback a snapshot carries.
    pub scrollback_lines: usize,
    /// The largest window size a pty session may be given.
    pub max_cols: u16,
    pub max_rows: u16,
}

impl SessionSettings {
    /// Whether a `cols` × `rows` window is within the largest allowed.
    pub fn window_fits(&self, cols: u16, rows: u16) -> bool {
        cols <= self.max_cols && rows <= self.max_rows
    }
}

/// Something that happened in a session's log, in log order.
#[derive(Debug, Clone)]
pub enum LogEvent {
    /// Output was appended. Behind an `Arc`: each receiver's copy is a
    /// pointer, not a chunk.
    Output(Arc<Chunk>),
    /// The window changed size; output from `offset` on is at the new size.
    Resized { offset: u64, cols: u16, rows: u16 },
    /// A terminate request was accepted; `Ended` follows.
    Terminating,
    /// The program and all its output are done; the last event of a log.
    Ended(Arc<SessionInfo>),
}

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
    /// terminate was taken: an actor answers `Ok` once it began; a stand-in
    /// answers with its owner's answer, or why the owner could not be asked
    /// (the cluster's Redis cannot be reached, or the owner did not answer:
    /// `busy`, which does not mean it was not taken: see
    /// [`SessionHandle::terminate`]).
    Terminate {
        reply: oneshot::Sender<Result<(), SessionError>>,
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

/// A cheap, cloneable handle to a session's actor.
#[derive(Debug, Clone)]
pub struct SessionHandle {
    id: SessionId,
    project: ProjectId,
    epoch: Epoch,
    kind: SessionKind,
    dir: Arc<PathBuf>,
    /// Commands to the actor; closes when the actor ends. A `flume`
    /// channel: it allocates its queue only when commands wait (tokio's
    /// allocates 32 slots and cache-padded state up front, about 800 bytes
    /// per session).
    commands: flume::Sender<Box<Command>>,
    /// The program's input, shared with the actor.
    input: Arc<input::Input>,
    /// The latest info, published by the actor on every change.
    info: watch::Receiver<SessionInfo>,
    /// Requests to the screen task (pty sessions only).
    screen: Option<screen_task::ScreenLink>,
    /// How many WebSocket clients watch the session now.
    viewers: Arc<Presence>,
    /// Set when the session runs on another node of a cluster: its input
    /// and snapshots go there ([`remote`]); its commands channel leads to
    /// a local stand-in that reads the session's output from Redis.
    remote: Option<Arc<dyn remote::RemoteSession>>,
    /// Where the session's actor runs (see [`lane`]); its viewers'
    /// forwarders follow it.
    lane: lane::LaneWish,
}

impl SessionHandle {
    pub fn id(&self) -> &SessionId {
        &self.id
    }

    pub fn epoch(&self) -> Epoch {
        self.epoch
    }

    pub fn kind(&self) -> SessionKind {
        self.kind
    }

    /// The session's directory under the data dir.
    pub fn dir(&self) -> &Path {
        &self.dir
    }

    /// How many WebSocket clients watch the session now.
    pub fn viewers(&self) -> usize {
        self.viewers.viewers()
    }

    /// Marks the session in `changed` on every change of its viewer count
    /// or of its info that wakes receivers (see [`presence`]).
    pub fn follow_changes(&self, changed: &Arc<Changed>) {
        self.viewers.follow(changed);
    }

    /// The session's viewer count, shared by its handles.
    pub fn presence(&self) -> &Arc<Presence> {
        &self.viewers
    }

    /// Counts a viewer until the guard drops.
    pub fn add_viewer(&self) -> ViewerGuard {
        self.viewers.add_viewer()
    }

    /// The session's project (fixed at creation).
    pub fn project(&self) -> &ProjectId {
        &self.project
    }

    /// Whether the program may still produce output; reads the latest info
    /// without copying it.
    pub fn is_running(&self) -> bool {
        self.info.borrow().status.is_running()
    }

    /// One past the last byte of output so far, without copying the info.
    pub fn output_offset(&self) -> u64 {
        self.info.borrow().output_offset
    }

    /// The window size now, without copying the info.
    pub fn size(&self) -> (u16, u16) {
        let info = self.info.borrow();
        (info.cols, info.rows)
    }

    /// A receiver of the session's info, which the actor replaces on every
    /// change of status or size (not on output).
    pub fn watch_info(&self) -> watch::Receiver<SessionInfo> {
        self.info.clone()
    }

    /// Whether `info` is a receiver of this very session's info: the same
    /// incarnation, and for another node's session the same copy of it
    /// (a session created again under its id, or a new copy, has its own).
    pub fn is_incarnation(&self, info: &watch::Receiver<SessionInfo>) -> bool {
        self.info.same_channel(info)
    }

    /// Whether `other` is a handle of this very session (see
    /// [`SessionHandle::is_incarnation`]).
    pub fn same_incarnation(&self, other: &SessionHandle) -> bool {
        self.info.same_channel(&other.info)
    }

    /// Spawns `task`, a viewer's forwarder, to run where the session's
    /// actor runs: on the bulk lane while the session floods beside a
    /// typist, else on the current runtime.
    pub fn spawn_follower(&self, task: impl Future<Output = ()> + Send + 'static) -> lane::Follower {
        lane::spawn_follower(task, self.lane.clone())
    }

    /// Why the session went, once its info closed ([`remote::Departure`]).
    pub fn departure(&self) -> remote::Departure {
        remote::Departure(self.remote.clone())
    }

    /// Whether the session runs on another node of the cluster.
    pub fn is_remote(&self) -> bool {
        self.remote.is_some()
    }

    /// The latest info, as [`SessionHandle::info`]; for a remote session,
    /// after bringing its end offset up to date from Redis first.
    pub async fn info_now(&self) -> SessionInfo {
        if let Some(remote) = &self.remote {
            remote.refresh().await;
        }
        self.info()
    }

    /// The latest info (a copy), with `durationMs` filled in while running.
    pub fn info(&self) -> SessionInfo {
        let mut info = self.info.borrow().clone();
        if info.status.is_running() {
            info.duration_ms = info.started_at.map(|s| crate::clock::now_ms().saturating_sub(s));
        }
        info
    }

    fn closed(&self) -> SessionError {
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
    async fn answer<T>(&self, mut answer: oneshot::Receiver<T>) -> Result<T, SessionError> {
        let mut info = self.info.clone();
        let gone = async move { while info.changed().await.is_ok() {} };
        tokio::select! {
            answer = &mut answer => answer.map_err(|_| self.closed()),
            // An answer sent just before the actor ended is still taken.
            () = gone => answer.try_recv().map_err(|_| self.closed()),
        }
    }
}

/// A running PTY session's info (80×24, epoch 1, nothing printed), for unit
/// tests to adjust with `..`.
#[cfg(test)]
pub(crate) fn test_info(id: &str) -> SessionInfo {
    SessionInfo {
        id: termstream_proto::SessionId::new(id).expect("a test's id is valid"),
        kind: termstream_proto::SessionKind::Pty,
        argv: vec!["true".into()],
        cwd: "/".into(),
        project: termstream_proto::ProjectId::default(),
        status: termstream_proto::SessionStatus::Running,
        epoch: termstream_proto::Epoch(1),
        output_offset: 0,
        cols: 80,
        rows: 24,
        pid: None,
        created_at: 0,
        started_at: None,
        ended_at: None,
        exit_code: None,
        signal: None,
        duration_ms: None,
        error: None,
    }
}
