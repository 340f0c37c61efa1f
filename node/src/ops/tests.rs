//! Snapshot, restore and replay over a real chain in a temp dir.

use std::path::{Path, PathBuf};
use std::sync::Arc;

use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::transaction::{Action, PermissionLevel, Transaction};
use rempart_core::{Bytes, Checksum256, Name, TimePointSec, to_bytes};

use super::*;
use crate::authority::Authority;
use crate::chain::sign_transaction;
use crate::native::NewAccount;

const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

fn genesis() -> Genesis {
    Genesis::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"))
        .expect("genesis")
}

fn dev() -> PrivateKey {
    DEV_WIF.parse().expect("dev key")
}

fn newaccount(chain: &Chain, name: &str) -> rempart_core::transaction::PackedTransaction {
    let eosio = Name::from_const("eosio");
    let auth = Authority::single_key(PrivateKey::generate(KeyType::K1).public_key());
    let data = NewAccount {
        creator: eosio,
        name: name.parse().expect("name"),
        owner: auth.clone(),
        active: auth,
    };
    let info = chain.info();
    let mut t = Transaction {
        actions: vec![Action {
            account: eosio,
            name: Name::from_const("newaccount"),
            authorization: vec![PermissionLevel {
                actor: eosio,
                permission: Name::from_const("active"),
            }],
            data: Bytes(to_bytes(&data)),
        }],
        ..Default::default()
    };
    let head_sec = info.head_block_time.to_time_point().0 / 1_000_000;
    t.header.expiration = TimePointSec((head_sec + 600) as u32);
    t.set_reference_block(&info.head_block_id);
    sign_transaction(t, &[&dev()], &chain.chain_id())
}

/// A data directory with blocks 2..=4, each holding two newaccount transactions; returns the
/// transaction ids.
fn chain_in(dir: &Path) -> Vec<Checksum256> {
    std::fs::create_dir_all(dir).expect("dir");
    let store = Arc::new(Store::open(&dir.join(STATE_FILE)).expect("store"));
    let chain = Chain::open(store, &genesis(), Limits::default()).expect("chain");
    let mut ids = Vec::new();
    for (i, names) in [["alice", "bob"], ["carol", "dave"], ["erin", "frank"]].iter().enumerate() {
        chain.start_block(chain.info().head_block_time.next()).expect("start");
        for name in names {
            let trace = chain.push_transaction(newaccount(&chain, name)).expect("newaccount");
            ids.push(trace.id);
        }
        let b = chain.finish_block(|req| Ok(dev().sign(&req.digest()))).expect("block");
        assert_eq!(b.block_num, i as u32 + 2);
    }
    ids
}

fn paths() -> (tempfile::TempDir, PathBuf, PathBuf, PathBuf) {
    let dir = tempfile::tempdir().expect("tempdir");
    let (data, file, target) =
        (dir.path().join("data"), dir.path().join("snap.bin"), dir.path().join("restored"));
    (dir, data, file, target)
}

#[test]
fn a_snapshot_restores_to_the_same_state_head_and_history() {
    let (_dir, data, file, target) = paths();
    let ids = chain_in(&data);
    let taken = snapshot(&data, &file).expect("snapshot");
    assert_eq!(taken.head.block_num, 4);
    assert_eq!(taken.blocks, 4);
    assert_eq!(taken.state_digest, digest_of(&data).expect("digest"));

    let restored = restore(&file, &target, &genesis(), &Limits::default()).expect("restore");
    assert_eq!(restored, taken);
    assert_eq!(digest_of(&target).expect("digest"), taken.state_digest);
    let store = Store::open(&target.join(STATE_FILE)).expect("store");
    let snap = store.read().expect("read");
    for (i, id) in ids.iter().enumerate() {
        assert_eq!(snap.transaction_block(id).expect("read"), Some(i as u32 / 2 + 2));
    }
    drop(snap);
    // The restored node opens, refuses a replayed transaction and goes on making blocks.
    let chain = Chain::open(Arc::new(store), &genesis(), Limits::default()).expect("open");
    assert_eq!(chain.info().head_block_num, 4);
    chain.start_block(chain.info().head_block_time.next()).expect("start");
    chain.push_transaction(newaccount(&chain, "grace")).expect("a new account");
    let b = chain.finish_block(|req| Ok(dev().sign(&req.digest()))).expect("block 5");
    assert_eq!(b.block_num, 5);
}

