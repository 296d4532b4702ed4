//! Spare session directories, made ahead of need so that creating a
//! session makes no file.
//!
//! A new session needs a directory and three files (`meta.json` and its
//! first segment's `.out` and `.idx`). Making a file allocates an inode,
//! and on ext4 without a journal (`/` on the benchmark's machines) the
//! allocator skips every free inode of the group deleted in the last
//! minute or more (`recently_deleted`), looking each up in the buffer
//! cache: after a busy while of deletes in the same place (other sessions,
//! tests, builds) one allocation took about 2.5 ms of CPU, ten times what
//! the rest of a create costs, and it was 64 % of the server's CPU while
//! opening sessions. So a pool of spare directories, each already holding
//! the three files (empty), is kept in `DATA_DIR/spare/<n>`, filled by a
//! thread of its own in `SCHED_IDLE` (it runs only on an idle CPU, waits
//! while a burst of creates takes spares, and exits once the pool is
//! full); a create renames one to `sessions/<id>.<epoch>` (no inode
//! allocated) and opens its files, and only makes them when the pool is
//! empty.
//!
//! Spares hold nothing of any session: a server adopts those it finds at
//! start, and loading never looks at them. A crash between the rename and
//! the first `meta.json` leaves a session directory with an empty
//! `meta.json`, which loading skips like any torn record: that is a
//! session whose creation was never answered.

use std::fs::{self, File};
use std::io;
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::segment_name;

/// The directory in the pool's where spares are made (its name is not a
/// number: never taken for a spare).
const STAGING: &str = "new";

/// How long creates must pause before spares are made again (unless the
/// pool is low).
const QUIET: Duration = Duration::from_millis(200);

/// The files a spare holds, empty: a new session's `meta.json` and its
/// first segment's files.
fn spare_files() -> [String; 3] {
    ["meta.json".to_owned(), segment_name(0, "out"), segment_name(0, "idx")]
}

/// The pool of spare session directories of one data dir.
#[derive(Debug)]
pub struct Spares {
    dir: PathBuf,
    /// How many spares are kept ready.
    target: usize,
    /// How long creates must pause before more spares are made ([`QUIET`]).
    quiet: Duration,
    state: Mutex<State>,
    /// Wakes the thread waiting for creates to pause when one takes a spare
    /// (the pool may now be low).
    taken: Condvar,
}

#[derive(Debug, Default)]
struct State {
    /// Numbers of the spares ready in `dir`.
    ready: Vec<u64>,
    /// The number the next spare made gets.
    next: u64,
    /// A background task is making spares.
    filling: bool,
    /// No spare can be used (another file system): none is made.
    disabled: bool,
    /// When a create last took a spare.
    last_take: Option<Instant>,
}

impl Spares {
    /// The pool in `dir` (created if missing), keeping `target` spares
    /// ready, with the spares a server left there adopted. Nothing is made
    /// until [`Spares::fill`].
    pub fn open(dir: PathBuf, target: usize) -> io::Result<Arc<Spares>> {
        if target == 0 {
            return Ok(Spares::none(dir));
        }
        // A spare half made when a server stopped is made again.
        let staging = dir.join(STAGING);
        if staging.exists() {
            fs::remove_dir_all(&staging)?;
        }
        fs::create_dir_all(&staging)?;
        spread(&staging);
        let mut ready: Vec<u64> = fs::read_dir(&dir)?
            .filter_map(|e| e.ok())
            .filter_map(|e| e.file_name().to_str()?.parse().ok())
            .collect();
        ready.sort_unstable();
        let next = ready.last().map_or(0, |n| n + 1);
        Ok(Arc::new(Spares {
            dir,
            target,
            quiet: QUIET,
            taken: Condvar::new(),
            state: Mutex::new(State {
                ready,
                next,
                filling: false,
                disabled: false,
                last_take: None,
            }),
        }))
    }

    /// A pool that is never filled and touches no disk: creates make their
    /// own files.
    pub fn none(dir: PathBuf) -> Arc<Spares> {
        Arc::new(Spares {
            dir,
            target: 0,
            quiet: QUIET,
            taken: Condvar::new(),
            state: Mutex::new(State::default()),
        })
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        // The state is consistent after every statement: poison is ignored.
        self.state.lock().unwrap_or_else(|p| p.into_inner())
    }

    /// How many spares are ready.
    pub fn ready(&self) -> usize {
        self.lock().ready.len()
    }

