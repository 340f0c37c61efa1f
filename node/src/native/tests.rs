use std::collections::BTreeSet;

use rempart_core::key::{KeyType, PrivateKey, PublicKey};

use super::*;
use crate::account::Permissions;
use crate::authority::{Checker, KeyWeight};
use crate::genesis::Genesis;
use crate::store::{BlockWrite, Store};

fn n(s: &str) -> Name {
    s.parse().expect("name")
}

fn lv(a: &str, p: &str) -> Level {
    Level { actor: n(a), permission: n(p) }
}

fn with_chain(name: &str, f: impl FnOnce(&mut BlockWrite<'_>) -> Result<(), NativeError>) {
    let dir = std::env::temp_dir().join(format!("rempart-native-{name}-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let store = Store::open(&dir.join("state.redb")).expect("open");
    let genesis = Genesis::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"),
    )
    .expect("genesis");
    store
        .write(|w| -> Result<(), NativeError> {
            genesis.install(w, None)?;
            f(w)
        })
        .expect("test body");
    let _ = std::fs::remove_dir_all(dir);
}

fn run(
    w: &mut BlockWrite<'_>,
    auth: &[Level],
    action: &str,
    data: Vec<u8>,
) -> Result<(), NativeError> {
    let limits = Limits::default();
    let ok = |_: &[u8]| Ok(());
    let ctx = NativeContext {
        now: BlockTimestamp(10),
        authorization: auth,
        limits: &limits,
        check_abi: &ok,
        check_code: &ok,
    };
    let mut o = Overlay::new(w);
    apply(&mut o, &ctx, n(action), &data)?;
    o.commit()?;
    Ok(())
}

fn key() -> PublicKey {
    PrivateKey::generate(KeyType::K1).public_key()
}

fn new_account(creator: &str, name: &str, k: PublicKey) -> Vec<u8> {
    to_bytes(&NewAccount {
        creator: n(creator),
        name: n(name),
        owner: Authority::single_key(k),
        active: Authority::single_key(k),
    })
}

#[test]
fn newaccount_then_multisig_active() {
    with_chain("multisig", |w| {
        let k = key();
        run(w, &[lv("eosio", "active")], "newaccount", new_account("eosio", "alice", k))?;
        // Same name again: refused, nothing changes.
        let err = run(w, &[lv("eosio", "active")], "newaccount", new_account("eosio", "alice", k))
            .expect_err("exists");
        assert!(matches!(err, NativeError::AccountExists(_)), "{err}");
        // 2-of-3 multisig on alice@active, authorised by alice@owner.
        let mut keys: Vec<PublicKey> = (0..3).map(|_| key()).collect();
        keys.sort();
        let auth = Authority {
            threshold: 2,
            keys: keys.iter().map(|k| KeyWeight { key: *k, weight: 1 }).collect(),
            accounts: Vec::new(),
            waits: Vec::new(),
        };
        let update = to_bytes(&UpdateAuth {
            account: n("alice"),
            permission: n("active"),
            parent: n("owner"),
            auth,
        });
        // eosio cannot change alice's permission.
        let err = run(w, &[lv("eosio", "active")], "updateauth", update.clone()).expect_err("auth");
        assert!(matches!(err, NativeError::MissingAuth(_)), "{err}");
        run(w, &[lv("alice", "owner")], "updateauth", update)?;
        let o = Overlay::new(w);
        let provided = BTreeSet::from([keys[0]]);
        assert!(
            Checker::new(&provided, 4).require(&Permissions(&o), lv("alice", "active")).is_err()
        );
        let provided = BTreeSet::from([keys[0], keys[2]]);
        Checker::new(&provided, 4)
            .require(&Permissions(&o), lv("alice", "active"))
            .expect("2 of 3 satisfies");
        Ok(())
    });
}

#[test]
fn failed_action_leaves_state_unchanged_and_links_work() {
    with_chain("links", |w| {
        let k = key();
        run(w, &[lv("eosio", "active")], "newaccount", new_account("eosio", "bob", k))?;
        // A new permission under active, linked to eosio::setabi.
        let update = to_bytes(&UpdateAuth {
            account: n("bob"),
            permission: n("deploy"),
            parent: n("active"),
            auth: Authority::single_key(k),
        });
        run(w, &[lv("bob", "active")], "updateauth", update)?;
        let link = to_bytes(&LinkAuth {
            account: n("bob"),
            code: n("eosio"),
            action_type: n("setabi"),
            requirement: n("deploy"),
        });
        run(w, &[lv("bob", "active")], "linkauth", link)?;
        let o = Overlay::new(w);
        assert_eq!(
            account::linked_permission(&o, n("bob"), n("eosio"), n("setabi"))?,
            Some(n("deploy"))
        );
        drop(o);
        // updateauth cannot be linked.
        let bad = to_bytes(&LinkAuth {
            account: n("bob"),
            code: n("eosio"),
            action_type: n("updateauth"),
            requirement: n("deploy"),
        });
        assert!(run(w, &[lv("bob", "active")], "linkauth", bad).is_err());
        // deploy has no children: it can be deleted only after unlinking is not required here.
        let before = w.get(&key::permission(n("bob"), n("deploy")))?;
        let del_active = to_bytes(&DeleteAuth { account: n("bob"), permission: n("active") });
        assert!(run(w, &[lv("bob", "owner")], "deleteauth", del_active).is_err());
        assert_eq!(w.get(&key::permission(n("bob"), n("deploy")))?, before);
        // Malformed data is refused with the action named.
        let err = run(w, &[lv("bob", "active")], "setabi", vec![1, 2]).expect_err("malformed");
        assert!(matches!(err, NativeError::BadData { .. }), "{err}");
        let err = run(w, &[lv("bob", "active")], "nosuchaction", vec![]).expect_err("unknown");
        assert!(matches!(err, NativeError::UnknownAction(_)));
        Ok(())
    });
}

#[test]
fn setcode_stores_code_by_hash_and_setprods_proposes() {
    with_chain("code", |w| {
        let code = to_bytes(&SetCode {
            account: n("eosio"),
            vmtype: 0,
            vmversion: 0,
            code: Bytes(vec![0, 0x61, 0x73, 0x6d]),
        });
        run(w, &[lv("eosio", "active")], "setcode", code.clone())?;
        let hash = Checksum256::hash(&[0, 0x61, 0x73, 0x6d]);
        assert_eq!(w.get(&key::code(&hash))?, Some(vec![0, 0x61, 0x73, 0x6d]));
        assert!(run(w, &[lv("eosio", "active")], "setcode", code).is_err(), "same code twice");
        let k = key();
        run(w, &[lv("eosio", "active")], "newaccount", new_account("eosio", "prod1", k))?;
        let prods = to_bytes(&SetProds {
            schedule: vec![ProducerKey { producer_name: n("prod1"), block_signing_key: k }],
        });
        assert!(run(w, &[lv("prod1", "active")], "setprods", prods.clone()).is_err());
        run(w, &[lv("eosio", "active")], "setprods", prods)?;
        let o = Overlay::new(w);
        let proposed: ProducerSchedule =
            o.get_record(&pending_schedule_key(), "schedule")?.expect("proposed");
        assert_eq!(proposed.version, 1);
        Ok(())
    });
}

#[test]
fn regproducer_changes_a_scheduled_producers_key_with_its_own_authority() {
    with_chain("regproducer", |w| {
        let reg = |producer: &str, k: PublicKey, url: String| {
            to_bytes(&RegProducer { producer: n(producer), producer_key: k, url, location: 0 })
        };
        let (k1, k2) = (key(), key());
        // Another account's authority is not enough, even eosio's for a non-eosio producer.
        run(w, &[lv("eosio", "active")], "newaccount", new_account("eosio", "prod1", key()))?;
        let err = run(w, &[lv("prod1", "active")], "regproducer", reg("eosio", k1, String::new()))
            .expect_err("not eosio's authority");
        assert!(matches!(err, NativeError::MissingAuth(_)), "{err}");
        // A producer outside the schedule is told to be added with setprods.
        let err = run(w, &[lv("prod1", "active")], "regproducer", reg("prod1", k1, String::new()))
            .expect_err("not scheduled");
        assert!(err.to_string().contains("setprods"), "{err}");
        let err =
            run(w, &[lv("eosio", "active")], "regproducer", reg("eosio", k1, "x".repeat(513)))
                .expect_err("url");
        assert!(err.to_string().contains("url too long"), "{err}");
        // The scheduled producer: a proposal of version 1 with the key replaced.
        run(w, &[lv("eosio", "active")], "regproducer", reg("eosio", k1, "https://a".into()))?;
        let proposed = |w: &mut BlockWrite<'_>| -> Result<ProducerSchedule, NativeError> {
            let o = Overlay::new(w);
            Ok(o.get_record(&pending_schedule_key(), "schedule")?.expect("proposed"))
        };
        let p = proposed(w)?;
        assert_eq!((p.version, p.producers.len()), (1, 1));
        assert_eq!(p.producers[0].block_signing_key, k1);
        // Again in the same block: the proposal is amended, its version kept.
        run(w, &[lv("eosio", "active")], "regproducer", reg("eosio", k2, String::new()))?;
        assert_eq!(proposed(w)?.version, 1);
        assert_eq!(proposed(w)?.producers[0].block_signing_key, k2);
        // Once a block announced it, the next proposal is above it.
        let bytes = w.get(&pending_schedule_key())?.expect("proposed");
        w.put(&announced_schedule_key(), &bytes)?;
        w.delete(&pending_schedule_key())?;
        run(w, &[lv("eosio", "active")], "regproducer", reg("eosio", k2, String::new()))?;
        assert!(w.get(&pending_schedule_key())?.is_none(), "same key: nothing proposed");
        run(w, &[lv("eosio", "active")], "regproducer", reg("eosio", k1, String::new()))?;
        assert_eq!(proposed(w)?.version, 2);
        Ok(())
    });
}
