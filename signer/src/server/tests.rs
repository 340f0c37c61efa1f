use rempart_core::block::BlockHeader;
use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::{BlockTimestamp, Name, TimePoint};

use std::path::Path;
use std::sync::atomic::AtomicBool;

use super::*;
use crate::keyring::soft::SoftBackend;
use crate::server::testing::{policy, ring};

struct Fixture {
    _dir: tempfile::TempDir,
    signer: Arc<Signer>,
    key: PublicKey,
}

fn fixture_with_key() -> Fixture {
    let private = PrivateKey::generate(KeyType::K1);
    let dir = tempfile::tempdir().unwrap();
    let key = private.public_key();
    let policy = policy(dir.path(), &key);
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
    let policy = policy(dir.path(), &private.public_key());
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

#[test]
fn paused_refuses_new_signatures_answers_replays_and_status_says_so() {
    let f = fixture_with_key();
    let slot = now_slot();
    let signed = request(&f, 10, slot, 1);
    let first = sign(&f, &signed).unwrap();
    let status = |f: &Fixture| match f.signer.handle(Request::Status { request_id: 1 }, "t") {
        Response::Status(s) => s,
        other => panic!("unexpected {other:?}"),
    };
    assert!(!status(&f).paused);

    f.signer.set_paused(true);
    assert!(status(&f).paused);
    let e = sign(&f, &request(&f, 11, slot.next(), 1)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Paused);
    assert!(e.message.contains("paused by an administrator"), "{}", e.message);
    assert_eq!(f.signer.metrics().refusals("paused"), 1);
    // A repeat releases nothing new: it still gets the stored signature.
    assert_eq!(sign(&f, &signed).unwrap().signature, first.signature);
    assert_eq!(status(&f).last_signed[0].block_num, 10, "nothing signed while paused");

    f.signer.set_paused(false);
    assert!(!status(&f).paused);
    assert!(sign(&f, &request(&f, 11, slot.next(), 1)).is_ok());
}

#[test]
fn timing_splits_the_request() {
    let f = fixture_with_key();
    let req = request(&f, 10, now_slot(), 1);
    let (resp, t) = f.signer.handle_timed(Request::SignBlock(req.clone()), "t");
    assert!(matches!(resp, Response::Signature(_)), "{resp:?}");
    assert!(t.backend_calls >= 1);
    assert!(t.backend > Duration::ZERO && t.guard_commit > Duration::ZERO);
    assert!(t.audit > Duration::ZERO);
    // The guard intent is written while the HSM signs; the audit line after it.
    assert!(t.durable >= t.audit, "{t:?}");
    assert!(t.total >= t.backend + t.durable && t.total >= t.guard_commit, "{t:?}");
    // A replay does not touch the backend or the guard file.
    let (_, t) = f.signer.handle_timed(Request::SignBlock(req), "t");
    assert_eq!((t.backend_calls, t.backend, t.guard_commit), (0, Duration::ZERO, Duration::ZERO));
}

/// A listener whose `accept` always fails (as with EMFILE), counting the calls.
struct FailingListener(Arc<AtomicU64>);

impl Listener for FailingListener {
    type Stream = tokio::io::DuplexStream;
    const KIND: &'static str = "test";

    async fn accept_peer(&self, _: &PeerRules) -> std::io::Result<Admission<Self::Stream>> {
        self.0.fetch_add(1, Ordering::SeqCst);
        Err(std::io::Error::from_raw_os_error(24)) // EMFILE
    }
}

#[tokio::test(start_paused = true)]
async fn a_failing_accept_backs_off_instead_of_spinning() {
    let f = fixture_with_key();
    let calls = Arc::new(AtomicU64::new(0));
    let limits = ConnectionLimits {
        request_timeout: Duration::from_secs(2),
        idle_timeout: Duration::from_secs(2),
    };
    let serve = serve_listener(
        FailingListener(calls.clone()),
        Protocol::Frames(f.signer.clone()),
        Arc::new(PeerRules::default()),
        Arc::new(Semaphore::new(4)),
        limits,
    );
    // Ten seconds of (paused, auto-advancing) time: waits of 10, 20, … 640 ms, then 1 s each.
    let ended = tokio::time::timeout(Duration::from_secs(10), serve).await;
    assert!(ended.is_err(), "the loop keeps running");
    let n = calls.load(Ordering::SeqCst);
    assert!((15..=17).contains(&n), "{n} accept calls in 10 s");
}

#[test]
fn a_failed_guard_commit_releases_nothing_and_says_so_after_its_audit_line() {
    let f = fixture_with_key();
    let policy = f.signer.policy();
    let gkey =
        GuardKey { chain_id: policy.chain_id, producer: Name::from_const("eosio"), key: f.key };
    let state = f.signer.guard.path(&gkey);
    // A directory where the guard writes its temporary file: the durable commit fails.
    let name = state.file_name().unwrap().to_str().unwrap();
    let blocker = state.with_file_name(format!(".{name}.tmp"));
    std::fs::create_dir(&blocker).unwrap();
    let slot = now_slot();
    let req = request(&f, 10, slot, 1);
    let e = sign(&f, &req).unwrap_err();
    assert_eq!(e.code, ErrorCode::Internal);
    assert_eq!(f.signer.metrics().refusals("guard_io"), 1);
    let on_disk = f.signer.guard.load(&gkey).unwrap();
    assert!(on_disk.last.is_none() && on_disk.intent.is_none(), "nothing committed");
    let lines: Vec<serde_json::Value> = std::fs::read_to_string(&policy.audit_log)
        .unwrap()
        .lines()
        .map(|l| serde_json::from_str(l).unwrap())
        .collect();
    let n = lines.len();
    assert!(n >= 1, "{lines:?}");
    assert_eq!(lines[n - 1]["event"], "refusal");
    assert_eq!(lines[n - 1]["reason"], "guard_io");
    assert_eq!(lines[n - 1]["block_num"], 10);
    // The signature line was written while the guard failed; the refusal says the signature
    // was not released.
    assert_eq!(lines[n - 2]["event"], "signature");
    assert_eq!(lines[n - 2]["block_num"], 10);
    assert!(e.message.contains("NOT released"), "{}", e.message);

    // Once the operator clears the way, the same request is signed and released.
    std::fs::remove_dir(&blocker).unwrap();
    let signed = sign(&f, &req).unwrap();
    assert!(signed.signature.verify(&req.digest(), &f.key));
    assert_eq!(f.signer.guard.load(&gkey).unwrap().intent.unwrap().block_num, 10);
    assert_eq!(crate::audit::verify(&policy.audit_log).unwrap().lines, n as u64 + 1);
}

/// A soft backend whose HSM calls fail while `fail` is set, and, with a gate, say they
/// started and then wait for the test's go.
struct Flaky {
    inner: SoftBackend,
    fail: Arc<AtomicBool>,
    gate: Option<Gate>,
}

struct Gate {
    started: Mutex<std::sync::mpsc::Sender<()>>,
    go: Mutex<std::sync::mpsc::Receiver<()>>,
}

impl crate::keyring::Backend for Flaky {
    fn kind(&self) -> &'static str {
        "soft"
    }
    fn public_keys(&self) -> Vec<PublicKey> {
        self.inner.public_keys()
    }
    fn sign_raw(
        &self,
        key: &PublicKey,
        digest: &[u8; 32],
    ) -> Result<[u8; 64], crate::keyring::KeyringError> {
        if let Some(gate) = &self.gate {
            let _ = gate.started.lock().unwrap().send(());
            let _ = gate.go.lock().unwrap().recv();
        }
        if self.fail.load(Ordering::SeqCst) {
            return Err(crate::keyring::KeyringError::Module {
                path: "flaky".into(),
                message: "the token went away".into(),
            });
        }
        self.inner.sign_raw(key, digest)
    }
}

