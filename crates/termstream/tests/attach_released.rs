//! A `/ws` attachment through a node of a cluster ends when the node lets
//! go of its copy (stand-in) of another node's session while the session
//! may still exist: `session.detached` then says `released` (not
//! `deleted`), its slot is free, and attaching again follows the session.
//! Two ways a node lets go: the directory in Redis lacked the session's
//! record in three reads in a row (Redis emptied), or a `lost` session's
//! node came back. (Deleted sessions: `attach_deleted.rs`.) The CLI's
//! `attach` and `logs --follow` attach again by themselves, from the first
//! byte they have not printed (holding keys typed meanwhile), and end as
//! for a deletion if the session is not back within the attach wait.
//! The `sessions` channel of the viewer's node says such a `deleted` is a
//! release (`reason: "released"`).

mod common;

use std::sync::{Arc, Mutex};

use common::cluster::{NOT_LOST, TestCluster, listed, owner_away_with_redis_emptied, status_is};
use common::metrics::metric;
use common::ws::{Incoming, WsClient};
use common::{secs, wait_until};
use serde_json::{Value, json};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Waits until the socket answers `ty` for `id`; an error fails the test.
async fn answer(ws: &mut WsClient, ty: &str, id: &str) -> Value {
    loop {
        match ws.recv(secs(10)).await {
            Some(Incoming::Json(v)) if v["type"] == ty && v["sessionId"] == id => return v,
            Some(Incoming::Json(v)) if v["type"] == "error" => panic!("{v} while waiting for {ty} of {id}"),
            Some(Incoming::Closed(c)) => panic!("closed ({c:?}) while waiting for {ty} of {id}"),
            None => panic!("no {ty} of {id} within 10 s"),
            Some(_) => {}
        }
    }
}

/// Waits for `session.detached` of `id`, and checks it says `released`.
async fn released(ws: &mut WsClient, id: &str) {
    let v = answer(ws, "session.detached", id).await;
    assert_eq!(v["reason"], "released", "{v}");
}

/// The owner is stopped and Redis emptied (as a Redis restarted empty
/// would be, with the owner not registered again yet): the viewer's node
/// misses the session's record three reads in a row and lets go of it.
/// The attachment ends as `released`; once the owner runs and registers
/// again, attaching again (one slot: it was freed) follows the session.
#[tokio::test]
async fn a_session_missing_from_the_directory_is_released() {
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET", "1"), NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"kept","argv":["cat"]})).await;
    listed(b, "kept", secs(15)).await.expect("listed on b");
    let mut ws = WsClient::connect(b, "/ws").await;
    ws.attach("kept", "json").await;
    answer(&mut ws, "session.attached", "kept").await;
    let stopped = owner_away_with_redis_emptied(&cluster).await;
    released(&mut ws, "kept").await;
    // Input meanwhile is refused, and the refusal names it by its seq.
    input_refused(&mut ws, "kept", 11, "session_not_found").await;
    drop(stopped);
    status_is(b, "kept", "running", secs(15))
        .await
        .expect("listed again on b");
    ws.attach("kept", "json").await;
    answer(&mut ws, "session.attached", "kept").await;
    ws.echoes(b, "kept", "still-here", "after the release").await;
}

/// On a node of a cluster, the refusal of input to a session another
/// node owns names it as a refusal on the owner does: b's copy says the
/// program ended, and b refuses the input itself (`session_not_running`)
/// with `"request":"terminal.input"` and the input's seq.
#[tokio::test]
async fn b_refuses_input_to_a_session_of_a_itself_naming_its_seq() {
    let cluster = TestCluster::start(2).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"ended","kind":"command","argv":["true"]})).await;
    status_is(b, "ended", "exited", secs(15))
        .await
        .expect("listed as exited on b");
    let mut ws = WsClient::connect(b, "/ws").await;
    input_refused(&mut ws, "ended", 3, "session_not_running").await;
}

