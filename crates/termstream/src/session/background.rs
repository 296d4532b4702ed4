//! Background CPU work at background priority: the screen model's parsing.
//!
//! Parsing a flood of output with the headless terminal costs about as much
//! CPU as everything else the server does with those bytes (avt parses 15–70
//! MB/s). On the tokio blocking pool it ran at the same priority as the
//! worker threads, and under load the kernel made a typed key's echo wait
//! behind it: in the benchmark's load scenario the workers spent 4× as long
//! waiting for a CPU as running. Here it runs on a few threads of their own
//! at low priority (nice 10): it uses mostly what CPU is left over, and a
//! model that falls far behind restarts from the log's tail (see
//! `screen_task`). Parsing that a snapshot waits for runs on the blocking
//! pool at normal priority instead.
//!
//! The threads belong to a runtime that is never driven: only its blocking
//! pool is used, which needs no driver. Idle threads exit after a while.

use std::sync::OnceLock;

use tokio::runtime::Runtime;
use tokio::task::JoinHandle;

/// At most this many background threads.
const THREADS: usize = 2;
/// The nice value of background threads: about a tenth of a normal
/// thread's share of a busy CPU (19, the lowest, left a catch-up waiting
/// seconds on a saturated machine).
const NICE: i32 = 10;

fn runtime() -> &'static Runtime {
    static RUNTIME: OnceLock<Runtime> = OnceLock::new();
    RUNTIME.get_or_init(|| {
        tokio::runtime::Builder::new_current_thread()
            .max_blocking_threads(THREADS)
            .thread_name("termstream-bg")
            .on_thread_start(|| {
                // Linux applies a nice value to the calling thread only.
                // Raising it needs no privilege; failing leaves it at 0.
                let _ = rustix::process::setpriority_process(None, NICE);
            })
            .build()
            .expect("the background runtime needs no resources to build")
    })
}

/// Runs `work` on a background thread; await the handle for its result.
pub fn spawn<R: Send + 'static>(work: impl FnOnce() -> R + Send + 'static) -> JoinHandle<R> {
    runtime().spawn_blocking(work)
}

#[cfg(test)]
mod tests {
    #[tokio::test]
    async fn background_work_runs_at_low_priority() {
        let before = rustix::process::getpriority_process(None).expect("getpriority");
        let nice = super::spawn(|| rustix::process::getpriority_process(None))
            .await
            .expect("joined");
        assert_eq!(nice.expect("getpriority"), super::NICE);
        let after = rustix::process::getpriority_process(None).expect("getpriority");
        assert_eq!(before, after, "the caller's priority is untouched");
    }
}
