//! Configuration sources and their order: flags over `TERMSTREAM_*`
//! environment variables over the TOML file over defaults, observed through
//! the running-session limit; and a server started inside a session.

mod common;

use common::TestServer;
use serde_json::json;

/// How many `sleep` command sessions the server accepts before it answers
/// 503; stops at `most + 1` tries.
async fn running_limit(server: &TestServer, most: usize) -> usize {
    let mut ids = Vec::new();
    for _ in 0..=most {
        let (status, body) = server
            .post("/api/sessions", json!({ "kind": "command", "argv": ["sleep", "1000"] }))
            .await;
        if status == 503 {
            assert_eq!(body["error"]["code"], "capacity", "{body}");
            break;
        }
        assert_eq!(status, 201, "{body}");
        ids.push(body["id"].as_str().unwrap().to_owned());
    }
    for id in &ids {
        server.terminate(id).await;
    }
    ids.len()
}

fn config_file(dir: &std::path::Path, toml: &str) -> String {
    let path = dir.join("termstream.toml");
    std::fs::write(&path, toml).unwrap();
    path.display().to_string()
}

#[tokio::test]
async fn flags_override_env_which_overrides_the_file() {
    let dir = tempfile::tempdir().unwrap();
    let file = config_file(dir.path(), "max_running_sessions = 1\n");

    let server = TestServer::start_with(&["--config", &file], &[]).await;
    assert_eq!(running_limit(&server, 5).await, 1, "the file sets the limit");
    drop(server);

    let env = [("TERMSTREAM_MAX_RUNNING_SESSIONS", "2")];
    let server = TestServer::start_with(&["--config", &file], &env).await;
    assert_eq!(running_limit(&server, 5).await, 2, "the environment overrides the file");
    drop(server);

    let server = TestServer::start_with(&["--config", &file, "--max-running-sessions", "3"], &env).await;
    assert_eq!(running_limit(&server, 5).await, 3, "the flag overrides the environment");
}

#[tokio::test]
async fn a_server_starts_inside_a_session() {
    // Every session's processes carry `TERMSTREAM_SESSION=<epoch>`; a server
    // started from one must not take it for a setting and refuse to start.
    let server = TestServer::start_with(&[], &[("TERMSTREAM_SESSION", "00000000deadbeef")]).await;
    let (status, body) = server.get("/health").await;
    assert_eq!((status.as_u16(), body), (200, json!({ "status": "ok" })));
}
