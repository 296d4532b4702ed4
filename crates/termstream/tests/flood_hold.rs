//! A flooding session's output is held, for at most `flood_hold_ms`, to be
//! logged and sent in full chunks (64 KiB) rather than in the few KiB each
//! read finds; nothing is lost or reordered on the way, and input to the
//! session releases what is held at once. Real server, real PTYs, real
//! programs; the chunks are read from the disk log's index.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::{TestServer, secs, session_dir};
use serde_json::json;

/// The actor's largest chunk (`READ_COALESCE`).
const FULL_CHUNK: u64 = 64 * 1024;
/// Lines each burst of the flood prints (about 40 KB: less than a chunk).
const BURST: u64 = 5_000;

/// A shell loop printing `bursts` bursts of [`BURST`] numbered lines, with a
/// pause of 5 ms after each: a flood (megabytes a second) whose every burst
/// a reader that does not hold gets on its own, in chunks under 64 KiB.
fn bursts(bursts: u64) -> String {
    format!(
        "i=0; while [ $i -lt {bursts} ]; do seq $((i*{BURST}+1)) $((i*{BURST}+{BURST})); sleep 0.005; i=$((i+1)); done"
    )
}

/// What `seq 1 n` prints through a PTY (`\n` becomes `\r\n`).
fn seq_output(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.extend_from_slice(i.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

/// The output chunks of a session's disk log, from its index files
/// (records of 32 bytes: offset, time, length, kind), in order: (offset,
/// length).
fn logged_chunks(dir: &Path) -> Vec<(u64, u64)> {
    let mut idx: Vec<_> = std::fs::read_dir(dir)
        .expect("the session's directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "idx"))
        .collect();
    idx.sort();
    let records: Vec<u8> = idx.iter().flat_map(|p| std::fs::read(p).expect("an index")).collect();
    records
        .chunks_exact(32)
        // Kind 3 is a resize record; 0 is PTY output.
        .filter(|r| r[20] == 0)
        .map(|r| {
            let offset = u64::from_le_bytes(r[0..8].try_into().unwrap());
            let len = u32::from_le_bytes(r[16..20].try_into().unwrap());
            (offset, u64::from(len))
        })
        .collect()
}

#[tokio::test]
async fn a_flood_is_logged_in_full_chunks_and_loses_nothing() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_FLOOD_HOLD_MS", "300")]).await;
    let n_bursts = 300;
    let info = server
        .create(json!({ "argv": ["sh", "-c", bursts(n_bursts)], "cols": 80, "rows": 24 }))
        .await;
    let id = info["id"].as_str().unwrap().to_owned();
    let end = server.wait_status(&id, "exited", secs(120)).await;
    assert_eq!(end["exitCode"], 0, "{end}");

    let want = seq_output(n_bursts * BURST);
    assert_eq!(
        end["outputOffset"].as_u64(),
        Some(want.len() as u64),
        "bytes lost or doubled"
    );
    let got = server.output_all(&id, 0).await;
    let first_difference = got.iter().zip(&want).position(|(a, b)| a != b);
    assert!(
        got == want,
        "the output differs from what seq printed, first at byte {first_difference:?}"
    );

    let chunks = logged_chunks(&session_dir(server.data_dir(), &id));
    let mut next = 0;
    for &(offset, len) in &chunks {
        assert_eq!(offset, next, "the index has a hole or an overlap");
        next += len;
    }
    assert_eq!(next, want.len() as u64, "the index does not cover the output");
    // Each burst is under a chunk, and 5 ms apart: unheld, no chunk is
    // full. Held, everything after the first half second (when the session
    // counts as flooding) goes in full chunks but the last.
    let in_full: u64 = chunks.iter().filter(|c| c.1 == FULL_CHUNK).map(|c| c.1).sum();
    assert!(
        in_full * 2 >= next,
        "only {in_full} of {next} bytes were logged in full chunks ({} chunks)",
        chunks.len()
    );
}

/// Starts a session that floods in bursts, then touches `done` and waits
/// for a line, answers `got-<line>`, and sleeps; returns its id once the
/// flood is over (what the reader got of its end is held then), and the
/// flood's length.
async fn flood_then_wait(server: &TestServer, done: &Path) -> (String, u64) {
    let n_bursts = 200;
    let script = format!(
        "{}; : > \"$0\"; read line; echo \"got-$line\"; sleep 1000",
        bursts(n_bursts)
    );
    let info = server
        .create(json!({ "argv": ["sh", "-c", script, done], "cols": 80, "rows": 24 }))
        .await;
    let id = info["id"].as_str().unwrap().to_owned();
    let deadline = Instant::now() + secs(120);
    while !done.exists() {
        assert!(Instant::now() < deadline, "the flood did not end");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    (id, seq_output(n_bursts * BURST).len() as u64)
}

/// The session's output offset (read from its info, which does not wake
/// its actor).
async fn offset(server: &TestServer, id: &str) -> u64 {
    server.info(id).await["outputOffset"].as_u64().expect("an offset")
}

#[tokio::test]
async fn what_a_flood_left_held_goes_out_within_the_window() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_FLOOD_HOLD_MS", "300")]).await;
    let marks = tempfile::tempdir().expect("tempdir");
    let (id, flood_len) = flood_then_wait(&server, &marks.path().join("flood-done")).await;
    // Nothing reads the session or types into it: only the hold's own
    // deadline lets its last bytes out.
    let deadline = Instant::now() + secs(10);
    while offset(&server, &id).await < flood_len {
        assert!(Instant::now() < deadline, "the end of the flood was never sent");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    assert_eq!(offset(&server, &id).await, flood_len);
    server.terminate(&id).await;
}

#[tokio::test]
async fn typing_into_a_held_flood_releases_its_output_at_once() {
    // Held for up to a second: a release that waited for the deadline
    // would be seen.
    let server = TestServer::start_with(&[], &[("TERMSTREAM_FLOOD_HOLD_MS", "1000")]).await;
    let marks = tempfile::tempdir().expect("tempdir");
    let (id, flood_len) = flood_then_wait(&server, &marks.path().join("flood-done")).await;

    let typed = Instant::now();
    server.input(&id, "abc\n").await;
    // The terminal's echo `abc\r\n`, then `got-abc\r\n`.
    let answered = flood_len + 5 + 9;
    while offset(&server, &id).await < answered {
        assert!(typed.elapsed() < secs(10), "no answer to the input");
        tokio::time::sleep(Duration::from_millis(5)).await;
    }
    let took = typed.elapsed();
    assert!(
        took < Duration::from_millis(500),
        "the answer to the input took {took:?}: held until the deadline"
    );
    let tail = server.output_all(&id, flood_len).await;
    assert_eq!(String::from_utf8_lossy(&tail), "abc\r\ngot-abc\r\n");
    server.terminate(&id).await;
}
