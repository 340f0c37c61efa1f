//! The whole key ceremony end to end: three virtual YubiKeys (admins A, B, C; threshold 2) in a
//! private pcscd, the real `rempart admin` binary, and the real `rempart-signer` daemon with
//! its block key in SoftHSM2. A rotation approved by two creates the next key inside the HSM
//! while the current key keeps signing blocks; approved by one it is refused; an expired
//! command, a replayed nonce, a tampered command body and an approval by a card that is not
//! an admin are each refused with a clear error; pause and resume show in Status; the new
//! key is retired and destroyed in the token while the current one keeps signing; the audit
//! log records every step and refusal and its chain verifies. The daemon runs under its
//! shipped sandbox (seccomp allowlist, landlock), as in production: key generation in the
//! token must work with the PIN read before the sandbox closed its file.
#![cfg(feature = "yubikey")]

mod admin_support;

use std::io::{Read as _, Write as _};
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use admin_support::{Lab, PIN, Proc, reader, rempart, rempart_ok, signer_binary, write_secret};
use rempart_core::admin::{AdminAction, AdminCommand, ApprovedCommand, Nonce, Proposal};
use rempart_core::block::BlockHeader;
use rempart_core::key::PublicKey;
use rempart_core::protocol::{
    AdminRequest, ErrorCode, FrameDecoder, Request, Response, SignBlockRequest, encode_frame,
};
use rempart_core::{BlockTimestamp, Bytes, Checksum256, Name, TimePoint, TimePointSec, codec};

const CHAIN: &str = "3b58354cd4af30f0d59f1d9754a71a4c049a425dd9dad6a8ed858ca5d9a4e0b4";
const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

struct Hsm {
    conf: PathBuf,
}

impl Hsm {
    fn new(dir: &Path) -> Hsm {
        let tokens = dir.join("tokens");
        std::fs::create_dir(&tokens).unwrap();
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\n", tokens.display()),
        )
        .unwrap();
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", "T", "--so-pin", "5678", "--pin", "1234"])
            .output()
            .expect("softhsm2-util");
        assert!(out.status.success(), "{out:?}");
        Hsm { conf }
    }

    fn objects(&self) -> String {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--module", SOFTHSM, "--token-label", "T", "--login", "--pin", "1234", "-O"])
            .output()
            .expect("pkcs11-tool");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// One request over the signer's Unix socket.
fn call(socket: &Path, request: &Request) -> Response {
    let mut s = UnixStream::connect(socket).expect("connect to the signer");
    s.set_read_timeout(Some(Duration::from_secs(20))).unwrap();
    s.write_all(&encode_frame(request).unwrap()).unwrap();
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).expect("read the answer");
        assert!(n > 0, "the signer closed the connection");
        let mut input = &buf[..n];
        while !input.is_empty() {
            if let Some(r) = decoder.decode::<Response>(&mut input).unwrap() {
                return r;
            }
        }
    }
}

/// Locking memory needs root (or a raised RLIMIT_MEMLOCK).
fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

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

fn enroll(slot: usize) -> PublicKey {
    rempart_ok(&["admin", "enroll", "--reader", &reader(slot)]).trim().parse().unwrap()
}

fn propose(lab: &Lab, name: &str, action: &[&str]) -> PathBuf {
    let out = lab.path(name);
    let mut args = vec![
        "admin",
        "propose",
        "--signer-id",
        "bp1.signer",
        "--chain-id",
        CHAIN,
        "--out",
        out.to_str().unwrap(),
    ];
    args.extend_from_slice(action);
    rempart_ok(&args);
    out
}

fn approve(lab: &Lab, file: &Path, slot: usize) {
    let pin = lab.path("pin");
    rempart_ok(&[
        "admin",
        "approve",
        file.to_str().unwrap(),
        "--reader",
        &reader(slot),
        "--pin-file",
        pin.to_str().unwrap(),
    ]);
}

/// `rempart admin submit`: (exit code, stdout, stderr).
fn submit(file: &Path, socket: &Path) -> (Option<i32>, String, String) {
    let endpoint = format!("unix:{}", socket.display());
    let out = rempart(&["admin", "submit", file.to_str().unwrap(), "--signer", &endpoint]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn refused_with(result: (Option<i32>, String, String), needle: &str) {
    let (code, out, err) = result;
    assert_eq!(code, Some(77), "expected a refusal: {out}\n{err}");
    assert!(err.contains(needle), "expected {needle:?} in: {err}");
}

#[test]
fn a_two_of_three_rotation_end_to_end_with_every_refusal_audited() {
    let Some(mut lab) = Lab::start() else { return };
    let have_softhsm = Path::new(SOFTHSM).exists();
    if !have_softhsm {
        assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and SoftHSM2 is missing");
        eprintln!("skipping: SoftHSM2 is not installed");
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
    let hsm_pin = lab.path("hsm-pin");
    std::fs::write(&hsm_pin, "1234\n").unwrap();
    std::fs::set_permissions(&hsm_pin, std::os::unix::fs::PermissionsExt::from_mode(0o600))
        .unwrap();
    let out = Command::new(&signer)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .args(["keygen", "--module", SOFTHSM, "--token-label", "T", "--pin-file"])
        .arg(&hsm_pin)
        .args(["--key-type", "k1", "--label", "eosio-k1"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{out:?}");
    let block_key: PublicKey = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap();
    let state = lab.path("state");
    std::fs::create_dir(&state).unwrap();
    let socket = state.join("signer.sock");
    let policy = lab.path("signer.toml");
    std::fs::write(
        &policy,
        format!(
            r#"[chain]
id = "{CHAIN}"
max_clock_skew_ms = 5000
[[producers]]
account = "eosio"
key = "{block_key}"
[backend]
kind = "pkcs11"
[backend.pkcs11]
module = "{SOFTHSM}"
token_label = "T"
pin_file = "{pin}"
keys = [{{ label = "eosio-k1" }}]
[listen]
unix_socket = "{socket}"
allow_own_uid = true
[state]
dir = "{state}"
audit_log = "{state}/audit.jsonl"
[sandbox]
seccomp_policy = "{seccomp}"
memory_lock = "{memory_lock}"
read_only_paths = ["{conf}"]
read_write_paths = ["{tokens}"]
[admin]
signer_id = "bp1.signer"
keys = ["{ka}", "{kb}", "{kc}"]
threshold = 2
"#,
            pin = hsm_pin.display(),
            seccomp = Path::new(env!("CARGO_MANIFEST_DIR"))
                .join("policies/seccomp/signer.x86_64.json")
                .display(),
            memory_lock = if is_root() { "current" } else { "dangerous_off" },
            conf = hsm.conf.display(),
            tokens = lab.path("tokens").display(),
            socket = socket.display(),
            state = state.display(),
        ),
    )
    .unwrap();
    let out = Command::new(&signer).args(["guard", "init", "--policy"]).arg(&policy).output();
    assert!(out.as_ref().is_ok_and(|o| o.status.success()), "{out:?}");
    let _daemon = Proc(
        Command::new(&signer)
            .env("SOFTHSM2_CONF", &hsm.conf)
            .args(["run", "--policy"])
            .arg(&policy)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .unwrap(),
    );
    let deadline = Instant::now() + Duration::from_secs(30);
    while UnixStream::connect(&socket).is_err() {
        assert!(Instant::now() < deadline, "the signer never listened on {}", socket.display());
    }

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
    let (code, out, err) = submit(&resume, &socket);
    assert_eq!(code, Some(0), "{out}\n{err}");
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
