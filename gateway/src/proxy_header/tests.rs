use super::*;

fn addr(s: &str) -> SocketAddr {
    s.parse().expect("addr")
}

#[tokio::test]
async fn reads_ipv4_and_ipv6_and_leaves_the_rest() {
    let peer = addr("10.0.0.1:5000");
    for client in ["198.51.100.7:4321", "[2001:db8::7]:4321"] {
        let mut bytes = encode(addr(client), addr("10.0.0.2:443"));
        bytes.extend_from_slice(b"TLS");
        let mut r = &bytes[..];
        assert_eq!(read(&mut r, peer).await.expect("header"), addr(client));
        assert_eq!(r, b"TLS");
    }
}

#[tokio::test]
async fn local_command_and_tlvs() {
    let peer = addr("10.0.0.1:5000");
    let mut bytes = SIGNATURE.to_vec();
    bytes.extend_from_slice(&[0x20, 0x00, 0x00, 0x00]);
    let mut r = &bytes[..];
    assert_eq!(read(&mut r, peer).await.expect("local"), peer);
    // IPv4 with a 3-byte TLV after the addresses
    let mut bytes = encode(addr("192.0.2.1:1"), addr("192.0.2.2:2"));
    bytes[15] = 15;
    bytes.extend_from_slice(&[0x04, 0x00, 0x00]);
    let mut r = &bytes[..];
    assert_eq!(read(&mut r, peer).await.expect("tlv"), addr("192.0.2.1:1"));
    assert!(r.is_empty());
}

#[tokio::test]
async fn refuses_garbage() {
    let peer = addr("10.0.0.1:5000");
    let mut v1 = b"PROXY TCP4 1.2.3.4 5.6.7.8 1 2\r\n".to_vec();
    v1.resize(40, b' ');
    let mut bad_version = encode(addr("192.0.2.1:1"), addr("192.0.2.2:2"));
    bad_version[12] = 0x11;
    let mut too_long = encode(addr("192.0.2.1:1"), addr("192.0.2.2:2"));
    too_long[14] = 0x08;
    let mut short = encode(addr("192.0.2.1:1"), addr("192.0.2.2:2"));
    short[15] = 4;
    let truncated = encode(addr("192.0.2.1:1"), addr("192.0.2.2:2"))[..20].to_vec();
    for (name, bytes) in [
        ("v1", v1),
        ("version", bad_version),
        ("too long", too_long),
        ("short", short),
        ("truncated", truncated),
    ] {
        let mut r = &bytes[..];
        assert!(read(&mut r, peer).await.is_err(), "{name}");
    }
}
