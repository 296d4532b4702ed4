//! Work that must not stop halfway, and the wait for it when the server
//! stops.
//!
//! A request's future is dropped when its client hangs up, so what must
//! not stop halfway (a create, a terminate or delete with its audit, the
//! removal of a deleted session's files, a focus change) runs in a task of
//! its own, which the request only awaits: [`Finishing::run`]. Each task is
//! tracked, so that a stopping server can wait for them ([`Finishing::close`])
//! before it terminates the sessions. A task that panics is logged here,
//! named by its caller, and its caller gets `None`.

use std::future::Future;

use tokio::time::Instant;
use tokio_util::task::TaskTracker;

/// The tasks of work that must not stop halfway; owned by the
/// [`Registry`](super::Registry).
#[derive(Debug, Default)]
pub(crate) struct Finishing {
    /// Every task started by [`Finishing::run`] or [`Finishing::detach`]
    /// and not yet ended. Closed by [`Finishing::close`], after which
    /// its wait ends once the last task does (tasks started later are
    /// still run and waited for).
    tasks: TaskTracker,
}

impl Finishing {
    /// Starts `work` now in a task of its own, which runs to its end
    /// whatever becomes of the returned future; that future answers the
    /// work's output, or `None` if it panicked (or the runtime stopped),
    /// which is logged as `what` having failed.
    pub(crate) fn run<F>(&self, what: &'static str, work: F) -> impl Future<Output = Option<F::Output>> + use<F>
    where
        F: Future + Send + 'static,
        F::Output: Send + 'static,
    {
        let task = self.tasks.spawn(work);
        async move {
            task.await
                .inspect_err(|e| tracing::error!(error = %e, "{what} failed"))
                .ok()
        }
    }

    /// Starts `work` in a task of its own that nobody awaits (the deletes
    /// of retention and eviction); it is waited for as [`Finishing::run`]'s.
    pub(crate) fn detach<F>(&self, work: F)
    where
        F: Future<Output = ()> + Send + 'static,
    {
        self.tasks.spawn(work);
    }

    /// Waits, until `deadline` at most, until every task has ended; logs
    /// how many are left if some outlast it. A deadline, not a length: the
    /// registry's close shares it with its next wait.
    pub(crate) async fn close(&self, deadline: Instant) {
        let since = Instant::now();
        self.tasks.close();
        if tokio::time::timeout_at(deadline, self.tasks.wait()).await.is_err() {
            tracing::warn!(
                left = self.tasks.len(),
                "creates, deletes, terminates or focus changes still under way after {:?}; stopping anyway",
                since.elapsed()
            );
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Duration;

    use super::*;

    const LONG: Duration = Duration::from_secs(10);

    #[tokio::test]
    async fn run_answers_the_output_or_none_for_a_panic() {
        let finishing = Finishing::default();
        assert_eq!(finishing.run("adding", async { 1 + 1 }).await, Some(2));
        let panicked = finishing.run("panicking", async { panic!("a test's panic") });
        assert_eq!(panicked.await, None::<()>);
    }

    #[tokio::test]
    async fn work_goes_on_when_its_caller_is_dropped() {
        let finishing = Finishing::default();
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        let (done, finished) = tokio::sync::oneshot::channel();
        let caller = finishing.run("the work", async move {
            let _ = wait.await;
            let _ = done.send("finished");
        });
        drop(caller);
        go.send(()).unwrap();
        let got = tokio::time::timeout(LONG, finished).await;
        assert_eq!(got.expect("the work ended").ok(), Some("finished"));
    }

    #[tokio::test]
    async fn close_waits_for_every_task_but_no_longer_than_its_limit() {
        let finishing = std::sync::Arc::new(Finishing::default());
        let (go, wait) = tokio::sync::oneshot::channel::<()>();
        finishing.detach(async move {
            let _ = wait.await;
        });
        let mut closer = tokio::spawn({
            let finishing = finishing.clone();
            async move { finishing.close(Instant::now() + LONG * 3).await }
        });
        assert!(
            tokio::time::timeout(Duration::from_millis(100), &mut closer)
                .await
                .is_err(),
            "close returned while a task was under way"
        );
        go.send(()).unwrap();
        tokio::time::timeout(LONG, closer)
            .await
            .expect("close returned once the task ended")
            .unwrap();

        // A task that never ends holds close up only for its limit.
        let stuck = Finishing::default();
        stuck.detach(std::future::pending());
        tokio::time::timeout(LONG, stuck.close(Instant::now() + Duration::from_millis(50)))
            .await
            .expect("close returned after its limit");
    }
}
