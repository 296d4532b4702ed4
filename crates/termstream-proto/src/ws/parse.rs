//! Reading a client's text message in one pass: [`ClientMessage::parse`].
//!
//! A typed keystroke (`terminal.input`) is the hottest message a server
//! reads. serde's derived reader of an internally tagged enum first copies
//! the whole message into a generic tree to find its `type`, then reads the
//! variant from that tree; here every field any message may have is read
//! straight into one flat struct ([`Fields`]) and the variant is built from
//! it. Only a message that this fails on (a field of the wrong type, even
//! one its `type` does not use) takes the derived reader, so answers are the
//! same as the derived reader's.

use serde::Deserialize;
use serde::de::{self, IgnoredAny, MapAccess, SeqAccess, Visitor};

use super::{ClientMessage, LogPosition, OutputMode, StreamMode};
use crate::ids::{ProjectId, SessionId};

/// Why a client's text message is refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum ParseError {
    /// The text is not JSON.
    #[error("malformed JSON: {0}")]
    Malformed(String),
    /// The message has no string `type`.
    #[error("a message needs a string \"type\"")]
    NoType,
    /// The `type` is not one of [`ClientMessage::TYPES`].
    #[error("unknown message type {0:?}")]
    UnknownType(String),
    /// A field of a known `type` is missing or wrong.
    #[error("invalid {kind} message: {message}")]
    Invalid { kind: &'static str, message: String },
}

impl ParseError {
    /// The known `type` of the refused message, if it had one.
    pub fn kind(&self) -> Option<&'static str> {
        match self {
            ParseError::Invalid { kind, .. } => Some(kind),
            _ => None,
        }
    }
}

/// Every field of every client message.
#[derive(Deserialize)]
#[serde(rename_all = "camelCase")]
struct Fields {
    #[serde(rename = "type")]
    kind: Option<String>,
    #[serde(alias = "sessionName")]
    session_id: Option<SessionId>,
    since: Option<LogPosition>,
    output: Option<OutputMode>,
    data: Option<String>,
    seq: Option<u64>,
    response: Option<bool>,
    cols: Option<u16>,
    rows: Option<u16>,
    channels: Option<Vec<String>>,
    stream: Option<StreamMode>,
    project_id: Option<ProjectId>,
    expected_version: Option<u64>,
}

impl ClientMessage {
    /// Reads a client's text message; on success also returns its `type` as
    /// sent (one of [`ClientMessage::TYPES`]), which tells a flat name from
    /// a dotted one.
    pub fn parse(text: &str) -> Result<(&'static str, ClientMessage), ParseError> {
        let fields = match serde_json::from_str::<Fields>(text) {
            Ok(f) => f,
            Err(e) if e.is_data() => return slow_parse(text),
            Err(e) => return Err(ParseError::Malformed(e.to_string())),
        };
        let kind = known_kind(fields.kind.as_deref())?;
        let missing = |field: &str| ParseError::Invalid {
            kind,
            message: format!("missing field `{field}`"),
        };
        let session_id = || fields.session_id.clone().ok_or_else(|| missing("sessionId"));
        let msg = match kind.replace('_', ".").as_str() {
            "terminal.attach" | "session.attach" => ClientMessage::Attach {
                session_id: session_id()?,
                since: fields.since,
                output: fields.output.unwrap_or_default(),
                stream: fields.stream.unwrap_or_default(),
            },
            "terminal.detach" | "session.detach" => ClientMessage::Detach {
                session_id: session_id()?,
            },
            "terminal.input" => ClientMessage::Input {
                session_id: session_id()?,
                data: fields.data.ok_or_else(|| missing("data"))?,
                seq: fields.seq,
                response: fields.response.unwrap_or(false),
            },
            "terminal.resize" => ClientMessage::Resize {
                session_id: session_id()?,
                cols: fields.cols.ok_or_else(|| missing("cols"))?,
                rows: fields.rows.ok_or_else(|| missing("rows"))?,
            },
            "ping" => ClientMessage::Ping,
            "heartbeat" => ClientMessage::Heartbeat {
                session_id: fields.session_id.clone(),
            },
            "focus" => ClientMessage::Focus {
                session_id: session_id()?,
                project_id: fields.project_id,
                expected_version: fields.expected_version,
            },
            "blur" => ClientMessage::Blur {
                session_id: session_id()?,
                project_id: fields.project_id,
                expected_version: fields.expected_version,
            },
            // `sync_request` with its `_` made a `.` above.
            "sync.request" => ClientMessage::SyncRequest {
                project_id: fields.project_id,
                session_id: fields.session_id.clone(),
            },
            "subscribe" => ClientMessage::Subscribe {
                channels: fields.channels.ok_or_else(|| missing("channels"))?,
            },
            "unsubscribe" => ClientMessage::Unsubscribe {
                channels: fields.channels.ok_or_else(|| missing("channels"))?,
            },
            _ => unreachable!("every entry of ClientMessage::TYPES is matched: {kind}"),
        };
        Ok((kind, msg))
    }
}

/// The entry of [`ClientMessage::TYPES`] that `kind` is.
fn known_kind(kind: Option<&str>) -> Result<&'static str, ParseError> {
    let kind = kind.ok_or(ParseError::NoType)?;
    ClientMessage::TYPES
        .iter()
        .find(|t| **t == kind)
        .copied()
        .ok_or_else(|| ParseError::UnknownType(kind.to_owned()))
}

