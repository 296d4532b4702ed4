//! The load of scenarios 4 and 14: the streams' program, readers that
//! drain the streams until told to stop, and a measurement taken while they
//! run. Shared by the server, the bare relay, ttyd and the bare-PTY
//! baseline, so all of them are loaded the same way.
//!
//! The echo probe measured under load runs on a thread of its own with its
//! own event loop ([`on_own_thread`]), as a person typing is a client apart
//! from the ones that read the floods. On the bench's shared runtime the
//! probe's socket was polled by workers busy decoding the load, so its
//! round trips also timed the bench's own queue, which grows with the load
//! a server delivers: the more a server streamed, the worse its echo looked.

use std::future::Future;
use std::path::Path;
use std::time::{Duration, Instant};

use tokio::sync::watch;
use tokio::task::JoinHandle;

/// Streams of the load, each running [`script`].
pub const STREAMS: usize = 3;
/// How long the streams run before the measurement starts.
const WARM: Duration = Duration::from_millis(500);

/// The program of each stream: `cat` of `file` again and again, until a
/// `cat` fails (the file is gone, or the terminal hung up), so that a loop
/// orphaned by a crash ends by itself instead of spinning.
///
/// With `paced` (this bench's own binary and the bytes per second of one
/// stream), the stream is [`crate::pacer::pace_out`] run by that binary
/// instead: every target then carries the same load, however fast it could
/// read, so that an echo under load compares designs rather than how much
/// each delivers.
pub fn script(file: &Path, paced: Option<(&Path, u64)>) -> String {
    match paced {
        None => format!("while cat {}; do :; done", crate::shell_quote(file)),
        Some((bench, rate)) => format!(
            "exec {} --pace-rate {rate} --pace-file {}",
            crate::shell_quote(bench),
            crate::shell_quote(file)
        ),
    }
}

/// A probe made ready on a thread of its own (see [`on_own_thread`]):
/// [`Ready::run`] starts its measurement.
pub struct Ready<T> {
    go: tokio::sync::oneshot::Sender<()>,
    done: tokio::sync::oneshot::Receiver<anyhow::Result<T>>,
}

impl<T> Ready<T> {
    /// Runs the measurement and waits for its result.
    pub async fn run(self) -> anyhow::Result<T> {
        let _ = self.go.send(());
        self.done
            .await
            .map_err(|_| anyhow::anyhow!("the echo probe's thread panicked"))?
    }
}

/// Starts a thread with a current-thread tokio runtime of its own, runs
/// `setup` there (connecting, letting `stty` take effect: before the load
/// starts, the same for every target) and returns once it is done; `run`
/// then takes what `setup` made when [`Ready::run`] is called. A tokio
/// socket belongs to the runtime it was made in, so the probe's sockets
/// are made there. Dropping the [`Ready`] ends the thread.
pub async fn on_own_thread<S, T, F1, Fut1, F2, Fut2>(setup: F1, run: F2) -> anyhow::Result<Ready<T>>
where
    T: Send + 'static,
    F1: FnOnce() -> Fut1 + Send + 'static,
    Fut1: Future<Output = anyhow::Result<S>>,
    F2: FnOnce(S) -> Fut2 + Send + 'static,
    Fut2: Future<Output = anyhow::Result<T>>,
{
    use tokio::sync::oneshot;
    let (ready_tx, ready_rx) = oneshot::channel::<anyhow::Result<()>>();
    let (go, go_rx) = oneshot::channel::<()>();
    let (done_tx, done) = oneshot::channel();
    std::thread::Builder::new().name("echo-probe".into()).spawn(move || {
        let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
            Ok(rt) => rt,
            Err(e) => {
                let _ = ready_tx.send(Err(e.into()));
                return;
            }
        };
        rt.block_on(async move {
            let made = match setup().await {
                Ok(made) => made,
                Err(e) => {
                    let _ = ready_tx.send(Err(e));
                    return;
                }
            };
            let _ = ready_tx.send(Ok(()));
            if go_rx.await.is_ok() {
                let _ = done_tx.send(run(made).await);
            }
        });
    })?;
    ready_rx
        .await
        .map_err(|_| anyhow::anyhow!("the echo probe's thread panicked"))??;
    Ok(Ready { go, done })
}

/// Readers of the streams, each counting the bytes it read.
pub struct Load {
    stop_tx: watch::Sender<bool>,
    readers: Vec<JoinHandle<u64>>,
    started: Instant,
}

impl Load {
    pub fn new() -> Load {
        Load {
            stop_tx: watch::channel(false).0,
            readers: Vec::with_capacity(STREAMS),
            started: Instant::now(),
        }
    }

    /// The signal a reader watches: true once the measurement is over.
    pub fn stop_signal(&self) -> watch::Receiver<bool> {
        self.stop_tx.subscribe()
    }

    /// Runs `reader` (which returns the bytes it read once its stop signal
    /// turns true) until the measurement is over.
    pub fn add(&mut self, reader: impl Future<Output = u64> + Send + 'static) {
        self.readers.push(tokio::spawn(reader));
    }

    /// Lets the streams reach full speed, runs `measure`, stops the readers
    /// and says what they got (`what` names the setup in the log line):
    /// `measure`'s output and the readers' MB/s in all, so that a report
    /// can show whether two setups carried the same load.
    pub async fn during<T>(self, what: &str, measure: impl Future<Output = T>) -> (T, f64) {
        let (out, mbps, _) = self.during_counted(what, measure).await;
        (out, mbps)
    }

    /// [`Load::during`], also saying how many bytes the readers got in all.
    pub async fn during_counted<T>(self, what: &str, measure: impl Future<Output = T>) -> (T, f64, u64) {
        tokio::time::sleep(WARM).await;
        let out = measure.await;
        let _ = self.stop_tx.send(true);
        // The readers ran from their start, warm-up included.
        let secs = self.started.elapsed().as_secs_f64();
        let mut streamed = 0;
        for r in self.readers {
            streamed += r.await.unwrap_or(0);
        }
        let mbps = streamed as f64 / secs / 1e6;
        eprintln!("bench: under load ({what}) the {STREAMS} readers got {mbps:.0} MB/s in all");
        (out, mbps, streamed)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_paced_script_runs_this_binary_with_quoted_paths() {
        let s = script(Path::new("/t/it's.txt"), Some((Path::new("/b/bench"), 5)));
        assert_eq!(s, r"exec '/b/bench' --pace-rate 5 --pace-file '/t/it'\''s.txt'");
        assert_eq!(script(Path::new("/t/f"), None), "while cat '/t/f'; do :; done");
    }
}