/// A signer over `dir` (guard initialised by the caller) whose backend fails on demand.
fn start_flaky(dir: &Path, private: &PrivateKey, fail: &Arc<AtomicBool>) -> Fixture {
    start_on(dir, private, fail.clone(), None)
}

fn start_on(
    dir: &Path,
    private: &PrivateKey,
    fail: Arc<AtomicBool>,
    gate: Option<Gate>,
) -> Fixture {
    let key = private.public_key();
    let metrics = Arc::new(Metrics::default());
    let backend = Flaky { inner: SoftBackend::from_keys(vec![private.clone()]), fail, gate };
    let ring = Keyring::new(Box::new(backend), 8, metrics.clone()).unwrap();
    let signer = Signer::new(policy(dir, &key), ring, metrics).unwrap();
    Fixture { signer: Arc::new(signer), _dir: tempfile::tempdir().unwrap(), key }
}

fn last_audit_line(policy: &Policy) -> serde_json::Value {
    let text = std::fs::read_to_string(&policy.audit_log).unwrap();
    serde_json::from_str(text.lines().last().unwrap()).unwrap()
}

/// A state directory with an initialised guard for a new K1 key, and the switch of a
/// [`Flaky`] backend (off).
struct FlakySetup {
    dir: tempfile::TempDir,
    private: PrivateKey,
    key: PublicKey,
    gkey: GuardKey,
    guard: Guard,
    fail: Arc<AtomicBool>,
}

