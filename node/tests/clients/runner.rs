//! Running a client script of `node/tests/clients` from a Rust test: whether node and the npm
//! clients are installed (under `CI=true` their absence fails the test, elsewhere the test says
//! why it returns), one JSON request on the script's stdin, its one JSON answer, and the result
//! of one named step of that answer. Include with `#[path = "clients/runner.rs"] mod runner;`.
//! It never installs anything and never decides what a step should have returned.

use std::io::Write as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};

use serde_json::Value;

/// `tests/clients/node_modules` of the repository.
pub(crate) fn modules() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/node_modules")
}

/// Whether node and the npm clients are installed; `what` names the test for the message.
pub(crate) fn clients_available(what: &str) -> bool {
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    let packages = ["eosjs", "@wharfkit/antelope", "@wharfkit/session"]
        .iter()
        .all(|p| modules().join(p).join("package.json").is_file());
    if node && packages {
        return true;
    }
    let missing = if node {
        "the npm clients are not installed: run `npm ci` in tests/clients (tests/run.sh does)"
    } else {
        "node is not installed: apt-get install --no-install-recommends nodejs npm"
    };
    assert!(std::env::var("CI").as_deref() != Ok("true"), "{what} cannot run: {missing}");
    eprintln!("skipping {what}: {missing}");
    false
}

/// Runs `node/tests/clients/SCRIPT` with `request` on stdin (blocking) and returns its JSON
/// answer; panics with the script's output when there is none or it reports a fatal error.
pub(crate) fn run(script: &str, request: &Value) -> Value {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("tests/clients").join(script);
    let mut child = Command::new("node")
        .arg(path)
        .env("NODE_PATH", modules())
        .stdin(Stdio::piped())
        .stdout(Stdio::piped())
        .stderr(Stdio::piped())
        .spawn()
        .expect("run node");
    let body = request.to_string();
    child.stdin.take().expect("stdin").write_all(body.as_bytes()).expect("request");
    let output = child.wait_with_output().expect("node output");
    let out: Value = serde_json::from_slice(&output.stdout).unwrap_or_else(|e| {
        panic!(
            "{script} printed no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&output.stdout),
            String::from_utf8_lossy(&output.stderr)
        )
    });
    assert!(out.get("fatal").is_none(), "{script} failed: {out}");
    out
}

/// The result of step `name`; panics with the client's error when the step failed.
pub(crate) fn step<'a>(out: &'a Value, name: &str) -> &'a Value {
    let v = &out[name];
    assert!(v.get("error").is_none() && !v["ok"].is_null(), "{name} failed: {v}");
    &v["ok"]
}
