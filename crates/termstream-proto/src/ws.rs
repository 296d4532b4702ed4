//! The multiplexed WebSocket protocol of `/ws` (see `docs/protocol.md`).
//!
//! Messages are JSON text frames with a `type`; session messages carry
//! `sessionId`. Output may instead come as binary frames (see [`binary`])
//! when the client asks for them on attach.
//!
//! The older flat names (`terminal_input`, `terminal_resize`, `terminal_attach`,
//! `terminal_detach`, with `sessionName` for `sessionId`) are accepted from
//! clients as aliases; a connection that uses them, or that connects with
//! `?dialect=flat`, is answered with flat names too (`terminal_output`,
//! `terminal_restore`, ...).

mod parse;

use serde::{Deserialize, Serialize};

pub use parse::ParseError;

use crate::error::ErrorCode;
use crate::ids::{Epoch, ProjectId, SessionId};
use crate::output::Stream;
use crate::session::SessionStatus;

/// A position in a session's log, as a client remembers it.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct LogPosition {
    pub epoch: Epoch,
    /// The first byte the client does not have yet.
    pub offset: u64,
}

/// How output of an attached session is framed.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum OutputMode {
    /// `terminal.output` JSON messages (invalid UTF-8 is replaced).
    #[default]
    Json,
    /// Binary frames with raw bytes (see [`binary`]); lossless.
    Binary,
}

/// When output of an attached session is delivered.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum StreamMode {
    /// As it comes.
    #[default]
    Live,
    /// Live while the session is focused in its project; otherwise
    /// coalesced into at most one update per `unfocused_interval_ms`, still
    /// lossless by offset.
    Focus,
}

/// The `request` of an `error` that refuses an attach
/// ([`ServerMessage::Error`]): its wait ended without its session
/// (`session_not_found`), or the socket holds as many attachments as it may
/// (`rate_limited`). A client forgets that attach, and tells the refusal
/// from the same code answering input, a resize or a focus naming the id.
pub const ATTACH_REQUEST: &str = "session.attach";

/// The `request` of an `error` that refuses a `terminal.input`
/// ([`ServerMessage::Error`]), whatever the code: it names the input's
/// `sessionId`, and its `seq` when the input had one, so a client knows
/// exactly which input was not applied. `/ws` only (not its flat dialect).
pub const INPUT_REQUEST: &str = "terminal.input";

/// The `request` of an `error` that refuses a `terminal.resize`
/// ([`ServerMessage::Error`]), whatever the code: a client tells it from
/// the refusal of input. `/ws` only (not its flat dialect).
pub const RESIZE_REQUEST: &str = "terminal.resize";

/// Event channels a client may subscribe to.
pub const CHANNELS: [&str; 4] = ["task_status", "notification", "activity_log", "sessions"];

/// Client → server.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ClientMessage {
    /// Subscribes this socket to a session's output.
    #[serde(rename = "session.attach", alias = "terminal_attach", rename_all = "camelCase")]
    Attach {
        #[serde(alias = "sessionName")]
        session_id: SessionId,
        /// Resume from here instead of starting with a snapshot.
        #[serde(default)]
        since: Option<LogPosition>,
        #[serde(default)]
        output: OutputMode,
        /// `focus`: live output only while the session is focused in its
        /// project, else at most one update per `unfocused_interval_ms`.
        #[serde(default)]
        stream: StreamMode,
    },
    /// Stops this socket's subscription to a session.
    #[serde(rename = "session.detach", alias = "terminal_detach", rename_all = "camelCase")]
    Detach {
        #[serde(alias = "sessionName")]
        session_id: SessionId,
    },
    /// Input for a session's program.
    #[serde(rename = "terminal.input", alias = "terminal_input", rename_all = "camelCase")]
    Input {
        #[serde(alias = "sessionName")]
        session_id: SessionId,
        data: String,
        /// The client's sequence number; an input whose seq was applied
        /// before (for the same client id) is not applied again.
        #[serde(default)]
        seq: Option<u64>,
        /// Whether the terminal produced this input itself, answering a
        /// query in the output (a cursor position report, device
        /// attributes): the server forwards responses from one connection
        /// per session and drops the rest. Absent means typed input.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        response: bool,
    },
    /// The window size of a pty session.
    #[serde(rename = "terminal.resize", alias = "terminal_resize", rename_all = "camelCase")]
    Resize {
        #[serde(alias = "sessionName")]
        session_id: SessionId,
        cols: u16,
        rows: u16,
    },
    /// Answered with `pong`.
    #[serde(rename = "ping")]
    Ping,
    /// Answered with `heartbeat` and the server's time (and `sessionId`,
    /// echoed, when given).
    #[serde(rename = "heartbeat", rename_all = "camelCase")]
    Heartbeat {
        #[serde(default)]
        session_id: Option<SessionId>,
    },
    /// Focuses a session in its project (see [`crate::focus`]).
    #[serde(rename = "focus", rename_all = "camelCase")]
    Focus {
        session_id: SessionId,
        /// When given, it must be the session's project.
        #[serde(default)]
        project_id: Option<ProjectId>,
        /// A version other than the project's changes nothing
        /// (`version_conflict`).
        #[serde(default)]
        expected_version: Option<u64>,
    },
    /// Unfocuses a session; fields as for `focus`.
    #[serde(rename = "blur", rename_all = "camelCase")]
    Blur {
        session_id: SessionId,
        #[serde(default)]
        project_id: Option<ProjectId>,
        #[serde(default)]
        expected_version: Option<u64>,
    },
    /// Answered with `sync_complete`: the project's focus state. The
    /// project is `projectId`, or else `sessionId`'s.
    #[serde(rename = "sync_request", rename_all = "camelCase")]
    SyncRequest {
        #[serde(default)]
        project_id: Option<ProjectId>,
        #[serde(default)]
        session_id: Option<SessionId>,
    },
    /// Subscribes to event channels (`"*"` for all).
    #[serde(rename = "subscribe")]
    Subscribe { channels: Vec<String> },
    /// Unsubscribes from event channels (`"*"` for all).
    #[serde(rename = "unsubscribe")]
    Unsubscribe { channels: Vec<String> },
}

