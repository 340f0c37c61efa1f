//! Finding the external tools, the machine-wide lock, process guards and the legitimate client
//! (curl) the attacks must not stop.

use std::net::{Ipv4Addr, SocketAddr};
use std::path::{Path, PathBuf};
use std::process::Stdio;
use std::time::{Duration, Instant};

use tokio::process::Command;

use crate::support::repo;

/// The tool `name` on PATH (or an absolute path). When missing: panics if `CI=true` (the tool
/// is part of the test suite there), otherwise prints why the test does nothing and gives
/// `None`.
pub(crate) fn find(name: &str, package: &str) -> Option<PathBuf> {
    let found = if Path::new(name).is_absolute() {
        Path::new(name).exists().then(|| PathBuf::from(name))
    } else {
        std::env::var_os("PATH").and_then(|paths| {
            std::env::split_paths(&paths).map(|d| d.join(name)).find(|p| p.is_file())
        })
    };
    if found.is_none() {
        missing(&format!("{name} is not installed (Debian package {package})"));
    }
    found
}

/// Fails under CI, else explains the skip.
pub(crate) fn missing(why: &str) {
    assert!(
        std::env::var("CI").as_deref() != Ok("true"),
        "{why}; tests/run.sh installs it: run `bash tests/run.sh` or install it by hand"
    );
    eprintln!("SKIPPED: {why}; `bash tests/run.sh` installs it");
}

/// A Python 3 that can import `h2` and `hpack` (Debian's python3-h2 lives under
/// /usr/bin/python3, which may not be the first python3 on PATH).
pub(crate) async fn python_with_h2() -> Option<PathBuf> {
    for candidate in ["/usr/bin/python3", "python3"] {
        let ok = Command::new(candidate)
            .args(["-c", "import h2, hpack"])
            .stdout(Stdio::null())
            .stderr(Stdio::null())
            .status()
            .await
            .is_ok_and(|s| s.success());
        if ok {
            return Some(PathBuf::from(candidate));
        }
    }
    missing("no python3 can import h2 and hpack (Debian package python3-h2)");
    None
}

/// Held for the whole of one attack test: a lock on a file shared by every test process, so
/// attacks run one at a time on this 2-core machine.
pub(crate) struct Serial(#[allow(dead_code)] std::fs::File);

pub(crate) async fn serial() -> Serial {
    tokio::task::spawn_blocking(|| {
        let path = std::env::temp_dir().join("rempart-gateway-attack-tests.lock");
        let f = std::fs::OpenOptions::new()
            .create(true)
            .truncate(false)
            .write(true)
            .open(&path)
            .expect("open the lock file");
        f.lock().expect("lock");
        Serial(f)
    })
    .await
    .expect("join")
}

/// A spawned tool, killed by PID if the test ends before it does.
pub(crate) fn command(program: &Path) -> Command {
    let mut c = Command::new(program);
    c.kill_on_drop(true).stdin(Stdio::null());
    c
}

/// What the legitimate client saw.
#[derive(Debug)]
pub(crate) struct CurlAnswer {
    pub(crate) status: u16,
    pub(crate) seconds: f64,
}

/// One POST of `get_info` with curl from `source` (a 127/8 address other than the attacker's),
/// trusting the development CA; `h2` chooses HTTP/2.
pub(crate) async fn curl(
    curl: &Path,
    gateway: SocketAddr,
    source: Ipv4Addr,
    h2: bool,
) -> CurlAnswer {
    let port = gateway.port();
    let start = Instant::now();
    let out = command(curl)
        .arg("--silent")
        .arg("--max-time")
        .arg("10")
        .arg(if h2 { "--http2" } else { "--http1.1" })
        .arg("--interface")
        .arg(source.to_string())
        .arg("--cacert")
        .arg(repo().join("certs/ca.pem"))
        .arg("--resolve")
        .arg(format!("localhost:{port}:127.0.0.1"))
        .args(["--output", "/dev/null", "--write-out", "%{http_code}"])
        .args(["--data", "{}"])
        .arg(format!("https://localhost:{port}/v1/chain/get_info"))
        .output()
        .await
        .expect("run curl");
    let seconds = start.elapsed().as_secs_f64();
    let status = String::from_utf8_lossy(&out.stdout).trim().parse().unwrap_or(0);
    CurlAnswer { status, seconds }
}

/// Runs `curl` every `every` until `done` resolves, returning every answer.
pub(crate) async fn probe_while<F: std::future::Future>(
    curl_path: &Path,
    gateway: SocketAddr,
    source: Ipv4Addr,
    every: Duration,
    done: F,
) -> (F::Output, Vec<CurlAnswer>) {
    let mut answers = Vec::new();
    tokio::pin!(done);
    let mut tick = tokio::time::interval(every);
    loop {
        tokio::select! {
            out = &mut done => return (out, answers),
            _ = tick.tick() => answers.push(curl(curl_path, gateway, source, false).await),
        }
    }
}

/// The one JSON line an attack script printed, after checking it ran to its end.
pub(crate) fn script_report(
    out: Option<std::io::Result<std::process::Output>>,
) -> serde_json::Value {
    let out = out.expect("the attack script must end").expect("run the attack script");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(
        out.status.success(),
        "the script failed: {stdout}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    serde_json::from_str(stdout.trim()).expect("one JSON line")
}
