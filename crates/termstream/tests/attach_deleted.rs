//! A `/ws` attachment whose session is deleted ends on the server too: after
//! `session.detached` (`reason` `deleted`; `detach` when the socket asked)
//! the socket's slot (`max_attachments_per_socket`) is
//! free again and no forwarder is left (`termstream_attachments`), whether
//! the session was running, had ended, or was created and deleted while its
//! attach waited for it. A session that merely ends keeps its attachment
//! (and its slot) until it is deleted or detached, on the node that owns
//! it or through another node of a cluster (also when the id is created
//! again on the viewer's node at once). A new session of the same id
//! attached again just after a delete stays attached. A focus-aware
//! attachment of a session ended and deleted at once is told its exit
//! before `session.detached`. (A cluster node letting go of its copy of a
//! session that may still exist: `attach_released.rs`.)

mod common;

use common::cluster::{NOT_LOST, TestCluster, listed};
use common::focus::focus;
use common::metrics::metric;
use common::ws::{Incoming, WsClient};
use common::{TestServer, secs, wait_until};
use reqwest::StatusCode;
use serde_json::{Value, json};

const SLOTS: usize = 3;
const GAUGE: &str = r#"termstream_attachments{endpoint="ws"}"#;

/// A server whose sockets may attach `SLOTS` sessions, waiting `wait_ms`
/// for an id that does not exist yet.
async fn server(wait_ms: &str) -> TestServer {
    let slots = SLOTS.to_string();
    TestServer::start_with(
        &[],
        &[
            ("TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET", slots.as_str()),
            ("TERMSTREAM_ATTACH_WAIT_MS", wait_ms),
        ],
    )
    .await
}

async fn delete(server: &TestServer, id: &str) {
    let (status, body) = server.request("DELETE", &format!("/api/sessions/{id}"), None).await;
    assert!(status.is_success(), "delete {id} answered {status} {body}");
}

/// Waits until the socket answers `ty` for `id` (for no id in particular
/// when `id` is empty); a `rate_limited` refusal fails the test.
async fn answer(ws: &mut WsClient, ty: &str, id: &str) -> Value {
    loop {
        match ws.recv(secs(10)).await {
            Some(Incoming::Json(v)) if v["type"] == ty && (id.is_empty() || v["sessionId"] == id) => return v,
            Some(Incoming::Json(v)) if v["type"] == "error" && v["code"] == "rate_limited" => {
                panic!("{ty} of {id} was refused: {v}")
            }
            Some(Incoming::Closed(c)) => panic!("closed ({c:?}) while waiting for {ty} of {id}"),
            None => panic!("no {ty} of {id} within 10 s"),
            Some(_) => {}
        }
    }
}

/// Waits until the socket answers `session.detached` for `id`, and checks
/// its `reason`.
async fn detached(ws: &mut WsClient, id: &str, reason: &str) {
    let v = answer(ws, "session.detached", id).await;
    assert_eq!(v["reason"], reason, "{v}");
}

/// The `/ws` attachments the server counts (their forwarders) reach `n`.
async fn gauge_reaches(server: &TestServer, n: f64) {
    let reached = wait_until(secs(10), || async { metric(server, GAUGE).await == Some(n) }).await;
    assert!(reached, "{GAUGE} is {:?}, not {n}", metric(server, GAUGE).await);
}

/// Three rounds of as many sessions as the socket has slots: attached,
/// deleted, `session.detached`; each round's attaches find every slot
/// free, and nothing of the deleted attachments is left.
#[tokio::test]
async fn a_deleted_sessions_slot_is_given_back() {
    let server = server("3000").await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    for round in 0..3 {
        let ids: Vec<String> = (0..SLOTS).map(|i| format!("r{round}-{i}")).collect();
        for id in &ids {
            server.create(json!({"id":id,"argv":["cat"]})).await;
            ws.attach(id, "json").await;
            answer(&mut ws, "session.attached", id).await;
        }
        gauge_reaches(&server, SLOTS as f64).await;
        for id in &ids {
            delete(&server, id).await;
            detached(&mut ws, id, "deleted").await;
        }
        gauge_reaches(&server, 0.0).await;
    }
    // Given back before the client was told: a detach now is refused.
    ws.send(json!({"type":"session.detach","sessionId":"r2-0"})).await;
    let refused = answer(&mut ws, "error", "r2-0").await;
    assert_eq!(refused["code"], "not_attached", "{refused}");
}

