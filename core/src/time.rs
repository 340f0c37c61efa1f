//! Antelope time types and their string form.
//!
//! `time_point` is microseconds since the Unix epoch, `time_point_sec` seconds, and
//! `block_timestamp_type` the number of 500 ms slots since 2000-01-01T00:00:00. Their JSON form
//! is ISO 8601 without a zone suffix (`2024-01-01T00:00:50.000`): clients reject a trailing `Z`,
//! so it is never written, though it is accepted on input.

use std::fmt;
use std::str::FromStr;

use crate::codec::{DecodeError, Pack, Reader, Unpack};

/// Milliseconds from the Unix epoch to 2000-01-01T00:00:00, the block timestamp epoch.
pub const BLOCK_TIMESTAMP_EPOCH_MS: i64 = 946_684_800_000;
/// Length of one block slot.
pub const BLOCK_INTERVAL_MS: i64 = 500;

/// A time string that could not be parsed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("time {0:?} must look like 2024-01-01T00:00:50.000 (UTC, within the type's range)")]
pub struct TimeError(pub String);

/// Microseconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct TimePoint(pub i64);

/// Seconds since the Unix epoch.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct TimePointSec(pub u32);

/// A block slot: 500 ms periods since 2000-01-01T00:00:00 UTC.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default, Debug)]
pub struct BlockTimestamp(pub u32);

impl TimePoint {
    /// From milliseconds since the epoch.
    pub const fn from_millis(ms: i64) -> Self {
        TimePoint(ms.saturating_mul(1000))
    }
    /// Milliseconds since the epoch (rounded down).
    pub const fn millis(self) -> i64 {
        self.0.div_euclid(1000)
    }
}

impl TimePointSec {
    /// As a `TimePoint`.
    pub const fn to_time_point(self) -> TimePoint {
        TimePoint(self.0 as i64 * 1_000_000)
    }
}

impl BlockTimestamp {
    /// The slot that contains the given time (rounded down). Times before 2000 map to slot 0,
    /// times past the `u32` range to the last slot.
    pub fn from_time_point(t: TimePoint) -> Self {
        let slot = (t.millis() - BLOCK_TIMESTAMP_EPOCH_MS).div_euclid(BLOCK_INTERVAL_MS);
        BlockTimestamp(slot.clamp(0, i64::from(u32::MAX)) as u32)
    }
    /// Start of the slot.
    pub const fn to_time_point(self) -> TimePoint {
        TimePoint::from_millis(self.0 as i64 * BLOCK_INTERVAL_MS + BLOCK_TIMESTAMP_EPOCH_MS)
    }
    /// The following slot.
    pub const fn next(self) -> Self {
        BlockTimestamp(self.0.saturating_add(1))
    }
}

/// Days since 1970-01-01 to (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let y = yoe + era * 400;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (if m <= 2 { y + 1 } else { y }, m, d)
}

/// (year, month, day) to days since 1970-01-01.
fn days_from_civil(y: i64, m: u32, d: u32) -> i64 {
    let y = if m <= 2 { y - 1 } else { y };
    let era = y.div_euclid(400);
    let yoe = y.rem_euclid(400);
    let m = i64::from(m);
    let doy = (153 * (if m > 2 { m - 3 } else { m + 9 }) + 2) / 5 + i64::from(d) - 1;
    let doe = yoe * 365 + yoe / 4 - yoe / 100 + doy;
    era * 146_097 + doe - 719_468
}

fn days_in_month(y: i64, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        _ if (y % 4 == 0 && y % 100 != 0) || y % 400 == 0 => 29,
        _ => 28,
    }
}

fn write_iso(f: &mut fmt::Formatter<'_>, micros: i64, with_millis: bool) -> fmt::Result {
    let secs = micros.div_euclid(1_000_000);
    let (y, mo, d) = civil_from_days(secs.div_euclid(86_400));
    let sod = secs.rem_euclid(86_400);
    // Years past 9999 or before 0 (reachable from raw i64 time points) keep every digit and
    // a sign, so what is written always parses back.
    let sign = if y < 0 { "-" } else { "" };
    let ya = y.unsigned_abs();
    write!(
        f,
        "{sign}{ya:04}-{mo:02}-{d:02}T{:02}:{:02}:{:02}",
        sod / 3600,
        sod % 3600 / 60,
        sod % 60
    )?;
    if with_millis {
        write!(f, ".{:03}", micros.rem_euclid(1_000_000) / 1000)?;
    }
    Ok(())
}

