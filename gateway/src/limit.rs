//! Rate limits: GCRA (governor) per client key per route class, and one global limit.
//!
//! Clients are keyed by address prefix (IPv4 /32, IPv6 /64 by default) so one host or one
//! IPv6 site is one client. Memory is bounded: each class tracks at most `max_tracked_clients`
//! keys; once full, new clients share a single overflow bucket until idle keys are forgotten by
//! [`Limiters::retain_recent`]. This module never blocks and never takes a client header into
//! account: the key comes from the TCP peer address only.
//!
//! With limits shared between gateways (`[limits.shared]`, see [`crate::fleet`]), each class
//! also counts the requests it lets through per client until the next exchange
//! ([`Limiters::drain_shared`]), and takes in the fleet's view of each client
//! ([`SharedBatch::absorb`]); the checks themselves stay local and never wait on the network.

use std::collections::HashMap;
use std::hash::Hash;
use std::net::IpAddr;
use std::num::NonZeroU32;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::time::Duration;

use dashmap::DashMap;
use governor::clock::{Clock, DefaultClock, Reference};
use governor::middleware::NoOpMiddleware;
use governor::nanos::Nanos;
use governor::state::keyed::ShrinkableKeyedStateStore;
use governor::state::{InMemoryState, NotKeyed, StateStore};
use governor::{Quota, RateLimiter};

use crate::policy::Policy;

#[cfg(test)]
mod tests;

/// A client as the limiter sees it: the peer address cut to the configured prefix.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash, serde::Serialize, serde::Deserialize)]
pub enum ClientKey {
    /// IPv4 prefix (host bits zeroed).
    V4(u32),
    /// The top 64 bits of an IPv6 address, cut to the prefix.
    V6(u64),
}

impl ClientKey {
    /// The key of `ip`; IPv4-mapped IPv6 addresses count as IPv4.
    pub fn of(ip: IpAddr, v4_prefix: u8, v6_prefix: u8) -> ClientKey {
        match ip {
            IpAddr::V4(v4) => ClientKey::V4(u32::from(v4) & prefix_mask_32(v4_prefix)),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => ClientKey::V4(u32::from(v4) & prefix_mask_32(v4_prefix)),
                None => {
                    let top = (u128::from(v6) >> 64) as u64;
                    ClientKey::V6(top & prefix_mask_64(v6_prefix))
                }
            },
        }
    }
}

fn prefix_mask_32(len: u8) -> u32 {
    match len {
        0 => 0,
        l if l >= 32 => u32::MAX,
        l => u32::MAX << (32 - u32::from(l)),
    }
}

fn prefix_mask_64(len: u8) -> u64 {
    match len {
        0 => 0,
        l if l >= 64 => u64::MAX,
        l => u64::MAX << (64 - u32::from(l)),
    }
}

/// A keyed GCRA state store with a cap on tracked keys. Past the cap, unknown keys share one
/// overflow state, so a flood of addresses cannot grow memory.
#[derive(Debug)]
pub struct CappedStore {
    map: DashMap<ClientKey, InMemoryState>,
    overflow: InMemoryState,
    cap: usize,
    overflowed: AtomicU64,
    /// Whether requests let through are counted for the fleet.
    counting: AtomicBool,
    /// Requests let through per client since the last exchange with the fleet (at most `cap`
    /// clients; the overflow bucket's clients are not counted).
    pending: DashMap<ClientKey, u32>,
    pending_len: AtomicUsize,
}

impl CappedStore {
    fn new(cap: usize) -> Self {
        CappedStore {
            map: DashMap::new(),
            overflow: InMemoryState::default(),
            cap,
            overflowed: AtomicU64::new(0),
            counting: AtomicBool::new(false),
            pending: DashMap::new(),
            pending_len: AtomicUsize::new(0),
        }
    }

    /// Counts one request of `key` let through, for the next exchange.
    fn count(&self, key: &ClientKey) {
        if let Some(mut n) = self.pending.get_mut(key) {
            *n = n.saturating_add(1);
            return;
        }
        if self.pending_len.load(Ordering::Relaxed) >= self.cap {
            return;
        }
        let mut n = self.pending.entry(*key).or_insert_with(|| {
            self.pending_len.fetch_add(1, Ordering::Relaxed);
            0
        });
        *n = n.saturating_add(1);
    }

