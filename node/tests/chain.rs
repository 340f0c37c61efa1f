//! The chain over a real store in a temp dir: genesis, transactions into blocks, every refusal a
//! nodeos-shaped error that leaves the state as it was, blocks re-applied by a follower, bad
//! blocks refused, and a restart at the same head.

use std::sync::Arc;

use rempart_core::block::SignedBlock;
use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::transaction::{
    Action, Compression, PackedTransaction, PermissionLevel, SignedTransaction, Transaction,
};
use rempart_core::{BlockTimestamp, Bytes, Checksum256, Name, TimePointSec, from_bytes, to_bytes};
use rempart_node::authority::{Authority, KeyWeight};
use rempart_node::chain::{
    BlockError, Chain, ChainOptions, SignFailure, TxError, sign_transaction,
};
use rempart_node::config::Limits;
use rempart_node::native::{NewAccount, UpdateAuth};
use rempart_node::store::{Store, key};

mod support;

use support::{DEV_WIF, genesis, n};

fn dev_key() -> PrivateKey {
    DEV_WIF.parse().expect("dev key")
}

struct Node {
    _dir: tempfile::TempDir,
    path: std::path::PathBuf,
    chain: Chain,
}

fn open_at(dir: tempfile::TempDir) -> Node {
    let path = dir.path().join("state.redb");
    let store = Arc::new(Store::open(&path).expect("store"));
    let chain = Chain::open(store, &genesis(), Limits::default()).expect("chain");
    Node { _dir: dir, path, chain }
}

fn node() -> Node {
    open_at(tempfile::tempdir().expect("tempdir"))
}

fn sign_dev(
    req: &rempart_core::protocol::SignBlockRequest,
) -> Result<rempart_core::key::Signature, SignFailure> {
    Ok(dev_key().sign(&req.digest()))
}

/// A transaction of `actions`, referencing the head, expiring `ttl` seconds after the head.
fn trx(chain: &Chain, actions: Vec<Action>, ttl: i64) -> Transaction {
    let info = chain.info();
    let mut t = Transaction { actions, ..Default::default() };
    let head_sec = info.head_block_time.to_time_point().0 / 1_000_000;
    t.header.expiration = TimePointSec((head_sec + ttl) as u32);
    t.set_reference_block(&info.head_block_id);
    t
}

fn newaccount(creator: &str, name: &str, key: &PrivateKey) -> Action {
    let auth = Authority::single_key(key.public_key());
    let data = NewAccount { creator: n(creator), name: n(name), owner: auth.clone(), active: auth };
    Action {
        account: n("eosio"),
        name: n("newaccount"),
        authorization: vec![PermissionLevel { actor: n(creator), permission: n("active") }],
        data: Bytes(to_bytes(&data)),
    }
}

fn next_slot(chain: &Chain) -> BlockTimestamp {
    chain.info().head_block_time.next()
}

/// sha256 over every account, permission, link, ABI and code record: what transactions change.
fn accounts_digest(chain: &Chain) -> Checksum256 {
    let snap = chain.store().read().expect("snapshot");
    let mut all = Vec::new();
    for tag in [b'a', b'p', b'l', b'b', b'h', b'c', b't'] {
        for (k, v) in snap.scan(&[tag], &[tag], usize::MAX).expect("scan") {
            all.extend_from_slice(&k);
            all.extend_from_slice(&v);
        }
    }
    Checksum256::hash(&all)
}

#[test]
fn genesis_makes_block_one_and_installs_the_eosio_abi() {
    let node = node();
    let info = node.chain.info();
    assert_eq!(info.head_block_num, 1);
    assert_eq!(info.last_irreversible_block_num, 1);
    assert_eq!(info.chain_id, genesis().chain_id());
    let snap = node.chain.store().read().expect("snapshot");
    let abi = snap.get(&key::abi(n("eosio"))).expect("read").expect("eosio has an ABI");
    let abi = rempart_core::abi::Abi::from_bin(&abi).expect("ABI decodes");
    assert!(abi.action_type(n("newaccount")).is_some());
    assert!(snap.block(1).expect("read").is_some());
}

