//! The `termstream-client` library's REST side and its attachment cap
//! against a real server: an attach refused for the socket's attachment
//! cap is not asked again after a reconnect; a REST call to a stopped
//! server fails after its read timeout, while the calls that wait for a
//! program to end (terminate, delete, the older API's terminate) outlast
//! a short read timeout for as long as the server's terminate grace.

mod common;

use std::time::Instant;

use common::cli::GateProxy;
use common::client::{cat, quick_retries, until};
use common::{TestServer, secs};
use termstream_client::{Client, Connection, Endpoint, Event, Resume};
use termstream_proto::SessionId;

/// An attach refused for the socket's attachment cap (`rate_limited`,
/// marked `request: "session.attach"`) is forgotten as a refused attach of
/// a missing session is: a reconnect does not ask for it again (where it
/// was refused again, or took the slot of the session really attached).
#[tokio::test]
async fn an_attach_refused_for_the_cap_is_not_asked_again_after_a_reconnect() {
    let mut proxy = GateProxy::bind().await;
    let server = TestServer::start_with(
        &["--allowed-host", &proxy.addr],
        &[("TERMSTREAM_MAX_ATTACHMENTS_PER_SOCKET", "1")],
    )
    .await;
    proxy.start(server.addr());
    let direct = Client::new(Endpoint::new(&server.url(""), None, &[]).unwrap()).unwrap();
    let [one, two, marker] = ["one", "two", "marker"].map(|i| SessionId::new(i).unwrap());
    for id in [&one, &two, &marker] {
        direct.create_session(&cat(id)).await.unwrap();
    }
    let client = Client::new(Endpoint::new(&format!("http://{}", proxy.addr), None, &[]).unwrap()).unwrap();
    let (conn, mut events) = Connection::open(client, quick_retries());
    conn.attach(one.clone(), None, Resume::Exact).await.unwrap();
    until(&mut events, secs(10), |e| {
        matches!(e, Event::Attached { session_id, .. } if *session_id == one).then_some(())
    })
    .await;
    conn.attach(two.clone(), None, Resume::Exact).await.unwrap();
    let (code, request) = until(&mut events, secs(10), |e| match e {
        Event::ServerError {
            code,
            session_id,
            request,
            ..
        } if session_id.as_ref() == Some(&two) => Some((*code, request.clone())),
        _ => None,
    })
    .await;
    assert_eq!(code, termstream_proto::ErrorCode::RateLimited);
    assert_eq!(request.as_deref(), Some(termstream_proto::ws::ATTACH_REQUEST));
    proxy.down();
    until(&mut events, secs(10), |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    proxy.up();
    // Attaches asked again on the reconnect go out before the detach and
    // the marker's attach, and the server answers in order: up to the
    // marker's, nothing of two.
    let nothing_of_two = |e: &Event| match e {
        Event::Attached { session_id, .. }
        | Event::ServerError {
            session_id: Some(session_id),
            ..
        } if *session_id == two => {
            panic!("{two} was asked again after its refusal: {e:?}")
        }
        Event::Failed { error, .. } => panic!("the connection gave up: {error}"),
        _ => None::<()>,
    };
    until(&mut events, secs(10), |e| {
        nothing_of_two(e);
        matches!(e, Event::Attached { session_id, .. } if *session_id == one).then_some(())
    })
    .await;
    conn.detach(one.clone()).await.unwrap();
    conn.attach(marker.clone(), None, Resume::Exact).await.unwrap();
    until(&mut events, secs(10), |e| {
        nothing_of_two(e);
        matches!(e, Event::Attached { session_id, .. } if *session_id == marker).then_some(())
    })
    .await;
    conn.close().await;
}

#[tokio::test]
async fn a_rest_call_to_a_server_that_hangs_fails_after_the_read_timeout() {
    // The kernel takes the connection and the request; nothing answers.
    // A call used to wait for ever (only its connect had a timeout).
    let server = TestServer::start().await;
    let stopped = server.pause();
    let endpoint = Endpoint::new(&server.url(""), None, &[]).unwrap();
    let client = Client::with_read_timeout(endpoint.clone(), secs(1)).unwrap();
    let started = Instant::now();
    let answer = tokio::time::timeout(secs(20), client.list_sessions(None, None)).await;
    drop(stopped);
    let err = answer
        .expect("the call fails on its own")
        .expect_err("a hung server answers nothing");
    assert!(matches!(err, termstream_client::Error::Unreachable { .. }), "{err}");
    assert!(
        started.elapsed() >= secs(1),
        "not before the read timeout: {:?}",
        started.elapsed()
    );
    // The server, running again, answers a new call (with the usual read
    // timeout: a resumed server on a loaded machine may take over 1 s).
    let client = Client::new(endpoint).unwrap();
    client.list_sessions(None, None).await.expect("an answer once it runs");
}

/// A program that ignores SIGTERM and SIGHUP ends only at the grace
/// period's SIGKILL (3 s here): terminate, delete and the older API's
/// terminate answer then, and a client whose read timeout (1 s) is shorter
/// still gets their answers. They failed as unreachable after 1 s.
#[tokio::test]
async fn the_calls_that_end_a_program_outlast_a_short_read_timeout() {
    let server = TestServer::start_with(&["--terminate-grace-ms", "3000"], &[]).await;
    let ids = ["by-terminate", "by-delete", "by-compat"];
    for id in ids {
        server
            .create(serde_json::json!({"id":id,"kind":"command",
                "argv":["sh","-c","trap '' TERM HUP; echo ready; exec sleep 1000"]}))
            .await;
        server.read_output_until(id, "ready", secs(10)).await;
    }
    let endpoint = Endpoint::new(&server.url(""), None, &[]).unwrap();
    let client = Client::with_read_timeout(endpoint, secs(1)).unwrap();
    let [terminated, deleted, compat] = ids.map(|i| SessionId::new(i).unwrap());
    let started = Instant::now();
    let (terminated, deleted, compat) = tokio::join!(
        client.terminate(&terminated),
        client.delete(&deleted),
        client.compat_terminate(&compat),
    );
    let terminated = terminated.expect("terminate answers");
    assert!(!terminated.status.is_running(), "{terminated:?}");
    deleted.expect("delete answers");
    compat.expect("the older terminate answers");
    assert!(
        started.elapsed() >= secs(3),
        "the programs ended at the grace's SIGKILL: {:?}",
        started.elapsed()
    );
}
