//! The web page: served at `/` from the binary without a credential (the
//! API behind it still needs one), revalidated by ETag; and the `sessions`
//! event channel that keeps the page's list live without polling.

mod common;

use common::secured::{call, secured};
use common::ws::WsClient;
use common::{TestServer, Transport, secs};
use serde_json::{Value, json};

#[tokio::test]
async fn the_page_needs_no_credential_and_the_api_still_does() {
    let (server, tokens) = secured("", &[], Transport::Plain).await;
    let (status, _, headers) = call(&server, "GET", "/", None, None, &[]).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().starts_with("text/html"));
    let html = common::secured::bare(&server)
        .get(server.url("/"))
        .send()
        .await
        .unwrap()
        .text()
        .await
        .unwrap();
    assert!(html.contains("/assets/app.js"), "{html}");

    let (status, _, headers) = call(&server, "GET", "/assets/app.js", None, None, &[]).await;
    assert_eq!(status, 200);
    assert!(headers["content-type"].to_str().unwrap().contains("javascript"));
    let etag = headers["etag"].to_str().unwrap().to_owned();
    let (status, _, _) = call(
        &server,
        "GET",
        "/assets/app.js",
        None,
        None,
        &[("if-none-match", &etag)],
    )
    .await;
    assert_eq!(status, 304, "the same version is not sent again");
    let (status, body, _) = call(&server, "GET", "/assets/nothing.js", None, None, &[]).await;
    assert_eq!((status, body["error"]["code"].as_str()), (404, Some("not_found")));

    // Everything else still needs a credential.
    let (status, _, _) = call(&server, "GET", "/api/sessions", None, None, &[]).await;
    assert_eq!(status, 401);
    let (status, _, _) = call(&server, "POST", "/", None, None, &[]).await;
    assert_eq!(status, 401, "only GET and HEAD of the page are public");
    let (status, _, _) = call(&server, "GET", "/api/sessions", Some(&tokens.admin), None, &[]).await;
    assert_eq!(status, 200);
}

/// The next `session_update` event of `id`.
async fn next_update(ws: &mut WsClient, id: &str) -> Value {
    loop {
        let ev = ws.until_type("session_update", secs(10)).await;
        if ev["sessionId"] == id {
            return ev;
        }
    }
}

#[tokio::test]
async fn the_sessions_channel_tells_creation_exit_and_deletion() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"subscribe","channels":["sessions"]})).await;
    let sub = ws.until_type("subscribed", secs(5)).await;
    assert_eq!(sub["channels"], json!(["sessions"]));

    let info = server
        .create(json!({"kind":"command","command":"read x; exit 3","project":"p1"}))
        .await;
    let id = info["id"].as_str().unwrap();
    let created = next_update(&mut ws, id).await;
    assert_eq!(created["change"], "created");
    assert_eq!(created["project"], "p1");
    assert_eq!(created["status"], "running");

    server.input(id, "go\n").await;
    let exited = next_update(&mut ws, id).await;
    assert_eq!(exited["change"], "status");
    assert_eq!(exited["status"], "exited");

    let (status, _) = server.request("DELETE", &format!("/api/sessions/{id}"), None).await;
    assert!(status.is_success(), "{status}");
    let deleted = next_update(&mut ws, id).await;
    assert_eq!(deleted["change"], "deleted");
    assert_eq!(deleted["project"], "p1");
}

#[tokio::test]
async fn the_sessions_channel_tells_viewer_counts() {
    let server = TestServer::start().await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"subscribe","channels":["sessions"]})).await;
    ws.until_type("subscribed", secs(5)).await;
    let info = server.create(json!({"kind":"command","command":"sleep 600"})).await;
    let id = info["id"].as_str().unwrap();
    assert_eq!(next_update(&mut ws, id).await["change"], "created");

    let mut viewer = WsClient::connect(&server, "/ws").await;
    viewer.attach(id, "binary").await;
    let joined = next_update(&mut ws, id).await;
    assert_eq!(joined["change"], "viewers", "{joined}");
    assert_eq!(joined["viewers"], 1);
    viewer.close().await;
    let left = next_update(&mut ws, id).await;
    assert_eq!(left["change"], "viewers", "{left}");
    assert_eq!(left["viewers"], 0);
    let (status, _) = server
        .request("POST", &format!("/api/sessions/{id}/terminate"), None)
        .await;
    assert!(status.is_success(), "{status}");
}

#[tokio::test]
async fn a_scoped_socket_hears_only_its_projects_sessions() {
    let (server, tokens) = secured("", &[], Transport::Plain).await;
    let auth = format!("Bearer {}", tokens.web_reader);
    let (mut ws, _) = WsClient::try_connect(&server, "/ws", &[("authorization", &auth)])
        .await
        .expect("the reader connects");
    ws.send(json!({"type":"subscribe","channels":["sessions"]})).await;
    ws.until_type("subscribed", secs(5)).await;
    let create = |project: &str| json!({"kind":"command","command":"true","project":project});
    let (status, other, _) = call(
        &server,
        "POST",
        "/api/sessions",
        Some(&tokens.admin),
        Some(create("api")),
        &[],
    )
    .await;
    assert_eq!(status, 201);
    let (status, mine, _) = call(
        &server,
        "POST",
        "/api/sessions",
        Some(&tokens.admin),
        Some(create("web")),
        &[],
    )
    .await;
    assert_eq!(status, 201);
    let ev = ws.until_type("session_update", secs(10)).await;
    assert_eq!(
        ev["sessionId"], mine["id"],
        "the first event is of the readable project: {ev}"
    );
    assert_ne!(ev["sessionId"], other["id"]);
}