impl ClientMessage {
    /// Every `type` a client may send, dotted and flat. The flat
    /// `terminal_restore` is a server message only.
    pub const TYPES: [&'static str; 15] = [
        "session.attach",
        "terminal_attach",
        "session.detach",
        "terminal_detach",
        "terminal.input",
        "terminal_input",
        "terminal.resize",
        "terminal_resize",
        "ping",
        "heartbeat",
        "subscribe",
        "unsubscribe",
        "focus",
        "blur",
        "sync_request",
    ];
}

/// Why output was skipped.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum GapReason {
    /// The offset asked to resume from is no longer held.
    Evicted,
    /// The client fell behind past its budget.
    SlowClient,
    /// The client resumed with an epoch of another log.
    EpochChanged,
}

/// Why an attachment ended (`session.detached`'s `reason`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum DetachReason {
    /// This socket sent `session.detach` (an attach still waiting for its
    /// session included).
    Detach,
    /// The session was deleted, running or ended.
    Deleted,
    /// On a node of a cluster, the node let go of its copy of another
    /// node's session, which may still exist: attaching again follows it.
    Released,
    /// A reason this version does not know (from a newer server): read it
    /// as the end of the attachment, nothing more.
    #[serde(other)]
    Unknown,
}

/// Server → client.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[serde(tag = "type")]
pub enum ServerMessage {
    /// First message of every connection.
    #[serde(rename = "connected", rename_all = "camelCase")]
    Connected {
        message: String,
        #[serde(rename = "client_count")]
        client_count: usize,
        client_id: String,
    },
    /// The attach succeeded; output follows.
    #[serde(rename = "session.attached", rename_all = "camelCase")]
    Attached {
        session_id: SessionId,
        epoch: Epoch,
        /// The offset from which output follows this message.
        offset: u64,
        cols: u16,
        rows: u16,
        status: SessionStatus,
        /// With `since`: whether resuming was exact.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        recovered: Option<bool>,
        /// The session's log end when this attachment took its
        /// subscription: output below `end` was printed before this attach
        /// (a replay), output from `end` on is live. Absent from older
        /// servers and from the flat dialect.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        end: Option<u64>,
    },
    /// A screen snapshot: output from `offset` on follows it.
    #[serde(rename = "terminal.restore", rename_all = "camelCase")]
    Restore {
        session_id: SessionId,
        data: String,
        offset: u64,
        cols: u16,
        rows: u16,
    },
    /// Live output: `data` starts at log offset `offset`.
    #[serde(rename = "terminal.output", rename_all = "camelCase")]
    Output {
        session_id: SessionId,
        data: String,
        offset: u64,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        stream: Option<Stream>,
    },
    /// Output from `from` to `to` will not be sent; a restore follows.
    #[serde(rename = "session.gap", rename_all = "camelCase")]
    Gap {
        session_id: SessionId,
        recovered: bool,
        from: u64,
        to: u64,
        reason: GapReason,
    },
    /// The window size changed.
    #[serde(rename = "session.resized", rename_all = "camelCase")]
    Resized {
        session_id: SessionId,
        cols: u16,
        rows: u16,
    },
    /// The program ended and all its output was sent.
    #[serde(rename = "session.exit", rename_all = "camelCase")]
    Exit {
        session_id: SessionId,
        status: SessionStatus,
        exit_code: Option<i32>,
        signal: Option<i32>,
        /// Milliseconds from start to end.
        duration: Option<u64>,
    },
    /// The subscription ended, for `reason`.
    #[serde(rename = "session.detached", rename_all = "camelCase")]
    Detached {
        session_id: SessionId,
        /// Why it ended: always sent by this server to a `/ws` socket
        /// that attached with `session.attach` (its flat dialect, the
        /// per-terminal socket `/ws?sessionId=` and `/ws/terminal` keep
        /// their older shape, without it); `None` from servers before
        /// this field.
        #[serde(default, skip_serializing_if = "Option::is_none")]
        reason: Option<DetachReason>,
    },
    /// Something was wrong; the connection stays open.
    #[serde(rename = "error", rename_all = "camelCase")]
    Error {
        code: ErrorCode,
        message: String,
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        /// The request this error answers, where a client cannot tell it
        /// by order: `session.attach` on the refusal of an attach whose
        /// wait (`attach_wait_ms`) ended without its session, or that found
        /// no free attachment slot ([`ATTACH_REQUEST`]); `terminal.input`
        /// ([`INPUT_REQUEST`]) and `terminal.resize` ([`RESIZE_REQUEST`])
        /// on every refusal of an input or a resize (`/ws`, not its flat
        /// dialect). Absent otherwise (and from servers before this field).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        request: Option<String>,
        /// The `seq` of the `terminal.input` this error refuses, when it
        /// had one (with `request` `terminal.input`): that input was not
        /// applied, and a client may send its data again with a new seq.
        /// Absent otherwise (and from servers before this field).
        #[serde(default, skip_serializing_if = "Option::is_none")]
        seq: Option<u64>,
    },
    #[serde(rename = "pong")]
    Pong,
    /// The answer to `heartbeat`, with its `sessionId` when it had one.
    #[serde(rename = "heartbeat", rename_all = "camelCase")]
    Heartbeat {
        #[serde(default, skip_serializing_if = "Option::is_none")]
        session_id: Option<SessionId>,
        timestamp: u64,
    },
    /// The channels this socket is subscribed to now.
    #[serde(rename = "subscribed")]
    Subscribed { channels: Vec<String> },
}

