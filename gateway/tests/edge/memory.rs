//! Memory bounds: of the limiter (a million distinct client addresses, IPv4 in 127/8 and IPv6,
//! fed straight to the limiters; the tracked count never exceeds the cap), and of an idle
//! connection (what the gateway process grows by per open keep-alive connection).

use std::net::{IpAddr, Ipv4Addr, Ipv6Addr};
use std::path::Path;
use std::time::Duration;

use rempart_gateway::Policy;
use rempart_gateway::limit::{ClientKey, Limiters};

use crate::support::*;

fn limiters(cap: usize) -> Limiters {
    let text = policy_text(&[], &[])
        .replace("nodes = []", "nodes = [\"127.0.0.1:1\"]")
        .replace("max_tracked_clients = 200000", &format!("max_tracked_clients = {cap}"));
    Limiters::new(&Policy::parse(&text, Path::new("gateway.toml")).expect("policy"))
}

#[test]
fn a_million_addresses_stay_under_the_cap() {
    let cap = 100_000;
    let l = limiters(cap);
    for i in 0..1_000_000u32 {
        let ip = if i % 2 == 0 {
            IpAddr::V4(Ipv4Addr::from(0x7f00_0000 | (i & 0x00ff_ffff)))
        } else {
            IpAddr::V6(Ipv6Addr::from(
                0x2001_0db8_0000_0000_0000_0000_0000_0001u128 | (u128::from(i) << 64),
            ))
        };
        l.check("read", ClientKey::of(ip, 32, 64), false);
        assert!(i % 4096 != 0 || l.tracked() <= cap);
    }
    assert!(l.tracked() <= cap, "tracked {}", l.tracked());
    assert_eq!(l.tracked(), cap);
    assert_eq!(l.overflowed(), 1_000_000 - cap as u64);
    let per_client = l.table_bytes() as f64 / l.tracked() as f64;
    eprintln!(
        "limiter: {} tracked of 1e6 distinct; table {} bytes = {per_client:.1} bytes per tracked client",
        l.tracked(),
        l.table_bytes()
    );
    assert!(per_client <= 128.0, "{per_client} bytes per tracked client");
}

/// Connections held open per protocol: well under the default limit of 1024 descriptors in
/// the test and in the gateway.
const IDLE_CONNECTIONS: u64 = 300;

/// The gateway process grows by a bounded amount per idle keep-alive connection, after a
/// request on each, over HTTP/1.1 and HTTP/2. The process is the real binary on its own, so
/// the test's clients do not count. Measured on a 2-vCPU VM: 36 KiB (HTTP/1.1) and 57 KiB
/// (HTTP/2). Before each connection's task stopped holding every protocol's future inline
/// (21 KiB) and an idle HTTP/2 connection its 16 KiB write buffer, they were 50 and 92 KiB,
/// which the ceilings below refuse. (HAProxy 2.6 holds about 16 and 21 KiB per connection
/// after its handshake.)
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_idle_connection_costs_the_gateway_a_bounded_amount_of_memory() {
    let up = Upstream::start("a").await;
    for (h2, ceiling_kib) in [(false, 42), (true, 72)] {
        // A process per protocol: memory the other protocol's connections gave back would
        // otherwise be reused and hide the growth.
        let gw =
            ServedBinary::start(&[up.addr], &[("per_client = 64", "per_client = 10000")]).await;
        let mut first = Client::connect(gw.tls, h2).await;
        wait_for("the upstream admitted by health checks", Duration::from_secs(10), async || {
            first.post("/v1/chain/get_block", "{}").await.status == 200
        })
        .await;
        // What connections share (each worker's heap and upstream connection) is made by a
        // few first ones, held open.
        let mut held = Vec::new();
        for _ in 0..8 {
            let mut c = Client::connect(gw.tls, h2).await;
            assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
            held.push(c);
        }
        let before = gw.rss();
        for _ in 0..IDLE_CONNECTIONS {
            let mut c = Client::connect(gw.tls, h2).await;
            assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
            held.push(c);
        }
        let per = gw.rss().saturating_sub(before) / IDLE_CONNECTIONS;
        let what = if h2 { "HTTP/2" } else { "HTTP/1.1" };
        eprintln!("idle {what} connection: {per} bytes in the gateway");
        assert!(
            per <= ceiling_kib * 1024,
            "an idle {what} connection costs the gateway {per} bytes (ceiling {ceiling_kib} KiB)"
        );
    }
}
