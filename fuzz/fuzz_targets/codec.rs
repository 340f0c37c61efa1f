//! Fuzzes the binary codec with one struct holding every primitive, names, symbols and assets:
//! decoding must never panic, and whatever decodes must re-encode to bytes that decode again to
//! the same bytes (varuint32 accepts non-minimal forms, so the first encoding may be shorter).
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_core::*;

packed_struct! {
    struct Everything {
        a: u8, b: u16, c: u32, d: u64, e: u128, f: i8, g: i16, h: i32, i: i64, j: i128,
        k: f32, l: f64, m: bool, n: VarUint32, o: VarInt32, p: String, q: Bytes, r: [u8; 3],
        s: Name, t: Symbol, u: SymbolCode, v: Asset, w: ExtendedAsset, x: TimePoint,
        y: TimePointSec, z: BlockTimestamp, c1: Checksum160, c2: Checksum256, c3: Checksum512,
        names: Vec<Name>, maybe: Option<Asset>, pair: (u16, Option<bool>),
    }
}

fuzz_target!(|data: &[u8]| {
    let Ok(value) = from_bytes::<Everything>(data) else { return };
    let bytes = to_bytes(&value);
    assert!(bytes.len() <= data.len());
    assert_eq!(to_bytes(&from_bytes::<Everything>(&bytes).unwrap()), bytes);
});
