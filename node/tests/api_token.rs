//! The chain API over rows the VM wrote: the C `eosio.token` contract deployed and run by the
//! real chain, then `get_currency_balance`, `get_currency_stats`, `get_table_rows` (JSON and
//! hex, with payer), `get_code_hash`, `get_raw_code_and_abi`, and a block and a transaction
//! whose token action data is shown through the deployed ABI. Then the real clients against a
//! running API server whose pushes reach a producing chain over the private protocol: eosjs
//! deploys the token (setcode + setabi), creates, issues, transfers and reads the balances with
//! `get_table_rows` and `get_currency_balance`; wharfkit makes a transfer and reads it back.
//! The client test must never pass without running the clients: under `CI=true` a missing
//! node or npm package fails it; elsewhere it says why it returned.

use std::path::Path;
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::transaction::Action;
use rempart_core::{Bytes, Checksum256, to_bytes};
use rempart_node::api::{ApiContext, ApiError, route};
use rempart_node::authority::Authority;
use rempart_node::chain::Chain;
use rempart_node::config::Limits;
use rempart_node::genesis::Genesis;
use rempart_node::native::{NewAccount, SetAbi, SetCode};
use rempart_node::peer::{self, HeadNotifier, ProducerService, PushClient, wire};
use rempart_node::store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[path = "clients/runner.rs"]
mod runner;

mod support;

use support::{DEV_WIF, act, n, sign_dev, token};

/// Pushes `actions` in a block of their own; the transaction id.
fn push(chain: &Chain, actions: Vec<Action>, keys: &[&PrivateKey]) -> Checksum256 {
    support::push(chain, actions, keys).expect("pushed").id
}

async fn call(ctx: &Arc<ApiContext>, path: &str, body: Value) -> Result<Value, ApiError> {
    route(ctx, path, body).await
}

