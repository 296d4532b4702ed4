//! The per-terminal socket `/ws?sessionId=ID&projectId=P`, driven by a
//! client written from the focus-sync design's `XTermViewV2` component and
//! `TerminalContainerV2` (one socket per terminal, `sync_request` 100 ms
//! after open, a heartbeat, focus through `PUT /api/terminal/focus` with
//! the last version seen).

mod common;

use std::time::Duration;

use common::focus::strings;
use common::ws::{Incoming, WsClient};
use common::{TestServer, secs};
use futures_util::StreamExt;
use serde_json::{Value, json};
use tokio_tungstenite::tungstenite::Message;

/// The component's state, updated only by its `handleWebSocketMessage`.
struct XTermView {
    ws: WsClient,
    session_id: String,
    /// What was written to the terminal (`stream` data).
    written: String,
    connection_status: String,
    /// The container's view: what `onFocusUpdate` was last called with.
    focused_sessions: Vec<String>,
    focus_version: u64,
    heartbeats: usize,
    errors: Vec<Value>,
    /// Types the component does not know (it only warns about them).
    unknown: Vec<String>,
}

impl XTermView {
    /// `connectWebSocket`: opens the socket; `onopen` requests a sync after
    /// 100 ms.
    async fn connect(server: &TestServer, session_id: &str, project_id: &str) -> XTermView {
        let ws = WsClient::connect_raw(server, &format!("/ws?sessionId={session_id}&projectId={project_id}")).await;
        let mut view = XTermView {
            ws,
            session_id: session_id.to_owned(),
            written: String::new(),
            connection_status: "connecting".into(),
            focused_sessions: Vec::new(),
            focus_version: 0,
            heartbeats: 0,
            errors: Vec::new(),
            unknown: Vec::new(),
        };
        tokio::time::sleep(Duration::from_millis(100)).await; // setTimeout(requestSync, 100)
        view.send(json!({"type":"sync_request","sessionId":session_id,"timestamp":now()}))
            .await;
        view
    }

    async fn send(&mut self, v: Value) {
        self.ws.send(v).await;
    }

    /// The heartbeat interval's body (every 30 s in the component).
    async fn heartbeat(&mut self) {
        let id = self.session_id.clone();
        self.send(json!({"type":"heartbeat","sessionId":id,"timestamp":now()}))
            .await;
    }

    /// `handleWebSocketMessage`, case by case as in the component.
    fn handle(&mut self, message: &Value) {
        match message["type"].as_str().unwrap_or_default() {
            "stream" => self
                .written
                .push_str(message["data"].as_str().expect("stream data is text")),
            "focus_update" => {
                self.focused_sessions = strings(&message["focusedSessions"]);
                self.focus_version = message["version"].as_u64().expect("version");
            }
            "connection_status" => {
                self.connection_status = message["status"].as_str().unwrap_or_default().to_owned();
                if message["status"] == "connected" && message["focusedSessions"].is_array() {
                    self.focused_sessions = strings(&message["focusedSessions"]);
                    self.focus_version = message["version"].as_u64().unwrap_or(0);
                }
            }
            "sync_complete" => {
                self.focused_sessions = strings(&message["focusedSessions"]);
                self.focus_version = message["version"].as_u64().expect("version");
            }
            "heartbeat" => self.heartbeats += 1,
            "error" => {
                self.connection_status = "error".into();
                self.errors.push(message.clone());
            }
            other => self.unknown.push(other.to_owned()),
        }
    }

    /// Handles messages until `done` holds.
    async fn until(&mut self, what: &str, done: impl Fn(&XTermView) -> bool) {
        let deadline = tokio::time::Instant::now() + secs(15);
        while !done(self) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.ws.recv(left).await {
                Some(Incoming::Json(m)) => {
                    // focus_update names the session that changed; the
                    // others name the socket's own.
                    if m["type"] != "focus_update" {
                        assert_eq!(m["sessionId"], self.session_id.as_str(), "{m}");
                    }
                    self.handle(&m)
                }
                Some(other) => panic!("unexpected {other:?} while waiting for {what}"),
                None => panic!("timed out waiting for {what}; wrote {:?}", self.written),
            }
        }
    }
}

fn now() -> u64 {
    std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .unwrap()
        .as_millis() as u64
}

/// `TerminalContainerV2.handleTerminalFocus`.
async fn handle_terminal_focus(
    server: &TestServer,
    session: &str,
    project: &str,
    focused: bool,
    version: u64,
) -> Value {
    let body = json!({"sessionId":session,"projectId":project,"focused":focused,"expectedVersion":version});
    let (status, data) = server.request("PUT", "/api/terminal/focus", Some(&body)).await;
    assert_eq!(status, 200, "{data}");
    assert_eq!(data["success"], true);
    data
}

