//! A window size set on one node shows on the others as the owner holds
//! it: a resize through a node that does not own the session answers with
//! the new size, and a stale directory record does not put an old size back
//! on a node whose viewer follows the session's stream.

mod common;

use std::time::Duration;

use common::cluster::{NOT_LOST, TestCluster, attach, holds, listed, read_until};
use common::wait_until;
use common::ws::WsClient;
use serde_json::{Value, json};
use tokio::io::{AsyncBufReadExt, AsyncWriteExt};

const T: Duration = Duration::from_secs(15);

/// The directory hash and its change log (`cluster/redis.rs`).
const DIR_KEY: &str = "termstream:dir";
const DIR_LOG_KEY: &str = "termstream:dirlog";

#[tokio::test]
async fn a_resize_through_a_node_that_does_not_own_the_session_answers_with_the_new_size() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"sized","argv":["/bin/sh"],"cols":80,"rows":24}))
        .await;
    listed(b, "sized", T).await.expect("listed on B");
    // Nobody views the session on B, so B's copy of its info changes only
    // at B's next directory read, a heartbeat away: the answer must not
    // come from that copy.
    for (cols, rows) in [(100, 30), (120, 40)] {
        let (status, info) = b
            .post("/api/sessions/sized/resize", json!({"cols":cols,"rows":rows}))
            .await;
        assert_eq!(status, 200, "{info}");
        assert_eq!(
            (&info["cols"], &info["rows"]),
            (&json!(cols), &json!(rows)),
            "B answers with the size it set: {info}"
        );
        assert_eq!(a.info("sized").await["cols"], cols, "the owner applied it");
    }
}

#[tokio::test]
async fn a_directory_record_older_than_a_streamed_resize_does_not_put_the_old_size_back() {
    // A heartbeat of a second: B's directory reads, which would bring the
    // owner's newer record, stay far apart from the steps below.
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_CLUSTER_HEARTBEAT_MS", "1000"), NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    // Silent until it reads a line, so the owner writes its record only on
    // a change of size until then.
    a.create(json!({"id":"steady","argv":["sh","-c","read line; echo got-$line; sleep 60"],"cols":80,"rows":24}))
        .await;
    listed(b, "steady", T).await.expect("listed on B");
    let client = redis::Client::open(cluster.redis.url()).expect("redis url");
    let mut conn = client.get_multiplexed_async_connection().await.expect("redis");
    let stale = hget(&mut conn, "steady").await;
    assert_eq!(record_cols(&stale), 80, "{stale}");

    // A viewer on B: B's stand-in runs its stream reader, which delivers
    // the resize before the viewer hears of it.
    let mut viewer = WsClient::connect(b, "/ws").await;
    let mut seen = attach(&mut viewer, "steady", None).await;
    let (status, _) = a
        .post("/api/sessions/steady/resize", json!({"cols":100,"rows":30}))
        .await;
    assert_eq!(status, 200);
    viewer.until_type("session.resized", T).await;
    assert_eq!(b.info("steady").await["cols"], 100);
    // The owner wrote its new record; none follows until output flows.
    let rewritten = wait_until(T, || {
        let mut conn = conn.clone();
        async move { record_cols(&hget(&mut conn, "steady").await) == 100 }
    })
    .await;
    assert!(rewritten, "the owner wrote its record with the new size");

    // The record read before the owner's put, as B's directory read could
    // have held it when the stream's resize came first: put back in the
    // directory, B reads it at its next heartbeat. Two sessions created one
    // after the other and seen on B: the directory read that found the
    // second began after the one that found the first had ended, and that
    // one had read the record as it was then. The owner may put its record
    // once more a few ms after the first (for its info's change, then for
    // its end offset), over the forged one: when the forged one is not in
    // the directory any more after a round, B may have read the owner's,
    // and the round is made again.
    let deadline = tokio::time::Instant::now() + T;
    for round in 1.. {
        let _: () = redis::cmd("HSET")
            .arg(DIR_KEY)
            .arg("steady")
            .arg(&stale)
            .query_async(&mut conn)
            .await
            .expect("HSET");
        note_change(&mut conn, "steady").await;
        for n in 1..=2 {
            let marker = format!("marker{round}x{n}");
            a.create(json!({"id":marker,"kind":"command","argv":["sleep","60"]}))
                .await;
            listed(b, &marker, T).await.expect("the marker listed on B");
        }
        if record_cols(&hget(&mut conn, "steady").await) == 80 {
            break;
        }
        assert!(
            tokio::time::Instant::now() < deadline,
            "the owner kept putting its record over the forged one ({round} rounds)"
        );
    }
    // Output read from the stream after that: the stand-in takes its
    // updates in order, so it has dealt with the stale record once the
    // viewer sees this.
    a.input("steady", "x\n").await;
    read_until(&mut viewer, &mut seen, T, |s| holds(&s.data, "got-x")).await;
    let info = b.info("steady").await;
    assert_eq!(
        (&info["cols"], &info["rows"]),
        (&json!(100), &json!(30)),
        "B keeps the streamed size: {info}"
    );
}

