use super::*;

fn location(host: Option<&str>, uri: &str, port: u16) -> (StatusCode, Option<String>) {
    let h = host.map(|h| HeaderValue::from_str(h).expect("hv"));
    let r = redirect_target(h.as_ref(), &uri.parse().expect("uri"), port);
    (r.status(), r.headers().get(header::LOCATION).map(|v| v.to_str().expect("ascii").to_owned()))
}

#[test]
fn redirects_keep_host_and_path() {
    assert_eq!(
        location(Some("api.example:8080"), "/v1/chain/get_info?a=1", 8443),
        (
            StatusCode::PERMANENT_REDIRECT,
            Some("https://api.example:8443/v1/chain/get_info?a=1".into())
        )
    );
    assert_eq!(
        location(Some("api.example"), "/", 443),
        (StatusCode::PERMANENT_REDIRECT, Some("https://api.example/".into()))
    );
    assert_eq!(
        location(Some("[::1]:80"), "/x", 8443),
        (StatusCode::PERMANENT_REDIRECT, Some("https://[::1]:8443/x".into()))
    );
    assert_eq!(location(None, "/", 443).0, StatusCode::BAD_REQUEST);
    assert_eq!(location(Some("bad host/x"), "/", 443).0, StatusCode::BAD_REQUEST);
}

/// One poll of `f`.
async fn poll_once<F: std::future::Future + Unpin>(mut f: F) -> std::task::Poll<F::Output> {
    std::future::poll_fn(|cx| std::task::Poll::Ready(std::pin::Pin::new(&mut f).poll(cx))).await
}

#[tokio::test]
async fn a_worker_ahead_of_the_others_waits_for_them_before_accepting() {
    let balance = Arc::new(Balance::new(2));
    // Worker 0 takes two connections while worker 1 has none: it is ahead.
    let first = balance.hold(0);
    assert!(!balance.ahead(0));
    let second = balance.hold(0);
    assert!(balance.ahead(0));
    assert!(!balance.ahead(1));
    let mut turn = std::pin::pin!(balance.turn(0));
    assert!(poll_once(turn.as_mut()).await.is_pending(), "worker 0 must not accept now");
    // Worker 1 catching up gives worker 0 its turn back.
    let other = balance.hold(1);
    assert!(poll_once(turn.as_mut()).await.is_ready());
    // So does a connection of worker 0 closing.
    let third = balance.hold(0);
    assert!(balance.ahead(0));
    let mut turn = std::pin::pin!(balance.turn(0));
    assert!(poll_once(turn.as_mut()).await.is_pending());
    drop(first);
    assert!(poll_once(turn.as_mut()).await.is_ready());
    drop((second, third, other));
    assert!(balance.open.iter().all(|n| n.load(Ordering::Relaxed) == 0));
}
