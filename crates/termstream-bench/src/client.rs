//! A WebSocket client of `/ws`, speaking the protocol of
//! `termstream_proto::ws` exactly as any other client would.
//!
//! Every wait is bounded: [`Client::next`] takes a deadline, and the loops
//! built on it (reading to the end, echo samples) stop by themselves.

use std::time::{Duration, Instant};

use anyhow::{Context, bail};
use bytes::Bytes;
use futures_util::{SinkExt, StreamExt};
use termstream_proto::SessionId;
use termstream_proto::focus::FocusMessage;
use termstream_proto::ws::{ClientMessage, OutputMode, ServerMessage, StreamMode, binary};
use tokio::net::TcpStream;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::protocol::WebSocketConfig;
use tokio_tungstenite::{MaybeTlsStream, WebSocketStream};

/// The longest a single message may take to arrive during handshakes.
const STEP_WAIT: Duration = Duration::from_secs(10);

/// What the server said, reduced to what the bench looks at.
#[derive(Debug)]
pub enum Event {
    /// `session.attached`: output from `offset` follows.
    Attached { offset: u64 },
    /// `terminal.restore`: a screen snapshot (`data`); output from
    /// `offset` follows.
    Restore { offset: u64, data: String },
    /// Output bytes (binary frame or `terminal.output`) starting at `offset`.
    Output { offset: u64, data: Bytes },
    /// `session.gap`: output from `from` to `to` is skipped.
    Gap { from: u64, to: u64 },
    /// `session.exit`: all output was sent.
    Exit,
    /// `error`.
    Error(String),
    /// `focus_update`: the project's focus set reached `version`.
    FocusUpdate { version: u64 },
    /// Any other message (its `type`).
    Other(String),
    /// The server closed the connection.
    Closed,
}

/// One connection to `/ws`.
pub struct Client {
    ws: WebSocketStream<MaybeTlsStream<TcpStream>>,
}

/// What [`Client::read_to_exit`] saw.
#[derive(Debug, Default, Clone, Copy)]
pub struct Received {
    /// Output bytes received.
    pub bytes: u64,
    /// The offset one past the last byte received.
    pub end: u64,
    /// Output frames received.
    pub frames: u64,
    /// `session.gap` messages, and bytes they skipped.
    pub gaps: u64,
    pub gap_bytes: u64,
    /// Whether `session.exit` arrived (else the deadline or a close ended it).
    pub exited: bool,
}

impl Client {
    /// Connects and waits for `connected`.
    pub async fn connect(url: &str) -> anyhow::Result<Client> {
        Self::connect_with(url, None).await
    }

    /// Connects with small buffers, for tests that open thousands of sockets.
    pub async fn connect_small(url: &str) -> anyhow::Result<Client> {
        let config = WebSocketConfig::default().read_buffer_size(4096).write_buffer_size(0);
        Self::connect_with(url, Some(config)).await
    }

    async fn connect_with(url: &str, config: Option<WebSocketConfig>) -> anyhow::Result<Client> {
        let (ws, _) = tokio_tungstenite::connect_async_with_config(url, config, true)
            .await
            .with_context(|| format!("cannot connect to {url}"))?;
        let mut client = Client { ws };
        let deadline = Instant::now() + STEP_WAIT;
        match client.next(deadline).await? {
            Event::Other(t) if t == "connected" => Ok(client),
            other => bail!("expected `connected` first, got {other:?}"),
        }
    }

    /// Sends a client message as a JSON text frame.
    pub async fn send(&mut self, msg: &ClientMessage) -> anyhow::Result<()> {
        self.send_text(serde_json::to_string(msg)?).await
    }

    /// Sends a prepared JSON text frame.
    pub async fn send_text(&mut self, text: String) -> anyhow::Result<()> {
        self.ws.send(Message::Text(text.into())).await.context("send failed")
    }

    /// Attaches with binary output and waits for `session.attached`;
    /// returns the offset output follows from. A snapshot or held output
    /// comes next; read it with [`Client::next`].
    pub async fn attach(&mut self, id: &SessionId) -> anyhow::Result<u64> {
        self.attach_within(id, STEP_WAIT).await
    }

    /// [`Client::attach`], waiting at most `wait` for `session.attached`.
    pub async fn attach_within(&mut self, id: &SessionId, wait: Duration) -> anyhow::Result<u64> {
        self.attach_mode(id, StreamMode::Live, wait).await
    }

