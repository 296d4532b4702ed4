//! Binding, serving and shutting down.
//!
//! Shutdown is explicit: on SIGINT or SIGTERM the listener stops accepting,
//! open requests finish, every running session is terminated (SIGHUP,
//! SIGTERM, then SIGKILL after the grace period) and recorded as such.

use std::net::SocketAddr;
use std::sync::Arc;

use anyhow::Context;
use axum::serve::ListenerExt;
use tokio::net::TcpListener;

use crate::api::{self, AppState};
use crate::auth::Security;
use crate::config::Config;
use crate::registry::Registry;

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    registry: Arc<Registry>,
    security: Arc<Security>,
}

impl Server {
    /// Loads the stored sessions and binds the listening socket.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
        let config = Arc::new(config);
        let listener = TcpListener::bind(config.listen)
            .await
            .with_context(|| format!("cannot listen on {}", config.listen))?;
        let bound = listener.local_addr().context("no local address")?;
        // Refuses an open server on a network address before anything else.
        let security = Security::new(&config, bound, false)?;
        if security.open() {
            tracing::warn!(
                %bound,
                "no token is configured: only clients on this machine (loopback) are served, and each may do anything"
            );
        }
        let registry = Registry::load(config)?;
        Ok(Server { listener, registry, security: Arc::new(security) })
    }

    /// The address actually bound (the port is chosen when 0 was asked for).
    pub fn local_addr(&self) -> std::io::Result<SocketAddr> {
        self.listener.local_addr()
    }

    /// Serves until `shutdown` completes, then terminates every session.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let state = AppState::new(self.registry.clone(), self.security.clone());
        let app = api::router(state);
        let retention = tokio::spawn(self.registry.clone().retention_loop());
        // Small writes (an echoed key) must not wait for Nagle's algorithm.
        let listener = self.listener.tap_io(|tcp| {
            if let Err(e) = tcp.set_nodelay(true) {
                tracing::debug!(error = %e, "cannot set TCP_NODELAY");
            }
        });
        axum::serve(listener, app.into_make_service_with_connect_info::<SocketAddr>())
            .with_graceful_shutdown(shutdown)
            .await
            .context("serving failed")?;
        retention.abort();
        tracing::info!("shutting down: terminating running sessions");
        self.registry.terminate_all().await;
        Ok(())
    }
}

/// Completes on SIGINT or SIGTERM.
pub async fn shutdown_signal() {
    let mut term = match tokio::signal::unix::signal(tokio::signal::unix::SignalKind::terminate()) {
        Ok(s) => s,
        Err(_) => return std::future::pending().await,
    };
    tokio::select! {
        _ = tokio::signal::ctrl_c() => {}
        _ = term.recv() => {}
    }
}
