//! Each session in its own cgroup (cgroup v2), ended with `cgroup.kill`.
//!
//! A program can leave its process group and session (`setsid`) and drop
//! the marker variable (`env -i`), but it cannot leave its cgroup without
//! write access to a common ancestor's `cgroup.procs`. So where the server
//! may create cgroups (a writable cgroup v2 hierarchy with `cgroup.kill`,
//! Linux 5.14 or later: as root, or in a subtree systemd delegated to the
//! service), each session's program is put in `<own>/termstream-sessions/<epoch>`
//! before it runs: the child is made in that cgroup (`clone3` with
//! `CLONE_INTO_CGROUP`, through a descriptor of its directory), or, where
//! `clone3` is refused, writes itself into its `cgroup.procs` between the
//! clone and exec; so no process of the session ever runs outside it. Ending the session writes `1` to `cgroup.kill`, which SIGKILLs every
//! process in it at once; once it is empty the directory is removed.
//!
//! The path depends only on the server's own cgroup and the session's
//! epoch, so a server restarted after a crash finds the cgroups of its
//! `lost` sessions and ends what still runs there.
//!
//! Where no such hierarchy is found (or `cgroup = "off"`), sessions are
//! ended by the process scan of [`super::process`] instead.

use std::io;
use std::os::fd::{BorrowedFd, OwnedFd};
use std::path::{Path, PathBuf};
use std::time::Duration;

use rustix::fs::{Access, Mode, OFlags};
use rustix::process::Signal;
use serde::{Deserialize, Serialize};
use termstream_proto::Epoch;

/// Whether sessions get cgroups.
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(rename_all = "lowercase")]
pub enum CgroupMode {
    /// Cgroups where the server can create them, else the process scan.
    #[default]
    Auto,
    /// The process scan only.
    Off,
}

/// The folder under the server's own cgroup that holds its sessions'.
const SESSIONS_DIR: &str = "termstream-sessions";

/// How long removing a killed session's cgroup waits for it to empty.
const EMPTY_WAIT: Duration = Duration::from_secs(5);

/// Where this server's session cgroups live.
#[derive(Debug)]
pub struct Cgroups {
    base: PathBuf,
}

impl Cgroups {
    /// Finds a cgroup v2 hierarchy where this server may create and kill
    /// cgroups, under its own cgroup; the reason when there is none.
    pub fn detect() -> Result<Cgroups, String> {
        let own = own_cgroup_dir()?;
        let base = own.join(SESSIONS_DIR);
        if let Err(e) = std::fs::create_dir_all(&base) {
            return Err(format!("cannot create {}: {e}", base.display()));
        }
        if !base.join("cgroup.kill").exists() {
            return Err(format!("{} has no cgroup.kill (Linux 5.14 or later)", base.display()));
        }
        // Moving a process needs write access to the target's cgroup.procs
        // and to the common ancestor's (the server's own cgroup).
        for dir in [&own, &base] {
            let procs = dir.join("cgroup.procs");
            if rustix::fs::access(&procs, Access::WRITE_OK).is_err() {
                return Err(format!("{} is not writable", procs.display()));
            }
        }
        Ok(Cgroups { base })
    }

    /// The folder every session's cgroup is made in.
    pub fn base(&self) -> &Path {
        &self.base
    }

    /// The cgroup of the session with `epoch` (which may not exist).
    pub fn session(&self, epoch: Epoch) -> SessionCgroup {
        SessionCgroup {
            path: self.base.join(epoch.to_string()),
        }
    }

    /// Creates the cgroup of a new session.
    pub fn create(&self, epoch: Epoch) -> io::Result<SessionCgroup> {
        let cgroup = self.session(epoch);
        std::fs::create_dir(&cgroup.path)?;
        Ok(cgroup)
    }
}

