//! REST calls: one method per route of the server, each returning the
//! protocol's own types, or an [`Error`] made from the server's error body.

use std::time::Duration;

use bytes::Bytes;
use reqwest::{Method, RequestBuilder, Response};
use serde::de::DeserializeOwned;
use serde::{Deserialize, Serialize};
use termstream_proto::compat;
use termstream_proto::{
    CreateSession, Epoch, ErrorBody, InputRequest, OutputPage, ResizeRequest, SessionId, SessionInfo, SessionList,
    SessionStatus, Snapshot,
};

use crate::endpoint::Endpoint;
use crate::error::{Error, Result, code_for_status};

/// How long a REST call may take to connect.
const CONNECT_TIMEOUT: Duration = Duration::from_secs(10);
/// How long a REST call may wait for the server's next bytes (its answer's
/// head, or more of its body) before it fails as [`Error::Unreachable`]: a
/// server that hangs fails the call instead of holding it for ever. The
/// routes answer within it (an input waits at most 5 s for room, up to
/// 15 s for a session another node of a cluster owns), except those that
/// end a program: see [`ENDING_READ_TIMEOUT`].
pub const READ_TIMEOUT: Duration = Duration::from_secs(30);
/// The read timeout of the calls that end a program (`terminate`,
/// `delete`, `compat_terminate`), if the client's own is shorter: the
/// server answers them once the program ended, which may take the
/// session's terminate grace (`terminate_grace_ms`, no upper bound) and
/// 5 s more (10 s more again through another node of a cluster). A grace
/// near this long makes them fail as [`Error::Unreachable`]; a server that
/// hangs holds them this long.
pub const ENDING_READ_TIMEOUT: Duration = Duration::from_secs(600);

/// A client of one server: cheap to clone, shares its connection pool.
#[derive(Debug, Clone)]
pub struct Client {
    http: reqwest::Client,
    /// As `http`, with a read timeout of at least [`ENDING_READ_TIMEOUT`]:
    /// for the calls that wait for a program to end.
    ending: reqwest::Client,
    endpoint: Endpoint,
}

/// Output bytes as `GET /api/sessions/{id}/output` returns them raw.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RawOutput {
    /// The log's epoch: a new one means offsets start over.
    pub epoch: Epoch,
    /// The offset of `data`'s first byte.
    pub offset: u64,
    /// The offset to ask for next.
    pub next_offset: u64,
    /// One past the last byte the session has produced so far.
    pub end_offset: u64,
    pub data: Bytes,
}

/// A single-use credential for opening `/ws?token=`.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct Ticket {
    /// The value for `?token=`.
    pub ticket: String,
    /// How long it may be used.
    pub expires_in_ms: u64,
}

/// A one-time login link for the web page.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "camelCase")]
pub struct LoginCode {
    /// The code itself.
    pub code: String,
    /// The page's path that logs in with it (relative to the server).
    pub path: String,
    /// How long it may be used.
    pub expires_in_ms: u64,
}

#[derive(Deserialize)]
struct InputAnswer {
    bytes: u64,
}

#[derive(Deserialize)]
struct PublishAnswer {
    receivers: usize,
}

impl Client {
    /// A client of the server at `endpoint`, whose calls fail once the
    /// server has sent nothing for [`READ_TIMEOUT`].
    pub fn new(endpoint: Endpoint) -> Result<Client> {
        Client::with_read_timeout(endpoint, READ_TIMEOUT)
    }

    /// A client of the server at `endpoint`, whose calls fail once the
    /// server has sent nothing for `read_timeout` (those that end a
    /// program: for at least [`ENDING_READ_TIMEOUT`]).
    pub fn with_read_timeout(endpoint: Endpoint, read_timeout: Duration) -> Result<Client> {
        let http = Client::http(&endpoint, read_timeout)?;
        let ending = Client::http(&endpoint, read_timeout.max(ENDING_READ_TIMEOUT))?;
        Ok(Client { http, ending, endpoint })
    }

    /// An HTTP client for `endpoint` (its TLS) with `read_timeout`.
    fn http(endpoint: &Endpoint, read_timeout: Duration) -> Result<reqwest::Client> {
        let mut builder = reqwest::Client::builder()
            .connect_timeout(CONNECT_TIMEOUT)
            .read_timeout(read_timeout)
            .tcp_nodelay(true);
        if let Some(tls) = &endpoint.tls {
            builder = builder.use_preconfigured_tls((**tls).clone());
        }
        builder.build().map_err(|e| Error::Tls(e.to_string()))
    }

