//! Contracts through the chain: `eosio.token` (the C contract in CDT shape) deployed with
//! `setcode`/`setabi` transactions, then `create`, `issue` and `transfer` pushed as signed
//! transactions; the transfer notifies the recipient (the sender is the contract itself), its
//! data comes back as JSON through the deployed ABI, and two followers (the api nodes) re-apply
//! the blocks to a state whose digest equals the producer's. Every hostile contract (infinite
//! loop, unbounded memory growth, deep recursion, trap) fails its own transaction with a clear
//! error inside a block that is still produced within its slot, leaving the state as it was;
//! bad code (unknown import, not WebAssembly, too big) is refused by `setcode` with a message
//! naming the problem. The relay contract's inline transfer is refused until its active
//! permission names relay@eosio.code, then runs after `pay` and notifies both parties,
//! contracts included. A trap in a notified contract or in an inline action fails the whole
//! transaction, the parent action's own write included. The transaction CPU budget comes from
//! `[limits] max_transaction_fuel`.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rempart_core::block::SignedBlock;
use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::transaction::{Action, PermissionLevel, Transaction};
use rempart_core::{Bytes, Name, TimePointSec, from_bytes, to_bytes};
use rempart_node::authority::{Authority, PermissionLevelWeight};
use rempart_node::chain::{Chain, sign_transaction};
use rempart_node::config::Limits;
use rempart_node::native::{NewAccount, SetAbi, SetCode, UpdateAuth};
use rempart_node::store::{Store, key};
use serde_json::json;

mod support;

use support::{DEV_WIF, act, genesis, n, push, sign_dev, token};

fn open() -> (tempfile::TempDir, Chain) {
    open_with(Limits::default())
}

fn open_with(limits: Limits) -> (tempfile::TempDir, Chain) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("state.redb")).expect("store"));
    (dir, Chain::open(store, &genesis(), limits).expect("chain"))
}

/// The `setcode` action deploying `code` on `account`.
fn setcode_action(account: &str, code: Vec<u8>) -> Action {
    let sc = SetCode { account: n(account), vmtype: 0, vmversion: 0, code: Bytes(code) };
    act("eosio", "setcode", account, to_bytes(&sc))
}

/// `contracts/hostile/NAME.wat`, assembled.
fn hostile_wasm(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join(format!("contracts/hostile/{name}.wat"));
    wat::parse_str(std::fs::read_to_string(path).expect("wat file")).expect("wat")
}

/// Creates `name`, owned by the dev key, in a block of its own; the dev key.
fn dev_account(chain: &Chain, name: &str) -> PrivateKey {
    let dev: PrivateKey = DEV_WIF.parse().expect("key");
    let data = NewAccount {
        creator: n("eosio"),
        name: n(name),
        owner: Authority::single_key(dev.public_key()),
        active: Authority::single_key(dev.public_key()),
    };
    push(chain, vec![act("eosio", "newaccount", "eosio", to_bytes(&data))], &[&dev])
        .expect("account");
    dev
}

/// sha256 over every chain-state entry (key and value, length-prefixed), in key order, with the
/// head that snapshot holds.
fn state_digest(chain: &Chain) -> (u32, rempart_core::Checksum256) {
    let snap = chain.store().read().expect("snapshot");
    let head = snap.head().expect("head").expect("initialised").block_num;
    let mut all = Vec::new();
    for (k, v) in snap.scan(b"", b"", usize::MAX).expect("scan") {
        for part in [k, v] {
            all.extend_from_slice(&(part.len() as u64).to_le_bytes());
            all.extend_from_slice(&part);
        }
    }
    (head, rempart_core::Checksum256::hash(&all))
}

fn balance(chain: &Chain, owner: &str) -> Option<Vec<u8>> {
    // The accounts table is keyed by the raw symbol code.
    let code: rempart_core::SymbolCode = "SYS".parse().expect("symbol code");
    let primary: u64 = from_bytes(&to_bytes(&code)).expect("u64");
    let k = key::row(n("eosio.token"), n(owner), n("accounts"), primary);
    chain.store().read().expect("snapshot").get(&k).expect("read")
}

