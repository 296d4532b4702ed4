//! The audit trail and the log format: every audited act appears once as a
//! JSON line with the credential's name, the peer, the session and the
//! project, and no token ever appears in the log; a terminate answered with
//! an error is audited with its answer, and one of a session that had
//! already ended (or that another terminate was ending) as such; text logs
//! written to a file carry no colour codes; `RUST_LOG` turns on the routing
//! events.

mod common;

use common::TestServer;
use common::cluster::{HEARTBEAT_MS, LOST_MS, listed};
use common::redis::TestRedis;
use common::secured::{ConfigFile, admin_entry, call, project_entry};
use common::ws::WsClient;
use common::{secs, wait_until};
use serde_json::{Value, json};
use termstream::auth::token;

/// A server with an admin token named `ops-admin` and a read-only one on
/// `web` named `watcher`, logging JSON to a file; the two tokens.
async fn audited_server(rust_log: &str) -> (TestServer, String, String) {
    let (admin, reader) = (token::generate(), token::generate());
    let config = ConfigFile::new(&format!(
        "{}{}",
        admin_entry("ops-admin", &admin),
        project_entry("watcher", &reader, r#"{ web = "read" }"#)
    ));
    let server = TestServer::start_logged(
        &["--config", config.path(), "--log-format", "json"],
        &[("RUST_LOG", rust_log)],
    )
    .await;
    // The server has read its config file: the folder may go.
    drop(config);
    (server, admin, reader)
}

/// Waits until the log holds an event `name`, and returns the first.
async fn event(server: &TestServer, name: &str) -> Value {
    let found = wait_until(secs(10), || async { !server.log_events(name).is_empty() }).await;
    assert!(found, "no {name} event in the log:\n{}", server.log());
    server.log_events(name).remove(0)
}

#[tokio::test]
async fn the_audit_trail_names_credentials_and_never_tokens() {
    let (server, admin, reader) = audited_server("termstream=info,termstream::gateway=debug").await;
    let (status, info, _) = call(
        &server,
        "POST",
        "/api/sessions",
        Some(&admin),
        Some(json!({ "argv": ["cat"], "project": "web" })),
        &[],
    )
    .await;
    assert_eq!(status, 201, "{info}");
    let id = info["id"].as_str().unwrap().to_owned();

    // The reader watches over /ws and tries to type, there and over REST.
    let auth = format!("Bearer {reader}");
    let (mut ws, _) = WsClient::try_connect(&server, "/ws", &[("authorization", &auth)])
        .await
        .expect("the reader may connect");
    ws.until_type("connected", secs(10)).await;
    ws.attach(&id, "json").await;
    ws.until_type("session.attached", secs(10)).await;
    ws.send(json!({"type":"terminal.input","sessionId":id,"data":"x"}))
        .await;
    let refused = ws.until_type("error", secs(10)).await;
    assert_eq!(refused["code"], "read_only", "{refused}");
    let (status, _, _) = call(
        &server,
        "POST",
        &format!("/api/sessions/{id}/input"),
        Some(&reader),
        Some(json!({"data":"y"})),
        &[],
    )
    .await;
    assert_eq!(status, 403);
    ws.close().await;

    // A bad token, then the admin ends and deletes the session.
    let bad = token::generate();
    let (status, _, _) = call(&server, "GET", "/api/sessions", Some(&bad), None, &[]).await;
    assert_eq!(status, 401);
    let (status, _, _) = call(
        &server,
        "POST",
        &format!("/api/sessions/{id}/terminate"),
        Some(&admin),
        None,
        &[],
    )
    .await;
    assert_eq!(status, 200);
    let (status, _, _) = call(
        &server,
        "DELETE",
        &format!("/api/sessions/{id}"),
        Some(&admin),
        None,
        &[],
    )
    .await;
    assert!(status == 200 || status == 204, "{status}");

    let created = event(&server, "session.created").await;
    assert_eq!(created["credential"], "ops-admin");
    assert_eq!(created["peer"], "127.0.0.1");
    assert_eq!(created["session"], id.as_str());
    assert_eq!(created["project"], "web");
    assert_eq!(created["target"], "termstream::audit");
    assert_eq!(created["level"], "INFO");

    event(&server, "input.refused").await;
    let refusals = server.log_events("input.refused");
    assert_eq!(refusals.len(), 2, "one over /ws and one over REST: {refusals:?}");
    for r in &refusals {
        assert_eq!(r["credential"], "watcher");
        assert_eq!(r["session"], id.as_str());
        assert_eq!(r["project"], "web");
        assert_eq!(r["peer"], "127.0.0.1");
    }
    let connected = event(&server, "socket.connected").await;
    assert_eq!(
        (connected["credential"].as_str(), connected["endpoint"].as_str()),
        (Some("watcher"), Some("ws"))
    );
    let closed = event(&server, "socket.closed").await;
    assert_eq!(closed["credential"], "watcher");
    assert!(closed["duration_ms"].is_u64(), "{closed}");
    event(&server, "auth.failed").await;
    let failed = server.log_events("auth.failed");
    let bad_token = failed
        .iter()
        .find(|f| f["reason"] == "credential")
        .expect("the bad token's failure");
    assert_eq!(bad_token["peer"], "127.0.0.1");
    assert_eq!(bad_token["path"], "/api/sessions");
    // The reader's write over REST was refused by its scope.
    assert!(failed.iter().any(|f| f["reason"] == "scope"), "{failed:?}");
    let terminated = event(&server, "session.terminated").await;
    assert_eq!(
        (terminated["credential"].as_str(), terminated["session"].as_str()),
        (Some("ops-admin"), Some(id.as_str()))
    );
    assert_eq!(terminated["status"], 200, "{terminated}");
    let deleted = event(&server, "session.deleted").await;
    assert_eq!(
        (deleted["project"].as_str(), deleted["session"].as_str()),
        (Some("web"), Some(id.as_str()))
    );

    // Routing events at debug, asked for by RUST_LOG.
    let log = server.log();
    let routing: Vec<Value> = log
        .lines()
        .filter_map(|l| serde_json::from_str::<Value>(l).ok())
        .filter(|v| v["level"] == "DEBUG")
        .collect();
    assert!(
        routing
            .iter()
            .any(|v| v["message"] == "attach" && v["session"] == id.as_str()),
        "{log}"
    );
    assert!(
        routing
            .iter()
            .any(|v| v["message"] == "detach" && v["session"] == id.as_str()),
        "{log}"
    );

    for secret in [&admin, &reader, &bad] {
        assert!(!log.contains(secret.as_str()), "a token is in the log");
    }
    assert!(!log.contains('\u{1b}'), "colour codes in a log that is not a terminal");
}

#[tokio::test]
async fn text_logs_to_a_file_have_no_colour_codes() {
    let server = TestServer::start_logged(&[], &[("RUST_LOG", "termstream=info")]).await;
    assert!(
        wait_until(secs(10), || async { server.log().contains("termstream is serving") }).await,
        "{}",
        server.log()
    );
    let log = server.log();
    assert!(!log.contains('\u{1b}'), "{log:?}");
    assert!(log.contains(" INFO "), "{log}");
    // A filter that does not parse is reported, not fatal.
    let odd = TestServer::start_logged(&[], &[("RUST_LOG", "termstream=loud")]).await;
    assert!(
        wait_until(secs(10), || async { odd.log().contains("is not valid") }).await,
        "{}",
        odd.log()
    );
}

/// A delete whose id is percent-encoded in its path is audited like any
/// other, and checked against the credential's scope like any other: the
/// audit read the raw path, so an admin's `DELETE /api/sessions/%65nc`
/// deleted `enc` unaudited, a project's writer was answered 404, and a
/// refusal named no project.
#[tokio::test]
async fn an_encoded_id_is_audited_and_scoped_as_its_session() {
    let (server, admin, reader) = audited_server("termstream::audit=info").await;
    for id in ["enc", "enc2"] {
        let (status, info, _) = call(
            &server,
            "POST",
            "/api/sessions",
            Some(&admin),
            Some(json!({ "id": id, "kind": "command", "argv": ["sleep", "1000"], "project": "web" })),
            &[],
        )
        .await;
        assert_eq!(status, 201, "{info}");
    }
    // The read-only credential is refused as for `enc2` itself (403), not
    // answered that no such session exists.
    let (status, body, _) = call(&server, "DELETE", "/api/sessions/%65nc2", Some(&reader), None, &[]).await;
    assert_eq!(status, 403, "{body}");
    let refused = event(&server, "input.refused").await;
    assert_eq!(
        (refused["session"].as_str(), refused["project"].as_str()),
        (Some("enc2"), Some("web"))
    );
    let (status, body, _) = call(&server, "DELETE", "/api/sessions/%65nc", Some(&admin), None, &[]).await;
    assert_eq!(status, 204, "{body}");
    let deleted = event(&server, "session.deleted").await;
    assert_eq!(
        (deleted["session"].as_str(), deleted["credential"].as_str()),
        (Some("enc"), Some("ops-admin"))
    );
}

/// A terminate answered with an error is audited with its answer: through
/// a node that does not own the session, while the cluster's Redis is
/// down, both routes answer 503 `cluster_unavailable` (the request may
/// have reached the owner all the same), and one for a session no node
/// knows answers 404, as does a delete of it. Only a terminate or delete
/// that succeeded was audited: these left no record of who asked.
#[tokio::test]
async fn a_terminate_answered_with_an_error_is_audited_with_its_answer() {
    let mut redis = TestRedis::start().await;
    let url = redis.url();
    let (hb, lost) = (HEARTBEAT_MS.to_string(), LOST_MS.to_string());
    let env = [
        ("TERMSTREAM_CLUSTER_HEARTBEAT_MS", hb.as_str()),
        ("TERMSTREAM_CLUSTER_LOST_MS", lost.as_str()),
    ];
    let owner = TestServer::start_with(&["--cluster", &url], &env).await;
    let mut logged = env.to_vec();
    logged.push(("RUST_LOG", "termstream::audit=info"));
    let asker = TestServer::start_logged(&["--cluster", &url, "--log-format", "json"], &logged).await;
    owner
        .create(json!({"id":"held","kind":"command","argv":["sleep","1000"],"project":"web"}))
        .await;
    listed(&asker, "held", secs(20)).await.expect("listed on the asker");

    redis.stop();
    let unready = wait_until(secs(20), || async { asker.get("/readyz").await.0 == 503 }).await;
    assert!(unready, "the asker never saw Redis go");
    let paths = ["/api/sessions/held/terminate", "/terminal/held/terminate"];
    for path in paths {
        let (status, body) = asker.post(path, json!(null)).await;
        assert_eq!(
            (status.as_u16(), body["error"]["code"].as_str()),
            (503, Some("cluster_unavailable")),
            "{path}: {body}"
        );
    }
    let (status, body) = asker.post("/api/sessions/nobody/terminate", json!(null)).await;
    assert_eq!(status, 404, "{body}");
    let (status, body) = asker.request("DELETE", "/api/sessions/nobody", None).await;
    assert_eq!(status, 404, "{body}");

    let failed = || asker.log_events("session.terminate_failed");
    assert!(
        wait_until(secs(10), || async { failed().len() == 3 }).await,
        "three failed terminates audited: {:?}\n{}",
        failed(),
        asker.log()
    );
    for e in &failed()[..2] {
        assert_eq!(
            (
                e["session"].as_str(),
                e["project"].as_str(),
                e["status"].as_u64(),
                e["code"].as_str()
            ),
            (Some("held"), Some("web"), Some(503), Some("cluster_unavailable")),
            "{e}"
        );
        assert_eq!(
            (e["credential"].as_str(), e["peer"].as_str()),
            (Some("local"), Some("127.0.0.1")),
            "{e}"
        );
    }
    let unknown = &failed()[2];
    assert_eq!(
        (
            unknown["session"].as_str(),
            unknown["project"].as_str(),
            unknown["status"].as_u64(),
            unknown["code"].as_str()
        ),
        (Some("nobody"), Some(""), Some(404), Some("session_not_found")),
        "{unknown}"
    );
    let deletes = || asker.log_events("session.delete_failed");
    assert!(
        wait_until(secs(10), || async { deletes().len() == 1 }).await,
        "the failed delete audited: {:?}\n{}",
        deletes(),
        asker.log()
    );
    let delete = &deletes()[0];
    assert_eq!(
        (
            delete["session"].as_str(),
            delete["status"].as_u64(),
            delete["code"].as_str()
        ),
        (Some("nobody"), Some(404), Some("session_not_found")),
        "{delete}"
    );
    assert!(asker.log_events("session.terminated").is_empty(), "{}", asker.log());
    assert!(asker.log_events("session.deleted").is_empty(), "{}", asker.log());
    assert_eq!(
        owner.info("held").await["status"],
        "running",
        "the terminates did nothing"
    );
}

/// A terminate of a session that had already ended ends nothing, and its
/// record says so: `session.already_ended` with the answer's status and
/// how the session had ended (`ended_as`), not `session.terminated`, which
/// it was once audited as (an operator counting terminations counted it,
/// and read that the credential had ended a session it had not). A
/// terminate that did end a running session is still `session.terminated`.
#[tokio::test]
async fn terminating_an_ended_session_is_audited_as_already_ended() {
    let server = TestServer::start_logged(&["--log-format", "json"], &[("RUST_LOG", "termstream::audit=info")]).await;
    server
        .create(json!({"id":"done","kind":"command","argv":["true"],"project":"web"}))
        .await;
    server.wait_status("done", "exited", secs(10)).await;
    server
        .create(json!({"id":"twice","kind":"command","argv":["sleep","1000"],"project":"web"}))
        .await;
    for id in ["done", "twice", "twice"] {
        let (status, body) = server.post(&format!("/api/sessions/{id}/terminate"), json!(null)).await;
        assert_eq!(status, 200, "{id}: {body}");
    }
    let already = || server.log_events("session.already_ended");
    assert!(
        wait_until(secs(10), || async { already().len() == 2 }).await,
        "two terminates of ended sessions audited: {:?}\n{}",
        already(),
        server.log()
    );
    let seen: Vec<_> = already()
        .iter()
        .map(|e| {
            (
                e["session"].as_str().map(str::to_owned),
                e["project"].as_str().map(str::to_owned),
                e["status"].as_u64(),
                e["ended_as"].as_str().map(str::to_owned),
                e["credential"].as_str().map(str::to_owned),
            )
        })
        .collect();
    let want = |id: &str, ended_as: &str| {
        (
            Some(id.to_owned()),
            Some("web".to_owned()),
            Some(200),
            Some(ended_as.to_owned()),
            Some("local".to_owned()),
        )
    };
    assert_eq!(seen, [want("done", "exited"), want("twice", "terminated")]);
    let terminated = server.log_events("session.terminated");
    assert_eq!(
        terminated.len(),
        1,
        "only the terminate that ended a session: {terminated:?}"
    );
    assert_eq!(terminated[0]["session"], "twice", "{}", terminated[0]);
}

/// Of two terminates racing on one running session, one ended it; the
/// other found it ending, and is `session.already_ended` (`ended_as`
/// `terminated`). Both were once `session.terminated`: each saw the session
/// running before and terminated after. The program ignores SIGTERM (and
/// says it got it), so the session ends at the grace period's SIGKILL, and
/// the second terminate, sent once the first's signal came, is in flight
/// while the first is.
#[tokio::test]
async fn of_two_racing_terminates_one_ended_the_session() {
    let server = TestServer::start_logged(
        &["--log-format", "json", "--terminate-grace-ms", "3000"],
        &[("RUST_LOG", "termstream::audit=info")],
    )
    .await;
    let program = "trap 'echo got-term' TERM; trap '' HUP; echo ready; while :; do sleep 0.1; done";
    server
        .create(json!({"id":"raced","kind":"command","command":program,"project":"web"}))
        .await;
    server.read_output_until("raced", "ready", secs(10)).await;
    let terminate = || server.post("/api/sessions/raced/terminate", json!(null));
    let second = async {
        server.read_output_until("raced", "got-term", secs(10)).await;
        assert!(server.info("raced").await["status"] == "running", "still ending");
        terminate().await
    };
    let ((first_status, first), (second_status, second)) = tokio::join!(terminate(), second);
    assert_eq!(first_status, 200, "{first}");
    assert_eq!(second_status, 200, "{second}");
    assert_eq!(first["status"], "terminated", "{first}");
    let ended = || {
        (
            server.log_events("session.terminated"),
            server.log_events("session.already_ended"),
        )
    };
    assert!(
        wait_until(secs(10), || async {
            let (terminated, already) = ended();
            terminated.len() + already.len() >= 2
        })
        .await,
        "both terminates audited: {:?}\n{}",
        ended(),
        server.log()
    );
    let (terminated, already) = ended();
    assert_eq!(terminated.len(), 1, "one terminate ended the session: {terminated:?}");
    assert_eq!(already.len(), 1, "the other ended nothing: {already:?}");
    assert_eq!(terminated[0]["session"], "raced", "{}", terminated[0]);
    assert_eq!(already[0]["session"], "raced", "{}", already[0]);
    assert_eq!(already[0]["ended_as"], "terminated", "{}", already[0]);
    assert_eq!(already[0]["status"], 200, "{}", already[0]);
}
