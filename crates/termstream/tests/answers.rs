//! Answers stay inside the documented shapes: requests axum itself would
//! refuse in plain text get the JSON error body and a fitting status, and a
//! socket that receives a frame it cannot take is closed with the code that
//! says why (1009 too large, 1007 not UTF-8, 1002 a protocol error).
//!
//! The frames a well-behaved client library refuses to send (text that is
//! not UTF-8, an unmasked frame) are written by hand on a raw TCP socket.

mod common;

use common::ws::{Incoming, WsClient};
use common::{TestServer, secs};
use futures_util::SinkExt;
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;

/// Sends `GET path` (as a WebSocket upgrade when `upgrade`) and returns the
/// status and the body parsed as JSON (`Null` when it is not JSON).
async fn get(server: &TestServer, path: &str, upgrade: bool) -> (u16, Value) {
    let mut req = server.client.get(server.url(path));
    if upgrade {
        req = req
            .header("connection", "Upgrade")
            .header("upgrade", "websocket")
            .header("sec-websocket-version", "13")
            .header("sec-websocket-key", "dGhlIHNhbXBsZSBub25jZQ==");
    }
    let resp = req.send().await.unwrap();
    let status = resp.status().as_u16();
    let text = resp.text().await.unwrap();
    (status, serde_json::from_str(&text).unwrap_or(Value::Null))
}

#[tokio::test]
async fn refusals_of_paths_queries_and_upgrades_are_json_errors() {
    let server = TestServer::start().await;
    #[rustfmt::skip]
    let table: &[(&str, bool, u16, &str)] = &[
        // A path segment that is not UTF-8 once decoded.
        ("/api/sessions/%ff%fe", false, 400, "bad_request"),
        ("/api/sessions/%ff%fe/output", false, 400, "bad_request"),
        ("/terminal/%ff%fe", false, 400, "bad_request"),
        ("/ws/terminal/%ff%fe", true, 400, "bad_request"),
        // A query parameter given twice.
        ("/ws?clientId=x&clientId=y", true, 400, "bad_request"),
        ("/api/sessions?status=running&status=exited", false, 400, "bad_request"),
        // A WebSocket endpoint asked without an upgrade.
        ("/ws", false, 426, "upgrade_required"),
        ("/ws/terminal/all", false, 426, "upgrade_required"),
        ("/ws/terminal/abc", false, 426, "upgrade_required"),
    ];
    for (path, upgrade, status, code) in table {
        let (got, body) = get(&server, path, *upgrade).await;
        assert_eq!(got, *status, "GET {path} (upgrade: {upgrade}) answered {got} {body}");
        assert_eq!(body["error"]["code"], *code, "GET {path}: {body}");
        assert!(
            body["error"]["message"].as_str().is_some_and(|m| !m.is_empty()),
            "{body}"
        );
    }
    // 405 has its documented code too.
    let resp = server.client.delete(server.url("/ws")).send().await.unwrap();
    assert_eq!(resp.status().as_u16(), 405);
    let body: Value = resp.json().await.unwrap();
    assert_eq!(body["error"]["code"], "method_not_allowed", "{body}");
    // And the server carries on.
    assert_eq!(server.get("/health").await.0.as_u16(), 200);
}

#[tokio::test]
async fn a_binary_message_over_the_limit_closes_1009() {
    let server = TestServer::start().await;
    let mut c = WsClient::connect(&server, "/ws").await;
    // Over ws_max_message_bytes (1 MiB), under the socket's hard limit (2 MiB).
    c.send_raw(Message::Binary(vec![0u8; 1536 * 1024].into())).await;
    loop {
        match c.recv(secs(10)).await {
            Some(Incoming::Closed(code)) => {
                assert_eq!(code, Some(1009));
                break;
            }
            Some(Incoming::Json(v)) => assert_ne!(v["type"], "error", "answered {v} instead of closing"),
            other => panic!("no close frame: {other:?}"),
        }
    }
}

#[tokio::test]
async fn terminal_restore_is_not_a_client_message() {
    let server = TestServer::start().await;
    let mut c = WsClient::connect(&server, "/ws").await;
    c.send(json!({"type": "terminal_restore", "sessionName": "x", "data": ""}))
        .await;
    let err = c.until_type("error", secs(10)).await;
    assert_eq!(err["code"], "unknown_type", "{err}");
    // It did not switch the socket to flat names (which add sessionName).
    c.send(json!({"type": "session.detach", "sessionId": "nope"})).await;
    let err = c.until_type("error", secs(10)).await;
    assert_eq!(err["code"], "not_attached", "{err}");
    assert!(err.get("sessionName").is_none(), "answered in the flat dialect: {err}");
}

