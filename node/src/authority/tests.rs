use std::collections::BTreeMap;

use rempart_core::key::{KeyType, PrivateKey};

use super::*;

struct Perms(BTreeMap<Level, Authority>);
impl PermissionSource for Perms {
    fn authority(&self, level: Level) -> Result<Option<Authority>, AuthorityError> {
        Ok(self.0.get(&level).cloned())
    }
}

fn level(a: &str, p: &str) -> Level {
    Level { actor: a.parse().expect("name"), permission: p.parse().expect("name") }
}

fn keys(n: usize) -> Vec<PublicKey> {
    let mut v: Vec<PublicKey> =
        (0..n).map(|_| PrivateKey::generate(KeyType::K1).public_key()).collect();
    v.sort();
    v
}

fn multisig(ks: &[PublicKey], threshold: u32) -> Authority {
    Authority {
        threshold,
        keys: ks.iter().map(|k| KeyWeight { key: *k, weight: 1 }).collect(),
        accounts: Vec::new(),
        waits: Vec::new(),
    }
}

#[test]
fn two_of_three_needs_two_keys() {
    let ks = keys(3);
    let perms = Perms(BTreeMap::from([(level("alice", "active"), multisig(&ks, 2))]));
    let one = BTreeSet::from([ks[0]]);
    let mut c = Checker::new(&one, 4);
    assert_eq!(
        c.require(&perms, level("alice", "active")),
        Err(AuthorityError::Unsatisfied(
            level("alice", "x").actor,
            level("a", "active").permission
        ))
    );
    let two = BTreeSet::from([ks[0], ks[2]]);
    let mut c = Checker::new(&two, 4);
    c.require(&perms, level("alice", "active")).expect("2 of 3");
    assert!(c.unused().is_empty());
    // An extra key that satisfies nothing is reported.
    let extra = keys(1)[0];
    let three = BTreeSet::from([ks[0], ks[2], extra]);
    let mut c = Checker::new(&three, 4);
    c.require(&perms, level("alice", "active")).expect("2 of 3");
    assert!(c.unused().len() <= 1);
}

#[test]
fn account_permissions_recurse_to_a_depth_limit() {
    let ks = keys(1);
    let mut perms = BTreeMap::from([(level("bob", "active"), multisig(&ks, 1))]);
    // a0 -> a1 -> ... -> a4 -> bob@active
    let names = ["aaaa", "bbbb", "cccc", "dddd", "eeee"];
    for (i, n) in names.iter().enumerate() {
        let target = if i + 1 < names.len() {
            level(names[i + 1], "active")
        } else {
            level("bob", "active")
        };
        perms.insert(
            level(n, "active"),
            Authority {
                threshold: 1,
                keys: Vec::new(),
                accounts: vec![PermissionLevelWeight { permission: target, weight: 1 }],
                waits: Vec::new(),
            },
        );
    }
    let perms = Perms(perms);
    let provided = BTreeSet::from([ks[0]]);
    Checker::new(&provided, 5).require(&perms, level("aaaa", "active")).expect("depth 5 reaches");
    assert!(Checker::new(&provided, 4).require(&perms, level("aaaa", "active")).is_err());
    assert_eq!(
        Checker::new(&provided, 4).require(&perms, level("zed", "active")),
        Err(AuthorityError::UnknownPermission(
            level("zed", "a").actor,
            level("a", "active").permission
        ))
    );
}

#[test]
fn validity_rules() {
    let ks = keys(2);
    assert!(multisig(&ks, 2).validate().is_ok());
    assert!(multisig(&ks, 3).validate().is_err());
    assert!(multisig(&ks, 0).validate().is_err());
    let unsorted: Vec<PublicKey> = ks.iter().rev().copied().collect();
    assert!(multisig(&unsorted, 1).validate().is_err());
}
