use std::future::poll_fn;

use bytes::Bytes;
use http::{HeaderMap, Request, Response, StatusCode, header};
use http_body_util::{BodyExt, Full, StreamBody};

use super::*;

/// An `h2` client and server joined in memory; the server side's connection is driven by a
/// task that also hands out the accepted streams.
async fn pair() -> (
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
    let (client, conn) = h2::client::handshake(a).await.expect("client handshake");
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
    send_response(&mut respond, answer).await.expect("sent");
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
    let sending = tokio::spawn(async move { send_response(&mut respond, answer).await });
    let resp = resp.await.expect("answer");
    assert!(resp.headers().get(header::CONTENT_LENGTH).is_none());
    assert_eq!(read_all(resp.into_body()).await.len(), 8 * 32 * 1024);
    sending.await.expect("task").expect("sent");
}
