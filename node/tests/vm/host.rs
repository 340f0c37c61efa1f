//! Host functions against known answers: the probe contract `host.wat` calls one group of `env`
//! functions per action (the first data byte picks it) and prints what they answered; hashes
//! are compared with the published digests of "abc", key recovery with a signature made by
//! rempart-core, and each failing call with the error Antelope gives.

use rempart_core::Checksum256;
use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::to_bytes;
use rempart_node::vm::VmError;

use super::common::{Chain, n};

const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

fn chain() -> Chain {
    let chain = Chain::new(&["probe", "alice"]);
    let code = wat::parse_str(include_str!("host.wat")).expect("host.wat");
    chain.set_code("probe", &code).expect("setcode");
    chain
}

/// Runs probe `op` with `args`, authorised by alice@active: its console, or its error.
fn probe(chain: &Chain, op: u8, args: &[u8]) -> Result<String, VmError> {
    let mut data = vec![op];
    data.extend_from_slice(args);
    chain.push("probe", "go", &["alice"], data).map(|p| p.outcome.console)
}

#[test]
fn hashes_of_abc_match_the_published_digests() {
    let console = probe(&chain(), 0, &[]).expect("hashes");
    let parts: Vec<&str> = console.split(' ').collect();
    assert_eq!(
        parts,
        [
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad",
            "a9993e364706816aba3e25717850c26c9cd0d89d",
            "ddaf35a193617abacc417349ae20413112e6fa4e89a97ea20a9eeee64b55d39a\
             2192992a274fc1a836ba3c23a3feebbd454d4423643ce80e2a9ac94fa54ca49f",
            "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc",
        ]
    );
}

#[test]
fn assert_sha256_passes_on_the_right_hash_and_fails_on_any_other() {
    let chain = chain();
    let mut hash = Checksum256::hash(b"abc").0;
    assert_eq!(probe(&chain, 1, &hash).expect("right hash"), "ok");
    hash[31] ^= 1;
    let before = chain.state();
    match probe(&chain, 1, &hash) {
        Err(VmError::Crypto(m)) => assert!(m.contains("sha256 hash mismatch"), "{m}"),
        other => panic!("expected a hash mismatch, got {other:?}"),
    }
    assert_eq!(chain.state(), before);
}

/// A K1 signature by the development key over sha256("rempart"): (digest, packed signature,
/// packed public key).
fn signed() -> (Vec<u8>, Vec<u8>, Vec<u8>) {
    let key: PrivateKey = DEV_WIF.parse().expect("key");
    let digest = Checksum256::hash(b"rempart");
    let sig = key.sign(&digest);
    (digest.0.to_vec(), to_bytes(&sig), to_bytes(&key.public_key()))
}

/// recover_key's arguments: the output buffer size, the digest, the signature.
fn recover_args(out_len: u8, digest: &[u8], sig: &[u8]) -> Vec<u8> {
    let mut args = vec![out_len];
    args.extend_from_slice(digest);
    args.extend_from_slice(sig);
    args
}

#[test]
fn recover_key_returns_the_signers_packed_key() {
    let chain = chain();
    let (digest, sig, key) = signed();
    assert_eq!(sig.len(), 66, "K1 signature: type byte and 65 bytes");
    assert_eq!(key.len(), 34, "K1 key: type byte and 33 bytes");
    let expected = format!("34 {}", hex::encode(&key));
    for out_len in [34, 35, 200] {
        let console = probe(&chain, 2, &recover_args(out_len, &digest, &sig)).expect("recover");
        assert_eq!(console, expected, "buffer of {out_len} bytes");
    }
    // As Leap, the signature is read from the front of its buffer; bytes after it are ignored.
    let mut long = sig.clone();
    long.extend_from_slice(&[0xAA; 5]);
    let console = probe(&chain, 2, &recover_args(34, &digest, &long)).expect("trailing bytes");
    assert_eq!(console, expected);
    // Another digest recovers another key.
    let mut other = digest.clone();
    other[0] ^= 1;
    let console = probe(&chain, 2, &recover_args(34, &other, &sig)).expect("other digest");
    assert_ne!(console, expected);
    assert!(console.starts_with("34 00"), "still a K1 key: {console}");
}

#[test]
fn recover_key_into_a_short_buffer_fails_for_k1_as_in_leap() {
    // Leap copies min(buffer, size) and returns the size only for key types newer than K1 and
    // R1 (WebAuthn, which rempart refuses); for K1 and R1 it packs into the buffer, and a buffer
    // shorter than the 34-byte key fails the action.
    let chain = chain();
    let (digest, sig, _) = signed();
    for out_len in [0, 1, 33] {
        match probe(&chain, 2, &recover_args(out_len, &digest, &sig)) {
            Err(VmError::Crypto(m)) => {
                assert!(m.contains("smaller than the 34"), "{out_len}: {m}")
            }
            other => panic!("buffer of {out_len}: expected a crypto error, got {other:?}"),
        }
    }
}

