//! The CLI through a node of a cluster that lets go of its copy of the
//! other node's session (owner away, Redis emptied: `session.detached`
//! `released`), in the cases `attach_released.rs` cannot force: keys the
//! node refused in the instant before `attach` read the `released` (held
//! back by a proxy, so the instant is as long as the test needs), keys
//! over what `attach` holds, and `run` whose socket is on another node
//! than its REST calls (as behind a load balancer that spreads
//! connections), so that its session is the other node's; and keys taken
//! once the session came back, before `attach` read the `released`,
//! which `attach` must not send twice.

mod common;

use common::cli::{self, Gathered};
use common::cluster::{TestCluster, attach, holds, listed, owner_away_with_redis_emptied, read_until, status_is};
use common::metrics::metric;
use common::route_proxy::{ALLOWED_HOST, RouteProxy};
use common::ws::WsClient;
use common::{TestServer, secs, wait_until};
use serde_json::json;
use tokio::io::AsyncWriteExt;
use tokio::process::{Child, ChildStdin};

/// The attachments of `/ws` sockets on a node.
const ATTACHED: &str = r#"termstream_attachments{endpoint="ws"}"#;
/// The `session_not_found` errors a node answered.
const NOT_FOUND: &str = r#"termstream_errors_total{code="session_not_found"}"#;

/// A cluster of two whose attach wait (20 s) outlasts the owner's time
/// away, and which takes the proxy's address as `Host`. A node silent
/// 20 s is dead: the owner is away a while as keys are typed one write
/// at a time, and its session must not be marked `lost` meanwhile.
async fn cluster() -> TestCluster {
    let env = [
        ("TERMSTREAM_ATTACH_WAIT_MS", "20000"),
        ("TERMSTREAM_CLUSTER_LOST_MS", "20000"),
        ALLOWED_HOST,
    ];
    TestCluster::start_with(2, &env).await
}

/// `termstream ARGS` through `proxy`, its stdin a pipe kept by the test.
fn spawn(proxy: &RouteProxy, args: &[&str]) -> (Child, ChildStdin, Gathered, Gathered) {
    let mut cmd = cli::command(&proxy.url(), args);
    cmd.stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::piped())
        .stderr(std::process::Stdio::piped());
    let mut child = cmd.spawn().expect("termstream");
    let stdin = child.stdin.take().expect("stdin");
    let stdout = Gathered::gather(child.stdout.take().expect("stdout"));
    let stderr = Gathered::gather(child.stderr.take().expect("stderr"));
    (child, stdin, stdout, stderr)
}

/// A shell session `id` made on the cluster's first node, listed on the
/// second, and `termstream attach id` attached on the second through a
/// proxy the test holds: the proxy and the attach process.
async fn attached_on_b(cluster: &TestCluster, id: &str) -> (RouteProxy, Child, ChildStdin, Gathered, Gathered) {
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    a.create(json!({"id": id, "argv": ["/bin/sh"]})).await;
    listed(b, id, secs(15)).await.expect("listed on b");
    let proxy = RouteProxy::start(b.addr(), b.addr()).await;
    let (child, stdin, stdout, stderr) = spawn(&proxy, &["attach", id]);
    assert!(attachments(b, 1.0).await, "attach did not attach on b");
    (proxy, child, stdin, stdout, stderr)
}

/// Waits until `node` holds `n` `/ws` attachments.
async fn attachments(node: &TestServer, n: f64) -> bool {
    wait_until(secs(10), || async { metric(node, ATTACHED).await == Some(n) }).await
}

/// Has the viewer's node let go of `id` (the owner away, Redis emptied)
/// while the proxy holds back what it sends on the verb's socket, and
/// waits until it did (the id gone there, the attachment ended: its
/// `released` sent, and held).
async fn released_and_held<'c>(cluster: &'c TestCluster, proxy: &RouteProxy, id: &str) -> common::Paused<'c> {
    let b = &cluster.nodes[1];
    proxy.hold();
    let stopped = owner_away_with_redis_emptied(cluster).await;
    let path = format!("/api/sessions/{id}");
    assert!(
        wait_until(secs(10), || async { b.get(&path).await.0 == 404 }).await,
        "b did not let go of {id}"
    );
    assert!(attachments(b, 0.0).await, "the verb's attachment on b did not end");
    stopped
}

