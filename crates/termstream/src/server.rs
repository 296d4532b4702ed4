//! Binding, serving and shutting down.
//!
//! Shutdown is explicit: on SIGINT or SIGTERM ([`signals`]) the listener
//! stops accepting, creates are refused, and open requests finish; every
//! WebSocket is told (`{"type":"server.shutdown"}`, then close 1001) and
//! `/readyz` turns unready; creates, deletes and focus changes still under
//! way (their clients may have hung up) get what is left of the budget
//! below; every running session is terminated (SIGHUP, SIGTERM, then
//! SIGKILL after the grace period) and recorded as such; then, on a
//! cluster, the removals from Redis of sessions deleted here (hurried, and
//! tried meanwhile) are waited for within that same part of the budget.
//! The whole takes at most `shutdown_timeout_ms`, and a second signal
//! exits at once.
//!
//! SIGHUP reloads the TLS certificate and the tokens ([`signals::reloads`]);
//! open connections are not touched.
//!
//! Connections are accepted and served by [`accept`]: plain or TLS
//! ([`crate::tls`]), with a header read timeout and a body deadline
//! ([`body`]).

pub mod accept;
pub mod body;
pub mod signals;

use std::net::SocketAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, OnceLock};

use std::time::{Duration, Instant};

use anyhow::Context;
use tokio::net::TcpListener;

use crate::api;
use crate::auth::Security;
use crate::config::Config;
use crate::events::EventHub;
use crate::events::relay::EventBridge;
use crate::focus::Focus;
use crate::focus::relay::FocusRelay;
use crate::focus::store::FileStore;
use crate::registry::Registry;
use crate::state::AppState;
use crate::tls::SharedAcceptor;

/// Reads the configuration again (the file, the environment and the same
/// flags), for a reload.
pub type Reload = Arc<dyn Fn() -> anyhow::Result<Config> + Send + Sync>;

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    registry: Arc<Registry>,
    security: Arc<Security>,
    /// Every project's focus set ([`crate::focus`]).
    focus: Arc<Focus>,
    /// Set when serving TLS; reloaded on SIGHUP.
    tls: Option<Arc<SharedAcceptor>>,
    /// Reads the configuration again, for SIGHUP.
    reload: Option<Reload>,
    /// SIGHUP, caught from the bind on (see [`signals::hangups`]).
    hangups: Option<tokio::signal::unix::Signal>,
    header_timeout: Duration,
    body_timeout: Duration,
    /// With `--cluster`: shared focus and event channels through Redis.
    shared: Option<SharedState>,
}

/// A cluster node's links to the state it shares through Redis: focus
/// sets ([`FocusRelay`]) and event channels ([`EventBridge`]).
struct SharedState {
    relay: Arc<FocusRelay>,
    bridge: Arc<EventBridge>,
}

