use std::collections::BTreeMap;
use std::net::IpAddr;
use std::path::Path;
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::health::{Expected, PeerStats, Snapshot, TunnelHealth, parse_uapi, update};
use super::*;
use crate::policy::{Policy, PolicyError};

const PEER: &str = "AAECAwQFBgcICQoLDA0ODxAREhMUFRYXGBkaGxwdHh8=";
const PEER2: &str = "AQIDBAUGBwgJCgsMDQ4PEBESExQVFhcYGRobHB0eHyA=";

fn policy(listen: &str, wireguard: &str) -> String {
    format!(
        r#"[chain]
id = "3b58354cd4af30f0d59f1d9754a71a4c049a425dd9dad6a8ed858ca5d9a4e0b4"
max_clock_skew_ms = 1000
[[producers]]
account = "eosio"
key = "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63"
[backend]
kind = "pkcs11"
[backend.pkcs11]
module = "/usr/lib/softhsm/libsofthsm2.so"
token_label = "rempart"
pin_env = "PIN"
keys = [{{ label = "k1" }}]
[state]
dir = "/var/lib/signer"
audit_log = "/var/lib/signer/audit.jsonl"
[listen]
{listen}
{wireguard}
"#
    )
}

fn wg(extra: &str, peers: &str) -> String {
    format!(
        "[wireguard]\ninterface = \"wg-signer\"\nprivate_key_file = \"wg.key\"\nlisten_port = \
         51820\naddress = \"10.98.0.1/24\"\n{extra}\n{peers}"
    )
}

fn peer(key: &str, address: &str, extra: &str) -> String {
    format!("[[wireguard.peers]]\npublic_key = \"{key}\"\naddress = \"{address}\"\n{extra}\n")
}

fn parse(text: &str) -> Result<Policy, PolicyError> {
    Policy::from_toml(Path::new("/etc/rempart/signer.toml"), text)
}

fn refusal(text: &str) -> (usize, usize, String) {
    match parse(text) {
        Err(PolicyError::Invalid { line, column, message, .. })
        | Err(PolicyError::Parse { line, column, message, .. }) => (line, column, message),
        other => panic!("expected a refusal, got {other:?}"),
    }
}

#[test]
fn a_tunnel_section_is_validated_and_its_peers_join_the_tcp_allowlist() {
    let text = policy(
        "tcp = \"10.98.0.1:7010\"",
        &wg(
            "backend = \"userspace\"\nstale_handshake_secs = 60",
            &(peer(
                PEER,
                "10.98.0.2",
                "endpoint = \"192.0.2.7:51820\"\npersistent_keepalive_secs = 25",
            ) + &peer(PEER2, "10.98.0.3", "")),
        ),
    );
    let p = parse(&text).unwrap();
    let w = p.wireguard.unwrap();
    assert_eq!(w.interface, "wg-signer");
    assert_eq!(w.private_key_file, Path::new("/etc/rempart/wg.key"));
    assert_eq!(w.address.to_string(), "10.98.0.1/24");
    assert_eq!(w.backend, BackendChoice::Userspace);
    assert_eq!(w.userspace, UserspaceChoice::Auto, "the default");
    assert_eq!(w.stale_handshake, Duration::from_secs(60));
    assert_eq!(w.peers[0].public_key.to_string(), PEER);
    assert_eq!(w.peers[0].endpoint, Some("192.0.2.7:51820".parse().unwrap()));
    assert_eq!(w.peers[0].keepalive, Some(Duration::from_secs(25)));
    assert_eq!(w.peers[1].endpoint, None);
    let allowed: Vec<IpAddr> = p.listen.tcp_allowed_peers.into_iter().collect();
    assert_eq!(allowed, ["10.98.0.2".parse::<IpAddr>().unwrap(), "10.98.0.3".parse().unwrap()]);
}

