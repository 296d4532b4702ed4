//! A WebSocket test client that speaks termstream's `/ws` protocol.
//!
//! [`WsClient`] wraps a tokio-tungstenite connection: it sends JSON
//! messages, receives text (parsed), binary output frames (decoded) and
//! closes, each with a timeout, and collects a session's output by offset,
//! checking that every frame starts where the previous one ended.
//! [`until_type_on`] waits for a message on any other socket (one opened
//! through a proxy).

use std::time::Duration;

use futures_util::{SinkExt, StreamExt};
use serde_json::{Value, json};
use termstream_proto::ws::binary;
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

use super::TestServer;

/// Reads the text messages of `ws`, a socket that is not a [`WsClient`]
/// (one through a proxy), until one of type `ty`, within `timeout`; that
/// message and the text messages before it.
pub async fn until_type_on<S>(ws: &mut S, ty: &str, timeout: Duration) -> (Value, Vec<Value>)
where
    S: futures_util::Stream<Item = Result<Message, tokio_tungstenite::tungstenite::Error>> + Unpin,
{
    let deadline = tokio::time::Instant::now() + timeout;
    let mut before = Vec::new();
    loop {
        let msg = tokio::time::timeout_at(deadline, ws.next())
            .await
            .unwrap_or_else(|_| panic!("no {ty} within {timeout:?}"))
            .expect("socket open")
            .expect("message");
        if let Message::Text(t) = msg {
            let v: Value = serde_json::from_str(&t).unwrap();
            if v["type"] == ty {
                return (v, before);
            }
            before.push(v);
        }
    }
}

type Handshake = (
    WebSocketStream<MaybeTlsStream<TcpStream>>,
    tokio_tungstenite::tungstenite::handshake::client::Response,
);

/// Opens a socket to `server`, over TLS trusting its certificate when it
/// serves TLS.
async fn connect(
    server: &TestServer,
    req: impl tokio_tungstenite::tungstenite::client::IntoClientRequest + Unpin,
) -> Result<Handshake, tokio_tungstenite::tungstenite::Error> {
    let connector = server
        .cert()
        .map(|c| tokio_tungstenite::Connector::Rustls(c.rustls_client()));
    tokio_tungstenite::connect_async_tls_with_config(req, None, false, connector).await
}

/// What arrived on the socket.
#[derive(Debug)]
pub enum Incoming {
    Json(Value),
    /// A binary output frame: session, stream tag, offset, bytes.
    Output {
        session: String,
        stream: u8,
        offset: u64,
        data: Vec<u8>,
    },
    Closed(Option<u16>),
}

pub struct WsClient {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
    /// The client id the server gave (or accepted).
    pub client_id: String,
}

impl WsClient {
    /// Connects to `path` (e.g. `/ws` or `/ws?clientId=x`) and reads the
    /// `connected` message.
    pub async fn connect(server: &TestServer, path: &str) -> WsClient {
        let mut c = WsClient::connect_raw(server, path).await;
        let hello = c.next_json(Duration::from_secs(10)).await;
        assert_eq!(hello["type"], "connected", "{hello}");
        c.client_id = hello["clientId"].as_str().unwrap_or_default().to_owned();
        c
    }

    /// Connects without reading anything.
    pub async fn connect_raw(server: &TestServer, path: &str) -> WsClient {
        let (ws, _) = connect(server, server.ws_url(path)).await.expect("websocket connect");
        WsClient {
            ws,
            client_id: String::new(),
        }
    }

    /// Connects without reading anything, over a TCP socket whose receive
    /// buffer is `rcvbuf` bytes: a client that does not read holds the
    /// server's output in the server, not in its own kernel (plain
    /// servers only).
    #[allow(dead_code)]
    pub async fn connect_narrow(server: &TestServer, path: &str, rcvbuf: u32) -> WsClient {
        let socket = tokio::net::TcpSocket::new_v4().expect("tcp socket");
        socket.set_recv_buffer_size(rcvbuf).expect("SO_RCVBUF");
        let addr = server.addr().parse().expect("server address");
        let tcp = socket.connect(addr).await.expect("tcp connect");
        let (ws, _) = tokio_tungstenite::client_async_tls_with_config(server.ws_url(path), tcp, None, None)
            .await
            .expect("websocket connect");
        WsClient {
            ws,
            client_id: String::new(),
        }
    }

    /// Connects to `path` with extra request headers, without reading
    /// anything; the handshake's error (e.g. an HTTP 401) is returned.
    pub async fn try_connect(
        server: &TestServer,
        path: &str,
        headers: &[(&str, &str)],
    ) -> Result<
        (WsClient, tokio_tungstenite::tungstenite::handshake::client::Response),
        tokio_tungstenite::tungstenite::Error,
    > {
        use tokio_tungstenite::tungstenite::client::IntoClientRequest;
        let mut req = server.ws_url(path).into_client_request().expect("request");
        for (k, v) in headers {
            req.headers_mut().insert(
                tokio_tungstenite::tungstenite::http::HeaderName::from_bytes(k.as_bytes()).expect("header name"),
                v.parse().expect("header value"),
            );
        }
        let (ws, resp) = connect(server, req).await?;
        Ok((
            WsClient {
                ws,
                client_id: String::new(),
            },
            resp,
        ))
    }

