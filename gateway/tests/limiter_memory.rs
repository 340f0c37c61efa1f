//! Measured, not estimated: the resident memory a tracked client costs the rate limiter.
//!
//! One test alone in its binary (so no other test allocates meanwhile): the limiters of the
//! shipped policy are built, the process's resident set is read from `/proc/self/status`,
//! `max_tracked_clients` distinct addresses are sent through one route class, and the growth
//! of the resident set is divided by the clients tracked. The target is ≤ 128 bytes per
//! tracked client per route class. This file must never hold more than this one test.

use std::net::{IpAddr, Ipv4Addr};
use std::path::Path;

use rempart_gateway::Policy;
use rempart_gateway::limit::{ClientKey, Limiters};

const SHIPPED: &str = include_str!("../../policies/gateway.toml");

/// VmRSS of this process, in bytes.
fn rss_bytes() -> u64 {
    let status = std::fs::read_to_string("/proc/self/status").expect("read /proc/self/status");
    let kib: u64 = status
        .lines()
        .find_map(|l| l.strip_prefix("VmRSS:"))
        .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
        .expect("VmRSS in /proc/self/status");
    kib * 1024
}

#[test]
fn resident_memory_per_tracked_client_is_at_most_128_bytes() {
    let cap = 200_000usize;
    assert!(SHIPPED.contains(&format!("max_tracked_clients = {cap}")));
    let policy = Policy::parse(SHIPPED, Path::new("gateway.toml")).expect("shipped policy");
    let limiters = Limiters::new(&policy);
    let key = |i: u32| ClientKey::of(IpAddr::V4(Ipv4Addr::from(0x0a00_0000 | i)), 32, 64);
    // One client first, so tables and runtime structures that exist anyway are in the
    // baseline.
    limiters.check("read", key(0), false);
    let before = rss_bytes();
    for i in 1..cap as u32 {
        limiters.check("read", key(i), false);
    }
    let after = rss_bytes();
    assert_eq!(limiters.tracked(), cap);
    let per_client = after.saturating_sub(before) as f64 / (cap - 1) as f64;
    eprintln!(
        "limiter: {cap} clients tracked in the read class; resident set grew by {} bytes = \
         {per_client:.1} bytes per tracked client (estimate from table capacity: {:.1})",
        after - before,
        limiters.table_bytes() as f64 / cap as f64
    );
    assert!(per_client > 0.0, "the resident set did not grow: the measure is broken");
    assert!(per_client <= 128.0, "{per_client:.1} bytes per tracked client");
}