#[test]
fn private_listeners_bind_the_tunnel_address_only() {
    let tunnel = wg("", &peer(PEER, "10.98.0.2", ""));
    for (tcp, needle) in [
        ("0.0.0.0:7010", "wildcard"),
        ("[::]:7010", "wildcard"),
        ("10.99.0.1:7010", "is not the WireGuard tunnel address 10.98.0.1"),
        ("127.0.0.1:7010", "is not the WireGuard tunnel address"),
        ("10.98.0.2:7010", "is not the WireGuard tunnel address"),
    ] {
        let (line, column, message) = refusal(&policy(&format!("tcp = \"{tcp}\""), &tunnel));
        assert_eq!((line, column), (18, 7), "{tcp}: {message}");
        assert!(message.contains(needle), "{tcp}: {message}");
    }
    // Without a tunnel, only loopback.
    let (_, _, message) =
        refusal(&policy("tcp = \"10.98.0.1:7010\"\ntcp_allowed_peers = [\"10.98.0.2\"]", ""));
    assert!(message.contains("neither loopback nor a WireGuard tunnel address"), "{message}");
    let ok = policy("tcp = \"127.0.0.1:7010\"\ntcp_allowed_peers = [\"127.0.0.1\"]", "");
    assert!(parse(&ok).unwrap().wireguard.is_none());
    let (_, _, message) = refusal(&policy("tcp = \"127.0.0.1:7010\"", ""));
    assert!(message.contains("tcp_allowed_peers is empty"), "{message}");
}

#[test]
fn the_tcp_allowlist_names_tunnel_peers_only() {
    let text = policy(
        "tcp = \"10.98.0.1:7010\"\ntcp_allowed_peers = [\"10.99.0.2\"]",
        &wg("", &peer(PEER, "10.98.0.2", "")),
    );
    let (line, _, message) = refusal(&text);
    assert_eq!(line, 19);
    assert!(message.contains("not the tunnel address of any"), "{message}");
}

#[test]
fn bad_tunnel_values_are_refused_with_their_position() {
    let unix = "unix_socket = \"/run/s.sock\"\nallowed_uids = [1000]";
    let good_peer = peer(PEER, "10.98.0.2", "");
    let cases: Vec<(String, &str)> = vec![
        (wg("", "").replace("wg-signer", "wg/signer"), "not a valid interface name"),
        (wg("", &good_peer).replace("wg-signer", "a-much-too-long-name"), "not a valid"),
        (wg("", &good_peer).replace("10.98.0.1/24", "10.98.0.1"), "no prefix length"),
        (wg("", &good_peer).replace("10.98.0.1/24", "10.98.0.1/33"), "prefix length"),
        (wg("", &good_peer).replace("10.98.0.1/24", "0.0.0.0/0"), "unicast"),
        (wg("backend = \"boringtun\"", &good_peer), "unknown backend"),
        (wg("userspace = \"boringtun-cli\"", &good_peer), "unknown userspace implementation"),
        (wg("stale_handshake_secs = 1", &good_peer), "stale_handshake_secs"),
        (wg("stats_interval_secs = 0", &good_peer), "stats_interval_secs"),
        (wg("", ""), "no [[wireguard.peers]]"),
        (wg("", &peer("short", "10.98.0.2", "")), "not a WireGuard key"),
        (wg("", &peer(PEER, "10.97.0.2", "")), "inside the tunnel network"),
        (wg("", &peer(PEER, "10.98.0.1", "")), "another address"),
        (wg("", &(good_peer.clone() + &peer(PEER, "10.98.0.3", ""))), "listed twice"),
        (wg("", &(good_peer.clone() + &peer(PEER2, "10.98.0.2", ""))), "two peers"),
        (wg("", &peer(PEER, "10.98.0.2", "persistent_keepalive_secs = 0")), "omit the key"),
        (wg("", &peer(PEER, "10.98.0.2", "allowed_ips = [\"0.0.0.0/0\"]")), "unknown field"),
        (wg("surprise = 1", &good_peer), "unknown field"),
    ];
    for (section, needle) in cases {
        let (line, _, message) = refusal(&policy(unix, &section));
        assert!(line > 1, "{section}: an error names its line ({message})");
        assert!(message.contains(needle), "{section}: {message}");
    }
}

