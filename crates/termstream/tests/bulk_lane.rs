//! A session that floods while someone types into another runs its actor on
//! the bulk lane (`session/lane.rs`: one thread, `termstream-bulk`, at a
//! lower priority), and comes back; nothing it printed is lost or doubled
//! on the way. Real server, real PTYs, real programs.

mod common;

use std::time::Duration;

use common::{TestServer, secs, session_dir, wait_until};
use serde_json::json;

/// CPU ticks the server's bulk-lane thread has used, if it runs.
fn lane_ticks(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    tasks.flatten().find_map(|t| {
        let comm = std::fs::read_to_string(t.path().join("comm")).ok()?;
        if comm.trim_end() != "termstream-bulk" {
            return None;
        }
        let stat = std::fs::read_to_string(t.path().join("stat")).ok()?;
        // After the `(comm)` field: utime and stime are fields 14 and 15.
        let rest = &stat[stat.rfind(')')? + 2..];
        let f: Vec<&str> = rest.split_whitespace().collect();
        Some(f.get(11)?.parse::<u64>().ok()? + f.get(12)?.parse::<u64>().ok()?)
    })
}

/// What `seq 1 n` prints through a PTY (`\n` becomes `\r\n`).
fn seq_output(n: u64) -> Vec<u8> {
    let mut out = Vec::new();
    for i in 1..=n {
        out.extend_from_slice(i.to_string().as_bytes());
        out.extend_from_slice(b"\r\n");
    }
    out
}

#[tokio::test]
async fn a_flood_beside_a_typist_runs_on_the_bulk_lane_and_loses_nothing() {
    let server = TestServer::start().await;
    // Someone types into a `cat` session every 50 ms.
    let typed = server.create(json!({ "argv": ["cat"], "cols": 80, "rows": 24 })).await;
    let url = server.url(&format!("/api/sessions/{}/input", typed["id"].as_str().unwrap()));
    let client = server.client.clone();
    let typist = tokio::spawn(async move {
        loop {
            let sent = client.post(&url).json(&json!({ "data": "k" })).send().await;
            assert_eq!(sent.map(|r| r.status().as_u16()).ok(), Some(200), "typing failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    });
    assert_eq!(lane_ticks(server.pid()), None, "the lane starts only when needed");

    // A flood of a known text: it counts as one after 500 ms at 1 MiB/s.
    let n = 8_000_000;
    let info = server
        .create(json!({ "argv": ["seq", "1", n.to_string()], "cols": 80, "rows": 24 }))
        .await;
    let id = info["id"].as_str().unwrap().to_owned();
    let pid = server.pid();
    assert!(
        wait_until(secs(30), || async { lane_ticks(pid).is_some_and(|t| t > 0) }).await,
        "the flood's actor never ran on the bulk lane"
    );
    // It ends there or back home; either way it ends as usual.
    assert!(
        wait_until(secs(60), || async { server.info(&id).await["status"] == "exited" }).await,
        "the flood did not end: {}",
        server.info(&id).await
    );
    typist.abort();
    let end = server.info(&id).await;
    assert_eq!(end["exitCode"], 0, "{end}");
    let want = seq_output(n);
    assert_eq!(
        end["outputOffset"].as_u64(),
        Some(want.len() as u64),
        "bytes lost or doubled"
    );
    // The disk log: its segments (`<first offset>.out`) in order.
    let mut segments: Vec<_> = std::fs::read_dir(session_dir(server.data_dir(), &id))
        .expect("the session's directory")
        .flatten()
        .map(|e| e.path())
        .filter(|p| p.extension().is_some_and(|x| x == "out"))
        .collect();
    segments.sort();
    let log: Vec<u8> = segments
        .iter()
        .flat_map(|p| std::fs::read(p).expect("a segment"))
        .collect();
    let first_difference = log.iter().zip(&want).position(|(a, b)| a != b);
    assert!(
        log == want,
        "the log differs from what seq printed, first at byte {first_difference:?}"
    );

    // The typed session kept working beside it.
    let echoed = server.info(typed["id"].as_str().unwrap()).await;
    assert!(echoed["outputOffset"].as_u64() > Some(0), "{echoed}");
}
