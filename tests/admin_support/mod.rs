//! A PC/SC lab for the admin tests: a private `pcscd` with one vpcd reader (two slots), virtual
//! PIV cards from `tests/vcard` plugged into its slots, and the real `rempart` binary.
//!
//! pcscd's client socket is machine-wide, so the tests of one binary take a lock and a second
//! pcscd already running is an error. Every process started here is killed by its PID when
//! the lab is dropped. Without pcscd, vpcd or a C toolchain the lab is skipped with a line
//! saying why, except under `CI=true`, where that is a failure.

#![allow(dead_code, reason = "each test binary uses a part of this module")]

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

use rempart_core::testing::free_port;

/// The vpcd driver shipped by Debian's `vsmartcard-vpcd`.
const VPCD_DRIVER: &str = "/usr/lib/pcsc/drivers/serial/libifdvpcd.so";
/// The PIN of a fresh virtual card.
pub(crate) const PIN: &str = "123456";

static LOCK: Mutex<()> = Mutex::new(());
static VCARD: OnceLock<Result<PathBuf, String>> = OnceLock::new();

/// A child process killed (by PID) when dropped.
pub(crate) struct Proc(pub(crate) Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// pcscd plus the cards in its two slots.
pub(crate) struct Lab {
    /// Scratch directory: config, card state files, proposals.
    pub(crate) dir: tempfile::TempDir,
    port: u16,
    cards: [Option<Proc>; 2],
    _pcscd: Proc,
    _lock: MutexGuard<'static, ()>,
}

fn skip_or_fail(why: &str) -> Option<Lab> {
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and {why}");
    eprintln!("skipping the YubiKey ceremony test: {why}");
    None
}

/// Builds (once) the virtual card in release mode and returns its path; `REMPART_VCARD` names
/// a prebuilt one.
fn vcard() -> Result<PathBuf, String> {
    VCARD
        .get_or_init(|| {
            if let Ok(p) = std::env::var("REMPART_VCARD") {
                return Ok(PathBuf::from(p));
            }
            let root = Path::new(env!("CARGO_MANIFEST_DIR"));
            let target = std::env::var_os("CARGO_TARGET_DIR")
                .map(PathBuf::from)
                .unwrap_or_else(|| root.join("target"))
                .join("vcard");
            let status = Command::new(env!("CARGO"))
                .args(["build", "--release", "--locked", "--manifest-path"])
                .arg(root.join("tests/vcard/Cargo.toml"))
                .arg("--target-dir")
                .arg(&target)
                .status()
                .map_err(|e| format!("cannot run cargo: {e}"))?;
            if !status.success() {
                return Err("building tests/vcard failed (see above)".into());
            }
            Ok(target.join("release/rempart-vcard"))
        })
        .clone()
}

/// Two consecutive free TCP ports on loopback (vpcd listens on PORT and PORT+1), below the
/// ephemeral range like [`free_port`]'s.
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let port = free_port();
        if port < u16::MAX && std::net::TcpListener::bind(("0.0.0.0", port + 1)).is_ok() {
            return port;
        }
    }
    panic!("no two consecutive free ports");
}

