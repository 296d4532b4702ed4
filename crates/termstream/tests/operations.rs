//! Running the server as a service: `/metrics` counters move with a real
//! workload, `/readyz` follows the data dir's writability, and SIGTERM
//! tells every client, leaves no process behind and ends within its bound
//! (a second signal, or the bound, ends it at once).

mod common;

use std::collections::HashMap;
use std::path::Path;
use std::time::{Duration, Instant};

use common::ws::{Incoming, WsClient};
use common::{TestServer, kill_marked, marked_processes, secs, wait_until};
use reqwest::StatusCode;
use serde_json::json;

/// Every sample of a Prometheus text page, by `name{labels}` as printed.
async fn scrape(server: &TestServer) -> HashMap<String, f64> {
    let resp = server.client.get(server.url("/metrics")).send().await.expect("scrape");
    assert_eq!(resp.status(), StatusCode::OK);
    let ctype = resp.headers()["content-type"].to_str().unwrap().to_owned();
    assert!(ctype.starts_with("text/plain"), "{ctype}");
    let text = resp.text().await.unwrap();
    text.lines()
        .filter(|l| !l.starts_with('#') && !l.trim().is_empty())
        .filter_map(|l| {
            let (k, v) = l.rsplit_once(' ')?;
            Some((k.to_owned(), v.parse().ok()?))
        })
        .collect()
}

/// How much `key` grew between two scrapes (absent counts as 0).
fn moved(before: &HashMap<String, f64>, after: &HashMap<String, f64>, key: &str) -> f64 {
    after.get(key).copied().unwrap_or(0.0) - before.get(key).copied().unwrap_or(0.0)
}

