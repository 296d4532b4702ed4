//! A program slow to start holds up nobody else. A create waits for its
//! program's `execve` (`session/process/child.rs`), which a slow file
//! system or a loaded machine can stretch to seconds; the server runs that
//! wait on its blocking pool, so its runtime workers go on serving. On a
//! worker, two such creates froze a server of two workers: it answered
//! nothing, not even `/health`, until the programs had started. With
//! tokens, the per-token count of sessions was kept under one lock across
//! the whole create, so one token's slow start held up every other
//! token's create.
//!
//! The `execve` is held by `strace` attached to the server
//! ([`SlowExec`]), for longer than every wait of the test but the last.

mod common;

use std::time::Duration;

use common::secured::{Tokens, secured};
use common::strace::SlowExec;
use common::{TestServer, Transport, secs, wait_until};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::net::TcpStream;

/// How long each held program's `execve` waits: far longer than any
/// answer the test waits for while they are held.
const EXEC_DELAY: Duration = Duration::from_secs(12);

/// As many workers as a 2-core runner gets by default, named so that the
/// tests mean the same on a bigger machine.
const WORKERS: (&str, &str) = ("TOKIO_WORKER_THREADS", "2");

/// Two creates of programs slow to start (`slow-1` and `slow-2`, with
/// `tokens[i]` if any), each on a connection of its own, then everything
/// else the server must still do while both wait in their `execve`: answer
/// `/health`, and create and run a quick session (with `quick_token`).
async fn slow_creates_hold_up_nothing(server: &TestServer, tokens: [Option<&str>; 2], quick_token: Option<&str>) {
    let slow = SlowExec::attach(server, EXEC_DELAY);
    let mut held = Vec::new();
    for (id, token) in ["slow-1", "slow-2"].into_iter().zip(tokens) {
        let body =
            json!({ "id": id, "kind": "command", "project": "web", "argv": [&slow.program, "1000"] }).to_string();
        let auth = token.map_or(String::new(), |t| format!("authorization: Bearer {t}\r\n"));
        let head = format!(
            "POST /api/sessions HTTP/1.1\r\nhost: {}\r\n{auth}content-type: application/json\r\ncontent-length: {}\r\n\r\n",
            server.addr(),
            body.len()
        );
        let mut socket = TcpStream::connect(server.addr()).await.expect("connect");
        socket.write_all(head.as_bytes()).await.expect("send");
        socket.write_all(body.as_bytes()).await.expect("send");
        held.push(socket);
    }
    // Both programs are being started: the server's children exist,
    // waiting in their `execve`.
    assert!(
        wait_until(secs(10), || async { server.children().len() == 2 }).await,
        "both creates did not start their programs: {:?}",
        server.children()
    );

    // Meanwhile the server answers, and creates and runs another session.
    let health = tokio::time::timeout(secs(5), server.get("/health")).await;
    assert!(
        matches!(health, Ok((status, _)) if status == 200),
        "no answer to /health while two programs were slow to start: {health:?}"
    );
    let quick = json!({ "id": "quick", "kind": "command", "project": "web", "argv": ["echo", "quick-done"] });
    let made = tokio::time::timeout(
        secs(5),
        common::secured::call(server, "POST", "/api/sessions", quick_token, Some(quick), &[]),
    )
    .await;
    assert!(
        matches!(&made, Ok((201, _, _))),
        "a create of a quick program waited for the slow ones: {made:?}"
    );
    let ended = || async {
        let (_, info, _) = common::secured::call(server, "GET", "/api/sessions/quick", quick_token, None, &[]).await;
        info["status"] == "exited"
    };
    assert!(
        wait_until(secs(5), ended).await,
        "the quick session did not end while the slow ones started"
    );

    // The held creates end as created once their programs start.
    for (id, token) in ["slow-1", "slow-2"].into_iter().zip(tokens) {
        let path = format!("/api/sessions/{id}");
        let running = || async {
            let (_, info, _) = common::secured::call(server, "GET", &path, token, None, &[]).await;
            info["status"] == "running"
        };
        assert!(wait_until(EXEC_DELAY + secs(20), running).await, "{id} never ran");
    }
    drop(held);
}

#[tokio::test]
async fn creates_whose_programs_are_slow_to_start_hold_up_no_other_request() {
    let server = TestServer::start_with(&[], &[WORKERS]).await;
    slow_creates_hold_up_nothing(&server, [None, None], None).await;
}

/// The same with tokens: one token's slow start holds up no other token's
/// create, nor another create of its own.
#[tokio::test]
async fn with_tokens_a_slow_start_holds_up_no_other_create() {
    let (server, t) = secured("", &[WORKERS], Transport::Plain).await;
    let Tokens { web_writer, admin, .. } = &t;
    slow_creates_hold_up_nothing(&server, [Some(admin), Some(web_writer)], Some(web_writer)).await;
}