    /// Takes the counts gathered since the last call.
    fn drain(&self) -> Vec<(ClientKey, u32)> {
        let mut out = Vec::new();
        self.pending.retain(|k, n| {
            out.push((*k, *n));
            false
        });
        self.pending_len.fetch_sub(out.len(), Ordering::Relaxed);
        out
    }
}

/// A [`CappedStore`] shared between its limiter and the statistics.
#[derive(Debug, Clone)]
pub struct SharedStore(Arc<CappedStore>);

impl StateStore for SharedStore {
    type Key = ClientKey;

    fn measure_and_replace<T, F, E>(&self, key: &ClientKey, f: F) -> Result<T, E>
    where
        F: Fn(Option<Nanos>) -> Result<(T, Nanos), E>,
    {
        let this = &self.0;
        let result = if let Some(state) = this.map.get(key) {
            state.measure_and_replace(&NotKeyed::NonKey, f)
        } else if this.map.len() >= this.cap {
            this.overflowed.fetch_add(1, Ordering::Relaxed);
            return this.overflow.measure_and_replace(&NotKeyed::NonKey, f);
        } else {
            let state = this.map.entry(*key).or_default();
            state.measure_and_replace(&NotKeyed::NonKey, f)
        };
        if result.is_ok() && this.counting.load(Ordering::Relaxed) {
            this.count(key);
        }
        result
    }
}

/// Reads a state without changing it.
fn peek(state: &InMemoryState) -> Option<Nanos> {
    let r: Result<(), Option<Nanos>> = state.measure_and_replace(&NotKeyed::NonKey, Err);
    r.err().flatten()
}

impl ShrinkableKeyedStateStore<ClientKey> for SharedStore {
    fn retain_recent(&self, drop_below: Nanos) {
        let below = drop_below.as_u64();
        self.0.map.retain(|_, state| peek(state).is_some_and(|t| t.as_u64() > below));
    }

    fn shrink_to_fit(&self) {
        self.0.map.shrink_to_fit();
    }

    fn len(&self) -> usize {
        self.0.map.len()
    }

    fn is_empty(&self) -> bool {
        self.0.map.is_empty()
    }
}

type Instant = <DefaultClock as Clock>::Instant;
type KeyedLimiter = RateLimiter<ClientKey, SharedStore, DefaultClock, NoOpMiddleware<Instant>>;
type DirectLimiter = RateLimiter<NotKeyed, InMemoryState, DefaultClock, NoOpMiddleware<Instant>>;

/// The requests one class let through per client since the last exchange with the fleet.
#[derive(Debug)]
pub struct SharedBatch {
    /// The route class.
    pub class: String,
    /// Whether these are the trusted clients' buckets.
    pub trusted: bool,
    /// Requests let through, per client.
    pub counts: Vec<(ClientKey, u32)>,
    clock: DefaultClock,
    limiter: Arc<ClassLimiter>,
}

impl SharedBatch {
    /// The time one request takes from the class's rate, in microseconds.
    pub fn step_micros(&self) -> f64 {
        1e6 / f64::from(self.limiter.spec.per_second.get())
    }

    /// Takes in the fleet's view of a client: its bucket here is made no emptier than one
    /// whose theoretical arrival time is `ahead` from now (the fleet counted requests this
    /// gateway did not see). A client forgotten meanwhile is tracked again if there is room.
    pub fn absorb(&self, key: ClientKey, ahead: Duration) {
        raise(&self.clock, &self.limiter, key, ahead);
    }
}

/// Makes `key`'s bucket in `l` no emptier than one whose theoretical arrival time is `ahead`
/// from now; a client not tracked is tracked if there is room. Returns whether the bucket is
/// tracked.
fn raise(clock: &DefaultClock, l: &ClassLimiter, key: ClientKey, ahead: Duration) -> bool {
    if ahead.is_zero() {
        return false;
    }
    let store = &l.store;
    let target = clock.now().duration_since(l.origin) + ahead;
    let up = |cur: Option<Nanos>| -> Result<((), Nanos), ()> {
        Ok(((), cur.map_or(target, |c| c.max(target))))
    };
    if let Some(state) = store.map.get(&key) {
        let _ = state.measure_and_replace(&NotKeyed::NonKey, up);
        true
    } else if store.map.len() < store.cap {
        let _ = store.map.entry(key).or_default().measure_and_replace(&NotKeyed::NonKey, up);
        true
    } else {
        false
    }
}

