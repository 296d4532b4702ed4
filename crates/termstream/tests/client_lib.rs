//! The `termstream-client` library against a real server: a socket opened
//! with a ticket (and why one with a bad credential gives up), input that
//! survives cut connections (resent with its seq, applied once), an attach
//! kept through the refusal of input naming its id and ended by its own
//! marked refusal, https/wss with a CA file, and a close heard while the
//! task cannot take input or hand over events (still sending the input
//! queued before it) or while a stopped server does not answer. A detached
//! event says why. (The attachment cap and the REST read timeouts:
//! `client_lib_rest.rs`.)

mod common;

use std::time::{Duration, Instant};

use common::cli::{CuttingProxy, GateProxy};
use common::client::{cat, quick_retries, until};
use common::{TestServer, secs};
use termstream_client::{Client, ConnectFailure, ConnectOptions, Connection, Endpoint, Event, Resume, SocketAuth};
use termstream_proto::{ErrorCode, SessionId, Stream};

/// Collects a session's output from `events` until `done` says it is all.
async fn collect(
    events: &mut termstream_client::Events,
    id: &SessionId,
    limit: Duration,
    done: impl Fn(&[u8]) -> bool,
) -> Vec<u8> {
    let deadline = Instant::now() + limit;
    let mut out = Vec::new();
    while !done(&out) {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(Event::Output { session_id, data, .. })) if &session_id == id => out.extend_from_slice(&data),
            Ok(Some(Event::Failed { error, .. })) => panic!("the connection gave up: {error}"),
            Ok(Some(_)) => {}
            _ => panic!("output incomplete after {limit:?}: {:?}", String::from_utf8_lossy(&out)),
        }
    }
    out
}

#[tokio::test]
async fn a_ticket_opens_the_socket_and_a_bad_token_fails_for_good() {
    let server = TestServer::start_with(&[], &[("TERMSTREAM_ADMIN_TOKEN", "tok-1")]).await;
    let client = Client::new(Endpoint::new(&server.url(""), Some("tok-1".into()), &[]).unwrap()).unwrap();
    let id = SessionId::new("t1").unwrap();
    let req = cat(&id);
    client.create_session(&req).await.unwrap();
    let options = ConnectOptions {
        auth: SocketAuth::Ticket,
        ..ConnectOptions::default()
    };
    let (conn, mut events) = Connection::open(client.clone(), options);
    conn.attach(id.clone(), None, Resume::Exact).await.unwrap();
    conn.input(id.clone(), "via-ticket\n".into()).await.unwrap();
    let out = collect(&mut events, &id, secs(10), |o| o.ends_with(b"via-ticket\n")).await;
    assert_eq!(out, b"via-ticket\n");
    conn.close().await;

    let bad = Client::new(Endpoint::new(&server.url(""), Some("wrong".into()), &[]).unwrap()).unwrap();
    let err = bad.list_sessions(None, None).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Unauthorized), "{err}");
    // Why the connection gave up is typed, and reads as it always did: the
    // upgrade refused, or (with tickets) the ticket.
    let failure = |auth| {
        let bad = bad.clone();
        async move {
            let options = ConnectOptions {
                auth,
                ..ConnectOptions::default()
            };
            let (_conn, mut events) = Connection::open(bad, options);
            tokio::time::timeout(secs(10), async {
                loop {
                    match events.recv().await {
                        Some(Event::Failed { error }) => return error,
                        Some(_) => continue,
                        None => panic!("the connection ended without saying why"),
                    }
                }
            })
            .await
            .expect("a refused credential is not retried forever")
        }
    };
    let refused = failure(SocketAuth::Header).await;
    assert!(
        matches!(
            &refused,
            ConnectFailure::Refused {
                status: 401,
                code: Some(ErrorCode::Unauthorized),
                ..
            }
        ),
        "{refused:?}"
    );
    assert_eq!(refused.code(), Some(ErrorCode::Unauthorized));
    assert!(
        refused.to_string().starts_with("the server refused the socket (401): "),
        "{refused}"
    );
    let ticket = failure(SocketAuth::Ticket).await;
    assert!(
        matches!(
            &ticket,
            ConnectFailure::TicketRefused {
                status: 401,
                code: ErrorCode::Unauthorized,
                ..
            }
        ),
        "{ticket:?}"
    );
    let asked = bad.ws_ticket().await.unwrap_err();
    assert_eq!(
        ticket.to_string(),
        asked.to_string(),
        "the ticket's refusal reads as its REST error"
    );
}

