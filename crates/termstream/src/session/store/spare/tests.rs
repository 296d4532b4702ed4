//! Tests of the spare pool: made, taken, adopted, cleaned up.

use super::*;

fn wait_ready(spares: &Spares, n: usize) {
    let deadline = Instant::now() + Duration::from_secs(10);
    while spares.ready() < n {
        assert!(Instant::now() < deadline, "{} of {n} spares ready", spares.ready());
        std::thread::sleep(Duration::from_millis(5));
    }
}

/// The pool fills to its target in the background; a spare taken is a
/// directory with the three files at its new name (the segment's empty,
/// `meta.json` the room for a first record), and is made again.
#[test]
fn spares_are_made_taken_and_made_again() {
    let data = tempfile::tempdir().expect("tempdir");
    let spares = Spares::open(data.path().join("spare"), 3).expect("open");
    assert_eq!(spares.ready(), 0, "nothing is made before fill");
    spares.fill();
    wait_ready(&spares, 3);
    let dest = data.path().join("s.1");
    assert!(spares.take_into(&dest).is_some());
    let mut names: Vec<String> = fs::read_dir(&dest)
        .expect("dest")
        .map(|e| e.expect("entry").file_name().into_string().expect("utf-8"))
        .collect();
    names.sort();
    let mut want = spare_files().to_vec();
    want.sort();
    assert_eq!(names, want);
    // The segment's files empty; `meta.json` the room for the first
    // record, written.
    for file in [segment_name(0, "out"), segment_name(0, "idx")] {
        assert_eq!(fs::metadata(dest.join(&file)).expect("meta").len(), 0, "{file}");
    }
    assert_eq!(
        fs::read(dest.join("meta.json")).expect("meta.json"),
        [0; FIRST_RECORD_ROOM]
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
    assert!(spares.take_into(&data.path().join("s.1")).is_some());
    assert!(spares.take_into(&data.path().join("s.2")).is_some());
    wait_ready(&spares, 8);
}

/// A pool taken down to a quarter of its target is refilled during the
/// burst: creates must not run out of spares.
#[test]
fn a_low_pool_is_refilled_during_a_burst() {
    let data = tempfile::tempdir().expect("tempdir");
    let spares = filled(data.path(), 8, Duration::from_secs(3600));
    assert!(spares.take_into(&data.path().join("s.first")).is_some());
    assert!(
        spares.wait_for_quiet(&spares.lock()).is_some(),
        "a take is seen: the refill waits while 7 of 8 are ready"
    );
    for i in 0..6 {
        assert!(spares.take_into(&data.path().join(format!("s.{i}"))).is_some());
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
    let mut again = Spares::open(data.path().join("spare"), 3).expect("open");
    // No refill between the takes below.
    Arc::get_mut(&mut again).expect("one owner").quiet = Duration::from_secs(3600);
    assert_eq!(again.ready(), 2);
    again.fill();
    wait_ready(&again, 3);
    assert!(data.path().join("spare/2").is_dir(), "numbered past the adopted ones");
    // The one made here comes first, its entries synced; the adopted ones
    // (which an earlier server may not have synced) are said not to be.
    let taken: Vec<bool> = (0..3)
        .map(|i| {
            let t = again.take_into(&data.path().join(format!("s.{i}"))).expect("taken");
            t.prepared
        })
        .collect();
    assert_eq!(taken, [true, false, false]);
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
    assert!(spares.take_into(&data.path().join("s.1")).is_none());
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
    assert!(spares.take_into(&data.path().join("s.1")).is_none());
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
    assert!(spares.take_into(&data.path().join("missing/s.1")).is_none());
    wait_ready(&spares, 2);
    let count = fs::read_dir(&dir).expect("pool").count();
    assert_eq!(count, 2 + 1, "two spares and new/, nothing left behind");
}

/// A machine that crashed before the pool's directory was written back can
/// come back with a session's directory also named in the pool (or in
/// `new/`): one that holds the session's files is neither adopted nor
/// removed, and new spares are numbered past it.
#[test]
fn a_sessions_directory_left_in_the_pool_is_left_alone() {
    let data = tempfile::tempdir().expect("tempdir");
    let pool = data.path().join("spare");
    for dir in [pool.join("4"), pool.join("new/9")] {
        fs::create_dir_all(&dir).expect("mkdir");
        for file in spare_files() {
            File::create(dir.join(file)).expect("file");
        }
        fs::write(dir.join("meta.json"), b"{\"id\":\"kept\"}").expect("record");
    }
    let blank_one = pool.join("2");
    fs::create_dir_all(&blank_one).expect("mkdir");
    for file in spare_files() {
        File::create(blank_one.join(file)).expect("file");
    }
    let spares = Spares::open(pool.clone(), 3).expect("open");
    assert_eq!(spares.ready(), 1, "only the blank spare is adopted");
    assert!(spares.take_into(&data.path().join("s.1")).is_some());
    assert!(!pool.join("2").exists(), "the blank spare was the one taken");
    wait_ready(&spares, 3);
    for n in [10, 11, 12] {
        assert!(pool.join(n.to_string()).is_dir(), "spare {n} numbered past those found");
    }
    for dir in [pool.join("4"), pool.join("new/9")] {
        assert_eq!(
            fs::read(dir.join("meta.json")).expect("still there"),
            b"{\"id\":\"kept\"}"
        );
    }
}

/// A pool entry that is a session's directory (the same inode as an entry
/// of `sessions/`), blank as a spare though it is (a crash before its first
/// record), is not usable; the same directory with no such other name is.
#[test]
fn a_pool_entry_that_is_a_sessions_directory_is_not_usable() {
    use std::os::unix::fs::MetadataExt;
    let data = tempfile::tempdir().expect("tempdir");
    let dir = data.path().join("spare/3");
    fs::create_dir_all(&dir).expect("mkdir");
    for file in spare_files() {
        File::create(dir.join(file)).expect("file");
    }
    let ino = fs::metadata(&dir).expect("metadata").ino();
    assert!(usable(&dir, &HashSet::new()));
    assert!(!usable(&dir, &HashSet::from([ino])));
    // And the inodes are those of `sessions/`'s entries.
    let sessions = data.path().join("sessions");
    fs::create_dir_all(sessions.join("s.1")).expect("mkdir");
    let session_ino = fs::metadata(sessions.join("s.1")).expect("metadata").ino();
    assert_eq!(session_inodes(&sessions), HashSet::from([session_ino]));
}

/// A spare's `meta.json` may be empty (an older server's spare), the room
/// for a first record, or that room cut short or never written back (a
/// crash while the spare was made): all usable. A record, whole or torn,
/// is not; nor is a room grown past its size.
#[test]
fn a_spare_meta_json_is_blank_or_not_usable() {
    let data = tempfile::tempdir().expect("tempdir");
    let room = vec![0; FIRST_RECORD_ROOM];
    let mut record = b"{\"id\":\"kept\"}".to_vec();
    record.resize(FIRST_RECORD_ROOM, b' ');
    let mut longer = room.clone();
    longer.push(0);
    let cases: [(&[u8], bool); 7] = [
        (b"", true),
        (&room, true),
        (&room[..100], true),
        (&[b' '; 512], true),
        (&record, false),
        (b"{", false),
        (&longer, false),
    ];
    for (i, (meta, want)) in cases.into_iter().enumerate() {
        let dir = data.path().join(i.to_string());
        fs::create_dir_all(&dir).expect("mkdir");
        for file in spare_files() {
            File::create(dir.join(file)).expect("file");
        }
        fs::write(dir.join("meta.json"), meta).expect("meta.json");
        assert_eq!(usable(&dir, &HashSet::new()), want, "case {i}");
    }
}
