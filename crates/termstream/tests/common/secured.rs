//! Servers with tokens configured in a file, and requests made with them,
//! for the tests of credentials, scopes and the login cookie.

use reqwest::header::HeaderMap;
use serde_json::Value;
use termstream::auth::token;

use super::{TestServer, Transport};

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
    let toml = format!(
        "{extra}\n\
         [[tokens]]\nname = \"admin\"\nsha256 = \"{}\"\nadmin = true\n\
         [[tokens]]\nname = \"web-writer\"\nsha256 = \"{}\"\nprojects = {{ web = \"write\" }}\n\
         [[tokens]]\nname = \"web-reader\"\nsha256 = \"{}\"\nprojects = {{ web = \"read\" }}\n\
         [[tokens]]\nname = \"api-writer\"\nsha256 = \"{}\"\nprojects = {{ api = \"write\" }}\n",
        token::hash(&t.admin),
        token::hash(&t.web_writer),
        token::hash(&t.web_reader),
        token::hash(&t.api_writer),
    );
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
