use super::*;
use std::net::{Ipv4Addr, Ipv6Addr};
use std::path::Path;

const SHIPPED: &str = include_str!("../../../policies/gateway.toml");

fn policy(cap: usize, per_second: u32, burst: u32) -> Policy {
    let text = SHIPPED
        .replace("max_tracked_clients = 200000", &format!("max_tracked_clients = {cap}"))
        .replacen("per_second = 50", &format!("per_second = {per_second}"), 1)
        .replacen("burst = 100", &format!("burst = {burst}"), 1)
        .replace("global_per_second = 20000", "global_per_second = 1000000000")
        .replace("global_burst = 5000", "global_burst = 1000000000");
    Policy::parse(&text, Path::new("gateway.toml")).expect("policy")
}

#[test]
fn keys_cut_to_prefix() {
    let v4 = |a, b, c, d| IpAddr::V4(Ipv4Addr::new(a, b, c, d));
    assert_eq!(ClientKey::of(v4(10, 1, 2, 3), 32, 64), ClientKey::V4(0x0a01_0203));
    assert_eq!(ClientKey::of(v4(10, 1, 2, 3), 24, 64), ClientKey::V4(0x0a01_0200));
    let a: Ipv6Addr = "2001:db8:1:2:aaaa::1".parse().expect("ip");
    let b: Ipv6Addr = "2001:db8:1:2:bbbb::9".parse().expect("ip");
    let c: Ipv6Addr = "2001:db8:1:3::1".parse().expect("ip");
    let k = |ip| ClientKey::of(IpAddr::V6(ip), 32, 64);
    assert_eq!(k(a), k(b));
    assert_ne!(k(a), k(c));
    assert_eq!(ClientKey::of(IpAddr::V6(c), 32, 48), ClientKey::of(IpAddr::V6(a), 32, 48));
    let mapped: Ipv6Addr = "::ffff:10.1.2.3".parse().expect("ip");
    assert_eq!(k(mapped), ClientKey::V4(0x0a01_0203));
}

#[test]
fn burst_then_limited_with_wait() {
    let l = Limiters::new(&policy(100, 1, 3));
    let key = ClientKey::V4(1);
    for _ in 0..3 {
        assert_eq!(l.check("read", key, false), Decision::Allowed);
    }
    match l.check("read", key, false) {
        Decision::Limited { wait, scope } => {
            assert_eq!(scope, Scope::Client);
            assert!(
                wait > Duration::from_millis(500) && wait <= Duration::from_secs(1),
                "{wait:?}"
            );
        }
        d => panic!("expected limited, got {d:?}"),
    }
    assert_eq!(l.check("read", ClientKey::V4(2), false), Decision::Allowed);
}

#[test]
fn tracked_clients_stay_under_the_cap_and_overflow_shares_a_bucket() {
    let l = Limiters::new(&policy(1000, 1, 1));
    for i in 0..5000u32 {
        l.check("read", ClientKey::V4(i), false);
    }
    assert_eq!(l.tracked(), 1000);
    assert!(l.overflowed() >= 4000);
    // the shared overflow bucket (burst 1) is exhausted: an unknown client is refused
    assert!(matches!(l.check("read", ClientKey::V4(99_999), false), Decision::Limited { .. }));
}

#[test]
fn rebuild_keeps_state_of_unchanged_quotas() {
    let p = policy(100, 1, 1);
    let l = Limiters::new(&p);
    assert_eq!(l.check("read", ClientKey::V4(7), false), Decision::Allowed);
    let l2 = l.rebuilt(&p);
    assert!(matches!(l2.check("read", ClientKey::V4(7), false), Decision::Limited { .. }));
    let l3 = l2.rebuilt(&policy(100, 2, 2));
    assert_eq!(l3.check("read", ClientKey::V4(7), false), Decision::Allowed);
}

#[test]
fn global_limit_applies_across_clients() {
    let text = SHIPPED
        .replace("global_per_second = 20000", "global_per_second = 1")
        .replace("global_burst = 5000", "global_burst = 3");
    let l = Limiters::new(&Policy::parse(&text, Path::new("gateway.toml")).expect("policy"));
    for i in 0..3 {
        assert_eq!(l.check("read", ClientKey::V4(i), false), Decision::Allowed);
    }
    match l.check("push", ClientKey::V4(9), false) {
        Decision::Limited { scope, .. } => assert_eq!(scope, Scope::Global),
        d => panic!("expected the global limit, got {d:?}"),
    }
}

#[test]
fn trusted_clients_get_the_multiplied_quota() {
    let text = SHIPPED
        .replacen("per_second = 50", "per_second = 1", 1)
        .replacen("burst = 100", "burst = 2", 1)
        .replace("trusted_factor = 10", "trusted_factor = 5");
    let l = Limiters::new(&Policy::parse(&text, Path::new("gateway.toml")).expect("policy"));
    let key = ClientKey::V4(1);
    for _ in 0..10 {
        assert_eq!(l.check("read", key, true), Decision::Allowed);
    }
    assert!(matches!(l.check("read", key, true), Decision::Limited { .. }));
    for _ in 0..2 {
        assert_eq!(l.check("read", key, false), Decision::Allowed);
    }
    assert!(matches!(l.check("read", key, false), Decision::Limited { .. }));
}

