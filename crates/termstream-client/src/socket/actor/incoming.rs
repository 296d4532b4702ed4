//! What the server sends, turned into [`Event`]s for the user: output
//! (binary frames and JSON) trimmed to what the user has not been given,
//! and every other message, with the tracked state each one moves.

use termstream_proto::ws::{ATTACH_REQUEST, INPUT_REQUEST, LogPosition, ServerMessage, binary};
use termstream_proto::{SessionId, Stream};
use tokio_tungstenite::tungstenite::Message;

use super::State;
use crate::socket::Event;

impl State {
    /// Handles one message from the server; false when the user is gone.
    pub(super) async fn incoming(&mut self, m: Message) -> bool {
        let event = match m {
            Message::Binary(frame) => {
                let Some(f) = binary::decode(&frame) else {
                    return true;
                };
                let Ok(session_id) = SessionId::new(f.session_id) else {
                    return true;
                };
                let (stream, offset) = (f.stream, f.offset);
                let start = frame.len() - f.data.len();
                let data = self.sessions.output(&session_id, offset, frame.slice(start..));
                if data.is_empty() {
                    return true;
                }
                let offset = offset + (frame.len() - start - data.len()) as u64;
                self.progress = true;
                Event::Output {
                    session_id,
                    stream,
                    offset,
                    data,
                }
            }
            Message::Text(t) => match serde_json::from_str::<ServerMessage>(&t) {
                Ok(m) => match self.server_message(m) {
                    Some(e) => e,
                    None => return true,
                },
                // Event channel messages and future types: not ours to judge.
                Err(_) => return true,
            },
            _ => return true,
        };
        self.emit(event).await
    }

    fn server_message(&mut self, m: ServerMessage) -> Option<Event> {
        Some(match m {
            ServerMessage::Attached {
                session_id,
                epoch,
                offset,
                cols,
                rows,
                status,
                recovered,
                ..
            } => {
                self.sessions.attached(&session_id, LogPosition { epoch, offset });
                Event::Attached {
                    session_id,
                    epoch,
                    offset,
                    cols,
                    rows,
                    status,
                    recovered,
                }
            }
            ServerMessage::Restore {
                session_id,
                data,
                offset,
                cols,
                rows,
            } => {
                self.sessions.skip_to(&session_id, offset);
                Event::Restore {
                    session_id,
                    data,
                    offset,
                    cols,
                    rows,
                }
            }
            ServerMessage::Output {
                session_id,
                data,
                offset,
                stream,
            } => {
                let sent: bytes::Bytes = data.into();
                let len = sent.len();
                let data = self.sessions.output(&session_id, offset, sent);
                if data.is_empty() {
                    return None;
                }
                // Where what is left starts, as for a binary frame.
                let offset = offset + (len - data.len()) as u64;
                Event::Output {
                    session_id,
                    stream: stream.unwrap_or(Stream::Pty),
                    offset,
                    data,
                }
            }
            ServerMessage::Gap {
                session_id,
                from,
                to,
                reason,
                ..
            } => {
                self.sessions.skip_to(&session_id, to);
                Event::Gap {
                    session_id,
                    from,
                    to,
                    reason,
                }
            }
            ServerMessage::Resized { session_id, cols, rows } => Event::Resized { session_id, cols, rows },
            ServerMessage::Exit {
                session_id,
                status,
                exit_code,
                signal,
                ..
            } => Event::Exit {
                session_id,
                status,
                exit_code,
                signal,
            },
            ServerMessage::Detached { session_id, reason } => {
                self.sessions.forget(&session_id);
                Event::Detached { session_id, reason }
            }
            ServerMessage::Error {
                code,
                message,
                session_id,
                request,
                seq,
            } => {
                // An attach the server refused (its session did not come
                // within the attach wait, or the socket's attachment cap)
                // is not retried on every reconnect, where it could take
                // the slot of one really attached. Only the refusal marked
                // as the attach's: the same codes answer input or a resize
                // naming the id while the attach waits for its session. A
                // server older than the mark gets the attach asked again
                // after a reconnect (and refuses it again).
                if request.as_deref() == Some(ATTACH_REQUEST)
                    && let Some(id) = &session_id
                {
                    self.sessions.forget(id);
                }
                // A refused input is answered: it is not sent again after
                // a reconnect, where it could be applied after all, behind
                // the user's back (the user may send its data again, with
                // a new seq, knowing which it was).
                let refused_input = if request.as_deref() == Some(INPUT_REQUEST) {
                    seq
                } else {
                    None
                };
                if let Some(seq) = refused_input {
                    self.pending.forget(seq);
                }
                Event::ServerError {
                    code,
                    message,
                    session_id,
                    request,
                    refused_input,
                }
            }
            ServerMessage::Pong => {
                self.pending.pong();
                return None;
            }
            ServerMessage::Connected { .. } | ServerMessage::Heartbeat { .. } | ServerMessage::Subscribed { .. } => {
                return None;
            }
        })
    }
}
