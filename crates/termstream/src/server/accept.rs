//! The accept loop: TCP, then TLS when configured, then HTTP/1.1 (with
//! upgrades, for WebSockets) served by hyper with a header read timeout.
//!
//! `axum::serve` has no header timeout and no TLS, so this loop replaces it
//! for both plain and TLS listeners; each connection gets what `axum::serve`
//! gave it: `ConnectInfo<SocketAddr>` in the request's extensions,
//! `TCP_NODELAY`, and a graceful end on shutdown.
//!
//! Timeouts, all `http_header_timeout_ms`:
//! - a TLS client must send its first byte and finish its handshake in time;
//! - a request head must arrive whole in time, counted from when the server
//!   starts waiting for it (so an idle keep-alive connection is closed after
//!   it too). A client that opens TCP and sends nothing, or half a request,
//!   is disconnected.
//!
//! - a request body must arrive whole within `http_body_timeout_ms` of the
//!   first read that waits for it ([`super::body`]), else 408 and the
//!   connection is closed.
//!
//! Shutdown: when `shutdown` completes, no connection is accepted any more,
//! every connection is asked to end after its current request (idle ones
//! close at once), and the loop waits for them for at most [`DRAIN`].
//! Upgraded WebSockets have left hyper by then; they end when their
//! sessions are terminated.

use std::net::SocketAddr;
use std::time::Duration;

use axum::Router;
use axum::extract::ConnectInfo;
use hyper::body::Incoming;
use hyper_util::rt::{TokioIo, TokioTimer};
use hyper_util::service::TowerToHyperService;
use std::sync::Arc;
use tokio::net::{TcpListener, TcpStream};
use tokio_util::sync::CancellationToken;
use tokio_util::task::TaskTracker;
use tower::ServiceExt;

use super::body::TimedBody;
use crate::tls::{self, SharedAcceptor};

/// How long shutdown waits for open requests to finish.
pub const DRAIN: Duration = Duration::from_secs(5);

/// What every connection is served with.
#[derive(Clone)]
pub struct Serving {
    pub app: Router,
    /// The TLS acceptor, when serving TLS (reloadable).
    pub tls: Option<Arc<SharedAcceptor>>,
    /// Time allowed for a TLS handshake and for each request head.
    pub header_timeout: Duration,
    /// Time allowed for each request body, from the first read that waits.
    pub body_timeout: Duration,
}

/// Accepts connections on `listener` until `shutdown` completes, then ends
/// them gracefully (see the module docs).
pub async fn serve(listener: TcpListener, serving: Serving, shutdown: impl Future<Output = ()>) {
    let tracker = TaskTracker::new();
    // Cancelled on shutdown; every connection task watches it.
    let stop = CancellationToken::new();
    tokio::pin!(shutdown);
    loop {
        let (tcp, peer) = tokio::select! {
            accepted = listener.accept() => match accepted {
                Ok(conn) => conn,
                Err(e) => {
                    accept_error(e).await;
                    continue;
                }
            },
            () = &mut shutdown => break,
        };
        // Small writes (an echoed key) must not wait for Nagle's algorithm.
        if let Err(e) = tcp.set_nodelay(true) {
            tracing::debug!(error = %e, "cannot set TCP_NODELAY");
        }
        tracker.spawn(connection(tcp, peer, serving.clone(), stop.clone()));
    }
    drop(listener);
    stop.cancel();
    tracker.close();
    if tokio::time::timeout(DRAIN, tracker.wait()).await.is_err() {
        tracing::warn!(
            open = tracker.len(),
            "connections still open after {DRAIN:?}; going on with shutdown"
        );
    }
}

/// An accept error is either the client's (it left before we took it) or
/// the process's (out of file descriptors): the latter waits a moment, so
/// the loop does not spin.
async fn accept_error(e: std::io::Error) {
    use std::io::ErrorKind::*;
    if matches!(
        e.kind(),
        ConnectionAborted | ConnectionReset | ConnectionRefused | Interrupted
    ) {
        return;
    }
    tracing::error!(error = %e, "accept failed");
    tokio::time::sleep(Duration::from_millis(100)).await;
}

async fn connection(tcp: TcpStream, peer: SocketAddr, serving: Serving, stop: CancellationToken) {
    let Some(acceptor) = serving.tls.as_ref().map(|t| t.get()) else {
        return http(TokioIo::new(tcp), peer, serving, stop).await;
    };
    // One deadline for the first byte and the whole handshake; a shutdown
    // does not wait for a client that is still silent or handshaking.
    let timeout = serving.header_timeout;
    let handshake = async {
        match tls::starts_tls(&tcp, timeout).await {
            Some(true) => {}
            Some(false) => {
                tracing::debug!(%peer, "plain HTTP on the TLS port");
                tls::refuse_plain_http(tcp, timeout).await;
                return None;
            }
            None => return None,
        }
        match acceptor.accept(tcp).await {
            Ok(stream) => Some(stream),
            Err(e) => {
                tracing::debug!(%peer, error = %e, "TLS handshake failed");
                None
            }
        }
    };
    let stream = tokio::select! {
        r = tokio::time::timeout(timeout, handshake) => r.unwrap_or_else(|_| {
            tracing::debug!(%peer, "TLS handshake timed out");
            None
        }),
        () = stop.cancelled() => None,
    };
    if let Some(stream) = stream {
        http(TokioIo::new(stream), peer, serving, stop).await;
    }
}

async fn http<I>(io: TokioIo<I>, peer: SocketAddr, serving: Serving, stop: CancellationToken)
where
    I: tokio::io::AsyncRead + tokio::io::AsyncWrite + Unpin + Send + 'static,
{
    let body_timeout = serving.body_timeout;
    let service = serving.app.map_request(move |mut req: hyper::Request<Incoming>| {
        req.extensions_mut().insert(ConnectInfo(peer));
        req.map(|body| TimedBody::new(body, body_timeout))
    });
    let mut builder = hyper::server::conn::http1::Builder::new();
    builder
        .timer(TokioTimer::new())
        .header_read_timeout(serving.header_timeout);
    let conn = builder
        .serve_connection(io, TowerToHyperService::new(service))
        .with_upgrades();
    tokio::pin!(conn);
    let result = tokio::select! {
        r = conn.as_mut() => r,
        () = stop.cancelled() => {
            conn.as_mut().graceful_shutdown();
            conn.await
        }
    };
    if let Err(e) = result {
        // Header timeouts, resets and malformed requests: the client's doing.
        tracing::debug!(%peer, error = %e, "connection ended with an error");
    }
}