#[tokio::test]
async fn token_rows_written_by_the_vm_read_back_through_the_api() {
    let dir = std::env::temp_dir().join(format!("rempart-api-token-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("dir");
    let genesis =
        Genesis::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"))
            .expect("genesis");
    let store = Arc::new(Store::open(&dir.join("state.redb")).expect("store"));
    let chain = Chain::open(store.clone(), &genesis, Limits::default()).expect("chain");
    let dev: PrivateKey = DEV_WIF.parse().expect("key");
    let user = PrivateKey::generate(KeyType::K1);
    let newaccount = |name: &str, k: &PrivateKey| {
        let a = Authority::single_key(k.public_key());
        let data = NewAccount { creator: n("eosio"), name: n(name), owner: a.clone(), active: a };
        act("eosio", "newaccount", "eosio", to_bytes(&data))
    };
    push(&chain, vec![newaccount("eosio.token", &dev), newaccount("alice", &user)], &[&dev]);
    let wasm = std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts/token.wasm"))
        .expect("token.wasm");
    let setcode =
        SetCode { account: n("eosio.token"), vmtype: 0, vmversion: 0, code: Bytes(wasm.clone()) };
    let setabi = SetAbi {
        account: n("eosio.token"),
        abi: Bytes(rempart_core::abi::eosio_token_abi().def().to_bin()),
    };
    push(
        &chain,
        vec![
            act("eosio", "setcode", "eosio.token", to_bytes(&setcode)),
            act("eosio", "setabi", "eosio.token", to_bytes(&setabi)),
        ],
        &[&dev],
    );
    let create = json!({"issuer": "eosio.token", "maximum_supply": "1000.0000 SYS"});
    push(&chain, vec![token("create", "eosio.token", create)], &[&dev]);
    let issue = json!({"to": "eosio.token", "quantity": "100.0000 SYS", "memo": ""});
    push(&chain, vec![token("issue", "eosio.token", issue)], &[&dev]);
    let transfer =
        json!({"from": "eosio.token", "to": "alice", "quantity": "7.0000 SYS", "memo": "hi"});
    let transfer_id = push(&chain, vec![token("transfer", "eosio.token", transfer)], &[&dev]);
    let transfer_block = chain.info().head_block_num;

    let ctx = Arc::new(ApiContext::new(store, Limits::default(), None));
    let v = call(
        &ctx,
        "/v1/chain/get_currency_balance",
        json!({"code": "eosio.token", "account": "alice", "symbol": "SYS"}),
    )
    .await
    .expect("balance");
    assert_eq!(v, json!(["7.0000 SYS"]));
    let v = call(
        &ctx,
        "/v1/chain/get_currency_balance",
        json!({"code": "eosio.token", "account": "eosio.token"}),
    )
    .await
    .expect("issuer balance");
    assert_eq!(v, json!(["93.0000 SYS"]));
    let v =
        call(&ctx, "/v1/chain/get_currency_stats", json!({"code": "eosio.token", "symbol": "SYS"}))
            .await
            .expect("stats");
    assert_eq!(v["SYS"]["supply"], "100.0000 SYS");
    assert_eq!(v["SYS"]["max_supply"], "1000.0000 SYS");
    assert_eq!(v["SYS"]["issuer"], "eosio.token");
    let v = call(
        &ctx,
        "/v1/chain/get_table_rows",
        json!({"code": "eosio.token", "scope": "alice", "table": "accounts", "json": true}),
    )
    .await
    .expect("rows");
    assert_eq!(v["rows"], json!([{"balance": "7.0000 SYS"}]));
    let v = call(
        &ctx,
        "/v1/chain/get_table_rows",
        json!({"code": "eosio.token", "scope": "SYS", "table": "stat", "show_payer": true}),
    )
    .await
    .expect("stat rows, hex, scope given as a symbol code");
    assert_eq!(v["rows"][0]["payer"], "eosio.token");
    assert!(v["rows"][0]["data"].as_str().is_some_and(|h| !h.is_empty()));

    let v = call(&ctx, "/v1/chain/get_code_hash", json!({"account_name": "eosio.token"}))
        .await
        .expect("code hash");
    assert_eq!(v["code_hash"], Checksum256::hash(&wasm).to_string());
    let v = call(&ctx, "/v1/chain/get_raw_code_and_abi", json!({"account_name": "eosio.token"}))
        .await
        .expect("code and abi");
    let code = base64::engine::general_purpose::STANDARD
        .decode(v["wasm"].as_str().expect("wasm"))
        .expect("base64");
    assert_eq!(code, wasm, "the code as deployed");

    let b = call(&ctx, "/v1/chain/get_block", json!({"block_num_or_id": transfer_block}))
        .await
        .expect("block");
    let act = &b["transactions"][0]["trx"]["transaction"]["actions"][0];
    assert_eq!(act["data"]["quantity"], "7.0000 SYS", "decoded with the deployed ABI: {act}");
    let t = call(&ctx, "/v1/history/get_transaction", json!({"id": transfer_id}))
        .await
        .expect("history");
    assert_eq!(t["block_num"], transfer_block);
    assert_eq!(t["traces"][0]["act"]["data"]["memo"], "hi");
    drop(chain);
    let _ = std::fs::remove_dir_all(dir);
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eosjs_deploys_and_uses_the_token_and_wharfkit_transfers() {
    if !runner::clients_available("the token client test") {
        return;
    }
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    let dir = tempfile::tempdir().expect("dir");
    let genesis = Genesis::load(&root.join("policies/genesis.json")).expect("genesis");
    let store = Arc::new(Store::open(&dir.path().join("state.redb")).expect("store"));
    let chain = Arc::new(Chain::open(store.clone(), &genesis, Limits::default()).expect("chain"));
    let chain_id = chain.chain_id();
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let stopped = |mut rx: tokio::sync::watch::Receiver<bool>| async move {
        let _ = rx.wait_for(|s| *s).await;
    };

    // The producer: takes pushes over the private protocol into its pending block and seals a
    // block every 100 ms of wall time, on consecutive slots (the chain's time is its slots).
    let plistener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let paddr = plistener.local_addr().expect("addr");
    let heads = HeadNotifier::new(chain.info().head_block_num);
    let service = Arc::new(ProducerService {
        store: store.clone(),
        chain_id,
        sink: chain.clone(),
        heads: heads.clone(),
        max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
    });
    tokio::spawn(peer::serve_producer(plistener, service, stopped(stop_rx.clone())));
    let stop = Arc::new(AtomicBool::new(false));
    let producing = {
        let (chain, stop) = (chain.clone(), stop.clone());
        std::thread::spawn(move || {
            while !stop.load(Ordering::Relaxed) {
                chain.start_block(chain.info().head_block_time.next()).expect("start");
                std::thread::sleep(Duration::from_millis(100));
                let b = chain.finish_block(sign_dev).expect("block");
                heads.notify(b.block_num);
            }
        })
    };

    let ctx = Arc::new(ApiContext::new(
        store.clone(),
        Limits::default(),
        Some(PushClient::new(paddr, chain_id, wire::DEFAULT_MAX_FRAME_BYTES)),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    tokio::spawn(rempart_node::api::serve(listener, ctx, stopped(stop_rx.clone())));

    let wasm = std::fs::read(root.join("node/contracts/token.wasm")).expect("token.wasm");
    let abi = rempart_core::abi::eosio_token_abi().def().to_bin();
    let request = json!({
        "url": url,
        "chain_id": chain_id,
        "eosio_wif": DEV_WIF,
        "wasm_hex": hex::encode(&wasm),
        "abi_hex": hex::encode(&abi),
    });
    let out = tokio::task::spawn_blocking(move || runner::run("api_token.cjs", &request))
        .await
        .expect("the client script");
    let _ = stop_tx.send(true);
    stop.store(true, Ordering::Relaxed);
    producing.join().expect("the producer thread");

    for name in ["eosjs_newaccounts", "eosjs_setcode_setabi", "eosjs_create", "eosjs_issue"] {
        let r = runner::step(&out, name);
        assert_eq!(r["processed"]["receipt"]["status"], "executed", "{name}: {r}");
    }
    let transfer = runner::step(&out, "eosjs_transfer");
    let receivers: Vec<&str> = transfer["processed"]["action_traces"]
        .as_array()
        .expect("traces")
        .iter()
        .filter_map(|t| t["receiver"].as_str())
        .collect();
    assert_eq!(receivers, ["eosio.token", "alice"], "the recipient is notified: {transfer}");
    assert_eq!(runner::step(&out, "eosjs_balance_alice"), &json!(["10.0000 SYS"]));
    assert_eq!(runner::step(&out, "eosjs_rows_alice")["rows"], json!([{"balance": "10.0000 SYS"}]));
    let w = runner::step(&out, "wharfkit_transfer");
    assert_eq!(w["processed"]["receipt"]["status"], "executed", "{w}");
    assert_eq!(w["processed"]["action_traces"][0]["act"]["data"]["memo"], "wharfkit", "{w}");
    assert_eq!(runner::step(&out, "wharfkit_balance_bob"), &json!(["3.0000 SYS"]));
    assert_eq!(runner::step(&out, "wharfkit_rows_bob")["rows"], json!([{"balance": "3.0000 SYS"}]));
    assert_eq!(
        runner::step(&out, "eosjs_balances_after"),
        &json!({"alice": ["7.0000 SYS"], "bob": ["3.0000 SYS"], "issuer": ["90.0000 SYS"]})
    );
}
