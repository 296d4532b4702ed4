//! What a session's program may do: the user it runs as (`run_as`) and its
//! resource limits (`rlimit_nproc`, `rlimit_as_bytes`, `rlimit_nofile`).
//!
//! The user is looked up once at start-up through the system's user
//! database (`getpwnam_r`/`getpwuid_r`, so NSS sources such as LDAP or
//! systemd's dynamic users count), by name or numeric uid, together with
//! its supplementary groups (`getgrouplist`, as `initgroups` would set
//! them). An unknown user stops the server from starting rather than every
//! spawn from working. The switch happens in the child between clone and
//! exec, in [`Confinement::apply_in_child`]: the limits first (as root),
//! then `setgroups`, `setgid`, `setuid`, all plain system calls on data
//! prepared before the clone. Limits are set soft = hard, so the program
//! cannot raise them. Switching users needs the server to run as root;
//! otherwise every spawn fails with a permission error.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
use nix::unistd::{Gid, Uid, User};
use rustix::process::{Resource, Rlimit};

use crate::config::Config;

/// A user to run programs as.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct RunAs {
    pub name: String,
    pub uid: u32,
    pub gid: u32,
    pub home: String,
    pub shell: String,
    /// Every group the user is in (the primary one included), as
    /// `getgrouplist` answers: the program's supplementary groups.
    pub groups: Vec<u32>,
}

/// How programs are confined.
#[derive(Debug, Clone, Default)]
pub struct Confinement {
    pub user: Option<RunAs>,
    /// (resource, value) pairs, set soft = hard in the child.
    pub limits: Vec<(Resource, u64)>,
}

impl Confinement {
    /// The confinement the configuration asks for; `None` when it asks none.
    pub fn from_config(config: &Config) -> anyhow::Result<Option<Confinement>> {
        let user = match &config.run_as {
            Some(u) => Some(lookup(u)?),
            None => None,
        };
        let limits: Vec<(Resource, u64)> = [
            (Resource::Nproc, config.rlimit_nproc),
            (Resource::As, config.rlimit_as_bytes),
            (Resource::Nofile, config.rlimit_nofile),
        ]
        .into_iter()
        .filter_map(|(r, v)| v.map(|v| (r, v)))
        .collect();
        Ok((user.is_some() || !limits.is_empty()).then_some(Confinement { user, limits }))
    }

    /// Makes the environment the user's own: `HOME`, `USER`, `LOGNAME`,
    /// `SHELL` (the allowlist copied the server's).
    pub fn adjust_env(&self, env: &mut BTreeMap<String, String>) {
        if let Some(u) = &self.user {
            env.insert("HOME".into(), u.home.clone());
            env.insert("USER".into(), u.name.clone());
            env.insert("LOGNAME".into(), u.name.clone());
            env.insert("SHELL".into(), u.shell.clone());
        }
    }

    /// Runs in the child between clone and exec: sets the limits, then
    /// switches to the user with its groups. Only raw system calls on data
    /// prepared before the clone (no allocation, no lock).
    pub fn apply_in_child(&self) -> io::Result<()> {
        self.apply_limits()?;
        if let Some(u) = &self.user {
            // The kernel's per-thread calls, not glibc's `setuid` and
            // friends, which would signal every thread of the server: the
            // child shares the server's memory (see `session::process`)
            // and is a single thread itself.
            // SAFETY: rustix's `Gid` is a transparent `gid_t`, so the slice casts.
            let groups: &[rustix::process::Gid] =
                unsafe { std::slice::from_raw_parts(u.groups.as_ptr().cast(), u.groups.len()) };
            rustix::thread::set_thread_groups(groups)?;
            rustix::thread::set_thread_gid(rustix::process::Gid::from_raw(u.gid))?;
            rustix::thread::set_thread_uid(rustix::process::Uid::from_raw(u.uid))?;
        }
        Ok(())
    }

    /// Sets the limits (soft = hard): `setrlimit` calls only.
    fn apply_limits(&self) -> io::Result<()> {
        for &(resource, value) in &self.limits {
            rustix::process::setrlimit(
                resource,
                Rlimit {
                    current: Some(value),
                    maximum: Some(value),
                },
            )
            .map_err(io::Error::from)?;
        }
        Ok(())
    }
}

/// The open-files soft limit the server started with, when it raised its own
/// (0: not raised). Programs get it back, so an old program using `select()`
/// does not see descriptors past 1024.
static ORIGINAL_NOFILE: AtomicU64 = AtomicU64::new(0);

/// Raises the server's soft limit on open files to the hard limit,
/// remembering the original for programs. Each running session holds a PTY
/// or three pipes plus two log files, so the common default of 1024 would cap
/// the server at a few hundred sessions.
pub fn raise_fd_limit() -> io::Result<()> {
    let limit = rustix::process::getrlimit(Resource::Nofile);
    if limit.current != limit.maximum
        && let Some(original) = limit.current
    {
        rustix::process::setrlimit(
            Resource::Nofile,
            Rlimit {
                current: limit.maximum,
                maximum: limit.maximum,
            },
        )?;
        ORIGINAL_NOFILE.store(original, Ordering::Relaxed);
    }
    Ok(())
}

/// In the child, between clone and exec: gives back the original open-files
/// soft limit. Only `getrlimit`/`setrlimit` calls (async-signal-safe).
pub fn restore_fd_limit() -> io::Result<()> {
    let original = ORIGINAL_NOFILE.load(Ordering::Relaxed);
    if original == 0 {
        return Ok(());
    }
    let limit = rustix::process::getrlimit(Resource::Nofile);
    rustix::process::setrlimit(
        Resource::Nofile,
        Rlimit {
            current: Some(original),
            maximum: limit.maximum,
        },
    )
    .map_err(io::Error::from)
}

/// Looks `user` (a name, else a numeric uid) up in the system's user
/// database, with its groups.
pub fn lookup(user: &str) -> anyhow::Result<RunAs> {
    let found = match User::from_name(user).with_context(|| format!("run_as: cannot look up user {user:?}"))? {
        Some(u) => Some(u),
        None => match user.parse::<u32>() {
            Ok(uid) => {
                User::from_uid(Uid::from_raw(uid)).with_context(|| format!("run_as: cannot look up uid {uid}"))?
            }
            Err(_) => None,
        },
    };
    let u = found.with_context(|| format!("run_as: no user {user:?} in the system's user database"))?;
    let name = std::ffi::CString::new(u.name.as_bytes()).context("run_as: the user name holds a NUL")?;
    let groups = nix::unistd::getgrouplist(&name, u.gid)
        .with_context(|| format!("run_as: cannot list the groups of {:?}", u.name))?;
    Ok(RunAs {
        uid: u.uid.as_raw(),
        gid: u.gid.as_raw(),
        home: u.dir.display().to_string(),
        shell: u.shell.display().to_string(),
        groups: groups.into_iter().map(Gid::as_raw).collect(),
        name: u.name,
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_users_by_name_or_uid_with_their_groups() {
        let root = lookup("root").unwrap();
        assert_eq!((root.uid, root.gid), (0, 0));
        assert!(root.groups.contains(&0), "{root:?}");
        assert_eq!(lookup("0").unwrap().name, root.name);
        assert!(lookup("no-such-user-here").is_err());
    }
}