/// Parses `YYYY-MM-DDTHH:MM:SS[.fraction][Z]` into microseconds since the epoch.
fn parse_iso(s: &str) -> Option<i64> {
    let t = s.strip_suffix('Z').unwrap_or(s);
    let (date, time) = t.split_once('T')?;
    let (neg, date) = match date.strip_prefix('-') {
        Some(d) => (true, d),
        None => (false, date),
    };
    let mut dp = date.splitn(3, '-');
    let num = |p: &str, len: usize| -> Option<i64> {
        (p.len() == len && p.bytes().all(|b| b.is_ascii_digit())).then(|| p.parse().ok())?
    };
    let digits = dp.next()?;
    if digits.len() < 4 || digits.len() > 12 || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return None;
    }
    let y: i64 = digits.parse().ok()?;
    let y = if neg { -y } else { y };
    let mo = u32::try_from(num(dp.next()?, 2)?).ok()?;
    let d = u32::try_from(num(dp.next()?, 2)?).ok()?;
    if !(1..=12).contains(&mo) || d == 0 || d > days_in_month(y, mo) {
        return None;
    }
    let (hms, frac) = match time.split_once('.') {
        Some((a, b)) => (a, Some(b)),
        None => (time, None),
    };
    let mut tp = hms.splitn(3, ':');
    let h = num(tp.next()?, 2)?;
    let mi = num(tp.next()?, 2)?;
    let sec = num(tp.next()?, 2)?;
    if h > 23 || mi > 59 || sec > 59 {
        return None;
    }
    let mut micros = 0i64;
    if let Some(fr) = frac {
        if fr.is_empty() || fr.len() > 6 || !fr.bytes().all(|b| b.is_ascii_digit()) {
            return None;
        }
        micros = fr.parse::<i64>().ok()? * 10i64.pow(6 - fr.len() as u32);
    }
    let days = days_from_civil(y, mo, d);
    let total = (i128::from(days) * 86_400 + i128::from(h * 3600 + mi * 60 + sec)) * 1_000_000
        + i128::from(micros);
    // Text carries milliseconds: the written form of the lowest time points floors to at most
    // one millisecond below i64::MIN, which saturates rather than failing the round trip.
    if (i128::from(i64::MIN) - 1000..i128::from(i64::MIN)).contains(&total) {
        return Some(i64::MIN);
    }
    i64::try_from(total).ok()
}

impl fmt::Display for TimePoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_iso(f, self.0, true)
    }
}
impl FromStr for TimePoint {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        parse_iso(s).map(TimePoint).ok_or_else(|| TimeError(s.to_owned()))
    }
}

impl fmt::Display for TimePointSec {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_iso(f, i64::from(self.0) * 1_000_000, false)
    }
}
impl FromStr for TimePointSec {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let us = parse_iso(s).ok_or_else(|| TimeError(s.to_owned()))?;
        u32::try_from(us.div_euclid(1_000_000))
            .map(TimePointSec)
            .map_err(|_| TimeError(s.to_owned()))
    }
}

impl fmt::Display for BlockTimestamp {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write_iso(f, self.to_time_point().0, true)
    }
}
impl FromStr for BlockTimestamp {
    type Err = TimeError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let ms = parse_iso(s).ok_or_else(|| TimeError(s.to_owned()))?.div_euclid(1000);
        let slot = (ms - BLOCK_TIMESTAMP_EPOCH_MS).div_euclid(BLOCK_INTERVAL_MS);
        u32::try_from(slot).map(BlockTimestamp).map_err(|_| TimeError(s.to_owned()))
    }
}

impl Pack for TimePoint {
    fn pack(&self, out: &mut Vec<u8>) {
        self.0.pack(out);
    }
}
impl Unpack for TimePoint {
    const MIN_SIZE: usize = 8;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        i64::unpack(r).map(TimePoint)
    }
}
impl Pack for TimePointSec {
    fn pack(&self, out: &mut Vec<u8>) {
        self.0.pack(out);
    }
}
impl Unpack for TimePointSec {
    const MIN_SIZE: usize = 4;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        u32::unpack(r).map(TimePointSec)
    }
}
impl Pack for BlockTimestamp {
    fn pack(&self, out: &mut Vec<u8>) {
        self.0.pack(out);
    }
}
impl Unpack for BlockTimestamp {
    const MIN_SIZE: usize = 4;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        u32::unpack(r).map(BlockTimestamp)
    }
}

crate::serde_via_string!(TimePoint, TimePointSec, BlockTimestamp);

#[cfg(test)]
mod tests;
