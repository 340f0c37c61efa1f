use super::*;

#[test]
fn endpoints_parse() {
    assert_eq!(
        "unix:/run/s.sock".parse::<Endpoint>().unwrap(),
        Endpoint::Unix("/run/s.sock".into())
    );
    assert_eq!("10.98.0.1:7010".parse::<Endpoint>().unwrap().to_string(), "10.98.0.1:7010");
    assert!("unix:".parse::<Endpoint>().is_err());
    assert!("nowhere".parse::<Endpoint>().is_err());
}

#[tokio::test]
async fn unreachable_signer_times_out_with_the_last_error() {
    let dir = tempfile::tempdir().unwrap();
    let mut c = Client::new(Endpoint::Unix(dir.path().join("none.sock")));
    let deadline = Instant::now() + std::time::Duration::from_millis(60);
    let err = c.status(deadline).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { last: Some(_), .. }), "{err}");
}

#[tokio::test]
async fn a_request_given_up_on_is_reset_not_left_to_be_delivered() {
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    let (gave_up, wait) = tokio::sync::oneshot::channel::<()>();
    // A signer that accepts and never answers (as if the answer were lost in a down tunnel);
    // once the client gave up it reads what reached it.
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        wait.await.unwrap();
        let mut buf = Vec::new();
        stream.read_to_end(&mut buf).await
    });
    let mut c = Client::new(Endpoint::Tcp(addr));
    let deadline = Instant::now() + std::time::Duration::from_millis(100);
    let err = c.status(deadline).await.unwrap_err();
    assert!(matches!(err, ClientError::Timeout { .. }), "{err}");
    gave_up.send(()).unwrap();
    // The abandoned connection ends with a reset, not a graceful close after its data.
    let read = server.await.unwrap();
    let e = read.expect_err("the connection was reset");
    assert_eq!(e.kind(), std::io::ErrorKind::ConnectionReset, "{e}");
}

#[tokio::test]
async fn a_busy_answer_is_retried_not_taken_for_a_refusal() {
    use rempart_core::protocol::ErrorResponse;
    let listener = tokio::net::TcpListener::bind("127.0.0.1:0").await.unwrap();
    let addr = listener.local_addr().unwrap();
    // A signer whose time limit ran out on the first try, and that answers the second.
    let server = tokio::spawn(async move {
        let (mut stream, _) = listener.accept().await.unwrap();
        let mut decoder = FrameDecoder::new();
        let mut pending = Vec::new();
        let mut buf = [0u8; 4096];
        let mut seen = 0;
        while seen < 2 {
            let n = stream.read(&mut buf).await.unwrap();
            assert!(n > 0, "the client closed before its second try");
            pending.extend_from_slice(&buf[..n]);
            let mut input = &pending[..];
            while let Some(Request::Status { request_id }) = decoder.decode(&mut input).unwrap() {
                seen += 1;
                let resp = if seen == 1 {
                    Response::Error(ErrorResponse {
                        request_id,
                        code: ErrorCode::Busy,
                        message: "request timed out inside the signer".into(),
                    })
                } else {
                    Response::Status(StatusResponse {
                        request_id,
                        paused: false,
                        signatures: 7,
                        refusals: 0,
                        last_signed: Vec::new(),
                        tunnel: Vec::new(),
                    })
                };
                stream.write_all(&encode_frame(&resp).unwrap()).await.unwrap();
            }
            let used = pending.len() - input.len();
            pending.drain(..used);
        }
        seen
    });
    let mut c = Client::new(Endpoint::Tcp(addr));
    let deadline = Instant::now() + std::time::Duration::from_secs(10);
    let status = c.status(deadline).await.unwrap();
    assert_eq!(status.signatures, 7);
    assert_eq!(server.await.unwrap(), 2);
}
