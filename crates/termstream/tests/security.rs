//! Secure by default: each rule fails closed. Credentials (no token → 401
//! and nothing created), scopes (a project-scoped token cannot list, read,
//! attach or write another project's sessions), read-only viewers (0 bytes
//! reach the PTY), tickets (once, then expired), origins and hosts (403),
//! headers, caps, and a child environment without the server's secret.

mod common;

use std::time::Duration;

use common::secured::{call, error_code as code, secured};
use common::ws::{Incoming, WsClient};
use common::{TestServer, Transport, secs, session_ids};
use serde_json::{Value, json};
use termstream::auth::token;

/// Configuration for servers whose tests attach to another project's
/// session: that attach is answered `session_not_found` as a missing id is,
/// after the attach wait (see `tests/attach_wait.rs`), which is 3 s by
/// default; 100 ms keeps the answer and the test fast.
const SHORT_ATTACH_WAIT: &str = "attach_wait_ms = 100";

async fn create_as(server: &TestServer, token: &str, body: Value) -> Value {
    let (status, info, _) = call(server, "POST", "/api/sessions", Some(token), Some(body.clone()), &[]).await;
    assert_eq!(status, 201, "create {body} answered {info}");
    info
}

/// Output of a session, read with the admin token.
async fn output_as(server: &TestServer, token: &str, id: &str) -> String {
    let resp = server
        .client
        .get(server.url(&format!("/api/sessions/{id}/output?since=0")))
        .bearer_auth(token)
        .send()
        .await
        .unwrap();
    assert_eq!(resp.status(), 200);
    String::from_utf8_lossy(&resp.bytes().await.unwrap()).into_owned()
}

