//! Tests of the flood watch's decisions: when a session floods, when
//! someone counts as typing, and what ends the wish for the bulk lane.
//!
//! The watch is given when input last reached any session, so every test
//! says who typed when; none reads or writes the process-wide timestamp
//! that other tests' input moves.

use super::*;

const MS: Duration = Duration::from_millis(1);

/// When input last reached any session, as a function of the time.
type Typed<'a> = &'a dyn Fn(Instant) -> Option<Instant>;

/// Someone types into another session all the time: a key 1 ms before
/// every moment asked about.
fn always(now: Instant) -> Option<Instant> {
    Some(now - MS)
}

/// Nobody ever typed.
fn nobody(_: Instant) -> Option<Instant> {
    None
}

/// Feeds `f` 64 KiB every 10 ms from `t0` for `ms` milliseconds (6.4 MB/s,
/// well above the flood rate), with `inputs` as the session's input count
/// and `typed` saying when input last reached any session; returns when the
/// last was read.
fn stream(f: &mut FloodWatch, t0: Instant, ms: u64, inputs: u64, typed: Typed) -> Instant {
    let mut last = t0;
    for i in 0..=ms / 10 {
        last = t0 + 10 * i as u32 * MS;
        f.output(64 * 1024, inputs, last, typed(last));
    }
    last
}

#[test]
fn slow_output_never_floods() {
    let mut f = FloodWatch::new();
    let t0 = Instant::now();
    // 100 KB/s for two seconds, someone typing elsewhere throughout.
    for i in 0..200 {
        let now = t0 + 10 * i * MS;
        f.output(1000, 0, now, always(now));
        assert!(!f.wants_lane(), "slow output wanted the lane at {i}");
    }
    // The same at the flood rate does (the check above is not vacuous).
    let now = t0 + 2000 * MS;
    f.output(2 << 20, 0, now, always(now));
    assert!(f.wants_lane());
}

#[test]
fn input_into_the_session_starts_its_stream_over() {
    // Fast, typed into every 400 ms (less than FLOOD_AFTER) while someone
    // types elsewhere all the time.
    let mut f = FloodWatch::new();
    let t0 = Instant::now();
    for i in 0..200u64 {
        let now = t0 + 10 * i as u32 * MS;
        f.output(64 * 1024, i / 40, now, always(now));
        assert!(!f.wants_lane(), "at {i}");
    }
    // On the lane, then 300 ms more of the stream since one input: less
    // than FLOOD_AFTER of a new stream.
    let mut f = FloodWatch::new();
    let last = stream(&mut f, t0, 600, 0, &always);
    assert!(f.wants_lane());
    stream(&mut f, last + 10 * MS, 300, 1, &always);
    assert!(!f.wants_lane(), "the stream did not start over after input");
    // Longer, it is a flood again.
    stream(&mut f, last + 320 * MS, 300, 1, &always);
    assert!(f.wants_lane(), "a new stream never floods");
}

#[test]
fn input_seen_at_a_deadline_ends_the_wish() {
    let mut f = FloodWatch::new();
    let last = stream(&mut f, Instant::now(), 600, 0, &always);
    assert!(f.wants_lane());
    // No output between: the input is seen at the deadline. The key
    // reached the server before the actor saw its count change.
    let now = last + 5 * MS;
    f.tick(1, now, Some(now - MS));
    assert!(!f.wants_lane());
    assert_eq!(f.deadline(always(now)), None);
}