/// Through another node of a cluster: a session whose node is cut off
/// (stopped) is marked `lost` and its viewer there gets `session.exit`
/// (`lost`); when the node runs again, the session's record says running,
/// the viewer's node replaces its stand-in, and the old attachment ends
/// with `session.detached` (`released`; one slot here: it is free again),
/// although the session runs. Attaching again follows it.
#[tokio::test]
async fn a_lost_session_come_back_ends_its_old_attachment() {
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET", "1")]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"back","argv":["cat"]})).await;
    listed(b, "back", secs(15)).await.expect("listed on b");
    let mut ws = WsClient::connect(b, "/ws").await;
    ws.attach("back", "json").await;
    answer(&mut ws, "session.attached", "back").await;
    let stopped = a.pause();
    let exit = answer(&mut ws, "session.exit", "back").await;
    drop(stopped);
    assert_eq!(exit["status"], "lost", "{exit}");
    released(&mut ws, "back").await;
    status_is(b, "back", "running", secs(15))
        .await
        .expect("running again on b");
    ws.attach("back", "json").await;
    let attached = answer(&mut ws, "session.attached", "back").await;
    assert_eq!(attached["status"], "running", "{attached}");
    ws.echoes(b, "back", "here-again", "after the release").await;
}

/// The `sessions` channel of the viewer's node says which `deleted` is a
/// release: when the node lets go of its copy of the owner's session
/// (owner away, Redis emptied), `deleted` carries `reason: "released"`,
/// and the session is `created` again once the owner is back; its real
/// deletion on the owner is then `deleted` with no reason, on both nodes.
/// The old feed said a plain `deleted` for the release too.
#[tokio::test]
async fn the_sessions_channel_tells_a_release_from_a_deletion() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"fed","argv":["cat"]})).await;
    listed(b, "fed", secs(15)).await.expect("listed on b");
    let mut owner = subscribed(a).await;
    let mut viewer = subscribed(b).await;
    let stopped = owner_away_with_redis_emptied(&cluster).await;
    let gone = update(&mut viewer, "fed", "deleted").await;
    assert_eq!(gone["reason"], "released", "{gone}");
    drop(stopped);
    update(&mut viewer, "fed", "created").await;
    let (status, _) = a.request("DELETE", "/api/sessions/fed", None).await;
    assert_eq!(status.as_u16(), 204);
    for ws in [&mut owner, &mut viewer] {
        let gone = update(ws, "fed", "deleted").await;
        assert!(gone.get("reason").is_none(), "{gone}");
    }
}

/// A `/ws` socket on `node` subscribed to the `sessions` channel.
async fn subscribed(node: &common::TestServer) -> WsClient {
    let mut ws = WsClient::connect(node, "/ws").await;
    ws.send(json!({"type":"subscribe","channels":["sessions"]})).await;
    ws.until_type("subscribed", secs(10)).await;
    ws
}

/// Waits for the `session_update` of `id` whose change is `change`.
async fn update(ws: &mut WsClient, id: &str, change: &str) -> Value {
    loop {
        match ws.recv(secs(15)).await {
            Some(Incoming::Json(v))
                if v["type"] == "session_update" && v["sessionId"] == id && v["change"] == change =>
            {
                return v;
            }
            Some(Incoming::Closed(c)) => panic!("closed ({c:?}) while waiting for {change} of {id}"),
            None => panic!("no {change} of {id} within 15 s"),
            Some(_) => {}
        }
    }
}

/// `termstream attach` through the viewer's node, on a pipe: when the node
/// lets go of the session (owner away, Redis emptied), it attaches again
/// (the attach waits for the id, which comes back with the owner) from
/// the first byte it has not printed, and carries on: output made after it
/// comes, and output made before it is not printed again (a fresh attach
/// would draw the screen, holding it, again). The old `attach` ended
/// there with "was deleted".
#[tokio::test]
async fn cli_attach_carries_on_after_a_release() {
    let text = follows_across_a_release(&["attach", "shell"], json!({"id":"shell","argv":["/bin/sh"]}), None).await;
    assert!(text.contains("[exited (session shell, code 0)]"), "{text:?}");
}

