//! Tests of the screen task with real actors and logs on disk. Freezing
//! and thawing the model are in `freeze`, the scan ahead of a flood in
//! `scan_ahead`.

use termstream_proto::{SessionInfo, SessionStatus};

use super::catch_up::feed_slices;
use super::*;
use crate::config::Config;
use crate::session::SessionError;
use crate::session::actor;
use crate::session::log::Chunk;

fn ended_info(id: &str, output_offset: u64) -> SessionInfo {
    SessionInfo {
        status: SessionStatus::Exited,
        output_offset,
        ..crate::session::test_info(id)
    }
}

/// A flood of short lines, far more than a snapshot waits for: the
/// model restarts from the tail, cut at a line feed, and still shows
/// the last screen and a full scrollback of whole lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_restart_after_a_flood_of_lines_keeps_whole_lines() {
    let dir = tempfile::tempdir().expect("tempdir");
    let settings = Config::default().session_settings();
    let scrollback = settings.scrollback_lines;
    let mut writer = crate::session::store::LogWriter::create(dir.path(), settings.disk).expect("log");
    let total_lines = 700_000;
    let text: String = (1..=total_lines).map(|n| format!("line {n}\r\n")).collect();
    assert!(
        text.len() as u64 > WAITED_MAX_LAG + TAIL,
        "the flood must be past the restart threshold"
    );
    let mut offset = 0u64;
    for piece in text.as_bytes().chunks(50_000) {
        let data = bytes::Bytes::copy_from_slice(piece);
        let chunk = crate::session::log::Chunk {
            offset,
            stream: termstream_proto::Stream::Pty,
            time_ms: 0,
            read_at: None,
            data,
            wire: None,
        };
        writer.append_output(&chunk).expect("append");
        offset += piece.len() as u64;
    }
    drop(writer);
    let handle = actor::start_ended(ended_info("flood-of-lines", offset), dir.path().into(), settings);
    let snap = handle.snapshot().await.expect("snapshot");
    assert_eq!(snap.offset, offset, "the snapshot is of the log's end");
    let mut replay = ScreenModel::new(snap.cols, snap.rows, scrollback);
    replay.feed(snap.data.as_bytes());
    let screen = replay.text();
    assert_eq!(
        screen[22],
        format!("line {total_lines}"),
        "the last line, above the cursor's empty line: {screen:?}"
    );
    assert_eq!(screen[0], format!("line {}", total_lines - 22));
    let history: Vec<String> = replay
        .scrollback()
        .iter()
        .map(|l| l.text().trim_end().to_owned())
        .collect();
    assert_eq!(history.len(), scrollback, "a full scrollback");
    let first = total_lines - 22 - scrollback;
    for (i, line) in history.iter().enumerate() {
        assert_eq!(
            line,
            &format!("line {}", first + i),
            "scrollback line {i} is whole and in order"
        );
    }
    handle.shutdown().await;
}

/// A pty session whose log ends far past what its screen model holds,
/// whose actor is gone while a handle still keeps the screen task's
/// channel open: the failed catch-up must end the task. It once armed
/// its bell behind the log's end and rang itself forever.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_screen_task_far_behind_ends_with_its_actor() {
    let dir = tempfile::tempdir().expect("tempdir");
    let info = ended_info("far-behind", MAX_LAG + TAIL + 1);
    let handle = actor::start_ended(info, dir.path().into(), Config::default().session_settings());
    handle.shutdown().await;
    // The snapshot's catch-up finds the actor gone (the answer, a blank
    // screen or an error, does not matter here).
    let _ = handle.snapshot().await;
    let screen = handle
        .screen
        .map(|s| s.requests)
        .clone()
        .expect("a pty session has a screen task");
    // The receiver goes with the task: wait for it, within 5 s.
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while !screen.is_disconnected() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    assert!(screen.is_disconnected(), "the screen task outlived its actor");
}

