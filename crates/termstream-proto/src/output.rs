//! Output chunks and output reads.
//!
//! A session's output is one log addressed by byte offset from 0 (see
//! [`crate::Epoch`]). A pty session's log is one stream; a command session's
//! chunks each say whether they came from stdout or stderr.

use serde::{Deserialize, Serialize};

use crate::ids::Epoch;

/// Which stream a chunk of output came from.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum Stream {
    /// The terminal of a pty session.
    Pty,
    /// A command session's standard output.
    Stdout,
    /// A command session's standard error.
    Stderr,
}

impl Stream {
    /// The one-byte tag used in the on-disk index.
    pub fn tag(self) -> u8 {
        match self {
            Stream::Pty => 0,
            Stream::Stdout => 1,
            Stream::Stderr => 2,
        }
    }

    /// The inverse of [`Stream::tag`].
    pub fn from_tag(tag: u8) -> Option<Stream> {
        match tag {
            0 => Some(Stream::Pty),
            1 => Some(Stream::Stdout),
            2 => Some(Stream::Stderr),
            _ => None,
        }
    }
}

/// How a chunk's `data` is written in JSON.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "lowercase")]
pub enum ChunkEncoding {
    /// `data` is the bytes themselves (they were valid UTF-8).
    Utf8,
    /// `data` is base64 of the bytes (they were not valid UTF-8 on their own,
    /// e.g. a multi-byte character split across two reads).
    Base64,
}

/// One chunk of output, as the JSON output read gives it.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OutputChunk {
    /// Log offset of the chunk's first byte.
    pub offset: u64,
    pub stream: Stream,
    /// Milliseconds since the session started when the chunk was read.
    pub time_ms: u64,
    pub encoding: ChunkEncoding,
    pub data: String,
}

/// `GET /api/sessions/{id}/output?since=N&format=json`.
#[derive(Debug, Clone, PartialEq, Serialize, Deserialize)]
#[cfg_attr(feature = "openapi", derive(utoipa::ToSchema))]
#[serde(rename_all = "camelCase")]
pub struct OutputPage {
    pub epoch: Epoch,
    /// The offset the page starts at (the `since` asked for).
    pub offset: u64,
    /// The offset to ask for next.
    pub next_offset: u64,
    /// One past the last byte the session has produced so far.
    pub end_offset: u64,
    /// Whether the session may still produce output after `end_offset`.
    pub running: bool,
    pub chunks: Vec<OutputChunk>,
}