/// The reader of messages the one-pass reader refused: the `type` alone
/// first, then serde's derived reader, which ignores the fields a `type`
/// does not use.
fn slow_parse(text: &str) -> Result<(&'static str, ClientMessage), ParseError> {
    let envelope: Envelope = serde_json::from_str(text).map_err(|e| ParseError::Malformed(e.to_string()))?;
    let kind = known_kind(envelope.kind.as_deref())?;
    serde_json::from_str::<ClientMessage>(text)
        .map(|m| (kind, m))
        .map_err(|e| ParseError::Invalid {
            kind,
            message: e.to_string(),
        })
}

/// A message's `type`, whatever else it holds.
#[derive(Deserialize)]
struct Envelope {
    #[serde(rename = "type", default, deserialize_with = "string_or_none")]
    kind: Option<String>,
}

/// A string, or `None` for any other JSON value.
fn string_or_none<'de, D: de::Deserializer<'de>>(d: D) -> Result<Option<String>, D::Error> {
    struct StringOrNone;
    impl<'de> Visitor<'de> for StringOrNone {
        type Value = Option<String>;

        fn expecting(&self, f: &mut std::fmt::Formatter) -> std::fmt::Result {
            f.write_str("any JSON value")
        }
        fn visit_str<E: de::Error>(self, v: &str) -> Result<Self::Value, E> {
            Ok(Some(v.to_owned()))
        }
        fn visit_bool<E: de::Error>(self, _: bool) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_i64<E: de::Error>(self, _: i64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_u64<E: de::Error>(self, _: u64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_f64<E: de::Error>(self, _: f64) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_unit<E: de::Error>(self) -> Result<Self::Value, E> {
            Ok(None)
        }
        fn visit_seq<A: SeqAccess<'de>>(self, mut seq: A) -> Result<Self::Value, A::Error> {
            while seq.next_element::<IgnoredAny>()?.is_some() {}
            Ok(None)
        }
        fn visit_map<A: MapAccess<'de>>(self, mut map: A) -> Result<Self::Value, A::Error> {
            while map.next_entry::<IgnoredAny, IgnoredAny>()?.is_some() {}
            Ok(None)
        }
    }
    d.deserialize_any(StringOrNone)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn parse(text: &str) -> Result<ClientMessage, ParseError> {
        ClientMessage::parse(text).map(|(_, m)| m)
    }

    #[test]
    fn every_type_a_client_may_send_has_a_message() {
        for kind in ClientMessage::TYPES {
            let text =
                format!(r#"{{"type":"{kind}","sessionId":"s","data":"x","cols":80,"rows":24,"channels":["*"]}}"#);
            let (k, msg) = ClientMessage::parse(&text).unwrap_or_else(|e| panic!("{kind}: {e}"));
            assert_eq!(k, kind);
            // The derived reader agrees with the one-pass reader.
            assert_eq!(serde_json::from_str::<ClientMessage>(&text).unwrap(), msg, "{kind}");
        }
    }

    #[test]
    fn only_server_names_are_unknown_types() {
        assert_eq!(
            parse(r#"{"type":"terminal_restore","sessionName":"s","data":""}"#),
            Err(ParseError::UnknownType("terminal_restore".into()))
        );
    }

    #[test]
    fn keys_in_any_order_parse_as_the_derived_reader_does() {
        let m = parse(r#"{"data":"ab","seq":7,"sessionId":"s1","type":"terminal.input"}"#).unwrap();
        assert_eq!(
            m,
            ClientMessage::Input {
                session_id: SessionId::new("s1").unwrap(),
                data: "ab".into(),
                seq: Some(7),
                response: false
            }
        );
    }

    #[test]
    fn a_response_is_tagged_and_untagged_input_is_typed() {
        let m = parse(r#"{"type":"terminal.input","sessionId":"s1","data":"\u001b[2;1R","response":true}"#).unwrap();
        assert!(matches!(m, ClientMessage::Input { response: true, .. }));
        let m = parse(r#"{"type":"terminal_input","sessionName":"s1","data":"x"}"#).unwrap();
        assert!(matches!(m, ClientMessage::Input { response: false, .. }));
    }

    #[test]
    fn refusals_name_what_is_wrong() {
        assert!(matches!(parse("{"), Err(ParseError::Malformed(_))));
        assert!(matches!(
            parse("[1]"),
            Err(ParseError::Malformed(_)) | Err(ParseError::NoType)
        ));
        assert_eq!(parse(r#"{"sessionId":"s"}"#), Err(ParseError::NoType));
        assert_eq!(parse(r#"{"type":5}"#), Err(ParseError::NoType));
        assert_eq!(
            parse(r#"{"type":"nope","cols":"x"}"#),
            Err(ParseError::UnknownType("nope".into()))
        );
        let e = parse(r#"{"type":"terminal_input","sessionName":"s"}"#).unwrap_err();
        assert_eq!(e.kind(), Some("terminal_input"));
        assert!(e.to_string().contains("`data`"), "{e}");
        let e = parse(r#"{"type":"terminal.resize","sessionId":"s","cols":0,"rows":70000}"#).unwrap_err();
        assert_eq!(e.kind(), Some("terminal.resize"));
        let e = parse(r#"{"type":"session.attach","sessionId":"../x"}"#).unwrap_err();
        assert_eq!(e.kind(), Some("session.attach"));
    }

    #[test]
    fn a_wrongly_typed_field_the_type_does_not_use_is_ignored() {
        assert_eq!(parse(r#"{"type":"ping","cols":"wide"}"#), Ok(ClientMessage::Ping));
    }
}
