//! Three nodes of one cluster behind a real nginx running
//! `contrib/nginx-cluster.conf` (round robin, no stickiness): focus changes
//! made through it land on every node in turn, and form one version
//! sequence that a WebSocket through it (on whichever node it landed) sees
//! in order; reads through it agree whichever node answers.
//!
//! nginx runs in the foreground with its prefix, pid file, logs and temp
//! paths in a temporary directory, on a loopback port (as in `proxy.rs`).

mod common;

use std::net::TcpListener;
use std::process::Child;

use common::nginx;
use common::redis::TestRedis;
use common::secured::{ConfigFile, admin_entry};
use common::ws::until_type_on;
use common::{TestServer, secs, wait_until};
use futures_util::SinkExt;
use serde_json::{Value, json};
use termstream::auth::token;
use tokio_tungstenite::tungstenite::Message;
use tokio_tungstenite::tungstenite::client::IntoClientRequest;

/// A running nginx serving the cluster config, stopped when dropped.
struct Nginx {
    child: Child,
    _dir: tempfile::TempDir,
    port: u16,
}

impl Nginx {
    /// Starts nginx with `contrib/nginx-cluster.conf` in front of `nodes`.
    async fn start(nodes: &[&str]) -> Nginx {
        let dir = tempfile::tempdir().unwrap();
        let port = TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port();
        let mut site = nginx::contrib("nginx-cluster.conf");
        for (i, node) in nodes.iter().enumerate() {
            site = nginx::replaced(
                site,
                &format!("server 127.0.0.1:800{} ", i + 1),
                &format!("server {node} "),
            );
        }
        site = nginx::replaced(site, "listen 8080;", &format!("listen 127.0.0.1:{port};"));
        let child = nginx::spawn(dir.path(), &site, port).await;
        Nginx { child, _dir: dir, port }
    }

    fn url(&self, path: &str) -> String {
        format!("http://127.0.0.1:{}{path}", self.port)
    }
}

impl Drop for Nginx {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// A request with the token, answered as status and JSON.
async fn call(url: String, bearer: &str, method: reqwest::Method, body: Option<Value>) -> (u16, Value) {
    let mut req = reqwest::Client::new()
        .request(method, url)
        .header("authorization", bearer);
    if let Some(b) = body {
        req = req.json(&b);
    }
    let resp = req.send().await.expect("request");
    let status = resp.status().as_u16();
    (status, resp.json().await.unwrap_or(Value::Null))
}

#[tokio::test]
async fn focus_through_a_load_balancer_over_three_nodes_is_one_sequence() {
    let redis = TestRedis::start().await;
    let admin = token::generate();
    let bearer = format!("Bearer {admin}");
    let config = ConfigFile::new(&format!(
        "trusted_proxies = [\"127.0.0.1\"]\n{}",
        admin_entry("ops", &admin)
    ));
    let url = redis.url();
    let args = ["--config", config.path(), "--cluster", &url];
    let nodes = [
        TestServer::start_with(&args, &[]).await,
        TestServer::start_with(&args, &[]).await,
        TestServer::start_with(&args, &[]).await,
    ];
    let addrs: Vec<&str> = nodes.iter().map(|n| n.addr()).collect();
    let nginx = Nginx::start(&addrs).await;
    // One session per node (round robin), each known to every node.
    let mut ids = Vec::new();
    for i in 0..3 {
        let body = json!({"id":format!("n{i}"),"kind":"command","argv":["cat"],"project":"lb"});
        let (status, info) = call(nginx.url("/api/sessions"), &bearer, reqwest::Method::POST, Some(body)).await;
        assert_eq!(status, 201, "{info}");
        ids.push(info["id"].as_str().unwrap().to_owned());
    }
    for node in &nodes {
        for id in &ids {
            let probe = json!({"sessionId":id,"focused":true,"expectedVersion":u64::MAX});
            let known = wait_until(secs(10), || {
                let (url, probe) = (node.url("/api/terminal/focus"), probe.clone());
                let bearer = bearer.clone();
                async move { call(url, &bearer, reqwest::Method::PUT, Some(probe)).await.0 == 409 }
            })
            .await;
            assert!(known, "session {id} is not known on {} within 10 s", node.addr());
        }
    }
    let mut req = format!("ws://127.0.0.1:{}/ws", nginx.port)
        .into_client_request()
        .unwrap();
    req.headers_mut().insert("authorization", bearer.parse().unwrap());
    let (mut ws, _) = tokio_tungstenite::connect_async(req)
        .await
        .expect("websocket through nginx");
    until_type_on(&mut ws, "connected", secs(10)).await;
    let sync = json!({"type":"sync_request","projectId":"lb"}).to_string();
    ws.send(Message::Text(sync.into())).await.unwrap();
    let (status, _) = until_type_on(&mut ws, "connection_status", secs(10)).await;
    assert_eq!(status["version"], 0, "{status}");
    until_type_on(&mut ws, "sync_complete", secs(10)).await;
    // Six changes, one request at a time: round robin spreads them.
    let changes = [(0, true), (1, true), (2, true), (0, false), (1, false), (0, true)];
    for (n, (i, focused)) in changes.iter().enumerate() {
        let body = json!({"sessionId":ids[*i],"focused":focused});
        let (status, answer) = call(
            nginx.url("/api/terminal/focus"),
            &bearer,
            reqwest::Method::PUT,
            Some(body),
        )
        .await;
        assert_eq!(
            (status, answer["version"].as_u64()),
            (200, Some(n as u64 + 1)),
            "{answer}"
        );
    }
    let mut versions = Vec::new();
    while versions.len() < changes.len() {
        let (update, skipped) = until_type_on(&mut ws, "focus_update", secs(10)).await;
        assert!(skipped.is_empty(), "other messages between updates: {skipped:?}");
        versions.push(update["version"].as_u64().unwrap());
    }
    assert_eq!(versions, [1, 2, 3, 4, 5, 6]);
    for _ in 0..3 {
        let (status, state) = call(
            nginx.url("/api/terminal/focus?projectId=lb"),
            &bearer,
            reqwest::Method::GET,
            None,
        )
        .await;
        assert_eq!((status, state["version"].as_u64()), (200, Some(6)), "{state}");
        assert_eq!(state["focusedSessions"], json!([ids[2], ids[0]]), "{state}");
    }
}
