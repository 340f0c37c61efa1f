//! The PKCS#11 backend against SoftHSM2: keygen K1 and R1 inside the token, signing through
//! the daemon with node-side verification, and clear errors for a missing module, an absent
//! token and a wrong PIN. Needs `softhsm2` (and `opensc` for pkcs11-tool): with CI=true a
//! missing SoftHSM2 fails the test; elsewhere the test is skipped with a reason.

mod common;

use std::path::{Path, PathBuf};
use std::process::Command;
use std::time::Duration;

use common::*;
use rempart_core::BlockTimestamp;
use rempart_signer::client::{Client, Endpoint};

const MODULE: &str = "/usr/lib/softhsm/libsofthsm2.so";

/// A SoftHSM2 configuration with its own token directory and one token "T" (PIN 1234).
struct Hsm {
    _dir: tempfile::TempDir,
    conf: PathBuf,
}

fn softhsm() -> Option<Hsm> {
    let have = Path::new(MODULE).exists()
        && Command::new("softhsm2-util")
            .arg("--version")
            .output()
            .is_ok_and(|o| o.status.success());
    if !have {
        assert!(!ci(), "CI=true but SoftHSM2 is missing: apt-get install softhsm2 opensc");
        println!("skipped: SoftHSM2 ({MODULE}, softhsm2-util) is not installed");
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
    Some(Hsm { _dir: dir, conf })
}

fn keygen(hsm: &Hsm, key_type: &str, label: &str, pin: &str) -> std::process::Output {
    Command::new(BIN)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("HSM_PIN", pin)
        .args(["keygen", "--module", MODULE, "--token-label", "T", "--pin-env", "HSM_PIN"])
        .args(["--key-type", key_type, "--label", label])
        .output()
        .unwrap()
}

fn backend(token: &str, label: &str, module: &str) -> String {
    format!(
        "kind = \"pkcs11\"\n[backend.pkcs11]\nmodule = \"{module}\"\ntoken_label = \"{token}\"\n\
         pin_env = \"HSM_PIN\"\nkeys = [{{ label = \"{label}\" }}]"
    )
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_k1_and_r1_then_sign_and_verify() {
    let Some(hsm) = softhsm() else { return };
    for (kt, prefix) in [("k1", "PUB_K1_"), ("r1", "PUB_R1_")] {
        let out = keygen(&hsm, kt, &format!("eosio-{kt}"), "1234");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(key.starts_with(prefix), "{key}");
        // The same label again is refused.
        assert!(!keygen(&hsm, kt, &format!("eosio-{kt}"), "1234").status.success());

        let s = setup(Some(&backend("T", &format!("eosio-{kt}"), MODULE)), &key, "");
        s.guard_init();
        let conf = hsm.conf.to_str().unwrap();
        let _d = s.spawn(&[("SOFTHSM2_CONF", conf), ("HSM_PIN", "1234")]);
        let mut client = Client::new(Endpoint::Unix(s.socket.clone()));
        let mut lat = Vec::new();
        let base = now_slot().0 - 50;
        for n in 2..102u32 {
            let req = request(&s.key, n, BlockTimestamp(base + n), 1);
            let t = std::time::Instant::now();
            let dl = tokio::time::Instant::now() + Duration::from_secs(5);
            let r = client.sign_block(req.clone(), dl).await.unwrap();
            lat.push(t.elapsed());
            // Node-side verification through core: recover the key from the signature.
            assert_eq!(r.signature.recover(&req.digest()).unwrap(), s.key);
            assert!(r.signature.is_canonical());
        }
        lat.sort();
        println!(
            "SoftHSM2 {kt} over unix: p50 {:?} p99 {:?} (100 signatures, debug build)",
            lat[50], lat[99]
        );
    }
}

fn run_fails(hsm: &Hsm, backend_toml: &str, pin: &str) -> (Option<i32>, String) {
    let key = String::from_utf8(keygen(hsm, "k1", "k", "1234").stdout).unwrap_or_default();
    let key = if key.trim().is_empty() { DEV_PUB.to_string() } else { key.trim().to_string() };
    let s = setup(Some(backend_toml), &key, "");
    s.guard_init();
    let out = Command::new(BIN)
        .env("SOFTHSM2_CONF", &hsm.conf)
        .env("HSM_PIN", pin)
        .args(["run", "--policy"])
        .arg(&s.policy)
        .output()
        .unwrap();
    (out.status.code(), String::from_utf8_lossy(&out.stderr).into_owned())
}

#[test]
fn module_missing_token_absent_and_wrong_pin_are_clear_errors() {
    let Some(hsm) = softhsm() else { return };
    let (code, err) = run_fails(&hsm, &backend("T", "k", "/nonexistent/libpkcs11.so"), "1234");
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("cannot load the PKCS#11 module /nonexistent/libpkcs11.so"), "{err}");
    let (code, err) = run_fails(&hsm, &backend("absent", "k", MODULE), "1234");
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("no token labelled \"absent\""), "{err}");
    let (code, err) = run_fails(&hsm, &backend("T", "k", MODULE), "9999");
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("refused the PIN") && !err.contains("9999"), "{err}");
    let (code, err) = run_fails(&hsm, &backend("T", "missing-label", MODULE), "1234");
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("no private key label \"missing-label\""), "{err}");
}