#[test]
fn keys_and_networks_parse_and_print() {
    let k: WgKey = PEER.parse().unwrap();
    assert_eq!(k.0[31], 31);
    assert_eq!(k.to_string(), PEER);
    assert_eq!(WgKey::from_hex(&hex::encode(k.0)), Some(k));
    assert!(WgKey::from_hex("00").is_none());
    assert!(WgKey::parse(&PEER.replace('=', "A"), "k").is_err());
    assert!(WgKey::parse("!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!!=", "k").is_err());
    let n: Cidr = "10.98.0.1/24".parse().unwrap();
    assert!(n.contains("10.98.0.200".parse().unwrap()));
    assert!(!n.contains("10.98.1.1".parse().unwrap()));
    assert!(!n.contains("fd00::1".parse().unwrap()));
    let all: Cidr = "10.0.0.1/0".parse().unwrap();
    assert!(all.contains("192.0.2.1".parse().unwrap()));
    let v6: Cidr = "fd98::1/64".parse().unwrap();
    assert!(v6.contains("fd98::2".parse().unwrap()));
    assert!(!v6.contains("fd99::2".parse().unwrap()));
    assert!("fd98::1/129".parse::<Cidr>().is_err());
    assert!(valid_interface_name("wg0") && valid_interface_name("rempart-wg.1"));
    assert!(
        !valid_interface_name("") && !valid_interface_name("..") && !valid_interface_name("a b")
    );
}

const ANSWER: &str = "private_key=1111111111111111111111111111111111111111111111111111111111111111
listen_port=51820
public_key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
preshared_key=0000000000000000000000000000000000000000000000000000000000000000
protocol_version=1
endpoint=10.99.0.2:51821
last_handshake_time_sec=1700000000
last_handshake_time_nsec=500
tx_bytes=1234
rx_bytes=5678
persistent_keepalive_interval=0
allowed_ip=10.98.0.2/32
public_key=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
last_handshake_time_sec=0
last_handshake_time_nsec=0
tx_bytes=0
rx_bytes=0
errno=0
";

#[test]
fn the_uapi_answer_gives_each_peers_counters() {
    let peers = parse_uapi(ANSWER, SystemTime::now()).unwrap();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0].public_key.to_string(), PEER);
    assert_eq!(peers[0].endpoint.as_deref(), Some("10.99.0.2:51821"));
    assert_eq!(peers[0].last_handshake, Some(UNIX_EPOCH + Duration::new(1_700_000_000, 500)));
    assert_eq!((peers[0].rx_bytes, peers[0].tx_bytes), (5678, 1234));
    assert_eq!(peers[1].public_key.to_string(), PEER2);
    assert_eq!(peers[1].last_handshake, None);
    assert_eq!(peers[0].allowed_ips, ["10.98.0.2".parse::<std::net::IpAddr>().unwrap()]);
    assert!(peers[1].allowed_ips.is_empty());
    let bad = ANSWER.replace("allowed_ip=10.98.0.2/32", "allowed_ip=10.98.0.2");
    assert!(parse_uapi(&bad, SystemTime::now()).unwrap_err().contains("bad allowed_ip"));
}

/// boringtun's answer: `own_public_key` instead of `private_key`, and the handshake's age
/// instead of its UNIX time (absent when there was none).
const BORINGTUN_ANSWER: &str =
    "own_public_key=1111111111111111111111111111111111111111111111111111111111111111
listen_port=51820
public_key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f
persistent_keepalive_interval=5
endpoint=10.99.0.2:51821
allowed_ip=10.98.0.2/32
last_handshake_time_sec=3
last_handshake_time_nsec=250000000
rx_bytes=5678
tx_bytes=1234
public_key=0102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f20
rx_bytes=0
tx_bytes=0
errno=0
";

