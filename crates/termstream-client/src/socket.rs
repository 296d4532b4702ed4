//! The `/ws` connection: one task owns the socket and reconnects it by
//! itself, re-attaching every session and resending unacknowledged input.
//!
//! [`Connection::open`] starts the task and returns a handle (commands in)
//! and an [`Events`] receiver (what the server said, plus the connection's
//! own state changes). Both channels are bounded: a consumer that stops
//! reading events stops the task reading the socket, and the server then
//! holds the rest in its log, so memory stays bounded on both sides.

mod actor;
pub(crate) mod tracked;

use std::sync::Arc;
use std::time::Duration;

use bytes::Bytes;
use termstream_proto::ws::{DetachReason, GapReason, LogPosition};
use termstream_proto::{Epoch, ErrorCode, SessionId, SessionStatus, Stream};
use tokio::sync::{mpsc, oneshot};

use crate::backoff::BackoffPolicy;
use crate::error::{Error, Result};
use crate::rest::Client;
pub use tracked::Resume;

/// How the socket presents the credential.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub enum SocketAuth {
    /// `Authorization: Bearer TOKEN` on the upgrade request.
    #[default]
    Header,
    /// A fresh single-use ticket (`POST /api/ws-ticket`) in `?token=` for
    /// every connect, so the token never appears in a URL.
    Ticket,
}

/// Settings of a connection.
#[derive(Debug, Clone)]
pub struct ConnectOptions {
    /// The delays between reconnect attempts.
    pub backoff: BackoffPolicy,
    /// How the socket presents the endpoint's token.
    pub auth: SocketAuth,
    /// How often the client pings; a socket that brought nothing for three
    /// intervals is taken for dead and reconnected.
    pub ping_interval: Duration,
    /// Events held for the consumer before the socket's reading pauses.
    pub event_queue: usize,
}

impl Default for ConnectOptions {
    fn default() -> Self {
        ConnectOptions {
            backoff: BackoffPolicy::default(),
            auth: SocketAuth::Header,
            ping_interval: Duration::from_secs(10),
            event_queue: 64,
        }
    }
}

/// What the connection reports to its user.
#[derive(Debug, Clone, PartialEq)]
pub enum Event {
    /// The socket is (again) connected; `reconnect` is false the first time.
    /// Every attached session is attached again by itself; a window size
    /// sent while the server was away was not heard, and is the user's to
    /// send again.
    Connected { client_id: String, reconnect: bool },
    /// The socket dropped (or could not connect); the next try is in
    /// `retry_in`. `attempt` counts the tries since it last worked, from 1.
    Disconnected {
        error: String,
        attempt: u32,
        retry_in: Duration,
    },
    /// `session.attached`: output from `offset` follows. `recovered` is
    /// there when the attach gave `since`: whether resuming was exact (when
    /// not, a [`Event::Gap`] says what was lost).
    Attached {
        session_id: SessionId,
        epoch: Epoch,
        offset: u64,
        cols: u16,
        rows: u16,
        status: SessionStatus,
        recovered: Option<bool>,
    },
    /// `terminal.restore`: escape sequences that rebuild the screen on a
    /// blank terminal; output from `offset` follows.
    Restore {
        session_id: SessionId,
        data: String,
        offset: u64,
        cols: u16,
        rows: u16,
    },
    /// Output not seen before, starting at log offset `offset`.
    Output {
        session_id: SessionId,
        stream: Stream,
        offset: u64,
        data: Bytes,
    },
    /// `session.gap`: output `[from, to)` will not come.
    Gap {
        session_id: SessionId,
        from: u64,
        to: u64,
        reason: GapReason,
    },
    /// `session.resized`.
    Resized {
        session_id: SessionId,
        cols: u16,
        rows: u16,
    },
    /// `session.exit`: the program ended and all its output was sent.
    /// `exit_code` when it exited, `signal` when a signal ended it; neither
    /// when its end is unknown (`status` [`SessionStatus::Lost`]: the
    /// server restarted while it ran).
    Exit {
        session_id: SessionId,
        status: SessionStatus,
        exit_code: Option<i32>,
        signal: Option<i32>,
    },
    /// `session.detached`: the subscription ended, and the client forgot
    /// it (a reconnect does not attach it again). `reason`:
    /// [`Detach`](DetachReason::Detach) answers this client's detach;
    /// [`Deleted`](DetachReason::Deleted) the session was deleted;
    /// [`Released`](DetachReason::Released) the server's node of a cluster
    /// let go of its copy of another node's session, which may still
    /// exist: attaching again (with `since`, to resume) follows it. `None`
    /// from a server before the field.
    Detached {
        session_id: SessionId,
        reason: Option<DetachReason>,
    },
    /// An `error` message; the connection carries on.
    ServerError {
        code: ErrorCode,
        message: String,
        session_id: Option<SessionId>,
        /// The request the error answers, when the server says:
        /// [`ATTACH_REQUEST`](termstream_proto::ws::ATTACH_REQUEST) on the
        /// refusal of an attach: `session_not_found`, its session did not
        /// appear in the server's attach wait; `rate_limited`, the socket
        /// holds as many attachments as the server allows. The client then
        /// forgets that attach, whatever the code (a reconnect does not ask
        /// for it again).
        /// [`INPUT_REQUEST`](termstream_proto::ws::INPUT_REQUEST) on the
        /// refusal of input, and
        /// [`RESIZE_REQUEST`](termstream_proto::ws::RESIZE_REQUEST) on the
        /// refusal of a resize, whatever the code. The same codes with no
        /// request answer a focus naming the id (and, from a server before
        /// these fields, input or a resize too).
        request: Option<String>,
        /// The seq of the input this error refuses (as
        /// [`Connection::input`] returned it): that input was not applied
        /// (with `busy`, but for the bytes the message says were taken:
        /// send only the rest), and is not sent again after a reconnect.
        /// `None` for other errors, and from a server before the field
        /// (which does not say which input it refused).
        refused_input: Option<u64>,
    },
    /// The connection gave up for good (e.g. the credential was refused);
    /// no event follows.
    Failed { error: ConnectFailure },
}

