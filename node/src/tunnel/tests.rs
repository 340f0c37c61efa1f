use std::time::{Duration, SystemTime};

use rempart_signer::wireguard::WgKey;
use rempart_signer::wireguard::health::{PeerHealth, PeerStats, Snapshot};

use super::*;

#[test]
fn loopback_filter_serves_this_host_only() {
    let f = PeerFilter::new(None);
    assert!(f.allows("127.0.0.1:4000".parse().expect("addr")));
    assert!(f.allows("[::1]:4000".parse().expect("addr")));
    assert!(!f.allows("10.98.0.2:4000".parse().expect("addr")));
}

#[test]
fn peer_filter_serves_configured_tunnel_addresses_only() {
    let f = PeerFilter::Peers(vec!["10.98.0.2".parse().expect("ip")]);
    assert!(f.allows("10.98.0.2:51000".parse().expect("addr")));
    // The same address seen on a dual-stack socket.
    assert!(f.allows("[::ffff:10.98.0.2]:51000".parse().expect("addr")));
    assert!(!f.allows("10.98.0.3:51000".parse().expect("addr")));
    assert!(!f.allows("127.0.0.1:51000".parse().expect("addr")));
}

fn snapshot(stale: bool, handshake: Option<SystemTime>, error: Option<String>) -> Snapshot {
    let key = WgKey([7; 32]);
    Snapshot {
        interface: "wgn0".into(),
        read_at: SystemTime::UNIX_EPOCH + Duration::from_secs(1_000),
        error,
        peers: vec![PeerHealth {
            address: "10.98.0.1".parse().expect("ip"),
            public_key: key,
            stats: Some(PeerStats {
                public_key: key,
                endpoint: None,
                last_handshake: handshake,
                rx_bytes: 1,
                tx_bytes: 2,
                allowed_ips: Vec::new(),
            }),
            stale,
        }],
    }
}

#[test]
fn stale_reason_names_the_peer_and_the_handshake_age() {
    let h = TunnelHealth::default();
    let signer: IpAddr = "10.98.0.1".parse().expect("ip");
    assert_eq!(stale_reason(&h, "wgn0", signer), None, "no read yet: nothing to say");
    h.store(snapshot(false, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(990)), None));
    assert_eq!(stale_reason(&h, "wgn0", signer), None, "fresh handshake");
    h.store(snapshot(true, Some(SystemTime::UNIX_EPOCH + Duration::from_secs(700)), None));
    let r = stale_reason(&h, "wgn0", signer).expect("stale");
    assert!(r.contains("10.98.0.1") && r.contains("300s ago") && r.contains("stale"), "{r}");
    h.store(snapshot(true, None, None));
    let r = stale_reason(&h, "wgn0", signer).expect("never");
    assert!(r.contains("last never"), "{r}");
    assert_eq!(stale_reason(&h, "wgn0", "10.98.0.9".parse().expect("ip")), None, "not a peer");
    h.store(snapshot(false, None, Some("socket gone".into())));
    let r = stale_reason(&h, "wgn0", signer).expect("unreadable");
    assert!(r.contains("socket gone"), "{r}");
}
