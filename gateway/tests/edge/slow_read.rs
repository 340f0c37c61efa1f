//! Slow readers: clients that ask for answers and then do not take them. An HTTP/2 client
//! that keeps its flow-control window shut has its streams reset at the send timeout, and is
//! refused streams past its share of held answers; an HTTP/1.1 client that stops reading has
//! its connection closed at the send timeout, well before the idle timeout. Others are served
//! throughout.

use std::future::{Future, poll_fn};
use std::net::Ipv4Addr;
use std::time::{Duration, Instant};

use bytes::Bytes;
use h2::Reason;
use http::Request;
use http_body_util::Full;
use tokio::io::AsyncWriteExt;

use crate::support::*;

/// An answer the gateway reads whole before sending it (under 64 KiB).
const SMALL: usize = 60_000;

fn policy(up: &Upstream, edit: &[(&str, &str)]) -> String {
    let mut all = vec![
        ("path = \"/v1/history/get_actions\"", "path = \"/v1/chain/big\""),
        // The route takes get_actions' class (heavy); its rate is not under test here.
        ("per_second = 5\n", "per_second = 100000\n"),
        ("burst = 10\n", "burst = 100000\n"),
        ("send_timeout_ms = 30000", "send_timeout_ms = 1000"),
    ];
    all.extend_from_slice(edit);
    policy_text(&[up.addr], &all)
}

/// An HTTP/2 client that offers every stream a window of 0 bytes.
async fn shut_window_client(gw: &Gateway) -> h2::client::SendRequest<Bytes> {
    let tls = tls_connect(gw.tls, client_config(&[b"h2"])).await.expect("tls");
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(0)
        .handshake::<_, Bytes>(tls)
        .await
        .expect("h2 handshake");
    tokio::spawn(conn);
    client
}

