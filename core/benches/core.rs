//! Criterion benchmarks of `core`'s hot paths: name encode/decode, transaction pack/unpack,
//! K1 sign (our canonical loop, against one raw libsecp256k1 signature), verify and recover, and
//! R1 sign and recover. Results and the machine they ran on are in BENCHMARKS.md.
//!
//! A bench measures; it must never assert behaviour that the tests own.

use std::hint::black_box;

use criterion::{Criterion, criterion_group, criterion_main};
use rempart_core::key::{KeyType, PrivateKey, Signature};
use rempart_core::transaction::{
    Action, Compression, PackedTransaction, PermissionLevel, SignedTransaction, Transaction,
    TransactionHeader, UnpackLimits,
};
use rempart_core::{Asset, Bytes, Checksum256, Name, TimePointSec, VarUint32, to_bytes};

fn key(key_type: KeyType, fill: u8) -> PrivateKey {
    PrivateKey::from_bytes(key_type, &[fill; 32]).expect("a constant below the curve order")
}

/// A typical 2-action transaction: two eosio.token transfers, each authorised by its sender.
fn two_transfers() -> Transaction {
    let transfer = |from: &str, to: &str, quantity: &str, memo: &str| {
        let mut data = Vec::new();
        data.extend(to_bytes(&from.parse::<Name>().unwrap()));
        data.extend(to_bytes(&to.parse::<Name>().unwrap()));
        data.extend(to_bytes(&quantity.parse::<Asset>().unwrap()));
        data.extend(to_bytes(memo));
        Action {
            account: "eosio.token".parse().unwrap(),
            name: "transfer".parse().unwrap(),
            authorization: vec![PermissionLevel {
                actor: from.parse().unwrap(),
                permission: "active".parse().unwrap(),
            }],
            data: Bytes(data),
        }
    };
    Transaction {
        header: TransactionHeader {
            expiration: TimePointSec(1_704_067_250),
            ref_block_num: 1234,
            ref_block_prefix: 0x1234_5678,
            max_net_usage_words: VarUint32(0),
            max_cpu_usage_ms: 0,
            delay_sec: VarUint32(0),
        },
        context_free_actions: Vec::new(),
        actions: vec![
            transfer("alice", "bob", "1.0000 EOS", "rent"),
            transfer("bob", "carol", "0.5000 EOS", "split"),
        ],
        transaction_extensions: Vec::new(),
    }
}

fn names(c: &mut Criterion) {
    let name: Name = "eosio.token".parse().unwrap();
    c.bench_function("name/parse eosio.token", |b| {
        b.iter(|| black_box("eosio.token").parse::<Name>().unwrap())
    });
    c.bench_function("name/format eosio.token", |b| b.iter(|| black_box(name).to_string()));
    c.bench_function("name/pack", |b| b.iter(|| to_bytes(black_box(&name))));
    let packed = to_bytes(&name);
    c.bench_function("name/unpack", |b| {
        b.iter(|| rempart_core::from_bytes::<Name>(black_box(&packed)).unwrap())
    });
}

fn transactions(c: &mut Criterion) {
    let chain_id = Checksum256([0xaa; 32]);
    let mut signed = SignedTransaction::new(two_transfers());
    signed.sign(&key(KeyType::K1, 1), &chain_id);
    let limits = UnpackLimits::default();
    c.bench_function("transaction/pack 2 actions", |b| {
        b.iter(|| PackedTransaction::from_signed(black_box(&signed), Compression::None))
    });
    let packed = PackedTransaction::from_signed(&signed, Compression::None);
    c.bench_function("transaction/unpack 2 actions", |b| {
        b.iter(|| black_box(&packed).unpack_transaction(&limits).unwrap())
    });
    let zlib = PackedTransaction::from_signed(&signed, Compression::Zlib);
    c.bench_function("transaction/unpack 2 actions zlib", |b| {
        b.iter(|| black_box(&zlib).unpack_transaction(&limits).unwrap())
    });
    c.bench_function("transaction/signing digest", |b| {
        b.iter(|| black_box(&signed).signing_digest(&chain_id))
    });
}

fn k1(c: &mut Criterion) {
    let sk = key(KeyType::K1, 1);
    let public = sk.public_key();
    let raw = secp256k1::SecretKey::from_secret_bytes([1; 32]).unwrap();
    // Different digests, so the canonical loop's retries average out as they do in production.
    let digests: Vec<Checksum256> =
        (0u32..64).map(|i| Checksum256::hash(&i.to_le_bytes())).collect();
    let mut i = 0;
    c.bench_function("k1/sign (canonical loop)", |b| {
        b.iter(|| {
            i = (i + 1) % digests.len();
            sk.sign(black_box(&digests[i]))
        })
    });
    c.bench_function("k1/libsecp256k1 sign_ecdsa_recoverable (one signature)", |b| {
        b.iter(|| {
            i = (i + 1) % digests.len();
            secp256k1::ecdsa::RecoverableSignature::sign_ecdsa_recoverable(
                secp256k1::Message::from_digest(black_box(digests[i].0)),
                &raw,
            )
        })
    });
    let digest = digests[0];
    let sig = sk.sign(&digest);
    c.bench_function("k1/verify", |b| b.iter(|| black_box(&sig).verify(&digest, &public)));
    c.bench_function("k1/recover", |b| b.iter(|| black_box(&sig).recover(&digest).unwrap()));
}

fn r1(c: &mut Criterion) {
    let sk = key(KeyType::R1, 2);
    let digest = Checksum256::hash(b"r1");
    c.bench_function("r1/sign", |b| b.iter(|| sk.sign(black_box(&digest))));
    let sig = sk.sign(&digest);
    c.bench_function("r1/recover", |b| b.iter(|| black_box(&sig).recover(&digest).unwrap()));
    // What the signer does with an HSM's raw r||s: low-S and the recovery id.
    let rs: [u8; 64] = sig.rs().try_into().expect("64 bytes of r||s");
    let public = sk.public_key();
    c.bench_function("r1/from_raw_rs (HSM r||s to SIG_R1)", |b| {
        b.iter(|| Signature::from_raw_rs(KeyType::R1, black_box(&rs), &digest, &public).unwrap())
    });
}

criterion_group!(benches, names, transactions, k1, r1);
criterion_main!(benches);