/// The cgroup v2 hierarchy's mount point joined with this process's cgroup
/// path (from `/proc/self/mountinfo` and `/proc/self/cgroup`).
fn own_cgroup_dir() -> Result<PathBuf, String> {
    let cgroups = std::fs::read_to_string("/proc/self/cgroup").map_err(|e| format!("/proc/self/cgroup: {e}"))?;
    let mounts = std::fs::read_to_string("/proc/self/mountinfo").map_err(|e| format!("/proc/self/mountinfo: {e}"))?;
    let dir = cgroup_dir(&cgroups, &mounts)?;
    if !dir.is_dir() {
        return Err(format!("{} does not exist", dir.display()));
    }
    Ok(dir)
}

/// The directory of the cgroup v2 that `cgroups` (the text of
/// `/proc/PID/cgroup`) names, in the hierarchy `mountinfo` mounts.
fn cgroup_dir(cgroups: &str, mounts: &str) -> Result<PathBuf, String> {
    let own = cgroups
        .lines()
        .find_map(|l| l.strip_prefix("0::"))
        .ok_or("the process is in no cgroup v2 hierarchy")?;
    // Fields: id parent dev root mountpoint options [optional...] - fstype source superoptions
    let (root, mount) = mounts
        .lines()
        .find_map(|l| {
            let (left, right) = l.split_once(" - ")?;
            (right.split(' ').next()? == "cgroup2").then_some(())?;
            let mut f = left.split(' ');
            Some((f.nth(3)?.to_owned(), f.next()?.to_owned()))
        })
        .ok_or("no cgroup2 file system is mounted")?;
    let relative = own
        .strip_prefix(root.trim_end_matches('/'))
        .filter(|r| r.is_empty() || r.starts_with('/'))
        .ok_or_else(|| format!("the process's cgroup {own} is outside the mounted hierarchy {root}"))?;
    Ok(Path::new(&mount).join(relative.trim_start_matches('/')))
}

/// One session's cgroup.
#[derive(Debug, Clone)]
pub struct SessionCgroup {
    path: PathBuf,
}

impl SessionCgroup {
    pub fn path(&self) -> &Path {
        &self.path
    }

    /// Opens the cgroup's directory, which a child is started in
    /// (`CLONE_INTO_CGROUP`); closed on exec.
    pub fn open_dir(&self) -> io::Result<OwnedFd> {
        let fd = rustix::fs::open(
            &self.path,
            OFlags::DIRECTORY | OFlags::RDONLY | OFlags::CLOEXEC,
            Mode::empty(),
        )?;
        Ok(fd)
    }

    /// SIGKILLs every process in the cgroup at once. A cgroup that is gone
    /// is fine.
    pub fn kill(&self) {
        match std::fs::write(self.path.join("cgroup.kill"), b"1") {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(cgroup = %self.path.display(), error = %e, "cgroup.kill failed"),
        }
    }

    /// The processes in the cgroup now.
    fn members(&self) -> Vec<u32> {
        std::fs::read_to_string(self.path.join("cgroup.procs"))
            .map(|s| s.lines().filter_map(|l| l.parse().ok()).collect())
            .unwrap_or_default()
    }

    /// Sends `signal` to every process in the cgroup, through pidfds: a pid
    /// is signalled only if it is still listed in the cgroup after its pidfd
    /// was opened, so a pid reused by another program is never signalled.
    /// Blocking (reads the cgroup); call it under `spawn_blocking`.
    pub fn signal(&self, signal: Signal) {
        let opened: Vec<(u32, OwnedFd)> = self
            .members()
            .into_iter()
            .filter_map(|pid| Some((pid, super::process::pidfd(pid)?)))
            .collect();
        let still = self.members();
        for (pid, fd) in opened {
            if still.contains(&pid) {
                let _ = rustix::process::pidfd_send_signal(&fd, signal);
            }
        }
    }

