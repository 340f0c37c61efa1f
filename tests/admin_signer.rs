//! The whole key ceremony end to end: three virtual YubiKeys (admins A, B, C; threshold 2) in a
//! private pcscd, the real `rempart admin` binary, and the real `rempart-signer` daemon with
//! its block key in SoftHSM2. A rotation approved by two creates the next key inside the HSM
//! while the current key keeps signing blocks; approved by one it is refused; an expired
//! command, a replayed nonce, a tampered command body and an approval by a card that is not
//! an admin are each refused with a clear error; pause and resume show in Status (resume
//! submitted over TCP, host:port, rather than the Unix socket); the new
//! key is retired and destroyed in the token while the current one keeps signing; the audit
//! log records every step and refusal and its chain verifies. The daemon runs under its
//! shipped sandbox (seccomp allowlist, landlock), as in production: key generation in the
//! token must work with the PIN read before the sandbox closed its file.
#![cfg(feature = "yubikey")]

mod admin_support;

use std::path::{Path, PathBuf};
use std::process::Command;

use admin_support::{
    Hsm, HsmSigner, Lab, PIN, approve, call, enroll, have_softhsm, hsm_keygen, signer_binary,
    submit, submit_to, write_secret,
};
use rempart_core::admin::{AdminAction, AdminCommand, ApprovedCommand, Nonce, Proposal};
use rempart_core::block::BlockHeader;
use rempart_core::key::PublicKey;
use rempart_core::protocol::{AdminRequest, ErrorCode, Request, Response, SignBlockRequest};
use rempart_core::{BlockTimestamp, Bytes, Checksum256, Name, TimePoint, TimePointSec, codec};

const CHAIN: &str = "3b58354cd4af30f0d59f1d9754a71a4c049a425dd9dad6a8ed858ca5d9a4e0b4";

fn now_secs() -> u32 {
    let s = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
    u32::try_from(s.as_secs()).unwrap()
}

/// Signs the block of the current slot (a new block each call: the slot moves on).
fn sign_block(socket: &Path, key: PublicKey, block_num: u32, last_slot: &mut u32) -> Response {
    let ms = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
    )
    .unwrap();
    let mut slot = BlockTimestamp::from_time_point(TimePoint::from_millis(ms)).0;
    if slot <= *last_slot {
        slot = *last_slot + 1;
    }
    *last_slot = slot;
    let mut previous = Checksum256::ZERO;
    previous.0[..4].copy_from_slice(&(block_num - 1).to_be_bytes());
    let header = BlockHeader {
        timestamp: BlockTimestamp(slot),
        producer: Name::from_const("eosio"),
        previous,
        ..BlockHeader::default()
    };
    call(
        socket,
        &Request::SignBlock(SignBlockRequest {
            request_id: u64::from(block_num),
            chain_id: CHAIN.parse().unwrap(),
            header,
            blockroot_merkle_root: Checksum256::ZERO,
            pending_schedule_hash: Checksum256::ZERO,
            signing_key: key,
        }),
    )
}

fn paused(socket: &Path) -> bool {
    match call(socket, &Request::Status { request_id: 5 }) {
        Response::Status(s) => s.paused,
        other => panic!("status: {other:?}"),
    }
}

fn propose(lab: &Lab, name: &str, action: &[&str]) -> PathBuf {
    admin_support::propose(lab, CHAIN, name, action)
}

