//! A producer that restarts after a block was sent for signing keeps making that very block
//! while the signer's answer is unknown: a signer that signed it (late, under load) would
//! refuse any other block at that height for ever. Only an explicit refusal frees the height.

use std::path::Path;
use std::sync::Arc;

use rempart_core::BlockTimestamp;
use rempart_core::key::PrivateKey;
use rempart_node::chain::{BlockError, Chain, ChainOptions, SignFailure};
use rempart_node::config::Limits;
use rempart_node::store::Store;

mod support;

use support::genesis;

const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

/// The answer a node killed mid-request never got.
fn killed() -> SignFailure {
    SignFailure::NoAnswer("node killed".into())
}

fn dev() -> PrivateKey {
    DEV_WIF.parse().expect("dev key")
}

fn open(dir: &Path) -> Chain {
    let store = Arc::new(Store::open(&dir.join("state.redb")).expect("store"));
    let options =
        ChainOptions { limits: Limits::default(), sign_intent: Some(dir.join("sign-intent.bin")) };
    Chain::open_with(store, &genesis(), options).expect("chain")
}

/// The slot and digest of the block the chain asks to sign, failing with `answer`.
fn attempt(chain: &Chain, slot: BlockTimestamp, answer: SignFailure) -> (BlockTimestamp, [u8; 32]) {
    let pending = chain.start_block(slot).expect("start");
    let mut digest = None;
    let e = chain
        .finish_block(|req| {
            digest = Some(*req.digest().as_bytes());
            Err(answer.clone())
        })
        .expect_err("not signed");
    match answer {
        SignFailure::Refused(_) => assert!(matches!(e, BlockError::Refused { .. }), "{e}"),
        _ => assert!(matches!(e, BlockError::Signer { .. }), "{e}"),
    }
    (pending.timestamp, digest.expect("a sign request"))
}

#[test]
fn without_an_answer_the_block_sent_again_keeps_its_height_until_an_explicit_refusal() {
    let dir = tempfile::tempdir().expect("tempdir");
    let chain = open(dir.path());
    let slot = chain.info().head_block_time.next();
    // Sent, then the node dies: the answer never arrived.
    let first = attempt(&chain, slot, killed());
    drop(chain);

    let chain = open(dir.path());
    // After the restart the signer is slow: the recorded block is sent again several times
    // without an answer, and each time the very same block comes back.
    for k in 1..4 {
        let again = attempt(
            &chain,
            BlockTimestamp(slot.0 + 10 * k),
            SignFailure::NoAnswer(
                "no answer from the signer at unix:signer.sock before the deadline".into(),
            ),
        );
        assert_eq!(again, first, "attempt {k}: the same block, so a signature given is replayed");
    }
    // The signer answers at last: the recorded block is committed as block 2.
    assert_eq!(sign_started(&chain, BlockTimestamp(slot.0 + 50), first.1), 2);

    // An explicit refusal of a block sent again frees the height: the next block is new.
    let slot = chain.info().head_block_time.next();
    let sent = attempt(&chain, slot, killed());
    let again = attempt(
        &chain,
        BlockTimestamp(slot.0 + 5),
        SignFailure::Refused(
            "the signer refused (clock_skew): block 3 timestamp is 9000 ms from this signer's clock"
                .into(),
        ),
    );
    assert_eq!(again, sent, "the block is sent again once");
    let fresh = attempt(&chain, BlockTimestamp(slot.0 + 6), killed());
    assert_eq!(fresh.0, BlockTimestamp(slot.0 + 6), "a new block in the slot asked for");
    assert_ne!(fresh.1, sent.1);
}

/// Starts the block of `slot`, checks it is the block of `digest` and signs it with the dev key.
fn sign_started(chain: &Chain, slot: BlockTimestamp, digest: [u8; 32]) -> u32 {
    chain.start_block(slot).expect("start");
    chain
        .finish_block(|req| {
            assert_eq!(*req.digest().as_bytes(), digest, "the recorded block");
            Ok(dev().sign(&req.digest()))
        })
        .expect("committed")
        .block_num
}
