//! What the guard shared with standby signers through etcd (`[shared_guard]`) adds to a
//! signature: `cargo bench -p rempart-signer --bench shared_guard`.
//!
//! It starts Debian's etcd (etcd-server) on free loopback ports with its data under
//! `target/tmp`, then the release daemon (soft K1 key, sandboxed, state on disk) without and
//! with `[shared_guard]`, alternating, `REMPART_BENCH_ROUNDS` rounds (default 3) of 200
//! increasing-height `SignBlock` requests each over the Unix socket, and prints p50/p99 of what
//! the client saw, as Markdown for BENCHMARKS.md. A benchmark, not a test: it asserts nothing
//! about speed.

#[path = "../tests/common/mod.rs"]
mod common;

use std::path::Path;
use std::time::{Duration, Instant};

use rempart_core::BlockTimestamp;
use rempart_signer::client::{Client, Endpoint};

const REQUESTS: u32 = 200;

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

/// One daemon's round; with `port`, sharing the guard under a prefix of the round's own (a
/// record left by the round before names higher blocks, which the guard would refuse).
async fn round(port: Option<u16>, index: usize) -> Vec<Duration> {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let extra = port.map_or(String::new(), |p| {
        format!(
            "[shared_guard]\netcd = \"127.0.0.1:{p}\"\nprefix = \"/bench/{}/{index}/\"\n\
             name = \"bench\"\ntimeout_ms = 2000",
            std::process::id()
        )
    });
    let s =
        common::setup_in(Some(parent), None, common::DEV_PUB, &common::sandbox_toml(&[]), &extra);
    s.guard_init();
    let mut d = s.spawn(&[]);
    let mut c = Client::new(Endpoint::Unix(s.socket.clone()));
    let base = common::now_slot();
    let mut out = Vec::new();
    for n in 0..REQUESTS {
        let req = common::request(&s.key, 1000 + n, BlockTimestamp(base.0 - 100 + n), 1);
        let t = Instant::now();
        c.sign_block(req, tokio::time::Instant::now() + Duration::from_secs(5)).await.unwrap();
        out.push(t.elapsed());
    }
    d.terminate();
    out
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize =
        std::env::var("REMPART_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average before: {}", load.trim());
    let dir = tempfile::tempdir_in(env!("CARGO_TARGET_TMPDIR")).unwrap();
    let mut etcd = common::Etcd::start(Path::new("etcd"), dir.path());
    let port = etcd.port;
    let (mut without, mut with) = (Vec::new(), Vec::new());
    for i in 0..rounds {
        without.extend(round(None, i).await);
        with.extend(round(Some(port), i).await);
    }
    etcd.kill();
    println!("| soft K1, Unix socket | requests | p50 ms | p99 ms |");
    println!("|---|---:|---:|---:|");
    for (name, v) in [
        ("without [shared_guard]", &mut without),
        ("with [shared_guard] (etcd 3.4, loopback)", &mut with),
    ] {
        println!(
            "| {name} | {} | {:.3} | {:.3} |",
            v.len(),
            quantile(v, 0.5).as_secs_f64() * 1e3,
            quantile(v, 0.99).as_secs_f64() * 1e3
        );
    }
}
