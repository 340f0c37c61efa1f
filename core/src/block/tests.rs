use super::*;
use crate::codec::Bytes;
use crate::key::{KeyType, PrivateKey};
use crate::transaction::{Compression, SignedTransaction, Transaction};

fn name(s: &str) -> Name {
    s.parse().unwrap()
}

fn key(seed: u8, key_type: KeyType) -> PrivateKey {
    PrivateKey::from_bytes(key_type, &[seed; 32]).unwrap()
}

fn leaf(i: u32) -> Checksum256 {
    Checksum256::hash(&i.to_le_bytes())
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn round_trip<T: Pack + Unpack + PartialEq + std::fmt::Debug>(v: &T) -> Vec<u8> {
    let bytes = codec::to_bytes(v);
    assert_eq!(&codec::from_bytes::<T>(&bytes).unwrap(), v);
    bytes
}

/// Every strict prefix fails and one extra byte fails, for a top-level decoder.
fn assert_strict<T: Unpack + std::fmt::Debug>(bytes: &[u8]) {
    for n in 0..bytes.len() {
        assert!(codec::from_bytes::<T>(&bytes[..n]).is_err(), "prefix of {n} bytes accepted");
    }
    let mut long = bytes.to_vec();
    long.push(0);
    assert_eq!(codec::from_bytes::<T>(&long).unwrap_err(), DecodeError::TrailingBytes { count: 1 });
}

/// Block 10 (previous is block 9), produced by `bp1`.
fn header() -> BlockHeader {
    let mut previous = [0x11u8; 32];
    previous[..4].copy_from_slice(&9u32.to_be_bytes());
    BlockHeader {
        timestamp: BlockTimestamp(1_000),
        producer: name("bp1"),
        confirmed: 0,
        previous: Checksum256(previous),
        transaction_mroot: Checksum256([0x22; 32]),
        action_mroot: Checksum256([0x33; 32]),
        schedule_version: 3,
        new_producers: None,
        header_extensions: vec![],
    }
}

fn header_bytes() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&1_000u32.to_le_bytes());
    b.extend_from_slice(&name("bp1").0.to_le_bytes());
    b.extend_from_slice(&[0, 0]);
    b.extend_from_slice(&[0, 0, 0, 9]);
    b.extend_from_slice(&[0x11; 28]);
    b.extend_from_slice(&[0x22; 32]);
    b.extend_from_slice(&[0x33; 32]);
    b.extend_from_slice(&3u32.to_le_bytes());
    b.push(0); // new_producers: none
    b.push(0); // header_extensions
    b
}

fn schedule() -> ProducerSchedule {
    ProducerSchedule {
        version: 4,
        producers: vec![
            ProducerKey {
                producer_name: name("bp1"),
                block_signing_key: key(1, KeyType::K1).public_key(),
            },
            ProducerKey {
                producer_name: name("bp2"),
                block_signing_key: key(2, KeyType::R1).public_key(),
            },
        ],
    }
}

fn authority_schedule() -> ProducerAuthoritySchedule {
    ProducerAuthoritySchedule {
        version: 5,
        producers: vec![ProducerAuthority {
            producer_name: name("bp1"),
            authority: BlockSigningAuthority::V0 {
                threshold: 2,
                keys: vec![
                    KeyWeight { key: key(1, KeyType::K1).public_key(), weight: 1 },
                    KeyWeight { key: key(2, KeyType::R1).public_key(), weight: 1 },
                ],
            },
        }],
    }
}

fn block() -> SignedBlock {
    let mut header = header();
    header.new_producers = Some(schedule());
    header.header_extensions = vec![(1, Bytes(vec![1, 2]))];
    let bmroot = Checksum256([0x44; 32]);
    let sched = authority_schedule().schedule_hash();
    let producer_signature = key(1, KeyType::K1).sign(&header.signing_digest(&bmroot, &sched));
    let mut trx = SignedTransaction::new(Transaction::default());
    trx.sign(&key(3, KeyType::K1), &Checksum256([0x55; 32]));
    SignedBlock {
        signed_header: SignedBlockHeader { header, producer_signature },
        transactions: vec![
            TransactionReceipt {
                header: TransactionReceiptHeader {
                    status: TransactionStatus::Executed,
                    cpu_usage_us: 150,
                    net_usage_words: VarUint32(200),
                },
                trx: TransactionVariant::Packed(PackedTransaction::from_signed(
                    &trx,
                    Compression::Zlib,
                )),
            },
            TransactionReceipt {
                header: TransactionReceiptHeader {
                    status: TransactionStatus::HardFail,
                    cpu_usage_us: 0,
                    net_usage_words: VarUint32(0),
                },
                trx: TransactionVariant::Id(Checksum256([0x66; 32])),
            },
        ],
        block_extensions: vec![],
    }
}

