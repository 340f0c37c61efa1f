//! TLS: versions, ALPN, forward-secret suites, resumption, SNI default, redirect listener.

use rustls::{CipherSuite, HandshakeKind, ProtocolVersion};
use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn handshake_h1_and_h2_with_the_dev_ca() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    for (alpn, want) in [(&b"h2"[..], &b"h2"[..]), (b"http/1.1", b"http/1.1")] {
        let s = tls_connect(gw.tls, client_config(&[alpn])).await.expect("handshake");
        let (_, conn) = s.get_ref();
        assert_eq!(conn.alpn_protocol(), Some(want));
        assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_3));
    }
    for h2 in [false, true] {
        let mut c = Client::connect(gw.tls, h2).await;
        let a = c.post("/v1/chain/get_block", "{}").await;
        assert_eq!(a.status, 200, "{}", a.body);
        assert_eq!(a.json()["node"], "a");
    }
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn tls12_uses_ecdhe_aead_and_sessions_resume() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    let cfg12 = client_config_versions(&[b"http/1.1"], &[&rustls::version::TLS12]);
    let s = tls_connect(gw.tls, cfg12.clone()).await.expect("tls 1.2");
    let (_, conn) = s.get_ref();
    assert_eq!(conn.protocol_version(), Some(ProtocolVersion::TLSv1_2));
    let suite = conn.negotiated_cipher_suite().expect("suite").suite();
    assert!(
        matches!(
            suite,
            CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_256_GCM_SHA384
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_AES_128_GCM_SHA256
                | CipherSuite::TLS_ECDHE_ECDSA_WITH_CHACHA20_POLY1305_SHA256
        ),
        "{suite:?}"
    );
    assert_eq!(conn.handshake_kind(), Some(HandshakeKind::Full));
    drop(s);
    let s = tls_connect(gw.tls, cfg12).await.expect("tls 1.2 again");
    assert_eq!(s.get_ref().1.handshake_kind(), Some(HandshakeKind::Resumed));

    // TLS 1.3: the ticket arrives after the handshake; one request makes sure it was read.
    let cfg13 = client_config(&[b"http/1.1"]);
    let mut s = tls_connect(gw.tls, cfg13.clone()).await.expect("tls 1.3");
    s.write_all(
        b"GET /v1/chain/get_block HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n",
    )
    .await
    .expect("write");
    let mut out = Vec::new();
    s.read_to_end(&mut out).await.expect("read");
    assert!(out.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&out));
    let s = tls_connect(gw.tls, cfg13).await.expect("tls 1.3 again");
    assert_eq!(s.get_ref().1.handshake_kind(), Some(HandshakeKind::Resumed));
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn plain_listener_only_redirects() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    let (status, _) = plain_get(gw.redirect, "/v1/chain/get_info").await;
    assert_eq!(status, 308);
    assert_eq!(up.requests(), 0);
    gw.stop().await;
}
