//! A socket's outbox against a real WebSocket on loopback: what its senders
//! get once its writer has ended.

use std::pin::Pin;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use axum::Router;
use axum::extract::ws::{Message, WebSocket, WebSocketUpgrade};
use axum::routing::get;
use futures_util::{Sink as _, StreamExt};
use hyper_util::rt::TokioIo;
use hyper_util::service::TowerToHyperService;
use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::sync::mpsc;

use super::{Closed, Frame, Outbox};
use crate::config::Config;
use crate::gateway::forward::{Progress, hand_over};

type Client = tokio_tungstenite::WebSocketStream<tokio_tungstenite::MaybeTlsStream<tokio::net::TcpStream>>;

const WAIT: Duration = Duration::from_secs(5);

/// The server's side of a WebSocket upgraded from a real client's
/// connection on loopback, and the client.
async fn socket_pair() -> (WebSocket, Client) {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let mut rx = serve_one(listener);
    let (client, _) = tokio_tungstenite::connect_async(format!("ws://{addr}/")).await.unwrap();
    let server = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    (server, client)
}

/// Serves one connection of `listener`: the server's side of its
/// WebSocket, once upgraded, comes out of the channel.
fn serve_one(listener: tokio::net::TcpListener) -> mpsc::Receiver<WebSocket> {
    let (tx, rx) = mpsc::channel::<WebSocket>(1);
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
    tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.unwrap();
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), TowerToHyperService::new(app))
            .with_upgrades()
            .await;
    });
    rx
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

/// A queued send after the socket's close frame answers `Closed` at once,
/// as a direct send does, instead of queuing behind the close for a writer
/// that will not write it.
#[tokio::test]
async fn a_queued_send_after_the_close_is_closed() {
    let (server, _client) = socket_pair().await;
    let (sink, _stream) = server.split();
    let (outbox, _writer) = Outbox::open(sink, &Config::default());
    outbox.close(1000, "bye").await;
    let queued = tokio::time::timeout(WAIT, outbox.queue_output(Message::Binary(vec![0; 16].into()), None)).await;
    assert!(matches!(queued, Ok(Err(Closed))), "{queued:?}");
}

/// A client's connection that reads only up to a limit: past it, reads
/// wait until the test ends. `got` counts the bytes read; `reached` is
/// told when the limit is.
struct Gated {
    tcp: tokio::net::TcpStream,
    got: Arc<AtomicU64>,
    limit: Arc<AtomicU64>,
    reached: Arc<tokio::sync::Notify>,
}

impl AsyncRead for Gated {
    fn poll_read(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &mut ReadBuf<'_>) -> Poll<std::io::Result<()>> {
        let got = self.got.load(Ordering::Acquire);
        let room = self.limit.load(Ordering::Acquire).saturating_sub(got);
        if room == 0 {
            self.reached.notify_one();
            // Never woken: the client stops reading here.
            return Poll::Pending;
        }
        let take = room.min(buf.remaining() as u64) as usize;
        let mut bytes = vec![0; take];
        let mut part = ReadBuf::new(&mut bytes);
        ready!(Pin::new(&mut self.tcp).poll_read(cx, &mut part))?;
        let n = part.filled().len();
        buf.put_slice(part.filled());
        self.got.fetch_add(n as u64, Ordering::AcqRel);
        if got + n as u64 >= self.limit.load(Ordering::Acquire) {
            self.reached.notify_one();
        }
        Poll::Ready(Ok(()))
    }
}