/// Why a connection gave up for good ([`Event::Failed`]): trying again
/// would not help. Its message is the one to show a user.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum ConnectFailure {
    /// The server refused the socket's upgrade with 401 or 403: the
    /// credential is missing, bad, or not enough. `code` and `message` are
    /// its error body's (`message` is `HTTP <status>` without one).
    #[error("the server refused the socket ({status}): {message}")]
    Refused {
        status: u16,
        code: Option<ErrorCode>,
        message: String,
    },
    /// The server refused the credential when asked for a ticket
    /// ([`SocketAuth::Ticket`]): its answer, as [`Error::Api`] reads.
    #[error("{message} ({status})")]
    TicketRefused {
        status: u16,
        code: ErrorCode,
        message: String,
    },
    /// No WebSocket request can be made of the socket's URL.
    #[error("bad socket URL {url}: {reason}")]
    BadUrl { url: String, reason: String },
    /// The token cannot be sent in an HTTP header.
    #[error("the token is not a valid header value")]
    BadToken,
}

impl ConnectFailure {
    /// The server's error code, when the server answered with one.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ConnectFailure::Refused { code, .. } => *code,
            ConnectFailure::TicketRefused { code, .. } => Some(*code),
            ConnectFailure::BadUrl { .. } | ConnectFailure::BadToken => None,
        }
    }
}

/// A command from the handle to the task.
#[derive(Debug)]
enum Command {
    Attach {
        session_id: SessionId,
        since: Option<LogPosition>,
        resume: Resume,
    },
    Detach {
        session_id: SessionId,
    },
    Input {
        session_id: SessionId,
        data: String,
        /// Given by [`Connection::input`], higher than every seq before.
        seq: u64,
    },
    Resize {
        session_id: SessionId,
        cols: u16,
        rows: u16,
    },
}

/// The handle of a connection; cheap to clone. The task ends when every
/// handle is dropped or [`Connection::close`] is called.
#[derive(Debug, Clone)]
pub struct Connection {
    /// To the task; bounded, so a caller that sends faster than the socket
    /// writes waits.
    commands: mpsc::Sender<Command>,
    /// Close requests, each answered when the task ends (the sender
    /// dropped). Apart from `commands`, which the task stops reading while
    /// too much input is unacknowledged: a close is heard then too, and
    /// while the task waits for the user to take an event.
    closes: mpsc::Sender<oneshot::Sender<()>>,
    /// The seq of the last input, shared by the clones; locked from
    /// numbering an input until it is queued, so inputs queue in the
    /// order of their seqs (the server applies none whose seq is not
    /// higher than one it applied).
    last_seq: Arc<tokio::sync::Mutex<u64>>,
}

