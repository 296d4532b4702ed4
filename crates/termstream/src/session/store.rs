//! The on-disk record of every session, under
//! `DATA_DIR/sessions/<id>.<epoch>/`.
//!
//! - `meta.json`: the latest [`SessionInfo`]. The first is written in
//!   place and synced ([`write_meta_new`]; when the create took a spare
//!   this server made, over the spare's room for it, and then followed by
//!   spaces up to [`FIRST_RECORD_ROOM`] bytes); later ones
//!   replace it atomically and durably (written to `meta.json.tmp` and
//!   fsynced, renamed, then the directory fsynced) on every change of
//!   status or size.
//! - `<start>.out`: raw output bytes from log offset `start` (20 digits, so
//!   names sort by offset); a new segment starts every `segment_bytes`.
//! - `<start>.idx`: one [`RECORD_LEN`]-byte record per event of that segment:
//!   output chunks (offset, time, length, stream) and resizes (time, size).
//!
//! Architecture invariant: the writer appends a chunk's bytes to `.out`
//! before its record to `.idx`, so every record a reader sees has its bytes on
//! disk; a reader ignores a torn record at the end of an index. The oldest
//! segments are deleted when a session's log exceeds `max_bytes`; a read from
//! before the first segment answers "gone" with the earliest offset held.
//! Readers list segments while the writer rolls and deletes them: a listed
//! segment may lack its index yet, or be gone by the time it is opened, and
//! [`read_output`] answers both (see there) rather than failing.
//!
//! Writes are plain `std::fs` calls from the session's actor: they land in
//! the page cache in microseconds. Reads are blocking and run under
//! `spawn_blocking`.

use std::fs::{self, File, OpenOptions};
use std::io::{self, Read, Seek, SeekFrom, Write};
use std::path::{Path, PathBuf};

use bytes::Bytes;
use termstream_proto::{SessionInfo, Stream};

use super::log::Chunk;

pub mod page;
pub mod spare;

/// Size of one index record.
pub const RECORD_LEN: usize = 32;
const KIND_RESIZE: u8 = 3;

/// How large a session's disk log may grow.
#[derive(Debug, Clone, Copy)]
pub struct DiskLimits {
    /// Bytes per segment file.
    pub segment_bytes: u64,
    /// Total bytes of output kept per session; older segments are deleted.
    pub max_bytes: u64,
}

/// One event of a stored log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Event {
    Output(Chunk),
    Resize { time_ms: u64, cols: u16, rows: u16 },
}

fn segment_name(start: u64, ext: &str) -> String {
    format!("{start:020}.{ext}")
}

/// The start offsets of a log's segments, oldest first.
pub fn segments(dir: &Path) -> io::Result<Vec<u64>> {
    let mut starts: Vec<u64> = fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| {
            let name = e.file_name().into_string().ok()?;
            name.strip_suffix(".out")?.parse().ok()
        })
        .collect();
    starts.sort_unstable();
    Ok(starts)
}

/// Appends a session's output and resizes to its segment files.
#[derive(Debug)]
pub struct LogWriter {
    dir: PathBuf,
    limits: DiskLimits,
    /// Start offsets of the segments on disk, oldest first; never empty.
    segments: Vec<u64>,
    out: File,
    idx: File,
    /// Bytes written to the current segment.
    segment_len: u64,
}

impl LogWriter {
    /// Starts the log of a new session in `dir` (created if missing).
    pub fn create(dir: &Path, limits: DiskLimits) -> io::Result<LogWriter> {
        fs::create_dir_all(dir)?;
        LogWriter::create_in_existing(dir, limits)
    }

    /// [`LogWriter::create`] in a directory known to exist: a spare renamed
    /// into place ([`spare::Spares::take_into`]), whose files are there
    /// too. `create_dir_all` on it was two calls for nothing (a `mkdir`
    /// that fails with `EEXIST`, then a `stat` to tell a directory from a
    /// file). A missing `dir` is an error.
    pub fn create_in_existing(dir: &Path, limits: DiskLimits) -> io::Result<LogWriter> {
        let (out, idx) = open_segment(dir, 0)?;
        Ok(LogWriter {
            dir: dir.to_owned(),
            limits,
            segments: vec![0],
            out,
            idx,
            segment_len: 0,
        })
    }

