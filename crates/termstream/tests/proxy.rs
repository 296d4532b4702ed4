//! termstream behind a real nginx running `contrib/nginx.conf`: a WebSocket
//! session through it, the origin check behind its TLS termination, the
//! refusal of forwarded requests when no token is configured, and the
//! client's address (not the proxy's) in the audit log.
//!
//! The test starts Debian's `nginx` itself, in the foreground, with a
//! prefix, pid file, logs and temp paths in a temporary directory, on
//! loopback ports; `.ci/run` installs it. nginx connects to termstream from
//! 127.0.0.2 (`proxy_bind`), the only trusted proxy; test clients connect
//! to nginx from 127.0.0.3, so the addresses cannot be confused.

mod common;

use std::net::{SocketAddr, TcpListener};
use std::process::Child;
use std::time::{Duration, Instant};

use common::nginx;
use common::secured::{ConfigFile, admin_entry};
use common::tls::TestCert;
use common::ws::until_type_on;
use common::{TestServer, secs, wait_until};
use serde_json::{Value, json};
use termstream::auth::token;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// The address nginx connects to termstream from.
const PROXY_IP: &str = "127.0.0.2";
/// The address test clients connect to nginx from.
const CLIENT_IP: &str = "127.0.0.3";

/// A running nginx serving `contrib/nginx.conf`, stopped when dropped.
struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
    /// The HTTPS port.
    port: u16,
    cert: TestCert,
}

fn free_port() -> u16 {
    TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

impl Nginx {
    /// Starts nginx with the contrib config in front of `upstream`.
    async fn start(upstream: &str) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let cert = TestCert::generate();
        let (http, port) = (free_port(), free_port());
        let replace = nginx::replaced;
        let mut site = nginx::contrib("nginx.conf");
        site = replace(site, "server 127.0.0.1:8000;", &format!("server {upstream};"));
        site = replace(site, "listen 80;", &format!("listen 127.0.0.1:{http};"));
        site = replace(site, "listen 443 ssl;", &format!("listen 127.0.0.1:{port} ssl;"));
        site = replace(
            site,
            "/etc/ssl/certs/termstream.example.pem",
            cert.cert_path.to_str().unwrap(),
        );
        site = replace(
            site,
            "/etc/ssl/private/termstream.example.key",
            cert.key_path.to_str().unwrap(),
        );
        site = replace(
            site,
            "proxy_pass http://termstream;",
            &format!("proxy_pass http://termstream;\n        proxy_bind {PROXY_IP};"),
        );
        let child = nginx::spawn(dir.path(), &site, port).await;
        Nginx {
            child,
            _dir: dir,
            port,
            cert,
        }
    }

    fn url(&self, path: &str) -> String {
        format!("https://127.0.0.1:{}{path}", self.port)
    }

    /// An HTTPS client that trusts nginx's certificate and connects from
    /// [`CLIENT_IP`].
    fn client(&self) -> reqwest::Client {
        let root = reqwest::Certificate::from_pem(self.cert.cert_pem.as_bytes()).unwrap();
        reqwest::Client::builder()
            .tls_built_in_root_certs(false)
            .add_root_certificate(root)
            .local_address(CLIENT_IP.parse::<std::net::IpAddr>().unwrap())
            .build()
            .unwrap()
    }

    /// Opens a WebSocket to `path` through nginx with `headers`; the HTTP
    /// status of a refusal, or the socket.
    async fn ws(
        &self,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>, u16> {
        let url = format!("wss://127.0.0.1:{}{path}", self.port);
        let mut req = url.into_client_request().unwrap();
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).unwrap(),
                v.parse().unwrap(),
            );
        }
        let socket = tokio::net::TcpSocket::new_v4().unwrap();
        socket.bind(SocketAddr::new(CLIENT_IP.parse().unwrap(), 0)).unwrap();
        let tcp = socket.connect(([127, 0, 0, 1], self.port).into()).await.unwrap();
        let connector = tokio_tungstenite::Connector::Rustls(self.cert.rustls_client());
        match tokio_tungstenite::client_async_tls_with_config(req, tcp, None, Some(connector)).await {
            Ok((ws, _)) => Ok(ws),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => Err(resp.status().as_u16()),
            Err(e) => panic!("websocket through nginx failed: {e}"),
        }
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        if let Some(pid) = rustix::process::Pid::from_raw(self.child.id() as i32) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::QUIT);
        }
        let deadline = Instant::now() + Duration::from_secs(5);
        while matches!(self.child.try_wait(), Ok(None)) && Instant::now() < deadline {
            std::thread::sleep(Duration::from_millis(20));
        }
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A termstream with an admin token, trusting [`PROXY_IP`], logging JSON
/// audit events to a file; and the token.
async fn secured_behind_proxy() -> (TestServer, String) {
    let admin = token::generate();
    let config = ConfigFile::new(&format!(
        "trusted_proxies = [\"{PROXY_IP}\"]\n{}",
        admin_entry("ops-admin", &admin)
    ));
    let server = TestServer::start_logged(
        &["--config", config.path(), "--log-format", "json"],
        &[("RUST_LOG", "termstream=info")],
    )
    .await;
    (server, admin)
}