#[tokio::test]
async fn the_design_client_works_against_the_per_terminal_socket() {
    let server = TestServer::start().await;
    for id in ["t1", "t2"] {
        server
            .create(
                json!({"id":id,"argv":["sh","-c","echo ready-$0; exec cat", id],"project":"proj","cols":80,"rows":24}),
            )
            .await;
        server.read_output_until(id, &format!("ready-{id}"), secs(10)).await;
    }
    let mut one = XTermView::connect(&server, "t1", "proj").await;
    let mut two = XTermView::connect(&server, "t2", "proj").await;
    // connection_status first, then the screen as a stream, then the sync.
    let first = one.ws.next_json(secs(10)).await;
    assert_eq!(
        (first["type"].as_str(), first["status"].as_str()),
        (Some("connection_status"), Some("connected")),
        "{first}"
    );
    assert_eq!(
        (
            first["projectId"].as_str(),
            first["sessionId"].as_str(),
            first["maxFocused"].as_u64()
        ),
        (Some("proj"), Some("t1"), Some(4))
    );
    one.handle(&first);
    one.until("the screen", |v| v.written.contains("ready-t1")).await;
    two.until("the screen", |v| {
        v.written.contains("ready-t2") && v.connection_status == "connected"
    })
    .await;
    // The component's own messages: input as text, resize in data.
    one.send(json!({"type":"input","sessionId":"t1","data":"typed-in-t1\r","timestamp":now()}))
        .await;
    one.until("the echo", |v| v.written.contains("typed-in-t1")).await;
    one.send(json!({"type":"resize","sessionId":"t1","data":{"cols":100,"rows":30}}))
        .await;
    assert!(common::wait_until(secs(10), || async { server.info("t1").await["cols"] == 100 }).await);
    one.heartbeat().await;
    one.until("a heartbeat", |v| v.heartbeats == 1).await;
    // The container focuses t2 with the version its view holds: both
    // terminals hear of it.
    let v = one.focus_version;
    handle_terminal_focus(&server, "t2", "proj", true, v).await;
    one.until("the focus update", |x| x.focused_sessions == ["t2"]).await;
    two.until("the focus update", |x| x.focused_sessions == ["t2"]).await;
    assert_eq!((one.focus_version, two.focus_version), (v + 1, v + 1));
    // A focus message on the socket itself, without sessionId.
    one.send(json!({"type":"focus","timestamp":now()})).await;
    two.until("t1 focused", |x| x.focused_sessions == ["t2", "t1"]).await;
    assert!(
        one.errors.is_empty() && two.errors.is_empty(),
        "{:?} {:?}",
        one.errors,
        two.errors
    );
    assert!(
        one.unknown.is_empty() && two.unknown.is_empty(),
        "{:?} {:?}",
        one.unknown,
        two.unknown
    );
    // Mistakes are errors in the design's shape, and the socket carries on.
    one.send(json!({"type":"resize","data":{"cols":0,"rows":3}})).await;
    one.until("an error", |v| !v.errors.is_empty()).await;
    let e = &one.errors[0];
    assert_eq!(
        e.as_object().unwrap().keys().collect::<Vec<_>>(),
        ["data", "sessionId", "type"]
    );
    one.send(json!({"type":"input","sessionId":"t2","data":"x"})).await;
    one.until("a second error", |v| v.errors.len() == 2).await;
    one.send(json!({"type":"input","data":"still-here\r"})).await;
    one.until("the echo", |v| v.written.contains("still-here")).await;
}

/// Registration waits for a session created after the socket opened.
#[tokio::test]
async fn registration_waits_for_a_session_created_later() {
    let server = TestServer::start().await;
    let mut view = XTermView::connect(&server, "late", "default").await;
    server
        .create(json!({"id":"late","kind":"command","argv":["sh","-c","echo late-output; exec cat"]}))
        .await;
    let first = view.ws.next_json(secs(10)).await;
    assert_eq!(first["type"], "connection_status", "{first}");
    view.handle(&first);
    view.until("the output", |v| v.written.contains("late-output")).await;
}

/// A session that never appears: close 1008 with the design's reason after
/// the retries (7.71 s), not before the last one.
#[tokio::test]
async fn registration_gives_up_after_the_retries() {
    let server = TestServer::start().await;
    let started = std::time::Instant::now();
    let mut ws = WsClient::connect_raw(&server, "/ws?sessionId=never").await;
    let frame = loop {
        match tokio::time::timeout(secs(30), ws.inner().next()).await {
            Ok(Some(Ok(Message::Close(frame)))) => break frame.expect("a close frame"),
            Ok(Some(Ok(_))) => continue,
            other => panic!("expected a close, got {other:?}"),
        }
    };
    assert_eq!(u16::from(frame.code), 1008);
    assert_eq!(frame.reason.as_str(), "Session registration failed after retries");
    assert!(
        started.elapsed() >= Duration::from_millis(7000),
        "{:?}",
        started.elapsed()
    );
    // A bad id is refused before the upgrade.
    let status = WsClient::refused_status(&server, "/ws?sessionId=bad%20id", &[]).await;
    assert_eq!(status, 400);
}
