//! When a forwarder has fixed where its attach starts, for the input that
//! waits for it.
//!
//! A socket's input goes straight to the program, while the attach's
//! forwarder starts on a task of its own (the info, the snapshot, the
//! subscription). A key typed right after `session.attach` could be echoed
//! before the forwarder subscribed, and its echo then came inside the
//! attach's restored screen rather than after it: a terminal does not
//! answer the queries in a restored screen. So the first input after an
//! attach waits until the forwarder is subscribed, for at most a limit the
//! socket gives (then it goes on: the echo may then land in the screen).
//! Later input does not wait. `tests/attach_order.rs` shows it.

use std::time::Duration;

use tokio::sync::oneshot;

/// Told by a forwarder once it is subscribed; dropped unsent if it never
/// is (which ends the wait too).
pub type Tell = oneshot::Sender<()>;

/// The forwarder's end and the socket's.
pub fn pair() -> (Tell, Started) {
    let (tx, rx) = oneshot::channel();
    (tx, Started(Some(rx)))
}

/// When a forwarder has fixed where it starts (taken its snapshot and
/// subscribed): input to its session waits for that, so that the output
/// the input causes is not folded into the attach's screen.
#[derive(Debug, Default)]
pub struct Started(Option<oneshot::Receiver<()>>);

impl Started {
    /// Waits until the forwarder is subscribed, has ended, or `limit` has
    /// passed; only the first call waits.
    pub async fn wait(&mut self, limit: Duration) {
        if let Some(rx) = self.0.take() {
            let _ = tokio::time::timeout(limit, rx).await;
        }
    }
}
