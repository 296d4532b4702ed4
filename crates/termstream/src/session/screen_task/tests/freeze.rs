//! Tests of freezing: a model frozen (its screen kept as a snapshot, no
//! live parser) when its session is quiet, thawed for a snapshot or by
//! output, goes on exactly from the log: after a second freeze, from the
//! middle of an escape sequence, with resizes that waited while it stayed
//! frozen.

use super::*;

/// An idle pty is frozen again and again (each quiet spell, each snapshot
/// more than [`FREEZE_AFTER`] after the last): a second freeze once threw
/// the frozen screen away, and every later snapshot was `""` at 1×1.
/// The task is driven by hand, so no test waits for the freeze timer.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_screen_survives_a_second_freeze() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (_registry, handle) = pty_session(dir.path(), &["bash", "-c", "echo hello world; sleep 100"], 132, 43);
    let deadline = Instant::now() + Duration::from_secs(10);
    while handle.output_offset() < "hello world\r\n".len() as u64 {
        assert!(Instant::now() < deadline, "no output from bash");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    let mut task = task_of(&handle, 100);
    let shows_hello = |snap: &Snapshot| {
        let mut replay = ScreenModel::new(snap.cols, snap.rows, 100);
        replay.feed(snap.data.as_bytes());
        replay.text()[0] == "hello world"
    };
    task.catch_up(Urgency::Waited).await;
    let live = task.snapshot();
    assert!(shows_hello(&live), "the live screen: {:?}", live.data);
    assert_eq!((live.cols, live.rows), (132, 43));
    for freeze in 1..=3 {
        task.freeze();
        task.catch_up(Urgency::Waited).await;
        let snap = task.snapshot();
        assert_eq!((snap.cols, snap.rows), (132, 43), "size after freeze {freeze}");
        assert_eq!(snap.data, live.data, "screen after freeze {freeze}");
    }
    // Later output is drawn on the screen kept, not on a blank one.
    handle
        .input(
            bytes::Bytes::from_static(b"more\r"),
            false,
            None,
            Duration::from_secs(1),
        )
        .await
        .expect("input");
    let echoed = live.offset + 1;
    while handle.output_offset() < echoed {
        assert!(Instant::now() < deadline, "no echo");
        tokio::time::sleep(Duration::from_millis(10)).await;
    }
    task.freeze();
    task.catch_up(Urgency::Waited).await;
    assert!(shows_hello(&task.snapshot()), "hello world after more output");
    handle.terminate(Duration::from_secs(5)).await.expect("terminate");
}

/// A snapshot of an idle session whose model was frozen thaws it for the
/// snapshot only: the model is frozen again as soon as it is answered (a
/// viewer attached to an idle session keeps no live model); while output
/// flows it stays live.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_thawed_for_a_snapshot_is_frozen_again() {
    let settings = Config::default().session_settings();
    let dir = tempfile::tempdir().expect("tempdir");
    let end = write_log(dir.path(), &settings, b"\x1b[32m$ \x1b[mhello");
    let handle = actor::start_ended(ended_info("thawed", end), dir.path().into(), settings.clone());
    let mut task = task_of(&handle, settings.scrollback_lines);
    let snap = task.serve_snapshot(true).await;
    assert_eq!(snap.offset, end);
    let mut replay = ScreenModel::new(snap.cols, snap.rows, 100);
    replay.feed(snap.data.as_bytes());
    assert_eq!(replay.text()[0], "$ hello");
    assert!(matches!(task.model, Some(Model::Frozen { .. })), "frozen again");
    let again = task.serve_snapshot(true).await;
    assert_eq!(again.data, snap.data, "the frozen screen is the same");
    task.offset = 0;
    task.model = Some(Model::Frozen {
        snapshot: String::new(),
        cols: 80,
        rows: 24,
    });
    assert_eq!(task.serve_snapshot(false).await.data, snap.data);
    assert!(matches!(task.model, Some(Model::Live(_))), "live while output flows");
    handle.shutdown().await;
}

/// A model frozen with the output cut anywhere (inside an escape
/// sequence, inside a UTF-8 character) goes on from the log exactly: its
/// snapshot keeps the sequence under way, and a split character is read
/// again. A freeze inside `ESC [ H` used to lose the `clear` after it.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_model_frozen_in_the_middle_of_a_sequence_goes_on_exactly() {
    let settings = Config::default().session_settings();
    let dir = tempfile::tempdir().expect("tempdir");
    let output =
        "$ clear\r\n\x1b[?2004l\r\x1b[H\x1b[2J\x1b[3J\u{754c}\u{9762} \u{1F600} x\x1b]0;title\x07\x1b[1;31mred\x1b[m";
    let output = output.as_bytes();
    let end = write_log(dir.path(), &settings, output);
    let handle = actor::start_ended(ended_info("cut", end), dir.path().into(), settings.clone());
    let (cols, rows) = handle.size();
    let mut whole = ScreenModel::new(cols, rows, settings.scrollback_lines);
    whole.feed(output);
    for cut in 0..output.len() {
        let mut task = task_of(&handle, settings.scrollback_lines);
        let mut model = Box::new(ScreenModel::new(cols, rows, settings.scrollback_lines));
        model.feed(&output[..cut]);
        task.model = Some(Model::Live(model));
        task.offset = cut as u64;
        task.freeze();
        task.catch_up(Urgency::Waited).await;
        let snap = task.snapshot();
        assert_eq!(snap.offset, end);
        assert_eq!(snap.data, whole.snapshot(), "frozen at {cut}");
    }
    handle.shutdown().await;
}