#[test]
fn a_transaction_lands_in_a_signed_block_and_survives_a_restart() {
    let node = node();
    let alice = PrivateKey::generate(KeyType::K1);
    let t = trx(&node.chain, vec![newaccount("eosio", "alice", &alice)], 60);
    node.chain.start_block(next_slot(&node.chain)).expect("start");
    let trace = node
        .chain
        .push_transaction(sign_transaction(t, &[&dev_key()], &node.chain.chain_id()))
        .expect("newaccount applies");
    assert_eq!(trace.block_num, 2);
    let json = node.chain.trace_json(&trace);
    assert_eq!(json["receipt"]["status"], "executed");
    assert_eq!(json["action_traces"][0]["act"]["name"], "newaccount");
    assert_eq!(json["action_traces"][0]["act"]["data"]["name"], "alice", "{json}");
    assert!(!json["block_time"].as_str().expect("time").ends_with('Z'));
    let summary = node.chain.finish_block(sign_dev).expect("block");
    assert_eq!((summary.block_num, summary.transactions), (2, 1));
    let info = node.chain.info();
    assert_eq!(info.head_block_id, summary.id);
    assert_eq!(info.last_irreversible_block_num, 2);

    let snap = node.chain.store().read().expect("snapshot");
    assert!(snap.get(&key::account(n("alice"))).expect("read").is_some());
    assert_eq!(snap.transaction_block(&trace.id).expect("read"), Some(2));
    let block: SignedBlock =
        from_bytes(&snap.block(2).expect("read").expect("block 2")).expect("decode");
    assert_eq!(block.id(), summary.id);
    drop(snap);

    // Restart: same head, and the chain goes on from it.
    let Node { _dir, path, chain } = node;
    let head = chain.info();
    drop(chain);
    let store = Arc::new(Store::open(&path).expect("store"));
    let chain = Chain::open(store, &genesis(), Limits::default()).expect("reopen");
    assert_eq!(chain.info(), head);
    let b = chain.produce_block(chain.info().head_block_time.next(), sign_dev).expect("block 3");
    assert_eq!(b.block_num, 3);
}

fn code(e: &TxError) -> u64 {
    e.nodeos().0
}

#[test]
fn bad_transactions_get_nodeos_errors_and_change_nothing() {
    let node = node();
    let chain = &node.chain;
    let id = chain.chain_id();
    let dev = dev_key();
    let other = PrivateKey::generate(KeyType::K1);
    // A block to reference, then the digest every refusal must leave alone.
    chain.produce_block(next_slot(chain), sign_dev).expect("block 2");
    let before = accounts_digest(chain);
    let head_before = chain.info();
    chain.start_block(next_slot(chain)).expect("start");

    let push = |t: PackedTransaction| chain.push_transaction(t).expect_err("must be refused");
    let bob = |k: &PrivateKey| newaccount("eosio", "bob", k);

    // Expired, and too far ahead.
    let e = push(sign_transaction(trx(chain, vec![bob(&other)], -10), &[&dev], &id));
    assert_eq!((code(&e), e.nodeos().1), (3_040_005, "expired_tx_exception"), "{e}");
    let e = push(sign_transaction(trx(chain, vec![bob(&other)], 7200), &[&dev], &id));
    assert_eq!(code(&e), 3_040_006, "{e}");
    // Bad TaPoS.
    let mut t = trx(chain, vec![bob(&other)], 60);
    t.header.ref_block_prefix ^= 1;
    let e = push(sign_transaction(t, &[&dev], &id));
    assert_eq!((code(&e), e.nodeos().1), (3_040_007, "invalid_ref_block_exception"), "{e}");
    // Missing signature, a signature by the wrong key, an extra signature.
    let e = push(sign_transaction(trx(chain, vec![bob(&other)], 60), &[], &id));
    assert_eq!((code(&e), e.nodeos().1), (3_090_003, "unsatisfied_authorization"), "{e}");
    let e = push(sign_transaction(trx(chain, vec![bob(&other)], 61), &[&other], &id));
    assert_eq!(code(&e), 3_090_003, "{e}");
    let e = push(sign_transaction(trx(chain, vec![bob(&other)], 62), &[&dev, &other], &id));
    assert_eq!((code(&e), e.nodeos().1), (3_090_002, "tx_irrelevant_sig"), "{e}");
    // A signature for another chain recovers another key.
    let e =
        push(sign_transaction(trx(chain, vec![bob(&other)], 63), &[&dev], &Checksum256([9; 32])));
    assert_eq!(code(&e), 3_090_003, "{e}");
    // Malformed packed_trx.
    let garbage = PackedTransaction { packed_trx: Bytes(vec![0xff; 40]), ..Default::default() };
    let e = push(garbage);
    assert_eq!((code(&e), e.nodeos().1), (3_010_010, "packed_transaction_type_exception"), "{e}");
    // A zlib bomb: 8 MiB of zeros in a few KiB.
    let bomb = zlib_bomb(8 << 20);
    let e = push(PackedTransaction {
        compression: Compression::Zlib,
        packed_trx: Bytes(bomb),
        ..Default::default()
    });
    assert_eq!((code(&e), e.nodeos().1), (3_040_001, "tx_decompression_error"), "{e}");
    // Unknown account: as the contract, and as the authorizer.
    let mut a = bob(&other);
    a.account = n("nobody");
    let e = push(sign_transaction(trx(chain, vec![a], 60), &[&dev], &id));
    assert_eq!((code(&e), e.nodeos().1), (3_050_000, "action_validate_exception"), "{e}");
    let e = push(sign_transaction(
        trx(chain, vec![newaccount("nobody", "bob", &other)], 60),
        &[&dev],
        &id,
    ));
    assert_eq!(code(&e), 3_050_000, "{e}");
    // A transaction whose second action fails keeps nothing of the first.
    let mut dup = bob(&other);
    dup.name = n("nosuchaction");
    let e = push(sign_transaction(trx(chain, vec![bob(&other), dup], 60), &[&dev], &id));
    assert!(e.to_string().contains("nosuchaction"), "{e}");
    // No actions.
    let e = push(sign_transaction(trx(chain, vec![], 60), &[&dev], &id));
    assert_eq!(code(&e), 3_040_002, "{e}");

    chain.abort_block();
    assert_eq!(accounts_digest(chain), before, "refused transactions changed the state");
    assert_eq!(chain.info(), head_before);

    // Duplicate: the same transaction in a later block.
    let good = sign_transaction(trx(chain, vec![bob(&other)], 60), &[&dev], &id);
    chain.start_block(next_slot(chain)).expect("start");
    chain.push_transaction(good.clone()).expect("first time");
    let e = chain.push_transaction(good.clone()).expect_err("duplicate in the same block");
    assert_eq!((code(&e), e.nodeos().1), (3_040_008, "tx_duplicate"), "{e}");
    chain.finish_block(sign_dev).expect("block");
    chain.start_block(next_slot(chain)).expect("start");
    let e = chain.push_transaction(good).expect_err("duplicate in a later block");
    assert_eq!(code(&e), 3_040_008, "{e}");
    chain.abort_block();
}

