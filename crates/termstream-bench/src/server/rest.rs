//! The REST calls the scenarios make, and the sweep that deletes what they
//! left on a server the bench did not start.
//!
//! Every session the bench creates is named by the bench: [`bench_prefix`]
//! (drawn at random once per process) and a sequence number; scenario 9's
//! `termstream run` is given such a name too. A create whose answer never
//! came (the REST client gave up after 30 s, or the scenario around it was
//! dropped at `--scenario-timeout`) or could not be read may still make its
//! session; the bench never learns of it but by the name, which
//! [`Target::sweep`] looks for. Nothing without the prefix is ever deleted
//! by the sweep: the server may be someone's own (`--url`).

use std::sync::OnceLock;
use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, SystemTime};

use anyhow::{Context, bail};
use futures_util::StreamExt;
use termstream_proto::{CreateSession, SessionId, SessionInfo, SessionKind};

use super::Target;

/// The longest one REST call of the sweep may take.
const SWEEP_CALL: Duration = Duration::from_secs(10);
/// The longest a whole sweep may take: the list and every delete.
const SWEEP_LIMIT: Duration = Duration::from_secs(60);
/// Deletes under way at once, as in [`Target::delete_all`].
const AT_ONCE: usize = 16;

/// The start of every session id this bench process picks: `b`, 8 hex
/// digits drawn once per process, and `-`. Random rather than the pid, so
/// that two benches on one server (in two pid namespaces, say) do not
/// share it; short, so that the bench's ids cost the server about what its
/// own do (`s` and 12 hex digits, carried in every output frame and kept
/// in a few places per session): the memory and frame figures do not move.
pub fn bench_prefix() -> &'static str {
    static PREFIX: OnceLock<String> = OnceLock::new();
    PREFIX.get_or_init(|| {
        use std::hash::{BuildHasher, Hasher};
        // A randomly keyed hasher: a random number without a dependency.
        let mut h = std::collections::hash_map::RandomState::new().build_hasher();
        h.write_u128(
            SystemTime::now()
                .duration_since(SystemTime::UNIX_EPOCH)
                .map_or(0, |d| d.as_nanos()),
        );
        h.write_u32(std::process::id());
        format!("b{:08x}-", h.finish() as u32)
    })
}

/// A fresh id under [`bench_prefix`]: `b` + 8 hex digits + `-` and the
/// number in hex (at most 26 bytes, within the server's
/// [`MAX_ID_LEN`](termstream_proto::ids::MAX_ID_LEN)).
pub(crate) fn bench_id() -> SessionId {
    static NEXT: AtomicU64 = AtomicU64::new(0);
    let id = format!("{}{:x}", bench_prefix(), NEXT.fetch_add(1, Ordering::Relaxed));
    SessionId::new(id).expect("at most 26 bytes of letters, digits and '-': a valid id")
}

/// What a [`Target::sweep`] found and deleted.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Swept {
    /// Sessions listed under this bench's prefix.
    pub found: usize,
    /// Those deleted (or gone by the time of their delete).
    pub deleted: usize,
}

impl Target {
    /// Starts a session; one without an `id` gets a bench-chosen one
    /// ([`bench_prefix`]), so that [`Target::sweep`] finds it even when
    /// its answer is lost. An `id` the request sets is kept.
    pub async fn create(&self, req: &CreateSession) -> anyhow::Result<SessionInfo> {
        let named;
        let req = match req.id {
            Some(_) => req,
            None => {
                named = CreateSession {
                    id: Some(bench_id()),
                    ..req.clone()
                };
                &named
            }
        };
        let resp = self
            .rest
            .post(format!("{}/api/sessions", self.http))
            .json(req)
            .send()
            .await?;
        let status = resp.status();
        if !status.is_success() {
            bail!(
                "POST /api/sessions: {status}: {}",
                resp.text().await.unwrap_or_default()
            );
        }
        Ok(resp.json().await?)
    }

