//! `termstream run` through a TCP proxy that cuts the connection again and
//! again: the client reconnects by itself and resumes from the first offset
//! it lacks, so every line arrives exactly once, in order.

mod common;

use std::sync::atomic::Ordering;

use common::TestServer;
use common::cli::{self, CuttingProxy};

#[tokio::test]
async fn run_prints_every_line_once_across_cut_connections() {
    let mut proxy = CuttingProxy::bind().await;
    let server = TestServer::start_with(&["--allowed-host", &proxy.addr], &[]).await;
    // About 1.3 MB of output; each connection is cut after 100 KiB, ten times.
    proxy.start(server.addr(), 100 * 1024, 10);
    let url = format!("http://{}", proxy.addr);
    let out = cli::run(&url, &["run", "--", "seq", "1", "200000"], b"").await;
    assert_eq!(out.code, 0, "stderr: {}", out.stderr);
    let expected: String = (1..=200_000).map(|n| format!("{n}\n")).collect();
    let text = out.stdout_text();
    if text != expected {
        let lines: Vec<&str> = text.lines().collect();
        let first_bad = lines
            .iter()
            .enumerate()
            .find(|(i, l)| **l != (i + 1).to_string())
            .map(|(i, l)| (i, l.to_string()));
        panic!("{} lines, first wrong: {first_bad:?}", lines.len());
    }
    assert_eq!(proxy.cut.load(Ordering::SeqCst), 10, "the proxy cut the stream");
}
