use std::io::{Read, Write};
use std::net::TcpListener;

use super::*;

/// A peer speaking etcd's HTTP: answers each request with the next of `answers` (status, body)
/// on one kept-alive connection.
fn peer(answers: Vec<(u16, &'static str)>) -> SocketAddr {
    let listener = TcpListener::bind("127.0.0.1:0").unwrap();
    let addr = listener.local_addr().unwrap();
    std::thread::spawn(move || {
        let (mut s, _) = listener.accept().unwrap();
        for (status, body) in answers {
            let mut buf = Vec::new();
            let mut byte = [0u8; 1];
            // The request: its head, then its Content-Length body.
            while !buf.ends_with(b"\r\n\r\n") {
                s.read_exact(&mut byte).unwrap();
                buf.push(byte[0]);
            }
            let head = String::from_utf8(buf).unwrap();
            let len: usize = head
                .lines()
                .find_map(|l| l.strip_prefix("Content-Length: "))
                .unwrap()
                .trim()
                .parse()
                .unwrap();
            let mut body_in = vec![0u8; len];
            s.read_exact(&mut body_in).unwrap();
            let answer = format!(
                "HTTP/1.1 {status} X\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\r\n{body}",
                body.len()
            );
            s.write_all(answer.as_bytes()).unwrap();
        }
    });
    addr
}

fn config(etcd: SocketAddr) -> SharedGuardConfig {
    SharedGuardConfig {
        etcd,
        prefix: "/t/".into(),
        name: "a".into(),
        timeout: Duration::from_secs(5),
    }
}

#[test]
fn an_error_status_refuses_the_request_and_keeps_the_connection() {
    let etcd = peer(vec![(200, "{}"), (503, "{\"error\":\"no leader\"}"), (200, "{}")]);
    let guard = SharedGuard::connect(&config(etcd)).unwrap();
    let err = guard.ping().unwrap_err().to_string();
    assert!(err.contains("etcd answered 503") && err.contains("no leader"), "{err}");
    assert!(!guard.lost.load(Ordering::SeqCst), "the connection is not given up");
    guard.ping().expect("the same connection serves the next request");
}

#[test]
fn a_closed_connection_is_lost_for_good() {
    let etcd = peer(vec![(200, "{}")]);
    let guard = SharedGuard::connect(&config(etcd)).unwrap();
    let err = guard.ping().unwrap_err().to_string();
    assert!(err.contains("cannot be asked"), "{err}");
    assert!(guard.lost.load(Ordering::SeqCst));
    let again = guard.ping().unwrap_err().to_string();
    assert!(again.contains("lost earlier"), "{again}");
}
