//! Servers with tokens configured in a file, and requests made with them,
//! for the tests of credentials, scopes and the login cookie.

use std::time::{Duration, Instant};

use reqwest::header::HeaderMap;
use serde_json::Value;
use termstream::auth::token;

use super::ws::WsClient;
use super::{TestServer, Transport, secs};

/// Configuration for servers whose tests attach to another project's
/// session: that attach is answered `session_not_found` as a missing id is,
/// after the attach wait (see `tests/attach_wait.rs`), which is 3 s by
/// default; 100 ms keeps the answer and the test fast.
pub const SHORT_ATTACH_WAIT: &str = "attach_wait_ms = 100";

/// The `[[tokens]]` entry of an admin token named `name`.
pub fn admin_entry(name: &str, token: &str) -> String {
    format!(
        "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nadmin = true\n",
        token::hash(token)
    )
}

/// The `[[tokens]]` entry of a token named `name` with `projects`, an
/// inline table such as `{ web = "read" }`.
pub fn project_entry(name: &str, token: &str, projects: &str) -> String {
    format!(
        "[[tokens]]\nname = \"{name}\"\nsha256 = \"{}\"\nprojects = {projects}\n",
        token::hash(token)
    )
}

/// A config file in a folder of its own, removed when this is dropped: for
/// servers started with more flags than [`TestServer::start_configured`]
/// passes.
pub struct ConfigFile {
    _dir: tempfile::TempDir,
    path: String,
}

impl ConfigFile {
    /// Writes `toml` to a new config file.
    pub fn new(toml: &str) -> ConfigFile {
        let dir = tempfile::tempdir().expect("tempdir");
        let path = dir.path().join("termstream.toml");
        std::fs::write(&path, toml).expect("config file");
        let path = path.to_str().expect("a UTF-8 path").to_owned();
        ConfigFile { _dir: dir, path }
    }

    /// The file's path, for `--config`.
    pub fn path(&self) -> &str {
        &self.path
    }
}

/// Tokens of a server started by [`secured`].
pub struct Tokens {
    pub admin: String,
    /// write on `web`.
    pub web_writer: String,
    /// read on `web`.
    pub web_reader: String,
    /// write on `api`.
    pub api_writer: String,
}

/// A server with four tokens configured in its config file, plus `extra`
/// TOML, and environment `env`.
pub async fn secured(extra: &str, env: &[(&str, &str)], transport: Transport) -> (TestServer, Tokens) {
    let t = Tokens {
        admin: token::generate(),
        web_writer: token::generate(),
        web_reader: token::generate(),
        api_writer: token::generate(),
    };
    let toml = [
        format!("{extra}\n"),
        admin_entry("admin", &t.admin),
        project_entry("web-writer", &t.web_writer, r#"{ web = "write" }"#),
        project_entry("web-reader", &t.web_reader, r#"{ web = "read" }"#),
        project_entry("api-writer", &t.api_writer, r#"{ api = "write" }"#),
    ]
    .concat();
    (TestServer::start_configured(&toml, env, transport).await, t)
}

/// A client that neither follows redirects nor keeps cookies, so a test
/// sees exactly what the server answers and sends exactly what it means to.
pub fn bare(server: &TestServer) -> reqwest::Client {
    let mut b = reqwest::Client::builder().redirect(reqwest::redirect::Policy::none());
    if let Some(cert) = server.cert() {
        let root = reqwest::Certificate::from_pem(cert.cert_pem.as_bytes()).unwrap();
        b = b.tls_built_in_root_certs(false).add_root_certificate(root);
    }
    b.build().unwrap()
}

/// One request with an optional bearer token and extra headers, by a
/// [`bare`] client; the status, the body as JSON (Null if none) and the
/// headers.
pub async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    token: Option<&str>,
    body: Option<Value>,
    headers: &[(&str, &str)],
) -> (u16, Value, HeaderMap) {
    let method = reqwest::Method::from_bytes(method.as_bytes()).unwrap();
    let mut req = bare(server).request(method, server.url(path));
    if let Some(t) = token {
        req = req.bearer_auth(t);
    }
    if let Some(b) = body {
        req = req.json(&b);
    }
    for (k, v) in headers {
        req = req.header(*k, *v);
    }
    let resp = req.send().await.expect("request");
    let (status, headers) = (resp.status().as_u16(), resp.headers().clone());
    let bytes = resp.bytes().await.unwrap();
    (status, serde_json::from_slice(&bytes).unwrap_or(Value::Null), headers)
}

/// The error code of an error body, or "".
pub fn error_code(body: &Value) -> &str {
    body["error"]["code"].as_str().unwrap_or_default()
}

/// Creates a session with `token`; asserts 201 and returns its info.
pub async fn create_as(server: &TestServer, token: &str, body: Value) -> Value {
    let (status, info, _) = call(server, "POST", "/api/sessions", Some(token), Some(body.clone()), &[]).await;
    assert_eq!(status, 201, "create {body} answered {info}");
    info
}

/// Output of a session, read with `token`.
pub async fn output_as(server: &TestServer, token: &str, id: &str) -> String {
    let resp = server
        .client
        .get(server.url(&format!("/api/sessions/{id}/output?since=0")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    String::from_utf8_lossy(&resp.bytes().await.unwrap()).into_owned()
}

/// Polls the output of a session, read with `token`, until it holds
/// `needle`; returns it then.
pub async fn wait_output(server: &TestServer, token: &str, id: &str, needle: &str) -> String {
    let deadline = Instant::now() + secs(10);
    loop {
        let out = output_as(server, token, id).await;
        if out.contains(needle) {
            return out;
        }
        assert!(Instant::now() < deadline, "{needle:?} not in {out:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `/ws` client authenticated by the `bearer.TOKEN` subprotocol; reads
/// the `connected` message.
pub async fn ws_as(server: &TestServer, token: &str) -> WsClient {
    let proto = format!("bearer.{token}");
    let (mut ws, resp) = WsClient::try_connect(server, "/ws", &[("sec-websocket-protocol", &proto)])
        .await
        .expect("upgrade with a bearer subprotocol");
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        proto.as_str(),
        "the protocol is echoed"
    );
    assert_eq!(ws.next_json(secs(10)).await["type"], "connected");
    ws
}
