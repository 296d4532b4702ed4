//! Every per-session REST read answers the same through any node: the
//! recording (`recording.cast`, which the page's Replay loads), output by
//! offset, the screen snapshot, the info and the older status route, for a
//! running session and after it ended.

mod common;

use std::time::Duration;

use common::TestServer;
use common::cluster::{NOT_LOST, TestCluster, checksum, holds, status_is};
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);

/// The recording of `id` as `node` serves it, whole.
async fn cast(node: &TestServer, id: &str) -> Vec<u8> {
    let resp = node
        .client
        .get(node.url(&format!("/api/sessions/{id}/recording.cast")))
        .send()
        .await
        .expect("recording request");
    let status = resp.status();
    let body = resp.bytes().await.expect("recording body").to_vec();
    assert_eq!(status, 200, "recording of {id}: {}", String::from_utf8_lossy(&body));
    body
}

/// `n` clients that start downloading `id`'s recording from `node` and read
/// nothing more, but stay connected.
async fn hold_downloads(node: &TestServer, id: &str, n: usize) -> Vec<reqwest::Response> {
    let url = node.url(&format!("/api/sessions/{id}/recording.cast"));
    let mut held = Vec::new();
    for _ in 0..n {
        let resp = node.client.get(&url).send().await.expect("recording request");
        assert_eq!(resp.status(), 200);
        held.push(resp);
    }
    held
}