#[test]
fn token_contract_runs_with_notifications_and_two_followers_agree() {
    let (_d, chain) = open();
    let (_d2, follower) = open();
    let (_d3, second) = open();
    let dev: PrivateKey = DEV_WIF.parse().expect("key");
    let user = PrivateKey::generate(KeyType::K1);
    let auth = |k: &PrivateKey| Authority::single_key(k.public_key());
    let newaccount = |name: &str, k: &PrivateKey| {
        let data =
            NewAccount { creator: n("eosio"), name: n(name), owner: auth(k), active: auth(k) };
        act("eosio", "newaccount", "eosio", to_bytes(&data))
    };
    push(&chain, vec![newaccount("eosio.token", &dev), newaccount("alice", &user)], &[&dev])
        .expect("accounts");
    let code = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts/token.wasm"))
        .expect("token.wasm");
    let setcode = SetCode { account: n("eosio.token"), vmtype: 0, vmversion: 0, code: Bytes(code) };
    let abi = rempart_core::abi::eosio_token_abi().def().to_bin();
    let setabi = SetAbi { account: n("eosio.token"), abi: Bytes(abi) };
    push(
        &chain,
        vec![
            act("eosio", "setcode", "eosio.token", to_bytes(&setcode)),
            act("eosio", "setabi", "eosio.token", to_bytes(&setabi)),
        ],
        &[&dev],
    )
    .expect("deploy");
    // Invalid code is refused by setcode itself.
    let bad = SetCode { account: n("alice"), vmtype: 0, vmversion: 0, code: Bytes(vec![1, 2, 3]) };
    let e = push(&chain, vec![act("eosio", "setcode", "alice", to_bytes(&bad))], &[&user])
        .expect_err("not wasm");
    assert_eq!(e.nodeos().0, 3_050_002, "{e}");

    push(
        &chain,
        vec![token(
            "create",
            "eosio.token",
            json!({"issuer": "eosio.token", "maximum_supply": "1000.0000 SYS"}),
        )],
        &[&dev],
    )
    .expect("create");
    push(
        &chain,
        vec![token(
            "issue",
            "eosio.token",
            json!({"to": "eosio.token", "quantity": "100.0000 SYS", "memo": ""}),
        )],
        &[&dev],
    )
    .expect("issue");
    let trace = push(
        &chain,
        vec![token(
            "transfer",
            "eosio.token",
            json!({"from": "eosio.token", "to": "alice", "quantity": "7.0000 SYS", "memo": "hi"}),
        )],
        &[&dev],
    )
    .expect("transfer");
    let receivers: Vec<String> =
        trace.action_traces.iter().map(|t| t.receiver.to_string()).collect();
    assert_eq!(receivers, ["eosio.token", "alice"], "the sender is the contract: notified once");
    let json = chain.trace_json(&trace);
    assert_eq!(json["action_traces"][0]["act"]["data"]["quantity"], "7.0000 SYS", "{json}");
    assert_eq!(json["action_traces"][1]["creator_action_ordinal"], 1);
    assert!(balance(&chain, "alice").is_some(), "alice holds tokens");

    // Overdraw: the contract's assertion is a nodeos-shaped error and nothing changes.
    let before = balance(&chain, "alice");
    let e = push(
        &chain,
        vec![token(
            "transfer",
            "alice",
            json!({"from": "alice", "to": "eosio.token", "quantity": "8.0000 SYS", "memo": ""}),
        )],
        &[&user],
    )
    .expect_err("overdrawn");
    assert!(e.to_string().contains("overdrawn"), "{e}");
    assert_eq!(balance(&chain, "alice"), before);

    // Two followers (the api nodes) re-apply every block, contracts included, each on its own
    // VM and store, to the same state: the digests of the whole chain state agree.
    let snap = chain.store().read().expect("snapshot");
    for num in 2..=chain.info().head_block_num {
        let b: SignedBlock =
            from_bytes(&snap.block(num).expect("read").expect("block")).expect("decode");
        follower.apply_block(&b).unwrap_or_else(|e| panic!("block {num}: {e}"));
        second.apply_block(&b).unwrap_or_else(|e| panic!("second follower, block {num}: {e}"));
    }
    assert_eq!(follower.info().head_block_id, chain.info().head_block_id);
    assert_eq!(balance(&follower, "alice"), balance(&chain, "alice"));
    let digest = state_digest(&follower);
    assert_eq!(digest.0, chain.info().head_block_num);
    assert_eq!(state_digest(&second), digest, "the two api nodes hold the same state");
    assert_eq!(state_digest(&chain), digest, "and the producer's");
}

