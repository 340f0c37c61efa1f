//! Bad transactions pushed through the chain API reach the producer's chain (or are stopped
//! by the api node's own decoding first) and come back as nodeos-shaped errors, each leaving
//! the state as it was: expired, expiring too far ahead, bad TaPoS, duplicate, missing, extra
//! and wrong-chain signatures, malformed `packed_trx`, a zlib bomb and an unknown account.

use std::path::Path;
use std::sync::Arc;

use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::transaction::{
    Action, Compression, PackedTransaction, PermissionLevel, SignedTransaction, Transaction,
    TransactionHeader,
};
use rempart_core::{Bytes, Checksum256, Name, TimePointSec};
use rempart_node::api::{ApiContext, ApiError, route};
use rempart_node::chain::Chain;
use rempart_node::config::Limits;
use rempart_node::genesis::Genesis;
use rempart_node::peer::{self, HeadNotifier, ProducerService, PushClient, wire};
use rempart_node::store::Store;
use serde_json::{Value, json};
use tokio::net::TcpListener;

const EOSIO_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

fn dev() -> PrivateKey {
    EOSIO_WIF.parse().expect("key")
}

fn newaccount(creator: &str, name: &str) -> Action {
    let key = dev().public_key().to_string();
    let auth =
        json!({"threshold": 1, "keys": [{"key": key, "weight": 1}], "accounts": [], "waits": []});
    let data = rempart_core::abi::eosio_system_abi()
        .action_json_to_bin(
            Name::from_const("newaccount"),
            &json!({"creator": creator, "name": name, "owner": auth, "active": auth}),
        )
        .expect("data");
    Action {
        account: Name::from_const("eosio"),
        name: Name::from_const("newaccount"),
        authorization: vec![PermissionLevel {
            actor: creator.parse().expect("name"),
            permission: Name::from_const("active"),
        }],
        data: Bytes(data),
    }
}

struct Node {
    chain: Arc<Chain>,
    ctx: Arc<ApiContext>,
    stop: tokio::sync::watch::Sender<bool>,
}

