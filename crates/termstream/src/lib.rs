//! termstream: runs terminal sessions and streams them live over WebSocket.
//!
//! # Layout
//! - [`session`]: one actor task per session owning the program, its PTY or
//!   pipes, the output log (memory ring + disk) and, for pty sessions, a
//!   screen task with a headless terminal.
//! - [`registry`]: the directory of sessions (id → handle), with limits and
//!   retention.
//! - [`gateway`]: the WebSocket endpoints: `/ws` multiplexes sessions on one
//!   socket, with lossless resume and a byte budget per socket.
//! - [`api`]: the REST API and its error type.
//! - [`server`]: binding, serving and shutdown.
//! - [`config`]: configuration from defaults, file, environment and flags.

pub mod api;
pub mod clock;
pub mod config;
pub mod gateway;
pub mod registry;
pub mod server;
pub mod session;
