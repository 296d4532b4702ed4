//! Spare session directories (`DATA_DIR/spare`): a create renames one into
//! `sessions/` and uses its files (no file is made on the create path), the
//! pool is made again in the background, a server adopts the spares it
//! finds, sessions made from spares load after a crash like any other, and
//! a spare renamed without its first record (a crash in between) is
//! skipped at load.

mod common;

use std::collections::HashSet;
use std::os::unix::fs::MetadataExt;
use std::path::Path;

use common::{TestServer, kill_marked, secs, session_dir, wait_until};
use serde_json::json;

/// The spares ready: `DATA_DIR/spare/<n>` (they are made in `spare/new`).
fn ready(data_dir: &Path) -> Vec<std::fs::DirEntry> {
    std::fs::read_dir(data_dir.join("spare"))
        .into_iter()
        .flatten()
        .flatten()
        .filter(|e| e.file_name().to_str().is_some_and(|n| n.parse::<u64>().is_ok()))
        .collect()
}

/// The inode numbers of every directory and file in the spare pool.
fn spare_inodes(data_dir: &Path) -> HashSet<u64> {
    let mut inodes = HashSet::new();
    for spare in ready(data_dir) {
        inodes.insert(spare.metadata().expect("spare").ino());
        for file in std::fs::read_dir(spare.path()).expect("a spare").flatten() {
            inodes.insert(file.metadata().expect("file").ino());
        }
    }
    inodes
}

fn spares(data_dir: &Path) -> usize {
    ready(data_dir).len()
}

async fn wait_spares(server: &TestServer, n: usize) {
    let filled = wait_until(secs(10), || async { spares(server.data_dir()) == n }).await;
    assert!(filled, "{} spares, not {n}", spares(server.data_dir()));
}

/// A session is made of a spare's directory and files (the same inodes,
/// renamed), another spare is made, and the session's log and record come
/// back after a crash.
#[tokio::test]
async fn a_create_takes_a_spare_and_another_is_made() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_SPARE_SESSIONS", "3")]).await;
    wait_spares(&server, 3).await;
    // Settled: no spare is being made while the inodes are read.
    let before = spare_inodes(server.data_dir());
    assert_eq!(before.len(), 3 * 4, "3 spares of a directory and 3 files");

    let created = server
        .create(json!({ "id": "from-spare", "kind": "command", "argv": ["echo", "spare-42"] }))
        .await;
    server.wait_status("from-spare", "exited", secs(10)).await;
    let dir = session_dir(server.data_dir(), "from-spare");
    let mut used = vec![std::fs::metadata(&dir).expect("session dir").ino()];
    // (`meta.json` is a new file by now: the end's record replaced it.)
    for name in ["00000000000000000000.out", "00000000000000000000.idx"] {
        used.push(std::fs::metadata(dir.join(name)).expect(name).ino());
    }
    assert!(
        used.iter().all(|ino| before.contains(ino)),
        "the session's directory and files are a spare's: {used:?} not all in {before:?}"
    );
    wait_spares(&server, 3).await;

    let mut server = server;
    server.crash();
    kill_marked(created["epoch"].as_str().expect("epoch"));
    let server = server.restart();
    let info = server.info("from-spare").await;
    assert_eq!(
        (&info["status"], &info["epoch"]),
        (&json!("exited"), &created["epoch"]),
        "{info}"
    );
    assert_eq!(server.output_all("from-spare", 0).await, b"spare-42\n");
    // The restarted server adopted the spares left: still three, and a
    // create takes one of them.
    wait_spares(&server, 3).await;
    let before = spare_inodes(server.data_dir());
    server.create(json!({ "id": "second", "argv": ["cat"] })).await;
    let dir = session_dir(server.data_dir(), "second");
    assert!(before.contains(&std::fs::metadata(&dir).expect("dir").ino()));
}

/// A spare renamed into `sessions/` whose first record was never written
/// (a crash between the two) is skipped at load; the other sessions load.
#[tokio::test]
async fn a_spare_without_its_first_record_is_skipped_at_load() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_SPARE_SESSIONS", "2")]).await;
    server
        .create(json!({ "id": "whole", "kind": "command", "argv": ["true"] }))
        .await;
    server.wait_status("whole", "exited", secs(10)).await;
    wait_spares(&server, 2).await;
    let mut server = server;
    server.crash();
    let spare = ready(server.data_dir()).first().expect("a spare").path();
    std::fs::rename(spare, server.data_dir().join("sessions/torn.123")).expect("rename");

    let server = server.restart();
    let (status, list) = server.get("/api/sessions").await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 1, "only the whole session: {list}");
    assert_eq!(server.info("whole").await["status"], "exited");
    let (status, _) = server.get("/api/sessions/torn").await;
    assert_eq!(status.as_u16(), 404);
}

/// With no spares kept, every create makes its own files, and the pool's
/// directory stays empty.
#[tokio::test]
async fn without_spares_a_create_makes_its_files() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_SPARE_SESSIONS", "0")]).await;
    server
        .create(json!({ "id": "own", "kind": "command", "argv": ["echo", "own-files"] }))
        .await;
    server.wait_status("own", "exited", secs(10)).await;
    assert_eq!(server.output_all("own", 0).await, b"own-files\n");
    assert_eq!(spares(server.data_dir()), 0);
    let dir = session_dir(server.data_dir(), "own");
    assert!(dir.join("meta.json").is_file() && dir.join("00000000000000000000.idx").is_file());
}

/// `sessions/` and `spare/new` are marked as tops of directory hierarchies
/// where the file system has inode flags (ext4 spreads the directories made
/// in them over quiet block groups).
#[tokio::test]
async fn new_directories_are_made_under_top_directories() {
    let server = TestServer::start().await;
    let flags = |dir: &Path| {
        let file = std::fs::File::open(dir).expect("open");
        rustix::fs::ioctl_getflags(&file)
    };
    if flags(server.data_dir()).is_err() {
        eprintln!("skipped: no inode flags on this file system");
        return;
    }
    for dir in ["sessions", "spare/new"] {
        let got = flags(&server.data_dir().join(dir)).expect("flags");
        assert!(got.contains(rustix::fs::IFlags::TOPDIR), "{dir}: {got:?}");
    }
}

/// The pool only makes creates faster: a data dir whose `spare` cannot be
/// a pool (here a file) still serves, and its creates make their own files.
#[tokio::test]
async fn a_server_whose_pool_cannot_open_still_serves() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_SPARE_SESSIONS", "2")]).await;
    wait_spares(&server, 2).await;
    let mut server = server;
    server.crash();
    let spare = server.data_dir().join("spare");
    std::fs::remove_dir_all(&spare).expect("remove the pool");
    std::fs::write(&spare, b"not a directory").expect("a file in its place");
    let server = server.restart();
    let created = server
        .create(json!({ "id": "no-pool", "kind": "command", "argv": ["echo", "made-its-own"] }))
        .await;
    assert_eq!(created["id"], "no-pool", "{created}");
    assert!(session_dir(server.data_dir(), "no-pool").join("meta.json").exists());
}
