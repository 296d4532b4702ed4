//! Binding, serving and shutting down.
//!
//! Shutdown is explicit: on SIGINT or SIGTERM the listener stops accepting,
//! open requests finish, every running session is terminated (SIGHUP,
//! SIGTERM, then SIGKILL after the grace period) and recorded as such.
//!
//! Connections are accepted and served by [`accept`]: plain or TLS
//! ([`crate::tls`]), with a header read timeout.

pub mod accept;

use std::net::SocketAddr;
use std::sync::Arc;

use std::time::Duration;

use anyhow::Context;
use tokio::net::TcpListener;
use tokio_rustls::TlsAcceptor;

use crate::api::{self, AppState};
use crate::auth::Security;
use crate::config::Config;
use crate::focus::Focus;
use crate::focus::store::FileStore;
use crate::registry::Registry;

/// A bound server, not yet serving.
pub struct Server {
    listener: TcpListener,
    registry: Arc<Registry>,
    security: Arc<Security>,
    focus: Arc<Focus>,
    /// Set when serving TLS.
    tls: Option<TlsAcceptor>,
    header_timeout: Duration,
}

impl Server {
    /// Loads the stored sessions and binds the listening socket.
    pub async fn bind(config: Config) -> anyhow::Result<Server> {
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
        let focus_dir = config.data_dir.join("focus");
        let registry = Registry::load(config)?;
        let focus = Focus::new(FileStore::open(&focus_dir)?, registry.clone());
        Ok(Server {
            listener,
            registry,
            focus,
            security: Arc::new(security),
            tls,
            header_timeout,
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

    /// Serves until `shutdown` completes, then terminates every session.
    pub async fn run(self, shutdown: impl Future<Output = ()> + Send + 'static) -> anyhow::Result<()> {
        let state = AppState::new(self.registry.clone(), self.security.clone(), self.focus.clone());
        let app = api::router(state);
        let retention = tokio::spawn(self.registry.clone().retention_loop());
        let deletions = tokio::spawn(self.focus.clone().follow_deletions());
        let serving = accept::Serving {
            app,
            tls: self.tls,
            header_timeout: self.header_timeout,
        };
        accept::serve(self.listener, serving, shutdown).await;
        retention.abort();
        deletions.abort();
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
