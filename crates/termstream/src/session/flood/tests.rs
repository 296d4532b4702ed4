//! Tests of the flood watch's decisions: when a session floods, when
//! someone counts as typing, and what ends the wish for the bulk lane.
//!
//! When input last reached any session is one process-wide timestamp, and
//! other tests send input too: these tests only rely on it being recent
//! after [`input_arrived`], or test [`typing_since`] with times of their
//! own, or run far enough in the future that no input counts.

use super::*;

/// Feeds `f` 64 KiB every 10 ms from `t0` for `ms` milliseconds (6.4 MB/s,
/// well above the flood rate), with `inputs` as the session's input count;
/// returns when the last was read.
fn stream(f: &mut FloodWatch, t0: Instant, ms: u64, inputs: u64) -> Instant {
    let mut last = t0;
    for i in 0..=ms / 10 {
        last = t0 + Duration::from_millis(10 * i);
        f.output(64 * 1024, inputs, last);
    }
    last
}

#[test]
fn slow_output_or_input_never_floods() {
    input_arrived();
    let mut f = FloodWatch::new();
    let t0 = Instant::now();
    // 100 KB/s for two seconds: below the flood rate.
    for i in 0..200 {
        f.output(1000, 0, t0 + Duration::from_millis(10 * i));
    }
    assert!(!f.wants_lane());
    // Fast, but typed into every 400 ms.
    let mut f = FloodWatch::new();
    for i in 0..200u64 {
        f.output(64 * 1024, i / 40, t0 + Duration::from_millis(10 * i));
        assert!(!f.wants_lane(), "at {i}");
    }
}

#[test]
fn a_fast_stream_wants_the_lane_while_someone_types_and_a_pause_ends_it() {
    input_arrived();
    let mut f = FloodWatch::new();
    let t0 = Instant::now();
    // Not before it has streamed for FLOOD_AFTER.
    let last = stream(&mut f, t0, 400, 0);
    assert!(!f.wants_lane());
    assert_eq!(f.deadline(), None);
    let last = stream(&mut f, last + Duration::from_millis(10), 200, 0);
    assert!(f.wants_lane());
    // The actor is woken by the pause, or once nobody types, whichever
    // comes first.
    let at = f.deadline().expect("a deadline while on the lane");
    assert!(at <= last + QUIET, "{:?} after the last output", at - last);
    f.tick(0, last + QUIET / 2);
    assert!(f.wants_lane(), "ended before the pause was long enough");
    f.tick(0, last + QUIET);
    assert!(!f.wants_lane());
    assert_eq!(f.deadline(), None);
}

#[test]
fn input_to_the_flooding_session_ends_the_wish_at_once() {
    input_arrived();
    let mut f = FloodWatch::new();
    let t0 = Instant::now();
    let last = stream(&mut f, t0, 600, 0);
    assert!(f.wants_lane());
    // Seen at a deadline, with no output between.
    f.tick(1, last + Duration::from_millis(5));
    assert!(!f.wants_lane());
    // Seen with output: the stream starts over.
    let mut f = FloodWatch::new();
    let last = stream(&mut f, t0, 600, 0);
    assert!(f.wants_lane());
    // 300 ms of it since the input: less than FLOOD_AFTER.
    stream(&mut f, last + Duration::from_millis(10), 300, 1);
    assert!(!f.wants_lane(), "the stream did not start over after input");
}

#[test]
fn a_lone_flood_stays_home() {
    // An hour from now nobody has typed for far longer than INTERACTIVE.
    let mut f = FloodWatch::new();
    let t0 = Instant::now() + Duration::from_secs(3600);
    stream(&mut f, t0, 2000, 0);
    assert!(!f.wants_lane());
    assert_eq!(f.deadline(), None);
}

#[test]
fn typing_counts_recent_input_not_the_sessions_own() {
    let t = Instant::now();
    let ms = Duration::from_millis;
    assert!(!typing_since(None, t, None), "nobody ever typed");
    assert!(typing_since(Some(t), t + ms(1000), None));
    assert!(!typing_since(Some(t), t + INTERACTIVE, None), "too long ago");
    // The last input was the session's own (a `cat` started by a line).
    assert!(!typing_since(Some(t), t + ms(1000), Some(t)));
    // Input elsewhere after the session's own.
    assert!(typing_since(Some(t + ms(1)), t + ms(1000), Some(t)));
}