#[tokio::test]
async fn input_across_cut_connections_arrives_once_in_order() {
    let mut proxy = CuttingProxy::bind().await;
    let server = TestServer::start_with(&["--allowed-host", &proxy.addr], &[]).await;
    // Every connection is cut after 2 KiB towards the client, 10 times.
    proxy.start(server.addr(), 2048, 10);
    let client = Client::new(Endpoint::new(&format!("http://{}", proxy.addr), None, &[]).unwrap()).unwrap();
    let id = SessionId::new("echo").unwrap();
    let req = cat(&id);
    let info = client.create_session(&req).await.unwrap();
    let options = quick_retries();
    let (conn, mut events) = Connection::open(client, options);
    let since = termstream_proto::ws::LogPosition {
        epoch: info.epoch,
        offset: 0,
    };
    conn.attach(id.clone(), Some(since), Resume::Exact).await.unwrap();
    let lines: Vec<String> = (0..800).map(|i| format!("line {i:05} of the input\n")).collect();
    let expected: String = lines.concat();
    let sender = {
        let (conn, id) = (conn.clone(), id.clone());
        tokio::spawn(async move {
            for l in lines {
                conn.input(id.clone(), l).await.unwrap();
            }
        })
    };
    let out = collect(&mut events, &id, secs(60), |o| o.len() >= expected.len()).await;
    sender.await.unwrap();
    assert!(
        out == expected.as_bytes(),
        "{} bytes instead of {}; first difference at {:?}",
        out.len(),
        expected.len(),
        out.iter().zip(expected.as_bytes()).position(|(a, b)| a != b)
    );
    assert!(
        proxy.cut.load(std::sync::atomic::Ordering::SeqCst) == 10,
        "the proxy cut the socket"
    );
    conn.close().await;
}