/// Types `keys` into the verb, and waits until the viewer's node refused
/// them (one `terminal.input`, one `session_not_found`): what goes in one
/// write of 4 KiB at most is one read, and one message.
async fn typed_and_refused(b: &TestServer, stdin: &mut ChildStdin, keys: &[u8]) {
    assert!(keys.len() <= 4096);
    let before = metric(b, NOT_FOUND).await.unwrap_or(0.0);
    stdin.write_all(keys).await.expect("typed");
    stdin.flush().await.expect("typed");
    let refused = wait_until(secs(10), || async {
        metric(b, NOT_FOUND).await.unwrap_or(0.0) > before
    })
    .await;
    assert!(refused, "b did not refuse the keys");
}

/// `attach` through the viewer's node, keys typed after the node let go
/// of the session but before `attach` read the `released` (the proxy
/// holds it back): the node refuses them, and `attach` sends them again
/// once attached again. The old `attach` lost them.
#[tokio::test]
async fn cli_attach_sends_again_the_keys_refused_before_it_read_the_release() {
    let cluster = cluster().await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (proxy, mut child, mut stdin, stdout, stderr) = attached_on_b(&cluster, "blip").await;
    a.input("blip", "echo before-$((6*7))\n").await;
    assert!(stdout.shows("before-42").await, "no output before the release");
    let stopped = released_and_held(&cluster, &proxy, "blip").await;
    typed_and_refused(b, &mut stdin, b"echo typed-$((6*7))\n").await;
    proxy.flow();
    drop(stopped);
    status_is(b, "blip", "running", secs(15))
        .await
        .expect("listed again on b");
    assert!(
        stdout.shows("typed-42").await,
        "the refused keys did not reach the session: {:?}",
        stdout.text()
    );
    a.input("blip", "exit\n").await;
    let status = common::exit_within_10s(&mut child, "attach ends with the shell").await;
    let text = stdout.text();
    assert_eq!(text.matches("typed-42").count(), 1, "{text:?}");
    assert!(text.contains("[exited (session blip, code 0)]"), "{text:?}");
    assert_eq!(status.code(), Some(0), "{text:?} {}", stderr.text());
    assert!(
        !stderr.text().contains("dropped"),
        "nothing was dropped: {}",
        stderr.text()
    );
}

/// The session comes back on the viewer's node before `attach` read the
/// `released` (the proxy holds it back): keys typed before it came back
/// are refused, keys typed after are taken. `attach` never sends the
/// taken ones again (the server names the refused ones by seq), nor the
/// refused ones, which would reach the program after the taken ones,
/// out of the order typed: it says on stderr how many bytes it dropped.
/// Counting refusals and taking them for the last keys sent ran the
/// taken command twice; sending the refused ones again ran them after.
#[tokio::test]
async fn cli_attach_sends_neither_the_taken_keys_again_nor_the_refused_ones_after_them() {
    let cluster = cluster().await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (proxy, mut child, mut stdin, stdout, stderr) = attached_on_b(&cluster, "twice").await;
    a.input("twice", "echo before-$((6*7))\n").await;
    assert!(stdout.shows("before-42").await, "no output before the release");
    let stopped = released_and_held(&cluster, &proxy, "twice").await;
    typed_and_refused(b, &mut stdin, b"echo refused-$((6*7))\n").await;
    drop(stopped);
    status_is(b, "twice", "running", secs(15))
        .await
        .expect("listed again on b");
    // The session's output as its owner sends it, from now on.
    let mut watch = WsClient::connect(a, "/ws").await;
    let mut seen = attach(&mut watch, "twice", None).await;
    stdin.write_all(b"echo taken-$((6*7))\n").await.expect("typed");
    stdin.flush().await.expect("typed");
    read_until(&mut watch, &mut seen, secs(10), |s| holds(&s.data, "taken-42")).await;
    // `attach` reads the refusal and the `released` now, and attaches
    // again (b counts the attachment once asked: `attach` is re-attaching
    // or done). Keys typed from then on go after whatever it sends again.
    proxy.flow();
    assert!(attachments(b, 1.0).await, "attach did not attach again on b");
    stdin.write_all(b"echo after-$((6*7))\n").await.expect("typed");
    stdin.flush().await.expect("typed");
    read_until(&mut watch, &mut seen, secs(15), |s| holds(&s.data, "after-42")).await;
    let count = |hay: &[u8], needle: &str| hay.windows(needle.len()).filter(|w| *w == needle.as_bytes()).count();
    let ran = String::from_utf8_lossy(&seen.data).into_owned();
    assert_eq!(
        (count(&seen.data, "refused-42"), count(&seen.data, "taken-42")),
        (0, 1),
        "the taken command runs once, the refused one not after it: {ran:?}"
    );
    a.input("twice", "exit\n").await;
    let status = common::exit_within_10s(&mut child, "attach ends with the shell").await;
    let text = stdout.text();
    assert_eq!(text.matches("refused-42").count(), 0, "{text:?}");
    assert_eq!(text.matches("taken-42").count(), 1, "{text:?}");
    assert_eq!(status.code(), Some(0), "{text:?} {}", stderr.text());
    let refused = "echo refused-$((6*7))\n".len();
    let note = format!(
        "termstream: {refused} bytes refused while attaching twice again were not sent: later keys had reached it\n"
    );
    assert_eq!(stderr.text(), note);
}

