//! testssl.sh against the gateway's TLS listener: no weak protocol, no weak cipher, no known
//! vulnerability. Its JSON findings are parsed; a finding rated MEDIUM or worse fails the
//! test, and the checks that matter are required to be present and clean by id.

use std::time::Duration;

use serde_json::Value;

use crate::support::*;
use crate::tools;

/// Protocols that must be "not offered".
const OLD_PROTOCOLS: &[&str] = &["SSLv2", "SSLv3", "TLS1", "TLS1_1"];

/// Vulnerability checks that must be present and rated OK (or INFO).
const VULNERABILITIES: &[&str] = &[
    "heartbleed",
    "CCS",
    "ticketbleed",
    "ROBOT",
    "secure_renego",
    "secure_client_renego",
    "CRIME_TLS",
    "POODLE_SSL",
    "SWEET32",
    "FREAK",
    "DROWN",
    "LOGJAM",
    "BEAST",
    "BREACH",
    "fallback_SCSV",
    "LUCKY13",
    "RC4",
];

/// Cipher categories that must be "not offered".
const WEAK_CIPHERS: &[&str] = &[
    "cipherlist_NULL",
    "cipherlist_aNULL",
    "cipherlist_EXPORT",
    "cipherlist_LOW",
    "cipherlist_3DES_IDEA",
];

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn testssl_finds_no_weak_protocol_cipher_or_known_vulnerability() {
    let Some(testssl) = tools::find("testssl", "testssl.sh") else { return };
    let _serial = tools::serial().await;
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    let dir = tempfile::tempdir().expect("tempdir");
    let json = dir.path().join("testssl.json");
    let run = tools::command(&testssl)
        .args(["--quiet", "--color", "0", "--warnings", "off", "--nodns", "none"])
        .args(["--connect-timeout", "5", "--openssl-timeout", "5"])
        .arg("--add-ca")
        .arg(repo().join("certs/ca.pem"))
        .arg("--jsonfile")
        .arg(&json)
        .args(["--protocols", "--std", "--fs", "--vulnerable"])
        .arg(format!("127.0.0.1:{}", gw.tls.port()))
        .output();
    let out = tokio::time::timeout(Duration::from_secs(600), run)
        .await
        .expect("testssl.sh must finish within 10 minutes")
        .expect("run testssl.sh");
    let text = std::fs::read_to_string(&json).unwrap_or_else(|e| {
        panic!(
            "testssl.sh wrote no JSON ({e}): {}\n{}",
            String::from_utf8_lossy(&out.stdout),
            String::from_utf8_lossy(&out.stderr)
        )
    });
    let findings: Vec<Value> = serde_json::from_str(&text).expect("testssl.sh JSON array");
    let by_id = |id: &str| findings.iter().find(|f| f["id"] == id);
    let bad: Vec<&Value> = findings
        .iter()
        .filter(|f| matches!(f["severity"].as_str(), Some("MEDIUM" | "HIGH" | "CRITICAL")))
        .collect();
    eprintln!("testssl.sh: {} findings, {} rated MEDIUM or worse", findings.len(), bad.len());
    assert!(bad.is_empty(), "testssl.sh found weaknesses: {bad:#?}");
    for id in OLD_PROTOCOLS.iter().chain(WEAK_CIPHERS) {
        let f = by_id(id).unwrap_or_else(|| panic!("testssl.sh did not check {id}"));
        let finding = f["finding"].as_str().unwrap_or_default();
        assert!(finding.starts_with("not offered"), "{id}: {f}");
    }
    for id in VULNERABILITIES {
        let f = by_id(id).unwrap_or_else(|| panic!("testssl.sh did not check {id}"));
        assert!(matches!(f["severity"].as_str(), Some("OK" | "INFO")), "{id}: {f}");
    }
    for id in ["TLS1_2", "TLS1_3"] {
        let f = by_id(id).unwrap_or_else(|| panic!("testssl.sh did not check {id}"));
        let finding = f["finding"].as_str().unwrap_or_default();
        assert!(finding.starts_with("offered"), "{id} must be offered: {f}");
    }
    // testssl.sh 3.0 names forward secrecy PFS, 3.1 and later FS.
    let fs = by_id("FS").or_else(|| by_id("PFS")).expect("forward secrecy checked");
    assert_eq!(fs["severity"], "OK", "{fs}");
    let average = by_id("cipherlist_AVERAGE").expect("average ciphers checked");
    assert!(average["finding"].as_str().is_some_and(|f| f.starts_with("not offered")), "{average}");
    gw.stop().await;
}