fn flaky_setup() -> FlakySetup {
    setup_with(KeyType::K1)
}

fn setup_with(key_type: KeyType) -> FlakySetup {
    let dir = tempfile::tempdir().unwrap();
    let private = PrivateKey::generate(key_type);
    let key = private.public_key();
    let gkey = GuardKey {
        chain_id: policy(dir.path(), &key).chain_id,
        producer: Name::from_const("eosio"),
        key,
    };
    let guard = Guard::new(dir.path());
    guard.init(&gkey, 0, BlockTimestamp(0)).unwrap();
    FlakySetup { dir, private, key, gkey, guard, fail: Arc::new(AtomicBool::new(false)) }
}

/// The intent a crash would leave for `req` if it came right after `f`'s last audit line: the
/// audit log then proves it was never released.
fn unreleased_intent(f: &Fixture, req: &SignBlockRequest) -> Intent {
    let (audit_seq, audit_hash) = f.signer.audit.position();
    Intent {
        block_num: req.header.block_num(),
        slot: req.header.timestamp,
        digest: req.digest(),
        audit_seq,
        audit_hash,
    }
}

#[test]
fn a_restart_reads_what_happened_to_the_last_intent_from_the_audit_log() {
    let FlakySetup { dir, private, key, gkey, guard, fail } = flaky_setup();
    // Slots from one second ago to two ahead, all within the policy's clock skew.
    let slot = BlockTimestamp(now_slot().0 - 2);

    // Released, then a restart: the same request is a replay (no HSM call), another block at
    // that height is a double sign.
    let f = start_flaky(dir.path(), &private, &fail);
    let req = request(&f, 10, slot, 1);
    let first = sign(&f, &req).unwrap();
    drop(f);
    let f = start_flaky(dir.path(), &private, &fail);
    let (resp, t) = f.signer.handle_timed(Request::SignBlock(req.clone()), "t");
    assert!(matches!(resp, Response::Signature(ref s) if s.signature == first.signature));
    assert_eq!(t.backend_calls, 0, "the stored signature, not a new one");
    assert_eq!(last_audit_line(f.signer.policy())["replay"], true);
    let e = sign(&f, &request(&f, 10, slot.next(), 2)).unwrap_err();
    assert_eq!(e.code, ErrorCode::DoubleSign, "{}", e.message);

    // The HSM fails on block 11: nothing left, so block 11 may still be signed another way
    // (a later slot, another digest), by this process and after a restart.
    fail.store(true, Ordering::SeqCst);
    let e = sign(&f, &request(&f, 11, slot.next(), 1)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Backend, "{}", e.message);
    // Whether block 11's intent reached the disk or not, block 10 still replays.
    let (resp, t) = f.signer.handle_timed(Request::SignBlock(req.clone()), "t");
    assert!(matches!(resp, Response::Signature(ref s) if s.signature == first.signature));
    assert_eq!(t.backend_calls, 0);
    fail.store(false, Ordering::SeqCst);
    let second = request(&f, 11, BlockTimestamp(slot.0 + 2), 2);
    sign(&f, &second).unwrap();

    // An intent made durable, then a crash before any signature line: after the restart the
    // audit log proves it never left, and another block at its height is signed.
    let state = guard.load(&gkey).unwrap();
    let crashed_req = request(&f, 12, BlockTimestamp(slot.0 + 3), 9);
    let crashed = unreleased_intent(&f, &crashed_req);
    drop(f);
    let before_crash = state.with_intent(None, crashed.clone());
    guard.write_state(&before_crash).unwrap();
    let f = start_flaky(dir.path(), &private, &fail);
    sign(&f, &request(&f, 12, BlockTimestamp(slot.0 + 4), 1)).unwrap();
    drop(f);

    // The same crash, but the audit log was replaced before the restart: the intent may have
    // left, so no other block is signed at its height.
    guard.write_state(&before_crash).unwrap();
    let policy = policy(dir.path(), &key);
    std::fs::rename(&policy.audit_log, dir.path().join("audit.old")).unwrap();
    let f = start_flaky(dir.path(), &private, &fail);
    let e = sign(&f, &request(&f, 12, BlockTimestamp(slot.0 + 5), 3)).unwrap_err();
    assert_eq!(e.code, ErrorCode::DoubleSign, "{}", e.message);
    assert!(e.message.contains("block 12"), "{}", e.message);
    // Nor the crashed intent's own block: whether (and with which signature) it left is lost.
    let e = sign(&f, &crashed_req).unwrap_err();
    assert_eq!(e.code, ErrorCode::DoubleSign, "{}", e.message);
    assert!(e.message.contains("may already have been signed"), "{}", e.message);
    let e = sign(&f, &request(&f, 13, BlockTimestamp(slot.0 + 3), 3)).unwrap_err();
    assert_eq!(e.code, ErrorCode::DoubleSign, "not above its slot: {}", e.message);
    sign(&f, &request(&f, 13, BlockTimestamp(slot.0 + 6), 3)).unwrap();
}

