//! A stand-in's stream reader, and the rules for what it reads again: a
//! reader follows the session's stream in Redis on a connection of its
//! own; after a lost connection it reads its last offset again, and the
//! stand-in drops what viewers already have.

use std::sync::Arc;

use tokio::sync::mpsc;

use super::super::Update;
use crate::cluster::Cluster;
use crate::cluster::redis::BLOCK;
use crate::cluster::wire::{self, Entry};

/// The most entries one `XREAD` returns.
const READ_COUNT: usize = 256;

/// Follows a stream from after `last` with `XREAD BLOCK` on a connection of
/// its own, sending what it reads to the stand-in, until aborted.
pub(super) async fn read_stream(c: Arc<Cluster>, key: String, mut last: String, tx: mpsc::Sender<Update>) {
    let mut reconnects = c.redis.reconnects(c.heartbeat);
    loop {
        let mut conn = reconnects.next().await;
        let mut reread = true;
        loop {
            let read: redis::RedisResult<redis::Value> = redis::cmd("XREAD")
                .arg("COUNT")
                .arg(READ_COUNT)
                .arg("BLOCK")
                .arg(BLOCK.as_millis() as u64)
                .arg("STREAMS")
                .arg(&key)
                .arg(&last)
                .query_async(&mut conn)
                .await;
            let Ok(v) = read else { break };
            // Past every entry read, those it cannot read too (written by a
            // newer node): reading from before one would return it at once,
            // again and again.
            let entries = wire::xread_entries(&v);
            if let Some(id) = wire::xread_last_id(&v).or_else(|| entries.last().map(|r| r.id.clone())) {
                last = id;
            }
            if !entries.is_empty() {
                if tx.send(Update::Entries { entries, reread }).await.is_err() {
                    return;
                }
                reread = false;
            }
        }
        last = again_at_offset(&last);
    }
}

/// Whether a resize read from the stream is news to viewers, given the
/// last one given (`last`). One equal to it is read again: a restarted
/// reader starts at the ring's end, where that resize is (its subscribers
/// have it from the replay), and a reader that lost its connection reads
/// its last offset again. One at a lower offset cannot come within one
/// stream, whose ids only rise; the check guards the size viewers have
/// against a stale one should that change.
pub(super) fn resize_is_new(last: Option<(u64, u16, u16)>, resize: (u64, u16, u16)) -> bool {
    last != Some(resize) && last.is_none_or(|(at, ..)| at <= resize.0)
}

/// The last resize a stand-in keeps when the stream was trimmed past its
/// ring, the next chunk starting at `chunk`: `MINID` trims whole offsets
/// from the lowest, so a resize at `chunk` or later was not trimmed.
pub(super) fn kept_after_trim(last: Option<(u64, u16, u16)>, chunk: u64) -> Option<(u64, u16, u16)> {
    last.filter(|&(at, ..)| at >= chunk)
}

/// The entries of a read that may repeat some given before (the first
/// after a reconnect), less every resize with a later one at its offset in
/// the same read: with no output between, nothing was drawn at the first,
/// and given again it would take viewers back to an older size for a
/// moment. Offsets only rise in a stream, so the nearest later resize is
/// the one to compare with. A live read keeps them all, as viewers on the
/// owner's node get them all.
pub(super) fn without_overtaken_resizes(entries: Vec<wire::Read>) -> impl Iterator<Item = Entry> {
    let mut later: Option<u64> = None;
    let mut keep = vec![true; entries.len()];
    for (i, r) in entries.iter().enumerate().rev() {
        if let Entry::Resized { offset, .. } = r.entry {
            keep[i] = later != Some(offset);
            later = Some(offset);
        }
    }
    entries.into_iter().zip(keep).filter(|(_, k)| *k).map(|(r, _)| r.entry)
}

