//! The output log: reads from any offset, from the memory ring or from disk
//! once evicted, in pages; what survives a server crash and restart; and the
//! 410 answer once the disk limit has dropped the start of a log.

mod common;

use common::{TestServer, kill_marked, secs, session_dir};
use serde_json::json;

/// `seq 1 n` as the bytes it prints.
fn seq(n: u32) -> Vec<u8> {
    (1..=n).map(|i| format!("{i}\n")).collect::<String>().into_bytes()
}

/// A server whose ring holds 4 KiB and whose disk segments are 64 KiB, so a
/// megabyte of output is mostly on disk, across many segments.
async fn small_ring_server() -> TestServer {
    TestServer::start_with(
        &[],
        &[
            ("TERMSTREAM_RING_BYTES", "4096"),
            ("TERMSTREAM_DISK_SEGMENT_BYTES", "65536"),
        ],
    )
    .await
}

/// Reads `[since, end)` in pages of at most `limit` bytes, following the
/// next-offset header.
async fn read_paged(server: &TestServer, id: &str, mut since: u64, limit: usize) -> Vec<u8> {
    let mut all = Vec::new();
    loop {
        let resp = server
            .client
            .get(server.url(&format!("/api/sessions/{id}/output?since={since}&limit={limit}")))
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status(), 200);
        let next: u64 = resp.headers()["x-termstream-next-offset"]
            .to_str()
            .unwrap()
            .parse()
            .unwrap();
        let body = resp.bytes().await.unwrap();
        assert!(
            body.len() <= limit,
            "a page of {} bytes exceeds the limit {limit}",
            body.len()
        );
        assert_eq!(next, since + body.len() as u64, "next offset does not follow the page");
        if body.is_empty() {
            return all;
        }
        all.extend_from_slice(&body);
        since = next;
    }
}

#[tokio::test]
async fn output_reads_from_any_offset_in_ring_or_on_disk() {
    let server = small_ring_server().await;
    let info = server
        .create(json!({ "kind": "command", "argv": ["seq", "1", "200000"] }))
        .await;
    let id = info["id"].as_str().unwrap();
    let ended = server.wait_status(id, "exited", secs(30)).await;
    let expected = seq(200_000);
    assert_eq!(ended["outputOffset"].as_u64(), Some(expected.len() as u64));

    // From 0: evicted from the 4 KiB ring long ago, so this is the disk log.
    let all = server.output_all(id, 0).await;
    assert_eq!(all.len(), expected.len());
    assert!(all == expected, "output from 0 differs from seq's");
    // From the middle, mid-line and mid-segment.
    for since in [
        1,
        65_535,
        65_536,
        600_001,
        expected.len() as u64 - 3000,
        expected.len() as u64 - 1,
    ] {
        let part = server.output_all(id, since).await;
        assert!(part == expected[since as usize..], "output from {since} differs");
    }
    // At the end: nothing. Past the end: 400.
    assert!(server.output(id, expected.len() as u64).await.is_empty());
    let (status, body) = server
        .get(&format!("/api/sessions/{id}/output?since={}", expected.len() + 1))
        .await;
    assert_eq!(status, 400, "{body}");
    // In odd-sized pages, crossing ring, chunk and segment boundaries.
    assert!(
        read_paged(&server, id, 0, 7_777).await == expected,
        "paged read differs"
    );
    assert!(
        read_paged(&server, id, 1_280_000, 333).await == expected[1_280_000..],
        "paged tail differs"
    );
}

#[tokio::test]
async fn output_of_a_running_session_is_read_while_it_grows() {
    let server = small_ring_server().await;
    let info = server
        .create(json!({ "kind": "command", "command": "seq 1 100000; echo half-done; read x; seq 100001 200000" }))
        .await;
    let id = info["id"].as_str().unwrap();
    server.read_output_until(id, "half-done", secs(30)).await;
    let mut expected = seq(100_000);
    expected.extend_from_slice(b"half-done\n");
    assert!(server.output_all(id, 0).await == expected);
    server.input(id, "go\n").await;
    server.wait_status(id, "exited", secs(30)).await;
    expected = seq(200_000);
    expected.splice(588_895..588_895, b"half-done\n".iter().copied());
    assert!(
        server.output_all(id, 0).await == expected,
        "output after the second half differs"
    );
}

