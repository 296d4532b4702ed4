//! The writer of a session's `meta.json`, off the async workers.
//!
//! [`store::write_meta`] fsyncs twice (the file, then the directory), which
//! can take milliseconds on a real disk: too long for an actor's task on a
//! tokio worker, and a client sending resizes would make one write per
//! resize. So the actor only hands the latest info to a [`MetaWriter`]: one
//! blocking task at a time writes whatever is latest, and infos handed over
//! while it writes are coalesced into one more write. [`MetaWriter::flush`]
//! waits until the latest info handed over is on disk: the actor waits for
//! it before it announces the end of a session, and before it answers a
//! shutdown (after which the session's directory may be removed). At most
//! [`WRITERS`] sessions write at once, so many sessions starting or ending
//! together do not grow the blocking pool by a thread per fsync.

use std::path::PathBuf;
use std::sync::{Arc, Mutex};

use termstream_proto::SessionInfo;
use tokio::sync::{Notify, Semaphore};

use super::store;

/// How many sessions write their `meta.json` at once, in the whole server.
pub(crate) const WRITERS: usize = 4;

/// The permits to write, one per writing session.
static WRITING: Semaphore = Semaphore::const_new(WRITERS);

/// How many new sessions write their first record at once, in the whole
/// server (see [`MetaWriter::write_first`]).
pub(crate) const FIRST_WRITERS: usize = 16;

/// The permits to write a first record.
static FIRST_WRITING: Semaphore = Semaphore::const_new(FIRST_WRITERS);

/// Writes a session's `meta.json`, latest info first and only.
///
/// Every session holds one for its life, mostly idle: what it keeps is
/// small (a count and a `Notify`, the info boxed only while it waits to be
/// written), not a `watch` channel and an info inline.
#[derive(Debug)]
pub(crate) struct MetaWriter {
    shared: Arc<Shared>,
}

#[derive(Debug)]
struct Shared {
    dir: PathBuf,
    slot: Mutex<Slot>,
    /// Told whenever `Slot::written` grows; [`MetaWriter::flush`] waits.
    written: Notify,
}

#[derive(Debug, Default)]
struct Slot {
    /// Infos handed over so far.
    queued: u64,
    /// How many infos handed over are written (or failed).
    written: u64,
    /// The latest info not yet taken by the writing task, with its number.
    latest: Option<Box<(u64, SessionInfo)>>,
    /// A blocking task is writing; it takes `latest` before it ends.
    writing: bool,
}

impl MetaWriter {
    /// A writer of `dir/meta.json`.
    pub(crate) fn new(dir: PathBuf) -> MetaWriter {
        MetaWriter {
            shared: Arc::new(Shared {
                dir,
                slot: Mutex::default(),
                written: Notify::new(),
            }),
        }
    }

    /// Hands `info` over to be written; returns at once.
    pub(crate) fn write(&self, info: &SessionInfo) {
        let mut slot = self.shared.lock();
        slot.queued += 1;
        slot.latest = Some(Box::new((slot.queued, info.clone())));
        if slot.writing {
            return;
        }
        slot.writing = true;
        drop(slot);
        let shared = self.shared.clone();
        tokio::spawn(async move {
            // Never closed: a permit always comes.
            let _permit = WRITING.acquire().await;
            let _ = tokio::task::spawn_blocking(move || shared.write_latest()).await;
        });
    }

    /// Writes `info` now, on the caller's thread: the first record of a
    /// new session, which must be on disk before its creation is answered
    /// (a crash right after would otherwise leave a log with no record,
    /// and the session would be gone after a restart). With
    /// [`store::write_meta_new`]: no record is there yet to be replaced.
    pub(crate) fn write_now(&self, info: &SessionInfo, prepared: bool) {
        let n = {
            let mut slot = self.shared.lock();
            slot.queued += 1;
            slot.queued
        };
        if let Err(e) = store::write_meta_new(&self.shared.dir, info, prepared) {
            tracing::warn!(session = %info.id, error = %e, "cannot write meta.json");
        }
        self.shared.wrote(n);
    }

    /// [`MetaWriter::write_now`] on the blocking pool, at most
    /// [`FIRST_WRITERS`] sessions at once in the whole server: the create
    /// path awaits it, so that concurrent creates fsync together (one
    /// journal commit serves several) while the workers keep serving.
    pub(crate) async fn write_first(&self, info: &SessionInfo, prepared: bool) {
        let n = {
            let mut slot = self.shared.lock();
            slot.queued += 1;
            slot.queued
        };
        let (dir, first) = (self.shared.dir.clone(), info.clone());
        // Never closed: a permit always comes.
        let _permit = FIRST_WRITING.acquire().await;
        let written = tokio::task::spawn_blocking(move || store::write_meta_new(&dir, &first, prepared)).await;
        match written {
            Ok(Ok(())) => {}
            Ok(Err(e)) => tracing::warn!(session = %info.id, error = %e, "cannot write meta.json"),
            Err(e) => tracing::warn!(session = %info.id, error = %e, "cannot write meta.json"),
        }
        self.shared.wrote(n);
    }

    /// Waits until every info handed over so far is written (or failed).
    pub(crate) async fn flush(&mut self) {
        let target = self.shared.lock().queued;
        loop {
            // Registered before the count is read: no wake-up is missed.
            let told = self.shared.written.notified();
            tokio::pin!(told);
            told.as_mut().enable();
            if self.shared.lock().written >= target {
                return;
            }
            told.await;
        }
    }
}

impl Shared {
    fn lock(&self) -> std::sync::MutexGuard<'_, Slot> {
        // The slot is consistent after every statement: poison is ignored.
        self.slot.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// Notes that the infos up to number `n` are written, and tells
    /// whoever flushes.
    fn wrote(&self, n: u64) {
        {
            let mut slot = self.lock();
            slot.written = slot.written.max(n);
        }
        self.written.notify_waiters();
    }

    /// The blocking task: writes the latest info until none is left.
    fn write_latest(&self) {
        loop {
            let Some(latest) = ({
                let mut slot = self.lock();
                let latest = slot.latest.take();
                slot.writing = latest.is_some();
                latest
            }) else {
                return;
            };
            let (n, info) = *latest;
            if let Err(e) = store::write_meta(&self.dir, &info) {
                tracing::warn!(session = %info.id, error = %e, "cannot write meta.json");
            }
            self.wrote(n);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn info(cols: u16) -> SessionInfo {
        SessionInfo {
            cols,
            ..crate::session::test_info("meta")
        }
    }

    /// Many infos handed over quickly: after a flush the file holds the
    /// last one, whatever was coalesced.
    #[tokio::test(flavor = "multi_thread", worker_threads = 2)]
    async fn the_latest_info_is_on_disk_after_a_flush() {
        let dir = tempfile::tempdir().expect("tempdir");
        let mut writer = MetaWriter::new(dir.path().to_owned());
        for cols in 1..=500 {
            writer.write(&info(cols));
        }
        writer.flush().await;
        assert_eq!(store::read_meta(dir.path()).expect("meta").cols, 500);
        assert!(!dir.path().join("meta.json.tmp").exists());
        writer.write(&info(7));
        writer.flush().await;
        assert_eq!(store::read_meta(dir.path()).expect("meta").cols, 7);
    }
}