/// A command queued just as the actor ends is never read, and `flume`
/// keeps it, with its reply's sender, while any handle lives: the read
/// waiting for its answer ends with the actor, not never. Here the actor
/// is built but never run, and dropped with the read in its queue; the
/// far-behind test above hung so, 4 in 600 runs under load, while this one
/// fails every time without the fix (its read never ends: the 5 s timeout).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_command_left_in_the_queue_of_an_ended_actor_is_answered_closed() {
    let dir = tempfile::tempdir().expect("tempdir");
    let info = ended_info("stranded", 10);
    let (actor, handle) = actor::build_ended(info, dir.path().into(), Config::default().session_settings());
    let read = tokio::spawn({
        let handle = handle.clone();
        async move { handle.read(0, 1).await }
    });
    let deadline = tokio::time::Instant::now() + Duration::from_secs(5);
    while handle.commands.is_empty() && tokio::time::Instant::now() < deadline {
        tokio::time::sleep(Duration::from_millis(1)).await;
    }
    assert_eq!(handle.commands.len(), 1, "the read is queued");
    drop(actor);
    let got = tokio::time::timeout(Duration::from_secs(5), read)
        .await
        .expect("the read ended with the actor")
        .expect("joined");
    assert!(matches!(got, Err(SessionError::Closed(_))), "{got:?}");
}

/// A feed stopped between slices and resumed from where it stopped gives
/// the screen that one whole feed gives (the offset accounting of a
/// background catch-up that a snapshot interrupts).
#[test]
fn a_feed_stopped_and_resumed_gives_the_same_screen() {
    let text: String = (1..=3000)
        .map(|n| format!("\x1b[3{}mline {n} é😀\r\n", n % 8))
        .collect();
    let data = bytes::Bytes::from(text);
    let chunks: Vec<Chunk> = data
        .chunks(10_000)
        .scan(0u64, |offset, piece| {
            let start = *offset;
            *offset += piece.len() as u64;
            Some(Chunk {
                offset: start,
                stream: termstream_proto::Stream::Pty,
                time_ms: 0,
                read_at: None,
                data: data.slice_ref(piece),
                wire: None,
            })
        })
        .collect();
    let (whole, n) = feed_slices(Box::new(ScreenModel::new(80, 24, 100)), &chunks, || false);
    assert_eq!(n, data.len());
    // Stop after three slices, then go on from the offset reached.
    let calls = std::cell::Cell::new(0);
    let (part, fed) = feed_slices(Box::new(ScreenModel::new(80, 24, 100)), &chunks, || {
        calls.set(calls.get() + 1);
        calls.get() > 3
    });
    assert_eq!(fed, 3 * FEED_SLICE.min(10_000), "three slices, each within one chunk");
    let rest: Vec<Chunk> = chunks
        .iter()
        .filter(|c| c.end() > fed as u64)
        .map(|c| c.from_offset(fed as u64))
        .collect();
    let (resumed, more) = feed_slices(part, &rest, || false);
    assert_eq!(fed + more, data.len());
    assert_eq!(resumed.snapshot(), whole.snapshot());
}

/// A screen task of `handle` of its own, blank and frozen as a new one is,
/// whose requests nobody sends: the test drives it by hand.
fn task_of(handle: &SessionHandle, scrollback: usize) -> ScreenTask {
    let (_tx, requests) = flume::bounded(REQUESTS);
    let (cols, rows) = handle.size();
    ScreenTask {
        handle: handle.clone(),
        model: Some(Model::Frozen {
            snapshot: String::new(),
            cols,
            rows,
        }),
        scrollback,
        offset: 0,
        follow_lag: UNWATCHED_LAG,
        scanned: None,
        resizes: Some(VecDeque::new()),
        bell: Arc::new(ScreenBell::new()),
        actor_gone: false,
        requests,
    }
}

