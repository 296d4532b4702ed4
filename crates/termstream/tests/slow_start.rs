//! A program slow to start holds up nobody else. A create waits for its
//! program's `execve` (`session/process/child.rs`), which a slow file
//! system or a loaded machine can stretch to seconds; the server runs that
//! wait on its blocking pool, so its runtime workers go on serving. On a
//! worker, two such creates froze a server of two workers: it answered
//! nothing, not even `/health`, until the programs had started.
//!
//! The `execve` is held by `strace` attached to the server
//! ([`SlowExec`]), for longer than every wait of the test but the last.

mod common;

use std::time::Duration;

use common::strace::SlowExec;
use common::{TestServer, secs, wait_until};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long each held program's `execve` waits: far longer than any
/// answer the test waits for while they are held.
const EXEC_DELAY: Duration = Duration::from_secs(12);

#[tokio::test]
async fn creates_whose_programs_are_slow_to_start_hold_up_no_other_request() {
    // As many workers as a 2-core runner gets by default, named here so
    // that the test means the same on a bigger machine.
    let server = TestServer::start_with(&[], &[("TOKIO_WORKER_THREADS", "2")]).await;
    let slow = SlowExec::attach(&server, EXEC_DELAY);

    // One held create per worker, each on a connection of its own.
    let mut held = Vec::new();
    for id in ["slow-1", "slow-2"] {
        let body = json!({ "id": id, "kind": "command", "argv": [&slow.program, "1000"] }).to_string();
        let mut socket = TcpStream::connect(server.addr()).await.expect("connect");
        let head = format!(
            "POST /api/sessions HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n",
            server.addr(),
            body.len()
        );
        socket.write_all(head.as_bytes()).await.expect("send");
        socket.write_all(body.as_bytes()).await.expect("send");
        held.push(socket);
    }
    // Both programs are being started: the server's children exist,
    // waiting in their `execve`.
    assert!(
        wait_until(secs(10), || async { server.children().len() == 2 }).await,
        "the creates started no programs: {:?}",
        server.children()
    );

    // Meanwhile the server answers, and creates and runs another session.
    let health = tokio::time::timeout(secs(5), server.get("/health")).await;
    assert!(
        matches!(health, Ok((status, _)) if status == 200),
        "no answer to /health while two programs were slow to start: {health:?}"
    );
    let made = tokio::time::timeout(
        secs(5),
        server.create(json!({ "id": "quick", "kind": "command", "argv": ["echo", "quick-done"] })),
    )
    .await;
    assert!(made.is_ok(), "a create of a quick program waited for the slow ones");
    let exited = tokio::time::timeout(secs(5), server.wait_status("quick", "exited", secs(5))).await;
    assert!(
        exited.is_ok(),
        "the quick session did not end while the slow ones started"
    );

    // The held creates end as created once their programs start.
    for id in ["slow-1", "slow-2"] {
        let path = format!("/api/sessions/{id}");
        let running = wait_until(EXEC_DELAY + secs(20), || async {
            server.get(&path).await.1["status"] == "running"
        })
        .await;
        assert!(running, "{id} never ran: {:?}", server.get(&path).await);
    }
    drop(held);
}
