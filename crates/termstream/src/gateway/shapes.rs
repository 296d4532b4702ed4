//! The JSON shapes that [`ServerMessage`] does not cover: the legacy
//! messages of `/ws/terminal/...`, written from typed structs that borrow
//! what they carry (no JSON tree is built per chunk), and the flat renaming
//! of a dotted message.

use serde::Serialize;
use termstream_proto::SessionId;
use termstream_proto::ws::ServerMessage;

/// A legacy message: `type`, `session_id`, the message's own fields, then
/// `timestamp` in Unix seconds.
#[derive(Debug, Serialize)]
pub struct Legacy<'a, T: Serialize> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub session_id: &'a str,
    #[serde(flatten)]
    pub body: T,
    pub timestamp: f64,
}

impl<T: Serialize> Legacy<'_, T> {
    /// The message as JSON text.
    pub fn to_json(&self) -> String {
        serde_json::to_string(self).unwrap_or_default()
    }
}

/// `terminal_output`.
#[derive(Debug, Serialize)]
pub struct LegacyOutput<'a> {
    pub stream: &'static str,
    pub output: &'a str,
    pub is_error: bool,
}

/// `terminal_end`.
#[derive(Debug, Serialize)]
pub struct LegacyEnd {
    pub exit_code: Option<i32>,
    /// Seconds from start to end.
    pub duration: Option<f64>,
}

/// `terminal_start`.
#[derive(Debug, Serialize)]
pub struct LegacyStart<'a> {
    pub command: String,
    pub cwd: &'a str,
}

/// `terminal_connected` and `error`.
#[derive(Debug, Serialize)]
pub struct LegacyMessage<'a> {
    pub message: &'a str,
}

/// Messages with no fields of their own (`terminal_terminating`).
#[derive(Debug, Serialize)]
pub struct Empty {}

/// `pong`: the only legacy message without a session.
#[derive(Debug, Serialize)]
pub struct LegacyPong {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub timestamp: f64,
}

/// `terminal.output` in the dotted or flat dialect, borrowing its data.
#[derive(Debug, Serialize)]
#[serde(rename_all = "camelCase")]
pub struct Output<'a> {
    #[serde(rename = "type")]
    pub kind: &'static str,
    pub session_id: &'a SessionId,
    /// The flat dialect's copy of `sessionId`.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub session_name: Option<&'a SessionId>,
    pub data: &'a str,
    pub offset: u64,
    #[serde(skip_serializing_if = "Option::is_none")]
    pub stream: Option<termstream_proto::Stream>,
    /// The flat dialect's time of sending, Unix ms.
    #[serde(skip_serializing_if = "Option::is_none")]
    pub timestamp: Option<u64>,
}

/// `msg` in the flat dialect: `type` renamed (`session.exit` →
/// `terminal_exit`, `terminal.output` → `terminal_output`) and `sessionName`
/// beside `sessionId`.
///
/// The dotted JSON is edited as text: serde writes an internally tagged
/// enum's `type` first, so the name is the text's first string, and the
/// session id (validated: no character JSON escapes) is appended last.
pub fn flatten(msg: &ServerMessage) -> String {
    let dotted = serde_json::to_string(msg).unwrap_or_default();
    const TAG: &str = "{\"type\":\"";
    let Some(rest) = dotted.strip_prefix(TAG) else {
        return dotted;
    };
    let name_end = rest.find('"').unwrap_or(rest.len());
    let (name, tail) = rest.split_at(name_end);
    let mut out = String::with_capacity(dotted.len() + 48);
    out.push_str(TAG);
    match name.split_once('.') {
        Some((_, short)) => {
            out.push_str("terminal_");
            out.push_str(short);
        }
        None => out.push_str(name),
    }
    out.push_str(tail);
    if let Some(id) = session_of(msg)
        && out.ends_with('}')
    {
        out.pop();
        out.push_str(",\"sessionName\":");
        out.push_str(&serde_json::to_string(id).unwrap_or_default());
        out.push('}');
    }
    out
}

/// The session a message is about.
fn session_of(msg: &ServerMessage) -> Option<&SessionId> {
    match msg {
        ServerMessage::Attached { session_id, .. }
        | ServerMessage::Restore { session_id, .. }
        | ServerMessage::Output { session_id, .. }
        | ServerMessage::Gap { session_id, .. }
        | ServerMessage::Resized { session_id, .. }
        | ServerMessage::Exit { session_id, .. }
        | ServerMessage::Detached { session_id, .. } => Some(session_id),
        ServerMessage::Error { session_id, .. } => session_id.as_ref(),
        ServerMessage::Connected { .. }
        | ServerMessage::Pong
        | ServerMessage::Heartbeat { .. }
        | ServerMessage::Subscribed { .. } => None,
    }
}

#[cfg(test)]
mod tests {
    use serde_json::{Value, json};
    use termstream_proto::ErrorCode;

    use super::*;

    /// What the flat dialect was before: the dotted message as a JSON
    /// tree, renamed, with `sessionName` copied in.
    fn flatten_by_tree(msg: &ServerMessage) -> Value {
        let mut v = serde_json::to_value(msg).unwrap();
        let obj = v.as_object_mut().unwrap();
        let t = obj["type"].as_str().unwrap().to_owned();
        let flat = match t.split_once('.') {
            Some((_, rest)) => format!("terminal_{rest}"),
            None => t,
        };
        obj.insert("type".into(), flat.into());
        if let Some(id) = obj.get("sessionId").cloned() {
            obj.insert("sessionName".into(), id);
        }
        v
    }

    #[test]
    fn flat_messages_are_the_dotted_ones_renamed() {
        let id = SessionId::new("s-1").unwrap();
        let msgs = [
            ServerMessage::Output {
                session_id: id.clone(),
                data: "a\"}\u{1b}[0m".into(),
                offset: 7,
                stream: None,
            },
            ServerMessage::Detached {
                session_id: id.clone(),
                reason: None,
            },
            ServerMessage::Error {
                code: ErrorCode::Busy,
                message: "x".into(),
                session_id: Some(id.clone()),
                request: Some("session.attach".into()),
                seq: None,
            },
            ServerMessage::Error {
                code: ErrorCode::Busy,
                message: "x".into(),
                session_id: None,
                request: None,
                seq: None,
            },
            ServerMessage::Pong,
            ServerMessage::Subscribed { channels: vec![] },
        ];
        for m in &msgs {
            let flat: Value = serde_json::from_str(&flatten(m)).unwrap();
            assert_eq!(flat, flatten_by_tree(m), "{m:?}");
        }
    }

    #[test]
    fn legacy_output_has_the_documented_fields() {
        let m = Legacy {
            kind: "terminal_output",
            session_id: "s",
            body: LegacyOutput {
                stream: "stderr",
                output: "hi",
                is_error: true,
            },
            timestamp: 1.5,
        };
        assert_eq!(
            serde_json::from_str::<Value>(&m.to_json()).unwrap(),
            json!({"type":"terminal_output","session_id":"s","stream":"stderr","output":"hi","is_error":true,"timestamp":1.5})
        );
    }
}
