//! The gateway side by side with HAProxy 2.6 on the same machine, in the same run.
//!
//! `cargo bench -p rempart-gateway --bench vs_haproxy` starts one upstream (a static `get_info`
//! responder in this process), the release `rempart-gateway` and Debian's `haproxy` configured
//! equivalently (TLS termination with the same certificate, HTTP/1.1 and h2 via ALPN, keep-alive
//! to the upstream, a per-IP stick-table limit high enough never to trigger), then drives each in
//! turn with the same load generators and the same concurrency, several rounds alternating, and
//! prints medians and the gateway/HAProxy ratios as a Markdown table for BENCHMARKS.md:
//!
//! - requests/s and p50/p99 latency over HTTP/1.1 keep-alive (`wrk --latency`);
//! - requests/s over HTTP/2 (`h2load`, 10 streams per connection);
//! - new TLS sessions/s, full handshakes and resumed ones, measured twice:
//!   - "shared cores, openssl s_time": `openssl s_time -new` / `-reuse`, two clients in
//!     parallel, each fetching `get_info` once per connection, proxy and clients sharing both
//!     cores (the clients, which verify an ECDSA signature per handshake, take most of the
//!     machine, so this rate mostly measures their share of it);
//!   - "one core each, rust client": a second instance of each proxy pinned to core 1
//!     (`taskset -c 1`, the gateway with `--workers 1`, HAProxy with `nbthread 1`) and the
//!     bench's own client on core 0 (one tokio thread, tokio-rustls with aws-lc-rs, TLS 1.3 and
//!     X25519 only, many connections in flight; each connection handshakes, sends one
//!     `GET /v1/chain/get_info` with `Connection: close`, reads the answer and closes). The
//!     upstream thread is moved to core 0 for these phases too, so core 1 holds only the proxy.
//!     The client accepts exactly `certs/server.pem` by its DER bytes (no chain building) and
//!     still verifies the CertificateVerify signature. The busy share of each core is printed
//!     per phase: a figure is the proxy's capacity only when its core is saturated and the
//!     client's is not, and the bench says which bound each figure hit. A client handshake
//!     (ECDSA verification, X25519, connect) costs about as much CPU as the gateway's whole
//!     handshake plus request, so on two cores the gateway's rate is usually client-bound; the
//!     proxy CPU per handshake, and the rate one core sustains at that cost, are then the
//!     figures to compare;
//! - resident memory of each proxy after the load (VmHWM);
//! - CPU time each proxy spent per request during the HTTP/1.1 and HTTP/2 runs, and per full
//!   and per resumed handshake (plus its request) in the one-core phases (user + system, from
//!   `/proc/PID/stat`): the figures a busy machine disturbs least.
//!
//! Needs two CPU cores, and `haproxy`, `wrk`, `h2load` (nghttp2-client), `openssl` and
//! `taskset` (util-linux) on PATH; it says which one is missing and stops. Access logging is off
//! on both sides. This is a benchmark, never a test: it asserts nothing about speed. Knobs:
//! `BENCH_SECONDS` (per measurement, default 8), `BENCH_ROUNDS` (default 3),
//! `BENCH_CONNECTIONS` (default 64), `BENCH_HANDSHAKE_CONNECTIONS` (connections in flight of the
//! one-core handshake client, default 32), `BENCH_ONLY_HANDSHAKES=1` (only the one-core handshake
//! phases, to profile them; the other rows are then NaN), `BENCH_ONLY=h1`, `h2` or `http` (only
//! the wrk phase, only the h2load phase, or both, skipping every handshake phase; the rows not
//! measured are NaN), `BENCH_PIN=1` (the two-thread proxies with each thread pinned to a core
//! of its own: the gateway with `--pin-workers`, HAProxy with `cpu-map auto:1/1-2 0-1`; the
//! one-core instances are pinned either way).

use std::collections::VecDeque;
use std::convert::Infallible;
use std::fmt::Write as _;
use std::net::{SocketAddr, TcpListener as StdListener, TcpStream as StdStream};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicBool, AtomicU64, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use http_body_util::Full;
use hyper::body::Incoming;
use hyper::service::service_fn;
use hyper::{Request, Response};
use hyper_util::rt::TokioIo;
use rustix::process::Pid;
use rustix::thread::CpuSet;
use rustls::client::danger::{HandshakeSignatureValid, ServerCertVerified, ServerCertVerifier};
use rustls::client::{
    ClientSessionStore, Resumption, Tls12ClientSessionValue, Tls13ClientSessionValue,
};
use rustls::crypto::{WebPkiSupportedAlgorithms, aws_lc_rs, verify_tls13_signature};
use rustls::pki_types::pem::PemObject;
use rustls::pki_types::{CertificateDer, ServerName, UnixTime};
use rustls::{ClientConfig, DigitallySignedStruct, HandshakeKind, NamedGroup, SignatureScheme};
use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio_rustls::TlsConnector;