    /// Renames a spare to `dest` (which must not exist) and starts making
    /// another; `false` when none is ready or the rename failed (the
    /// caller makes the directory and its files itself). Blocking, but a
    /// rename: microseconds.
    pub fn take_into(self: &Arc<Self>, dest: &Path) -> bool {
        let Some(n) = ({
            let mut state = self.lock();
            state.last_take = Some(Instant::now());
            let taken = state.ready.pop();
            if state.ready.len() <= self.target / 4 {
                // Low: the refill waiting for a pause goes on at once.
                self.taken.notify_one();
            }
            taken
        }) else {
            self.fill();
            return false;
        };
        let spare = self.dir.join(n.to_string());
        let moved = fs::rename(&spare, dest);
        if let Err(e) = &moved {
            tracing::warn!(spare = n, error = %e, "cannot use a spare session directory");
            // Not left behind for the next start to adopt and fail on again.
            let _ = fs::remove_dir_all(&spare);
            if e.kind() == io::ErrorKind::CrossesDevices {
                // Sessions and spares on different file systems: no spare
                // can ever be used, so none is made again.
                self.lock().disabled = true;
            }
        }
        self.fill();
        moved.is_ok()
    }

    /// Starts making spares on a background thread until `target` are
    /// ready, unless that is already under way.
    pub fn fill(self: &Arc<Self>) {
        {
            let mut state = self.lock();
            if state.filling || state.disabled || state.ready.len() >= self.target {
                return;
            }
            state.filling = true;
        }
        let spares = self.clone();
        let spawned = std::thread::Builder::new()
            .name("termstream-spare".into())
            .spawn(move || {
                idle_priority();
                spares.fill_now();
            });
        if let Err(e) = spawned {
            self.lock().filling = false;
            tracing::warn!(error = %e, "cannot start the thread that makes spare session directories");
        }
    }

    /// Makes spares until `target` are ready or one fails (the creates
    /// then make their own files, as without a pool).
    fn fill_now(&self) {
        loop {
            let n = {
                let mut state = self.lock();
                loop {
                    if state.ready.len() >= self.target {
                        state.filling = false;
                        return;
                    }
                    let Some(wait) = self.wait_for_quiet(&state) else { break };
                    state = self
                        .taken
                        .wait_timeout(state, wait)
                        .unwrap_or_else(|p| p.into_inner())
                        .0;
                }
                state.next += 1;
                state.next - 1
            };
            let made = self.make(n);
            let mut state = self.lock();
            match made {
                Ok(()) => state.ready.push(n),
                Err(e) => {
                    state.filling = false;
                    drop(state);
                    tracing::warn!(dir = %self.dir.display(), error = %e, "cannot make a spare session directory");
                    let _ = fs::remove_dir_all(self.dir.join(STAGING).join(n.to_string()));
                    return;
                }
            }
        }
    }

    /// How long to wait before making the next spare: while creates are
    /// taking spares and the pool holds more than a quarter of its target,
    /// none is made until they pause for `quiet`.
    ///
    /// Making a spare is a few file system calls that run in the kernel
    /// without a break (the inode allocator scans every block group), and
    /// a kernel without preemption does not hand a CPU to a woken task
    /// until such a call ends, whatever the caller's priority: during a
    /// burst of creates, the refill at idle priority still delayed them.
    ///
    /// A steady trickle of creates (one every < `quiet`) keeps the pool at
    /// a quarter of its target, refilled as it goes, like a long burst.
    fn wait_for_quiet(&self, state: &State) -> Option<Duration> {
        quiet_wait(
            state.ready.len(),
            self.target,
            state.last_take.map(|t| t.elapsed()),
            self.quiet,
        )
    }

    /// Makes spare `n`: its directory and empty files.
    ///
    /// It is made in `new/` and then renamed into the pool: a directory is
    /// locked while an entry is made in it, for as long as the allocation
    /// takes, and a create renaming a spare out of the pool must not wait
    /// for that (least of all for a thread at idle priority).
    fn make(&self, n: u64) -> io::Result<()> {
        let name = n.to_string();
        let staged = self.dir.join(STAGING).join(&name);
        fs::create_dir(&staged)?;
        for file in spare_files() {
            File::create(staged.join(file))?;
        }
        fs::rename(&staged, self.dir.join(&name))
    }
}

/// [`Spares::wait_for_quiet`] of a pool with `ready` of `target` spares,
/// whose last take was `since_take` ago.
fn quiet_wait(ready: usize, target: usize, since_take: Option<Duration>, quiet: Duration) -> Option<Duration> {
    if ready <= target / 4 {
        return None;
    }
    let since = since_take?;
    (since < quiet).then(|| quiet - since)
}

