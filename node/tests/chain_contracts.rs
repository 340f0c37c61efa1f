//! Contracts through the chain: `eosio.token` (the C contract in CDT shape) deployed with
//! `setcode`/`setabi` transactions, then `create`, `issue` and `transfer` pushed as signed
//! transactions; the transfer notifies the recipient (the sender is the contract itself), its
//! data comes back as JSON through the deployed ABI, a follower re-applies the blocks to the same state, and a
//! contract that runs out of fuel fails its transaction without changing anything. The relay
//! contract's inline transfer is refused until its active permission names relay@eosio.code,
//! then runs after `pay` and notifies both parties, contracts included.

use std::path::Path;
use std::sync::Arc;

use rempart_core::block::SignedBlock;
use rempart_core::key::{KeyType, PrivateKey, Signature};
use rempart_core::protocol::SignBlockRequest;
use rempart_core::transaction::{Action, PermissionLevel, Transaction};
use rempart_core::{Bytes, Name, TimePointSec, from_bytes, to_bytes};
use rempart_node::authority::{Authority, PermissionLevelWeight};
use rempart_node::chain::{Chain, SignFailure, TransactionTrace, TxError, sign_transaction};
use rempart_node::config::Limits;
use rempart_node::genesis::Genesis;
use rempart_node::native::{NewAccount, SetAbi, SetCode, UpdateAuth};
use rempart_node::store::{Store, key};
use serde_json::json;

const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

fn n(s: &str) -> Name {
    s.parse().expect("name")
}

fn genesis() -> Genesis {
    Genesis::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"))
        .expect("genesis")
}

fn open() -> (tempfile::TempDir, Chain) {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("state.redb")).expect("store"));
    (dir, Chain::open(store, &genesis(), Limits::default()).expect("chain"))
}

fn sign_dev(req: &SignBlockRequest) -> Result<Signature, SignFailure> {
    let dev: PrivateKey = DEV_WIF.parse().expect("key");
    Ok(dev.sign(&req.digest()))
}

fn act(account: &str, name: &str, actor: &str, data: Vec<u8>) -> Action {
    Action {
        account: n(account),
        name: n(name),
        authorization: vec![PermissionLevel { actor: n(actor), permission: n("active") }],
        data: Bytes(data),
    }
}

fn token(name: &str, actor: &str, args: serde_json::Value) -> Action {
    let abi = rempart_core::abi::eosio_token_abi();
    act("eosio.token", name, actor, abi.action_json_to_bin(n(name), &args).expect("pack"))
}

/// Pushes `actions` signed by `keys` in a block of their own.
fn push(
    chain: &Chain,
    actions: Vec<Action>,
    keys: &[&PrivateKey],
) -> Result<TransactionTrace, TxError> {
    let info = chain.info();
    let mut t = Transaction { actions, ..Default::default() };
    t.header.expiration =
        TimePointSec((info.head_block_time.to_time_point().0 / 1_000_000) as u32 + 60);
    t.set_reference_block(&info.head_block_id);
    chain.start_block(info.head_block_time.next()).expect("start");
    let r = chain.push_transaction(sign_transaction(t, keys, &chain.chain_id()));
    chain.finish_block(sign_dev).expect("block");
    r
}

fn balance(chain: &Chain, owner: &str) -> Option<Vec<u8>> {
    // The accounts table is keyed by the raw symbol code.
    let code: rempart_core::SymbolCode = "SYS".parse().expect("symbol code");
    let primary: u64 = from_bytes(&to_bytes(&code)).expect("u64");
    let k = key::row(n("eosio.token"), n(owner), n("accounts"), primary);
    chain.store().read().expect("snapshot").get(&k).expect("read")
}

#[test]
fn token_contract_runs_with_notifications_and_a_follower_agrees() {
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

    // The follower re-applies every block, contracts included, to the same state.
    let snap = chain.store().read().expect("snapshot");
    for num in 2..=chain.info().head_block_num {
        let b: SignedBlock =
            from_bytes(&snap.block(num).expect("read").expect("block")).expect("decode");
        follower.apply_block(&b).unwrap_or_else(|e| panic!("block {num}: {e}"));
    }
    assert_eq!(follower.info().head_block_id, chain.info().head_block_id);
    assert_eq!(balance(&follower, "alice"), balance(&chain, "alice"));
}

#[test]
fn eosio_code_is_a_virtual_permission_and_runaway_code_fails_cleanly() {
    let (_d, chain) = open();
    let dev: PrivateKey = DEV_WIF.parse().expect("key");
    let data = NewAccount {
        creator: n("eosio"),
        name: n("looper"),
        owner: Authority::single_key(dev.public_key()),
        active: Authority::single_key(dev.public_key()),
    };
    push(&chain, vec![act("eosio", "newaccount", "eosio", to_bytes(&data))], &[&dev])
        .expect("account");
    let wat = std::fs::read_to_string(
        Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts/hostile/loop.wat"),
    )
    .expect("loop.wat");
    let code = wat::parse_str(wat).expect("wat");
    let setcode = SetCode { account: n("looper"), vmtype: 0, vmversion: 0, code: Bytes(code) };
    push(&chain, vec![act("eosio", "setcode", "looper", to_bytes(&setcode))], &[&dev])
        .expect("deploy");
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
