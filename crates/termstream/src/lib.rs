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
//! - [`focus`]: per-project focus sets and their versions, broadcast to
//!   every client of the project.
//! - [`api`]: the REST API and its error type.
//! - [`auth`]: tokens, tickets, login codes and the login cookie, scopes,
//!   origin and host checks: the guard every request passes first.
//! - [`page`]: the web page at `/`, embedded in the binary.
//! - [`limits`]: connection caps, per-token session caps, input rate.
//! - [`observe`]: metrics, health and readiness, logs and the audit trail.
//! - [`server`]: binding, the accept loop (timeouts) and shutdown.
//! - [`tls`]: the certificate and key, for HTTPS and WSS.
//! - [`confine`]: the user and resource limits of sessions' programs.
//! - [`cluster`]: scale-out through Redis: node liveness, the session
//!   directory, output streams and remote sessions (`--cluster`).
//! - [`config`]: configuration from defaults, file, environment and flags.

pub mod api;
pub mod auth;
pub mod clock;
pub mod cluster;
pub mod config;
pub mod confine;
pub mod error;
pub mod events;
pub mod focus;
pub mod gateway;
pub mod limits;
pub mod observe;
pub mod page;
pub mod registry;
pub mod server;
pub mod session;
pub mod state;
pub mod tls;
