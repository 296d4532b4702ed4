//! The web page's credential: a one-time login code exchanged for an
//! HttpOnly session cookie. A code works once and expires; the cookie
//! carries the code's scope (never more than its issuer's); a request that
//! rides on the cookie from a foreign origin, or changes state without an
//! Origin, is 403; logout ends it; under TLS the cookie is `Secure`.

mod common;

use common::secured::{self, error_code, secured};
use common::ws::WsClient;
use common::{TestServer, Transport, secs, session_ids};
use reqwest::header::HeaderMap;
use serde_json::{Value, json};

/// One request by a client that neither follows redirects nor keeps
/// cookies, with `headers`.
async fn call(
    server: &TestServer,
    method: &str,
    path: &str,
    headers: &[(&str, &str)],
    body: Option<Value>,
) -> (u16, Value, HeaderMap) {
    secured::call(server, method, path, None, body, headers).await
}

/// A login code issued to `token`, narrowed by `body` if given.
async fn login_code(server: &TestServer, token: &str, body: Option<Value>) -> String {
    let auth = format!("Bearer {token}");
    let (status, answer, _) = call(server, "POST", "/api/login-codes", &[("authorization", &auth)], body).await;
    assert_eq!(status, 200, "{answer}");
    assert_eq!(answer["expiresInMs"], 60_000);
    let code = answer["code"].as_str().unwrap().to_owned();
    assert_eq!(answer["path"], format!("/login?code={code}"));
    code
}

/// Logs in with `code`; asserts the redirect, and returns the whole
/// `Set-Cookie` and the `name=value` pair to send back.
async fn login(server: &TestServer, code: &str) -> (String, String) {
    let (status, _, headers) = call(server, "GET", &format!("/login?code={code}"), &[], None).await;
    assert_eq!(status, 303);
    assert_eq!(headers["location"], "/");
    let set = headers["set-cookie"].to_str().unwrap().to_owned();
    let pair = set.split(';').next().unwrap().to_owned();
    (set, pair)
}

#[tokio::test]
async fn a_login_code_works_once_and_its_cookie_carries_the_codes_scope() {
    let (server, t) = secured("", &[], Transport::Plain).await;
    let own = format!("http://{}", server.addr());
    let admin = format!("Bearer {}", t.admin);
    for (id, project) in [("w1", "web"), ("a1", "api")] {
        let body = json!({"id": id, "argv": ["cat"], "project": project});
        assert_eq!(
            call(
                &server,
                "POST",
                "/api/sessions",
                &[("authorization", &admin)],
                Some(body)
            )
            .await
            .0,
            201
        );
    }

    // A writer on web asks for a read-only code.
    let code = login_code(&server, &t.web_writer, Some(json!({"projects": {"web": "read"}}))).await;
    let (set, cookie) = login(&server, &code).await;
    assert!(cookie.starts_with("termstream=ls_"), "{set}");
    for attr in ["HttpOnly", "SameSite=Strict", "Path=/", "Max-Age=43200"] {
        assert!(set.split("; ").any(|a| a == attr), "{attr} missing from {set}");
    }
    assert!(!set.contains("Secure"), "no Secure without TLS: {set}");
    // Once only.
    let (status, err, headers) = call(&server, "GET", &format!("/login?code={code}"), &[], None).await;
    assert_eq!((status, error_code(&err)), (401, "unauthorized"));
    assert!(headers.get("set-cookie").is_none());
    for bad in ["/login?code=lc_forged", "/login"] {
        assert_eq!(call(&server, "GET", bad, &[], None).await.0, 401, "{bad}");
    }

    // The cookie is a credential with the code's scope: read on web only.
    let with = [("cookie", cookie.as_str())];
    let (status, list, _) = call(&server, "GET", "/api/sessions", &with, None).await;
    assert_eq!(status, 200);
    let ids = session_ids(&list);
    assert_eq!(ids, ["w1"]);
    assert_eq!(call(&server, "GET", "/api/sessions/a1", &with, None).await.0, 404);
    let with_origin = [("cookie", cookie.as_str()), ("origin", own.as_str())];
    let (status, err, _) = call(
        &server,
        "POST",
        "/api/sessions/w1/input",
        &with_origin,
        Some(json!({"data":"x"})),
    )
    .await;
    assert_eq!(
        (status, error_code(&err)),
        (403, "read_only"),
        "the code was narrowed to read"
    );
    // Over a WebSocket too, from the server's own page.
    let (mut ws, _) = WsClient::try_connect(&server, "/ws", &with_origin)
        .await
        .expect("cookie upgrade");
    assert_eq!(ws.next_json(secs(10)).await["type"], "connected");
    ws.attach("a1", "json").await;
    assert_eq!(ws.until_type("error", secs(10)).await["code"], "session_not_found");
    ws.attach("w1", "json").await;
    ws.until_type("session.attached", secs(10)).await;
    ws.send(json!({"type":"terminal.input","sessionId":"w1","data":"x"}))
        .await;
    assert_eq!(ws.until_type("error", secs(10)).await["code"], "read_only");

    // A login cookie cannot mint codes; a code cannot exceed its issuer.
    let (status, _, _) = call(&server, "POST", "/api/login-codes", &with_origin, None).await;
    assert_eq!(status, 403);
    // ...but for a read-only one (the page's share link), whose login ends
    // with the cookie's (a unit test of LoginStore checks the end).
    let read_web = Some(json!({"projects": {"web": "read"}}));
    let (status, body, _) = call(&server, "POST", "/api/login-codes", &with_origin, read_web).await;
    assert_eq!(status, 200, "{body}");
    let shared = body["code"].as_str().unwrap().to_owned();
    let (_, shared_cookie) = login(&server, &shared).await;
    let (status, _, _) = call(&server, "GET", "/api/sessions/w1", &[("cookie", &shared_cookie)], None).await;
    assert_eq!(status, 200, "the shared login reads");
    let write_web = Some(json!({"projects": {"web": "write"}}));
    let (status, _, _) = call(&server, "POST", "/api/login-codes", &with_origin, write_web).await;
    assert_eq!(status, 403, "a cookie cannot make a code that writes");
    let (status, _, _) = call(&server, "POST", "/api/login-codes", &[], None).await;
    assert_eq!(status, 401);
    let reader = format!("Bearer {}", t.web_reader);
    for wanted in [
        json!({"projects": {"web": "write"}}),
        json!({"projects": {"api": "read"}}),
    ] {
        let (status, err, _) = call(
            &server,
            "POST",
            "/api/login-codes",
            &[("authorization", &reader)],
            Some(wanted.clone()),
        )
        .await;
        assert_eq!((status, error_code(&err)), (403, "forbidden"), "{wanted}");
    }

    // Logout ends it.
    let (status, _, headers) = call(&server, "POST", "/api/logout", &with_origin, None).await;
    assert_eq!(status, 204);
    assert!(headers["set-cookie"].to_str().unwrap().contains("Max-Age=0"));
    let (status, err, _) = call(&server, "GET", "/api/sessions", &with, None).await;
    assert_eq!((status, error_code(&err)), (401, "unauthorized"));
    let (status, _, _) = call(
        &server,
        "GET",
        "/api/sessions",
        &[("cookie", "termstream=ls_forged")],
        None,
    )
    .await;
    assert_eq!(status, 401);
}

