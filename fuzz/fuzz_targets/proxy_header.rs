//! Fuzzes the gateway's PROXY protocol v2 reader (`proxy_header::read`). It must never panic,
//! never read past the header (at most 16 + 512 bytes; the TLS handshake that follows must be
//! left untouched), and give back the client address of every header `encode` writes.
#![no_main]

use std::future::Future;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::pin::pin;
use std::task::{Context, Poll, Waker};

use libfuzzer_sys::fuzz_target;
use rempart_gateway::proxy_header::{ProxyHeaderError, encode, read};

const PEER: SocketAddr = SocketAddr::new(IpAddr::V4(Ipv4Addr::new(10, 0, 0, 1)), 40000);

/// Reads one header from `input`: the result and how many bytes were consumed. A byte slice
/// never waits, so one poll finishes the read.
fn read_all(input: &[u8]) -> (Result<SocketAddr, ProxyHeaderError>, usize) {
    let mut rest = input;
    let result = {
        let mut fut = pin!(read(&mut rest, PEER));
        match fut.as_mut().poll(&mut Context::from_waker(Waker::noop())) {
            Poll::Ready(r) => r,
            Poll::Pending => panic!("reading from a byte slice waited"),
        }
    };
    (result, input.len() - rest.len())
}

fuzz_target!(|data: &[u8]| {
    let (result, used) = read_all(data);
    assert!(used <= 16 + 512, "read {used} bytes of a header");
    if result.is_ok() {
        let block = usize::from(u16::from_be_bytes([data[14], data[15]]));
        assert_eq!(used, 16 + block, "an accepted header was not read exactly");
    }

    // Addresses from the input, through `encode` and back, with the input after it untouched.
    if data.len() >= 36 {
        let v6 = |b: &[u8]| Ipv6Addr::from(<[u8; 16]>::try_from(b).expect("16 bytes"));
        let port = |b: &[u8]| u16::from_be_bytes([b[0], b[1]]);
        let (client, server) = if data[0] & 1 == 0 {
            let v4 = |b: &[u8]| Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            (
                SocketAddr::new(IpAddr::V4(v4(&data[..4])), port(&data[32..])),
                SocketAddr::new(IpAddr::V4(v4(&data[4..8])), port(&data[34..])),
            )
        } else {
            (
                SocketAddr::new(IpAddr::V6(v6(&data[..16])), port(&data[32..])),
                SocketAddr::new(IpAddr::V6(v6(&data[16..32])), port(&data[34..])),
            )
        };
        let mut stream = encode(client, server);
        let header = stream.len();
        stream.extend_from_slice(data);
        let (result, used) = read_all(&stream);
        assert_eq!(result.expect("an encoded header reads back"), client);
        assert_eq!(used, header, "the bytes after the header were read");
    }
});