/// As above, with more keys refused than `attach` holds (64 KiB): the
/// oldest 64 KiB go to the session (the command first, then comment
/// lines), the rest is dropped, and `attach` says how many bytes on a
/// line of stderr at the end.
#[tokio::test]
async fn cli_attach_says_how_many_bytes_of_keys_it_dropped() {
    let cluster = cluster().await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let (proxy, mut child, mut stdin, stdout, stderr) = attached_on_b(&cluster, "flood").await;
    let held_from = std::time::Instant::now();
    let stopped = released_and_held(&cluster, &proxy, "flood").await;
    let first = b"echo typed-$((6*7))\n";
    typed_and_refused(b, &mut stdin, first).await;
    // 20 writes of 4000 bytes: at least 20 reads of 4 KiB at most, each
    // one message, all refused before the proxy lets the `released` go.
    let comment = format!("#{}\n", "x".repeat(3998));
    let before = metric(b, NOT_FOUND).await.unwrap_or(0.0);
    for _ in 0..20 {
        stdin.write_all(comment.as_bytes()).await.expect("typed");
    }
    stdin.flush().await.expect("typed");
    let refused = wait_until(secs(15), || async {
        metric(b, NOT_FOUND).await.unwrap_or(0.0) >= before + 20.0
    })
    .await;
    assert!(refused, "b did not refuse the keys");
    // The client library gives up on a socket silent 30 s.
    let held = held_from.elapsed();
    assert!(held < secs(25), "the released was held back {held:?}");
    proxy.flow();
    drop(stopped);
    status_is(b, "flood", "running", secs(15))
        .await
        .expect("listed again on b");
    assert!(
        stdout.shows("typed-42").await,
        "the keys held did not reach the session"
    );
    // Ends the comment line cut at 64 KiB.
    a.input("flood", "\nexit\n").await;
    let status = common::exit_within_10s(&mut child, "attach ends with the shell").await;
    assert_eq!(status.code(), Some(0), "{}", stderr.text());
    let dropped = first.len() + 20 * comment.len() - 64 * 1024;
    let note =
        format!("termstream: {dropped} bytes typed while attaching flood again were dropped (over the 64 KiB held)\n");
    let said = stderr.text();
    assert!(said.contains(&note), "{said:?}");
    assert_eq!(said.matches("dropped").count(), 1, "one line: {said:?}");
    let text = stdout.text();
    assert!(text.contains("[exited (session flood, code 0)]"), "{text:?}");
}

/// `run` whose REST calls go to the session's node and its socket to the
/// other: when that node lets go of the session, `run` attaches again
/// from the first byte it has not printed, and carries on to the
/// program's end and exit code, every line printed once.
#[tokio::test]
async fn cli_run_follows_its_session_across_a_release_of_its_socket_node() {
    let cluster = cluster().await;
    let (a, b) = (&cluster.nodes[0], &cluster.nodes[1]);
    let proxy = RouteProxy::start(a.addr(), b.addr()).await;
    let program = "echo before-$((6*7)); read x; echo after-$x; exit 3";
    let (mut child, mut stdin, stdout, stderr) = spawn(&proxy, &["run", "--id", "spread", "--", "sh", "-c", program]);
    assert!(
        stdout.shows("before-42").await,
        "no output before the release: {}",
        stderr.text()
    );
    assert!(attachments(b, 1.0).await, "run's socket is not attached on b");
    let stopped = owner_away_with_redis_emptied(&cluster).await;
    assert!(
        wait_until(secs(10), || async { b.get("/api/sessions/spread").await.0 == 404 }).await,
        "b did not let go of the session"
    );
    drop(stopped);
    status_is(b, "spread", "running", secs(15))
        .await
        .expect("listed again on b");
    assert!(attachments(b, 1.0).await, "run did not attach again on b");
    stdin.write_all(b"x42\n").await.expect("typed");
    stdin.flush().await.expect("typed");
    let status = common::exit_within_10s(&mut child, "run ends with its program").await;
    assert_eq!(stdout.text(), "before-42\nafter-x42\n", "{}", stderr.text());
    assert_eq!(status.code(), Some(3), "{}", stderr.text());
}
