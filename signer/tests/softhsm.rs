//! The PKCS#11 backend against SoftHSM2: keygen K1 and R1 inside the token, signing through
//! the daemon with node-side verification, and clear errors for a missing module, an absent
//! token and a wrong PIN. Needs `softhsm2` (and `opensc` for pkcs11-tool): with CI=true a
//! missing SoftHSM2 fails the test; elsewhere the test is skipped with a reason.

mod common;

use std::process::Command;
use std::time::Duration;

use common::*;
use rempart_core::BlockTimestamp;
use rempart_core::protocol::ErrorCode;
use rempart_signer::client::{Client, Endpoint};

const MODULE: &str = SOFTHSM_MODULE;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn keygen_k1_and_r1_then_sign_and_verify() {
    let Some(hsm) = softhsm() else { return };
    for (kt, prefix) in [("k1", "PUB_K1_"), ("r1", "PUB_R1_")] {
        let out = hsm.keygen(kt, &format!("eosio-{kt}"), "1234");
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let key = String::from_utf8(out.stdout).unwrap().trim().to_string();
        assert!(key.starts_with(prefix), "{key}");
        // The same label again is refused.
        assert!(!hsm.keygen(kt, &format!("eosio-{kt}"), "1234").status.success());

        let s = setup(Some(&pkcs11_backend("T", &format!("eosio-{kt}"), MODULE)), &key, "");
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
    let key = String::from_utf8(hsm.keygen("k1", "k", "1234").stdout).unwrap_or_default();
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
    let (code, err) =
        run_fails(&hsm, &pkcs11_backend("T", "k", "/nonexistent/libpkcs11.so"), "1234");
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("cannot load the PKCS#11 module /nonexistent/libpkcs11.so"), "{err}");
    let (code, err) = run_fails(&hsm, &pkcs11_backend("absent", "k", MODULE), "1234");
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("no token labelled \"absent\""), "{err}");
    let (code, err) = run_fails(&hsm, &pkcs11_backend("T", "k", MODULE), "9999");
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("refused the PIN") && !err.contains("9999"), "{err}");
    let (code, err) = run_fails(&hsm, &pkcs11_backend("T", "missing-label", MODULE), "1234");
    assert_eq!(code, Some(69), "{err}");
    assert!(err.contains("no private key label \"missing-label\""), "{err}");
}

/// The token disappears while the daemon runs (`softhsm2-util --delete-token`): the next
/// SignBlock gets a clear backend error, nothing is signed or recorded as signed, and the
/// daemon keeps answering Status and PublicKeys.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_removed_mid_run_is_a_clear_error_and_nothing_is_signed() {
    let Some(hsm) = softhsm() else { return };
    let key = hsm.new_key("k1", "eosio-k1");
    let s = setup(Some(&pkcs11_backend("T", "eosio-k1", MODULE)), &key, "");
    s.guard_init();
    let mut d = s.spawn(&hsm.env());
    let mut client = Client::new(Endpoint::Unix(s.socket.clone()));
    let dl = || tokio::time::Instant::now() + Duration::from_secs(5);
    let base = now_slot().0 - 50;
    for n in 2..5u32 {
        client.sign_block(request(&s.key, n, BlockTimestamp(base + n), 1), dl()).await.unwrap();
    }

    let out = Command::new("softhsm2-util")
        .env("SOFTHSM2_CONF", &hsm.conf)
        .args(["--delete-token", "--token", "T"])
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));

    for n in 5..8u32 {
        let err = client
            .sign_block(request(&s.key, n, BlockTimestamp(base + n), 1), dl())
            .await
            .unwrap_err();
        assert_eq!(err.code(), Some(ErrorCode::Backend), "{err}");
        let text = err.to_string();
        assert!(text.contains("no token labelled \"T\" is present"), "{text}");
    }
    assert!(d.running(), "the daemon survives the lost token");
    let status = client.status(dl()).await.unwrap();
    assert_eq!(status.last_signed[0].block_num, 4, "nothing signed after the token went away");
    assert_eq!(status.signatures, 3);
    assert_eq!(status.refusals, 3);
    assert_eq!(client.public_keys(dl()).await.unwrap()[0].block_signing_key, s.key);
    let audit = std::fs::read_to_string(s.audit_log()).unwrap();
    let signatures = audit.lines().filter(|l| l.contains("\"signature\":\"SIG_")).count();
    assert_eq!(signatures, 3, "{audit}");
    assert_eq!(d.terminate().code(), Some(0));
}

