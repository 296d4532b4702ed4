//! What nodes write to Redis and read back: directory records, output
//! stream entries, and requests to an owner with their answers.
//!
//! A stream entry's id is `<offset>-<n>`: the log offset of its first byte
//! (output) or where it happened (resize, terminating, end), and a sequence
//! Redis picks (`<offset>-*`), so several events at one offset keep their
//! order. Entries are appended in log order, so ids rise with offsets and a
//! reader can start at any offset with `XRANGE`/`XREAD`.

use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use redis::Value;
use serde::{Deserialize, Serialize};
use termstream_proto::{Epoch, ErrorCode, SessionId, SessionInfo, Snapshot, Stream};

use crate::session::SessionError;
use crate::session::log::Chunk;
use crate::session::store::Event;
use crate::session::store::page::{Cursor, Page};

/// A session's entry in the directory (`termstream:dir`).
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Record {
    /// The node that owns the session.
    pub node: String,
    pub info: SessionInfo,
}

/// One event of a session's output stream.
#[derive(Debug, Clone)]
pub enum Entry {
    Output(Chunk),
    Resized { offset: u64, cols: u16, rows: u16 },
    Terminating,
    Ended(Arc<SessionInfo>),
}

/// An entry and where it lies.
#[derive(Debug, Clone)]
pub struct Read {
    /// The entry's id, for the next `XREAD`.
    pub id: String,
    /// The log offset in its id.
    pub offset: u64,
    pub entry: Entry,
}

/// The fields of an entry, for `XADD`.
pub fn fields(entry: &Entry) -> Vec<(&'static str, Vec<u8>)> {
    match entry {
        Entry::Output(c) => vec![
            ("k", b"o".to_vec()),
            ("s", stream_tag(c.stream).to_vec()),
            ("t", c.time_ms.to_string().into_bytes()),
            ("d", c.data.to_vec()),
        ],
        Entry::Resized { cols, rows, .. } => vec![
            ("k", b"r".to_vec()),
            ("c", cols.to_string().into_bytes()),
            ("r", rows.to_string().into_bytes()),
        ],
        Entry::Terminating => vec![("k", b"t".to_vec())],
        Entry::Ended(info) => vec![
            ("k", b"e".to_vec()),
            ("i", serde_json::to_vec(&**info).unwrap_or_default()),
        ],
    }
}

fn stream_tag(s: Stream) -> &'static [u8] {
    match s {
        Stream::Pty => b"p",
        Stream::Stdout => b"o",
        Stream::Stderr => b"e",
    }
}

/// The entries of an `XRANGE`/`XREVRANGE` answer (or one stream of an
/// `XREAD` answer), skipping any it cannot read.
pub fn entries(v: &Value) -> Vec<Read> {
    let Value::Array(items) = v else { return Vec::new() };
    items.iter().filter_map(entry).collect()
}

/// The entries of an `XREAD` answer for one stream (nil: none).
pub fn xread_entries(v: &Value) -> Vec<Read> {
    match v {
        Value::Array(streams) => streams
            .iter()
            .filter_map(|s| match s {
                Value::Array(pair) if pair.len() == 2 => Some(entries(&pair[1])),
                _ => None,
            })
            .flatten()
            .collect(),
        Value::Map(streams) => streams.iter().flat_map(|(_, e)| entries(e)).collect(),
        _ => Vec::new(),
    }
}

/// The id of the last entry of an `XREAD` answer for one stream, whether
/// or not [`xread_entries`] can read it (nil: none).
pub fn xread_last_id(v: &Value) -> Option<String> {
    let items = match v {
        Value::Array(streams) => streams.iter().rev().find_map(|s| match s {
            Value::Array(pair) if pair.len() == 2 => Some(&pair[1]),
            _ => None,
        })?,
        Value::Map(streams) => &streams.iter().rev().find(|(_, e)| matches!(e, Value::Array(_)))?.1,
        _ => return None,
    };
    let Value::Array(items) = items else { return None };
    let Value::Array(pair) = items.last()? else { return None };
    Some(std::str::from_utf8(bytes(pair.first()?)?).ok()?.to_owned())
}

