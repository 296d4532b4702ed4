//! `recording.cast` downloads whose clients stop reading: they end after
//! `download_stall_ms` with an error, and hold no thread meanwhile, so
//! more of them than the server has blocking threads leave everything
//! else that reads the disk working. Real server, real program output.

mod common;

use std::time::Duration;

use common::{TestServer, secs};
use serde_json::json;

#[tokio::test]
async fn stalled_recording_downloads_hold_no_thread_and_end_with_an_error() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_DOWNLOAD_STALL_MS", "2000")]).await;
    // 16 MiB of random bytes as base64, which compression cannot shrink
    // much: far more than the sockets and the server buffer.
    let script = "head -c 16777216 /dev/urandom | base64";
    server
        .create(json!({"id":"big","kind":"command","argv":["sh","-c",script]}))
        .await;
    server.wait_status("big", "exited", secs(60)).await;
    let whole = {
        let resp = server
            .client
            .get(server.url("/api/sessions/big/recording.cast"))
            .send()
            .await;
        resp.expect("recording").bytes().await.expect("whole recording").len()
    };

    // More clients that start a download and stop reading than the server
    // has blocking threads (termstream::server::BLOCKING_THREADS).
    let url = server.url("/api/sessions/big/recording.cast");
    let mut held = Vec::new();
    for _ in 0..termstream::server::BLOCKING_THREADS + 2 {
        let resp = server.client.get(&url).send().await.expect("recording request");
        assert_eq!(resp.status(), 200);
        held.push(resp);
    }
    // Old output is read from the disk (past the in-memory ring) at once:
    // the stalled downloads hold no blocking thread.
    let read = tokio::time::timeout(
        secs(10),
        server
            .client
            .get(server.url("/api/sessions/big/output?since=0&limit=4096"))
            .send(),
    )
    .await
    .expect("a read from disk waited behind stalled downloads")
    .expect("output request");
    assert_eq!(read.status(), 200);
    assert_eq!(read.bytes().await.expect("output").len(), 4096);

    // The stalled downloads end; a client that reads on gets an error, not
    // a cut recording that looks whole (a download the sockets took far
    // enough not to stall finishes whole).
    // Nothing to poll without reading (which would let them go on): the
    // clients read nothing for longer than the stall timeout.
    tokio::time::sleep(Duration::from_millis(2500)).await;
    let mut cut = 0;
    for resp in held {
        match tokio::time::timeout(secs(30), resp.bytes())
            .await
            .expect("a download never ended")
        {
            Ok(body) => assert_eq!(body.len(), whole, "a cut recording ended as if whole"),
            Err(_) => cut += 1,
        }
    }
    assert!(cut > 0, "no stalled download was ended");
}
