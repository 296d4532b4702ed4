//! `/ws`: routing of many sessions on one socket, lossless streaming, the
//! screen a late joiner gets, errors that keep the connection open, and
//! event channels. Peers that are silent or stall, and input a program
//! does not read, are in `gateway_backpressure.rs`.

mod common;

use common::ws::{Incoming, WsClient};
use common::{TestServer, secs};
use serde_json::json;
use termstream::session::screen::ScreenModel;
use tokio_tungstenite::tungstenite::Message;

/// A command session that waits for a line on stdin, then runs `script`.
async fn gated(server: &TestServer, id: &str, script: &str) {
    server
        .create(json!({"id": id, "kind": "command", "argv": ["sh", "-c", format!("read go; {script}")]}))
        .await;
}

async fn release(server: &TestServer, id: &str) {
    server.input(id, "go\n").await;
}

#[tokio::test]
async fn three_sessions_on_one_socket_do_not_cross_talk() {
    let server = TestServer::start().await;
    let ids = ["alpha", "beta", "gamma"];
    for id in ids {
        gated(&server, id, &format!("for i in $(seq 1 3000); do echo {id}-$i; done")).await;
    }
    let mut ws = WsClient::connect(&server, "/ws").await;
    for id in ids {
        ws.attach(id, "json").await;
    }
    // Every attach is answered before any program prints: waiting for an
    // answer skips what comes before it, so output released between two
    // answers would be skipped too.
    for _ in ids {
        ws.until_type("session.attached", secs(10)).await;
    }
    for id in ids {
        release(&server, id).await;
    }
    let got = ws.collect_until_exit(&ids, secs(60)).await;
    for (id, c) in ids.iter().zip(&got) {
        let text = String::from_utf8(c.data.clone()).unwrap();
        let expected: String = (1..=3000).map(|i| format!("{id}-{i}\n")).collect();
        assert_eq!(text, expected, "{id} got exactly its own output");
        assert_eq!(c.exit.as_ref().unwrap()["exitCode"], 0);
    }
}

#[tokio::test]
async fn four_sessions_stream_ten_megabytes_each_exactly_once() {
    let server = TestServer::start().await;
    let ids = ["s0", "s1", "s2", "s3"];
    const SIZE: usize = 10 * 1024 * 1024;
    for id in ids {
        gated(
            &server,
            id,
            &format!("yes {id}-0123456789abcdefghijklmnopqrstuvwxyz | head -c {SIZE}"),
        )
        .await;
    }
    let mut ws = WsClient::connect(&server, "/ws").await;
    for id in ids {
        ws.attach(id, "binary").await;
        ws.until_type("session.attached", secs(10)).await;
    }
    for id in ids {
        release(&server, id).await;
    }
    let got = ws.collect_until_exit(&ids, secs(120)).await;
    for (id, c) in ids.iter().zip(&got) {
        let line = format!("{id}-0123456789abcdefghijklmnopqrstuvwxyz\n");
        let expected: Vec<u8> = line.as_bytes().iter().copied().cycle().take(SIZE).collect();
        assert_eq!(c.data.len(), SIZE, "{id}: every byte arrives");
        assert!(
            c.data == expected,
            "{id}: bytes in order, none repeated or from another session"
        );
        // Under load, chunks merge into larger frames.
        let biggest = c.streams.iter().map(|(_, n)| *n).max().unwrap_or(0);
        assert!(biggest > 4096, "{id}: frames merge under load (largest {biggest})");
    }
}

#[tokio::test]
async fn stdout_and_stderr_keep_their_streams_over_the_socket() {
    let server = TestServer::start().await;
    gated(&server, "mixed", "echo out1; echo err1 >&2; echo out2; echo err2 >&2").await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.attach("mixed", "json").await;
    ws.until_type("session.attached", secs(10)).await;
    release(&server, "mixed").await;
    let got = ws.collect_until_exit(&["mixed"], secs(20)).await;
    let mut out = Vec::new();
    let mut err = Vec::new();
    let mut pos = 0;
    for (stream, n) in &got[0].streams {
        let part = &got[0].data[pos..pos + n];
        pos += n;
        match stream {
            1 => out.extend_from_slice(part),
            2 => err.extend_from_slice(part),
            other => panic!("unexpected stream {other}"),
        }
    }
    assert_eq!(String::from_utf8(out).unwrap(), "out1\nout2\n");
    assert_eq!(String::from_utf8(err).unwrap(), "err1\nerr2\n");
}

