//! A socket's outbox against a real WebSocket on loopback: what its senders
//! get once its writer has ended.

use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use futures_util::StreamExt;
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::sync::mpsc;

use super::{Closed, Frame, Outbox};
use crate::config::Config;

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

/// The server's side of a WebSocket upgraded from a real client's
/// connection on loopback, and the client.
async fn socket_pair() -> (WebSocket, Client) {
    let (tx, mut rx) = mpsc::channel::<WebSocket>(1);
    let app = Router::new().route(
        "/",
        get(move |ws: WebSocketUpgrade| {
            let tx = tx.clone();
            async move {
                ws.on_upgrade(move |socket| async move {
                    let _ = tx.send(socket).await;
                })
            }
        }),
    );
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app))
            .with_upgrades()
            .await;
    });
    let (client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.unwrap();
    let server = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    (server, client)
}

/// The race this closes: a sender took its budget and its room just before
/// the writer ended, and queued its frame after the writer's last look at
/// the queue but before the writer was gone. `flume` keeps that frame, and
/// the budget it holds, while any sender lives, so a sender already waiting
/// for budget would wait for it until stopped from outside (a reply by its
/// timeout, a forwarder by its connection's end). The test builds the state
/// that race leaves, in order on one thread: the socket's lock, held by the
/// test, stops the writer after its last drain, and the late frame (its
/// budget taken early, its room skipped) is queued there. Without closing
/// the budget when the writer ends, the last send never answers.
#[tokio::test]
async fn a_sender_waiting_for_budget_is_let_go_when_the_writer_ends() {
    let (socket, mut client) = socket_pair().await;
    let (sink, _stream) = socket.split();
    let cfg = Config {
        ws_outbound_budget: 4096,
        ..Config::default()
    };
    let (outbox, writer) = Outbox::open(sink, &cfg);
    let shared = outbox.shared.clone();

    // The late sender's budget (all of it), taken while the socket is open.
    let permit = shared
        .budget
        .clone()
        .try_acquire_many_owned(4096)
        .expect("an unused budget");

    // A close frame through the queue; the writer takes it and waits for
    // the socket, which the test holds.
    let held = shared.sink.lock().await;
    assert!(outbox.try_send(Message::Close(None)));
    let mut turns = 0;
    while shared.room.available_permits() != super::FRAMES_IN_FLIGHT {
        assert!(turns < 10_000, "the writer never took the close frame");
        turns += 1;
        tokio::task::yield_now().await;
    }
    // The lock is fair: the writer has the socket next, writes the close
    // frame, ends its loop, closes its queue's room and drains the queue,
    // and waits for the socket again to close it; the test has it then.
    drop(held);
    let held = shared.sink.lock().await;
    assert!(shared.room.is_closed(), "the writer has ended its loop");
    assert!(!outbox.tx.is_disconnected(), "the writer's queue is still there");

    // The late frame lands in the queue after the drain.
    outbox.enqueue(Frame {
        msg: Some(Message::Binary(vec![0; 4096].into())),
        permit: Some(permit),
        read_at: None,
    });
    drop(held);
    // Awaited itself, not through `finish`, whose own limit (as long as
    // `WAIT`) would abort a writer that never ended.
    tokio::time::timeout(Duration::from_secs(2), writer.0)
        .await
        .expect("the writer ends")
        .expect("the writer does not panic");
    let closed = tokio::time::timeout(WAIT, client.next())
        .await
        .expect("the close frame arrives");
    assert!(
        matches!(closed, Some(Ok(tokio_tungstenite::tungstenite::Message::Close(_)))),
        "{closed:?}"
    );

    // A sender that was past the closed check asks for budget.
    let sent = tokio::time::timeout(WAIT, outbox.queue_output(Message::Binary(vec![1; 16].into()), None)).await;
    assert!(
        matches!(sent, Ok(Err(Closed))),
        "the waiting sender must get Closed, got {sent:?}"
    );
}

/// A socket whose writer ended refuses every later send at once: output,
/// replies, and a send that reaches the queue's budget.
#[tokio::test]
async fn every_send_after_the_writer_ended_is_closed() {
    let (socket, client) = socket_pair().await;
    let (sink, _stream) = socket.split();
    let (outbox, writer) = Outbox::open(sink, &Config::default());
    // The peer goes away; a write fails, which marks the socket done.
    drop(client);
    let deadline = tokio::time::Instant::now() + WAIT;
    while outbox.send(Message::Binary(vec![0; 1024].into())).await.is_ok() {
        assert!(
            tokio::time::Instant::now() < deadline,
            "writing to a socket whose peer is gone must fail"
        );
        tokio::task::yield_now().await;
    }
    // A failed direct write only marks the socket done: a queued frame
    // wakes the writer, which finds it so and ends (unless a flush of its
    // own failed first and it ended then, and the queue is closed).
    let _ = outbox.try_send(Message::Binary(vec![0; 16].into()));
    tokio::time::timeout(Duration::from_secs(2), writer.0)
        .await
        .expect("the writer ends")
        .expect("the writer does not panic");
    assert!(outbox.is_closed());
    let out = tokio::time::timeout(WAIT, outbox.send_output(Message::Binary(vec![0; 16].into()), None)).await;
    assert!(matches!(out, Ok(Err(Closed))), "{out:?}");
    let reply = tokio::time::timeout(WAIT, outbox.reply(Message::Text("x".into()))).await;
    assert!(matches!(reply, Ok(Err(Closed))), "{reply:?}");
    let queued = tokio::time::timeout(WAIT, outbox.queue_output(Message::Binary(vec![0; 16].into()), None)).await;
    assert!(matches!(queued, Ok(Err(Closed))), "{queued:?}");
}
