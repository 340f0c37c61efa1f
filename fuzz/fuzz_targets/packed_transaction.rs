//! Fuzzes `packed_transaction` as clients send it: the envelope, then `unpack_transaction` and
//! the context-free data, plain or zlib (inflation bounded to 64 KiB). The first byte also
//! feeds the rest straight to both paths, so zlib streams are reached without an envelope.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_core::transaction::{Compression, PackedTransaction, UnpackLimits};
use rempart_core::{Bytes, Checksum256, from_bytes, to_bytes};

fuzz_target!(|data: &[u8]| {
    let limits = UnpackLimits { max_inflated_bytes: 64 * 1024 };
    let mut packed = from_bytes::<PackedTransaction>(data).ok();
    if packed.is_none() && !data.is_empty() {
        let compression = if data[0] & 1 == 0 { Compression::None } else { Compression::Zlib };
        let rest = Bytes(data[1..].to_vec());
        packed = Some(PackedTransaction {
            signatures: Vec::new(),
            compression,
            packed_context_free_data: rest.clone(),
            packed_trx: rest,
        });
    }
    let Some(packed) = packed else { return };
    let _ = packed.context_free_data(&limits);
    let _ = packed.signing_digest(&Checksum256([7; 32]), &limits);
    if let Ok(trx) = packed.unpack_transaction(&limits) {
        let bytes = to_bytes(&trx);
        assert_eq!(
            to_bytes(&from_bytes::<rempart_core::transaction::Transaction>(&bytes).unwrap()),
            bytes
        );
    }
});
