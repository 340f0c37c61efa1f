//! Shared helpers of the signer's process tests and benchmark: a temp deployment (policy, key,
//! guard), a SoftHSM2 token of its own, the daemon spawned as the real binary and killed by PID
//! on drop, waits with deadlines. Nothing here may touch a file outside its temp directory.
#![allow(dead_code, unreachable_pub)]

use std::io::{BufRead, BufReader};
use std::os::unix::fs::PermissionsExt;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::mpsc;
use std::time::{Duration, Instant};

use rempart_core::block::BlockHeader;
use rempart_core::key::PublicKey;
use rempart_core::protocol::SignBlockRequest;
use rempart_core::{BlockTimestamp, Checksum256, Name, TimePoint};

pub const BIN: &str = env!("CARGO_BIN_EXE_rempart-signer");
pub const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";
pub const DEV_PUB: &str = "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63";
pub const CHAIN: &str = "0202020202020202020202020202020202020202020202020202020202020202";

/// The SoftHSM2 module (Debian package `softhsm2`).
pub const SOFTHSM_MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A child process killed (SIGKILL, by PID) and reaped on drop; with `log`, its stderr lines.
pub struct Daemon {
    pub child: Child,
    pub log: mpsc::Receiver<String>,
}

impl Daemon {
    /// Sends SIGTERM and waits (with a deadline) for the exit status.
    pub fn terminate(&mut self) -> std::process::ExitStatus {
        let pid = rustix::process::Pid::from_child(&self.child);
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::TERM);
        self.wait(Duration::from_secs(20))
    }

    /// SIGTERM, then asserts a clean exit (0) and no panic among the lines not yet read;
    /// otherwise shows how it ended and those lines.
    pub fn terminate_cleanly(&mut self) {
        let status = self.terminate();
        let lines = self.lines().join("\n");
        assert_eq!(status.code(), Some(0), "{status:?}; its log:\n{lines}");
        assert!(!lines.contains("panicked at"), "a thread of the signer panicked:\n{lines}");
    }

    /// Waits for the process to end, with a deadline.
    pub fn wait(&mut self, timeout: Duration) -> std::process::ExitStatus {
        let mut status = None;
        wait_for("the signer to exit", timeout, || {
            status = self.child.try_wait().unwrap();
            status.is_some()
        });
        status.unwrap()
    }

    /// Whether the process still runs.
    pub fn running(&mut self) -> bool {
        self.child.try_wait().unwrap().is_none()
    }

    /// Every stderr line received so far.
    pub fn lines(&self) -> Vec<String> {
        self.log.try_iter().collect()
    }

    /// Every stderr line up to the end of the log, for a process that has exited (its reader
    /// may still be passing the last lines on).
    pub fn rest(&self) -> Vec<String> {
        let mut lines = Vec::new();
        while let Ok(line) = self.log.recv_timeout(Duration::from_secs(5)) {
            lines.push(line);
        }
        lines
    }

    /// Stderr lines up to and including the first one containing `needle`; fails the test
    /// with what was logged when the deadline passes or the log ends first.
    pub fn wait_line(&self, needle: &str, timeout: Duration) -> Vec<String> {
        let rx = &self.log;
        let end = Instant::now() + timeout;
        let mut seen = Vec::new();
        loop {
            let left = end.saturating_duration_since(Instant::now());
            match rx.recv_timeout(left) {
                Ok(line) => {
                    let found = line.contains(needle);
                    seen.push(line);
                    if found {
                        return seen;
                    }
                }
                Err(e) => panic!("no log line with {needle:?} ({e}):\n{}", seen.join("\n")),
            }
        }
    }
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

pub use rempart_core::testing::free_port;

/// A deployment in a temp dir.
pub struct Setup {
    pub dir: tempfile::TempDir,
    pub policy: PathBuf,
    pub socket: PathBuf,
    pub tcp_port: u16,
    pub key: PublicKey,
}

/// Backend section: `soft` with the dev key, or the given pkcs11 table; no sandbox.
pub fn setup(backend: Option<&str>, key: &str, extra: &str) -> Setup {
    setup_in(None, backend, key, "dangerous_disabled = true", extra)
}

/// The `[sandbox]` table body of a daemon sandboxed with the shipped seccomp policy. Memory is
/// locked only as root (`current`); `read_only` lists trees it still reads (SoftHSM2 tokens).
pub fn sandbox_toml(read_only: &[&Path]) -> String {
    let seccomp =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/seccomp/signer.x86_64.json");
    let lock = if rustix::process::geteuid().is_root() { "current" } else { "dangerous_off" };
    let paths: Vec<String> =
        read_only.iter().map(|p| format!("{:?}", p.display().to_string())).collect();
    format!(
        "seccomp_policy = {:?}\nmemory_lock = \"{lock}\"\nread_only_paths = [{}]",
        seccomp.display().to_string(),
        paths.join(", ")
    )
}