async fn node(dir: &Path) -> Node {
    std::fs::create_dir_all(dir).expect("dir");
    let genesis =
        Genesis::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"))
            .expect("genesis");
    let store = Arc::new(Store::open(&dir.join("state.redb")).expect("store"));
    let chain = Arc::new(Chain::open(store, &genesis, Limits::default()).expect("chain"));
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let service = Arc::new(ProducerService {
        store: chain.store().clone(),
        chain_id: chain.chain_id(),
        sink: chain.clone(),
        heads: HeadNotifier::new(chain.info().head_block_num),
        max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
    });
    let (stop, mut rx) = tokio::sync::watch::channel(false);
    tokio::spawn(peer::serve_producer(listener, service, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let ctx = Arc::new(ApiContext::new(
        chain.store().clone(),
        Limits::default(),
        Some(PushClient::new(addr, chain.chain_id(), wire::DEFAULT_MAX_FRAME_BYTES)),
    ));
    Node { chain, ctx, stop }
}

impl Node {
    /// A transaction on the head (TaPoS), expiring `expires_in` seconds after the head's time.
    fn trx(&self, actions: Vec<Action>, expires_in: i64) -> Transaction {
        let info = self.chain.info();
        let head_sec = info.head_block_time.to_time_point().0 / 1_000_000;
        let mut header = TransactionHeader {
            expiration: TimePointSec(u32::try_from(head_sec + expires_in).expect("expiration")),
            ..Default::default()
        };
        header.set_reference_block(&info.head_block_id);
        Transaction {
            header,
            context_free_actions: vec![],
            actions,
            transaction_extensions: vec![],
        }
    }

    fn sign(&self, trx: Transaction, keys: &[&PrivateKey], chain_id: &Checksum256) -> Value {
        let mut s = SignedTransaction::new(trx);
        for k in keys {
            s.sign(k, chain_id);
        }
        serde_json::to_value(PackedTransaction::from_signed(&s, Compression::None)).expect("json")
    }

    async fn push(&self, body: Value) -> Result<Value, ApiError> {
        route(&self.ctx, "/v1/chain/push_transaction", body).await
    }

    async fn account_exists(&self, name: &str) -> bool {
        route(&self.ctx, "/v1/chain/get_account", json!({"account_name": name})).await.is_ok()
    }
}

fn assert_nodeos(e: &ApiError, code: u64, what: &str) {
    let body = e.body();
    assert_eq!(body["error"]["code"], code, "{what}: {body}");
    assert!(body["error"]["name"].as_str().is_some_and(|n| !n.is_empty()), "{what}: {body}");
    assert!(
        body["error"]["details"][0]["message"].as_str().is_some_and(|m| !m.is_empty()),
        "{what}: {body}"
    );
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn bad_transactions_are_refused_in_nodeos_shape_and_change_nothing() {
    let dir = std::env::temp_dir().join(format!("rempart-api-push-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    let n = node(&dir).await;
    let key = dev();
    let chain_id = n.chain.chain_id();
    let slot = n.chain.info().head_block_time.next();
    n.chain.start_block(slot).expect("pending block");

    let good = n.sign(n.trx(vec![newaccount("eosio", "alice")], 60), &[&key], &chain_id);
    let v = n.push(good.clone()).await.expect("good transaction");
    assert_eq!(v["processed"]["receipt"]["status"], "executed");
    let e = n.push(good).await.expect_err("duplicate");
    assert_nodeos(&e, 3_040_008, "duplicate");

    let cases: Vec<(&str, Value, u64)> = vec![
        (
            "expired",
            n.sign(n.trx(vec![newaccount("eosio", "expired")], -1), &[&key], &chain_id),
            3_040_005,
        ),
        (
            "too far ahead",
            n.sign(n.trx(vec![newaccount("eosio", "toofar")], 7200), &[&key], &chain_id),
            3_040_006,
        ),
        (
            "bad TaPoS",
            {
                let mut t = n.trx(vec![newaccount("eosio", "tapos")], 60);
                t.header.ref_block_prefix ^= 1;
                n.sign(t, &[&key], &chain_id)
            },
            3_040_007,
        ),
        (
            "no signature",
            n.sign(n.trx(vec![newaccount("eosio", "nosig")], 60), &[], &chain_id),
            3_090_003,
        ),
        (
            "an extra signature",
            n.sign(
                n.trx(vec![newaccount("eosio", "extrasig")], 60),
                &[&key, &PrivateKey::generate(KeyType::K1)],
                &chain_id,
            ),
            3_090_002,
        ),
        (
            "signed for another chain",
            n.sign(
                n.trx(vec![newaccount("eosio", "otherchain")], 60),
                &[&key],
                &Checksum256([1; 32]),
            ),
            3_090_003,
        ),
        (
            "unknown account",
            n.sign(n.trx(vec![newaccount("ghost", "haunted")], 60), &[&key], &chain_id),
            // nodeos: "action's authorizing actor 'ghost' does not exist".
            3_050_000,
        ),
        (
            "malformed packed_trx",
            json!({"signatures": [], "compression": "none", "packed_trx": "0011223344"}),
            3_010_010,
        ),
        (
            "zlib bomb",
            {
                let mut a = newaccount("eosio", "bomb");
                a.data = Bytes(vec![0; 4 << 20]);
                let s = SignedTransaction::new(n.trx(vec![a], 60));
                serde_json::to_value(PackedTransaction::from_signed(&s, Compression::Zlib))
                    .expect("json")
            },
            3_040_001,
        ),
    ];
    for (what, body, code) in cases {
        let e = n.push(body).await.expect_err(what);
        assert_nodeos(&e, code, what);
    }
    let summary = n.chain.finish_block(|req| Ok(key.sign(&req.digest()))).expect("block");
    assert_eq!(summary.transactions, 1, "only the good transaction is in the block");
    assert!(n.account_exists("alice").await);
    for name in ["expired", "toofar", "tapos", "nosig", "extrasig", "otherchain", "haunted", "bomb"]
    {
        assert!(!n.account_exists(name).await, "{name} must not exist");
    }
    let _ = n.stop.send(true);
    drop(n);
    let _ = std::fs::remove_dir_all(dir);
}
