//! Where focus sets and their versions are kept: the [`FocusStore`]
//! interface, and [`FileStore`], the one-node implementation that keeps
//! them in memory and in the data dir.
//!
//! The interface is small on purpose: a read, a compare-and-set on the
//! version, and a listing. A shared store (Redis, for several nodes) goes
//! behind the same three calls; the compare-and-set is what keeps two
//! nodes from both making "version 8".

use std::collections::HashMap;
use std::fmt::Debug;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use anyhow::Context;
use futures_util::future::BoxFuture;
use serde::{Deserialize, Serialize};
use termstream_proto::{ProjectId, SessionId};

/// One project's focus set and version.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
pub struct FocusState {
    /// Grows by exactly one with every change of `focused`; 0 for a project
    /// that never had one.
    pub version: u64,
    /// The focused sessions, in the order they were focused.
    pub focused: Vec<SessionId>,
}

/// A compare-and-set that found another version than the one expected.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Stale(pub FocusState);

/// Keeps every project's [`FocusState`].
///
/// Architecture invariant: a project's version never goes back, across
/// restarts too: [`FocusStore::compare_and_set`] only ever stores
/// `expected + 1`, and only when the stored version is `expected`.
pub trait FocusStore: Send + Sync + Debug {
    /// The state of `project`; the default (version 0, nothing focused) for
    /// a project the store has never seen.
    fn get<'a>(&'a self, project: &'a ProjectId) -> BoxFuture<'a, anyhow::Result<FocusState>>;

    /// Stores `focused` as version `expected + 1` if the stored version is
    /// `expected`; otherwise stores nothing and answers the current state.
    fn compare_and_set<'a>(
        &'a self,
        project: &'a ProjectId,
        expected: u64,
        focused: Vec<SessionId>,
    ) -> BoxFuture<'a, anyhow::Result<Result<FocusState, Stale>>>;

    /// [`FocusStore::compare_and_set`] for a change that focuses (`on`) or
    /// unfocuses `session`: a store shared by several nodes announces the
    /// change with it. The default ignores the names.
    fn compare_and_set_change<'a>(
        &'a self,
        project: &'a ProjectId,
        expected: u64,
        focused: Vec<SessionId>,
        session: &'a SessionId,
        on: bool,
    ) -> BoxFuture<'a, anyhow::Result<Result<FocusState, Stale>>> {
        let _ = (session, on);
        self.compare_and_set(project, expected, focused)
    }

    /// Every project the store holds a state for.
    fn all(&self) -> BoxFuture<'_, anyhow::Result<Vec<(ProjectId, FocusState)>>>;
}

/// The store of a single node: states in memory, each written to
/// `<data_dir>/focus/<project>.json` (atomically, by rename, and synced)
/// before the change counts.
#[derive(Debug)]
pub struct FileStore {
    dir: PathBuf,
    /// Every project's state. Held across the file write, so that writes of
    /// one project land on disk in version order.
    states: tokio::sync::Mutex<HashMap<ProjectId, FocusState>>,
}

impl FileStore {
    /// Opens `dir` (created if missing) and loads the states stored there.
    pub fn open(dir: &Path) -> anyhow::Result<Arc<FileStore>> {
        std::fs::create_dir_all(dir).with_context(|| format!("cannot create {}", dir.display()))?;
        let mut states = HashMap::new();
        for entry in std::fs::read_dir(dir)?.flatten() {
            let path = entry.path();
            let Some(name) = path.file_name().and_then(|n| n.to_str()) else {
                continue;
            };
            let Some(project) = name.strip_suffix(".json").and_then(|p| ProjectId::new(p).ok()) else {
                continue;
            };
            // A state that cannot be read would restart its versions at 0:
            // refuse to start instead.
            let bytes = std::fs::read(&path).with_context(|| format!("cannot read {}", path.display()))?;
            let state: FocusState =
                serde_json::from_slice(&bytes).with_context(|| format!("{} is not a focus state", path.display()))?;
            states.insert(project, state);
        }
        Ok(Arc::new(FileStore {
            dir: dir.to_owned(),
            states: tokio::sync::Mutex::new(states),
        }))
    }
}

/// Writes `state` to `dir/<project>.json` through a synced temporary file.
fn write_state(dir: &Path, project: &ProjectId, state: &FocusState) -> std::io::Result<()> {
    use std::io::Write;
    let tmp = dir.join(format!("{project}.json.tmp"));
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(&serde_json::to_vec(state).map_err(std::io::Error::other)?)?;
    f.sync_data()?;
    std::fs::rename(tmp, dir.join(format!("{project}.json")))
}

impl FocusStore for FileStore {
    fn get<'a>(&'a self, project: &'a ProjectId) -> BoxFuture<'a, anyhow::Result<FocusState>> {
        Box::pin(async move { Ok(self.states.lock().await.get(project).cloned().unwrap_or_default()) })
    }

    fn compare_and_set<'a>(
        &'a self,
        project: &'a ProjectId,
        expected: u64,
        focused: Vec<SessionId>,
    ) -> BoxFuture<'a, anyhow::Result<Result<FocusState, Stale>>> {
        Box::pin(async move {
            let mut states = self.states.lock().await;
            let current = states.get(project).cloned().unwrap_or_default();
            if current.version != expected {
                return Ok(Err(Stale(current)));
            }
            let next = FocusState {
                version: expected + 1,
                focused,
            };
            let (dir, p, s) = (self.dir.clone(), project.clone(), next.clone());
            tokio::task::spawn_blocking(move || write_state(&dir, &p, &s))
                .await
                .context("the focus writer panicked")?
                .with_context(|| format!("cannot store the focus of project {project}"))?;
            states.insert(project.clone(), next.clone());
            Ok(Ok(next))
        })
    }

    fn all(&self) -> BoxFuture<'_, anyhow::Result<Vec<(ProjectId, FocusState)>>> {
        Box::pin(async move {
            let states = self.states.lock().await;
            Ok(states.iter().map(|(p, s)| (p.clone(), s.clone())).collect())
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn id(s: &str) -> SessionId {
        SessionId::new(s).unwrap()
    }

    #[tokio::test]
    async fn compare_and_set_moves_one_version_at_a_time_and_persists() {
        let dir = tempfile::tempdir().unwrap();
        let p = ProjectId::new("web").unwrap();
        let store = FileStore::open(dir.path()).unwrap();
        assert_eq!(store.get(&p).await.unwrap(), FocusState::default());
        let one = store.compare_and_set(&p, 0, vec![id("a")]).await.unwrap().unwrap();
        assert_eq!(one.version, 1);
        // A stale expectation changes nothing and answers the current state.
        assert_eq!(
            store.compare_and_set(&p, 0, vec![id("b")]).await.unwrap(),
            Err(Stale(one.clone()))
        );
        store
            .compare_and_set(&p, 1, vec![id("a"), id("b")])
            .await
            .unwrap()
            .unwrap();
        drop(store);
        let again = FileStore::open(dir.path()).unwrap();
        assert_eq!(
            again.get(&p).await.unwrap(),
            FocusState {
                version: 2,
                focused: vec![id("a"), id("b")]
            }
        );
    }
}