#[test]
fn hostile_contracts_fail_alone_and_the_block_is_produced_in_its_slot() {
    let (_d, chain) = open();
    let dev = dev_account(&chain, "evil");
    let hostile = hostile_wasm;
    let setcode = |code: Vec<u8>| setcode_action("evil", code);
    // Each writes a row (evil, scope 1, table 1, key 7) before misbehaving.
    let row = key::row(n("evil"), Name(1), Name(1), 7);
    for (name, expected) in [
        ("loop", "CPU budget"),
        ("grow", "CPU budget"),
        ("grow_assert", "out of memory"),
        ("recurse", "call stack exhausted"),
        ("trap", "unreachable"),
    ] {
        push(&chain, vec![setcode(hostile(name))], &[&dev]).expect("deploy");
        let head = chain.info().head_block_num;
        let info = chain.info();
        let mut t =
            Transaction { actions: vec![act("evil", "go", "evil", vec![])], ..Default::default() };
        t.header.expiration =
            TimePointSec((info.head_block_time.to_time_point().0 / 1_000_000) as u32 + 60);
        t.set_reference_block(&info.head_block_id);
        chain.start_block(info.head_block_time.next()).expect("start");
        // What the contract can spend is its transaction's time; the block's commit after it is
        // the disk's (an fsync, which on a shared VM disk has taken over 500 ms on its own).
        let started = rempart_node::producer::clock::instant();
        let e = chain
            .push_transaction(sign_transaction(t, &[&dev], &chain.chain_id()))
            .expect_err("hostile action fails");
        let took = started.elapsed();
        chain.finish_block(sign_dev).expect("the block is produced");
        assert!(e.to_string().contains(expected), "{name}: {e}");
        assert_eq!(chain.info().head_block_num, head + 1, "{name}: the block went on");
        assert!(
            took < Duration::from_millis(500),
            "{name}: the transaction took {took:?}, past the block's slot"
        );
        let snap = chain.store().read().expect("snapshot");
        assert_eq!(snap.get(&row).expect("read"), None, "{name}: its write did not survive");
    }

    // Bad code never reaches the state: each refusal names the problem.
    let hash_before = chain.store().read().expect("snapshot").get(&key::code_hash(n("evil")));
    // Past max_code_bytes (384 KiB) but inside max_transaction_bytes (512 KiB): setcode's own
    // limit refuses it; past the transaction's limit the transaction is refused for its size.
    let limits = rempart_node::config::Limits::default();
    let mut huge = hostile("trap");
    huge.resize(limits.max_code_bytes + 1, 0);
    let mut oversized = hostile("trap");
    oversized.resize(limits.max_transaction_bytes + 1, 0);
    let code_limit = format!(
        "code of {} bytes exceeds the limit of {} bytes",
        huge.len(),
        limits.max_code_bytes
    );
    let trx_limit = format!("exceeds the limit of {} bytes", limits.max_transaction_bytes);
    for (code, expected) in [
        (hostile("import"), "get_wall_clock"),
        (b"#include <eosio/eosio.hpp>".to_vec(), "not WebAssembly"),
        (huge, code_limit.as_str()),
        (oversized, trx_limit.as_str()),
    ] {
        let e = push(&chain, vec![setcode(code)], &[&dev]).expect_err("refused");
        assert!(e.to_string().contains(expected), "expected {expected:?} in: {e}");
    }
    let hash_after = chain.store().read().expect("snapshot").get(&key::code_hash(n("evil")));
    assert_eq!(hash_after.expect("read"), hash_before.expect("read"), "the deployed code stays");
}

