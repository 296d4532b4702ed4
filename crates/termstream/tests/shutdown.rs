//! Shutdown with work under way: a SIGTERM that comes while a create is
//! starting its program. From the signal on creates are refused (503
//! `capacity`, "the server is shutting down"); the create under way runs to
//! its end, and the session it launched is terminated with the others, so
//! no program outlives the server, which exits within
//! `shutdown_timeout_ms`.
//!
//! The create is held in its program's start by `strace`, attached to the
//! server, delaying the `execve` of a copy of `sleep` at a path of the
//! test's own (the server waits for that `execve`: see
//! `session/process/child.rs`). Two cases: the create ends within the
//! wait that `Registry::close` gets from the budget, and one that outlasts
//! that wait and is launched while `terminate_all` goes on in rounds;
//! each checks in the server's log which of the two it was.
//!
//! And a terminate under way at the signal that takes longer than what
//! the budget leaves it (its program outlives SIGTERM): the shutdown stops
//! waiting for it in time to terminate the other sessions.

mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use common::strace::SlowExec;
use common::ws::{Incoming, WsClient};
use common::{TestServer, secs, session_dir, wait_until};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// Programs of sessions a test started, killed when dropped if still
/// alive (only when a check failed).
#[derive(Default)]
struct Leftovers(Vec<u32>);