/// A legitimate client from another address gets a `bytes`-byte answer in full.
async fn served(gw: &Gateway, h2: bool, bytes: usize) {
    let mut c = Client::connect_from(Ipv4Addr::new(127, 0, 0, 2), gw.tls, h2).await.expect("tls");
    let uri = if h2 { "https://localhost/v1/chain/big" } else { "/v1/chain/big" };
    let req = Request::post(uri)
        .header("host", "localhost")
        .header("x-answer-bytes", bytes.to_string())
        .body(Full::new(Bytes::from_static(b"{}")))
        .expect("req");
    let a = c.send(req).await;
    assert_eq!((a.status, a.body.len()), (200, bytes));
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http2_client_that_keeps_its_window_shut_is_reset_refused_and_others_are_served() {
    let up = Upstream::start("a").await;
    // Room for two held answers of this client, not three.
    let gw = Gateway::start(&policy(
        &up,
        &[("send_wait_bytes_per_client = 4194304", "send_wait_bytes_per_client = 131072")],
    ))
    .await;
    let mut client = shut_window_client(&gw).await;
    let ask = |client: &mut h2::client::SendRequest<Bytes>| {
        let req = Request::post("https://localhost/v1/chain/big")
            .header("x-answer-bytes", SMALL.to_string())
            .body(())
            .expect("req");
        client.send_request(req, true).expect("send").0
    };
    let start = Instant::now();
    let answers: Vec<_> = (0..4).map(|_| ask(&mut client)).collect();
    // Each answer ends in a reset: after its headers when it was held, possibly before them
    // when it was refused at once (a reset drops the stream's frames not yet written).
    let outcomes: Vec<_> = answers
        .into_iter()
        .map(|a| {
            tokio::spawn(async move {
                let r = match a.await {
                    Ok(resp) => {
                        assert_eq!(resp.status(), 200);
                        let mut body = resp.into_body();
                        body.data().await.expect("an outcome").map(|d| d.len())
                    }
                    Err(e) => Err(e),
                };
                (r.map_err(|e| e.reason()), start.elapsed())
            })
        })
        .collect();
    // Two answers wait, counted; the other two were refused at once.
    wait_for("two answers held", Duration::from_secs(5), async || {
        gw.metric("rempart_gateway_send_waiting_bytes").await == (2 * SMALL) as f64
            && gw.metric("rempart_gateway_slow_readers_total{reason=\"client_budget\"}").await
                == 2.0
    })
    .await;
    // While its share is full, a new stream of this client is refused before the upstream.
    let before = up.requests();
    let mut extra = ask(&mut client);
    let err = poll_fn(|cx| std::pin::Pin::new(&mut extra).poll(cx)).await.expect_err("refused");
    assert_eq!(err.reason(), Some(Reason::REFUSED_STREAM));
    assert_eq!(up.requests(), before, "a refused stream never reaches the upstream");
    // Everyone else is served meanwhile, HTTP/2 and HTTP/1.1.
    served(&gw, true, SMALL).await;
    served(&gw, false, SMALL).await;

    let mut reset_at = Vec::new();
    let mut cancelled = 0;
    for o in outcomes {
        let (r, at) = o.await.expect("task");
        // A stream refused for want of room is reset once its answer comes (CANCEL), or
        // before it reaches a node when the held answers came first (REFUSED_STREAM, on a
        // loaded machine where the four streams arrive in more than one read).
        match r {
            Err(Some(Reason::CANCEL)) => cancelled += 1,
            Err(Some(Reason::REFUSED_STREAM)) => {}
            other => panic!("no byte is sent past a shut window: {other:?}"),
        }
        reset_at.push(at);
    }
    assert!(cancelled >= 2, "the two held answers are cancelled");
    reset_at.sort();
    // The two held answers are reset at the send timeout, not before.
    assert!(reset_at[2] >= Duration::from_millis(1000), "{reset_at:?}");
    assert!(reset_at[3] < Duration::from_secs(10), "{reset_at:?}");
    assert_eq!(
        gw.metric("rempart_gateway_slow_readers_total{reason=\"stream_timeout\"}").await,
        2.0
    );
    assert_eq!(
        gw.metric("rempart_gateway_slow_readers_total{reason=\"client_budget\"}").await,
        3.0
    );
    assert_eq!(gw.metric("rempart_gateway_send_waiting_bytes").await, 0.0);
    drop(client);
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn slow_readers_that_fill_the_total_do_not_refuse_clients_that_read() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy(
        &up,
        &[
            ("send_timeout_ms = 1000", "send_timeout_ms = 30000"),
            ("send_wait_bytes_per_client = 4194304", "send_wait_bytes_per_client = 131072"),
            ("send_wait_bytes_total = 268435456", "send_wait_bytes_total = 131072"),
        ],
    ))
    .await;
    let mut client = shut_window_client(&gw).await;
    let mut held = Vec::new();
    for _ in 0..2 {
        let req = Request::post("https://localhost/v1/chain/big")
            .header("x-answer-bytes", SMALL.to_string())
            .body(())
            .expect("req");
        held.push(client.send_request(req, true).expect("send").0);
    }
    wait_for("the total filled", Duration::from_secs(5), async || {
        gw.metric("rempart_gateway_send_waiting_bytes").await == (2 * SMALL) as f64
    })
    .await;
    // Clients whose answers fit their window never wait, so a full total does not touch them.
    for _ in 0..3 {
        served(&gw, true, SMALL).await;
    }
    assert_eq!(gw.metric("rempart_gateway_slow_readers_total").await, 0.0);
    drop((held, client));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn an_http1_client_that_stops_reading_is_cut_at_the_send_timeout() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy(&up, &[])).await;
    // A client with a small receive buffer asks for 16 MiB and reads none of it.
    let sock = tokio::net::TcpSocket::new_v4().expect("socket");
    sock.set_recv_buffer_size(4096).expect("rcvbuf");
    let tcp = sock.connect(gw.tls).await.expect("connect");
    let mut tls = tokio_rustls::TlsConnector::from(client_config(&[b"http/1.1"]))
        .connect(rustls::pki_types::ServerName::try_from("localhost").expect("name"), tcp)
        .await
        .expect("tls");
    tls.write_all(
        b"POST /v1/chain/big HTTP/1.1\r\nHost: localhost\r\nx-answer-bytes: 16777216\r\nContent-Length: 2\r\n\r\n{}",
    )
    .await
    .expect("request");
    let start = Instant::now();
    wait_for("the gateway to be blocked on the client", Duration::from_secs(5), async || {
        gw.metric("rempart_gateway_requests_total{class=\"heavy\",status=\"200\"").await == 1.0
    })
    .await;
    served(&gw, false, SMALL).await;
    wait_for("the slow reader cut", Duration::from_secs(10), async || {
        gw.metric("rempart_gateway_slow_readers_total{reason=\"connection_timeout\"}").await == 1.0
    })
    .await;
    let cut = start.elapsed();
    // The idle timeout (60 s) had no part in it.
    assert!(cut >= Duration::from_millis(900) && cut < Duration::from_secs(10), "{cut:?}");
    wait_for("its place freed", Duration::from_secs(5), async || {
        gw.metric("rempart_gateway_connections_open").await == 0.0
    })
    .await;
    drop(tls);
    gw.stop().await;
}