fn main() {
    if std::env::args().any(|a| a == "--list") {
        // `cargo test --benches` asks for the list of benchmarks; there is nothing to list.
        return;
    }
    for tool in ["haproxy", "wrk", "h2load", "openssl", "curl", "taskset"] {
        if which(tool).is_none() {
            eprintln!(
                "vs_haproxy: `{tool}` is not installed; run `apt-get install -y \
                 --no-install-recommends haproxy wrk nghttp2-client openssl curl util-linux`"
            );
            std::process::exit(2);
        }
    }
    let all_cpus = rustix::thread::sched_getaffinity(None).expect("CPU affinity of the bench");
    if !(all_cpus.is_set(CLIENT_CORE) && all_cpus.is_set(PROXY_CORE)) {
        eprintln!("vs_haproxy: needs CPU cores {CLIENT_CORE} and {PROXY_CORE} (one per side)");
        std::process::exit(2);
    }
    let seconds = env_u64("BENCH_SECONDS", 8);
    let rounds = env_u64("BENCH_ROUNDS", 3) as usize;
    let conns = env_u64("BENCH_CONNECTIONS", 64);
    let hs_conns = env_u64("BENCH_HANDSHAKE_CONNECTIONS", 32) as usize;
    let only_handshakes = env_u64("BENCH_ONLY_HANDSHAKES", 0) == 1;
    let only = std::env::var("BENCH_ONLY").unwrap_or_default();
    let pin = env_u64("BENCH_PIN", 0) == 1;
    let (skip_h1, skip_h2, skip_handshakes) = match only.as_str() {
        "" => (only_handshakes, only_handshakes, false),
        "h1" => (false, true, true),
        "h2" => (true, false, true),
        "http" => (false, false, true),
        other => {
            eprintln!("vs_haproxy: BENCH_ONLY={other} is not one of h1, h2, http");
            std::process::exit(2);
        }
    };

    let dir = tempfile::tempdir().expect("temporary directory");
    let upstream = start_upstream();
    let repo = PathBuf::from(env!("CARGO_MANIFEST_DIR")).join("..");
    let cert = repo.join("certs/server.pem").canonicalize().expect("certs/server.pem");
    let key = repo.join("certs/server.key").canonicalize().expect("certs/server.key");

    let gw_port = free_port();
    let gw_admin = free_port();
    let gw_policy = gateway_policy(&repo, &cert, &key, gw_port, gw_admin, upstream);
    let gw_policy_path = dir.path().join("gateway.toml");
    std::fs::write(&gw_policy_path, gw_policy).expect("write gateway policy");

    let ha_port = free_port();
    let pem = dir.path().join("haproxy.pem");
    let mut combined = std::fs::read(&cert).expect("read cert");
    combined.extend(std::fs::read(&key).expect("read key"));
    std::fs::write(&pem, combined).expect("write haproxy pem");
    let ha_cfg_path = dir.path().join("haproxy.cfg");
    std::fs::write(&ha_cfg_path, haproxy_config(&pem, ha_port, upstream, 2, pin))
        .expect("haproxy.cfg");

    let gateway = Proxy::start(
        "rempart-gateway",
        Command::new(env!("CARGO_BIN_EXE_rempart-gateway"))
            .arg("serve")
            .args(if pin { &["--pin-workers"][..] } else { &[] })
            .arg("--policy")
            .arg(&gw_policy_path)
            .env("RUST_LOG", "warn"),
        gw_port,
    );
    let haproxy = Proxy::start(
        "haproxy",
        Command::new("haproxy").arg("-db").arg("-f").arg(&ha_cfg_path),
        ha_port,
    );

    // The same two proxies again, each on one event loop pinned to the proxy core, for the
    // handshake phases where the client has the other core to itself.
    let gw1_port = free_port();
    let gw1_policy_path = dir.path().join("gateway-1core.toml");
    let gw1_policy = gateway_policy(&repo, &cert, &key, gw1_port, free_port(), upstream);
    std::fs::write(&gw1_policy_path, gw1_policy).expect("write gateway policy");
    let gateway1 = Proxy::start(
        "rempart-gateway (1 core)",
        Command::new("taskset")
            .args(["-c", &PROXY_CORE.to_string()])
            .arg(env!("CARGO_BIN_EXE_rempart-gateway"))
            .arg("serve")
            .args(["--workers", "1", "--policy"])
            .arg(&gw1_policy_path)
            .env("RUST_LOG", "warn"),
        gw1_port,
    );
    let ha1_port = free_port();
    let ha1_cfg_path = dir.path().join("haproxy-1core.cfg");
    std::fs::write(&ha1_cfg_path, haproxy_config(&pem, ha1_port, upstream, 1, false)).expect("cfg");
    let haproxy1 = Proxy::start(
        "haproxy (1 core)",
        Command::new("taskset")
            .args(["-c", &PROXY_CORE.to_string()])
            .args(["haproxy", "-db", "-f"])
            .arg(&ha1_cfg_path),
        ha1_port,
    );
    let clients = [client_config(&cert, false), client_config(&cert, true)];

    let tick = clock_tick();
    let mut results: Vec<(&str, [Vec<f64>; SLOTS])> =
        vec![("rempart-gateway", Default::default()), ("haproxy", Default::default())];
    for round in 0..rounds {
        for (i, (proxy, pinned)) in
            [(&gateway, &gateway1), (&haproxy, &haproxy1)].into_iter().enumerate()
        {
            eprintln!("round {}/{rounds}: {}", round + 1, proxy.name);
            let url = format!("https://127.0.0.1:{}/v1/chain/get_info", proxy.port);
            let before = UPSTREAM_CONNECTIONS.load(Ordering::Relaxed);
            let cpu0 = proxy.cpu_ticks();
            let nan = (f64::NAN, f64::NAN, f64::NAN);
            let (rps, p50, p99) = if skip_h1 { nan } else { wrk(&url, conns, seconds) };
            let cpu1 = proxy.cpu_ticks();
            eprintln!(
                "  upstream connections opened during wrk: {}",
                UPSTREAM_CONNECTIONS.load(Ordering::Relaxed) - before
            );
            let requests = UPSTREAM_REQUESTS.load(Ordering::Relaxed);
            let opened = UPSTREAM_CONNECTIONS.load(Ordering::Relaxed);
            let h2 = if skip_h2 { f64::NAN } else { h2load(&url, conns, seconds) };
            let cpu2 = proxy.cpu_ticks();
            eprintln!(
                "  upstream requests during h2load: {}, on {} new upstream connections",
                UPSTREAM_REQUESTS.load(Ordering::Relaxed) - requests,
                UPSTREAM_CONNECTIONS.load(Ordering::Relaxed) - opened
            );
            // µs of CPU per request: ticks × µs per tick / requests.
            let per_request = |ticks: u64, rate: f64| ticks as f64 * tick / (rate * seconds as f64);
            let h1_cpu = per_request(cpu1 - cpu0, rps);
            let h2_cpu = per_request(cpu2 - cpu1, h2);
            eprintln!("  CPU per request: {h1_cpu:.1} µs (HTTP/1.1), {h2_cpu:.1} µs (HTTP/2)");
            let (full, resumed) = if only_handshakes || skip_handshakes {
                (f64::NAN, f64::NAN)
            } else {
                (s_time(proxy.port, false, seconds), s_time(proxy.port, true, seconds))
            };
            let rss = proxy.peak_rss_kib() as f64;
            let [pin_full, pin_resumed] = [false, true].map(|resume| {
                if skip_handshakes {
                    return HandshakeMeasure::not_measured();
                }
                let phase = HandshakePhase { proxy: pinned, seconds, conns: hs_conns, tick };
                let m = phase.run(&clients[usize::from(resume)], &all_cpus);
                eprintln!(
                    "  one core each, {}: {:.0} connections/s ({:.1} % resumed, {:.1} % offered a \
                     ticket, {:.1} % had none, {:.2} tickets received per connection, {} failed), \
                     proxy {:.2} CPU, client thread + upstream {:.2} CPU (upstream {:.2}), core {PROXY_CORE} {:.0} % busy, \
                     core {CLIENT_CORE} {:.0} % busy, {:.3} ms proxy CPU per connection",
                    if resume { "resumed" } else { "full" },
                    m.rate,
                    m.resumed_share * 100.0,
                    m.offered_share * 100.0,
                    m.none_share * 100.0,
                    m.tickets_per_connection,
                    m.failed,
                    m.proxy_cpus,
                    m.client_cpus,
                    m.upstream_cpus,
                    m.proxy_core_busy * 100.0,
                    m.client_core_busy * 100.0,
                    m.proxy_ms_per_connection,
                );
                m
            });
            let row = [
                rps,
                p50,
                p99,
                h2,
                full,
                resumed,
                rss,
                h1_cpu,
                h2_cpu,
                pin_full.rate,
                pin_resumed.rate,
                pin_full.proxy_ms_per_connection,
                pin_resumed.proxy_ms_per_connection,
                pin_full.proxy_core_busy * 100.0,
                pin_full.client_core_busy * 100.0,
                pin_resumed.proxy_core_busy * 100.0,
                pin_resumed.client_core_busy * 100.0,
                pin_resumed.resumed_share * 100.0,
                1000.0 / pin_full.proxy_ms_per_connection,
                1000.0 / pin_resumed.proxy_ms_per_connection,
                pin_full.proxy_cpus * 100.0,
                pin_full.client_cpus * 100.0,
                pin_resumed.proxy_cpus * 100.0,
                pin_resumed.client_cpus * 100.0,
            ];
            for (slot, v) in row.into_iter().enumerate() {
                results[i].1[slot].push(v);
            }
        }
    }

    let med: Vec<[f64; SLOTS]> =
        results.iter().map(|(_, r)| std::array::from_fn(|k| median(&r[k]))).collect();
    let rows = [
        ("HTTP/1.1 requests/s (wrk)", 0),
        ("HTTP/1.1 p50 latency (ms)", 1),
        ("HTTP/1.1 p99 latency (ms)", 2),
        ("HTTP/2 requests/s (h2load, 10 streams)", 3),
        ("full TLS handshakes/s (+1 request), shared cores, openssl s_time", 4),
        ("resumed TLS sessions/s (+1 request), shared cores, openssl s_time", 5),
        ("full TLS handshakes/s (+1 request), one core each, rust client", 9),
        ("resumed TLS sessions/s (+1 request), one core each, rust client", 10),
        ("CPU per full handshake + request (ms), one core each", 11),
        ("CPU per resumed handshake + request (ms), one core each", 12),
        ("full handshakes/s one proxy core sustains (1 s / CPU per handshake)", 18),
        ("resumed sessions/s one proxy core sustains (1 s / CPU per handshake)", 19),
        ("proxy core busy during full handshakes (%, all processes)", 13),
        ("  of which the proxy (%)", 20),
        ("client core busy during full handshakes (%, all processes)", 14),
        ("  of which the client and the upstream (%)", 21),
        ("proxy core busy during resumed handshakes (%, all processes)", 15),
        ("  of which the proxy (%)", 22),
        ("client core busy during resumed handshakes (%, all processes)", 16),
        ("  of which the client and the upstream (%)", 23),
        ("resumed share of the resumed phase's connections (%)", 17),
        ("peak RSS (MiB)", 6),
        ("CPU per HTTP/1.1 request (µs)", 7),
        ("CPU per HTTP/2 request (µs)", 8),
    ];
    let mut out = String::new();
    let _ = writeln!(
        out,
        "{conns} connections, {seconds} s per measurement, median of {rounds} alternating rounds{}",
        if pin { ", two-thread proxies pinned (BENCH_PIN=1)" } else { "" }
    );
    let _ = writeln!(out, "\n| measure | rempart-gateway | HAProxy 2.6 | gateway / HAProxy |");
    let _ = writeln!(out, "|---|---:|---:|---:|");
    for (label, k) in rows {
        let (g, h) =
            if k == 6 { (med[0][k] / 1024.0, med[1][k] / 1024.0) } else { (med[0][k], med[1][k]) };
        let _ = writeln!(out, "| {label} | {g:.2} | {h:.2} | {:.2}× |", g / h);
    }
    // The machine's speed drifts from minute to minute (HAProxy's own CPU per request moved
    // by half between runs of one hour): each round's pair, measured back to back, shows how
    // far a median ratio can be trusted.
    let _ = writeln!(out, "\nRound by round, gateway / HAProxy (each pair measured back to back):");
    // The throughput, latency and CPU-per-request rows (slots 0-3, 7, 8); the handshake rows
    // come from the one-core phases, whose spread the bound lines below already judge.
    for (label, k) in rows.iter().filter(|(_, k)| [0, 1, 2, 3, 7, 8].contains(k)) {
        let ratios: Vec<f64> = results[0].1[*k]
            .iter()
            .zip(&results[1].1[*k])
            .map(|(g, h)| g / h)
            .filter(|r| r.is_finite())
            .collect();
        if ratios.is_empty() {
            continue;
        }
        let shown: Vec<String> = ratios.iter().map(|r| format!("{r:.2}")).collect();
        let (lo, hi) = ratios.iter().fold((f64::MAX, f64::MIN), |(l, h), &r| (l.min(r), h.max(r)));
        let _ = writeln!(out, "- {label}: {} (range {lo:.2}–{hi:.2})", shown.join(", "));
    }
    let _ = writeln!(
        out,
        "\nOne core each: proxy on core {PROXY_CORE}, rust client ({hs_conns} connections in \
         flight) and upstream on core {CLIENT_CORE}; what bound each one-core rate (from the \
         medians above):"
    );
    for (p, (name, _)) in results.iter().enumerate() {
        for (phase, [proxy_core, client_core, proxy_own, client_own]) in
            [("full", [13, 14, 20, 21]), ("resumed", [15, 16, 22, 23])]
        {
            let m = |k: usize| med[p][k];
            let proxy_saturated = m(proxy_core) >= SATURATED && m(proxy_own) >= OWN_SATURATED;
            let client_saturated = m(client_core) >= SATURATED && m(client_own) >= OWN_SATURATED;
            let others = [m(proxy_core) - m(proxy_own), m(client_core) - m(client_own)];
            let bound = match (proxy_saturated, client_saturated) {
                (true, true) => {
                    "proxy and client cores both saturated: near the proxy's capacity".into()
                }
                (true, false) => {
                    "proxy-bound: the figure is the proxy's capacity on one core".into()
                }
                (false, true) => "CLIENT-BOUND: the client core saturated first, the figure \
                                  understates the proxy (see the CPU per handshake rows)"
                    .into(),
                (false, false) if others.iter().any(|&o| o >= OTHERS_MATTER) => format!(
                    "MACHINE-BOUND: other processes took {:.0} % of the proxy core and {:.0} % \
                     of the client core, the rate says little (see the CPU per handshake rows)",
                    others[0], others[1]
                ),
                (false, false) => {
                    "neither core saturated: latency-bound, raise BENCH_HANDSHAKE_CONNECTIONS"
                        .to_string()
                }
            };
            let _ = writeln!(out, "- {name}, {phase} handshakes: {bound}.");
        }
    }
    println!("{out}");
    drop(gateway);
    drop(haproxy);
    drop(gateway1);
    drop(haproxy1);
}