#[test]
fn header_packs_exactly_as_antelope() {
    assert_eq!(round_trip(&header()), header_bytes());
    assert_strict::<BlockHeader>(&header_bytes());
    assert_eq!(BlockHeader::MIN_SIZE, header_bytes().len());
}

#[test]
fn block_num_id_and_digests_by_hand() {
    let h = header();
    assert_eq!(block_num_from_id(&h.previous), 9);
    assert_eq!(h.block_num(), 10);
    let digest = sha256(&header_bytes());
    assert_eq!(h.digest().0, digest);
    let mut id = digest;
    id[..4].copy_from_slice(&[0, 0, 0, 10]);
    assert_eq!(h.id().0, id);
    assert_eq!(block_num_from_id(&h.id()), 10);

    let bmroot = [0x44u8; 32];
    let sched = [0x55u8; 32];
    let inner = sha256(&[digest, bmroot].concat());
    let expected = sha256(&[inner, sched].concat());
    assert_eq!(h.signing_digest(&Checksum256(bmroot), &Checksum256(sched)).0, expected);

    // Block numbers wrap as nodeos's u32 arithmetic does instead of panicking.
    let mut last = h.clone();
    last.previous.0[..4].copy_from_slice(&[0xff; 4]);
    assert_eq!(last.block_num(), 0);
}

#[test]
fn producer_signature_recovers() {
    let b = block();
    let sched = authority_schedule().schedule_hash();
    let bmroot = Checksum256([0x44; 32]);
    assert_eq!(
        b.signed_header.recover_producer_key(&bmroot, &sched).unwrap(),
        key(1, KeyType::K1).public_key()
    );
    assert_ne!(
        b.signed_header.recover_producer_key(&Checksum256::ZERO, &sched).unwrap(),
        key(1, KeyType::K1).public_key()
    );
    assert_eq!(b.id(), b.signed_header.header.id());
    assert_eq!(b.block_num(), 10);
}

#[test]
fn schedules_round_trip_and_hash() {
    let s = schedule();
    let bytes = round_trip(&s);
    assert_eq!(&bytes[..5], &[4, 0, 0, 0, 2]);
    assert_eq!(s.schedule_hash().0, sha256(&bytes));
    assert_strict::<ProducerSchedule>(&bytes);

    let a = authority_schedule();
    let bytes = round_trip(&a);
    // version, count, producer name, variant tag 0, threshold, key count.
    assert_eq!(&bytes[..5], &[5, 0, 0, 0, 1]);
    assert_eq!(bytes[13], 0);
    assert_eq!(&bytes[14..19], &[2, 0, 0, 0, 2]);
    assert_eq!(a.schedule_hash().0, sha256(&bytes));
    assert_strict::<ProducerAuthoritySchedule>(&bytes);

    let upgraded = ProducerAuthoritySchedule::from(s.clone());
    assert_eq!(upgraded.version, 4);
    assert_eq!(upgraded.producers[1].authority.keys()[0].key, s.producers[1].block_signing_key);
    assert_eq!(upgraded.producers[1].authority.threshold(), 1);
}

#[test]
fn authority_satisfaction() {
    let a = &authority_schedule().producers[0].authority;
    let k1 = key(1, KeyType::K1).public_key();
    let r1 = key(2, KeyType::R1).public_key();
    assert!(!a.is_satisfied_by(&[k1]));
    assert!(!a.is_satisfied_by(&[k1, k1]));
    assert!(a.is_satisfied_by(&[r1, k1]));
    let zero = BlockSigningAuthority::V0 { threshold: 0, keys: vec![] };
    assert!(!zero.is_satisfied_by(&[k1]));
    let repeated = BlockSigningAuthority::V0 {
        threshold: 2,
        keys: vec![KeyWeight { key: k1, weight: 1 }, KeyWeight { key: k1, weight: 1 }],
    };
    assert!(!repeated.is_satisfied_by(&[k1]));
}