#[test]
fn eosio_code_is_a_virtual_permission_and_runaway_code_fails_cleanly() {
    let (_d, chain) = open();
    let dev = dev_account(&chain, "looper");
    push(&chain, vec![setcode_action("looper", hostile_wasm("loop"))], &[&dev]).expect("deploy");
    let head = chain.info().head_block_num;
    let e = push(&chain, vec![act("looper", "spin", "looper", vec![])], &[&dev])
        .expect_err("out of fuel");
    assert!(e.to_string().contains("CPU budget"), "{e}");
    assert_eq!(chain.info().head_block_num, head + 1, "the block went on without it");

    // eosio.code in a permission is accepted by updateauth (what contracts sending inline
    // actions need).
    let upd = UpdateAuth {
        account: n("looper"),
        permission: n("active"),
        parent: n("owner"),
        auth: Authority {
            threshold: 1,
            keys: Authority::single_key(dev.public_key()).keys,
            accounts: vec![PermissionLevelWeight {
                permission: PermissionLevel { actor: n("looper"), permission: n("eosio.code") },
                weight: 1,
            }],
            waits: vec![],
        },
    };
    push(&chain, vec![act("eosio", "updateauth", "looper", to_bytes(&upd))], &[&dev])
        .expect("eosio.code is a virtual permission authorities may name");
}

#[test]
fn inline_actions_run_with_eosio_code_and_notifications_reach_contracts() {
    let (_d, chain) = open();
    let (_d2, follower) = open();
    let dev: PrivateKey = DEV_WIF.parse().expect("key");
    let user = PrivateKey::generate(KeyType::K1);
    let auth = |k: &PrivateKey| Authority::single_key(k.public_key());
    let newaccount = |name: &str, k: &PrivateKey| {
        let data =
            NewAccount { creator: n("eosio"), name: n(name), owner: auth(k), active: auth(k) };
        act("eosio", "newaccount", "eosio", to_bytes(&data))
    };
    let setcode = |account: &str, file: &str| {
        let code =
            std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts").join(file))
                .expect("wasm");
        let s = SetCode { account: n(account), vmtype: 0, vmversion: 0, code: Bytes(code) };
        act("eosio", "setcode", account, to_bytes(&s))
    };
    push(
        &chain,
        vec![newaccount("eosio.token", &dev), newaccount("relay", &dev), newaccount("bob", &user)],
        &[&dev],
    )
    .expect("accounts");
    push(
        &chain,
        vec![setcode("eosio.token", "token.wasm"), setcode("relay", "relay.wasm")],
        &[&dev],
    )
    .expect("deploy");
    let tok = |name: &str, actor: &str, args: serde_json::Value| token(name, actor, args);
    push(
        &chain,
        vec![
            tok("create", "eosio.token", json!({"issuer": "eosio.token", "maximum_supply": "1000.0000 SYS"})),
            tok("issue", "eosio.token", json!({"to": "eosio.token", "quantity": "100.0000 SYS", "memo": ""})),
            tok("transfer", "eosio.token", json!({"from": "eosio.token", "to": "relay", "quantity": "10.0000 SYS", "memo": ""})),
        ],
        &[&dev],
    )
    .expect("fund the relay");
    let quantity: rempart_core::Asset = "3.0000 SYS".parse().expect("asset");
    let mut data = to_bytes(&n("bob"));
    data.extend(to_bytes(&quantity));
    let pay = act("relay", "pay", "relay", data);

    // Without relay@eosio.code in relay@active, the inline transfer is refused.
    let before = balance(&chain, "bob");
    let e = push(&chain, vec![pay.clone()], &[&dev]).expect_err("no eosio.code");
    assert!(e.to_string().contains("eosio.code"), "{e}");
    assert_eq!(balance(&chain, "bob"), before);

    let upd = UpdateAuth {
        account: n("relay"),
        permission: n("active"),
        parent: n("owner"),
        auth: Authority {
            threshold: 1,
            keys: auth(&dev).keys,
            accounts: vec![PermissionLevelWeight {
                permission: PermissionLevel { actor: n("relay"), permission: n("eosio.code") },
                weight: 1,
            }],
            waits: vec![],
        },
    };
    let mut u = act("eosio", "updateauth", "relay", to_bytes(&upd));
    u.authorization[0].permission = n("owner");
    push(&chain, vec![u], &[&dev]).expect("add eosio.code");
    let trace = push(&chain, vec![pay], &[&dev]).expect("pay through an inline transfer");
    let seen: Vec<(String, String, u32)> = trace
        .action_traces
        .iter()
        .map(|t| (t.receiver.to_string(), t.act.name.to_string(), t.creator_action_ordinal))
        .collect();
    assert_eq!(
        seen,
        [
            ("relay".into(), "pay".into(), 0),
            ("eosio.token".into(), "transfer".into(), 1),
            ("relay".into(), "transfer".into(), 2),
            ("bob".into(), "transfer".into(), 2),
        ],
        "the inline transfer runs after pay and notifies both parties"
    );
    assert!(trace.action_traces[2].console.contains("relay notified"));
    assert!(balance(&chain, "bob").is_some());

    let snap = chain.store().read().expect("snapshot");
    for num in 2..=chain.info().head_block_num {
        let b: SignedBlock =
            from_bytes(&snap.block(num).expect("read").expect("block")).expect("decode");
        follower.apply_block(&b).unwrap_or_else(|e| panic!("block {num}: {e}"));
    }
    assert_eq!(balance(&follower, "bob"), balance(&chain, "bob"));
}

