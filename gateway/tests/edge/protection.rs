//! Protection: rate limits, connection caps, timeouts, size limits, allowlist.

use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::{Duration, Instant};

use bytes::Bytes;
use http::Request;
use http_body_util::Full;
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

const READ_CLASS: &str = "per_second = 100000\nburst = 100000";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn rate_limit_answers_429_with_retry_after_and_holds_the_rate_within_5_percent() {
    let up = Upstream::start("a").await;
    let gw =
        Gateway::start(&policy_text(&[up.addr], &[(READ_CLASS, "per_second = 100\nburst = 10")]))
            .await;
    let Client::H2(send) = Client::connect(gw.tls, true).await else { unreachable!() };
    let allowed = Arc::new(AtomicU64::new(0));
    let limited = Arc::new(AtomicU64::new(0));
    let retry_after = Arc::new(std::sync::Mutex::new(None::<String>));
    let start = Instant::now();
    let window = Duration::from_secs(2);
    let mut tasks = Vec::new();
    for _ in 0..8 {
        let mut send = send.clone();
        let (allowed, limited, retry_after) =
            (allowed.clone(), limited.clone(), retry_after.clone());
        tasks.push(tokio::spawn(async move {
            let mut last_sent = start;
            while start.elapsed() < window {
                let req = Request::post("https://localhost/v1/chain/get_block")
                    .body(Full::new(Bytes::from_static(b"{}")))
                    .expect("req");
                last_sent = Instant::now();
                let resp = send.send_request(req).await.expect("response");
                match resp.status().as_u16() {
                    200 => allowed.fetch_add(1, Ordering::SeqCst),
                    429 => {
                        if let Some(v) = resp.headers().get("retry-after") {
                            *retry_after.lock().expect("lock") =
                                Some(v.to_str().expect("ascii").to_owned());
                        }
                        limited.fetch_add(1, Ordering::SeqCst)
                    }
                    s => panic!("unexpected status {s}"),
                };
            }
            last_sent
        }));
    }
    let mut last = start;
    for t in tasks {
        last = last.max(t.await.expect("join"));
    }
    let span = last.duration_since(start).as_secs_f64();
    let allowed = allowed.load(Ordering::SeqCst) as f64;
    let expected = 10.0 + 100.0 * span;
    let error = (allowed - expected).abs() / expected;
    eprintln!(
        "rate limit: {allowed} allowed, {} limited over {span:.3} s; expected {expected:.1}; error {:.2}%",
        limited.load(Ordering::SeqCst),
        error * 100.0
    );
    assert!(limited.load(Ordering::SeqCst) > allowed as u64, "the load did not exceed the limit");
    assert!(error <= 0.05, "allowed {allowed}, expected {expected:.1}");
    assert_eq!(retry_after.lock().expect("lock").as_deref(), Some("1"));
    assert!(
        gw.metric("rempart_gateway_limited_total{class=\"read\",scope=\"limited_client\"}").await
            > 0.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn connections_over_the_per_client_cap_are_closed_at_once() {
    let up = Upstream::start("a").await;
    let gw =
        Gateway::start(&policy_text(&[up.addr], &[("per_client = 64", "per_client = 3")])).await;
    let cfg = client_config(&[b"http/1.1"]);
    let mut open = Vec::new();
    for _ in 0..3 {
        open.push(tls_connect(gw.tls, cfg.clone()).await.expect("under the cap"));
    }
    assert!(tls_connect(gw.tls, cfg.clone()).await.is_err(), "4th connection was served");
    assert_eq!(
        gw.metric("rempart_gateway_connections_refused_total{reason=\"client_cap\"}").await,
        1.0
    );
    assert_eq!(gw.metric("rempart_gateway_connections_open").await, 3.0);
    drop(open.pop());
    wait_for("a place frees up", Duration::from_secs(5), async || {
        gw.metric("rempart_gateway_connections_open").await == 2.0
    })
    .await;
    let mut c = Client::connect(gw.tls, false).await;
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_head_and_slow_body_are_cut_while_others_are_served() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(
        &[up.addr],
        &[
            ("header_read_timeout_ms = 5000", "header_read_timeout_ms = 300"),
            ("body_read_timeout_ms = 10000", "body_read_timeout_ms = 300"),
        ],
    ))
    .await;
    let cfg = client_config(&[b"http/1.1"]);
    // Taken before the connection: the gateway's header timer starts after this, so the time
    // until the cut is at least the gateway's.
    let t = Instant::now();
    let mut slow = tls_connect(gw.tls, cfg.clone()).await.expect("tls");
    slow.write_all(b"POST /v1/chain/get_block HTTP/1.1\r\nHost: localhost\r\n")
        .await
        .expect("write");
    let mut c = Client::connect(gw.tls, false).await;
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf))
        .await
        .expect("slow head was not cut");
    let cut = t.elapsed();
    assert!(cut >= Duration::from_millis(250) && cut < Duration::from_secs(3), "{cut:?}");
    assert!(!String::from_utf8_lossy(&buf).contains("200"));

    let mut slow = tls_connect(gw.tls, cfg).await.expect("tls");
    slow.write_all(
        b"POST /v1/chain/get_block HTTP/1.1\r\nHost: localhost\r\nContent-Length: 10\r\n\r\n{}",
    )
    .await
    .expect("write");
    let mut buf = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), slow.read_to_end(&mut buf))
        .await
        .expect("slow body was not cut");
    let text = String::from_utf8_lossy(&buf);
    assert!(text.starts_with("HTTP/1.1 408"), "{text}");
    assert_eq!(up.requests(), 1);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn sizes_methods_and_the_allowlist_are_enforced_before_the_upstream() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    for h2 in [false, true] {
        let host = |b: http::request::Builder| if h2 { b } else { b.header("host", "localhost") };
        let uri = |p: &str| if h2 { format!("https://localhost{p}") } else { p.to_owned() };
        let big = Bytes::from(vec![b'x'; 20_000]);
        let cases: Vec<(Request<Full<Bytes>>, u16)> = vec![
            (host(Request::post(uri("/v1/chain/get_block"))).body(Full::new(big)).expect("r"), 413),
            (
                host(Request::post(uri(&format!("/v1/chain/get_block?{}", "a".repeat(3000)))))
                    .body(Full::new(Bytes::new()))
                    .expect("r"),
                414,
            ),
            (
                host(Request::put(uri("/v1/chain/get_block")))
                    .body(Full::new(Bytes::new()))
                    .expect("r"),
                405,
            ),
            (
                host(Request::post(uri("/v1/producer/pause")))
                    .body(Full::new(Bytes::new()))
                    .expect("r"),
                403,
            ),
            (
                host(Request::post(uri("/v1/net/connect")))
                    .body(Full::new(Bytes::new()))
                    .expect("r"),
                403,
            ),
            (
                host(Request::post(uri("/v1/chain/../producer/pause")))
                    .body(Full::new(Bytes::new()))
                    .expect("r"),
                400,
            ),
            (
                host(Request::post(uri("/v1/chain/get_block/")))
                    .body(Full::new(Bytes::new()))
                    .expect("r"),
                403,
            ),
        ];
        for (req, want) in cases {
            let desc = format!("{} {}", req.method(), req.uri().path());
            // A fresh connection each time: HTTP/1 closes after refusing an unread body.
            let a = Client::connect(gw.tls, h2).await.send(req).await;
            assert_eq!(a.status, want, "{desc}: {}", a.body);
            if want != 405 {
                assert!(
                    a.json()["error"]["name"].is_string(),
                    "{desc}: nodeos-shaped error expected"
                );
            }
        }
    }
    // An HTTP/1 head over max_header_bytes: hyper answers 431.
    let mut s = tls_connect(gw.tls, client_config(&[b"http/1.1"])).await.expect("tls");
    let head = format!(
        "POST /v1/chain/get_block HTTP/1.1\r\nHost: localhost\r\nX-Big: {}\r\n\r\n",
        "a".repeat(20_000)
    );
    s.write_all(head.as_bytes()).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("answer");
    let text = String::from_utf8_lossy(&out);
    assert!(text.starts_with("HTTP/1.1 431"), "{text}");
    assert_eq!(up.requests(), 0);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn the_total_cap_holds_across_clients() {
    use std::net::Ipv4Addr;
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(
        &[up.addr],
        &[("per_client = 64", "per_client = 2"), ("total = 20000", "total = 3")],
    ))
    .await;
    let cfg = client_config(&[b"http/1.1"]);
    let one = Ipv4Addr::new(127, 0, 0, 1);
    let two = Ipv4Addr::new(127, 0, 0, 2);
    let three = Ipv4Addr::new(127, 0, 0, 3);
    let _a = tls_connect_from(one, gw.tls, cfg.clone()).await.expect("a");
    let _b = tls_connect_from(one, gw.tls, cfg.clone()).await.expect("b");
    assert!(tls_connect_from(one, gw.tls, cfg.clone()).await.is_err());
    let _c = tls_connect_from(two, gw.tls, cfg.clone()).await.expect("c");
    assert!(tls_connect_from(three, gw.tls, cfg.clone()).await.is_err());
    assert_eq!(
        gw.metric("rempart_gateway_connections_refused_total{reason=\"client_cap\"}").await,
        1.0
    );
    assert_eq!(
        gw.metric("rempart_gateway_connections_refused_total{reason=\"total_cap\"}").await,
        1.0
    );
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_rapid_reset_client_is_cut_off_while_others_are_served() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    let tls = tls_connect(gw.tls, client_config(&[b"h2"])).await.expect("tls");
    let (client, conn) = h2::client::handshake(tls).await.expect("h2 handshake");
    let conn = tokio::spawn(conn);
    let mut client = client;
    let mut sent = 0;
    for _ in 0..5000 {
        let Ok(ready) = client.ready().await else { break };
        client = ready;
        let req =
            http::Request::post("https://localhost/v1/chain/get_block").body(()).expect("req");
        let Ok((_resp, mut stream)) = client.send_request(req, false) else { break };
        stream.send_reset(h2::Reason::CANCEL);
        sent += 1;
    }
    let result = tokio::time::timeout(Duration::from_secs(5), conn)
        .await
        .expect("the gateway must close the connection")
        .expect("join");
    let err = result.expect_err("connection must end with an error");
    eprintln!("rapid reset: connection closed after {sent} streams: {err}");
    // The gateway sends GOAWAY(ENHANCE_YOUR_CALM) and closes; the client sees either the
    // GOAWAY or, when it was still writing, the closed socket.
    assert!(err.reason() == Some(h2::Reason::ENHANCE_YOUR_CALM) || err.is_io(), "{err}");
    assert!(sent < 5000, "all {sent} resets were accepted");
    let mut c = Client::connect(gw.tls, true).await;
    assert_eq!(c.post("/v1/chain/get_block", "{}").await.status, 200);
    gw.stop().await;
}