/// Slots of one round's measurements (see the `rows` table in `main`).
const SLOTS: usize = 24;
/// The core the one-core proxies run on.
const PROXY_CORE: usize = 1;
/// The core of the handshake client and of the upstream during the one-core phases.
const CLIENT_CORE: usize = 0;
/// Busy share (%) from which a core counts as saturated.
const SATURATED: f64 = 95.0;
/// Share of a core (%) the proxy, or the client with the upstream, must use themselves for
/// their core's saturation to count as theirs.
const OWN_SATURATED: f64 = 85.0;
/// Share of a core (%) other processes must take for the one-core rates to be called theirs.
const OTHERS_MATTER: f64 = 10.0;

/// A proxy process under test; killed on drop.
struct Proxy {
    name: &'static str,
    port: u16,
    child: Child,
}

impl Proxy {
    fn start(name: &'static str, cmd: &mut Command, port: u16) -> Proxy {
        let child =
            cmd.stdout(Stdio::null()).spawn().unwrap_or_else(|e| panic!("start {name}: {e}"));
        let mut proxy = Proxy { name, port, child };
        // Ready when get_info answers 200 through it (the gateway's health check has then
        // admitted the upstream).
        let deadline = Instant::now() + Duration::from_secs(30);
        let url = format!("https://127.0.0.1:{port}/v1/chain/get_info");
        loop {
            let ok = Command::new("curl")
                .args(["-sk", "-o", "/dev/null", "-w", "%{http_code}", &url])
                .output()
                .map(|o| o.stdout == b"200")
                .unwrap_or(false);
            if ok {
                break;
            }
            if let Ok(Some(status)) = proxy.child.try_wait() {
                panic!("{name} exited before serving: {status}");
            }
            assert!(Instant::now() < deadline, "{name} did not serve get_info within 30 s");
            std::thread::sleep(Duration::from_millis(50));
        }
        proxy
    }