impl AsyncWrite for Gated {
    fn poll_write(mut self: Pin<&mut Self>, cx: &mut Context<'_>, buf: &[u8]) -> Poll<std::io::Result<usize>> {
        Pin::new(&mut self.tcp).poll_write(cx, buf)
    }
    fn poll_flush(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_flush(cx)
    }
    fn poll_shutdown(mut self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<std::io::Result<()>> {
        Pin::new(&mut self.tcp).poll_shutdown(cx)
    }
}

/// Socket buffers this small make a frame of [`BIG`] more than the
/// connection holds while its client does not read.
const SMALL_BUFFERS: u32 = 64 * 1024;
const BIG: usize = 4 * 1024 * 1024;

/// A forwarder's send stopped while it waits has either returned (and
/// been accounted for) or handed nothing to the socket:
/// `/ws/terminal/all`'s next forwarder of a session resends what its last
/// one had not accounted for (`forward::Progress`), so a frame on its way
/// to the client with its send not returned would reach the client twice.
/// The test fills the socket (its client not reading) with the sink free
/// and nothing queued, so that a direct send would wait for the sink; lets
/// the client read what was there and the first bytes of the next frame,
/// the big one the send is for; and stops the send. Its frame reached the
/// client, so the send must have returned. A direct send (the path of
/// sockets with no `Progress`) waits there for the flush after handing
/// the frame over, and is stopped there; a forwarder with a `Progress`
/// queues its frame (`forward::hand_over`) and returns at once.
#[tokio::test]
async fn a_forwarders_send_stopped_while_it_waits_has_sent_its_frame_or_nothing() {
    // A listener whose connections have small buffers (Linux gives an
    // accepted socket its listener's).
    let socket = tokio::net::TcpSocket::new_v4().unwrap();
    socket.set_send_buffer_size(SMALL_BUFFERS).unwrap();
    socket.set_recv_buffer_size(SMALL_BUFFERS).unwrap();
    socket.bind("127.0.0.1:0".parse().unwrap()).unwrap();
    let listener = socket.listen(1).unwrap();
    let addr = listener.local_addr().unwrap();
    let mut rx = serve_one(listener);
    let client_socket = tokio::net::TcpSocket::new_v4().unwrap();
    client_socket.set_recv_buffer_size(SMALL_BUFFERS).unwrap();
    let tcp = client_socket.connect(addr).await.unwrap();
    let got = Arc::new(AtomicU64::new(0));
    let limit = Arc::new(AtomicU64::new(u64::MAX));
    let reached = Arc::new(tokio::sync::Notify::new());
    let gated = Gated {
        tcp,
        got: got.clone(),
        limit: limit.clone(),
        reached: reached.clone(),
    };
    let (mut client, _) = tokio_tungstenite::client_async(format!("ws://{addr}/"), gated)
        .await
        .unwrap();
    let server = tokio::time::timeout(WAIT, rx.recv()).await.unwrap().unwrap();
    let handshake = got.load(Ordering::Acquire);
    let (sink, _stream) = server.split();
    let (outbox, _writer) = Outbox::open(sink, &Config::default());

    // Fill the socket under its lock, the way a direct write does, until
    // the sink takes nothing more; then let go of it, nothing queued.
    let mut frames = 0u64;
    let mut wire = 0u64;
    {
        let mut sink = outbox.shared.sink.lock().await;
        let mut cx = Context::from_waker(std::task::Waker::noop());
        let mut sink = Pin::new(&mut *sink);
        while let Poll::Ready(ready) = sink.as_mut().poll_ready(&mut cx) {
            ready.unwrap();
            assert!(frames < 1000, "the socket never filled");
            sink.as_mut()
                .start_send(Message::Binary(vec![1; 64 * 1024].into()))
                .unwrap();
            frames += 1;
            // An unmasked binary frame of 64 KiB: a 10-byte header.
            wire += 64 * 1024 + 10;
            let _ = sink.as_mut().poll_flush(&mut cx);
        }
    }
    assert_eq!(outbox.shared.queued.load(Ordering::Acquire), 0);

    // The send of the big frame, marking when it returned (as a forwarder
    // accounts for what it sent).
    let returned = Arc::new(AtomicBool::new(false));
    let send = tokio::spawn({
        let outbox = outbox.clone();
        let returned = returned.clone();
        async move {
            let progress = Progress::new(None);
            let _ = hand_over(&outbox, Some(&progress), Message::Binary(vec![2; BIG].into()), None).await;
            returned.store(true, Ordering::Release);
        }
    });

    // The client reads what filled the socket and one byte more: the
    // first of the big frame, which the sink had then.
    limit.store(handshake + wire + 1, Ordering::Release);
    let read = tokio::spawn(async move {
        for _ in 0..frames {
            let msg = client.next().await.unwrap().unwrap();
            assert_eq!(msg.len(), 64 * 1024);
        }
        // Waits at the limit for good; dropped with the test.
        let _ = client.next().await;
    });
    tokio::time::timeout(WAIT, async {
        while got.load(Ordering::Acquire) < handshake + wire + 1 {
            reached.notified().await;
        }
    })
    .await
    .expect("the client gets the first byte of the big frame");

    send.abort();
    let _ = send.await;
    assert!(
        returned.load(Ordering::Acquire),
        "the big frame reached the client, yet its send was stopped before it returned: \
         a forwarder would not have counted it as sent"
    );
    read.abort();
}
