//! Sessions: a program on a PTY or on pipes, its output log and its screen.
//!
//! Each session is one actor task ([`actor`]) that owns the program, its I/O,
//! the in-memory [`log::OutputRing`] and the on-disk [`store`]; nothing else
//! touches that state, and no lock guards it. Everyone else holds a
//! [`SessionHandle`]: channels to the actor, a `watch` of the session's
//! [`SessionInfo`], and the broadcast of its [`LogEvent`]s. A pty session
//! also has a screen task ([`screen_task`]) that follows the log with a
//! headless terminal ([`screen::ScreenModel`]) off the PTY's hot path.
//!
//! This file holds the handle and the types every part shares; what a
//! handle asks of the actor and the screen task, and how it awaits the
//! answers, is `session/requests.rs`; terminate is `session/terminate.rs`.
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
mod requests;
pub mod screen;
pub mod screen_task;
pub mod store;
mod terminate;

use std::path::{Path, PathBuf};
use std::sync::Arc;
use std::time::Duration;

use termstream_proto::{Epoch, ProjectId, SessionId, SessionInfo, SessionKind};
use tokio::sync::watch;

pub use self::error::SessionError;
use self::log::Chunk;
pub use self::presence::{Changed, InfoSender, Presence, ViewerGuard};
pub use self::requests::Subscription;
pub(crate) use self::requests::{Command, ScreenRequest};
use self::store::DiskLimits;
pub use self::terminate::{Began, TerminateOutcome, Terminated};

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
