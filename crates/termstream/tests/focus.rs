//! Per-project focus: the server's set and version, broadcast to every
//! client of the project, over `/ws` and REST.

mod common;

use std::time::Duration;

use common::focus::{FocusView, strings};
use common::secured::{call, error_code, secured};
use common::ws::WsClient;
use common::{TestServer, Transport, secs};
use serde_json::{Value, json};

/// Creates sessions `ids` of `project` running `cat` (cheap and quiet).
async fn sessions(server: &TestServer, project: &str, ids: &[&str]) {
    for id in ids {
        server
            .create(json!({"id":id,"kind":"command","argv":["cat"],"project":project}))
            .await;
    }
}

async fn put_focus(server: &TestServer, body: Value) -> (u16, Value) {
    let (s, b) = server.request("PUT", "/api/terminal/focus", Some(&body)).await;
    (s.as_u16(), b)
}

async fn get_focus(server: &TestServer, project: &str) -> Value {
    let (s, b) = server.get(&format!("/api/terminal/focus?projectId={project}")).await;
    assert_eq!(s, 200, "{b}");
    b
}

/// 50 clients of one project focus and blur at once, half over WebSocket
/// and half over REST. Each watches the project on its own socket: every
/// one ends with the server's set and version and saw every version, in
/// order, with none missing.
#[tokio::test]
async fn fifty_clients_converge_and_each_sees_every_version_in_order() {
    let server = TestServer::start().await;
    let ids: Vec<String> = (0..8).map(|i| format!("s{i}")).collect();
    let refs: Vec<&str> = ids.iter().map(String::as_str).collect();
    sessions(&server, "p", &refs).await;
    let server = std::sync::Arc::new(server);
    let mut tasks = Vec::new();
    for c in 0..50usize {
        let server = server.clone();
        let ids = ids.clone();
        tasks.push(tokio::spawn(async move {
            let mut view = FocusView::open(&server, "p", &[]).await;
            // Two requests each: at most 200 changes (a focus of a full set
            // is two), within the socket's queue of CHANGE_QUEUE (256), so
            // no socket can lag, and any state a client gets instead of an
            // update is a skipped version. With six each (up to 500
            // changes), a socket starved of CPU on a loaded machine lagged
            // and was rightly answered with a state.
            for k in 0..2usize {
                let id = &ids[(c * 7 + k * 3) % ids.len()];
                let focused = (c + k) % 3 != 0;
                if c % 2 == 0 {
                    let ty = if focused { "focus" } else { "blur" };
                    view.ws.send(json!({"type":ty,"sessionId":id,"projectId":"p"})).await;
                } else {
                    let (status, body) = put_focus(&server, json!({"sessionId":id,"focused":focused})).await;
                    assert_eq!(status, 200, "{body}");
                    assert_eq!(body["success"], true);
                    assert_eq!(body["projectId"], "p");
                }
            }
            view
        }));
    }
    let mut views = Vec::new();
    for t in tasks {
        views.push(t.await.expect("client task"));
    }
    // Every request was answered or sent; WebSocket ones may still be
    // under way: wait until the REST answer stops moving.
    let mut last = get_focus(&server, "p").await;
    loop {
        for v in &mut views {
            v.until_version(last["version"].as_u64().unwrap(), secs(30)).await;
        }
        let now = get_focus(&server, "p").await;
        if now == last {
            break;
        }
        last = now;
    }
    let (version, set) = (last["version"].as_u64().unwrap(), strings(&last["focusedSessions"]));
    assert!(version >= 4, "too few changes: {last}");
    assert!(set.len() <= 4, "{last}");
    let mut from_start = 0;
    for v in &views {
        assert_eq!((v.version, &v.focused), (version, &set), "a client disagrees");
        // Every version after the one it connected at came as an update,
        // in order (observe checked each was the next), none skipped.
        assert_eq!(v.jumps, 0, "a client got a state instead of updates");
        let seen: Vec<u64> = v.updates.iter().map(|u| u["version"].as_u64().unwrap()).collect();
        assert_eq!(seen, (v.first + 1..=version).collect::<Vec<_>>());
        from_start += usize::from(v.first == 0);
    }
    assert!(from_start >= 1, "no client connected before the first change");
}

