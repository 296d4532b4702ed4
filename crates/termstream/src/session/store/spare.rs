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
//! the three files (the segment's empty, `meta.json` holding the room for
//! the first record), is kept in `DATA_DIR/spare/<n>`, filled by a
//! thread of its own in `SCHED_IDLE` (it runs only on an idle CPU, waits
//! while a burst of creates takes spares, and exits once the pool is
//! full); a create renames one to `sessions/<id>.<epoch>` (no inode
//! allocated) and opens its files, and only makes them when the pool is
//! empty.
//!
//! Spares hold nothing of any session: a server adopts those it finds at
//! start (only real spares: see [`usable`]), and loading never looks at
//! them. A crash between the rename and the first `meta.json` leaves a
//! session directory with a blank `meta.json`, which loading skips like
//! any torn record: that is a session whose creation was never answered.

use std::collections::HashSet;
use std::fs::{self, File};
use std::io;
use std::os::unix::fs::{DirEntryExt, MetadataExt};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Condvar, Mutex};
use std::time::{Duration, Instant};

use super::{FIRST_RECORD_ROOM, is_blank_meta, make_first_record_room, segment_name};

/// The directory in the pool's where spares are made (its name is not a
/// number: never taken for a spare).
const STAGING: &str = "new";

/// How long creates must pause before spares are made again (unless the
/// pool is low).
const QUIET: Duration = Duration::from_millis(200);

/// The files a spare holds: a new session's `meta.json` (blank) and its
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
    /// The number of the first spare this server made: those below were
    /// adopted at start (made by an earlier server, which may not have
    /// synced them), and a create from one makes its `meta.json` anew and
    /// syncs its directory.
    first_made: u64,
    /// The number the next spare made gets.
    next: u64,
    /// A background task is making spares.
    filling: bool,
    /// No spare can be used (another file system): none is made.
    disabled: bool,
    /// When a create last took a spare.
    last_take: Option<Instant>,
}

/// A spare [`Spares::take_into`] renamed into place.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Taken {
    /// This server made it and synced it before offering it: its entries
    /// are on disk, and its `meta.json` holds the room for a first record
    /// (`store::write_meta_new`). Spares adopted at start are not known to
    /// be synced, and may be an older server's, with an empty `meta.json`.
    pub prepared: bool,
}