/// A zlib stream of about `size` bytes of zeros, made with core's own packer (a transaction
/// whose action data is the zeros), so the test needs no compression crate.
fn zlib_bomb(size: usize) -> Vec<u8> {
    let t = Transaction {
        actions: vec![Action {
            account: n("eosio"),
            name: n("x"),
            authorization: vec![],
            data: Bytes(vec![0; size]),
        }],
        ..Default::default()
    };
    let p = PackedTransaction::from_signed(&SignedTransaction::new(t), Compression::Zlib);
    assert!(p.packed_trx.0.len() < size / 100);
    p.packed_trx.0
}

#[test]
fn a_follower_re_applies_blocks_and_refuses_bad_ones() {
    let producer = node();
    let follower = node();
    let id = producer.chain.chain_id();
    let dev = dev_key();
    let keys: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate(KeyType::K1)).collect();
    // Block 2: an account; block 3: its active permission becomes 2-of-3.
    let t = trx(&producer.chain, vec![newaccount("eosio", "carol", &keys[0])], 60);
    producer.chain.start_block(next_slot(&producer.chain)).expect("start");
    producer.chain.push_transaction(sign_transaction(t, &[&dev], &id)).expect("newaccount");
    producer.chain.finish_block(sign_dev).expect("block 2");
    let mut ks: Vec<_> = keys.iter().map(|k| k.public_key()).collect();
    ks.sort();
    let multisig = Authority {
        threshold: 2,
        keys: ks.iter().map(|k| KeyWeight { key: *k, weight: 1 }).collect(),
        accounts: vec![],
        waits: vec![],
    };
    let upd = UpdateAuth {
        account: n("carol"),
        permission: n("active"),
        parent: n("owner"),
        auth: multisig,
    };
    let act = Action {
        account: n("eosio"),
        name: n("updateauth"),
        authorization: vec![PermissionLevel { actor: n("carol"), permission: n("owner") }],
        data: Bytes(to_bytes(&upd)),
    };
    let t = trx(&producer.chain, vec![act], 60);
    producer.chain.start_block(next_slot(&producer.chain)).expect("start");
    producer.chain.push_transaction(sign_transaction(t, &[&keys[0]], &id)).expect("updateauth");
    producer.chain.finish_block(sign_dev).expect("block 3");
    // Block 4: carol's active now needs two of the three keys.
    let newacc = |name: &str| {
        let mut a = newaccount("carol", name, &keys[1]);
        a.authorization[0].actor = n("carol");
        a
    };
    producer.chain.start_block(next_slot(&producer.chain)).expect("start");
    let t = trx(&producer.chain, vec![newacc("dave")], 60);
    let e =
        producer.chain.push_transaction(sign_transaction(t, &[&keys[1]], &id)).expect_err("1 of 3");
    assert_eq!(code(&e), 3_090_003, "{e}");
    let t = trx(&producer.chain, vec![newacc("dave")], 61);
    producer
        .chain
        .push_transaction(sign_transaction(t, &[&keys[1], &keys[2]], &id))
        .expect("2 of 3");
    producer.chain.finish_block(sign_dev).expect("block 4");

    let snap = producer.chain.store().read().expect("snapshot");
    let blocks: Vec<SignedBlock> = (2..=4)
        .map(|i| from_bytes(&snap.block(i).expect("read").expect("block")).expect("decode"))
        .collect();
    drop(snap);

    // A block signed by another key is refused, and nothing moves.
    let mut forged = blocks[0].clone();
    let h = &forged.signed_header.header;
    let digest = h.signing_digest(&Checksum256::ZERO, &Checksum256::ZERO);
    forged.signed_header.producer_signature = keys[0].sign(&digest);
    let e = follower.chain.apply_block(&forged).expect_err("forged");
    assert!(matches!(e, BlockError::BadSignature { .. }), "{e}");
    assert_eq!(follower.chain.info().head_block_num, 1);
    // Out of order.
    let e = follower.chain.apply_block(&blocks[1]).expect_err("gap");
    assert!(matches!(e, BlockError::Unlinkable { .. }), "{e}");
    // A tampered transaction: the signature no longer covers the header's roots.
    let mut tampered = blocks[0].clone();
    tampered.signed_header.header.transaction_mroot = Checksum256([1; 32]);
    assert!(follower.chain.apply_block(&tampered).is_err());

    for b in &blocks {
        follower.chain.apply_block(b).expect("valid block applies");
    }
    assert_eq!(follower.chain.info().head_block_id, producer.chain.info().head_block_id);
    assert_eq!(accounts_digest(&follower.chain), accounts_digest(&producer.chain));
    // The same block again is not linkable any more.
    assert!(follower.chain.apply_block(&blocks[2]).is_err());
}