#[test]
fn recover_key_refuses_a_signature_that_does_not_unpack() {
    let chain = chain();
    let (digest, sig, _) = signed();
    for bad in [&sig[..10], &[9u8; 66][..], &[][..]] {
        match probe(&chain, 2, &recover_args(34, &digest, bad)) {
            Err(VmError::Crypto(m)) => assert!(m.contains("signature"), "{m}"),
            other => panic!("expected a crypto error, got {other:?}"),
        }
    }
}

fn assert_recover_args(digest: &[u8], sig: &[u8], key: &[u8]) -> Vec<u8> {
    [digest, sig, key].concat()
}

#[test]
fn assert_recover_key_accepts_the_signer_and_refuses_any_other_key() {
    let chain = chain();
    let (digest, sig, key) = signed();
    let ok = probe(&chain, 3, &assert_recover_args(&digest, &sig, &key)).expect("signer");
    assert_eq!(ok, "ok");
    // As Leap, the key is unpacked from the front of its buffer.
    let mut long = key.clone();
    long.extend_from_slice(&[0xAA; 3]);
    let ok = probe(&chain, 3, &assert_recover_args(&digest, &sig, &long)).expect("trailing");
    assert_eq!(ok, "ok");

    let stranger = to_bytes(&PrivateKey::generate(KeyType::K1).public_key());
    match probe(&chain, 3, &assert_recover_args(&digest, &sig, &stranger)) {
        Err(VmError::Crypto(m)) => {
            assert_eq!(m, "Error expected key different than recovered key")
        }
        other => panic!("expected a key mismatch, got {other:?}"),
    }
    match probe(&chain, 3, &assert_recover_args(&digest, &sig, &key[..20])) {
        Err(VmError::Crypto(m)) => assert!(m.contains("public key does not unpack"), "{m}"),
        other => panic!("expected an unpack error, got {other:?}"),
    }
}

#[test]
fn context_and_console_functions_print_what_antelope_prints() {
    let chain = chain();
    let console = probe(&chain, 4, &[]).expect("context");
    let receiver = n("probe").0;
    let now = chain.now.0;
    assert_eq!(console, format!("{receiver} probe {now} {now} -5 18446744073709551615"));
}

#[test]
fn require_auth2_needs_the_exact_actor_and_permission() {
    let chain = chain();
    let args = |actor: &str, perm: &str| [to_bytes(&n(actor)), to_bytes(&n(perm))].concat();
    assert_eq!(probe(&chain, 5, &args("alice", "active")).expect("declared"), "ok");
    for (actor, perm) in [("alice", "owner"), ("probe", "active")] {
        match probe(&chain, 5, &args(actor, perm)) {
            Err(VmError::MissingAuth(who)) => assert_eq!(who, n(actor)),
            other => panic!("{actor}@{perm}: expected missing authority, got {other:?}"),
        }
    }
}

#[test]
fn eosio_assert_message_and_abort_fail_the_action() {
    let chain = chain();
    let before = chain.state();
    match probe(&chain, 6, b"balance too low") {
        Err(e @ VmError::Assert(_)) => {
            assert_eq!(e.to_string(), "assertion failure with message: balance too low");
            assert_eq!(e.nodeos().1, "eosio_assert_message_exception");
        }
        other => panic!("expected the assertion, got {other:?}"),
    }
    match probe(&chain, 7, &[]) {
        Err(e @ VmError::Abort) => assert_eq!(e.nodeos().1, "abort_called"),
        other => panic!("expected abort, got {other:?}"),
    }
    assert_eq!(chain.state(), before);
}

#[test]
fn memmove_handles_overlap_and_memcmp_returns_the_sign() {
    let console = probe(&chain(), 8, &[]).expect("memory helpers");
    assert_eq!(console, "ababcd abcdcd -1 0 1 0");
}

#[test]
fn producer_and_parameter_intrinsics_are_harmless() {
    let chain = chain();
    // Reads answer "nothing": no producers, not privileged, no feature, unlimited resources.
    assert_eq!(probe(&chain, 9, &[]).expect("reads"), "0 0 0 -1 -1 -1");
    let before = chain.state();
    for (op, name) in [
        (10, "set_proposed_producers"),
        (11, "get_blockchain_parameters_packed"),
        (12, "set_blockchain_parameters_packed"),
        (13, "set_privileged"),
        (14, "set_resource_limits"),
        (15, "preactivate_feature"),
    ] {
        match probe(&chain, op, &[]) {
            Err(e @ VmError::Unaccessible(_)) => {
                assert!(e.to_string().starts_with(name), "{e}");
                assert_eq!(e.nodeos().1, "unaccessible_api");
            }
            other => panic!("{name}: expected a refusal, got {other:?}"),
        }
    }
    assert_eq!(chain.state(), before);
}
