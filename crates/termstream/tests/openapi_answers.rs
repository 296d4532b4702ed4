//! Every answer a route gives is in its description: a live server is
//! asked, route by route (the routes read from its own `/openapi.json`),
//! with requests that draw the answers the guard, the extractors and the
//! limits give (a foreign Host, no credential, a malformed body, a body too
//! large, a body too slow, an unknown or malformed session id, a credential
//! that may only read, a token over its session cap, a create over the
//! running sessions' cap, a socket over the per-client cap or the server's,
//! a plain GET of a WebSocket endpoint), and each status it
//! answers must be the one expected and listed among that operation's
//! responses.

mod common;

use common::secured::{call, create_as, project_entry, secured};
use common::ws::WsClient;
use common::{TestServer, Transport, secs};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

/// The server's limits, small enough to reach in a test.
const LIMITS: &str = "max_body_bytes = 1024\nhttp_body_timeout_ms = 300\nmax_sessions_per_token = 1\n\
                      max_running_sessions = 1\nmax_connections_per_ip = 1\n";

/// One described operation.
struct Op {
    method: String,
    /// The described path, `{id}` and all.
    path: String,
    responses: Value,
    public: bool,
    body: bool,
    websocket: bool,
}

impl Op {
    /// The path with its parameter set to `id`.
    fn at(&self, id: &str) -> String {
        self.path
            .replace("{id}", id)
            .replace("{session_id}", id)
            .replace("{path}", "nope.js")
    }

    /// Whether the path names a session the handler or the guard looks up.
    fn names_session(&self) -> bool {
        self.path.starts_with("/api/sessions/{id}") || self.path.starts_with("/terminal/{session_id}")
    }

    fn lists(&self, status: u16) -> bool {
        self.responses[status.to_string()].is_object()
    }
}

fn operations(doc: &Value) -> Vec<Op> {
    let mut ops = Vec::new();
    for (path, item) in doc["paths"].as_object().expect("paths") {
        for (method, op) in item.as_object().expect("a path item") {
            ops.push(Op {
                method: method.to_uppercase(),
                path: path.clone(),
                responses: op["responses"].clone(),
                public: op["security"] == json!([{}]),
                body: op["requestBody"].is_object(),
                websocket: op["responses"]["101"].is_object(),
            });
        }
    }
    ops
}

/// The status of a request written by hand on a fresh connection: `head`
/// (without its blank line), then `body`, then nothing more while the
/// answer is awaited (at most 10 s).
async fn raw_status(server: &TestServer, head: &str, declared: usize, body: &[u8]) -> u16 {
    let mut tcp = TcpStream::connect(server.addr()).await.expect("connect");
    let request = format!("{head}\r\nContent-Length: {declared}\r\nConnection: close\r\n\r\n");
    tcp.write_all(request.as_bytes()).await.expect("write head");
    tcp.write_all(body).await.expect("write body");
    let mut got = Vec::new();
    let read = tokio::time::timeout(secs(10), async {
        let mut buf = [0u8; 1024];
        while !got.windows(2).any(|w| w == b"\r\n") {
            match tcp.read(&mut buf).await {
                Ok(0) | Err(_) => break,
                Ok(n) => got.extend_from_slice(&buf[..n]),
            }
        }
    })
    .await;
    assert!(read.is_ok(), "no answer to {head:?} within 10 s");
    let text = String::from_utf8_lossy(&got);
    text.strip_prefix("HTTP/1.1 ")
        .and_then(|rest| rest.get(..3))
        .and_then(|code| code.parse().ok())
        .unwrap_or_else(|| panic!("not an HTTP answer to {head:?}: {text:?}"))
}

/// What was asked, what was expected, and what came.
struct Asked {
    op: String,
    why: &'static str,
    want: u16,
    got: u16,
}