/// The receiving end of a connection's events; `None` when the task ended.
#[derive(Debug)]
pub struct Events {
    rx: mpsc::Receiver<Event>,
}

impl Events {
    /// The next event, or `None` when the connection is closed.
    pub async fn recv(&mut self) -> Option<Event> {
        self.rx.recv().await
    }
}

impl Connection {
    /// Starts the connection task; it connects (and reconnects) by itself.
    ///
    /// # Panics
    ///
    /// Outside a tokio runtime (the task is spawned on the current one).
    pub fn open(client: Client, options: ConnectOptions) -> (Connection, Events) {
        let (ctx, crx) = mpsc::channel(64);
        let (close_tx, close_rx) = mpsc::channel(4);
        let (etx, erx) = mpsc::channel(options.event_queue.max(1));
        tokio::spawn(actor::run(client, options, crx, close_rx, etx));
        (
            Connection {
                commands: ctx,
                closes: close_tx,
                last_seq: Arc::default(),
            },
            Events { rx: erx },
        )
    }

    async fn send(&self, c: Command) -> Result<()> {
        self.commands.send(c).await.map_err(|_| Error::Closed)
    }

    /// Attaches a session (binary output); [`Event::Attached`] answers.
    ///
    /// Without `since`, a pty session starts with its screen
    /// ([`Event::Restore`]) and a command session with the output the server
    /// holds in memory; with `since` (the epoch of [`Event::Attached`] and
    /// the end of the last [`Event::Output`], or offset 0 of
    /// [`SessionInfo::epoch`](termstream_proto::SessionInfo::epoch) for
    /// everything), exactly the bytes from there follow, or an
    /// [`Event::Gap`] says why not. After a reconnect the session is
    /// re-attached as `resume` says. A session that does not exist is
    /// answered with [`Event::ServerError`] (`session_not_found`).
    pub async fn attach(&self, session_id: SessionId, since: Option<LogPosition>, resume: Resume) -> Result<()> {
        self.send(Command::Attach {
            session_id,
            since,
            resume,
        })
        .await
    }

    /// Detaches a session; it is not re-attached after a reconnect.
    pub async fn detach(&self, session_id: SessionId) -> Result<()> {
        self.send(Command::Detach { session_id }).await
    }

    /// Sends input (text: bytes read from a terminal go through a
    /// [`Utf8Carry`](crate::Utf8Carry) first, as a character may be split
    /// across reads), numbered, and resends it after a reconnect until the
    /// server is known to have it, or the connection is closed: a
    /// [`Connection::close`] while the server is away drops the input it
    /// does not have yet. Once 1 MiB of input is not yet acknowledged (the
    /// server is away, or the program does not read), the task takes no
    /// more commands: up to 64 more (of any size) queue, then this waits.
    ///
    /// Returns the input's seq, which an [`Event::ServerError`] refusing
    /// it names (`refused_input`).
    pub async fn input(&self, session_id: SessionId, data: String) -> Result<u64> {
        let mut last = self.last_seq.lock().await;
        let seq = *last + 1;
        self.send(Command::Input { session_id, data, seq }).await?;
        *last = seq;
        Ok(seq)
    }

    /// Sets a pty session's window size. Not kept across a reconnect: send
    /// it again on [`Event::Connected`] with `reconnect`.
    pub async fn resize(&self, session_id: SessionId, cols: u16, rows: u16) -> Result<()> {
        self.send(Command::Resize { session_id, cols, rows }).await
    }

    /// Sends what was queued before it, closes the socket (with a close
    /// frame) and ends the task; returns once it ended. It does not wait
    /// for the events to be read, nor for a server that is away or hangs
    /// (a connect under way is given up; writing what was queued to a
    /// server that reads nothing, after 2 s): then what was queued, and
    /// input not yet acknowledged, is dropped.
    pub async fn close(&self) {
        let (tx, rx) = oneshot::channel();
        if self.closes.send(tx).await.is_ok() {
            let _ = rx.await;
        }
    }
}
