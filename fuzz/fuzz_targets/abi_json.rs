//! Fuzzes the ABI-driven decoder (`bin_to_json`) with the bundled eosio.token and eosio ABIs:
//! the first byte picks the type, the rest is its binary. Whatever decodes must encode back
//! (`json_to_bin`) to bytes that decode to the same JSON.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_core::abi::{eosio_system_abi, eosio_token_abi};

const TOKEN_TYPES: &[&str] = &[
    "transfer",
    "issue",
    "create",
    "account",
    "currency_stats",
    "asset",
    "extended_asset",
    "name[]",
    "string?",
    "symbol",
    "int128",
    "float64",
    "bytes",
    "time_point",
    "checksum256",
];
const SYSTEM_TYPES: &[&str] = &["newaccount", "updateauth", "authority", "public_key", "signature"];

fuzz_target!(|data: &[u8]| {
    let Some((&pick, bytes)) = data.split_first() else { return };
    let all = TOKEN_TYPES.len() + SYSTEM_TYPES.len();
    let i = usize::from(pick) % all;
    let (abi, ty) = match TOKEN_TYPES.get(i) {
        Some(ty) => (eosio_token_abi(), *ty),
        None => (eosio_system_abi(), SYSTEM_TYPES[i - TOKEN_TYPES.len()]),
    };
    let Ok(json) = abi.bin_to_json(ty, bytes) else { return };
    let again = abi.json_to_bin(ty, &json).expect("JSON that bin_to_json wrote reads back");
    assert_eq!(abi.bin_to_json(ty, &again).expect("canonical bytes decode"), json);
});
