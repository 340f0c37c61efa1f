//! Slowloris and slow body with slowhttptest: thousands of connections that dribble their head
//! (or body) are cut by the gateway's read deadlines, while a legitimate curl from another
//! address keeps being served quickly.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::support::*;
use crate::tools::{self, probe_while};

const LEGIT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
/// slowhttptest's run length; it stops earlier when the server closed every connection.
const LENGTH_SECS: u64 = 20;

/// `text` without ANSI escape sequences (slowhttptest colours its report).
fn plain(text: &str) -> String {
    let mut out = String::with_capacity(text.len());
    let mut chars = text.chars();
    while let Some(c) = chars.next() {
        if c == '\x1b' {
            // CSI: ESC [ parameters… final letter.
            for d in chars.by_ref() {
                if d.is_ascii_alphabetic() {
                    break;
                }
            }
        } else {
            out.push(c);
        }
    }
    out
}

/// The last value slowhttptest printed for `field` (`closed`, `connected`, …).
fn last(report: &str, field: &str) -> Option<u64> {
    report
        .lines()
        .filter_map(|l| l.trim().strip_prefix(field)?.trim().strip_prefix(':'))
        .filter_map(|v| v.trim().parse().ok())
        .next_back()
}

async fn attack(mode: &str, path: &str, connections: u64) {
    let (Some(slow), Some(curl)) =
        (tools::find("slowhttptest", "slowhttptest"), tools::find("curl", "curl"))
    else {
        return;
    };
    let _serial = tools::serial().await;
    let up = Upstream::start("a").await;
    // Caps high enough that every attacking connection is accepted: the read deadlines
    // alone must defeat it.
    let gw = Gateway::start(&policy_text(
        &[up.addr],
        &[
            ("per_client = 64", "per_client = 5000"),
            ("header_read_timeout_ms = 5000", "header_read_timeout_ms = 2000"),
            ("body_read_timeout_ms = 10000", "body_read_timeout_ms = 2000"),
        ],
    ))
    .await;
    let before = tools::curl(&curl, gw.tls, LEGIT, false).await;
    assert_eq!(before.status, 200, "the legitimate client before the attack: {before:?}");
    let run = tools::command(&slow)
        .arg(mode)
        .args(["-c", &connections.to_string(), "-r", "400", "-i", "1", "-x", "16"])
        .args(["-s", "8192", "-l", &LENGTH_SECS.to_string(), "-p", "3"])
        .args(["-u", &format!("https://127.0.0.1:{}{path}", gw.tls.port())])
        .output();
    let (out, answers) = probe_while(&curl, gw.tls, LEGIT, Duration::from_millis(500), run).await;
    let out = out.expect("run slowhttptest");
    let report = plain(&String::from_utf8_lossy(&out.stdout));
    let closed = last(&report, "closed").unwrap_or(0);
    let connected = last(&report, "connected").unwrap_or(0);
    let pending = last(&report, "pending").unwrap_or(0);
    let slowest = answers.iter().map(|a| a.seconds).fold(0.0, f64::max);
    eprintln!(
        "slowhttptest {mode}: {connections} connections; at its last report {closed} closed, {connected} connected, {pending} pending; legitimate client: {} answers, slowest {slowest:.3} s",
        answers.len()
    );
    assert!(
        report.contains("test type:"),
        "slowhttptest did not run: {report}\n{}",
        String::from_utf8_lossy(&out.stderr)
    );
    // slowhttptest stops early when the server has closed every connection it opened.
    assert!(
        report.contains("Exit status: No open connections left"),
        "the gateway did not cut every slow connection: {report}"
    );
    let ended = report
        .lines()
        .find_map(|l| l.trim().strip_prefix("Test ended on ")?.strip_suffix("th second"))
        .and_then(|n| n.parse::<u64>().ok())
        .expect("the report says when the test ended");
    assert!(ended < LENGTH_SECS, "the slow connections lasted the whole test: {report}");
    assert!(
        closed + connected >= connections / 2,
        "the attack did not get going (too few connections): {report}"
    );
    assert!(answers.len() >= 10, "too few probes: {answers:?}");
    for a in &answers {
        assert_eq!(a.status, 200, "the legitimate client was refused during the attack: {a:?}");
        assert!(a.seconds < 2.0, "the legitimate client waited during the attack: {a:?}");
    }
    assert!(
        gw.metric("rempart_gateway_connections_open").await <= 2.0,
        "connections left open after the attack"
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slowloris_with_slowhttptest_is_cut_and_a_legitimate_client_is_served() {
    attack("-H", "/v1/chain/get_info", 2000).await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_body_with_slowhttptest_is_cut_and_a_legitimate_client_is_served() {
    attack("-B", "/v1/chain/get_block", 1000).await;
}

#[test]
fn the_report_parser_takes_the_last_value() {
    let r = plain(
        "closed:     3\nconnected:  9\n\n\x1b[1;32mclosed:\x1b[1;32m              588\nservice available:   YES\n",
    );
    let r = r.as_str();
    assert_eq!(last(r, "closed"), Some(588));
    assert_eq!(last(r, "connected"), Some(9));
    assert_eq!(last(r, "pending"), None);
}
