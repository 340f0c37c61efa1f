//! The measurement half of the signer's latency benchmarks (`latency.rs`, `tunnel.rs`):
//! a blocking client that sends increasing-height `SignBlock` requests one at a time over any
//! stream and times each round trip, the matching of those samples to the daemon's
//! `rempart_signer::timing` debug events (the split of the signer's own time into HSM, guard
//! fsync and audit fsync, and the wall time of those two fsyncs, which overlap), and the table
//! row BENCHMARKS.md shows. It starts nothing and touches
//! no file: each benchmark deploys its daemons and hands over a daemon with a piped JSON log and
//! a connected stream. Included by path from each benchmark.
#![allow(unreachable_pub, dead_code, reason = "included by path; each bench uses a part")]

use std::collections::BTreeMap;
use std::io::{Read, Write};
use std::path::{Path, PathBuf};
use std::time::{Duration, Instant};

use rempart_core::BlockTimestamp;
use rempart_core::key::PublicKey;
use rempart_core::protocol::{FrameDecoder, Request, Response, encode_frame};

use crate::common;

/// Requests measured per round (each round: a fresh daemon and guard state).
pub const PER_ROUND: u32 = 200;
/// Requests sent before measuring, per round.
pub const WARM_UP: u32 = 10;

/// The daemon's log filter that emits the timing events [`collect`] reads.
pub const TIMING_LOG: (&str, &str) = ("REMPART_LOG", "warn,rempart_signer::timing=debug");

/// One measured request.
#[derive(Clone, Copy, Default)]
pub struct Sample {
    rtt: Duration,
    total: Duration,
    before_backend: Duration,
    backend: Duration,
    calls: u32,
    guard: Duration,
    audit: Duration,
    durable: Duration,
}

/// A connected client stream.
pub enum Stream {
    /// The Unix socket.
    Unix(std::os::unix::net::UnixStream),
    /// TCP (loopback or through a tunnel).
    Tcp(std::net::TcpStream),
}

impl Stream {
    /// The stream to read and write.
    pub fn io(&mut self) -> &mut dyn ReadWrite {
        match self {
            Stream::Unix(s) => s,
            Stream::Tcp(s) => s,
        }
    }
}

/// A blocking byte stream.
pub trait ReadWrite: Read + Write {}
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

/// Waits (20 s at most) until the daemon behind `socket` has read its WireGuard counters once
/// (successfully or not, or found it has no reader): the read at start (a child process, a
/// UAPI round trip) is start-up work, which a round that measures the steady state must not
/// overlap. Later reads come every `stats_interval_secs`.
pub fn wait_for_tunnel_stats(socket: &Path) {
    let mut stream = Stream::Unix(std::os::unix::net::UnixStream::connect(socket).unwrap());
    let mut decoder = FrameDecoder::new();
    let frame = encode_frame(&Request::Status { request_id: 1 }).unwrap();
    common::wait_for("the signer's first WireGuard statistics", Duration::from_secs(20), || {
        match call(&mut stream, &frame, &mut decoder) {
            // Empty until the first read stored a snapshot (or the reader said it has none).
            Response::Status(s) => !s.tunnel.is_empty(),
            other => panic!("Status: {other:?}"),
        }
    });
}

fn micros(v: &serde_json::Value, field: &str) -> Duration {
    Duration::from_micros(v["fields"][field].as_u64().unwrap_or_else(|| panic!("no {field}: {v}")))
}

/// One round on a fresh daemon: `WARM_UP` then `PER_ROUND` measured requests on `stream`, the
/// daemon stopped (SIGTERM, exit 0 expected) and its timing events matched to the samples.
/// Returns the samples and the time the measured requests took.
pub fn round(
    d: &mut common::Daemon,
    mut stream: Stream,
    key: &PublicKey,
) -> (Vec<Sample>, Duration) {
    let mut decoder = FrameDecoder::new();
    let base = common::now_slot().0 - 100;
    let mut rtts = BTreeMap::new();
    let mut measured = Duration::ZERO;
    // Pacing, not synchronisation: a producer asks once per 500 ms, and an idle machine
    // wakes more slowly than one kept busy by back-to-back requests.
    let gap = std::env::var("REMPART_BENCH_GAP_MS").ok().map(|v| {
        let ms = v.parse().unwrap_or_else(|_| {
            panic!("REMPART_BENCH_GAP_MS={v}: expected a whole number of milliseconds")
        });
        Duration::from_millis(ms)
    });
    for n in 2..2 + WARM_UP + PER_ROUND {
        if let Some(gap) = gap {
            std::thread::sleep(gap);
        }
        let mut req = common::request(key, n, BlockTimestamp(base + n), 1);
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
    let rx = &d.log;
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
            before_backend: micros(&v, "before_backend_us"),
            backend: micros(&v, "backend_us"),
            calls: u32::try_from(v["fields"]["backend_calls"].as_u64().unwrap()).unwrap(),
            guard: micros(&v, "guard_commit_us"),
            audit: micros(&v, "audit_us"),
            durable: micros(&v, "durable_us"),
        });
    }
    assert!(rtts.is_empty(), "{} requests without a timing event", rtts.len());
    (samples, measured)
}

