//! Issue 8's YubiKey block-key backend: the real `rempart-signer` (feature `yubikey`) signs
//! blocks with an R1 key in a virtual YubiKey's PIV slot, through pcscd, and every signature
//! recovers to the key the producer schedule names — what an api node checks. A card holding
//! another key, or a wrong PIN, keeps the signer from starting. The daemon runs under its
//! shipped sandbox: PC/SC keeps the connection it opened before the sandbox.
#![cfg(feature = "yubikey")]

mod admin_support;

use std::os::unix::net::UnixStream;
use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use admin_support::{Lab, PIN, Proc, call, is_root, reader, rempart_ok, signer_binary};
use rempart_core::block::BlockHeader;
use rempart_core::key::{KeyType, PublicKey};
use rempart_core::protocol::{Request, Response, SignBlockRequest};
use rempart_core::{BlockTimestamp, Checksum256, Name, TimePoint};

const CHAIN: &str = "3b58354cd4af30f0d59f1d9754a71a4c049a425dd9dad6a8ed858ca5d9a4e0b4";

fn policy(lab: &Lab, key: &PublicKey, pin_file: &Path) -> std::path::PathBuf {
    let state = lab.path("state");
    let _ = std::fs::create_dir(&state);
    let path = lab.path("signer.toml");
    std::fs::write(
        &path,
        format!(
            r#"[chain]
id = "{CHAIN}"
max_clock_skew_ms = 5000
[[producers]]
account = "eosio"
key = "{key}"
[backend]
kind = "yubikey"
[backend.yubikey]
reader = "{reader}"
slot = "9c"
key = "{key}"
pin_file = "{pin}"
[listen]
unix_socket = "{state}/signer.sock"
allow_own_uid = true
[state]
dir = "{state}"
audit_log = "{state}/audit.jsonl"
[sandbox]
seccomp_policy = "{seccomp}"
memory_lock = "{memory_lock}"
"#,
            reader = reader(0),
            pin = pin_file.display(),
            seccomp = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("policies/seccomp/signer.x86_64.json")
                .display(),
            memory_lock = if is_root() { "current" } else { "dangerous_off" },
            state = state.display(),
        ),
    )
    .unwrap();
    path
}

fn pin_file(lab: &Lab, name: &str, pin: &str) -> std::path::PathBuf {
    let p = lab.path(name);
    std::fs::write(&p, format!("{pin}\n")).unwrap();
    std::fs::set_permissions(&p, std::os::unix::fs::PermissionsExt::from_mode(0o600)).unwrap();
    p
}

#[test]
fn a_yubikey_block_key_signs_blocks_that_verify_against_the_schedule() {
    let Some(mut lab) = Lab::start() else { return };
    lab.plug(0, "block-card", 21);
    let key: PublicKey =
        rempart_ok(&["admin", "enroll", "--reader", &reader(0)]).trim().parse().unwrap();
    assert_eq!(key.key_type(), KeyType::R1);
    let signer = signer_binary();

    // A policy naming another key, and one with a wrong PIN: the daemon refuses to start.
    let good_pin = pin_file(&lab, "pin", PIN);
    let other: PublicKey = rempart_core::key::PrivateKey::generate(KeyType::R1).public_key();
    let wrong = policy(&lab, &other, &good_pin);
    let out = Command::new(&signer).args(["guard", "init", "--policy"]).arg(&wrong).output();
    assert!(out.as_ref().is_ok_and(|o| o.status.success()), "{out:?}");
    let out = Command::new(&signer).args(["run", "--policy"]).arg(&wrong).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not hold"), "{err}");
    let bad_pin = pin_file(&lab, "bad-pin", "000000");
    let wrong = policy(&lab, &key, &bad_pin);
    let out = Command::new(&signer).args(["guard", "init", "--policy"]).arg(&wrong).output();
    assert!(out.as_ref().is_ok_and(|o| o.status.success()), "{out:?}");
    let out = Command::new(&signer).args(["run", "--policy"]).arg(&wrong).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the PIN"), "{err}");

    // The right key and PIN: blocks are signed by the card.
    let good = policy(&lab, &key, &good_pin);
    let socket = lab.path("state/signer.sock");
    let _daemon = Proc(
        Command::new(&signer)
            .args(["run", "--policy"])
            .arg(&good)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the signer never listened");
    }
    let ms = i64::try_from(
        std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis(),
    )
    .unwrap();
    let first = BlockTimestamp::from_time_point(TimePoint::from_millis(ms)).0;
    for i in 0..5u32 {
        let block_num = 2 + i;
        let mut previous = Checksum256::ZERO;
        previous.0[..4].copy_from_slice(&(block_num - 1).to_be_bytes());
        let request = SignBlockRequest {
            request_id: u64::from(block_num),
            chain_id: CHAIN.parse().unwrap(),
            header: BlockHeader {
                timestamp: BlockTimestamp(first + i),
                producer: Name::from_const("eosio"),
                previous,
                ..BlockHeader::default()
            },
            blockroot_merkle_root: Checksum256::ZERO,
            pending_schedule_hash: Checksum256::ZERO,
            signing_key: key,
        };
        let digest = request.digest();
        match call(&socket, &Request::SignBlock(request)) {
            Response::Signature(s) => {
                assert_eq!(s.digest, digest);
                assert_eq!(s.signature.key_type(), KeyType::R1);
                assert!(s.signature.is_canonical(), "low-S");
                assert_eq!(s.signature.recover(&digest).unwrap(), key, "block {block_num}");
                assert!(s.signature.to_string().starts_with("SIG_R1_"));
            }
            other => panic!("block {block_num}: {other:?}"),
        }
    }
}
