//! `meta.json` is durable: the server is traced with `strace` while a
//! session starts, is resized and ends, and every rename of
//! `meta.json.tmp` over `meta.json` must come after an fsync of the file
//! it renames and be followed by an fsync of the session's directory.

mod common;

use std::collections::HashMap;
use std::io::{BufRead, BufReader};
use std::process::{Command, Stdio};

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

#[tokio::test]
async fn meta_json_is_fsynced_before_and_after_its_rename() {
    let server = TestServer::start().await;
    let trace_file = server.data_dir().join("strace.out");
    let mut strace = Command::new("strace")
        .args([
            "-f",
            "-e",
            "trace=openat,fsync,fdatasync,rename,renameat,renameat2",
            "-o",
        ])
        .arg(&trace_file)
        .args(["-p", &server.pid().to_string()])
        .stderr(Stdio::piped())
        .spawn()
        .expect("strace runs (CI installs it)");
    // strace says when it is attached to every thread.
    let mut stderr = BufReader::new(strace.stderr.take().expect("stderr"));
    let mut line = String::new();
    while !line.contains("attached") {
        line.clear();
        let n = stderr.read_line(&mut line).expect("strace's stderr");
        assert!(n > 0, "strace ended without attaching");
    }

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

    let _ = rustix::process::kill_process(
        rustix::process::Pid::from_raw(strace.id() as i32).expect("pid"),
        rustix::process::Signal::INT,
    );
    strace.wait().expect("strace ends");
    let trace = std::fs::read_to_string(&trace_file).expect("trace");
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
