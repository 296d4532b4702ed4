//! Transport: TLS end to end (HTTPS and WSS with a certificate made at test
//! time), plain HTTP to the TLS port, bad certificate paths, the header read
//! timeout (plain and TLS), the body deadline, and a SIGTERM under TLS that
//! still terminates every session.

mod common;

use std::io::{Read, Write};
use std::net::TcpStream;
use std::time::{Duration, Instant};

use common::ws::{Incoming, WsClient};
use common::{TestServer, marked_processes, secs, wait_until};
use serde_json::json;

#[tokio::test]
async fn rest_and_websocket_work_over_tls() {
    let server = TestServer::start_tls(&[], &[]).await;
    assert!(server.url("/").starts_with("https://"), "the server announced https");
    let (status, body) = server.get("/health").await;
    assert_eq!((status.as_u16(), body["status"].as_str()), (200, Some("ok")));

    // REST over HTTPS: create, then read output.
    server
        .create(json!({"id":"hello","kind":"command","argv":["sh","-c","echo hello-over-tls"]}))
        .await;
    server.read_output_until("hello", "hello-over-tls", secs(10)).await;

    // A WebSocket over WSS: attach to a pty, type, see the echo.
    server.create(json!({"id":"cat","argv":["cat"]})).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.attach("cat", "json").await;
    ws.until_type("session.attached", secs(10)).await;
    ws.send(json!({"type":"terminal.input","sessionId":"cat","data":"typed-over-wss\r"}))
        .await;
    let mut seen = String::new();
    while !seen.contains("typed-over-wss") {
        seen.push_str(
            ws.until_type("terminal.output", secs(10)).await["data"]
                .as_str()
                .unwrap(),
        );
    }

    // The server's own origin is https:// now; its http:// twin is foreign.
    let own = format!("https://{}", server.addr());
    let (mut ws, _) = WsClient::try_connect(&server, "/ws", &[("origin", &own)])
        .await
        .expect("own origin");
    assert_eq!(ws.next_json(secs(10)).await["type"], "connected");
    let twin = format!("http://{}", server.addr());
    assert_eq!(
        WsClient::refused_status(&server, "/ws", &[("origin", &twin)]).await,
        403
    );
    let resp = server
        .client
        .post(server.url("/api/sessions"))
        .header("origin", &twin)
        .json(&json!({"argv":["true"]}))
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 403);
}

#[tokio::test]
async fn plain_http_to_the_tls_port_fails_cleanly_and_the_server_carries_on() {
    let server = TestServer::start_tls(&[], &[]).await;
    let plain = reqwest::Client::new();
    let resp = plain
        .get(format!("http://{}/health", server.addr()))
        .send()
        .await
        .expect("a plain answer");
    assert_eq!(resp.status(), 400);
    assert_eq!(
        resp.text().await.unwrap(),
        "this port speaks HTTPS: use https:// or wss://\n"
    );
    // Neither plain HTTP nor a broken handshake hurts the server.
    let mut raw = TcpStream::connect(server.addr()).unwrap();
    raw.write_all(b"\x16\x03\x01\x00\x05hello-not-tls").unwrap();
    // Closed promptly (a server hung on the broken handshake would fail
    // here), after at most a TLS alert.
    let (took, got) = read_until_closed(&mut raw, Instant::now());
    assert!(took < secs(5), "closed only after {took:?}");
    assert!(got.is_empty() || got[0] == 0x15, "a TLS alert or a close, got {got:?}");
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200, "the server carries on");
    let plain_ws = tokio_tungstenite::connect_async(format!("ws://{}/ws", server.addr())).await;
    match plain_ws {
        Err(tokio_tungstenite::tungstenite::Error::Http(r)) => {
            assert_eq!(r.status(), 400, "ws:// to the TLS port is refused")
        }
        other => panic!("ws:// to the TLS port: expected the plain 400, got {other:?}"),
    }
    let (status, _) = server.get("/health").await;
    assert_eq!(status, 200);
}

/// Runs `serve` with `args`, expecting it to refuse to start; its stderr.
fn refused_start(args: &[&str]) -> String {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_termstream"))
        .args(["serve", "--listen", "127.0.0.1:0", "--data-dir"])
        .arg(data.path())
        .args(args)
        .output()
        .unwrap();
    assert!(!out.status.success(), "{args:?} started");
    assert!(out.stdout.is_empty(), "{args:?}: it never said it was listening");
    String::from_utf8_lossy(&out.stderr).into_owned()
}

#[test]
fn bad_certificate_or_key_paths_stop_the_start_with_a_clear_error() {
    let cert = common::tls::TestCert::generate();
    let (c, k) = (cert.cert_path.to_str().unwrap(), cert.key_path.to_str().unwrap());
    let err = refused_start(&["--tls-cert", "/no/such/cert.pem", "--tls-key", k]);
    assert!(
        err.contains("cannot read the TLS certificate /no/such/cert.pem"),
        "{err}"
    );
    let err = refused_start(&["--tls-cert", c, "--tls-key", "/no/such/key.pem"]);
    assert!(
        err.contains("cannot read the TLS private key /no/such/key.pem"),
        "{err}"
    );
    // A key file that holds only a certificate; a cert file with no PEM.
    let err = refused_start(&["--tls-cert", c, "--tls-key", c]);
    assert!(err.contains("TLS private key"), "{err}");
    let err = refused_start(&["--tls-cert", k, "--tls-key", k]);
    assert!(err.contains("holds no certificate"), "{err}");
    let err = refused_start(&["--tls-cert", c]);
    assert!(err.contains("--tls-key"), "{err}");
}

