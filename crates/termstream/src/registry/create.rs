//! How the registry creates sessions: the id and directory, the first
//! record, the process, the actor, and the eviction of ended sessions
//! over `max_sessions`.

use std::collections::{HashMap, HashSet};
use std::path::PathBuf;
use std::sync::Arc;

use termstream_proto::{CreateSession, Epoch, SessionId, SessionInfo, SessionKind, SessionStatus};

use crate::clock::now_ms;
use crate::session::actor::{Launch, Started};
use crate::session::process::{self, SpawnError, SpawnSpec};
use crate::session::store::LogWriter;
use crate::session::{SessionHandle, actor};

use super::{CreateError, Registry, RegistryEvent, generated_id};

impl Registry {
    /// Starts a session; its first record is written on this thread.
    pub fn create(&self, req: CreateSession) -> Result<SessionHandle, CreateError> {
        let (handle, launch) = self.create_unlaunched(req)?;
        launch.launch();
        self.announce(&handle);
        Ok(handle)
    }

    /// Launches a session from [`Registry::create_unlaunched`] with its
    /// first record written on the blocking pool (see
    /// [`Launch::launch_async`]), and announces it.
    pub(crate) async fn launch_async(&self, handle: &SessionHandle, launch: Launch) {
        launch.launch_async().await;
        self.announce(handle);
    }

    /// Tells the cluster, subscribers and metrics of a session just
    /// launched.
    fn announce(&self, handle: &SessionHandle) {
        if let Some(link) = self.remote.link() {
            link.publish(handle);
        }
        let _ = self.changes.send(RegistryEvent::Created(handle.clone()));
        crate::observe::metrics::session_created(handle.kind());
    }

