//! Helpers for the tests of the `termstream-client` library
//! (`client_lib.rs`, `client_lib_rest.rs`): a `cat` session to create,
//! quick reconnects, and a wait for an event.

use std::time::{Duration, Instant};

use termstream_client::{ConnectOptions, Event};
use termstream_proto::SessionId;

/// A session `id` that runs `cat`.
pub fn cat(id: &SessionId) -> termstream_proto::CreateSession {
    termstream_proto::CreateSession {
        id: Some(id.clone()),
        kind: Some(termstream_proto::SessionKind::Command),
        argv: Some(vec!["cat".into()]),
        ..Default::default()
    }
}

/// Reconnects at once and often (10 ms, at most 200 ms apart).
pub fn quick_retries() -> ConnectOptions {
    ConnectOptions {
        backoff: termstream_client::BackoffPolicy {
            first: Duration::from_millis(10),
            cap: Duration::from_millis(200),
            reset_after: Duration::from_secs(10),
        },
        ..ConnectOptions::default()
    }
}

/// The next event `pick` takes, within `limit`.
pub async fn until<T>(
    events: &mut termstream_client::Events,
    limit: Duration,
    pick: impl Fn(&Event) -> Option<T>,
) -> T {
    let deadline = Instant::now() + limit;
    loop {
        let left = deadline.saturating_duration_since(Instant::now());
        match tokio::time::timeout(left, events.recv()).await {
            Ok(Some(e)) => {
                if let Some(t) = pick(&e) {
                    return t;
                }
            }
            Ok(None) => panic!("the events ended"),
            Err(_) => panic!("no such event within {limit:?}"),
        }
    }
}
