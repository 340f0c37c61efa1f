//! What the process-level node tests share: a child process that is SIGKILLed and reaped when
//! dropped, polling with a deadline, free ports, the `rempart-signer` binary built next to the
//! test binary, a development signer (soft key, sandbox off) written into a test directory and
//! started with its guard initialised, and the `newaccount` transaction the tests push. Include
//! with `mod support;`. It never chooses what a test asserts.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rempart_core::key::PrivateKey;
use rempart_core::transaction::{Action, PermissionLevel, Transaction};
use rempart_core::{Bytes, Checksum256, Name, TimePointSec, to_bytes};
use rempart_node::authority::Authority;
use rempart_node::native::NewAccount;
use rempart_node::producer::clock;

/// The development key of `policies/genesis.json`'s `eosio`.
pub(crate) const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";
/// Its public half.
pub(crate) const DEV_PUB: &str = "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63";

/// A child process, SIGKILLed (by PID) and reaped when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// Polls `cond` every 20 ms until it holds; panics naming `what` after `timeout`.
pub(crate) fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = clock::instant() + timeout;
    while !cond() {
        assert!(clock::instant() < end, "timed out after {timeout:?} waiting for {what}");
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A TCP port nothing listens on right now.
pub(crate) fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").expect("bind").local_addr().expect("addr").port()
}

/// The signer binary, built (a no-op when fresh) next to this test binary.
pub(crate) fn signer_bin() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "-p", "rempart-signer", "--bin", "rempart-signer"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build -p rempart-signer failed: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target profile directory");
    let bin = dir.join("rempart-signer");
    assert!(bin.exists(), "{} is missing: run `cargo build -p rempart-signer`", bin.display());
    bin
}

/// Writes into `dir` a development signer for `chain_id`: `dev.key` (mode 0600), the state
/// directory `signer-state` and `signer.toml` (soft backend, socket `signer.sock`, sandbox off:
/// a test harness, not production).
pub(crate) fn write_dev_signer(dir: &Path, chain_id: &Checksum256) {
    std::fs::write(dir.join("dev.key"), format!("{DEV_WIF}\n")).expect("key");
    std::fs::set_permissions(dir.join("dev.key"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    std::fs::create_dir(dir.join("signer-state")).expect("state dir");
    let policy = format!(
        "[chain]\nid = \"{chain_id}\"\ndangerous_dev_chain = true\nmax_clock_skew_ms = 1500\n\
         [[producers]]\naccount = \"eosio\"\nkey = \"{DEV_PUB}\"\n[backend]\nkind = \"soft\"\n\
         [backend.soft]\nkey_files = [\"dev.key\"]\n[listen]\nunix_socket = \"signer.sock\"\n\
         allow_own_uid = true\n[state]\ndir = \"signer-state\"\n\
         audit_log = \"signer-state/audit.jsonl\"\n[sandbox]\ndangerous_disabled = true\n"
    );
    std::fs::write(dir.join("signer.toml"), policy).expect("signer.toml");
}

/// Initialises the guard of the signer [`write_dev_signer`] wrote into `dir` and starts it
/// with `bin`; returns once its socket accepts.
pub(crate) fn start_dev_signer(dir: &Path, bin: &Path) -> Proc {
    let policy = dir.join("signer.toml");
    let out = Command::new(bin).args(["guard", "init", "--policy"]).arg(&policy).output();
    let out = out.expect("guard init");
    assert!(out.status.success(), "guard init: {}", String::from_utf8_lossy(&out.stderr));
    let mut run = Command::new(bin);
    run.args(["run", "--policy"]).arg(&policy).stdout(Stdio::null()).stderr(Stdio::null());
    let p = Proc(run.spawn().expect("spawn signer"));
    let socket = dir.join("signer.sock");
    wait_for("the signer socket", Duration::from_secs(30), || {
        std::os::unix::net::UnixStream::connect(&socket).is_ok()
    });
    p
}

/// The head a node last wrote to its metrics file at `path` (0 before it writes one).
pub(crate) fn metrics_head(path: &Path) -> u32 {
    let text = std::fs::read_to_string(path).unwrap_or_default();
    text.lines()
        .find_map(|l| l.strip_prefix("rempart_node_head_block_num{"))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
        .unwrap_or(0)
}

/// Seconds since the epoch on the node's clock.
pub(crate) fn now_sec() -> u32 {
    (clock::now().0 / 1_000_000) as u32
}

/// `eosio` creates `name` owned by `key`, TaPoS on `ref_block`, expiring in 300 s (unsigned).
pub(crate) fn newaccount_trx(name: Name, ref_block: &Checksum256, key: &PrivateKey) -> Transaction {
    let auth = Authority::single_key(key.public_key());
    let eosio = Name::from_const("eosio");
    let data = NewAccount { creator: eosio, name, owner: auth.clone(), active: auth };
    let mut t = Transaction {
        actions: vec![Action {
            account: eosio,
            name: Name::from_const("newaccount"),
            authorization: vec![PermissionLevel {
                actor: eosio,
                permission: Name::from_const("active"),
            }],
            data: Bytes(to_bytes(&data)),
        }],
        ..Default::default()
    };
    t.header.expiration = TimePointSec(now_sec() + 300);
    t.set_reference_block(ref_block);
    t
}
