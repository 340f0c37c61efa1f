use rempart_core::key::PrivateKey;

use super::*;

fn schedule(n: usize) -> ProducerSchedule {
    ProducerSchedule {
        version: 0,
        producers: (0..n)
            .map(|i| ProducerKey {
                producer_name: format!("prod{}", i + 1).parse().expect("name"),
                block_signing_key: PrivateKey::generate(rempart_core::key::KeyType::K1)
                    .public_key(),
            })
            .collect(),
    }
}

#[test]
fn each_producer_has_twelve_slots_in_turn() {
    let s = schedule(3);
    let name = |slot: u32| scheduled_producer(&s, BlockTimestamp(slot)).producer_name.to_string();
    assert_eq!(name(0), "prod1");
    assert_eq!(name(11), "prod1");
    assert_eq!(name(12), "prod2");
    assert_eq!(name(35), "prod3");
    assert_eq!(name(36), "prod1");
    let one = schedule(1);
    assert_eq!(
        scheduled_producer(&one, BlockTimestamp(u32::MAX)).producer_name.to_string(),
        "prod1"
    );
}

#[test]
fn prepare_refuses_oversized_and_garbage() {
    let chain_id = Checksum256([7; 32]);
    let limits = Limits { max_transaction_bytes: 16, ..Limits::default() };
    let big =
        PackedTransaction { packed_trx: rempart_core::Bytes(vec![0; 17]), ..Default::default() };
    assert!(matches!(prepare(big, &chain_id, &limits), Err(TxError::TooBig(_))));
    let garbage =
        PackedTransaction { packed_trx: rempart_core::Bytes(vec![1, 2, 3]), ..Default::default() };
    assert!(matches!(prepare(garbage, &chain_id, &Limits::default()), Err(TxError::Malformed(_))));
}

/// A chain on the shipped genesis in a temporary directory.
fn open_chain(dir: &std::path::Path) -> Chain {
    let genesis = Genesis::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"),
    )
    .expect("genesis");
    let store = Arc::new(crate::store::Store::open(&dir.join("state.redb")).expect("store"));
    Chain::open(store, &genesis, Limits::default()).expect("chain")
}

fn block_at(chain: &Chain, num: u32) -> SignedBlock {
    let snap = chain.store().read().expect("snapshot");
    rempart_core::from_bytes(&snap.block(num).expect("read").expect("block")).expect("decode")
}

#[test]
fn regproducer_switches_the_key_at_a_block_boundary_announced_the_block_before() {
    use rempart_core::transaction::{Action, PermissionLevel};
    let dev: PrivateKey =
        "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3".parse().expect("dev key");
    let new = PrivateKey::generate(rempart_core::key::KeyType::K1);
    let (pdir, fdir) = (tempfile::tempdir().expect("dir"), tempfile::tempdir().expect("dir"));
    let (producer, follower) = (open_chain(pdir.path()), open_chain(fdir.path()));
    let eosio = Name::from_const("eosio");
    let mut slot = producer.info().head_block_time.0;
    // Signs with whichever key the request names, if the test holds it; records which.
    let used = Mutex::new(Vec::new());
    let mut produce = |txs: Vec<PackedTransaction>| {
        slot += 1;
        producer.start_block(BlockTimestamp(slot)).expect("start");
        for t in txs {
            producer.push_transaction(t).expect("push");
        }
        producer
            .finish_block(|req| {
                used.lock().expect("lock").push((req.header.block_num(), req.signing_key));
                let k = [&dev, &new].into_iter().find(|k| k.public_key() == req.signing_key);
                k.map(|k| k.sign(&req.digest()))
                    .ok_or_else(|| SignFailure::Refused("no such key".into()))
            })
            .expect("block")
    };
    produce(Vec::new());
    let head = producer.info();
    let mut t = Transaction {
        actions: vec![Action {
            account: eosio,
            name: Name::from_const("regproducer"),
            authorization: vec![PermissionLevel {
                actor: eosio,
                permission: "active".parse().unwrap(),
            }],
            data: rempart_core::Bytes(rempart_core::to_bytes(&crate::native::RegProducer {
                producer: eosio,
                producer_key: new.public_key(),
                url: "https://bp.example".into(),
                location: 0,
            })),
        }],
        ..Default::default()
    };
    t.header.expiration = rempart_core::TimePointSec(
        (head.head_block_time.to_time_point().0 / 1_000_000) as u32 + 60,
    );
    t.set_reference_block(&head.head_block_id);
    let reg = produce(vec![sign_transaction(t, &[&dev], &producer.chain_id())]);
    for _ in 0..3 {
        produce(Vec::new());
    }
    // The block after the one with regproducer announces v1; the one after that is v1's first.
    let announce = block_at(&producer, reg.block_num + 1);
    let h = &announce.signed_header.header;
    assert_eq!(h.schedule_version, 0);
    let np = h.new_producers.as_ref().expect("new_producers announced");
    assert_eq!((np.version, np.producers[0].block_signing_key), (1, new.public_key()));
    let first = block_at(&producer, reg.block_num + 2);
    assert_eq!(first.signed_header.header.schedule_version, 1);
    assert!(first.signed_header.header.new_producers.is_none());
    let used = used.into_inner().expect("lock");
    for (num, key) in &used {
        let want = if *num <= reg.block_num + 1 { dev.public_key() } else { new.public_key() };
        assert_eq!(*key, want, "block {num}");
    }
    assert_eq!(producer.info().schedule.version, 1);

    // A follower verifies each block against the schedule in force at it, and refuses a block
    // whose announcement was removed (its signature no longer covers it either).
    let head_num = producer.info().head_block_num;
    for num in 2..=reg.block_num {
        follower.apply_block(&block_at(&producer, num)).expect("applies");
    }
    let mut forged = announce.clone();
    forged.signed_header.header.new_producers = None;
    assert!(follower.apply_block(&forged).is_err(), "announcement removed");
    for num in reg.block_num + 1..=head_num {
        follower.apply_block(&block_at(&producer, num)).expect("applies");
    }
    assert_eq!(follower.info().schedule.version, 1);
    assert_eq!(follower.info().head_block_id, producer.info().head_block_id);
}
