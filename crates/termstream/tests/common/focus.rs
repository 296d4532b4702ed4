//! A focus observer: a `/ws` client that follows one project's focus and
//! checks, message by message, that it sees every version in order.

use std::time::Duration;

use serde_json::{Value, json};

use super::TestServer;
use super::ws::{Incoming, WsClient};

/// What one socket saw of a project's focus.
pub struct FocusView {
    pub ws: WsClient,
    pub project: String,
    /// The version of `connection_status`.
    pub first: u64,
    /// The last version the socket was told (by any message).
    pub version: u64,
    /// The set of the last message.
    pub focused: Vec<String>,
    /// Every `focus_update`, in order.
    pub updates: Vec<Value>,
    /// State messages after the first that moved the version on (an
    /// update skipped): the server promises none unless a socket lags.
    pub jumps: usize,
}

impl FocusView {
    /// Connects to `/ws` (with `headers`) and touches `project` with a
    /// `sync_request`; reads `connection_status` and `sync_complete`.
    pub async fn open(server: &TestServer, project: &str, headers: &[(&str, &str)]) -> FocusView {
        let (ws, _) = WsClient::try_connect(server, "/ws", headers).await.expect("connect");
        let mut v = FocusView {
            ws,
            project: project.to_owned(),
            first: 0,
            version: 0,
            focused: Vec::new(),
            updates: Vec::new(),
            jumps: 0,
        };
        assert_eq!(v.ws.next_json(Duration::from_secs(10)).await["type"], "connected");
        v.ws.send(json!({"type":"sync_request","projectId":project})).await;
        let status = v.ws.next_json(Duration::from_secs(10)).await;
        assert_eq!(status["type"], "connection_status", "{status}");
        assert_eq!(status["status"], "connected");
        v.take_state(&status);
        v.first = v.version;
        // Other clients' changes may come before the `sync_complete`: each
        // is observed (one skipped here would count as a gap).
        v.until_type("sync_complete", Duration::from_secs(10)).await;
        v
    }

    fn take_state(&mut self, m: &Value) {
        assert_eq!(m["projectId"], self.project.as_str(), "{m}");
        let version = m["version"].as_u64().expect("version");
        assert!(version >= self.version, "a state went back: {m} after {}", self.version);
        if version > self.version && m["type"] == "sync_complete" {
            self.jumps += 1;
        }
        self.version = version;
        self.focused = strings(&m["focusedSessions"]);
    }

    /// Handles one focus message; panics on a `focus_update` that is not
    /// the next version, or one of another project. Returns the message.
    pub fn observe(&mut self, m: Value) -> Value {
        match m["type"].as_str() {
            Some("focus_update") => {
                assert_eq!(m["projectId"], self.project.as_str(), "another project's update: {m}");
                let v = m["version"].as_u64().expect("version");
                assert_eq!(v, self.version + 1, "an update out of order or after a gap: {m}");
                assert_eq!(
                    m["totalFocused"].as_u64(),
                    Some(strings(&m["focusedSessions"]).len() as u64)
                );
                self.version = v;
                self.focused = strings(&m["focusedSessions"]);
                self.updates.push(m.clone());
            }
            Some("sync_complete") | Some("connection_status") => self.take_state(&m),
            _ => {}
        }
        m
    }

    /// Reads messages until the socket has seen `version`.
    pub async fn until_version(&mut self, version: u64, timeout: Duration) {
        let deadline = tokio::time::Instant::now() + timeout;
        while self.version < version {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.ws.recv(left).await {
                Some(Incoming::Json(m)) => {
                    self.observe(m);
                }
                Some(Incoming::Closed(c)) => panic!("closed ({c:?}) at version {}", self.version),
                Some(_) => {}
                None => panic!("stuck at version {} waiting for {version}", self.version),
            }
        }
    }

    /// The next message of type `ty`, observing everything before it.
    pub async fn until_type(&mut self, ty: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.ws.recv(left).await {
                Some(Incoming::Json(m)) => {
                    let m = self.observe(m);
                    if m["type"] == ty {
                        return m;
                    }
                }
                Some(Incoming::Closed(c)) => panic!("closed ({c:?}) waiting for {ty}"),
                Some(_) => {}
                None => panic!("no {ty} within {timeout:?}"),
            }
        }
    }

    /// Asserts nothing arrives within `quiet`.
    pub async fn assert_silent(&mut self, quiet: Duration) {
        if let Some(m) = self.ws.recv(quiet).await {
            panic!("expected nothing, got {m:?}");
        }
    }
}

/// A JSON array of strings.
pub fn strings(v: &Value) -> Vec<String> {
    v.as_array()
        .map(|a| a.iter().filter_map(|s| s.as_str().map(str::to_owned)).collect())
        .unwrap_or_default()
}

/// Focuses (`true`) or blurs session `id` over REST; wants 200.
pub async fn focus(server: &TestServer, id: &str, focused: bool) {
    let (status, body) = server
        .request(
            "PUT",
            "/api/terminal/focus",
            Some(&json!({"sessionId":id,"focused":focused})),
        )
        .await;
    assert_eq!(status, 200, "{body}");
}
