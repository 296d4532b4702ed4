//! The older WebSocket shapes: `/ws/terminal/{session_id}` for one session
//! and `/ws/terminal/all` for every session, for dashboards.
//!
//! Messages: `terminal_connected`, `terminal_start`, `terminal_output`
//! (`stream`, `output`, `is_error`), `terminal_end` (`exit_code`,
//! `duration` in seconds), `terminal_terminating`; times are Unix seconds as
//! floats. On connect, `/ws/terminal/{id}` sends what the session printed so
//! far (the output still in memory) as `terminal_output`; `/ws/terminal/all`
//! sends `terminal_start` for each session and live output from then on. A
//! client may send `{"type":"terminal_input","data":..}` and
//! `{"type":"terminal_resize","cols":..,"rows":..}`.
//!
//! `/ws/terminal/{id}` stays open after its session's `terminal_end` until
//! the session is deleted; then it closes (1000, `session_deleted: ID`),
//! after a `terminal_end` made from the session's last info if none was
//! sent (deleted while running). In a cluster, a node that lets go of its
//! copy of another node's session closes the same way, unless it holds a
//! new copy of the same one (same epoch) by then: replaced (a `lost`
//! session taken up afresh), or listed again after its record was missed.
//! Then it closes with `session_replaced: ID`: the session exists, and
//! connecting again follows it; `session_deleted` would tell the client to
//! stop following a session that is there. The close waits for room, and
//! then for the client's close reply, both within one pong timeout from
//! the release, so a slow reader still gets the last output; the reply is
//! awaited only if the close went out, and a shutdown ends both waits.
//! `/ws/terminal/all` is `legacy/all.rs`.

mod all;

pub use all::all;

use std::sync::Arc;
use std::time::Duration;

use axum::extract::ws::{Message, WebSocket, close_code};
use bytes::Bytes;
use futures_util::StreamExt;
use serde::{Deserialize, Serialize};
use termstream_proto::compat::command_of;
use termstream_proto::ws::{LogPosition, OutputMode};
use termstream_proto::{SessionId, SessionInfo};

use super::forward::{self, Attach, Progress, Release};
use super::liveness::{Beat, Liveness};
use super::outbox::Outbox;
use super::render::Dialect;
use super::shapes::{Legacy, LegacyMessage, LegacyPong, LegacyStart};
use super::{ClientGuard, wait_for_session};
use crate::auth::{Grant, ProjectAccess};
use crate::clock::now_secs;
use crate::limits::TokenBucket;
use crate::session::kin::Kin;
use crate::session::lane::Follower;
use crate::session::{SessionError, SessionHandle};
use crate::state::AppState;

fn text<T: Serialize>(kind: &'static str, session_id: &str, body: T) -> Message {
    let msg = Legacy {
        kind,
        session_id,
        body,
        timestamp: now_secs(),
    };
    Message::Text(msg.to_json().into())
}

fn start_message(info: &SessionInfo) -> Message {
    let body = LegacyStart {
        command: command_of(info),
        cwd: &info.cwd,
    };
    text("terminal_start", info.id.as_str(), body)
}

/// What a client may send: `terminal_input` (`data`, or `input`),
/// `terminal_resize` (`cols`, `rows`) or `ping`.
#[derive(Debug, Deserialize)]
struct Inbound {
    #[serde(rename = "type")]
    kind: Option<String>,
    data: Option<String>,
    input: Option<String>,
    cols: Option<u64>,
    rows: Option<u64>,
}

/// Starts forwarding `handle`'s session; `preamble` goes out once the
/// forwarder is subscribed, before any of the session's events. With a
/// `release`, the forwarder tells it when the session is deleted (after
/// the session's `terminal_end`, sent then if it was not yet).
fn forwarder(
    handle: SessionHandle,
    since: Option<LogPosition>,
    state: &AppState,
    out: &Outbox,
    preamble: Vec<Message>,
    release: Option<Release>,
) -> Follower {
    // No snapshot here (the held output instead): nothing to wait for.
    let max_replay = state.registry.config().max_replay_bytes;
    forward::spawn(attach(handle, since, max_replay, preamble, release, None), out.clone()).0
}

