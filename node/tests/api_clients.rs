//! The chain API as the real clients see it: eosjs 22.1.0 (`JsonRpc` reads, `get_required_keys`
//! and a whole `Api.transact`) and @wharfkit/antelope's `APIClient` plus a @wharfkit/session
//! transaction, run under node against a running API server. Pushes travel the real private
//! protocol to a producer stand-in that checks every signature against the chain id, so the
//! clients' packing, compression and signing are checked end to end.
//!
//! This test must never pass without having run the clients: when node or the npm packages are
//! missing it fails under `CI=true` and says what to install; elsewhere it says why it returned.

use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rempart_core::block::{BlockHeader, SignedBlock, SignedBlockHeader};
use rempart_core::key::{PrivateKey, PublicKey};
use rempart_core::transaction::{PackedTransaction, UnpackLimits};
use rempart_core::{Asset, BlockTimestamp, Checksum256, Name, TimePoint, to_bytes};
use rempart_node::api::{ApiContext, ApiError};
use rempart_node::config::Limits;
use rempart_node::peer::{HeadNotifier, ProducerService, PushClient, TransactionSink, wire};
use rempart_node::store::{Head, Store, StoreError, key};
use serde_json::{Value, json};
use tokio::net::TcpListener;

#[path = "clients/runner.rs"]
mod runner;

const WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

fn repo_root() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).parent().expect("node/ sits in the repository").into()
}

/// The producer stand-in: accepts a transaction whose signatures recover the dev key on this
/// chain, and answers with a trace in nodeos's shape.
struct CheckingSink {
    chain_id: Checksum256,
    key: PublicKey,
    seen: Mutex<Vec<Value>>,
}

impl TransactionSink for CheckingSink {
    fn push(&self, trx: PackedTransaction) -> Result<Value, ApiError> {
        let limits = UnpackLimits::default();
        let signed = trx.to_signed(&limits).map_err(|e| ApiError::internal(e.to_string()))?;
        let keys = signed
            .recover_keys(&self.chain_id)
            .map_err(|e| ApiError::internal(format!("signature: {e}")))?;
        if keys != vec![self.key] {
            return Err(ApiError::chain(
                3_090_003,
                "unsatisfied_authorization",
                "Provided keys, permissions, and delays do not satisfy declared authorizations",
                format!("signed by {keys:?}"),
            ));
        }
        let id = signed.transaction.id();
        let act = &signed.transaction.actions[0];
        let trace = json!({
            "id": id,
            "block_num": 6,
            "block_time": "2024-01-01T00:00:03.500",
            "receipt": {"status": "executed", "cpu_usage_us": 100, "net_usage_words": 16},
            "elapsed": 100,
            "net_usage": 128,
            "scheduled": false,
            "action_traces": [{
                "action_ordinal": 1,
                "receipt": {"receiver": "eosio"},
                "receiver": "eosio",
                "act": {"account": act.account, "name": act.name, "authorization": act.authorization,
                        "data": hex::encode(&act.data.0)},
                "console": "",
                "return_value_hex_data": "",
            }],
            "except": null,
        });
        self.seen.lock().expect("lock").push(json!({
            "compression": trx.compression,
            "action": act.name,
        }));
        Ok(trace)
    }
}

