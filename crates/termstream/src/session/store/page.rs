//! A stored log's events read a page at a time, from a [`Cursor`]: how
//! another node of a cluster gets a session's recording from its owner
//! without either side holding more than a page.
//!
//! A page yields exactly the events [`super::for_each_event`] yields, in
//! the same order, so a recording made from pages is the one made from
//! the whole log. Between pages nothing is kept: the cursor names a
//! segment and a record of its index, and the next page lists the
//! segments again and carries on there.
//!
//! A page reads only the index records it yields (from the cursor's record
//! on, [`INDEX_BATCH`] at a time), not the segment's whole index, and holds
//! at most [`PAGE_EVENTS`] events, whatever their bytes: a log of resizes
//! or one-byte chunks is paged as well as one of large chunks.

use std::fs::File;
use std::io::{self, Read, Seek, SeekFrom};
use std::path::Path;

use bytes::Bytes;
use serde::{Deserialize, Serialize};
use termstream_proto::Stream;

use super::{Event, KIND_RESIZE, RECORD_LEN, parse_record, segment_name, segments};
use crate::session::log::Chunk;

/// The most events one page holds (a resize carries no output bytes).
pub const PAGE_EVENTS: usize = 4096;
/// Index records read at once (8 KiB).
const INDEX_BATCH: usize = 256;

/// Where a page starts: a segment (its start offset) and the index of a
/// record in that segment's index.
#[derive(Debug, Clone, Copy, PartialEq, Eq, Serialize, Deserialize)]
pub struct Cursor {
    pub segment: u64,
    pub record: u64,
}

/// One page of events, and where the next starts (`None`: this page
/// reached the end of the log as it is now).
#[derive(Debug)]
pub struct Page {
    pub events: Vec<Event>,
    pub next: Option<Cursor>,
}

/// Reads the events from `at` (the oldest segment's first record when
/// `None`) until about `max_bytes` of output (at least one event) or
/// [`PAGE_EVENTS`] events. A
/// cursor into a segment deleted since (the log outgrew its byte limit)
/// is an error of kind `NotFound`, as reading that segment whole would be.
pub fn read_page(dir: &Path, at: Option<Cursor>, max_bytes: usize) -> io::Result<Page> {
    let starts = segments(dir)?;
    let Some(&oldest) = starts.first() else {
        return Ok(Page {
            events: Vec::new(),
            next: None,
        });
    };
    let at = at.unwrap_or(Cursor {
        segment: oldest,
        record: 0,
    });
    let Ok(first) = starts.binary_search(&at.segment) else {
        return Err(io::Error::new(
            io::ErrorKind::NotFound,
            format!("segment {} of the log was deleted while being read", at.segment),
        ));
    };
    let mut events = Vec::new();
    let mut taken = 0usize;
    let mut record = at.record;
    for (i, &start) in starts.iter().enumerate().skip(first) {
        let mut idx = match Index::open(dir, start) {
            // The newest segment, being created: no record yet.
            Err(e) if e.kind() == io::ErrorKind::NotFound && i + 1 == starts.len() => break,
            idx => idx?,
        };
        let mut out = File::open(dir.join(segment_name(start, "out")))?;
        let count = idx.count;
        let mut batch = Vec::new();
        while record < count {
            idx.read(record, &mut batch)?;
            for rec in batch.chunks_exact(RECORD_LEN) {
                record += 1;
                let Some(ev) = event(rec, &mut out, start)? else {
                    continue;
                };
                if let Event::Output(c) = &ev {
                    taken += c.data.len();
                }
                events.push(ev);
                let full = taken >= max_bytes || events.len() >= PAGE_EVENTS;
                if full && (record < count || i + 1 < starts.len()) {
                    let next = if record < count {
                        Cursor { segment: start, record }
                    } else {
                        Cursor {
                            segment: starts[i + 1],
                            record: 0,
                        }
                    };
                    return Ok(Page {
                        events,
                        next: Some(next),
                    });
                }
            }
        }
        record = 0;
    }
    Ok(Page { events, next: None })
}

/// A segment's index file, read a batch of records at a time.
struct Index {
    file: File,
    /// The whole records in it when opened (a record being written at its
    /// end is left for a later page).
    count: u64,
}

impl Index {
    fn open(dir: &Path, start: u64) -> io::Result<Index> {
        let file = File::open(dir.join(segment_name(start, "idx")))?;
        let count = file.metadata()?.len() / RECORD_LEN as u64;
        Ok(Index { file, count })
    }

    /// Reads up to [`INDEX_BATCH`] whole records from record `from` into
    /// `batch`.
    fn read(&mut self, from: u64, batch: &mut Vec<u8>) -> io::Result<()> {
        let n = (self.count - from).min(INDEX_BATCH as u64) as usize;
        batch.resize(n * RECORD_LEN, 0);
        self.file.seek(SeekFrom::Start(from * RECORD_LEN as u64))?;
        self.file.read_exact(batch)
    }
}

