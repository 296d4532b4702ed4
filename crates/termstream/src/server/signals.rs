//! The signals the server acts on: SIGINT and SIGTERM start the shutdown,
//! bounded by `shutdown_timeout_ms`, and a second one exits at once; SIGHUP
//! reloads the TLS certificate and the tokens.
//!
//! The service manager hears of it too: `STOPPING=1` goes to systemd (when
//! run as a `Type=notify` unit) as the shutdown starts.

use std::sync::Arc;
use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

use super::Reload;
use crate::auth::Security;
use crate::tls::SharedAcceptor;

/// SIGINT and SIGTERM, whichever comes first.
struct Stop {
    int: Signal,
    term: Signal,
}

impl Stop {
    fn new() -> std::io::Result<Stop> {
        Ok(Stop {
            int: signal(SignalKind::interrupt())?,
            term: signal(SignalKind::terminate())?,
        })
    }

    async fn recv(&mut self) {
        tokio::select! {
            _ = self.int.recv() => {}
            _ = self.term.recv() => {}
        }
    }
}

/// Completes on the first SIGINT or SIGTERM. From then on, a second one
/// exits the process at once (status 130), and so does a shutdown still
/// running after `timeout` (status 1). Must be called inside the runtime.
///
/// The handlers are installed by this call, not at the future's first
/// poll: the server calls it before it says it is up, so a signal sent
/// as soon as it is (by a service manager, a script or a test) starts the
/// shutdown instead of the default action, which killed the process.
pub fn shutdown_signal(timeout: Duration) -> impl Future<Output = ()> + Send + 'static {
    let stop = Stop::new();
    async move {
        let mut stop = match stop {
            Ok(s) => s,
            Err(e) => {
                tracing::error!(error = %e, "cannot listen for SIGINT and SIGTERM");
                return std::future::pending().await;
            }
        };
        stop.recv().await;
        let _ = sd_notify::notify(&[sd_notify::NotifyState::Stopping]);
        tracing::info!(timeout_ms = timeout.as_millis() as u64, "shutdown asked");
        tokio::spawn(async move {
            tokio::select! {
                () = stop.recv() => {
                    tracing::warn!("second signal: exiting at once");
                    std::process::exit(130);
                }
                () = tokio::time::sleep(timeout) => {
                    tracing::error!("shutdown took longer than {timeout:?}: exiting");
                    std::process::exit(1);
                }
            }
        });
    }
}

/// SIGHUP caught from now on: the server calls this when it binds, before
/// it says it is up, so a SIGHUP sent as soon as it is (a log rotation, a
/// script) is not the default action, which killed the process. `None`
/// (logged) when it cannot be.
pub fn hangups() -> Option<Signal> {
    match signal(SignalKind::hangup()) {
        Ok(s) => Some(s),
        Err(e) => {
            tracing::error!(error = %e, "cannot listen for SIGHUP");
            None
        }
    }
}

/// On every SIGHUP: reads the configuration with `reload` and takes its
/// tokens and (when serving TLS) its certificate and key. A part that fails
/// to load is reported and the old one kept; open connections are not
/// touched. Runs until aborted.
pub async fn reloads(
    hangups: Option<Signal>,
    reload: Option<Reload>,
    security: Arc<Security>,
    tls: Option<Arc<SharedAcceptor>>,
) {
    let Some(mut hup) = hangups else { return };
    while hup.recv().await.is_some() {
        let Some(reload) = &reload else {
            tracing::warn!("SIGHUP: this server has nothing to reload from");
            continue;
        };
        let config = match reload() {
            Ok(c) => c,
            Err(e) => {
                tracing::error!("SIGHUP: the configuration does not load, nothing changed: {e:#}");
                continue;
            }
        };
        match security.reload_tokens(&config) {
            Ok(n) => tracing::info!(tokens = n, "SIGHUP: tokens reloaded"),
            Err(e) => tracing::error!("SIGHUP: tokens not reloaded: {e}"),
        }
        if let Some(tls) = &tls {
            match (&config.tls_cert, &config.tls_key) {
                (Some(cert), Some(key)) => match tls.reload(cert, key) {
                    Ok(()) => tracing::info!(cert = %cert.display(), "SIGHUP: TLS certificate reloaded"),
                    Err(e) => tracing::error!("SIGHUP: TLS certificate not reloaded: {e}"),
                },
                _ => tracing::error!("SIGHUP: the configuration no longer names a certificate; keeping the old one"),
            }
        }
    }
}
