//! Ending sessions: terminate leaves no process behind (background jobs,
//! `setsid`, `nohup`, programs that ignore SIGTERM), the server reaps every
//! child, many create/terminate cycles leak no fds, and the running-session
//! limit is enforced.

mod common;

use std::time::Instant;

use common::{TestServer, marked_processes, secs, wait_until};
use serde_json::json;

/// Waits until no live process carries the session's marker; panics with
/// the survivors otherwise.
async fn assert_no_marked_processes(epoch: &str, what: &str) {
    let gone = wait_until(secs(5), || async { marked_processes(epoch).is_empty() }).await;
    let left: Vec<String> = marked_processes(epoch)
        .iter()
        .map(|p| {
            std::fs::read_to_string(format!("/proc/{p}/cmdline"))
                .unwrap_or_default()
                .replace('\0', " ")
        })
        .collect();
    assert!(gone, "{what}: processes of the session survive terminate: {left:?}");
}

async fn assert_no_zombies(server: &TestServer) {
    let reaped = wait_until(secs(5), || async { server.zombie_children().is_empty() }).await;
    assert!(
        reaped,
        "the server leaves zombie children: {:?}",
        server.zombie_children()
    );
}

#[tokio::test]
async fn terminate_ends_every_process_of_a_pty_session() {
    let server = TestServer::start_with(&["--terminate-grace-ms", "500"], &[]).await;
    let info = server
        .create(json!({ "argv": ["bash", "--norc", "--noprofile"] }))
        .await;
    let id = info["id"].as_str().unwrap();
    let epoch = info["epoch"].as_str().unwrap();
    server
        .input(
            id,
            "sleep 1000 & setsid sleep 1001 & nohup sleep 1002 >/dev/null 2>&1 & \
             (trap '' TERM HUP; exec sleep 1003) & echo started-$((1+1))\n",
        )
        .await;
    server.read_output_until(id, "started-2", secs(10)).await;
    // The shell and its four jobs carry the marker: the check below can fail.
    assert!(
        wait_until(secs(5), || async { marked_processes(epoch).len() >= 5 }).await,
        "expected bash and four sleeps, found {:?}",
        marked_processes(epoch)
    );

    let ended = server.terminate(id).await;
    assert_eq!(ended["status"], "terminated", "{ended}");
    assert!(ended["endedAt"].is_u64(), "{ended}");
    assert_no_marked_processes(epoch, "pty bash with jobs").await;
    assert_no_zombies(&server).await;
}

#[tokio::test]
async fn terminate_ends_a_command_session_that_ignores_sigterm() {
    let server = TestServer::start_with(&["--terminate-grace-ms", "300"], &[]).await;
    let info = server
        .create(json!({ "kind": "command", "command": "trap '' TERM HUP; setsid sleep 1000 & echo ready; while :; do sleep 1; done" }))
        .await;
    let id = info["id"].as_str().unwrap();
    let epoch = info["epoch"].as_str().unwrap();
    server.read_output_until(id, "ready", secs(10)).await;
    let started = Instant::now();
    let ended = server.terminate(id).await;
    assert_eq!(ended["status"], "terminated", "{ended}");
    // SIGKILL came after the grace period, not much later.
    assert!(started.elapsed() < secs(5), "terminate took {:?}", started.elapsed());
    assert_no_marked_processes(epoch, "command ignoring SIGTERM").await;
    assert_no_zombies(&server).await;
    // Terminating again is harmless and keeps the status.
    assert_eq!(server.terminate(id).await["status"], "terminated");
}

#[tokio::test]
async fn an_exited_session_leaves_no_zombie_and_no_orphan() {
    let server = TestServer::start_with(&["--terminate-grace-ms", "300"], &[]).await;
    // The leader exits at once, leaving a background job that holds stdout.
    let info = server
        .create(json!({ "kind": "command", "command": "sleep 1000 & echo bye" }))
        .await;
    let id = info["id"].as_str().unwrap();
    let epoch = info["epoch"].as_str().unwrap();
    let ended = server.wait_status(id, "exited", secs(10)).await;
    assert_eq!(ended["exitCode"], 0);
    assert_no_marked_processes(epoch, "job left behind by an exited leader").await;
    assert_no_zombies(&server).await;
}

/// Terminates a session and returns its final info. A `busy` answer means
/// the session did not end within the server's wait (the grace period and
/// 5 s): its end runs process scans and fsyncs `meta.json`, and on a machine
/// at a load of 16 on 2 cores terminates of this test took up to 2.4 s, once
/// past the wait. The end is then awaited here, so the test still checks
/// every session ends, without failing on the machine's speed.
async fn terminate_or_wait(server: &TestServer, id: &str) -> serde_json::Value {
    let (status, answer) = server.post(&format!("/api/sessions/{id}/terminate"), json!(null)).await;
    if status == 503 && answer["error"]["code"] == "busy" {
        let ended = wait_until(secs(60), || async { server.info(id).await["status"] != "running" }).await;
        assert!(ended, "{id} still running a minute after terminate answered {answer}");
        return server.info(id).await;
    }
    assert_eq!(status, 200, "terminate {id} answered {answer}");
    answer
}