    /// Spawns the program and builds the session's actor, registered but not
    /// yet running: its durable first record comes first (the caller's
    /// [`Launch`]), outside the registry's lock, so that concurrent creates
    /// do not wait for each other's disk syncs.
    pub(crate) fn create_unlaunched(&self, req: CreateSession) -> Result<(SessionHandle, Launch), CreateError> {
        let kind = req.kind.unwrap_or(SessionKind::Pty);
        let argv = match (req.argv, req.command) {
            (Some(_), Some(_)) => return Err(CreateError::Invalid("give either argv or command, not both".into())),
            (Some(argv), None) if argv.is_empty() => return Err(SpawnError::EmptyArgv.into()),
            (Some(argv), None) => argv,
            (None, Some(cmd)) => vec!["/bin/sh".into(), "-c".into(), cmd],
            (None, None) if kind == SessionKind::Pty => vec![self.config.shell()],
            (None, None) => return Err(CreateError::Invalid("a command session needs argv or command".into())),
        };
        let (cols, rows) = match kind {
            SessionKind::Pty => (req.cols.unwrap_or(80), req.rows.unwrap_or(24)),
            SessionKind::Command => (req.cols.unwrap_or(0), req.rows.unwrap_or(0)),
        };
        if kind == SessionKind::Pty && (cols == 0 || rows == 0) {
            return Err(CreateError::Invalid("cols and rows must be at least 1".into()));
        }
        if !self.settings.window_fits(cols, rows) {
            return Err(CreateError::WindowTooLarge {
                cols,
                rows,
                max_cols: self.settings.max_cols,
                max_rows: self.settings.max_rows,
            });
        }
        if let Some(bad) = req.env.keys().find(|k| k.is_empty() || k.contains(['=', '\0'])) {
            return Err(CreateError::Invalid(format!(
                "environment variable name {bad:?} is not valid"
            )));
        }
        if req.env.values().any(|v| v.contains('\0')) {
            return Err(CreateError::Invalid("environment values must not hold NUL".into()));
        }
        let cwd = match req.cwd {
            Some(c) => PathBuf::from(c),
            None => match &self.config.default_cwd {
                Some(c) => c.clone(),
                None => std::env::current_dir()?,
            },
        };
        let epoch = Epoch(rand::random());
        let id = match req.id {
            Some(id) => id,
            None => generated_id(),
        };
        let marker = epoch.to_string();
        let mut env = process::build_env(&self.config.env_allowlist, &req.env, &marker, kind);
        if let Some(c) = &self.confine {
            c.adjust_env(&mut env);
        }
        let spec = SpawnSpec {
            kind,
            argv,
            cwd,
            env,
            cols,
            rows,
            confine: self.confine.clone(),
            cgroup: None,
        };

        // The id is checked and reserved under the lock, made outside it
        // (a create takes a few hundred microseconds of system calls, and
        // lookups on every worker wait for this lock), and inserted under
        // it: it cannot be taken in between, and a failed create leaves
        // nothing behind. A create under way counts as running, even one
        // that will fail.
        let reserved = {
            let sessions = self.lock();
            if self.closing() {
                return Err(CreateError::ShuttingDown);
            }
            let mut creating = self.creating();
            if sessions.contains_key(&id) || creating.contains(&id) {
                return Err(CreateError::Duplicate(id));
            }
            let running = sessions.values().filter(|h| h.is_running()).count() + creating.len();
            if running >= self.config.max_running_sessions {
                return Err(CreateError::Capacity { running });
            }
            creating.insert(id.clone());
            Reserved {
                registry: self,
                id: id.clone(),
            }
        };
        // The log first, then the program: if either fails, nothing is left.
        // One directory per incarnation: a session deleted while one with
        // its id is created again removes only its own files.
        // A spare directory, renamed, holds the files already: making them
        // here is what a create would spend most of its time on (see
        // `store::spare`); without one, `LogWriter::create` makes them.
        let dir = self.sessions_dir.join(format!("{id}.{epoch}"));
        let taken = self.spares.take_into(&dir);
        let prepared = taken.is_some_and(|t| t.prepared);
        let cleanup = |writer: LogWriter| {
            drop(writer);
            let _ = std::fs::remove_dir_all(&dir);
        };
        let made = match taken {
            Some(_) => LogWriter::create_in_existing(&dir, self.settings.disk),
            None => LogWriter::create(&dir, self.settings.disk),
        };
        let mut writer = match made {
            Ok(w) => w,
            Err(e) => {
                // A spare renamed into place is not left behind.
                let _ = std::fs::remove_dir_all(&dir);
                return Err(e.into());
            }
        };
        if kind == SessionKind::Pty
            && let Err(e) = writer.append_resize(0, 0, cols, rows)
        {
            cleanup(writer);
            return Err(e.into());
        }
        // The cgroup before the program, which starts in it.
        let mut spec = spec;
        let cgroup = match self.cgroups.as_ref().map(|c| c.create(epoch)).transpose() {
            Ok(cgroup) => cgroup,
            Err(e) => {
                cleanup(writer);
                return Err(e.into());
            }
        };
        if let Some(cgroup) = &cgroup {
            match cgroup.open_dir() {
                Ok(fd) => spec.cgroup = Some(Arc::new(fd)),
                Err(e) => {
                    let _ = std::fs::remove_dir(cgroup.path());
                    cleanup(writer);
                    return Err(e.into());
                }
            }
        }
        let spawned = match process::spawn(&spec) {
            Ok(s) => s,
            Err(e) => {
                if let Some(cgroup) = &cgroup {
                    let _ = std::fs::remove_dir(cgroup.path());
                }
                cleanup(writer);
                crate::observe::metrics::get().spawn_failures.increment(1);
                return Err(e.into());
            }
        };
        spec.cgroup = None;
        let now = now_ms();
        let info = SessionInfo {
            id: id.clone(),
            kind,
            argv: spec.argv.clone(),
            cwd: spec.cwd.display().to_string(),
            project: req.project.unwrap_or_default(),
            status: SessionStatus::Running,
            epoch,
            output_offset: 0,
            cols,
            rows,
            pid: Some(spawned.pid),
            created_at: now,
            started_at: Some(now),
            ended_at: None,
            exit_code: None,
            signal: None,
            duration_ms: None,
            error: None,
        };
        let started = Started {
            spawned,
            prepared,
            writer: Some(writer),
            marker,
            cgroup,
        };
        let (handle, launch) = actor::start_running(info, started, dir, self.settings.clone());
        let mut sessions = self.lock();
        sessions.insert(id, handle.clone());
        // Under the same lock: never counted twice, nor missing.
        drop(reserved);
        let evict = self.over_capacity(&sessions);
        drop(sessions);
        for id in evict {
            self.spawn_delete(id);
        }
        Ok((handle, launch))
    }

    fn creating(&self) -> std::sync::MutexGuard<'_, HashSet<SessionId>> {
        // Each operation is a single insert or remove: poison is ignored.
        self.creating.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Ended sessions to delete so that at most `max_sessions` are kept.
    fn over_capacity(&self, sessions: &HashMap<SessionId, SessionHandle>) -> Vec<SessionId> {
        let excess = sessions.len().saturating_sub(self.config.max_sessions);
        if excess == 0 {
            return Vec::new();
        }
        let mut ended: Vec<(u64, SessionId)> = sessions
            .values()
            .map(|h| h.info())
            .filter(|i| !i.status.is_running())
            .map(|i| (i.ended_at.unwrap_or(0), i.id))
            .collect();
        ended.sort_unstable();
        ended.into_iter().take(excess).map(|(_, id)| id).collect()
    }
}

/// An id reserved by a create in progress ([`Registry::creating`]): given
/// back when dropped, once the session is in the map or the create failed.
struct Reserved<'a> {
    registry: &'a Registry,
    id: SessionId,
}

impl Drop for Reserved<'_> {
    fn drop(&mut self) {
        self.registry.creating().remove(&self.id);
    }
}