/// Sessions that end keep their attachments and slots (their output can
/// still be read); deleting one gives its slot back, with
/// `session.detached` after its `session.exit`.
#[tokio::test]
async fn an_ended_session_keeps_its_slot_until_deleted() {
    let server = server("3000").await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    let ids: Vec<String> = (0..SLOTS).map(|i| format!("done-{i}")).collect();
    for id in &ids {
        server.create(json!({"id":id,"argv":["sh","-c","echo bye"]})).await;
        ws.attach(id, "json").await;
        answer(&mut ws, "session.attached", id).await;
        answer(&mut ws, "session.exit", id).await;
    }
    server.create(json!({"id":"late","argv":["cat"]})).await;
    ws.attach("late", "json").await;
    let refused = ws.until_type("error", secs(10)).await;
    assert_eq!(
        (
            refused["code"].as_str(),
            refused["sessionId"].as_str(),
            refused["request"].as_str()
        ),
        (Some("rate_limited"), Some("late"), Some("session.attach")),
        "{refused}"
    );
    // Still attached: a detach is answered as one.
    ws.send(json!({"type":"session.detach","sessionId":ids[0]})).await;
    detached(&mut ws, &ids[0], "detach").await;
    ws.attach(&ids[0], "json").await;
    answer(&mut ws, "session.exit", &ids[0]).await;
    delete(&server, &ids[1]).await;
    detached(&mut ws, &ids[1], "deleted").await;
    ws.attach("late", "json").await;
    answer(&mut ws, "session.attached", "late").await;
}

/// Through another node of a cluster (two slots): a session that ended
/// keeps its attachment there, and the deletion on its owner of it and of
/// a running one ends both attachments.
#[tokio::test]
async fn sessions_of_another_node_give_their_slots_back_when_deleted() {
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET", "2")]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"far","argv":["sh","-c","echo bye"]})).await;
    for id in ["run", "next-0", "next-1"] {
        a.create(json!({"id":id,"argv":["cat"]})).await;
    }
    for id in ["far", "run", "next-0", "next-1"] {
        listed(b, id, secs(15)).await.expect("listed on b");
    }
    let mut ws = WsClient::connect(b, "/ws").await;
    ws.attach("far", "json").await;
    answer(&mut ws, "session.exit", "far").await;
    ws.attach("run", "json").await;
    answer(&mut ws, "session.attached", "run").await;
    for id in ["far", "run"] {
        delete(a, id).await;
        detached(&mut ws, id, "deleted").await;
    }
    for id in ["next-0", "next-1"] {
        ws.attach(id, "json").await;
        answer(&mut ws, "session.attached", id).await;
    }
}

