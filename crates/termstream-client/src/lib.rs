//! An async client of a termstream server, speaking only its public
//! protocol (the types of `termstream-proto`).
//!
//! # Layout
//! - [`endpoint`]: the server URL (`http`, `https`, `ws`, `wss`), the token,
//!   and the rustls settings.
//! - [`rest`]: [`Client`], one method per REST route.
//! - [`socket`]: [`Connection`], the `/ws` connection that reconnects with
//!   [`backoff`], re-attaches each session from the first offset it lacks,
//!   and resends unacknowledged input with its `seq`.
//! - [`error`]: [`Error`], with the server's error code when it sent one.
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

pub mod backoff;
pub mod endpoint;
pub mod error;
pub mod rest;
pub mod socket;

pub use backoff::{Backoff, BackoffPolicy};
pub use endpoint::Endpoint;
pub use error::{Error, Result};
pub use rest::{Client, RawOutput, Ticket};
pub use socket::{ConnectOptions, Connection, Event, Events, Resume, SocketAuth};