/// Marks `dir` as the top of a directory hierarchy (`chattr +T`): ext4
/// then places each directory made in it in a block group of its own
/// choosing, one with many free inodes and few directories (Orlov), rather
/// than next to its parent, and the spare's files follow their directory.
/// The data dir's own group is where sessions (and, on a shared disk,
/// others) delete files: there every allocation skips the inodes freed in
/// the last minute; in a quiet group it does not (2.9 ms for a spare's
/// four inodes in a busy group, 0.6 ms spread). A hint: ignored where the
/// file system has no such flag. The registry marks `sessions/` too, for
/// the creates that find the pool empty.
pub fn spread(dir: &Path) {
    let Ok(file) = File::open(dir) else { return };
    if let Ok(flags) = rustix::fs::ioctl_getflags(&file) {
        let _ = rustix::fs::ioctl_setflags(&file, flags | rustix::fs::IFlags::TOPDIR);
    }
}

/// Puts the calling thread in `SCHED_IDLE`: it runs only on a CPU that
/// nothing else wants, so making spares never takes CPU from the creates
/// (and sessions) it works for. Failing leaves it at normal priority.
fn idle_priority() {
    let param = libc::sched_param { sched_priority: 0 };
    // SAFETY: `param` is a valid sched_param; pid 0 is the calling thread.
    let _ = unsafe { libc::sched_setscheduler(0, libc::SCHED_IDLE, &param) };
}

#[cfg(test)]
mod tests {
    use super::*;

    fn wait_ready(spares: &Spares, n: usize) {
        let deadline = Instant::now() + Duration::from_secs(10);
        while spares.ready() < n {
            assert!(Instant::now() < deadline, "{} of {n} spares ready", spares.ready());
            std::thread::sleep(Duration::from_millis(5));
        }
    }

    /// The pool fills to its target in the background; a spare taken is a
    /// directory with the three empty files at its new name, and is made
    /// again.
    #[test]
    fn spares_are_made_taken_and_made_again() {
        let data = tempfile::tempdir().expect("tempdir");
        let spares = Spares::open(data.path().join("spare"), 3).expect("open");
        assert_eq!(spares.ready(), 0, "nothing is made before fill");
        spares.fill();
        wait_ready(&spares, 3);
        let dest = data.path().join("s.1");
        assert!(spares.take_into(&dest));
        let mut names: Vec<String> = fs::read_dir(&dest)
            .expect("dest")
            .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
            .collect();
        names.sort();
        let mut want = spare_files().to_vec();
        want.sort();
        assert_eq!(names, want);
        assert!(
            fs::read_dir(&dest)
                .expect("dest")
                .all(|e| e.expect("entry").metadata().expect("meta").len() == 0)
        );
        wait_ready(&spares, 3);
        assert_eq!(
            fs::read_dir(data.path().join("spare")).expect("spare").count(),
            3 + 1,
            "and new/"
        );
        assert_eq!(fs::read_dir(data.path().join("spare/new")).expect("new").count(), 0);
    }

    /// A pool of `target` spares, filled (on this thread), whose refill
    /// waits `quiet` after a take.
    fn filled(data: &Path, target: usize, quiet: Duration) -> Arc<Spares> {
        let mut spares = Spares::open(data.join("spare"), target).expect("open");
        Arc::get_mut(&mut spares).expect("one owner").quiet = quiet;
        spares.fill_now();
        assert_eq!(spares.ready(), target);
        spares
    }

    /// While creates take spares, none is made until they pause for
    /// `quiet`, unless the pool is down to a quarter of its target; a pool
    /// never taken from fills at once.
    #[test]
    fn the_refill_waits_for_creates_to_pause_unless_the_pool_is_low() {
        let quiet = Duration::from_millis(200);
        let ms = Duration::from_millis;
        assert_eq!(quiet_wait(5, 8, None, quiet), None, "never taken from");
        assert_eq!(quiet_wait(5, 8, Some(ms(50)), quiet), Some(ms(150)), "a take 50 ms ago");
        assert_eq!(quiet_wait(5, 8, Some(ms(200)), quiet), None, "creates paused");
        assert_eq!(quiet_wait(2, 8, Some(ms(0)), quiet), None, "down to a quarter");
        assert_eq!(quiet_wait(3, 8, Some(ms(0)), quiet), Some(quiet), "above a quarter");
        assert_eq!(
            quiet_wait(1, 3, Some(ms(0)), quiet),
            Some(quiet),
            "a small pool waits while it has any"
        );
        assert_eq!(quiet_wait(0, 3, Some(ms(0)), quiet), None, "and not when it is empty");
    }

    /// Once creates pause, the pool fills again.
    #[test]
    fn spares_are_made_again_once_creates_pause() {
        let data = tempfile::tempdir().expect("tempdir");
        let spares = filled(data.path(), 8, Duration::from_millis(50));
        assert!(spares.take_into(&data.path().join("s.1")));
        assert!(spares.take_into(&data.path().join("s.2")));
        wait_ready(&spares, 8);
    }

