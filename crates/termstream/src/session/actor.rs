//! The actor task that owns one session.
//!
//! It owns the program (its `ChildProcess` and I/O), the output ring and the disk
//! writer, and serves the [`Command`]s of every [`super::SessionHandle`]. Output is
//! read as it comes, coalesced while more is ready (up to [`READ_COALESCE`]),
//! appended to disk and ring, and broadcast, in that order, in one step: a
//! subscriber created between two steps sees the ring up to the end and live
//! events after it, nothing twice and nothing missed.
//!
//! Life of a session: `Running` until the program exits (or is terminated);
//! then its remaining output is drained: leftover processes get SIGHUP, and
//! SIGKILL after the grace period if they still hold the PTY or pipes. Then
//! the status is final, `meta.json` is written and [`LogEvent::Ended`] is the
//! last event. The actor then keeps serving reads until `Shutdown`.
//!
//! A session's processes are ended through its cgroup when it has one
//! (`cgroup.kill`), else by the process scan of [`process`]. A session that
//! was running when the server died (`lost`) keeps its marker and cgroup:
//! terminate and delete end whatever of it still runs.

use std::io;
use std::ops::ControlFlow;
use std::pin::Pin;
use std::sync::Arc;
use std::time::Instant;

use bytes::Bytes;
use rustix::process::Signal;
use termstream_proto::{SessionInfo, SessionKind, Stream};
use tokio::io::AsyncWriteExt;
use tokio::sync::oneshot;

mod ending;
mod pipes;
mod resize;
mod start;

pub(crate) use self::ending::Leftovers;
#[cfg(test)]
pub(super) use self::start::build_ended;
pub(crate) use self::start::{Launch, Started, start_ended, start_lost, start_running};

use self::pipes::{FrameHeader, READ_COALESCE, Reader, read_opt, sleep_opt, wait_child, write_some};
use self::resize::ResizeRecord;
use super::cgroup::SessionCgroup;
use super::flood::{self, FloodWatch};
use super::input::{Input, Next};
use super::lane::LaneWish;
use super::log::{Chunk, OutputRing};
use super::meta::MetaWriter;
use super::process;
use super::screen_task::ScreenLink;
use super::store::LogWriter;
use super::{Began, Command, InfoSender, LogEvent, SessionSettings, Subscription};

/// Where the program's life stands.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Phase {
    /// The program runs.
    Running,
    /// The leader exited; the rest of the output drains until the deadline.
    Draining { deadline: tokio::time::Instant },
    /// All done; the actor only serves reads.
    Ended,
}

/// The state one session's actor owns.
pub(crate) struct Actor {
    info: SessionInfo,
    /// Publishes `info` on every change; every handle holds a receiver.
    info_tx: InfoSender,
    /// Commands from handles; the actor ends on `Shutdown`.
    commands: flume::Receiver<Box<Command>>,
    /// The program's input, shared with every handle: senders write it
    /// themselves when nothing waits; the actor writes what waits.
    input: Arc<Input>,
    /// Live log events; subscribers are created inside the actor only.
    events: super::log_events::Sender,
    /// The screen task of a pty session: told of resizes, and rung (not
    /// per chunk) when output reaches what it waits for.
    screen: Option<ScreenLink>,
    ring: OutputRing,
    /// The disk log; `None` after a write failed (logged once).
    writer: Option<LogWriter>,
    /// Writes `meta.json` off the workers, the latest info only.
    meta: MetaWriter,
    settings: SessionSettings,
    marker: String,
    /// The session's cgroup, when cgroups are in force; removed once the
    /// session has ended (a lost session keeps its path).
    cgroup: Option<SessionCgroup>,
    /// Whether the session was running when the server died: processes
    /// found by its marker or in its cgroup are what is left of it.
    lost: bool,
    started: Instant,
    phase: Phase,
    terminating: bool,
    kill_deadline: Option<tokio::time::Instant>,
    child: Option<process::ChildProcess>,
    pty: Option<crate::session::process::PtyWriter>,
    stdin: Option<Pin<Box<dyn tokio::io::AsyncWrite + Send>>>,
    out: Option<Reader>,
    err: Option<Reader>,
    /// The input being written: the front of the input queue.
    pending: Bytes,
    /// Tells when the program floods output while someone types elsewhere.
    flood: FloodWatch,
    /// Where the actor should run: the bulk lane while the flood watch
    /// wants it there (see [`super::lane`]).
    lane: LaneWish,
    /// A size change not yet in the disk log: recorded before the next
    /// output, so resizes with no output between them (a window dragged,
    /// or a client sending thousands) make one record, and the index grows
    /// with the output, within the log's byte limit.
    resize_record: Option<ResizeRecord>,
    /// The last size change: its log offset and the new size, for a
    /// subscriber whose replay crosses it ([`super::Subscription`]).
    last_resize: Option<(u64, u16, u16)>,
}