fn refused_with(result: (Option<i32>, String, String), needle: &str) {
    let (code, out, err) = result;
    assert_eq!(code, Some(77), "expected a refusal: {out}\n{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn a_two_of_three_rotation_end_to_end_with_every_refusal_audited() {
    let Some(mut lab) = Lab::start() else { return };
    if !have_softhsm() {
        return;
    }
    write_secret(&lab.path("pin"), &format!("{PIN}\n"));

    // The admins' cards: A stays in slot 0, B, C and an outsider D take turns in slot 1.
    lab.plug(0, "card-a", 11);
    lab.plug(1, "card-b", 12);
    let (ka, kb) = (enroll(0), enroll(1));
    lab.plug(1, "card-d", 14);
    let kd = enroll(1);
    lab.plug(1, "card-c", 13);
    let kc = enroll(1);

    // The signer: block key generated inside SoftHSM2, [admin] with A, B, C and M = 2.
    let hsm = Hsm::new(lab.dir.path());
    let signer = signer_binary();
    let block_key = hsm_keygen(&lab, &hsm, &signer);
    let daemon = HsmSigner::start(&lab, &hsm, &signer, CHAIN, &block_key, &[ka, kb, kc]);
    let (state, socket) = (daemon.state.clone(), daemon.socket.clone());

    let mut block = 1;
    let mut slot = 0;
    let mut next_block = |expect_ok: bool| {
        block += 1;
        let r = sign_block(&socket, block_key, block, &mut slot);
        assert_eq!(matches!(r, Response::Signature(_)), expect_ok, "block {block}: {r:?}");
        r
    };
    next_block(true);

    // Rotation approved by A only: refused.
    let rotate = propose(&lab, "rotate.json", &["--action", "rotate", "--producer", "eosio"]);
    approve(&lab, &rotate, 0);
    refused_with(submit(&rotate, &socket), "1 valid approval(s), 2 required");
    next_block(true);

    // Approved by A and C: the new key is created in the HSM, the old one keeps signing.
    approve(&lab, &rotate, 1);
    let (code, out, err) = submit(&rotate, &socket);
    assert_eq!(code, Some(0), "{out}\n{err}");
    let new_key: PublicKey = out
        .lines()
        .find_map(|l| l.strip_prefix("new key: "))
        .unwrap_or_else(|| panic!("no new key in: {out}"))
        .parse()
        .unwrap();
    assert_ne!(new_key, block_key);
    let digest =
        Proposal::from_json(&std::fs::read_to_string(&rotate).unwrap()).unwrap().command.digest();
    // Its double-sign guard starts above the last block the current key signed (block 3).
    let guard = rempart_signer::guard::Guard::new(&state)
        .load(&rempart_signer::guard::GuardKey {
            chain_id: CHAIN.parse().unwrap(),
            producer: Name::from_const("eosio"),
            key: new_key,
        })
        .expect("the new key has a guard state");
    assert_eq!((guard.floor_block, guard.last), (3, None));
    let objects = hsm.objects();
    assert!(objects.contains(&format!("eosio-{}", &digest.to_string()[..12])), "{objects}");
    next_block(true);

    // The same approved command again: its nonce was used.
    refused_with(submit(&rotate, &socket), "already used");

    // An expired command, approved by two.
    let expired = Proposal::new(AdminCommand {
        signer_id: "bp1.signer".parse().unwrap(),
        chain_id: CHAIN.parse().unwrap(),
        action: AdminAction::Pause,
        expires: TimePointSec(now_secs() - 60),
        nonce: Nonce::random(),
    });
    let expired_file = lab.path("expired.json");
    std::fs::write(&expired_file, expired.to_json()).unwrap();
    approve(&lab, &expired_file, 0);
    approve(&lab, &expired_file, 1);
    refused_with(submit(&expired_file, &socket), "expired");
    assert!(!paused(&socket));

    // A tampered body: valid approvals of a resume, sent as a pause.
    let resume = propose(&lab, "resume.json", &["--action", "resume"]);
    approve(&lab, &resume, 0);
    approve(&lab, &resume, 1);
    let approved = Proposal::from_json(&std::fs::read_to_string(&resume).unwrap()).unwrap();
    let mut tampered =
        ApprovedCommand { command: approved.command.clone(), approvals: approved.approvals };
    tampered.command.action = AdminAction::Pause;
    let r = call(
        &socket,
        &Request::Admin(AdminRequest {
            request_id: 77,
            command: Bytes(codec::to_bytes(&tampered)),
        }),
    );
    match r {
        Response::Error(e) => {
            assert_eq!(e.code, ErrorCode::Unauthorized);
            assert!(e.message.contains("does not verify"), "{}", e.message);
        }
        other => panic!("tampered command: {other:?}"),
    }
    assert!(!paused(&socket));

    // An approval by D, who is not an admin.
    let pause = propose(&lab, "pause.json", &["--action", "pause"]);
    approve(&lab, &pause, 0);
    lab.plug(1, "card-d", 14);
    approve(&lab, &pause, 1);
    refused_with(submit(&pause, &socket), &format!("{kd} is not an admin key"));

    // Pause by A and C: Status shows it and blocks are refused; resume by A and B.
    lab.plug(1, "card-c", 13);
    let pause = propose(&lab, "pause2.json", &["--action", "pause"]);
    approve(&lab, &pause, 0);
    approve(&lab, &pause, 1);
    let (code, out, err) = submit(&pause, &socket);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(paused(&socket));
    match next_block(false) {
        Response::Error(e) => assert_eq!(e.code, ErrorCode::Paused),
        other => panic!("{other:?}"),
    }
    lab.plug(1, "card-b", 12);
    let resume = propose(&lab, "resume2.json", &["--action", "resume"]);
    approve(&lab, &resume, 0);
    approve(&lab, &resume, 1);
    // Over TCP this time (`host:port`, as over the WireGuard tunnel): a wrong port is
    // unreachable (exit 69) and changes nothing; the signer's port executes it.
    let closed = std::net::SocketAddr::from(([127, 0, 0, 1], rempart_core::testing::free_port()));
    let (code, out, err) = submit_to(&resume, &closed.to_string());
    assert_eq!(code, Some(69), "{out}\n{err}");
    assert!(err.contains("cannot connect"), "{err}");
    assert!(paused(&socket));
    let (code, out, err) = submit_to(&resume, &daemon.tcp.to_string());
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("done: "), "{out}");
    assert!(!paused(&socket));
    next_block(true);

    // The rotated key is retired and destroyed in the token (by A and B).
    let new_key_text = new_key.to_string();
    let retire = propose(
        &lab,
        "retire.json",
        &["--action", "retire", "--producer", "eosio", "--key", &new_key_text, "--destroy"],
    );
    approve(&lab, &retire, 0);
    approve(&lab, &retire, 1);
    let (code, out, err) = submit(&retire, &socket);
    assert_eq!(code, Some(0), "{out}\n{err}");
    assert!(out.contains("destroyed in the HSM"), "{out}");
    let objects = hsm.objects();
    assert!(!objects.contains(&format!("eosio-{}", &digest.to_string()[..12])), "{objects}");
    assert!(objects.contains("eosio-k1"), "the current key stays: {objects}");
    next_block(true);

    // The audit log holds every step and refusal, and its chain verifies.
    let audit = std::fs::read_to_string(state.join("audit.jsonl")).unwrap();
    assert_eq!(audit.matches("\"step\":\"executed\"").count(), 4, "{audit}");
    let resumed = audit
        .lines()
        .find(|l| l.contains("\"step\":\"executed\"") && l.contains("\"action\":\"resume\""))
        .expect("the resume was executed");
    assert!(resumed.contains("127.0.0.1"), "submitted over TCP: {resumed}");
    assert_eq!(audit.matches("\"step\":\"refused\"").count(), 5, "{audit}");
    for needle in ["2 required", "already used", "expired", "does not verify", "not an admin"] {
        assert!(audit.contains(needle), "{needle} not audited: {audit}");
    }
    let out = Command::new(&signer)
        .args(["audit", "verify"])
        .arg(state.join("audit.jsonl"))
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
}
