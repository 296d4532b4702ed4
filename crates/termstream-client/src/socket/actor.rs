//! The task behind a [`Connection`](super::Connection): connects, follows
//! the socket, and on a drop waits its backoff and connects again with the
//! same client id, re-attaching every tracked session and resending
//! unacknowledged input with its original `seq`. What the server sends is
//! handled in `actor/incoming.rs`.

mod incoming;

use std::time::{Duration, Instant};

use futures_util::stream::SplitSink;
use futures_util::{SinkExt, StreamExt};
use termstream_proto::ws::{ClientMessage, LogPosition, OutputMode, ServerMessage, StreamMode};
use termstream_proto::{ErrorBody, SessionId};
use tokio::net::TcpStream;
use tokio::sync::{mpsc, oneshot};
use tokio_tungstenite::tungstenite::client::IntoClientRequest;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::tungstenite::{self, Message};
use tokio_tungstenite::{Connector, MaybeTlsStream, WebSocketStream};

use super::tracked::{PendingInput, Sessions};
use super::{Command, ConnectFailure, ConnectOptions, Event, SocketAuth};
use crate::backoff::Backoff;
use crate::error::Error;
use crate::rest::Client;

type Ws = WebSocketStream<MaybeTlsStream<TcpStream>>;

/// Unacknowledged input held before the task stops taking more.
const MAX_PENDING_INPUT: usize = 1 << 20;
/// The longest the server may take to say `connected`.
const HELLO_WAIT: Duration = Duration::from_secs(10);
/// The longest a close waits to write what was queued, and the close
/// frame, to a server that does not read.
const CLOSE_WAIT: Duration = Duration::from_secs(2);
/// The largest message accepted from the server (snapshots can be large).
const MAX_MESSAGE: usize = 64 << 20;

/// Why a connect attempt failed.
enum ConnectError {
    /// Worth another try later.
    Retry(String),
    /// Will not work by retrying (the credential was refused).
    Fatal(ConnectFailure),
}

/// How a connected stretch ended.
enum End {
    /// The user closed the connection, or stopped listening.
    Closed,
    /// The socket dropped; connect again.
    Dropped(String),
}

/// The task's state across reconnects.
struct State {
    client: Client,
    options: ConnectOptions,
    /// From the handles; bounded.
    commands: mpsc::Receiver<Command>,
    /// Close requests from the handles, read even while `commands` is not;
    /// closed when every handle is gone.
    closes: mpsc::Receiver<oneshot::Sender<()>>,
    /// The close request being carried out: dropped, which answers it,
    /// when the task ends.
    closing: Option<oneshot::Sender<()>>,
    /// To the user; bounded (a slow user pauses the socket's reading).
    events: mpsc::Sender<Event>,
    sessions: Sessions,
    pending: PendingInput,
    /// The server-given client id, kept so resent input is recognised.
    client_id: Option<String>,
    /// Whether the current connection delivered output (it worked).
    progress: bool,
}

pub(super) async fn run(
    client: Client,
    options: ConnectOptions,
    commands: mpsc::Receiver<Command>,
    closes: mpsc::Receiver<oneshot::Sender<()>>,
    events: mpsc::Sender<Event>,
) {
    let mut backoff = Backoff::new(options.backoff);
    let mut st = State {
        client,
        options,
        commands,
        closes,
        closing: None,
        events,
        sessions: Sessions::default(),
        pending: PendingInput::default(),
        client_id: None,
        progress: false,
    };
    let mut reconnect = false;
    loop {
        // A server that hangs (stopped) answers neither the connect nor the
        // upgrade: a close is heard meanwhile.
        let attempt = tokio::select! {
            attempt = connect(&st.client, &st.options, st.client_id.as_deref()) => attempt,
            done = st.closes.recv() => {
                st.closing = done;
                return;
            }
        };
        let error = match attempt {
            Ok(ws) => {
                let started = Instant::now();
                st.progress = false;
                match st.connected(ws, reconnect).await {
                    End::Closed => return,
                    End::Dropped(e) => {
                        backoff.connection_ended(started.elapsed(), st.progress);
                        reconnect = true;
                        e
                    }
                }
            }
            Err(ConnectError::Fatal(error)) => {
                st.emit(Event::Failed { error }).await;
                return;
            }
            Err(ConnectError::Retry(e)) => e,
        };
        let attempt = backoff.attempt() + 1;
        let retry_in = backoff.next_delay();
        tracing::debug!(%error, attempt, ?retry_in, "termstream socket dropped");
        if !st
            .emit(Event::Disconnected {
                error,
                attempt,
                retry_in,
            })
            .await
            || !st.wait(retry_in).await
        {
            return;
        }
    }
}