/// What [`forwarder`] forwards: `handle`'s session, in the legacy shape;
/// `progress` accounts for what goes out (`/ws/terminal/all`).
fn attach(
    handle: SessionHandle,
    since: Option<LogPosition>,
    max_replay: u64,
    preamble: Vec<Message>,
    release: Option<Release>,
    progress: Option<Arc<Progress>>,
) -> Attach {
    Attach {
        handle,
        since,
        mode: OutputMode::Json,
        dialect: Dialect::Legacy,
        max_replay,
        preamble,
        focus: None,
        release,
        progress,
    }
}

/// `/ws/terminal/{session_id}`.
pub async fn one(socket: WebSocket, state: AppState, raw: String, _guard: ClientGuard, grant: Grant) {
    let (sink, mut stream) = socket.split();
    let (out, writer) = Outbox::open(sink, state.registry.config());
    let wait = Duration::from_millis(state.registry.config().attach_wait_ms);
    // A session of a project this socket may not see is answered as one
    // that does not exist, after the same wait.
    let handle = match SessionId::new(raw.clone()) {
        Ok(id) => wait_for_session(&state.registry, &id, wait, &grant).await,
        Err(_) => None,
    };
    let Some(handle) = handle else {
        out.close(close_code::POLICY, close_reason("session_not_found", &raw))
            .await;
        drop(out);
        writer.finish().await;
        return;
    };
    let info = handle.info();
    let message = format!("Connected to terminal session: {}", info.id);
    let connected = text(
        "terminal_connected",
        info.id.as_str(),
        LegacyMessage { message: &message },
    );
    let _viewer = handle.add_viewer();
    // Told by the forwarder when the session is deleted; one message at
    // most, kept as one stream (a loop turn that finds none allocates
    // nothing).
    let (releases, released) = flume::unbounded();
    let mut released = released.into_stream();
    // Sent by the forwarder once it is subscribed: nothing after them
    // (a terminate, say) can be missed.
    let task = forwarder(
        handle.clone(),
        None,
        &state,
        &out,
        vec![connected, start_message(&info)],
        Some(Release::new(releases, 0)),
    );
    let cfg = state.registry.config();
    let mut budget = TokenBucket::new(cfg.ws_input_bytes_per_sec, cfg.ws_input_burst_bytes);
    let mut liveness = Liveness::new(cfg);
    loop {
        tokio::select! {
            msg = stream.next() => match msg {
                Some(msg) if let Some((code, reason)) = super::refusal(&msg, cfg.ws_max_message_bytes) => {
                    out.close(code, reason).await;
                    break;
                }
                Some(Ok(Message::Text(t))) => on_input(&handle, &t, &out, &grant, &mut budget).await,
                Some(Ok(msg)) => liveness.saw(&msg),
                _ => break,
            },
            _ = liveness.tick() => if liveness.beat(&out).await == Beat::Gone {
                break;
            },
            () = state.shutdown.cancelled() => {
                super::tell_shutdown(&out, &mut stream).await;
                break;
            }
            // The session was deleted, after its `terminal_end`: nothing
            // more will come. In a cluster, also this node letting go of
            // its copy of another node's session; a newer one under the
            // id is followed by connecting again.
            Some(_) = released.next() => {
                let why = released_why(state.registry.get(handle.id()).map(|h| h.kin(&handle)));
                // After the session's last output and terminal_end, which a
                // slow reader is given as long as a reply (not the short
                // wait of a close on error); then the client's close reply,
                // read (as tell_shutdown does) until the same deadline: a
                // connection dropped before it resets the client's, whose
                // unread frames (the last output, terminal_end, the close)
                // its kernel then drops, as soon as it answers a ping or
                // the close. A shutdown meanwhile cuts the wait short.
                let until = tokio::time::Instant::now() + out.reply_wait();
                let reason = close_reason(why, handle.id().as_str());
                let sent = tokio::select! {
                    sent = out.close_within(close_code::NORMAL, reason, out.reply_wait()) => sent.is_ok(),
                    () = state.shutdown.cancelled() => {
                        super::tell_shutdown(&out, &mut stream).await;
                        break;
                    }
                };
                // No reply can come to a close that did not go out.
                if sent {
                    let max = cfg.ws_max_message_bytes;
                    let reply = tokio::time::timeout_at(until, async {
                        while let Some(msg) = stream.next().await {
                            if msg.is_err() || super::refusal(&msg, max).is_some() {
                                break;
                            }
                        }
                    });
                    tokio::select! {
                        _ = reply => {}
                        () = state.shutdown.cancelled() => {}
                    }
                }
                break;
            }
        }
        if out.is_closed() {
            break;
        }
    }
    task.abort();
    drop(out);
    writer.finish().await;
}

