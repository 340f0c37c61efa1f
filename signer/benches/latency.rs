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
//! filesystem decides what an fsync costs).

#[path = "../tests/common/mod.rs"]
mod common;

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::Path;
use std::time::{Duration, Instant};

use rempart_core::BlockTimestamp;
use rempart_core::protocol::{FrameDecoder, Request, Response, encode_frame};

/// Requests measured per round (each round: a fresh daemon and guard state).
const PER_ROUND: u32 = 200;
/// Requests sent before measuring, per round.
const WARM_UP: u32 = 10;

/// One measured request.
#[derive(Clone, Copy, Default)]
struct Sample {
    rtt: Duration,
    total: Duration,
    backend: Duration,
    calls: u32,
    guard: Duration,
    audit: Duration,
}

enum Stream {
    Unix(std::os::unix::net::UnixStream),
    Tcp(std::net::TcpStream),
}

impl Stream {
    fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
        }
    }
}

trait ReadWrite: Read + Write {}
impl<T: Read + Write> ReadWrite for T {}

/// Sends one frame and reads the one response.
fn call(stream: &mut Stream, frame: &[u8], decoder: &mut FrameDecoder) -> Response {
    let io = stream.io();
    io.write_all(frame).unwrap();
    let mut pending = Vec::new();
    let mut buf = [0u8; 4096];
    loop {
        let mut input = &pending[..];
        if let Some(r) = decoder.decode::<Response>(&mut input).unwrap() {
            assert!(input.is_empty(), "one response per request");
            return r;
        }
        let used = pending.len() - input.len();
        pending.drain(..used);
        let n = io.read(&mut buf).unwrap();
        assert!(n > 0, "the signer closed the connection");
        pending.extend_from_slice(&buf[..n]);
    }
}

fn micros(v: &serde_json::Value, field: &str) -> Duration {
    Duration::from_micros(v["fields"][field].as_u64().unwrap_or_else(|| panic!("no {field}: {v}")))
}

/// One round: a fresh deployment and daemon, `PER_ROUND` measured requests.
fn round(
    backend: Option<&str>,
    key: &str,
    hsm: Option<&common::Hsm>,
    tcp: bool,
) -> (Vec<Sample>, Duration) {
    let mut read_only: Vec<&Path> = Vec::new();
    if let Some(h) = hsm {
        read_only.extend([h.tokens.as_path(), h.conf.as_path()]);
    }
    let sandbox = common::sandbox_toml(&read_only);
    let parent = std::env::var_os("REMPART_BENCH_DIR")
        .map_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf(), Into::into);
    let s = common::setup_in(Some(&parent), backend, key, &sandbox, "");
    s.guard_init();
    let mut env = vec![("REMPART_LOG", "warn,rempart_signer::timing=debug")];
    if let Some(h) = hsm {
        env.extend(h.env());
    }
    let mut d = s.spawn_with(&env, &["--log-format", "json"], true);
    let mut stream = if tcp {
        let s = std::net::TcpStream::connect(("127.0.0.1", s.tcp_port)).unwrap();
        s.set_nodelay(true).unwrap();
        Stream::Tcp(s)
    } else {
        Stream::Unix(std::os::unix::net::UnixStream::connect(&s.socket).unwrap())
    };
    let mut decoder = FrameDecoder::new();
    let base = common::now_slot().0 - 100;
    let mut rtts = BTreeMap::new();
    let mut measured = Duration::ZERO;
    for n in 2..2 + WARM_UP + PER_ROUND {
        let mut req = common::request(&s.key, n, BlockTimestamp(base + n), 1);
        req.request_id = u64::from(n);
        let frame = encode_frame(&Request::SignBlock(req)).unwrap();
        let started = Instant::now();
        let resp = call(&mut stream, &frame, &mut decoder);
        let rtt = started.elapsed();
        match resp {
            Response::Signature(sig) if sig.block_num == n => {}
            other => panic!("block {n}: {other:?}\n{}", d.lines().join("\n")),
        }
        if n >= 2 + WARM_UP {
            rtts.insert(u64::from(n), rtt);
            measured += rtt;
        }
    }
    drop(stream);
    let status = d.terminate();
    assert_eq!(status.code(), Some(0), "{status:?}");
    // The log ends when the daemon's stderr closes.
    let rx = d.log.take().unwrap();
    let mut samples = Vec::new();
    while let Ok(line) = rx.recv_timeout(Duration::from_secs(20)) {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(&line) else { continue };
        if v["target"] != "rempart_signer::timing" {
            continue;
        }
        let id = v["fields"]["request_id"].as_u64().unwrap();
        let Some(rtt) = rtts.remove(&id) else { continue };
        samples.push(Sample {
            rtt,
            total: micros(&v, "total_us"),
            backend: micros(&v, "backend_us"),
            calls: u32::try_from(v["fields"]["backend_calls"].as_u64().unwrap()).unwrap(),
            guard: micros(&v, "guard_commit_us"),
            audit: micros(&v, "audit_us"),
        });
    }
    assert!(rtts.is_empty(), "{} requests without a timing event", rtts.len());
    (samples, measured)
}

fn quantile(values: &mut [Duration], q: f64) -> Duration {
    values.sort();
    let i = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[i]
}

fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn pair(samples: &[Sample], f: impl Fn(&Sample) -> Duration) -> String {
    let mut v: Vec<Duration> = samples.iter().map(f).collect();
    format!("{} / {}", ms(quantile(&mut v, 0.5)), ms(quantile(&mut v, 0.99)))
}

fn main() {
    let rounds: usize =
        std::env::var("REMPART_BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(10);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average before: {}", load.trim());
    let dir =
        std::env::var("REMPART_BENCH_DIR").unwrap_or_else(|_| env!("CARGO_TARGET_TMPDIR").into());
    eprintln!("state directories under {dir}");
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
    println!(
        "| backend | transport | requests | p50 ms | p99 ms | req/s | transport p50 / p99 | \
         HSM p50 / p99 (calls/sig) | guard fsync p50 / p99 | audit fsync p50 / p99 | rest p50 |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
    for (name, backend, key) in &configs {
        let uses_hsm = backend.as_ref().map(|_| hsm.as_ref().unwrap());
        for tcp in [false, true] {
            let mut samples = Vec::new();
            let mut elapsed = Duration::ZERO;
            for _ in 0..rounds {
                let (s, e) = round(backend.as_deref(), key, uses_hsm, tcp);
                samples.extend(s);
                elapsed += e;
            }
            let mut rtt: Vec<Duration> = samples.iter().map(|s| s.rtt).collect();
            let calls: u32 = samples.iter().map(|s| s.calls).sum();
            let rest = |s: &Sample| s.total.saturating_sub(s.backend + s.guard + s.audit);
            let mut rest_v: Vec<Duration> = samples.iter().map(rest).collect();
            println!(
                "| {name} | {} | {} | {} | {} | {:.0} | {} | {} ({:.2}) | {} | {} | {} |",
                if tcp { "TCP loopback" } else { "Unix socket" },
                samples.len(),
                ms(quantile(&mut rtt, 0.5)),
                ms(quantile(&mut rtt, 0.99)),
                samples.len() as f64 / elapsed.as_secs_f64(),
                pair(&samples, |s| s.rtt.saturating_sub(s.total)),
                pair(&samples, |s| s.backend),
                f64::from(calls) / samples.len() as f64,
                pair(&samples, |s| s.guard),
                pair(&samples, |s| s.audit),
                ms(quantile(&mut rest_v, 0.5)),
            );
        }
    }
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average after: {}", load.trim());
}
