//! Access lists, trusted clients and automatic bans, with clients on distinct loopback
//! addresses.

use std::net::Ipv4Addr;
use std::time::Duration;

use crate::support::*;

const TWO: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 2);
const THREE: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 3);
const FOUR: Ipv4Addr = Ipv4Addr::new(127, 0, 0, 4);

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn denied_networks_are_refused_at_connect() {
    let up = Upstream::start("a").await;
    let gw =
        Gateway::start(&policy_text(&[up.addr], &[("deny = []", "deny = [\"127.0.0.2/32\"]")]))
            .await;
    assert!(Client::connect_from(TWO, gw.tls, false).await.is_err());
    let mut c = Client::connect_from(THREE, gw.tls, false).await.expect("allowed");
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
    assert_eq!(
        gw.metric("rempart_gateway_connections_refused_total{reason=\"denied\"}").await,
        1.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn allow_list_admits_only_its_networks() {
    let up = Upstream::start("a").await;
    let gw =
        Gateway::start(&policy_text(&[up.addr], &[("allow = []", "allow = [\"127.0.0.0/30\"]")]))
            .await;
    assert!(Client::connect_from(FOUR, gw.tls, false).await.is_err());
    let mut c = Client::connect_from(THREE, gw.tls, false).await.expect("allowed");
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn repeated_refusals_ban_a_client_but_not_a_trusted_one() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(
        &[up.addr],
        &[("ban_after = 1000000", "ban_after = 5"), ("trusted = []", "trusted = [\"127.0.0.4\"]")],
    ))
    .await;
    let mut bad = Client::connect_from(THREE, gw.tls, false).await.expect("tls");
    let mut trusted = Client::connect_from(FOUR, gw.tls, false).await.expect("tls");
    for _ in 0..5 {
        assert_eq!(bad.post("/v1/producer/pause", "{}").await.status, 403);
    }
    for _ in 0..10 {
        assert_eq!(trusted.post("/v1/producer/pause", "{}").await.status, 403);
    }
    let banned = bad.post("/v1/chain/get_block", "{}").await;
    assert_eq!(banned.status, 403);
    assert_eq!(banned.json()["error"]["name"], "banned");
    assert!(Client::connect_from(THREE, gw.tls, false).await.is_err(), "banned client connected");
    assert_eq!(trusted.post("/v1/chain/get_block", "{}").await.status, 200);
    let mut other = Client::connect_from(TWO, gw.tls, false).await.expect("tls");
    assert_eq!(other.post("/v1/chain/get_block", "{}").await.status, 200);
    assert_eq!(gw.metric("rempart_gateway_bans_total").await, 1.0);
    assert_eq!(gw.metric("rempart_gateway_banned_clients").await, 1.0);
    assert_eq!(up.requests(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn proxy_protocol_v2_is_believed_only_from_configured_balancers() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(
        &[up.addr],
        &[
            ("proxy_protocol_from = []", "proxy_protocol_from = [\"127.0.0.5\"]"),
            ("per_client = 64", "per_client = 1"),
            ("deny = []", "deny = [\"203.0.113.0/24\"]"),
        ],
    ))
    .await;
    let balancer = Ipv4Addr::new(127, 0, 0, 5);
    let alice: std::net::SocketAddr = "198.51.100.7:40000".parse().expect("addr");
    let bob: std::net::SocketAddr = "[2001:db8::9]:40000".parse().expect("addr");
    let mut a = Client::connect_proxied(balancer, alice, gw.tls).await.expect("alice");
    let mut b = Client::connect_proxied(balancer, bob, gw.tls).await.expect("bob");
    for (c, ip) in [(&mut a, "198.51.100.7"), (&mut b, "2001:db8::9")] {
        let r = c.post("/v1/chain/get_block", "{}").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["headers"]["x-forwarded-for"], serde_json::json!([ip]));
    }
    // Caps and access lists apply to the real client, not the balancer.
    assert!(
        Client::connect_proxied(balancer, alice, gw.tls).await.is_err(),
        "alice's 2nd connection"
    );
    let mallory: std::net::SocketAddr = "203.0.113.9:1".parse().expect("addr");
    assert!(Client::connect_proxied(balancer, mallory, gw.tls).await.is_err(), "denied client");
    // A header from anyone else is not believed: the handshake fails.
    assert!(Client::connect_proxied(TWO, alice, gw.tls).await.is_err());
    // The balancer itself must send the header.
    assert!(Client::connect_from(balancer, gw.tls, false).await.is_err());
    assert_eq!(up.requests(), 2);
    gw.stop().await;
}

/// The log never holds up serving: with the gateway's stdout a pipe nobody reads (a log
/// shipper that stopped), thousands of requests, each with its access-log line, are all
/// answered, and the metrics offer the count of lines dropped (none yet: the queue holds
/// 16 384). Written in place, the first full pipe (64 KiB, about 200 lines) blocked every
/// worker at its next line.
#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_stalled_log_reader_never_holds_up_requests() {
    let up = Upstream::start("a").await;
    let gw = ServedBinary::start_with(&[up.addr], &[], true).await;
    let mut c = Client::connect(gw.tls, false).await;
    wait_for("the upstream admitted by health checks", Duration::from_secs(10), async || {
        c.post("/v1/chain/get_block", "{}").await.status == 200
    })
    .await;
    let answered = tokio::time::timeout(Duration::from_secs(120), async {
        for _ in 0..3_000 {
            assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
        }
    })
    .await;
    assert!(answered.is_ok(), "requests stalled behind the unread log");
    let (status, metrics) = plain_get(gw.admin, "/metrics").await;
    assert_eq!(status, 200);
    assert!(metrics.contains("rempart_gateway_log_lines_dropped_total "), "{metrics}");
}
