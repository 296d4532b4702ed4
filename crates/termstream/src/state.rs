//! What every handler shares: [`AppState`].
//!
//! This module sits below the REST API ([`crate::api`]) and the WebSocket
//! endpoints ([`crate::gateway`]), which take `State<AppState>`, and above
//! [`crate::auth`], whose guard and handlers take only the parts they need
//! (`State<Arc<Security>>`, `State<Arc<Registry>>`, projected by the
//! [`FromRef`] impls here), so no layer imports one above it.

use std::sync::Arc;
use std::sync::atomic::AtomicUsize;

use axum::extract::FromRef;
use termstream_proto::{CreateSession, ErrorCode, ProjectId};
use tokio_util::sync::CancellationToken;

use crate::auth::{Grant, Security};
use crate::error::ApiError;
use crate::events::EventHub;
use crate::focus::Focus;
use crate::registry::remote::{ClaimError, Claimed};
use crate::registry::{CreateError, Registry};
use crate::session::SessionHandle;

/// The most creates that run on the blocking pool at once: half its
/// threads ([`crate::server::BLOCKING_THREADS`]).
pub const CREATORS: usize = crate::server::BLOCKING_THREADS / 2;

/// Taken by each create while it runs on the blocking pool.
static CREATING: tokio::sync::Semaphore = tokio::sync::Semaphore::const_new(CREATORS);

/// What every handler shares.
#[derive(Debug, Clone)]
pub struct AppState {
    pub registry: Arc<Registry>,
    /// Event channels of `/ws` clients.
    pub events: EventHub,
    /// WebSocket clients connected now.
    pub clients: Arc<AtomicUsize>,
    /// Tokens, tickets, browser checks and limits ([`crate::auth`]).
    pub security: Arc<Security>,
    /// Cancelled when the server starts shutting down: every socket's task
    /// watches it to tell its client, and `/readyz` turns unready.
    pub shutdown: CancellationToken,
    /// Every project's focus set ([`crate::focus`]).
    pub focus: Arc<Focus>,
}

impl AppState {
    pub fn new(registry: Arc<Registry>, security: Arc<Security>, focus: Arc<Focus>) -> AppState {
        AppState {
            registry,
            events: EventHub::default(),
            clients: Arc::default(),
            security,
            shutdown: CancellationToken::new(),
            focus,
        }
    }

    /// Creates a session for `grant`: it needs write access to the session's
    /// project, and a token stays under `max_sessions_per_token`.
    /// In a cluster, the id is first claimed across every node
    /// ([`crate::registry::remote::ClusterLink::claim`]).
    ///
    /// The create runs to its end even when the request is dropped (its
    /// client hung up; see [`Registry::finish`]): cut off between its
    /// claim, its program's start and its first record, it left a claim in
    /// Redis, or a session in the registry whose actor was gone (the
    /// session `running` for good; its program unwatched where there are
    /// no cgroups, else killed).
    pub async fn create_session(&self, grant: &Grant, req: CreateSession) -> Result<SessionHandle, ApiError> {
        let (state, grant) = (self.clone(), grant.clone());
        self.registry
            .finish("a create", async move { state.create_to_end(&grant, req).await })
            .await
            .unwrap_or_else(|| Err(ApiError::new(ErrorCode::Internal, "the create failed on the server")))
    }

    /// [`AppState::create_session`], run to its end by its own task.
    async fn create_to_end(&self, grant: &Grant, mut req: CreateSession) -> Result<SessionHandle, ApiError> {
        let project = req.project.clone().unwrap_or_default();
        grant.check_create(project.as_str())?;
        let Some(link) = self.registry.remote().link().cloned() else {
            return self.create_local(grant, req, &project).await;
        };
        let id = req.id.get_or_insert_with(crate::registry::generated_id).clone();
        // Refused before the claim, which others would meet meanwhile.
        if self.registry.closing() {
            return Err(CreateError::ShuttingDown.into());
        }
        let claimed = Claimed::claim(link, &id).await.map_err(|e| match e {
            ClaimError::Duplicate(id) => ApiError::from(CreateError::Duplicate(id)),
            e @ ClaimError::Unavailable(_) => ApiError::new(ErrorCode::ClusterUnavailable, e.to_string()),
            e @ ClaimError::Removing(_) => ApiError::new(ErrorCode::Busy, e.to_string()),
        })?;
        let created = self.create_local(grant, req, &project).await;
        match &created {
            Ok(handle) => claimed.created(handle.epoch()),
            Err(_) => claimed.release().await,
        }
        created
    }

    /// Creates the session on this node, on the blocking pool: the log's
    /// files, the cgroup and the program's start are system calls, and the
    /// start waits for the program's `execve` (`CLONE_VFORK`), which a
    /// slow file system or a loaded machine can make last seconds; on a
    /// runtime worker that held up every task queued behind it, and two
    /// such creates froze a server of two workers. At most [`CREATORS`]
    /// run there at once, so that slow starts leave the pool's other
    /// threads to what else needs them (replays, `/readyz`'s disk probe,
    /// deletes). Its durable first record is written on the blocking pool
    /// too (see `Registry::launch_async`): concurrent creates share their
    /// disk syncs, and the workers keep serving.
    async fn create_local(
        &self,
        grant: &Grant,
        req: CreateSession,
        project: &ProjectId,
    ) -> Result<SessionHandle, ApiError> {
        let (registry, security, grant_) = (self.registry.clone(), self.security.clone(), grant.clone());
        // Never closed.
        let creator = CREATING.acquire().await;
        let made = tokio::task::spawn_blocking(move || {
            if !grant_.token {
                return registry.create_unlaunched(req).map_err(ApiError::from);
            }
            let mut launch = None;
            let handle = security.quota.create(&grant_.name, || {
                let (handle, l) = registry.create_unlaunched(req).map_err(ApiError::from)?;
                launch = Some(l);
                Ok::<_, ApiError>(handle)
            })?;
            Ok((handle, launch.expect("a created session has a launch")))
        })
        .await;
        // Only the part on the blocking pool counts: the first record
        // below has its own bound (`FIRST_WRITERS`), and its writes are
        // shared by as many creates as reach it together.
        drop(creator);
        // A panic in the create: logged and answered as `Registry::finish`
        // does for a panicked task.
        let (handle, launch) = made.map_err(|e| {
            tracing::error!(error = %e, "a create failed");
            ApiError::new(ErrorCode::Internal, "the create failed on the server")
        })??;
        self.registry.launch_async(&handle, launch).await;
        crate::observe::audit::session_created(grant, handle.id().as_str(), project.as_str());
        Ok(handle)
    }
}

impl FromRef<AppState> for Arc<Security> {
    fn from_ref(state: &AppState) -> Arc<Security> {
        state.security.clone()
    }
}

impl FromRef<AppState> for Arc<Registry> {
    fn from_ref(state: &AppState) -> Arc<Registry> {
        state.registry.clone()
    }
}

impl FromRef<AppState> for CancellationToken {
    fn from_ref(state: &AppState) -> CancellationToken {
        state.shutdown.clone()
    }
}
