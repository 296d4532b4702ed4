//! Secure by default: each rule fails closed. Credentials (no token → 401
//! and nothing created), scopes (a project-scoped token cannot list, read,
//! attach or write another project's sessions), read-only viewers (0 bytes
//! reach the PTY), events by project, and a child environment without the
//! server's secret. Tickets, origins, hosts and headers are in
//! `security_browser.rs`; caps and the programs' limits in
//! `security_limits.rs`.

mod common;

use common::secured::{SHORT_ATTACH_WAIT, call, create_as, error_code as code, secured, wait_output, ws_as};
use common::ws::{Incoming, WsClient};
use common::{TestServer, Transport, secs, session_ids};
use serde_json::json;
use termstream::auth::token;

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
