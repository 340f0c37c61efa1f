use super::*;
use crate::key::KeyType;

fn name(s: &str) -> Name {
    s.parse().unwrap()
}

fn key(seed: u8, key_type: KeyType) -> PrivateKey {
    PrivateKey::from_bytes(key_type, &[seed; 32]).unwrap()
}

fn chain_id() -> Checksum256 {
    "aca376f206b8fc25a6ed44dbdc66547c36c6c33e3a119ffbeaef943642f0e906".parse().unwrap()
}

/// eosio.token::transfer from alice@active, 2024-01-01T00:00:50, TaPoS 0x1234 / 0xdeadbeef.
fn sample() -> Transaction {
    Transaction {
        header: TransactionHeader {
            expiration: "2024-01-01T00:00:50".parse().unwrap(),
            ref_block_num: 0x1234,
            ref_block_prefix: 0xdead_beef,
            max_net_usage_words: VarUint32(0),
            max_cpu_usage_ms: 0,
            delay_sec: VarUint32(0),
        },
        context_free_actions: vec![],
        actions: vec![Action {
            account: name("eosio.token"),
            name: name("transfer"),
            authorization: vec![PermissionLevel {
                actor: name("alice"),
                permission: name("active"),
            }],
            data: Bytes(vec![0xaa, 0xbb, 0xcc]),
        }],
        transaction_extensions: vec![],
    }
}

/// The bytes of `sample()`, written out field by field.
fn sample_bytes() -> Vec<u8> {
    let mut b = Vec::new();
    b.extend_from_slice(&1_704_067_250u32.to_le_bytes()); // expiration
    b.extend_from_slice(&[0x34, 0x12]); // ref_block_num
    b.extend_from_slice(&[0xef, 0xbe, 0xad, 0xde]); // ref_block_prefix
    b.extend_from_slice(&[0, 0, 0]); // max_net_usage_words, max_cpu_usage_ms, delay_sec
    b.push(0); // context_free_actions
    b.push(1); // actions
    b.extend_from_slice(&0x5530_EA03_3482_A600u64.to_le_bytes()); // eosio.token
    b.extend_from_slice(&name("transfer").0.to_le_bytes());
    b.push(1); // authorization
    b.extend_from_slice(&name("alice").0.to_le_bytes());
    b.extend_from_slice(&name("active").0.to_le_bytes());
    b.extend_from_slice(&[3, 0xaa, 0xbb, 0xcc]); // data
    b.push(0); // transaction_extensions
    b
}

fn sha256(data: &[u8]) -> [u8; 32] {
    use sha2::Digest;
    sha2::Sha256::digest(data).into()
}