#[test]
fn slots_must_move_forward_and_blocks_need_the_scheduled_key() {
    let node = node();
    let chain = &node.chain;
    let head = chain.info().head_block_time;
    let e = chain.start_block(head).expect_err("same slot as the head");
    assert!(matches!(e, BlockError::Timestamp { .. }), "{e}");
    let stranger = PrivateKey::generate(KeyType::K1);
    let e = chain
        .produce_block(head.next(), |req| Ok(stranger.sign(&req.digest())))
        .expect_err("wrong key");
    assert!(matches!(e, BlockError::BadSignature { .. }), "{e}");
    let e = chain
        .produce_block(head.next(), |_| Err(SignFailure::NoAnswer("signer down".into())))
        .expect_err("no sig");
    assert!(matches!(e, BlockError::Signer { .. }), "{e}");
    assert_eq!(chain.info().head_block_num, 1);
    // The slot is still free: nothing was written.
    assert_eq!(chain.produce_block(head.next(), sign_dev).expect("block").block_num, 2);
}

#[test]
fn a_block_signed_but_not_committed_is_made_again_identically_after_a_restart() {
    let dir = tempfile::tempdir().expect("tempdir");
    let path = dir.path().join("state.redb");
    let intent = dir.path().join("sign-intent.bin");
    let open = || {
        let store = Arc::new(Store::open(&path).expect("store"));
        let options = ChainOptions { limits: Limits::default(), sign_intent: Some(intent.clone()) };
        Chain::open_with(store, &genesis(), options).expect("chain")
    };
    let chain = open();
    let erin = PrivateKey::generate(KeyType::K1);
    let t = trx(&chain, vec![newaccount("eosio", "erin", &erin)], 60);
    let slot = next_slot(&chain);
    chain.start_block(slot).expect("start");
    let trace = chain
        .push_transaction(sign_transaction(t, &[&dev_key()], &chain.chain_id()))
        .expect("push");
    // The signer signs, then the node dies before committing (the answer never arrives).
    let mut first = None;
    let e = chain
        .finish_block(|req| {
            first = Some((req.digest(), dev_key().sign(&req.digest())));
            Err(SignFailure::NoAnswer("node killed".into()))
        })
        .expect_err("not committed");
    assert!(matches!(e, BlockError::Signer { .. }), "{e}");
    drop(chain);
    let (digest, signature) = first.expect("signed once");

    let chain = open();
    assert_eq!(chain.info().head_block_num, 1);
    // Whatever slot the producer asks for, the recorded block comes back first.
    let pending = chain.start_block(BlockTimestamp(slot.0 + 40)).expect("start");
    assert_eq!(pending.timestamp, slot);
    let summary = chain
        .finish_block(|req| {
            assert_eq!(req.digest(), digest, "the same block, so the signer can replay");
            Ok(signature)
        })
        .expect("committed with the first signature");
    assert_eq!((summary.block_num, summary.transactions), (2, 1));
    let snap = chain.store().read().expect("snapshot");
    assert_eq!(snap.transaction_block(&trace.id).expect("read"), Some(2));
    drop(snap);
    // Later blocks are normal again.
    let b = chain.produce_block(BlockTimestamp(slot.0 + 41), sign_dev).expect("block 3");
    assert_eq!(b.block_num, 3);
}

