//! Start-up time of the release `rempart-signer` beside a long audit log, as BENCHMARKS.md
//! reports it: `cargo bench -p rempart-signer --bench audit_start`.
//!
//! A start verifies the live audit log's hash chain before it serves. For a live log of 0
//! lines, of the largest size the default `audit_segment_mib` (64) leaves live, and of a
//! million signature lines that was never sealed (`audit_segment_mib` at its maximum, as every
//! log was before sealing existed), it starts the real daemon (soft key, no sandbox: the
//! sandbox does not change reading the log) five times and prints the median time from spawn
//! to its "serving chain" line. Then the default segment size beside the million-line log:
//! the first start verifies it all and seals it at its start line; the next ones read only the
//! new live log. Logs are written by this bench with the signer's line format and hash chain
//! (one signature event per line, as a producer's log is), under `target/tmp` or
//! `REMPART_BENCH_DIR` (about 0.7 GB at the peak). `REMPART_BENCH_STARTS` changes the number
//! of starts per case.

#[path = "../tests/common/mod.rs"]
mod common;

use std::io::{BufWriter, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use sha2::{Digest, Sha256};

/// Writes a valid audit log of `lines` signature events at `path`.
fn write_log(path: &Path, lines: u64) {
    let mut out = BufWriter::new(std::fs::File::create(path).unwrap());
    let mut prev = rempart_signer::audit::GENESIS_PREV.to_string();
    for seq in 1..=lines {
        let digest = hex::encode(Sha256::digest(seq.to_le_bytes()));
        let line = format!(
            "{{\"seq\":{seq},\"time_ms\":{},\"event\":\"signature\",\"chain_id\":\"{}\",\
             \"producer\":\"eosio\",\"key\":\"{}\",\"block_num\":{},\"slot\":{},\
             \"digest\":\"{digest}\",\"signature\":\"SIG_K1_KfQ57wLFFiPR85zjuQyZsn7hSSzsNDwRAe2\
             Yi6gtoNtm8HsKwNPHmBSjmJ1wyuTZEBjJmbnMjpJ9qfRZn2pqpkuVNH4Dzn\",\"replay\":false,\
             \"attempts\":2,\"peer\":\"uid 0\",\"prev\":\"{prev}\"}}",
            1_764_000_000_000 + seq * 500,
            common::CHAIN,
            common::DEV_PUB,
            seq + 1,
            1_000_000 + seq,
        );
        prev = hex::encode(Sha256::digest(line.as_bytes()));
        out.write_all(line.as_bytes()).unwrap();
        out.write_all(b"\n").unwrap();
    }
    out.into_inner().unwrap().sync_all().unwrap();
}

/// Time from spawn to "serving chain" for each of `starts` starts of the daemon of `s`.
fn starts(s: &common::Setup, starts: usize) -> Vec<Duration> {
    (0..starts)
        .map(|_| {
            let t = Instant::now();
            let mut d = s.spawn(&[]);
            d.wait_line("serving chain", Duration::from_secs(600));
            let took = t.elapsed();
            assert_eq!(d.terminate().code(), Some(0));
            took
        })
        .collect()
}

fn median(mut v: Vec<Duration>) -> Duration {
    v.sort();
    v[v.len() / 2]
}

fn ms(d: Duration) -> String {
    format!("{:.1}", d.as_secs_f64() * 1000.0)
}

fn main() {
    let n: usize =
        std::env::var("REMPART_BENCH_STARTS").ok().and_then(|v| v.parse().ok()).unwrap_or(5);
    let parent = std::env::var_os("REMPART_BENCH_DIR")
        .map_or_else(|| Path::new(env!("CARGO_MANIFEST_DIR")).join("../target/tmp"), Into::into);
    std::fs::create_dir_all(&parent).unwrap();
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average before: {}", load.trim());
    println!(
        "| live audit log | lines | MiB | `audit_segment_mib` | start to serving, median of {n} (ms) | each start (ms) |"
    );
    println!("|---|---:|---:|---:|---:|---|");
    let cases: [(&str, u64, u64); 3] = [
        ("empty", 0, 64),
        ("the largest the default leaves live", 112_000, 64),
        ("a million lines, never sealed", 1_000_000, 1_048_576),
    ];
    for (what, lines, segment) in cases {
        let s = setup_with_segment(&parent, segment);
        write_log(&s.audit_log(), lines);
        let mib = std::fs::metadata(s.audit_log()).unwrap().len() as f64 / 1048576.0;
        let took = starts(&s, n);
        let each: Vec<String> = took.iter().map(|d| ms(*d)).collect();
        println!(
            "| {what} | {lines} | {mib:.1} | {segment} | {} | {} |",
            ms(median(took)),
            each.join(", ")
        );
    }
    // The million-line log with the default: sealed by the first start.
    let s = setup_with_segment(&parent, 64);
    write_log(&s.audit_log(), 1_000_000);
    let mut took = starts(&s, n + 1);
    let first = took.remove(0);
    let sealed = rempart_signer::audit::sealed_logs(&s.audit_log()).unwrap();
    assert_eq!(sealed.len(), 1, "the first start seals the million-line log");
    let each: Vec<String> = took.iter().map(|d| ms(*d)).collect();
    println!(
        "| a million lines, first start with the default (verifies, then seals) | 1000000 | | 64 | {} | |",
        ms(first)
    );
    println!(
        "| the new live log after that seal | {} | | 64 | {} | {} |",
        rempart_signer::audit::verify(&s.audit_log()).unwrap().lines,
        ms(median(took)),
        each.join(", ")
    );
}

/// A deployment under `parent` (soft key, no sandbox) whose audit log is sealed at `mib`.
fn setup_with_segment(parent: &Path, mib: u64) -> common::Setup {
    let s = common::setup_in(Some(parent), None, common::DEV_PUB, "dangerous_disabled = true", "");
    let policy = std::fs::read_to_string(&s.policy).unwrap().replace(
        "audit_log = \"state/audit.jsonl\"",
        &format!("audit_log = \"state/audit.jsonl\"\naudit_segment_mib = {mib}"),
    );
    std::fs::write(&s.policy, policy).unwrap();
    s.guard_init();
    s
}
