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

/// Bans carried over a handover: what `active` reports, `restore` gives back, within the cap,
/// never shortening a longer ban.
#[test]
fn active_bans_are_carried_and_restored_within_the_cap() {
    let a = access(1);
    let old = Bans::new(100);
    assert!(old.active().is_empty());
    let (k1, k2) = (ClientKey::V4(1), ClientKey::V6(2));
    assert!(old.violation(k1, &a));
    assert!(old.violation(k2, &a));
    let mut carried = old.active();
    carried.sort_by_key(|(k, _)| matches!(k, ClientKey::V6(_)));
    assert_eq!(carried.iter().map(|c| c.0).collect::<Vec<_>>(), [k1, k2]);
    assert!(carried.iter().all(|(_, left)| *left <= a.ban && *left > a.ban / 2));

    let new = Bans::new(1);
    assert!(!new.is_banned(k1));
    assert_eq!(new.restore(carried), 1, "one offender fits under the cap");
    assert!(new.is_banned(k1) || new.is_banned(k2));
    assert_eq!(new.banned(), 1);

    // A ban already longer than the one carried stays.
    let b = Bans::new(10);
    b.restore([(k1, Duration::from_secs(600))]);
    b.restore([(k1, Duration::from_secs(1))]);
    assert!(b.active()[0].1 > Duration::from_secs(590));
}

#[test]
fn the_time_a_ban_has_left_is_known() {
    let a = access(1);
    let b = Bans::new(100);
    let k = ClientKey::V4(1);
    assert_eq!(b.left(k), None);
    assert!(b.violation(k, &a));
    let left = b.left(k).expect("banned");
    assert!(left <= Duration::from_secs(5) && left > Duration::from_millis(4900), "{left:?}");
    assert_eq!(b.left(ClientKey::V4(2)), None);
}
