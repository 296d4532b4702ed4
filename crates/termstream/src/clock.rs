//! Wall-clock time as the wire carries it: Unix milliseconds.

use std::time::{SystemTime, UNIX_EPOCH};

/// Milliseconds since the Unix epoch, now.
pub fn now_ms() -> u64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| d.as_millis() as u64)
}

/// Seconds since the Unix epoch, now, as a float (the older shapes' times).
pub fn now_secs() -> f64 {
    secs(now_ms())
}

/// A time in Unix ms as float seconds (the older shapes' times).
pub fn secs(ms: u64) -> f64 {
    ms as f64 / 1000.0
}