/// A bounded loop: `apply` counts down from 100,000 (about half a million fuel), then returns.
const BOUNDED_LOOP: &str = r#"(module
  (func (export "apply") (param i64 i64 i64) (local $i i32)
    (local.set $i (i32.const 100000))
    (loop $l
      (local.set $i (i32.sub (local.get $i) (i32.const 1)))
      (br_if $l (local.get $i)))))"#;

#[test]
fn the_transaction_cpu_budget_comes_from_the_node_limits() {
    // The same contract and transaction: within the shipped budget it runs; with
    // `max_transaction_fuel = 10000` in the node's limits it fails on CPU, and the block goes on.
    let tiny = Limits { max_transaction_fuel: 10_000, ..Limits::default() };
    let run = |limits: Limits| {
        let (dir, chain) = open_with(limits);
        let dev = dev_account(&chain, "counter");
        let code = wat::parse_str(BOUNDED_LOOP).expect("wat");
        push(&chain, vec![setcode_action("counter", code)], &[&dev]).expect("deploy");
        let head = chain.info().head_block_num;
        let r = push(&chain, vec![act("counter", "count", "counter", vec![])], &[&dev]);
        assert_eq!(chain.info().head_block_num, head + 1, "the block is produced either way");
        (dir, chain, r)
    };
    let (_d, producer, r) = run(Limits::default());
    r.expect("the shipped budget covers a 100,000-step loop");
    let (_d2, _, r) = run(tiny.clone());
    let e = r.expect_err("a tiny budget stops the same loop");
    assert!(e.to_string().contains("CPU budget of 10000 fuel units"), "{e}");
    assert!(e.to_string().contains("[limits] max_transaction_fuel"), "names the setting: {e}");
    assert_eq!(e.nodeos().1, "tx_cpu_usage_exceeded", "{e}");

    // The budget decides what a node accepts into its own blocks, not whether it follows: an
    // api node with the tiny budget re-applies the producer's block holding the loop.
    let (_d3, follower) = open_with(tiny);
    let snap = producer.store().read().expect("snapshot");
    for num in 2..=producer.info().head_block_num {
        let b: SignedBlock =
            from_bytes(&snap.block(num).expect("read").expect("block")).expect("decode");
        follower.apply_block(&b).unwrap_or_else(|e| panic!("block {num}: {e}"));
    }
    assert_eq!(state_digest(&follower), state_digest(&producer));
}