    /// The HTTP status a refused handshake was answered with.
    pub async fn refused_status(server: &TestServer, path: &str, headers: &[(&str, &str)]) -> u16 {
        match WsClient::try_connect(server, path, headers).await {
            Ok(_) => panic!("the upgrade of {path} with {headers:?} was accepted"),
            Err(tokio_tungstenite::tungstenite::Error::Http(resp)) => resp.status().as_u16(),
            Err(e) => panic!("the upgrade of {path} failed without an HTTP answer: {e}"),
        }
    }

    pub async fn send(&mut self, v: Value) {
        self.ws.send(Message::Text(v.to_string().into())).await.expect("send");
    }

    /// Sends `v`; `false` once the socket is gone.
    pub async fn try_send(&mut self, v: Value) -> bool {
        self.ws.send(Message::Text(v.to_string().into())).await.is_ok()
    }

    pub async fn send_raw(&mut self, msg: Message) {
        self.ws.send(msg).await.expect("send");
    }

    /// The next message, or `None` after `timeout`.
    pub async fn recv(&mut self, timeout: Duration) -> Option<Incoming> {
        // One deadline for the call: pings skipped below must not restart it.
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => return None,
                Ok(None) | Ok(Some(Err(_))) => return Some(Incoming::Closed(None)),
                Ok(Some(Ok(m))) => m,
            };
            return Some(match msg {
                Message::Text(t) => Incoming::Json(serde_json::from_str(&t).expect("server sends JSON")),
                Message::Binary(b) => {
                    let f = binary::decode(&b).expect("a binary output frame");
                    Incoming::Output {
                        session: f.session_id.to_owned(),
                        stream: f.stream.tag(),
                        offset: f.offset,
                        data: f.data.to_vec(),
                    }
                }
                Message::Close(frame) => Incoming::Closed(frame.map(|f| u16::from(f.code))),
                // The library queues the pong; send it now, as a browser would.
                Message::Ping(_) => {
                    let _ = self.ws.flush().await;
                    continue;
                }
                _ => continue,
            });
        }
    }

    /// The next JSON message; panics on anything else or a timeout.
    pub async fn next_json(&mut self, timeout: Duration) -> Value {
        match self.recv(timeout).await {
            Some(Incoming::Json(v)) => v,
            other => panic!("expected a JSON message, got {other:?}"),
        }
    }

    /// Skips messages until one of type `ty` arrives.
    pub async fn until_type(&mut self, ty: &str, timeout: Duration) -> Value {
        let deadline = tokio::time::Instant::now() + timeout;
        loop {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            match self.recv(left).await {
                Some(Incoming::Json(v)) if v["type"] == ty => return v,
                Some(Incoming::Closed(c)) => panic!("closed ({c:?}) while waiting for {ty}"),
                None => panic!("no {ty} within {timeout:?}"),
                _ => {}
            }
        }
    }

    pub async fn attach(&mut self, id: &str, output: &str) {
        self.send(json!({"type":"session.attach","sessionId":id,"output":output}))
            .await;
    }

    /// Collects output of every session until each of `ids` sent
    /// `session.exit` (or `stop` returns true). Checks per session that each
    /// frame starts where the last ended; returns bytes per session, in the
    /// order of `ids`.
    pub async fn collect_until_exit(&mut self, ids: &[&str], timeout: Duration) -> Vec<Collected> {
        let mut got: Vec<Collected> = ids.iter().map(|_| Collected::default()).collect();
        let deadline = tokio::time::Instant::now() + timeout;
        while got.iter().any(|c| c.exit.is_none()) {
            let left = deadline.saturating_duration_since(tokio::time::Instant::now());
            let Some(msg) = self.recv(left).await else {
                panic!(
                    "timed out; got {:?}",
                    got.iter().map(|c| (c.data.len(), c.exit.is_some())).collect::<Vec<_>>()
                );
            };
            let (session, offset, data, stream) = match msg {
                Incoming::Output {
                    session,
                    offset,
                    data,
                    stream,
                } => (session, offset, data, stream),
                Incoming::Json(v) if v["type"] == "terminal.output" => {
                    let stream = match v["stream"].as_str() {
                        Some("stderr") => 2,
                        Some("stdout") => 1,
                        _ => 0,
                    };
                    let s = v["sessionId"].as_str().unwrap_or_default().to_owned();
                    (
                        s,
                        v["offset"].as_u64().expect("offset"),
                        v["data"].as_str().unwrap_or_default().as_bytes().to_vec(),
                        stream,
                    )
                }
                // The project's focus messages are not the session's.
                Incoming::Json(v)
                    if matches!(
                        v["type"].as_str(),
                        Some("connection_status" | "focus_update" | "sync_complete")
                    ) =>
                {
                    continue;
                }
                Incoming::Json(v) => {
                    let s = v["sessionId"].as_str().unwrap_or_default();
                    if let Some(i) = ids.iter().position(|id| *id == s) {
                        match v["type"].as_str() {
                            Some("session.exit") => got[i].exit = Some(v.clone()),
                            Some("session.attached") => got[i].next = v["offset"].as_u64(),
                            _ => {}
                        }
                        got[i].messages.push(v);
                    }
                    continue;
                }
                Incoming::Closed(c) => panic!("socket closed ({c:?})"),
            };
            let i = ids
                .iter()
                .position(|id| *id == session)
                .unwrap_or_else(|| panic!("output of {session}, not attached"));
            let c = &mut got[i];
            if let Some(next) = c.next {
                assert_eq!(offset, next, "output of {session} must start where the last ended");
            }
            c.next = Some(offset + data.len() as u64);
            c.streams.push((stream, data.len()));
            c.data.extend_from_slice(&data);
        }
        got
    }

    pub async fn close(mut self) {
        let _ = self.ws.close(None).await;
    }

    /// The JSON messages until the server closes the socket, and its close
    /// frame's code and reason (`None`: the connection ended without one);
    /// panics if it is still open after `timeout`.
    pub async fn until_closed(&mut self, timeout: Duration) -> (Vec<Value>, Option<(u16, String)>) {
        let deadline = tokio::time::Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let msg = match tokio::time::timeout_at(deadline, self.ws.next()).await {
                Err(_) => panic!("the socket is still open after {timeout:?}; it sent {seen:?}"),
                Ok(None) | Ok(Some(Err(_))) => return (seen, None),
                Ok(Some(Ok(m))) => m,
            };
            match msg {
                Message::Text(t) => seen.push(serde_json::from_str(&t).expect("server sends JSON")),
                Message::Close(frame) => return (seen, frame.map(|f| (u16::from(f.code), f.reason.to_string()))),
                _ => {}
            }
        }
    }

    /// Reads a replay until `later` is in its output, and asserts that it
    /// carries one `session.resized` to `cols`×`rows`, at its place: after
    /// the output holding `earlier`, before the one holding `later`.
    pub async fn assert_resize_between(
        &mut self,
        earlier: &str,
        later: &str,
        (cols, rows): (u64, u64),
        timeout: Duration,
    ) {
        let (mut text, mut resized_after) = (String::new(), None);
        while !text.contains(later) {
            match self.recv(timeout).await {
                Some(Incoming::Output { data, .. }) => text.push_str(&String::from_utf8_lossy(&data)),
                Some(Incoming::Json(m)) if m["type"] == "session.resized" => {
                    assert_eq!(
                        (m["cols"].as_u64(), m["rows"].as_u64()),
                        (Some(cols), Some(rows)),
                        "{m}"
                    );
                    assert!(resized_after.is_none(), "the resize came twice: {text:?}");
                    resized_after = Some(text.clone());
                }
                Some(Incoming::Json(_)) => {}
                other => panic!("the replay ended before {later} ({other:?}): {text:?}"),
            }
        }
        let before = resized_after.unwrap_or_else(|| panic!("no session.resized in the replay: {text:?}"));
        assert!(
            before.contains(earlier),
            "the resize came before the output from before it: {before:?}"
        );
        assert!(
            !before.contains(later),
            "the resize came after the output drawn at the new size: {before:?}"
        );
    }

    pub fn inner(&mut self) -> &mut WebSocketStream<MaybeTlsStream<TcpStream>> {
        &mut self.ws
    }

    /// Types `word` into `id` (a `cat`) on `server` and waits for its echo
    /// on this socket: it is still attached. A `session.detached` or an
    /// error first fails the test; `what` names the attempt in the message.
    pub async fn echoes(&mut self, server: &TestServer, id: &str, word: &str, what: &str) {
        server.input(id, &format!("{word}\n")).await;
        loop {
            match self.recv(super::secs(10)).await {
                Some(Incoming::Json(v)) if v["type"] == "terminal.output" => {
                    if v["data"].as_str().is_some_and(|d| d.contains(word)) {
                        break;
                    }
                }
                Some(Incoming::Json(v)) if v["type"] == "session.detached" || v["type"] == "error" => {
                    panic!("{what}: the new attachment ended: {v}")
                }
                Some(Incoming::Json(_)) => {}
                other => panic!("{what}: no echo of {word}: {other:?}"),
            }
        }
    }
}

/// What [`WsClient::collect_until_exit`] gathered for one session.
#[derive(Debug, Default)]
pub struct Collected {
    pub data: Vec<u8>,
    /// The offset after the last byte received.
    pub next: Option<u64>,
    /// (stream tag, bytes) per frame.
    pub streams: Vec<(u8, usize)>,
    /// The session's other messages, in order.
    pub messages: Vec<Value>,
    pub exit: Option<Value>,
}
