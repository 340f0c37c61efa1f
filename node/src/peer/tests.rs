use std::time::Duration;

use rempart_core::to_bytes;
use rempart_core::transaction::Compression;
use serde_json::json;

use super::*;
use crate::api::fixture::{Fixture, newaccount, signed};

#[test]
fn frames_round_trip_and_refuse_bad_versions_tags_and_sizes() {
    let msgs = vec![
        FromProducer::Welcome { chain_id: Checksum256([1; 32]), head: 7 },
        FromProducer::Block { block: Bytes(vec![1, 2, 3]) },
        FromProducer::Pushed { id: 9, trace: "{}".into() },
        FromProducer::Refused {
            id: 9,
            error: WireError {
                status: 500,
                code: 3_040_008,
                name: "tx_duplicate".into(),
                what: "Duplicate transaction".into(),
                detail: "dup".into(),
            },
        },
        FromProducer::Heartbeat { head: 3 },
        FromProducer::Fatal { reason: "bye".into() },
    ];
    for m in msgs {
        let frame = wire::encode(&m);
        assert_eq!(wire::decode_payload::<FromProducer>(&frame[4..]).expect("decode"), m);
    }
    let m = ToProducer::Subscribe { from: 5 };
    let frame = wire::encode(&m);
    assert_eq!(wire::decode_payload::<ToProducer>(&frame[4..]).expect("decode"), m);
    // Wrong version, unknown tag, trailing bytes.
    let mut bad = frame[4..].to_vec();
    bad[0] = 9;
    assert!(
        matches!(wire::decode_payload::<ToProducer>(&bad), Err(PeerError::Protocol(m)) if m.contains("version 9"))
    );
    assert!(wire::decode_payload::<ToProducer>(&[wire::PEER_PROTOCOL_VERSION, 3]).is_err());
    let mut trailing = frame[4..].to_vec();
    trailing.push(0);
    assert!(wire::decode_payload::<ToProducer>(&trailing).is_err());
}

#[tokio::test]
async fn a_frame_over_the_limit_is_refused_from_its_header() {
    let (mut a, mut b) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut a, &u32::MAX.to_le_bytes()).await.expect("write");
    let e = wire::read::<FromProducer, _>(&mut b, 1024).await.expect_err("too big");
    assert!(e.to_string().contains("over the 1024-byte limit"), "{e}");
    // A stream that ends inside a frame is an error, between frames a clean end.
    let (mut a, mut b) = tokio::io::duplex(64);
    tokio::io::AsyncWriteExt::write_all(&mut a, &[10, 0, 0, 0, 1]).await.expect("write");
    drop(a);
    assert!(wire::read::<FromProducer, _>(&mut b, 1024).await.is_err());
    let (a, mut b) = tokio::io::duplex(64);
    drop(a);
    assert!(wire::read::<FromProducer, _>(&mut b, 1024).await.expect("eof").is_none());
}

/// An api node's chain stand-in: stores what it is given, refusing block `reject`.
struct StoreSink {
    store: Arc<Store>,
    reject: Option<u32>,
}

impl BlockSink for StoreSink {
    fn next_block_num(&self) -> Result<u32, String> {
        let snap = self.store.read().map_err(|e| e.to_string())?;
        Ok(snap.head().map_err(|e| e.to_string())?.map_or(1, |h| h.block_num + 1))
    }
    fn apply_block(&self, block: &SignedBlock) -> Result<(), String> {
        if Some(block.block_num()) == self.reject {
            return Err("block signature does not recover the scheduled key".into());
        }
        Fixture::store_block(&self.store, block).map_err(|e| e.to_string())
    }
}

/// A producer's chain stand-in: accepts `newaccount` once per transaction id.
struct EchoSink {
    seen: Mutex<std::collections::HashSet<String>>,
}