impl Lab {
    /// Starts pcscd with a reader of two vpcd slots, or says why it cannot.
    pub(crate) fn start() -> Option<Lab> {
        let lock = LOCK.lock().unwrap_or_else(|e| e.into_inner());
        if !Path::new(VPCD_DRIVER).exists() {
            return skip_or_fail("vsmartcard-vpcd is not installed");
        }
        if Command::new("pcscd").arg("--version").output().is_err() {
            return skip_or_fail("pcscd is not installed");
        }
        let vcard = match vcard() {
            Ok(p) => p,
            Err(e) => return skip_or_fail(&e),
        };
        assert!(vcard.exists(), "{} missing", vcard.display());
        let dir = tempfile::tempdir().expect("tempdir");
        let conf = dir.path().join("reader.conf.d");
        std::fs::create_dir(&conf).expect("mkdir");
        let port = free_port_pair();
        std::fs::write(
            conf.join("vcard"),
            format!(
                "FRIENDLYNAME \"rempart vcard\"\nDEVICENAME /dev/null:{port}\nLIBPATH {VPCD_DRIVER}\n"
            ),
        )
        .expect("write reader conf");
        // pcscd's client socket is machine-wide: a second daemon would refuse to start.
        if let Ok(pid) = std::fs::read_to_string("/run/pcscd/pcscd.pid") {
            let pid = pid.trim();
            assert!(
                !Path::new(&format!("/proc/{pid}")).exists(),
                "another pcscd (pid {pid}) is running: stop it before running these tests"
            );
        }
        let child = Command::new("pcscd")
            .args(["-f", "-c"])
            .arg(&conf)
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .spawn()
            .expect("start pcscd");
        Some(Lab { dir, port, cards: [None, None], _pcscd: Proc(child), _lock: lock })
    }

    /// Plugs a card into `slot` (0 or 1): a card whose state lives in the file `name` in the
    /// lab directory (the same name later is the same card) and whose generator is seeded with
    /// `seed`. Waits until the card answers.
    pub(crate) fn plug(&mut self, slot: usize, name: &str, seed: u8) {
        self.unplug(slot);
        let vcard = vcard().expect("built");
        let child = Command::new(vcard)
            .arg("--port")
            .arg((self.port + slot as u16).to_string())
            .arg("--seed")
            .arg(hex::encode([seed; 32]))
            .arg("--state")
            .arg(self.dir.path().join(name))
            .stdout(Stdio::null())
            .spawn()
            .expect("start the virtual card");
        self.cards[slot] = Some(Proc(child));
        let want = format!("{}: YubiKey", reader(slot));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = rempart(&["admin", "readers"]);
            let text = String::from_utf8_lossy(&out.stdout);
            if text.lines().any(|l| l.ends_with(&want)) {
                return;
            }
            assert!(Instant::now() < deadline, "card {name} never answered in slot {slot}: {text}");
        }
    }

    /// Unplugs the card in `slot` (stops its process) and waits until the reader is empty.
    pub(crate) fn unplug(&mut self, slot: usize) {
        if self.cards[slot].take().is_none() {
            return;
        }
        let want = format!("{}: no YubiKey", reader(slot));
        let deadline = Instant::now() + Duration::from_secs(20);
        loop {
            let out = rempart(&["admin", "readers"]);
            let text = String::from_utf8_lossy(&out.stdout);
            if text.lines().any(|l| l.ends_with(&want)) {
                return;
            }
            assert!(Instant::now() < deadline, "slot {slot} never emptied: {text}");
        }
    }

    /// A path in the lab directory.
    pub(crate) fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }
}

/// The reader name of a slot, as pcscd names it.
pub(crate) fn reader(slot: usize) -> String {
    format!("rempart vcard 00 {slot:02}")
}

/// Writes a secret file (a PIN) readable by its owner only, as `rempart admin` requires.
pub(crate) fn write_secret(path: &Path, text: &str) {
    use std::os::unix::fs::PermissionsExt as _;
    std::fs::write(path, text).expect("write the secret");
    std::fs::set_permissions(path, std::fs::Permissions::from_mode(0o600)).expect("chmod 600");
}

/// Runs the real `rempart` binary. Its default data directory (where the admin audit journal
/// goes without --audit) is one under the target directory, never the user's own.
pub(crate) fn rempart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rempart"))
        .env("XDG_DATA_HOME", target_dir().join("admin-tests-data"))
        .args(args)
        .output()
        .expect("run rempart")
}

/// Runs `rempart`, requires success, returns stdout.
pub(crate) fn rempart_ok(args: &[&str]) -> String {
    let out = rempart(args);
    assert!(
        out.status.success(),
        "rempart {args:?} failed: {}\n{}",
        String::from_utf8_lossy(&out.stdout),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8(out.stdout).expect("utf-8")
}

fn target_dir() -> PathBuf {
    std::env::var_os("CARGO_TARGET_DIR")
        .map(PathBuf::from)
        .unwrap_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("target"))
}