/// The token is taken away (its directory moved out) and put back while the daemon runs:
/// refused while it is away, then the daemon logs in again, checks it is the same key and
/// signs the next block, with no restart.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn token_put_back_resumes_signing_with_the_same_key() {
    let Some(hsm) = softhsm() else { return };
    let key = hsm.new_key("r1", "eosio-r1");
    let s = setup(Some(&pkcs11_backend("T", "eosio-r1", MODULE)), &key, "");
    s.guard_init();
    let mut d = s.spawn(&hsm.env());
    let mut client = Client::new(Endpoint::Unix(s.socket.clone()));
    let dl = || tokio::time::Instant::now() + Duration::from_secs(5);
    let base = now_slot().0 - 50;
    client.sign_block(request(&s.key, 2, BlockTimestamp(base + 2), 1), dl()).await.unwrap();

    let token = std::fs::read_dir(&hsm.tokens).unwrap().next().unwrap().unwrap().path();
    let away = hsm.dir.path().join("away");
    std::fs::rename(&token, &away).unwrap();
    let err =
        client.sign_block(request(&s.key, 3, BlockTimestamp(base + 3), 1), dl()).await.unwrap_err();
    assert_eq!(err.code(), Some(ErrorCode::Backend), "{err}");
    assert!(err.to_string().contains("no token labelled \"T\" is present"), "{err}");

    std::fs::rename(&away, &token).unwrap();
    let req = request(&s.key, 3, BlockTimestamp(base + 3), 1);
    let r = client.sign_block(req.clone(), dl()).await.unwrap();
    assert_eq!(r.signature.recover(&req.digest()).unwrap(), s.key);
    assert!(d.running());
    assert_eq!(client.status(dl()).await.unwrap().last_signed[0].block_num, 3);
    assert_eq!(d.terminate().code(), Some(0));
}

/// The daemon as in production: the shipped seccomp policy, landlock and dropped capabilities,
/// signing K1 with SoftHSM2 on two sessions at once (the second attempt of each pair on the
/// `hsm-lane` thread, started after the sandbox closed) and writing guard intents on the
/// `guard-writer` thread. Every signature is canonical and by the key; the daemon stays up.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_sandboxed_daemon_signs_k1_on_two_hsm_sessions() {
    let Some(hsm) = softhsm() else { return };
    let key = hsm.new_key("k1", "eosio-k1");
    let sandbox = sandbox_toml(&[hsm.tokens.as_path(), hsm.conf.as_path()]);
    let backend = pkcs11_backend("T", "eosio-k1", MODULE);
    let s = setup_in(None, Some(&backend), &key, &sandbox, "");
    s.guard_init();
    let mut d = s.spawn(&hsm.env());
    let mut client = Client::new(Endpoint::Unix(s.socket.clone()));
    let dl = || tokio::time::Instant::now() + Duration::from_secs(5);
    let base = now_slot().0 - 50;
    for n in 2..42u32 {
        let req = request(&s.key, n, BlockTimestamp(base + n), 1);
        let r = client.sign_block(req.clone(), dl()).await.unwrap();
        assert_eq!(r.signature.recover(&req.digest()).unwrap(), s.key);
        assert!(r.signature.is_canonical());
    }
    assert!(d.running(), "the sandbox let every thread do its work");
    let pid = d.child.id();
    let status = std::fs::read_to_string(format!("/proc/{pid}/status")).unwrap();
    assert!(status.lines().any(|l| l.starts_with("Seccomp:") && l.ends_with('2')), "{status}");
    let threads: Vec<String> = std::fs::read_dir(format!("/proc/{pid}/task"))
        .unwrap()
        .map(|t| std::fs::read_to_string(t.unwrap().path().join("comm")).unwrap())
        .map(|c| c.trim().to_string())
        .collect();
    for name in ["hsm-lane", "guard-writer"] {
        assert!(threads.iter().any(|t| t == name), "no {name} thread in {threads:?}");
    }
    assert_eq!(client.status(dl()).await.unwrap().last_signed[0].block_num, 41);
    assert_eq!(d.terminate().code(), Some(0));
}