/// Reads from `tcp` until the server closes it; how long that took after
/// `since`, and what was read.
fn read_until_closed(tcp: &mut TcpStream, since: Instant) -> (Duration, Vec<u8>) {
    tcp.set_read_timeout(Some(secs(10))).unwrap();
    let mut got = Vec::new();
    let mut buf = [0u8; 1024];
    loop {
        match tcp.read(&mut buf) {
            Ok(0) => return (since.elapsed(), got),
            Ok(n) => got.extend_from_slice(&buf[..n]),
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => return (since.elapsed(), got),
            Err(e) => panic!("the server did not close the connection within 10 s: {e}"),
        }
    }
}

#[tokio::test]
async fn a_client_that_sends_half_a_request_or_nothing_is_disconnected() {
    let timeout = Duration::from_millis(400);
    let env = [("TERMSTREAM_HTTP_HEADER_TIMEOUT_MS", "400")];
    for tls in [false, true] {
        let server = if tls {
            TestServer::start_tls(&[], &env).await
        } else {
            TestServer::start_with(&[], &env).await
        };
        let half = format!("GET /health HTTP/1.1\r\nHost: {}\r\n", server.addr());
        let cases: &[&[u8]] = if tls {
            &[b"", b"\x16\x03\x01"]
        } else {
            &[b"", half.as_bytes()]
        };
        for sent in cases {
            let start = Instant::now();
            let mut tcp = TcpStream::connect(server.addr()).unwrap();
            tcp.write_all(sent).unwrap();
            let (took, got) = read_until_closed(&mut tcp, start);
            let what = format!("tls={tls}, sent {:?}", String::from_utf8_lossy(sent));
            assert!(took >= timeout, "{what}: closed after {took:?}, before the timeout");
            assert!(took < timeout + secs(5), "{what}: closed only after {took:?}");
            assert!(
                got.is_empty() || got.starts_with(b"HTTP/1.1 408"),
                "{what}: answered {:?}",
                String::from_utf8_lossy(&got)
            );
        }
        // A whole request on a fresh connection is served; the server carries on.
        let (status, _) = server.get("/health").await;
        assert_eq!(status, 200, "tls={tls}");
    }
}

#[tokio::test]
async fn a_body_sent_a_byte_at_a_time_is_answered_408_and_closed() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_HTTP_BODY_TIMEOUT_MS", "500")]).await;
    let mut tcp = TcpStream::connect(server.addr()).unwrap();
    let head = format!(
        "POST /api/sessions HTTP/1.1\r\nHost: {}\r\nContent-Type: application/json\r\nContent-Length: 100\r\n\r\n",
        server.addr()
    );
    tcp.write_all(head.as_bytes()).unwrap();
    // Dribble the body, a byte every 100 ms (all 100 would take 10 s), on a
    // thread, while this one reads the answer.
    let mut writer = tcp.try_clone().unwrap();
    let dribble = std::thread::spawn(move || {
        for _ in 0..100 {
            if writer.write_all(b" ").is_err() {
                return;
            }
            std::thread::sleep(Duration::from_millis(100));
        }
    });
    let start = Instant::now();
    let (took, got) = read_until_closed(&mut tcp, start);
    let text = String::from_utf8_lossy(&got).into_owned();
    assert!(text.starts_with("HTTP/1.1 408"), "answered {text:?} after {took:?}");
    assert!(text.contains(r#""code":"request_timeout""#), "{text:?}");
    assert!(took < secs(5), "closed only after {took:?}");
    dribble.join().unwrap();
    // The server carries on.
    assert_eq!(server.get("/health").await.0, 200);
}

#[tokio::test]
async fn sigterm_under_tls_terminates_sessions_with_sockets_open() {
    let mut server = TestServer::start_tls(&["--terminate-grace-ms", "500"], &[]).await;
    let info = server.create(json!({"id":"long","argv":["sleep","1000"]})).await;
    let epoch = info["epoch"].as_str().unwrap().to_owned();
    assert!(
        wait_until(secs(5), || async { !marked_processes(&epoch).is_empty() }).await,
        "the program runs"
    );
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.attach("long", "json").await;
    ws.until_type("session.attached", secs(10)).await;

    let status = server
        .stop(secs(15))
        .expect("the server exits on SIGTERM with a socket open");
    assert!(status.success(), "{status:?}");
    assert!(
        marked_processes(&epoch).is_empty(),
        "the session's program outlived the server"
    );
    // The socket saw the session end or the server go.
    let deadline = Instant::now() + secs(10);
    loop {
        match ws.recv(deadline.saturating_duration_since(Instant::now())).await {
            Some(Incoming::Closed(_)) => break,
            Some(Incoming::Json(v)) if v["type"] == "session.exit" => break,
            None => panic!("the socket heard nothing of the shutdown"),
            _ => {}
        }
    }
}

/// A client that opened a connection to the TLS port and sent nothing does
/// not hold up a shutdown (the header timeout here is 10 s, the drain 5 s).
#[tokio::test]
async fn a_silent_tls_client_does_not_delay_shutdown() {
    let mut server = TestServer::start_tls(&[], &[]).await;
    let _silent = TcpStream::connect(server.addr()).unwrap();
    // Served: the silent connection was accepted before the signal.
    assert_eq!(server.get("/health").await.0, 200);
    let status = server.stop(secs(3)).expect("the server exits at once on SIGTERM");
    assert!(status.success(), "{status:?}");
}

#[test]
fn a_zero_header_timeout_stops_the_start_with_a_clear_error() {
    let dir = tempfile::tempdir().unwrap();
    let config = dir.path().join("termstream.toml");
    std::fs::write(&config, "http_header_timeout_ms = 0\n").unwrap();
    let err = refused_start(&["--config", config.to_str().unwrap()]);
    assert!(err.contains("http_header_timeout_ms must be at least 1"), "{err}");
}