#[test]
fn unknown_variant_tags_are_refused() {
    let mut bytes = codec::to_bytes(&authority_schedule().producers[0].authority);
    bytes[0] = 1;
    assert!(matches!(
        codec::from_bytes::<BlockSigningAuthority>(&bytes).unwrap_err(),
        DecodeError::UnknownTag { what: "block_signing_authority", tag: 1, at: 0 }
    ));

    let receipt = &block().transactions[1];
    let mut bytes = codec::to_bytes(receipt);
    assert_eq!(bytes[6], 0); // status, cpu_usage_us, net_usage_words, then the tag
    bytes[6] = 2;
    assert!(matches!(
        codec::from_bytes::<TransactionReceipt>(&bytes).unwrap_err().root(),
        DecodeError::UnknownTag { tag: 2, at: 6, .. }
    ));
    // A five-byte varuint32 tag far out of range is refused too.
    bytes.splice(6..7, [0xff, 0xff, 0xff, 0xff, 0x0f]);
    assert!(matches!(
        codec::from_bytes::<TransactionReceipt>(&bytes).unwrap_err().root(),
        DecodeError::UnknownTag { tag: 0xffff_ffff, .. }
    ));

    let mut bytes = codec::to_bytes(receipt);
    bytes[0] = 5;
    assert!(matches!(
        codec::from_bytes::<TransactionReceipt>(&bytes).unwrap_err().root(),
        DecodeError::UnknownTag { what: "transaction status", tag: 5, .. }
    ));
}

#[test]
fn signed_block_round_trips_strictly() {
    let b = block();
    let bytes = round_trip(&b);
    assert_strict::<SignedBlock>(&bytes);
    let sh = round_trip(&b.signed_header);
    assert_strict::<SignedBlockHeader>(&sh);
    assert_eq!(&bytes[..sh.len()], &sh[..]);
    for r in &b.transactions {
        assert_strict::<TransactionReceipt>(&round_trip(r));
    }
    round_trip(&IncrementalMerkle::new());
    round_trip(&KeyWeight { key: key(9, KeyType::R1).public_key(), weight: 7 });
    assert_eq!(TransactionReceiptHeader::MIN_SIZE, 6);
    assert!(TransactionVariant::MIN_SIZE <= codec::to_bytes(&block().transactions[1].trx).len());
    assert!(
        TransactionVariant::MIN_SIZE
            <= codec::to_bytes(&TransactionVariant::Packed(PackedTransaction::default())).len()
    );
    assert!(
        BlockSigningAuthority::MIN_SIZE
            <= codec::to_bytes(&BlockSigningAuthority::V0 { threshold: 0, keys: vec![] }).len()
    );
}

#[test]
fn json_matches_nodeos() {
    let b = block();
    let v = serde_json::to_value(&b).unwrap();
    assert_eq!(v["timestamp"], "2000-01-01T00:08:20.000");
    assert_eq!(v["producer"], "bp1");
    assert_eq!(v["previous"], b.signed_header.header.previous.to_string());
    assert_eq!(v["new_producers"]["version"], 4);
    assert_eq!(v["new_producers"]["producers"][0]["producer_name"], "bp1");
    assert_eq!(v["header_extensions"], serde_json::json!([[1, "0102"]]));
    assert!(v["producer_signature"].as_str().unwrap().starts_with("SIG_K1_"));
    let t0 = &v["transactions"][0];
    assert_eq!(t0["status"], "executed");
    assert_eq!(t0["cpu_usage_us"], 150);
    assert_eq!(t0["net_usage_words"], 200);
    assert_eq!(t0["trx"]["compression"], "zlib");
    let t1 = &v["transactions"][1];
    assert_eq!(t1["status"], "hard_fail");
    assert_eq!(t1["trx"], "66".repeat(32));
    assert_eq!(serde_json::from_value::<SignedBlock>(v).unwrap(), b);

    // fc's [tag, value] form of the receipt variant and numeric statuses are accepted.
    let receipt = serde_json::json!({
        "status": 3, "cpu_usage_us": 1, "net_usage_words": 2, "trx": [0, "77".repeat(32)]
    });
    let r: TransactionReceipt = serde_json::from_value(receipt).unwrap();
    assert_eq!(r.header.status, TransactionStatus::Delayed);
    assert_eq!(r.trx, TransactionVariant::Id(Checksum256([0x77; 32])));
    let packed = serde_json::to_value(b.transactions[0].trx.as_packed().unwrap()).unwrap();
    let receipt = serde_json::json!({
        "status": "soft_fail", "cpu_usage_us": 1, "net_usage_words": 2, "trx": [1, packed]
    });
    let r: TransactionReceipt = serde_json::from_value(receipt).unwrap();
    assert_eq!(r.trx, b.transactions[0].trx);
    for bad in [
        serde_json::json!({"status": 5, "cpu_usage_us": 1, "net_usage_words": 2, "trx": "00"}),
        serde_json::json!({"status": "x", "cpu_usage_us": 1, "net_usage_words": 2, "trx": "00"}),
        serde_json::json!({"status": 0, "cpu_usage_us": 1, "net_usage_words": 2, "trx": [2, {}]}),
    ] {
        assert!(serde_json::from_value::<TransactionReceipt>(bad).is_err());
    }
}

