//! Loading the data dir at start: every stored session comes back with an
//! actor of its own, ended. A session that was running when the server
//! stopped comes back as `lost`, with its end written to its `meta.json`,
//! and what is left of it is ended: its cgroup killed and removed, and
//! every process holding its marker killed, in one scan of `/proc` for all
//! of them. Two incarnations of one id (a crash during a delete): the newer
//! stays, the older's files go.

use std::collections::{BTreeSet, HashMap, HashSet};
use std::path::Path;
use std::sync::atomic::AtomicBool;
use std::sync::{Arc, Mutex};

use termstream_proto::{SessionInfo, SessionStatus};
use tokio::sync::broadcast;

use super::{Registry, finishing, remote};
use crate::clock::now_ms;
use crate::config::Config;
use crate::confine::Confinement;
use crate::session::actor::{self, Leftovers};
use crate::session::cgroup::{CgroupMode, Cgroups};
use crate::session::process;
use crate::session::store;
use crate::session::store::spare::Spares;

impl Registry {
    /// Opens the data dir and loads the sessions stored there. Sessions that
    /// were running when the server stopped come back as `lost`.
    pub fn load(config: Arc<Config>) -> anyhow::Result<Arc<Registry>> {
        let sessions_dir = config.data_dir.join("sessions");
        std::fs::create_dir_all(&sessions_dir)
            .map_err(|e| anyhow::anyhow!("cannot create {}: {e}", sessions_dir.display()))?;
        // Creates that find no spare make their directory here: in a quiet
        // block group, like the spares (see `spare::spread`).
        store::spare::spread(&sessions_dir);
        let spare_dir = config.data_dir.join("spare");
        // The pool only makes creates faster: without it the server runs.
        let spares = Spares::open(spare_dir.clone(), config.spare_sessions).unwrap_or_else(|e| {
            tracing::warn!(dir = %spare_dir.display(), error = %e, "no spare session directories");
            Spares::none(spare_dir.clone())
        });
        let confine = Confinement::from_config(&config)?.map(Arc::new);
        let cgroups = match config.cgroup {
            CgroupMode::Off => {
                tracing::info!("sessions are ended by a process scan (session id and marker): cgroup = \"off\"");
                None
            }
            CgroupMode::Auto => match Cgroups::detect() {
                Ok(c) => {
                    tracing::info!(base = %c.base().display(), "each session runs in its own cgroup, ended by cgroup.kill");
                    Some(Arc::new(c))
                }
                Err(reason) => {
                    tracing::info!(%reason, "no cgroups: sessions are ended by a process scan (session id and marker)");
                    None
                }
            },
        };
        let changes = broadcast::channel(config.session_changes_queue).0;
        let registry = Arc::new(Registry {
            sessions: Mutex::new(HashMap::new()),
            creating: Mutex::new(HashSet::new()),
            settings: config.session_settings(),
            sessions_dir: sessions_dir.clone(),
            spares,
            config,
            changes,
            confine,
            cgroups,
            remote: remote::RemoteSessions::default(),
            finishing: finishing::Finishing::default(),
            closing: AtomicBool::new(false),
        });
        let mut loaded = 0;
        let mut lost = BTreeSet::new();
        for entry in std::fs::read_dir(&sessions_dir)?.flatten() {
            match load_one(&entry.path()) {
                Ok(info) => {
                    // Two incarnations of one id (a crash during a delete):
                    // the newer stays, the older's files go.
                    let older = registry
                        .lock()
                        .get(&info.id)
                        .map(|h| (h.info().created_at, h.dir().to_owned()));
                    if let Some((created_at, dir)) = older {
                        let (keep, drop_dir) = if created_at > info.created_at {
                            (false, entry.path())
                        } else {
                            (true, dir)
                        };
                        let _ = std::fs::remove_dir_all(drop_dir);
                        if !keep {
                            continue;
                        }
                    }
                    let leftovers = (info.status == SessionStatus::Lost).then(|| Leftovers {
                        marker: info.epoch.to_string(),
                        cgroup: registry.cgroups.as_ref().map(|c| c.session(info.epoch)),
                    });
                    if let Some(left) = &leftovers {
                        lost.insert(left.marker.clone());
                    } else if let Some(c) = &registry.cgroups {
                        // An ended session's cgroup, left empty by a server
                        // that stopped before removing it.
                        let _ = std::fs::remove_dir(c.session(info.epoch).path());
                    }
                    let (dir, settings) = (entry.path(), registry.settings.clone());
                    let handle = match leftovers {
                        Some(left) => actor::start_lost(info, dir, settings, left),
                        None => actor::start_ended(info, dir, settings),
                    };
                    if registry.lock().insert(handle.id().clone(), handle).is_none() {
                        loaded += 1;
                    }
                }
                Err(e) => tracing::warn!(dir = %entry.path().display(), error = %e, "skipping a stored session"),
            }
        }
        tracing::info!(sessions = loaded, dir = %sessions_dir.display(), "loaded stored sessions");
        registry.end_lost(&lost);
        registry.spares.fill();
        Ok(registry)
    }

    /// Ends what is left of the lost sessions whose markers are `lost`:
    /// kills their cgroups (then removes them once empty) and every process
    /// holding one of the markers.
    fn end_lost(&self, lost: &BTreeSet<String>) {
        if lost.is_empty() {
            return;
        }
        let mut cgroups = Vec::new();
        if let Some(c) = &self.cgroups {
            for marker in lost {
                if let Ok(epoch) = marker.parse() {
                    let cgroup = c.session(epoch);
                    cgroup.kill();
                    cgroups.push(cgroup);
                }
            }
        }
        let found = process::marked_processes(lost);
        process::signal_found(&found, rustix::process::Signal::KILL);
        tracing::info!(
            sessions = lost.len(),
            marked = found.len(),
            "ended what was left of the sessions lost when the server stopped"
        );
        if let Ok(rt) = tokio::runtime::Handle::try_current() {
            for cgroup in cgroups {
                rt.spawn(cgroup.remove());
            }
        }
    }
}

fn load_one(dir: &Path) -> std::io::Result<SessionInfo> {
    let mut info = store::read_meta(dir)?;
    let (end, last_ms) = store::log_end(dir)?;
    info.output_offset = end;
    info.pid = None;
    if info.status.is_running() {
        info.status = SessionStatus::Lost;
        let ended = info.started_at.map_or(now_ms(), |s| s + last_ms);
        info.ended_at = Some(ended);
        info.duration_ms = info.started_at.map(|s| ended.saturating_sub(s));
        store::write_meta(dir, &info)?;
    }
    Ok(info)
}