#[tokio::test]
async fn sessions_survive_a_crash_and_restart() {
    let server = small_ring_server().await;
    let done = server
        .create(json!({ "id": "done-one", "kind": "command", "argv": ["seq", "1", "50000"] }))
        .await;
    server.wait_status("done-one", "exited", secs(30)).await;
    // From a spare this server made: its first record is written over the
    // room the spare holds for it, and must load as well as any.
    server.wait_spares_made().await;
    let running = server
        .create(json!({ "id": "still-running", "argv": ["bash", "--norc", "--noprofile"] }))
        .await;
    server.input("still-running", "echo alive-$((6*7)); sleep 1000\n").await;
    server.read_output_until("still-running", "alive-42", secs(10)).await;
    let running_epoch = running["epoch"].as_str().unwrap().to_owned();
    let meta = session_dir(server.data_dir(), "still-running").join("meta.json");
    let first = std::fs::read(&meta).expect("meta.json");
    assert_eq!(first.len(), 4096, "not written over a spare's room");
    assert!(first.ends_with(b" "), "not padded to the room");

    let mut server = server;
    server.crash();
    // The crashed server's shell is orphaned, not terminated; end it here.
    kill_marked(&running_epoch);
    let server = server.restart();

    let (status, list) = server.get("/api/sessions").await;
    assert_eq!(status, 200);
    assert_eq!(list["total"], 2, "{list}");

    let info = server.info("done-one").await;
    assert_eq!(info["status"], "exited", "{info}");
    assert_eq!(info["exitCode"], 0, "{info}");
    assert_eq!(
        info["epoch"], done["epoch"],
        "the epoch of a log is kept across restarts"
    );
    assert!(
        server.output_all("done-one", 0).await == seq(50_000),
        "output after restart differs"
    );
    assert!(server.output_all("done-one", 12_345).await == seq(50_000)[12_345..]);

    let info = server.info("still-running").await;
    assert_eq!(info["status"], "lost", "{info}");
    assert!(info.get("pid").is_none(), "{info}");
    assert!(info["endedAt"].is_u64(), "{info}");
    let text = String::from_utf8(server.output_all("still-running", 0).await).unwrap();
    assert!(text.contains("alive-42"), "{text:?}");

    // Ended sessions refuse input and terminate keeps their status.
    let (status, body) = server
        .post("/api/sessions/still-running/input", json!({ "data": "x" }))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"]["code"].as_str()),
        (409, Some("session_not_running"))
    );
    assert_eq!(server.terminate("still-running").await["status"], "lost");
    // The id stays taken, and a new session next to them works.
    let (status, _) = server
        .post("/api/sessions", json!({ "id": "done-one", "argv": ["true"] }))
        .await;
    assert_eq!(status, 409);
    let fresh = server
        .create(json!({ "kind": "command", "argv": ["echo", "fresh"] }))
        .await;
    server
        .read_output_until(fresh["id"].as_str().unwrap(), "fresh", secs(10))
        .await;
}

#[tokio::test]
async fn output_dropped_by_the_disk_limit_is_gone() {
    let server = TestServer::start_with(
        &[],
        &[
            ("TERMSTREAM_RING_BYTES", "4096"),
            ("TERMSTREAM_DISK_SEGMENT_BYTES", "16384"),
            ("TERMSTREAM_DISK_MAX_BYTES", "400000"),
        ],
    )
    .await;
    let info = server
        .create(json!({ "kind": "command", "argv": ["seq", "1", "200000"] }))
        .await;
    let id = info["id"].as_str().unwrap();
    server.wait_status(id, "exited", secs(30)).await;
    let expected = seq(200_000);

    let (status, body) = server.get(&format!("/api/sessions/{id}/output?since=0")).await;
    assert_eq!(status, 410, "{body}");
    assert_eq!(body["error"]["code"], "output_gone", "{body}");
    let earliest = body["error"]["earliestOffset"].as_u64().expect("earliestOffset");
    assert!(earliest > 0 && earliest < expected.len() as u64, "earliest {earliest}");
    // At least `disk_max_bytes` is kept; whole segments are deleted, and a
    // segment may exceed its size by one coalesced read (64 KiB).
    let kept = expected.len() as u64 - earliest;
    assert!(kept >= 400_000, "kept only {kept} bytes, from {earliest}");
    assert!(
        kept <= 400_000 + 2 * (16_384 + 65_536),
        "kept {kept} bytes, from {earliest}"
    );
    assert!(server.output_all(id, earliest).await == expected[earliest as usize..]);
    // The same answer in JSON format.
    let (status, body) = server
        .get(&format!("/api/sessions/{id}/output?since=5&format=json"))
        .await;
    assert_eq!(
        (status.as_u16(), body["error"]["earliestOffset"].as_u64()),
        (410, Some(earliest))
    );
}

/// A pty session's screen survives a restart: the snapshot of a session
/// loaded from disk (rebuilt from its stored log) equals the one taken
/// before.
#[tokio::test]
async fn a_pty_screen_snapshot_is_the_same_after_a_restart() {
    let server = TestServer::start().await;
    server
        .create(json!({"id":"scr","argv":["bash","--norc","--noprofile"],"cols":40,"rows":10}))
        .await;
    server
        .input("scr", "printf '\\e[31mred-%d\\e[0m\\n' $((1+1)) 3; exit\r")
        .await;
    server.wait_status("scr", "exited", secs(10)).await;
    let (status, before) = server.get("/api/sessions/scr/snapshot").await;
    assert_eq!(status, 200, "{before}");
    assert!(before["data"].as_str().unwrap().contains("red-2"), "{before}");
    let server = server.restart();
    let (status, after) = server.get("/api/sessions/scr/snapshot").await;
    assert_eq!(status, 200, "{after}");
    assert_eq!(after["offset"], before["offset"]);
    assert_eq!(after["data"], before["data"]);
}