/// Focusing one more than `max_focused` unfocuses the least recently
/// active session (typing counts), as its own change sent first.
#[tokio::test]
async fn a_full_set_evicts_the_least_recently_active_as_its_own_change() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_MAX_FOCUSED", "2")]).await;
    sessions(&server, "p", &["a", "b", "c"]).await;
    let mut view = FocusView::open(&server, "p", &[]).await;
    for id in ["a", "b"] {
        view.ws.send(json!({"type":"focus","sessionId":id})).await;
    }
    view.until_version(2, secs(10)).await;
    assert_eq!(view.focused, ["a", "b"]);
    // Typing into `a` makes `b` the least recently active.
    server.input("a", "x\n").await;
    let (status, body) = put_focus(&server, json!({"sessionId":"c","focused":true})).await;
    assert_eq!(status, 200, "{body}");
    assert_eq!(
        (body["version"].as_u64(), strings(&body["focusedSessions"])),
        (Some(4), vec!["a".into(), "c".into()])
    );
    view.until_version(4, secs(10)).await;
    let (evict, add) = (&view.updates[2], &view.updates[3]);
    assert_eq!(
        (
            evict["sessionId"].as_str(),
            evict["focused"].as_bool(),
            evict["version"].as_u64()
        ),
        (Some("b"), Some(false), Some(3))
    );
    assert_eq!(strings(&evict["focusedSessions"]), ["a"]);
    assert_eq!(
        (
            add["sessionId"].as_str(),
            add["focused"].as_bool(),
            add["version"].as_u64()
        ),
        (Some("c"), Some(true), Some(4))
    );
    assert_eq!(add["maxFocused"], 2);
    // Without typing, the earliest focused goes: `a` now.
    view.ws.send(json!({"type":"focus","sessionId":"b"})).await;
    view.until_version(6, secs(10)).await;
    assert_eq!(
        (
            view.updates[4]["sessionId"].as_str(),
            view.updates[4]["focused"].as_bool()
        ),
        (Some("a"), Some(false))
    );
    assert_eq!(view.focused, ["c", "b"]);
}

/// A request that changes nothing bumps nothing: REST answers the state,
/// a socket gets `sync_complete`, and nobody gets an update.
#[tokio::test]
async fn a_request_that_changes_nothing_bumps_nothing() {
    let server = TestServer::start().await;
    sessions(&server, "default", &["a", "b"]).await;
    let mut view = FocusView::open(&server, "default", &[]).await;
    let mut other = FocusView::open(&server, "default", &[]).await;
    view.ws.send(json!({"type":"focus","sessionId":"a"})).await;
    view.until_version(1, secs(10)).await;
    other.until_version(1, secs(10)).await;
    view.ws.send(json!({"type":"focus","sessionId":"a"})).await;
    let sync = view.until_type("sync_complete", secs(10)).await;
    assert_eq!(
        (sync["version"].as_u64(), sync["sessionId"].as_str()),
        (Some(1), Some("a"))
    );
    let (status, body) = put_focus(&server, json!({"sessionId":"b","focused":false})).await;
    assert_eq!(
        (status, body["version"].as_u64(), body["success"].as_bool()),
        (200, Some(1), Some(true))
    );
    other.assert_silent(Duration::from_millis(300)).await;
    assert_eq!(get_focus(&server, "default").await["version"], 1);
}

/// A stale `expectedVersion` changes nothing and answers the current state:
/// 409 over REST, `version_conflict` on a socket.
#[tokio::test]
async fn a_stale_expected_version_conflicts_and_changes_nothing() {
    let server = TestServer::start().await;
    sessions(&server, "p", &["a", "b"]).await;
    let mut view = FocusView::open(&server, "p", &[]).await;
    let (status, body) = put_focus(&server, json!({"sessionId":"a","focused":true,"expectedVersion":0})).await;
    assert_eq!((status, body["version"].as_u64()), (200, Some(1)), "{body}");
    let (status, body) = put_focus(
        &server,
        json!({"sessionId":"b","focused":true,"expectedVersion":0,"projectId":"p"}),
    )
    .await;
    assert_eq!(status, 409, "{body}");
    assert_eq!(body["success"], false);
    assert_eq!(error_code(&body), "version_conflict");
    assert_eq!(
        (body["version"].as_u64(), strings(&body["focusedSessions"])),
        (Some(1), vec!["a".to_string()])
    );
    view.ws
        .send(json!({"type":"focus","sessionId":"b","expectedVersion":5}))
        .await;
    let err = view.until_type("error", secs(10)).await;
    assert_eq!(err["code"], "version_conflict", "{err}");
    assert_eq!(
        (err["projectId"].as_str(), err["version"].as_u64()),
        (Some("p"), Some(1))
    );
    assert_eq!(strings(&err["focusedSessions"]), ["a"]);
    // The right version goes through.
    view.ws
        .send(json!({"type":"blur","sessionId":"a","expectedVersion":1}))
        .await;
    view.until_version(2, secs(10)).await;
    assert_eq!(view.updates.len(), 2);
    assert!(view.focused.is_empty());
}

