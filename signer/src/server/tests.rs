use rempart_core::block::BlockHeader;
use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::{BlockTimestamp, Name, TimePoint};

use std::path::Path;

use super::*;
use crate::keyring::soft::SoftBackend;

const POLICY: &str = r#"
[chain]
id = "0101010101010101010101010101010101010101010101010101010101010101"
dangerous_dev_chain = true
max_clock_skew_ms = 2000
[[producers]]
account = "eosio"
key = "KEY"
[backend]
kind = "soft"
[backend.soft]
key_files = ["/unused"]
[listen]
unix_socket = "/unused.sock"
allow_own_uid = true
[state]
dir = "DIR"
audit_log = "DIR/audit.jsonl"
"#;

struct Fixture {
    _dir: tempfile::TempDir,
    signer: Arc<Signer>,
    key: PublicKey,
}

fn policy_for(dir: &Path, key: &PublicKey) -> Policy {
    let text = POLICY.replace("KEY", &key.to_string()).replace("DIR", dir.to_str().unwrap());
    Policy::from_toml(Path::new("/t/signer.toml"), &text).unwrap()
}

fn ring(keys: Vec<PrivateKey>, metrics: &Arc<Metrics>) -> Keyring {
    Keyring::new(Box::new(SoftBackend::from_keys(keys)), 8, metrics.clone()).unwrap()
}

fn fixture_with_key() -> Fixture {
    let private = PrivateKey::generate(KeyType::K1);
    let dir = tempfile::tempdir().unwrap();
    let key = private.public_key();
    let policy = policy_for(dir.path(), &key);
    Guard::new(dir.path())
        .init(
            &GuardKey { chain_id: policy.chain_id, producer: Name::from_const("eosio"), key },
            0,
            BlockTimestamp(0),
        )
        .unwrap();
    let metrics = Arc::new(Metrics::default());
    let signer = Signer::new(policy, ring(vec![private], &metrics), metrics).unwrap();
    Fixture { signer: Arc::new(signer), _dir: dir, key }
}

#[test]
fn start_refuses_without_guard_state_or_key() {
    let private = PrivateKey::generate(KeyType::K1);
    let dir = tempfile::tempdir().unwrap();
    let policy = policy_for(dir.path(), &private.public_key());
    let metrics = Arc::new(Metrics::default());
    let err =
        Signer::new(policy.clone(), ring(vec![private], &metrics), metrics.clone()).unwrap_err();
    assert!(err.to_string().contains("guard init"), "{err}");
    let err = Signer::new(policy, ring(vec![], &metrics), metrics).unwrap_err();
    assert!(matches!(err, ServerError::KeyNotHeld { .. }), "{err}");
}

fn now_slot() -> BlockTimestamp {
    BlockTimestamp::from_time_point(TimePoint::from_millis(now_ms()))
}

fn request(f: &Fixture, block_num: u32, slot: BlockTimestamp, salt: u8) -> SignBlockRequest {
    let mut previous = Checksum256([salt; 32]);
    previous.0[..4].copy_from_slice(&(block_num - 1).to_be_bytes());
    SignBlockRequest {
        request_id: u64::from(block_num),
        chain_id: f.signer.policy().chain_id,
        header: BlockHeader {
            timestamp: slot,
            producer: Name::from_const("eosio"),
            previous,
            ..Default::default()
        },
        blockroot_merkle_root: Checksum256([3; 32]),
        pending_schedule_hash: Checksum256([4; 32]),
        signing_key: f.key,
    }
}

fn sign(f: &Fixture, req: &SignBlockRequest) -> Result<SignBlockResponse, ErrorResponse> {
    match f.signer.handle(Request::SignBlock(req.clone()), "test") {
        Response::Signature(s) => Ok(s),
        Response::Error(e) => Err(e),
        other => panic!("unexpected {other:?}"),
    }
}

#[test]
fn signs_replays_and_refuses_double_signs() {
    let f = fixture_with_key();
    let slot = now_slot();
    let req = request(&f, 10, slot, 1);
    let first = sign(&f, &req).unwrap();
    assert!(first.signature.verify(&req.digest(), &f.key));
    assert_eq!(first.digest, req.digest());
    // Replay: identical signature.
    assert_eq!(sign(&f, &req).unwrap().signature, first.signature);
    // Same height, other digest.
    let other = request(&f, 10, slot, 2);
    assert_eq!(sign(&f, &other).unwrap_err().code, ErrorCode::DoubleSign);
    // Lower height.
    assert_eq!(sign(&f, &request(&f, 9, slot.next(), 2)).unwrap_err().code, ErrorCode::DoubleSign);
    // Higher height, same slot.
    assert_eq!(sign(&f, &request(&f, 11, slot, 2)).unwrap_err().code, ErrorCode::DoubleSign);
    // Next block.
    assert!(sign(&f, &request(&f, 11, slot.next(), 2)).is_ok());
    assert_eq!(f.signer.metrics().refusals("double_sign"), 3);
    let Response::Status(s) = f.signer.handle(Request::Status { request_id: 5 }, "t") else {
        panic!()
    };
    assert_eq!(s.last_signed[0].block_num, 11);
    assert_eq!(s.refusals, 3);
}

