//! What the guard shared with standby signers through etcd (`[shared_guard]`) adds to a
//! signature: `cargo bench -p rempart-signer --bench shared_guard`.
//!
//! It starts Debian's etcd (etcd-server) on free loopback ports with its data under
//! `target/tmp` (or under `REMPART_BENCH_ETCD_DIR`), then the release daemon (soft K1 key, or
//! a SoftHSM2 K1 key with `REMPART_BENCH_BACKEND=k1`; sandboxed, state on disk) without and
//! with `[shared_guard]`, alternating, `REMPART_BENCH_ROUNDS` rounds (default 3) of 200
//! increasing-height `SignBlock` requests each over the Unix socket, and prints p50/p99 of what
//! the client saw, as Markdown for BENCHMARKS.md, with the claim's own round trip and how long
//! the signer waited for it once the key had signed (from the daemon's timing events). A
//! benchmark, not a test: it asserts nothing about speed.

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

/// What one round measured: the client's round trips, and per request the claim's own time
/// and the wait for it after the key signed.
#[derive(Default)]
struct Round {
    rtt: Vec<Duration>,
    claim: Vec<Duration>,
    claim_wait: Vec<Duration>,
}

/// The key signing: the development key, or (`REMPART_BENCH_BACKEND=k1`) a K1 key in a
/// SoftHSM2 token.
struct Key {
    name: &'static str,
    backend: Option<String>,
    public: String,
    hsm: Option<common::Hsm>,
}

fn key() -> Key {
    match std::env::var("REMPART_BENCH_BACKEND").as_deref() {
        Err(_) | Ok("soft") => {
            Key { name: "soft K1", backend: None, public: common::DEV_PUB.into(), hsm: None }
        }
        Ok("k1") => {
            let hsm = common::softhsm().expect("SoftHSM2 (apt-get install softhsm2)");
            let public = hsm.new_key("k1", "bench-k1");
            let backend = common::pkcs11_backend("T", "bench-k1", common::SOFTHSM_MODULE);
            Key { name: "SoftHSM2 K1", backend: Some(backend), public, hsm: Some(hsm) }
        }
        Ok(other) => panic!("REMPART_BENCH_BACKEND={other}: expected soft or k1"),
    }
}

/// One daemon's round; with `port`, sharing the guard under a prefix of the round's own (a
/// record left by the round before names higher blocks, which the guard would refuse).
async fn round(port: Option<u16>, index: usize, key: &Key, out: &mut Round) {
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
    let extra = port.map_or(String::new(), |p| {
        format!(
            "[shared_guard]\netcd = \"127.0.0.1:{p}\"\nprefix = \"/bench/{}/{index}/\"\n\
             name = \"bench\"\ntimeout_ms = 2000",
            std::process::id()
        )
    });
    let read_only: Vec<&Path> =
        key.hsm.iter().flat_map(|h| [h.tokens.as_path(), h.conf.as_path()]).collect();
    let sandbox = common::sandbox_toml(&read_only);
    let s = common::setup_in(Some(parent), key.backend.as_deref(), &key.public, &sandbox, &extra);
    s.guard_init();
    let mut env = vec![("REMPART_LOG", "warn,rempart_signer::timing=debug")];
    if let Some(h) = &key.hsm {
        env.extend(h.env());
    }
    let mut d = s.spawn_with(&env, &["--log-format", "json"]);
    let mut c = Client::new(Endpoint::Unix(s.socket.clone()));
    let base = common::now_slot();
    for n in 0..REQUESTS {
        let req = common::request(&s.key, 1000 + n, BlockTimestamp(base.0 - 100 + n), 1);
        let t = Instant::now();
        c.sign_block(req, tokio::time::Instant::now() + Duration::from_secs(5)).await.unwrap();
        out.rtt.push(t.elapsed());
    }
    drop(c);
    d.terminate();
    if port.is_none() {
        return;
    }
    // The log ends when the daemon's stderr closes.
    while let Ok(line) = d.log.recv_timeout(Duration::from_secs(20)) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        // (A signer from before the claim ran beside the HSM logs neither field.)
        let us = |f: &str| v["fields"][f].as_u64().map(Duration::from_micros);
        if v["target"] == "rempart_signer::timing"
            && let (Some(claim), Some(wait)) = (us("claim_us"), us("claim_wait_us"))
        {
            out.claim.push(claim);
            out.claim_wait.push(wait);
        }
    }
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let rounds: usize =
        std::env::var("REMPART_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(3);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average before: {}", load.trim());
    // REMPART_BENCH_ETCD_DIR=/dev/shm keeps etcd's fsyncs off the signer's disk, as when etcd
    // runs on machines of its own; by default both share the disk under `target/`.
    let parent = std::env::var("REMPART_BENCH_ETCD_DIR")
        .unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").to_owned());
    eprintln!("etcd's data under {parent}");
    let dir = tempfile::tempdir_in(parent).unwrap();
    let mut etcd = common::etcd::Etcd::start(Path::new("etcd"), dir.path());
    let port = etcd.port;
    let (mut without, mut with) = (Round::default(), Round::default());
    let key = key();
    for i in 0..rounds {
        round(None, i, &key, &mut without).await;
        round(Some(port), i, &key, &mut with).await;
    }
    etcd.kill();
    let ms = |v: &mut [Duration], q: f64| {
        if v.is_empty() {
            "–".into()
        } else {
            format!("{:.3}", quantile(v, q).as_secs_f64() * 1e3)
        }
    };
    println!(
        "| {}, Unix socket | requests | p50 ms | p99 ms | claim p50 / p99 ms | waited for \
         the claim after signing, p50 / p99 ms |",
        key.name
    );
    println!("|---|---:|---:|---:|---:|---:|");
    println!(
        "| without [shared_guard] | {} | {} | {} | | |",
        without.rtt.len(),
        ms(&mut without.rtt, 0.5),
        ms(&mut without.rtt, 0.99)
    );
    println!(
        "| with [shared_guard] (etcd 3.4, loopback) | {} | {} | {} | {} / {} | {} / {} |",
        with.rtt.len(),
        ms(&mut with.rtt, 0.5),
        ms(&mut with.rtt, 0.99),
        ms(&mut with.claim, 0.5),
        ms(&mut with.claim, 0.99),
        ms(&mut with.claim_wait, 0.5),
        ms(&mut with.claim_wait, 0.99)
    );
}