/// A pty session running `argv` at `cols` × `rows`, in a registry of its
/// own in `dir`, returned too so that it lives as long as the test.
fn pty_session(
    dir: &std::path::Path,
    argv: &[&str],
    cols: u16,
    rows: u16,
) -> (Arc<crate::registry::Registry>, SessionHandle) {
    let config = Config {
        data_dir: dir.to_owned(),
        ..Config::default()
    };
    let registry = crate::registry::Registry::load(Arc::new(config)).expect("registry");
    let handle = registry
        .create(termstream_proto::CreateSession {
            argv: Some(argv.iter().map(|a| a.to_string()).collect()),
            cols: Some(cols),
            rows: Some(rows),
            ..Default::default()
        })
        .expect("create");
    (registry, handle)
}

/// Writes `text` to a new disk log in `dir`, in reads of 60,000 bytes;
/// returns its length.
fn write_log(dir: &std::path::Path, settings: &crate::session::SessionSettings, text: &[u8]) -> u64 {
    let mut writer = crate::session::store::LogWriter::create(dir, settings.disk).expect("log");
    let mut offset = 0u64;
    for piece in text.chunks(60_000) {
        let chunk = crate::session::log::Chunk {
            offset,
            stream: termstream_proto::Stream::Pty,
            time_ms: 0,
            read_at: None,
            data: bytes::Bytes::copy_from_slice(piece),
            wire: None,
        };
        writer.append_output(&chunk).expect("append");
        offset += piece.len() as u64;
    }
    offset
}

/// A catch-up through a flood of plain text skips it (parsing only the
/// last screen and scrollback of lines) and gives exactly the snapshot of
/// a model that parsed everything; one escape sequence in the flood, and
/// it parses everything, with the same result.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_of_plain_text_is_skipped_exactly() {
    let settings = Config::default().session_settings();
    let scrollback = settings.scrollback_lines;
    let before = "$ \x1b[1;33myellow, bold, \x1b[?2004hnot reset ".to_string();
    let flood_of =
        |lines: usize| -> String { (0..lines).map(|n| format!("line {n}\tof the flood 世界\r\n")).collect() };
    let after = "\x1b[31mred\x1b[m the end\r\n$ ";
    // The long one is past what a snapshot parses before it restarts from
    // the tail: skipped exactly instead.
    for (name, escape_inside, lines) in [
        ("plain-flood", false, 30_000),
        ("flood-with-an-escape", true, 30_000),
        ("long-plain-flood", false, 150_000),
    ] {
        let flood = flood_of(lines);
        assert!(flood.len() as u64 > SKIP_MIN && (flood.len() as u64) < MAX_LAG);
        assert_eq!(flood.len() as u64 > WAITED_MAX_LAG, lines > 100_000);
        let dir = tempfile::tempdir().expect("tempdir");
        let mut text = before.clone() + &flood;
        if escape_inside {
            text.insert_str(before.len() + flood.len() / 2, "\x1b[m");
        }
        text.push_str(after);
        let end = write_log(dir.path(), &settings, text.as_bytes());
        let handle = actor::start_ended(ended_info(name, end), dir.path().into(), settings.clone());
        let mut task = task_of(&handle, scrollback);
        let mut model = ScreenModel::new(80, 24, scrollback);
        model.feed(before.as_bytes());
        task.offset = before.len() as u64;
        task.model = Some(Model::Live(Box::new(model)));
        let skip = task.plain_until(end, 24, Urgency::Waited).await;
        if escape_inside {
            assert_eq!(skip, None, "{name}");
        } else {
            let to = skip.expect("a plain flood is skipped");
            // Up to the first escape sequence after the flood.
            let red = text.rfind("\x1b[31m").expect("the red line");
            let lines_after = text.as_bytes()[to as usize..red]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            assert_eq!(
                lines_after,
                24 + scrollback - 1,
                "{name}: the plain lines before the last fill screen and scrollback"
            );
        }
        task.catch_up(Urgency::Waited).await;
        let mut parsed = ScreenModel::new(80, 24, scrollback);
        parsed.feed(text.as_bytes());
        let snap = task.snapshot();
        assert_eq!(snap.offset, end);
        assert_eq!(snap.data, parsed.snapshot(), "{name}");
        handle.shutdown().await;
    }
}

mod freeze;
mod scan_ahead;