/// A crash right after the audit log was sealed: the signature line of the intent left on
/// disk is in the sealed log, not the live one. The restart reads that sealed log too, so the
/// same request replays the released signature instead of the block counting as lost.
#[test]
fn a_restart_finds_a_released_signature_in_the_log_sealed_just_before() {
    let FlakySetup { dir, private, key, gkey, guard, fail } = flaky_setup();
    let slot = BlockTimestamp(now_slot().0 - 2);
    let f = start_flaky(dir.path(), &private, &fail);
    let req = request(&f, 10, slot, 1);
    let before = guard.load(&gkey).unwrap();
    let intent = unreleased_intent(&f, &req);
    let first = sign(&f, &req).unwrap();
    drop(f);
    // The guard commit of block 10 never reached the disk; its audit line did, and then the
    // log was sealed (another request's append) before the crash.
    guard.write_state(&before.with_intent(None, intent)).unwrap();
    let path = policy(dir.path(), &key).audit_log;
    let mut log = AuditLog::open_segmented(&path, Some(1), false, &mut |_| {}).unwrap();
    log.append(&AuditEvent::Stop { reason: "crash".into() }).unwrap();
    drop(log);
    let live = std::fs::read_to_string(&path).unwrap();
    assert!(live.lines().next().unwrap().contains("\"continued\""), "{live}");
    assert!(!live.contains("\"signature\":\"SIG_"), "the signature line is in the sealed log");

    let f = start_flaky(dir.path(), &private, &fail);
    let (resp, t) = f.signer.handle_timed(Request::SignBlock(req.clone()), "t");
    assert!(matches!(resp, Response::Signature(ref s) if s.signature == first.signature));
    assert_eq!(t.backend_calls, 0, "the stored signature, not a new one");
    let e = sign(&f, &request(&f, 10, slot.next(), 2)).unwrap_err();
    assert_eq!(e.code, ErrorCode::DoubleSign, "{}", e.message);
}

/// Holds the guard worker until the returned sender is dropped: a guard write asked for
/// meanwhile waits behind it, so an HSM failure always withdraws that write before it starts.
fn hold_guard_worker(f: &Fixture) -> (std::sync::mpsc::Sender<()>, crate::worker::Ticket<()>) {
    let (release, held) = std::sync::mpsc::channel::<()>();
    let ticket = f.signer.guard_worker.run(move || {
        let _ = held.recv();
    });
    (release, ticket)
}