    /// [`Client::attach_within`] with a stream mode (`focus`: live only
    /// while the session is focused).
    pub async fn attach_mode(&mut self, id: &SessionId, stream: StreamMode, wait: Duration) -> anyhow::Result<u64> {
        self.send(&ClientMessage::Attach {
            session_id: id.clone(),
            since: None,
            output: OutputMode::Binary,
            stream,
        })
        .await?;
        let deadline = Instant::now() + wait;
        loop {
            match self
                .next(deadline)
                .await
                .with_context(|| format!("no session.attached within {wait:?}"))?
            {
                Event::Attached { offset } => return Ok(offset),
                Event::Error(e) => bail!("attach to {} failed: {e}", id.as_str()),
                Event::Closed => bail!("the server closed the connection on attach"),
                _ => {}
            }
        }
    }

    /// A `terminal.input` message for `data`, serialized once.
    pub fn input_text(id: &SessionId, data: &str) -> String {
        let msg = ClientMessage::Input {
            session_id: id.clone(),
            data: data.into(),
            seq: None,
            response: false,
        };
        serde_json::to_string(&msg).expect("serializable")
    }

    /// Sends input to a session.
    pub async fn input(&mut self, id: &SessionId, data: &str) -> anyhow::Result<()> {
        self.send_text(Self::input_text(id, data)).await
    }

    /// The next event, or an error once `deadline` has passed.
    pub async fn next(&mut self, deadline: Instant) -> anyhow::Result<Event> {
        loop {
            let msg = match tokio::time::timeout_at(deadline.into(), self.ws.next()).await {
                Err(_) => bail!("timed out waiting for the server"),
                Ok(None) => return Ok(Event::Closed),
                Ok(Some(m)) => m.context("WebSocket read failed")?,
            };
            match msg {
                Message::Binary(frame) => {
                    let Some(out) = binary::decode(&frame) else {
                        return Ok(Event::Other("binary".into()));
                    };
                    let start = frame.len() - out.data.len();
                    let offset = out.offset;
                    return Ok(Event::Output {
                        offset,
                        data: frame.slice(start..),
                    });
                }
                Message::Text(text) => return Ok(parse(text.as_str())),
                Message::Close(_) => return Ok(Event::Closed),
                _ => continue,
            }
        }
    }

    /// Reads until `session.exit`, a close or `deadline`, counting output
    /// from `from` on.
    pub async fn read_to_exit(&mut self, from: u64, deadline: Instant) -> Received {
        let mut r = Received {
            end: from,
            ..Received::default()
        };
        loop {
            match self.next(deadline).await {
                Ok(Event::Output { offset, data }) => {
                    let end = offset + data.len() as u64;
                    if end > r.end {
                        r.bytes += end - offset.max(r.end);
                        r.end = end;
                    }
                    r.frames += 1;
                }
                Ok(Event::Restore { offset, .. }) => r.end = r.end.max(offset),
                Ok(Event::Gap { from, to }) => {
                    r.gaps += 1;
                    r.gap_bytes += to.saturating_sub(from);
                    r.end = r.end.max(to);
                }
                Ok(Event::Exit) => {
                    r.exited = true;
                    return r;
                }
                Ok(Event::Closed) | Err(_) => return r,
                Ok(_) => {}
            }
        }
    }

    /// Reads and drops everything until `stop` turns true, a close or
    /// `deadline`; returns the output bytes read.
    pub async fn drain(&mut self, stop: &mut tokio::sync::watch::Receiver<bool>, deadline: Instant) -> u64 {
        let mut bytes = 0;
        loop {
            tokio::select! {
                _ = stop.wait_for(|s| *s) => return bytes,
                ev = self.next(deadline) => match ev {
                    Ok(Event::Output { data, .. }) => bytes += data.len() as u64,
                    Ok(Event::Closed) | Err(_) => return bytes,
                    Ok(_) => {}
                },
            }
        }
    }

