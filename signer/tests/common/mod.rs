//! Shared helpers of the signer's process tests: a temp deployment (policy, key, guard), the
//! daemon spawned as the real binary and killed by PID on drop, waits with deadlines.
#![allow(dead_code, unreachable_pub)]

use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::{Duration, Instant};

use rempart_core::block::BlockHeader;
use rempart_core::key::PublicKey;
use rempart_core::protocol::SignBlockRequest;
use rempart_core::{BlockTimestamp, Checksum256, Name, TimePoint};

pub const BIN: &str = env!("CARGO_BIN_EXE_rempart-signer");
pub const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";
pub const DEV_PUB: &str = "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63";
pub const CHAIN: &str = "0202020202020202020202020202020202020202020202020202020202020202";

/// A child process killed (SIGKILL, by PID) and reaped on drop.
pub struct Daemon {
    pub child: Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// Waits for `cond` with a deadline; polling a file or port is the only synchronisation.
pub fn wait_for(what: &str, timeout: Duration, mut cond: impl FnMut() -> bool) {
    let end = Instant::now() + timeout;
    while !cond() {
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::yield_now();
        std::thread::sleep(Duration::from_millis(1));
    }
}

pub fn free_port() -> u16 {
    std::net::TcpListener::bind("127.0.0.1:0").unwrap().local_addr().unwrap().port()
}

/// A deployment in a temp dir.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub policy: PathBuf,
    pub socket: PathBuf,
    pub tcp_port: u16,
    pub key: PublicKey,
}

/// Backend section: `soft` with the dev key, or the given pkcs11 table.
pub fn setup(backend: Option<&str>, key: &str, extra: &str) -> Setup {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("dev.key");
    std::fs::write(&keyfile, format!("{DEV_WIF}\n")).unwrap();
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    let state = dir.path().join("state");
    std::fs::create_dir(&state).unwrap();
    let tcp_port = free_port();
    let backend = backend
        .map(str::to_string)
        .unwrap_or_else(|| "kind = \"soft\"\n[backend.soft]\nkey_files = [\"dev.key\"]".into());
    let text = format!(
        r#"
[chain]
id = "{CHAIN}"
dangerous_dev_chain = true
max_clock_skew_ms = 60000
[[producers]]
account = "eosio"
key = "{key}"
[backend]
{backend}
[listen]
unix_socket = "signer.sock"
allow_own_uid = true
tcp = "127.0.0.1:{tcp_port}"
tcp_allowed_peers = ["127.0.0.1"]
[state]
dir = "state"
audit_log = "state/audit.jsonl"
[limits]
request_timeout_ms = 5000
[sandbox]
dangerous_disabled = true
{extra}
"#
    );
    let policy = dir.path().join("signer.toml");
    std::fs::write(&policy, text).unwrap();
    let socket = dir.path().join("signer.sock");
    Setup { policy, socket, tcp_port, key: key.parse().unwrap(), dir }
}

impl Setup {
    pub fn guard_init(&self) {
        let out = Command::new(BIN)
            .args(["guard", "init", "--policy"])
            .arg(&self.policy)
            .output()
            .unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    }

    pub fn spawn(&self, envs: &[(&str, &str)]) -> Daemon {
        let _ = std::fs::remove_file(&self.socket);
        let mut cmd = Command::new(BIN);
        cmd.args(["run", "--policy"]).arg(&self.policy).stdout(Stdio::null()).stderr(Stdio::null());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        let d = Daemon { child: cmd.spawn().unwrap() };
        wait_for("the signer socket", Duration::from_secs(20), || {
            std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
        });
        d
    }

    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("state/audit.jsonl")
    }
}

pub fn now_slot() -> BlockTimestamp {
    let ms = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap().as_millis()
        as i64;
    BlockTimestamp::from_time_point(TimePoint::from_millis(ms))
}

pub fn chain_id() -> Checksum256 {
    CHAIN.parse().unwrap()
}

pub fn request(
    key: &PublicKey,
    block_num: u32,
    slot: BlockTimestamp,
    salt: u8,
) -> SignBlockRequest {
    let mut previous = Checksum256([salt; 32]);
    previous.0[..4].copy_from_slice(&(block_num - 1).to_be_bytes());
    SignBlockRequest {
        request_id: 0,
        chain_id: chain_id(),
        header: BlockHeader {
            timestamp: slot,
            producer: Name::from_const("eosio"),
            previous,
            ..Default::default()
        },
        blockroot_merkle_root: Checksum256([3; 32]),
        pending_schedule_hash: Checksum256([4; 32]),
        signing_key: *key,
    }
}

pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

pub fn path_dir(p: &Path) -> &Path {
    p.parent().unwrap()
}