/// The refusal of input naming a session whose attach waits for it is not
/// the attach's refusal (the server marks that one `request:
/// "session.attach"`): the attach is still asked after a reconnect.
#[tokio::test]
async fn an_attach_waiting_for_its_session_survives_the_refusal_of_input_and_a_reconnect() {
    let mut proxy = GateProxy::bind().await;
    // A wait far longer than the test: the attach is never refused.
    let server = TestServer::start_with(
        &["--allowed-host", &proxy.addr],
        &[("TERMSTREAM_ATTACH_WAIT_MS", "120000")],
    )
    .await;
    proxy.start(server.addr());
    let client = Client::new(Endpoint::new(&format!("http://{}", proxy.addr), None, &[]).unwrap()).unwrap();
    let options = quick_retries();
    let (conn, mut events) = Connection::open(client, options);
    let id = SessionId::new("late").unwrap();
    conn.attach(id.clone(), None, Resume::Exact).await.unwrap();
    conn.input(id.clone(), "early\n".into()).await.unwrap();
    let refused = until(&mut events, secs(10), |e| match e {
        Event::ServerError { code, session_id, .. } if session_id.as_ref() == Some(&id) => Some(*code),
        _ => None,
    })
    .await;
    assert_eq!(refused, termstream_proto::ErrorCode::SessionNotFound);
    // The socket is cut; the session is created while the client is away.
    proxy.down();
    until(&mut events, secs(10), |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    let direct = Client::new(Endpoint::new(&server.url(""), None, &[]).unwrap()).unwrap();
    let req = cat(&id);
    direct.create_session(&req).await.unwrap();
    proxy.up();
    let attached = until(&mut events, secs(10), |e| match e {
        Event::Attached { session_id, .. } => Some(session_id.clone()),
        Event::Failed { error, .. } => panic!("the connection gave up: {error}"),
        _ => None,
    })
    .await;
    assert_eq!(attached, id, "the reconnect attached the session again");
    conn.close().await;
}

/// `input` returns the input's seq, and the server's refusal of that
/// input comes as an event naming it (`refused_input`): the user knows
/// exactly which input was not applied. Inputs taken are named by none.
#[tokio::test]
async fn the_refusal_of_an_input_names_the_seq_input_returned() {
    let server = TestServer::start().await;
    let kept = SessionId::new("kept").unwrap();
    let client = Client::new(Endpoint::new(&server.url(""), None, &[]).unwrap()).unwrap();
    client.create_session(&cat(&kept)).await.unwrap();
    let (conn, mut events) = Connection::open(client, ConnectOptions::default());
    let ghost = SessionId::new("ghost").unwrap();
    let first = conn.input(kept.clone(), "a\n".into()).await.unwrap();
    let refused = conn.input(ghost.clone(), "b\n".into()).await.unwrap();
    let last = conn.input(kept.clone(), "c\n".into()).await.unwrap();
    assert!(first < refused && refused < last, "{first} {refused} {last}");
    let (request, seq) = until(&mut events, secs(10), |e| match e {
        Event::ServerError {
            session_id,
            request,
            refused_input,
            ..
        } if session_id.as_ref() == Some(&ghost) => Some((request.clone(), *refused_input)),
        Event::ServerError { .. } => panic!("{e:?}"),
        _ => None,
    })
    .await;
    assert_eq!(request.as_deref(), Some(termstream_proto::ws::INPUT_REQUEST));
    assert_eq!(seq, Some(refused));
    conn.close().await;
}

/// The refusal the server marks as the attach's (`request:
/// "session.attach"`, after its attach wait) ends the attach: the event
/// carries the mark, and a reconnect does not ask for the session again,
/// even once a session of that id exists.
#[tokio::test]
async fn a_marked_refusal_of_an_attach_ends_it_and_the_event_says_which_request() {
    let mut proxy = GateProxy::bind().await;
    let server = TestServer::start_with(
        &["--allowed-host", &proxy.addr],
        &[("TERMSTREAM_ATTACH_WAIT_MS", "200")],
    )
    .await;
    proxy.start(server.addr());
    let direct = Client::new(Endpoint::new(&server.url(""), None, &[]).unwrap()).unwrap();
    let marker = SessionId::new("marker").unwrap();
    direct.create_session(&cat(&marker)).await.unwrap();
    let client = Client::new(Endpoint::new(&format!("http://{}", proxy.addr), None, &[]).unwrap()).unwrap();
    let options = quick_retries();
    let (conn, mut events) = Connection::open(client, options);
    let id = SessionId::new("ghost").unwrap();
    conn.attach(id.clone(), None, Resume::Exact).await.unwrap();
    let (code, request) = until(&mut events, secs(10), |e| match e {
        Event::ServerError {
            code,
            session_id,
            request,
            ..
        } if session_id.as_ref() == Some(&id) => Some((*code, request.clone())),
        _ => None,
    })
    .await;
    assert_eq!(code, termstream_proto::ErrorCode::SessionNotFound);
    assert_eq!(request.as_deref(), Some(termstream_proto::ws::ATTACH_REQUEST));
    // The socket is cut; a session of that id appears while the client is
    // away, so an attach asked again would now succeed at once.
    proxy.down();
    until(&mut events, secs(10), |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    direct.create_session(&cat(&id)).await.unwrap();
    proxy.up();
    until(&mut events, secs(10), |e| match e {
        Event::Connected { reconnect: true, .. } => Some(()),
        Event::Failed { error, .. } => panic!("the connection gave up: {error}"),
        _ => None,
    })
    .await;
    // Attaches asked again on the reconnect go out before this one, and
    // the server answers in order: up to the marker's, nothing of ghost.
    conn.attach(marker.clone(), None, Resume::Exact).await.unwrap();
    until(&mut events, secs(10), |e| match e {
        Event::Attached { session_id, .. } if *session_id == id => panic!("{id} was attached again after its refusal"),
        Event::Attached { session_id, .. } if *session_id == marker => Some(()),
        _ => None,
    })
    .await;
    conn.close().await;
}

/// `Event::Detached` says why: `detach` for the client's own detach,
/// `deleted` for a session deleted while attached. (`released`, a cluster
/// node letting go: `tests/attach_released.rs`, through the CLI.)
#[tokio::test]
async fn a_detached_event_says_why() {
    use termstream_client::proto::ws::DetachReason;
    let server = TestServer::start().await;
    let client = Client::new(Endpoint::new(&server.url(""), None, &[]).unwrap()).unwrap();
    let (conn, mut events) = Connection::open(client.clone(), ConnectOptions::default());
    let ids = [SessionId::new("left").unwrap(), SessionId::new("gone").unwrap()];
    for id in &ids {
        client.create_session(&cat(id)).await.unwrap();
        conn.attach(id.clone(), None, Resume::Exact).await.unwrap();
        until(&mut events, secs(10), |e| {
            matches!(e, Event::Attached { session_id, .. } if session_id == id).then_some(())
        })
        .await;
    }
    let detached = |id: &SessionId| {
        let id = id.clone();
        move |e: &Event| match e {
            Event::Detached { session_id, reason } if *session_id == id => Some(*reason),
            _ => None,
        }
    };
    conn.detach(ids[0].clone()).await.unwrap();
    let reason = until(&mut events, secs(10), detached(&ids[0])).await;
    assert_eq!(reason, Some(DetachReason::Detach));
    let (status, body) = server.request("DELETE", "/api/sessions/gone", None).await;
    assert!(status.is_success(), "{status} {body}");
    let reason = until(&mut events, secs(10), detached(&ids[1])).await;
    assert_eq!(reason, Some(DetachReason::Deleted));
    conn.close().await;
}

#[tokio::test]
async fn https_and_wss_work_with_a_ca_file() {
    let server = TestServer::start_tls(&[], &[]).await;
    let pem = server.cert().unwrap().cert_pem.as_bytes().to_vec();
    let client = Client::new(Endpoint::new(&server.url(""), None, &[pem]).unwrap()).unwrap();
    let id = SessionId::new("tls1").unwrap();
    let req = termstream_proto::CreateSession {
        id: Some(id.clone()),
        kind: Some(termstream_proto::SessionKind::Command),
        command: Some("echo secure; echo err >&2".into()),
        ..Default::default()
    };
    let info = client.create_session(&req).await.unwrap();
    let (conn, mut events) = Connection::open(client.clone(), ConnectOptions::default());
    let since = termstream_proto::ws::LogPosition {
        epoch: info.epoch,
        offset: 0,
    };
    conn.attach(id.clone(), Some(since), Resume::Exact).await.unwrap();
    let mut streams = Vec::new();
    let deadline = Instant::now() + secs(10);
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await.expect("events in time") {
            Some(Event::Output { stream, data, .. }) => streams.push((stream, data)),
            Some(Event::Exit { exit_code, .. }) => {
                assert_eq!(exit_code, Some(0));
                break;
            }
            Some(Event::Failed { error, .. }) => panic!("{error}"),
            Some(_) => {}
            None => panic!("closed"),
        }
    }
    streams.sort_by_key(|(s, _)| *s == Stream::Stderr);
    assert_eq!(streams[0], (Stream::Stdout, "secure\n".into()));
    assert_eq!(streams[1], (Stream::Stderr, "err\n".into()));
    // Without the CA file the certificate is refused.
    let untrusting = Client::new(Endpoint::new(&server.url(""), None, &[]).unwrap()).unwrap();
    assert!(untrusting.list_sessions(None, None).await.unwrap_err().is_transient());
    conn.close().await;
}

#[tokio::test]
async fn close_returns_while_input_waits_for_the_server_or_events_go_unread() {
    // Input past what the task holds unacknowledged, the server away: the
    // task stops taking input, but a close is still heard.
    let mut server = TestServer::start().await;
    let info = server
        .create(serde_json::json!({"id":"held","kind":"command","argv":["cat"]}))
        .await;
    let client = Client::new(Endpoint::new(&server.url(""), None, &[]).unwrap()).unwrap();
    let id = SessionId::new("held").unwrap();
    let (conn, mut events) = Connection::open(client, ConnectOptions::default());
    conn.attach(id.clone(), None, Resume::Exact).await.unwrap();
    until(&mut events, secs(10), |e| {
        matches!(e, Event::Attached { .. }).then_some(())
    })
    .await;
    server.crash();
    common::kill_marked(info["epoch"].as_str().unwrap());
    until(&mut events, secs(10), |e| {
        matches!(e, Event::Disconnected { .. }).then_some(())
    })
    .await;
    // 1.25 MiB: the task holds 1 MiB, the rest waits in the command queue.
    for _ in 0..20 {
        conn.input(id.clone(), "x".repeat(64 << 10)).await.unwrap();
    }
    tokio::time::timeout(secs(5), conn.close())
        .await
        .expect("close returns while input waits for the server");

    // Events not read, a full queue: the task waits to hand one over, and
    // still hears a close.
    let server = TestServer::start().await;
    let program = "for i in $(seq 300); do echo line$i; sleep 0.005; done; sleep 60";
    server
        .create(serde_json::json!({"id":"loud","kind":"command","argv":["sh","-c",program]}))
        .await;
    let client = Client::new(Endpoint::new(&server.url(""), None, &[]).unwrap()).unwrap();
    let options = ConnectOptions {
        event_queue: 4,
        ..ConnectOptions::default()
    };
    let (conn, _events) = Connection::open(client, options);
    let id = SessionId::new("loud").unwrap();
    conn.attach(id, None, Resume::Exact).await.unwrap();
    server.read_output_until("loud", "line300", secs(20)).await;
    tokio::time::timeout(secs(5), conn.close())
        .await
        .expect("close returns while the events go unread");
    server.terminate("loud").await;
}

#[tokio::test]
async fn close_sends_input_queued_before_it_while_events_go_unread() {
    // `run` keeps its events unread while it closes: input queued before
    // the close must still reach the server.
    let server = TestServer::start().await;
    let program = "for i in $(seq 300); do echo line$i; sleep 0.005; done; read l; echo got:$l; sleep 60";
    server
        .create(serde_json::json!({"id":"late","kind":"command","argv":["sh","-c",program]}))
        .await;
    let client = Client::new(Endpoint::new(&server.url(""), None, &[]).unwrap()).unwrap();
    let options = ConnectOptions {
        event_queue: 4,
        ..ConnectOptions::default()
    };
    let (conn, _events) = Connection::open(client, options);
    let id = SessionId::new("late").unwrap();
    conn.attach(id.clone(), None, Resume::Exact).await.unwrap();
    server.read_output_until("late", "line300", secs(20)).await;
    conn.input(id, "queued\n".into()).await.unwrap();
    tokio::time::timeout(secs(5), conn.close())
        .await
        .expect("close returns while the events go unread");
    server.read_output_until("late", "got:queued", secs(10)).await;
    server.terminate("late").await;
}

#[tokio::test]
async fn close_returns_while_a_stopped_server_does_not_answer_the_connect() {
    // A server that hangs (SIGSTOP): the kernel takes the TCP connection,
    // nothing answers the upgrade. attach closes before it gives the
    // terminal back, so a close must not wait for it.
    let server = TestServer::start().await;
    let stopped = server.pause();
    let client = Client::new(Endpoint::new(&server.url(""), None, &[]).unwrap()).unwrap();
    let (conn, _events) = Connection::open(client, ConnectOptions::default());
    let closed = tokio::time::timeout(secs(5), conn.close()).await;
    drop(stopped);
    closed.expect("close returns while the connect hangs");
}
