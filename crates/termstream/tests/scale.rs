//! Many idle sessions cost no threads: the server runs 1000 idle pty
//! sessions with the threads it had for 10, and reports the memory each one
//! costs. The server runs with a soft fd limit of 1024, the common default,
//! so it must raise its own limit to hold 1000 PTYs and their logs.

mod common;

use std::time::Instant;

use common::{TestServer, secs, wait_until};
use serde_json::json;

/// Threads the server may add between 10 and 1000 sessions: its blocking
/// pool may grow up to its bound, and the two background threads may start.
/// (Without the bound, 8 sessions created at once grew the pool by 6 in a
/// CI run, and more with more at once.)
const THREAD_SLACK: usize = termstream::server::BLOCKING_THREADS + 2;
const CONCURRENT: usize = 8;

async fn create_idle(server: &TestServer, n: usize) -> Vec<String> {
    let mut ids = Vec::with_capacity(n);
    for batch in (0..n).collect::<Vec<_>>().chunks(CONCURRENT) {
        let infos = futures_util::future::join_all(
            batch
                .iter()
                .map(|_| server.create(json!({ "argv": ["cat"], "cols": 80, "rows": 24 }))),
        )
        .await;
        ids.extend(infos.iter().map(|i| i["id"].as_str().unwrap().to_owned()));
    }
    ids
}

/// Lowers this process's soft fd limit (the server inherits it).
fn lower_soft_fd_limit(soft: u64) {
    use rustix::process::{Resource, Rlimit, getrlimit, setrlimit};
    let current = getrlimit(Resource::Nofile);
    let soft = current.current.map_or(soft, |c| c.min(soft));
    setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(soft),
            maximum: current.maximum,
        },
    )
    .expect("setrlimit");
}

#[tokio::test]
async fn thousand_idle_pty_sessions_use_constant_threads() {
    lower_soft_fd_limit(1024);
    let server = TestServer::start().await;
    // The server raised its own limit, but programs get the original back.
    let probe = server
        .create(json!({"kind":"command","argv":["sh","-c","ulimit -Sn"]}))
        .await;
    let probe = probe["id"].as_str().unwrap();
    let limit = server.read_output_until(probe, "\n", secs(10)).await;
    assert_eq!(limit.trim(), "1024", "a program's open-files limit");
    let first = create_idle(&server, 10).await;
    server.input(&first[0], "warm-up\n").await;
    server.read_output_until(&first[0], "warm-up", secs(10)).await;
    let threads_10 = server.thread_count();
    let rss_10 = server.rss_bytes();
    let fds_10 = server.fd_count();

    let started = Instant::now();
    let rest = create_idle(&server, 990).await;
    let created_in = started.elapsed();
    let (_, list) = server.get("/api/sessions?status=running").await;
    assert_eq!(list["total"], 1000);

    // Every session is alive and answers: the last one echoes its input.
    let last = rest.last().unwrap();
    server.input(last, "still-here\n").await;
    server.read_output_until(last, "still-here", secs(10)).await;

    let threads_1000 = server.thread_count();
    let rss_1000 = server.rss_bytes();
    eprintln!(
        "created 990 pty sessions in {created_in:?}; threads {threads_10} -> {threads_1000}; \
         rss {} KiB -> {} KiB = {} KiB per idle session; fds {}",
        rss_10 / 1024,
        rss_1000 / 1024,
        (rss_1000.saturating_sub(rss_10)) / 990 / 1024,
        server.fd_count(),
    );
    assert!(
        threads_1000 <= threads_10 + THREAD_SLACK,
        "threads grew with sessions: {threads_10} with 10, {threads_1000} with 1000"
    );

    // Deleting the 990 returns the server to the fds it had with 10.
    let server = &server;
    for batch in rest.chunks(CONCURRENT) {
        futures_util::future::join_all(batch.iter().map(|id| async move {
            let (status, body) = server.request("DELETE", &format!("/api/sessions/{id}"), None).await;
            assert_eq!(status, 204, "{body}");
        }))
        .await;
    }
    let settled = wait_until(secs(20), || async { server.fd_count() <= fds_10 + 4 }).await;
    assert!(
        settled,
        "fds: {fds_10} with 10 sessions, {} after deleting 990",
        server.fd_count()
    );
}