#[tokio::test]
async fn a_session_through_nginx_keeps_the_client_address() {
    let (server, admin) = secured_behind_proxy().await;
    let nginx = Nginx::start(server.addr()).await;
    let bearer = format!("Bearer {admin}");

    let resp = nginx
        .client()
        .post(nginx.url("/api/sessions"))
        .header("authorization", &bearer)
        .json(&json!({ "argv": ["cat"], "project": "web" }))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 201);
    let info: Value = resp.json().await.unwrap();
    let id = info["id"].as_str().unwrap().to_owned();

    // A WebSocket session through the proxy: attach, type, read the echo.
    let origin = format!("https://127.0.0.1:{}", nginx.port);
    let mut ws = nginx
        .ws("/ws", &[("authorization", &bearer), ("origin", &origin)])
        .await
        .expect("the upgrade through nginx was refused");
    until_type_on(&mut ws, "connected", secs(10)).await;
    use futures_util::SinkExt;
    let send = |v: Value| tokio_tungstenite::tungstenite::Message::Text(v.to_string().into());
    ws.send(send(json!({"type":"session.attach","sessionId":id,"output":"json"})))
        .await
        .unwrap();
    until_type_on(&mut ws, "session.attached", secs(10)).await;
    ws.send(send(
        json!({"type":"terminal.input","sessionId":id,"data":"through-nginx\n"}),
    ))
    .await
    .unwrap();
    let mut seen = String::new();
    while !seen.contains("through-nginx") {
        let out = until_type_on(&mut ws, "terminal.output", secs(10)).await.0;
        seen.push_str(out["data"].as_str().unwrap_or_default());
    }
    ws.close(None).await.unwrap();

    // The audit log names the client (127.0.0.3), not nginx (127.0.0.2).
    assert!(
        wait_until(secs(10), || async { !server.log_events("socket.closed").is_empty() }).await,
        "{}",
        server.log()
    );
    let created = &server.log_events("session.created")[0];
    assert_eq!(created["peer"], CLIENT_IP, "{created}");
    assert_eq!(created["credential"], "ops-admin");
    let connected = &server.log_events("socket.connected")[0];
    assert_eq!(connected["peer"], CLIENT_IP, "{connected}");
    assert!(
        !server.log().contains(PROXY_IP),
        "the proxy's address was logged as a client's"
    );
}

#[tokio::test]
async fn the_origin_check_knows_the_proxy_terminates_tls() {
    let (server, admin) = secured_behind_proxy().await;
    let nginx = Nginx::start(server.addr()).await;
    let bearer = format!("Bearer {admin}");
    let https_origin = format!("https://127.0.0.1:{}", nginx.port);
    let http_origin = format!("http://127.0.0.1:{}", nginx.port);

    // The page was loaded over https from nginx: its origin is allowed.
    assert!(
        nginx
            .ws("/ws", &[("authorization", &bearer), ("origin", &https_origin)])
            .await
            .is_ok()
    );
    // The same host over plain http, or another site, is not.
    for bad in [http_origin.as_str(), "https://evil.example"] {
        let refused = nginx.ws("/ws", &[("authorization", &bearer), ("origin", bad)]).await;
        assert_eq!(refused.err(), Some(403), "{bad}");
    }
    // Straight to termstream (plain http, no trusted proxy), the https
    // origin is foreign: the forwarded scheme counts only from the proxy.
    let direct = common::ws::WsClient::refused_status(
        &server,
        "/ws",
        &[
            ("authorization", &bearer),
            ("origin", &https_origin),
            ("x-forwarded-proto", "https"),
        ],
    )
    .await;
    assert_eq!(direct, 403);
}

#[tokio::test]
async fn without_a_token_forwarded_requests_are_refused() {
    let server = TestServer::start().await;
    let nginx = Nginx::start(server.addr()).await;
    let resp = nginx.client().get(nginx.url("/api/sessions")).send().await.unwrap();
    assert_eq!(resp.status(), 403);
    let body: Value = resp.json().await.unwrap();
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("configure a token"), "{message}");
    assert_eq!(nginx.ws("/ws", &[]).await.err(), Some(403));
    // Local clients are served as before.
    assert_eq!(server.get("/api/sessions").await.0, 200);
    // ... unless they too carry a forwarding header.
    let forged = server
        .client
        .get(server.url("/api/sessions"))
        .header("x-forwarded-for", "203.0.113.1")
        .send()
        .await
        .unwrap();
    assert_eq!(forged.status(), 403);
}

#[tokio::test]
async fn insecure_no_auth_serves_forwarded_requests() {
    let server = TestServer::start_with(&["--insecure-no-auth", "--trusted-proxy", PROXY_IP], &[]).await;
    let nginx = Nginx::start(server.addr()).await;
    let resp = nginx.client().get(nginx.url("/api/sessions")).send().await.unwrap();
    assert_eq!(resp.status(), 200);
}
