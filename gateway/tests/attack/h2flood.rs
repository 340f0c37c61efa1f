//! HTTP/2 floods from a Python h2 client (`tests/tools/h2_attack.py`): a rapid-reset client
//! and a CONTINUATION flood are cut off, while a legitimate curl from another address is
//! served throughout.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;
use crate::tools::{self, probe_while};

const LEGIT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
/// GOAWAY error code ENHANCE_YOUR_CALM.
const ENHANCE_YOUR_CALM: u64 = 0xb;

/// Runs the attack script in `mode` against a fresh gateway while curl probes it; returns the
/// report of each attack connection.
async fn flood(mode: &str, extra: &[&str]) -> Option<Vec<Value>> {
    let curl = tools::find("curl", "curl")?;
    let python = tools::python_with_h2().await?;
    let _serial = tools::serial().await;
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    let script = repo().join("tests/tools/h2_attack.py");
    let run = tools::command(&python)
        .arg(&script)
        .arg(mode)
        .arg("127.0.0.1")
        .arg(gw.tls.port().to_string())
        .arg(repo().join("certs/ca.pem"))
        .args(extra)
        .output();
    let run = async { tokio::time::timeout(Duration::from_secs(60), run).await };
    let (out, answers) = probe_while(&curl, gw.tls, LEGIT, Duration::from_millis(200), run).await;
    let report = tools::script_report(out.ok());
    let runs = report["runs"].as_array().cloned().expect("runs");
    eprintln!(
        "{mode}: {} connections, first {}; legitimate client: {} answers",
        runs.len(),
        runs[0],
        answers.len()
    );
    assert!(answers.len() >= 3, "too few probes during the flood: {answers:?}");
    for a in &answers {
        assert_eq!(a.status, 200, "the legitimate client was refused during the flood: {a:?}");
        assert!(a.seconds < 2.0, "the legitimate client waited during the flood: {a:?}");
    }
    let after = tools::curl(&curl, gw.tls, LEGIT, true).await;
    assert_eq!(after.status, 200, "HTTP/2 client after the flood: {after:?}");
    assert_eq!(up.requests(), 0, "a flooded stream reached the upstream");
    gw.stop().await;
    Some(runs)
}

fn cut_off(report: &Value) -> bool {
    report["goaway"].as_u64() == Some(ENHANCE_YOUR_CALM)
        || report["closed"] == Value::Bool(true)
        || report["error"].is_string()
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_python_h2_rapid_reset_client_is_cut_off_while_others_are_served() {
    let streams = 20_000;
    let Some(runs) = flood(
        "rapid-reset",
        &["--streams", &streams.to_string(), "--repeat", "2000", "--min-seconds", "3"],
    )
    .await
    else {
        return;
    };
    // The gateway sends GOAWAY(ENHANCE_YOUR_CALM) and closes. The client usually reads the
    // GOAWAY even when its own writes already failed, but when the gateway closes with the
    // client's streams still unread, the kernel answers with a reset that can discard the
    // GOAWAY before the client reads it: then the connection is simply closed early. On a
    // loaded machine that can happen to any run, the first included, so the GOAWAY must be
    // seen on at least one of them.
    assert!(
        runs.iter().any(|r| r["goaway"].as_u64() == Some(ENHANCE_YOUR_CALM)),
        "no run saw GOAWAY(ENHANCE_YOUR_CALM): {runs:?}"
    );
    for r in &runs {
        assert!(cut_off(r), "not cut off: {r}");
        assert!(r["streams_sent"].as_u64().expect("count") < streams, "{r}");
    }
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_continuation_flood_is_cut_off_while_others_are_served() {
    let budget: u64 = 16 * 1024 * 1024;
    let Some(runs) = flood(
        "continuation",
        &["--bytes", &budget.to_string(), "--repeat", "2000", "--min-seconds", "3"],
    )
    .await
    else {
        return;
    };
    for r in &runs {
        assert!(cut_off(r), "the CONTINUATION flood was not cut off: {r}");
        let sent = r["bytes_sent"].as_u64().expect("bytes");
        // The header list is bounded by max_header_bytes (16 KiB); allow for what sits in
        // socket buffers when the gateway reacts.
        assert!(sent < 1024 * 1024, "the gateway read {sent} bytes of one header block: {r}");
    }
}