/// A deployment sandboxed with the shipped seccomp policy, writing its metrics to
/// `state/metrics.prom` (see [`Setup::metric`]).
pub fn sandboxed_with_metrics() -> Setup {
    setup_in(None, None, DEV_PUB, &sandbox_toml(&[]), "[metrics]\nfile = \"state/metrics.prom\"")
}

/// A deployment in a new temp dir under `parent` (the system's temp dir when `None`), with
/// `sandbox` as the body of its `[sandbox]` table.
pub fn setup_in(
    parent: Option<&Path>,
    backend: Option<&str>,
    key: &str,
    sandbox: &str,
    extra: &str,
) -> Setup {
    let dir = match parent {
        Some(p) => tempfile::tempdir_in(p).unwrap(),
        None => tempfile::tempdir().unwrap(),
    };
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
{sandbox}
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
        self.spawn_with(envs, &[])
    }

    /// Spawns `run` with extra global arguments (e.g. `--log-format json`); its stderr lines
    /// are collected (see [`Daemon::lines`]). Waits until the Unix socket and the
    /// TCP port both accept; a daemon that exits first fails the test with its status and log.
    pub fn spawn_with(&self, envs: &[(&str, &str)], args: &[&str]) -> Daemon {
        let mut child = self.command(envs, args).spawn().unwrap();
        let log = line_channel(child.stderr.take().expect("stderr is piped"));
        self.until_serving(Daemon { child, log })
    }

    /// Spawns `run` with its stderr a pipe that nothing reads (a log shipper that stalled):
    /// the daemon and the pipe's read end, which must be kept open for as long as the pipe is
    /// to stay full. [`Daemon::lines`] of this daemon is always empty.
    pub fn spawn_with_stalled_log(&self) -> (Daemon, std::process::ChildStderr) {
        let mut child = self.command(&[], &[]).spawn().unwrap();
        let stderr = child.stderr.take().expect("stderr is piped");
        let (_, log) = mpsc::channel();
        (self.until_serving(Daemon { child, log }), stderr)
    }

    fn command(&self, envs: &[(&str, &str)], args: &[&str]) -> Command {
        let _ = std::fs::remove_file(&self.socket);
        let mut cmd = Command::new(BIN);
        cmd.args(args).args(["run", "--policy"]).arg(&self.policy).stdout(Stdio::null());
        // Always piped: a daemon that exits before serving fails the test with what it said.
        cmd.stdin(Stdio::null()).stderr(Stdio::piped());
        for (k, v) in envs {
            cmd.env(k, v);
        }
        cmd
    }

    /// `d` once its Unix socket and TCP port both accept.
    fn until_serving(&self, mut d: Daemon) -> Daemon {
        wait_for("the signer socket", Duration::from_secs(20), || {
            if let Some(status) = d.child.try_wait().unwrap() {
                panic!("the signer exited before serving: {status:?}\n{}", d.rest().join("\n"));
            }
            std::os::unix::net::UnixStream::connect(&self.socket).is_ok()
                && std::net::TcpStream::connect(("127.0.0.1", self.tcp_port)).is_ok()
        });
        d
    }

    /// Starts the signer, waits until it says it serves (its SIGTERM handler is then in place),
    /// and stops it with SIGTERM: the exit status.
    pub fn start_and_stop(&self, envs: &[(&str, &str)]) -> std::process::ExitStatus {
        let mut d = self.spawn(envs);
        d.wait_line("serving chain", Duration::from_secs(20));
        d.terminate()
    }

    /// The value of an unlabelled metric in the metrics file of [`sandboxed_with_metrics`].
    pub fn metric(&self, name: &str) -> Option<u64> {
        let text = std::fs::read_to_string(self.state_dir().join("metrics.prom")).ok()?;
        text.lines().find_map(|l| l.strip_prefix(name)?.strip_prefix(' ')?.parse().ok())
    }

    pub fn state_dir(&self) -> PathBuf {
        self.dir.path().join("state")
    }

    pub fn audit_log(&self) -> PathBuf {
        self.dir.path().join("state/audit.jsonl")
    }
}