    /// Appends one chunk of output.
    pub fn append_output(&mut self, chunk: &Chunk) -> io::Result<()> {
        if self.segment_len >= self.limits.segment_bytes {
            self.roll(chunk.offset)?;
        }
        self.out.write_all(&chunk.data)?;
        self.segment_len += chunk.data.len() as u64;
        let mut rec = [0u8; RECORD_LEN];
        rec[0..8].copy_from_slice(&chunk.offset.to_le_bytes());
        rec[8..16].copy_from_slice(&chunk.time_ms.to_le_bytes());
        rec[16..20].copy_from_slice(&(chunk.data.len() as u32).to_le_bytes());
        rec[20] = chunk.stream.tag();
        self.idx.write_all(&rec)
    }

    /// Records a change of window size at `offset`.
    pub fn append_resize(&mut self, offset: u64, time_ms: u64, cols: u16, rows: u16) -> io::Result<()> {
        let mut rec = [0u8; RECORD_LEN];
        rec[0..8].copy_from_slice(&offset.to_le_bytes());
        rec[8..16].copy_from_slice(&time_ms.to_le_bytes());
        rec[20] = KIND_RESIZE;
        rec[22..24].copy_from_slice(&cols.to_le_bytes());
        rec[24..26].copy_from_slice(&rows.to_le_bytes());
        self.idx.write_all(&rec)
    }

    /// Starts a new segment at `offset` and deletes the oldest ones past the
    /// byte limit.
    fn roll(&mut self, offset: u64) -> io::Result<()> {
        let (out, idx) = open_segment(&self.dir, offset)?;
        self.out = out;
        self.idx = idx;
        self.segment_len = 0;
        self.segments.push(offset);
        // Delete the oldest segment only while what remains still holds at
        // least `max_bytes`: the log keeps between `max_bytes` and
        // `max_bytes + segment_bytes` (plus one read) of output.
        while self.segments.len() > 1 && offset - self.segments[1] >= self.limits.max_bytes {
            let old = self.segments.remove(0);
            let _ = fs::remove_file(self.dir.join(segment_name(old, "out")));
            let _ = fs::remove_file(self.dir.join(segment_name(old, "idx")));
        }
        Ok(())
    }
}

fn open_segment(dir: &Path, start: u64) -> io::Result<(File, File)> {
    let open = |ext| {
        OpenOptions::new()
            .create(true)
            .append(true)
            .open(dir.join(segment_name(start, ext)))
    };
    Ok((open("out")?, open("idx")?))
}

/// Writes `meta.json` atomically and durably: the temporary file is
/// written and fsynced, renamed over `meta.json`, then the directory is
/// fsynced, so after a crash of the machine (not only of the process)
/// `meta.json` is the old record or the new one, whole. Blocking: the actor
/// calls it through [`super::meta::MetaWriter`], off the async workers.
pub fn write_meta(dir: &Path, info: &SessionInfo) -> io::Result<()> {
    let tmp = dir.join("meta.json.tmp");
    let json = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
    let mut file = File::create(&tmp)?;
    file.write_all(&json)?;
    file.sync_all()?;
    drop(file);
    fs::rename(tmp, dir.join("meta.json"))?;
    File::open(dir)?.sync_all()
}

/// The room a spare's `meta.json` holds for a session's first record:
/// that many zero bytes, written and synced when the spare is made (see
/// `spare`), which the first record is written over in place.
///
/// Writing a new file's first bytes allocates a block, and its `fdatasync`
/// then writes the inode and the allocation too: about 220 µs of CPU on
/// the benchmark's machine (ext4 without a journal, in a VM, where each
/// write to the disk is a VM exit), against 70 µs for bytes written over
/// ones already on disk, whose sync writes the data alone. A first record
/// is a few hundred bytes, padded with spaces (JSON whitespace) to the
/// whole room, so the page is written whole (never read first) and the
/// file keeps its size; one longer than the room still fits (the file
/// grows, and its sync writes the inode as before). The room is zeros,
/// not spaces: a write torn by a crash leaves NUL bytes in the file, which
/// no JSON parser takes, rather than a shorter record that might parse.
pub const FIRST_RECORD_ROOM: usize = 4096;