/// Focus-aware attachments (`"stream":"focus"`, one slot per socket) of
/// running sessions, `ids` with their focus, deleted in turn: each is told
/// `session.detached`, and its slot is free again.
async fn deleted_focus_attachments_end(ids: &[(&str, bool)]) {
    let server = TestServer::start_with(
        &[],
        &[
            ("TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET", "1"),
            ("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "200"),
        ],
    )
    .await;
    for &(id, focused) in ids {
        server.create(json!({"id":id,"argv":["cat"]})).await;
        focus(&server, id, focused).await;
        let mut ws = WsClient::connect(&server, "/ws").await;
        ws.send(json!({"type":"session.attach","sessionId":id,"output":"json","stream":"focus"}))
            .await;
        answer(&mut ws, "session.attached", id).await;
        delete(&server, id).await;
        detached(&mut ws, id, "deleted").await;
        server.create(json!({"id":"after","argv":["cat"]})).await;
        ws.attach("after", "json").await;
        answer(&mut ws, "session.attached", "after").await;
        delete(&server, "after").await;
        detached(&mut ws, "after", "deleted").await;
    }
    gauge_reaches(&server, 0.0).await;
}

/// Unfocused, the forwarder has no live receiver: it must see the
/// deletion otherwise (a deleted running session's info still says
/// running).
#[tokio::test]
async fn a_deleted_unfocused_attachment_ends() {
    deleted_focus_attachments_end(&[("cold", false), ("cold-2", false)]).await;
}

/// Focused: the deletion also takes the session out of its project's focus
/// set, and that change may reach the forwarder before its live events
/// close, leaving it unfocused (the old code then waited for good about
/// one time in three).
#[tokio::test]
async fn a_deleted_focused_attachment_ends() {
    let ids: Vec<String> = (0..8).map(|i| format!("hot-{i}")).collect();
    let ids: Vec<(&str, bool)> = ids.iter().map(|id| (id.as_str(), true)).collect();
    deleted_focus_attachments_end(&ids).await;
}

/// An unfocused focus-aware attachment of a session terminated and deleted
/// at once is told the session's last output, then `session.exit`, then
/// `session.detached`. The old code acted on the end only at the next
/// update (500 ms here): the delete came first and the attachment ended
/// with no `session.exit`.
#[tokio::test]
async fn an_unfocused_attachment_terminated_and_deleted_at_once_is_told_the_exit() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "500")]).await;
    for round in 0..3 {
        let id = format!("brief-{round}");
        server.create(json!({"id":id,"argv":["cat"]})).await;
        focus(&server, &id, false).await;
        let mut ws = WsClient::connect(&server, "/ws").await;
        ws.send(json!({"type":"session.attach","sessionId":id,"output":"json","stream":"focus"}))
            .await;
        answer(&mut ws, "session.attached", &id).await;
        let word = format!("last-{round}");
        server.input(&id, &format!("{word}\n")).await;
        let mut seen = String::new();
        let mut ended = false;
        loop {
            match ws.recv(secs(10)).await {
                Some(Incoming::Json(v)) if v["type"] == "terminal.output" && v["sessionId"] == id.as_str() => {
                    assert!(!ended, "round {round}: output after the end: {v}");
                    seen.push_str(v["data"].as_str().unwrap_or_default());
                    if seen.contains(&word) && !ended {
                        // The last output is in: end the session and
                        // delete it at once, before the next update.
                        server.terminate(&id).await;
                        delete(&server, &id).await;
                        ended = true;
                    }
                }
                Some(Incoming::Json(v)) if v["type"] == "session.exit" && v["sessionId"] == id.as_str() => {
                    assert!(ended, "round {round}: session.exit before the end: {v}");
                    break;
                }
                Some(Incoming::Json(v)) if v["type"] == "session.detached" && v["sessionId"] == id.as_str() => {
                    panic!("round {round}: session.detached with no session.exit first (seen {seen:?}): {v}")
                }
                Some(Incoming::Json(v)) if v["type"] == "error" => panic!("round {round}: {v}"),
                Some(Incoming::Closed(c)) => panic!("round {round}: closed ({c:?})"),
                None => panic!("round {round}: nothing within 10 s (seen {seen:?}, ended {ended})"),
                Some(_) => {}
            }
        }
        assert!(seen.contains(&word), "round {round}: {seen:?}");
        detached(&mut ws, &id, "deleted").await;
    }
    gauge_reaches(&server, 0.0).await;
}

/// Through another node of a cluster: an unfocused focus-aware attachment
/// of a running session its owner deletes ends (its stand-in goes).
#[tokio::test]
async fn a_deleted_unfocused_attachment_of_another_node_ends() {
    let cluster = TestCluster::start_with(
        2,
        &[
            ("TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET", "1"),
            ("TERMSTREAM_UNFOCUSED_INTERVAL_MS", "200"),
        ],
    )
    .await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"far","argv":["cat"]})).await;
    a.create(json!({"id":"next","argv":["cat"]})).await;
    focus(a, "far", false).await;
    for id in ["far", "next"] {
        listed(b, id, secs(15)).await.expect("listed on b");
    }
    let mut ws = WsClient::connect(b, "/ws").await;
    ws.send(json!({"type":"session.attach","sessionId":"far","output":"json","stream":"focus"}))
        .await;
    answer(&mut ws, "session.attached", "far").await;
    delete(a, "far").await;
    detached(&mut ws, "far", "deleted").await;
    ws.attach("next", "json").await;
    answer(&mut ws, "session.attached", "next").await;
}