#[test]
fn boringtuns_handshake_age_becomes_a_time_before_now() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let peers = parse_uapi(BORINGTUN_ANSWER, now).unwrap();
    assert_eq!(peers.len(), 2);
    assert_eq!(peers[0].last_handshake, Some(now - Duration::from_millis(3_250)));
    assert_eq!((peers[0].rx_bytes, peers[0].tx_bytes), (5678, 1234));
    assert_eq!(peers[1].last_handshake, None, "no line: no handshake yet");
    // The same age read as UNIX time would be 1970: stale forever.
    let as_go = BORINGTUN_ANSWER.replace("own_public_key", "private_key");
    let go = parse_uapi(&as_go, now).unwrap();
    assert_eq!(go[0].last_handshake, Some(UNIX_EPOCH + Duration::from_millis(3_250)));
    // An age beyond the clock's start is no time at all, not a panic.
    let ancient = BORINGTUN_ANSWER.replace("time_sec=3\n", &format!("time_sec={}\n", u64::MAX));
    assert_eq!(parse_uapi(&ancient, UNIX_EPOCH).unwrap()[0].last_handshake, None);
}

#[test]
fn a_key_rotated_on_the_live_interface_is_reported_for_the_peers_address() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let e = expected();
    let before = update("wg0", &e, Ok(stats(Some(now))), None, now);
    assert_eq!(before.peers[0].public_key.to_string(), PEER);
    // `rempart wg apply` replaced the peer: the interface routes 10.98.0.2 to another key.
    let mut rotated = stats(Some(now));
    rotated[0].public_key = PEER2.parse().unwrap();
    let after = update("wg0", &e, Ok(rotated), Some(&before), now);
    assert_eq!(after.peers.len(), 1);
    assert_eq!(after.peers[0].address.to_string(), "10.98.0.2");
    assert_eq!(after.peers[0].public_key.to_string(), PEER2);
    assert!(after.peers[0].stats.is_some() && !after.peers[0].stale);
    // A failed read keeps the last key and counters.
    let failed = update(
        "wg0",
        &e,
        Err(WireGuardError::Stats { interface: "wg0".into(), message: "gone".into() }),
        Some(&after),
        now,
    );
    assert_eq!(failed.peers[0].public_key.to_string(), PEER2);
    // The interface lost the address: the configured key, no counters.
    let mut elsewhere = stats(Some(now));
    elsewhere[0].public_key = PEER2.parse().unwrap();
    elsewhere[0].allowed_ips.clear();
    let gone = update("wg0", &e, Ok(elsewhere), Some(&after), now);
    assert_eq!(gone.peers[0].public_key.to_string(), PEER);
    assert!(gone.peers[0].stats.is_none());
}

#[test]
fn a_bad_uapi_answer_is_an_error_never_a_panic() {
    for (answer, needle) in [
        ("errno=0\n", ""),
        ("listen_port=1\n", "no errno"),
        ("errno=-22\n", "errno=-22"),
        ("errno=x\n", "bad errno"),
        ("rx_bytes=5\nerrno=0\n", "before any public_key"),
        ("public_key=zz\nerrno=0\n", "bad public_key"),
        (
            "public_key=000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f\nrx_bytes=-1\nerrno=0\n",
            "bad rx_bytes",
        ),
        ("no equals sign\n", "no '='"),
    ] {
        match parse_uapi(answer, SystemTime::now()) {
            Ok(p) => assert!(needle.is_empty() && p.is_empty(), "{answer:?}"),
            Err(e) => assert!(!needle.is_empty() && e.contains(needle), "{answer:?}: {e}"),
        }
    }
}

fn expected() -> Expected {
    let mut peers = BTreeMap::new();
    peers.insert(PEER.parse().unwrap(), "10.98.0.2".parse().unwrap());
    Expected { peers, stale_after: Duration::from_secs(180), since: UNIX_EPOCH }
}

fn stats(handshake: Option<SystemTime>) -> Vec<PeerStats> {
    vec![PeerStats {
        public_key: PEER.parse().unwrap(),
        endpoint: None,
        last_handshake: handshake,
        rx_bytes: 10,
        tx_bytes: 20,
        allowed_ips: vec!["10.98.0.2".parse().unwrap()],
    }]
}