impl State {
    /// Sends an event; false when the user no longer listens, or closed
    /// the connection while it waited.
    async fn emit(&mut self, e: Event) -> bool {
        tokio::select! {
            sent = self.events.send(e) => sent.is_ok(),
            done = self.closes.recv() => {
                self.closing = done;
                false
            }
        }
    }

    /// Waits `delay` while disconnected, taking commands (they apply on the
    /// next connect). False when the user closed the connection.
    async fn wait(&mut self, delay: Duration) -> bool {
        let until = tokio::time::sleep(delay);
        tokio::pin!(until);
        loop {
            tokio::select! {
                _ = &mut until => return true,
                done = self.closes.recv() => {
                    self.closing = done;
                    return false;
                }
                cmd = self.commands.recv(), if self.pending.bytes() < MAX_PENDING_INPUT => match cmd {
                    None => return false,
                    Some(Command::Attach { session_id, since, resume }) => self.sessions.attach(session_id, since, resume),
                    Some(Command::Detach { session_id }) => self.sessions.forget(&session_id),
                    Some(Command::Input { session_id, data, seq }) => {
                        self.pending.push(seq, session_id, data);
                    }
                    // A size is the user's to send again on `Connected`.
                    Some(Command::Resize { .. }) => {}
                },
            }
        }
    }

    /// Follows one connected socket until it drops or the user closes it.
    async fn connected(&mut self, ws: Ws, reconnect: bool) -> End {
        let (mut sink, mut stream) = ws.split();
        // The first message is `connected`, with the client id to keep.
        let hello = tokio::select! {
            hello = tokio::time::timeout(HELLO_WAIT, stream.next()) => hello,
            done = self.closes.recv() => {
                self.closing = done;
                return self.finish(&mut sink).await;
            }
        };
        let client_id = match hello {
            Ok(Some(Ok(Message::Text(t)))) => match serde_json::from_str::<ServerMessage>(&t) {
                Ok(ServerMessage::Connected { client_id, .. }) => client_id,
                _ => return End::Dropped(format!("the server did not greet with `connected`: {t}")),
            },
            Ok(other) => return End::Dropped(format!("no greeting from the server: {other:?}")),
            Err(_) => return End::Dropped("the server did not greet within 10 s".into()),
        };
        self.client_id = Some(client_id.clone());
        // Closed while the user was handed `Connected`: what may not have
        // arrived, and what was queued, still goes out before the close.
        let closed = !self.emit(Event::Connected { client_id, reconnect }).await;
        if closed && self.closing.is_none() {
            return End::Closed;
        }
        // Re-attach, then resend what may not have arrived, then ask for
        // the acknowledgement of it.
        let mut out: Vec<ClientMessage> = self
            .sessions
            .reattach_list()
            .into_iter()
            .map(|(session_id, since)| attach_message(session_id, since))
            .collect();
        for (seq, session_id, data) in self.pending.resend() {
            out.push(ClientMessage::Input {
                session_id,
                data,
                seq: Some(seq),
                response: false,
            });
        }
        if self.pending.ping_sent() {
            out.push(ClientMessage::Ping);
        }
        for m in out {
            if let Err(e) = sink.feed(json(&m)).await {
                return End::Dropped(e.to_string());
            }
        }
        if let Err(e) = sink.flush().await {
            return End::Dropped(e.to_string());
        }
        if closed {
            return self.finish(&mut sink).await;
        }

        let interval = self.options.ping_interval;
        let mut ticker = tokio::time::interval_at(tokio::time::Instant::now() + interval, interval);
        let mut last_heard = Instant::now();
        loop {
            let outgoing: Option<Vec<ClientMessage>> = tokio::select! {
                msg = stream.next() => {
                    last_heard = Instant::now();
                    match msg {
                        Some(Ok(m)) => {
                            if !self.incoming(m).await {
                                if self.closing.is_some() {
                                    return self.finish(&mut sink).await;
                                }
                                return End::Closed;
                            }
                            None
                        }
                        Some(Err(e)) => return End::Dropped(e.to_string()),
                        None => return End::Dropped("the server closed the connection".into()),
                    }
                }
                cmd = self.commands.recv(), if self.pending.bytes() < MAX_PENDING_INPUT => match cmd {
                    None => {
                        let _ = sink.send(Message::Close(None)).await;
                        return End::Closed;
                    }
                    Some(cmd) => Some(self.command(cmd)),
                },
                done = self.closes.recv() => {
                    self.closing = done;
                    return self.finish(&mut sink).await;
                }
                _ = ticker.tick() => {
                    if last_heard.elapsed() > interval * 3 {
                        return End::Dropped(format!("no message from the server for {:?}", last_heard.elapsed()));
                    }
                    self.pending.ping_sent();
                    Some(vec![ClientMessage::Ping])
                }
            };
            if let Some(msgs) = outgoing {
                for m in msgs {
                    if let Err(e) = sink.feed(json(&m)).await {
                        return End::Dropped(e.to_string());
                    }
                }
                if let Err(e) = sink.flush().await {
                    return End::Dropped(e.to_string());
                }
            }
        }
    }