/// Binary output frames.
///
/// Layout (all integers big-endian):
/// `[kind: u8 = 1][stream: u8][id_len: u8][offset: u64][session id][data]`.
/// `stream` is [`Stream::tag`]; the session id is at most 128 bytes.
pub mod binary {
    use crate::output::Stream;

    /// The `kind` byte of an output frame.
    pub const KIND_OUTPUT: u8 = 1;
    /// Bytes before the session id.
    pub const HEADER_LEN: usize = 11;

    /// Writes the header of an output frame for `data.len()` more bytes.
    pub fn encode_header(out: &mut Vec<u8>, session_id: &str, stream: Stream, offset: u64) {
        out.push(KIND_OUTPUT);
        out.push(stream.tag());
        out.push(session_id.len() as u8);
        out.extend_from_slice(&offset.to_be_bytes());
        out.extend_from_slice(session_id.as_bytes());
    }

    /// A decoded output frame.
    #[derive(Debug, PartialEq, Eq)]
    pub struct OutputFrame<'a> {
        pub session_id: &'a str,
        pub stream: Stream,
        pub offset: u64,
        pub data: &'a [u8],
    }

    /// Decodes an output frame; `None` when it is not one.
    pub fn decode(frame: &[u8]) -> Option<OutputFrame<'_>> {
        if frame.len() < HEADER_LEN || frame[0] != KIND_OUTPUT {
            return None;
        }
        let stream = Stream::from_tag(frame[1])?;
        let id_len = frame[2] as usize;
        let offset = u64::from_be_bytes(frame[3..11].try_into().ok()?);
        let id_end = HEADER_LEN.checked_add(id_len)?;
        let session_id = std::str::from_utf8(frame.get(HEADER_LEN..id_end)?).ok()?;
        Some(OutputFrame {
            session_id,
            stream,
            offset,
            data: &frame[id_end..],
        })
    }
}

#[cfg(test)]
mod tests;