/// A client's bucket carried to a successor over a handover: how far its theoretical arrival
/// time is ahead of now (a bucket that is full again is not carried).
#[derive(Debug, Clone, PartialEq, Eq, serde::Serialize, serde::Deserialize)]
#[serde(deny_unknown_fields)]
pub struct CarriedBucket {
    /// The route class.
    pub class: String,
    /// Whether it is the trusted clients' bucket.
    pub trusted: bool,
    /// The client.
    pub key: ClientKey,
    /// Microseconds its theoretical arrival time is ahead of now.
    pub us: u64,
}

/// Which limit refused a request.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Scope {
    /// The client's own limit for the route class.
    Client,
    /// The limit over all clients.
    Global,
}

/// The outcome of a rate-limit check.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub enum Decision {
    /// The request may pass.
    Allowed,
    /// The request must wait this long.
    Limited {
        /// Until the next request would conform.
        wait: Duration,
        /// Which limit refused it.
        scope: Scope,
    },
}

impl Decision {
    /// The log label.
    pub fn label(&self) -> &'static str {
        match self {
            Decision::Allowed => "allowed",
            Decision::Limited { scope: Scope::Client, .. } => "limited_client",
            Decision::Limited { scope: Scope::Global, .. } => "limited_global",
        }
    }
}

#[derive(Debug)]
struct ClassLimiter {
    spec: QuotaSpec,
    store: Arc<CappedStore>,
    limiter: KeyedLimiter,
    /// Read just before the limiter was made, so at most a few nanoseconds before the origin
    /// of the times its states hold.
    origin: Instant,
}

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
struct QuotaSpec {
    per_second: NonZeroU32,
    burst: NonZeroU32,
    cap: usize,
}

impl QuotaSpec {
    fn quota(&self) -> Quota {
        Quota::per_second(self.per_second).allow_burst(self.burst)
    }
}

/// The limiters of a policy. Rebuilding for a new policy keeps the state of every limiter
/// whose quota did not change.
#[derive(Debug)]
pub struct Limiters {
    clock: DefaultClock,
    global: Arc<(QuotaSpec, DirectLimiter)>,
    classes: HashMap<String, Arc<ClassLimiter>>,
    trusted: HashMap<String, Arc<ClassLimiter>>,
}

impl Limiters {
    /// Fresh limiters for `policy`.
    pub fn new(policy: &Policy) -> Limiters {
        Limiters::build(policy, None)
    }

    /// Limiters for `policy` that keep this set's state where the quota is unchanged.
    pub fn rebuilt(&self, policy: &Policy) -> Limiters {
        Limiters::build(policy, Some(self))
    }

    fn build(policy: &Policy, old: Option<&Limiters>) -> Limiters {
        let clock = DefaultClock::default();
        let limits = policy.limits();
        let gspec =
            QuotaSpec { per_second: limits.global_per_second, burst: limits.global_burst, cap: 1 };
        let global = match old {
            Some(o) if o.global.0 == gspec => o.global.clone(),
            _ => Arc::new((gspec, RateLimiter::direct_with_clock(gspec.quota(), clock.clone()))),
        };
        let make = |spec: QuotaSpec, prev: Option<&Arc<ClassLimiter>>| match prev {
            Some(l) if l.spec == spec => l.clone(),
            _ => {
                let store = Arc::new(CappedStore::new(spec.cap));
                let origin = clock.now();
                let limiter =
                    RateLimiter::new(spec.quota(), SharedStore(store.clone()), clock.clone());
                Arc::new(ClassLimiter { spec, store, limiter, origin })
            }
        };
        let factor = policy.access().trusted_factor;
        let mut classes = HashMap::new();
        let mut trusted = HashMap::new();
        for c in policy.classes() {
            let spec = QuotaSpec {
                per_second: c.per_second,
                burst: c.burst,
                cap: limits.max_tracked_clients,
            };
            let tspec = QuotaSpec {
                per_second: c.per_second.saturating_mul(factor),
                burst: c.burst.saturating_mul(factor),
                cap: limits.max_tracked_clients,
            };
            classes.insert(c.name.clone(), make(spec, old.and_then(|o| o.classes.get(&c.name))));
            trusted.insert(c.name.clone(), make(tspec, old.and_then(|o| o.trusted.get(&c.name))));
        }
        let sharing = limits.shared.is_some();
        for l in classes.values().chain(trusted.values()) {
            l.store.counting.store(sharing, Ordering::Relaxed);
            if !sharing {
                l.store.drain();
            }
        }
        Limiters { clock, global, classes, trusted }
    }

