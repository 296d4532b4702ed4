//! Tests of the scan ahead: a flood of text that flows to viewers is
//! scanned, not parsed, and a later catch-up skips it exactly, even when
//! escape sequences or a resize come after the scan.

use super::*;

/// A flood of about 5 MiB after a line that sets a pen and a mode, which
/// a restart from the log's tail would lose: a waited catch-up that far
/// behind ([`WAITED_MAX_LAG`]) gives the exact screen only by skipping.
/// `then` comes before the last tenth of the flood; returns the text and
/// where the first half and nine tenths of the flood end, at line ends.
fn flood_with(then: &str) -> (String, u64, u64) {
    let before = "$ \x1b[1;33myellow, bold, \x1b[?2004hnot reset ";
    let line = |n: usize| format!("line {n}\tof the flood 世界\r\n");
    let lines = 5 * (1 << 20) / line(100_000).len();
    let mut text = before.to_string();
    let (mut half, mut most) = (0, 0);
    for n in 0..lines {
        if n == lines / 2 {
            half = text.len() as u64;
        }
        if n == lines * 9 / 10 {
            most = text.len() as u64;
            text.push_str(then);
        }
        text.push_str(&line(n));
    }
    text.push_str("\x1b[31mred\x1b[m the end\r\n$ ");
    assert!(text.len() as u64 > WAITED_MAX_LAG + SKIP_MIN);
    (text, half, most)
}

/// A task at the start of the flood, its model live and at rest.
fn task_at_flood(handle: &SessionHandle, text: &str) -> ScreenTask {
    let scrollback = Config::default().session_settings().scrollback_lines;
    let mut task = task_of(handle, scrollback);
    let start = text.find("not reset ").expect("the first line") + "not reset ".len();
    let mut model = ScreenModel::new(80, 24, scrollback);
    model.feed(&text.as_bytes()[..start]);
    task.offset = start as u64;
    task.model = Some(Model::Live(Box::new(model)));
    task
}

/// `text` written as the log of an ended session, and a task at its
/// flood's start; the directory holds the log as long as it lives.
fn flood_session(name: &str, text: &str) -> (tempfile::TempDir, SessionHandle, ScreenTask, u64) {
    let settings = Config::default().session_settings();
    let dir = tempfile::tempdir().expect("tempdir");
    let end = write_log(dir.path(), &settings, text.as_bytes());
    let handle = actor::start_ended(ended_info(name, end), dir.path().into(), settings);
    let task = task_at_flood(&handle, text);
    (dir, handle, task, end)
}

/// Asserts that the task's screen is `parsed`'s, at the log's `end`.
fn assert_screen(name: &str, task: &mut ScreenTask, end: u64, parsed: &ScreenModel) {
    let snap = task.snapshot();
    assert_eq!(snap.offset, end, "{name}");
    assert_eq!(snap.data, parsed.snapshot(), "{name}");
}

/// Writes `text` as a session's log, catches a task at its flood's start
/// up to its end (waited for: that far behind, only a skip is exact), and
/// asserts the screen is that of a model that parsed everything.
async fn assert_caught_up_exactly(name: &str, text: &str) {
    let (_dir, handle, mut task, end) = flood_session(name, text);
    task.catch_up(Urgency::Waited).await;
    let mut parsed = ScreenModel::new(80, 24, Config::default().session_settings().scrollback_lines);
    parsed.feed(text.as_bytes());
    assert_screen(name, &mut task, end, &parsed);
    handle.shutdown().await;
}

