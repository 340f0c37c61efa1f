//! Slow read over HTTP/2 from many addresses (`tests/tools/h2_attack.py slow-read`): clients
//! that ask for answers and keep their flow-control window shut. Against the real binary, the
//! answers held for them stay under `send_wait_bytes_total`, every stream is reset by the send
//! timeout or refused, and a legitimate curl is served throughout. The gateway's peak memory
//! is reported; beyond the held answers it is what any 3 200 requests in flight at once cost
//! (their upstream connections and buffers), freed when they end.

use std::net::Ipv4Addr;
use std::time::Duration;

use serde_json::Value;

use crate::support::*;
use crate::tools::{self, probe_while};

const LEGIT: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const CONNECTIONS: u64 = 32;
const STREAMS: u64 = 100;
/// An answer the gateway reads whole before sending it.
const ANSWER: u64 = 60_000;
const TOTAL: u64 = 32 * 1024 * 1024;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_from_many_addresses_stay_within_the_total_and_are_reset() {
    let Some(curl) = tools::find("curl", "curl") else { return };
    let Some(python) = tools::python_with_h2().await else { return };
    let _serial = tools::serial().await;
    let up = Upstream::start("a").await;
    let total_line = format!("send_wait_bytes_total = {TOTAL}");
    let gw = ServedBinary::start(
        &[up.addr],
        &[
            ("path = \"/v1/history/get_actions\"", "path = \"/v1/chain/big\""),
            ("per_second = 5\n", "per_second = 100000\n"),
            ("burst = 10\n", "burst = 100000\n"),
            ("send_timeout_ms = 30000", "send_timeout_ms = 3000"),
            ("send_wait_bytes_total = 268435456", &total_line),
        ],
    )
    .await;
    let before = gw.rss();
    let run = tools::command(&python)
        .arg(repo().join("tests/tools/h2_attack.py"))
        .args(["slow-read", "127.0.0.1", &gw.tls.port().to_string()])
        .arg(repo().join("certs/ca.pem"))
        .args(["--connections", &CONNECTIONS.to_string(), "--streams", &STREAMS.to_string()])
        .args(["--bytes", &ANSWER.to_string(), "--path", "/v1/chain/big", "--seconds", "8"])
        .output();
    // The gateway's memory and the answers it holds, sampled while the attack runs.
    let (mut peak, mut held_peak) = (before, 0u64);
    let held = async || {
        let text = plain_get(gw.admin, "/metrics").await.1;
        text.lines()
            .find_map(|l| l.strip_prefix("rempart_gateway_send_waiting_bytes "))
            .and_then(|v| v.parse::<u64>().ok())
            .expect("the held-bytes gauge")
    };
    let sampled = async {
        let out = tokio::time::timeout(Duration::from_secs(60), run);
        tokio::pin!(out);
        loop {
            tokio::select! {
                o = &mut out => return o,
                _ = tokio::time::sleep(Duration::from_millis(100)) => {
                    peak = peak.max(gw.rss());
                    held_peak = held_peak.max(held().await);
                }
            }
        }
    };
    let (out, answers) =
        probe_while(&curl, gw.tls, LEGIT, Duration::from_millis(250), sampled).await;
    let report = tools::script_report(out.ok());
    let conns = report["connections"].as_array().cloned().expect("connections");
    let metrics = plain_get(gw.admin, "/metrics").await.1;
    let metric = |name: &str| -> u64 {
        metrics
            .lines()
            .find(|l| l.starts_with(name))
            .and_then(|l| l.rsplit(' ').next())
            .and_then(|v| v.parse().ok())
            .unwrap_or(0)
    };
    let reason = |r: &str| metric(&format!("rempart_gateway_slow_readers_total{{reason=\"{r}\"}}"));
    let (timeout, client, total) =
        (reason("stream_timeout"), reason("client_budget"), reason("total_budget"));
    let grown = peak.saturating_sub(before);
    eprintln!(
        "slow read: {CONNECTIONS} addresses x {STREAMS} streams of {ANSWER} bytes ({} MiB asked); \
         reset at the send timeout {timeout}, refused over the client's share {client}, over the \
         total {total}; answers held at most {} MiB (total {} MiB); gateway RSS {} MiB before, \
         peak {} MiB (+{} MiB); legitimate client: {} answers",
        (CONNECTIONS * STREAMS * ANSWER) >> 20,
        held_peak >> 20,
        TOTAL >> 20,
        before >> 20,
        peak >> 20,
        grown >> 20,
        answers.len()
    );
    for c in &conns {
        assert_eq!(c["data"], 0, "a byte was sent past a shut window: {c}");
        assert_eq!(c["closed"], false, "the connection itself was closed: {c}");
        let resets: u64 =
            c["resets"].as_object().expect("resets").values().filter_map(Value::as_u64).sum();
        assert_eq!(resets, STREAMS, "every stream ends in a reset: {c}");
    }
    assert_eq!(timeout + client + total, CONNECTIONS * STREAMS);
    assert!(timeout > 0 && total > 0, "both the timeout and the total acted");
    assert_eq!(metric("rempart_gateway_send_waiting_bytes"), 0);
    // Without the bounds the gateway held all 183 MiB for as long as the clients stayed.
    assert!(held_peak > 0 && held_peak <= TOTAL, "held {held_peak} bytes at most");
    assert!(answers.len() >= 3, "too few probes during the attack: {answers:?}");
    for a in &answers {
        assert_eq!(a.status, 200, "the legitimate client was refused during the attack: {a:?}");
        assert!(a.seconds < 2.0, "the legitimate client waited during the attack: {a:?}");
    }
}