    fn peak_rss_kib(&self) -> u64 {
        let status = std::fs::read_to_string(format!("/proc/{}/status", self.child.id()))
            .unwrap_or_default();
        status
            .lines()
            .find_map(|l| l.strip_prefix("VmHWM:"))
            .and_then(|v| v.trim().trim_end_matches("kB").trim().parse().ok())
            .unwrap_or(0)
    }
}

impl Proxy {
    /// CPU time used so far (user + system), in clock ticks.
    fn cpu_ticks(&self) -> u64 {
        stat_cpu_ticks(&format!("/proc/{}/stat", self.child.id()))
    }
}

/// User + system clock ticks from a `/proc/…/stat` file (a process's or a thread's).
fn stat_cpu_ticks(path: &str) -> u64 {
    let stat = std::fs::read_to_string(path).unwrap_or_default();
    // Fields after the command name (which may hold spaces) start at the last ')'.
    let rest = stat.rsplit_once(')').map_or("", |(_, r)| r);
    let fields: Vec<&str> = rest.split_whitespace().collect();
    // utime and stime are fields 14 and 15 of the line, 12 and 13 after the name.
    let field = |i: usize| fields.get(i).and_then(|v| v.parse::<u64>().ok()).unwrap_or(0);
    field(11) + field(12)
}

/// Microseconds per clock tick of `/proc/PID/stat` (`getconf CLK_TCK`, usually 100 per s).
fn clock_tick() -> f64 {
    let hz = Command::new("getconf")
        .arg("CLK_TCK")
        .output()
        .ok()
        .and_then(|o| String::from_utf8_lossy(&o.stdout).trim().parse::<f64>().ok())
        .unwrap_or(100.0);
    1e6 / hz
}