#[test]
fn staleness_follows_the_handshake_age_and_a_failed_read_keeps_the_last_counters() {
    let now = UNIX_EPOCH + Duration::from_secs(1_800_000_000);
    let e = expected();
    let fresh = update("wg0", &e, Ok(stats(Some(now - Duration::from_secs(5)))), None, now);
    assert!(!fresh.peers[0].stale);
    let old = update("wg0", &e, Ok(stats(Some(now - Duration::from_secs(600)))), Some(&fresh), now);
    assert!(old.peers[0].stale);
    let never = update("wg0", &e, Ok(stats(None)), None, now);
    assert!(never.peers[0].stale);
    let starting = Expected { since: now - Duration::from_secs(10), ..expected() };
    let not_yet = update("wg0", &starting, Ok(stats(None)), None, now);
    assert!(!not_yet.peers[0].stale, "a fresh start is not an alarm");
    let missing = update("wg0", &e, Ok(Vec::new()), None, now);
    assert!(missing.peers[0].stale && missing.peers[0].stats.is_none());
    let failed = update(
        "wg0",
        &e,
        Err(WireGuardError::Stats { interface: "wg0".into(), message: "gone".into() }),
        Some(&fresh),
        now,
    );
    assert!(failed.error.as_deref().is_some_and(|m| m.contains("gone")));
    assert_eq!(failed.peers[0].stats, fresh.peers[0].stats);
}

#[test]
fn metrics_show_each_peer_and_whether_the_read_worked() {
    let health = TunnelHealth::default();
    let mut out = String::new();
    health.render(&mut out);
    assert!(out.is_empty(), "no tunnel, no lines");
    let now = SystemTime::now();
    let snap: Snapshot =
        update("wg0", &expected(), Ok(stats(Some(now - Duration::from_secs(3)))), None, now);
    health.store(snap);
    health.render(&mut out);
    let labels = format!("interface=\"wg0\",peer=\"10.98.0.2\",public_key=\"{PEER}\"");
    assert!(out.contains("rempart_wireguard_stats_up{interface=\"wg0\"} 1"), "{out}");
    assert!(out.contains(&format!("rempart_wireguard_peer_receive_bytes_total{{{labels}}} 10")));
    assert!(out.contains(&format!("rempart_wireguard_peer_transmit_bytes_total{{{labels}}} 20")));
    assert!(out.contains(&format!("rempart_wireguard_peer_stale{{{labels}}} 0")));
    assert!(out.contains("rempart_wireguard_peer_handshake_age_seconds{"), "{out}");
    assert!(out.contains("# TYPE rempart_wireguard_peer_receive_bytes_total counter"));
}

#[cfg(feature = "wireguard")]
#[test]
fn a_private_key_readable_by_others_is_refused_and_keygen_never_overwrites() {
    use std::os::unix::fs::PermissionsExt;
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wg.key");
    let public = generate_key_file(&path).unwrap();
    assert_eq!(std::fs::metadata(&path).unwrap().permissions().mode() & 0o777, 0o600);
    assert_eq!(read_private_key(&path).unwrap().public(), public);
    assert!(matches!(generate_key_file(&path), Err(WireGuardError::KeyFileExists { .. })));
    std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o640)).unwrap();
    let e = read_private_key(&path).unwrap_err();
    assert!(e.to_string().contains("chmod 600"), "{e}");
    let debug = format!("{:?}", {
        std::fs::set_permissions(&path, std::fs::Permissions::from_mode(0o600)).unwrap();
        read_private_key(&path).unwrap()
    });
    let secret = std::fs::read_to_string(&path).unwrap();
    assert!(!debug.contains(secret.trim()), "Debug never shows the private key");
    std::fs::write(&path, "not a key\n").unwrap();
    assert!(matches!(read_private_key(&path), Err(WireGuardError::BadKey { .. })));
    let missing = read_private_key(&dir.path().join("missing")).unwrap_err();
    assert!(missing.to_string().contains("cannot open"), "{missing}");
}