    /// The buckets of clients that are not full again, at most `max` of them, for a
    /// successor to take over ([`Limiters::restore`]).
    pub fn export(&self, max: usize) -> Vec<CarriedBucket> {
        let mut out = Vec::new();
        for (trusted, table) in [(false, &self.classes), (true, &self.trusted)] {
            for (name, l) in table {
                let now = self.clock.now().duration_since(l.origin);
                for entry in l.store.map.iter() {
                    if out.len() >= max {
                        return out;
                    }
                    if let Some(tat) = peek(entry.value())
                        && tat > now
                    {
                        let ahead = Duration::from(tat.saturating_sub(now));
                        out.push(CarriedBucket {
                            class: name.clone(),
                            trusted,
                            key: *entry.key(),
                            us: u64::try_from(ahead.as_micros()).unwrap_or(u64::MAX),
                        });
                    }
                }
            }
        }
        out
    }

    /// Takes over buckets a predecessor carried ([`Limiters::export`]): each client's bucket
    /// here is made no emptier than it was there. Buckets of classes this policy does not have
    /// are dropped. Returns how many were taken.
    pub fn restore(&self, buckets: &[CarriedBucket]) -> usize {
        let mut taken = 0;
        for b in buckets {
            let table = if b.trusted { &self.trusted } else { &self.classes };
            if let Some(l) = table.get(&b.class)
                && raise(&self.clock, l, b.key, Duration::from_micros(b.us))
            {
                taken += 1;
            }
        }
        taken
    }

    /// Takes, for every class, the requests let through per client since the last call, to
    /// send to the fleet. Empty unless the policy shares limits.
    pub fn drain_shared(&self) -> Vec<SharedBatch> {
        let tables = [(false, &self.classes), (true, &self.trusted)];
        let mut out = Vec::new();
        for (trusted, table) in tables {
            for (name, l) in table {
                let counts = l.store.drain();
                if !counts.is_empty() {
                    out.push(SharedBatch {
                        class: name.clone(),
                        trusted,
                        clock: self.clock.clone(),
                        limiter: l.clone(),
                        counts,
                    });
                }
            }
        }
        out
    }

    /// Counts one request of `key` in `class` (with the trusted quota when `trusted`), then in
    /// the global limit.
    pub fn check(&self, class: &str, key: ClientKey, trusted: bool) -> Decision {
        let table = if trusted { &self.trusted } else { &self.classes };
        if let Some(l) = table.get(class)
            && let Err(not_until) = l.limiter.check_key(&key)
        {
            return Decision::Limited {
                wait: not_until.wait_time_from(self.clock.now()),
                scope: Scope::Client,
            };
        }
        match self.global.1.check() {
            Ok(()) => Decision::Allowed,
            Err(not_until) => Decision::Limited {
                wait: not_until.wait_time_from(self.clock.now()),
                scope: Scope::Global,
            },
        }
    }

    /// Forgets clients whose bucket is full again (they are indistinguishable from new ones)
    /// and gives the memory back.
    pub fn retain_recent(&self) {
        for l in self.classes.values().chain(self.trusted.values()) {
            l.limiter.retain_recent();
            l.limiter.shrink_to_fit();
        }
    }

    /// Clients tracked, over all classes.
    pub fn tracked(&self) -> usize {
        self.classes.values().chain(self.trusted.values()).map(|l| l.store.map.len()).sum()
    }

    /// Checks that found their class full and used the shared overflow bucket.
    pub fn overflowed(&self) -> u64 {
        self.classes
            .values()
            .chain(self.trusted.values())
            .map(|l| l.store.overflowed.load(Ordering::Relaxed))
            .sum()
    }

    /// Estimated bytes held by the tracked-client tables: allocated slots × slot size.
    pub fn table_bytes(&self) -> usize {
        let slot = std::mem::size_of::<(ClientKey, InMemoryState)>() + 1;
        self.classes
            .values()
            .chain(self.trusted.values())
            .map(|l| l.store.map.capacity() * slot)
            .sum()
    }
}