/// The real signer binary, with its default backends and the YubiKey one.
pub(crate) fn signer_binary() -> PathBuf {
    binary("rempart-signer", "rempart-signer", &["yubikey"])
}

/// Debian's SoftHSM2 PKCS#11 module.
pub(crate) const SOFTHSM: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM2 token directory of its own, with one token `T` (SO PIN 5678, PIN 1234).
pub(crate) struct Hsm {
    /// The `SOFTHSM2_CONF` file.
    pub(crate) conf: PathBuf,
}

impl Hsm {
    /// Initialises the token under `dir/tokens`.
    pub(crate) fn new(dir: &Path) -> Hsm {
        let tokens = dir.join("tokens");
        std::fs::create_dir(&tokens).expect("mkdir tokens");
        let conf = dir.join("softhsm2.conf");
        std::fs::write(
            &conf,
            format!("directories.tokendir = {}\nobjectstore.backend = file\n", tokens.display()),
        )
        .expect("write softhsm2.conf");
        let out = Command::new("softhsm2-util")
            .env("SOFTHSM2_CONF", &conf)
            .args(["--init-token", "--free", "--label", "T", "--so-pin", "5678", "--pin", "1234"])
            .output()
            .expect("softhsm2-util");
        assert!(out.status.success(), "{out:?}");
        Hsm { conf }
    }

    /// `pkcs11-tool -O`: the objects in the token.
    pub(crate) fn objects(&self) -> String {
        let out = Command::new("pkcs11-tool")
            .env("SOFTHSM2_CONF", &self.conf)
            .args(["--module", SOFTHSM, "--token-label", "T", "--login", "--pin", "1234", "-O"])
            .output()
            .expect("pkcs11-tool");
        String::from_utf8_lossy(&out.stdout).into_owned()
    }
}

/// Whether SoftHSM2 is installed; without it a test skips, except under `CI=true`.
pub(crate) fn have_softhsm() -> bool {
    if Path::new(SOFTHSM).exists() {
        return true;
    }
    assert!(std::env::var("CI").as_deref() != Ok("true"), "CI=true and SoftHSM2 is missing");
    eprintln!("skipping: SoftHSM2 is not installed");
    false
}

/// One request over the signer's Unix socket.
pub(crate) fn call(
    socket: &Path,
    request: &rempart_core::protocol::Request,
) -> rempart_core::protocol::Response {
    use std::io::{Read as _, Write as _};
    let mut s = std::os::unix::net::UnixStream::connect(socket).expect("connect to the signer");
    s.set_read_timeout(Some(Duration::from_secs(20))).expect("timeout");
    s.write_all(&rempart_core::protocol::encode_frame(request).expect("encode")).expect("send");
    let mut decoder = rempart_core::protocol::FrameDecoder::new();
    let mut buf = [0u8; 8192];
    loop {
        let n = s.read(&mut buf).expect("read the answer");
        assert!(n > 0, "the signer closed the connection");
        let mut input = &buf[..n];
        while !input.is_empty() {
            if let Some(r) = decoder.decode(&mut input).expect("decode") {
                return r;
            }
        }
    }
}

/// Locking memory needs root (or a raised RLIMIT_MEMLOCK).
pub(crate) fn is_root() -> bool {
    std::fs::read_to_string("/proc/self/status").is_ok_and(|s| {
        s.lines().any(|l| l.starts_with("Uid:") && l.split_whitespace().nth(1) == Some("0"))
    })
}

/// `rempart admin enroll` of the card in `slot`: its admin public key.
pub(crate) fn enroll(slot: usize) -> rempart_core::key::PublicKey {
    rempart_ok(&["admin", "enroll", "--reader", &reader(slot)]).trim().parse().expect("key")
}