#[tokio::test]
async fn a_cookie_without_an_allowed_origin_changes_nothing() {
    let (server, t) = secured("", &[], Transport::Plain).await;
    let port = server.addr().rsplit(':').next().unwrap().to_owned();
    let own = format!("http://127.0.0.1:{port}");
    let (_, cookie) = login(&server, &login_code(&server, &t.web_writer, None).await).await;
    let create = json!({"argv": ["true"], "project": "web"});

    for origin in [
        None,
        Some("https://evil.com"),
        Some("null"),
        Some(format!("http://localhost:{}", port.parse::<u16>().unwrap() + 1).leak() as &str),
    ] {
        let mut headers = vec![("cookie", cookie.as_str())];
        headers.extend(origin.map(|o| ("origin", o)));
        let (status, err, _) = call(&server, "POST", "/api/sessions", &headers, Some(create.clone())).await;
        assert_eq!(
            (status, error_code(&err)),
            (403, "forbidden"),
            "create, origin {origin:?}: {err}"
        );
        assert_eq!(
            WsClient::refused_status(&server, "/ws", &headers).await,
            403,
            "upgrade, origin {origin:?}"
        );
        let (status, _, _) = call(&server, "POST", "/api/ws-ticket", &headers, None).await;
        assert_eq!(status, 403, "ticket, origin {origin:?}");
        if origin.is_some() {
            let (status, _, _) = call(&server, "GET", "/api/sessions", &headers, None).await;
            assert_eq!(status, 403, "a read from a foreign page, origin {origin:?}");
        }
    }
    // Nothing was created; the same requests from the server's own page work.
    let admin = format!("Bearer {}", t.admin);
    assert_eq!(
        call(&server, "GET", "/api/sessions", &[("authorization", &admin)], None)
            .await
            .1["total"],
        0
    );
    let ok = [("cookie", cookie.as_str()), ("origin", own.as_str())];
    let (status, info, _) = call(&server, "POST", "/api/sessions", &ok, Some(create)).await;
    assert_eq!(status, 201, "{info}");
    let (mut ws, _) = WsClient::try_connect(&server, "/ws", &ok).await.expect("own origin");
    assert_eq!(ws.next_json(secs(10)).await["type"], "connected");
    // A plain read with no Origin (a top-level page load) needs none.
    assert_eq!(
        call(&server, "GET", "/api/sessions", &[("cookie", cookie.as_str())], None)
            .await
            .0,
        200
    );
}