/// The lines `out` (a child's stdout or stderr) gives, passed on by a thread as they come; the
/// channel disconnects when `out` ends.
pub fn line_channel(out: impl std::io::Read + Send + 'static) -> mpsc::Receiver<String> {
    let (tx, rx) = mpsc::channel();
    std::thread::spawn(move || {
        BufReader::new(out).lines().map_while(Result::ok).try_for_each(|line| tx.send(line))
    });
    rx
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

/// A SoftHSM2 configuration with its own token directory and one token "T" (PIN 1234).
pub struct Hsm {
    pub dir: tempfile::TempDir,
    pub conf: PathBuf,
    pub tokens: PathBuf,
}

/// A fresh SoftHSM2 token, or `None` (with a printed reason) when SoftHSM2 is not installed;
/// with CI=true a missing SoftHSM2 fails instead.
pub fn softhsm() -> Option<Hsm> {
    let have = Path::new(SOFTHSM_MODULE).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !have {
        assert!(!ci(), "CI=true but SoftHSM2 is missing: apt-get install softhsm2 opensc");
        println!("skipped: SoftHSM2 ({SOFTHSM_MODULE}, softhsm2-util) is not installed");
        return None;
    }
    let dir = tempfile::tempdir().unwrap();
    let tokens = dir.path().join("tokens");
    std::fs::create_dir(&tokens).unwrap();
    let conf = dir.path().join("softhsm2.conf");
    std::fs::write(
        &conf,
        format!(
            "directories.tokendir = {}\nobjectstore.backend = file\nlog.level = ERROR\n",
            tokens.display()
        ),
    )
    .unwrap();
    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &conf)
        .args(["--init-token", "--free", "--label", "T", "--so-pin", "5678", "--pin", "1234"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    Some(Hsm { dir, conf, tokens })
}

impl Hsm {
    /// `rempart-signer keygen` in token "T" with PIN `pin`.
    pub fn keygen(&self, key_type: &str, label: &str, pin: &str) -> std::process::Output {
        Command::new(BIN)
            .env("SOFTHSM2_CONF", &self.conf)
            .env("HSM_PIN", pin)
            .args(["keygen", "--module", SOFTHSM_MODULE, "--token-label", "T"])
            .args(["--pin-env", "HSM_PIN", "--key-type", key_type, "--label", label])
            .output()
            .unwrap()
    }

    /// A new key pair in the token; returns its `PUB_…` key.
    pub fn new_key(&self, key_type: &str, label: &str) -> String {
        let out = self.keygen(key_type, label, "1234");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        String::from_utf8(out.stdout).unwrap().trim().to_string()
    }

    /// The environment of a daemon using this token (PIN from `HSM_PIN`).
    pub fn env(&self) -> [(&str, &str); 2] {
        [("SOFTHSM2_CONF", self.conf.to_str().unwrap()), ("HSM_PIN", "1234")]
    }
}

/// The `[backend]` table body for a PKCS#11 key labelled `label` in `token`.
pub fn pkcs11_backend(token: &str, label: &str, module: &str) -> String {
    format!(
        "kind = \"pkcs11\"\n[backend.pkcs11]\nmodule = \"{module}\"\ntoken_label = \"{token}\"\n\
         pin_env = \"HSM_PIN\"\nkeys = [{{ label = \"{label}\" }}]"
    )
}

/// etcd for the shared guard's tests (`tests/support/etcd.rs`).
#[path = "../../../tests/support/etcd.rs"]
pub mod etcd;

/// For each `(from, to, want)`: `rempart-signer check` refuses `policy` with `from` replaced by
/// `to`, says `want`, and names the line of `to`'s last line (searched from the line `section`,
/// a table header, when given).
pub fn assert_check_refuses(policy: &Path, section: Option<&str>, cases: &[(&str, &str, &str)]) {
    let text = std::fs::read_to_string(policy).unwrap();
    for (from, to, want) in cases {
        let edited = text.replacen(from, to, 1);
        assert_ne!(edited, text, "{from}");
        std::fs::write(policy, &edited).unwrap();
        let out = Command::new(BIN).arg("check").arg(policy).output().unwrap();
        let err = String::from_utf8_lossy(&out.stderr);
        assert!(!out.status.success(), "{to}: accepted");
        assert!(err.contains(want), "{to}: {err}");
        let start = section.map_or(0, |h| edited.lines().position(|l| l == h).unwrap());
        let last = to.lines().last().unwrap();
        let line = start + edited.lines().skip(start).position(|l| l.contains(last)).unwrap() + 1;
        assert!(err.contains(&format!("signer.toml:{line}:")), "{to}: not at line {line}: {err}");
    }
    std::fs::write(policy, text).unwrap();
}
