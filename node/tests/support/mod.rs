//! What the process-level node tests share: a child process that is SIGKILLed and reaped when
//! dropped, polling with a deadline, free ports, the `rempart-signer` binary built next to the
//! test binary, a development signer (soft key, sandbox off) written into a test directory and
//! started with its guard initialised, the `newaccount` transaction the tests push, and the
//! action builders and block-of-its-own push that the in-process chain tests use. Include with
//! `mod support;`. It never chooses what a test asserts.

#![allow(dead_code)] // Each test binary uses its own part of this module.

use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use rempart_core::key::{PrivateKey, Signature};
use rempart_core::protocol::SignBlockRequest;
use rempart_core::transaction::{Action, PermissionLevel, Transaction};
use rempart_core::{Bytes, Checksum256, Name, TimePointSec, to_bytes};
use rempart_node::authority::Authority;
use rempart_node::chain::{Chain, SignFailure, TransactionTrace, TxError, sign_transaction};
use rempart_node::genesis::Genesis;
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

// Not every test binary that includes this module binds a port.
#[allow(unused_imports)]
pub(crate) use rempart_core::testing::free_port;

/// The signer binary, built (a no-op when fresh) next to this test binary, unless the suite's
/// workspace build made it (`REMPART_UP_NO_BUILD`, set by tests/run.sh): a build here would
/// relink it with the signer's own features while other tests run it.
pub(crate) fn signer_bin() -> PathBuf {
    let built = std::env::var_os("REMPART_UP_NO_BUILD").is_some_and(|v| !v.is_empty() && v != "0");
    if !built {
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
    }
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
    write_dev_signer_with(dir, chain_id, "");
}

/// [`write_dev_signer`] with `extra` appended to its policy (a `[shared_guard]` section, say).
pub(crate) fn write_dev_signer_with(dir: &Path, chain_id: &Checksum256, extra: &str) {
    std::fs::write(dir.join("dev.key"), format!("{DEV_WIF}\n")).expect("key");
    std::fs::set_permissions(dir.join("dev.key"), std::fs::Permissions::from_mode(0o600))
        .expect("chmod");
    std::fs::create_dir(dir.join("signer-state")).expect("state dir");
    let policy = format!(
        "[chain]\nid = \"{chain_id}\"\ndangerous_dev_chain = true\nmax_clock_skew_ms = 1500\n\
         [[producers]]\naccount = \"eosio\"\nkey = \"{DEV_PUB}\"\n[backend]\nkind = \"soft\"\n\
         [backend.soft]\nkey_files = [\"dev.key\"]\n[listen]\nunix_socket = \"signer.sock\"\n\
         allow_own_uid = true\n[state]\ndir = \"signer-state\"\n\
         audit_log = \"signer-state/audit.jsonl\"\n[sandbox]\ndangerous_disabled = true\n{extra}"
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
    restart_dev_signer(dir, bin)
}

/// Starts again the signer [`start_dev_signer`] started in `dir` (its guard initialised
/// already); returns once its socket accepts. Its stderr goes to `dir/signer.log` (appended
/// across restarts); a signer that exits before it listens fails the test with its status and
/// that log.
pub(crate) fn restart_dev_signer(dir: &Path, bin: &Path) -> Proc {
    let policy = dir.join("signer.toml");
    let log_path = dir.join("signer.log");
    let log = std::fs::OpenOptions::new().create(true).append(true).open(&log_path);
    let mut run = Command::new(bin);
    run.args(["run", "--policy"]).arg(&policy).stdout(Stdio::null());
    run.stderr(log.expect("signer log"));
    let mut p = Proc(run.spawn().expect("spawn signer"));
    let socket = dir.join("signer.sock");
    rempart_core::testing::wait_unix_listening(
        &mut p.0,
        &socket,
        &log_path,
        Duration::from_secs(30),
    );
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
        actions: vec![act("eosio", "newaccount", "eosio", to_bytes(&data))],
        ..Default::default()
    };
    t.header.expiration = TimePointSec(now_sec() + 300);
    t.set_reference_block(ref_block);
    t
}

/// `policies/genesis.json`: the development chain, `eosio` on the development key.
pub(crate) fn genesis() -> Genesis {
    Genesis::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"))
        .expect("genesis")
}

/// A name the test spells correctly.
pub(crate) fn n(s: &str) -> Name {
    s.parse().expect("name")
}

/// Signs a block with the development key (the genesis producer's).
pub(crate) fn sign_dev(req: &SignBlockRequest) -> Result<Signature, SignFailure> {
    let dev: PrivateKey = DEV_WIF.parse().expect("key");
    Ok(dev.sign(&req.digest()))
}

/// `account::name` authorised by `actor@active`, with packed `data`.
pub(crate) fn act(account: &str, name: &str, actor: &str, data: Vec<u8>) -> Action {
    Action {
        account: n(account),
        name: n(name),
        authorization: vec![PermissionLevel { actor: n(actor), permission: n("active") }],
        data: Bytes(data),
    }
}

/// An `eosio.token` action from its JSON arguments, authorised by `actor@active`.
pub(crate) fn token(name: &str, actor: &str, args: serde_json::Value) -> Action {
    let abi = rempart_core::abi::eosio_token_abi();
    act("eosio.token", name, actor, abi.action_json_to_bin(n(name), &args).expect("pack"))
}

/// Pushes `actions` signed by `keys` in a block of its own (signed with the development key),
/// TaPoS on the head, expiring 60 s after it.
pub(crate) fn push(
    chain: &Chain,
    actions: Vec<Action>,
    keys: &[&PrivateKey],
) -> Result<TransactionTrace, TxError> {
    let info = chain.info();
    let mut t = Transaction { actions, ..Default::default() };
    t.header.expiration =
        TimePointSec((info.head_block_time.to_time_point().0 / 1_000_000) as u32 + 60);
    t.set_reference_block(&info.head_block_id);
    chain.start_block(info.head_block_time.next()).expect("start");
    let r = chain.push_transaction(sign_transaction(t, keys, &chain.chain_id()));
    chain.finish_block(sign_dev).expect("block");
    r
}
