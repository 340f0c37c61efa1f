//! An api node fed a forged block over the private protocol refuses it: its chain verifies the
//! producer's signature against the schedule, the follower stops, says why, and the api node's
//! state stays at the last good block. A well-signed chain of blocks from the same producer
//! stand-in is followed to its head.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use rempart_core::block::SignedBlock;
use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::{from_bytes, to_bytes};
use rempart_node::api::ApiError;
use rempart_node::chain::Chain;
use rempart_node::config::Limits;
use rempart_node::peer::{
    self, FollowConfig, FollowStatus, FollowerState, HeadNotifier, PeerError, ProducerService,
    TransactionSink, wire,
};
use rempart_node::store::{Head, Store, StoreError};
use serde_json::Value;
use tokio::net::TcpListener;

mod support;

use support::genesis;

const EOSIO_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

struct NoPush;

impl TransactionSink for NoPush {
    fn push(&self, _: rempart_core::transaction::PackedTransaction) -> Result<Value, ApiError> {
        Err(ApiError::unavailable("not a producer"))
    }
}

fn open_chain(dir: &Path) -> Arc<Chain> {
    std::fs::create_dir_all(dir).expect("dir");
    let store = Arc::new(Store::open(&dir.join("state.redb")).expect("store"));
    Arc::new(Chain::open(store, &genesis(), Limits::default()).expect("chain"))
}

/// A store holding the genesis block and then exactly `blocks`, as a producer would serve them.
fn serving_store(dir: &Path, blocks: &[SignedBlock]) -> Arc<Store> {
    // The chain installs the genesis block 1 every node derives; then it is closed.
    let chain = open_chain(dir);
    let store = chain.store().clone();
    drop(chain);
    for b in blocks {
        let (num, id) = (b.block_num(), b.id());
        store
            .write(|w| -> Result<(), StoreError> {
                w.append_block(num, &id, &to_bytes(b))?;
                w.set_head(&Head {
                    block_num: num,
                    block_id: id,
                    timestamp: b.signed_header.header.timestamp,
                    producer: b.signed_header.header.producer,
                    lib_num: num,
                    lib_id: id,
                    schedule_version: 0,
                })
            })
            .expect("append");
    }
    store
}

async fn follow_from(
    store: Arc<Store>,
    replica: Arc<Chain>,
) -> (Arc<FollowerState>, Result<(), PeerError>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let head = store.read().expect("read").head().expect("head").map_or(0, |h| h.block_num);
    let service = Arc::new(ProducerService {
        store,
        chain_id: replica.chain_id(),
        sink: Arc::new(NoPush),
        heads: HeadNotifier::new(head),
        max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
    });
    let (stop_tx, mut stop_rx) = tokio::sync::watch::channel(false);
    let mut rx = stop_rx.clone();
    tokio::spawn(peer::serve_producer(listener, service, async move {
        let _ = rx.wait_for(|s| *s).await;
    }));
    let state = Arc::new(FollowerState::default());
    let task = tokio::spawn(peer::follow(
        FollowConfig::new(addr, replica.chain_id()),
        replica,
        state.clone(),
        async move {
            let _ = stop_rx.wait_for(|s| *s).await;
        },
    ));
    // Either the follower stops by itself (a bad block) or it reaches the served head.
    let mut w = state.watch();
    let reached = tokio::time::timeout(
        Duration::from_secs(20),
        w.wait_for(|s| {
            matches!(s, FollowStatus::Stopped { .. })
                || matches!(s, FollowStatus::Following { head: h } if *h == head)
        }),
    )
    .await;
    assert!(reached.is_ok(), "follower neither stopped nor reached {head}: {:?}", state.status());
    let _ = stop_tx.send(true);
    let result = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("follower ends")
        .expect("join");
    (state, result)
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_forged_block_is_refused_and_the_follower_says_why() {
    let dir = std::env::temp_dir().join(format!("rempart-peer-forged-{}", std::process::id()));
    let _ = std::fs::remove_dir_all(&dir);
    // The real producer: three blocks signed with the scheduled key.
    let producer = open_chain(&dir.join("producer"));
    let key: PrivateKey = EOSIO_WIF.parse().expect("key");
    for _ in 0..3 {
        let slot = producer.info().head_block_time.next();
        producer.produce_block(slot, |req| Ok(key.sign(&req.digest()))).expect("block");
    }
    let snap = producer.store().read().expect("read");
    let good: Vec<SignedBlock> = (2..=4)
        .map(|n| from_bytes(&snap.block(n).expect("read").expect("block")).expect("decode"))
        .collect();
    drop(snap);

    // Served as produced: the api node follows to the head.
    let replica = open_chain(&dir.join("api-good"));
    let store = serving_store(&dir.join("serve-good"), &good);
    let (state, result) = follow_from(store, replica.clone()).await;
    result.expect("clean stop");
    assert_eq!(state.status(), FollowStatus::Following { head: 4 });
    assert_eq!(replica.info().head_block_id, good[2].id());

    // Block 3 re-signed by another key: refused, following stops at block 2.
    let mut forged = good.clone();
    let intruder = PrivateKey::generate(KeyType::K1);
    forged[1].signed_header.producer_signature = intruder.sign(&rempart_core::Checksum256([7; 32]));
    let replica = open_chain(&dir.join("api-forged"));
    let store = serving_store(&dir.join("serve-forged"), &forged);
    let (state, result) = follow_from(store, replica.clone()).await;
    let err = result.expect_err("forged block");
    assert!(matches!(err, PeerError::BadBlock { block_num: 3, .. }), "{err}");
    match state.status() {
        FollowStatus::Stopped { reason } => {
            assert!(reason.contains("block 3"), "{reason}");
            assert!(reason.contains("signature"), "the reason names the signature: {reason}");
        }
        other => panic!("expected Stopped, got {other:?}"),
    }
    assert_eq!(replica.info().head_block_num, 2, "nothing past the last good block");
    assert_eq!(replica.info().head_block_id, good[0].id());
    drop((producer, replica));
    let _ = std::fs::remove_dir_all(dir);
}
