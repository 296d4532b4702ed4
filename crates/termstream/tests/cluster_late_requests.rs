//! A request to a session's owner names the incarnation (epoch) its asker
//! knows, and the owner applies it only to that one. A request that sat in
//! the owner's list (which expires 4 × `lost_after` after its last push) while the session
//! was deleted and a new one took its id is answered `session_not_found`
//! (a delete: not deleted), as for an id the owner does not have, and
//! does nothing to the new session: a late terminate does not end it, late
//! input is not typed into it, a late resize does not size it.
//!
//! The late requests are pushed onto the owner's list in Redis by the test,
//! in the wire format a stand-in writes (`cluster/wire.rs`), naming the old
//! epoch: what a request that waited there looks like when the owner pops
//! it. Their answers come to a list of the test's own, so each is read as
//! the asking node would read it. Requests naming the new epoch, and one
//! naming none (from a node that predates epochs, in a rolling upgrade),
//! still act on the new session.

mod common;

use std::time::Duration;

use base64::Engine as _;
use common::cluster::{NOT_LOST, TestCluster, listed};
use redis::aio::MultiplexedConnection;
use serde_json::{Value, json};

const T: Duration = Duration::from_secs(15);
/// The asking node the test plays: where the owner answers.
const ASKER: &str = "late-asker";

/// Pushes `req` onto `owner`'s request list, as a stand-in does.
async fn push(conn: &mut MultiplexedConnection, owner: &str, req: Value) {
    let _: () = redis::cmd("RPUSH")
        .arg(format!("termstream:req:{owner}"))
        .arg(req.to_string())
        .query_async(conn)
        .await
        .expect("RPUSH a request");
}

/// The owner's next answer to [`ASKER`]; panics after [`T`].
async fn answer(conn: &mut MultiplexedConnection) -> Value {
    let popped: Option<(String, String)> = redis::cmd("BLPOP")
        .arg(format!("termstream:rep:{ASKER}"))
        .arg(T.as_secs_f64())
        .query_async(conn)
        .await
        .expect("BLPOP an answer");
    let (_, raw) = popped.expect("the owner answered within 15 s");
    serde_json::from_str(&raw).expect("an answer is JSON")
}

/// The owner's answers to the requests `ids`, by id.
async fn answers(conn: &mut MultiplexedConnection, ids: &[u64]) -> Vec<Value> {
    let mut got = Vec::new();
    for _ in ids {
        got.push(answer(conn).await);
    }
    ids.iter()
        .map(|id| {
            got.iter()
                .find(|a| a["id"] == *id)
                .cloned()
                .unwrap_or_else(|| panic!("no answer to request {id}: {got:?}"))
        })
        .collect()
}

/// A request from [`ASKER`] about session `reused`, naming `epoch` (none
/// when `None`), with `op`'s fields.
fn request(id: u64, epoch: Option<&str>, op: Value) -> Value {
    let mut req = json!({"id": id, "from": ASKER, "session": "reused"});
    if let Some(epoch) = epoch {
        req["epoch"] = json!(epoch);
    }
    for (k, v) in op.as_object().expect("an op is an object") {
        req[k] = v.clone();
    }
    req
}

/// An input op that types `text`.
fn input(text: &str) -> Value {
    let data = base64::engine::general_purpose::STANDARD.encode(text);
    json!({"op":"input","data":data,"eof":false,"seq":null,"wait_ms":2000})
}