/// The event of one index record, as a whole-segment read makes it.
fn event(rec: &[u8], out: &mut File, start: u64) -> io::Result<Option<Event>> {
    let Some((offset, time_ms, len, kind, cols, rows)) = parse_record(rec) else {
        return Ok(None);
    };
    if kind == KIND_RESIZE {
        return Ok(Some(Event::Resize { time_ms, cols, rows }));
    }
    let Some(stream) = Stream::from_tag(kind) else {
        return Ok(None);
    };
    if len == 0 && offset == 0 {
        return Ok(None);
    }
    let mut data = vec![0u8; len as usize];
    out.seek(SeekFrom::Start(offset - start))?;
    out.read_exact(&mut data)?;
    Ok(Some(Event::Output(Chunk {
        offset,
        stream,
        time_ms,
        read_at: None,
        data: Bytes::from(data),
        wire: None,
    })))
}

#[cfg(test)]
mod tests {
    use super::super::{DiskLimits, LogWriter, for_each_event};
    use super::*;

    fn chunk(offset: u64, s: &str) -> Chunk {
        Chunk {
            offset,
            stream: Stream::Stdout,
            time_ms: offset,
            read_at: None,
            data: Bytes::copy_from_slice(s.as_bytes()),
            wire: None,
        }
    }

    #[test]
    fn pages_of_any_size_yield_the_whole_log_in_order() {
        let dir = tempfile::tempdir().unwrap();
        let limits = DiskLimits {
            segment_bytes: 10,
            max_bytes: 1 << 20,
        };
        let mut w = LogWriter::create(dir.path(), limits).unwrap();
        w.append_resize(0, 0, 80, 24).unwrap();
        let mut offset = 0;
        for (i, s) in ["abcd", "efghij", "k", "lmnopqrstu", "v", "wxyz"].iter().enumerate() {
            w.append_output(&chunk(offset, s)).unwrap();
            offset += s.len() as u64;
            if i % 2 == 1 {
                w.append_resize(offset, offset, 100 + i as u16, 30).unwrap();
            }
        }
        let mut whole = Vec::new();
        for_each_event(dir.path(), |ev| {
            whole.push(ev);
            Ok(())
        })
        .unwrap();
        assert!(super::segments(dir.path()).unwrap().len() > 2, "several segments");
        for max in [1, 3, 7, 100] {
            let (mut paged, mut at, mut pages) = (Vec::new(), None, 0);
            loop {
                let page = read_page(dir.path(), at, max).unwrap();
                paged.extend(page.events);
                pages += 1;
                match page.next {
                    Some(next) => at = Some(next),
                    None => break,
                }
            }
            assert_eq!(paged, whole, "pages of {max} bytes");
            assert!(max == 100 || pages > 2, "{pages} pages of {max} bytes");
        }
    }

    #[test]
    fn an_empty_log_is_one_empty_last_page() {
        let dir = tempfile::tempdir().unwrap();
        let page = read_page(dir.path(), None, 10).unwrap();
        assert!(page.events.is_empty() && page.next.is_none());
    }

    /// Bytes this thread has read through system calls so far (other
    /// tests may run on other threads).
    fn bytes_read() -> u64 {
        let io = std::fs::read_to_string("/proc/thread-self/io").unwrap();
        io.lines()
            .find_map(|l| l.strip_prefix("rchar: "))
            .and_then(|n| n.trim().parse().ok())
            .unwrap()
    }

    #[test]
    fn a_page_reads_only_the_index_records_it_yields() {
        let dir = tempfile::tempdir().unwrap();
        let limits = DiskLimits {
            segment_bytes: 1 << 30,
            max_bytes: 1 << 30,
        };
        let mut w = LogWriter::create(dir.path(), limits).unwrap();
        // 60,000 one-byte chunks: an index of 1.9 MB in one segment.
        for offset in 0..60_000 {
            w.append_output(&chunk(offset, "x")).unwrap();
        }
        drop(w);
        let at = Some(Cursor {
            segment: 0,
            record: 30_000,
        });
        let before = bytes_read();
        let page = read_page(dir.path(), at, 10).unwrap();
        let read = bytes_read() - before;
        assert_eq!(page.events.len(), 10);
        assert_eq!(
            page.next,
            Some(Cursor {
                segment: 0,
                record: 30_010
            })
        );
        assert!(read < 64 << 10, "a page of 10 events read {read} bytes");
    }

    #[test]
    fn a_page_holds_at_most_page_events_events() {
        let dir = tempfile::tempdir().unwrap();
        let limits = DiskLimits {
            segment_bytes: 1 << 20,
            max_bytes: 1 << 30,
        };
        let mut w = LogWriter::create(dir.path(), limits).unwrap();
        let total = 2 * PAGE_EVENTS + 100;
        for i in 0..total {
            w.append_resize(0, i as u64, 80 + (i % 50) as u16, 24).unwrap();
        }
        drop(w);
        let (mut at, mut seen, mut pages) = (None, 0, 0);
        loop {
            let page = read_page(dir.path(), at, 1 << 20).unwrap();
            assert!(
                page.events.len() <= PAGE_EVENTS,
                "a page of {} events",
                page.events.len()
            );
            seen += page.events.len();
            pages += 1;
            match page.next {
                Some(next) => at = Some(next),
                None => break,
            }
        }
        assert_eq!((seen, pages), (total, 3));
    }
}
