//! The in-memory tail of a session's output log.
//!
//! Output is one log addressed by byte offset from 0. [`OutputRing`] keeps
//! the most recent chunks within a byte budget; older output is on disk only
//! (see `store`). Each chunk also costs a fixed [`CHUNK_OVERHEAD`] against the
//! budget, so a stream of one-byte reads cannot grow the ring's bookkeeping
//! past the budget either.
//!
//! Architecture invariant: chunks are contiguous. For every pair of
//! neighbours, `a.offset + a.data.len() == b.offset`, and the last chunk ends
//! at `end()`.

use std::collections::VecDeque;

use bytes::Bytes;
use termstream_proto::Stream;

/// What one chunk costs the budget on top of its bytes: the deque slot and
/// the allocation header, rounded up.
pub const CHUNK_OVERHEAD: usize = 64;

/// One read's worth of output.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Chunk {
    /// Log offset of the first byte.
    pub offset: u64,
    pub stream: Stream,
    /// Milliseconds since the session started when the bytes were read.
    pub time_ms: u64,
    /// When the actor read the bytes from the program, for the delivery
    /// latency metric; `None` for chunks read back from disk.
    pub read_at: Option<std::time::Instant>,
    pub data: Bytes,
    /// The chunk as a binary WebSocket output frame (header, then `data`),
    /// built once by the actor so that every socket can send the same bytes
    /// without a copy. Valid only while `data` is the whole chunk; see
    /// [`Chunk::frame`].
    pub wire: Option<Bytes>,
}

impl Chunk {
    /// The binary output frame of this chunk, when it is still whole (not
    /// cut by an offset or a size limit). `id_len` is the session id's length.
    pub fn frame(&self, id_len: usize) -> Option<Bytes> {
        let wire = self.wire.as_ref()?;
        let header = termstream_proto::ws::binary::HEADER_LEN + id_len;
        let whole = wire.len() == header + self.data.len() && std::ptr::eq(wire[header..].as_ptr(), self.data.as_ptr());
        whole.then(|| wire.clone())
    }

    /// The offset one past the chunk's last byte.
    pub fn end(&self) -> u64 {
        self.offset + self.data.len() as u64
    }

    /// What the chunk costs a ring's budget: its bytes (with the frame
    /// header when it holds a frame) and [`CHUNK_OVERHEAD`].
    pub fn cost(&self) -> usize {
        self.wire.as_ref().map_or(self.data.len(), Bytes::len) + CHUNK_OVERHEAD
    }

    /// The part of the chunk from `offset` on; `offset` must lie inside it.
    pub fn from_offset(&self, offset: u64) -> Chunk {
        let skip = offset.saturating_sub(self.offset).min(self.data.len() as u64) as usize;
        Chunk {
            offset: self.offset + skip as u64,
            stream: self.stream,
            time_ms: self.time_ms,
            read_at: self.read_at,
            data: self.data.slice(skip..),
            wire: self.wire.clone(),
        }
    }
}

/// Answer of [`OutputRing::read`].
#[derive(Debug, PartialEq, Eq)]
pub enum RingRead {
    /// The chunks from the offset asked for, in order (maybe none, at the end).
    Held(Vec<Chunk>),
    /// The offset asked for is older than the ring's start.
    Evicted { start: u64 },
    /// The offset asked for lies past the end of the log.
    Future { end: u64 },
}

/// Recent output within a byte budget.
#[derive(Debug)]
pub struct OutputRing {
    chunks: VecDeque<Chunk>,
    /// Bytes charged against the budget: data plus [`CHUNK_OVERHEAD`] each.
    charged: usize,
    budget: usize,
    /// Offset one past the last byte ever pushed.
    end: u64,
}

impl OutputRing {
    /// An empty ring whose log starts at `end` (0 for a new session).
    pub fn new(budget: usize, end: u64) -> OutputRing {
        OutputRing {
            chunks: VecDeque::new(),
            charged: 0,
            budget,
            end,
        }
    }