#[test]
fn the_node_can_parse_the_same_section_and_check_its_own_listeners() {
    #[derive(serde::Deserialize)]
    struct NodeFile {
        wireguard: toml::Spanned<config::WireGuardSection>,
    }
    let text = wg("", &peer(PEER, "10.98.0.3", ""));
    let file: NodeFile = toml::from_str(&text).unwrap();
    let cfg = file
        .wireguard
        .get_ref()
        .validate(file.wireguard.span(), &|p| Ok(Path::new("/etc/node").join(p.get_ref())))
        .unwrap();
    assert_eq!(cfg.private_key_file, Path::new("/etc/node/wg.key"));
    let check = |a: &str, w| config::check_private_listener("block_listen", a.parse().unwrap(), w);
    assert!(check("10.98.0.1:9876", Some(&cfg)).is_ok());
    let e = check("10.99.0.1:9876", Some(&cfg)).unwrap_err();
    assert!(e.contains("block_listen = \"10.98.0.1:9876\""), "{e}");
    assert!(check("0.0.0.0:9876", Some(&cfg)).unwrap_err().contains("wildcard"));
    assert!(check("[::]:9876", None).unwrap_err().contains("wildcard"));
    assert!(check("127.0.0.1:9876", None).is_ok());
    assert!(check("192.0.2.1:9876", None).unwrap_err().contains("neither loopback"));
    let bad: NodeFile = toml::from_str(&wg("", "")).unwrap();
    let e =
        bad.wireguard.get_ref().validate(bad.wireguard.span(), &|_| Ok("/k".into())).unwrap_err();
    assert!(e.message.contains("no [[wireguard.peers]]"), "{e:?}");
}

#[test]
fn one_uapi_connection_serves_every_read_and_its_loss_is_reported() {
    use std::io::{BufRead as _, Write as _};
    let (ours, theirs) = std::os::unix::net::UnixStream::pair().unwrap();
    let peer = std::thread::spawn(move || {
        let mut reader = std::io::BufReader::new(theirs.try_clone().unwrap());
        let mut writer = theirs;
        for _ in 0..2 {
            let mut request = String::new();
            while request != "get=1\n\n" {
                let before = request.len();
                assert!(reader.read_line(&mut request).unwrap() > 0, "{request:?}");
                assert!(request.len() > before);
            }
            writer.write_all(format!("{ANSWER}\n").as_bytes()).unwrap();
        }
    });
    let mut reader = health::StatsReader::Uapi { interface: "wg0".into(), stream: ours };
    for _ in 0..2 {
        let peers = reader.read().unwrap();
        assert_eq!(peers.len(), 2);
        assert_eq!(peers[0].rx_bytes, 5678);
    }
    peer.join().unwrap();
    let e = reader.read().unwrap_err().to_string();
    assert!(e.contains("wg0") && (e.contains("closed") || e.contains("UAPI")), "{e}");
}

#[test]
fn the_userspace_key_names_the_program() {
    for (value, choice) in [
        ("auto", UserspaceChoice::Auto),
        ("boringtun", UserspaceChoice::Boringtun),
        ("wireguard-go", UserspaceChoice::WireguardGo),
    ] {
        let text = policy(
            "tcp = \"10.98.0.1:7010\"",
            &wg(&format!("userspace = \"{value}\""), &peer(PEER, "10.98.0.2", "")),
        );
        assert_eq!(parse(&text).unwrap().wireguard.unwrap().userspace, choice, "{value}");
    }
}