    /// Whether a live process is in the cgroup (`populated 1` in
    /// `cgroup.events`); a cgroup that is gone is not.
    pub fn is_populated(&self) -> bool {
        std::fs::read_to_string(self.path.join("cgroup.events")).is_ok_and(|s| s.lines().any(|l| l == "populated 1"))
    }

    /// Kills what is left, waits (at most [`EMPTY_WAIT`]) until the cgroup
    /// is empty, and removes it.
    pub async fn remove(self) {
        self.kill();
        let deadline = tokio::time::Instant::now() + EMPTY_WAIT;
        while self.is_populated() && tokio::time::Instant::now() < deadline {
            tokio::time::sleep(Duration::from_millis(5)).await;
        }
        match std::fs::remove_dir(&self.path) {
            Ok(()) => {}
            Err(e) if e.kind() == io::ErrorKind::NotFound => {}
            Err(e) => tracing::warn!(cgroup = %self.path.display(), error = %e, "cannot remove a session's cgroup"),
        }
    }
}

/// Opens `cgroup.procs` of the cgroup whose directory is `dir`, for a child
/// to write itself into (see [`join_in_child`]); opened before the clone,
/// closed on exec.
pub fn open_procs(dir: &OwnedFd) -> io::Result<OwnedFd> {
    let fd = rustix::fs::openat(dir, "cgroup.procs", OFlags::WRONLY | OFlags::CLOEXEC, Mode::empty())?;
    Ok(fd)
}

/// In the child, between fork and exec: moves the calling process into the
/// cgroup whose `cgroup.procs` is `procs` (writing `0` means "me"). One
/// `write` system call, async-signal-safe.
pub fn join_in_child(procs: BorrowedFd<'_>) -> io::Result<()> {
    rustix::io::write(procs, b"0")?;
    Ok(())
}

#[cfg(test)]
mod tests {
    use super::*;

    const HYBRID: &str = "31 25 0:27 / /sys/fs/cgroup ro,nosuid - tmpfs tmpfs ro,mode=755
33 31 0:29 / /sys/fs/cgroup/memory rw,relatime - cgroup cgroup rw,memory
41 31 0:38 / /sys/fs/cgroup/unified rw,relatime shared:9 - cgroup2 cgroup2 rw
";

    #[test]
    fn finds_the_own_cgroup_in_a_hybrid_or_unified_hierarchy() {
        let own = "4:memory:/x\n0::/system.slice/termstream.service\n";
        assert_eq!(
            cgroup_dir(own, HYBRID).unwrap(),
            Path::new("/sys/fs/cgroup/unified/system.slice/termstream.service")
        );
        assert_eq!(
            cgroup_dir("0::/\n", HYBRID).unwrap(),
            Path::new("/sys/fs/cgroup/unified")
        );
        let unified = "30 24 0:26 / /sys/fs/cgroup rw - cgroup2 cgroup2 rw,nsdelegate\n";
        assert_eq!(
            cgroup_dir("0::/user.slice\n", unified).unwrap(),
            Path::new("/sys/fs/cgroup/user.slice")
        );
        // A mount of the subtree the process is in.
        let subtree = "30 24 0:26 /box /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert_eq!(
            cgroup_dir("0::/box/a\n", subtree).unwrap(),
            Path::new("/sys/fs/cgroup/a")
        );
    }

    #[test]
    fn no_usable_cgroup_v2_is_a_reason_not_a_path() {
        assert!(cgroup_dir("4:memory:/x\n", HYBRID).is_err());
        let v1_only = "33 31 0:29 / /sys/fs/cgroup/memory rw - cgroup cgroup rw,memory\n";
        assert!(cgroup_dir("0::/\n", v1_only).is_err());
        // A mount of a subtree the process is not in.
        let subtree = "30 24 0:26 /box /sys/fs/cgroup rw - cgroup2 cgroup2 rw\n";
        assert!(cgroup_dir("0::/mine\n", subtree).is_err());
        assert!(cgroup_dir("0::/boxes\n", subtree).is_err());
    }
}