/// A store on the shipped genesis with the eosio ABI, token rows for alice and five blocks.
fn build_store(dir: &Path) -> (Arc<Store>, Checksum256) {
    let store = Store::open(&dir.join("state.redb")).expect("open");
    let genesis = rempart_node::genesis::Genesis::load(&repo_root().join("policies/genesis.json"))
        .expect("genesis");
    let abi = rempart_core::abi::eosio_system_abi().def().to_bin();
    store.write(|w| genesis.install(w, Some(&abi))).expect("install");
    let key: PrivateKey = WIF.parse().expect("key");
    let token = Name::from_const("eosio.token");
    let alice = Name::from_const("alice");
    store
        .write(|w| -> Result<(), StoreError> {
            for n in [token, alice] {
                let rec = rempart_node::account::AccountRecord {
                    name: n,
                    creation_date: BlockTimestamp(0),
                    privileged: false,
                    last_code_update: BlockTimestamp(0),
                };
                w.put(&key::account(n), &to_bytes(&rec))?;
            }
            w.put(&key::abi(token), &rempart_core::abi::eosio_token_abi().def().to_bin())?;
            let a: Asset = "12.5000 SYS".parse().expect("asset");
            w.put(
                &key::row(token, alice, Name::from_const("accounts"), a.symbol.code().value()),
                &rempart_node::vm::encode_row(alice, &to_bytes(&a)),
            )?;
            let mut previous = Checksum256::ZERO;
            let mut ts = BlockTimestamp::from_time_point(TimePoint::from_millis(1_704_067_200_500));
            for _ in 0..5 {
                let header = BlockHeader {
                    timestamp: ts,
                    producer: Name::from_const("eosio"),
                    previous,
                    ..Default::default()
                };
                let sig = key.sign(&header.signing_digest(&Checksum256::ZERO, &Checksum256::ZERO));
                let block = SignedBlock {
                    signed_header: SignedBlockHeader { header, producer_signature: sig },
                    transactions: Vec::new(),
                    block_extensions: Vec::new(),
                };
                let (num, id) = (block.block_num(), block.id());
                w.append_block(num, &id, &to_bytes(&block))?;
                w.set_head(&Head {
                    block_num: num,
                    block_id: id,
                    timestamp: ts,
                    producer: Name::from_const("eosio"),
                    lib_num: num,
                    lib_id: id,
                    schedule_version: 0,
                })?;
                previous = id;
                ts = ts.next();
            }
            Ok(())
        })
        .expect("blocks");
    (Arc::new(store), genesis.chain_id())
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn eosjs_and_wharfkit_read_and_transact_through_the_api() {
    if !runner::clients_available("the real-client API test") {
        return;
    }
    let dir = std::env::temp_dir().join(format!("rempart-api-clients-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (store, chain_id) = build_store(&dir);
    let key: PrivateKey = WIF.parse().expect("key");

    let sink = Arc::new(CheckingSink { chain_id, key: key.public_key(), seen: Mutex::new(vec![]) });
    let plistener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let paddr = plistener.local_addr().expect("addr");
    let service = Arc::new(ProducerService {
        store: store.clone(),
        chain_id,
        sink: sink.clone(),
        heads: HeadNotifier::new(5),
        max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
    });
    let (stop_tx, stop_rx) = tokio::sync::watch::channel(false);
    let mut rx1 = stop_rx.clone();
    tokio::spawn(rempart_node::peer::serve_producer(plistener, service, async move {
        let _ = rx1.wait_for(|s| *s).await;
    }));
    let ctx = Arc::new(ApiContext::new(
        store.clone(),
        Limits::default(),
        Some(PushClient::new(paddr, chain_id, wire::DEFAULT_MAX_FRAME_BYTES)),
    ));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let url = format!("http://{}", listener.local_addr().expect("addr"));
    let mut rx2 = stop_rx.clone();
    tokio::spawn(rempart_node::api::serve(listener, ctx, async move {
        let _ = rx2.wait_for(|s| *s).await;
    }));

    let request = json!({"url": url, "wif": WIF, "chain_id": chain_id});
    let out = tokio::task::spawn_blocking(move || runner::run("api_clients.cjs", &request))
        .await
        .expect("join");

    let info = runner::step(&out, "eosjs_get_info");
    assert_eq!(info["head_block_num"], 5);
    assert_eq!(info["chain_id"], chain_id.to_string());
    assert_eq!(runner::step(&out, "eosjs_get_block")["block_num"], 2);
    assert_eq!(runner::step(&out, "eosjs_get_block_info")["block_num"], 2);
    assert_eq!(runner::step(&out, "eosjs_get_block_header_state")["block_num"], 2);
    assert_eq!(runner::step(&out, "eosjs_get_abi")["account_name"], "eosio");
    assert_eq!(runner::step(&out, "eosjs_get_raw_abi")["accountName"], "eosio");
    assert_eq!(
        runner::step(&out, "eosjs_get_account")["permissions"].as_array().map(Vec::len),
        Some(2)
    );
    assert_eq!(runner::step(&out, "eosjs_get_table_rows")["rows"][0]["balance"], "12.5000 SYS");
    assert_eq!(runner::step(&out, "eosjs_get_currency_balance"), &json!(["12.5000 SYS"]));
    let required = runner::step(&out, "eosjs_get_required_keys");
    assert_eq!(required.as_array().map(Vec::len), Some(1), "{required}");
    let tx = runner::step(&out, "eosjs_transact");
    assert_eq!(tx["processed"]["receipt"]["status"], "executed");
    assert_eq!(tx["transaction_id"], tx["processed"]["id"]);

    let winfo = runner::step(&out, "wharfkit_get_info");
    assert_eq!(winfo["head_block_num"], 5);
    assert_eq!(runner::step(&out, "wharfkit_get_block")["block_num"], 2);
    assert_eq!(runner::step(&out, "wharfkit_get_block_info")["block_num"], 2);
    assert_eq!(runner::step(&out, "wharfkit_get_account")["account_name"], "eosio");
    assert_eq!(runner::step(&out, "wharfkit_get_raw_abi")["account_name"], "eosio");
    assert_eq!(
        runner::step(&out, "wharfkit_get_table_rows")["rows"].as_array().map(Vec::len),
        Some(1)
    );
    let session = runner::step(&out, "wharfkit_session_transact");
    assert_eq!(session["processed"]["receipt"]["status"], "executed", "{session}");

    let seen = sink.seen.lock().expect("lock").clone();
    assert_eq!(seen.len(), 2, "one push from each client: {seen:?}");
    assert_eq!(seen[1]["compression"], "zlib", "wharfkit sends zlib by default");
    let _ = stop_tx.send(true);
    let _ = std::fs::remove_dir_all(dir);
}

/// One raw HTTP/1.1 exchange: the status and the JSON body.
async fn http(addr: std::net::SocketAddr, request: String) -> (u16, Value) {
    use tokio::io::{AsyncReadExt, AsyncWriteExt};
    let mut s = tokio::net::TcpStream::connect(addr).await.expect("connect");
    s.write_all(request.as_bytes()).await.expect("write");
    let mut buf = Vec::new();
    s.read_to_end(&mut buf).await.expect("read");
    let text = String::from_utf8_lossy(&buf).to_string();
    let status: u16 = text[9..12].parse().expect("status");
    let body = text.split("\r\n\r\n").nth(1).unwrap_or("");
    (status, serde_json::from_str(body).unwrap_or(Value::Null))
}

#[tokio::test]
async fn http_bodies_are_json_whatever_the_content_type_and_errors_are_nodeos_shaped() {
    let dir = std::env::temp_dir().join(format!("rempart-api-http-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    std::fs::create_dir_all(&dir).expect("temp dir");
    let (store, _) = build_store(&dir);
    let limits = Limits { max_http_body_bytes: 4096, ..Limits::default() };
    let ctx = Arc::new(ApiContext::new(store, limits, None));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    tokio::spawn(rempart_node::api::serve(listener, ctx, async move {
        let _ = stop_rx.wait_for(|s| *s).await;
    }));
    let post = |path: &str, ctype: &str, body: &str| {
        format!(
            "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: {ctype}\r\nContent-Length: {}\r\n\
             Connection: close\r\n\r\n{body}",
            body.len()
        )
    };
    // eosjs: text/plain.
    let (s, v) = http(
        addr,
        post("/v1/chain/get_account", "text/plain;charset=UTF-8", r#"{"account_name":"eosio"}"#),
    )
    .await;
    assert_eq!((s, v["account_name"].clone()), (200, json!("eosio")));
    // wharfkit: GET without a body.
    let (s, v) = http(
        addr,
        "GET /v1/chain/get_info HTTP/1.1\r\nHost: x\r\nConnection: close\r\n\r\n".into(),
    )
    .await;
    assert_eq!((s, v["head_block_num"].clone()), (200, json!(5)));
    assert!(!v["head_block_time"].as_str().expect("time").ends_with('Z'));
    let (s, v) = http(addr, post("/v1/chain/get_producers", "application/json", "")).await;
    assert_eq!((s, v["rows"][0]["owner"].clone()), (200, json!("eosio")));
    let (s, v) = http(addr, post("/v1/chain/nope", "application/json", "{}")).await;
    assert_eq!(s, 404);
    assert_eq!(v["code"], 404);
    assert_eq!(v["error"]["details"][0]["message"], "Unknown Endpoint /v1/chain/nope");
    let (s, v) = http(addr, post("/v1/chain/get_info", "application/json", "{nope")).await;
    assert_eq!((s, v["error"]["name"].clone()), (400, json!("invalid_http_request")));
    let big = format!(r#"{{"account_name":"{}"}}"#, "a".repeat(5000));
    let (s, _) = http(addr, post("/v1/chain/get_account", "application/json", &big)).await;
    assert_eq!(s, 413);
    let (s, v) =
        http(addr, post("/v1/chain/get_account", "application/json", r#"{"account_name":"zed"}"#))
            .await;
    assert_eq!((s, v["error"]["code"].clone()), (500, json!(3_060_002)));
    assert_eq!(v["error"]["details"][0]["message"], "unknown account: zed");
    let _ = stop_tx.send(true);
    let _ = std::fs::remove_dir_all(dir);
}