#[tokio::test]
async fn wrong_kind_is_explained_without_debug_text() {
    let server = TestServer::start().await;
    server
        .create(json!({"id": "cmd", "kind": "command", "argv": ["sleep", "100"]}))
        .await;
    let (status, body) = server
        .post("/api/sessions/cmd/resize", json!({"cols": 80, "rows": 24}))
        .await;
    assert_eq!(status.as_u16(), 422, "{body}");
    assert_eq!(body["error"]["code"], "wrong_kind");
    let message = body["error"]["message"].as_str().unwrap();
    assert!(message.contains("a command session"), "{message}");
    assert!(!message.contains("Command"), "Debug text in {message:?}");
}

/// A WebSocket handshake on a raw TCP socket; returns the socket after the
/// server's `connected` message.
async fn raw_socket(server: &TestServer) -> TcpStream {
    let mut tcp = TcpStream::connect(server.addr()).await.unwrap();
    let req = format!(
        "GET /ws HTTP/1.1\r\nHost: {}\r\nConnection: Upgrade\r\nUpgrade: websocket\r\n\
         Sec-WebSocket-Version: 13\r\nSec-WebSocket-Key: dGhlIHNhbXBsZSBub25jZQ==\r\n\r\n",
        server.addr()
    );
    tcp.write_all(req.as_bytes()).await.unwrap();
    let mut head = Vec::new();
    while !head.ends_with(b"\r\n\r\n") {
        let mut b = [0u8; 1];
        assert_eq!(tcp.read(&mut b).await.unwrap(), 1, "closed during the handshake");
        head.push(b[0]);
    }
    assert!(head.starts_with(b"HTTP/1.1 101"), "{}", String::from_utf8_lossy(&head));
    let (op, _) = read_frame(&mut tcp).await.expect("the connected message");
    assert_eq!(op, 1);
    tcp
}

/// Reads one frame the server sent: its opcode and payload; `None` at the
/// end of the stream.
async fn read_frame(tcp: &mut TcpStream) -> Option<(u8, Vec<u8>)> {
    let read = async {
        let mut h = [0u8; 2];
        tcp.read_exact(&mut h).await.ok()?;
        let len = match h[1] & 0x7f {
            126 => tcp.read_u16().await.ok()? as usize,
            127 => tcp.read_u64().await.ok()? as usize,
            n => n as usize,
        };
        let mut payload = vec![0u8; len];
        tcp.read_exact(&mut payload).await.ok()?;
        Some((h[0] & 0x0f, payload))
    };
    tokio::time::timeout(secs(10), read)
        .await
        .expect("the server sent nothing")
}

/// Writes a frame with `first` as its first byte (FIN, RSV, opcode), masked
/// unless `unmasked`.
async fn write_frame(tcp: &mut TcpStream, first: u8, payload: &[u8], unmasked: bool) {
    let mut f = vec![first];
    let mask = [0x11u8, 0x22, 0x33, 0x44];
    assert!(payload.len() < 126);
    if unmasked {
        f.push(payload.len() as u8);
        f.extend_from_slice(payload);
    } else {
        f.push(0x80 | payload.len() as u8);
        f.extend_from_slice(&mask);
        f.extend(payload.iter().enumerate().map(|(i, b)| b ^ mask[i % 4]));
    }
    tcp.write_all(&f).await.unwrap();
}

/// The close code of the first close frame the server sends.
async fn close_code(tcp: &mut TcpStream) -> Option<u16> {
    while let Some((op, payload)) = read_frame(tcp).await {
        if op == 8 {
            return (payload.len() >= 2).then(|| u16::from_be_bytes([payload[0], payload[1]]));
        }
    }
    panic!("the stream ended without a close frame");
}

#[tokio::test]
async fn text_that_is_not_utf8_closes_1007() {
    let server = TestServer::start().await;
    let mut tcp = raw_socket(&server).await;
    write_frame(&mut tcp, 0x81, b"{\"type\":\"\xff\xfe\"}", false).await;
    assert_eq!(close_code(&mut tcp).await, Some(1007));
}

#[tokio::test]
async fn protocol_errors_close_1002() {
    let server = TestServer::start().await;
    // An unmasked frame from a client.
    let mut tcp = raw_socket(&server).await;
    write_frame(&mut tcp, 0x81, b"{\"type\":\"ping\"}", true).await;
    assert_eq!(close_code(&mut tcp).await, Some(1002));
    // A reserved bit no extension was agreed for.
    let mut tcp = raw_socket(&server).await;
    write_frame(&mut tcp, 0xC1, b"{\"type\":\"ping\"}", false).await;
    assert_eq!(close_code(&mut tcp).await, Some(1002));
    // The server carries on.
    let mut c = WsClient::connect(&server, "/ws").await;
    c.inner().send(Message::text(r#"{"type":"ping"}"#)).await.unwrap();
    assert_eq!(c.until_type("pong", secs(10)).await["type"], "pong");
}
