//! `GET /healthz` (the process answers) and `GET /readyz` (it should be
//! sent traffic): both need no credential, as `/health` does.
//!
//! Ready means: the server is accepting (not shutting down), and the data
//! dir is writable, checked by creating, writing and removing a probe file
//! in it, since only a real write tells (permissions, a read-only or full
//! file system, an immutable directory); and, in a cluster, that the
//! cluster's Redis can be used.

use std::io::Write;
use std::path::{Path, PathBuf};

use axum::Json;
use axum::extract::State;
use axum::http::StatusCode;
use axum::response::{IntoResponse, Response};
use serde::Serialize;

use std::sync::Arc;

use tokio_util::sync::CancellationToken;

use crate::registry::Registry;

/// The probe file's name inside the data dir.
const PROBE: &str = ".readyz-probe";

/// `/readyz`'s answer.
#[derive(Debug, Serialize)]
struct Readiness {
    /// `ready` or `unready`.
    status: &'static str,
    /// Why not ready, one sentence per failed check.
    #[serde(skip_serializing_if = "Vec::is_empty")]
    failing: Vec<String>,
}

#[utoipa::path(get, path = "/healthz", security(()), responses((status = 200, description = "The process answers.", body = Object)))]
/// `GET /healthz`: 200 while the process serves requests at all.
pub async fn healthz() -> Json<serde_json::Value> {
    Json(serde_json::json!({ "status": "ok" }))
}

#[utoipa::path(get, path = "/readyz", security(()), responses(
    (status = 200, description = "Ready: accepting, and the data dir is writable.", body = Object),
    (status = 503, description = "Not ready; `failing` says why.", body = Object)))]
/// `GET /readyz`: 200 when ready, else 503 with the failing checks.
pub async fn readyz(State(registry): State<Arc<Registry>>, State(shutdown): State<CancellationToken>) -> Response {
    let mut failing = Vec::new();
    if shutdown.is_cancelled() {
        failing.push("the server is shutting down".to_owned());
    }
    if let Some(why) = registry.remote().link().and_then(|l| l.unready()) {
        failing.push(why);
    }
    let dir = registry.config().data_dir.clone();
    match tokio::task::spawn_blocking(move || probe(&dir)).await {
        Ok(Ok(())) => {}
        Ok(Err(e)) => failing.push(e),
        Err(e) => failing.push(format!("the data dir check failed: {e}")),
    }
    let (code, status) = if failing.is_empty() {
        (StatusCode::OK, "ready")
    } else {
        (StatusCode::SERVICE_UNAVAILABLE, "unready")
    };
    (code, Json(Readiness { status, failing })).into_response()
}

/// Writes and removes a probe file in `dir`.
fn probe(dir: &Path) -> Result<(), String> {
    let path: PathBuf = dir.join(PROBE);
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&path)?;
        f.write_all(b"ok\n")?;
        drop(f);
        std::fs::remove_file(&path)
    };
    write().map_err(|e| format!("the data dir is not writable: {}: {e}", path.display()))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_missing_dir_is_not_writable() {
        let err = probe(Path::new("/no/such/dir")).unwrap_err();
        assert!(err.contains("/no/such/dir/.readyz-probe"), "{err}");
        let dir = tempfile::tempdir().unwrap();
        probe(dir.path()).unwrap();
        assert!(!dir.path().join(PROBE).exists());
    }
}
