//! termstream: runs terminal sessions and streams them live over WebSocket.
pub mod session;