/// `rempart admin propose` for signer `bp1.signer` on `chain`, into the lab file `name`.
pub(crate) fn propose(lab: &Lab, chain: &str, name: &str, action: &[&str]) -> PathBuf {
    let out = lab.path(name);
    let mut args =
        vec!["admin", "propose", "--signer-id", "bp1.signer", "--chain-id", chain, "--out"];
    let out_text = out.to_str().expect("utf-8 path").to_owned();
    args.push(&out_text);
    args.extend_from_slice(action);
    rempart_ok(&args);
    out
}

/// `rempart admin approve FILE` with the card in `slot` and the PIN in the lab file `pin`.
pub(crate) fn approve(lab: &Lab, file: &Path, slot: usize) {
    let pin = lab.path("pin");
    rempart_ok(&[
        "admin",
        "approve",
        file.to_str().expect("utf-8 path"),
        "--reader",
        &reader(slot),
        "--pin-file",
        pin.to_str().expect("utf-8 path"),
    ]);
}

/// `rempart admin submit` over the Unix socket: (exit code, stdout, stderr).
pub(crate) fn submit(file: &Path, socket: &Path) -> (Option<i32>, String, String) {
    submit_to(file, &format!("unix:{}", socket.display()))
}

/// `rempart admin submit` to `endpoint` (`unix:PATH` or `host:port`): (exit code, stdout,
/// stderr).
pub(crate) fn submit_to(file: &Path, endpoint: &str) -> (Option<i32>, String, String) {
    let out =
        rempart(&["admin", "submit", file.to_str().expect("utf-8 path"), "--signer", endpoint]);
    (
        out.status.code(),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

/// Builds `package`'s binary `bin` with `features` and returns its path.
pub(crate) fn binary(package: &str, bin: &str, features: &[&str]) -> PathBuf {
    let mut cmd = Command::new(env!("CARGO"));
    cmd.args(["build", "--locked", "-p", package, "--bin", bin]);
    if !features.is_empty() {
        cmd.args(["--features", &features.join(",")]);
    }
    let status = cmd.current_dir(env!("CARGO_MANIFEST_DIR")).status().expect("run cargo");
    assert!(status.success(), "building {bin} failed");
    target_dir().join("debug").join(bin)
}

/// Generates the block key `eosio-k1` (K1) in `hsm`'s token with `rempart-signer keygen`, the
/// PIN in the lab file `hsm-pin`, and returns its public key.
pub(crate) fn hsm_keygen(lab: &Lab, hsm: &Hsm, signer: &Path) -> rempart_core::key::PublicKey {
    let hsm_pin = lab.path("hsm-pin");
    write_secret(&hsm_pin, "1234\n");
    let out = Command::new(signer)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .args(["keygen", "--module", SOFTHSM, "--token-label", "T", "--pin-file"])
        .arg(&hsm_pin)
        .args(["--key-type", "k1", "--label", "eosio-k1"])
        .output()
        .expect("keygen");
    assert!(out.status.success(), "{out:?}");
    String::from_utf8_lossy(&out.stdout).trim().parse().expect("key")
}

/// A running `rempart-signer` (killed on drop) for producer `eosio` on `chain`, with the key
/// from [`hsm_keygen`], an `[admin]` section of `admins` with threshold 2, and the shipped
/// sandbox, as in production. It listens on a Unix socket and on loopback TCP (the listener
/// a WireGuard tunnel address gets in production), peer 127.0.0.1 allowed.
pub(crate) struct HsmSigner {
    /// The state directory (guards, audit log, admin state).
    pub(crate) state: PathBuf,
    /// Its Unix socket.
    pub(crate) socket: PathBuf,
    /// Its TCP listener.
    pub(crate) tcp: std::net::SocketAddr,
    /// Its log (stderr).
    pub(crate) log: PathBuf,
    _daemon: Proc,
}

impl HsmSigner {
    /// Writes the policy, initialises the guard, starts the daemon and waits for its socket.
    pub(crate) fn start(
        lab: &Lab,
        hsm: &Hsm,
        signer: &Path,
        chain: &str,
        block_key: &rempart_core::key::PublicKey,
        admins: &[rempart_core::key::PublicKey],
    ) -> HsmSigner {
        let state = lab.path("state");
        std::fs::create_dir(&state).expect("state dir");
        let socket = state.join("signer.sock");
        let tcp = free_addr();
        let policy = lab.path("signer.toml");
        let admins: Vec<String> = admins.iter().map(|k| format!("\"{k}\"")).collect();
        std::fs::write(
            &policy,
            format!(
                r#"[chain]
id = "{chain}"
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
tcp = "{tcp}"
tcp_allowed_peers = ["127.0.0.1"]
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
keys = [{admins}]
threshold = 2
"#,
                pin = lab.path("hsm-pin").display(),
                seccomp = Path::new(env!("CARGO_MANIFEST_DIR"))
                    .join("policies/seccomp/signer.x86_64.json")
                    .display(),
                memory_lock = if is_root() { "current" } else { "dangerous_off" },
                conf = hsm.conf.display(),
                tokens = lab.path("tokens").display(),
                socket = socket.display(),
                state = state.display(),
                admins = admins.join(", "),
            ),
        )
        .expect("signer.toml");
        let out = Command::new(signer).args(["guard", "init", "--policy"]).arg(&policy).output();
        assert!(out.as_ref().is_ok_and(|o| o.status.success()), "{out:?}");
        let log = lab.path("signer.log");
        let mut daemon = Proc(
            Command::new(signer)
                .env("SOFTHSM2_CONF", &hsm.conf)
                .args(["run", "--policy"])
                .arg(&policy)
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(&log).expect("signer log"))
                .spawn()
                .expect("start the signer"),
        );
        wait_listening(&mut daemon, &socket, &log);
        HsmSigner { state, socket, tcp, log, _daemon: daemon }
    }
}

/// Waits until the signer `daemon` accepts connections on `socket`; fails at once with its
/// exit status and `log` (its stderr) if it ends, or after 30 s.
pub(crate) fn wait_listening(daemon: &mut Proc, socket: &Path, log: &Path) {
    rempart_core::testing::wait_unix_listening(&mut daemon.0, socket, log, Duration::from_secs(30));
}

/// The development key: `eosio`'s owner and active authority in this test's genesis.
pub(crate) const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";
/// Its public key.
pub(crate) const DEV_PUB: &str = "EOS6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5GDW5CV";

/// A free loopback address (see [`free_port`]).
pub(crate) fn free_addr() -> SocketAddr {
    SocketAddr::from(([127, 0, 0, 1], free_port()))
}

/// Waits for `cond` with a deadline, polling.
pub(crate) fn wait_for<T>(what: &str, timeout: Duration, mut cond: impl FnMut() -> Option<T>) -> T {
    let end = Instant::now() + timeout;
    loop {
        if let Some(v) = cond() {
            return v;
        }
        assert!(Instant::now() < end, "timed out waiting for {what}");
        std::thread::sleep(Duration::from_millis(50));
    }
}

/// A POST to the api node's chain API (curl, bounded in time); `None` when it does not answer.
pub(crate) fn api(
    addr: SocketAddr,
    path: &str,
    body: &serde_json::Value,
) -> Option<serde_json::Value> {
    let out = Command::new("curl")
        .args(["-s", "--max-time", "5", "-X", "POST", "--data-binary"])
        .arg(body.to_string())
        .arg(format!("http://{addr}{path}"))
        .output()
        .expect("run curl");
    serde_json::from_slice(&out.stdout).ok()
}

/// The api node's head block number (0 while it does not answer).
pub(crate) fn api_head(addr: SocketAddr) -> u32 {
    api(addr, "/v1/chain/get_info", &serde_json::json!({}))
        .and_then(|v| v["head_block_num"].as_u64())
        .map_or(0, |n| u32::try_from(n).expect("block number"))
}

/// Block `num` from the api node.
pub(crate) fn api_block(addr: SocketAddr, num: u32) -> serde_json::Value {
    let b = api(addr, "/v1/chain/get_block", &serde_json::json!({ "block_num_or_id": num }))
        .unwrap_or_else(|| panic!("block {num} from the api node"));
    assert_eq!(b["block_num"], serde_json::json!(num), "{b}");
    b
}

/// Writes `genesis.json` in the lab: `eosio` the only producer, its blocks signed by
/// `block_key`, its accounts by the development key. Returns the chain id.
pub(crate) fn write_genesis(
    lab: &Lab,
    block_key: &rempart_core::key::PublicKey,
) -> rempart_core::Checksum256 {
    let path = lab.path("genesis.json");
    std::fs::write(
        &path,
        serde_json::json!({
            "initial_timestamp": "2024-01-01T00:00:00.000",
            "initial_key": DEV_PUB,
            "initial_schedule": {"version": 0, "producers": [
                {"producer_name": "eosio", "block_signing_key": block_key.to_string()}
            ]}
        })
        .to_string(),
    )
    .expect("genesis");
    rempart_node::genesis::Genesis::load(&path).expect("genesis").chain_id()
}

/// A producer node (`eosio`, blocks signed through the signer at `socket`, missed slots in
/// `producer.prom`) and an api node following it, both the real `rempart-node` on the lab's
/// `genesis.json`, logging to `producer.log` and `api.log`; killed on drop.
pub(crate) struct Nodes {
    /// The api node's HTTP address.
    pub(crate) http: std::net::SocketAddr,
    _producer: Proc,
    _api: Proc,
}

impl Nodes {
    /// Writes `node.toml` and starts both nodes.
    pub(crate) fn start(lab: &Lab, node: &Path, socket: &Path) -> Nodes {
        let (private, http) = (free_addr(), free_addr());
        let config = lab.path("node.toml");
        std::fs::write(
            &config,
            format!(
                r#"genesis = "genesis.json"
[producer]
data_dir = "producer"
name = "eosio"
private_listen = "{private}"
signer = "unix:{socket}"
sign_timeout_ms = 400
metrics_file = "producer.prom"
[api]
data_dir = "api"
http_listen = "{http}"
producer = "{private}"
"#,
                socket = socket.display(),
            ),
        )
        .expect("node.toml");
        let start = |role: &str| {
            let log = std::fs::File::create(lab.path(&format!("{role}.log"))).expect("log");
            Proc(
                Command::new(node)
                    .args(["run", "--role", role, "--config"])
                    .arg(&config)
                    .stdout(Stdio::null())
                    .stderr(log)
                    .spawn()
                    .expect("start a node"),
            )
        };
        Nodes { http, _producer: start("producer"), _api: start("api") }
    }
}

/// The signer's signature lines by block number: (key, digest, signature).
pub(crate) fn audited_signatures(
    audit: &Path,
) -> std::collections::BTreeMap<
    u32,
    (rempart_core::key::PublicKey, rempart_core::Checksum256, rempart_core::key::Signature),
> {
    let mut out = std::collections::BTreeMap::new();
    for line in std::fs::read_to_string(audit).expect("audit log").lines() {
        let v: serde_json::Value = serde_json::from_str(line).expect("audit line");
        if v["event"] != "signature" {
            continue;
        }
        let num = u32::try_from(v["block_num"].as_u64().expect("block_num")).expect("u32");
        let entry = (
            v["key"].as_str().expect("key").parse().expect("key"),
            v["digest"].as_str().expect("digest").parse().expect("digest"),
            v["signature"].as_str().expect("signature").parse().expect("signature"),
        );
        // A replay line repeats the first one exactly; two different ones are a double sign.
        let first = out.entry(num).or_insert(entry);
        assert_eq!(*first, entry, "block {num} was signed twice differently");
    }
    out
}