async fn wait_output(server: &TestServer, token: &str, id: &str, needle: &str) -> String {
    let deadline = std::time::Instant::now() + secs(10);
    loop {
        let out = output_as(server, token, id).await;
        if out.contains(needle) {
            return out;
        }
        assert!(std::time::Instant::now() < deadline, "{needle:?} not in {out:?}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
}

/// A `/ws` client authenticated by the `bearer.TOKEN` subprotocol; reads
/// the `connected` message.
async fn ws_as(server: &TestServer, token: &str) -> WsClient {
    let proto = format!("bearer.{token}");
    let (mut ws, resp) = WsClient::try_connect(server, "/ws", &[("sec-websocket-protocol", &proto)])
        .await
        .expect("upgrade with a bearer subprotocol");
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        proto.as_str(),
        "the protocol is echoed"
    );
    assert_eq!(ws.next_json(secs(10)).await["type"], "connected");
    ws
}

#[tokio::test]
async fn no_or_bad_credential_is_401_and_creates_nothing() {
    let (server, t) = secured("", &[], Transport::Plain).await;
    let body = json!({"kind":"command","argv":["true"]});
    for token in [None, Some("tst_0000"), Some(t.admin.as_str()).map(|_| "wrong")] {
        let (status, err, _) = call(&server, "POST", "/api/sessions", token, Some(body.clone()), &[]).await;
        assert_eq!((status, code(&err)), (401, "unauthorized"), "{token:?}: {err}");
    }
    let (status, err, _) = call(
        &server,
        "POST",
        "/api/sessions",
        None,
        Some(body),
        &[("authorization", "Basic YTpi")],
    )
    .await;
    assert_eq!((status, code(&err)), (401, "unauthorized"));
    let (status, err, _) = call(&server, "GET", "/api/sessions", None, None, &[]).await;
    assert_eq!((status, code(&err)), (401, "unauthorized"));
    // The hash itself is not a credential.
    let (status, _, _) = call(&server, "GET", "/api/sessions", Some(&token::hash(&t.admin)), None, &[]).await;
    assert_eq!(status, 401);
    // WebSockets are refused before the upgrade.
    assert_eq!(WsClient::refused_status(&server, "/ws", &[]).await, 401);
    assert_eq!(
        WsClient::refused_status(&server, "/ws", &[("authorization", "Bearer nope")]).await,
        401
    );
    assert_eq!(
        WsClient::refused_status(&server, "/ws", &[("sec-websocket-protocol", "bearer.nope")]).await,
        401
    );
    assert_eq!(WsClient::refused_status(&server, "/ws/terminal/all", &[]).await, 401);
    // A long-lived token in the URL is refused even though it is valid.
    assert_eq!(
        WsClient::refused_status(&server, &format!("/ws?token={}", t.admin), &[]).await,
        401
    );
    // Health needs nothing; and nothing was created.
    assert_eq!(call(&server, "GET", "/health", None, None, &[]).await.0, 200);
    let (status, list, _) = call(&server, "GET", "/api/sessions", Some(&t.admin), None, &[]).await;
    assert_eq!((status, list["total"].clone()), (200, json!(0)));
}

#[tokio::test]
async fn a_project_token_cannot_see_or_touch_another_projects_sessions() {
    let (server, t) = secured(SHORT_ATTACH_WAIT, &[], Transport::Plain).await;
    create_as(
        &server,
        &t.admin,
        json!({"id":"w1","kind":"command","argv":["sleep","100"],"project":"web"}),
    )
    .await;
    create_as(
        &server,
        &t.admin,
        json!({"id":"a1","kind":"command","argv":["sleep","100"],"project":"api"}),
    )
    .await;

    let (_, list, _) = call(&server, "GET", "/api/sessions", Some(&t.web_writer), None, &[]).await;
    let ids = session_ids(&list);
    assert_eq!(ids, ["w1"]);
    let (_, list, _) = call(
        &server,
        "GET",
        "/api/sessions?project=api",
        Some(&t.web_writer),
        None,
        &[],
    )
    .await;
    assert_eq!(list["total"], 0);
    let (_, compat, _) = call(&server, "GET", "/terminal/sessions", Some(&t.web_writer), None, &[]).await;
    assert_eq!(compat["total"], 1);
    let (_, list, _) = call(&server, "GET", "/api/sessions", Some(&t.admin), None, &[]).await;
    assert_eq!(list["total"], 2);

    // Another project's session answers exactly as one that does not exist.
    for (method, path) in [
        ("GET", "/api/sessions/a1"),
        ("GET", "/api/sessions/a1/output"),
        ("GET", "/api/sessions/a1/snapshot"),
        ("GET", "/api/sessions/a1/recording.cast"),
        ("POST", "/api/sessions/a1/input"),
        ("POST", "/api/sessions/a1/resize"),
        ("POST", "/api/sessions/a1/terminate"),
        ("DELETE", "/api/sessions/a1"),
        ("GET", "/terminal/a1"),
        ("POST", "/terminal/a1/terminate"),
    ] {
        let body = (method == "POST").then(|| json!({"data":"x","cols":10,"rows":10}));
        let (status, err, _) = call(&server, method, path, Some(&t.web_writer), body.clone(), &[]).await;
        assert_eq!(
            (status, code(&err)),
            (404, "session_not_found"),
            "{method} {path}: {err}"
        );
        let ghost = path.replace("a1", "ghost");
        let (_, ghost_err, _) = call(&server, method, &ghost, Some(&t.web_writer), body, &[]).await;
        assert_eq!(
            err["error"]["message"].as_str().unwrap().replace("a1", "ghost"),
            ghost_err["error"]["message"]
        );
    }
    // Creating in a project it does not hold is 403.
    let (status, err, _) = call(
        &server,
        "POST",
        "/api/sessions",
        Some(&t.web_writer),
        Some(json!({"kind":"command","argv":["true"],"project":"api"})),
        &[],
    )
    .await;
    assert_eq!((status, code(&err)), (403, "forbidden"));
    let (status, err, _) = call(
        &server,
        "POST",
        "/terminal/start",
        Some(&t.web_writer),
        Some(json!({"command":"true"})),
        &[],
    )
    .await;
    assert_eq!(
        (status, code(&err)),
        (403, "forbidden"),
        "the compat API creates in project default"
    );
    // Its own project works.
    create_as(
        &server,
        &t.web_writer,
        json!({"id":"w2","kind":"command","argv":["true"],"project":"web"}),
    )
    .await;
    // Unclassified routes are admin-only.
    let (status, _, _) = call(&server, "GET", "/no/such/route", Some(&t.web_writer), None, &[]).await;
    assert_eq!(status, 403);

    // Over the socket: attach and input to the other project are not found.
    let mut ws = ws_as(&server, &t.web_writer).await;
    ws.attach("a1", "json").await;
    let err = ws.until_type("error", secs(10)).await;
    assert_eq!(
        (err["code"].as_str(), err["sessionId"].as_str()),
        (Some("session_not_found"), Some("a1"))
    );
    ws.send(json!({"type":"terminal.input","sessionId":"a1","data":"x"}))
        .await;
    assert_eq!(ws.until_type("error", secs(10)).await["code"], "session_not_found");
    ws.attach("w1", "json").await;
    assert_eq!(ws.until_type("session.attached", secs(10)).await["sessionId"], "w1");
    // The legacy one-session socket closes as for an unknown id; the
    // all-sessions socket starts only what it may see.
    let (mut legacy, _) = WsClient::try_connect(
        &server,
        "/ws/terminal/a1",
        &[("authorization", &format!("Bearer {}", t.web_writer))],
    )
    .await
    .unwrap();
    match legacy.recv(secs(10)).await {
        Some(Incoming::Closed(Some(1008))) => {}
        other => panic!("expected close 1008, got {other:?}"),
    }
    let (mut all, _) = WsClient::try_connect(
        &server,
        "/ws/terminal/all",
        &[("authorization", &format!("Bearer {}", t.api_writer))],
    )
    .await
    .unwrap();
    assert_eq!(all.next_json(secs(10)).await["type"], "terminal_connected");
    let start = all.next_json(secs(10)).await;
    assert_eq!(
        (start["type"].as_str(), start["session_id"].as_str()),
        (Some("terminal_start"), Some("a1"))
    );
    create_as(
        &server,
        &t.admin,
        json!({"id":"w3","kind":"command","argv":["true"],"project":"web"}),
    )
    .await;
    create_as(
        &server,
        &t.admin,
        json!({"id":"a2","kind":"command","argv":["true"],"project":"api"}),
    )
    .await;
    let start = all.until_type("terminal_start", secs(10)).await;
    assert_eq!(
        start["session_id"], "a2",
        "w3 of project web is not announced to an api token"
    );
}

#[tokio::test]
async fn a_read_only_viewer_watches_but_zero_bytes_reach_the_pty() {
    let (server, t) = secured("", &[], Transport::Plain).await;
    create_as(
        &server,
        &t.admin,
        json!({"id":"cat","argv":["cat"],"project":"web","cols":80,"rows":24}),
    )
    .await;

    let (status, err, _) = call(
        &server,
        "POST",
        "/api/sessions/cat/input",
        Some(&t.web_reader),
        Some(json!({"data":"LEAKED-REST\r"})),
        &[],
    )
    .await;
    assert_eq!((status, code(&err)), (403, "read_only"));
    let (status, err, _) = call(
        &server,
        "POST",
        "/api/sessions/cat/resize",
        Some(&t.web_reader),
        Some(json!({"cols":100,"rows":30})),
        &[],
    )
    .await;
    assert_eq!((status, code(&err)), (403, "read_only"));
    for path in ["/api/sessions/cat/terminate", "/api/sessions"] {
        let (status, err, _) = call(
            &server,
            "POST",
            path,
            Some(&t.web_reader),
            Some(json!({"project":"web"})),
            &[],
        )
        .await;
        assert_eq!((status, code(&err)), (403, "read_only"), "{path}");
    }
    let (status, _, _) = call(
        &server,
        "GET",
        "/api/sessions/cat/snapshot",
        Some(&t.web_reader),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200, "reading is allowed");

    let mut ws = ws_as(&server, &t.web_reader).await;
    ws.attach("cat", "json").await;
    ws.until_type("session.attached", secs(10)).await;
    ws.send(json!({"type":"terminal.input","sessionId":"cat","data":"LEAKED-WS\r"}))
        .await;
    assert_eq!(ws.until_type("error", secs(10)).await["code"], "read_only");
    ws.send(json!({"type":"terminal_input","sessionName":"cat","data":"LEAKED-FLAT\r"}))
        .await;
    assert_eq!(ws.until_type("error", secs(10)).await["code"], "read_only");
    ws.send(json!({"type":"terminal.resize","sessionId":"cat","cols":100,"rows":30}))
        .await;
    assert_eq!(ws.until_type("error", secs(10)).await["code"], "read_only");

    // Input is handled in order: a marker written after the refusals shows
    // up, and nothing refused came before it.
    let (status, _, _) = call(
        &server,
        "POST",
        "/api/sessions/cat/input",
        Some(&t.admin),
        Some(json!({"data":"MARKER-OK\r"})),
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let out = wait_output(&server, &t.admin, "cat", "MARKER-OK").await;
    assert!(!out.contains("LEAKED"), "refused input reached the PTY: {out:?}");
    let (_, info, _) = call(&server, "GET", "/api/sessions/cat", Some(&t.web_reader), None, &[]).await;
    assert_eq!((info["cols"].as_u64(), info["rows"].as_u64()), (Some(80), Some(24)));
    // The viewer saw the marker live.
    let mut seen = String::new();
    while !seen.contains("MARKER-OK") {
        let m = ws.until_type("terminal.output", secs(10)).await;
        seen.push_str(m["data"].as_str().unwrap());
    }
}

#[tokio::test]
async fn a_ticket_opens_one_socket_once_and_carries_its_tokens_scope() {
    let (server, t) = secured(SHORT_ATTACH_WAIT, &[], Transport::Plain).await;
    create_as(
        &server,
        &t.admin,
        json!({"id":"a1","kind":"command","argv":["sleep","100"],"project":"api"}),
    )
    .await;
    let (status, err, _) = call(&server, "POST", "/api/ws-ticket", None, None, &[]).await;
    assert_eq!((status, code(&err)), (401, "unauthorized"));
    let (status, body, _) = call(&server, "POST", "/api/ws-ticket", Some(&t.web_writer), None, &[]).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(body["expiresInMs"], 30_000);
    let ticket = body["ticket"].as_str().unwrap().to_owned();

    // Not a REST credential.
    let (status, _, _) = call(
        &server,
        "GET",
        &format!("/api/sessions?token={ticket}"),
        None,
        None,
        &[],
    )
    .await;
    assert_eq!(status, 401);
    let path = format!("/ws?token={ticket}");
    let mut ws = WsClient::connect(&server, &path).await;
    ws.attach("a1", "json").await;
    assert_eq!(
        ws.until_type("error", secs(10)).await["code"],
        "session_not_found",
        "the ticket has web-writer's scope"
    );
    assert_eq!(
        WsClient::refused_status(&server, &path, &[]).await,
        401,
        "a ticket works once"
    );
    assert_eq!(
        WsClient::refused_status(&server, "/ws?token=tkt_forged", &[]).await,
        401
    );

    // Tickets expire: with a TTL of 0 a ticket is stale on arrival.
    let (server, t) = secured("ticket_ttl_ms = 0", &[], Transport::Plain).await;
    let (_, body, _) = call(&server, "POST", "/api/ws-ticket", Some(&t.admin), None, &[]).await;
    let path = format!("/ws?token={}", body["ticket"].as_str().unwrap());
    assert_eq!(
        WsClient::refused_status(&server, &path, &[]).await,
        401,
        "an expired ticket is refused"
    );
}

#[tokio::test]
async fn websocket_credentials_in_headers_and_the_query_when_allowed() {
    let (server, t) = secured("allow_token_in_query = true", &[], Transport::Plain).await;
    let bearer = format!("Bearer {}", t.admin);
    let (mut ws, _) = WsClient::try_connect(&server, "/ws", &[("authorization", &bearer)])
        .await
        .unwrap();
    assert_eq!(ws.next_json(secs(10)).await["type"], "connected");
    let _ = ws_as(&server, &t.web_reader).await;
    // A client offering its own protocol too still gets the bearer one back.
    let offered = format!("termstream, bearer.{}", t.admin);
    let (_, resp) = WsClient::try_connect(&server, "/ws", &[("sec-websocket-protocol", &offered)])
        .await
        .unwrap();
    assert_eq!(
        resp.headers()["sec-websocket-protocol"],
        format!("bearer.{}", t.admin).as_str()
    );
    let mut ws = WsClient::connect(&server, &format!("/ws?token={}", t.admin)).await;
    ws.send(json!({"type":"ping"})).await;
    assert_eq!(ws.until_type("pong", secs(10)).await["type"], "pong");
}

#[tokio::test]
async fn foreign_origins_are_403_and_nothing_is_created() {
    let server = TestServer::start_with(&["--allowed-origin", "https://app.example.com"], &[]).await;
    let port = server.url("").rsplit(':').next().unwrap().to_owned();
    let own = format!("http://127.0.0.1:{port}");
    let body = json!({"kind":"command","argv":["true"]});
    for origin in [
        "https://evil.com".to_owned(),
        "null".to_owned(),
        format!("http://127.0.0.1:{}", port.parse::<u16>().unwrap() + 1),
        format!("https://127.0.0.1:{port}"),
        format!("http://127.0.0.1:{port}.evil.com"),
        "https://app.example.com.evil.com".to_owned(),
        format!("http://localhost:{port}"),
    ] {
        let (status, err, _) = call(
            &server,
            "POST",
            "/api/sessions",
            None,
            Some(body.clone()),
            &[("origin", &origin)],
        )
        .await;
        assert_eq!((status, code(&err)), (403, "forbidden"), "{origin}");
        assert_eq!(
            WsClient::refused_status(&server, "/ws", &[("origin", &origin)]).await,
            403,
            "{origin}"
        );
        let (status, _, _) = call(&server, "DELETE", "/api/sessions/x", None, None, &[("origin", &origin)]).await;
        assert_eq!(status, 403, "{origin}");
    }
    assert_eq!(
        server.get("/api/sessions").await.1["total"],
        0,
        "no request reached a handler"
    );
    // The server's own origin and the allowed one pass; a read from anywhere
    // is answered (the browser keeps it from a foreign page: no CORS headers).
    for origin in [own.as_str(), "https://app.example.com"] {
        let (status, _, _) = call(
            &server,
            "POST",
            "/api/sessions",
            None,
            Some(body.clone()),
            &[("origin", origin)],
        )
        .await;
        assert_eq!(status, 201, "{origin}");
        let (mut ws, _) = WsClient::try_connect(&server, "/ws", &[("origin", origin)])
            .await
            .expect(origin);
        assert_eq!(ws.next_json(secs(10)).await["type"], "connected");
    }
    let (status, _, headers) = call(
        &server,
        "GET",
        "/api/sessions",
        None,
        None,
        &[("origin", "https://evil.com")],
    )
    .await;
    assert_eq!(status, 200);
    assert!(headers.get("access-control-allow-origin").is_none());
}

#[tokio::test]
async fn a_rebinding_host_is_403() {
    let server = TestServer::start_with(&["--allowed-host", "termstream.test"], &[]).await;
    let port = server.url("").rsplit(':').next().unwrap().to_owned();
    for host in [
        "attacker.tld".to_owned(),
        format!("attacker.tld:{port}"),
        format!("127.0.0.1:{port}.evil.com"),
        "127.0.0.1:1".to_owned(),
    ] {
        let (status, err, _) = call(&server, "GET", "/api/sessions", None, None, &[("host", &host)]).await;
        assert_eq!((status, code(&err)), (403, "forbidden"), "{host}");
        let (status, _, _) = call(
            &server,
            "POST",
            "/api/sessions",
            None,
            Some(json!({"argv":["true"]})),
            &[("host", &host)],
        )
        .await;
        assert_eq!(status, 403, "{host}");
        assert_eq!(
            WsClient::refused_status(&server, "/ws", &[("host", &host)]).await,
            403,
            "{host}"
        );
    }
    for host in [
        format!("localhost:{port}"),
        format!("127.0.0.1:{port}"),
        format!("[::1]:{port}"),
        "termstream.test:9".into(),
    ] {
        let (status, _, _) = call(&server, "GET", "/api/sessions", None, None, &[("host", &host)]).await;
        assert_eq!(status, 200, "{host}");
    }
}

#[tokio::test]
async fn every_response_carries_the_security_headers() {
    let (server, t) = secured("", &[], Transport::Plain).await;
    for (path, token, status) in [
        ("/health", None, 200),
        ("/api/sessions", None, 401),
        ("/api/sessions", Some(t.admin.as_str()), 200),
        ("/nope", Some(t.admin.as_str()), 404),
    ] {
        let (got, _, h) = call(&server, "GET", path, token, None, &[]).await;
        assert_eq!(got, status, "{path}");
        let csp = h["content-security-policy"].to_str().unwrap();
        assert!(
            csp.contains("default-src 'self'") && csp.contains("frame-ancestors 'none'"),
            "{csp}"
        );
        assert_eq!(h["x-content-type-options"], "nosniff");
        assert_eq!(h["referrer-policy"], "no-referrer");
        assert_eq!(h["x-frame-options"], "DENY");
    }
}

#[tokio::test]
async fn the_childs_environment_holds_no_server_secret() {
    let secret = token::generate();
    let server = TestServer::start_with(&[], &[("TERMSTREAM_ADMIN_TOKEN", &secret)]).await;
    // The environment token is a credential...
    let (status, _, _) = call(&server, "GET", "/api/sessions", None, None, &[]).await;
    assert_eq!(status, 401, "a token in the environment turns auth on");
    create_as(
        &server,
        &secret,
        json!({"id":"env","argv":["sh","-c","env; echo END-OF-ENV"]}),
    )
    .await;
    let out = wait_output(&server, &secret, "env", "END-OF-ENV").await;
    // ...and neither it nor its hash reaches the program.
    assert!(out.contains("TERMSTREAM_SESSION="), "{out}");
    assert!(!out.contains(&secret) && !out.contains(&token::hash(&secret)), "{out}");
    assert!(!out.contains("TERMSTREAM_ADMIN_TOKEN"), "{out}");
}

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
async fn events_reach_only_sockets_that_may_read_their_project() {
    let (server, t) = secured("", &[], Transport::Plain).await;
    let mut web = ws_as(&server, &t.web_reader).await;
    let mut api = ws_as(&server, &t.api_writer).await;
    for ws in [&mut web, &mut api] {
        ws.send(json!({"type":"subscribe","channels":["*"]})).await;
        ws.until_type("subscribed", secs(10)).await;
    }
    let event = |project: &str| json!({"type":"notification","title":"t","message":project,"project":project});
    let (status, err, _) = call(
        &server,
        "POST",
        "/api/events",
        Some(&t.web_reader),
        Some(event("web")),
        &[],
    )
    .await;
    assert_eq!((status, code(&err)), (403, "read_only"));
    let (status, _, _) = call(
        &server,
        "POST",
        "/api/events",
        Some(&t.api_writer),
        Some(json!({"type":"notification","title":"t","message":"m"})),
        &[],
    )
    .await;
    assert_eq!(status, 403, "an event without a project is admin-only");
    for project in ["api", "web", "api"] {
        let (status, _, _) = call(
            &server,
            "POST",
            "/api/events",
            Some(&t.admin),
            Some(event(project)),
            &[],
        )
        .await;
        assert_eq!(status, 202);
    }
    assert_eq!(web.until_type("notification", secs(10)).await["message"], "web");
    assert_eq!(api.until_type("notification", secs(10)).await["message"], "api");
    assert_eq!(
        api.until_type("notification", secs(10)).await["message"],
        "api",
        "the web event was skipped"
    );
}

#[test]
fn listening_on_the_network_without_a_token_refuses_to_start() {
    let data = tempfile::tempdir().unwrap();
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_termstream"))
        .args(["serve", "--listen", "0.0.0.0:0", "--data-dir"])
        .arg(data.path())
        .output()
        .unwrap();
    assert!(!out.status.success());
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("--insecure-no-auth"), "{stderr}");
    assert!(out.stdout.is_empty(), "it never said it was listening");
}

#[test]
fn token_create_prints_a_token_and_its_config_entry() {
    let out = std::process::Command::new(env!("CARGO_BIN_EXE_termstream"))
        .args(["token", "create", "--project", "web", "--read-only", "--name", "viewer"])
        .output()
        .unwrap();
    assert!(out.status.success());
    let text = String::from_utf8(out.stdout).unwrap();
    let tok = text.lines().next().unwrap();
    assert!(tok.starts_with("tst_") && tok.len() == 68, "{tok}");
    assert!(text.contains(&format!("sha256 = \"{}\"", token::hash(tok))), "{text}");
    assert!(text.contains(r#"projects = { "web" = "read" }"#), "{text}");
    // The entry is valid config as printed.
    let toml: String = text
        .lines()
        .skip_while(|l| !l.starts_with("[[tokens]]"))
        .map(|l| format!("{l}\n"))
        .collect();
    let parsed: std::collections::BTreeMap<String, Vec<termstream::auth::token::TokenEntry>> = toml_parse(&toml);
    assert_eq!(
        parsed["tokens"][0].projects["web"],
        termstream::auth::token::Access::Read
    );
}

fn toml_parse<T: serde::de::DeserializeOwned>(s: &str) -> T {
    use figment::providers::Format;
    figment::Figment::from(figment::providers::Toml::string(s))
        .extract()
        .unwrap()
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
