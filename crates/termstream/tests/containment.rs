//! What a session's programs run as, and how all of them are ended: the
//! configured user with its supplementary groups, terminate against jobs
//! that leave the session and drop its marker, and a crashed server's
//! programs ended when it starts again (and by terminate and delete of the
//! `lost` sessions).

mod common;

use std::process::Command;

use common::{TestServer, secs};
use serde_json::json;

/// The user and group the run_as test creates (when the tests run as root).
const TEST_USER: &str = "termstream-test";
const TEST_GROUP: &str = "termstream-test-extra";

/// Creates `TEST_GROUP` and `TEST_USER` (a member of it) unless they exist;
/// returns the group's gid.
fn ensure_test_user() -> String {
    let getent = |db: &str, key: &str| {
        let out = Command::new("getent").args([db, key]).output().expect("getent");
        out.status
            .success()
            .then(|| String::from_utf8_lossy(&out.stdout).trim().to_owned())
    };
    if getent("group", TEST_GROUP).is_none() {
        // Another test run may create it at the same time: judge by getent.
        let _ = Command::new("groupadd").arg(TEST_GROUP).status();
    }
    if getent("passwd", TEST_USER).is_none() {
        let _ = Command::new("useradd")
            .args(["--no-create-home", "--home-dir", "/nonexistent", "--groups", TEST_GROUP])
            .arg(TEST_USER)
            .status();
    }
    assert!(getent("passwd", TEST_USER).is_some(), "cannot create user {TEST_USER}");
    let group = getent("group", TEST_GROUP).expect("the test group");
    group.split(':').nth(2).expect("a gid").to_owned()
}

#[tokio::test]
async fn programs_run_as_the_configured_user_with_its_supplementary_groups() {
    if !rustix::process::geteuid().is_root() {
        eprintln!("skipped: switching users and creating a test user need the tests to run as root");
        return;
    }
    let extra_gid = ensure_test_user();
    let server = TestServer::start_with(&[], &[("TERMSTREAM_RUN_AS", TEST_USER)]).await;
    for kind in ["command", "pty"] {
        let id = format!("groups-{kind}");
        let script = "echo user=$(id -un) groups=[$(id -G)] end";
        server
            .create(json!({"id": id, "kind": kind, "cwd": "/", "argv": ["sh", "-c", script]}))
            .await;
        let out = server.read_output_until(&id, "end", secs(10)).await;
        let groups: Vec<&str> = out
            .split("groups=[")
            .nth(1)
            .and_then(|r| r.split(']').next())
            .expect("the groups")
            .split_whitespace()
            .collect();
        assert!(out.contains(&format!("user={TEST_USER}")), "{kind}: {out:?}");
        assert!(
            groups.contains(&extra_gid.as_str()),
            "{kind}: the supplementary group {extra_gid} is missing: {out:?}"
        );
        assert!(
            !groups.contains(&"0"),
            "{kind}: root's group leaked into the program: {out:?}"
        );
    }
}