fn shared_policy(per_second: u32, burst: u32) -> Policy {
    let text = SHIPPED
        .replacen("per_second = 50", &format!("per_second = {per_second}"), 1)
        .replacen("burst = 100", &format!("burst = {burst}"), 1)
        .replace(
            "global_burst = 5000\n",
            "global_burst = 5000\n[limits.shared]\nredis = \"127.0.0.1:6379\"\n\
             key_prefix = \"t:\"\nsync_interval_ms = 100\ntimeout_ms = 200\n",
        );
    Policy::parse(&text, Path::new("gateway.toml")).expect("policy")
}

#[test]
fn with_shared_limits_requests_let_through_are_counted_and_drained_once() {
    let l = Limiters::new(&shared_policy(10, 5));
    let (a, b) = (ClientKey::V4(1), ClientKey::V4(2));
    for _ in 0..3 {
        assert_eq!(l.check("read", a, false), Decision::Allowed);
    }
    assert_eq!(l.check("read", b, false), Decision::Allowed);
    // Refused requests are not counted: a's burst is 5.
    for _ in 0..4 {
        l.check("read", a, false);
    }
    let batches = l.drain_shared();
    assert_eq!(batches.len(), 1, "only the read class saw requests");
    let mut counts = batches[0].counts.clone();
    counts.sort_by_key(|(k, _)| format!("{k:?}"));
    assert_eq!(counts, vec![(a, 5), (b, 1)]);
    assert_eq!(batches[0].class, "read");
    assert!(!batches[0].trusted);
    assert!((batches[0].step_micros() - 100_000.0).abs() < 1e-6);
    assert!(l.drain_shared().is_empty(), "counts are taken once");

    // Without [limits.shared] nothing is counted, and a reload that drops it forgets counts.
    l.check("read", b, false);
    let plain = l.rebuilt(&policy(200000, 10, 5));
    plain.check("read", b, false);
    assert!(plain.drain_shared().is_empty());
}

#[test]
fn the_fleets_view_holds_a_client_back_here() {
    let l = Limiters::new(&shared_policy(10, 5));
    let (a, fresh) = (ClientKey::V4(1), ClientKey::V4(3));
    assert_eq!(l.check("read", a, false), Decision::Allowed);
    let batches = l.drain_shared();
    // The fleet saw 2 s of this client's rate elsewhere: past its 5-request burst (0.4 s of
    // tolerance), so it must wait about 1.6 s here.
    batches[0].absorb(a, Duration::from_secs(2));
    match l.check("read", a, false) {
        Decision::Limited { wait, scope: Scope::Client } => {
            assert!(
                wait > Duration::from_millis(1500) && wait <= Duration::from_millis(1600),
                "{wait:?}"
            );
        }
        d => panic!("expected limited, got {d:?}"),
    }
    // A client this gateway had not seen yet is tracked with the fleet's view.
    batches[0].absorb(fresh, Duration::from_secs(2));
    assert!(matches!(l.check("read", fresh, false), Decision::Limited { .. }));
    // A view behind the local one changes nothing.
    let b = ClientKey::V4(2);
    for _ in 0..5 {
        assert_eq!(l.check("read", b, false), Decision::Allowed);
    }
    batches[0].absorb(b, Duration::from_millis(1));
    let Decision::Limited { wait, .. } = l.check("read", b, false) else { panic!("b is over") };
    assert!(wait > Duration::from_millis(50), "{wait:?}");
}

#[test]
fn buckets_are_carried_to_a_successor_and_full_ones_are_not() {
    let p = policy(100, 1, 3);
    let old = Limiters::new(&p);
    let (busy, quiet) = (ClientKey::V4(1), ClientKey::V4(2));
    for _ in 0..3 {
        assert_eq!(old.check("read", busy, false), Decision::Allowed);
    }
    let Decision::Limited { wait: before, .. } = old.check("read", busy, false) else {
        panic!("busy is over its burst")
    };
    // Only buckets not full again are carried: `quiet` sent nothing.
    let carried = old.export(10);
    assert_eq!(carried.len(), 1, "{carried:?}");
    assert_eq!(
        (carried[0].class.as_str(), carried[0].trusted, carried[0].key),
        ("read", false, busy)
    );
    assert!(old.export(0).is_empty(), "the bound holds");

    let new = Limiters::new(&p);
    assert_eq!(new.restore(&carried), 1);
    let Decision::Limited { wait: after, .. } = new.check("read", busy, false) else {
        panic!("busy is still over its burst after the handover")
    };
    assert!(after <= before && after + Duration::from_millis(50) > before, "{before:?} {after:?}");
    assert_eq!(new.check("read", quiet, false), Decision::Allowed);
    // A class the successor's policy does not have is dropped.
    let stray = CarriedBucket { class: "gone".into(), trusted: false, key: quiet, us: 1_000_000 };
    assert_eq!(new.restore(&[stray]), 0);
}
