//! Request smuggling corpus over a raw TLS HTTP/1.1 stream: each is refused with 400 and never
//! reaches the upstream.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

use crate::support::*;

async fn raw(gw: &Gateway, bytes: &[u8]) -> String {
    let mut s = tls_connect(gw.tls, client_config(&[b"http/1.1"])).await.expect("tls");
    s.write_all(bytes).await.expect("write");
    let mut out = Vec::new();
    let _ = tokio::time::timeout(Duration::from_secs(5), s.read_to_end(&mut out))
        .await
        .expect("the gateway must answer and close");
    String::from_utf8_lossy(&out).into_owned()
}

const H: &str = "POST /v1/chain/get_block HTTP/1.1\r\nHost: localhost\r\n";

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn smuggling_corpus_is_refused_with_400_and_never_reaches_the_upstream() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    let corpus: Vec<(&str, String)> = vec![
        ("CL.TE", format!("{H}Content-Length: 6\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\nG")),
        (
            "TE.CL",
            format!(
                "{H}Transfer-Encoding: chunked\r\nContent-Length: 3\r\n\r\n8\r\nSMUGGLED\r\n0\r\n\r\n"
            ),
        ),
        (
            "TE.TE duplicate",
            format!("{H}Transfer-Encoding: chunked\r\nTransfer-Encoding: x\r\n\r\n0\r\n\r\n"),
        ),
        ("TE.TE list", format!("{H}Transfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n")),
        ("TE.TE xchunked", format!("{H}Transfer-Encoding: xchunked\r\n\r\n0\r\n\r\n")),
        ("TE.TE space before colon", format!("{H}Transfer-Encoding : chunked\r\n\r\n0\r\n\r\n")),
        ("TE obs-fold", format!("{H}Transfer-Encoding:\r\n chunked\r\n\r\n0\r\n\r\n")),
        ("duplicate CL same", format!("{H}Content-Length: 2\r\nContent-Length: 2\r\n\r\n{{}}")),
        ("duplicate CL differ", format!("{H}Content-Length: 2\r\nContent-Length: 5\r\n\r\n{{}}")),
        ("invalid CL sign", format!("{H}Content-Length: +2\r\n\r\n{{}}")),
        ("invalid CL list", format!("{H}Content-Length: 2, 2\r\n\r\n{{}}")),
        ("invalid CL hex", format!("{H}Content-Length: 0x2\r\n\r\n{{}}")),
        ("bad chunk size", format!("{H}Transfer-Encoding: chunked\r\n\r\nzz\r\n{{}}\r\n0\r\n\r\n")),
        (
            "negative chunk size",
            format!("{H}Transfer-Encoding: chunked\r\n\r\n-2\r\n{{}}\r\n0\r\n\r\n"),
        ),
        (
            "chunk without CRLF",
            format!("{H}Transfer-Encoding: chunked\r\n\r\n2\r\n{{}}XX0\r\n\r\n"),
        ),
        ("obs-fold", format!("{H}X-A: 1\r\n folded\r\nContent-Length: 2\r\n\r\n{{}}")),
        (
            "bare LF",
            "POST /v1/chain/get_block HTTP/1.1\nHost: localhost\nContent-Length: 2\n\n{}"
                .to_owned(),
        ),
    ];
    for (name, bytes) in &corpus {
        let answer = raw(&gw, bytes.as_bytes()).await;
        assert!(answer.starts_with("HTTP/1.1 400"), "{name}: {answer:?}");
    }
    assert_eq!(up.requests(), 0, "a smuggling attempt reached the upstream");
    gw.stop().await;
}

#[tokio::test(flavor = "multi_thread", worker_threads = 2)]
async fn a_clean_request_before_a_smuggled_one_is_served_and_the_rest_refused() {
    let up = Upstream::start("a").await;
    let gw = Gateway::start(&policy_text(&[up.addr], &[])).await;
    let stream = format!(
        "{H}Content-Length: 2\r\n\r\n{{}}{H}Content-Length: 5\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n{H}Content-Length: 2\r\n\r\n{{}}"
    );
    let answer = raw(&gw, stream.as_bytes()).await;
    let first = answer.find("HTTP/1.1 200").expect("first served");
    let second = answer.find("HTTP/1.1 400").expect("second refused");
    assert!(first < second, "{answer}");
    assert_eq!(
        answer.matches("HTTP/1.1 ").count(),
        2,
        "the connection must close after the 400: {answer}"
    );
    assert_eq!(up.requests(), 1);
    gw.stop().await;
}