/// An attach waiting for its session (limit: one slot here) whose session
/// is created and deleted at once: `session.detached` comes, and the slot
/// is free for the next attach.
#[tokio::test]
async fn a_session_deleted_while_its_attach_waits_gives_the_slot_back() {
    let server = TestServer::start_with(
        &[],
        &[
            ("TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET", "1"),
            ("TERMSTREAM_ATTACH_WAIT_MS", "20000"),
        ],
    )
    .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    for i in 0..4 {
        let id = format!("soon-{i}");
        ws.attach(&id, "json").await;
        // The attach waits (answered only when the session is there), in
        // the slot: it is not refused.
        ws.send(json!({"type":"ping"})).await;
        answer(&mut ws, "pong", "").await;
        server.create(json!({"id":id,"argv":["cat"]})).await;
        delete(&server, &id).await;
        detached(&mut ws, &id, "deleted").await;
    }
    server.create(json!({"id":"here","argv":["cat"]})).await;
    ws.attach("here", "json").await;
    answer(&mut ws, "session.attached", "here").await;
    gauge_reaches(&server, 1.0).await;
}

/// A session deleted and created again with the same id, and attached
/// again while the old attachment's end is still to be taken: the new
/// attachment stays. The socket's task is held meanwhile (its input to a
/// program that reads nothing waits 1 s for room, then is `busy`), so
/// when it wakes the old forwarder's release and the new attach are both
/// ready, and are taken in either order.
#[tokio::test]
async fn a_new_session_of_the_same_id_stays_attached() {
    let server = server("3000").await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    fill_input(&server, "full").await;
    server.create(json!({"id":"same","argv":["cat"]})).await;
    ws.attach("same", "json").await;
    answer(&mut ws, "session.attached", "same").await;
    for round in 0..10 {
        ws.send(json!({"type":"terminal.input","sessionId":"full","data":"y"}))
            .await;
        delete(&server, "same").await;
        let info = server.create(json!({"id":"same","argv":["cat"]})).await;
        ws.attach("same", "json").await;
        let mut held = false;
        let attached = loop {
            match ws.recv(secs(10)).await {
                Some(Incoming::Json(v)) if v["type"] == "error" && v["sessionId"] == "full" => {
                    assert_eq!(v["code"], "busy", "{v}");
                    held = true;
                }
                Some(Incoming::Json(v)) if v["type"] == "session.attached" => break v,
                Some(Incoming::Json(v)) if v["type"] == "error" => panic!("round {round}: {v}"),
                Some(Incoming::Json(_)) => {}
                other => panic!("round {round}: no session.attached: {other:?}"),
            }
        };
        assert!(held, "round {round}: the socket's task was not held");
        assert_eq!(attached["epoch"], info["epoch"], "round {round}: {attached}");
        // Output of the new session still comes: it is attached.
        ws.echoes(&server, "same", &format!("still-{round}"), &format!("round {round}"))
            .await;
    }
    ws.send(json!({"type":"session.detach","sessionId":"same"})).await;
    detached(&mut ws, "same", "detach").await;
    gauge_reaches(&server, 0.0).await;
    assert_eq!(server.get("/api/sessions/same").await.0, StatusCode::OK);
}

