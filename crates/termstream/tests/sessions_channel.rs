//! The `sessions` event channel on one node when it misses registry
//! changes: a burst of deletes larger than `session_changes_queue` (1
//! here; evictions past `max_sessions`, made in one step by a create)
//! makes it lag, for real, and resynchronize; each deleted session is told
//! `deleted` once, not again at the stale events the channel still holds.

mod common;

use std::collections::HashMap;

use common::ws::{Incoming, WsClient};
use common::{TestServer, secs};
use serde_json::json;

#[tokio::test]
async fn a_lag_tells_each_deleted_session_once() {
    const N: usize = 16;
    let server = TestServer::start_logged(
        &[],
        &[
            ("TERMSTREAM_SESSION_CHANGES_QUEUE", "1"),
            ("TERMSTREAM_MAX_SESSIONS", "1"),
            ("RUST_LOG", "termstream::gateway=debug"),
        ],
    )
    .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.send(json!({"type":"subscribe","channels":["sessions"]})).await;
    ws.until_type("subscribed", secs(10)).await;
    let ids: Vec<String> = (0..N).map(|i| format!("s{i}")).collect();
    // Running, so that none is evicted yet: past `max_sessions`, only
    // ended sessions go.
    for id in &ids {
        server
            .create(json!({"id":id,"kind":"command","argv":["sh","-c","read go"]}))
            .await;
    }
    // One create evicts the N ended sessions in one step: N deletes in a
    // row into a queue of 1.
    server.end_and_evict(&ids, "trigger").await;
    // Created after all of it: its `created` comes after whatever the
    // deletes made the channel say.
    server
        .create(json!({"id":"marker","kind":"command","argv":["sh","-c","read go"]}))
        .await;
    let mut deleted: HashMap<String, usize> = HashMap::new();
    loop {
        match ws.recv(secs(10)).await {
            Some(Incoming::Json(m)) if m["type"] == "session_update" => {
                let id = m["sessionId"].as_str().unwrap_or_default().to_owned();
                if m["change"] == "created" && id == "marker" {
                    break;
                }
                if m["change"] == "deleted" {
                    *deleted.entry(id).or_default() += 1;
                }
            }
            Some(Incoming::Json(_)) => {}
            other => panic!("no created of the marker ({other:?}); deleted: {deleted:?}"),
        }
    }
    let expected: HashMap<String, usize> = ids.iter().map(|id| (id.clone(), 1)).collect();
    assert_eq!(deleted, expected, "deleted events per session");
    // The lag was real.
    assert!(
        server.log().contains("the sessions channel missed session changes"),
        "no lag was produced: {}",
        server.log()
    );
}