fn bytes(v: &Value) -> Option<&[u8]> {
    match v {
        Value::BulkString(b) => Some(b),
        Value::SimpleString(s) => Some(s.as_bytes()),
        _ => None,
    }
}

fn entry(v: &Value) -> Option<Read> {
    let Value::Array(pair) = v else { return None };
    let id = std::str::from_utf8(bytes(pair.first()?)?).ok()?.to_owned();
    let offset: u64 = id.split_once('-')?.0.parse().ok()?;
    let Value::Array(flat) = pair.get(1)? else { return None };
    let field = |name: &[u8]| {
        flat.chunks(2)
            .find(|kv| kv.len() == 2 && bytes(&kv[0]) == Some(name))
            .and_then(|kv| bytes(&kv[1]))
    };
    let num = |name: &[u8]| field(name).and_then(|b| std::str::from_utf8(b).ok()?.parse::<u64>().ok());
    let entry = match field(b"k")? {
        b"o" => Entry::Output(Chunk {
            offset,
            stream: match field(b"s")? {
                b"o" => Stream::Stdout,
                b"e" => Stream::Stderr,
                _ => Stream::Pty,
            },
            time_ms: num(b"t").unwrap_or(0),
            read_at: None,
            data: Bytes::copy_from_slice(field(b"d")?),
            wire: None,
        }),
        b"r" => Entry::Resized {
            offset,
            cols: num(b"c")? as u16,
            rows: num(b"r")? as u16,
        },
        b"t" => Entry::Terminating,
        b"e" => Entry::Ended(Arc::new(serde_json::from_slice(field(b"i")?).ok()?)),
        _ => return None,
    };
    Some(Read { id, offset, entry })
}

/// The `XREAD`/`XRANGE` id just before every entry at `offset` or later.
pub fn before(offset: u64) -> String {
    match offset {
        0 => "0-0".to_owned(),
        n => format!("{}-{}", n - 1, u64::MAX),
    }
}

/// What one node asks of a session's owner.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "op", rename_all = "snake_case")]
pub enum Op {
    Input {
        data: String,
        eof: bool,
        seq: Option<(String, u64)>,
        wait_ms: u64,
    },
    Resize {
        cols: u16,
        rows: u16,
        /// Whether to answer with the session's info after the resize
        /// ([`Answer::Info`]) rather than `Done`. Asked for rather than
        /// always sent: a node that predates it could not read that
        /// answer, and an owner that predates it ignores the field and
        /// answers `Done`. Left out when `false`, as such a node writes it.
        #[serde(default, skip_serializing_if = "std::ops::Not::not")]
        info: bool,
    },
    Terminate,
    Delete,
    Snapshot,
    /// Output from the owner's log (ring, else disk), at most `max` bytes.
    Read {
        since: u64,
        max: usize,
    },
    /// A page of the owner's stored log (output and resizes, for a
    /// recording) from `at` (the start when `None`), about `max` bytes.
    Events {
        at: Option<Cursor>,
        max: usize,
    },
}

/// A request on `termstream:req:<owner>`.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Request {
    /// Unique per asking node; the answer carries it back.
    pub id: u64,
    /// The asking node, where the answer goes.
    pub from: String,
    pub session: SessionId,
    /// The incarnation of `session` the asker knows (from its record). The
    /// owner applies the request only to its session of that id and epoch,
    /// and answers as for an id it does not have otherwise: a request that
    /// sat in the list (which expires 4 × `lost_after` after its last push,
    /// so it can wait longer while asks keep coming), or an owner
    /// that was slow, must not act on a newer session that reused the id.
    /// `None` from a node that predates it (a rolling upgrade): applied to
    /// the session of that id, whatever its epoch, as such a node expects.
    /// Every request of this version carries it; an owner that predates it
    /// ignores it.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub epoch: Option<Epoch>,
    #[serde(flatten)]
    pub op: Op,
}

/// An owner's answer.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Reply {
    pub id: u64,
    pub result: Result<Answer, Failure>,
}

/// What a request succeeded with.
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Answer {
    Done,
    Deleted(bool),
    /// The session's info after the request (a resize that asked for it).
    Info(SessionInfo),
    Snapshot(Snapshot),
    /// Chunks as `(offset, stream tag, time, base64 data)`.
    Chunks(Vec<(u64, String, u64, String)>),
    /// A page of a stored log, and where the next starts (`None`: the end).
    Events {
        events: Vec<LogEntry>,
        next: Option<Cursor>,
    },
}

