//! Ending a session's processes: the gentle terminate (SIGHUP and SIGTERM
//! to the leader's process group), the signals to everything else of the
//! session (its cgroup, or what the process scan finds), and the end of
//! what a `lost` session left running.

use std::collections::BTreeSet;

use rustix::process::Signal;

use super::{Actor, Phase};
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
    pub(super) fn terminate(&mut self) {
        if self.phase != Phase::Running || self.terminating {
            return;
        }
        self.terminating = true;
        let _ = self.events.send(LogEvent::Terminating);
        let pgid = self.info.pid.unwrap_or(0);
        process::signal_group(pgid, Signal::HUP);
        process::signal_group(pgid, Signal::TERM);
        self.kill_deadline = Some(tokio::time::Instant::now() + self.settings.grace);
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
}