#[tokio::test]
async fn thousand_create_terminate_cycles_leak_no_fds() {
    let server = TestServer::start_with(&["--terminate-grace-ms", "500"], &[]).await;
    let cycle = |i: usize| {
        let server = &server;
        async move {
            let body = if i.is_multiple_of(2) {
                json!({ "kind": "command", "argv": ["true"] })
            } else {
                json!({ "argv": ["cat"], "cols": 80, "rows": 24 })
            };
            let info = server.create(body).await;
            let id = info["id"].as_str().unwrap();
            let ended = terminate_or_wait(server, id).await;
            assert_ne!(ended["status"], "running", "{ended}");
            let (status, _) = server.request("DELETE", &format!("/api/sessions/{id}"), None).await;
            assert_eq!(status, 204);
        }
    };
    // Warm up the server's pools and the client's connections (one per
    // concurrent request) before counting.
    const CONCURRENT: usize = 8;
    futures_util::future::join_all((0..CONCURRENT).map(cycle)).await;
    let fds_before = server.fd_count();
    let started = Instant::now();
    for batch in 0..1000 / CONCURRENT {
        futures_util::future::join_all((0..CONCURRENT).map(|j| cycle(batch * CONCURRENT + j))).await;
    }
    let elapsed = started.elapsed();
    // Let in-flight deletes settle, then compare.
    let settled = wait_until(secs(10), || async { server.fd_count() <= fds_before + 4 }).await;
    let fds_after = server.fd_count();
    eprintln!("1000 cycles in {elapsed:?}; fds before {fds_before}, after {fds_after}");
    assert!(settled, "fds grew from {fds_before} to {fds_after} over 1000 sessions");
    assert_no_zombies(&server).await;
    let (_, list) = server.get("/api/sessions").await;
    assert_eq!(list["total"], 0, "{list}");
}

#[tokio::test]
async fn ended_sessions_without_delete_hold_no_fds() {
    let server = TestServer::start().await;
    let batch = || {
        futures_util::future::join_all((0..8).map(|_| async {
            let info = server.create(json!({ "argv": ["true"] })).await;
            server
                .wait_status(info["id"].as_str().unwrap(), "exited", secs(10))
                .await;
        }))
    };
    // Warm up the client's connections (one per concurrent request) first.
    batch().await;
    let fds_before = server.fd_count();
    for _ in 0..25 {
        batch().await;
    }
    let settled = wait_until(secs(10), || async { server.fd_count() <= fds_before + 4 }).await;
    assert!(
        settled,
        "fds grew from {fds_before} to {} over 200 ended pty sessions",
        server.fd_count()
    );
    assert_no_zombies(&server).await;
}

#[tokio::test]
async fn the_running_session_limit_answers_503() {
    let server = TestServer::start_with(&["--max-running-sessions", "3"], &[]).await;
    let mut ids = Vec::new();
    for _ in 0..3 {
        let info = server
            .create(json!({ "kind": "command", "argv": ["sleep", "1000"] }))
            .await;
        ids.push(info["id"].as_str().unwrap().to_owned());
    }
    let (status, body) = server
        .post("/api/sessions", json!({ "kind": "command", "argv": ["sleep", "1000"] }))
        .await;
    assert_eq!(status, 503, "{body}");
    assert_eq!(body["error"]["code"], "capacity", "{body}");
    assert_eq!(server.get("/api/sessions").await.1["total"], 3);
    // Ending one makes room again.
    server.terminate(&ids[0]).await;
    let info = server
        .create(json!({ "kind": "command", "argv": ["sleep", "1000"] }))
        .await;
    server.terminate(info["id"].as_str().unwrap()).await;
}

/// Out of file descriptors, a create is answered 503 `capacity` (the server
/// ran out, not the request), nothing is left half-made, and the server
/// serves again once sessions end.
#[tokio::test]
async fn running_out_of_descriptors_answers_503_and_recovers() {
    use rustix::process::{Pid, Resource, Rlimit, prlimit};
    // The running server gets a limit of 40 descriptors (the test process
    // keeps its own: other tests may share it under `cargo test`).
    let server = TestServer::start().await;
    let pid = Pid::from_raw(server.pid() as i32).expect("a server pid");
    prlimit(
        Some(pid),
        Resource::Nofile,
        Rlimit {
            current: Some(40),
            maximum: Some(40),
        },
    )
    .expect("prlimit");
    let mut ids = Vec::new();
    let body = loop {
        let (status, body) = server.post("/api/sessions", json!({"argv": ["cat"]})).await;
        if status != 201 {
            assert_eq!(status, 503, "{body}");
            break body;
        }
        ids.push(body["id"].as_str().unwrap().to_owned());
        assert!(ids.len() < 40, "40 descriptors cannot hold {} sessions", ids.len());
    };
    assert_eq!(body["error"]["code"], "capacity", "{body}");
    let (_, list) = server.get("/api/sessions").await;
    assert_eq!(list["total"], ids.len(), "the failed create left nothing listed");
    for id in &ids {
        let (status, _) = server.request("DELETE", &format!("/api/sessions/{id}"), None).await;
        assert_eq!(status, 204);
    }
    server.create(json!({"argv": ["cat"]})).await;
}