/// Bad requests get precise errors: unknown session 404, another project's
/// id 422, a bad body 400; a socket gets the same codes and carries on.
#[tokio::test]
async fn focus_requests_are_checked() {
    let server = TestServer::start().await;
    sessions(&server, "p", &["a"]).await;
    let (status, body) = put_focus(&server, json!({"sessionId":"nope","focused":true})).await;
    assert_eq!((status, error_code(&body)), (404, "session_not_found"));
    let (status, body) = put_focus(&server, json!({"sessionId":"a","projectId":"q","focused":true})).await;
    assert_eq!((status, error_code(&body)), (422, "project_mismatch"));
    let (status, body) = put_focus(&server, json!({"sessionId":"a"})).await;
    assert_eq!((status, error_code(&body)), (400, "bad_request"));
    let (status, body) = server.get("/api/terminal/focus?projectId=bad/id").await;
    assert_eq!((status.as_u16(), error_code(&body)), (400, "bad_request"));
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"focus","sessionId":"nope"})).await;
    assert_eq!(ws.until_type("error", secs(10)).await["code"], "session_not_found");
    ws.send(json!({"type":"blur","sessionId":"a","projectId":"q"})).await;
    assert_eq!(ws.until_type("error", secs(10)).await["code"], "project_mismatch");
    ws.send(json!({"type":"sync_request"})).await;
    assert_eq!(ws.until_type("error", secs(10)).await["code"], "invalid_message");
    ws.send(json!({"type":"heartbeat","sessionId":"a"})).await;
    let beat = ws.until_type("heartbeat", secs(10)).await;
    assert_eq!(beat["sessionId"], "a");
    assert!(beat["timestamp"].as_u64().unwrap() > 0);
}