#[tokio::test]
async fn a_late_request_for_a_deleted_session_does_not_act_on_the_new_one_with_its_id() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let body = json!({"id":"reused","argv":["/bin/sh"],"cols":80,"rows":24});
    let old = a.create(body.clone()).await["epoch"].as_str().unwrap().to_owned();
    // Known on B, whose stand-in would ask with this epoch.
    let seen = listed(b, "reused", T).await.expect("listed on B");
    assert_eq!(seen["epoch"], old.as_str());

    let client = redis::Client::open(cluster.redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let record: String = redis::cmd("HGET")
        .arg("termstream:dir")
        .arg("reused")
        .query_async(&mut conn)
        .await
        .expect("the session's record");
    let record: Value = serde_json::from_str(&record).expect("a record is JSON");
    let owner = record["node"].as_str().expect("the owner's name").to_owned();

    // Deleted, and a new session with the same id on the same node.
    let (status, _) = a.request("DELETE", "/api/sessions/reused", None).await;
    assert_eq!(status, 204);
    let new = a.create(body).await["epoch"].as_str().unwrap().to_owned();
    assert_ne!(new, old, "a new session has a new epoch");

    // Requests about the old session, popped only now.
    let late = [
        json!({"op":"terminate"}),
        input("echo stale-$((6*7))\n"),
        json!({"op":"resize","cols":100,"rows":30}),
        json!({"op":"snapshot"}),
        json!({"op":"read","since":0,"max":4096}),
        json!({"op":"events","at":null,"max":4096}),
        json!({"op":"delete"}),
    ];
    let ids: Vec<u64> = (1..=late.len() as u64).collect();
    for (id, op) in ids.iter().zip(late) {
        push(&mut conn, &owner, request(*id, Some(&old), op)).await;
    }
    let got = answers(&mut conn, &ids).await;
    let (delete, others) = got.split_last().expect("answers");
    for a in others {
        assert_eq!(
            a["result"]["Err"]["code"], "session_not_found",
            "a request about the old session is answered as for an id the owner does not have: {a}"
        );
    }
    let message = others[0]["result"]["Err"]["message"].as_str().unwrap_or_default();
    assert!(
        message.contains(&old),
        "the answer names the epoch asked about: {message}"
    );
    assert_eq!(
        delete["result"]["Ok"],
        json!({"deleted": false}),
        "a delete of the old session deletes nothing: {delete}"
    );

    // The new session was not ended, sized or deleted ...
    let info = a.info("reused").await;
    assert_eq!(info["epoch"], new.as_str(), "{info}");
    assert_eq!(info["status"], "running", "{info}");
    assert_eq!(
        (info["cols"].as_u64(), info["rows"].as_u64()),
        (Some(80), Some(24)),
        "{info}"
    );

    // ... and takes requests that name it, and one from a node that
    // predates epochs (which names none), as before.
    push(
        &mut conn,
        &owner,
        request(20, Some(&new), input("echo fresh-$((5*5))\n")),
    )
    .await;
    let fresh = answers(&mut conn, &[20]).await;
    assert_eq!(fresh[0]["result"]["Ok"], "done", "{fresh:?}");
    push(&mut conn, &owner, request(21, None, input("echo legacy-$((4*4))\n"))).await;
    let legacy = answers(&mut conn, &[21]).await;
    assert_eq!(legacy[0]["result"]["Ok"], "done", "{legacy:?}");
    let text = a.read_output_until("reused", "legacy-16", T).await;
    assert!(text.contains("fresh-25"), "{text:?}");
    // The late input would have been written before them: it was answered
    // (not applied) before they were pushed.
    assert!(
        !text.contains("stale"),
        "the late input was typed into the new session: {text:?}"
    );
    push(
        &mut conn,
        &owner,
        request(22, Some(&new), json!({"op":"resize","cols":100,"rows":30})),
    )
    .await;
    let resized = answers(&mut conn, &[22]).await;
    assert_eq!(resized[0]["result"]["Ok"], "done", "{resized:?}");
    assert_eq!(a.info("reused").await["cols"], 100);
    push(&mut conn, &owner, request(23, Some(&new), json!({"op":"terminate"}))).await;
    let ended = answers(&mut conn, &[23]).await;
    assert_eq!(ended[0]["result"]["Ok"], "done", "{ended:?}");
    a.wait_status("reused", "terminated", T).await;
}
