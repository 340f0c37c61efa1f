//! The binary's contract: `check` prints OK or a positioned error and exits 64; `dev-cert`
//! writes a CA and a server certificate that the shipped policy can load.

use std::path::PathBuf;
use std::process::Command;

fn bin() -> Command {
    Command::new(env!("CARGO_BIN_EXE_rempart-gateway"))
}

fn shipped() -> PathBuf {
    PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("../policies/gateway.toml")
}

#[test]
fn check_accepts_the_shipped_policy() {
    let out = bin().arg("check").arg(shipped()).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), "OK");
}

#[test]
fn check_reports_line_and_column_and_exits_64() {
    let dir = std::env::temp_dir().join(format!("rempart-gw-cli-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let text = std::fs::read_to_string(shipped()).expect("read");
    let bad = text.replace("per_client = 64", "per_client = 64\nper_clinet = 1");
    let file = dir.join("gateway.toml");
    std::fs::write(&file, &bad).expect("write");
    let out = bin().arg("check").arg(&file).output().expect("run");
    assert_eq!(out.status.code(), Some(64));
    let line = bad.lines().position(|l| l.starts_with("per_clinet")).expect("line") + 1;
    let err = String::from_utf8_lossy(&out.stderr);
    assert!(err.contains(&format!("gateway.toml:{line}:1:")), "{err}");
    assert!(err.contains("per_clinet"), "{err}");
    std::fs::remove_dir_all(dir).ok();
}

#[test]
fn dev_cert_writes_loadable_files() {
    let dir = std::env::temp_dir().join(format!("rempart-gw-devcert-{}", std::process::id()));
    std::fs::create_dir_all(&dir).expect("mkdir");
    let out = bin().arg("dev-cert").arg("--out").arg(&dir).output().expect("run");
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    let p = rempart_gateway::tls::provider();
    rempart_gateway::tls::load_certified_key(&p, &dir.join("server.pem"), &dir.join("server.key"))
        .expect("generated pair loads");
    assert!(std::fs::read_to_string(dir.join("ca.pem")).expect("ca").contains("BEGIN CERTIFICATE"));
    std::fs::remove_dir_all(dir).ok();
}