/// `get_actions` through the API's read path, on `chain`'s committed state.
fn get_actions(chain: &Chain, account: &str, pos: i64, offset: i64) -> Vec<serde_json::Value> {
    let snap = chain.store().read().expect("snapshot");
    let body = serde_json::json!({"account_name": account, "pos": pos, "offset": offset});
    let v =
        rempart_node::api::read_route(&snap, &Limits::default(), "/v1/history/get_actions", body)
            .expect("get_actions");
    v["actions"].as_array().expect("actions").clone()
}

fn seqs(actions: &[serde_json::Value]) -> Vec<u64> {
    actions.iter().map(|a| a["account_action_seq"].as_u64().expect("seq")).collect()
}

/// Account names a..: "acct" and a letter pair.
fn account_name(i: usize) -> String {
    let l = b"abcdefghijklmnopqrstuvwxyz";
    format!("acct{}{}", l[i / 26] as char, l[i % 26] as char)
}

#[test]
fn get_actions_reads_the_account_index_over_many_blocks_as_nodeos_numbers_them() {
    let follower = node();
    let node = node();
    let key = PrivateKey::generate(KeyType::K1);
    let dev = dev_key();
    // 120 blocks, 3 newaccount by eosio in each even block; odd blocks empty.
    let mut made = 0;
    for b in 0..120 {
        node.chain.start_block(next_slot(&node.chain)).expect("start");
        if b % 2 == 0 {
            for _ in 0..3 {
                let t = trx(&node.chain, vec![newaccount("eosio", &account_name(made), &key)], 60);
                node.chain
                    .push_transaction(sign_transaction(t, &[&dev], &node.chain.chain_id()))
                    .expect("newaccount");
                made += 1;
            }
        }
        node.chain.finish_block(sign_dev).expect("block");
    }
    // The last account authorises an action of its own: indexed under it and under eosio.
    let last = account_name(made - 1);
    let upd = UpdateAuth {
        account: n(&last),
        permission: n("active"),
        parent: n("owner"),
        auth: Authority::single_key(key.public_key()),
    };
    let act = Action {
        account: n("eosio"),
        name: n("updateauth"),
        authorization: vec![PermissionLevel { actor: n(&last), permission: n("active") }],
        data: Bytes(to_bytes(&upd)),
    };
    let t = trx(&node.chain, vec![act], 60);
    node.chain.start_block(next_slot(&node.chain)).expect("start");
    node.chain.push_transaction(sign_transaction(t, &[&key], &node.chain.chain_id())).expect("upd");
    let summary = node.chain.finish_block(sign_dev).expect("block");
    let total = made as u64 + 1;

    // Default: the newest 20, oldest first, numbered from 0.
    let newest = get_actions(&node.chain, "eosio", -1, -20);
    assert_eq!(seqs(&newest), (total - 20..total).collect::<Vec<_>>());
    let top = newest.last().expect("one");
    assert_eq!(top["block_num"], summary.block_num);
    assert_eq!(top["action_trace"]["act"]["name"], "updateauth");
    // From a position: forward includes both ends, backward too.
    assert_eq!(seqs(&get_actions(&node.chain, "eosio", 0, 4)), vec![0, 1, 2, 3, 4]);
    let back = get_actions(&node.chain, "eosio", 10, -3);
    assert_eq!(seqs(&back), vec![7, 8, 9, 10]);
    assert_eq!(back[0]["action_trace"]["act"]["data"]["name"], account_name(7));
    assert_eq!(back[0]["block_num"], 2 + 2 * 2, "account 7 is in the third busy block");
    // Past the end: nothing; an account with one action sees it; an unknown one nothing.
    assert!(get_actions(&node.chain, "eosio", total as i64 + 5, 10).is_empty());
    let own = get_actions(&node.chain, &last, -1, -20);
    assert_eq!(seqs(&own), vec![0]);
    assert_eq!(own[0]["action_trace"]["act"]["name"], "updateauth");
    assert!(get_actions(&node.chain, "nobody", -1, -20).is_empty());

    // A follower re-applying the blocks builds the same index.
    let head = node.chain.info().head_block_num;
    let snap = node.chain.store().read().expect("snapshot");
    for num in 2..=head {
        let block: SignedBlock =
            from_bytes(&snap.block(num).expect("read").expect("block")).expect("decode");
        follower.chain.apply_block(&block).expect("applies");
    }
    assert_eq!(get_actions(&follower.chain, "eosio", -1, -20), newest);
}