/// `parent`: on its own actions, stores a row (scope = the action name, table 2, primary key =
/// the action data's size, payer itself), then `notify` calls require_recipient(evil) and any
/// other action sends the inline action `evil::go` (no authorization, no data). Notifications
/// it receives do nothing.
fn parent_wasm() -> Vec<u8> {
    let evil = n("evil").0;
    let mut packed = Vec::new();
    packed.extend(evil.to_le_bytes()); // account
    packed.extend(n("go").0.to_le_bytes()); // name
    packed.extend([0, 0]); // no authorization, no data
    let bytes: String = packed.iter().map(|b| format!("\\{b:02x}")).collect();
    let text = format!(
        r#"(module
  (import "env" "db_store_i64" (func $store (param i64 i64 i64 i64 i32 i32) (result i32)))
  (import "env" "require_recipient" (func $notify (param i64)))
  (import "env" "send_inline" (func $inline (param i32 i32)))
  (import "env" "action_data_size" (func $size (result i32)))
  (memory 1)
  (data (i32.const 16) "{bytes}")
  (func (export "apply") (param $r i64) (param $c i64) (param $a i64)
    (if (i64.ne (local.get $c) (local.get $r)) (then (return)))
    (drop (call $store (local.get $a) (i64.const 2) (local.get $r)
                       (i64.extend_i32_u (call $size)) (i32.const 0) (i32.const 8)))
    (if (i64.eq (local.get $a) (i64.const {notify}))
      (then (call $notify (i64.const {evil})))
      (else (call $inline (i32.const 16) (i32.const {len}))))))"#,
        notify = n("notify").0 as i64,
        evil = evil as i64,
        len = packed.len(),
    );
    wat::parse_str(text).expect("parent wat")
}

#[test]
fn a_trap_in_a_notified_contract_or_an_inline_action_aborts_the_whole_transaction() {
    let (_d, chain) = open();
    let dev = dev_account(&chain, "parent");
    dev_account(&chain, "evil");
    push(&chain, vec![setcode_action("parent", parent_wasm())], &[&dev]).expect("deploy parent");
    // The parent's row for an action with `size` bytes of data.
    let parent_row = |action: &str, size: u64| key::row(n("parent"), n(action), Name(2), size);
    // trap.wat's row: (evil, scope 1, table 1, key 7).
    let evil_row = key::row(n("evil"), Name(1), Name(1), 7);
    let get = |k: &[u8]| chain.store().read().expect("snapshot").get(k).expect("read");

    // Control: while evil has no code, both actions succeed and the parent's write stays, so
    // the absence of that row below is the rollback, not a contract that never wrote.
    for action in ["notify", "send"] {
        let trace =
            push(&chain, vec![act("parent", action, "parent", vec![])], &[&dev]).expect(action);
        let receivers: Vec<String> =
            trace.action_traces.iter().map(|t| t.receiver.to_string()).collect();
        assert_eq!(receivers, ["parent", "evil"], "{action}: evil ran (as a no-op)");
        assert!(get(&parent_row(action, 0)).is_some(), "{action}: the parent wrote its row");
    }

    push(&chain, vec![setcode_action("evil", hostile_wasm("trap"))], &[&dev]).expect("deploy");
    for action in ["notify", "send"] {
        let head = chain.info().head_block_num;
        let e = push(&chain, vec![act("parent", action, "parent", vec![7])], &[&dev])
            .expect_err("evil traps");
        assert!(e.to_string().contains("unreachable"), "{action}: {e}");
        assert_eq!(chain.info().head_block_num, head + 1, "{action}: the block went on");
        assert_eq!(get(&parent_row(action, 1)), None, "{action}: the parent's write is undone");
        assert_eq!(get(&evil_row), None, "{action}: evil's own write is undone");
    }
}
