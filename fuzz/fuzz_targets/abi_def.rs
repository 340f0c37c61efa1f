//! Fuzzes the binary `abi_def` decoder (what `setabi` carries and `get_raw_abi` returns), then
//! validation of whatever decodes: neither may panic, and a decoded ABI re-encodes to bytes
//! that decode to the same definition.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_core::abi::{Abi, AbiDef};

fuzz_target!(|data: &[u8]| {
    let Ok(def) = AbiDef::from_bin(data) else { return };
    let bytes = def.to_bin();
    assert_eq!(AbiDef::from_bin(&bytes).as_ref(), Ok(&def));
    let _ = Abi::new(def);
});