#[test]
fn an_off_curve_key_in_newaccount_data_is_still_refused() {
    let node = node();
    let key = PrivateKey::generate(KeyType::K1);
    let mut act = newaccount("eosio", "offcurve", &key);
    // Replace the owner key's x coordinate by one with no point on secp256k1.
    let bytes = key.public_key().as_bytes().to_vec();
    let at = act.data.0.windows(33).position(|w| w == bytes.as_slice()).expect("key in data");
    let mut bad = vec![2u8];
    bad.extend_from_slice(&[0; 31]);
    bad.push(5);
    act.data.0[at..at + 33].copy_from_slice(&bad);
    let t = trx(&node.chain, vec![act], 60);
    node.chain.start_block(next_slot(&node.chain)).expect("start");
    let before = accounts_digest(&node.chain);
    let e = node
        .chain
        .push_transaction(sign_transaction(t, &[&dev_key()], &node.chain.chain_id()))
        .expect_err("off-curve key");
    assert!(e.to_string().contains("key") || e.to_string().contains("point"), "{e}");
    node.chain.finish_block(sign_dev).expect("block");
    assert_eq!(accounts_digest(&node.chain), before);
}

#[test]
fn with_three_producers_lib_follows_two_thirds_plus_one_of_the_schedule() {
    let follower = node();
    let node = node();
    let dev = dev_key();
    let names = ["proda", "prodb", "prodc"];
    let keys: Vec<PrivateKey> = names.iter().map(|_| PrivateKey::generate(KeyType::K1)).collect();
    // Signs with whichever key the request names.
    let sign = |req: &rempart_core::protocol::SignBlockRequest| {
        let all = std::iter::once(&dev).chain(keys.iter());
        let k = all.into_iter().find(|k| k.public_key() == req.signing_key).expect("known key");
        Ok(k.sign(&req.digest()))
    };
    let mut actions: Vec<Action> =
        names.iter().zip(&keys).map(|(name, k)| newaccount("eosio", name, k)).collect();
    let schedule: Vec<rempart_node::genesis::ProducerKey> = names
        .iter()
        .zip(&keys)
        .map(|(name, k)| rempart_node::genesis::ProducerKey {
            producer_name: n(name),
            block_signing_key: k.public_key(),
        })
        .collect();
    actions.push(Action {
        account: n("eosio"),
        name: n("setprods"),
        authorization: vec![PermissionLevel { actor: n("eosio"), permission: n("active") }],
        data: Bytes(to_bytes(&rempart_node::native::SetProds { schedule })),
    });
    node.chain.start_block(next_slot(&node.chain)).expect("start");
    let t = trx(&node.chain, actions, 60);
    node.chain
        .push_transaction(sign_transaction(t, &[&dev], &node.chain.chain_id()))
        .expect("setprods");
    node.chain.finish_block(sign).expect("block");

    // (block, producer, lib) of every block from here, with the rule checked at each block.
    let mut last_of: std::collections::BTreeMap<Name, u32> = Default::default();
    let mut saw_all_three = false;
    let mut prev_lib = node.chain.info().last_irreversible_block_num;
    for _ in 0..60 {
        let b = node.chain.produce_block(next_slot(&node.chain), sign).expect("block");
        let info = node.chain.info();
        let lib = info.last_irreversible_block_num;
        assert!(
            lib >= prev_lib && lib <= b.block_num,
            "LIB {lib} after {prev_lib}, head {}",
            b.block_num
        );
        if info.schedule.producers.len() == 3 {
            last_of.insert(b.producer, b.block_num);
            if last_of.len() < 3 {
                // Until every scheduled producer has produced, nothing new is final.
                assert_eq!(lib, prev_lib, "block {} by {}", b.block_num, b.producer);
            } else {
                saw_all_three = true;
                // 2/3+1 of 3 is all three: final up to the oldest of their last blocks.
                let oldest = *last_of.values().min().expect("three");
                assert_eq!(lib, oldest.max(prev_lib), "block {} by {}", b.block_num, b.producer);
                assert!(lib < b.block_num);
            }
        } else {
            assert_eq!(lib, b.block_num, "one producer: the head is final");
        }
        let snap = node.chain.store().read().expect("snapshot");
        assert_eq!(snap.block_id(lib).expect("read"), Some(info.last_irreversible_block_id));
        prev_lib = lib;
    }
    assert!(saw_all_three, "the three producers took turns: {last_of:?}");

    // A follower re-applying the blocks computes the same LIB.
    let head = node.chain.info();
    let snap = node.chain.store().read().expect("snapshot");
    for num in 2..=head.head_block_num {
        let block: SignedBlock =
            from_bytes(&snap.block(num).expect("read").expect("block")).expect("decode");
        follower.chain.apply_block(&block).expect("applies");
    }
    assert_eq!(follower.chain.info(), head);
}

