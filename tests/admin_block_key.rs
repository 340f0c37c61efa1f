//! Issue 8's YubiKey block-key backend, end to end: a chain whose schedule names an R1 key in
//! a virtual YubiKey's PIV slot 9c; the real `rempart-signer` (feature `yubikey`) holds it
//! through pcscd; a producer node (`rempart-node`) signs its blocks through that signer and an
//! api node follows and accepts them. Walking the api node's blocks, each producer signature is
//! SIG_R1, low-S, the one the signer audited, and recovers over the audited digest to the
//! card's key. A card holding another key, or a wrong PIN, keeps the signer from starting. The
//! daemon runs under its shipped sandbox: PC/SC keeps the connection it opened before it.
#![cfg(feature = "yubikey")]

mod admin_support;

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::Duration;

use admin_support::{
    Lab, Nodes, PIN, Proc, api_block, api_head, audited_signatures, binary, is_root, reader,
    rempart_ok, signer_binary, wait_for, wait_listening, write_genesis,
};
use rempart_core::Checksum256;
use rempart_core::key::{KeyType, PublicKey, Signature};

fn policy(lab: &Lab, chain: &Checksum256, key: &PublicKey, pin_file: &Path) -> std::path::PathBuf {
    let state = lab.path("state");
    let _ = std::fs::create_dir(&state);
    let path = lab.path("signer.toml");
    std::fs::write(
        &path,
        format!(
            r#"[chain]
id = "{chain}"
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
fn a_yubikey_block_key_signs_blocks_an_api_node_accepts() {
    let Some(mut lab) = Lab::start() else { return };
    lab.plug(0, "block-card", 21);
    let key: PublicKey =
        rempart_ok(&["admin", "enroll", "--reader", &reader(0)]).trim().parse().unwrap();
    assert_eq!(key.key_type(), KeyType::R1);
    let signer = signer_binary();
    let node = binary("rempart-node", "rempart-node", &[]);
    let chain = write_genesis(&lab, &key);

    // A policy naming another key, and one with a wrong PIN: the daemon refuses to start.
    let good_pin = pin_file(&lab, "pin", PIN);
    let other: PublicKey = rempart_core::key::PrivateKey::generate(KeyType::R1).public_key();
    let wrong = policy(&lab, &chain, &other, &good_pin);
    let out = Command::new(&signer).args(["guard", "init", "--policy"]).arg(&wrong).output();
    assert!(out.as_ref().is_ok_and(|o| o.status.success()), "{out:?}");
    let out = Command::new(&signer).args(["run", "--policy"]).arg(&wrong).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("does not hold"), "{err}");
    let bad_pin = pin_file(&lab, "bad-pin", "000000");
    let wrong = policy(&lab, &chain, &key, &bad_pin);
    let out = Command::new(&signer).args(["guard", "init", "--policy"]).arg(&wrong).output();
    assert!(out.as_ref().is_ok_and(|o| o.status.success()), "{out:?}");
    let out = Command::new(&signer).args(["run", "--policy"]).arg(&wrong).output().unwrap();
    assert!(!out.status.success());
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains("refused the PIN"), "{err}");

    // The right key and PIN: blocks are signed by the card.
    let good = policy(&lab, &chain, &key, &good_pin);
    let socket = lab.path("state/signer.sock");
    let log = lab.path("signer.log");
    let mut daemon = Proc(
        Command::new(&signer)
            .args(["run", "--policy"])
            .arg(&good)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(&log).expect("signer log"))
            .spawn()
            .unwrap(),
    );
    wait_listening(&mut daemon, &socket, &log);

    // The producer signs through the card; the api node follows and accepts its blocks.
    let nodes = Nodes::start(&lab, &node, &socket);
    let http = nodes.http;
    let head = wait_for("the api node to pass block 6", Duration::from_secs(60), || {
        let h = api_head(http);
        (h >= 6).then_some(h)
    });
    let audited = audited_signatures(&lab.path("state/audit.jsonl"));
    for num in 2..=head {
        let b = api_block(http, num);
        assert_eq!(b["producer"], "eosio", "block {num}");
        let text = b["producer_signature"].as_str().expect("signature");
        assert!(text.starts_with("SIG_R1_"), "block {num}: {text}");
        let signature: Signature = text.parse().expect("signature");
        assert!(signature.is_canonical(), "block {num}: low-S");
        let (signed_by, digest, audited_sig) =
            audited.get(&num).unwrap_or_else(|| panic!("block {num} not in the signer's audit"));
        assert_eq!(signature, *audited_sig, "block {num}");
        assert_eq!(*signed_by, key, "block {num}");
        assert_eq!(signature.recover(digest).expect("recover"), key, "block {num}");
    }
}