    /// A pool taken down to a quarter of its target is refilled during the
    /// burst: creates must not run out of spares.
    #[test]
    fn a_low_pool_is_refilled_during_a_burst() {
        let data = tempfile::tempdir().expect("tempdir");
        let spares = filled(data.path(), 8, Duration::from_secs(3600));
        assert!(spares.take_into(&data.path().join("s.first")));
        assert!(
            spares.wait_for_quiet(&spares.lock()).is_some(),
            "a take is seen: the refill waits while 7 of 8 are ready"
        );
        for i in 0..6 {
            assert!(spares.take_into(&data.path().join(format!("s.{i}"))));
        }
        wait_ready(&spares, 3);
    }

    /// A new pool on the same dir adopts the spares left there, and numbers
    /// new ones past them.
    #[test]
    fn spares_left_by_a_server_are_adopted() {
        let data = tempfile::tempdir().expect("tempdir");
        let first = Spares::open(data.path().join("spare"), 2).expect("open");
        first.fill();
        wait_ready(&first, 2);
        drop(first);
        let again = Spares::open(data.path().join("spare"), 3).expect("open");
        assert_eq!(again.ready(), 2);
        again.fill();
        wait_ready(&again, 3);
        assert!(data.path().join("spare/2").is_dir(), "numbered past the adopted ones");
    }

    /// The thread that makes spares runs in `SCHED_IDLE`; its caller's
    /// policy is untouched.
    #[test]
    fn spares_are_made_at_idle_priority() {
        // SAFETY: sched_getscheduler(0) only reads the calling thread's policy.
        let policy = || unsafe { libc::sched_getscheduler(0) };
        let before = policy();
        let inside = std::thread::spawn(move || {
            idle_priority();
            policy()
        })
        .join()
        .expect("joined");
        assert_eq!(inside, libc::SCHED_IDLE);
        assert_eq!(policy(), before);
    }

    /// A spare half made when a server stopped (in `new/`) is removed at
    /// open, and never taken.
    #[test]
    fn a_half_made_spare_is_removed() {
        let data = tempfile::tempdir().expect("tempdir");
        let half = data.path().join("spare/new/7");
        fs::create_dir_all(&half).expect("mkdir");
        File::create(half.join("meta.json")).expect("file");
        let spares = Spares::open(data.path().join("spare"), 1).expect("open");
        assert_eq!(spares.ready(), 0);
        assert!(!half.exists());
        assert!(!spares.take_into(&data.path().join("s.1")));
    }

    /// Spares are made under a directory marked as a top of hierarchy,
    /// where the file system has the flag (ext4 has; tmpfs has not).
    #[test]
    fn spares_are_made_under_a_top_directory() {
        let data = tempfile::tempdir().expect("tempdir");
        // Where the flag cannot be set (tmpfs, btrfs, xfs), there is
        // nothing to check.
        let probe_dir = data.path().join("probe");
        fs::create_dir(&probe_dir).expect("probe");
        spread(&probe_dir);
        let probe = File::open(&probe_dir).expect("open");
        if !rustix::fs::ioctl_getflags(&probe).is_ok_and(|f| f.contains(rustix::fs::IFlags::TOPDIR)) {
            eprintln!("skipped: no top-directory flag on this file system");
            return;
        }
        let _spares = Spares::open(data.path().join("spare"), 1).expect("open");
        let staging = File::open(data.path().join("spare").join(STAGING)).expect("staging");
        let flags = rustix::fs::ioctl_getflags(&staging).expect("flags");
        assert!(flags.contains(rustix::fs::IFlags::TOPDIR), "{flags:?}");
    }

    /// With none ready, a take says so (the caller makes its own files);
    /// a target of 0 makes nothing.
    #[test]
    fn an_empty_pool_gives_nothing() {
        let data = tempfile::tempdir().expect("tempdir");
        let spares = Spares::open(data.path().join("spare"), 0).expect("open");
        assert!(!spares.take_into(&data.path().join("s.1")));
        spares.fill();
        assert_eq!(spares.ready(), 0);
        assert!(!data.path().join("s.1").exists());
        assert!(!data.path().join("spare").exists(), "a target of 0 touches no disk");
    }

    /// A spare whose rename fails is removed, not left for every later
    /// start to adopt, and the pool goes on.
    #[test]
    fn a_spare_that_cannot_be_renamed_is_removed() {
        let data = tempfile::tempdir().expect("tempdir");
        let dir = data.path().join("spare");
        let spares = Spares::open(dir.clone(), 2).expect("open");
        spares.fill();
        wait_ready(&spares, 2);
        assert!(!spares.take_into(&data.path().join("missing/s.1")));
        wait_ready(&spares, 2);
        let count = fs::read_dir(&dir).expect("pool").count();
        assert_eq!(count, 2 + 1, "two spares and new/, nothing left behind");
    }
}
