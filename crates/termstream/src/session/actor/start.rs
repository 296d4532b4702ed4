//! Building a session's actor: a freshly spawned program's
//! ([`start_running`], then [`Launch`]), or one loaded from disk that ended
//! ([`start_ended`]) or was running when the server died ([`start_lost`]).
//! Each builds the [`SessionHandle`] with it and starts the screen task of
//! a pty session.

use std::path::PathBuf;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use termstream_proto::{SessionInfo, SessionKind};
use tokio::sync::watch;

use super::super::cgroup::SessionCgroup;
use super::super::flood::FloodWatch;
use super::super::input::Input;
use super::super::lane::LaneWish;
use super::super::log::OutputRing;
use super::super::meta::MetaWriter;
use super::super::process::{self, SessionIo, Spawned};
use super::super::store::LogWriter;
use super::super::{InfoSender, Presence, SessionHandle, SessionSettings};
use super::{Actor, Leftovers, Phase};

/// A freshly spawned program and what the actor needs to end it.
pub(crate) struct Started {
    pub spawned: Spawned,
    /// A spare this server made and synced, with room for the first record
    /// (see `store::write_meta_new`).
    pub prepared: bool,
    pub writer: Option<LogWriter>,
    pub marker: String,
    pub cgroup: Option<SessionCgroup>,
}

/// Builds the actor (and starts the screen task) of a freshly spawned
/// program; the actor runs once [`Launch::launch`] is called. The registry
/// inserts the handle under its lock and launches after releasing it, so
/// that `meta.json`'s durable first write does not hold up other creates.
pub(crate) fn start_running(
    info: SessionInfo,
    started: Started,
    dir: PathBuf,
    settings: SessionSettings,
) -> (SessionHandle, Launch) {
    let Started {
        spawned,
        prepared,
        writer,
        marker,
        cgroup,
    } = started;
    let (mut actor, handle) = build(info, dir, settings, 0, marker, Some(spawned.input_fd));
    actor.cgroup = cgroup;
    actor.writer = writer;
    actor.child = Some(spawned.child);
    match spawned.io {
        SessionIo::Pty { reader, writer } => {
            actor.out = Some(Box::pin(reader));
            actor.pty = Some(writer);
        }
        SessionIo::Pipes { stdin, stdout, stderr } => {
            actor.stdin = Some(Box::pin(stdin));
            actor.out = Some(Box::pin(stdout));
            actor.err = Some(Box::pin(stderr));
        }
    }
    (handle, Launch { actor, prepared })
}

/// A built actor of a new session, not yet running.
pub(crate) struct Launch {
    actor: Actor,
    /// [`Started::prepared`]: the first record goes over the room.
    prepared: bool,
}

impl Launch {
    /// Writes the session's first `meta.json` (blocking: it is fsynced) and
    /// starts the actor. Before the actor runs, so no later record races
    /// the first one; before the creation is answered: see
    /// `MetaWriter::write_now`.
    pub(crate) fn launch(self) {
        self.actor.meta.write_now(&self.actor.info, self.prepared);
        self.run();
    }

    /// [`Launch::launch`] with the write on the blocking pool, awaited.
    pub(crate) async fn launch_async(self) {
        self.actor.meta.write_first(&self.actor.info, self.prepared).await;
        self.run();
    }

    fn run(self) {
        let actor = self.actor;
        if let Some(pid) = actor.info.pid {
            process::register_leader(pid);
        }
        let wish = actor.lane.clone();
        super::super::lane::spawn_actor(actor.run(), wish);
    }
}

/// Starts the actor of a session that ended before (loaded from disk): it
/// serves reads from the disk log.
pub(crate) fn start_ended(info: SessionInfo, dir: PathBuf, settings: SessionSettings) -> SessionHandle {
    let (actor, handle) = build_ended(info, dir, settings);
    tokio::spawn(actor.run());
    handle
}

/// Starts the actor of a `lost` session loaded from disk: as an ended one,
/// but terminate and delete end whatever of it still runs.
pub(crate) fn start_lost(info: SessionInfo, dir: PathBuf, settings: SessionSettings, left: Leftovers) -> SessionHandle {
    let (mut actor, handle) = build_ended(info, dir, settings);
    actor.lost = true;
    actor.marker = left.marker;
    actor.cgroup = left.cgroup;
    tokio::spawn(actor.run());
    handle
}

pub(in crate::session) fn build_ended(
    info: SessionInfo,
    dir: PathBuf,
    settings: SessionSettings,
) -> (Actor, SessionHandle) {
    let end = info.output_offset;
    let (mut actor, handle) = build(info, dir, settings, end, String::new(), None);
    actor.phase = Phase::Ended;
    (actor, handle)
}

fn build(
    info: SessionInfo,
    dir: PathBuf,
    settings: SessionSettings,
    end: u64,
    marker: String,
    input_fd: Option<std::os::fd::RawFd>,
) -> (Actor, SessionHandle) {
    let (commands_tx, commands) = flume::bounded(64);
    let input = Input::new(input_fd);
    let (info_tx, info_rx) = watch::channel(info.clone());
    let presence = Presence::new(info.id.clone());
    let info_tx = InfoSender::new(info_tx, presence.clone());
    let events = super::super::log_events::channel(super::super::EVENT_QUEUE);
    let dir_arc = Arc::new(dir.clone());
    let lane = LaneWish::default();
    let mut handle = SessionHandle {
        id: info.id.clone(),
        project: info.project.clone(),
        epoch: info.epoch,
        kind: info.kind,
        dir: dir_arc,
        commands: commands_tx,
        input: input.clone(),
        info: info_rx,
        screen: None,
        viewers: presence,
        remote: None,
        lane: lane.clone(),
    };
    let screen =
        (info.kind == SessionKind::Pty).then(|| super::super::screen_task::spawn(&handle, settings.scrollback_lines));
    handle.screen = screen.clone();
    let actor = Actor {
        ring: OutputRing::new(settings.ring_bytes, end),
        info,
        info_tx,
        commands,
        input,
        events,
        screen,
        writer: None,
        meta: MetaWriter::new(dir),
        settings,
        marker,
        cgroup: None,
        lost: false,
        started: Instant::now(),
        phase: Phase::Running,
        terminating: false,
        kill_deadline: None,
        child: None,
        pty: None,
        stdin: None,
        out: None,
        err: None,
        pending: Bytes::new(),
        flood: FloodWatch::new(),
        resize_record: None,
        last_resize: None,
        lane,
    };
    (actor, handle)
}
