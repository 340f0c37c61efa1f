//! The node's only wall clock. Block execution never reads time (the crate's `clippy.toml`
//! bans it); the producer needs real UTC to know which 500 ms slot it is in, and operators need
//! durations for metrics and deadlines. Both come from here and nowhere else.
//!
//! What must never happen: a value from this module reaching block execution other than as a
//! block timestamp the producer chose.

use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rempart_core::{BlockTimestamp, TimePoint};

/// Real UTC now, as an Antelope time point.
#[allow(clippy::disallowed_methods, reason = "the producer's slot clock: the one place allowed")]
pub fn now() -> TimePoint {
    let since = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or(Duration::ZERO);
    TimePoint(i64::try_from(since.as_micros()).unwrap_or(i64::MAX))
}

/// A monotonic instant, for deadlines and measured durations.
#[allow(clippy::disallowed_methods, reason = "deadlines and metrics, never block execution")]
pub fn instant() -> Instant {
    Instant::now()
}

/// How long until the start of `slot` (zero when it has begun).
pub fn until(slot: BlockTimestamp) -> Duration {
    let wait_us = slot.to_time_point().0 - now().0;
    Duration::from_micros(u64::try_from(wait_us).unwrap_or(0))
}