/// Every block of `chain` from 2 to its head, decoded from the block log.
fn blocks_of(chain: &Chain) -> Vec<SignedBlock> {
    let snap = chain.store().read().expect("snapshot");
    (2..=chain.info().head_block_num)
        .map(|i| from_bytes(&snap.block(i).expect("read").expect("block")).expect("decode"))
        .collect()
}

#[test]
fn an_account_whose_active_key_is_r1_signs_transactions_with_it() {
    let follower = node();
    let node = node();
    let id = node.chain.chain_id();
    let r1 = PrivateKey::generate(KeyType::R1);
    assert!(r1.public_key().to_string().starts_with("PUB_R1_"));
    let t = trx(&node.chain, vec![newaccount("eosio", "rone", &r1)], 60);
    node.chain.start_block(next_slot(&node.chain)).expect("start");
    node.chain.push_transaction(sign_transaction(t, &[&dev_key()], &id)).expect("newaccount");
    node.chain.finish_block(sign_dev).expect("block 2");

    // rone@active (a PUB_R1 key) authorizes a newaccount signed by that R1 key.
    let by_rone = |name: &str| {
        let mut a = newaccount("rone", name, &r1);
        a.authorization[0].actor = n("rone");
        a
    };
    node.chain.start_block(next_slot(&node.chain)).expect("start");
    let signed = sign_transaction(trx(&node.chain, vec![by_rone("rtwo")], 60), &[&r1], &id);
    assert!(signed.signatures.iter().all(|s| s.key_type() == KeyType::R1));
    let trace = node.chain.push_transaction(signed).expect("the R1 signature satisfies rone");
    assert_eq!(trace.block_num, 3);
    // A K1 key that is not rone's does not satisfy it, and changes nothing.
    let before = accounts_digest(&node.chain);
    let stranger = PrivateKey::generate(KeyType::K1);
    let t = trx(&node.chain, vec![by_rone("rthree")], 61);
    let e = node.chain.push_transaction(sign_transaction(t, &[&stranger], &id)).expect_err("K1");
    assert_eq!(code(&e), 3_090_003, "{e}");
    assert_eq!(accounts_digest(&node.chain), before);
    node.chain.finish_block(sign_dev).expect("block 3");
    let snap = node.chain.store().read().expect("snapshot");
    assert!(snap.get(&key::account(n("rtwo"))).expect("read").is_some());
    assert!(snap.get(&key::account(n("rthree"))).expect("read").is_none());
    drop(snap);

    // A follower recovers the R1 signature again when it re-applies the block.
    for b in blocks_of(&node.chain) {
        follower.chain.apply_block(&b).expect("applies");
    }
    assert_eq!(follower.chain.info().head_block_id, node.chain.info().head_block_id);
    assert_eq!(accounts_digest(&follower.chain), accounts_digest(&node.chain));
}

