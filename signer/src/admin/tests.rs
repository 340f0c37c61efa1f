//! Unit tests of the signer's admin side: a real `Signer` (soft backend) with an `[admin]`
//! section of three R1 admin keys and threshold 2, driven through `Signer::handle`.

use std::path::Path;
use std::sync::Arc;

use rempart_core::admin::{AdminCommand, Approval, Nonce};
use rempart_core::block::BlockHeader;
use rempart_core::key::PrivateKey;
use rempart_core::protocol::{Request, SignBlockRequest};
use rempart_core::{BlockTimestamp, TimePoint};

use super::*;
use crate::guard::{Guard, GuardKey};
use crate::keyring::Keyring;
use crate::keyring::soft::SoftBackend;
use crate::metrics::Metrics;
use crate::server::testing::{CHAIN, policy_text, ring};

struct Fixture {
    dir: tempfile::TempDir,
    producer_key: PrivateKey,
    admins: Vec<PrivateKey>,
    signer: Arc<Signer>,
}

fn admin_section(admins: &[PrivateKey], threshold: usize) -> String {
    let keys: Vec<String> = admins.iter().map(|k| format!("\"{}\"", k.public_key())).collect();
    format!(
        "[admin]\nsigner_id = \"bp1.signer\"\nkeys = [{}]\nthreshold = {threshold}\n",
        keys.join(", ")
    )
}

/// The test policy for `producer`'s key in `dir`, with `admin` appended.
fn test_policy(dir: &Path, producer: &PrivateKey, admin: &str) -> Policy {
    let text = policy_text(dir, &producer.public_key(), admin);
    Policy::from_toml(Path::new("/t/signer.toml"), &text).unwrap()
}

fn start(
    dir: &Path,
    producer: &PrivateKey,
    admin: &str,
) -> Result<Signer, crate::server::ServerError> {
    let key = producer.public_key();
    let policy = test_policy(dir, producer, admin);
    let gkey = GuardKey { chain_id: policy.chain_id, producer: Name::from_const("eosio"), key };
    let guard = Guard::new(dir);
    if guard.load(&gkey).is_err() {
        guard.init(&gkey, 0, BlockTimestamp(0)).unwrap();
    }
    let metrics = Arc::new(Metrics::default());
    Signer::new(policy, ring(vec![producer.clone()], &metrics), metrics)
}

fn fixture() -> Fixture {
    let dir = tempfile::tempdir().unwrap();
    let producer_key = PrivateKey::from_bytes(KeyType::K1, &[7; 32]).unwrap();
    let admins: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate(KeyType::R1)).collect();
    let signer = start(dir.path(), &producer_key, &admin_section(&admins, 2)).unwrap();
    Fixture { dir, producer_key, admins, signer: Arc::new(signer) }
}

fn unix_now() -> u32 {
    u32::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_secs(),
    )
    .unwrap()
}

fn command(action: AdminAction) -> AdminCommand {
    AdminCommand {
        signer_id: "bp1.signer".parse().unwrap(),
        chain_id: CHAIN.parse().unwrap(),
        action,
        expires: TimePointSec(unix_now() + 600),
        nonce: Nonce::random(),
    }
}

fn approved(cmd: &AdminCommand, by: &[&PrivateKey]) -> ApprovedCommand {
    ApprovedCommand {
        command: cmd.clone(),
        approvals: by
            .iter()
            .map(|k| Approval { key: k.public_key(), signature: k.sign(&cmd.digest()) })
            .collect(),
    }
}

fn send(f: &Fixture, c: &ApprovedCommand) -> Response {
    f.signer.handle(
        Request::Admin(AdminRequest { request_id: 9, command: Bytes(codec::to_bytes(c)) }),
        "test",
    )
}