impl Drop for Proxy {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The shipped policy with the bench's ports, the upstream, and limits too high to trigger.
fn gateway_policy(
    repo: &Path,
    cert: &Path,
    key: &Path,
    port: u16,
    admin: u16,
    upstream: SocketAddr,
) -> String {
    let shipped =
        std::fs::read_to_string(repo.join("policies/gateway.toml")).expect("policies/gateway.toml");
    let mut out = String::new();
    let mut section = String::new();
    for line in shipped.lines() {
        let t = line.trim_start();
        if t.starts_with('[') {
            section = t.to_string();
        }
        let key_of = t.split('=').next().unwrap_or("").trim();
        let replaced = match (section.as_str(), key_of) {
            ("[listeners]", "tls") => format!("tls = \"127.0.0.1:{port}\""),
            ("[listeners]", "redirect") => String::new(),
            ("[listeners]", "admin") => format!("admin = \"127.0.0.1:{admin}\""),
            ("[[tls.certificates]]", "cert") => format!("cert = {:?}", cert.display().to_string()),
            ("[[tls.certificates]]", "key") => format!("key = {:?}", key.display().to_string()),
            ("[[pools]]", "nodes") => format!("nodes = [\"{upstream}\"]"),
            // HAProxy keeps every idle server connection by default (pool-max-conn -1).
            ("[[pools]]", "max_idle_per_node") => "max_idle_per_node = 1024".into(),
            ("[limits]", "global_per_second") => "global_per_second = 100000000".into(),
            ("[limits]", "global_burst") => "global_burst = 100000000".into(),
            ("[connections]", "per_client") => "per_client = 100000".into(),
            ("[connections]", "total") => "total = 100000".into(),
            ("[access]", "ban_after") => "ban_after = 1000000000".into(),
            (s, "per_second") if s.starts_with("[route_classes.") => {
                "per_second = 100000000".into()
            }
            (s, "burst") if s.starts_with("[route_classes.") => "burst = 100000000".into(),
            _ => line.to_string(),
        };
        out.push_str(&replaced);
        out.push('\n');
    }
    out
}

/// HAProxy doing the same job: TLS termination with the same certificate, ALPN h2 and
/// http/1.1, keep-alive to the upstream, X-Forwarded-For, a per-IP request-rate stick table
/// whose limit never triggers, and the gateway's timeouts.
fn haproxy_config(pem: &Path, port: u16, upstream: SocketAddr, threads: u32, pin: bool) -> String {
    let cpu_map = if pin {
        format!("\n    cpu-map auto:1/1-{threads} 0-{}", threads - 1)
    } else {
        String::new()
    };
    format!(
        "global
    nbthread {threads}{cpu_map}
    maxconn 8000
    ssl-default-bind-ciphersuites TLS_AES_128_GCM_SHA256:TLS_AES_256_GCM_SHA384:TLS_CHACHA20_POLY1305_SHA256
    ssl-default-bind-ciphers ECDHE-ECDSA-AES128-GCM-SHA256:ECDHE-ECDSA-AES256-GCM-SHA384:ECDHE-ECDSA-CHACHA20-POLY1305
    ssl-default-bind-options ssl-min-ver TLSv1.2

defaults
    mode http
    timeout connect 1s
    timeout client 60s
    timeout server 5s
    timeout http-request 5s
    timeout http-keep-alive 60s
    option http-keep-alive
    option forwardfor
    http-reuse always

frontend public
    bind 127.0.0.1:{port} ssl crt {pem} alpn h2,http/1.1
    stick-table type ip size 1m expire 60s store http_req_rate(1s)
    http-request track-sc0 src
    http-request deny deny_status 429 if {{ sc_http_req_rate(0) gt 100000000 }}
    default_backend api

backend api
    server api1 {upstream} maxconn 1000
",
        pem = pem.display()
    )
}

/// Connections the upstream accepted (a proxy that does not reuse them opens many).
static UPSTREAM_CONNECTIONS: AtomicU64 = AtomicU64::new(0);
/// Requests the upstream answered.
static UPSTREAM_REQUESTS: AtomicU64 = AtomicU64::new(0);
/// The upstream's thread, moved to the client core during the one-core phases.
static UPSTREAM_THREAD: OnceLock<Pid> = OnceLock::new();

/// A static `get_info` responder on a one-thread runtime, with a fresh head block time so the
/// gateway's health check admits it.
fn start_upstream() -> SocketAddr {
    let listener = StdListener::bind("127.0.0.1:0").expect("bind upstream");
    let addr = listener.local_addr().expect("upstream address");
    listener.set_nonblocking(true).expect("nonblocking");
    std::thread::spawn(move || {
        let _ = UPSTREAM_THREAD.set(rustix::thread::gettid());
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async move {
            let listener = tokio::net::TcpListener::from_std(listener).expect("listener");
            loop {
                let Ok((tcp, _)) = listener.accept().await else { continue };
                UPSTREAM_CONNECTIONS.fetch_add(1, Ordering::Relaxed);
                let _ = tcp.set_nodelay(true);
                tokio::spawn(async move {
                    let svc = service_fn(|_req: Request<Incoming>| async {
                        UPSTREAM_REQUESTS.fetch_add(1, Ordering::Relaxed);
                        Ok::<_, Infallible>(Response::new(Full::new(Bytes::from(get_info()))))
                    });
                    let _ = hyper::server::conn::http1::Builder::new()
                        .serve_connection(TokioIo::new(tcp), svc)
                        .await;
                });
            }
        });
    });
    addr
}

fn get_info() -> String {
    let now = SystemTime::now().duration_since(UNIX_EPOCH).unwrap_or_default();
    let secs = now.as_secs() as i64;
    let (days, rem) = (secs.div_euclid(86_400), secs.rem_euclid(86_400));
    let (y, m, d) = civil_from_days(days);
    let time = format!(
        "{y:04}-{m:02}-{d:02}T{:02}:{:02}:{:02}.{:03}",
        rem / 3600,
        rem % 3600 / 60,
        rem % 60,
        now.subsec_millis()
    );
    format!(
        concat!(
            "{{\"server_version\":\"bench\",",
            "\"chain_id\":\"8a34ec7df1b8cd06ff4a8abbaa7cc50300823350cadc59ab296cb00d104d2b8f\",",
            "\"head_block_num\":1000,\"last_irreversible_block_num\":1000,",
            "\"last_irreversible_block_id\":\"000003e8{zeros}\",",
            "\"head_block_id\":\"000003e8{zeros}\",\"head_block_time\":\"{time}\",",
            "\"head_block_producer\":\"eosio\",\"virtual_block_cpu_limit\":200000000,",
            "\"virtual_block_net_limit\":1048576000,\"block_cpu_limit\":200000,",
            "\"block_net_limit\":1048576,\"server_version_string\":\"bench\"}}"
        ),
        zeros = "0".repeat(56),
        time = time
    )
}

/// Days since 1970-01-01 → (year, month, day), proleptic Gregorian.
fn civil_from_days(z: i64) -> (i64, u32, u32) {
    let z = z + 719_468;
    let era = z.div_euclid(146_097);
    let doe = z.rem_euclid(146_097);
    let yoe = (doe - doe / 1460 + doe / 36_524 - doe / 146_096) / 365;
    let doy = doe - (365 * yoe + yoe / 4 - yoe / 100);
    let mp = (5 * doy + 2) / 153;
    let d = (doy - (153 * mp + 2) / 5 + 1) as u32;
    let m = if mp < 10 { mp + 3 } else { mp - 9 } as u32;
    (yoe + era * 400 + i64::from(m <= 2), m, d)
}