/// One event of a stored log in an [`Answer::Events`].
#[derive(Debug, Clone, Serialize, Deserialize)]
#[serde(tag = "k", rename_all = "snake_case")]
pub enum LogEntry {
    /// Output: its offset, stream tag, time and base64 data.
    Output {
        offset: u64,
        stream: String,
        time: u64,
        data: String,
    },
    Resize {
        time: u64,
        cols: u16,
        rows: u16,
    },
}

/// Why a request failed, as the owner's [`SessionError`] would say.
#[derive(Debug, Clone, Serialize, Deserialize)]
pub struct Failure {
    pub code: ErrorCode,
    pub message: String,
    /// For `Gone`: the earliest offset held.
    pub earliest: Option<u64>,
    /// For `InputBusy`: what was taken of how much.
    pub busy: Option<(usize, usize)>,
}

impl From<&SessionError> for Failure {
    fn from(e: &SessionError) -> Failure {
        Failure {
            code: e.code(),
            message: e.to_string(),
            earliest: match e {
                SessionError::Gone { earliest } => Some(*earliest),
                _ => None,
            },
            busy: match e {
                SessionError::InputBusy { taken, total } => Some((*taken, *total)),
                _ => None,
            },
        }
    }
}

impl From<Failure> for SessionError {
    fn from(f: Failure) -> SessionError {
        match (f.earliest, f.busy) {
            (Some(earliest), _) => SessionError::Gone { earliest },
            (_, Some((taken, total))) => SessionError::InputBusy { taken, total },
            _ => SessionError::Remote {
                code: f.code,
                message: f.message,
            },
        }
    }
}

/// Chunks for an [`Answer::Chunks`].
pub fn encode_chunks(chunks: &[Chunk]) -> Answer {
    Answer::Chunks(chunks.iter().map(encode_chunk).collect())
}

fn encode_chunk(c: &Chunk) -> (u64, String, u64, String) {
    let tag = String::from_utf8_lossy(stream_tag(c.stream)).into_owned();
    let b64 = base64::engine::general_purpose::STANDARD;
    (c.offset, tag, c.time_ms, b64.encode(&c.data))
}

/// The chunks of an [`Answer::Chunks`].
pub fn decode_chunks(raw: Vec<(u64, String, u64, String)>) -> Vec<Chunk> {
    raw.into_iter().filter_map(decode_chunk).collect()
}

fn decode_chunk((offset, tag, time_ms, data): (u64, String, u64, String)) -> Option<Chunk> {
    Some(Chunk {
        offset,
        stream: match tag.as_str() {
            "o" => Stream::Stdout,
            "e" => Stream::Stderr,
            _ => Stream::Pty,
        },
        time_ms,
        read_at: None,
        data: Bytes::from(base64::engine::general_purpose::STANDARD.decode(data).ok()?),
        wire: None,
    })
}

/// A page of a stored log for an [`Answer::Events`].
pub fn encode_page(page: Page) -> Answer {
    let events = page
        .events
        .iter()
        .map(|ev| match ev {
            Event::Output(c) => {
                let (offset, stream, time, data) = encode_chunk(c);
                LogEntry::Output {
                    offset,
                    stream,
                    time,
                    data,
                }
            }
            Event::Resize { time_ms, cols, rows } => LogEntry::Resize {
                time: *time_ms,
                cols: *cols,
                rows: *rows,
            },
        })
        .collect();
    Answer::Events {
        events,
        next: page.next,
    }
}

/// The events of an [`Answer::Events`]; `None` if one cannot be read (a
/// page with a hole would make a wrong recording).
pub fn decode_events(raw: Vec<LogEntry>) -> Option<Vec<Event>> {
    raw.into_iter()
        .map(|e| match e {
            LogEntry::Output {
                offset,
                stream,
                time,
                data,
            } => decode_chunk((offset, stream, time, data)).map(Event::Output),
            LogEntry::Resize { time, cols, rows } => Some(Event::Resize {
                time_ms: time,
                cols,
                rows,
            }),
        })
        .collect()
}

#[cfg(test)]
mod tests;
