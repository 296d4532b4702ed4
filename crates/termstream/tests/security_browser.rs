//! What a browser page can and cannot do: a ticket opens one socket once
//! with its token's scope, credentials reach a socket in headers (and the
//! query only when allowed), foreign origins and rebinding hosts are 403
//! before any handler runs, and every response carries the security
//! headers.

mod common;

use common::secured::{SHORT_ATTACH_WAIT, call, create_as, error_code as code, secured, ws_as};
use common::ws::WsClient;
use common::{TestServer, Transport, secs};
use serde_json::json;

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
