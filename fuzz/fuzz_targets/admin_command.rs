//! Fuzzes what an admin command brings to the signer and to `rempart admin`: the packed
//! `ApprovedCommand` of an `Admin` request and the JSON proposal file. Neither may panic; a
//! decoded command re-packs to bytes that decode to it, and a file that reads writes back to
//! one that reads the same.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_core::admin::{ApprovedCommand, Proposal};
use rempart_core::codec;

fuzz_target!(|data: &[u8]| {
    if let Ok(cmd) = codec::from_bytes::<ApprovedCommand>(data) {
        let again: ApprovedCommand = codec::from_bytes(&codec::to_bytes(&cmd)).unwrap();
        assert_eq!(again, cmd);
        let _ = cmd.command.digest();
    }
    if let Ok(text) = std::str::from_utf8(data)
        && let Ok(p) = Proposal::from_json(text)
    {
        assert_eq!(Proposal::from_json(&p.to_json()).unwrap(), p);
    }
});
