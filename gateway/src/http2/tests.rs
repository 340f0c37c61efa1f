use std::future::poll_fn;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};

use super::*;
use crate::conn::{ConnGuard, ConnTracker};
use crate::limit::ClientKey;

/// A connection's place, and the tracker counting what waits.
fn admitted() -> (ConnGuard, Arc<ConnTracker>) {
    let tracker = Arc::new(ConnTracker::default());
    let key = ClientKey::of("192.0.2.1".parse().expect("ip"), 32, 64);
    let guard: ConnGuard = tracker.admit(key, 8, 8).expect("admitted");
    (guard, tracker)
}

/// How answers may wait in these tests, and the tracker counting what waits.
fn sending(per_client: usize, total: usize, timeout: Duration) -> (Sending, Arc<ConnTracker>) {
    let (guard, tracker) = admitted();
    let s = Sending { account: Some(guard.send_account(per_client, total)), timeout };
    (s, tracker)
}

/// Generous bounds: nothing in the test should reach them.
fn roomy() -> Sending {
    sending(usize::MAX, usize::MAX, Duration::from_secs(3600)).0
}

/// An `h2` client and server joined in memory; the server side's connection is driven by a
/// task that also hands out the accepted streams.
async fn pair() -> (
    h2::client::SendRequest<Bytes>,
    tokio::sync::mpsc::Receiver<(Request<RecvStream>, SendResponse<Bytes>)>,
) {
    pair_with_window(65_535).await
}

/// As [`pair`], with the client offering `window` bytes per stream.
async fn pair_with_window(
    window: u32,
) -> (
    h2::client::SendRequest<Bytes>,
    tokio::sync::mpsc::Receiver<(Request<RecvStream>, SendResponse<Bytes>)>,
) {
    let (a, b) = tokio::io::duplex(64 * 1024);
    let (accepted, streams) = tokio::sync::mpsc::channel(4);
    tokio::spawn(async move {
        let mut conn = h2::server::Builder::new()
            .initial_window_size(16 * 1024)
            .initial_connection_window_size(16 * 1024)
            .handshake::<_, Bytes>(b)
            .await
            .expect("server handshake");
        while let Some(Ok(s)) = conn.accept().await {
            let _ = accepted.send(s).await;
        }
    });
    let (client, conn) = h2::client::Builder::new()
        .initial_window_size(window)
        .handshake(a)
        .await
        .expect("client handshake");
    tokio::spawn(conn);
    (client, streams)
}

/// Everything the client receives on `body`, giving the window back as it reads.
async fn read_all(mut body: RecvStream) -> Vec<u8> {
    let mut got = Vec::new();
    while let Some(chunk) = body.data().await {
        let chunk = chunk.expect("chunk");
        let _ = body.flow_control().release_capacity(chunk.len());
        got.extend_from_slice(&chunk);
    }
    got
}

#[tokio::test]
async fn a_request_body_larger_than_the_window_arrives_whole_with_its_trailers() {
    let (mut client, mut streams) = pair().await;
    let req = Request::post("https://localhost/v1/chain/push_transaction").body(()).expect("req");
    let (_resp, mut tx) = client.send_request(req, false).expect("send");
    let body = vec![7u8; 100 * 1024];
    let sender = tokio::spawn(async move {
        let mut rest = Bytes::from(body);
        while !rest.is_empty() {
            tx.reserve_capacity(rest.len());
            let n = poll_fn(|cx| tx.poll_capacity(cx)).await.expect("open").expect("capacity");
            tx.send_data(rest.split_to(n.min(rest.len())), false).expect("data");
        }
        let mut trailers = HeaderMap::new();
        trailers.insert("x-check", "done".parse().expect("value"));
        tx.send_trailers(trailers).expect("trailers");
    });
    let (req, _respond) = streams.recv().await.expect("a stream");
    let collected = RecvBody::new(req.into_body()).collect().await.expect("body");
    let trailers = collected.trailers().cloned();
    assert_eq!(collected.to_bytes().len(), 100 * 1024);
    assert_eq!(trailers.and_then(|t| t.get("x-check").cloned()).expect("trailer"), "done");
    sender.await.expect("sender");
}

#[tokio::test]
async fn an_answer_leaves_with_its_length_and_without_connection_headers() {
    let (mut client, mut streams) = pair().await;
    let req = Request::get("https://localhost/v1/chain/get_info").body(()).expect("req");
    let (resp, _) = client.send_request(req, true).expect("send");
    let (_req, mut respond) = streams.recv().await.expect("a stream");
    let mut answer = Response::new(
        Full::new(Bytes::from_static(b"{\"ok\":true}")).map_err(|never| match never {}).boxed(),
    );
    answer.headers_mut().insert(header::CONNECTION, "close".parse().expect("value"));
    answer.headers_mut().insert("keep-alive", "timeout=5".parse().expect("value"));
    send_response(&mut respond, answer, &roomy()).await.expect("sent");
    let resp = resp.await.expect("answer");
    assert_eq!(resp.status(), StatusCode::OK);
    assert_eq!(resp.headers().get(header::CONTENT_LENGTH).expect("length"), "11");
    assert!(resp.headers().get(header::CONNECTION).is_none());
    assert!(resp.headers().get("keep-alive").is_none());
    assert_eq!(read_all(resp.into_body()).await, b"{\"ok\":true}");
}

