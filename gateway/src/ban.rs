//! Automatic bans: clients refused too often within a window are refused at connect time for
//! a while.
//!
//! Only refusals the gateway decides (4xx with the downstream at fault) count; upstream
//! answers never do, and trusted clients are never banned. Memory is bounded by a cap on
//! tracked offenders: past it, new offenders are not tracked (their requests are still rate
//! limited). This module keys clients by [`ClientKey`] and never reads a request.

use std::sync::atomic::{AtomicU64, AtomicUsize, Ordering};
use std::time::{Duration, Instant};

use dashmap::DashMap;

use crate::limit::ClientKey;
use crate::policy::Access;

#[cfg(test)]
mod tests;

#[derive(Debug, Clone, Copy)]
struct Offender {
    window_start_ms: u64,
    count: u32,
    banned_until_ms: u64,
}

/// The offenders of the gateway; survives policy reloads.
#[derive(Debug)]
pub struct Bans {
    map: DashMap<ClientKey, Offender>,
    cap: AtomicUsize,
    epoch: Instant,
    /// The latest end of any ban given (ms since `epoch`): before it, nobody is banned and
    /// [`Bans::is_banned`] answers without locking a shard of `map`, a lock every worker
    /// would otherwise take on every request.
    bans_end_ms: AtomicU64,
}

impl Bans {
    /// Tracks at most `cap` offenders.
    pub fn new(cap: usize) -> Self {
        Bans {
            map: DashMap::new(),
            cap: AtomicUsize::new(cap),
            epoch: Instant::now(),
            bans_end_ms: AtomicU64::new(0),
        }
    }

    /// Changes the cap (on reload).
    pub fn set_cap(&self, cap: usize) {
        self.cap.store(cap, Ordering::Relaxed);
    }

    fn now_ms(&self) -> u64 {
        self.epoch.elapsed().as_millis() as u64
    }

    /// Whether `key` is banned now.
    pub fn is_banned(&self, key: ClientKey) -> bool {
        // Until a first ban, not even the clock needs reading.
        if self.bans_end_ms.load(Ordering::Relaxed) == 0 {
            return false;
        }
        self.is_banned_at(key, self.now_ms())
    }

    fn is_banned_at(&self, key: ClientKey, now: u64) -> bool {
        if self.bans_end_ms.load(Ordering::Relaxed) <= now {
            return false;
        }
        self.map.get(&key).is_some_and(|o| o.banned_until_ms > now)
    }

    /// How long `key` stays banned, if it is.
    pub fn left(&self, key: ClientKey) -> Option<Duration> {
        let now = self.now_ms();
        let until = self.map.get(&key)?.banned_until_ms;
        (until > now).then(|| Duration::from_millis(until - now))
    }

    /// Counts one refusal of `key`; returns true when this refusal bans it.
    pub fn violation(&self, key: ClientKey, access: &Access) -> bool {
        self.violation_at(key, access, self.now_ms())
    }

    fn violation_at(&self, key: ClientKey, access: &Access, now: u64) -> bool {
        let window = access.ban_window.as_millis() as u64;
        let ban = access.ban.as_millis() as u64;
        let judge = |o: &mut Offender| {
            if now.saturating_sub(o.window_start_ms) > window {
                o.window_start_ms = now;
                o.count = 0;
            }
            o.count = o.count.saturating_add(1);
            if o.count >= access.ban_after && o.banned_until_ms <= now {
                o.banned_until_ms = now.saturating_add(ban);
                self.bans_end_ms.fetch_max(o.banned_until_ms, Ordering::Relaxed);
                o.count = 0;
                o.window_start_ms = now;
                return true;
            }
            false
        };
        if let Some(mut o) = self.map.get_mut(&key) {
            return judge(&mut o);
        }
        if self.map.len() >= self.cap.load(Ordering::Relaxed) {
            return false;
        }
        let mut o = self.map.entry(key).or_insert(Offender {
            window_start_ms: now,
            count: 0,
            banned_until_ms: 0,
        });
        judge(&mut o)
    }

    /// Forgets offenders whose window has passed and who are not banned.
    pub fn retain(&self, access: &Access) {
        self.retain_at(access, self.now_ms());
    }

    fn retain_at(&self, access: &Access, now: u64) {
        let window = access.ban_window.as_millis() as u64;
        self.map.retain(|_, o| {
            o.banned_until_ms > now || now.saturating_sub(o.window_start_ms) <= window
        });
    }

    /// The clients banned now, with the time each ban has left (to carry them over a
    /// handover).
    pub fn active(&self) -> Vec<(ClientKey, Duration)> {
        let now = self.now_ms();
        if self.bans_end_ms.load(Ordering::Relaxed) <= now {
            return Vec::new();
        }
        self.map
            .iter()
            .filter(|o| o.banned_until_ms > now)
            .map(|o| (*o.key(), Duration::from_millis(o.banned_until_ms - now)))
            .collect()
    }

    /// Bans each client of `bans` for the time given (carried over a handover), within the cap
    /// on tracked offenders; a longer ban already given stays. Returns how many were taken.
    pub fn restore(&self, bans: impl IntoIterator<Item = (ClientKey, Duration)>) -> usize {
        let now = self.now_ms();
        let mut taken = 0;
        for (key, left) in bans {
            let until = now.saturating_add(u64::try_from(left.as_millis()).unwrap_or(u64::MAX));
            if let Some(mut o) = self.map.get_mut(&key) {
                o.banned_until_ms = o.banned_until_ms.max(until);
            } else if self.map.len() < self.cap.load(Ordering::Relaxed) {
                self.map.insert(
                    key,
                    Offender { window_start_ms: now, count: 0, banned_until_ms: until },
                );
            } else {
                continue;
            }
            self.bans_end_ms.fetch_max(until, Ordering::Relaxed);
            taken += 1;
        }
        taken
    }

    /// Offenders tracked.
    pub fn tracked(&self) -> usize {
        self.map.len()
    }

    /// Clients banned now.
    pub fn banned(&self) -> usize {
        let now = self.now_ms();
        self.map.iter().filter(|o| o.banned_until_ms > now).count()
    }
}
