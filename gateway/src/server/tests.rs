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
