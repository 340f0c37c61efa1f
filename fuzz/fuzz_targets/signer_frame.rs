//! Fuzzes the signer's stream decoder (`FrameDecoder`) as both ends see it: requests on the
//! signer's side, responses on the node's. It must never panic or buffer past the frame limit,
//! and every message it yields re-encodes to a frame that decodes to the same message.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_core::protocol::{
    FrameDecoder, Message, ProtocolError, Request, Response, decode_payload, encode_frame,
};

fn drain<M: Message + PartialEq + std::fmt::Debug>(mut input: &[u8]) {
    let mut decoder = FrameDecoder::new();
    loop {
        match decoder.decode::<M>(&mut input) {
            Ok(Some(msg)) => {
                let frame = encode_frame(&msg).expect("a decoded message fits in a frame");
                assert_eq!(decode_payload::<M>(&frame[4..]).unwrap(), msg);
            }
            Ok(None) | Err(ProtocolError::Closed) => return,
            Err(_) => {}
        }
    }
}

fuzz_target!(|data: &[u8]| {
    drain::<Request>(data);
    drain::<Response>(data);
});
