//! Latency of the keosd-compatible `sign_digest` endpoint (`[keosd_compat]`), the way a stock
//! nodeos with `signature-provider = KEY=KEOSD:<url>` asks it: `cargo bench -p rempart-signer
//! --bench keosd`.
//!
//! For the soft backend and SoftHSM2 (K1 and R1 keys made in the token), it starts the real,
//! sandboxed daemon with `min_interval_ms = 0`, and one client sends `REMPART_BENCH_REQUESTS`
//! (default 1 000) distinct digests one at a time on one kept-alive HTTP/1.1 connection over the
//! endpoint's Unix socket, then over its TCP port. It prints p50/p99 of what the client saw and
//! requests/s, as Markdown for BENCHMARKS.md. nodeos gives a keosd provider 5 ms by default
//! (`keosd-provider-timeout`). There is no guard write on this path (a bare digest cannot be
//! checked), so a request is the HTTP exchange, the key backend and the audit line's fsync.

#[path = "../tests/common/mod.rs"]
mod common;
// Shared with the latency bench; this one uses its client streams only.
#[path = "support/measure.rs"]
mod measure;

use std::path::Path;
use std::time::{Duration, Instant};

use measure::{ReadWrite, Stream};
use rempart_core::checksum::Checksum256;

/// One request and its answer's status; panics on anything but 200.
fn exchange(io: &mut dyn ReadWrite, digest: &Checksum256, key: &str, buf: &mut Vec<u8>) {
    let body = format!("[\"{digest}\",\"{key}\"]");
    let req = format!(
        "POST /v1/wallet/sign_digest HTTP/1.1\r\nHost: localhost\r\nContent-Type: \
         application/json\r\nContent-Length: {}\r\n\r\n{body}",
        body.len()
    );
    io.write_all(req.as_bytes()).unwrap();
    buf.clear();
    let mut chunk = [0u8; 1024];
    loop {
        let n = io.read(&mut chunk).unwrap();
        assert!(n > 0, "the signer closed the connection");
        buf.extend_from_slice(&chunk[..n]);
        let text = String::from_utf8_lossy(buf);
        let Some(end) = text.find("\r\n\r\n") else { continue };
        let len: usize = text
            .lines()
            .find_map(|l| l.strip_prefix("Content-Length: "))
            .and_then(|v| v.trim().parse().ok())
            .expect("Content-Length");
        if buf.len() >= end + 4 + len {
            assert!(text.starts_with("HTTP/1.1 200"), "{text}");
            return;
        }
    }
}

fn quantile(v: &mut [Duration], q: f64) -> Duration {
    v.sort();
    v[((v.len() as f64 - 1.0) * q).round() as usize]
}

fn main() {
    let requests: usize =
        std::env::var("REMPART_BENCH_REQUESTS").ok().and_then(|v| v.parse().ok()).unwrap_or(1000);
    let load = std::fs::read_to_string("/proc/loadavg").unwrap_or_default();
    eprintln!("load average before: {}", load.trim());
    let hsm = common::softhsm();
    let mut configs = vec![("soft K1".to_string(), None, common::DEV_PUB.to_string())];
    if let Some(h) = &hsm {
        for kt in ["k1", "r1"] {
            let label = format!("keosd-{kt}");
            let key = h.new_key(kt, &label);
            let backend = common::pkcs11_backend("T", &label, common::SOFTHSM_MODULE);
            configs.push((format!("SoftHSM2 {}", kt.to_uppercase()), Some(backend), key));
        }
    }
    println!("| backend | transport | requests | p50 ms | p99 ms | req/s |");
    println!("|---|---|---:|---:|---:|---:|");
    let parent = Path::new(env!("CARGO_TARGET_TMPDIR"));
    for (name, backend, key) in &configs {
        let mut read_only: Vec<&Path> = Vec::new();
        if let Some(h) = &hsm
            && backend.is_some()
        {
            read_only.extend([h.tokens.as_path(), h.conf.as_path()]);
        }
        let port = common::free_port();
        let extra = format!(
            "[keosd_compat]\ndangerous_bare_digests = true\nunix_socket = \"keosd.sock\"\n\
             tcp = \"127.0.0.1:{port}\"\nkeys = [\"{key}\"]\nmin_interval_ms = 0\n"
        );
        let sandbox = common::sandbox_toml(&read_only);
        let s = common::setup_in(Some(parent), backend.as_deref(), key, &sandbox, &extra);
        s.guard_init();
        let env: Vec<(&str, &str)> = match (&hsm, backend) {
            (Some(h), Some(_)) => h.env().to_vec(),
            _ => Vec::new(),
        };
        let mut d = s.spawn(&env);
        for tcp in [false, true] {
            let mut stream = if tcp {
                let c = std::net::TcpStream::connect(("127.0.0.1", port)).unwrap();
                c.set_nodelay(true).unwrap();
                Stream::Tcp(c)
            } else {
                Stream::Unix(
                    std::os::unix::net::UnixStream::connect(s.dir.path().join("keosd.sock"))
                        .unwrap(),
                )
            };
            let mut buf = Vec::new();
            let mut samples = Vec::with_capacity(requests);
            let started = Instant::now();
            for i in 0..requests {
                let digest = Checksum256::hash(format!("{name} {tcp} {i}").as_bytes());
                let t = Instant::now();
                exchange(stream.io(), &digest, key, &mut buf);
                samples.push(t.elapsed());
            }
            let rate = requests as f64 / started.elapsed().as_secs_f64();
            let (p50, p99) = (quantile(&mut samples, 0.5), quantile(&mut samples, 0.99));
            println!(
                "| {name} | {} | {requests} | {:.3} | {:.3} | {rate:.0} |",
                if tcp { "TCP loopback" } else { "Unix socket" },
                p50.as_secs_f64() * 1e3,
                p99.as_secs_f64() * 1e3
            );
        }
        d.terminate();
    }
}