/// HSM failures in a row whose guard writes never started (the token gone, as in the SoftHSM2
/// test that once caught this) leave the disk as it was, and the signer keeps knowing what the
/// intent on disk is: a released block still replays, an unreleased one is not counted as
/// signed, and its height may be signed with another digest.
#[test]
fn failures_whose_intent_never_reached_the_disk_forget_nothing_about_the_one_there() {
    let FlakySetup { dir, private, key, gkey, guard, fail } = flaky_setup();
    let slot = BlockTimestamp(now_slot().0 - 2);
    let fails_unwritten = |f: &Fixture, block_num: u32, slot: BlockTimestamp| {
        let (release, held) = hold_guard_worker(f);
        let e = sign(f, &request(f, block_num, slot, 1)).unwrap_err();
        assert_eq!(e.code, ErrorCode::Backend, "{}", e.message);
        drop(release);
        held.wait().unwrap();
    };

    // Block 10 released, then two failures: the disk still holds block 10's intent, which
    // still replays without the HSM.
    let f = start_flaky(dir.path(), &private, &fail);
    let released = request(&f, 10, slot, 1);
    let first = sign(&f, &released).unwrap();
    fail.store(true, Ordering::SeqCst);
    fails_unwritten(&f, 11, slot.next());
    fails_unwritten(&f, 12, BlockTimestamp(slot.0 + 2));
    assert_eq!(guard.load(&gkey).unwrap().intent.unwrap().block_num, 10, "nothing written");
    let (resp, t) = f.signer.handle_timed(Request::SignBlock(released.clone()), "t");
    assert!(
        matches!(resp, Response::Signature(ref s) if s.signature == first.signature),
        "{resp:?}"
    );
    assert_eq!(t.backend_calls, 0);
    drop(f);

    // An intent on disk that the audit log proves unreleased (a crash before its signature
    // line), then two failures after the restart: it is still known unreleased.
    let state = guard.load(&gkey).unwrap();
    let f = start_flaky(dir.path(), &private, &fail);
    let intent = unreleased_intent(&f, &request(&f, 11, slot.next(), 9));
    drop(f);
    guard.write_state(&state.with_intent(None, intent)).unwrap();
    let f = start_flaky(dir.path(), &private, &fail);
    fails_unwritten(&f, 12, BlockTimestamp(slot.0 + 2));
    fails_unwritten(&f, 13, BlockTimestamp(slot.0 + 3));
    assert_eq!(guard.load(&gkey).unwrap().intent.unwrap().block_num, 11, "nothing written");
    let status = f.signer.status(1);
    assert_eq!(status.last_signed[0].block_num, 10, "block 11 never left: {status:?}");
    fail.store(false, Ordering::SeqCst);
    let other = request(&f, 11, BlockTimestamp(slot.0 + 4), 2);
    let signed = sign(&f, &other).unwrap();
    assert!(signed.signature.verify(&other.digest(), &key));
}

/// Outside the daemon's multi-thread runtime the handler goes to the blocking pool instead of
/// `block_in_place` (which a current-thread runtime does not allow): requests are still
/// answered, a signature included.
#[tokio::test]
async fn a_current_thread_runtime_answers_through_the_blocking_pool() {
    let f = fixture_with_key();
    let signed = request(&f, 10, now_slot(), 1);
    let mut bytes = encode_frame(&Request::Status { request_id: 1 }).unwrap();
    bytes.extend(encode_frame(&Request::SignBlock(signed)).unwrap());
    let resps = roundtrip(&f, &bytes).await;
    assert_eq!(resps.len(), 2, "{resps:?}");
    assert!(matches!(&resps[0], Response::Status(s) if s.request_id == 1), "{resps:?}");
    assert!(matches!(&resps[1], Response::Signature(s) if s.block_num == 10), "{resps:?}");
}

/// A signer over `dir` (guard initialised by the caller, for an R1 key: one backend call per
/// signature) whose backend calls wait at a gate: the receiver hears of each call, the sender
/// lets one go.
fn start_gated(
    dir: &Path,
    private: &PrivateKey,
) -> (Fixture, std::sync::mpsc::Receiver<()>, std::sync::mpsc::Sender<()>) {
    let (started_tx, started) = std::sync::mpsc::channel();
    let (go, go_rx) = std::sync::mpsc::channel();
    let gate = Gate { started: Mutex::new(started_tx), go: Mutex::new(go_rx) };
    (start_on(dir, private, Arc::default(), Some(gate)), started, go)
}

/// Every line of `f`'s audit log, parsed.
fn audit_lines(f: &Fixture) -> Vec<serde_json::Value> {
    let text = std::fs::read_to_string(&f.signer.policy().audit_log).unwrap();
    text.lines().map(|l| serde_json::from_str(l).unwrap()).collect()
}

