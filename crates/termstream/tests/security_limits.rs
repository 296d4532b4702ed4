//! Limits that hold whoever asks: connection caps answer before the
//! upgrade (and only on the WebSocket routes), a token runs at most its
//! session cap, input over the rate is refused and dropped, and programs run
//! under the configured rlimits and user.

mod common;

use common::secured::{call, create_as, error_code as code, secured};
use common::ws::WsClient;
use common::{TestServer, Transport, secs};
use serde_json::json;

#[tokio::test]
async fn connection_caps_answer_before_the_upgrade() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_MAX_CONNECTIONS_PER_IP", "2")]).await;
    let a = WsClient::connect(&server, "/ws").await;
    let _b = WsClient::connect(&server, "/ws").await;
    assert_eq!(WsClient::refused_status(&server, "/ws", &[]).await, 429);
    let (status, err, _) = call(&server, "GET", "/api/sessions", None, None, &[]).await;
    assert_eq!(status, 200, "REST is not capped by the socket count: {err}");
    a.close().await;
    let ok = common::wait_until(secs(10), || async {
        WsClient::try_connect(&server, "/ws", &[]).await.is_ok()
    })
    .await;
    assert!(ok, "a closed socket gives its place back");

    let server = TestServer::start_with(&[], &[("TERMSTREAM_MAX_CONNECTIONS", "1")]).await;
    let _a = WsClient::connect(&server, "/ws").await;
    assert_eq!(WsClient::refused_status(&server, "/ws", &[]).await, 503);
}

/// A REST call that carries `Upgrade: websocket` is still a REST call: the
/// socket cap and the Origin check of the WebSocket routes are not its.
/// (The guard once took any request with that header for a socket.)
#[tokio::test]
async fn an_upgrade_header_on_a_rest_route_is_not_a_socket() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_MAX_CONNECTIONS", "1")]).await;
    let _full = WsClient::connect(&server, "/ws").await;
    let upgrade = [("upgrade", "websocket"), ("connection", "upgrade")];
    let (status, body, _) = call(&server, "GET", "/api/sessions", None, None, &upgrade).await;
    assert_eq!(status, 200, "at the socket cap: {body}");
    let foreign = [upgrade[0], upgrade[1], ("origin", "https://evil.com")];
    let (status, body, _) = call(&server, "GET", "/api/sessions", None, None, &foreign).await;
    assert_eq!(status, 200, "a read from a foreign Origin: {body}");
    // The WebSocket routes still are sockets: capped, and Origin-checked.
    assert_eq!(WsClient::refused_status(&server, "/ws/terminal/all", &[]).await, 503);
    let refused = WsClient::refused_status(&server, "/ws", &[("origin", "https://evil.com")]).await;
    assert_eq!(refused, 403);
}

#[tokio::test]
async fn a_token_runs_at_most_its_session_cap() {
    let (server, t) = secured("max_sessions_per_token = 1", &[], Transport::Plain).await;
    let body = json!({"kind":"command","argv":["sleep","100"],"project":"web"});
    let first = create_as(&server, &t.web_writer, body.clone()).await;
    let (status, err, _) = call(
        &server,
        "POST",
        "/api/sessions",
        Some(&t.web_writer),
        Some(body.clone()),
        &[],
    )
    .await;
    assert_eq!((status, code(&err)), (429, "rate_limited"), "{err}");
    create_as(
        &server,
        &t.api_writer,
        json!({"kind":"command","argv":["true"],"project":"api"}),
    )
    .await;
    let id = first["id"].as_str().unwrap();
    let (status, _, _) = call(
        &server,
        "POST",
        &format!("/api/sessions/{id}/terminate"),
        Some(&t.web_writer),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    create_as(&server, &t.web_writer, body).await;
}

#[tokio::test]
async fn input_over_the_rate_is_refused_and_dropped() {
    let env = [
        ("TERMSTREAM_WS_INPUT_BYTES_PER_SEC", "1"),
        ("TERMSTREAM_WS_INPUT_BURST_BYTES", "16"),
    ];
    let server = TestServer::start_with(&[], &env).await;
    server.create(json!({"id":"cat","argv":["cat"]})).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"terminal.input","sessionId":"cat","data":"FIRST-OK\r"}))
        .await;
    ws.send(json!({"type":"terminal.input","sessionId":"cat","data":"DROPPED-X\r"}))
        .await;
    let err = ws.until_type("error", secs(10)).await;
    assert_eq!(
        (err["code"].as_str(), err["sessionId"].as_str()),
        (Some("rate_limited"), Some("cat"))
    );
    server.input("cat", "MARKER-OK\r").await;
    let out = server.read_output_until("cat", "MARKER-OK", secs(10)).await;
    assert!(out.contains("FIRST-OK") && !out.contains("DROPPED"), "{out:?}");
    // The same limit holds on the one-session endpoint.
    let mut legacy = WsClient::connect_raw(&server, "/ws/terminal/cat").await;
    legacy.until_type("terminal_start", secs(10)).await;
    legacy.send(json!({"type":"terminal_input","data":"LEGACY-OK\r"})).await;
    legacy
        .send(json!({"type":"terminal_input","data":"LEGACY-DROPPED\r"}))
        .await;
    let err = legacy.until_type("error", secs(10)).await;
    assert!(err["message"].as_str().unwrap().starts_with("rate_limited"), "{err}");
    server.input("cat", "MARKER-TWO\r").await;
    let out = server.read_output_until("cat", "MARKER-TWO", secs(10)).await;
    assert!(out.contains("LEGACY-OK") && !out.contains("LEGACY-DROPPED"), "{out:?}");
}

#[tokio::test]
async fn programs_run_under_the_configured_rlimits() {
    let env = [
        ("TERMSTREAM_RLIMIT_NOFILE", "123"),
        ("TERMSTREAM_RLIMIT_NPROC", "4567"),
        ("TERMSTREAM_RLIMIT_AS_BYTES", "4294967296"),
    ];
    let server = TestServer::start_with(&[], &env).await;
    let script = "echo nofile=$(ulimit -n) hard=$(ulimit -Hn) nproc=$(ulimit -u) as=$(ulimit -v)";
    for kind in ["command", "pty"] {
        let id = format!("limits-{kind}");
        server
            .create(json!({"id": id, "kind": kind, "argv": ["bash", "-c", script]}))
            .await;
        let out = server.read_output_until(&id, "as=", secs(10)).await;
        assert!(
            out.contains("nofile=123 hard=123 nproc=4567 as=4194304"),
            "{kind}: {out:?}"
        );
    }
}

#[tokio::test]
async fn programs_run_as_the_configured_user() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: switching users needs the tests to run as root");
        return;
    }
    let server = TestServer::start_with(&[], &[("TERMSTREAM_RUN_AS", "nobody")]).await;
    for kind in ["command", "pty"] {
        let id = format!("who-{kind}");
        server.create(json!({"id": id, "kind": kind, "cwd": "/", "argv": ["sh", "-c", "echo uid=$(id -u) gid=$(id -g) groups=$(id -G) home=$HOME user=$USER"]})).await;
        let out = server.read_output_until(&id, "user=", secs(10)).await;
        assert!(
            out.contains("uid=65534 gid=65534 groups=65534 home=/nonexistent user=nobody"),
            "{kind}: {out:?}"
        );
    }
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_termstream"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .env("TERMSTREAM_RUN_AS", "no-such-user-here")
        .output()
        .unwrap();
    assert!(!out.status.success(), "an unknown user stops the server from starting");
    assert!(String::from_utf8_lossy(&out.stderr).contains("no-such-user-here"));
}