#[cfg(feature = "wireguard")]
#[test]
fn auto_prefers_boringtun_then_wireguard_go_and_honours_the_wg_quick_variable() {
    use super::interface::resolve_userspace;
    let both = tempfile::tempdir().unwrap();
    let go_only = tempfile::tempdir().unwrap();
    let bt_only = tempfile::tempdir().unwrap();
    for (dir, names) in [
        (&both, &["boringtun-cli", "wireguard-go"][..]),
        (&go_only, &["wireguard-go"][..]),
        (&bt_only, &["boringtun-cli"][..]),
    ] {
        for name in names {
            std::fs::write(dir.path().join(name), "").unwrap();
        }
    }
    let path =
        |dirs: &[&tempfile::TempDir]| std::env::join_paths(dirs.iter().map(|d| d.path())).unwrap();
    let kind = |choice, env: Option<&str>, dirs: &[&tempfile::TempDir]| {
        resolve_userspace(choice, env.map(Into::into), Some(&path(dirs))).map(|u| u.kind)
    };
    // auto prefers boringtun wherever it is on PATH, even after a directory with wireguard-go
    // (boringtun meets the tunnel latency target), and takes wireguard-go only without it.
    let u = resolve_userspace(UserspaceChoice::Auto, None, Some(&path(&[&go_only, &both])));
    let u = u.unwrap();
    assert_eq!((u.kind, u.program), ("boringtun", both.path().join("boringtun-cli")));
    let u = resolve_userspace(UserspaceChoice::Auto, None, Some(&path(&[&go_only])));
    let u = u.unwrap();
    assert_eq!((u.kind, u.program), ("wireguard-go", go_only.path().join("wireguard-go")));
    // The first directory of PATH that has the wanted program.
    let u = resolve_userspace(UserspaceChoice::Auto, None, Some(&path(&[&bt_only, &both])));
    let u = u.unwrap();
    assert_eq!((u.kind, u.program), ("boringtun", bt_only.path().join("boringtun-cli")));
    let u = resolve_userspace(UserspaceChoice::WireguardGo, None, Some(&path(&[&go_only, &both])));
    let u = u.unwrap();
    assert_eq!((u.kind, u.program), ("wireguard-go", go_only.path().join("wireguard-go")));
    assert_eq!(kind(UserspaceChoice::Auto, None, &[&bt_only]).unwrap(), "boringtun");
    assert_eq!(kind(UserspaceChoice::Auto, None, &[&both]).unwrap(), "boringtun");
    assert_eq!(kind(UserspaceChoice::WireguardGo, None, &[&both]).unwrap(), "wireguard-go");
    assert_eq!(kind(UserspaceChoice::Boringtun, None, &[&both]).unwrap(), "boringtun");
    // The wg-quick variable wins in auto only; an unknown program is "custom".
    assert_eq!(
        kind(UserspaceChoice::Auto, Some("/opt/x/boringtun-cli"), &[&both]).ok(),
        Some("boringtun")
    );
    assert_eq!(
        kind(UserspaceChoice::Auto, Some("/usr/bin/wireguard-go"), &[&both]).ok(),
        Some("wireguard-go")
    );
    assert_eq!(kind(UserspaceChoice::Auto, Some("/usr/bin/my-wg"), &[&both]).unwrap(), "custom");
    assert_eq!(
        kind(UserspaceChoice::WireguardGo, Some("/usr/bin/my-wg"), &[&both]).ok(),
        Some("wireguard-go")
    );
    assert_eq!(kind(UserspaceChoice::Auto, Some(""), &[&bt_only]).unwrap(), "boringtun");
    // Missing programs are named in the error.
    let err = kind(UserspaceChoice::Boringtun, None, &[&go_only]).unwrap_err();
    assert!(matches!(err, WireGuardError::NoUserspace { wanted: "boringtun-cli" }), "{err}");
    assert!(err.to_string().contains("boringtun-cli is not on PATH"), "{err}");
    let empty = tempfile::tempdir().unwrap();
    let err = kind(UserspaceChoice::Auto, None, &[&empty]).unwrap_err();
    assert!(err.to_string().contains("boringtun-cli or wireguard-go"), "{err}");
    assert!(resolve_userspace(UserspaceChoice::WireguardGo, None, None).is_err(), "no PATH at all");
}
