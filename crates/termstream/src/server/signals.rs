//! The signals the server acts on: SIGINT and SIGTERM start the shutdown,
//! bounded by `shutdown_timeout_ms`, and a second one exits at once.
//!
//! The service manager hears of it too: `STOPPING=1` goes to systemd (when
//! run as a `Type=notify` unit) as the shutdown starts.

use std::time::Duration;

use tokio::signal::unix::{Signal, SignalKind, signal};

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
pub async fn shutdown_signal(timeout: Duration) {
    let mut stop = match Stop::new() {
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