impl Drop for Leftovers {
    fn drop(&mut self) {
        for &pid in self.0.iter().filter(|&&p| alive(p)) {
            let pid = rustix::process::Pid::from_raw(pid as i32).expect("pid");
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
}

/// Whether `pid` is a live process (a zombie is not).
fn alive(pid: u32) -> bool {
    std::fs::read_to_string(format!("/proc/{pid}/stat"))
        .ok()
        .and_then(|s| s.rfind(')').and_then(|i| s[i + 2..].chars().next()))
        .is_some_and(|state| state != 'Z')
}

/// A request to `path` of `server` over a connection of its own.
fn request(server: &TestServer, path: &str, body: &str) -> String {
    format!(
        "POST {path} HTTP/1.1\r\nhost: {}\r\ncontent-type: application/json\r\ncontent-length: {}\r\n\r\n{body}",
        server.addr(),
        body.len()
    )
}

/// Reads an answer to its end (the server closes a connection as it
/// stops): its status and JSON body.
async fn answer(socket: &mut TcpStream) -> (u16, Value) {
    let mut raw = Vec::new();
    let read = tokio::time::timeout(secs(10), socket.read_to_end(&mut raw)).await;
    assert!(read.is_ok(), "no whole answer within 10 s");
    let text = String::from_utf8_lossy(&raw);
    let status = text
        .split(' ')
        .nth(1)
        .and_then(|s| s.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer: {text:?}"));
    let body = text.split_once("\r\n\r\n").map_or("", |(_, b)| b);
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

/// The status recorded in a session's `meta.json`.
fn recorded_status(data_dir: &Path, id: &str) -> Value {
    let meta = std::fs::read(session_dir(data_dir, id).join("meta.json")).unwrap_or_default();
    serde_json::from_slice::<Value>(&meta).map_or(Value::Null, |m| m["status"].clone())
}

/// How a create under way at the signal ends, in [`sigterm_during_a_create`].
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum CreateEnds {
    /// Within `Registry::close`'s wait.
    InTheWait,
    /// After that wait, while `terminate_all` goes on in rounds.
    InALaterRound,
}

/// What `Registry::close` logs when work under way outlasts its wait
/// (`registry/finishing.rs`).
const OUTLASTED: &str = "creates, deletes, terminates or focus changes still under way after";

/// A server with `shutdown_timeout_ms` = `budget_ms` and a grace of
/// `grace_ms` gets SIGTERM while a create, whose client hung up, waits
/// `exec_delay` for its program to start. A create sent after the signal
/// is refused; the server exits within the budget, and neither the create's
/// program nor that of the session running before is left. The server's
/// log says whether the create outlasted `Registry::close`'s wait, which
/// must be as `ends` says.
///
/// The create's spawn (`CLONE_VM | CLONE_VFORK`) holds a thread of the
/// blocking pool for the whole delayed `execve`; the runtime's workers
/// take the signal meanwhile (`tests/slow_start.rs`). The server runs one
/// worker (`TOKIO_WORKER_THREADS`, read by tokio since `main.rs` sets no
/// count): were the create to hold a worker again, the signal would come
/// only after it ended, and the case that must outlast the wait
/// ([`CreateEnds::InALaterRound`]) would fail.
async fn sigterm_during_a_create(budget_ms: u64, grace_ms: u64, exec_delay: Duration, ends: CreateEnds) {
    let mut server = TestServer::start_logged(
        &["--terminate-grace-ms", &grace_ms.to_string()],
        &[
            ("TERMSTREAM_SHUTDOWN_TIMEOUT_MS", &budget_ms.to_string()),
            ("TOKIO_WORKER_THREADS", "1"),
        ],
    )
    .await;
    let before = server
        .create(json!({ "id": "before", "kind": "command", "argv": ["sleep", "1000"] }))
        .await;
    let before_pid = before["pid"].as_u64().expect("a pid") as u32;
    let mut started = Leftovers(vec![before_pid]);
    let slow = SlowExec::attach(&server, exec_delay);
    let mut ws = WsClient::connect(&server, "/ws").await;

    // The create under way: its client hangs up once the program is being
    // started (the server's child exists, waiting for its `execve`).
    let body = json!({ "id": "late", "kind": "command", "argv": [&slow.program, "1000"] }).to_string();
    let mut late = TcpStream::connect(server.addr()).await.expect("connect");
    late.write_all(request(&server, "/api/sessions", &body).as_bytes())
        .await
        .expect("send");
    let starting = || server.children().into_iter().find(|&p| p != before_pid);
    assert!(
        wait_until(secs(10), || async { starting().is_some() }).await,
        "the create started no program"
    );
    let late_pid = starting().expect("a starting program");
    started.0.push(late_pid);
    drop(late);

    // A create whose body comes after the signal, on a connection open
    // before it (a new one is not accepted any more). With `expect:
    // 100-continue` the server says when the handler reads the body: the
    // request is under way then, and the shutdown lets it finish.
    let body = json!({ "id": "after", "kind": "command", "argv": ["sleep", "1000"] }).to_string();
    let head = request(&server, "/api/sessions", "").replace(
        "content-length: 0\r\n",
        &format!("content-length: {}\r\nexpect: 100-continue\r\n", body.len()),
    );
    let mut after = TcpStream::connect(server.addr()).await.expect("connect");
    after.write_all(head.as_bytes()).await.expect("send");
    let mut interim = Vec::new();
    while !interim.ends_with(b"\r\n\r\n") {
        let mut byte = [0u8];
        let read = tokio::time::timeout(secs(10), after.read_exact(&mut byte)).await;
        assert!(
            matches!(read, Ok(Ok(_))),
            "no 100 Continue: {:?}",
            String::from_utf8_lossy(&interim)
        );
        interim.push(byte[0]);
    }
    assert!(
        interim.starts_with(b"HTTP/1.1 100"),
        "{:?}",
        String::from_utf8_lossy(&interim)
    );

    server.sigterm();
    let signalled = Instant::now();
    ws.until_type("server.shutdown", secs(10)).await;
    after.write_all(body.as_bytes()).await.expect("send");
    let (status, refused) = answer(&mut after).await;
    // Cleaned up at the end should it have started after all.
    started.0.extend(refused["pid"].as_u64().map(|p| p as u32));
    assert_eq!(status, 503, "a create after the signal: {refused}");
    assert_eq!(refused["error"]["code"], "capacity", "{refused}");
    assert_eq!(refused["error"]["message"], "the server is shutting down", "{refused}");
    loop {
        match ws.recv(secs(10)).await {
            Some(Incoming::Closed(_)) => break,
            Some(_) => {}
            None => panic!("the socket was not closed after server.shutdown"),
        }
    }

    let exit = server.exited(Duration::from_millis(budget_ms) + secs(10)).await;
    let took = signalled.elapsed();
    let exit = exit.expect("the server did not exit after SIGTERM");
    assert!(exit.success(), "exit status {exit:?} after {took:?}");
    assert!(
        took < Duration::from_millis(budget_ms),
        "shutdown took {took:?}, more than its {budget_ms} ms"
    );
    for (id, pid) in [("before", before_pid), ("late", late_pid)] {
        assert!(
            wait_until(secs(5), || async { !alive(pid) }).await,
            "{id}'s program (pid {pid}) outlived the server"
        );
        assert_eq!(
            recorded_status(server.data_dir(), id),
            "terminated",
            "{id}: not recorded as terminated (its create was cut off, or it was never terminated)"
        );
    }
    assert_eq!(recorded_status(server.data_dir(), "after"), Value::Null);
    let outlasted = server.log().contains(OUTLASTED);
    assert_eq!(
        outlasted,
        ends == CreateEnds::InALaterRound,
        "the create was meant to end {ends:?}, but the log {} {OUTLASTED:?}:\n{}",
        if outlasted { "says" } else { "does not say" },
        server.log()
    );
}

/// The create ends within `Registry::close`'s wait (10 s budget: about
/// 5.4 s of wait, the rest kept for terminating and the sockets), after
/// `terminate_all` alone would have given up (2.1 s with a grace of
/// 100 ms): the wait is what lets its session be terminated.
#[tokio::test]
async fn a_create_under_way_at_sigterm_is_waited_for_and_its_session_terminated() {
    sigterm_during_a_create(10_000, 100, Duration::from_millis(3500), CreateEnds::InTheWait).await;
}

/// The create outlasts `Registry::close`'s wait and launches its session
/// while `terminate_all` goes on in rounds, which terminates it too. With
/// a grace of 1 s and a 6 s budget, shutdown keeps 5.5 s (the rounds' 3 s,
/// the sockets' 2 s and a 0.5 s margin: `server.rs`), so the wait is about
/// 0.5 s and the rounds end about 3.5 s after the signal; the create's
/// program starts about 1.3 s after it (a little less: its `execve` began
/// before the signal), about 2.2 s before the rounds' end.
#[tokio::test]
async fn a_create_that_outlasts_the_wait_is_terminated_in_a_later_round() {
    sigterm_during_a_create(6_000, 1_000, Duration::from_millis(1300), CreateEnds::InALaterRound).await;
}

/// A terminate under way at the signal (its client hung up) whose
/// program outlives SIGTERM takes the whole grace period, 6 s; so does the
/// session left running, which ignores SIGTERM too. With a budget of
/// 10.5 s, `Registry::close` gets nothing (the sessions' termination and
/// the sockets' wait keep it all) and the running session is terminated at
/// once, beside the other: the server exits within the budget, with
/// neither program left. A fixed wait for the terminate under way (as
/// before the budget was shared) ended at 6 s, and the termination after
/// it outlasted the budget.
#[tokio::test]
async fn a_slow_terminate_under_way_leaves_time_to_terminate_the_others() {
    let mut server = TestServer::start_with(
        &["--terminate-grace-ms", "6000"],
        &[("TERMSTREAM_SHUTDOWN_TIMEOUT_MS", "10500")],
    )
    .await;
    // Each says it is up; the one terminated says it got SIGTERM.
    let programs = [
        ("kept", "trap '' TERM HUP; echo up; exec sleep 1000"),
        (
            "ending",
            "trap 'echo got-term' TERM; trap '' HUP; echo up; while :; do sleep 0.1; done",
        ),
    ];
    let mut started = Leftovers::default();
    for (id, script) in programs {
        let info = server
            .create(json!({ "id": id, "kind": "command", "argv": ["sh", "-c", script] }))
            .await;
        started.0.push(info["pid"].as_u64().expect("a pid") as u32);
        server.read_output_until(id, "up", secs(10)).await;
    }
    let terminate = format!(
        "POST /api/sessions/ending/terminate HTTP/1.1\r\nhost: {}\r\ncontent-length: 0\r\n\r\n",
        server.addr()
    );
    let mut socket = TcpStream::connect(server.addr()).await.expect("connect");
    socket.write_all(terminate.as_bytes()).await.expect("send");
    server.read_output_until("ending", "got-term", secs(10)).await;
    drop(socket);

    server.sigterm();
    let signalled = Instant::now();
    let exit = server.exited(secs(30)).await;
    let took = signalled.elapsed();
    let exit = exit.expect("the server did not exit after SIGTERM");
    assert!(exit.success(), "exit status {exit:?} after {took:?}");
    assert!(took < Duration::from_millis(10_500), "shutdown took {took:?}");
    for ((id, _), &pid) in programs.iter().zip(&started.0) {
        assert!(
            wait_until(secs(5), || async { !alive(pid) }).await,
            "{id}'s program (pid {pid}) outlived the server"
        );
        assert_eq!(recorded_status(server.data_dir(), id), "terminated", "{id}");
    }
}