/// Where a reader that lost its connection goes on: just before every
/// entry at the offset of the last one it read. Redis may have restarted
/// empty, and the owner's publisher then writes the stream again with ids
/// that start anew: its entry at that offset (the last resize, sent again)
/// may get the very id the reader last read, and a reader that went on
/// after that id would never see it. Reading the entries at that offset
/// again loses nothing and repeats nothing to viewers: output is cut to
/// what the ring lacks; a resize equal to the last one given, or with a
/// later one at its offset in that read, is dropped, and so is a second
/// `Terminating` (a read of more than `READ_COUNT` entries at one offset,
/// resizes of a window dragged while nothing printed, may give an older
/// size for a moment before the next read). A position before an offset (`wire::before`, where a
/// reader starts; no entry has its id) is kept: moved back, a reader that
/// reconnects again and again without reading would move back each time.
pub(super) fn again_at_offset(last: &str) -> String {
    match last
        .split_once('-')
        .and_then(|(offset, seq)| Some((offset.parse().ok()?, seq)))
    {
        Some((_, seq)) if seq == u64::MAX.to_string() => last.to_owned(),
        Some((offset, _)) => wire::before(offset),
        None => last.to_owned(),
    }
}

#[cfg(test)]
mod tests {
    use super::{again_at_offset, kept_after_trim, resize_is_new, without_overtaken_resizes};
    use crate::cluster::wire::{self, Entry, Read};

    fn resized(offset: u64, cols: u16) -> Read {
        Read {
            id: format!("{offset}-0"),
            offset,
            entry: Entry::Resized { offset, cols, rows: 24 },
        }
    }

    #[test]
    fn a_resize_read_again_or_older_is_not_news() {
        assert!(resize_is_new(None, (7, 90, 24)));
        assert!(!resize_is_new(Some((7, 90, 24)), (7, 90, 24)));
        assert!(
            resize_is_new(Some((7, 90, 24)), (7, 100, 24)),
            "another at the same offset"
        );
        assert!(resize_is_new(Some((7, 90, 24)), (9, 90, 24)), "back to a size, later");
        assert!(!resize_is_new(Some((9, 90, 24)), (7, 100, 24)));
    }

    #[test]
    fn a_trim_forgets_only_a_resize_before_the_next_chunk() {
        assert_eq!(kept_after_trim(Some((7, 90, 24)), 7), Some((7, 90, 24)));
        assert_eq!(kept_after_trim(Some((5, 90, 24)), 7), None);
        assert_eq!(kept_after_trim(None, 7), None);
    }

    #[test]
    fn a_resize_with_a_later_one_at_its_offset_is_overtaken_across_terminating() {
        let at = |offset: u64, entry: Entry| Read {
            id: format!("{offset}-0"),
            offset,
            entry,
        };
        let given: Vec<Entry> =
            without_overtaken_resizes(vec![resized(7, 90), at(7, Entry::Terminating), resized(7, 100)]).collect();
        assert!(matches!(
            given[..],
            [
                Entry::Terminating,
                Entry::Resized {
                    offset: 7,
                    cols: 100,
                    ..
                }
            ]
        ));
    }

    #[test]
    fn of_two_resizes_at_one_offset_only_the_last_is_given() {
        let terminating = Read {
            id: "9-0".into(),
            offset: 9,
            entry: Entry::Terminating,
        };
        let given: Vec<Entry> =
            without_overtaken_resizes(vec![resized(7, 90), resized(7, 100), resized(8, 110), terminating]).collect();
        assert!(matches!(
            given[..],
            [
                Entry::Resized {
                    offset: 7,
                    cols: 100,
                    ..
                },
                Entry::Resized {
                    offset: 8,
                    cols: 110,
                    ..
                },
                Entry::Terminating
            ]
        ));
    }

    #[test]
    fn a_reader_that_lost_its_connection_reads_its_last_offset_again() {
        assert_eq!(again_at_offset("7-3"), format!("6-{}", u64::MAX));
        // Its start, before any entry: the same place, however often.
        assert_eq!(again_at_offset(&wire::before(7)), wire::before(7));
        assert_eq!(again_at_offset(&again_at_offset(&wire::before(7))), wire::before(7));
        assert_eq!(again_at_offset("0-1"), "0-0");
        assert_eq!(again_at_offset("0-0"), "0-0");
    }
}