/// Writes a new session's first `meta.json` durably, more cheaply than
/// [`write_meta`]: there is no older record to keep whole, so the file is
/// written in place (no temporary file, no rename) and its data synced
/// (`fdatasync`). A crash during the write leaves a torn or blank file,
/// which loading skips; that is a session whose creation was never
/// answered.
///
/// `prepared` is a spare this server made and synced before offering it:
/// its entries are on disk, and its `meta.json` holds the room for the
/// record ([`FIRST_RECORD_ROOM`]), on disk, which the record (padded to
/// it) is written over. Otherwise, or if that file is missing, the file
/// is made anew and the directory then synced so that the name is
/// durable too (on a journalling file system already on disk with the
/// file's commit). The session's name in its parent is synced in any
/// case: it is new.
pub fn write_meta_new(dir: &Path, info: &SessionInfo, prepared: bool) -> io::Result<()> {
    let mut json = serde_json::to_vec_pretty(info).map_err(io::Error::other)?;
    let path = dir.join("meta.json");
    // Not truncated: the room keeps its block, on disk.
    let over_room = if prepared {
        match OpenOptions::new().write(true).open(&path) {
            Ok(file) => Some(file),
            Err(e) if e.kind() == io::ErrorKind::NotFound => None,
            Err(e) => return Err(e),
        }
    } else {
        None
    };
    let (mut file, in_room) = match over_room {
        Some(file) => {
            if json.len() < FIRST_RECORD_ROOM {
                json.resize(FIRST_RECORD_ROOM, b' ');
            }
            (file, true)
        }
        None => (File::create(path)?, false),
    };
    file.write_all(&json)?;
    file.sync_data()?;
    drop(file);
    // A spare's directory was synced when it was made.
    if !in_room {
        File::open(dir)?.sync_all()?;
    }
    // The session's entry in its parent too: ext4 without a journal often
    // syncs it with the directory, but not once the inode left memory (and
    // a spare's directory is not synced here at all).
    match dir.parent() {
        Some(parent) => File::open(parent)?.sync_all(),
        None => Ok(()),
    }
}

/// Writes the room for a first record into a spare's new `meta.json` and
/// syncs it (see [`FIRST_RECORD_ROOM`]).
pub fn make_first_record_room(file: &mut File) -> io::Result<()> {
    file.write_all(&[0; FIRST_RECORD_ROOM])?;
    file.sync_data()
}

/// Whether `bytes` may be a spare's `meta.json`: empty (made by an older
/// server, or not yet written), or the room for a first record, whole or
/// cut short by a crash (zeros; spaces are taken too). Never a record: a
/// record starts with `{`.
pub fn is_blank_meta(bytes: &[u8]) -> bool {
    bytes.len() <= FIRST_RECORD_ROOM && bytes.iter().all(|&b| b == b' ' || b == 0)
}

/// Reads `meta.json`.
pub fn read_meta(dir: &Path) -> io::Result<SessionInfo> {
    let bytes = fs::read(dir.join("meta.json"))?;
    serde_json::from_slice(&bytes).map_err(|e| io::Error::new(io::ErrorKind::InvalidData, e))
}

fn parse_record(rec: &[u8]) -> Option<(u64, u64, u32, u8, u16, u16)> {
    let u64_at = |i: usize| u64::from_le_bytes(rec[i..i + 8].try_into().unwrap_or_default());
    let offset = u64_at(0);
    let time = u64_at(8);
    let len = u32::from_le_bytes(rec[16..20].try_into().ok()?);
    let cols = u16::from_le_bytes(rec[22..24].try_into().ok()?);
    let rows = u16::from_le_bytes(rec[24..26].try_into().ok()?);
    Some((offset, time, len, rec[20], cols, rows))
}

/// Reads every event of one segment, in order, with the output bytes.
fn read_segment(dir: &Path, start: u64, since: u64, max_bytes: usize) -> io::Result<Vec<Event>> {
    let mut idx = Vec::new();
    File::open(dir.join(segment_name(start, "idx")))?.read_to_end(&mut idx)?;
    let mut out = File::open(dir.join(segment_name(start, "out")))?;
    let mut events = Vec::new();
    let mut taken = 0usize;
    for rec in idx.chunks_exact(RECORD_LEN) {
        let Some((offset, time_ms, len, kind, cols, rows)) = parse_record(rec) else {
            continue;
        };
        if kind == KIND_RESIZE {
            if offset >= since {
                events.push(Event::Resize { time_ms, cols, rows });
            }
            continue;
        }
        let Some(stream) = Stream::from_tag(kind) else { continue };
        let end = offset + u64::from(len);
        if end <= since {
            continue;
        }
        if taken >= max_bytes {
            break;
        }
        let from = since.max(offset);
        let want = ((end - from) as usize).min(max_bytes - taken);
        let mut data = vec![0u8; want];
        out.seek(SeekFrom::Start(from - start))?;
        out.read_exact(&mut data)?;
        taken += want;
        events.push(Event::Output(Chunk {
            offset: from,
            stream,
            time_ms,
            read_at: None,
            data: Bytes::from(data),
            wire: None,
        }));
    }
    Ok(events)
}