fn refused(r: &Response) -> (ErrorCode, String) {
    match r {
        Response::Error(e) => (e.code, e.message.clone()),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

fn outcome(r: &Response) -> AdminOutcome {
    match r {
        Response::Admin(a) => codec::from_bytes(&a.result.0).unwrap(),
        other => panic!("expected an admin result, got {other:?}"),
    }
}

fn audit_text(f: &Fixture) -> String {
    std::fs::read_to_string(f.dir.path().join("audit.jsonl")).unwrap()
}

fn sign(f: &Fixture) -> Response {
    let header = BlockHeader {
        timestamp: BlockTimestamp::from_time_point(TimePoint::from_millis(
            i64::from(unix_now()) * 1000,
        )),
        producer: Name::from_const("eosio"),
        ..BlockHeader::default()
    };
    f.signer.handle(
        Request::SignBlock(SignBlockRequest {
            request_id: 1,
            chain_id: CHAIN.parse().unwrap(),
            header,
            blockroot_merkle_root: Checksum256::ZERO,
            pending_schedule_hash: Checksum256::ZERO,
            signing_key: f.producer_key.public_key(),
        }),
        "test",
    )
}

#[test]
fn pause_with_two_of_three_then_resume() {
    let f = fixture();
    let cmd = command(AdminAction::Pause);
    let r = send(&f, &approved(&cmd, &[&f.admins[0], &f.admins[2]]));
    let out = outcome(&r);
    assert_eq!(out.digest, cmd.digest());
    assert_eq!(out.summary, "signing paused");
    assert!(f.signer.is_paused());
    assert_eq!(refused(&sign(&f)).0, ErrorCode::Paused);
    let audit = audit_text(&f);
    assert!(audit.contains("\"step\":\"approved\""), "{audit}");
    assert!(audit.contains("\"step\":\"executed\""), "{audit}");
    assert!(audit.contains(&cmd.nonce.to_string()), "{audit}");

    let r = send(&f, &approved(&command(AdminAction::Resume), &[&f.admins[1], &f.admins[0]]));
    assert_eq!(outcome(&r).summary, "signing resumed");
    assert!(!f.signer.is_paused());
    assert!(matches!(sign(&f), Response::Signature(_)));
}

#[test]
fn one_approval_is_refused_and_audited() {
    let f = fixture();
    let r = send(&f, &approved(&command(AdminAction::Pause), &[&f.admins[0]]));
    let (code, message) = refused(&r);
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("1 valid approval(s), 2 required"), "{message}");
    assert!(!f.signer.is_paused());
    assert!(audit_text(&f).contains("\"step\":\"refused\""));
}

#[test]
fn a_replayed_nonce_is_refused_even_after_a_restart() {
    let f = fixture();
    let c = approved(&command(AdminAction::Pause), &[&f.admins[0], &f.admins[1]]);
    outcome(&send(&f, &c));
    let (code, message) = refused(&send(&f, &c));
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(message.contains("already used"), "{message}");

    // A restart keeps the nonce and the pause.
    let Fixture { dir, producer_key, admins, signer } = f;
    drop(signer);
    let signer = start(dir.path(), &producer_key, &admin_section(&admins, 2)).unwrap();
    let f = Fixture { dir, producer_key, admins, signer: Arc::new(signer) };
    assert!(f.signer.is_paused(), "a pause outlives a restart");
    let (_, message) = refused(&send(&f, &c));
    assert!(message.contains("already used"), "{message}");
}

#[test]
fn tampered_expired_misaddressed_and_foreign_commands_are_refused() {
    let f = fixture();
    let two = [&f.admins[0], &f.admins[1]];

    let mut c = approved(&command(AdminAction::Resume), &two);
    c.command.action = AdminAction::Pause;
    let (_, m) = refused(&send(&f, &c));
    assert!(m.contains("does not verify"), "{m}");

    let mut cmd = command(AdminAction::Pause);
    cmd.expires = TimePointSec(unix_now() - 10);
    let (_, m) = refused(&send(&f, &approved(&cmd, &two)));
    assert!(m.contains("expired"), "{m}");

    let mut cmd = command(AdminAction::Pause);
    cmd.signer_id = "other".parse().unwrap();
    let (_, m) = refused(&send(&f, &approved(&cmd, &two)));
    assert!(m.contains("for signer other"), "{m}");

    let outsider = PrivateKey::generate(KeyType::R1);
    let (_, m) =
        refused(&send(&f, &approved(&command(AdminAction::Pause), &[&f.admins[0], &outsider])));
    assert!(m.contains("is not an admin key"), "{m}");

    let r = f.signer.handle(
        Request::Admin(AdminRequest { request_id: 3, command: Bytes(vec![1, 2, 3]) }),
        "test",
    );
    assert_eq!(refused(&r).0, ErrorCode::Malformed);
    assert!(!f.signer.is_paused());
    assert_eq!(audit_text(&f).matches("\"step\":\"refused\"").count(), 5);
}

#[test]
fn a_retired_key_signs_nothing_more() {
    let f = fixture();
    assert!(matches!(sign(&f), Response::Signature(_)));
    let cmd = command(AdminAction::Retire {
        producer: Name::from_const("eosio"),
        key: f.producer_key.public_key(),
        destroy: false,
    });
    let out = outcome(&send(&f, &approved(&cmd, &[&f.admins[0], &f.admins[1]])));
    assert!(out.summary.contains("retired"), "{}", out.summary);
    let (code, m) = refused(&sign(&f));
    assert_eq!(code, ErrorCode::UnknownKey);
    assert!(m.contains("retired"), "{m}");
}

#[test]
fn rotate_needs_an_hsm_and_says_so() {
    let f = fixture();
    let cmd =
        command(AdminAction::Rotate { producer: Name::from_const("eosio"), key_type: KeyType::K1 });
    let (code, m) = refused(&send(&f, &approved(&cmd, &[&f.admins[0], &f.admins[1]])));
    assert_eq!(code, ErrorCode::Backend);
    assert!(m.contains("PKCS#11"), "{m}");
    assert!(audit_text(&f).contains("\"step\":\"failed\""));
}

#[test]
fn without_an_admin_section_commands_are_refused() {
    let dir = tempfile::tempdir().unwrap();
    let producer = PrivateKey::from_bytes(KeyType::K1, &[7; 32]).unwrap();
    let signer = start(dir.path(), &producer, "").unwrap();
    let admin = PrivateKey::generate(KeyType::R1);
    let c = approved(&command(AdminAction::Pause), &[&admin]);
    let r = signer.handle(
        Request::Admin(AdminRequest { request_id: 4, command: Bytes(codec::to_bytes(&c)) }),
        "test",
    );
    let (code, m) = refused(&r);
    assert_eq!(code, ErrorCode::Unauthorized);
    assert!(m.contains("[admin]"), "{m}");
}

#[test]
fn the_admin_section_is_validated() {
    let dir = tempfile::tempdir().unwrap();
    let producer = PrivateKey::generate(KeyType::K1).public_key();
    let admins: Vec<PrivateKey> = (0..2).map(|_| PrivateKey::generate(KeyType::R1)).collect();
    let load = |admin: &str| {
        Policy::from_toml(Path::new("/t/signer.toml"), &policy_text(dir.path(), &producer, admin))
    };
    assert_eq!(load(&admin_section(&admins, 2)).unwrap().admin.unwrap().threshold, 2);
    for (section, needle) in [
        (admin_section(&admins, 0), "threshold must be 1..=2"),
        (admin_section(&admins, 3), "threshold must be 1..=2"),
        (admin_section(&[admins[0].clone(), admins[0].clone()], 1), "twice"),
        (admin_section(&admins, 1).replace("bp1.signer", "Bad Name"), "not a valid name"),
        (admin_section(&admins, 1).replace("PUB_R1_", "PUB_XX_"), "not a public key"),
        (admin_section(&admins, 1) + "surprise = 1\n", "unknown field"),
    ] {
        let err = load(&section).unwrap_err().to_string();
        assert!(err.contains(needle), "{section}: {err}");
        assert!(err.starts_with("/t/signer.toml:"), "{err}");
    }
}

#[test]
fn a_corrupt_state_file_stops_the_start() {
    let Fixture { dir, producer_key, admins, signer } = fixture();
    // While it runs, no second signer starts on its state.
    let err = start(dir.path(), &producer_key, &admin_section(&admins, 2)).unwrap_err();
    assert!(err.to_string().contains("in use by another process"), "{err}");
    drop(signer);
    std::fs::write(dir.path().join(STATE_FILE), "{not json").unwrap();
    let err = start(dir.path(), &producer_key, &admin_section(&admins, 2)).unwrap_err();
    assert!(err.to_string().contains("corrupt"), "{err}");
}

#[test]
fn once_a_policy_is_approved_the_signer_starts_only_with_that_file() {
    let f = fixture();
    let admin = admin_section(&f.admins, 2);
    let current = policy_text(f.dir.path(), &f.producer_key.public_key(), &admin);
    // The next file: the same policy with a comment, so its hash differs.
    let next = format!("{current}# reviewed by two admins\n");
    let next_hash = Checksum256::hash(next.as_bytes());
    let c = command(AdminAction::ReplacePolicy { sha256: next_hash });
    outcome(&send(&f, &approved(&c, &[&f.admins[0], &f.admins[2]])));

    let Fixture { dir, producer_key, admins, signer } = f;
    drop(signer);
    // Restarted with the old file (or any edit nobody approved): refused, naming both hashes.
    let err = start(dir.path(), &producer_key, &admin).unwrap_err().to_string();
    let current_hash = Checksum256::hash(current.as_bytes());
    assert!(
        err.contains(&current_hash.to_string()) && err.contains(&next_hash.to_string()),
        "{err}"
    );
    assert!(err.contains("approved"), "{err}");
    // With the approved file it starts.
    let policy = Policy::from_toml(Path::new("/t/signer.toml"), &next).unwrap();
    assert_eq!(policy.sha256, next_hash);
    let metrics = Arc::new(Metrics::default());
    let ring = Keyring::new(
        Box::new(SoftBackend::from_keys(vec![producer_key.clone()])),
        8,
        metrics.clone(),
    )
    .unwrap();
    Signer::new(policy, ring, metrics).expect("the approved policy starts");
    drop(admins);
}

/// A token holding `held` from the start, in which an administrator created `later`: the
/// running backend finds those when asked to adopt them, as the PKCS#11 one does.
struct Token {
    held: Vec<PrivateKey>,
    later: Vec<PrivateKey>,
    adopted: Mutex<Vec<PrivateKey>>,
}

impl crate::keyring::Backend for Token {
    fn kind(&self) -> &'static str {
        "test-token"
    }
    fn public_keys(&self) -> Vec<PublicKey> {
        let adopted = self.adopted.lock().unwrap();
        self.held.iter().chain(adopted.iter()).map(PrivateKey::public_key).collect()
    }
    fn sign_raw(
        &self,
        key: &PublicKey,
        digest: &[u8; 32],
    ) -> Result<[u8; 64], crate::keyring::KeyringError> {
        let adopted = self.adopted.lock().unwrap();
        let k = self.held.iter().chain(adopted.iter()).find(|k| k.public_key() == *key);
        let k = k.ok_or(crate::keyring::KeyringError::UnknownKey(*key))?;
        let mut rs = [0u8; 64];
        rs.copy_from_slice(k.sign(&Checksum256(*digest)).rs());
        Ok(rs)
    }
    fn adopt(&self, key: &PublicKey) -> Result<(), crate::keyring::KeyringError> {
        let k = self.later.iter().find(|k| k.public_key() == *key);
        let k = k.ok_or(crate::keyring::KeyringError::UnknownKey(*key))?;
        self.adopted.lock().unwrap().push(k.clone());
        Ok(())
    }
}