/// One round on this host: a fresh sandboxed deployment and daemon, [`PER_ROUND`] measured
/// requests over the Unix socket or (`tcp`) TCP loopback.
pub fn local(
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
    let s = common::setup_in(Some(&state_parent()), backend, key, &sandbox, "");
    s.guard_init();
    let mut env = vec![TIMING_LOG];
    if let Some(h) = hsm {
        env.extend(h.env());
    }
    let mut d = s.spawn_with(&env, &["--log-format", "json"]);
    let stream = if tcp {
        let s = std::net::TcpStream::connect(("127.0.0.1", s.tcp_port)).unwrap();
        s.set_nodelay(true).unwrap();
        Stream::Tcp(s)
    } else {
        Stream::Unix(std::os::unix::net::UnixStream::connect(&s.socket).unwrap())
    };
    round(&mut d, stream, &s.key)
}

/// Where state directories go: `$REMPART_BENCH_DIR`, else `target/tmp` (the filesystem decides
/// what an fsync costs).
pub fn state_parent() -> PathBuf {
    std::env::var_os("REMPART_BENCH_DIR")
        .map_or_else(|| Path::new(env!("CARGO_TARGET_TMPDIR")).to_path_buf(), Into::into)
}

fn quantile(values: &mut [Duration], q: f64) -> Duration {
    values.sort();
    let i = ((values.len() as f64 - 1.0) * q).round() as usize;
    values[i]
}

/// A duration in milliseconds, three decimals (the unit of every table).
pub fn ms(d: Duration) -> String {
    format!("{:.3}", d.as_secs_f64() * 1e3)
}

fn pair(samples: &[Sample], f: impl Fn(&Sample) -> Duration) -> String {
    let mut v: Vec<Duration> = samples.iter().map(f).collect();
    format!("{} / {}", ms(quantile(&mut v, 0.5)), ms(quantile(&mut v, 0.99)))
}

/// The round-trip p50 and p99 of `samples`.
pub fn p50_p99(samples: &[Sample]) -> (Duration, Duration) {
    let mut rtt: Vec<Duration> = samples.iter().map(|s| s.rtt).collect();
    (quantile(&mut rtt, 0.5), quantile(&mut rtt, 0.99))
}

/// The p50 and p99 of the transport part of each round trip: what the client saw beyond the
/// signer's own handling of the request (the path that a tunnel lengthens).
pub fn transport_p50_p99(samples: &[Sample]) -> (Duration, Duration) {
    let mut v: Vec<Duration> = samples.iter().map(|s| s.rtt.saturating_sub(s.total)).collect();
    (quantile(&mut v, 0.5), quantile(&mut v, 0.99))
}

/// The p50 and p99 of one backend call, from the requests that the first call answered (for
/// K1, the ones whose first signature was canonical): what the key store costs per signature,
/// before re-signing multiplies it. `None` when no request took a single call.
pub fn single_call_p50_p99(samples: &[Sample]) -> Option<(Duration, Duration)> {
    let mut v: Vec<Duration> = samples.iter().filter(|s| s.calls == 1).map(|s| s.backend).collect();
    (!v.is_empty()).then(|| (quantile(&mut v, 0.5), quantile(&mut v, 0.99)))
}

/// The table header that [`row`] fills.
pub fn header() {
    println!(
        "| backend | transport | requests | p50 ms | p99 ms | req/s | transport p50 / p99 | \
         before HSM p50 / p99 | HSM p50 / p99 (calls/sig) | guard fsync p50 / p99 | \
         audit fsync p50 / p99 | after HSM until durable p50 / p99 | rest p50 |"
    );
    println!("|---|---|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|---:|");
}

/// One table row: latency quantiles, throughput and the split of the time. The guard commit
/// and the audit line run at the same time, so `rest` takes off their wall time, not their sum;
/// what `rest` still holds is the conversion of each HSM answer (low-S, recovery id, canonical
/// check) and the reply's making.
pub fn row(backend: &str, transport: &str, samples: &[Sample], elapsed: Duration) {
    let (p50, p99) = p50_p99(samples);
    let calls: u32 = samples.iter().map(|s| s.calls).sum();
    let rest = |s: &Sample| s.total.saturating_sub(s.before_backend + s.backend + s.durable);
    let mut rest_v: Vec<Duration> = samples.iter().map(rest).collect();
    println!(
        "| {backend} | {transport} | {} | {} | {} | {:.0} | {} | {} | {} ({:.2}) | {} | {} | {} | {} |",
        samples.len(),
        ms(p50),
        ms(p99),
        samples.len() as f64 / elapsed.as_secs_f64(),
        pair(samples, |s| s.rtt.saturating_sub(s.total)),
        pair(samples, |s| s.before_backend),
        pair(samples, |s| s.backend),
        f64::from(calls) / samples.len() as f64,
        pair(samples, |s| s.guard),
        pair(samples, |s| s.audit),
        pair(samples, |s| s.durable),
        ms(quantile(&mut rest_v, 0.5)),
    );
}
