//! Tests of the flood watch: its decisions, and how watches share the
//! kernel's budget of changes (over a model of the kernel's rate limit).

use super::autogroup::{parse, path, read};
use super::*;

#[test]
fn reads_the_autogroup_of_this_process() {
    let Ok(text) = std::fs::read_to_string(path(None)) else {
        return;
    };
    match read(&path(None)) {
        Some((group, nice)) => {
            assert!(group.starts_with("/autogroup-"), "{group}");
            assert!((-20..=19).contains(&nice));
        }
        // Empty in the default group (no session of its own since boot).
        None => assert!(text.trim().is_empty(), "not understood: {text:?}"),
    }
}

#[test]
fn parses_an_autogroup_file_and_takes_an_empty_one_as_none() {
    assert_eq!(parse("/autogroup-123 nice 5\n"), Some(("/autogroup-123".to_owned(), 5)));
    assert_eq!(parse("/autogroup-7 nice -3\n"), Some(("/autogroup-7".to_owned(), -3)));
    assert_eq!(parse(""), None);
    assert_eq!(parse("/autogroup-7 weight 3\n"), None);
}

#[test]
fn slow_output_or_input_never_floods() {
    // No leader: nothing is written, but the decision is the same.
    let mut f = FloodPriority::new(10, Some(u32::MAX));
    let t0 = Instant::now();
    // 100 KB/s for two seconds: below the flood rate.
    for i in 0..200 {
        f.output(1000, 0, t0 + Duration::from_millis(10 * i));
    }
    assert!(!f.want_low);
    // Fast, but typed into every 400 ms.
    let mut f = FloodPriority::new(10, Some(u32::MAX));
    for i in 0..200u64 {
        f.output(64 * 1024, i / 40, t0 + Duration::from_millis(10 * i));
        assert!(!f.want_low, "at {i}");
    }
}

#[test]
fn a_fast_stream_floods_while_someone_types_and_a_pause_ends_it() {
    let mut f = FloodPriority::new(10, Some(u32::MAX));
    let t0 = Instant::now();
    input_arrived();
    for i in 0..=50 {
        f.output(64 * 1024, 0, t0 + Duration::from_millis(10 * i));
    }
    assert!(f.want_low);
    // Nobody typing: a flood keeps its priority.
    f.output(64 * 1024, 0, t0 + INTERACTIVE + Duration::from_secs(1));
    assert!(!f.want_low);
    // The leader does not exist: the watch gave up changing it.
    assert_eq!(f.leader, None);
    assert_eq!(f.deadline(), None);
    let last = t0 + Duration::from_millis(500);
    f.tick(0, last + QUIET);
    assert!(!f.want_low);
}

/// A model of the kernel's autogroups: the nice of each leader's group,
/// one change per 100 ms in all, and the time the test has reached.
struct Model {
    now: Instant,
    next: Option<Instant>,
    nice: std::collections::HashMap<u32, i32>,
}

thread_local! {
    static MODEL: std::cell::RefCell<Model> = std::cell::RefCell::new(Model {
        now: Instant::now(),
        next: None,
        nice: Default::default(),
    });
}

fn model_set_nice(pid: u32, nice: i32) -> std::io::Result<()> {
    MODEL.with_borrow_mut(|m| {
        if m.next.is_some_and(|next| m.now < next) {
            return Err(std::io::Error::from_raw_os_error(
                rustix::io::Errno::AGAIN.raw_os_error(),
            ));
        }
        m.next = Some(m.now + Duration::from_millis(100));
        m.nice.insert(pid, nice);
        Ok(())
    })
}

fn model_own_group(pid: u32) -> Option<(String, i32)> {
    Some((
        format!("/autogroup-{pid}"),
        MODEL.with_borrow(|m| m.nice.get(&pid).copied().unwrap_or(0)),
    ))
}

fn model_nice(pid: u32) -> i32 {
    MODEL.with_borrow(|m| m.nice.get(&pid).copied().unwrap_or(0))
}

#[test]
fn a_restore_is_not_starved_by_many_floods_being_lowered() {
    let kernel: &'static Autogroups = Box::leak(Box::new(Autogroups::new(model_set_nice, model_own_group)));
    // Someone types elsewhere (now, in real time; the run below stays
    // within INTERACTIVE of it).
    input_arrived();
    let t0 = Instant::now();
    // Session 0 floods from the start and is lowered first; twelve more
    // start flooding 300 ms later and all want lowering from 800 ms on.
    // The first is typed into at 1000 ms, and visited last each step.
    let mut floods: Vec<FloodPriority> = (0..13).map(|pid| FloodPriority::with(kernel, 10, Some(pid))).collect();
    let typed_at = Duration::from_millis(1000);
    let mut restored_at = None;
    for step in 0..150u64 {
        let at = Duration::from_millis(10 * step);
        let now = t0 + at;
        MODEL.with_borrow_mut(|m| m.now = now);
        for (i, f) in floods.iter_mut().enumerate().rev() {
            let inputs = u64::from(i == 0 && at >= typed_at);
            if i == 0 || at >= Duration::from_millis(300) {
                f.output(64 * 1024, inputs, now);
            } else if f.deadline().is_some_and(|d| d <= now) {
                f.tick(inputs, now);
            }
        }
        if at == typed_at - Duration::from_millis(10) {
            assert_eq!(model_nice(0), 10, "session 0 was not lowered first");
        }
        if at >= typed_at && restored_at.is_none() && model_nice(0) == 0 {
            restored_at = Some(at);
        }
    }
    let restored_at = restored_at.expect("the typed-into session was never restored");
    assert!(
        restored_at <= typed_at + Duration::from_millis(230),
        "the restore waited {:?} behind lowerings",
        restored_at - typed_at
    );
    // The others were lowered all the same, at most one per 220 ms.
    let lowered = (1..13).filter(|&pid| model_nice(pid) == 10).count();
    assert!(lowered >= 2, "only {lowered} floods were lowered");
}

#[test]
fn the_budget_defers_lowerings_while_a_restore_waits() {
    let kernel: &'static Autogroups = Box::leak(Box::new(Autogroups::new(model_set_nice, model_own_group)));
    let t0 = Instant::now();
    assert_eq!(kernel.ask(false, t0), Ok(()));
    // A lowering waits twice the kernel's turn; a restore one turn.
    assert!(kernel.ask(false, t0 + Duration::from_millis(150)).is_err());
    kernel.waiting(true);
    assert_eq!(kernel.ask(true, t0 + Duration::from_millis(120)), Ok(()));
    // While a restore waits, no lowering goes, however long since.
    assert!(kernel.ask(false, t0 + Duration::from_secs(5)).is_err());
    kernel.waiting(false);
    assert_eq!(kernel.ask(false, t0 + Duration::from_secs(5)), Ok(()));
}
