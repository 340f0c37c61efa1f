//! Proxy mechanics: forwarding headers, hop-by-hop, balancing, ejection and retries.

use std::time::Duration;

use bytes::Bytes;
use http::Request;
use http_body_util::Full;

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn xff_comes_from_the_peer_and_hop_by_hop_headers_are_stripped() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    let mut c = Client::connect(gw.tls, false).await;
    let req = Request::post("/v1/chain/get_block")
        .header("host", "localhost")
        .header("x-forwarded-for", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("connection", "keep-alive, x-client-secret")
        .header("x-client-secret", "s")
        .header("keep-alive", "timeout=5")
        .header("te", "trailers")
        .header("proxy-authorization", "Basic eA==")
        .header("x-kept", "yes")
        .body(Full::new(Bytes::from_static(b"{\"block_num_or_id\":1}")))
        .expect("req");
    let a = c.send(req).await;
    assert_eq!(a.status, 200, "{}", a.body);
    let h = &a.json()["headers"];
    assert_eq!(h["x-forwarded-for"], serde_json::json!(["127.0.0.1"]));
    assert_eq!(h["x-kept"], serde_json::json!(["yes"]));
    for gone in
        ["forwarded", "x-real-ip", "x-client-secret", "keep-alive", "te", "proxy-authorization"]
    {
        assert!(h.get(gone).is_none(), "{gone} reached the upstream: {h}");
    }
    assert_eq!(a.json()["body_len"], 21);
    // and on the way back
    assert!(a.headers.get("x-upstream-secret").is_none());
    assert!(a.headers.get("keep-alive").is_none());
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn round_robin_spreads_requests_evenly() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = Gateway::start(&policy_text(
        &[a.addr, b.addr],
        &[("balancing = \"least_connections\"", "balancing = \"round_robin\"")],
    ))
    .await;
    let mut c = Client::connect(gw.tls, true).await;
    for _ in 0..40 {
        assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
    }
    assert_eq!((a.requests(), b.requests()), (20, 20));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn killed_upstream_is_ejected_and_reads_are_retried_elsewhere() {
    let (mut a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = Gateway::start(&policy_text(
        &[a.addr, b.addr],
        &[
            ("balancing = \"least_connections\"", "balancing = \"round_robin\""),
            ("eject_base_ms = 1000", "eject_base_ms = 60000"),
            ("eject_max_ms = 30000", "eject_max_ms = 60000"),
        ],
    ))
    .await;
    let mut c = Client::connect(gw.tls, false).await;
    for _ in 0..4 {
        assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
    }
    a.kill().await;
    let before_b = b.requests();
    for _ in 0..20 {
        let r = c.post("/v1/chain/get_block", "{}").await;
        assert_eq!(r.status, 200, "{}", r.body);
        assert_eq!(r.json()["node"], "b");
    }
    assert_eq!(b.requests() - before_b, 20);
    assert_eq!(gw.metric("rempart_gateway_upstream_retries_total").await, 1.0);
    assert_eq!(
        gw.metric(&format!("rempart_gateway_upstream_up{{pool=\"api\",node=\"{}\"}}", a.addr))
            .await,
        0.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn upstream_503_on_a_read_is_retried_and_writes_are_not() {
    let (a, b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = Gateway::start(&policy_text(
        &[a.addr, b.addr],
        &[
            ("balancing = \"least_connections\"", "balancing = \"round_robin\""),
            ("path = \"/v1/history/get_actions\"", "path = \"/v1/chain/fail\""),
        ],
    ))
    .await;
    let mut c = Client::connect(gw.tls, false).await;
    // /v1/chain/fail answers 503 on both nodes: retried once, then the answer is passed on.
    let r = c.post("/v1/chain/fail", "{}").await;
    assert_eq!(r.status, 503);
    assert_eq!(a.requests() + b.requests(), 2);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn stale_or_lagging_nodes_are_taken_out_by_health_checks() {
    let (mut a, mut b) = (Upstream::start("a").await, Upstream::start("b").await);
    let gw = Gateway::start(&policy_text(
        &[a.addr, b.addr],
        &[
            ("health_interval_ms = 2000", "health_interval_ms = 50"),
            ("health_timeout_ms = 1000", "health_timeout_ms = 50"),
            ("max_head_age_ms = 15000", "max_head_age_ms = 5000"),
        ],
    ))
    .await;
    let up =
        |n: &Upstream| format!("rempart_gateway_upstream_up{{pool=\"api\",node=\"{}\"}}", n.addr);
    a.head_age_ms.store(60_000, std::sync::atomic::Ordering::SeqCst);
    wait_for("stale node out", Duration::from_secs(5), async || gw.metric(&up(&a)).await == 0.0)
        .await;
    assert_eq!(gw.metric(&up(&b)).await, 1.0);
    let mut c = Client::connect(gw.tls, false).await;
    for _ in 0..6 {
        assert_eq!(c.post("/v1/chain/get_block", "{}").await.json()["node"], "b");
    }
    a.head_age_ms.store(0, std::sync::atomic::Ordering::SeqCst);
    a.head_block.store(100, std::sync::atomic::Ordering::SeqCst);
    b.head_block.store(200, std::sync::atomic::Ordering::SeqCst);
    wait_for("lagging node stays out", Duration::from_secs(5), async || {
        let m = gw.metrics().await;
        m.contains(&format!("{} 0", up(&a))) && m.contains(&format!("{} 1", up(&b)))
    })
    .await;
    a.head_block.store(195, std::sync::atomic::Ordering::SeqCst);
    wait_for("caught-up node back", Duration::from_secs(5), async || {
        gw.metric(&up(&a)).await == 1.0
    })
    .await;
    b.kill().await;
    a.kill().await;
    wait_for("healthz reports no node", Duration::from_secs(5), async || {
        plain_get(gw.admin, "/healthz").await.0 == 503
    })
    .await;
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 503);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn several_worker_threads_serve_http1_and_h2_and_stop_cleanly() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start_with_workers(&policy_text(&[up.addr], &[]), 3).await;
    let mut clients = Vec::new();
    for i in 0..8 {
        clients.push(Client::connect(gw.tls, i % 2 == 1).await);
    }
    for c in &mut clients {
        for _ in 0..3 {
            let a = c.post("/v1/chain/get_block", "{\"block_num_or_id\":1}").await;
            assert_eq!(a.status, 200, "{}", a.body);
        }
    }
    assert_eq!(up.requests(), 24);
    let served = gw
        .metric("rempart_gateway_requests_total{class=\"read\",status=\"200\",fault=\"none\"}")
        .await;
    assert_eq!(served, 24.0);
    drop(clients);
    tokio::time::timeout(Duration::from_secs(10), gw.stop())
        .await
        .expect("every worker stops and drains within the drain timeout");
}

/// Starts `n` slow requests at once, each on its own connection from its own address, and
/// returns each one's status, `Retry-After` and error name, with the time it took.
async fn slow_burst(gw: &Gateway, n: u8) -> Vec<(u16, Option<String>, String, Duration)> {
    // Every connection is made first, so the requests start together.
    let mut clients = Vec::new();
    for k in 0..n {
        let source = std::net::Ipv4Addr::new(127, 0, 1, k + 1);
        clients.push(Client::connect_from(source, gw.tls, false).await.expect("tls"));
    }
    let mut tasks = Vec::new();
    for mut c in clients {
        tasks.push(tokio::spawn(async move {
            let start = std::time::Instant::now();
            let a = c.post("/v1/chain/slow", "{}").await;
            let retry = a.headers.get("retry-after").map(|v| v.to_str().unwrap_or("").to_owned());
            let name = a.json()["error"]["name"].as_str().unwrap_or("").to_owned();
            (a.status, retry, name, start.elapsed())
        }));
    }
    let mut out = Vec::new();
    for t in tasks {
        out.push(t.await.expect("task"));
    }
    out
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_node_at_its_in_flight_cap_gets_no_more_and_the_excess_queues_then_gets_503() {
    let up = Upstream::start("a").await;
    let edit = |queue: &'static str| {
        policy_text(
            &[up.addr],
            &[
                ("path = \"/v1/history/get_actions\"", "path = \"/v1/chain/slow\""),
                ("per_second = 5\n", "per_second = 100000\n"),
                ("burst = 10\n", "burst = 100000\n"),
                ("max_in_flight_per_node = 1000", "max_in_flight_per_node = 2"),
                ("queue_timeout_ms = 1000", queue),
            ],
        )
    };
    // A short queue: two requests reach the node (300 ms each), the other four wait 100 ms
    // for a place, then are answered 503 upstream_busy with Retry-After.
    let gw = Gateway::start(&edit("queue_timeout_ms = 100")).await;
    let answers = slow_burst(&gw, 6).await;
    let ok: Vec<_> = answers.iter().filter(|a| a.0 == 200).collect();
    let busy: Vec<_> = answers.iter().filter(|a| a.0 == 503).collect();
    assert_eq!((ok.len(), busy.len()), (2, 4), "{answers:?}");
    for b in &busy {
        assert_eq!((b.1.as_deref(), b.2.as_str()), (Some("1"), "upstream_busy"), "{b:?}");
        assert!(b.3 >= Duration::from_millis(100), "it waited in the queue first: {b:?}");
    }
    assert_eq!(up.seen.most_busy.load(std::sync::atomic::Ordering::SeqCst), 2);
    assert_eq!(up.requests(), 2);
    gw.stop().await;

    // A queue longer than one request: all six are served, two at a time, in three waves.
    up.seen.most_busy.store(0, std::sync::atomic::Ordering::SeqCst);
    let gw = Gateway::start(&edit("queue_timeout_ms = 5000")).await;
    let start = std::time::Instant::now();
    let answers = slow_burst(&gw, 6).await;
    let all = start.elapsed();
    assert!(answers.iter().all(|a| a.0 == 200), "{answers:?}");
    // Six requests of 300 ms, never more than two at once: at least 900 ms from the first
    // one's start to the last one's end, all inside this span.
    assert!(all >= Duration::from_millis(900), "three waves of 300 ms: {all:?}");
    assert_eq!(up.seen.most_busy.load(std::sync::atomic::Ordering::SeqCst), 2);
    gw.stop().await;
}