/// `id`'s recording from `node`, asked again until a transfer slot is free
/// (`stuck` says what it means if none frees within `T`).
async fn recording_once_a_slot_is_free(node: &TestServer, id: &str, stuck: &str) -> Vec<u8> {
    let url = node.url(&format!("/api/sessions/{id}/recording.cast"));
    let deadline = tokio::time::Instant::now() + T;
    loop {
        let resp = node.client.get(&url).send().await.expect("recording request");
        if resp.status() == 200 {
            return resp.bytes().await.expect("recording body").to_vec();
        }
        assert!(tokio::time::Instant::now() < deadline, "{stuck}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// Output as an `OutputPage` from `since`.
async fn page(node: &TestServer, id: &str, since: u64) -> Value {
    let (status, body) = node
        .get(&format!(
            "/api/sessions/{id}/output?since={since}&format=json&limit=4096"
        ))
        .await;
    assert_eq!(status, 200, "{body}");
    body
}

/// The bytes of an `OutputPage`'s chunks, with the offset each starts at
/// (chunks may be cut differently: what the owner read from its program,
/// or merged in the stream).
fn page_bytes(page: &Value) -> (u64, Vec<u8>) {
    use base64::Engine as _;
    let chunks = page["chunks"].as_array().expect("chunks");
    let start = chunks.first().map_or(0, |c| c["offset"].as_u64().expect("offset"));
    let mut bytes = Vec::new();
    for c in chunks {
        assert_eq!(
            c["offset"].as_u64(),
            Some(start + bytes.len() as u64),
            "contiguous chunks"
        );
        let data = c["data"].as_str().expect("data");
        match c["encoding"].as_str() {
            Some("utf8") => bytes.extend_from_slice(data.as_bytes()),
            _ => bytes.extend(base64::engine::general_purpose::STANDARD.decode(data).expect("base64")),
        }
    }
    (start, bytes)
}

/// Asserts that the owner and the other node answer every read alike.
async fn same_reads(owner: &TestServer, other: &TestServer, id: &str) {
    let (mine, theirs) = (cast(owner, id).await, cast(other, id).await);
    assert!(
        mine.len() > 300_000,
        "a recording of several pages: {} bytes",
        mine.len()
    );
    assert!(
        mine == theirs,
        "the recording through another node is the owner's, byte for byte ({} and {} bytes; sha {} and {})",
        mine.len(),
        theirs.len(),
        checksum(&mine),
        checksum(&theirs)
    );

    let (all_mine, all_theirs) = (owner.output_all(id, 0).await, other.output_all(id, 0).await);
    assert_eq!(checksum(&all_mine), checksum(&all_theirs), "output read by offset");
    // From an offset in the middle, as JSON.
    let mid = all_mine.len() as u64 / 2;
    let (p1, p2) = (page(owner, id, mid).await, page(other, id, mid).await);
    assert_eq!(page_bytes(&p1), page_bytes(&p2), "the bytes of a page");
    for field in ["epoch", "offset", "nextOffset", "endOffset", "running"] {
        assert_eq!(p1[field], p2[field], "{field} of the page");
    }

    let (s1, snap1) = owner.get(&format!("/api/sessions/{id}/snapshot")).await;
    let (s2, snap2) = other.get(&format!("/api/sessions/{id}/snapshot")).await;
    assert_eq!((s1.as_u16(), s2.as_u16()), (200, 200), "{snap2}");
    assert_eq!(snap1, snap2, "the same screen");

    let (i1, i2) = (owner.info(id).await, other.info(id).await);
    for field in [
        "id",
        "epoch",
        "status",
        "outputOffset",
        "cols",
        "rows",
        "exitCode",
        "signal",
        "kind",
    ] {
        assert_eq!(i1[field], i2[field], "{field} of the info: {i1} / {i2}");
    }
    assert_eq!(i2["outputOffset"], all_mine.len() as u64, "{i2}");

    let (c1, compat1) = owner.get(&format!("/terminal/{id}")).await;
    let (c2, compat2) = other.get(&format!("/terminal/{id}")).await;
    assert_eq!((c1.as_u16(), c2.as_u16()), (200, 200));
    assert_eq!(compat1["status"]["is_running"], compat2["status"]["is_running"]);
    assert_eq!(compat1["status"]["exit_code"], compat2["status"]["exit_code"]);
}

#[tokio::test]
async fn every_session_read_through_another_node_is_the_owners_running_and_ended() {
    let cluster = TestCluster::start_with(3, &[NOT_LOST]).await;
    let (a, b, c) = (&cluster.nodes[0], &cluster.nodes[1], &cluster.nodes[2]);
    // Enough output for several pages of a transfer, text that is not all
    // ASCII (split across chunks, and a byte that is not UTF-8), a resize
    // and typing through B.
    let script = "seq 1 60000; echo first-part-done; read x; printf 'h\\303\\251llo %s \\377\\n' \"$x\"; \
                  echo second-part-done; exec sleep 60";
    let info = a
        .create(json!({"id":"replayed","argv":["sh","-c",script],"cols":80,"rows":24}))
        .await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    a.read_output_until("replayed", "first-part-done", T).await;
    common::cluster::listed(b, "replayed", T).await.expect("listed on B");
    let (status, body) = b
        .post("/api/sessions/replayed/resize", json!({"cols":100,"rows":30}))
        .await;
    assert_eq!(status, 200, "{body}");
    b.input("replayed", "w\u{f6}rld\n").await;
    let seen = b.read_output_until("replayed", "second-part-done", T).await;
    assert!(seen.contains("héllo wörld"), "{seen:?}");

    // C, which read nothing of it yet, knows where its output ends (its
    // stream reaches there as soon as the owner published it).
    common::cluster::listed(c, "replayed", T).await.expect("listed on C");
    let end = a.info("replayed").await["outputOffset"].clone();
    let known = common::wait_until(T, || async { c.info("replayed").await["outputOffset"] == end }).await;
    assert!(
        known,
        "C says the output ends at {}, not {end}",
        c.info("replayed").await["outputOffset"]
    );
    same_reads(a, c, "replayed").await;
    same_reads(a, b, "replayed").await;
    let running = cast(b, "replayed").await;
    assert!(holds(&running, "\"r\", \"100x30\"") || holds(&running, "\"r\",\"100x30\""));

    let (status, _) = b.post("/api/sessions/replayed/terminate", json!(null)).await;
    assert_eq!(status, 200);
    for node in [a, b, c] {
        status_is(node, "replayed", "terminated", T)
            .await
            .expect("ended everywhere");
    }
    same_reads(a, b, "replayed").await;
    same_reads(a, c, "replayed").await;
    common::kill_marked(&epoch);
}

#[tokio::test]
async fn recordings_of_other_nodes_stream_at_most_eight_at_once() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    // 6 MiB of output: more than a client's socket and the servers'
    // buffers hold, so a client that does not read holds its transfer.
    let script = "head -c 6291456 /dev/zero | tr '\\0' x";
    a.create(json!({"id":"big","kind":"command","argv":["sh","-c",script]}))
        .await;
    a.create(json!({"id":"small","kind":"command","argv":["sh","-c","seq 1 1000"]}))
        .await;
    for id in ["big", "small"] {
        a.wait_status(id, "exited", T).await;
        status_is(b, id, "exited", T).await.expect("ended on B");
    }

    let held = hold_downloads(b, "big", 8).await;
    // A ninth is refused while the eight are open, with the reason.
    let (status, body) = b.get("/api/sessions/small/recording.cast").await;
    assert_eq!(status.as_u16(), 503, "{body}");
    assert_eq!(body["error"]["code"], "capacity", "{body}");
    // The clients go away: their slots are free again.
    drop(held);
    let theirs =
        recording_once_a_slot_is_free(b, "small", "the slot of a client that went away is not given back").await;
    assert!(cast(a, "small").await == theirs);
}

#[tokio::test]
async fn a_stalled_recording_download_gives_its_slot_back() {
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_DOWNLOAD_STALL_MS", "1000"), NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    // 16 MiB of random bytes as base64 (which compression cannot shrink
    // much): far more than the sockets' and servers' buffers hold.
    let script = "head -c 16777216 /dev/urandom | base64";
    a.create(json!({"id":"big","kind":"command","argv":["sh","-c",script]}))
        .await;
    a.create(json!({"id":"small","kind":"command","argv":["sh","-c","seq 1 1000"]}))
        .await;
    for id in ["big", "small"] {
        a.wait_status(id, "exited", T).await;
        status_is(b, id, "exited", T).await.expect("ended on B");
    }
    let whole = cast(a, "big").await.len();

    // Eight clients that start a download and read nothing more, but stay.
    let held = hold_downloads(b, "big", 8).await;
    let (status, body) = b.get("/api/sessions/small/recording.cast").await;
    assert_eq!(status.as_u16(), 503, "{body}");
    assert_eq!(body["error"]["code"], "capacity", "{body}");
    // Their transfers stall and end: the slots are free again while the
    // clients are still connected.
    let theirs = recording_once_a_slot_is_free(b, "small", "a stalled download holds its slot").await;
    assert!(cast(a, "small").await == theirs);
    // A stalled client that reads on gets an error, not a cut recording
    // that looks whole (some may have been read far enough by the sockets
    // not to stall, and finish whole).
    let mut cut = 0;
    for resp in held {
        match resp.bytes().await {
            Ok(body) => assert_eq!(body.len(), whole, "a cut recording ended as if whole"),
            Err(_) => cut += 1,
        }
    }
    assert!(cut > 0, "no download was ended, yet a slot was free");
}