#[test]
fn restore_refuses_a_non_empty_dir_a_wrong_chain_and_a_damaged_file() {
    let (dir, data, file, target) = paths();
    chain_in(&data);
    snapshot(&data, &file).expect("snapshot");

    let e = restore(&file, &data, &genesis(), &Limits::default()).expect_err("not empty");
    assert!(matches!(e, OpsError::NotEmpty(_)), "{e}");

    let mut other = genesis();
    other.initial_timestamp.0 += 500_000;
    let e = restore(&file, &target, &other, &Limits::default()).expect_err("wrong chain");
    assert!(matches!(e, OpsError::WrongChain { .. }), "{e}");
    assert!(is_empty_dir(&target).expect("read"), "nothing written on refusal");

    let mut bytes = std::fs::read(&file).expect("read");
    let mid = bytes.len() / 2;
    bytes[mid] ^= 1;
    let damaged = dir.path().join("damaged.bin");
    std::fs::write(&damaged, &bytes).expect("write");
    let e = restore(&damaged, &target, &genesis(), &Limits::default()).expect_err("damaged");
    assert!(matches!(e, OpsError::Checksum(_)), "{e}");

    let mut bytes = std::fs::read(&file).expect("read");
    bytes[8] = 9;
    std::fs::write(&damaged, &bytes).expect("write");
    let e = restore(&damaged, &target, &genesis(), &Limits::default()).expect_err("version");
    assert!(matches!(e, OpsError::Version { found: 9 }), "{e}");

    std::fs::write(&damaged, b"not a snapshot at all, just text").expect("write");
    let e = restore(&damaged, &target, &genesis(), &Limits::default()).expect_err("magic");
    assert!(matches!(e, OpsError::NotSnapshot(_)), "{e}");
    assert!(is_empty_dir(&target).expect("read"));
}

#[test]
fn a_snapshot_whose_counts_lie_is_refused_without_allocating_them() {
    let (_dir, data, file, _target) = paths();
    chain_in(&data);
    snapshot(&data, &file).expect("snapshot");
    let bytes = std::fs::read(&file).expect("read");
    let body = &bytes[..bytes.len() - 32];
    // Rewrite the state count to u64::MAX and re-seal: the checksum matches, the count cannot.
    let mut r = Reader::new(&body[12..]);
    r.read_array::<32>().expect("chain id");
    r.read_prefixed_bytes().expect("head");
    r.read_prefixed_bytes().expect("genesis");
    r.read_array::<32>().expect("digest");
    let at = 12 + r.position();
    let mut forged = body.to_vec();
    forged[at..at + 8].copy_from_slice(&u64::MAX.to_le_bytes());
    let sum = Checksum256::hash(&forged);
    forged.extend_from_slice(sum.as_bytes());
    let e = parse(&forged, &file).map(|_| ()).expect_err("lying count");
    assert!(matches!(e, OpsError::Malformed(DecodeError::LengthTooLarge { .. })), "{e}");
}

#[test]
fn replay_rebuilds_the_same_state_from_the_block_log() {
    let (_dir, data, _file, _target) = paths();
    chain_in(&data);
    let mut seen = Vec::new();
    let report =
        replay(&data, &genesis(), Limits::default(), |done, total| seen.push((done, total)))
            .expect("replay");
    assert_eq!(report.head, 4);
    assert!(report.matches(), "{} != {}", report.original, report.rebuilt);
    assert_eq!(seen.last(), Some(&(4, 4)));
    assert_eq!(digest_of(&data).expect("digest"), report.original);
}

#[test]
fn operations_refuse_a_database_a_running_node_holds() {
    let (_dir, data, file, _target) = paths();
    chain_in(&data);
    let _held = Store::open(&data.join(STATE_FILE)).expect("store");
    let e = snapshot(&data, &file).expect_err("in use");
    assert!(matches!(e, OpsError::InUse(_)), "{e}");
    let e = replay(&data, &genesis(), Limits::default(), |_, _| {}).expect_err("in use");
    assert!(matches!(e, OpsError::InUse(_)), "{e}");
}

#[test]
fn a_missing_data_dir_is_not_initialised() {
    let (_dir, data, file, _target) = paths();
    let e = snapshot(&data, &file).expect_err("nothing there");
    assert!(matches!(e, OpsError::NotInitialised(_)), "{e}");
}

#[test]
fn an_initialised_dir_without_blocks_says_to_run_the_node_first() {
    let (_dir, data, file, _target) = paths();
    crate::genesis::init_data_dir(&genesis(), &data).expect("init");
    let e = snapshot(&data, &file).expect_err("no head");
    assert!(matches!(e, OpsError::NoBlocks(_)), "{e}");
    let e = replay(&data, &genesis(), Limits::default(), |_, _| {}).expect_err("no head");
    assert!(matches!(e, OpsError::NoBlocks(_)), "{e}");
}
