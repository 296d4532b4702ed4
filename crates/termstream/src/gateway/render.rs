//! How gateway events become WebSocket frames, per dialect.
//!
//! One [`OutEvent`] vocabulary is produced by the forwarders; a
//! [`Dialect`] renders it: the dotted JSON of `/ws`, its flat aliases, the
//! binary output frames, or the legacy messages of `/ws/terminal/...`.

use std::sync::Arc;

use axum::extract::ws::Message;
use bytes::Bytes;
use termstream_proto::terminal::TerminalServerMessage;
use termstream_proto::ws::{ATTACH_REQUEST, GapReason, OutputMode, ServerMessage, binary};
use termstream_proto::{SessionId, SessionInfo, Snapshot, Stream};

use super::shapes::{self, Legacy};
use crate::clock::{now_ms, now_secs};

/// Which message names and framing a socket speaks.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Dialect {
    /// `/ws` with dotted names (`terminal.output`).
    Dotted,
    /// `/ws` with the older flat names (`terminal_output`, `sessionName`).
    Flat,
    /// `/ws/terminal/{id}` and `/ws/terminal/all`.
    Legacy,
    /// The per-terminal socket `/ws?sessionId=ID`: output and the screen
    /// as `stream` messages, errors as `{"type":"error","sessionId","data"}`,
    /// the other session messages dotted.
    Terminal,
}

/// What the screen of the per-terminal dialect starts with: a full reset
/// (RIS), so the snapshot is right on a terminal that showed something
/// before (a reconnect), as on a blank one.
pub const SCREEN_RESET: &str = "\x1bc";

fn stream_message(session: &SessionId, data: String) -> Message {
    let msg = TerminalServerMessage::Stream {
        session_id: session.clone(),
        data,
        timestamp: now_ms(),
    };
    Message::Text(serde_json::to_string(&msg).unwrap_or_default().into())
}

/// What a forwarder sends to its socket.
#[derive(Debug)]
pub enum OutEvent<'a> {
    Attached {
        info: &'a SessionInfo,
        offset: u64,
        recovered: Option<bool>,
        /// The log's end when the subscription was taken: live output
        /// starts there.
        end: u64,
    },
    Restore {
        session: &'a SessionId,
        snapshot: &'a Snapshot,
    },
    Output {
        session: &'a SessionId,
        stream: Stream,
        offset: u64,
        data: &'a [u8],
    },
    Gap {
        session: &'a SessionId,
        from: u64,
        to: u64,
        reason: GapReason,
    },
    Resized {
        session: &'a SessionId,
        cols: u16,
        rows: u16,
    },
    Terminating {
        session: &'a SessionId,
    },
    Exit(&'a Arc<SessionInfo>),
}

fn json(msg: &ServerMessage) -> Message {
    Message::Text(serde_json::to_string(msg).unwrap_or_default().into())
}

/// Renames a dotted message to its flat alias ([`shapes::flatten`]).
fn flatten(msg: &ServerMessage) -> Message {
    Message::Text(shapes::flatten(msg).into())
}

impl Dialect {
    /// Renders `ev` for this dialect with output in `mode`; `None` when the
    /// dialect has no message for it. Output in JSON is text: the forwarder
    /// hands over whole UTF-8 sequences, and bytes that are not UTF-8 at all
    /// become U+FFFD (binary mode is lossless).
    pub fn render(self, ev: OutEvent<'_>, mode: OutputMode) -> Option<Message> {
        let dotted = match ev {
            OutEvent::Output {
                session,
                stream,
                offset,
                data,
            } => {
                return Some(self.output(session, stream, offset, data, mode));
            }
            // The stream says nothing of attaching, gaps and resizes (the
            // design has no message for them): a gap is followed by the
            // screen, which starts with a reset.
            OutEvent::Attached { .. } | OutEvent::Gap { .. } | OutEvent::Resized { .. }
                if self == Dialect::Terminal =>
            {
                return None;
            }
            OutEvent::Attached {
                info,
                offset,
                recovered,
                end,
            } => ServerMessage::Attached {
                session_id: info.id.clone(),
                epoch: info.epoch,
                offset,
                cols: info.cols,
                rows: info.rows,
                status: info.status,
                recovered,
                // The flat dialect keeps the shape it always had.
                end: (self != Dialect::Flat).then_some(end),
            },
            // Legacy clients get the held output as plain output instead.
            OutEvent::Restore { .. } if self == Dialect::Legacy => return None,
            OutEvent::Restore { session, snapshot } if self == Dialect::Terminal => {
                return Some(stream_message(session, format!("{SCREEN_RESET}{}", snapshot.data)));
            }
            OutEvent::Restore { session, snapshot } => ServerMessage::Restore {
                session_id: session.clone(),
                data: snapshot.data.clone(),
                offset: snapshot.offset,
                cols: snapshot.cols,
                rows: snapshot.rows,
            },
            OutEvent::Gap {
                session,
                from,
                to,
                reason,
            } => ServerMessage::Gap {
                session_id: session.clone(),
                recovered: false,
                from,
                to,
                reason,
            },
            OutEvent::Resized { session, cols, rows } => ServerMessage::Resized {
                session_id: session.clone(),
                cols,
                rows,
            },
            OutEvent::Terminating { session } if self == Dialect::Legacy => {
                let msg = Legacy {
                    kind: "terminal_terminating",
                    session_id: session.as_str(),
                    body: shapes::Empty {},
                    timestamp: now_secs(),
                };
                return Some(Message::Text(msg.to_json().into()));
            }
            OutEvent::Terminating { .. } => return None,
            OutEvent::Exit(info) if self == Dialect::Legacy => {
                let msg = Legacy {
                    kind: "terminal_end",
                    session_id: info.id.as_str(),
                    body: shapes::LegacyEnd {
                        exit_code: info.exit_code,
                        duration: info.duration_ms.map(|d| d as f64 / 1000.0),
                    },
                    timestamp: now_secs(),
                };
                return Some(Message::Text(msg.to_json().into()));
            }
            OutEvent::Exit(info) => ServerMessage::Exit {
                session_id: info.id.clone(),
                status: info.status,
                exit_code: info.exit_code,
                signal: info.signal,
                duration: info.duration_ms,
            },
        };
        match self {
            Dialect::Dotted | Dialect::Terminal => Some(json(&dotted)),
            Dialect::Flat => Some(flatten(&dotted)),
            // Legacy clients know none of the dotted session messages.
            Dialect::Legacy => None,
        }
    }

