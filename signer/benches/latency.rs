//! Sign-request latency of the release `rempart-signer` daemon, as BENCHMARKS.md reports it:
//! `cargo bench -p rempart-signer --bench latency`.
//!
//! For the soft backend and for SoftHSM2 (K1 and R1 keys made in the token), over the Unix
//! socket and over TCP loopback, it starts the real daemon (sandboxed as in production, state
//! on disk), sends increasing-height `SignBlock` requests one at a time from a plain blocking
//! client, and prints p50/p99 latency and throughput with the time split into transport
//! (what the client saw beyond the signer's own handling), HSM, guard fsync and audit fsync.
//! The split comes from the daemon's `rempart_signer::timing` debug events (written after
//! each reply), matched to the client's samples by request id. Each round uses a fresh state
//! directory and daemon, since slots must stay within the clock-skew window. It never
//! touches a file outside its temp directories and kills the daemons it starts by PID.
//! Set `REMPART_BENCH_ROUNDS` (default 10 rounds of 200 requests) to change the run length and
//! `REMPART_BENCH_DIR` to put the state directories elsewhere than `target/tmp` (the
//! filesystem decides what an fsync costs); `REMPART_BENCH_ONLY=soft|k1|r1` runs one backend;
//! `REMPART_BENCH_GAP_MS=N` waits N ms before each request (requests are back to back by
//! default, the machine's best case: a producer asks every 500 ms, to a signer that idles).

#[path = "../tests/common/mod.rs"]
mod common;
#[path = "support/measure.rs"]
mod measure;

use std::time::Duration;

fn main() {
    let rounds: usize =
        std::env::var("REMPART_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average before: {}", load.trim());
    eprintln!("state directories under {}", measure::state_parent().display());
    let hsm = common::softhsm();
    let mut configs: Vec<(String, Option<String>, String)> =
        vec![("soft K1".into(), None, common::DEV_PUB.into())];
    if let Some(h) = &hsm {
        for kt in ["k1", "r1"] {
            let label = format!("bench-{kt}");
            let key = h.new_key(kt, &label);
            let backend = common::pkcs11_backend("T", &label, common::SOFTHSM_MODULE);
            configs.push((format!("SoftHSM2 {}", kt.to_uppercase()), Some(backend), key));
        }
    }
    if let Ok(only) = std::env::var("REMPART_BENCH_ONLY") {
        let only = only.to_lowercase();
        configs.retain(|(name, _, _)| match only.as_str() {
            "soft" => name.starts_with("soft"),
            "k1" | "r1" => name.starts_with("SoftHSM2") && name.to_lowercase().ends_with(&only),
            other => panic!("REMPART_BENCH_ONLY={other}: expected soft, k1 or r1"),
        });
        assert!(!configs.is_empty(), "REMPART_BENCH_ONLY={only}: that backend is not available");
    }
    measure::header();
    let mut single_calls = Vec::new();
    for (name, backend, key) in &configs {
        let uses_hsm = backend.as_ref().map(|_| hsm.as_ref().unwrap());
        for tcp in [false, true] {
            let mut samples = Vec::new();
            let mut elapsed = Duration::ZERO;
            for _ in 0..rounds {
                let (s, e) = measure::local(backend.as_deref(), key, uses_hsm, tcp);
                samples.extend(s);
                elapsed += e;
            }
            let transport = if tcp { "TCP loopback" } else { "Unix socket" };
            measure::row(name, transport, &samples, elapsed);
            if let Some((p50, p99)) = measure::single_call_p50_p99(&samples) {
                single_calls.push(format!(
                    "{name} over the {transport}: p50 {} / p99 {} ms",
                    measure::ms(p50),
                    measure::ms(p99)
                ));
            }
        }
    }
    println!("\nOne backend call (requests that the first call answered):");
    for line in single_calls {
        println!("- {line}");
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average after: {}", load.trim());
}