#[tokio::test]
async fn codes_and_login_sessions_expire() {
    let (server, t) = secured("login_code_ttl_ms = 0", &[], Transport::Plain).await;
    let auth = format!("Bearer {}", t.admin);
    let (_, answer, _) = call(&server, "POST", "/api/login-codes", &[("authorization", &auth)], None).await;
    let path = answer["path"].as_str().unwrap();
    let (status, err, headers) = call(&server, "GET", path, &[], None).await;
    assert_eq!(
        (status, error_code(&err)),
        (401, "unauthorized"),
        "a stale code is refused"
    );
    assert!(headers.get("set-cookie").is_none());

    let (server, t) = secured("login_session_ttl_secs = 0", &[], Transport::Plain).await;
    let (_, cookie) = login(&server, &login_code(&server, &t.admin, None).await).await;
    let (status, err, _) = call(&server, "GET", "/api/sessions", &[("cookie", cookie.as_str())], None).await;
    assert_eq!(
        (status, error_code(&err)),
        (401, "unauthorized"),
        "an expired login: {err}"
    );
}

#[tokio::test]
async fn under_tls_the_cookie_is_secure_and_the_own_origin_is_https() {
    let (server, t) = secured("", &[], Transport::Tls).await;
    let (set, cookie) = login(&server, &login_code(&server, &t.web_writer, None).await).await;
    assert!(cookie.starts_with("__Host-termstream=ls_"), "{set}");
    assert!(set.split("; ").any(|a| a == "Secure"), "{set}");
    let create = json!({"argv": ["true"], "project": "web"});
    let https = format!("https://{}", server.addr());
    let http = format!("http://{}", server.addr());
    let (status, _, _) = call(
        &server,
        "POST",
        "/api/sessions",
        &[("cookie", &cookie), ("origin", &http)],
        Some(create.clone()),
    )
    .await;
    assert_eq!(status, 403, "the http:// twin is a foreign origin");
    let (status, _, _) = call(
        &server,
        "POST",
        "/api/sessions",
        &[("cookie", &cookie), ("origin", &https)],
        Some(create),
    )
    .await;
    assert_eq!(status, 201);
    let (mut ws, _) = WsClient::try_connect(&server, "/ws", &[("cookie", &cookie), ("origin", &https)])
        .await
        .expect("wss with the cookie");
    assert_eq!(ws.next_json(secs(10)).await["type"], "connected");
    // The plain name is not read under TLS.
    let plain = cookie.replacen("__Host-termstream", "termstream", 1);
    assert_eq!(
        call(&server, "GET", "/api/sessions", &[("cookie", &plain)], None)
            .await
            .0,
        401
    );
}

/// A browser opening a used (or expired, or unknown) login link gets a page
/// that says so and what to do, not the API's JSON; other clients still get
/// the JSON error, and nothing sets a cookie.
#[tokio::test]
async fn a_browser_opening_a_used_login_link_gets_a_page_that_says_so() {
    let (server, t) = secured("", &[], Transport::Plain).await;
    let code = login_code(&server, &t.admin, None).await;
    login(&server, &code).await;
    let used = format!("/login?code={code}");
    for path in [used.as_str(), "/login?code=lc_unknown", "/login"] {
        let resp = secured::bare(&server)
            .get(server.url(path))
            .header(
                "accept",
                "text/html,application/xhtml+xml,application/xml;q=0.9,*/*;q=0.8",
            )
            .send()
            .await
            .unwrap();
        assert_eq!(resp.status().as_u16(), 401, "{path}");
        let headers = resp.headers().clone();
        assert!(
            headers["content-type"].to_str().unwrap().starts_with("text/html"),
            "{path}: {headers:?}"
        );
        assert!(headers.get("set-cookie").is_none(), "{path}");
        // Not kept by the browser, and the answer depends on Accept.
        assert_eq!(headers["cache-control"], "no-store", "{path}");
        assert_eq!(headers["vary"], "accept", "{path}");
        let page = resp.text().await.unwrap();
        assert!(
            page.contains("This login link is unknown, used or expired."),
            "{path}: {page}"
        );
        let (status, body, headers) = call(&server, "GET", path, &[], None).await;
        assert_eq!((status, error_code(&body)), (401, "unauthorized"), "{path}");
        assert!(headers.get("set-cookie").is_none(), "{path}");
        assert_eq!(headers["vary"], "accept", "{path}");
    }
}

/// Mistakes in a code request or a login link get the API's JSON errors.
#[tokio::test]
async fn bad_code_requests_and_login_links_get_json_errors() {
    let (server, t) = secured("", &[], Transport::Plain).await;
    let auth = format!("Bearer {}", t.admin);
    let headers = [("authorization", auth.as_str())];
    // A struct written as an array of its fields is not a documented shape.
    let (status, body, _) = call(
        &server,
        "POST",
        "/api/login-codes",
        &headers,
        Some(json!([{"web": "read"}])),
    )
    .await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    let huge = json!({ "projects": { "x".repeat(2 << 20): "read" } });
    let (status, body, _) = call(&server, "POST", "/api/login-codes", &headers, Some(huge)).await;
    assert_eq!((status, error_code(&body)), (413, "payload_too_large"), "{body}");
    let (status, body, _) = call(&server, "GET", "/login?code=a&code=b", &[], None).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"), "{body}");
    // The server carries on: a good request still works.
    login_code(&server, &t.admin, None).await;
}