/// `termstream attach`, keys typed while it attaches again (the viewer's
/// node has no session of the id then, and refuses input naming it):
/// held, and sent once attached again. The old `attach` sent them, and
/// ended at the refusal ("no session has id").
#[tokio::test]
async fn cli_attach_sends_the_keys_typed_while_it_attaches_again() {
    let text = follows_across_a_release(
        &["attach", "typing"],
        json!({"id":"typing","argv":["/bin/sh"]}),
        Some("echo typed-$((6*7))\n"),
    )
    .await;
    assert_eq!(text.matches("typed-42").count(), 1, "{text:?}");
    assert!(text.contains("[exited (session typing, code 0)]"), "{text:?}");
}

/// `termstream logs --follow` of a command session, the same way: the old
/// one ended (exit 0) at the release, before the later output.
#[tokio::test]
async fn cli_logs_follow_carries_on_after_a_release() {
    let text = follows_across_a_release(
        &["logs", "--follow", "lines"],
        json!({"id":"lines","kind":"command","argv":["/bin/sh"]}),
        None,
    )
    .await;
    assert_eq!(text, "before-42\nafter-42\n");
}

/// `termstream attach` and `logs --follow` through the viewer's node, the
/// server's attach wait at its default (3 s), the session's node away
/// longer: after the release their attach again is refused (the session
/// did not come back in time), and they end as for a deletion: attach
/// with "was deleted" and 66, logs with 0. The old ones ended with
/// "no session has id" and a failure.
#[tokio::test]
async fn a_session_not_back_within_the_attach_wait_ends_the_verbs_as_deleted() {
    let cluster = TestCluster::start_with(2, &[NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id":"away","argv":["/bin/sh"]})).await;
    listed(b, "away", secs(15)).await.expect("listed on b");
    let spawn = |args: &[&str]| {
        let mut cmd = common::cli::command(&b.url(""), args);
        cmd.stdin(std::process::Stdio::null())
            .stdout(std::process::Stdio::piped())
            .stderr(std::process::Stdio::piped());
        cmd.spawn().expect("termstream")
    };
    let mut attach = spawn(&["attach", "away"]);
    let mut logs = spawn(&["logs", "--follow", "away"]);
    let gauge = r#"termstream_attachments{endpoint="ws"}"#;
    let attached = wait_until(secs(10), || async { metric(b, gauge).await == Some(2.0) }).await;
    assert!(attached, "the verbs did not attach on b");
    let stopped = owner_away_with_redis_emptied(&cluster).await;
    let attach_status = tokio::time::timeout(secs(20), attach.wait()).await;
    let logs_status = tokio::time::timeout(secs(20), logs.wait()).await;
    drop(stopped);
    let (attach_text, logs_text) = (printed(&mut attach).await, printed(&mut logs).await);
    let attach_status = attach_status.expect("attach ends within 20 s").unwrap();
    let logs_status = logs_status.expect("logs --follow ends within 20 s").unwrap();
    assert!(attach_text.contains("[session away was deleted]"), "{attach_text:?}");
    assert_eq!(attach_status.code(), Some(66), "{attach_text:?}");
    assert_eq!(logs_status.code(), Some(0), "{logs_text:?}");
}

/// What a child that ended printed, stdout then stderr.
async fn printed(child: &mut tokio::process::Child) -> String {
    let (mut text, mut err) = (String::new(), String::new());
    let _ = child.stdout.take().expect("stdout").read_to_string(&mut text).await;
    let _ = child.stderr.take().expect("stderr").read_to_string(&mut err).await;
    format!("{text}{err}")
}

/// Runs the CLI verb `args` through the second node of a cluster on the
/// session `create` makes on the first (a shell: `sh` reads commands from
/// its input): prints a line, has the second node let go of the session
/// and take it up again, prints another line, and ends the shell. The verb
/// must exit 0 having printed each line once; returns what it printed.
/// `typed`: written to the verb's stdin while the second node has let go
/// of the session (after its attachment there ended), and awaited in the
/// output before the second line.
async fn follows_across_a_release(args: &[&str], create: Value, typed: Option<&str>) -> String {
    let cluster = TestCluster::start_with(2, &[("TERMSTREAM_ATTACH_WAIT_MS", "20000"), NOT_LOST]).await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let id = create["id"].as_str().expect("an id").to_owned();
    a.create(create).await;
    listed(b, &id, secs(15)).await.expect("listed on b");
    let mut cmd = common::cli::command(&b.url(""), args);
    let stdin = if typed.is_some() {
        std::process::Stdio::piped()
    } else {
        std::process::Stdio::null()
    };
    cmd.stdin(stdin)
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("termstream");
    let printed = Arc::new(Mutex::new(Vec::new()));
    let mut stdout = child.stdout.take().expect("stdout");
    let sink = printed.clone();
    tokio::spawn(async move {
        let mut buf = [0u8; 4096];
        while let Ok(n) = stdout.read(&mut buf).await {
            if n == 0 {
                break;
            }
            sink.lock().unwrap().extend_from_slice(&buf[..n]);
        }
    });
    // Typed once the verb's socket is attached on b: what it prints then
    // comes through the attachment that is let go.
    let gauge = r#"termstream_attachments{endpoint="ws"}"#;
    let attached = wait_until(secs(10), || async { metric(b, gauge).await == Some(1.0) }).await;
    assert!(attached, "the verb did not attach on b");
    a.input(&id, "echo before-$((6*7))\n").await;
    assert!(shows(&printed, "before-42").await, "no output before the release");
    let stopped = owner_away_with_redis_emptied(&cluster).await;
    // Let go on b: the id is gone there (an attach waits for it again).
    let path = format!("/api/sessions/{id}");
    let gone = wait_until(secs(10), || async { b.get(&path).await.0 == 404 }).await;
    let still = b.get(&path).await;
    // Kept open until the verb ends.
    let mut keys = child.stdin.take();
    if let (Some(typed), Some(keys)) = (typed, keys.as_mut()) {
        // The verb's attachment on b ended (its `session.detached` sent).
        let ended = wait_until(secs(10), || async { metric(b, gauge).await == Some(0.0) }).await;
        assert!(ended, "the verb's attachment on b did not end");
        keys.write_all(typed.as_bytes()).await.expect("typed");
        keys.flush().await.expect("typed");
    }
    drop(stopped);
    assert!(gone, "b did not let go of the session: {still:?}");
    status_is(b, &id, "running", secs(15)).await.expect("listed again on b");
    if typed.is_some() {
        let text = || String::from_utf8_lossy(&printed.lock().unwrap()).into_owned();
        assert!(
            shows(&printed, "typed-42").await,
            "the keys typed meanwhile did not reach the session: {:?}",
            text()
        );
    }
    a.input(&id, "echo after-$((6*7))\n").await;
    let after = shows(&printed, "after-42").await;
    a.input(&id, "exit\n").await;
    let status = common::exit_within_10s(&mut child, "the verb ends with the shell").await;
    drop(keys);
    let mut stderr = String::new();
    let _ = child.stderr.take().expect("stderr").read_to_string(&mut stderr).await;
    let text = String::from_utf8_lossy(&printed.lock().unwrap()).into_owned();
    assert!(after, "no output after the release: {text:?} {stderr}");
    assert_eq!(
        (text.matches("before-42").count(), text.matches("after-42").count()),
        (1, 1),
        "each printed once: {text:?}"
    );
    assert_eq!(status.code(), Some(0), "{text:?} {stderr}");
    text
}

/// Waits (15 s at most) until `printed` holds `word`.
async fn shows(printed: &Mutex<Vec<u8>>, word: &str) -> bool {
    wait_until(secs(15), || async {
        String::from_utf8_lossy(&printed.lock().unwrap()).contains(word)
    })
    .await
}

/// Sends input `x` with `seq` to session `id` and waits for its refusal
/// with `code`, which names it: `"request":"terminal.input"`, the id and
/// the seq.
async fn input_refused(ws: &mut WsClient, id: &str, seq: u64, code: &str) {
    ws.send(json!({"type":"terminal.input","sessionId":id,"data":"x","seq":seq}))
        .await;
    let refused = ws.until_type("error", secs(10)).await;
    assert_eq!(
        (
            &refused["code"],
            &refused["sessionId"],
            &refused["request"],
            &refused["seq"]
        ),
        (&json!(code), &json!(id), &json!("terminal.input"), &json!(seq)),
        "{refused}"
    );
}