#[test]
fn a_pause_in_the_output_ends_the_wish_at_its_deadline() {
    let mut f = FloodWatch::new();
    let t0 = Instant::now();
    // Not before it has streamed for FLOOD_AFTER.
    let last = stream(&mut f, t0, 400, 0, &always);
    assert!(!f.wants_lane());
    assert_eq!(f.deadline(always(last)), None);
    let last = stream(&mut f, last + 10 * MS, 200, 0, &always);
    assert!(f.wants_lane());
    // Woken by the pause, or once nobody types, whichever comes first: a
    // key just now, the pause; a key 1.8 s ago, the end of typing.
    assert_eq!(f.deadline(Some(last - MS)), Some(last + QUIET));
    let early = last - (INTERACTIVE - QUIET + 100 * MS);
    assert_eq!(f.deadline(Some(early)), Some(last + QUIET - 100 * MS));
    let now = last + QUIET / 2;
    f.tick(0, now, always(now));
    assert!(f.wants_lane(), "ended before the pause was long enough");
    let now = last + QUIET;
    f.tick(0, now, always(now));
    assert!(!f.wants_lane(), "a pause of QUIET did not end the wish");
    assert_eq!(f.deadline(always(now)), None);
}

#[test]
fn a_pause_between_outputs_starts_the_stream_over() {
    let t0 = Instant::now();
    // 400 ms, a gap of QUIET, 200 ms: two streams, neither FLOOD_AFTER long.
    let mut f = FloodWatch::new();
    let last = stream(&mut f, t0, 400, 0, &always);
    stream(&mut f, last + QUIET, 200, 0, &always);
    assert!(!f.wants_lane(), "a stream went on across a pause");
    // With a gap just short of QUIET it is one stream, and a flood.
    let mut f = FloodWatch::new();
    let last = stream(&mut f, t0, 400, 0, &always);
    stream(&mut f, last + QUIET - 10 * MS, 200, 0, &always);
    assert!(f.wants_lane());
}

#[test]
fn the_wish_ends_once_nobody_types() {
    // Someone typed once, at t0; the flood streams on.
    let t0 = Instant::now();
    let typed = Some(t0);
    let mut f = FloodWatch::new();
    let last = stream(&mut f, t0, 1900, 0, &|_| typed);
    assert!(f.wants_lane());
    // Woken when the key is INTERACTIVE old, before the pause would be.
    assert_eq!(f.deadline(typed), Some(t0 + INTERACTIVE));
    f.tick(0, t0 + INTERACTIVE - MS, typed);
    assert!(f.wants_lane(), "ended while someone still typed");
    f.tick(0, t0 + INTERACTIVE, typed);
    assert!(!f.wants_lane(), "the wish outlived the typing");
    assert_eq!(f.deadline(typed), None);
    // With output read after that moment, the same.
    let mut f = FloodWatch::new();
    stream(&mut f, t0, 1900, 0, &|_| typed);
    assert!(f.wants_lane());
    stream(&mut f, last + 10 * MS, 200, 0, &|_| typed);
    assert!(!f.wants_lane(), "the wish outlived the typing");
}

#[test]
fn a_lone_flood_stays_home() {
    let t0 = Instant::now();
    // Nobody ever typed.
    let mut f = FloodWatch::new();
    stream(&mut f, t0, 2000, 0, &nobody);
    assert!(!f.wants_lane());
    assert_eq!(f.deadline(None), None);
    // The only input was the session's own (a `cat` started by a typed
    // line): the key reached the server just before the actor saw it.
    let mut f = FloodWatch::new();
    let own = Some(t0 - MS);
    stream(&mut f, t0, 1000, 1, &|_| own);
    assert!(!f.wants_lane(), "a flood went to the lane for its own input");
    // Someone types elsewhere after it: now it is a flood beside a typist.
    stream(&mut f, t0 + 1010 * MS, 100, 1, &always);
    assert!(f.wants_lane());
}

#[test]
fn typing_counts_recent_input_not_the_sessions_own() {
    let t = Instant::now();
    assert!(!typing(None, t, None), "nobody ever typed");
    assert!(typing(Some(t), t + 1000 * MS, None));
    assert!(!typing(Some(t), t + INTERACTIVE, None), "too long ago");
    // The last input was the session's own (a `cat` started by a line).
    assert!(!typing(Some(t), t + 1000 * MS, Some(t)));
    // Input elsewhere after the session's own.
    assert!(typing(Some(t + MS), t + 1000 * MS, Some(t)));
}