/// Answer of [`read_output`].
#[derive(Debug)]
pub enum DiskRead {
    /// Chunks from the offset asked for (maybe none).
    Chunks(Vec<Chunk>),
    /// The offset asked for was deleted; `earliest` is the oldest held.
    Gone { earliest: u64 },
}

/// How many times a read lists the segments, when one it listed vanished
/// before it was opened (deleted past the byte limit meanwhile).
const LISTINGS: usize = 3;

/// Reads output chunks from `since`, about `max_bytes` at most.
///
/// The writer rolls and deletes segments while this reads them, so a
/// listing can be stale by the time a file is opened. Two cases are
/// expected and answered, not reported as errors: the newest listed
/// segment without its index yet (the writer creates `.out`, then `.idx`)
/// holds no records, so it reads as empty; and a segment deleted since the
/// listing makes the read list the segments again (from which a read before
/// the oldest answers [`DiskRead::Gone`]).
pub fn read_output(dir: &Path, since: u64, max_bytes: usize) -> io::Result<DiskRead> {
    read_output_listed(dir, segments(dir)?, since, max_bytes)
}

/// [`read_output`] from a listing of segments made earlier.
fn read_output_listed(dir: &Path, mut starts: Vec<u64>, since: u64, max_bytes: usize) -> io::Result<DiskRead> {
    let mut listings = 1;
    loop {
        match read_listed(dir, &starts, since, max_bytes) {
            Err(e) if e.kind() == io::ErrorKind::NotFound && listings < LISTINGS => {
                listings += 1;
                starts = segments(dir)?;
            }
            read => return read,
        }
    }
}

/// Reads output from the segments `starts` (oldest first).
fn read_listed(dir: &Path, starts: &[u64], since: u64, max_bytes: usize) -> io::Result<DiskRead> {
    let Some(&first) = starts.first() else {
        return Ok(DiskRead::Chunks(Vec::new()));
    };
    if since < first {
        return Ok(DiskRead::Gone { earliest: first });
    }
    let from = starts.partition_point(|&s| s <= since).saturating_sub(1);
    let mut chunks = Vec::new();
    let mut taken = 0usize;
    for (i, &start) in starts.iter().enumerate().skip(from) {
        let events = match read_segment(dir, start, since, max_bytes - taken) {
            // The newest segment, being created (its `.out` is there, its
            // `.idx` not yet): no record yet.
            Err(e)
                if e.kind() == io::ErrorKind::NotFound
                    && i + 1 == starts.len()
                    && dir.join(segment_name(start, "out")).exists() =>
            {
                break;
            }
            read => read?,
        };
        for ev in events {
            if let Event::Output(c) = ev {
                taken += c.data.len();
                chunks.push(c);
            }
        }
        if taken >= max_bytes {
            break;
        }
    }
    Ok(DiskRead::Chunks(chunks))
}

/// Calls `f` for every stored event of a log, oldest first, without holding
/// more than one segment in memory.
pub fn for_each_event(dir: &Path, mut f: impl FnMut(Event) -> io::Result<()>) -> io::Result<()> {
    for start in segments(dir)? {
        for ev in read_segment(dir, start, 0, usize::MAX)? {
            f(ev)?;
        }
    }
    Ok(())
}

/// The end offset and last event time of a stored log, from its last
/// segment's index (used when loading sessions after a restart).
pub fn log_end(dir: &Path) -> io::Result<(u64, u64)> {
    let Some(&last) = segments(dir)?.last() else {
        return Ok((0, 0));
    };
    let mut idx = Vec::new();
    File::open(dir.join(segment_name(last, "idx")))?.read_to_end(&mut idx)?;
    let mut end = (last, 0);
    for rec in idx.chunks_exact(RECORD_LEN) {
        if let Some((offset, time, len, _, _, _)) = parse_record(rec) {
            end = (end.0.max(offset + u64::from(len)), time);
        }
    }
    Ok(end)
}

#[cfg(test)]
mod tests;