/// A session deleted, attached again before its id exists again (the
/// attach waits), then created again. The socket's task is held while the
/// delete and the attach are queued, so it takes the old forwarder's
/// release and the attach in either order. Release first: the old
/// attachment ends with `session.detached`, then the attach waits. Attach
/// first: it replaces the old attachment, as an attach of a live session
/// does, and no `session.detached` comes for it (the old release is
/// dropped). Either way the new session's `session.attached` comes, with
/// no `session.detached` after it. Over the rounds both orders come (the
/// task's wait takes what is ready in random order).
#[tokio::test]
async fn an_attach_before_the_id_exists_again_replaces_the_old_attachment() {
    let server = server("20000").await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    fill_input(&server, "full").await;
    server.create(json!({"id":"same","argv":["cat"]})).await;
    ws.attach("same", "json").await;
    answer(&mut ws, "session.attached", "same").await;
    let rounds = 16;
    let mut replaced = 0;
    for round in 0..rounds {
        ws.send(json!({"type":"terminal.input","sessionId":"full","data":"y"}))
            .await;
        delete(&server, "same").await;
        ws.attach("same", "json").await;
        ws.send(json!({"type":"ping"})).await;
        let mut detached = 0;
        loop {
            match ws.recv(secs(10)).await {
                Some(Incoming::Json(v)) if v["type"] == "pong" => break,
                Some(Incoming::Json(v)) if v["type"] == "session.detached" => detached += 1,
                Some(Incoming::Json(v)) if v["type"] == "error" && v["sessionId"] == "full" => {}
                Some(Incoming::Json(v)) if v["type"] == "error" => panic!("round {round}: {v}"),
                Some(Incoming::Json(_)) => {}
                other => panic!("round {round}: no pong: {other:?}"),
            }
        }
        // The attach was read: it waits for the id.
        let info = server.create(json!({"id":"same","argv":["cat"]})).await;
        let attached = loop {
            match ws.recv(secs(10)).await {
                Some(Incoming::Json(v)) if v["type"] == "session.attached" => break v,
                Some(Incoming::Json(v)) if v["type"] == "session.detached" => detached += 1,
                Some(Incoming::Json(v)) if v["type"] == "error" => panic!("round {round}: {v}"),
                Some(Incoming::Json(_)) => {}
                other => panic!("round {round}: no session.attached: {other:?}"),
            }
        };
        assert_eq!(attached["epoch"], info["epoch"], "round {round}: {attached}");
        assert!(detached <= 1, "round {round}: {detached} session.detached");
        if detached == 0 {
            replaced += 1;
        }
        ws.echoes(&server, "same", &format!("again-{round}"), &format!("round {round}"))
            .await;
    }
    assert!(
        replaced > 0,
        "in none of {rounds} rounds did the attach replace the old attachment: each had a session.detached"
    );
    gauge_reaches(&server, 1.0).await;
}

/// Creates `id`, a program that reads nothing, and fills its input queue
/// (1 MiB): the second input waits its 5 s and takes what fits.
async fn fill_input(server: &TestServer, id: &str) {
    server
        .create(json!({"id":id,"kind":"command","argv":["sleep","600"]}))
        .await;
    let data = "x".repeat(600_000);
    server.input(id, &data).await;
    let (status, body) = server
        .post(&format!("/api/sessions/{id}/input"), json!({ "data": data }))
        .await;
    assert_eq!(body["error"]["code"], "busy", "{status} {body}");
}

/// Through another node of a cluster: a session deleted on its node and
/// created again with the same id on the viewer's node at once ends the
/// viewer's attachment of the old one as `deleted` (not `released`),
/// whether or not the viewer's node read the old record's removal before
/// its own record of the id.
#[tokio::test]
async fn a_session_deleted_and_created_again_on_the_viewers_node_ends_as_deleted() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"moved","argv":["cat"]})).await;
    listed(b, "moved", secs(15)).await.expect("listed on b");
    let mut ws = WsClient::connect(b, "/ws").await;
    ws.attach("moved", "json").await;
    answer(&mut ws, "session.attached", "moved").await;
    delete(a, "moved").await;
    let body = json!({"id":"moved","argv":["cat"]});
    let created = wait_until(secs(10), || async {
        b.request("POST", "/api/sessions", Some(&body)).await.0.is_success()
    })
    .await;
    assert!(created, "b did not create the id again");
    detached(&mut ws, "moved", "deleted").await;
}