    /// Round trips of one typed byte through a session that echoes it once
    /// (`stty raw -echo; cat`): `warmup` unrecorded, then `samples`
    /// recorded. Stops at `deadline` with what it has; with nothing, it is an
    /// error (no samples must never read as a fast 0 µs).
    pub async fn echo_samples(
        &mut self,
        id: &SessionId,
        warmup: usize,
        samples: usize,
        deadline: Instant,
    ) -> anyhow::Result<Vec<std::time::Duration>> {
        let inputs: Vec<String> = (b'a'..=b'z')
            .map(|c| Self::input_text(id, &(c as char).to_string()))
            .collect();
        let mut out = Vec::with_capacity(samples);
        for i in 0..warmup + samples {
            let want = b'a' + (i % 26) as u8;
            let t0 = Instant::now();
            self.send_text(inputs[i % 26].clone()).await?;
            let timed_out = loop {
                if Instant::now() > deadline {
                    break true;
                }
                match self.next(deadline).await {
                    Ok(Event::Output { data, .. }) if data.last() == Some(&want) => break false,
                    Ok(Event::Exit | Event::Closed) => bail!("the echo session ended"),
                    Ok(_) => {}
                    Err(_) => break true,
                }
            };
            if timed_out {
                anyhow::ensure!(!out.is_empty(), "no echo came back before the deadline");
                return Ok(out);
            }
            if i >= warmup {
                out.push(t0.elapsed());
            }
        }
        Ok(out)
    }

    /// Closes politely; errors are ignored.
    pub async fn close(mut self) {
        let _ = tokio::time::timeout(Duration::from_secs(2), self.ws.close(None)).await;
    }
}

/// Turns a JSON text frame into an [`Event`].
fn parse(text: &str) -> Event {
    match serde_json::from_str::<ServerMessage>(text) {
        Ok(ServerMessage::Attached { offset, .. }) => Event::Attached { offset },
        Ok(ServerMessage::Restore { offset, data, .. }) => Event::Restore { offset, data },
        Ok(ServerMessage::Output { offset, data, .. }) => Event::Output {
            offset,
            data: Bytes::from(data),
        },
        Ok(ServerMessage::Gap { from, to, .. }) => Event::Gap { from, to },
        Ok(ServerMessage::Exit { .. }) => Event::Exit,
        Ok(ServerMessage::Error { code, message, .. }) => Event::Error(format!("{code:?}: {message}")),
        Ok(ServerMessage::Connected { .. }) => Event::Other("connected".into()),
        Ok(other) => Event::Other(format!("{other:?}")),
        Err(_) => match serde_json::from_str::<FocusMessage>(text) {
            Ok(FocusMessage::FocusUpdate { version, .. }) => Event::FocusUpdate { version },
            _ => {
                let t = serde_json::from_str::<serde_json::Value>(text)
                    .ok()
                    .and_then(|v| v.get("type").and_then(|t| t.as_str()).map(String::from))
                    .unwrap_or_else(|| "unparsed".into());
                Event::Other(t)
            }
        },
    }
}

/// A client attached to an echoing session, as the paced probe uses it:
/// the 26 keys' messages are serialized once, as ttyd's and the relay's
/// need no serializing.
pub struct EchoSession {
    client: Client,
    keys: Vec<String>,
}

impl EchoSession {
    pub fn new(client: Client, id: &SessionId) -> EchoSession {
        let keys = (b'a'..=b'z')
            .map(|c| Client::input_text(id, &(c as char).to_string()))
            .collect();
        EchoSession { client, keys }
    }
}

impl crate::paced::Echo for EchoSession {
    async fn key(&mut self, key: u8) -> anyhow::Result<()> {
        let text = self.keys[usize::from(key - b'a')].clone();
        self.client.send_text(text).await
    }
    async fn output(&mut self) -> anyhow::Result<Option<Vec<u8>>> {
        loop {
            match self.client.next(Instant::now() + crate::paced::NO_DEADLINE).await? {
                Event::Output { data, .. } => return Ok(Some(data.to_vec())),
                Event::Exit | Event::Closed => return Ok(None),
                // A key refused (rate limited, say) would be lost.
                Event::Error(e) => bail!("the server answered the probe with an error: {e}"),
                _ => {}
            }
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn parses_the_messages_the_bench_waits_for() {
        assert!(matches!(
            parse(r#"{"type":"connected","message":"hi","client_count":1,"clientId":"c"}"#),
            Event::Other(t) if t == "connected"
        ));
        assert!(matches!(
            parse(
                r#"{"type":"session.exit","sessionId":"a","status":"exited","exitCode":0,"signal":null,"duration":5}"#
            ),
            Event::Exit
        ));
        assert!(matches!(parse(r#"{"type":"something.new"}"#), Event::Other(t) if t == "something.new"));
    }
}