/// Why `/ws/terminal/{id}` closes when its session is released, from how
/// the registry's handle of the id now stands to the socket's: another
/// copy of the same session (same epoch: another node's session whose
/// stand-in here was replaced, or let go and taken up again by the time
/// the socket reads the release), which connecting again follows, is
/// `session_replaced`; anything else (nothing, or a new session under the
/// id, which is not the one the client followed) is `session_deleted`.
fn released_why(current: Option<Kin>) -> &'static str {
    match current {
        Some(Kin::Copy) => "session_replaced",
        _ => "session_deleted",
    }
}

/// A close frame's reason, `what: id`, cut to the 123 bytes of UTF-8 a
/// close reason may hold.
fn close_reason(what: &str, id: &str) -> String {
    let mut reason = format!("{what}: {id}");
    reason.truncate(reason.floor_char_boundary(123));
    reason
}

async fn on_input(handle: &SessionHandle, raw: &str, out: &Outbox, grant: &Grant, budget: &mut TokenBucket) {
    // A reply the client makes no room for closes the socket.
    let reply_error = async |message: String| {
        let _ = out.reply(text_error(handle, message)).await;
    };
    let v = match serde_json::from_str::<Inbound>(raw) {
        Ok(v) => v,
        Err(e) if e.is_data() => {
            reply_error(format!("invalid message: {e}")).await;
            return;
        }
        Err(_) => {
            reply_error("malformed JSON".into()).await;
            return;
        }
    };
    let kind = v.kind.as_deref();
    if matches!(kind, Some("terminal_input" | "terminal_resize"))
        && grant.access(handle.project().as_str()) != Some(ProjectAccess::Write)
    {
        crate::observe::audit::input_refused(grant, handle.id().as_str(), handle.project().as_str());
        reply_error("read_only: this socket may only watch".into()).await;
        return;
    }
    match kind {
        Some("terminal_input") => {
            let data = v.data.as_deref().or(v.input.as_deref()).unwrap_or_default();
            if !budget.take(data.len()) {
                reply_error("rate_limited: input over the socket's rate was dropped; send it again later".into()).await;
                return;
            }
            if let Err(e) = handle
                .input(Bytes::from(data.to_owned()), false, None, super::INPUT_WAIT)
                .await
            {
                reply_error(e.to_string()).await;
            }
        }
        Some("terminal_resize") => {
            let dim = |n: Option<u64>| n.and_then(|n| u16::try_from(n).ok()).filter(|n| *n > 0);
            match (dim(v.cols), dim(v.rows)) {
                (Some(c), Some(r)) => match handle.resize(c, r).await {
                    Err(e @ SessionError::WindowTooLarge { .. }) => {
                        reply_error(format!("invalid_message: {e}")).await;
                    }
                    Err(e) => reply_error(e.to_string()).await,
                    Ok(()) => {}
                },
                _ => {
                    reply_error("cols and rows must be positive integers".into()).await;
                }
            }
        }
        Some("ping") => {
            let pong = LegacyPong {
                kind: "pong",
                timestamp: now_secs(),
            };
            let pong = Message::Text(serde_json::to_string(&pong).unwrap_or_default().into());
            let _ = out.reply(pong).await;
        }
        other => {
            reply_error(format!("unknown message type {other:?}")).await;
        }
    }
}

fn text_error(handle: &SessionHandle, message: String) -> Message {
    text("error", handle.id().as_str(), LegacyMessage { message: &message })
}

#[cfg(test)]
mod tests {
    use super::released_why;
    use crate::session::kin::Kin;

    #[test]
    fn only_a_new_copy_of_the_same_session_is_a_replacement() {
        assert_eq!(released_why(None), "session_deleted");
        // A new session under the id (deleted and created again, here or
        // on the owner): not the one the client followed.
        assert_eq!(released_why(Some(Kin::Other)), "session_deleted");
        assert_eq!(released_why(Some(Kin::Copy)), "session_replaced");
        assert_eq!(released_why(Some(Kin::Same)), "session_deleted");
    }
}