    /// The server and credential this client uses.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    fn request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_on(&self.http, method, path)
    }

    /// A request of a call that waits for a program to end (on `ending`).
    fn ending_request(&self, method: Method, path: &str) -> RequestBuilder {
        self.request_on(&self.ending, method, path)
    }

    fn request_on(&self, http: &reqwest::Client, method: Method, path: &str) -> RequestBuilder {
        let req = http.request(method, self.endpoint.http_url(path));
        match &self.endpoint.token {
            Some(t) => req.bearer_auth(t),
            None => req,
        }
    }

    async fn send(&self, req: RequestBuilder) -> Result<Response> {
        let resp = req.send().await.map_err(|e| self.unreachable(e))?;
        let status = resp.status();
        if status.is_success() {
            return Ok(resp);
        }
        let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        Err(match serde_json::from_slice::<ErrorBody>(&body) {
            Ok(b) => Error::Api {
                status: status.as_u16(),
                detail: b.error,
            },
            // Not a termstream answer: perhaps another program on that port,
            // or a proxy in the way. Say so, with the start of what it said.
            Err(_) => {
                let said = String::from_utf8_lossy(&body[..body.len().min(200)]);
                let said = said.trim();
                Error::api(
                    status.as_u16(),
                    code_for_status(status.as_u16()),
                    format!(
                        "{} answered HTTP {status} without a termstream error (is it a termstream server?){}{said}",
                        self.endpoint.base(),
                        if said.is_empty() { "" } else { ": " },
                    ),
                )
            }
        })
    }

    async fn json<T: DeserializeOwned>(&self, req: RequestBuilder) -> Result<T> {
        let resp = self.send(req).await?;
        let body = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        serde_json::from_slice(&body).map_err(|e| Error::Protocol(e.to_string()))
    }

    fn unreachable(&self, e: reqwest::Error) -> Error {
        Error::Unreachable {
            url: self.endpoint.base().to_owned(),
            source: Box::new(e),
        }
    }

    fn session_path(id: &SessionId, tail: &str) -> String {
        format!("/api/sessions/{id}{tail}")
    }

    /// `POST /api/sessions`.
    pub async fn create_session(&self, req: &CreateSession) -> Result<SessionInfo> {
        self.json(self.request(Method::POST, "/api/sessions").json(req)).await
    }

    /// `GET /api/sessions`, newest first, optionally filtered.
    pub async fn list_sessions(&self, project: Option<&str>, status: Option<SessionStatus>) -> Result<SessionList> {
        let mut query: Vec<(&str, String)> = Vec::new();
        if let Some(p) = project {
            query.push(("project", p.to_owned()));
        }
        if let Some(s) = status {
            let s = serde_json::to_value(s).map_err(|e| Error::Protocol(e.to_string()))?;
            query.push(("status", s.as_str().unwrap_or_default().to_owned()));
        }
        self.json(self.request(Method::GET, "/api/sessions").query(&query))
            .await
    }

    /// `GET /api/sessions/{id}`.
    pub async fn session(&self, id: &SessionId) -> Result<SessionInfo> {
        self.json(self.request(Method::GET, &Self::session_path(id, ""))).await
    }

    /// `POST /api/sessions/{id}/input`; returns the bytes queued.
    pub async fn input(&self, id: &SessionId, req: &InputRequest) -> Result<u64> {
        let a: InputAnswer = self
            .json(self.request(Method::POST, &Self::session_path(id, "/input")).json(req))
            .await?;
        Ok(a.bytes)
    }

    /// `POST /api/sessions/{id}/resize`.
    pub async fn resize(&self, id: &SessionId, cols: u16, rows: u16) -> Result<SessionInfo> {
        let body = ResizeRequest { cols, rows };
        self.json(
            self.request(Method::POST, &Self::session_path(id, "/resize"))
                .json(&body),
        )
        .await
    }

    /// `POST /api/sessions/{id}/terminate`: answers when the program ended
    /// (read timeout: [`ENDING_READ_TIMEOUT`]).
    pub async fn terminate(&self, id: &SessionId) -> Result<SessionInfo> {
        self.json(self.ending_request(Method::POST, &Self::session_path(id, "/terminate")))
            .await
    }

    /// `DELETE /api/sessions/{id}`: answers once a running program ended
    /// (read timeout: [`ENDING_READ_TIMEOUT`]).
    pub async fn delete(&self, id: &SessionId) -> Result<()> {
        self.send(self.ending_request(Method::DELETE, &Self::session_path(id, "")))
            .await?;
        Ok(())
    }

    /// `GET /api/sessions/{id}/output` as raw bytes from `since`.
    pub async fn output_raw(&self, id: &SessionId, since: u64, limit: Option<usize>) -> Result<RawOutput> {
        let mut query = vec![("since", since.to_string())];
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        let resp = self
            .send(
                self.request(Method::GET, &Self::session_path(id, "/output"))
                    .query(&query),
            )
            .await?;
        let header = |name: &str| -> Result<String> {
            resp.headers()
                .get(name)
                .and_then(|v| v.to_str().ok())
                .map(str::to_owned)
                .ok_or_else(|| Error::Protocol(format!("no {name} header")))
        };
        let num = |name: &str| -> Result<u64> {
            header(name)?
                .parse()
                .map_err(|_| Error::Protocol(format!("{name} is not a number")))
        };
        let epoch = header("x-termstream-epoch")?
            .parse()
            .map_err(|_| Error::Protocol("x-termstream-epoch is not hex".into()))?;
        let (offset, next_offset, end_offset) = (
            num("x-termstream-offset")?,
            num("x-termstream-next-offset")?,
            num("x-termstream-end-offset")?,
        );
        let data = resp.bytes().await.map_err(|e| self.unreachable(e))?;
        Ok(RawOutput {
            epoch,
            offset,
            next_offset,
            end_offset,
            data,
        })
    }

    /// `GET /api/sessions/{id}/output?format=json`: chunks tagged by stream.
    pub async fn output_page(&self, id: &SessionId, since: u64, limit: Option<usize>) -> Result<OutputPage> {
        let mut query = vec![("since", since.to_string()), ("format", "json".to_owned())];
        if let Some(l) = limit {
            query.push(("limit", l.to_string()));
        }
        self.json(
            self.request(Method::GET, &Self::session_path(id, "/output"))
                .query(&query),
        )
        .await
    }

    /// `GET /api/sessions/{id}/snapshot`.
    pub async fn snapshot(&self, id: &SessionId) -> Result<Snapshot> {
        self.json(self.request(Method::GET, &Self::session_path(id, "/snapshot")))
            .await
    }

    /// `GET /api/sessions/{id}/recording.cast`: an asciicast v2 file.
    pub async fn recording(&self, id: &SessionId) -> Result<Bytes> {
        let resp = self
            .send(self.request(Method::GET, &Self::session_path(id, "/recording.cast")))
            .await?;
        resp.bytes().await.map_err(|e| self.unreachable(e))
    }

    /// `POST /api/events`: publishes `event` (an object with a `type`);
    /// returns how many sockets may receive it.
    pub async fn publish_event(&self, event: &serde_json::Map<String, serde_json::Value>) -> Result<usize> {
        let a: PublishAnswer = self.json(self.request(Method::POST, "/api/events").json(event)).await?;
        Ok(a.receivers)
    }

    /// `POST /api/ws-ticket`.
    pub async fn ws_ticket(&self) -> Result<Ticket> {
        self.json(self.request(Method::POST, "/api/ws-ticket")).await
    }

    /// `POST /api/login-codes`, with the projects to narrow it to (or the
    /// caller's whole scope).
    pub async fn login_code(&self, projects: Option<&serde_json::Value>) -> Result<LoginCode> {
        let req = self.request(Method::POST, "/api/login-codes");
        let req = match projects {
            Some(p) => req.json(&serde_json::json!({ "projects": p })),
            None => req,
        };
        self.json(req).await
    }

    /// `GET /health`.
    pub async fn health(&self) -> Result<()> {
        self.send(self.request(Method::GET, "/health")).await?;
        Ok(())
    }

    /// `GET /openapi.json`.
    pub async fn openapi(&self) -> Result<serde_json::Value> {
        self.json(self.request(Method::GET, "/openapi.json")).await
    }

    /// `POST /terminal/start` (the older API).
    pub async fn compat_start(&self, req: &compat::StartRequest) -> Result<compat::StartResponse> {
        self.json(self.request(Method::POST, "/terminal/start").json(req)).await
    }

    /// `GET /terminal/sessions` (the older API).
    pub async fn compat_sessions(&self) -> Result<compat::SessionsResponse> {
        self.json(self.request(Method::GET, "/terminal/sessions")).await
    }

    /// `GET /terminal/{id}` (the older API).
    pub async fn compat_status(&self, id: &SessionId) -> Result<compat::StatusResponse> {
        self.json(self.request(Method::GET, &format!("/terminal/{id}"))).await
    }

    /// `POST /terminal/{id}/terminate` (the older API; read timeout:
    /// [`ENDING_READ_TIMEOUT`]).
    pub async fn compat_terminate(&self, id: &SessionId) -> Result<compat::TerminateResponse> {
        self.json(self.ending_request(Method::POST, &format!("/terminal/{id}/terminate")))
            .await
    }
}