fn sign_at(signer: &Signer, key: PublicKey, block_num: u32, slot: u32) -> Response {
    let mut previous = Checksum256::ZERO;
    previous.0[..4].copy_from_slice(&(block_num - 1).to_be_bytes());
    let header = BlockHeader {
        timestamp: BlockTimestamp(slot),
        producer: Name::from_const("eosio"),
        previous,
        ..BlockHeader::default()
    };
    signer.handle(
        Request::SignBlock(SignBlockRequest {
            request_id: u64::from(block_num),
            chain_id: CHAIN.parse().unwrap(),
            header,
            blockroot_merkle_root: Checksum256::ZERO,
            pending_schedule_hash: Checksum256::ZERO,
            signing_key: key,
        }),
        "test",
    )
}

#[test]
fn a_key_created_by_rotate_signs_for_its_producer_and_the_old_one_never_at_its_height() {
    let dir = tempfile::tempdir().unwrap();
    let old = PrivateKey::from_bytes(KeyType::K1, &[7; 32]).unwrap();
    let new = PrivateKey::generate(KeyType::K1);
    let stranger = PrivateKey::generate(KeyType::K1);
    let admins: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate(KeyType::R1)).collect();
    let eosio = Name::from_const("eosio");
    // What a `rotate` left: the key recorded as created for eosio, its guard initialised.
    let state = State { created: vec![(eosio, new.public_key())], ..State::default() };
    std::fs::write(dir.path().join(STATE_FILE), serde_json::to_string(&state).unwrap()).unwrap();
    let text = policy_text(dir.path(), &old.public_key(), &admin_section(&admins, 2));
    let policy = Policy::from_toml(Path::new("/t/signer.toml"), &text).unwrap();
    let guard = Guard::new(dir.path());
    for k in [&old, &new] {
        let gkey = GuardKey { chain_id: policy.chain_id, producer: eosio, key: k.public_key() };
        guard.init(&gkey, 0, BlockTimestamp(0)).unwrap();
    }
    let metrics = Arc::new(Metrics::default());
    let token = Token {
        held: vec![old.clone()],
        later: vec![new.clone(), stranger.clone()],
        adopted: Mutex::new(Vec::new()),
    };
    let ring = Keyring::new(Box::new(token), 8, metrics.clone()).unwrap();
    let signer = Signer::new(policy, ring, metrics).unwrap();
    assert_eq!(signer.producer_keys(eosio), vec![old.public_key(), new.public_key()]);
    match signer.handle(Request::PublicKeys { request_id: 1 }, "test") {
        Response::PublicKeys { keys, .. } => assert_eq!(keys.len(), 2, "{keys:?}"),
        other => panic!("{other:?}"),
    }

    let now =
        BlockTimestamp::from_time_point(TimePoint::from_millis(i64::from(unix_now()) * 1000)).0;
    assert!(matches!(sign_at(&signer, old.public_key(), 10, now), Response::Signature(_)));
    // The switch: the new key signs the next block.
    match sign_at(&signer, new.public_key(), 11, now + 1) {
        Response::Signature(s) => {
            assert_eq!(s.signature.recover(&s.digest).unwrap(), new.public_key());
        }
        other => panic!("{other:?}"),
    }
    // The old key cannot sign that height, nor the new key one the old key signed.
    let (code, m) = refused(&sign_at(&signer, old.public_key(), 11, now + 1));
    assert_eq!(code, ErrorCode::DoubleSign);
    assert!(m.contains("one height is never signed by two keys"), "{m}");
    // (The old key's own former request is answered from its guard: nothing new leaves.)
    assert!(matches!(sign_at(&signer, old.public_key(), 10, now), Response::Signature(_)));
    // A key the signer does not hold for eosio (even one in the token): refused and audited.
    let (code, m) = refused(&sign_at(&signer, stranger.public_key(), 12, now + 2));
    assert_eq!(code, ErrorCode::UnknownKey);
    assert!(m.contains(&stranger.public_key().to_string()) && m.contains("schedule"), "{m}");
    let audit = std::fs::read_to_string(dir.path().join("audit.jsonl")).unwrap();
    assert!(audit.contains("\"reason\":\"wrong_key\""), "{audit}");
    assert!(audit.contains("\"reason\":\"other_key_signed\""), "{audit}");

    // The old key retired by two admins: refused for good, the new key keeps signing.
    let signer = Arc::new(signer);
    let f = Fixture { dir, producer_key: old.clone(), admins, signer: signer.clone() };
    let cmd =
        command(AdminAction::Retire { producer: eosio, key: old.public_key(), destroy: false });
    outcome(&send(&f, &approved(&cmd, &[&f.admins[1], &f.admins[2]])));
    let (code, m) = refused(&sign_at(&signer, old.public_key(), 13, now + 3));
    assert_eq!(code, ErrorCode::UnknownKey);
    assert!(m.contains("retired"), "{m}");
    assert!(matches!(sign_at(&signer, new.public_key(), 13, now + 3), Response::Signature(_)));
    assert_eq!(signer.producer_keys(eosio), vec![new.public_key()]);
}