impl Spares {
    /// The pool in `dir` (created if missing), keeping `target` spares
    /// ready, with the spares a server left there adopted. Nothing is made
    /// until [`Spares::fill`].
    pub fn open(dir: PathBuf, target: usize) -> io::Result<Arc<Spares>> {
        if target == 0 {
            return Ok(Spares::none(dir));
        }
        // What a crash may have left in the pool besides spares: see
        // [`usable`]. Half-made spares (in `new/`) that are usable are
        // removed; nothing else is, and no number found is used again.
        let sessions = session_inodes(&dir.with_file_name("sessions"));
        let mut kept = Vec::new();
        let staging = dir.join(STAGING);
        fs::create_dir_all(&staging)?;
        let half_made = numbered(&staging)?;
        for &n in &half_made {
            let path = staging.join(n.to_string());
            if !usable(&path, &sessions) || fs::remove_dir_all(&path).is_err() {
                kept.push(path);
            }
        }
        spread(&staging);
        let found = numbered(&dir)?;
        let next = found.iter().chain(&half_made).max().map_or(0, |n| n + 1);
        let mut ready = Vec::new();
        for n in found {
            let path = dir.join(n.to_string());
            if usable(&path, &sessions) {
                ready.push(n);
            } else {
                kept.push(path);
            }
        }
        if let Some(first) = kept.first() {
            tracing::warn!(
                count = kept.len(),
                first = %first.display(),
                "entries of the spare pool that are not spares (a session's directory still named here after a \
                 crash of the machine?) are left alone; a file system check, or removing them by hand once \
                 their sessions are gone, clears them"
            );
        }
        ready.sort_unstable();
        Ok(Arc::new(Spares {
            dir,
            target,
            quiet: QUIET,
            taken: Condvar::new(),
            state: Mutex::new(State {
                ready,
                first_made: next,
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
    /// another; `None` when none is ready or the rename failed (the
    /// caller makes the directory and its files itself). Blocking, but a
    /// rename: microseconds.
    pub fn take_into(self: &Arc<Self>, dest: &Path) -> Option<Taken> {
        let Some((n, prepared)) = ({
            let mut state = self.lock();
            state.last_take = Some(Instant::now());
            let taken = state.ready.pop();
            let taken = taken.map(|n| (n, n >= state.first_made));
            if state.ready.len() <= self.target / 4 {
                // Low: the refill waiting for a pause goes on at once.
                self.taken.notify_one();
            }
            taken
        }) else {
            self.fill();
            return None;
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
        moved.ok().map(|()| Taken { prepared })
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

    /// Makes spare `n`: its directory and files.
    ///
    /// It is made in `new/` and then renamed into the pool: a directory is
    /// locked while an entry is made in it, for as long as the allocation
    /// takes, and a create renaming a spare out of the pool must not wait
    /// for that (least of all for a thread at idle priority).
    fn make(&self, n: u64) -> io::Result<()> {
        let name = n.to_string();
        let staged = self.dir.join(STAGING).join(&name);
        fs::create_dir(&staged)?;
        let [meta, out, idx] = spare_files();
        File::create(staged.join(out))?;
        File::create(staged.join(idx))?;
        // The room for the session's first record, on disk: the create
        // writes over it in place, and its sync writes no allocation (see
        // `store::FIRST_RECORD_ROOM`). Made last: on ext4 without a
        // journal this sync writes the new directory (and `new/`) too, with
        // every entry in it, and the directory's own sync below then finds
        // little left to write.
        make_first_record_room(&mut File::create(staged.join(meta))?)?;
        // Its entries durable before it is offered, as a create without a
        // spare makes them: a session made from it then syncs only its
        // `meta.json` and its entry in `sessions/` (`store::write_meta_new`),
        // one fsync fewer on every create, here off their way. On ext4
        // without a journal this also writes `new/` with the spare's name
        // in it (a new directory's fsync syncs its parent)...
        File::open(&staged)?.sync_all()?;
        let pooled = self.dir.join(&name);
        fs::rename(&staged, &pooled)?;
        // ...so `new/` is synced again once the name has left it: a session
        // made from this spare is not also named in `new/` on disk, where
        // the next start would find a half-made spare. (What may still
        // linger after a crash, here or in the pool itself, is left alone
        // by [`usable`]'s check against `sessions/`.)
        let synced = File::open(self.dir.join(STAGING)).and_then(|d| d.sync_all());
        if synced.is_err() {
            // Not offered, nor left in the pool for the next start: no
            // create can have taken it yet.
            let _ = fs::remove_dir_all(&pooled);
        }
        synced
    }
}

/// The numbered entries of `dir` (spares, ready or half made, and
/// whatever else a crash left there: see [`usable`]).
fn numbered(dir: &Path) -> io::Result<Vec<u64>> {
    Ok(fs::read_dir(dir)?
        .filter_map(|e| e.ok())
        .filter_map(|e| e.file_name().to_str()?.parse().ok())
        .collect())
}

/// The inode numbers of the entries of `sessions` (none if it cannot be
/// read): the session directories, by identity rather than by name.
fn session_inodes(sessions: &Path) -> HashSet<u64> {
    fs::read_dir(sessions)
        .into_iter()
        .flatten()
        .filter_map(|e| Some(e.ok()?.ino()))
        .collect()
}

/// Whether the pool's entry `dir` may be used (adopted, or removed if half
/// made): it is not a session's directory, and holds nothing but a spare's
/// files, blank.
///
/// A create renames a spare into `sessions/` and syncs `sessions/`, not the
/// pool: until the pool's directory is written back, the disk still names
/// the session's directory in the pool too. A machine that crashed in
/// between comes back with one directory under both names (until a file
/// system check clears the extra one). Adopted, a create would take it
/// again and write over the session's record and log; removed, the
/// session's files would go. So an entry that is a session's directory
/// (the same inode as an entry of `sessions/`) is never used, and neither
/// is one holding anything but a spare's blank files (a session's
/// directory whose other name is gone).
fn usable(dir: &Path, sessions: &HashSet<u64>) -> bool {
    let Ok(meta) = fs::symlink_metadata(dir) else {
        return false;
    };
    if !meta.is_dir() || sessions.contains(&meta.ino()) {
        return false;
    }
    let names = spare_files();
    let Ok(entries) = fs::read_dir(dir) else {
        return false;
    };
    // An entry that cannot be read is not known to be a spare's.
    entries.into_iter().all(|e| {
        let Ok(e) = e else { return false };
        let Some(name) = names.iter().find(|n| e.file_name() == n.as_str()) else {
            return false;
        };
        if name == "meta.json" {
            // The room for a first record, not a record.
            e.metadata()
                .is_ok_and(|m| m.is_file() && m.len() <= FIRST_RECORD_ROOM as u64)
                && fs::read(e.path()).is_ok_and(|b| is_blank_meta(&b))
        } else {
            e.metadata().is_ok_and(|m| m.is_file() && m.len() == 0)
        }
    })
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
mod tests;
