//! What sharing the per-client limits through Redis (`[limits.shared]`) costs.
//!
//! `cargo bench -p rempart-gateway --bench shared_limits` prints, as Markdown for
//! BENCHMARKS.md, medians over `BENCH_ROUNDS` rounds (default 5):
//!
//! - the time of one rate-limit check on the request path, without `[limits.shared]` and with
//!   it (which adds counting the request for the next exchange), over 1 000 clients, one
//!   thread, with an exchange's draining every 500 000 checks;
//! - Redis' time per client in an exchange: the gateway's script run in pipelined calls of
//!   1 000 clients (each its bucket and its ban), for 1 000, 10 000 and 100 000 clients,
//!   against a `redis-server` this bench starts on a free loopback port (in memory only), and
//!   the memory Redis holds per client.
//!
//! Needs `redis-server` (Debian package redis-server) for the second part; without it, that part
//! is skipped and says so. A benchmark, not a test: it asserts nothing about speed.

use std::path::Path;
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use rempart_gateway::fleet::SCRIPT;
use rempart_gateway::limit::{ClientKey, Limiters};
use rempart_gateway::policy::Policy;
use rempart_gateway::resp::{self, Connection, Reply};

const SHIPPED: &str = include_str!("../../policies/gateway.toml");
const CHECKS: u32 = 5_000_000;

fn median(mut v: Vec<f64>) -> f64 {
    v.sort_by(f64::total_cmp);
    v[v.len() / 2]
}

fn rounds() -> usize {
    std::env::var("BENCH_ROUNDS").ok().and_then(|v| v.parse().ok()).unwrap_or(5)
}

/// Nanoseconds per check with the limits never reached.
fn check_cost(text: &str) -> f64 {
    let policy = Policy::parse(text, Path::new("gateway.toml")).expect("policy");
    let limiters = Limiters::new(&policy);
    let start = Instant::now();
    for i in 0..CHECKS {
        std::hint::black_box(limiters.check("read", ClientKey::V4(i % 1000), false));
        if i % 500_000 == 0 {
            std::hint::black_box(limiters.drain_shared());
        }
    }
    start.elapsed().as_nanos() as f64 / f64::from(CHECKS)
}

/// Microseconds of one pipelined exchange per client, for `clients` clients.
async fn exchange_cost(conn: &mut Connection, sha: &[u8], clients: usize, round: usize) -> f64 {
    let mut wire = Vec::new();
    let mut calls = 0;
    let ids: Vec<usize> = (0..clients).collect();
    for chunk in ids.chunks(1000) {
        // A client's bucket, then its ban (as the gateway sends them).
        let keys: Vec<String> = chunk
            .iter()
            .flat_map(|i| {
                let a = 0x0a00_0000 + i;
                [format!("bench:read:c:4:{a:08x}"), format!("bench:ban:4:{a:08x}")]
            })
            .collect();
        let count = (1 + round % 3).to_string();
        let numkeys = keys.len().to_string();
        let mut args: Vec<&[u8]> = vec![b"EVALSHA", sha, numkeys.as_bytes()];
        args.extend(keys.iter().map(|k| k.as_bytes()));
        args.push(b"20000.000");
        args.push(b"100000");
        args.extend(std::iter::repeat_n(count.as_bytes(), chunk.len()));
        resp::encode(&args, &mut wire);
        calls += 1;
    }
    let start = Instant::now();
    let replies = conn.pipeline(&wire, calls).await.expect("exchange");
    let took = start.elapsed();
    assert!(replies.iter().all(|r| matches!(r, Reply::Array(Some(_)))), "{:?}", replies.first());
    took.as_secs_f64() * 1e6 / clients as f64
}

fn used_memory(info: &Reply) -> u64 {
    let Reply::Bulk(Some(text)) = info else { panic!("INFO answer {info:?}") };
    String::from_utf8_lossy(text)
        .lines()
        .find_map(|l| l.strip_prefix("used_memory:"))
        .and_then(|v| v.trim().parse().ok())
        .expect("used_memory")
}

#[tokio::main(flavor = "current_thread")]
async fn main() {
    let unlimited = SHIPPED
        .replacen("per_second = 50", "per_second = 1000000000", 1)
        .replacen("burst = 100", "burst = 1000000000", 1)
        .replace("global_per_second = 20000", "global_per_second = 1000000000")
        .replace("global_burst = 5000\n", "global_burst = 1000000000\n");
    let shared = unlimited.replace(
        "global_burst = 1000000000\n",
        "global_burst = 1000000000\n[limits.shared]\nredis = \"127.0.0.1:6379\"\n\
         key_prefix = \"bench:\"\nsync_interval_ms = 100\ntimeout_ms = 250\n",
    );
    let n = rounds();
    let local = median((0..n).map(|_| check_cost(&unlimited)).collect());
    let counted = median((0..n).map(|_| check_cost(&shared)).collect());
    println!("| measure | median of {n} |");
    println!("|---|---:|");
    println!("| one rate-limit check, no `[limits.shared]` (ns) | {local:.1} |");
    println!("| one rate-limit check, with `[limits.shared]` (ns) | {counted:.1} |");

    let Some(program) = std::env::var_os("PATH").and_then(|p| {
        std::env::split_paths(&p).map(|d| d.join("redis-server")).find(|p| p.is_file())
    }) else {
        println!(
            "\nredis-server is not installed (Debian package redis-server): exchange costs skipped"
        );
        return;
    };
    let port = std::net::TcpListener::bind("127.0.0.1:0")
        .and_then(|l| l.local_addr())
        .expect("free port")
        .port();
    let mut server = Command::new(program)
        .args(["--port", &port.to_string(), "--bind", "127.0.0.1", "--save", ""])
        .args(["--appendonly", "no"])
        .stdout(Stdio::null())
        .spawn()
        .expect("start redis-server");
    let addr = format!("127.0.0.1:{port}");
    let deadline = Instant::now() + Duration::from_secs(10);
    let mut conn = loop {
        match Connection::connect(&addr, None, Duration::from_secs(60)).await {
            Ok(c) => break c,
            Err(e) if Instant::now() > deadline => panic!("redis-server: {e}"),
            Err(_) => tokio::time::sleep(Duration::from_millis(20)).await,
        }
    };
    let Reply::Bulk(Some(sha)) =
        conn.call(&[b"SCRIPT", b"LOAD", SCRIPT.as_bytes()]).await.expect("SCRIPT LOAD")
    else {
        panic!("SCRIPT LOAD gave no digest")
    };
    for clients in [1_000, 10_000, 100_000] {
        let mut per_client = Vec::new();
        for round in 0..n {
            per_client.push(exchange_cost(&mut conn, &sha, clients, round).await);
        }
        println!(
            "| Redis time per client, exchanges of {clients} clients (µs) | {:.2} |",
            median(per_client)
        );
    }
    let before = used_memory(&conn.call(&[b"INFO", b"memory"]).await.expect("INFO"));
    conn.call(&[b"FLUSHALL"]).await.expect("FLUSHALL");
    let after = used_memory(&conn.call(&[b"INFO", b"memory"]).await.expect("INFO"));
    println!(
        "| Redis memory per client bucket (bytes) | {:.0} |",
        before.saturating_sub(after) as f64 / 100_000.0
    );
    server.kill().ok();
    server.wait().ok();
}
