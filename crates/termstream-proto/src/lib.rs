//! Wire types shared by the termstream server and its clients.
//!
//! This crate has no async code and no I/O: it is the contract. The server
//! (`termstream`) and the command-line client both depend on it, so a field
//! renamed here is renamed everywhere at once.
//!
//! # Layout
//! - [`ids`]: validated identifiers (`SessionId`, `ProjectId`, `Epoch`).
//! - [`session`]: what a session is (`SessionInfo`), and the REST bodies that
//!   create and drive one.
//! - [`output`]: output chunks, their streams and the answers of output reads.
//! - [`error`]: the JSON error body and its machine-readable codes.
//! - [`replies`]: the small JSON answers of the other REST routes.
//! - [`ws`]: the multiplexed WebSocket protocol of `/ws`, JSON and binary.
//! - [`focus`]: per-project focus sets: the messages and REST bodies.
//! - [`terminal`]: the per-terminal socket `/ws?sessionId=ID`.
//! - [`compat`]: the request and response shapes of the older `/terminal` API,
//!   served unchanged so existing clients keep working.

pub mod compat;
pub mod error;
pub mod focus;
pub mod ids;
pub mod output;
pub mod replies;
pub mod session;
pub mod terminal;
pub mod ws;

pub use error::{ErrorBody, ErrorCode, ErrorDetail};
pub use ids::{Epoch, IdError, ProjectId, SessionId};
pub use output::{ChunkEncoding, OutputChunk, OutputPage, Stream};
pub use session::{
    CreateSession, InputRequest, ResizeRequest, SessionInfo, SessionKind, SessionList, SessionStatus, Snapshot,
};