#[test]
fn reads_on_the_signing_path_do_not_wait_for_an_update_on_its_way_to_disk() {
    let dir = tempfile::tempdir().unwrap();
    let producer = PrivateKey::from_bytes(KeyType::K1, &[7; 32]).unwrap();
    let admins: Vec<PrivateKey> = (0..3).map(|_| PrivateKey::generate(KeyType::R1)).collect();
    let policy = test_policy(dir.path(), &producer, &admin_section(&admins, 2));
    let admin = Arc::new(Admin::open(&policy).unwrap().expect("an [admin] section"));

    // An update held half-way, as a slow disk holds one.
    let (entered_tx, entered_rx) = std::sync::mpsc::channel();
    let (release_tx, release_rx) = std::sync::mpsc::channel::<()>();
    let writer = {
        let admin = admin.clone();
        std::thread::spawn(move || {
            admin.update(|s| {
                entered_tx.send(()).unwrap();
                release_rx.recv().unwrap();
                s.paused = true;
            })
        })
    };
    entered_rx.recv().unwrap();
    let (read_tx, read_rx) = std::sync::mpsc::channel();
    {
        let admin = admin.clone();
        let key = producer.public_key();
        std::thread::spawn(move || {
            let _ = read_tx.send((admin.paused(), admin.is_retired(&key)));
        });
    }
    // The bound only ends a failing run; a passing one answers at once.
    let read = read_rx.recv_timeout(std::time::Duration::from_secs(10));
    release_tx.send(()).unwrap();
    writer.join().unwrap().unwrap();
    assert_eq!(read, Ok((false, false)), "the state in force, answered during the update");
    assert!(admin.paused(), "and the update's result once it is on disk");
    let on_disk = std::fs::read_to_string(dir.path().join(STATE_FILE)).unwrap();
    assert!(on_disk.contains("\"paused\": true"), "{on_disk}");
}
