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