fn zlib(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut e = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    e.write_all(data).unwrap();
    e.finish().unwrap()
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

fn round_trip<T: Pack + Unpack + PartialEq + std::fmt::Debug>(v: &T) -> Vec<u8> {
    let bytes = codec::to_bytes(v);
    assert_eq!(&codec::from_bytes::<T>(&bytes).unwrap(), v);
    bytes
}

fn signed_sample() -> SignedTransaction {
    let mut t = SignedTransaction::new(sample());
    t.context_free_data = vec![Bytes(vec![1, 2, 3]), Bytes(vec![])];
    t.sign(&key(1, KeyType::K1), &chain_id());
    t.sign(&key(2, KeyType::R1), &chain_id());
    t
}

#[test]
fn packs_exactly_as_antelope() {
    assert_eq!(codec::to_bytes(&sample()), sample_bytes());
    assert_eq!(round_trip(&sample()), sample_bytes());
}

#[test]
fn id_and_signing_digest_by_hand() {
    let bytes = sample_bytes();
    let trx = sample();
    assert_eq!(trx.id().0, sha256(&bytes));

    let mut pre = chain_id().0.to_vec();
    pre.extend_from_slice(&bytes);
    pre.extend_from_slice(&[0u8; 32]);
    assert_eq!(trx.signing_digest(&chain_id(), &[]).0, sha256(&pre));

    // With context-free data the last 32 bytes are sha256 of the packed vector<bytes>.
    let cfd = [Bytes(vec![0xde, 0xad]), Bytes(vec![])];
    let mut pre = chain_id().0.to_vec();
    pre.extend_from_slice(&bytes);
    pre.extend_from_slice(&sha256(&[2, 2, 0xde, 0xad, 0]));
    assert_eq!(trx.signing_digest(&chain_id(), &cfd).0, sha256(&pre));
}

#[test]
fn tapos_from_block_id() {
    let mut id = [0u8; 32];
    id[..4].copy_from_slice(&0x0001_5678u32.to_be_bytes());
    id[8..12].copy_from_slice(&[0x01, 0x02, 0x03, 0x04]);
    let id = Checksum256(id);
    assert_eq!(ref_block_num(&id), 0x5678);
    assert_eq!(ref_block_prefix(&id), 0x0403_0201);
    let mut t = sample();
    assert!(!t.verify_reference_block(&id));
    t.set_reference_block(&id);
    assert_eq!((t.header.ref_block_num, t.header.ref_block_prefix), (0x5678, 0x0403_0201));
    assert!(t.verify_reference_block(&id));
    let mut other = id;
    other.0[8] ^= 1;
    assert!(!t.verify_reference_block(&other));
}

#[test]
fn sign_and_recover() {
    let t = signed_sample();
    let keys = t.recover_keys(&chain_id()).unwrap();
    assert_eq!(keys, vec![key(1, KeyType::K1).public_key(), key(2, KeyType::R1).public_key()]);
    // Another chain's digest recovers other keys.
    let other = Checksum256::hash(b"other chain");
    assert_ne!(t.recover_keys(&other).unwrap()[0], keys[0]);

    let mut dup = t.clone();
    dup.sign(&key(1, KeyType::K1), &chain_id());
    assert!(matches!(
        dup.recover_keys(&chain_id()),
        Err(TransactionError::DuplicateSignature { first: 0, second: 2, .. })
    ));
}

#[test]
fn signed_and_packed_round_trip() {
    let signed = signed_sample();
    let bytes = round_trip(&signed);
    assert_strict::<SignedTransaction>(&bytes);
    assert_strict::<Transaction>(&sample_bytes());

    for compression in [Compression::None, Compression::Zlib] {
        let packed = PackedTransaction::from_signed(&signed, compression);
        let bytes = round_trip(&packed);
        assert_strict::<PackedTransaction>(&bytes);
        let limits = UnpackLimits::default();
        assert_eq!(packed.to_signed(&limits).unwrap(), signed);
        assert_eq!(packed.id(&limits).unwrap(), sample().id());
        assert_eq!(
            packed.signing_digest(&chain_id(), &limits).unwrap(),
            signed.signing_digest(&chain_id())
        );
        assert_eq!(
            packed.recover_keys(&chain_id(), &limits).unwrap(),
            signed.recover_keys(&chain_id()).unwrap()
        );
    }

    let plain = PackedTransaction::from_signed(&signed, Compression::None);
    assert_eq!(plain.packed_trx.0, sample_bytes());
    assert_eq!(plain.packed_context_free_data.0, [2, 3, 1, 2, 3, 0]);
    // Packed layout: signatures, compression byte, then the two byte strings.
    let bytes = codec::to_bytes(&plain);
    assert_eq!(bytes[0], 2);
    assert_eq!(bytes[1 + 2 * 66], 0);

    // No context-free data packs to no bytes, compressed or not.
    for compression in [Compression::None, Compression::Zlib] {
        let p = PackedTransaction::from_signed(&SignedTransaction::new(sample()), compression);
        assert!(p.packed_context_free_data.0.is_empty());
        assert_eq!(p.context_free_data(&UnpackLimits::default()).unwrap(), vec![]);
    }
}

#[test]
fn ids_use_the_repacked_transaction() {
    // A non-minimal varuint (0x80 0x00 for 0) decodes, but the id is over the canonical bytes.
    let mut bytes = sample_bytes();
    bytes.splice(10..11, [0x80, 0x00]);
    let p = PackedTransaction { packed_trx: Bytes(bytes), ..Default::default() };
    assert_eq!(p.id(&UnpackLimits::default()).unwrap(), sample().id());
}

#[test]
fn min_sizes_match_the_smallest_encodings() {
    assert_eq!(Transaction::MIN_SIZE, codec::to_bytes(&Transaction::default()).len());
    assert_eq!(Transaction::MIN_SIZE, 16);
    assert_eq!(SignedTransaction::MIN_SIZE, codec::to_bytes(&SignedTransaction::default()).len());
    assert_eq!(PackedTransaction::MIN_SIZE, codec::to_bytes(&PackedTransaction::default()).len());
    assert_eq!(PermissionLevel::MIN_SIZE, 16);
    assert_eq!(Action::MIN_SIZE, 18);
    assert_eq!(<Extension as Unpack>::MIN_SIZE, 3);
    // A count the input cannot hold is refused before anything is allocated.
    assert!(matches!(
        codec::from_bytes::<Vec<Action>>(&[0xff, 0xff, 0xff, 0xff, 0x0f]).unwrap_err(),
        DecodeError::LengthTooLarge { .. }
    ));
}

#[test]
fn errors_name_the_field() {
    let mut bytes = sample_bytes();
    bytes.truncate(bytes.len() - 3); // inside the action data
    let err = codec::from_bytes::<Transaction>(&bytes).unwrap_err();
    assert!(err.to_string().starts_with("actions: "), "{err}");
    let p = PackedTransaction { packed_trx: Bytes(bytes), ..Default::default() };
    let err = p.unpack_transaction(&UnpackLimits::default()).unwrap_err();
    assert!(matches!(err, TransactionError::Decode { what: "packed_trx", .. }));
}

#[test]
fn unknown_compression_is_refused() {
    let mut bytes = codec::to_bytes(&PackedTransaction::default());
    bytes[1] = 2;
    assert!(matches!(
        codec::from_bytes::<PackedTransaction>(&bytes).unwrap_err().root(),
        DecodeError::UnknownTag { what: "compression", tag: 2, at: 1 }
    ));
    assert!(Compression::try_from(2).is_err());
    assert!("gzip".parse::<Compression>().is_err());
    assert_eq!("zlib".parse::<Compression>().unwrap(), Compression::Zlib);
}

#[test]
fn zlib_bomb_stops_at_the_bound() {
    let bomb = zlib(&vec![0u8; 4 * 1024 * 1024]);
    assert!(bomb.len() < 8 * 1024, "the bomb is {} bytes", bomb.len());
    let limits = UnpackLimits { max_inflated_bytes: 512 * 1024 };
    let p = PackedTransaction {
        compression: Compression::Zlib,
        packed_trx: Bytes(bomb.clone()),
        packed_context_free_data: Bytes(bomb),
        ..Default::default()
    };
    assert_eq!(
        p.unpack_transaction(&limits).unwrap_err(),
        TransactionError::InflateTooLarge { what: "packed_trx", limit: 512 * 1024 }
    );
    assert_eq!(
        p.context_free_data(&limits).unwrap_err(),
        TransactionError::InflateTooLarge { what: "packed_context_free_data", limit: 512 * 1024 }
    );
    assert!(p.id(&limits).is_err());
}

#[test]
fn inflation_bound_is_exact() {
    let data = vec![7u8; 1000];
    let z = zlib(&data);
    assert_eq!(inflate_bounded(&z, "x", 1000).unwrap(), data);
    let out = inflate_bounded(&z, "x", 1000).unwrap();
    assert!(out.capacity() <= 1000);
    assert_eq!(
        inflate_bounded(&z, "x", 999).unwrap_err(),
        TransactionError::InflateTooLarge { what: "x", limit: 999 }
    );
}

#[test]
fn bad_zlib_streams_are_refused() {
    let z = zlib(&sample_bytes());
    let limits = UnpackLimits::default();
    let with = |bytes: Vec<u8>| PackedTransaction {
        compression: Compression::Zlib,
        packed_trx: Bytes(bytes),
        ..Default::default()
    };
    assert_eq!(with(z.clone()).unpack_transaction(&limits).unwrap(), sample());

    let truncated = with(z[..z.len() - 5].to_vec()).unpack_transaction(&limits).unwrap_err();
    assert!(matches!(truncated, TransactionError::BadZlib { what: "packed_trx", .. }));

    let mut trailing = z.clone();
    trailing.extend_from_slice(b"xyz");
    assert_eq!(
        with(trailing).unpack_transaction(&limits).unwrap_err(),
        TransactionError::TrailingCompressed { what: "packed_trx", count: 3 }
    );

    assert!(matches!(
        with(b"not zlib at all".to_vec()).unpack_transaction(&limits).unwrap_err(),
        TransactionError::BadZlib { .. }
    ));

    // A valid stream of a transaction followed by extra packed bytes.
    let mut long = sample_bytes();
    long.push(0);
    assert!(matches!(
        with(zlib(&long)).unpack_transaction(&limits).unwrap_err(),
        TransactionError::Decode { source: DecodeError::TrailingBytes { count: 1 }, .. }
    ));
    let plain = PackedTransaction { packed_trx: Bytes(long), ..Default::default() };
    assert!(matches!(
        plain.unpack_transaction(&limits).unwrap_err(),
        TransactionError::Decode { source: DecodeError::TrailingBytes { count: 1 }, .. }
    ));
}

#[test]
fn context_free_data_is_strict() {
    let limits = UnpackLimits::default();
    let p = |cfd: Vec<u8>| PackedTransaction {
        packed_context_free_data: Bytes(cfd),
        packed_trx: Bytes(sample_bytes()),
        ..Default::default()
    };
    assert_eq!(p(vec![1, 1, 9]).context_free_data(&limits).unwrap(), vec![Bytes(vec![9])]);
    assert!(matches!(
        p(vec![1, 1, 9, 9]).context_free_data(&limits).unwrap_err(),
        TransactionError::Decode { what: "packed_context_free_data", .. }
    ));
    assert!(p(vec![1, 2, 9]).context_free_data(&limits).is_err());
}

#[test]
fn json_matches_nodeos() {
    let t = sample();
    let v = serde_json::to_value(&t).unwrap();
    assert_eq!(
        v,
        serde_json::json!({
            "expiration": "2024-01-01T00:00:50",
            "ref_block_num": 0x1234,
            "ref_block_prefix": 0xdead_beef_u32,
            "max_net_usage_words": 0,
            "max_cpu_usage_ms": 0,
            "delay_sec": 0,
            "context_free_actions": [],
            "actions": [{
                "account": "eosio.token",
                "name": "transfer",
                "authorization": [{"actor": "alice", "permission": "active"}],
                "data": "aabbcc"
            }],
            "transaction_extensions": []
        })
    );
    assert_eq!(serde_json::from_value::<Transaction>(v).unwrap(), t);

    let signed = signed_sample();
    let v = serde_json::to_value(&signed).unwrap();
    assert_eq!(v["ref_block_num"], 0x1234);
    assert!(v["signatures"][0].as_str().unwrap().starts_with("SIG_K1_"));
    assert!(v["signatures"][1].as_str().unwrap().starts_with("SIG_R1_"));
    assert_eq!(v["context_free_data"], serde_json::json!(["010203", ""]));
    assert_eq!(serde_json::from_value::<SignedTransaction>(v).unwrap(), signed);

    let mut with_ext = sample();
    with_ext.transaction_extensions = vec![(1, Bytes(vec![0xab]))];
    let v = serde_json::to_value(&with_ext).unwrap();
    assert_eq!(v["transaction_extensions"], serde_json::json!([[1, "ab"]]));
    assert_eq!(serde_json::from_value::<Transaction>(v).unwrap(), with_ext);
}

#[test]
fn packed_json_accepts_every_compression_form() {
    let packed = PackedTransaction::from_signed(&signed_sample(), Compression::Zlib);
    let v = serde_json::to_value(&packed).unwrap();
    assert_eq!(v["compression"], "zlib");
    assert_eq!(serde_json::from_value::<PackedTransaction>(v).unwrap(), packed);
    let none = serde_json::to_value(PackedTransaction::default()).unwrap();
    assert_eq!(none["compression"], "none");

    for (form, expected) in [
        (serde_json::json!(0), Compression::None),
        (serde_json::json!(1), Compression::Zlib),
        (serde_json::json!(false), Compression::None),
        (serde_json::json!(true), Compression::Zlib),
        (serde_json::json!("none"), Compression::None),
        (serde_json::json!("zlib"), Compression::Zlib),
    ] {
        let body = serde_json::json!({
            "signatures": [],
            "compression": form,
            "packed_context_free_data": "",
            "packed_trx": hex::encode_upper(sample_bytes()),
        });
        let p: PackedTransaction = serde_json::from_value(body).unwrap();
        assert_eq!(p.compression, expected);
        assert_eq!(p.packed_trx.0, sample_bytes());
    }
    for bad in [serde_json::json!(2), serde_json::json!(-1), serde_json::json!("gzip")] {
        let body = serde_json::json!({"compression": bad, "packed_trx": ""});
        assert!(serde_json::from_value::<PackedTransaction>(body).is_err());
    }
    // nodeos's get_block adds fields; they are ignored. Missing optional fields default.
    let body = serde_json::json!({
        "id": "00",
        "packed_trx": hex::encode(sample_bytes()),
        "transaction": {}
    });
    let p: PackedTransaction = serde_json::from_value(body).unwrap();
    assert_eq!(p.unpack_transaction(&UnpackLimits::default()).unwrap(), sample());
}