/// `wrk`: HTTP/1.1 keep-alive, two threads. Returns (requests/s, p50 ms, p99 ms).
fn wrk(url: &str, conns: u64, seconds: u64) -> (f64, f64, f64) {
    let out = run(Command::new("wrk").args([
        "-t2",
        &format!("-c{conns}"),
        &format!("-d{seconds}s"),
        "--latency",
        url,
    ]));
    let rps = out
        .lines()
        .find_map(|l| l.strip_prefix("Requests/sec:"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("wrk printed no Requests/sec:\n{out}"));
    let pct = |p: &str| {
        out.lines()
            .map(str::trim)
            .find_map(|l| l.strip_prefix(p))
            .map(|v| wrk_ms(v.trim()))
            .unwrap_or_else(|| panic!("wrk printed no {p} latency:\n{out}"))
    };
    assert!(!out.contains("Non-2xx"), "wrk saw non-2xx answers:\n{out}");
    // The whole distribution, to see where a p99 gap starts.
    let spread: Vec<String> =
        ["50%", "75%", "90%", "99%"].iter().map(|p| format!("{p} {:.2}", pct(p))).collect();
    eprintln!("  wrk latency (ms): {}", spread.join(", "));
    (rps, pct("50%"), pct("99%"))
}

fn wrk_ms(v: &str) -> f64 {
    let split = v.find(|c: char| c.is_ascii_alphabetic()).unwrap_or(v.len());
    let (n, unit) = v.split_at(split);
    let n: f64 = n.parse().unwrap_or(f64::NAN);
    match unit {
        "us" => n / 1000.0,
        "ms" => n,
        "s" => n * 1000.0,
        "m" => n * 60_000.0,
        _ => f64::NAN,
    }
}

/// `h2load`: HTTP/2 with 10 concurrent streams per connection. Returns requests/s.
fn h2load(url: &str, conns: u64, seconds: u64) -> f64 {
    let out = run(Command::new("h2load").args([
        "-c",
        &conns.to_string(),
        "-m",
        "10",
        "-t",
        "2",
        "-D",
        &seconds.to_string(),
        url,
    ]));
    let line = out
        .lines()
        .find(|l| l.starts_with("finished in"))
        .unwrap_or_else(|| panic!("h2load printed no summary:\n{out}"));
    let failed = out
        .lines()
        .find_map(|l| l.trim().strip_prefix("requests:"))
        .and_then(|l| {
            l.split(',').find_map(|p| p.trim().strip_suffix(" failed").map(str::to_owned))
        })
        .and_then(|n| n.trim().parse::<u64>().ok())
        .unwrap_or(0);
    assert_eq!(failed, 0, "h2load saw failed requests:\n{out}");
    if let Some(times) = out.lines().find(|l| l.starts_with("time for request:")) {
        eprintln!("  h2load {times}");
    }
    line.split(',')
        .find_map(|p| p.trim().strip_suffix(" req/s"))
        .and_then(|v| v.trim().parse().ok())
        .unwrap_or_else(|| panic!("h2load summary without req/s: {line}"))
}

/// `openssl s_time`, two clients in parallel, each connection fetching get_info once.
/// Returns new connections per second in total.
fn s_time(port: u16, reuse: bool, seconds: u64) -> f64 {
    let children: Vec<Child> = (0..2)
        .map(|_| {
            Command::new("openssl")
                .args([
                    "s_time",
                    "-connect",
                    &format!("127.0.0.1:{port}"),
                    if reuse { "-reuse" } else { "-new" },
                    "-www",
                    "/v1/chain/get_info",
                    "-time",
                    &seconds.to_string(),
                ])
                .stdout(Stdio::piped())
                .stderr(Stdio::null())
                .spawn()
                .expect("start openssl s_time")
        })
        .collect();
    let mut total = 0.0;
    for child in children {
        let out = child.wait_with_output().expect("openssl s_time");
        let text = String::from_utf8_lossy(&out.stdout);
        // "1234 connections in 8.01s; 154.06 connections/user sec, ..." then
        // "1234 connections in 9 real seconds, 512 bytes read per connection"
        let line = text
            .lines()
            .find(|l| l.contains("real seconds"))
            .unwrap_or_else(|| panic!("s_time printed no summary:\n{text}"));
        let mut words = line.split_whitespace();
        let n: f64 = words.next().and_then(|w| w.parse().ok()).unwrap_or(f64::NAN);
        let secs: f64 = words.nth(2).and_then(|w| w.parse().ok()).unwrap_or(f64::NAN);
        assert!(
            !text.contains("0 bytes read per connection") || n == 0.0,
            "s_time read nothing back:\n{text}"
        );
        total += n / secs;
    }
    total
}

/// Accepts exactly the bench's certificate, compared by its DER bytes (no chain building, no
/// name check), and still verifies the server's TLS 1.3 CertificateVerify signature with the
/// provider's algorithms: honest TLS at the lowest cost a client can have.
#[derive(Debug)]
struct KnownCertificate {
    der: Vec<u8>,
    algorithms: WebPkiSupportedAlgorithms,
}

impl ServerCertVerifier for KnownCertificate {
    fn verify_server_cert(
        &self,
        end_entity: &CertificateDer<'_>,
        _intermediates: &[CertificateDer<'_>],
        _server_name: &ServerName<'_>,
        _ocsp_response: &[u8],
        _now: UnixTime,
    ) -> Result<ServerCertVerified, rustls::Error> {
        if end_entity.as_ref() == self.der.as_slice() {
            Ok(ServerCertVerified::assertion())
        } else {
            Err(rustls::Error::InvalidCertificate(rustls::CertificateError::UnknownIssuer))
        }
    }

    fn verify_tls12_signature(
        &self,
        _message: &[u8],
        _cert: &CertificateDer<'_>,
        _dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        Err(rustls::Error::General("the bench client offers TLS 1.3 only".into()))
    }

    fn verify_tls13_signature(
        &self,
        message: &[u8],
        cert: &CertificateDer<'_>,
        dss: &DigitallySignedStruct,
    ) -> Result<HandshakeSignatureValid, rustls::Error> {
        verify_tls13_signature(message, cert, dss, &self.algorithms)
    }

    fn supported_verify_schemes(&self) -> Vec<SignatureScheme> {
        self.algorithms.supported_schemes()
    }
}

/// The handshake client's session store: the last [`TicketStore::KEEP`] TLS 1.3 tickets (one
/// server per store), newest used first, each used once, counted.
#[derive(Debug, Default)]
struct TicketStore(Mutex<VecDeque<Tls13ClientSessionValue>>);

impl TicketStore {
    const KEEP: usize = 256;
}

/// TLS 1.3 tickets the handshake client received, offered, and found none to offer.
static TICKETS: [AtomicU64; 3] = [AtomicU64::new(0), AtomicU64::new(0), AtomicU64::new(0)];

impl ClientSessionStore for TicketStore {
    fn set_kx_hint(&self, _: ServerName<'static>, _: NamedGroup) {}

    fn kx_hint(&self, _: &ServerName<'_>) -> Option<NamedGroup> {
        None
    }

    fn set_tls12_session(&self, _: ServerName<'static>, _: Tls12ClientSessionValue) {}

    fn tls12_session(&self, _: &ServerName<'_>) -> Option<Tls12ClientSessionValue> {
        None
    }

    fn remove_tls12_session(&self, _: &ServerName<'static>) {}

    fn insert_tls13_ticket(&self, _: ServerName<'static>, value: Tls13ClientSessionValue) {
        TICKETS[0].fetch_add(1, Ordering::Relaxed);
        let mut tickets = self.0.lock().expect("ticket store");
        if tickets.len() == Self::KEEP {
            tickets.pop_front();
        }
        tickets.push_back(value);
    }

    fn take_tls13_ticket(&self, _: &ServerName<'static>) -> Option<Tls13ClientSessionValue> {
        let ticket = self.0.lock().expect("ticket store").pop_back();
        TICKETS[if ticket.is_some() { 1 } else { 2 }].fetch_add(1, Ordering::Relaxed);
        ticket
    }
}

/// The handshake client's configuration: aws-lc-rs, TLS 1.3 with X25519 only (what
/// `openssl s_time` negotiates with both proxies), ALPN http/1.1, and either no session
/// resumption or an in-memory ticket store so that each new connection resumes.
fn client_config(cert: &Path, resume: bool) -> TlsConnector {
    let mut provider = aws_lc_rs::default_provider();
    provider.kx_groups = vec![aws_lc_rs::kx_group::X25519];
    let algorithms = provider.signature_verification_algorithms;
    let der = CertificateDer::from_pem_file(cert).expect("certs/server.pem").as_ref().to_vec();
    let mut config = ClientConfig::builder_with_provider(Arc::new(provider))
        .with_protocol_versions(&[&rustls::version::TLS13])
        .expect("TLS 1.3 with aws-lc-rs")
        .dangerous()
        .with_custom_certificate_verifier(Arc::new(KnownCertificate { der, algorithms }))
        .with_no_client_auth();
    config.alpn_protocols = vec![b"http/1.1".to_vec()];
    config.resumption = if resume {
        Resumption::store(Arc::new(TicketStore::default()))
    } else {
        Resumption::disabled()
    };
    TlsConnector::from(Arc::new(config))
}

/// One handshake measurement: the pinned proxy, the client on the other core.
struct HandshakePhase<'a> {
    proxy: &'a Proxy,
    seconds: u64,
    /// Connections in flight.
    conns: usize,
    /// µs per clock tick.
    tick: f64,
}

/// What a handshake phase measured.
struct HandshakeMeasure {
    /// Completed connections (handshake, request, answer) per second.
    rate: f64,
    /// Share of those connections that resumed a session.
    resumed_share: f64,
    /// TLS 1.3 tickets received per connection.
    tickets_per_connection: f64,
    /// Share of connections that offered a ticket.
    offered_share: f64,
    /// Share of connections that found no ticket to offer.
    none_share: f64,
    /// Connections that failed (should be 0).
    failed: u64,
    /// CPUs the proxy process used (user + system time / wall time).
    proxy_cpus: f64,
    /// CPUs the client thread and the upstream thread used.
    client_cpus: f64,
    /// CPUs the upstream thread used (part of `client_cpus`).
    upstream_cpus: f64,
    /// Busy share of the proxy core, all processes (0..1).
    proxy_core_busy: f64,
    /// Busy share of the client core, all processes (0..1).
    client_core_busy: f64,
    /// Proxy CPU time per completed connection, ms.
    proxy_ms_per_connection: f64,
}

impl HandshakeMeasure {
    /// A phase skipped by `BENCH_ONLY`: every figure NaN.
    fn not_measured() -> Self {
        let nan = f64::NAN;
        HandshakeMeasure {
            rate: nan,
            resumed_share: nan,
            tickets_per_connection: nan,
            offered_share: nan,
            none_share: nan,
            failed: 0,
            proxy_cpus: nan,
            client_cpus: nan,
            upstream_cpus: nan,
            proxy_core_busy: nan,
            client_core_busy: nan,
            proxy_ms_per_connection: nan,
        }
    }
}

/// Counters shared by the client's connection loops.
#[derive(Default)]
struct HandshakeCounters {
    done: AtomicU64,
    resumed: AtomicU64,
    failed: AtomicU64,
    stop: AtomicBool,
}

/// Counters and CPU clocks at one instant of a phase.
struct Snapshot {
    at: Instant,
    done: u64,
    resumed: u64,
    failed: u64,
    proxy_ticks: u64,
    /// The client thread's and the upstream thread's.
    client_ticks: [u64; 2],
    cores: Vec<(u64, u64)>,
    /// [`TICKETS`]: received, offered, none to offer.
    tickets: [u64; 3],
}

impl HandshakePhase<'_> {
    /// Runs the client pinned to the client core for one second of warm-up and `seconds` of
    /// measurement, with the upstream's thread moved to the client core meanwhile.
    fn run(&self, connector: &TlsConnector, all_cpus: &CpuSet) -> HandshakeMeasure {
        let upstream = UPSTREAM_THREAD.get().copied();
        let mut client_core = CpuSet::new();
        client_core.set(CLIENT_CORE);
        rustix::thread::sched_setaffinity(upstream, &client_core).expect("pin the upstream");

        let counters = Arc::new(HandshakeCounters::default());
        let (tid_tx, tid_rx) = std::sync::mpsc::channel();
        let addr = SocketAddr::from(([127, 0, 0, 1], self.proxy.port));
        let client = std::thread::spawn({
            let (counters, connector, conns) = (counters.clone(), connector.clone(), self.conns);
            move || {
                rustix::thread::sched_setaffinity(None, &client_core).expect("pin the client");
                let _ = tid_tx.send(rustix::thread::gettid());
                let rt = tokio::runtime::Builder::new_current_thread()
                    .enable_all()
                    .build()
                    .expect("client runtime");
                rt.block_on(async move {
                    let loops: Vec<_> = (0..conns)
                        .map(|_| {
                            tokio::spawn(connect_loop(addr, connector.clone(), counters.clone()))
                        })
                        .collect();
                    for l in loops {
                        let _ = l.await;
                    }
                });
            }
        });
        let tid = tid_rx.recv().expect("client thread started");
        let snapshot = || Snapshot {
            at: Instant::now(),
            done: counters.done.load(Ordering::Relaxed),
            resumed: counters.resumed.load(Ordering::Relaxed),
            failed: counters.failed.load(Ordering::Relaxed),
            proxy_ticks: self.proxy.cpu_ticks(),
            client_ticks: [Some(tid), upstream].map(|t| {
                t.map_or(0, |t| {
                    stat_cpu_ticks(&format!("/proc/self/task/{}/stat", t.as_raw_nonzero()))
                })
            }),
            cores: core_ticks(),
            tickets: TICKETS.each_ref().map(|t| t.load(Ordering::Relaxed)),
        };
        std::thread::sleep(Duration::from_secs(1));
        let a = snapshot();
        std::thread::sleep(Duration::from_secs(self.seconds));
        let b = snapshot();
        counters.stop.store(true, Ordering::Relaxed);
        client.join().expect("handshake client");
        rustix::thread::sched_setaffinity(upstream, all_cpus).expect("unpin the upstream");

        let wall = (b.at - a.at).as_secs_f64();
        let done = (b.done - a.done) as f64;
        let cpus = |ticks: u64| ticks as f64 * self.tick / 1e6 / wall;
        let busy = |core: usize| {
            let ((busy0, total0), (busy1, total1)) = (a.cores[core], b.cores[core]);
            (busy1 - busy0) as f64 / (total1 - total0).max(1) as f64
        };
        HandshakeMeasure {
            tickets_per_connection: (b.tickets[0] - a.tickets[0]) as f64 / done.max(1.0),
            offered_share: (b.tickets[1] - a.tickets[1]) as f64 / done.max(1.0),
            none_share: (b.tickets[2] - a.tickets[2]) as f64 / done.max(1.0),
            rate: done / wall,
            resumed_share: (b.resumed - a.resumed) as f64 / done.max(1.0),
            failed: b.failed - a.failed,
            proxy_cpus: cpus(b.proxy_ticks - a.proxy_ticks),
            client_cpus: cpus(
                b.client_ticks[0] + b.client_ticks[1] - a.client_ticks[0] - a.client_ticks[1],
            ),
            upstream_cpus: cpus(b.client_ticks[1] - a.client_ticks[1]),
            proxy_core_busy: busy(PROXY_CORE),
            client_core_busy: busy(CLIENT_CORE),
            proxy_ms_per_connection: (b.proxy_ticks - a.proxy_ticks) as f64 * self.tick
                / 1000.0
                / done.max(1.0),
        }
    }
}

/// Busy and total clock ticks of each core so far, from `/proc/stat` (`cpuN` lines; busy is
/// user, nice, system, irq and softirq; total adds idle, iowait and steal).
fn core_ticks() -> Vec<(u64, u64)> {
    let stat = std::fs::read_to_string("/proc/stat").expect("/proc/stat");
    stat.lines()
        .filter(|l| l.starts_with("cpu") && l.as_bytes().get(3).is_some_and(u8::is_ascii_digit))
        .map(|l| {
            let v: Vec<u64> =
                l.split_whitespace().skip(1).map(|f| f.parse().unwrap_or(0)).collect();
            let at = |i: usize| v.get(i).copied().unwrap_or(0);
            let busy = at(0) + at(1) + at(2) + at(5) + at(6);
            (busy, busy + at(3) + at(4) + at(7))
        })
        .collect()
}

/// One of the client's connections in flight: connect, handshake, one request with
/// `Connection: close`, read the answer to its end, close; again until told to stop.
async fn connect_loop(addr: SocketAddr, connector: TlsConnector, counters: Arc<HandshakeCounters>) {
    let name = ServerName::try_from("localhost").expect("server name");
    let mut answer = Vec::with_capacity(4096);
    while !counters.stop.load(Ordering::Relaxed) {
        let exchange = one_connection(addr, &connector, name.clone(), &mut answer);
        match tokio::time::timeout(Duration::from_secs(5), exchange).await {
            Ok(Ok(resumed)) => {
                counters.done.fetch_add(1, Ordering::Relaxed);
                if resumed {
                    counters.resumed.fetch_add(1, Ordering::Relaxed);
                }
            }
            Ok(Err(_)) | Err(_) => {
                counters.failed.fetch_add(1, Ordering::Relaxed);
            }
        }
    }
}

/// One connection of [`connect_loop`]; says whether its handshake resumed a session.
async fn one_connection(
    addr: SocketAddr,
    connector: &TlsConnector,
    name: ServerName<'static>,
    answer: &mut Vec<u8>,
) -> std::io::Result<bool> {
    const REQUEST: &[u8] =
        b"GET /v1/chain/get_info HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n";
    let tcp = tokio::net::TcpStream::connect(addr).await?;
    tcp.set_nodelay(true)?;
    let mut tls = connector.connect(name, tcp).await?;
    let resumed = tls.get_ref().1.handshake_kind() == Some(HandshakeKind::Resumed);
    tls.write_all(REQUEST).await?;
    answer.clear();
    match tls.read_to_end(answer).await {
        // A peer that closes without close_notify after a complete answer is fine here.
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => {}
        Err(e) => return Err(e),
    }
    if !answer.starts_with(b"HTTP/1.1 200") {
        return Err(std::io::Error::other("answer is not 200 OK"));
    }
    Ok(resumed)
}

fn run(cmd: &mut Command) -> String {
    let out = cmd.output().unwrap_or_else(|e| panic!("run {cmd:?}: {e}"));
    assert!(out.status.success(), "{cmd:?} failed: {}", String::from_utf8_lossy(&out.stderr));
    String::from_utf8_lossy(&out.stdout).into_owned()
}

fn median(v: &[f64]) -> f64 {
    let mut v = v.to_vec();
    v.sort_by(f64::total_cmp);
    if v.is_empty() { f64::NAN } else { v[v.len() / 2] }
}

fn free_port() -> u16 {
    let l = StdListener::bind("127.0.0.1:0").expect("bind");
    let port = l.local_addr().expect("addr").port();
    drop(l);
    // Make sure nothing answers there yet.
    assert!(StdStream::connect(("127.0.0.1", port)).is_err());
    port
}

fn which(tool: &str) -> Option<PathBuf> {
    std::env::var_os("PATH")?
        .to_str()?
        .split(':')
        .map(|d| Path::new(d).join(tool))
        .find(|p| p.is_file())
}

fn env_u64(name: &str, default: u64) -> u64 {
    std::env::var(name).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}