impl Server {
    /// Loads the stored sessions and binds the listening socket. Catches
    /// SIGHUP for the whole process from here on (a reload once serving;
    /// see [`signals::hangups`]).
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        // First, so that a SIGHUP while the stored sessions load is caught.
        let hangups = signals::hangups();
        let config = Arc::new(config);
        // A bad certificate or key stops the start, before anything is bound.
        let tls = crate::tls::acceptor(config.tls_cert.as_deref(), config.tls_key.as_deref())?;
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let bound = listener.local_addr().context("no local address")?;
        // Refuses an open server on a network address before anything else.
        let security = Security::new(&config, bound, tls.is_some())?;
        if security.open() {
            tracing::warn!(
                %bound,
                "no token is configured: only clients on this machine (loopback) are served, and each may do anything"
            );
        }
        let header_timeout = Duration::from_millis(config.http_header_timeout_ms);
        let body_timeout = Duration::from_millis(config.http_body_timeout_ms);
        let focus_dir = config.data_dir.join("focus");
        let cluster = config.cluster.clone();
        let registry = Registry::load(config)?;
        if let Some(url) = &cluster {
            crate::cluster::Cluster::start(url, registry.clone())?;
        }
        let (focus, shared) = match cluster {
            None => (Focus::new(FileStore::open(&focus_dir)?, registry.clone()), None),
            Some(url) => {
                let client = redis::Client::open(url.as_str()).with_context(|| format!("bad cluster URL {url:?}"))?;
                let relay = FocusRelay::new(client.clone())?;
                let bridge = EventBridge::new(client)?;
                let focus = Focus::shared(relay.clone(), registry.clone());
                (focus, Some(SharedState { relay, bridge }))
            }
        };
        Ok(Server {
            listener,
            registry,
            focus,
            security: Arc::new(security),
            tls: tls.map(|t| Arc::new(SharedAcceptor::new(t))),
            header_timeout,
            body_timeout,
            reload: None,
            hangups,
            shared,
        })
    }

    /// The address actually bound (the port is chosen when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// `https` when serving TLS, else `http`.
    pub fn scheme(&self) -> &'static str {
        if self.tls.is_some() { "https" } else { "http" }
    }

    /// On SIGHUP, reads the configuration with `reload` and takes its TLS
    /// certificate and key and its tokens; connections stay open.
    pub fn with_reload(mut self, reload: impl Fn() -> anyhow::Result<Config> + Send + Sync + 'static) -> Server {
        self.reload = Some(Arc::new(reload));
        self
    }

    /// Serves until `shutdown` completes, then shuts down (see the module
    /// docs): stop accepting and refuse creates, tell every socket, let work
    /// under way finish within the budget, terminate every session, wait for
    /// the sockets to close.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        crate::observe::metrics::install();
        let mut state = AppState::new(self.registry.clone(), self.security.clone(), self.focus.clone());
        let mut shared_tasks = Vec::new();
        if let Some(shared) = &self.shared {
            let hub = EventHub::clustered(shared.bridge.clone());
            state.events = hub.clone();
            shared_tasks.push(tokio::spawn(shared.bridge.clone().run(hub)));
            let relay = shared.relay.clone().run(self.focus.clone());
            shared_tasks.push(tokio::spawn(relay));
        }
        let feed = tokio::spawn(crate::gateway::session_feed::run(
            self.registry.clone(),
            state.events.clone(),
        ));
        let stopping = state.shutdown.clone();
        let app = api::router(state.clone());
        let retention = tokio::spawn(self.registry.clone().retention_loop());
        let reloads = tokio::spawn(signals::reloads(
            self.hangups,
            self.reload.clone(),
            self.security.clone(),
            self.tls.clone(),
        ));
        let deletions = tokio::spawn(self.focus.clone().follow_deletions());
        let serving = accept::Serving {
            app,
            tls: self.tls,
            header_timeout: self.header_timeout,
            body_timeout: self.body_timeout,
        };
        // Sockets are told as soon as the signal comes, while the accept
        // loop lets open requests finish.
        let stopped_at = Arc::new(OnceLock::new());
        let signal = {
            let (stopped_at, registry) = (stopped_at.clone(), self.registry.clone());
            async move {
                shutdown.await;
                let _ = stopped_at.set(Instant::now());
                registry.refuse_creates();
                stopping.cancel();
            }
        };
        accept::serve(self.listener, serving, signal).await;
        retention.abort();
        feed.abort();
        reloads.abort();
        deletions.abort();
        shared_tasks.iter().for_each(|t| t.abort());
        // Creates, deletes, terminates and focus changes under way end first (their
        // clients may have hung up); a session created meanwhile is
        // terminated below like the others. They get what is left of
        // `shutdown_timeout_ms` once the sessions' termination and the
        // sockets' wait are set aside: past it the process exits, and
        // sessions never terminated would come back `lost`.
        let budget = Duration::from_millis(self.registry.config().shutdown_timeout_ms);
        let since = stopped_at.get().map_or(Duration::ZERO, Instant::elapsed);
        let kept = self.registry.terminate_wait() + SOCKETS_WAIT + FINISH_MARGIN;
        let deadline = tokio::time::Instant::now() + budget.saturating_sub(since).saturating_sub(kept);
        self.registry.close(deadline).await;
        tracing::info!("shutting down: terminating running sessions");
        self.registry.terminate_all().await;
        // In a cluster, the removals from Redis of sessions deleted here,
        // hurried since the signal and tried while the sessions ended, get
        // what is left of the same time.
        self.registry.settle_forgets(deadline).await;
        let closed = async {
            while state.clients.load(Ordering::Relaxed) > 0 {
                tokio::time::sleep(Duration::from_millis(10)).await;
            }
        };
        if tokio::time::timeout(SOCKETS_WAIT, closed).await.is_err() {
            tracing::warn!(
                open = state.clients.load(Ordering::Relaxed),
                "sockets still open after {SOCKETS_WAIT:?}; exiting anyway"
            );
        }
        tracing::info!("shut down");
        Ok(())
    }
}

/// The most threads the server's runtime starts for blocking work (disk
/// writes with their syncs, directory removals, `/proc` scans, screen
/// catch-ups on demand). tokio's default (512) grows the pool with the
/// number of sessions opened at once; a fixed bound keeps the server's
/// threads independent of its sessions, and work beyond it waits its turn.
pub const BLOCKING_THREADS: usize = 8;

/// What shutdown keeps of its budget beyond the sessions' termination and
/// the sockets' wait, when it gives the rest to the creates, deletes and
/// focus changes under way (`Registry::close`).
const FINISH_MARGIN: Duration = Duration::from_millis(500);

/// How long shutdown waits for told sockets to close after the sessions
/// ended.
const SOCKETS_WAIT: Duration = Duration::from_secs(2);

pub use signals::shutdown_signal;