    /// Renders a message of the connection itself (errors, pong, ...);
    /// `None` for the legacy dialect, which has no such messages.
    pub fn render_control(self, msg: &ServerMessage) -> Option<Message> {
        match self {
            Dialect::Terminal => match msg {
                ServerMessage::Error {
                    message,
                    session_id: Some(session_id),
                    ..
                } => {
                    let m = TerminalServerMessage::Error {
                        session_id: session_id.clone(),
                        data: message.clone(),
                    };
                    Some(Message::Text(serde_json::to_string(&m).unwrap_or_default().into()))
                }
                _ => Some(json(msg)),
            },
            Dialect::Dotted => Some(json(msg)),
            // `terminal_detached` keeps its older shape: no `reason`.
            Dialect::Flat => match msg {
                ServerMessage::Detached {
                    session_id,
                    reason: Some(_),
                } => Some(flatten(&ServerMessage::Detached {
                    session_id: session_id.clone(),
                    reason: None,
                })),
                // Nor do refusals of input and resizes: no `request`, no
                // `seq` (the attach's refusal has carried `request` there
                // too since that field came).
                ServerMessage::Error {
                    code,
                    message,
                    session_id,
                    request: Some(r),
                    ..
                } if r != ATTACH_REQUEST => Some(flatten(&ServerMessage::Error {
                    code: *code,
                    message: message.clone(),
                    session_id: session_id.clone(),
                    request: None,
                    seq: None,
                })),
                _ => Some(flatten(msg)),
            },
            Dialect::Legacy => None,
        }
    }

    fn output(self, session: &SessionId, stream: Stream, offset: u64, data: &[u8], mode: OutputMode) -> Message {
        if mode == OutputMode::Binary && self != Dialect::Legacy {
            let mut frame = Vec::with_capacity(binary::HEADER_LEN + session.as_str().len() + data.len());
            binary::encode_header(&mut frame, session.as_str(), stream, offset);
            frame.extend_from_slice(data);
            return Message::Binary(Bytes::from(frame));
        }
        let text = String::from_utf8_lossy(data);
        let json = match self {
            Dialect::Terminal => return stream_message(session, text.into_owned()),
            Dialect::Legacy => Legacy {
                kind: "terminal_output",
                session_id: session.as_str(),
                body: shapes::LegacyOutput {
                    stream: if stream == Stream::Stderr { "stderr" } else { "stdout" },
                    output: &text,
                    is_error: stream == Stream::Stderr,
                },
                timestamp: now_secs(),
            }
            .to_json(),
            Dialect::Flat | Dialect::Dotted => {
                let flat = self == Dialect::Flat;
                let msg = shapes::Output {
                    kind: if flat { "terminal_output" } else { "terminal.output" },
                    session_id: session,
                    session_name: flat.then_some(session),
                    data: &text,
                    offset,
                    stream: (stream != Stream::Pty).then_some(stream),
                    // The flat shape's output carries its time (Unix ms), as
                    // in the event-streaming design it comes from.
                    timestamp: flat.then(now_ms),
                };
                serde_json::to_string(&msg).unwrap_or_default()
            }
        };
        Message::Text(json.into())
    }
}