    /// Starts a pty session of 80 × 24 running `sh -c SCRIPT`.
    pub async fn pty_sh(&self, script: &str) -> anyhow::Result<SessionId> {
        self.start(SessionKind::Pty, vec!["sh".into(), "-c".into(), script.into()])
            .await
    }

    /// Starts a command session running `sh -c SCRIPT`.
    pub async fn command_sh(&self, script: &str) -> anyhow::Result<SessionId> {
        self.start(SessionKind::Command, vec!["sh".into(), "-c".into(), script.into()])
            .await
    }

    /// Starts a session of `kind` running `argv`, under a bench-chosen id.
    pub async fn start(&self, kind: SessionKind, argv: Vec<String>) -> anyhow::Result<SessionId> {
        let pty = kind == SessionKind::Pty;
        let req = CreateSession {
            kind: Some(kind),
            argv: Some(argv),
            cols: pty.then_some(80),
            rows: pty.then_some(24),
            ..CreateSession::default()
        };
        Ok(self.create(&req).await?.id)
    }

    /// Focuses (or unfocuses) a session with `PUT /api/terminal/focus`;
    /// the project's version after it.
    pub async fn focus(&self, id: &SessionId, focused: bool) -> anyhow::Result<u64> {
        let resp = self
            .rest
            .put(format!("{}/api/terminal/focus", self.http))
            .json(&serde_json::json!({"sessionId": id, "focused": focused}))
            .send()
            .await?;
        let status = resp.status();
        let body: serde_json::Value = resp.json().await.unwrap_or_default();
        if !status.is_success() {
            bail!("PUT /api/terminal/focus: {status}: {body}");
        }
        body["version"].as_u64().context("no version in the focus answer")
    }

    /// Deletes a session (ending it if it runs); a missing one is fine.
    pub async fn delete(&self, id: &SessionId) -> anyhow::Result<()> {
        self.delete_within(id, None).await
    }

    /// [`Target::delete`], given up after `limit` when given (else the
    /// REST client's 30 s).
    async fn delete_within(&self, id: &SessionId, limit: Option<Duration>) -> anyhow::Result<()> {
        let mut req = self.rest.delete(format!("{}/api/sessions/{}", self.http, id.as_str()));
        if let Some(limit) = limit {
            req = req.timeout(limit);
        }
        let resp = req.send().await?;
        if !resp.status().is_success() && resp.status() != reqwest::StatusCode::NOT_FOUND {
            bail!("DELETE session {}: {}", id.as_str(), resp.status());
        }
        Ok(())
    }

    /// Deletes sessions, a few at a time.
    pub async fn delete_all(&self, ids: &[SessionId]) {
        futures_util::stream::iter(ids)
            .for_each_concurrent(AT_ONCE, |id| async move {
                let _ = self.delete(id).await;
            })
            .await;
    }

    /// The id of every session `GET /api/sessions` lists, within `limit`.
    pub async fn session_ids(&self, limit: Duration) -> anyhow::Result<Vec<String>> {
        let list: serde_json::Value = self
            .rest
            .get(format!("{}/api/sessions", self.http))
            .timeout(limit)
            .send()
            .await
            .and_then(reqwest::Response::error_for_status)
            .context("GET /api/sessions")?
            .json()
            .await
            .context("the list of sessions")?;
        let sessions = list["sessions"]
            .as_array()
            .context("no list of sessions in the answer")?;
        Ok(sessions
            .iter()
            .filter_map(|s| s["id"].as_str().map(str::to_owned))
            .collect())
    }

