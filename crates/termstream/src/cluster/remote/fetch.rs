//! Reads of a remote session's output that its stand-in's ring cannot
//! answer: from the session's Redis stream, else from the owner's log.
//!
//! The stream keeps the last `cluster_stream_bytes`; what it no longer
//! holds (or does not hold yet, after Redis came back empty and before the
//! owner republished) is asked of the owner, whose disk log is the source
//! of truth. Only when the owner says the output is gone, or cannot be
//! asked (it died) while the stream starts later, is the answer
//! `Evicted`, which the handle turns into `Gone` with the earliest offset
//! held.

use super::{Remote, entry_chunk};
use crate::cluster::requests::{ASK_TIMEOUT, ask};
use crate::cluster::wire::{self, Answer, Op};
use crate::session::SessionError;
use crate::session::log::{Chunk, RingRead};

/// The most entries one `XRANGE` returns.
const RANGE_COUNT: usize = 64;

/// Output from `since`, at most about `max` bytes; `end`: the end known.
pub(super) async fn read(remote: &Remote, since: u64, max: usize, end: u64) -> RingRead {
    let read = read_anywhere(remote, since, max, end).await;
    if let (RingRead::Held(chunks), Some(info)) = (&read, remote.info.get().and_then(std::sync::Weak::upgrade))
        && let Some(last) = chunks.last()
    {
        info.send_if_modified(|i| {
            i.output_offset = i.output_offset.max(last.end());
            false
        });
    }
    read
}

async fn read_anywhere(remote: &Remote, since: u64, max: usize, end: u64) -> RingRead {
    let stream = from_stream(remote, since, max).await;
    let first = match &stream {
        Ok(chunks) if chunks.first().is_some_and(|c| c.offset <= since) => {
            return RingRead::Held(contiguous(chunks.clone(), since, max));
        }
        Ok(chunks) if chunks.is_empty() && since >= end => return RingRead::Held(Vec::new()),
        Ok(chunks) => chunks.first().map(|c| c.offset),
        Err(_) => None,
    };
    match ask(
        &remote.c,
        &remote.owner,
        &remote.id,
        remote.epoch,
        Op::Read { since, max },
        ASK_TIMEOUT,
    )
    .await
    {
        Ok(Answer::Chunks(raw)) => RingRead::Held(contiguous(wire::decode_chunks(raw), since, max)),
        Err(SessionError::Gone { earliest }) => RingRead::Evicted { start: earliest },
        _ => match first {
            Some(start) => RingRead::Evicted { start },
            None => RingRead::Held(Vec::new()),
        },
    }
}

/// Chunks from the stream starting with the one that holds `since`.
async fn from_stream(remote: &Remote, since: u64, max: usize) -> redis::RedisResult<Vec<Chunk>> {
    let key = remote.key();
    // The last entry at or before `since`: it may hold `since`.
    let prev: redis::Value = remote
        .c
        .redis
        .run(
            redis::cmd("XREVRANGE")
                .arg(&key)
                .arg(format!("{since}-{}", u64::MAX))
                .arg("-")
                .arg("COUNT")
                .arg(1),
        )
        .await?;
    let start = match wire::entries(&prev).pop() {
        Some(r) if matches!(&r.entry, wire::Entry::Output(c) if c.end() > since) => r.id,
        _ => format!("{since}-0"),
    };
    let mut chunks = Vec::new();
    let mut from = start;
    let mut size = 0;
    loop {
        let v: redis::Value = remote
            .c
            .redis
            .run(
                redis::cmd("XRANGE")
                    .arg(&key)
                    .arg(&from)
                    .arg("+")
                    .arg("COUNT")
                    .arg(RANGE_COUNT),
            )
            .await?;
        let entries = wire::entries(&v);
        let Some(last) = entries.last() else { break };
        from = format!("({}", last.id);
        let n = entries.len();
        for c in entries.into_iter().filter_map(entry_chunk) {
            size += c.data.len();
            chunks.push(c);
        }
        if size >= max || n < RANGE_COUNT {
            break;
        }
    }
    Ok(chunks)
}

/// The chunks from `since` on while they follow each other, cut to `max`
/// bytes, as the owner's ring cuts a read (a stream entry merges many of
/// the owner's chunks, so it may hold more than one read may return).
fn contiguous(chunks: Vec<Chunk>, since: u64, max: usize) -> Vec<Chunk> {
    let mut out: Vec<Chunk> = Vec::new();
    let mut next = since;
    let mut size = 0;
    for c in chunks {
        if c.end() <= next {
            continue;
        }
        if c.offset > next || size >= max {
            break;
        }
        let mut c = c.from_offset(next);
        if c.data.len() > max - size {
            c.data = c.data.slice(..max - size);
        }
        next = c.end();
        size += c.data.len();
        out.push(c);
    }
    out
}

#[cfg(test)]
mod tests {
    use bytes::Bytes;
    use termstream_proto::Stream;

    use super::*;

    fn chunk(offset: u64, data: &'static str) -> Chunk {
        Chunk {
            offset,
            stream: Stream::Pty,
            time_ms: 0,
            read_at: None,
            data: Bytes::from_static(data.as_bytes()),
            wire: None,
        }
    }

    #[test]
    fn contiguous_starts_inside_a_chunk_and_stops_at_a_gap() {
        let got = contiguous(vec![chunk(0, "abcd"), chunk(4, "ef"), chunk(9, "xyz")], 2, 100);
        let bytes: Vec<u8> = got.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(bytes, b"cdef");
        assert_eq!(got[0].offset, 2);
    }

    #[test]
    fn contiguous_cuts_to_max_as_the_ring_does() {
        let got = contiguous(vec![chunk(0, "abcd"), chunk(4, "ef")], 1, 4);
        let bytes: Vec<u8> = got.iter().flat_map(|c| c.data.to_vec()).collect();
        assert_eq!(bytes, b"bcde");
        assert_eq!(got.last().map(Chunk::end), Some(5));
    }
}
