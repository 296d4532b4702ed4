//! `meta.json` is durable: the server is traced with `strace` while a
//! session starts, is resized and ends, and every rename of
//! `meta.json.tmp` over `meta.json` must come after an fsync of the file
//! it renames and be followed by an fsync of the session's directory. A
//! session made from a spare directory writes its first `meta.json` over
//! the room the spare holds for it and syncs it and its entry in
//! `sessions/`; the spare's own entries and that room were synced when it
//! was made, before it was offered, and `spare/new/` after it left it.

mod common;

use std::collections::HashMap;
use std::ffi::OsStr;

use common::strace::Strace;
use common::{TestServer, session_dir};
use serde_json::json;

/// One traced system call of one thread, reduced to what the test checks.
#[derive(Debug, Clone, PartialEq)]
enum Call {
    /// `openat` of a path.
    Open(String),
    /// `fsync` or `fdatasync`.
    Sync,
    /// A rename of `meta.json.tmp` over `meta.json` in a directory.
    Rename(String),
}

/// Parses `strace -f` lines (`TID name(args...`) into calls per thread.
fn calls_per_thread(trace: &str) -> HashMap<String, Vec<Call>> {
    let mut calls: HashMap<String, Vec<Call>> = HashMap::new();
    for line in trace.lines() {
        let Some((tid, rest)) = line.split_once(' ') else {
            continue;
        };
        let rest = rest.trim_start();
        let first_string = || rest.split('"').nth(1).unwrap_or_default().to_owned();
        let call = if rest.starts_with("openat(") {
            Call::Open(first_string())
        } else if rest.starts_with("fsync(") || rest.starts_with("fdatasync(") {
            Call::Sync
        } else if rest.starts_with("rename") && rest.contains("meta.json.tmp") {
            let to = rest.split('"').nth(3).unwrap_or_default();
            Call::Rename(to.trim_end_matches("/meta.json").to_owned())
        } else {
            continue;
        };
        calls.entry(tid.to_owned()).or_default().push(call);
    }
    calls
}

/// `strace -f` attached to a server, writing to a file.
struct Traced {
    strace: Strace,
    file: std::path::PathBuf,
}

/// Attaches `strace` to `server` for `calls`; returns once it is attached
/// to every thread.
fn trace(server: &TestServer, calls: &str) -> Traced {
    let file = server.data_dir().join("strace.out");
    let calls = format!("trace={calls}");
    let args: [&OsStr; 5] = [
        "-f".as_ref(),
        "-e".as_ref(),
        calls.as_ref(),
        "-o".as_ref(),
        file.as_ref(),
    ];
    Traced {
        strace: Strace::attach(server.pid(), &args),
        file,
    }
}

impl Traced {
    /// What was traced so far.
    fn read(&self) -> String {
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }

    /// Detaches, and returns the whole trace.
    fn stop(self) -> String {
        self.strace.stop();
        std::fs::read_to_string(&self.file).unwrap_or_default()
    }
}

#[tokio::test]
async fn meta_json_is_fsynced_before_and_after_its_rename() {
    let server = TestServer::start().await;
    let traced = trace(&server, "openat,fsync,fdatasync,rename,renameat,renameat2");

    let info = server.create(json!({ "argv": ["cat"], "cols": 80, "rows": 24 })).await;
    let id = info["id"].as_str().unwrap();
    let (status, body) = server
        .post(
            &format!("/api/sessions/{id}/resize"),
            json!({ "cols": 100, "rows": 30 }),
        )
        .await;
    assert_eq!(status, 200, "{body}");
    let last = server.terminate(id).await;
    assert_eq!(last["status"], "terminated");

    // The last record is on disk once the end is announced.
    let dir = session_dir(server.data_dir(), id);
    let meta: serde_json::Value =
        serde_json::from_slice(&std::fs::read(dir.join("meta.json")).expect("meta.json")).expect("JSON");
    assert_eq!(
        (&meta["status"], &meta["cols"], &meta["rows"]),
        (&last["status"], &json!(100), &json!(30))
    );

    let trace = traced.stop();
    let dir = dir.to_str().unwrap().to_owned();
    let mut renames = 0;
    for calls in calls_per_thread(&trace).values() {
        for (i, call) in calls.iter().enumerate() {
            if call != &Call::Rename(dir.clone()) {
                continue;
            }
            renames += 1;
            let tmp = format!("{dir}/meta.json.tmp");
            let opened = calls[..i]
                .iter()
                .rposition(|c| c == &Call::Open(tmp.clone()))
                .expect("the temporary file was opened by the thread that renames it");
            assert!(
                calls[opened..i].contains(&Call::Sync),
                "meta.json.tmp renamed without an fsync: {:?}",
                &calls[opened..=i]
            );
            let after = &calls[i + 1..];
            let dir_opened = after.iter().position(|c| c == &Call::Open(dir.clone()));
            assert!(
                dir_opened.is_some_and(|d| after[d + 1..].first() == Some(&Call::Sync)),
                "the directory is not fsynced after the rename: {:?}",
                &after[..after.len().min(4)]
            );
        }
    }
    assert!(
        renames >= 2,
        "meta.json is written at the start and at the end: {renames} renames traced"
    );
}

