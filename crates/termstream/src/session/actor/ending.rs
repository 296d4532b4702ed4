//! Ending a session's processes: the gentle terminate (SIGHUP and SIGTERM
//! to the leader's process group), the signals to everything else of the
//! session (its cgroup, or what the process scan finds), and the end of
//! what a `lost` session left running.

use std::collections::BTreeSet;
use std::io;
use std::os::unix::process::ExitStatusExt;
use std::sync::Arc;

use bytes::Bytes;
use rustix::process::Signal;
use termstream_proto::SessionStatus;

use super::{Actor, Phase};
use crate::clock::now_ms;
use crate::session::LogEvent;
use crate::session::cgroup::SessionCgroup;
use crate::session::process;

/// What is left of a session whose server died, and how to find it.
#[derive(Debug)]
pub(crate) struct Leftovers {
    /// The value of its processes' marker variable.
    pub marker: String,
    /// Its cgroup's path, when cgroups are in force.
    pub cgroup: Option<SessionCgroup>,
}

impl Actor {
    /// Begins the end (SIGHUP and SIGTERM to the leader's group, SIGKILL
    /// after the grace period); whether it did: not when the program had
    /// ended, or another terminate began it.
    pub(super) fn terminate(&mut self) -> bool {
        if self.phase != Phase::Running || self.terminating {
            return false;
        }
        self.terminating = true;
        let _ = self.events.send(LogEvent::Terminating);
        let pgid = self.info.pid.unwrap_or(0);
        process::signal_group(pgid, Signal::HUP);
        process::signal_group(pgid, Signal::TERM);
        self.kill_deadline = Some(tokio::time::Instant::now() + self.settings.grace);
        true
    }

    /// Signals every process of the session and waits until that is done:
    /// the leader's process group, then the cgroup (or what the scan finds).
    /// A lost session's leftovers are killed instead.
    pub(super) async fn kill_all(&mut self, signal: Signal) {
        if self.phase == Phase::Ended {
            if self.lost {
                self.end_leftovers().await;
            }
            return;
        }
        let Some(leader) = self.info.pid else { return };
        // The group only while the leader is unreaped: its pid (the group's
        // id) cannot have been given to another process then.
        if self.child.is_some() {
            process::signal_group(leader, signal);
        }
        let _ = self.signal_rest(leader, signal).await;
    }

    /// Signals every process of the session on a blocking thread: SIGKILL
    /// through `cgroup.kill`, another signal to each process in the cgroup;
    /// without a cgroup, what the scan finds by session id and marker.
    pub(super) fn signal_rest(&self, leader: u32, signal: Signal) -> tokio::task::JoinHandle<()> {
        let cgroup = self.cgroup.clone();
        let marker = self.marker.clone();
        tokio::task::spawn_blocking(move || match cgroup {
            Some(cgroup) if signal == Signal::KILL => cgroup.kill(),
            Some(cgroup) => cgroup.signal(signal),
            None => process::signal_found(&process::session_processes(leader, &marker), signal),
        })
    }

    /// Kills what is left of a lost session: its cgroup, and every process
    /// that holds its marker; then removes the cgroup.
    pub(super) async fn end_leftovers(&mut self) {
        if let Some(cgroup) = &self.cgroup {
            cgroup.kill();
        }
        let markers = BTreeSet::from([self.marker.clone()]);
        let _ = tokio::task::spawn_blocking(move || {
            process::signal_found(&process::marked_processes(&markers), Signal::KILL);
        })
        .await;
        if let Some(cgroup) = self.cgroup.clone() {
            cgroup.remove().await;
        }
    }

    pub(super) fn on_exit(&mut self, status: io::Result<std::process::ExitStatus>) {
        self.child = None;
        self.kill_deadline = None;
        // The leader is reaped: the watch starts over, and the actor goes
        // home; what is left of the output may flood it back to the lane.
        self.flood = super::FloodWatch::new();
        self.lane.set(false);
        match status {
            Ok(s) => {
                self.info.exit_code = s.code();
                self.info.signal = s.signal();
            }
            Err(e) => self.info.error = Some(format!("waiting for the program failed: {e}")),
        }
        // Hang up on whatever the program left behind, as a terminal would.
        if let Some(leader) = self.info.pid {
            process::signal_group(leader, Signal::HUP);
            drop(self.signal_rest(leader, Signal::HUP));
        }
        self.phase = Phase::Draining {
            deadline: tokio::time::Instant::now() + self.settings.grace,
        };
    }

    /// Makes the end final: status, times, disk, and the `Ended` event.
    pub(super) async fn finish(&mut self) {
        // An ended session's actor serves reads from home.
        self.lane.set(false);
        self.kill_all(Signal::KILL).await;
        self.phase = Phase::Ended;
        // Before the end is published: whoever waits for it (terminate, a
        // shutdown) finds the cgroup gone.
        if let Some(cgroup) = self.cgroup.take() {
            cgroup.remove().await;
        }
        if let Some(pid) = self.info.pid {
            process::unregister_leader(pid);
        }
        self.input.close();
        self.pty = None;
        self.stdin = None;
        self.pending = Bytes::new();
        let now = now_ms();
        self.info.status = if self.terminating {
            SessionStatus::Terminated
        } else if self.info.error.is_some() {
            SessionStatus::Failed
        } else {
            SessionStatus::Exited
        };
        self.info.ended_at = Some(now);
        self.info.duration_ms = self.info.started_at.map(|s| now.saturating_sub(s));
        self.write_resize_record();
        self.writer = None;
        // The final record is on disk before anyone learns of the end (a
        // server shutting down exits once every session has ended).
        self.meta.write(&self.info);
        self.meta.flush().await;
        self.publish();
        let _ = self.events.send(LogEvent::Ended(Arc::new(self.info.clone())));
    }
}