#[tokio::test]
async fn a_resize_made_while_redis_was_down_reaches_a_node_whose_viewer_follows_the_stream() {
    let mut cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    // Quiet after its first line: no output follows the resizes, so the
    // owner's record after the outage ends where the last streamed resize
    // was, and cannot be told from a record older than it.
    a.create(json!({"id":"quiet","argv":["sh","-c","echo ready; read line; sleep 60"],"cols":80,"rows":24}))
        .await;
    listed(b, "quiet", T).await.expect("listed on B");
    let printed = wait_until(T, || async { a.info("quiet").await["outputOffset"].as_u64() > Some(0) }).await;
    assert!(printed, "the session printed its line");
    let mut viewer = WsClient::connect(b, "/ws").await;
    attach(&mut viewer, "quiet", None).await;
    let (status, _) = a
        .post("/api/sessions/quiet/resize", json!({"cols":100,"rows":30}))
        .await;
    assert_eq!(status, 200);
    viewer.until_type("session.resized", T).await;
    assert_eq!(b.info("quiet").await["cols"], 100, "B has the streamed resize");

    // Redis restarts empty. The resize made meanwhile never reaches the
    // stream: the publisher's append fails, and the event is gone.
    cluster.redis.stop();
    let down = wait_until(T, || async { a.get("/readyz").await.0 == 503 }).await;
    assert!(down, "A sees Redis gone");
    let (status, body) = a
        .post("/api/sessions/quiet/resize", json!({"cols":120,"rows":40}))
        .await;
    assert_eq!(status, 200, "{body}");
    cluster.redis.start_again().await;
    let client = redis::Client::open(cluster.redis.url()).expect("redis url");
    let conn = client.get_multiplexed_async_connection().await.expect("redis");
    let registered = wait_until(T, || {
        let mut conn = conn.clone();
        async move {
            hget_opt(&mut conn, "quiet")
                .await
                .is_some_and(|r| record_cols(&r) == 120)
        }
    })
    .await;
    assert!(registered, "A registered the session again with its size");

    // B's stand-in kept its reader through the outage, and the record
    // alone says nothing newer than the resize it streamed: the stream
    // must bring the size again.
    let caught_up = wait_until(T, || async {
        let info = b.info("quiet").await;
        (info["cols"].as_u64(), info["rows"].as_u64()) == (Some(120), Some(40))
    })
    .await;
    let info = b.info("quiet").await;
    assert!(caught_up, "B shows the size set during the outage: {info}");
    let resized = viewer.until_type("session.resized", T).await;
    assert_eq!(
        (&resized["cols"], &resized["rows"]),
        (&json!(120), &json!(40)),
        "{resized}"
    );
}

#[tokio::test]
async fn only_a_resize_through_rest_asks_the_owner_for_its_info() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"dragged","argv":["/bin/sh"],"cols":80,"rows":24}))
        .await;
    listed(b, "dragged", T).await.expect("listed on B");
    // Every command Redis runs, as it runs it: the requests B sends A.
    let mut monitor = tokio::net::TcpStream::connect(("127.0.0.1", cluster.redis.port()))
        .await
        .expect("connect to redis");
    monitor.write_all(b"MONITOR\r\n").await.expect("MONITOR");
    let mut lines = tokio::io::BufReader::new(monitor).lines();

    // A window dragged on B: its resizes need no answer but `Done`.
    let mut ws = WsClient::connect(b, "/ws").await;
    ws.send(json!({"type":"terminal.resize","sessionId":"dragged","cols":90,"rows":33}))
        .await;
    let applied = wait_until(T, || async { a.info("dragged").await["cols"] == 90 }).await;
    assert!(applied, "the owner applied the WebSocket's resize");
    let (status, info) = b
        .post("/api/sessions/dragged/resize", json!({"cols":110,"rows":35}))
        .await;
    assert_eq!(status, 200, "{info}");

    // The requests to A, as JSON with its quotes escaped, until the REST one.
    let mut asked = Vec::new();
    let read = tokio::time::timeout(T, async {
        while let Some(line) = lines.next_line().await.expect("monitor") {
            let line = line.replace('\\', "");
            if line.contains("\"RPUSH\"") && line.contains(r#""op":"resize""#) {
                let rest = line.contains(r#""cols":110"#);
                asked.push(line);
                if rest {
                    return;
                }
            }
        }
    })
    .await;
    assert!(read.is_ok(), "the REST resize's request seen; so far {asked:?}");
    let [from_ws, from_rest] = &asked[..] else {
        panic!("two resize requests: {asked:?}")
    };
    assert!(from_ws.contains(r#""cols":90"#), "{from_ws}");
    assert!(
        !from_ws.contains(r#""info""#),
        "a WebSocket's resize asks for no info: {from_ws}"
    );
    assert!(
        from_rest.contains(r#""info":true"#),
        "a REST resize asks for the info: {from_rest}"
    );
}

async fn hget(conn: &mut redis::aio::MultiplexedConnection, id: &str) -> String {
    hget_opt(conn, id).await.expect("a record")
}

async fn hget_opt(conn: &mut redis::aio::MultiplexedConnection, id: &str) -> Option<String> {
    redis::cmd("HGET")
        .arg(DIR_KEY)
        .arg(id)
        .query_async(conn)
        .await
        .expect("HGET")
}

/// Notes a record's change in the directory's change log, as a node does.
async fn note_change(conn: &mut redis::aio::MultiplexedConnection, id: &str) {
    let _: String = redis::cmd("XADD")
        .arg(DIR_LOG_KEY)
        .arg("*")
        .arg("id")
        .arg(id)
        .query_async(conn)
        .await
        .expect("XADD");
}

/// The columns a directory record (`{node, info}` as JSON) gives.
fn record_cols(record: &str) -> u64 {
    let v: Value = serde_json::from_str(record).expect("a record");
    v["info"]["cols"].as_u64().expect("cols")
}