#[test]
fn authority_json_is_an_fc_variant() {
    let a = authority_schedule();
    let v = serde_json::to_value(&a).unwrap();
    let auth = &v["producers"][0]["authority"];
    assert_eq!(auth[0], 0);
    assert_eq!(auth[1]["threshold"], 2);
    assert_eq!(auth[1]["keys"][1]["weight"], 1);
    assert!(auth[1]["keys"][1]["key"].as_str().unwrap().starts_with("PUB_R1_"));
    assert_eq!(serde_json::from_value::<ProducerAuthoritySchedule>(v.clone()).unwrap(), a);

    let mut abi_form = v.clone();
    abi_form["producers"][0]["authority"][0] = "block_signing_authority_v0".into();
    assert_eq!(serde_json::from_value::<ProducerAuthoritySchedule>(abi_form).unwrap(), a);
    let mut bad = v;
    bad["producers"][0]["authority"][0] = 1.into();
    assert!(serde_json::from_value::<ProducerAuthoritySchedule>(bad).is_err());
}

#[test]
fn merkle_small_cases() {
    let (a, b, c) = (leaf(0), leaf(1), leaf(2));
    assert_eq!(merkle(&[]), Checksum256::ZERO);
    assert_eq!(merkle(&[a]), a);

    let mut l = a.0;
    l[0] &= 0x7f;
    let mut r = b.0;
    r[0] |= 0x80;
    let ab = Checksum256(sha256(&[l, r].concat()));
    assert_eq!(canonical_pair_hash(&a, &b), ab);
    assert_eq!(merkle(&[a, b]), ab);
    let cc = canonical_pair_hash(&c, &c);
    assert_eq!(merkle(&[a, b, c]), canonical_pair_hash(&ab, &cc));
    // The top bit of a digest does not change which side it sits on.
    let mut a2 = a;
    a2.0[0] ^= 0x80;
    assert_eq!(canonical_pair_hash(&a2, &b), ab);
}

#[test]
fn incremental_merkle_matches_merkle() {
    let mut im = IncrementalMerkle::new();
    assert_eq!(im.root(), Checksum256::ZERO);
    let mut leaves = Vec::new();
    for i in 0..70 {
        leaves.push(leaf(i));
        let root = im.append(leaf(i));
        assert_eq!(root, merkle(&leaves), "after {} leaves", leaves.len());
        assert_eq!(im.root(), root);
        assert_eq!(im.node_count(), u64::from(i) + 1);
        // The packed form carries exactly the state needed to continue.
        let bytes = round_trip(&im);
        assert_strict::<IncrementalMerkle>(&bytes);
        let json = serde_json::to_value(&im).unwrap();
        assert_eq!(json["_node_count"], i + 1);
        assert_eq!(serde_json::from_value::<IncrementalMerkle>(json).unwrap(), im);
        let mut copy: IncrementalMerkle = codec::from_bytes(&bytes).unwrap();
        assert_eq!(copy.append(leaf(1000)), {
            let mut more = leaves.clone();
            more.push(leaf(1000));
            merkle(&more)
        });
    }
}

#[test]
fn incremental_merkle_refuses_inconsistent_state() {
    let mut im = IncrementalMerkle::new();
    for i in 0..5 {
        im.append(leaf(i));
    }
    let mut bytes = codec::to_bytes(&im);
    // Claim seven leaves with the three active nodes of five (seven need four).
    let n = bytes.len();
    bytes[n - 8] = 7;
    let err = codec::from_bytes::<IncrementalMerkle>(&bytes).unwrap_err();
    assert!(matches!(err, DecodeError::Invalid { what: "incremental_merkle", .. }), "{err}");
    // An absurd leaf count.
    bytes[n - 8..].copy_from_slice(&u64::MAX.to_le_bytes());
    assert!(codec::from_bytes::<IncrementalMerkle>(&bytes).is_err());
    let json = serde_json::json!({"_active_nodes": [], "_node_count": 3});
    assert!(serde_json::from_value::<IncrementalMerkle>(json).is_err());
}

#[test]
fn incremental_merkle_state_always_holds_the_left_siblings() {
    // For every leaf count, the next append reads no more left siblings than the state keeps,
    // so a decoded state (whose length is checked) can always be appended to.
    for n in 0..5000u64 {
        let mut index = n;
        let mut lefts = 0;
        for _ in 1..max_depth(n + 1) {
            if index & 1 == 1 {
                lefts += 1;
            }
            index >>= 1;
        }
        assert!(lefts <= IncrementalMerkle::active_len(n), "{n} leaves");
    }
    assert_eq!(max_depth(0), 0);
    assert_eq!(max_depth(1), 1);
    assert_eq!(max_depth(2), 2);
    assert_eq!(max_depth(3), 3);
    assert_eq!(max_depth(4), 3);
    assert_eq!(max_depth(5), 4);
    assert_eq!(max_depth(u64::MAX), 65);
}