/// A gated signer that signed block 10 (so its audit log has a line before the next intent,
/// as the daemon's start line makes sure in service) and is signing block 11, which waits at
/// the HSM for `go`.
struct AtTheHsm {
    dir: tempfile::TempDir,
    private: PrivateKey,
    f: Arc<Fixture>,
    go: std::sync::mpsc::Sender<()>,
    slot: BlockTimestamp,
    block_11: std::thread::JoinHandle<Result<SignBlockResponse, ErrorResponse>>,
}

fn block_11_at_the_hsm() -> AtTheHsm {
    let FlakySetup { dir, private, .. } = setup_with(KeyType::R1);
    let (f, started, go) = start_gated(dir.path(), &private);
    let f = Arc::new(f);
    let slot = now_slot();
    go.send(()).unwrap();
    sign(&f, &request(&f, 10, slot, 1)).unwrap();
    started.recv().unwrap();
    let block_11 = {
        let f = f.clone();
        std::thread::spawn(move || sign(&f, &request(&f, 11, slot.next(), 1)))
    };
    started.recv().unwrap();
    AtTheHsm { dir, private, f, go, slot, block_11 }
}

/// A stop waits for the signature being made, refuses what comes meanwhile and after, and its
/// line is the audit log's last: no signature is recorded, or released, after "stop".
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stop_waits_for_the_signature_in_flight_and_is_the_audit_logs_last_line() {
    // Block 11 is at the HSM when the stop comes.
    let AtTheHsm { f, go, slot, block_11: in_flight, dir: _dir, .. } = block_11_at_the_hsm();
    let signer = f.signer.clone();
    let stop = tokio::spawn(async move { signer.stop("test", Duration::from_secs(60)).await });
    while !f.signer.stopping.load(Ordering::SeqCst) {
        tokio::task::yield_now().await;
    }

    // Meanwhile a new block is refused before it reaches the HSM, and says why.
    let e = sign(&f, &request(&f, 12, BlockTimestamp(slot.0 + 2), 1)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Busy, "{}", e.message);
    assert!(e.message.contains("the signer is stopping"), "{}", e.message);

    go.send(()).unwrap();
    let signed = in_flight.join().unwrap().expect("the signature in flight is made and released");
    assert_eq!(signed.block_num, 11);
    tokio::time::timeout(Duration::from_secs(60), stop).await.unwrap().unwrap().unwrap();

    let lines = audit_lines(&f);
    let events: Vec<&str> = lines.iter().map(|l| l["event"].as_str().unwrap()).collect();
    assert_eq!(events.last(), Some(&"stop"), "{events:?}");
    let eleven = lines.iter().position(|l| l["event"] == "signature" && l["block_num"] == 11);
    assert!(eleven.is_some_and(|i| i < lines.len() - 1), "{events:?}");

    // After the stop: refused, and the log is left as it is.
    let e = sign(&f, &request(&f, 13, BlockTimestamp(slot.0 + 3), 1)).unwrap_err();
    assert_eq!(e.code, ErrorCode::Busy, "{}", e.message);
    assert_eq!(audit_lines(&f).len(), lines.len(), "nothing is audited after the stop line");
    crate::audit::verify(&f.signer.policy().audit_log).unwrap();
    assert!(f.signer.stop("again", Duration::ZERO).await.is_err(), "one stop line only");
}

/// A signature still at the HSM when the stop's drain ends is refused when it comes back (its
/// audit line cannot follow the stop line), so it is never released; after a restart its
/// height is free to sign.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_signature_that_outlives_the_drain_is_not_released() {
    let AtTheHsm { dir, private, f, go, slot, block_11: late } = block_11_at_the_hsm();
    f.signer.stop("test", Duration::from_millis(50)).await.unwrap();
    go.send(()).unwrap();
    let e = late.join().unwrap().unwrap_err();
    assert_eq!(e.code, ErrorCode::Busy, "{}", e.message);
    assert!(e.message.contains("the signature was not released"), "{}", e.message);
    let lines = audit_lines(&f);
    assert_eq!(lines.last().unwrap()["event"], "stop");
    assert!(!lines.iter().any(|l| l["event"] == "signature" && l["block_num"] == 11), "{lines:?}");
    drop(f);

    let (f, started, go) = start_gated(dir.path(), &private);
    go.send(()).unwrap();
    let again = request(&f, 11, slot.next(), 2);
    let signed = sign(&f, &again).expect("block 11 never left, so its height may be signed");
    started.recv().unwrap();
    assert!(signed.signature.verify(&again.digest(), &f.key));
}