#[tokio::test]
async fn a_streamed_answer_larger_than_the_window_waits_for_the_client() {
    let (mut client, mut streams) = pair().await;
    let req = Request::get("https://localhost/v1/chain/get_block").body(()).expect("req");
    let (resp, _) = client.send_request(req, true).expect("send");
    let (_req, mut respond) = streams.recv().await.expect("a stream");
    let chunks = (0..8).map(|_| Ok::<_, BoxError>(Frame::data(Bytes::from(vec![1u8; 32 * 1024]))));
    let answer = Response::new(BodyExt::boxed(StreamBody::new(futures_util::stream::iter(chunks))));
    let sending = tokio::spawn(async move { send_response(&mut respond, answer, &roomy()).await });
    let resp = resp.await.expect("answer");
    assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
    assert_eq!(read_all(resp.into_body()).await.len(), 8 * 32 * 1024);
    assert!(sending.await.expect("task").is_ok());
}

/// A small answer, as the gateway holds it: `len` bytes read whole from the upstream.
fn whole(len: usize) -> Response<RespBody> {
    Response::new(Full::new(Bytes::from(vec![b'x'; len])).map_err(|never| match never {}).boxed())
}

#[tokio::test(start_paused = true)]
async fn an_answer_the_client_keeps_its_window_shut_on_is_reset_at_the_send_timeout() {
    let (mut client, mut streams) = pair_with_window(0).await;
    let req = Request::get("https://localhost/v1/chain/get_block").body(()).expect("req");
    let (resp, _) = client.send_request(req, true).expect("send");
    let (_req, mut respond) = streams.recv().await.expect("a stream");
    let (s, tracker) = sending(1 << 20, 1 << 20, Duration::from_secs(30));
    let start = tokio::time::Instant::now();
    let server = tokio::spawn(async move {
        let r = send_response(&mut respond, whole(60_000), &s).await;
        (r, tracker)
    });
    let resp = resp.await.expect("headers arrive");
    let mut body = resp.into_body();
    let err = body.data().await.expect("an outcome").expect_err("reset");
    assert_eq!(err.reason(), Some(Reason::CANCEL));
    let (r, tracker) = server.await.expect("task");
    assert!(matches!(r, Err(SendFailure::Slow(SlowReader::Timeout))), "{r:?}");
    assert_eq!(start.elapsed(), Duration::from_secs(30));
    assert_eq!(tracker.waiting(), 0, "the held bytes are given back");
}

#[tokio::test(start_paused = true)]
async fn what_the_window_does_not_take_waits_counted_and_leaves_when_it_opens() {
    let (mut client, mut streams) = pair_with_window(16 * 1024).await;
    let req = Request::get("https://localhost/v1/chain/get_block").body(()).expect("req");
    let (resp, _) = client.send_request(req, true).expect("send");
    let (_req, mut respond) = streams.recv().await.expect("a stream");
    let (s, tracker) = sending(1 << 20, 1 << 20, Duration::from_secs(30));
    let watch = tracker.clone();
    let server = tokio::spawn(async move { send_response(&mut respond, whole(60_000), &s).await });
    let resp = resp.await.expect("headers arrive");
    let mut body = resp.into_body();
    // The first window's worth arrives; the rest of the answer waits at the gateway, counted.
    let first = body.data().await.expect("data").expect("chunk");
    assert_eq!(first.len(), 16 * 1024);
    assert_eq!(watch.waiting(), 60_000 - 16 * 1024);
    let _ = body.flow_control().release_capacity(first.len());
    let rest = read_all(body).await;
    assert_eq!(first.len() + rest.len(), 60_000);
    assert!(server.await.expect("task").is_ok());
    assert_eq!(watch.waiting(), 0);
}

#[tokio::test]
async fn a_client_past_its_share_of_held_answers_is_refused_at_once() {
    let (mut client, mut streams) = pair_with_window(0).await;
    let (guard, tracker) = admitted();
    let timeout = Duration::from_secs(30);
    let s = Arc::new(Sending { account: Some(guard.send_account(100_000, 1 << 20)), timeout });
    let mut answers = Vec::new();
    let mut servers = Vec::new();
    for _ in 0..2 {
        let req = Request::get("https://localhost/v1/chain/get_block").body(()).expect("req");
        let (resp, _) = client.send_request(req, true).expect("send");
        let (_req, mut respond) = streams.recv().await.expect("a stream");
        let s = s.clone();
        servers.push(tokio::spawn(
            async move { send_response(&mut respond, whole(60_000), &s).await },
        ));
        answers.push(resp);
        // The first stream's bytes are counted before the second asks.
        while tracker.waiting() == 0 {
            tokio::task::yield_now().await;
        }
    }
    let second = servers.pop().expect("second");
    let r = second.await.expect("task");
    assert!(matches!(r, Err(SendFailure::Slow(SlowReader::ClientBudget))), "{r:?}");
    assert_eq!(tracker.waiting(), 60_000, "only the first stream's bytes wait");
    // Another connection of the same client, under a total the first answer nearly fills.
    let s2 = Sending { account: Some(guard.send_account(1 << 20, 100_000)), timeout };
    let req = Request::get("https://localhost/v1/chain/get_block").body(()).expect("req");
    let (_resp, _) = client.send_request(req, true).expect("send");
    let (_req, mut respond) = streams.recv().await.expect("a stream");
    let r = send_response(&mut respond, whole(60_000), &s2).await;
    assert!(matches!(r, Err(SendFailure::Slow(SlowReader::TotalBudget))), "{r:?}");
    servers.pop().expect("first").abort();
}
