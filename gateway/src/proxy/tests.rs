use super::*;

#[test]
fn hop_by_hop_and_connection_named_headers_are_stripped() {
    let mut h = HeaderMap::new();
    for (k, v) in [
        ("connection", "keep-alive, X-Secret"),
        ("keep-alive", "timeout=5"),
        ("proxy-authorization", "Basic x"),
        ("proxy-connection", "keep-alive"),
        ("te", "trailers"),
        ("trailer", "x"),
        ("transfer-encoding", "chunked"),
        ("upgrade", "websocket"),
        ("x-secret", "1"),
        ("content-type", "application/json"),
    ] {
        h.append(HeaderName::from_static(k), HeaderValue::from_static(v));
    }
    strip_hop_by_hop(&mut h);
    let left: Vec<&str> = h.keys().map(HeaderName::as_str).collect();
    assert_eq!(left, ["content-type"]);
}

#[test]
fn upstream_request_sets_xff_from_peer_and_drops_client_values() {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/chain/get_info?x=1")
        .header("x-forwarded-for", "6.6.6.6")
        .header("forwarded", "for=6.6.6.6")
        .header("x-real-ip", "6.6.6.6")
        .header("host", "api.example")
        .header("content-length", "2")
        .body(())
        .expect("req");
    let (parts, ()) = req.into_parts();
    let peer: SocketAddr = "203.0.113.7:40000".parse().expect("peer");
    let ctx = ConnCtx::new(peer, ClientKey::of(peer.ip(), 32, 64), false, None);
    let up = upstream_request(
        &parts,
        &"10.0.0.5:8888".parse().expect("authority"),
        &ctx.forwarded_for,
        Bytes::from_static(b"{}"),
    )
    .expect("up");
    assert_eq!(up.uri(), "/v1/chain/get_info?x=1");
    let xff: Vec<_> = up.headers().get_all("x-forwarded-for").iter().collect();
    assert_eq!(xff, ["203.0.113.7"]);
    assert!(up.headers().get("forwarded").is_none());
    assert!(up.headers().get("x-real-ip").is_none());
    assert!(up.headers().get("content-length").is_none());
    assert_eq!(up.headers()["host"], "api.example");
    assert_eq!(up.version(), Version::HTTP_11);
}

#[test]
fn upstream_request_without_a_host_names_the_node() {
    let (parts, ()) = Request::get("/v1/chain/get_info").body(()).expect("req").into_parts();
    let peer: SocketAddr = "203.0.113.7:40000".parse().expect("peer");
    let ctx = ConnCtx::new(peer, ClientKey::of(peer.ip(), 32, 64), false, None);
    let node = "10.0.0.5:8888".parse().expect("authority");
    let up = upstream_request(&parts, &node, &ctx.forwarded_for, Bytes::new()).expect("up");
    assert_eq!(up.headers()["host"], "10.0.0.5:8888");
}

#[test]
fn upstream_request_drops_hop_by_hop_and_keeps_repeated_headers_in_order() {
    let req = Request::builder()
        .method(Method::GET)
        .uri("/v1/chain/get_info")
        .header("connection", "x-secret")
        .header("x-secret", "1")
        .header("transfer-encoding", "chunked")
        .header("proxy-authorization", "Basic x")
        .header("x-forwarded-host", "evil.example")
        .header("accept", "application/json")
        .header("accept", "text/plain")
        .header("host", "api.example")
        .body(())
        .expect("req");
    let (parts, ()) = req.into_parts();
    let peer: SocketAddr = "198.51.100.1:1".parse().expect("peer");
    let ctx = ConnCtx::new(peer, ClientKey::of(peer.ip(), 32, 64), false, None);
    let node = "10.0.0.5:8888".parse().expect("authority");
    let up = upstream_request(&parts, &node, &ctx.forwarded_for, Bytes::new()).expect("up");
    let mut left: Vec<&str> = up.headers().keys().map(HeaderName::as_str).collect();
    left.sort_unstable();
    assert_eq!(left, ["accept", "host", "x-forwarded-for", "x-forwarded-proto"]);
    let accept: Vec<_> = up.headers().get_all("accept").iter().collect();
    assert_eq!(accept, ["application/json", "text/plain"]);
    assert_eq!(up.headers()["x-forwarded-proto"], "https");
}
