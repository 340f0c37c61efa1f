use super::*;

fn scan(bytes: &[u8]) -> Option<Flag> {
    Scanner::new(8192).feed(bytes)
}

/// Feeds one byte at a time, as a slow client would send them.
fn scan_bytewise(bytes: &[u8]) -> Option<Flag> {
    let mut s = Scanner::new(8192);
    bytes.iter().find_map(|b| s.feed(std::slice::from_ref(b)))
}

#[test]
fn clean_requests_pass_even_pipelined() {
    let req = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\n\r\nhello\
GET /b HTTP/1.1\r\nHost: x\r\n\r\n\
POST /c HTTP/1.1\r\nHost: x\r\nTransfer-Encoding: chunked\r\n\r\n5;ext=1\r\nhello\r\n0\r\nX-T: 1\r\n\r\n\
GET /d HTTP/1.1\r\nHost: x\r\n\r\n";
    assert_eq!(scan(req), None);
    assert_eq!(scan_bytewise(req), None);
}

#[test]
fn smuggling_corpus_is_flagged_at_the_right_request() {
    let ok = b"POST /a HTTP/1.1\r\nHost: x\r\nContent-Length: 3\r\n\r\nabc".to_vec();
    let cases: &[(&[u8], &str)] = &[
        (b"POST / HTTP/1.1\r\nContent-Length: 4\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "both"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nContent-Length: 4\r\n\r\n0\r\n\r\n", "both"),
        (b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 4\r\n\r\nabcd", "more than one Content-Length"),
        (b"POST / HTTP/1.1\r\nContent-Length: 4\r\nContent-Length: 5\r\n\r\nabcd", "more than one Content-Length"),
        (b"POST / HTTP/1.1\r\nContent-Length: +4\r\n\r\nabcd", "invalid Content-Length"),
        (b"POST / HTTP/1.1\r\nContent-Length: 4, 4\r\n\r\nabcd", "invalid Content-Length"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: identity, chunked\r\n\r\n0\r\n\r\n", "exactly chunked"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: xchunked\r\n\r\n0\r\n\r\n", "exactly chunked"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\nTransfer-Encoding: chunked\r\n\r\n0\r\n\r\n", "more than one Transfer-Encoding"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding : chunked\r\n\r\n0\r\n\r\n", "whitespace"),
        (b"POST / HTTP/1.1\r\nX-A: 1\r\n folded\r\n\r\n", "obs-fold"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", "invalid chunk size"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n-1\r\n", "invalid chunk size"),
        (b"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n3\r\nabcX\r\n", "CRLF"),
        (b"POST / HTTP/1.1\nHost: x\n\n", "bare LF"),
    ];
    for (bad, why) in cases {
        let mut stream = ok.clone();
        stream.extend_from_slice(bad);
        for flag in [scan(&stream), scan_bytewise(&stream)] {
            let flag =
                flag.unwrap_or_else(|| panic!("not flagged: {}", String::from_utf8_lossy(bad)));
            assert_eq!(flag.request, 1, "{}", String::from_utf8_lossy(bad));
            assert!(
                flag.reason.contains(why),
                "{} -> {}",
                String::from_utf8_lossy(bad),
                flag.reason
            );
        }
    }
}

#[test]
fn oversized_head_stops_judging() {
    let mut s = Scanner::new(64);
    let mut head = b"GET / HTTP/1.1\r\nX: ".to_vec();
    head.extend(std::iter::repeat_n(b'a', 200));
    assert_eq!(s.feed(&head), None);
    assert_eq!(s.feed(b"\r\nContent-Length: 1\r\nTransfer-Encoding: chunked\r\n\r\n"), None);
}
