//! What a session's program may do: the user it runs as (`run_as`) and its
//! resource limits (`rlimit_nproc`, `rlimit_as_bytes`, `rlimit_nofile`).
//!
//! The user is looked up once at start-up in `/etc/passwd` (by name or
//! numeric uid; NSS sources such as LDAP are not consulted), so an unknown
//! user stops the server from starting rather than every spawn from
//! working. The switch happens in the child between fork and exec: the
//! standard library's `Command::gid`/`uid` (which also drop supplementary
//! groups when the server is root), then our `pre_exec` hook sets the
//! limits. Limits are set soft = hard, so the program cannot raise them.
//! Switching users needs the server to run as root; otherwise every spawn
//! fails with a permission error.

use std::collections::BTreeMap;
use std::io;
use std::sync::atomic::{AtomicU64, Ordering};

use anyhow::Context;
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
            Some(u) => {
                let passwd = std::fs::read_to_string("/etc/passwd").context("cannot read /etc/passwd")?;
                Some(lookup(&passwd, u).with_context(|| format!("run_as: no user {u:?} in /etc/passwd"))?)
            }
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

    /// Sets the limits. Runs in the child between fork and exec: it only
    /// makes `setrlimit` calls, which are async-signal-safe, and allocates
    /// nothing.
    pub fn apply_limits(&self) -> io::Result<()> {
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

/// In the child, between fork and exec: gives back the original open-files
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

/// Finds `user` (a name or a numeric uid) in the text of `/etc/passwd`.
pub fn lookup(passwd: &str, user: &str) -> Option<RunAs> {
    passwd.lines().find_map(|line| {
        let f: Vec<&str> = line.split(':').collect();
        if f.len() < 7 || !(f[0] == user || f[2] == user) {
            return None;
        }
        Some(RunAs {
            name: f[0].to_owned(),
            uid: f[2].parse().ok()?,
            gid: f[3].parse().ok()?,
            home: f[5].to_owned(),
            shell: f[6].to_owned(),
        })
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn finds_users_by_name_or_uid() {
        let passwd =
            "root:x:0:0:root:/root:/bin/bash\n# comment\nnobody:x:65534:65534:nobody:/nonexistent:/usr/sbin/nologin\n";
        let n = lookup(passwd, "nobody").unwrap();
        assert_eq!((n.uid, n.gid, n.home.as_str()), (65534, 65534, "/nonexistent"));
        assert_eq!(lookup(passwd, "0").unwrap().name, "root");
        assert!(lookup(passwd, "ghost").is_none());
        assert!(lookup(passwd, "x").is_none(), "the password field is not a name");
    }
}
