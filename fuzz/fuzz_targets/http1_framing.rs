//! Fuzzes the gateway's HTTP/1 framing scanner (`framing::Scanner`), which follows the raw
//! bytes of every HTTP/1 connection to refuse requests whose framing could be read two ways.
//! It must never panic, and its verdict must not depend on how the bytes arrive: a client
//! controls how its stream is cut into segments, so a verdict that changed with the cuts would
//! let a smuggled request through. The first byte sets the head limit; the second, the cuts.
#![no_main]

use libfuzzer_sys::fuzz_target;
use rempart_gateway::framing::{Flag, Scanner};

/// The first flag raised while feeding `pieces` one after the other.
fn verdict<'a>(max_head: usize, pieces: impl Iterator<Item = &'a [u8]>) -> Option<Flag> {
    let mut scanner = Scanner::new(max_head);
    pieces.into_iter().find_map(|piece| scanner.feed(piece))
}

fuzz_target!(|data: &[u8]| {
    let [limit, cut, stream @ ..] = data else {
        return;
    };
    let max_head = 64 + usize::from(*limit) * 32;
    let whole = verdict(max_head, std::iter::once(stream));
    let bytewise = verdict(max_head, stream.chunks(1));
    assert_eq!(whole, bytewise, "the verdict changed when the bytes came one at a time");
    let size = usize::from(cut % 13) + 2;
    let cut_up = verdict(max_head, stream.chunks(size));
    assert_eq!(whole, cut_up, "the verdict changed with {size}-byte segments");
});
