use std::path::Path;
use std::time::Duration;

use super::*;
use crate::policy::Policy;

const SHIPPED: &str = include_str!("../../../policies/gateway.toml");

fn access(after: u32) -> Access {
    let text = SHIPPED
        .replace("ban_after = 100", &format!("ban_after = {after}"))
        .replace("ban_window_ms = 10000", "ban_window_ms = 1000")
        .replace("ban_ms = 300000", "ban_ms = 5000");
    Policy::parse(&text, Path::new("gateway.toml")).expect("policy").access().clone()
}

#[test]
fn bans_after_repeated_refusals_within_the_window() {
    let a = access(3);
    assert_eq!(a.ban, Duration::from_secs(5));
    let b = Bans::new(100);
    let k = ClientKey::V4(1);
    assert!(!b.violation_at(k, &a, 0));
    assert!(!b.violation_at(k, &a, 100));
    assert!(!b.is_banned_at(k, 100));
    assert!(b.violation_at(k, &a, 200));
    assert!(b.is_banned_at(k, 201));
    assert!(b.is_banned_at(k, 5199));
    assert!(!b.is_banned_at(k, 5200));
    assert!(!b.is_banned_at(ClientKey::V4(2), 300));
}

#[test]
fn slow_refusals_do_not_ban() {
    let a = access(3);
    let b = Bans::new(100);
    let k = ClientKey::V4(1);
    for i in 0..10 {
        assert!(!b.violation_at(k, &a, i * 600), "refusal {i}");
    }
}

#[test]
fn tracking_is_bounded_and_retained() {
    let a = access(3);
    let b = Bans::new(10);
    for i in 0..100 {
        b.violation_at(ClientKey::V4(i), &a, 0);
    }
    assert_eq!(b.tracked(), 10);
    for _ in 0..3 {
        b.violation_at(ClientKey::V4(0), &a, 10);
    }
    b.retain_at(&a, 2000);
    assert_eq!(b.tracked(), 1, "only the banned client stays");
    b.retain_at(&a, 6000);
    assert_eq!(b.tracked(), 0);
}

#[test]
fn a_ban_is_seen_past_the_check_that_skips_the_map() {
    let a = access(1);
    let b = Bans::new(100);
    let k = ClientKey::V4(7);
    assert!(!b.is_banned(k));
    assert!(b.violation(k, &a));
    assert!(b.is_banned(k));
    assert!(!b.is_banned(ClientKey::V4(8)));
}