    /// Carries out a close heard while connected, wherever it was heard:
    /// the commands queued before it go out first, then a close frame. A
    /// server that takes none of it (stopped, its buffers full) is given
    /// up on after [`CLOSE_WAIT`].
    async fn finish(&mut self, sink: &mut SplitSink<Ws, Message>) -> End {
        let mut out = Vec::new();
        while let Ok(cmd) = self.commands.try_recv() {
            out.extend(self.command(cmd));
        }
        let send = async {
            for m in out {
                sink.feed(json(&m)).await?;
            }
            sink.send(Message::Close(None)).await
        };
        let _ = tokio::time::timeout(CLOSE_WAIT, send).await;
        End::Closed
    }

    /// Applies a command; returns the messages to send for it.
    fn command(&mut self, cmd: Command) -> Vec<ClientMessage> {
        match cmd {
            Command::Attach {
                session_id,
                since,
                resume,
            } => {
                self.sessions.attach(session_id.clone(), since, resume);
                vec![attach_message(session_id, since)]
            }
            Command::Detach { session_id } => {
                self.sessions.forget(&session_id);
                vec![ClientMessage::Detach { session_id }]
            }
            Command::Input { session_id, data, seq } => {
                self.pending.push(seq, session_id.clone(), data.clone());
                let mut out = vec![ClientMessage::Input {
                    session_id,
                    data,
                    seq: Some(seq),
                    response: false,
                }];
                if self.pending.ping_sent() {
                    out.push(ClientMessage::Ping);
                }
                out
            }
            Command::Resize { session_id, cols, rows } => vec![ClientMessage::Resize { session_id, cols, rows }],
        }
    }
}

/// One connect attempt: the socket's upgrade (with a ticket first when
/// asked), with the client id to keep when there is one.
async fn connect(client: &Client, options: &ConnectOptions, client_id: Option<&str>) -> Result<Ws, ConnectError> {
    let endpoint = client.endpoint();
    let mut query = Vec::new();
    if let Some(id) = client_id {
        query.push(format!("clientId={id}"));
    }
    let mut header_token = endpoint.token.clone();
    if options.auth == SocketAuth::Ticket && header_token.is_some() {
        let t = client.ws_ticket().await.map_err(|e| match (e.is_auth(), e) {
            (true, Error::Api { status, detail }) => ConnectError::Fatal(ConnectFailure::TicketRefused {
                status,
                code: detail.code,
                message: detail.message,
            }),
            (_, e) => ConnectError::Retry(e.to_string()),
        })?;
        query.push(format!("token={}", t.ticket));
        header_token = None;
    }
    let mut url = endpoint.ws_url("/ws");
    if !query.is_empty() {
        url = format!("{url}?{}", query.join("&"));
    }
    let mut req = url.as_str().into_client_request().map_err(|e| {
        ConnectError::Fatal(ConnectFailure::BadUrl {
            url: url.clone(),
            reason: e.to_string(),
        })
    })?;
    if let Some(t) = header_token {
        let v = format!("Bearer {t}")
            .parse()
            .map_err(|_| ConnectError::Fatal(ConnectFailure::BadToken))?;
        req.headers_mut().insert("authorization", v);
    }
    let connector = match &endpoint.tls {
        Some(tls) => Connector::Rustls(tls.clone()),
        None => Connector::Plain,
    };
    let config = WebSocketConfig::default()
        .max_message_size(Some(MAX_MESSAGE))
        .max_frame_size(Some(MAX_MESSAGE));
    match tokio_tungstenite::connect_async_tls_with_config(req, Some(config), true, Some(connector)).await {
        Ok((ws, _)) => Ok(ws),
        Err(tungstenite::Error::Http(resp)) => {
            let status = resp.status().as_u16();
            let body = resp.body().as_deref().unwrap_or_default();
            let (code, message) = match serde_json::from_slice::<ErrorBody>(body) {
                Ok(b) => (Some(b.error.code), b.error.message),
                Err(_) => (None, format!("HTTP {status}")),
            };
            let refused = ConnectFailure::Refused { status, code, message };
            if matches!(status, 401 | 403) {
                Err(ConnectError::Fatal(refused))
            } else {
                Err(ConnectError::Retry(refused.to_string()))
            }
        }
        Err(e) => Err(ConnectError::Retry(format!("cannot connect to {url}: {e}"))),
    }
}

fn attach_message(session_id: SessionId, since: Option<LogPosition>) -> ClientMessage {
    ClientMessage::Attach {
        session_id,
        since,
        output: OutputMode::Binary,
        stream: StreamMode::Live,
    }
}

fn json(m: &ClientMessage) -> Message {
    Message::text(serde_json::to_string(m).expect("client messages serialize"))
}
