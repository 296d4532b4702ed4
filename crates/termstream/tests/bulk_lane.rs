//! A session that floods while someone types into another runs its actor on
//! the bulk lane (`session/lane.rs`: a thread named `termstream-bulk`, at a
//! lower priority), and comes back home once its flood is over; nothing it
//! printed is lost or doubled on the way. Input into the flood itself sends
//! it home, and a flood with nobody typing stays home. Real server, real
//! PTYs, real programs.

mod common;

use std::time::Duration;

use common::cluster::attach;
use common::metrics::{metric, metric_in, metrics_text};
use common::ws::{Incoming, WsClient};
use common::{TestServer, secs, session_dir, wait_until};
use serde_json::json;
use tokio::task::JoinHandle;

/// CPU ticks the server's bulk-lane threads have used, if any runs.
fn lane_ticks(pid: u32) -> Option<u64> {
    let tasks = std::fs::read_dir(format!("/proc/{pid}/task")).ok()?;
    let ticks: Vec<u64> = tasks
        .flatten()
        .filter_map(|t| {
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
        .collect();
    (!ticks.is_empty()).then(|| ticks.iter().sum())
}

/// The `termstream_bulk_lane_sessions` gauge.
async fn on_lane(server: &TestServer) -> Option<f64> {
    metric(server, "termstream_bulk_lane_sessions").await
}

/// Waits up to `limit` for `on_lane` to read `want`; fails with `what`
/// and the last reading if it does not.
async fn wait_on_lane(server: &TestServer, want: f64, limit: Duration, what: &str) {
    assert!(
        wait_until(limit, || async { on_lane(server).await == Some(want) }).await,
        "{what}: {:?}",
        on_lane(server).await
    );
}

/// Types a key into a `cat` session of `server` every 50 ms, until aborted;
/// its id too.
async fn typist(server: &TestServer) -> (JoinHandle<()>, String) {
    let typed = server.create(json!({ "argv": ["cat"], "cols": 80, "rows": 24 })).await;
    let id = typed["id"].as_str().unwrap().to_owned();
    (type_into(server, &id), id)
}

/// Types a key into session `id` of `server` every 50 ms, until aborted.
fn type_into(server: &TestServer, id: &str) -> JoinHandle<()> {
    let url = server.url(&format!("/api/sessions/{id}/input"));
    let client = server.client.clone();
    tokio::spawn(async move {
        loop {
            let sent = client.post(&url).json(&json!({ "data": "k" })).send().await;
            assert_eq!(sent.map(|r| r.status().as_u16()).ok(), Some(200), "typing failed");
            tokio::time::sleep(Duration::from_millis(50)).await;
        }
    })
}

/// Stops the typist, which must still be typing (an assertion inside it
/// would otherwise go unseen).
fn stop(typist: JoinHandle<()>) {
    assert!(!typist.is_finished(), "the typist stopped: typing failed");
    typist.abort();
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

/// Lines a flood prints: at least 0.5 s at 1 MiB/s, however fast the PTY.
const FLOOD_LINES: u64 = 8_000_000;

#[tokio::test]
async fn a_flood_beside_a_typist_runs_on_the_bulk_lane_and_loses_nothing() {
    let server = TestServer::start().await;
    let (typing, typed) = typist(&server).await;
    assert_eq!(lane_ticks(server.pid()), None, "the lane starts only when needed");

    let n = FLOOD_LINES;
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
    stop(typing);
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
    let echoed = server.info(&typed).await;
    assert!(echoed["outputOffset"].as_u64() > Some(0), "{echoed}");
}

/// A flood's actor goes to the lane; once the flood stops (the program now
/// waits for input, someone still types elsewhere) it must come back home.
#[tokio::test]
async fn an_actor_comes_home_when_its_flood_stops() {
    let server = TestServer::start().await;
    let (typing, _) = typist(&server).await;
    let script = format!("seq 1 {FLOOD_LINES}; exec cat");
    let info = server
        .create(json!({ "argv": ["sh", "-c", script], "cols": 80, "rows": 24 }))
        .await;
    let id = info["id"].as_str().unwrap().to_owned();
    wait_on_lane(&server, 1.0, secs(30), "the flood's actor never went to the lane").await;
    let want = seq_output(FLOOD_LINES).len() as u64;
    assert!(
        wait_until(secs(60), || async {
            server.info(&id).await["outputOffset"].as_u64() == Some(want)
        })
        .await,
        "the flood did not finish: {}",
        server.info(&id).await
    );
    wait_on_lane(&server, 0.0, secs(10), "the actor stayed on the lane after its flood").await;
    assert_eq!(server.info(&id).await["status"], "running");
    stop(typing);
    server.terminate(&id).await;
}

/// A `yes` session of `server`: a flood for as long as it runs.
async fn start_yes(server: &TestServer) -> String {
    let info = server.create(json!({ "argv": ["yes"], "cols": 80, "rows": 24 })).await;
    info["id"].as_str().unwrap().to_owned()
}

/// Checks, every 20 ms for `window`, that no actor is on the lane, and
/// that session `id`'s output meanwhile flowed faster than a flood's 1 MiB/s
/// (`session/flood.rs`): the home it stays in is not for want of a flood.
/// The lane's gauge is shown once an actor first moves: absent, it is 0.
async fn stays_home_while_flooding(server: &TestServer, id: &str, window: Duration, why: &str) {
    let offset = || async { server.info(id).await["outputOffset"].as_u64().expect("an offset") };
    let (from, started) = (offset().await, std::time::Instant::now());
    while started.elapsed() < window {
        let text = metrics_text(server).await.expect("/metrics answers");
        let on_lane = metric_in(&text, "termstream_bulk_lane_sessions").unwrap_or(0.0);
        assert_eq!(on_lane, 0.0, "{why}");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    let flowed = offset().await - from;
    let rate = flowed as f64 / started.elapsed().as_secs_f64();
    assert!(rate >= (1 << 20) as f64, "not a flood: {rate:.0} B/s");
}

/// Input into the flooding session itself sends its actor home at once,
/// however much someone types elsewhere: a key starts the session's stream
/// over, which counts as a flood only after 0.5 s. One key sends it home
/// for about that long, too short to be sure to see through `/metrics`;
/// keys every 50 ms keep it home as long as they go on, and once they stop
/// the flood goes back to the lane.
#[tokio::test]
async fn input_into_a_flood_sends_its_actor_home() {
    let server = TestServer::start().await;
    let (typing, _) = typist(&server).await;
    let id = start_yes(&server).await;
    wait_on_lane(&server, 1.0, secs(30), "the flood's actor never went to the lane").await;
    let own = type_into(&server, &id);
    wait_on_lane(
        &server,
        0.0,
        secs(5),
        "input into the flood did not send its actor home",
    )
    .await;
    let why = "the flood went to the lane while typed into";
    stays_home_while_flooding(&server, &id, secs(2), why).await;
    stop(own);
    wait_on_lane(
        &server,
        1.0,
        secs(30),
        "no longer typed into, the flood did not go back to the lane",
    )
    .await;
    stop(typing);
    server.terminate(&id).await;
}

/// A flood with nobody typing stays home; the same flood goes to the lane
/// once someone types into another session, so it is one the watch would
/// move (and its rate is checked over the window too).
#[tokio::test]
async fn a_lone_flood_stays_home_until_someone_types() {
    let server = TestServer::start().await;
    let id = start_yes(&server).await;
    // Past the 0.5 s a stream takes to count as a flood.
    let started = std::time::Instant::now();
    assert!(
        wait_until(secs(30), || async {
            started.elapsed() > Duration::from_secs(1)
                && server.info(&id).await["outputOffset"].as_u64() > Some(4 << 20)
        })
        .await,
        "yes did not flood: {}",
        server.info(&id).await
    );
    stays_home_while_flooding(&server, &id, secs(2), "a lone flood went to the lane").await;
    let (typing, _) = typist(&server).await;
    wait_on_lane(
        &server,
        1.0,
        secs(30),
        "the flood did not go to the lane once someone typed",
    )
    .await;
    stop(typing);
    server.terminate(&id).await;
}

/// The `termstream_bulk_lane_forwarders` gauge.
async fn forwarders_on_lane(server: &TestServer) -> Option<f64> {
    metric(server, "termstream_bulk_lane_forwarders").await
}

/// A program that waits for a line, prints whole rounds of `seq 1 10000`
/// until `stop` exists, then waits for input.
fn flood_until(stop: &std::path::Path) -> serde_json::Value {
    let script = format!(
        "read go; while [ ! -e '{}' ]; do seq 1 10000; done; exec cat",
        stop.display()
    );
    json!({ "argv": ["sh", "-c", script], "cols": 80, "rows": 24 })
}

/// One viewer's copy of a [`flood_until`] session, checked as it arrives:
/// only what does not yet make a whole round is kept.
struct Flood {
    id: String,
    /// The offset after the last byte received.
    end: u64,
    pending: Vec<u8>,
    rounds: usize,
    round: Vec<u8>,
}

impl Flood {
    fn new(id: &str) -> Flood {
        Flood {
            id: id.to_owned(),
            end: 0,
            // The typed line's echo comes first.
            pending: Vec::new(),
            rounds: 0,
            round: [&b"\r\n"[..], &seq_output(10_000)].concat(),
        }
    }

    fn take(&mut self, offset: u64, data: &[u8]) {
        assert_eq!(offset, self.end, "output must start where the last ended");
        self.end += data.len() as u64;
        self.pending.extend_from_slice(data);
        loop {
            // The echo, then rounds: a round is checked from its second
            // byte on once the echo was.
            let want: &[u8] = if self.rounds == 0 {
                &self.round
            } else {
                &self.round[2..]
            };
            if self.pending.len() < want.len() {
                break;
            }
            assert!(
                self.pending.starts_with(want),
                "round {} differs: bytes lost, doubled or reordered",
                self.rounds
            );
            self.pending.drain(..want.len());
            self.rounds += 1;
        }
    }
}

/// Reads `ws` for `wait`, each output frame into its session's flood.
async fn read_for(ws: &mut WsClient, floods: &mut [&mut Flood], wait: Duration) {
    let until = tokio::time::Instant::now() + wait;
    loop {
        let left = until.saturating_duration_since(tokio::time::Instant::now());
        match ws.recv(left).await {
            Some(Incoming::Output {
                session, offset, data, ..
            }) => match floods.iter_mut().find(|f| f.id == session) {
                Some(f) => f.take(offset, &data),
                None => panic!("output of {session}, which is not attached"),
            },
            Some(Incoming::Json(_)) => {}
            Some(Incoming::Closed(c)) => panic!("socket closed ({c:?})"),
            None => return,
        }
    }
}

/// Starts a [`flood_until`] session, attaches `ws` to it from its start,
/// and types the line it waits for.
async fn start_flood(server: &TestServer, ws: &mut WsClient, stop: &std::path::Path) -> Flood {
    let info = server.create(flood_until(stop)).await;
    let id = info["id"].as_str().unwrap().to_owned();
    assert_eq!(attach(ws, &id, None).await.start, 0);
    server.input(&id, "\n").await;
    Flood::new(&id)
}

/// Reads `ws` into `floods` until `n` forwarders are on the lane; panics
/// with `what` after 30 s.
async fn read_until_on_lane(server: &TestServer, ws: &mut WsClient, floods: &mut [&mut Flood], n: f64, what: &str) {
    let deadline = tokio::time::Instant::now() + secs(30);
    while forwarders_on_lane(server).await != Some(n) {
        assert!(tokio::time::Instant::now() < deadline, "{what}");
        read_for(ws, floods, Duration::from_millis(100)).await;
    }
}

/// A viewer's forwarder follows its flooding session to the lane, which
/// then writes the flood to the socket itself, and comes home with it; the
/// viewer gets every byte once, in order, across both moves. A detach while
/// it is on the lane is answered only once it is gone.
#[tokio::test]
async fn a_viewer_follows_its_flood_to_the_lane_and_back() {
    let server = TestServer::start().await;
    let (typing, _) = typist(&server).await;
    let stop_file = server.data_dir().join("stop-flood");
    let mut ws = WsClient::connect(&server, "/ws").await;
    let mut flood = start_flood(&server, &mut ws, &stop_file).await;
    let id = flood.id.clone();

    read_until_on_lane(
        &server,
        &mut ws,
        &mut [&mut flood],
        1.0,
        "the forwarder never went to the lane",
    )
    .await;
    std::fs::write(&stop_file, "").expect("the stop file");
    read_until_on_lane(
        &server,
        &mut ws,
        &mut [&mut flood],
        0.0,
        "the forwarder stayed on the lane",
    )
    .await;
    let end = server.info(&id).await["outputOffset"].as_u64().expect("an offset");
    let deadline = tokio::time::Instant::now() + secs(30);
    while flood.end < end {
        assert!(tokio::time::Instant::now() < deadline, "the flood's end never came");
        read_for(&mut ws, &mut [&mut flood], Duration::from_millis(100)).await;
    }
    assert_eq!(flood.end, end, "more than the log holds");
    assert!(flood.pending.is_empty(), "the flood ends in a partial round");
    assert!(flood.rounds >= 10, "a short flood: {} rounds", flood.rounds);

    // Once more to the lane, and a detach there.
    std::fs::remove_file(&stop_file).expect("the stop file");
    let mut second = start_flood(&server, &mut ws, &stop_file).await;
    let again = second.id.clone();
    read_until_on_lane(
        &server,
        &mut ws,
        &mut [&mut flood, &mut second],
        1.0,
        "the second forwarder never went to the lane",
    )
    .await;
    ws.send(json!({ "type": "session.detach", "sessionId": again })).await;
    loop {
        match ws.recv(secs(10)).await {
            Some(Incoming::Output {
                session, offset, data, ..
            }) => {
                assert_eq!(session, again, "output of another session");
                second.take(offset, &data);
            }
            Some(Incoming::Json(v)) if v["type"] == "session.detached" => break,
            Some(Incoming::Json(_)) => {}
            other => panic!("no answer to the detach: {other:?}"),
        }
    }
    assert_eq!(
        forwarders_on_lane(&server).await,
        Some(0.0),
        "detached, yet still forwarding"
    );
    // Nothing of the detached session follows its answer.
    match ws.recv(Duration::from_millis(500)).await {
        None => {}
        Some(Incoming::Output { session, .. }) => panic!("output of {session} after its detach"),
        Some(other) => panic!("unexpected after the detach: {other:?}"),
    }
    std::fs::write(&stop_file, "").expect("the stop file");
    stop(typing);
    server.terminate(&again).await;
    server.terminate(&id).await;
}
