//! Memory bound of the limiter: a million distinct client addresses (IPv4 in 127/8 and IPv6)
//! fed straight to the limiters; the tracked count never exceeds the cap.

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;

use rempart_gateway::Policy;
use rempart_gateway::limit::{ClientKey, Limiters};

use crate::support::*;

fn limiters(cap: usize) -> Limiters {
    let text = policy_text(&[], &[])
        .replace("nodes = []", "nodes = [\"127.0.0.1:1\"]")
        .replace("max_tracked_clients = 200000", &format!("max_tracked_clients = {cap}"));
    Limiters::new(&Policy::parse(&text, Path::new("gateway.toml")).expect("policy"))
}

#[test]
fn a_million_addresses_stay_under_the_cap() {
    let cap = 100_000;
    let l = limiters(cap);
    for i in 0..1_000_000u32 {
        let ip = if i % 2 == 0 {
            IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | (i & 0x00ff_ffff)))
        } else {
            IpAddr::V6(Ipv6Addr::from(
                0x2001_0db8_0000_0000_0000_0000_0000_0001u128 | (u128::from(i) << 64),
            ))
        };
        l.check("read", ClientKey::of(ip, 32, 64), false);
        assert!(i % 4096 != 0 || l.tracked() <= cap);
    }
    assert!(l.tracked() <= cap, "tracked {}", l.tracked());
    assert_eq!(l.tracked(), cap);
    assert_eq!(l.overflowed(), 1_000_000 - cap as u64);
    let per_client = l.table_bytes() as f64 / l.tracked() as f64;
    eprintln!(
        "limiter: {} tracked of 1e6 distinct; table {} bytes = {per_client:.1} bytes per tracked client",
        l.tracked(),
        l.table_bytes()
    );
    assert!(per_client <= 128.0, "{per_client} bytes per tracked client");
}