#[tokio::test]
async fn a_late_joiner_gets_the_exact_screen() {
    let server = TestServer::start().await;
    server
        .create(json!({"id": "scr", "argv": ["bash", "--norc", "--noprofile"], "cols": 60, "rows": 15}))
        .await;
    let script = "for i in $(seq 1 40); do printf '\\e[3%dmline %d\\e[0m\\n' $((i % 8)) $i; done; printf '\\e[5;3H\\e[1;44mBOX\\e[0m'; echo; echo done-$((6*7))\r";
    server.input("scr", script).await;
    server.read_output_until("scr", "done-42", secs(10)).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.attach("scr", "json").await;
    let attached = ws.until_type("session.attached", secs(10)).await;
    let restore = ws.until_type("terminal.restore", secs(10)).await;
    assert_eq!(restore["offset"], attached["offset"]);
    // Everything the session printed, replayed from offset 0 ...
    let full = server.output_all("scr", 0).await;
    let offset = restore["offset"].as_u64().unwrap() as usize;
    let mut reference = ScreenModel::new(60, 15, 1000);
    reference.feed(&full[..offset]);
    // ... must give the same screen as the snapshot on a blank terminal.
    let mut joined = ScreenModel::new(60, 15, 1000);
    joined.feed(restore["data"].as_str().unwrap().as_bytes());
    assert_eq!(joined.text(), reference.text());
    assert_eq!(joined.cursor(), reference.cursor());
    assert!(
        joined.text().iter().any(|l| l.contains("done-42")),
        "{:?}",
        joined.text()
    );
}

/// A viewer stays attached while keys are typed, echoed and the window
/// resized (the screen model of a watched session stays frozen through a
/// little output): a second viewer still joins to the exact screen.
#[tokio::test]
async fn a_late_joiner_of_a_watched_session_gets_what_was_typed() {
    let server = TestServer::start().await;
    server
        .create(json!({"id": "typed", "argv": ["bash", "--norc", "--noprofile"], "cols": 60, "rows": 15}))
        .await;
    let mut first = WsClient::connect(&server, "/ws").await;
    first.attach("typed", "json").await;
    first.until_type("terminal.restore", secs(10)).await;
    for i in 0..12u16 {
        first
            .send(json!({"type": "terminal.resize", "sessionId": "typed", "cols": 50 + i, "rows": 15}))
            .await;
        // Resized before the keys: bash redraws its line on a resize, and
        // one racing the keys redraws it over the command's output. (This
        // narrows the race; bash may still take its SIGWINCH after the
        // keys, so the output's line is checked by its start below.)
        let resized = first.until_type("session.resized", secs(10)).await;
        assert_eq!(resized["cols"], 50 + i);
        server.input("typed", &format!("echo typed-$((6*{i}))\r")).await;
        server
            .read_output_until("typed", &format!("typed-{}", 6 * i), secs(10))
            .await;
    }
    let mut second = WsClient::connect(&server, "/ws").await;
    second.attach("typed", "json").await;
    let attached = second.until_type("session.attached", secs(10)).await;
    let restore = second.until_type("terminal.restore", secs(10)).await;
    assert_eq!(restore["offset"], attached["offset"]);
    assert_eq!(
        (restore["cols"].as_u64(), restore["rows"].as_u64()),
        (Some(61), Some(15))
    );
    // Every line is shorter than the narrowest window: the screen is the
    // one the whole output gives at the last size.
    let full = server.output_all("typed", 0).await;
    let offset = restore["offset"].as_u64().unwrap() as usize;
    let mut reference = ScreenModel::new(61, 15, 1000);
    reference.feed(&full[..offset]);
    let mut joined = ScreenModel::new(61, 15, 1000);
    joined.feed(restore["data"].as_str().unwrap().as_bytes());
    assert_eq!(joined.text(), reference.text());
    assert_eq!(joined.cursor(), reference.cursor());
    assert!(
        joined.text().iter().any(|l| l.starts_with("typed-66")),
        "{:?}",
        joined.text()
    );
}

