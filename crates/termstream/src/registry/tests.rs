//! What the registry tells the cluster's link, and how it stops
//! (refusing creates, waiting for work that must not stop halfway).

use std::sync::{Arc, Mutex};

use futures_util::future::BoxFuture;
use termstream_proto::{CreateSession, Epoch, SessionId, SessionKind};

use super::remote::{ClaimError, ClusterLink};
use super::{Registry, RegistryEvent};
use crate::config::Config;
use crate::session::{SessionError, SessionHandle};

/// A link that only writes down the sessions it was asked to publish.
#[derive(Debug, Default)]
struct Published(Mutex<Vec<SessionId>>);

impl ClusterLink for Published {
    fn claim<'a>(&'a self, _: &'a SessionId) -> BoxFuture<'a, Result<(), ClaimError>> {
        Box::pin(async { Ok(()) })
    }

    fn release<'a>(&'a self, _: &'a SessionId) -> BoxFuture<'a, ()> {
        Box::pin(async {})
    }

    fn created(&self, _: &SessionId, _: Epoch) {}

    fn forget(&self, _: &SessionId, _: Epoch) {}

    fn publish(&self, handle: &SessionHandle) {
        self.0.lock().unwrap().push(handle.id().clone());
    }

    fn delete<'a>(&'a self, _: &'a SessionId) -> BoxFuture<'a, Result<bool, SessionError>> {
        Box::pin(async { Ok(false) })
    }

    fn unready(&self) -> Option<String> {
        None
    }

    fn forgets_pending(&self) -> usize {
        0
    }

    fn hurry_forgets(&self) {}

    fn settle_forgets(&self, _: std::time::Duration) -> BoxFuture<'_, bool> {
        Box::pin(async { true })
    }
}

/// A registry over `dir` (no spare directories, so none is still being
/// made when the test's directory goes), with a [`Published`] link.
fn registry(dir: &std::path::Path) -> (Arc<Registry>, Arc<Published>) {
    let config = Config {
        data_dir: dir.to_owned(),
        spare_sessions: 0,
        ..Config::default()
    };
    let registry = Registry::load(Arc::new(config)).expect("registry");
    let link = Arc::new(Published::default());
    registry.remote().set_link(link.clone());
    (registry, link)
}

fn command(id: &str, argv: &str) -> CreateSession {
    CreateSession {
        id: Some(SessionId::new(id).unwrap()),
        kind: Some(SessionKind::Command),
        argv: Some(vec![argv.into()]),
        ..Default::default()
    }
}

/// Every local create is published, each once, through either launch,
/// however far a reader of the registry's changes has fallen behind; a
/// create that fails publishes nothing. The cluster used to start a
/// publisher from that broadcast, and a lag lost the session's `Created`
/// for good: other nodes never saw its output or its record.
#[tokio::test]
async fn every_local_create_is_published_once_whatever_its_broadcast() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (registry, link) = registry(dir.path());
    let mut behind = registry.changes();
    let mut made = Vec::new();
    for i in 0..4 {
        let req = command(&format!("pub{i}"), "true");
        let handle = if i % 2 == 0 {
            registry.create(req).expect("create")
        } else {
            // The API's path: the first record written on the blocking pool.
            let (handle, launch) = registry.create_unlaunched(req).expect("create");
            registry.launch_async(&handle, launch).await;
            handle
        };
        made.push(handle.id().clone());
        // More changes than the broadcast holds, before anyone reads them.
        for n in 0..1100 {
            let _ = registry
                .changes
                .send(RegistryEvent::Deleted(SessionId::new(format!("x{n}")).unwrap()));
        }
    }
    assert!(
        registry.create(command("nothere", "/nonexistent/program")).is_err(),
        "a program that does not exist fails its create"
    );
    assert!(
        matches!(
            behind.try_recv(),
            Err(tokio::sync::broadcast::error::TryRecvError::Lagged(_))
        ),
        "the reader of changes should have lagged past the creates"
    );
    assert_eq!(*link.0.lock().unwrap(), made, "each create published once, in order");
    for id in &made {
        registry.delete(id).await;
    }
}

/// Once the server stops, creates are refused, and the stop waits for work
/// run by [`Registry::finish`] (a create or delete whose client hung up)
/// before it terminates the sessions.
#[tokio::test]
async fn close_refuses_creates_and_waits_for_finishing_work() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (registry, _) = registry(dir.path());
    let (go, wait) = tokio::sync::oneshot::channel::<()>();
    let work = registry.finish("a test's work", async move {
        let _ = wait.await;
    });
    let mut closer = {
        let registry = registry.clone();
        tokio::spawn(async move {
            registry
                .close(tokio::time::Instant::now() + std::time::Duration::from_secs(30))
                .await
        })
    };
    assert!(
        tokio::time::timeout(std::time::Duration::from_millis(200), &mut closer)
            .await
            .is_err(),
        "close returned while work was under way"
    );
    assert!(matches!(
        registry.create(command("late", "true")),
        Err(super::CreateError::ShuttingDown)
    ));
    go.send(()).unwrap();
    work.await.expect("the work ran");
    tokio::time::timeout(std::time::Duration::from_secs(10), closer)
        .await
        .expect("close waited past its work")
        .unwrap();
}