/// A frozen model that a viewer watches is not thawed by a little output
/// (the echo of typing, a prompt): its bell waits for [`FROZEN_LAG`] more,
/// a quiet spell leaves it frozen, and a snapshot still catches it up to
/// the log's end. Half of [`RESIZES`] waiting, or a live model, rings at
/// the next byte as before.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_watched_frozen_model_is_not_thawed_by_a_little_output() {
    let settings = Config::default().session_settings();
    let dir = tempfile::tempdir().expect("tempdir");
    let end = write_log(dir.path(), &settings, b"$ echo hi\r\nhi\r\n$ ");
    let handle = actor::start_ended(ended_info("watched", end), dir.path().into(), settings.clone());
    let _viewer = handle.add_viewer();
    let mut task = task_of(&handle, settings.scrollback_lines);
    let wake_at = |task: &ScreenTask| task.bell.wake_at.load(Ordering::Acquire);
    task.arm();
    assert_eq!(
        wake_at(&task),
        FROZEN_LAG + 1,
        "a watched frozen model waits for more output"
    );
    assert!(task.stays_frozen(end), "a few bytes behind");
    assert!(!task.stays_frozen(FROZEN_LAG + 1), "too far behind");
    let snap = task.serve_snapshot(true).await;
    assert_eq!(snap.offset, end, "a snapshot catches up");
    let mut replay = ScreenModel::new(snap.cols, snap.rows, 100);
    replay.feed(snap.data.as_bytes());
    assert_eq!(replay.text()[1], "hi");
    assert!(matches!(task.model, Some(Model::Frozen { .. })), "frozen again");
    task.arm();
    assert_eq!(wake_at(&task), end + FROZEN_LAG + 1);
    for _ in 0..RESIZES / 2 {
        assert!(task.stays_frozen(end));
        task.note_resize(end, 100, 30);
    }
    assert!(!task.stays_frozen(end), "resizes pile up: catch up");
    task.catch_up(Urgency::Waited).await;
    assert!(matches!(task.model, Some(Model::Live(_))));
    assert!(
        task.resizes.as_ref().is_some_and(VecDeque::is_empty),
        "the resizes are applied"
    );
    task.arm();
    assert_eq!(wake_at(&task), end + 1, "a live model rings at the next byte");
    handle.shutdown().await;
}

/// Resizes that came while a watched model stayed frozen are applied at
/// their places in the output when a snapshot catches it up: text drawn
/// at the right margin while the window was narrow stays where it was
/// drawn, as it does in every viewer's terminal.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn resizes_waiting_on_a_frozen_model_apply_where_they_came() {
    let settings = Config::default().session_settings();
    let dir = tempfile::tempdir().expect("tempdir");
    let wide = b"$ wide\r\n".as_slice();
    let narrow = b"\x1b[999Cmargin\r\n$ ".as_slice();
    let end = write_log(dir.path(), &settings, &[wide, narrow].concat());
    let at = wide.len() as u64;
    let handle = actor::start_ended(ended_info("resized", end), dir.path().into(), settings.clone());
    let _viewer = handle.add_viewer();

    // What every viewer saw: the margin drawn at 40 columns.
    let mut seen = ScreenModel::new(80, 24, settings.scrollback_lines);
    seen.feed(wide);
    seen.resize(40, 24);
    seen.feed(narrow);
    seen.resize(80, 24);
    // The resizes applied at the end instead.
    let mut late = ScreenModel::new(80, 24, settings.scrollback_lines);
    late.feed(&[wide, narrow].concat());
    late.resize(40, 24);
    late.resize(80, 24);
    assert_ne!(seen.text(), late.text(), "the test tells the two apart");

    let mut task = task_of(&handle, settings.scrollback_lines);
    let mut model = Box::new(ScreenModel::new(80, 24, settings.scrollback_lines));
    model.feed(wide);
    task.model = Some(Model::Live(model));
    task.offset = at;
    task.freeze();
    task.note_resize(at, 40, 24);
    task.note_resize(end, 80, 24);
    assert!(task.stays_frozen(end), "a watched model stays frozen through them");
    let snap = task.serve_snapshot(true).await;
    assert_eq!(snap.offset, end);
    let mut replay = ScreenModel::new(snap.cols, snap.rows, settings.scrollback_lines);
    replay.feed(snap.data.as_bytes());
    assert_eq!(replay.text(), seen.text());
    handle.shutdown().await;
}