/// Another project's clients receive nothing; a read-only token is refused
/// and still sees the updates; a token without the project sees nothing of it.
#[tokio::test]
async fn projects_are_isolated_and_read_only_watches() {
    let (server, t) = secured("", &[], Transport::Plain).await;
    let admin = format!("Bearer {}", t.admin);
    for (id, project) in [("w1", "web"), ("w2", "web"), ("a1", "api")] {
        let (s, b, _) = call(
            &server,
            "POST",
            "/api/sessions",
            Some(t.admin.as_str()),
            Some(json!({"id":id,"kind":"command","argv":["cat"],"project":project})),
            &[],
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    let reader_h = format!("Bearer {}", t.web_reader);
    let mut reader = FocusView::open(&server, "web", &[("Authorization", &reader_h)]).await;
    let api_h = format!("Bearer {}", t.api_writer);
    let mut api = FocusView::open(&server, "api", &[("Authorization", &api_h)]).await;
    let mut admin_api = FocusView::open(&server, "api", &[("Authorization", &admin)]).await;
    // The reader may not change focus, on either path.
    reader.ws.send(json!({"type":"focus","sessionId":"w1"})).await;
    assert_eq!(reader.until_type("error", secs(10)).await["code"], "read_only");
    let (s, b, _) = call(
        &server,
        "PUT",
        "/api/terminal/focus",
        Some(t.web_reader.as_str()),
        Some(json!({"sessionId":"w1","focused":true})),
        &[],
    )
    .await;
    assert_eq!((s, error_code(&b)), (403, "read_only"));
    // The api token cannot see web at all.
    let (s, b, _) = call(
        &server,
        "PUT",
        "/api/terminal/focus",
        Some(t.api_writer.as_str()),
        Some(json!({"sessionId":"w1","focused":true})),
        &[],
    )
    .await;
    assert_eq!((s, error_code(&b)), (404, "session_not_found"));
    let (s, _, _) = call(
        &server,
        "GET",
        "/api/terminal/focus?projectId=web",
        Some(t.api_writer.as_str()),
        None,
        &[],
    )
    .await;
    assert_eq!(s, 404);
    api.ws.send(json!({"type":"sync_request","projectId":"web"})).await;
    assert_eq!(api.until_type("error", secs(10)).await["code"], "not_found");
    // A writer changes web: the reader sees it, api's sockets see nothing.
    let (s, b, _) = call(
        &server,
        "PUT",
        "/api/terminal/focus",
        Some(t.web_writer.as_str()),
        Some(json!({"sessionId":"w2","focused":true})),
        &[],
    )
    .await;
    assert_eq!((s, b["version"].as_u64()), (200, Some(1)), "{b}");
    reader.until_version(1, secs(10)).await;
    assert_eq!(reader.focused, ["w2"]);
    api.assert_silent(Duration::from_millis(300)).await;
    admin_api.assert_silent(Duration::from_millis(10)).await;
    // api's own versions are its own.
    api.ws.send(json!({"type":"focus","sessionId":"a1"})).await;
    api.until_version(1, secs(10)).await;
    admin_api.until_version(1, secs(10)).await;
    reader.assert_silent(Duration::from_millis(300)).await;
    // The project list shows each token what it can read.
    let (s, b, _) = call(&server, "GET", "/api/projects", Some(t.web_reader.as_str()), None, &[]).await;
    assert_eq!(s, 200);
    let projects = b["projects"].as_array().unwrap();
    assert_eq!(projects.len(), 1, "{b}");
    assert_eq!(projects[0]["projectId"], "web");
    assert_eq!(
        (
            projects[0]["totalSessions"].as_u64(),
            projects[0]["runningSessions"].as_u64()
        ),
        (Some(2), Some(2))
    );
    assert_eq!(
        (
            projects[0]["version"].as_u64(),
            strings(&projects[0]["focusedSessions"])
        ),
        (Some(1), vec!["w2".to_string()])
    );
    let (_, b, _) = call(&server, "GET", "/api/projects", Some(t.admin.as_str()), None, &[]).await;
    assert_eq!(b["projects"].as_array().unwrap().len(), 2, "{b}");
}

/// `GET /api/projects` says what the asking credential may do in each
/// project: `read` for a read-only token, `write` for a writer, an admin
/// token and a server without tokens to a loopback client.
#[tokio::test]
async fn the_project_list_says_what_each_credential_may_do() {
    let (server, t) = secured("", &[], Transport::Plain).await;
    for (id, project) in [("w1", "web"), ("a1", "api")] {
        let body = json!({"id":id,"kind":"command","argv":["cat"],"project":project});
        let (s, b, _) = call(
            &server,
            "POST",
            "/api/sessions",
            Some(t.admin.as_str()),
            Some(body),
            &[],
        )
        .await;
        assert_eq!(s, 201, "{b}");
    }
    let access = |b: &Value| -> Vec<(String, String)> {
        let projects = b["projects"].as_array().unwrap_or_else(|| panic!("no projects in {b}"));
        projects
            .iter()
            .map(|p| (p["projectId"].to_string(), p["access"].to_string()))
            .collect()
    };
    let pair = |p: &str, a: &str| (format!("{p:?}"), format!("{a:?}"));
    for (token, want) in [
        (&t.web_reader, vec![pair("web", "read")]),
        (&t.web_writer, vec![pair("web", "write")]),
        (&t.admin, vec![pair("api", "write"), pair("web", "write")]),
    ] {
        let (s, b, _) = call(&server, "GET", "/api/projects", Some(token.as_str()), None, &[]).await;
        assert_eq!(s, 200, "{b}");
        assert_eq!(access(&b), want, "{b}");
    }
    let open = TestServer::start().await;
    sessions(&open, "p", &["a"]).await;
    let (s, b) = open.get("/api/projects").await;
    assert_eq!(s, 200, "{b}");
    assert_eq!(access(&b), vec![pair("p", "write")], "{b}");
}

/// A deleted session leaves its project's set (a change, broadcast); an
/// ended one stays focused.
#[tokio::test]
async fn deleted_sessions_leave_the_set_and_ended_ones_stay() {
    let server = TestServer::start().await;
    sessions(&server, "p", &["a", "b"]).await;
    let mut view = FocusView::open(&server, "p", &[]).await;
    for id in ["a", "b"] {
        put_focus(&server, json!({"sessionId":id,"focused":true})).await;
    }
    view.until_version(2, secs(10)).await;
    server.terminate("a").await;
    let (status, _) = server.request("DELETE", "/api/sessions/b", None).await;
    assert_eq!(status, 204);
    view.until_version(3, secs(10)).await;
    let u = &view.updates[2];
    assert_eq!(
        (u["sessionId"].as_str(), u["focused"].as_bool()),
        (Some("b"), Some(false))
    );
    assert_eq!(view.focused, ["a"]);
    view.assert_silent(Duration::from_millis(300)).await;
}

/// Focus sets and versions survive a restart (a crash, even), and versions
/// go on from where they were.
#[tokio::test]
async fn focus_and_versions_survive_a_restart() {
    let server = TestServer::start().await;
    sessions(&server, "p", &["a", "b", "c"]).await;
    for (id, f) in [("a", true), ("b", true), ("c", true), ("a", false)] {
        let (s, _) = put_focus(&server, json!({"sessionId":id,"focused":f})).await;
        assert_eq!(s, 200);
    }
    let before = get_focus(&server, "p").await;
    assert_eq!(before["version"], 4);
    let server = server.restart();
    assert_eq!(get_focus(&server, "p").await, before);
    let mut view = FocusView::open(&server, "p", &[]).await;
    assert_eq!(
        (view.version, view.focused.clone()),
        (4, vec!["b".to_string(), "c".to_string()])
    );
    view.ws.send(json!({"type":"focus","sessionId":"a"})).await;
    view.until_version(5, secs(10)).await;
    assert_eq!(view.updates[0]["version"], 5);
}