    /// The earliest offset held (equal to `end()` when empty).
    pub fn start(&self) -> u64 {
        self.chunks.front().map_or(self.end, |c| c.offset)
    }

    /// One past the last byte pushed.
    pub fn end(&self) -> u64 {
        self.end
    }

    /// Appends a chunk that starts at `end()`, evicting old chunks to stay
    /// within the budget. The newest chunk always stays, even when larger
    /// than the budget on its own.
    pub fn push(&mut self, chunk: Chunk) {
        debug_assert_eq!(chunk.offset, self.end, "chunks must be contiguous");
        if chunk.data.is_empty() {
            return;
        }
        self.end = chunk.end();
        self.charged += chunk.cost();
        self.chunks.push_back(chunk);
        while self.charged > self.budget && self.chunks.len() > 1 {
            if let Some(old) = self.chunks.pop_front() {
                self.charged -= old.cost();
            }
        }
    }

    /// Chunks from `since`, at most about `max_bytes` of data (at least one
    /// chunk, cut to fit, when any is held).
    pub fn read(&self, since: u64, max_bytes: usize) -> RingRead {
        if since > self.end {
            return RingRead::Future { end: self.end };
        }
        if since < self.start() {
            return RingRead::Evicted { start: self.start() };
        }
        // Chunks are contiguous and sorted: find the one holding `since`.
        let first = self.chunks.partition_point(|c| c.end() <= since);
        let mut out = Vec::new();
        let mut taken = 0usize;
        for chunk in self.chunks.iter().skip(first) {
            if taken >= max_bytes {
                break;
            }
            let mut part = chunk.from_offset(since.max(chunk.offset));
            let room = max_bytes - taken;
            if part.data.len() > room {
                part.data = part.data.slice(..room);
            }
            taken += part.data.len();
            out.push(part);
        }
        RingRead::Held(out)
    }

    /// Memory charged against the budget now.
    pub fn charged(&self) -> usize {
        self.charged
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn chunk(offset: u64, s: &str) -> Chunk {
        Chunk {
            offset,
            stream: Stream::Pty,
            time_ms: 0,
            read_at: None,
            data: Bytes::copy_from_slice(s.as_bytes()),
            wire: None,
        }
    }

    fn text(chunks: &[Chunk]) -> String {
        chunks.iter().map(|c| std::str::from_utf8(&c.data).unwrap()).collect()
    }

    #[test]
    fn reads_from_any_held_offset() {
        let mut ring = OutputRing::new(1 << 20, 0);
        ring.push(chunk(0, "hello "));
        ring.push(chunk(6, "world"));
        assert_eq!(ring.end(), 11);
        let RingRead::Held(c) = ring.read(3, usize::MAX) else {
            panic!()
        };
        assert_eq!(text(&c), "lo world");
        assert_eq!(c[0].offset, 3);
        let RingRead::Held(c) = ring.read(11, usize::MAX) else {
            panic!()
        };
        assert!(c.is_empty());
        assert_eq!(ring.read(12, 1), RingRead::Future { end: 11 });
        let RingRead::Held(c) = ring.read(0, 8) else { panic!() };
        assert_eq!(text(&c), "hello wo");
    }

    #[test]
    fn budget_evicts_oldest_and_counts_overhead() {
        let budget = 10 * (CHUNK_OVERHEAD + 1);
        let mut ring = OutputRing::new(budget, 0);
        for i in 0..100u64 {
            ring.push(chunk(i, "x"));
        }
        assert!(ring.charged() <= budget);
        assert_eq!(ring.start(), 90);
        assert_eq!(ring.read(89, 1), RingRead::Evicted { start: 90 });
        // A chunk larger than the budget still stays, alone.
        ring.push(Chunk {
            offset: 100,
            stream: Stream::Pty,
            time_ms: 0,
            read_at: None,
            data: Bytes::from(vec![b'y'; budget * 2]),
            wire: None,
        });
        assert_eq!(ring.start(), 100);
        assert_eq!(ring.end(), 100 + 2 * budget as u64);
    }
}