impl Actor {
    /// The actor's task. A plain function around an `async` block, not an
    /// `async fn` taking `self`: an `async fn`'s future keeps its
    /// arguments twice (as passed, and moved into its body), and every
    /// session's task would carry a second, dead copy of its actor.
    fn run(self) -> impl Future<Output = ()> + Send + 'static {
        let mut actor = self;
        async move { actor.run_loop().await }
    }

    async fn run_loop(&mut self) {
        loop {
            let draining_deadline = match self.phase {
                Phase::Draining { deadline } => Some(deadline),
                _ => None,
            };
            let reading = self.out.is_some() || self.err.is_some();
            let flood_at = self.flood.deadline(flood::last_input());
            let out_stream = if self.info.kind == SessionKind::Pty {
                Stream::Pty
            } else {
                Stream::Stdout
            };
            // Rare steps (a command, the end, killing) run boxed: the task
            // of an idle session then holds only the state of its waits.
            if self.phase != Phase::Ended && self.child.is_none() && !reading {
                Box::pin(self.finish()).await;
                continue;
            }
            tokio::select! {
                cmd = self.commands.recv_async() => {
                    // `Err`: every handle is gone, the session was dropped.
                    let flow = match cmd {
                        Ok(cmd) => Box::pin(self.handle(*cmd)).await,
                        Err(_) => ControlFlow::Break(None),
                    };
                    if let ControlFlow::Break(reply) = flow {
                        Box::pin(self.end(reply)).await;
                        return;
                    }
                }
                res = read_opt(&mut self.out, FrameHeader { session_id: self.info.id.as_str(), stream: out_stream, offset: self.ring.end() }), if self.out.is_some() => {
                    if self.on_read(out_stream, res) {
                        tokio::task::yield_now().await;
                    }
                }
                res = read_opt(&mut self.err, FrameHeader { session_id: self.info.id.as_str(), stream: Stream::Stderr, offset: self.ring.end() }), if self.err.is_some() => {
                    if self.on_read(Stream::Stderr, res) {
                        tokio::task::yield_now().await;
                    }
                }
                next = self.input.next(), if self.pending.is_empty() && (self.pty.is_some() || self.stdin.is_some()) => {
                    match next {
                        Next::Write(data) => self.pending = data,
                        Next::Close => Box::pin(self.close_input()).await,
                    }
                }
                res = write_some(&mut self.pty, &mut self.stdin, &self.pending), if !self.pending.is_empty() => {
                    self.on_written(res);
                }
                status = wait_child(&mut self.child), if self.child.is_some() => {
                    self.on_exit(status);
                }
                _ = sleep_opt(flood_at.map(Into::into)), if flood_at.is_some() => {
                    self.flood.tick(self.input.sends(), Instant::now(), flood::last_input());
                    self.lane.set(self.flood.wants_lane());
                }
                _ = sleep_opt(self.kill_deadline), if self.kill_deadline.is_some() => {
                    self.kill_deadline = None;
                    Box::pin(self.kill_all(Signal::KILL)).await;
                }
                _ = sleep_opt(draining_deadline), if draining_deadline.is_some() => {
                    // Leftover processes hold the output open: end them.
                    Box::pin(self.kill_all(Signal::KILL)).await;
                    self.out = None;
                    self.err = None;
                }
            }
        }
    }

    /// Kills whatever still runs, waits for the last `meta.json` write and
    /// removes the cgroup: the actor ends after it (and `reply` is told).
    async fn end(&mut self, reply: Option<oneshot::Sender<()>>) {
        self.kill_all(Signal::KILL).await;
        // No write may land in a directory being removed.
        self.meta.flush().await;
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.remove().await;
        }
        if let Some(reply) = reply {
            let _ = reply.send(());
        }
    }

    /// Serves one command; `Break` ends the actor (with the reply to send
    /// once everything is killed).
    async fn handle(&mut self, cmd: Command) -> ControlFlow<Option<oneshot::Sender<()>>> {
        match cmd {
            Command::Resize { cols, rows, reply, .. } => {
                let _ = reply.send(self.resize(cols, rows).map(|()| None));
            }
            Command::Terminate { reply } => {
                // A lost session had ended before: the sweep for what is
                // left of it ends nothing.
                let began = if self.lost {
                    self.end_leftovers().await;
                    false
                } else {
                    self.terminate()
                };
                let _ = reply.send(Ok(if began { Began::Yes } else { Began::No }));
            }
            Command::Read {
                since,
                max_bytes,
                reply,
            } => {
                let _ = reply.send(self.ring.read(since, max_bytes));
            }
            Command::Subscribe { since, reply } => {
                let live = self.events.subscribe();
                let backlog = self.ring.read(since, usize::MAX);
                let ended = (self.phase == Phase::Ended).then(|| Arc::new(self.info.clone()));
                let _ = reply.send(Subscription {
                    backlog,
                    end: self.ring.end(),
                    live,
                    ended,
                    terminating: self.terminating,
                    last_resize: self.last_resize.filter(|&(at, ..)| at >= since),
                });
            }
            Command::LastResize(reply) => {
                let _ = reply.send(self.last_resize);
            }
            Command::Shutdown { reply } => return ControlFlow::Break(Some(reply)),
        }
        ControlFlow::Continue(())
    }

    fn elapsed_ms(&self) -> u64 {
        self.started.elapsed().as_millis() as u64
    }

    /// Appends what was read; returns whether it was a full read (the
    /// program is producing faster than we read), after which the actor
    /// yields: a session in full flow would otherwise run until tokio's
    /// budget is spent (hundreds of KiB, milliseconds) while a typed key in
    /// another session waits.
    fn on_read(&mut self, stream: Stream, res: io::Result<Option<(Bytes, usize)>>) -> bool {
        let (wire, header) = match res {
            Ok(Some(read)) => read,
            Ok(None) | Err(_) => {
                match stream {
                    Stream::Stderr => self.err = None,
                    _ => self.out = None,
                }
                return false;
            }
        };
        let data = wire.slice(header..);
        let full = data.len() >= READ_COALESCE;
        let read_at = std::time::Instant::now();
        self.flood
            .output(data.len(), self.input.sends(), read_at, flood::last_input());
        self.lane.set(self.flood.wants_lane());
        let chunk = Chunk {
            offset: self.ring.end(),
            stream,
            time_ms: read_at.duration_since(self.started).as_millis() as u64,
            read_at: Some(read_at),
            data,
            wire: Some(wire),
        };
        self.write_resize_record();
        if let Some(w) = &mut self.writer
            && let Err(e) = w.append_output(&chunk)
        {
            self.disk_failed(e);
        }
        self.ring.push(chunk.clone());
        self.info.output_offset = self.ring.end();
        // Only the offset changed: receivers of info are not woken for it.
        let end = self.info.output_offset;
        self.info_tx.send_if_modified(|i| {
            i.output_offset = end;
            false
        });
        let _ = self.events.send(LogEvent::Output(Arc::new(chunk)));
        if let Some(screen) = &self.screen {
            screen.bell.output(end);
        }
        full
    }

    fn disk_failed(&mut self, e: io::Error) {
        tracing::warn!(session = %self.info.id, error = %e, "disk log write failed; output is kept in memory only from here");
        self.writer = None;
    }

    fn on_written(&mut self, res: io::Result<usize>) {
        match res {
            Ok(n) => {
                let n = n.min(self.pending.len());
                let _ = self.pending.split_to(n);
                self.input.written(n);
            }
            Err(_) => {
                // The program closed its input: drop what waits, refuse more.
                self.input.close();
                self.pending = Bytes::new();
                self.stdin = None;
            }
        }
    }

    /// Closes the program's stdin (the last input asked for it).
    async fn close_input(&mut self) {
        self.input.close();
        if let Some(mut stdin) = self.stdin.take() {
            let _ = stdin.shutdown().await;
        }
    }

    /// Publishes the info to every handle.
    fn publish(&mut self) {
        self.info_tx.send_replace(self.info.clone());
    }
}

impl Drop for Actor {
    fn drop(&mut self) {
        // The fd closes with the fields dropped after this.
        self.input.close();
        self.write_resize_record();
        // A session deleted while running ends here without `finish`.
        if let Some(pid) = self.info.pid {
            process::unregister_leader(pid);
        }
        // An actor dropped mid-way (the runtime shutting down) leaves no
        // process and, where it can, no cgroup behind.
        if let Some(cgroup) = self.cgroup.take()
            && !self.lost
        {
            cgroup.kill();
            if let Ok(rt) = tokio::runtime::Handle::try_current() {
                rt.spawn(cgroup.remove());
            }
        }
    }
}