/// The snapshot of the task's live model, at whatever offset it is.
fn model_snapshot(task: &ScreenTask) -> String {
    match &task.model {
        Some(Model::Live(m)) => m.snapshot(),
        _ => panic!("the model is not live"),
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_flood_scanned_ahead_is_not_parsed_and_is_skipped_exactly() {
    let settings = Config::default().session_settings();
    let scrollback = settings.scrollback_lines;
    for (name, then, resize) in [
        ("plain", "", false),
        ("an-escape-after-the-scan", "\x1b[m", false),
        ("a-resize-after-the-scan", "", true),
    ] {
        let (text, half, most) = flood_with(then);
        let (_dir, handle, mut task, end) = flood_session(name, &text);
        let (start, unparsed) = (task.offset, model_snapshot(&task));

        // Two scans as the flood flows: the model does not move.
        let mut scanned = start;
        for flowed in [half, most] {
            assert!(task.scan_ahead(flowed).await, "{name}: scan to {flowed}");
            assert!(task.scanned_to() > scanned, "{name}: the scan went on");
            scanned = task.scanned_to();
            let lines_left = text.as_bytes()[scanned as usize..flowed as usize]
                .iter()
                .filter(|&&b| b == b'\n')
                .count();
            assert_eq!(lines_left, 24 + scrollback - 1, "{name}: the lines before {flowed}");
            assert_eq!(task.offset, start, "{name}: the model stays where it was");
            assert_eq!(model_snapshot(&task), unparsed, "{name}: nothing was parsed");
        }
        let mut parsed = ScreenModel::new(80, 24, scrollback);
        if resize {
            // A resize at the log's end the scan was made for.
            task.note_resize(most, 100, 30);
            parsed.feed(&text.as_bytes()[..most as usize]);
            parsed.resize(100, 30);
            parsed.feed(&text.as_bytes()[most as usize..]);
            parsed.resize(80, 24);
        } else {
            parsed.feed(text.as_bytes());
        }
        // Escape sequences after the scan: the next scan finds them; with
        // none, it goes on to the plain lines before the log's last, red
        // one (a resize waiting, it does not scan).
        assert_eq!(
            task.scan_ahead(end).await,
            then.is_empty() && !resize,
            "{name}: scan to the end"
        );
        task.catch_up(Urgency::Waited).await;
        assert_screen(name, &mut task, end, &parsed);
        handle.shutdown().await;
    }
}

/// A resize that came before the log's end a scan was made for leaves
/// too few lines after the scan's end to fill the screen and scrollback
/// at the old size: the catch-up must not skip to it, and parses all.
/// (A window made much taller right after the scan's end shows what a
/// skip there would have left blank.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_resize_before_the_scans_end_is_not_skipped_over() {
    let settings = Config::default().session_settings();
    let (full, _, most) = flood_with("");
    // The log ends a few lines after the scan's end.
    let mut text = full[..most as usize].to_string();
    text.push_str("a few\r\nmore\r\nlines\r\n$ ");
    let (_dir, handle, mut task, end) = flood_session("resize-before", &text);
    assert!(task.scan_ahead(most).await, "scan to {most}");
    let resized_at = task.scanned_to() + 10;
    task.note_resize(resized_at, 80, 200);
    let mut parsed = ScreenModel::new(80, 24, settings.scrollback_lines);
    parsed.feed(&text.as_bytes()[..resized_at as usize]);
    parsed.resize(80, 200);
    parsed.feed(&text.as_bytes()[resized_at as usize..]);
    parsed.resize(80, 24);
    // In the background a model this far behind parses everything.
    task.catch_up(Urgency::Background).await;
    assert_screen("resize-before", &mut task, end, &parsed);
    handle.shutdown().await;
}

/// The task's own loop scans ahead while a flood of text flows to a
/// viewer (before, it parsed a screen and scrollback of lines every
/// 4 MiB), and the screen still ends with the flood's last lines.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_flood_is_scanned_ahead_by_the_task() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_registry, handle) = pty_session(dir.path(), &["seq", "5000000"], 80, 24);
    let _viewer = handle.add_viewer();
    let bell = handle.screen.as_ref().expect("a pty session's screen").bell.clone();
    let deadline = Instant::now() + Duration::from_secs(60);
    while handle.info().status == SessionStatus::Running {
        assert!(Instant::now() < deadline, "seq did not end");
        tokio::time::sleep(Duration::from_millis(20)).await;
    }
    assert!(handle.output_offset() > 40 << 20, "{} bytes", handle.output_offset());
    assert!(bell.scans_ahead.load(Ordering::Relaxed) > 0, "no scan ahead");
    let snap = handle.snapshot().await.expect("snapshot");
    let mut replay = ScreenModel::new(snap.cols, snap.rows, 100);
    replay.feed(snap.data.as_bytes());
    assert!(replay.text().iter().any(|l| l == "5000000"), "{:?}", replay.text());
    handle.terminate(Duration::from_secs(5)).await.ok();
}

/// The lines after a skip's end are parsed by whichever catch-up skips to
/// it, and must all scroll the screen as plain text does: when the
/// alternate screen comes among the last lines before a scan's end, the
/// scan stops a screen and scrollback of lines before it (a skip further
/// on would leave rows of the skip in the scrollback), and the catch-up
/// is exact.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_scan_stops_the_lines_it_leaves_before_the_alternate_screen() {
    let settings = Config::default().session_settings();
    let (mut text, half, most) = flood_with("");
    let ten_lines_before = text[..most as usize - 1].rmatch_indices('\n').nth(9).expect("lines").0 + 1;
    text.insert_str(ten_lines_before, "\x1b[?1049h");
    let (_dir, handle, mut task, end) = flood_session("alternate", &text);
    assert!(task.scan_ahead(half).await, "scan to {half}");
    let most = most + "\x1b[?1049h".len() as u64;
    assert!(task.scan_ahead(most).await, "scan to {most}");
    let lines_before = text.as_bytes()[task.scanned_to() as usize..ten_lines_before]
        .iter()
        .filter(|&&b| b == b'\n')
        .count();
    assert_eq!(lines_before, 24 + settings.scrollback_lines - 1);
    task.catch_up(Urgency::Waited).await;
    let mut parsed = ScreenModel::new(80, 24, settings.scrollback_lines);
    parsed.feed(text.as_bytes());
    assert_screen("alternate", &mut task, end, &parsed);
    handle.shutdown().await;
}

/// The same without a scan ahead: a catch-up of a flood whose last lines
/// switch to the alternate screen skips only to a screen and scrollback
/// of lines before the switch, and its screen is exact (skipping to the
/// last lines before the log's end left rows of the skip in the
/// scrollback, above the flood's last lines).
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_stops_the_lines_it_leaves_before_the_alternate_screen() {
    let (mut text, _, _) = flood_with("");
    let red = text.rfind("\x1b[31m").expect("the red line");
    let ten_lines_before = text[..red - 1].rmatch_indices('\n').nth(9).expect("lines").0 + 1;
    text.insert_str(ten_lines_before, "\x1b[?1049h");
    assert_caught_up_exactly("alternate-now", &text).await;
}

/// The same with lines long enough that the last screen and scrollback of
/// them take more than one read back (64 KiB each), and the switch to the
/// alternate screen in the last of those reads, not the one where the
/// lines' count ends: the skip point is found across them.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_skip_point_is_found_across_reads_back() {
    // 72 bytes a line, within 80 columns: 1024 of them are more than
    // 64 KiB, and none wraps (a wrapped line scrolls more than one row,
    // which would hide rows left from the skip).
    let pad = "x".repeat(63);
    let lines = 80_000;
    let mut text = "$ \x1b[1;33myellow, bold, \x1b[?2004hnot reset ".to_string();
    for n in 0..lines {
        if n == lines - 300 {
            text.push_str("\x1b[?1049h");
        }
        text.push_str(&format!("{n:06} {pad}\r\n"));
    }
    text.push_str("$ ");
    assert_caught_up_exactly("long-lines", &text).await;
}
