//! A PC/SC lab for the admin tests: a private `pcscd` with one vpcd reader (two slots), virtual
//! PIV cards from `tests/vcard` plugged into its slots, and the real `rempart` binary.
//!
//! pcscd's client socket is machine-wide, so the tests of one binary take a lock and a second
//! pcscd already running is an error. Every process started here is killed by its PID when
//! the lab is dropped. Without pcscd, vpcd or a C toolchain the lab is skipped with a line
//! saying why, except under `CI=true`, where that is a failure.

#![allow(dead_code, reason = "each test binary uses a part of this module")]

use std::path::{Path, PathBuf};
use std::process::{Child, Command, Output, Stdio};
use std::sync::{Mutex, MutexGuard, OnceLock};
use std::time::{Duration, Instant};

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

/// Two consecutive free TCP ports on loopback (vpcd listens on PORT and PORT+1).
fn free_port_pair() -> u16 {
    for _ in 0..50 {
        let a = std::net::TcpListener::bind("127.0.0.1:0").expect("bind");
        let port = a.local_addr().expect("addr").port();
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

/// Runs the real `rempart` binary.
pub(crate) fn rempart(args: &[&str]) -> Output {
    Command::new(env!("CARGO_BIN_EXE_rempart")).args(args).output().expect("run rempart")
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
    let status = Command::new(env!("CARGO"))
        .args(["build", "--locked", "-p", "rempart-signer", "--bin", "rempart-signer"])
        .args(["--features", "yubikey"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .status()
        .expect("run cargo");
    assert!(status.success(), "building rempart-signer failed");
    target_dir().join("debug/rempart-signer")
}