/// The first string argument of a traced call, and the second.
fn strings(call: &str) -> (&str, &str) {
    let mut parts = call.split('"');
    (parts.nth(1).unwrap_or_default(), parts.nth(1).unwrap_or_default())
}

#[tokio::test]
async fn a_session_made_from_a_spare_syncs_its_record_and_its_name_only() {
    let server = TestServer::start().await;
    // The whole pool made and offered, and the thread that made it gone:
    // the trace then starts with no spare half made, and the create takes
    // a spare this server made and synced.
    server.wait_spares_made().await;
    let spares = server.data_dir().join("spare");
    let traced = trace(
        &server,
        "openat,fsync,fdatasync,rename,renameat,renameat2,mkdir,mkdirat",
    );
    let info = server.create(json!({ "argv": ["cat"], "cols": 80, "rows": 24 })).await;
    let id = info["id"].as_str().unwrap();
    // The pool is made whole again once creates pause: wait for a spare
    // to be made while traced.
    let deadline = std::time::Instant::now() + std::time::Duration::from_secs(30);
    while !traced.read().contains("/spare/new/") {
        assert!(std::time::Instant::now() < deadline, "no spare was made again");
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    // Until its rename into the pool is traced too, and a sync after it.
    let staging = spares.join("new");
    let staging = staging.to_str().unwrap().to_owned();
    let offered = |trace: &str| {
        let lines: Vec<&str> = trace.lines().collect();
        let Some(at) = lines
            .iter()
            .position(|l| l.contains("rename") && strings(l).0.contains("/spare/new/"))
        else {
            return false;
        };
        // The same thread, past the rename: `new/` opened, then a sync.
        let tid = lines[at].split(' ').next().unwrap_or_default();
        let mine: Vec<&str> = lines[at..]
            .iter()
            .filter(|l| l.split(' ').next() == Some(tid))
            .copied()
            .collect();
        mine.iter()
            .position(|l| l.contains("openat(") && strings(l).0 == staging)
            .is_some_and(|o| mine[o..].iter().any(|l| l.contains("fsync(")))
    };
    while !offered(&traced.read()) {
        assert!(
            std::time::Instant::now() < deadline,
            "the new spare was not offered, or spare/new/ was not synced after it left: {}",
            traced.read()
        );
        tokio::time::sleep(std::time::Duration::from_millis(10)).await;
    }
    let trace = traced.stop();
    let mut threads: HashMap<&str, Vec<&str>> = HashMap::new();
    for line in trace.lines() {
        // A call another thread interrupted is traced twice: its start
        // (`<unfinished ...>`, with its arguments) counts, its end
        // (`<... resumed>`) does not, nor do signals (`---`) and exits
        // (`+++`): only lines that start with a call's name.
        if let Some((tid, call)) = line.split_once(' ')
            && call.trim_start().starts_with(|c: char| c.is_ascii_lowercase())
        {
            threads.entry(tid).or_default().push(call.trim_start());
        }
    }
    let dir = session_dir(server.data_dir(), id);
    let dir = dir.to_str().unwrap();
    let sessions = server.data_dir().join("sessions");
    let sessions = sessions.to_str().unwrap();

    // The create: `meta.json` written in place and synced, then the name
    // in `sessions/`; the session's own directory is never synced.
    let meta = format!("{dir}/meta.json");
    let writer = threads
        .values()
        .find(|calls| calls.iter().any(|c| c.starts_with("openat(") && strings(c).0 == meta))
        .expect("a thread wrote meta.json");
    let opened = writer
        .iter()
        .position(|c| c.starts_with("openat(") && strings(c).0 == meta)
        .unwrap();
    // Over the spare's room for it, on disk already: not made anew.
    assert!(
        !writer[opened].contains("O_CREAT") && !writer[opened].contains("O_TRUNC"),
        "meta.json is not written in place: {}",
        writer[opened]
    );
    let after: Vec<&str> = writer[opened + 1..].iter().take(3).copied().collect();
    assert!(
        after.first().is_some_and(|c| c.starts_with("fdatasync(")),
        "meta.json is not synced at once: {after:?}"
    );
    assert!(
        after
            .get(1)
            .is_some_and(|c| c.starts_with("openat(") && strings(c).0 == sessions)
            && after.get(2).is_some_and(|c| c.starts_with("fsync(")),
        "the session's name in sessions/ is not synced next: {after:?}"
    );
    assert!(
        !writer.iter().any(|c| c.starts_with("openat(") && strings(c).0 == dir),
        "the session's directory, a spare, was synced again: {writer:?}"
    );
    // Nor made again: a spare's directory exists (no `mkdir` failing with
    // `EEXIST` on the way).
    let made: Vec<&&str> = threads
        .values()
        .flatten()
        .filter(|c| c.starts_with("mkdir") && (strings(c).0 == dir || strings(c).1 == dir))
        .collect();
    assert!(made.is_empty(), "the session's directory was made again: {made:?}");

    // The spare made meanwhile: its directory synced before its rename
    // into the pool.
    let maker = threads
        .values()
        .find(|calls| {
            calls
                .iter()
                .any(|c| c.starts_with("rename") && strings(c).0.contains("/spare/new/"))
        })
        .expect("a thread made a spare");
    let renamed = maker
        .iter()
        .position(|c| c.starts_with("rename") && strings(c).0.contains("/spare/new/"))
        .unwrap();
    let staged = strings(maker[renamed]).0;
    // Its `meta.json` (the room for a first record, written) synced before
    // it was offered.
    let staged_meta = format!("{staged}/meta.json");
    let made = maker[..renamed]
        .iter()
        .rposition(|c| c.starts_with("openat(") && strings(c).0 == staged_meta)
        .unwrap_or_else(|| panic!("the spare's meta.json was not made: {maker:?}"));
    assert!(
        maker[made + 1].starts_with("fdatasync(") || maker[made + 1].starts_with("fsync("),
        "the spare's meta.json was not synced once written: {:?}",
        &maker[made..=renamed]
    );
    let opened = maker[..renamed]
        .iter()
        .rposition(|c| c.starts_with("openat(") && strings(c).0 == staged)
        .unwrap_or_else(|| panic!("the spare's directory was not opened to sync: {maker:?}"));
    assert!(
        maker[opened + 1..renamed].iter().any(|c| c.starts_with("fsync(")),
        "the spare was offered before its directory was synced: {:?}",
        &maker[opened..=renamed]
    );
    // That sync wrote `new/` with the spare's name in it (ext4 without a
    // journal syncs a new directory's parent): `new/` is synced again once
    // the name left it, so that no session's directory is named there.
    let after = &maker[renamed + 1..];
    let reopened = after
        .iter()
        .position(|c| c.starts_with("openat(") && strings(c).0 == staging)
        .unwrap_or_else(|| panic!("spare/new/ was not synced after the rename: {after:?}"));
    assert!(
        after.get(reopened + 1).is_some_and(|c| c.starts_with("fsync(")),
        "spare/new/ was opened but not synced after the rename: {after:?}"
    );
}