#[tokio::test]
async fn metrics_move_with_a_workload() {
    let server = TestServer::start().await;
    let before = scrape(&server).await;

    // A pty session that echoes, driven over /ws (binary output) and REST.
    let info = server.create(json!({ "argv": ["cat"] })).await;
    let id = info["id"].as_str().unwrap();
    let epoch = info["epoch"].as_str().unwrap();
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.attach(id, "binary").await;
    ws.until_type("session.attached", secs(10)).await;
    ws.send(json!({"type":"terminal.input","sessionId":id,"data":"hello-metrics\n"}))
        .await;
    let mut echoed = Vec::new();
    while !String::from_utf8_lossy(&echoed).contains("hello-metrics") {
        match ws.recv(secs(10)).await {
            Some(Incoming::Output { data, .. }) => echoed.extend(data),
            Some(Incoming::Json(_)) => {}
            other => panic!("no echo: {other:?}"),
        }
    }
    server.input(id, "more\n").await;
    // Errors, a spawn failure, an auth failure and a gap.
    assert_eq!(server.get("/api/sessions/nope").await.0, StatusCode::NOT_FOUND);
    let (status, _) = server
        .post("/api/sessions", json!({ "argv": ["/no/such/program"] }))
        .await;
    assert!(status.is_client_error() || status.is_server_error(), "{status}");
    let refused = server
        .client
        .get(server.url("/api/sessions"))
        .header("host", "evil.example")
        .send()
        .await
        .unwrap();
    assert_eq!(refused.status(), StatusCode::FORBIDDEN);
    let mut other = WsClient::connect(&server, "/ws").await;
    other
        .send(json!({"type":"session.attach","sessionId":id,"since":{"epoch":"0000000000000000","offset":0}}))
        .await;
    other.until_type("session.gap", secs(10)).await;

    let after = scrape(&server).await;
    let m = |k: &str| moved(&before, &after, k);
    assert_eq!(m(r#"termstream_sessions_created_total{kind="pty"}"#), 1.0);
    assert_eq!(after[r#"termstream_sessions{kind="pty",status="running"}"#], 1.0);
    assert_eq!(m("termstream_spawn_failures_total"), 1.0);
    assert_eq!(m(r#"termstream_connections_total{endpoint="ws"}"#), 2.0);
    assert_eq!(after[r#"termstream_connections{endpoint="ws"}"#], 2.0);
    assert_eq!(m(r#"termstream_attachments_total{endpoint="ws"}"#), 2.0);
    assert_eq!(after[r#"termstream_attachments{endpoint="ws"}"#], 2.0);
    let typed = ("hello-metrics\n".len() + "more\n".len()) as f64;
    assert_eq!(m(r#"termstream_bytes_total{direction="in"}"#), typed);
    assert!(m(r#"termstream_bytes_total{direction="out"}"#) >= "hello-metrics".len() as f64);
    assert!(m("termstream_output_frames_total") >= 1.0);
    assert_eq!(m(r#"termstream_errors_total{code="session_not_found"}"#), 1.0);
    assert_eq!(m(r#"termstream_auth_failures_total{reason="host"}"#), 1.0);
    assert_eq!(m(r#"termstream_gaps_total{reason="epoch_changed"}"#), 1.0);
    assert!(after.contains_key("termstream_input_busy_total"));
    assert!(after.contains_key("termstream_outbox_queued_frames"));
    // Every echo delivered live was timed from the PTY read to the socket.
    assert!(m("termstream_output_delivery_seconds_count") >= 1.0, "{after:?}");
    assert!(after.contains_key(r#"termstream_output_delivery_seconds_bucket{le="0.001"}"#));

    // Closing the sockets brings the gauges back down.
    ws.close().await;
    other.close().await;
    assert!(
        wait_until(secs(10), || async {
            let now = scrape(&server).await;
            now[r#"termstream_connections{endpoint="ws"}"#] == 0.0
                && now[r#"termstream_attachments{endpoint="ws"}"#] == 0.0
        })
        .await,
        "the connection and attachment gauges did not return to 0"
    );
    server.terminate(id).await;
    kill_marked(epoch);
}

/// Makes a directory unwritable even for root (the immutable attribute),
/// or by its mode otherwise; undone when dropped.
struct Unwritable<'a>(&'a Path, bool);

impl<'a> Unwritable<'a> {
    fn new(dir: &'a Path) -> Unwritable<'a> {
        let root = rustix::process::geteuid().is_root();
        let ok = if root {
            std::process::Command::new("chattr")
                .arg("+i")
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success())
        } else {
            std::process::Command::new("chmod")
                .arg("555")
                .arg(dir)
                .status()
                .is_ok_and(|s| s.success())
        };
        assert!(ok, "cannot make {} unwritable", dir.display());
        Unwritable(dir, root)
    }
}

impl Drop for Unwritable<'_> {
    fn drop(&mut self) {
        let (cmd, arg) = if self.1 { ("chattr", "-i") } else { ("chmod", "755") };
        let _ = std::process::Command::new(cmd).arg(arg).arg(self.0).status();
    }
}

#[tokio::test]
async fn readyz_follows_the_data_dir() {
    let server = TestServer::start().await;
    let (status, body) = server.get("/readyz").await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert_eq!(body["status"], "ready");
    {
        let _guard = Unwritable::new(server.data_dir());
        assert!(
            wait_until(secs(10), || async {
                server.get("/readyz").await.0 == StatusCode::SERVICE_UNAVAILABLE
            })
            .await,
            "/readyz stayed ready with an unwritable data dir"
        );
        let (_, body) = server.get("/readyz").await;
        assert_eq!(body["status"], "unready");
        assert!(body["failing"][0].as_str().unwrap().contains("data dir"), "{body}");
        // Alive all the same.
        assert_eq!(server.get("/healthz").await.0, StatusCode::OK);
        assert_eq!(server.get("/health").await.0, StatusCode::OK);
    }
    assert!(
        wait_until(secs(10), || async { server.get("/readyz").await.0 == StatusCode::OK }).await,
        "/readyz did not come back once the data dir was writable"
    );
}

/// Reads until `server.shutdown`, then expects the 1001 close.
async fn told_shutdown(ws: &mut WsClient, what: &str) {
    loop {
        match ws.recv(secs(10)).await {
            Some(Incoming::Json(v)) if v["type"] == "server.shutdown" => break,
            Some(Incoming::Json(_) | Incoming::Output { .. }) => {}
            other => panic!("{what}: no server.shutdown: {other:?}"),
        }
    }
    loop {
        match ws.recv(secs(10)).await {
            Some(Incoming::Closed(code)) => {
                assert_eq!(code, Some(1001), "{what}");
                return;
            }
            Some(Incoming::Json(_) | Incoming::Output { .. }) => {}
            None => panic!("{what}: no close after server.shutdown"),
        }
    }
}

#[tokio::test]
async fn sigterm_tells_every_client_and_leaves_no_process() {
    let mut server = TestServer::start_with(
        &["--terminate-grace-ms", "500"],
        &[("TERMSTREAM_SHUTDOWN_TIMEOUT_MS", "8000")],
    )
    .await;
    let shell = server
        .create(json!({ "argv": ["bash", "--norc", "--noprofile"] }))
        .await;
    let stubborn = server
        .create(json!({ "kind": "command", "command": "trap '' TERM HUP; sleep 1000 & echo ready; while :; do sleep 1; done" }))
        .await;
    let (a, b) = (shell["id"].as_str().unwrap(), stubborn["id"].as_str().unwrap());
    server.input(a, "sleep 1001 & echo started\n").await;
    server.read_output_until(a, "started", secs(10)).await;
    server.read_output_until(b, "ready", secs(10)).await;
    let epochs = [shell["epoch"].as_str().unwrap(), stubborn["epoch"].as_str().unwrap()];

    let mut clients = Vec::new();
    for id in [a, b] {
        let mut ws = WsClient::connect(&server, "/ws").await;
        ws.attach(id, "json").await;
        ws.until_type("session.attached", secs(10)).await;
        clients.push(ws);
    }
    let mut legacy = WsClient::connect_raw(&server, &format!("/ws/terminal/{a}")).await;
    assert_eq!(legacy.next_json(secs(10)).await["type"], "terminal_connected");

    let started = Instant::now();
    let status = server.stop(secs(12)).expect("the server did not exit after SIGTERM");
    assert!(status.success(), "exit status {status:?}");
    assert!(
        started.elapsed() < Duration::from_secs(10),
        "shutdown took {:?}",
        started.elapsed()
    );
    for (i, ws) in clients.iter_mut().enumerate() {
        told_shutdown(ws, &format!("/ws client {i}")).await;
    }
    told_shutdown(&mut legacy, "legacy client").await;
    for epoch in epochs {
        let gone = wait_until(secs(5), || async { marked_processes(epoch).is_empty() }).await;
        assert!(gone, "processes left after shutdown: {:?}", marked_processes(epoch));
    }
}

/// Starts a server whose only session ignores SIGTERM for longer than the
/// test waits, and a socket attached to it; returns both and the epoch.
async fn stubborn_server(timeout_ms: &str) -> (TestServer, WsClient, String) {
    let server = TestServer::start_with(
        &["--terminate-grace-ms", "60000"],
        &[("TERMSTREAM_SHUTDOWN_TIMEOUT_MS", timeout_ms)],
    )
    .await;
    let info = server
        .create(json!({ "kind": "command", "command": "trap '' TERM HUP; echo ready; while :; do sleep 1; done" }))
        .await;
    let id = info["id"].as_str().unwrap();
    server.read_output_until(id, "ready", secs(10)).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.attach(id, "json").await;
    ws.until_type("session.attached", secs(10)).await;
    (server, ws, info["epoch"].as_str().unwrap().to_owned())
}

fn signal(server: &TestServer) {
    let pid = rustix::process::Pid::from_raw(server.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::TERM).unwrap();
}

#[tokio::test]
async fn a_second_signal_exits_at_once() {
    let (mut server, mut ws, epoch) = stubborn_server("60000").await;
    signal(&server);
    // The shutdown has begun: the socket was told.
    told_shutdown(&mut ws, "client").await;
    let started = Instant::now();
    let status = server.stop(secs(10)).expect("a second SIGTERM did not end the server");
    assert!(started.elapsed() < secs(5), "took {:?}", started.elapsed());
    assert_eq!(status.code(), Some(130), "{status:?}");
    kill_marked(&epoch);
}

#[tokio::test]
async fn shutdown_ends_within_its_bound() {
    let (mut server, _ws, epoch) = stubborn_server("1000").await;
    let started = Instant::now();
    let status = server.stop(secs(10)).expect("the server outlived its shutdown bound");
    assert!(started.elapsed() < secs(6), "took {:?}", started.elapsed());
    assert_eq!(status.code(), Some(1), "{status:?}");
    kill_marked(&epoch);
}

/// A SIGTERM sent as soon as the server printed its address starts the
/// shutdown (exit 0), not the signal's default action: the handlers are
/// installed before the server says it is up.
#[tokio::test]
async fn a_signal_as_soon_as_the_address_is_printed_shuts_down_cleanly() {
    for _ in 0..5 {
        let mut server = TestServer::start_with(&[], &[]).await;
        let status = server.stop(secs(10)).expect("no exit after SIGTERM");
        assert!(status.success(), "{status:?}");
    }
}

/// A SIGHUP sent as soon as the server printed its address is a reload,
/// not the signal's default action: the server keeps serving.
#[tokio::test]
async fn a_sighup_as_soon_as_the_address_is_printed_keeps_the_server() {
    for _ in 0..5 {
        let mut server = TestServer::start_with(&[], &[]).await;
        let pid = rustix::process::Pid::from_raw(server.pid() as i32).expect("pid");
        rustix::process::kill_process(pid, rustix::process::Signal::HUP).expect("SIGHUP");
        assert_eq!(server.get("/readyz").await.0, StatusCode::OK, "still serving");
        let status = server.stop(secs(10)).expect("no exit after SIGTERM");
        assert!(status.success(), "{status:?}");
    }
}

#[tokio::test]
async fn systemd_hears_ready_and_stopping() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("notify.sock");
    let sock = std::os::unix::net::UnixDatagram::bind(&path).unwrap();
    sock.set_read_timeout(Some(secs(10))).unwrap();
    let mut server = TestServer::start_with(&[], &[("NOTIFY_SOCKET", path.to_str().unwrap())]).await;
    let mut buf = [0u8; 256];
    let n = sock.recv(&mut buf).expect("no READY=1");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "READY=1");
    // The server answers once it said it is ready.
    assert_eq!(server.get("/readyz").await.0, StatusCode::OK);
    let status = server.stop(secs(10)).expect("no exit after SIGTERM");
    assert!(status.success(), "{status:?}");
    let n = sock.recv(&mut buf).expect("no STOPPING=1");
    assert_eq!(std::str::from_utf8(&buf[..n]).unwrap().trim(), "STOPPING=1");
}

#[tokio::test]
async fn sighup_reloads_tokens_and_the_certificate_keeping_sockets() {
    use termstream::auth::token;
    let (old_token, new_token) = (token::generate(), token::generate());
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("termstream.toml");
    let config = |t: &str| {
        format!(
            "[[tokens]]\nname = \"ops\"\nsha256 = \"{}\"\nadmin = true\n",
            token::hash(t)
        )
    };
    std::fs::write(&path, config(&old_token)).unwrap();
    let server = TestServer::start_tls(&["--config", path.to_str().unwrap()], &[]).await;
    let sessions = |client: reqwest::Client, t: String| {
        let url = server.url("/api/sessions");
        async move { client.get(url).bearer_auth(t).send().await.map(|r| r.status().as_u16()) }
    };
    assert_eq!(sessions(server.client.clone(), old_token.clone()).await.unwrap(), 200);
    let auth = format!("Bearer {old_token}");
    let (mut ws, _) = WsClient::try_connect(&server, "/ws", &[("authorization", &auth)])
        .await
        .expect("socket with the old token");
    ws.until_type("connected", secs(10)).await;

    // New token and new certificate in place, then SIGHUP.
    std::fs::write(&path, config(&new_token)).unwrap();
    let fresh = common::tls::TestCert::generate();
    let cert = server.cert().unwrap();
    std::fs::copy(&fresh.cert_path, &cert.cert_path).unwrap();
    std::fs::copy(&fresh.key_path, &cert.key_path).unwrap();
    let pid = rustix::process::Pid::from_raw(server.pid() as i32).unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();

    // A client that trusts only the new certificate gets in with the new token.
    let trusting_new = fresh.reqwest_client();
    assert!(
        wait_until(secs(10), || async {
            sessions(trusting_new.clone(), new_token.clone()).await.ok() == Some(200)
        })
        .await,
        "the new certificate and token were not taken"
    );
    assert_eq!(sessions(trusting_new.clone(), old_token.clone()).await.unwrap(), 401);
    // The socket opened before the reload is still served.
    ws.send(json!({"type":"ping"})).await;
    assert_eq!(ws.until_type("pong", secs(10)).await["type"], "pong");
    // A bad file is refused and the tokens stay.
    std::fs::write(&path, "ring_bytes = \"many\"\n").unwrap();
    rustix::process::kill_process(pid, rustix::process::Signal::HUP).unwrap();
    assert_eq!(sessions(trusting_new.clone(), new_token.clone()).await.unwrap(), 200);
}
