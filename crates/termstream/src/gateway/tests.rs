//! The upgrade extractors without the auth guard: a real WebSocket client
//! against a socket endpoint served by a router that inserts a grant (and,
//! in one case, a connection permit) as the guard would, on loopback.
//! Through the real server the guard always takes a permit for a socket
//! route, so an upgrade without one cannot be made there.

use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::Ordering;
use std::time::Duration;

use axum::Router;
use axum::extract::Request;
use axum::middleware::Next;
use axum::routing::get;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;

use crate::auth::{Grant, Permit, Security};
use crate::config::Config;
use crate::focus::Focus;
use crate::focus::store::FileStore;
use crate::limits::ConnLimiter;
use crate::registry::Registry;
use crate::state::AppState;

const WAIT: Duration = Duration::from_secs(10);

/// The state of a server over `dir`, as `termstream serve` builds it.
fn state(dir: &std::path::Path) -> AppState {
    let config = Config {
        data_dir: dir.to_owned(),
        spare_sessions: 0,
        ..Config::default()
    };
    let bound = "127.0.0.1:0".parse().unwrap();
    let security = Arc::new(Security::new(&config, bound, false).expect("security"));
    let registry = Registry::load(Arc::new(config)).expect("registry");
    let focus = Focus::new(FileStore::open(&dir.join("focus")).expect("store"), registry.clone());
    AppState::new(registry, security, focus)
}

/// Serves `/ws/terminal/all` on loopback, with a layer that inserts a grant
/// and, when `permitted`, a connection permit, as the guard would; answers
/// its address.
async fn serve(state: AppState, permitted: bool) -> SocketAddr {
    let limiter = ConnLimiter::new(10, 10);
    let admit = move |mut req: Request, next: Next| {
        let limiter = limiter.clone();
        async move {
            req.extensions_mut().insert(Grant::open());
            if permitted {
                let permit = limiter.acquire([127, 0, 0, 1].into()).expect("a permit");
                req.extensions_mut().insert(Permit(Arc::new(permit)));
            }
            next.run(req).await
        }
    };
    let app = Router::new()
        .route("/ws/terminal/all", get(super::legacy_all))
        .layer(axum::middleware::from_fn(admit))
        .with_state(state);
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        while let Ok((tcp, _)) = listener.accept().await {
            let app = app.clone();
            tokio::spawn(async move {
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app))
                    .with_upgrades()
                    .await;
            });
        }
    });
    addr
}

/// An upgrade that came without a connection permit fails closed: 500
/// `internal` with the JSON error body, no socket, no client counted. It
/// was upgraded, and its socket ran outside the connection limits. A plain
/// GET is still told it is no upgrade (426), and an upgrade with a permit
/// is served.
#[tokio::test]
async fn an_upgrade_without_a_connection_permit_is_refused() {
    let dir = tempfile::tempdir().unwrap();
    let state = state(dir.path());
    let clients = state.clients.clone();
    let bare = serve(state.clone(), false).await;
    let url = format!("ws://{bare}/ws/terminal/all");
    let refused = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await;
    let resp = match refused.expect("answered") {
        Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp,
        Ok(_) => panic!("upgraded without a connection permit"),
        Err(e) => panic!("not an HTTP refusal: {e}"),
    };
    assert_eq!(resp.status(), 500);
    let body: serde_json::Value = serde_json::from_slice(resp.body().as_deref().unwrap_or_default()).expect("JSON");
    assert_eq!(body["error"]["code"], "internal", "{body}");
    assert_eq!(clients.load(Ordering::Relaxed), 0, "a client was counted");

    let plain = reqwest::get(format!("http://{bare}/ws/terminal/all"))
        .await
        .expect("answered");
    assert_eq!(plain.status(), 426);

    let permitted = serve(state, true).await;
    let url = format!("ws://{permitted}/ws/terminal/all");
    let upgraded = tokio::time::timeout(WAIT, tokio_tungstenite::connect_async(url)).await;
    let (_socket, resp) = upgraded.expect("answered").expect("upgraded with a permit");
    assert_eq!(resp.status(), 101);
}