#[tokio::test]
async fn every_answer_drawn_from_a_route_is_in_its_description() {
    // A token that may create in `default`, the project of `/terminal/start`.
    let starter = termstream::auth::token::generate();
    let config = format!(
        "{LIMITS}{}",
        project_entry("starter", &starter, r#"{ default = "write" }"#)
    );
    let (server, t) = secured(&config, &[], Transport::Plain).await;
    let (status, doc, _) = call(&server, "GET", "/openapi.json", Some(&t.admin), None, &[]).await;
    assert_eq!(status, 200);
    let ops = operations(&doc);
    assert!(ops.len() >= 30, "only {} operations described", ops.len());
    // A running session, which uses up the admin token's one session and
    // the server's one running session.
    create_as(
        &server,
        &t.admin,
        json!({ "id": "live", "kind": "command", "argv": ["sleep", "1000"] }),
    )
    .await;

    let mut asked = Vec::new();
    for op in &ops {
        let name = format!("{} {}", op.method, op.path);
        let mut ask = |why, want, got| {
            asked.push(Asked {
                op: name.clone(),
                why,
                want,
                got,
            })
        };
        let path = op.at("live");
        let (method, auth) = (&op.method, format!("Authorization: Bearer {}", t.admin));
        // The Host check runs before anything else, on every route.
        let head = format!("{method} {path} HTTP/1.1\r\nHost: evil.example\r\n{auth}");
        ask("a foreign Host", 403, raw_status(&server, &head, 0, b"").await);
        if !op.public {
            let (got, _, _) = call(&server, method, &path, None, None, &[]).await;
            ask("no credential", 401, got);
        }
        if op.body {
            let head = format!("{method} {path} HTTP/1.1\r\nHost: {}\r\n{auth}", server.addr());
            ask(
                "a body that is not an object",
                400,
                raw_status(&server, &head, 2, b"[]").await,
            );
            let big = format!("{{\"x\":\"{}\"}}", "x".repeat(2048));
            ask(
                "a body over max_body_bytes",
                413,
                raw_status(&server, &head, big.len(), big.as_bytes()).await,
            );
            ask(
                "a body that stops coming",
                408,
                raw_status(&server, &head, 100, b"{").await,
            );
        }
        if op.names_session() {
            let (got, _, _) = call(&server, method, &op.at("nope"), Some(&t.web_writer), None, &[]).await;
            ask("an unknown session id", 404, got);
            if !op.body {
                let (got, _, _) = call(&server, method, &op.at(".bad"), Some(&t.admin), None, &[]).await;
                ask("a malformed session id", 400, got);
            }
        }
        if op.websocket {
            let (got, _, _) = call(&server, method, &path, Some(&t.admin), None, &[]).await;
            ask("a GET without the upgrade", 426, got);
        }
    }

    // What only some routes meet.
    let create = json!({ "project": "web", "argv": ["true"] });
    let start = json!({ "command": "true" });
    let mut answer = |op: &str, why, want, (got, _, _): (u16, Value, _)| {
        asked.push(Asked {
            op: op.to_owned(),
            why,
            want,
            got,
        })
    };
    let (read_only, admin) = (Some(t.web_reader.as_str()), Some(t.admin.as_str()));
    for (op, path, body) in [
        ("POST /api/sessions", "/api/sessions", &create),
        ("POST /terminal/start", "/terminal/start", &start),
    ] {
        let got = call(&server, "POST", path, read_only, Some(body.clone()), &[]).await;
        answer(op, "a credential that may only read", 403, got);
        let got = call(&server, "POST", path, admin, Some(body.clone()), &[]).await;
        answer(op, "a token at max_sessions_per_token", 429, got);
    }
    let got = call(
        &server,
        "POST",
        "/api/sessions",
        Some(&t.web_writer),
        Some(create.clone()),
        &[],
    )
    .await;
    answer("POST /api/sessions", "a create at max_running_sessions", 503, got);
    let got = call(
        &server,
        "POST",
        "/terminal/start",
        Some(&starter),
        Some(start.clone()),
        &[],
    )
    .await;
    answer("POST /terminal/start", "a create at max_running_sessions", 503, got);
    let bearer = format!("Bearer {}", t.admin);
    let headers = [("Authorization", bearer.as_str())];
    let (_held, _) = WsClient::try_connect(&server, "/ws", &headers)
        .await
        .expect("the first socket is accepted");
    for op in ops.iter().filter(|op| op.websocket) {
        let got = WsClient::refused_status(&server, &op.at("live"), &headers).await;
        asked.push(Asked {
            op: format!("GET {}", op.path),
            why: "a socket over max_connections_per_ip",
            want: 429,
            got,
        });
    }

    // A server that holds its one socket answers the others 503.
    let full = TestServer::start_with(&[], &[("TERMSTREAM_MAX_CONNECTIONS", "1")]).await;
    let _held = WsClient::connect(&full, "/ws").await;
    for op in ops.iter().filter(|op| op.websocket) {
        asked.push(Asked {
            op: format!("GET {}", op.path),
            why: "a socket over max_connections",
            want: 503,
            got: WsClient::refused_status(&full, &op.at("live"), &[]).await,
        });
    }

    let wrong: Vec<String> = asked
        .iter()
        .filter(|a| a.got != a.want)
        .map(|a| format!("{} ({}): answered {}, not {}", a.op, a.why, a.got, a.want))
        .collect();
    assert!(wrong.is_empty(), "unexpected answers:\n{}", wrong.join("\n"));
    let by_name = |name: &str| ops.iter().find(|op| format!("{} {}", op.method, op.path) == name);
    let missing: Vec<String> = asked
        .iter()
        .filter(|a| !by_name(&a.op).is_some_and(|op| op.lists(a.got)))
        .map(|a| format!("{} ({}): {} is not described", a.op, a.why, a.got))
        .collect();
    assert!(
        missing.is_empty(),
        "answers missing from /openapi.json:\n{}",
        missing.join("\n")
    );
    // Every kind of request above was made at least once.
    for status in [400, 401, 403, 404, 408, 413, 426, 429, 503] {
        assert!(asked.iter().any(|a| a.got == status), "no request drew {status}");
    }
    assert!(asked.len() > 100, "only {} requests", asked.len());
}