    /// Deletes every session listed under this bench's prefix
    /// ([`bench_prefix`]), [`AT_ONCE`] at a time: what a scenario cut
    /// short left, or a create that was answered too late for it. Each
    /// call takes at most [`SWEEP_CALL`], the whole at most
    /// [`SWEEP_LIMIT`]; an error when the list cannot be read or the limit
    /// passed (saying how many were deleted by then). Sessions of others
    /// are left alone.
    pub async fn sweep(&self) -> anyhow::Result<Swept> {
        let found = AtomicUsize::new(0);
        let deleted = AtomicUsize::new(0);
        let work = async {
            let ours: Vec<SessionId> = self
                .session_ids(SWEEP_CALL)
                .await?
                .into_iter()
                .filter(|id| id.starts_with(bench_prefix()))
                .filter_map(|id| SessionId::new(id).ok())
                .collect();
            found.store(ours.len(), Ordering::Relaxed);
            futures_util::stream::iter(&ours)
                .for_each_concurrent(AT_ONCE, |id| async {
                    if self.delete_within(id, Some(SWEEP_CALL)).await.is_ok() {
                        deleted.fetch_add(1, Ordering::Relaxed);
                    }
                })
                .await;
            anyhow::Ok(())
        };
        let done = tokio::time::timeout(SWEEP_LIMIT, work).await;
        let swept = Swept {
            found: found.load(Ordering::Relaxed),
            deleted: deleted.load(Ordering::Relaxed),
        };
        match done {
            Ok(Ok(())) => Ok(swept),
            Ok(Err(e)) => Err(e),
            Err(_) => bail!(
                "the sweep took longer than {SWEEP_LIMIT:?}: {} of {} deleted",
                swept.deleted,
                swept.found
            ),
        }
    }
}

#[cfg(test)]
mod tests {
    use std::time::Instant;

    use termstream_proto::ids::MAX_ID_LEN;

    use super::*;
    use crate::server::test_server;

    /// The longest a test's REST call, or its wait for the list to change,
    /// may take.
    const WAIT: Duration = Duration::from_secs(10);

    #[test]
    fn bench_ids_are_valid_and_distinct() {
        let (a, b) = (bench_id(), bench_id());
        assert!(a.as_str().starts_with(bench_prefix()), "{a}");
        assert_ne!(a, b);
        let longest = format!("{}{:x}", bench_prefix(), u64::MAX);
        assert!(longest.len() <= 26 && longest.len() <= MAX_ID_LEN, "{longest}");
        assert!(SessionId::new(longest).is_ok());
    }

    /// The sweep deletes the bench's sessions and no other: the server may
    /// be someone's own.
    #[tokio::test]
    async fn the_sweep_deletes_the_benchs_sessions_only() {
        let work = tempfile::tempdir().expect("a work dir");
        let target = test_server(work.path()).start().await.expect("a server");
        let rest = reqwest::Client::builder().timeout(WAIT).build().expect("a client");
        let a = target.start(SessionKind::Pty, vec!["cat".into()]).await.expect("a");
        // Ends with the server's pipe to it, if the test fails.
        let b = target.command_sh("exec cat").await.expect("b");
        let own = "someone-elses-session";
        let resp = rest
            .post(format!("{}/api/sessions", target.http))
            .json(&serde_json::json!({"id": own, "kind": "pty", "argv": ["cat"]}))
            .send()
            .await
            .expect("POST");
        assert!(resp.status().is_success(), "POST: {}", resp.status());
        let before = target.session_ids(WAIT).await.expect("the list");
        assert_eq!(before.len(), 3, "{before:?}");
        let swept = target.sweep().await.expect("a sweep");
        assert_eq!(swept, Swept { found: 2, deleted: 2 }, "listed before: {before:?}");
        let give_up = Instant::now() + WAIT;
        loop {
            let now = target.session_ids(WAIT).await.expect("the list");
            assert!(now.iter().any(|id| id == own), "the sweep deleted {own}: {now:?}");
            let left: Vec<_> = [&a, &b]
                .into_iter()
                .filter(|id| now.iter().any(|n| n == id.as_str()))
                .collect();
            if left.is_empty() {
                break;
            }
            assert!(Instant::now() < give_up, "the sweep left {left:?}: {now:?}");
            tokio::time::sleep(Duration::from_millis(20)).await;
        }
        let gone = rest.delete(format!("{}/api/sessions/{own}", target.http)).send().await;
        assert!(gone.expect("DELETE").status().is_success());
        target.stop().await;
    }
}