impl TransactionSink for EchoSink {
    fn push(&self, trx: PackedTransaction) -> Result<Value, ApiError> {
        let t = trx
            .unpack_transaction(&Default::default())
            .map_err(|e| ApiError::internal(e.to_string()))?;
        let id = t.id().to_string();
        let fresh = self.seen.lock().expect("lock").insert(id.clone());
        if !fresh {
            return Err(ApiError::chain(
                3_040_008,
                "tx_duplicate",
                "Duplicate transaction",
                format!("duplicate transaction {id}"),
            ));
        }
        Ok(
            json!({"id": id, "receipt": {"status": "executed"}, "action_traces": [], "except": null}),
        )
    }
}

struct Producer {
    fixture: Fixture,
    heads: HeadNotifier,
    addr: SocketAddr,
    stop: Option<tokio::sync::oneshot::Sender<()>>,
}

impl Drop for Producer {
    fn drop(&mut self) {
        if let Some(s) = self.stop.take() {
            let _ = s.send(());
        }
    }
}

async fn producer(name: &str, blocks: usize, listener: Option<TcpListener>) -> Producer {
    let fixture = Fixture::new(name);
    for _ in 0..blocks {
        fixture.push_block(&[]);
    }
    let listener = match listener {
        Some(l) => l,
        None => TcpListener::bind("127.0.0.1:0").await.expect("bind"),
    };
    let addr = listener.local_addr().expect("addr");
    let heads = HeadNotifier::new(fixture.head().map_or(0, |h| h.block_num));
    let service = Arc::new(ProducerService {
        store: fixture.store.clone(),
        chain_id: fixture.chain_id,
        sink: Arc::new(EchoSink { seen: Mutex::new(Default::default()) }),
        heads: heads.clone(),
        max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_producer(listener, service, async move {
        let _ = rx.await;
    }));
    Producer { fixture, heads, addr, stop: Some(tx) }
}

async fn wait_for(state: &FollowerState, what: &str, pred: impl Fn(&FollowStatus) -> bool) {
    let mut rx = state.watch();
    tokio::time::timeout(Duration::from_secs(20), rx.wait_for(|s| pred(s)))
        .await
        .unwrap_or_else(|_| panic!("timed out waiting for {what}; status {:?}", state.status()))
        .expect("state alive");
}

fn spawn_follower(
    cfg: FollowConfig,
    sink: Arc<dyn BlockSink>,
) -> (
    Arc<FollowerState>,
    tokio::task::JoinHandle<Result<(), PeerError>>,
    tokio::sync::oneshot::Sender<()>,
) {
    let state = Arc::new(FollowerState::default());
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    let s = state.clone();
    let task = tokio::spawn(follow(cfg, sink, s, async move {
        let _ = rx.await;
    }));
    (state, task, tx)
}

#[tokio::test]
async fn a_follower_gets_stored_blocks_then_new_ones_as_they_commit() {
    let p = producer("follow-p", 3, None).await;
    let replica = Fixture::new("follow-r");
    let sink = Arc::new(StoreSink { store: replica.store.clone(), reject: None });
    let (state, task, stop) = spawn_follower(FollowConfig::new(p.addr, p.fixture.chain_id), sink);
    wait_for(&state, "head 3", |s| *s == FollowStatus::Following { head: 3 }).await;
    let b4 = p.fixture.push_block(&[signed(
        &p.fixture.chain_id,
        vec![newaccount("alice")],
        Compression::None,
    )]);
    p.heads.notify(4);
    wait_for(&state, "head 4", |s| *s == FollowStatus::Following { head: 4 }).await;
    let got = replica.store.read().expect("read").block(4).expect("block").expect("stored");
    assert_eq!(got, to_bytes(&b4), "the replica stores the producer's block byte for byte");
    stop.send(()).expect("stop");
    task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_follower_resumes_from_its_own_head_after_reconnecting() {
    // The producer is not listening yet: the follower retries with backoff.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let replica = Fixture::new("resume-r");
    let p0 = Fixture::new("resume-seed");
    // The replica already holds blocks 1..=2 of the same chain (same genesis, same fixture key).
    let seed: Vec<_> = (0..2).map(|_| p0.push_block(&[])).collect();
    for b in &seed {
        Fixture::store_block(&replica.store, b).expect("seed");
    }
    let sink = Arc::new(StoreSink { store: replica.store.clone(), reject: None });
    let (state, task, stop) = spawn_follower(FollowConfig::new(addr, replica.chain_id), sink);
    wait_for(&state, "a failed connection", |s| {
        matches!(s, FollowStatus::Connecting { last_error: Some(_) })
    })
    .await;
    let listener = TcpListener::bind(addr).await.expect("rebind the same port");
    let p = producer("resume-p", 0, Some(listener)).await;
    for b in &seed {
        Fixture::store_block(&p.fixture.store, b).expect("same history");
    }
    let b3 = p.fixture.push_block(&[]);
    p.heads.notify(3);
    wait_for(&state, "head 3", |s| *s == FollowStatus::Following { head: 3 }).await;
    assert_eq!(
        replica.store.read().expect("read").block_id(3).expect("id"),
        Some(b3.id()),
        "resumed at 3 without re-applying 1 and 2"
    );
    stop.send(()).expect("stop");
    task.await.expect("join").expect("clean stop");
}

#[tokio::test]
async fn a_rejected_block_stops_the_follower_and_says_why() {
    let p = producer("reject-p", 3, None).await;
    let replica = Fixture::new("reject-r");
    let sink = Arc::new(StoreSink { store: replica.store.clone(), reject: Some(2) });
    let (state, task, _stop) = spawn_follower(FollowConfig::new(p.addr, p.fixture.chain_id), sink);
    let err = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("stops")
        .expect("join")
        .expect_err("bad block");
    assert!(matches!(err, PeerError::BadBlock { block_num: 2, .. }), "{err}");
    match state.status() {
        FollowStatus::Stopped { reason } => assert!(reason.contains("scheduled key"), "{reason}"),
        other => panic!("expected Stopped, got {other:?}"),
    }
    assert_eq!(replica.head().map(|h| h.block_num), Some(1), "nothing past the bad block");
}

#[tokio::test]
async fn another_chain_is_refused_at_the_handshake() {
    let p = producer("chain-p", 1, None).await;
    let replica = Fixture::new("chain-r");
    let sink = Arc::new(StoreSink { store: replica.store.clone(), reject: None });
    let (state, task, _stop) =
        spawn_follower(FollowConfig::new(p.addr, Checksum256([9; 32])), sink);
    let err = tokio::time::timeout(Duration::from_secs(20), task)
        .await
        .expect("stops")
        .expect("join")
        .expect_err("wrong chain");
    assert!(matches!(err, PeerError::WrongChain { .. }), "{err}");
    match state.status() {
        FollowStatus::Stopped { reason } => assert!(reason.contains("same chain"), "{reason}"),
        other => panic!("expected Stopped, got {other:?}"),
    }
}

#[tokio::test]
async fn pushes_reach_the_producer_and_come_back_in_nodeos_shape() {
    let p = producer("push-p", 1, None).await;
    let client = PushClient::new(p.addr, p.fixture.chain_id, wire::DEFAULT_MAX_FRAME_BYTES);
    let ctx = Arc::new(crate::api::ApiContext::new(
        p.fixture.store.clone(),
        crate::config::Limits::default(),
        Some(client),
    ));
    let trx = signed(&p.fixture.chain_id, vec![newaccount("bob")], Compression::Zlib);
    let id = trx.id(&Default::default()).expect("id").to_string();
    let body = serde_json::to_value(&trx).expect("json");
    let v =
        crate::api::route(&ctx, "/v1/chain/push_transaction", body.clone()).await.expect("pushed");
    assert_eq!(v["transaction_id"], id);
    assert_eq!(v["processed"]["id"], id);
    assert_eq!(v["processed"]["receipt"]["status"], "executed");
    // The same connection is reused; the producer's refusal keeps its nodeos code and name.
    let e = crate::api::route(&ctx, "/v1/chain/send_transaction", body).await.expect_err("dup");
    assert_eq!((e.code, e.name.as_ref()), (3_040_008, "tx_duplicate"));
    // Concurrent pushes each get their own answer.
    let mut tasks = Vec::new();
    for i in 0..8u8 {
        let ctx = ctx.clone();
        let name = format!("user{}", (b'a' + i) as char);
        let t = signed(&p.fixture.chain_id, vec![newaccount(&name)], Compression::None);
        tasks.push(tokio::spawn(async move {
            crate::api::route(
                &ctx,
                "/v1/chain/push_transaction",
                serde_json::to_value(&t).expect("json"),
            )
            .await
        }));
    }
    for t in tasks {
        t.await.expect("join").expect("pushed");
    }
}

#[tokio::test]
async fn a_push_to_an_unreachable_producer_is_a_503() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let client = PushClient::new(addr, Checksum256::ZERO, 1024);
    let e = client.push(PackedTransaction::default()).await.expect_err("unreachable");
    assert_eq!(e.status, 503);
    assert!(e.detail.contains("was not sent"), "{}", e.detail);
}

/// Serves `store` with `sink` answering pushes (an api node's relay); stops when the sender
/// is dropped.
async fn relay(
    store: Arc<Store>,
    chain_id: Checksum256,
    sink: Arc<dyn PushHandler>,
) -> (SocketAddr, tokio::sync::oneshot::Sender<()>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let head = store.read().expect("read").head().expect("head").map_or(0, |h| h.block_num);
    let service = Arc::new(ProducerService {
        store,
        chain_id,
        sink,
        heads: HeadNotifier::new(head),
        max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
    });
    let (tx, rx) = tokio::sync::oneshot::channel::<()>();
    tokio::spawn(serve_producer(listener, service, async move {
        let _ = rx.await;
    }));
    (addr, tx)
}

#[tokio::test]
async fn an_api_node_relays_pushes_upstream_and_their_answers_back_unchanged() {
    let p = producer("relay-p", 2, None).await;
    let chain_id = p.fixture.chain_id;
    let max = wire::DEFAULT_MAX_FRAME_BYTES;
    let replica = Fixture::new("relay-a");
    let upstream = Arc::new(PushClient::new(p.addr, chain_id, max));
    let (a, _stop_a) = relay(replica.store.clone(), chain_id, upstream).await;
    let direct = PushClient::new(p.addr, chain_id, max);
    let via_a = PushClient::new(a, chain_id, max);

    let trx = signed(&chain_id, vec![newaccount("carol")], Compression::None);
    let id = trx.id(&Default::default()).expect("id").to_string();
    let trace = via_a.push(trx.clone()).await.expect("relayed");
    assert_eq!(trace["id"], id);
    assert_eq!(trace["receipt"]["status"], "executed");
    // The producer's refusal comes back through the relay exactly as it comes directly.
    let relayed = via_a.push(trx.clone()).await.expect_err("duplicate");
    let straight = direct.push(trx).await.expect_err("duplicate");
    assert_eq!(to_wire(&relayed), to_wire(&straight));
    assert_eq!((relayed.status, relayed.code), (straight.status, 3_040_008));

    // A relay that cannot reach its producer answers 503, and says the push was not sent.
    let closed = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let gone = closed.local_addr().expect("addr");
    drop(closed);
    let lost = Arc::new(PushClient::new(gone, chain_id, max));
    let (b, _stop_b) = relay(replica.store.clone(), chain_id, lost).await;
    let trx = signed(&chain_id, vec![newaccount("dave")], Compression::None);
    let e = PushClient::new(b, chain_id, max).push(trx).await.expect_err("no producer");
    assert_eq!(e.status, 503);
    assert!(e.detail.contains("was not sent"), "{}", e.detail);
}