#[test]
fn a_producer_whose_block_signing_key_is_r1_produces_blocks_a_follower_verifies() {
    let follower = node();
    let node = node();
    let dev = dev_key();
    let r1 = PrivateKey::generate(KeyType::R1);
    let sign = |req: &rempart_core::protocol::SignBlockRequest| {
        let k = [&dev, &r1].into_iter().find(|k| k.public_key() == req.signing_key);
        Ok(k.expect("a key this test holds").sign(&req.digest()))
    };
    let schedule = vec![rempart_node::genesis::ProducerKey {
        producer_name: n("prodr"),
        block_signing_key: r1.public_key(),
    }];
    let setprods = Action {
        account: n("eosio"),
        name: n("setprods"),
        authorization: vec![PermissionLevel { actor: n("eosio"), permission: n("active") }],
        data: Bytes(to_bytes(&rempart_node::native::SetProds { schedule })),
    };
    let t = trx(&node.chain, vec![newaccount("eosio", "prodr", &dev), setprods], 60);
    node.chain.start_block(next_slot(&node.chain)).expect("start");
    node.chain
        .push_transaction(sign_transaction(t, &[&dev], &node.chain.chain_id()))
        .expect("setprods");
    node.chain.finish_block(sign).expect("block 2");

    let mut by_r1 = 0;
    for _ in 0..6 {
        let b = node.chain.produce_block(next_slot(&node.chain), sign).expect("block");
        let info = node.chain.info();
        if b.producer == n("prodr") {
            by_r1 += 1;
            assert_eq!(info.schedule.producers[0].block_signing_key, r1.public_key());
            // One producer: its head is final as soon as it is signed.
            assert_eq!(info.last_irreversible_block_num, b.block_num);
        }
    }
    assert!(by_r1 >= 3, "the R1 schedule took over: {by_r1} blocks by prodr");
    let blocks = blocks_of(&node.chain);
    let last = blocks.last().expect("blocks");
    assert_eq!(last.signed_header.header.producer, n("prodr"));
    assert_eq!(last.signed_header.producer_signature.key_type(), KeyType::R1);

    // The follower verifies each R1 signature against the schedule; a block from prodr signed
    // by the old K1 key is refused.
    let first_r1 = blocks
        .iter()
        .position(|b| b.signed_header.header.producer == n("prodr"))
        .expect("a block by prodr");
    for b in &blocks[..first_r1] {
        follower.chain.apply_block(b).expect("applies");
    }
    let mut forged = blocks[first_r1].clone();
    let digest = forged.signed_header.header.signing_digest(&Checksum256::ZERO, &Checksum256::ZERO);
    forged.signed_header.producer_signature = dev.sign(&digest);
    let e = follower.chain.apply_block(&forged).expect_err("K1 signature for an R1 producer");
    assert!(matches!(e, BlockError::BadSignature { .. }), "{e}");
    for b in &blocks[first_r1..] {
        follower.chain.apply_block(b).expect("R1-signed block applies");
    }
    assert_eq!(follower.chain.info(), node.chain.info());
}

#[test]
fn an_api_node_with_a_lower_block_transaction_cap_still_follows_the_producer() {
    // max_block_transactions decides what a node puts in its own blocks: the producer fills one
    // with three transactions, a follower capped at one re-applies it, and refuses a fourth
    // transaction into a block of its own.
    let producer = node();
    let id = producer.chain.chain_id();
    let dev = dev_key();
    producer.chain.start_block(next_slot(&producer.chain)).expect("start");
    for name in ["ann", "ben", "cid"] {
        let t = trx(&producer.chain, vec![newaccount("eosio", name, &dev)], 60);
        producer.chain.push_transaction(sign_transaction(t, &[&dev], &id)).expect(name);
    }
    producer.chain.finish_block(sign_dev).expect("block 2");

    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("state.redb")).expect("store"));
    let capped = Limits { max_block_transactions: 1, ..Limits::default() };
    let follower = Chain::open(store, &genesis(), capped).expect("chain");
    for block in blocks_of(&producer.chain) {
        assert_eq!(block.transactions.len(), 3);
        follower.apply_block(&block).expect("a block over the local cap is followed");
    }
    assert_eq!(follower.info().head_block_id, producer.chain.info().head_block_id);

    // Its own blocks keep its cap.
    follower.start_block(next_slot(&follower)).expect("start");
    let t = trx(&follower, vec![newaccount("eosio", "dan", &dev)], 60);
    follower.push_transaction(sign_transaction(t, &[&dev], &id)).expect("first fits");
    let t = trx(&follower, vec![newaccount("eosio", "eve", &dev)], 60);
    let e = follower.push_transaction(sign_transaction(t, &[&dev], &id)).expect_err("full");
    assert!(e.to_string().contains("the block is full (1 transactions)"), "{e}");
}