#[test]
fn refuses_wrong_chain_producer_key_and_skew() {
    let f = fixture_with_key();
    let slot = now_slot();
    let mut req = request(&f, 10, slot, 1);
    req.chain_id = Checksum256([9; 32]);
    assert_eq!(sign(&f, &req).unwrap_err().code, ErrorCode::WrongChain);
    let mut req = request(&f, 10, slot, 1);
    req.header.producer = Name::from_const("alice");
    assert_eq!(sign(&f, &req).unwrap_err().code, ErrorCode::UnknownKey);
    let mut req = request(&f, 10, slot, 1);
    req.signing_key = PrivateKey::generate(KeyType::K1).public_key();
    assert_eq!(sign(&f, &req).unwrap_err().code, ErrorCode::UnknownKey);
    let future = BlockTimestamp(slot.0 + 7200); // an hour ahead
    let e = sign(&f, &request(&f, 10, future, 1)).unwrap_err();
    assert_eq!(e.code, ErrorCode::ClockSkew);
    assert!(e.message.contains("NTP"));
    // Nothing was signed: the guard still accepts block 10 now.
    assert!(sign(&f, &request(&f, 10, slot, 1)).is_ok());
}

async fn roundtrip(f: &Fixture, bytes: &[u8]) -> Vec<Response> {
    let (mut client, server) = tokio::io::duplex(1 << 20);
    let limits = ConnectionLimits {
        request_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
    };
    let task = tokio::spawn(serve_connection(server, f.signer.clone(), "t".into(), limits));
    client.write_all(bytes).await.unwrap();
    client.shutdown().await.unwrap();
    let mut out = Vec::new();
    client.read_to_end(&mut out).await.unwrap();
    task.await.unwrap();
    let mut dec = FrameDecoder::new();
    let mut input = &out[..];
    let mut resps = Vec::new();
    while let Some(r) = dec.decode::<Response>(&mut input).unwrap() {
        resps.push(r);
    }
    resps
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn garbage_gets_error_frames_and_the_stream_goes_on() {
    let f = fixture_with_key();
    let good = encode_frame(&Request::PublicKeys { request_id: 3 }).unwrap();
    // A frame with a bad tag, one with a bad version, then a good request.
    let mut bytes = vec![2, 0, 0, 0, 1, 99];
    bytes.extend([1, 0, 0, 0, 7]);
    bytes.extend(&good);
    let resps = roundtrip(&f, &bytes).await;
    assert_eq!(resps.len(), 3, "{resps:?}");
    assert!(matches!(&resps[0], Response::Error(e) if e.code == ErrorCode::Malformed));
    assert!(matches!(&resps[1], Response::Error(e) if e.code == ErrorCode::UnsupportedVersion));
    assert!(matches!(&resps[2], Response::PublicKeys { request_id: 3, keys } if keys.len() == 1));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn oversized_frame_closes_the_connection() {
    let f = fixture_with_key();
    let mut bytes = (u32::MAX).to_le_bytes().to_vec();
    bytes.extend(encode_frame(&Request::Status { request_id: 1 }).unwrap());
    let resps = roundtrip(&f, &bytes).await;
    assert_eq!(resps.len(), 1);
    assert!(matches!(&resps[0], Response::Error(e) if e.message.contains("exceeds")));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn truncated_frame_gets_no_answer_and_a_response_frame_is_malformed() {
    let f = fixture_with_key();
    let good = encode_frame(&Request::Status { request_id: 1 }).unwrap();
    assert!(roundtrip(&f, &good[..good.len() - 1]).await.is_empty());
    // A response sent to the signer (out of order) is not a request.
    let resp = Response::Error(ErrorResponse {
        request_id: 1,
        code: ErrorCode::Busy,
        message: "x".into(),
    });
    let resps = roundtrip(&f, &encode_frame(&resp).unwrap()).await;
    assert!(matches!(&resps[0], Response::Error(e) if e.code == ErrorCode::Malformed));
}
