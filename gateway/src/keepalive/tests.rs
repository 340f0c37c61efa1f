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

#[tokio::test]
async fn a_request_with_no_idle_connection_takes_one_given_back_before_its_own_opens() {
    // A node that serves its first connection only and never accepts another: once its
    // accept queue is full, a new connection to it cannot complete.
    let socket = tokio::net::TcpSocket::new_v4().expect("socket");
    socket.bind("127.0.0.1:0".parse().expect("addr")).expect("bind");
    let listener = socket.listen(1).expect("listen");
    let addr = listener.local_addr().expect("addr");
    let served = tokio::spawn(async move {
        let (tcp, _) = listener.accept().await.expect("accept");
        let svc = service_fn(|_req: Request<Incoming>| async {
            Ok::<_, Infallible>(Response::new(Full::new(Bytes::from_static(b"ok"))))
        });
        let _ = hyper::server::conn::http1::Builder::new()
            .serve_connection(TokioIo::new(tcp), svc)
            .await;
        drop(listener);
    });
    let k = Arc::new(Keepalive::new(1, 1, 8, Duration::from_secs(30)));
    let held = k.request(0, 0, addr, get(addr)).await.expect("first answer");
    let mut fillers = Vec::new();
    for _ in 0..4 {
        let connect = TcpStream::connect(addr);
        if let Ok(Ok(s)) = tokio::time::timeout(Duration::from_millis(200), connect).await {
            fillers.push(s);
        }
    }
    let second = tokio::spawn({
        let k = k.clone();
        async move { fetch(&k, 0, addr).await }
    });
    wait_until_waiting(&k).await;
    // Reading the first answer to its end gives its connection to the waiting request.
    assert_eq!(held.into_body().collect().await.expect("body").to_bytes(), "ok");
    let got = tokio::time::timeout(Duration::from_secs(10), second).await;
    assert_eq!(got.expect("served by the connection given back").expect("join"), "ok");
    served.abort();
}

/// Returns once a request waits for a connection of worker 0 to node 0.
async fn wait_until_waiting(k: &Keepalive) {
    for _ in 0..1000 {
        if !k.list(0).waiters.is_empty() {
            return;
        }
        tokio::task::yield_now().await;
    }
    panic!("no request started waiting");
}

#[tokio::test]
async fn an_idle_connection_the_node_closed_silently_is_not_used() {
    // A node that answers one request per connection without saying it will close, then
    // closes; it reports each close.
    let listener = TcpListener::bind("127.0.0.1:0").await.expect("bind");
    let addr = listener.local_addr().expect("addr");
    let (closed_tx, mut closed) = tokio::sync::mpsc::unbounded_channel();
    let accepted = Arc::new(AtomicUsize::new(0));
    let count = accepted.clone();
    tokio::spawn(async move {
        use tokio::io::{AsyncReadExt, AsyncWriteExt};
        loop {
            let Ok((mut tcp, _)) = listener.accept().await else { return };
            count.fetch_add(1, Ordering::SeqCst);
            let mut head = Vec::new();
            let mut buf = [0u8; 1024];
            while !head.windows(4).any(|w| w == b"\r\n\r\n") {
                match tcp.read(&mut buf).await {
                    Ok(0) | Err(_) => break,
                    Ok(n) => head.extend_from_slice(&buf[..n]),
                }
            }
            let _ = tcp.write_all(b"HTTP/1.1 200 OK\r\ncontent-length: 2\r\n\r\nok").await;
            drop(tcp);
            let _ = closed_tx.send(());
        }
    });
    let k = Arc::new(Keepalive::new(1, 1, 8, Duration::from_secs(1)));
    for round in 1..=3 {
        assert_eq!(fetch(&k, 0, addr).await, "ok");
        closed.recv().await.expect("the node closed its connection");
        assert_eq!(accepted.load(Ordering::SeqCst), round);
    }
}
