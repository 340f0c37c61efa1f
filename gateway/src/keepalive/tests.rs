use std::convert::Infallible;
use std::sync::atomic::{AtomicUsize, Ordering};

use http_body_util::{BodyExt, Full};
use hyper::service::service_fn;
use tokio::net::TcpListener;

use super::*;

/// A node that answers `ok` to everything, closing the connection after each answer when
/// `close` is set; counts the connections it accepted.
async fn node(close: bool) -> (SocketAddr, Arc<AtomicUsize>) {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        loop {
            let Ok((tcp, _)) = listener.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            tokio::spawn(async move {
                let svc = service_fn(move |_req: Request<Incoming>| async move {
                    let mut r = Response::new(Full::new(Bytes::from_static(b"ok")));
                    if close {
                        r.headers_mut()
                            .insert(http::header::CONNECTION, "close".parse().expect("v"));
                    }
                    Ok::<_, Infallible>(r)
                });
                let _ = hyper::server::conn::http1::Builder::new()
                    .serve_connection(TokioIo::new(tcp), svc)
                    .await;
            });
        }
    });
    (addr, accepted)
}

fn get(addr: SocketAddr) -> Request<UpBody> {
    Request::get("/v1/chain/get_info")
        .header(http::header::HOST, addr.to_string())
        .body(Full::new(Bytes::new()).map_err(|never| match never {}).boxed())
        .expect("request")
}

async fn fetch(k: &Arc<Keepalive>, worker: usize, addr: SocketAddr) -> Bytes {
    let resp = k.request(worker, 0, addr, get(addr)).await.expect("answer");
    resp.into_body().collect().await.expect("body").to_bytes()
}

#[tokio::test]
async fn a_connection_read_to_its_end_is_used_again_by_the_same_worker_only() {
    let (addr, accepted) = node(false).await;
    let k = Arc::new(Keepalive::new(1, 2, 8, Duration::from_secs(1)));
    for _ in 0..5 {
        assert_eq!(fetch(&k, 0, addr).await, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 1);
    assert_eq!(fetch(&k, 1, addr).await, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2, "worker 1 has its own connections");
}

#[tokio::test]
async fn an_answer_dropped_unread_does_not_give_its_connection_back() {
    let (addr, accepted) = node(false).await;
    let k = Arc::new(Keepalive::new(1, 1, 8, Duration::from_secs(1)));
    let mut big = get(addr);
    *big.uri_mut() = "/v1/chain/get_block".parse().expect("uri");
    let resp = k.request(0, 0, addr, big).await.expect("answer");
    drop(resp);
    assert_eq!(fetch(&k, 0, addr).await, "ok");
    assert_eq!(accepted.load(Ordering::SeqCst), 2);
}

#[tokio::test]
async fn connections_the_node_closes_are_replaced_without_failing_a_request() {
    let (addr, accepted) = node(true).await;
    let k = Arc::new(Keepalive::new(1, 1, 8, Duration::from_secs(1)));
    for _ in 0..3 {
        assert_eq!(fetch(&k, 0, addr).await, "ok");
    }
    assert_eq!(accepted.load(Ordering::SeqCst), 3);
}

#[tokio::test]
async fn a_node_that_is_not_listening_is_a_connect_failure() {
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    drop(listener);
    let k = Arc::new(Keepalive::new(1, 1, 8, Duration::from_secs(1)));
    let err = k.request(0, 0, addr, get(addr)).await.expect_err("nobody listens");
    assert!(err.is_connect(), "{err}");
}