#[tokio::test]
async fn bad_messages_get_errors_and_the_connection_carries_on() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_ATTACH_WAIT_MS", "200")]).await;
    server
        .create(json!({"id": "c", "kind": "command", "argv": ["cat"]}))
        .await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    let cases: Vec<(Message, &str)> = vec![
        (Message::Text("{not json".into()), "invalid_message"),
        (Message::Text("[1,2]".into()), "invalid_message"),
        (Message::Text(r#"{"type":"launch.rockets"}"#.into()), "unknown_type"),
        (
            Message::Text(r#"{"type":"terminal.resize","sessionId":"c","cols":"wide","rows":1}"#.into()),
            "invalid_message",
        ),
        (
            Message::Text(r#"{"type":"session.attach","sessionId":"a/b"}"#.into()),
            "invalid_message",
        ),
        (
            Message::Text(r#"{"type":"session.attach","sessionId":"ghost"}"#.into()),
            "session_not_found",
        ),
        (
            Message::Text(r#"{"type":"terminal.input","sessionId":"ghost","data":"x"}"#.into()),
            "session_not_found",
        ),
        (
            Message::Text(r#"{"type":"session.detach","sessionId":"c"}"#.into()),
            "not_attached",
        ),
        (
            Message::Text(r#"{"type":"terminal.resize","sessionId":"c","cols":80,"rows":24}"#.into()),
            "wrong_kind",
        ),
        (
            Message::Text(r#"{"type":"subscribe","channels":["gossip"]}"#.into()),
            "invalid_message",
        ),
        (Message::Binary(vec![1, 2, 3].into()), "invalid_message"),
    ];
    for (msg, code) in cases {
        let shown = format!("{msg:?}");
        ws.send_raw(msg).await;
        let reply = ws.until_type("error", secs(5)).await;
        assert_eq!(reply["code"], code, "{shown} → {reply}");
        assert!(!reply["message"].as_str().unwrap_or_default().is_empty());
    }
    ws.send(json!({"type":"ping"})).await;
    assert_eq!(ws.until_type("pong", secs(5)).await["type"], "pong");
    ws.send(json!({"type":"heartbeat"})).await;
    assert!(ws.until_type("heartbeat", secs(5)).await["timestamp"].as_u64().unwrap() > 0);
}

#[tokio::test]
async fn an_oversize_message_closes_with_1009_and_the_server_carries_on() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_WS_MAX_MESSAGE_BYTES", "65536")]).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    let big = format!(r#"{{"type":"ping","pad":"{}"}}"#, "x".repeat(70_000));
    ws.send_raw(Message::Text(big.into())).await;
    let deadline = tokio::time::Instant::now() + secs(5);
    loop {
        match ws.recv(deadline - tokio::time::Instant::now()).await {
            Some(Incoming::Closed(code)) => {
                assert_eq!(code, Some(1009));
                break;
            }
            Some(_) => continue,
            None => panic!("no close after an oversize message"),
        }
    }
    let mut again = WsClient::connect(&server, "/ws").await;
    again.send(json!({"type":"ping"})).await;
    again.until_type("pong", secs(5)).await;
}

#[tokio::test]
async fn events_reach_subscribers_only() {
    let server = TestServer::start().await;
    let mut notes = WsClient::connect(&server, "/ws").await;
    let mut tasks = WsClient::connect(&server, "/ws").await;
    let mut all = WsClient::connect(&server, "/ws").await;
    let mut none = WsClient::connect(&server, "/ws").await;
    notes
        .send(json!({"type":"subscribe","channels":["notification"]}))
        .await;
    tasks.send(json!({"type":"subscribe","channels":["task_status"]})).await;
    all.send(json!({"type":"subscribe","channels":["*"]})).await;
    for c in [&mut notes, &mut tasks, &mut all] {
        c.until_type("subscribed", secs(5)).await;
    }
    let (status, _) = server
        .post(
            "/api/events",
            json!({"type":"notification","title":"Build","message":"done","priority":"high"}),
        )
        .await;
    assert_eq!(status, 202);
    let (status, _) = server
        .post(
            "/api/events",
            json!({"type":"task_status","taskId":"t1","status":"running"}),
        )
        .await;
    assert_eq!(status, 202);
    let n = notes.until_type("notification", secs(5)).await;
    assert_eq!(n["title"], "Build");
    let t = tasks.until_type("task_status", secs(5)).await;
    assert_eq!(t["taskId"], "t1");
    all.until_type("notification", secs(5)).await;
    all.until_type("task_status", secs(5)).await;
    // The notification subscriber saw no task status, and the unsubscribed
    // client saw nothing: a ping answered proves their queues are drained.
    for c in [&mut notes, &mut none] {
        c.send(json!({"type":"ping"})).await;
        loop {
            match c.recv(secs(5)).await {
                Some(Incoming::Json(v)) if v["type"] == "pong" => break,
                Some(Incoming::Json(v)) => {
                    assert!(
                        v["type"] != "task_status" && v["type"] != "notification",
                        "unexpected {v}"
                    );
                }
                other => panic!("{other:?}"),
            }
        }
    }
    for bad in [
        json!({"type":"notification","title":"x"}),
        json!({"type":"task_status","taskId":1,"status":"x"}),
        json!({"type":"weather"}),
        json!([1]),
    ] {
        let (status, body) = server.post("/api/events", bad.clone()).await;
        assert_eq!(status, 400, "{bad} → {body}");
        assert_eq!(body["error"]["code"], "bad_request");
    }
}

#[tokio::test]
async fn a_paste_larger_than_the_pty_takes_is_written_as_the_program_reads() {
    let server = TestServer::start().await;
    // The program starts reading only once the gate file exists: the first
    // two pieces fill the input queue (1 MiB), the third waits for room.
    // (It used to sleep 1 s, which raced the third piece's own 1 s wait:
    // on a busy machine the program had not read 500 kB by then, so that
    // piece was cut short and `head` waited for ever.)
    let dir = tempfile::tempdir().expect("a temporary directory");
    let gate = dir.path().join("gate");
    let script = format!(
        "stty raw -echo; echo raw-now; while [ ! -e '{}' ]; do sleep 0.01; done; head -c 3000000 | wc -c",
        gate.display()
    );
    server.create(json!({"id":"paste","argv":["sh","-c",script]})).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    ws.attach("paste", "json").await;
    ws.until_type("session.attached", secs(10)).await;
    // A paste that reached the line discipline before `stty raw` would wait
    // for a newline in cooked mode: start once the terminal is raw.
    server.read_output_until("paste", "raw-now", secs(30)).await;
    let piece = "0123456789".repeat(50_000); // 500 kB per message
    for i in 0..6 {
        ws.send(json!({"type":"terminal.input","sessionId":"paste","data":piece}))
            .await;
        if i == 2 {
            std::fs::write(&gate, b"").expect("the gate opened");
        }
    }
    let text = server.read_output_until("paste", "3000000", secs(60)).await;
    assert!(text.contains("3000000"), "{text}");
    // Nothing was refused, and the connection still answers.
    ws.send(json!({"type":"ping"})).await;
    let deadline = tokio::time::Instant::now() + secs(10);
    loop {
        let left = deadline.saturating_duration_since(tokio::time::Instant::now());
        match ws.recv(left).await {
            Some(Incoming::Json(v)) if v["type"] == "pong" => break,
            Some(Incoming::Json(v)) => assert_ne!(v["type"], "error", "no piece refused: {v}"),
            Some(Incoming::Closed(c)) => panic!("closed ({c:?}) before the pong"),
            None => panic!("no pong within 10 s"),
            _ => {}
        }
    }
}

/// A burst after a quiet spell arrives whole and in order, twice, on a
/// binary and a JSON socket at once. The socket's writer keeps no buffer
/// between bursts and each live event is handled in its own (boxed) step,
/// so what an idle socket drops must be rebuilt for the next burst without
/// losing, repeating or reordering a byte.
#[tokio::test]
async fn bursts_after_quiet_spells_arrive_whole_and_in_order() {
    const SIZE: usize = 2 * 1024 * 1024;
    let server = TestServer::start().await;
    gated(
        &server,
        "bursty",
        &format!("yes first-0123456789 | head -c {SIZE}; read again; yes second-abcdefghij | head -c {SIZE}"),
    )
    .await;
    let mut binary = WsClient::connect(&server, "/ws").await;
    binary.attach("bursty", "binary").await;
    binary.until_type("session.attached", secs(10)).await;
    let mut json = WsClient::connect(&server, "/ws").await;
    json.attach("bursty", "json").await;
    json.until_type("session.attached", secs(10)).await;
    release(&server, "bursty").await;
    // The first burst, read to its last byte by both; then both sockets
    // are idle until the second is released.
    let first = read_until(&mut binary, "bursty", SIZE).await;
    let first_json = read_until(&mut json, "bursty", SIZE).await;
    let expected_first: Vec<u8> = b"first-0123456789\n".iter().copied().cycle().take(SIZE).collect();
    assert!(first == expected_first, "binary: the first burst whole and in order");
    assert!(first_json == expected_first, "json: the first burst whole and in order");
    release(&server, "bursty").await;
    let expected_second: Vec<u8> = b"second-abcdefghij\n".iter().copied().cycle().take(SIZE).collect();
    for (name, ws) in [("binary", &mut binary), ("json", &mut json)] {
        let got = ws.collect_until_exit(&["bursty"], secs(60)).await;
        // A command session does not echo its input: the second burst is
        // all that comes after the first.
        assert_eq!(got[0].data.len(), SIZE, "{name}: every byte of the second burst");
        assert!(
            got[0].data == expected_second,
            "{name}: the second burst whole and in order"
        );
    }
}

/// Reads `id`'s output (binary frames or `terminal.output` messages) until
/// `want` bytes arrived, checking that each piece starts where the last
/// ended.
async fn read_until(ws: &mut WsClient, id: &str, want: usize) -> Vec<u8> {
    let mut data = Vec::new();
    let mut next: Option<u64> = None;
    while data.len() < want {
        let (offset, piece) = match ws.recv(secs(30)).await {
            Some(Incoming::Output {
                session, offset, data, ..
            }) if session == id => (offset, data),
            Some(Incoming::Json(v)) if v["type"] == "terminal.output" && v["sessionId"] == id => (
                v["offset"].as_u64().expect("offset"),
                v["data"].as_str().expect("data").as_bytes().to_vec(),
            ),
            Some(Incoming::Json(_)) => continue,
            other => panic!("while reading {id}'s output: {other:?}"),
        };
        if let Some(n) = next {
            assert_eq!(offset, n, "each piece starts where the last ended");
        }
        next = Some(offset + piece.len() as u64);
        data.extend_from_slice(&piece);
    }
    data
}

/// Every refusal of a `terminal.input` names it, whatever the code:
/// `"request":"terminal.input"`, its `sessionId`, and its `seq` when it
/// had one; a resize's refusal names `terminal.resize`. (The flat
/// dialect keeps its older shape: `gateway_compat.rs`.)
#[tokio::test]
async fn refusals_of_input_name_the_input_by_its_seq() {
    let env = [
        ("TERMSTREAM_WS_INPUT_BYTES_PER_SEC", "1"),
        ("TERMSTREAM_WS_INPUT_BURST_BYTES", "16"),
    ];
    let server = TestServer::start_with(&[], &env).await;
    server.create(json!({"id":"cat","argv":["cat"]})).await;
    let mut ws = WsClient::connect(&server, "/ws").await;
    let resize = json!({"type":"terminal.resize","sessionId":"ghost","cols":80,"rows":24});
    let cases = [
        (
            json!({"type":"terminal.input","sessionId":"ghost","data":"x","seq":7}),
            "session_not_found",
        ),
        (
            json!({"type":"terminal.input","sessionId":"ghost","data":"x"}),
            "session_not_found",
        ),
        (resize, "session_not_found"),
        // Over the socket's input budget (16 bytes of burst).
        (
            json!({"type":"terminal.input","sessionId":"cat","data":"x".repeat(32),"seq":8}),
            "rate_limited",
        ),
    ];
    for (msg, code) in cases {
        let mut want = json!({"type":"error","code":code,"sessionId":msg["sessionId"],"request":msg["type"]});
        if let Some(seq) = msg.get("seq") {
            want["seq"] = seq.clone();
        }
        ws.send(msg).await;
        let mut e = ws.until_type("error", secs(10)).await;
        assert!(e.as_object_mut().unwrap().remove("message").is_some(), "{e}");
        assert_eq!(e, want);
    }
}
