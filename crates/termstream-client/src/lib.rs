//! An async client of a termstream server, speaking only its public
//! protocol (the types of `termstream-proto`, re-exported as [`proto`]).
//!
//! # Layout
//! - [`endpoint`]: the server URL (`http`, `https`, `ws`, `wss`), the token,
//!   and the rustls settings.
//! - [`rest`]: [`Client`], one method per REST route.
//! - [`socket`]: [`Connection`], the `/ws` connection that reconnects with
//!   [`backoff`], re-attaches each session from the first offset it lacks,
//!   and resends unacknowledged input with its `seq`.
//! - [`error`]: [`Error`], with the server's error code when it sent one.
//! - [`text`]: [`Utf8Carry`], typed bytes as the text input is sent as.
//!
//! # Listing sessions
//!
//! ```no_run
//! # async fn demo() -> Result<(), termstream_client::Error> {
//! use termstream_client::{Client, Endpoint};
//! let client = Client::new(Endpoint::new("http://127.0.0.1:8000", None, &[])?)?;
//! for s in client.list_sessions(None, None).await?.sessions {
//!     println!("{} {:?}", s.id, s.status);
//! }
//! # Ok(()) }
//! ```
//!
//! # A session from start to end
//!
//! REST creates the session; a [`Connection`] (which needs a tokio runtime)
//! carries keys, window sizes and output. Its [`Events`] bring the output
//! and the session's end, and say when the socket dropped and came back:
//! the connection reconnects by itself and resumes each session from the
//! first byte not yet given, so the loop below needs nothing for it. A
//! session that ran while the server restarted ends with
//! [`SessionStatus::Lost`](proto::SessionStatus::Lost). A whole program:
//! `examples/session.rs`.
//!
//! ```no_run
//! use termstream_client::proto::{CreateSession, SessionId, SessionKind, SessionStatus};
//! use termstream_client::{Client, ConnectOptions, Connection, Endpoint, Event, Resume};
//!
//! # async fn demo() -> Result<(), Box<dyn std::error::Error>> {
//! let token = std::env::var("TERMSTREAM_TOKEN").ok();
//! let client = Client::new(Endpoint::new("https://termstream.example:8000", token, &[])?)?;
//! let id = SessionId::new("build-1")?;
//! client
//!     .create_session(&CreateSession {
//!         id: Some(id.clone()),
//!         kind: Some(SessionKind::Pty),
//!         argv: Some(vec!["sh".into()]),
//!         ..CreateSession::default()
//!     })
//!     .await?;
//!
//! let (conn, mut events) = Connection::open(client.clone(), ConnectOptions::default());
//! conn.attach(id.clone(), None, Resume::Exact).await?;
//! conn.resize(id.clone(), 120, 40).await?;
//! conn.input(id.clone(), "make; exit $?\n".into()).await?;
//! let mut output = Vec::new();
//! let mut terminated = false;
//! let code = loop {
//!     match events.recv().await {
//!         // A pty session attached without `since` starts with its screen.
//!         Some(Event::Restore { data, .. }) => output.extend_from_slice(data.as_bytes()),
//!         Some(Event::Output { session_id, data, .. }) if session_id == id => {
//!             output.extend_from_slice(&data);
//!             if !terminated && String::from_utf8_lossy(&output).contains("error:") {
//!                 client.terminate(&id).await?;
//!                 terminated = true;
//!             }
//!         }
//!         Some(Event::Exit { session_id, status, exit_code, signal }) if session_id == id => {
//!             break match status {
//!                 SessionStatus::Lost => None,
//!                 _ => exit_code.or(signal.map(|s| 128 + s)),
//!             };
//!         }
//!         Some(Event::Disconnected { error, retry_in, .. }) => eprintln!("{error}; again in {retry_in:?}"),
//!         // The credential was refused, say: nothing follows.
//!         Some(Event::Failed { error, .. }) => return Err(error.into()),
//!         Some(_) => {}
//!         None => return Err("the connection ended".into()),
//!     }
//! };
//! conn.close().await;
//! println!("ended with {code:?}");
//! # Ok(()) }
//! ```

/// The protocol's types (`termstream-proto`), which this crate's API takes
/// and returns: ids, session requests and infos, statuses, error codes.
pub use termstream_proto as proto;

pub mod backoff;
pub mod endpoint;
pub mod error;
pub mod rest;
pub mod socket;
pub mod text;

pub use backoff::{Backoff, BackoffPolicy};
pub use endpoint::Endpoint;
pub use error::{Error, Result};
pub use rest::{Client, LoginCode, RawOutput, Ticket};
pub use socket::{ConnectFailure, ConnectOptions, Connection, Event, Events, Resume, SocketAuth};
pub use text::Utf8Carry;
