//! The example production configuration in `policies/production/` (three machines: the edge
//! host with the gateway and an api node, the producer host, the signer host) is valid and
//! consistent, so that what the README tells operators to copy works.
//!
//! `rempart check` passes on the directory as shipped (every file with its program's own
//! validation, then the cross-references: chain id, scheduled key, addresses); each file passes
//! the check its own program runs (`rempart-signer check`, `rempart-gateway check`, and
//! `rempart-node check`, which also opens the WireGuard key: on a copy whose keys `rempart wg
//! keygen` wrote, as an operator would); and the WireGuard network is one network: each side's
//! peers are the others' tunnel addresses and public keys, every private listener binds a tunnel
//! address. Nothing here starts a process other than `rempart` itself.

use std::net::IpAddr;
use std::path::{Path, PathBuf};
use std::process::Command;

use rempart_signer::wireguard::WireGuardConfig;

fn production() -> PathBuf {
    Path::new(env!("CARGO_MANIFEST_DIR")).join("policies/production")
}

fn rempart(args: &[&std::ffi::OsStr]) -> (i32, String, String) {
    let out = Command::new(env!("CARGO_BIN_EXE_rempart")).args(args).output().expect("rempart");
    (
        out.status.code().unwrap_or(-1),
        String::from_utf8_lossy(&out.stdout).into_owned(),
        String::from_utf8_lossy(&out.stderr).into_owned(),
    )
}

fn signer() -> rempart_signer::policy::Policy {
    rempart_signer::policy::Policy::load(&production().join("signer.toml")).expect("signer.toml")
}

fn node(name: &str) -> rempart_node::config::Config {
    rempart_node::config::Config::load(&production().join(name)).expect("node configuration")
}

#[test]
fn rempart_check_passes_on_the_three_machines_together() {
    let dir = production();
    let (code, out, err) = rempart(&["check".as_ref(), dir.as_os_str()]);
    assert_eq!(code, 0, "{out}{err}");
    for file in ["signer.toml", "node-producer.toml", "node-api.toml", "gateway.toml"] {
        assert!(out.contains(&format!("ok    {}", dir.join(file).display())), "{file}: {out}");
    }
    assert!(!err.contains("error"), "{err}");
}

#[test]
fn each_file_passes_its_own_programs_check() {
    // rempart-signer check and rempart-gateway check: the policy loaders they call.
    let policy = signer();
    assert!(policy.admin.is_some(), "the example shows the key ceremonies' [admin]");
    assert!(
        !matches!(policy.backend, rempart_signer::policy::BackendConfig::Soft(_)),
        "production keys live in an HSM"
    );
    rempart_gateway::Policy::load(&production().join("gateway.toml")).expect("gateway.toml");

    // rempart-node check opens each node's WireGuard private key: on a copy, with keys written
    // by `rempart wg keygen` at the names the files give.
    let copy = tempfile::tempdir().expect("tempdir");
    for entry in std::fs::read_dir(production()).expect("policies/production") {
        let path = entry.expect("entry").path();
        std::fs::copy(&path, copy.path().join(path.file_name().expect("name"))).expect("copy");
    }
    for (file, key) in [("node-producer.toml", "producer-wg.key"), ("node-api.toml", "edge-wg.key")]
    {
        let written = copy.path().join(key);
        let (code, out, err) =
            rempart(&["wg".as_ref(), "keygen".as_ref(), "--out".as_ref(), written.as_os_str()]);
        assert_eq!(code, 0, "rempart wg keygen: {out}{err}");
        let summary = rempart_node::role::check(&copy.path().join(file))
            .unwrap_or_else(|errors| panic!("rempart-node check --config {file}: {errors:?}"));
        assert!(summary.contains("WireGuard wg-rempart"), "{summary}");
        assert!(summary.contains(out.trim()), "{file} runs with the key just written: {summary}");
    }
}

/// The peer of `wg` whose tunnel address is `address`.
fn peer(wg: &WireGuardConfig, address: IpAddr) -> &rempart_signer::wireguard::PeerConfig {
    wg.peers.iter().find(|p| p.address == address).expect("a peer with that tunnel address")
}

#[test]
fn the_three_machines_form_one_wireguard_network() {
    let signer = signer();
    let producer = node("node-producer.toml");
    let api = node("node-api.toml");
    let swg = signer.wireguard.as_ref().expect("signer [wireguard]");
    let pwg = producer.wireguard.as_ref().expect("producer [wireguard]");
    let awg = api.wireguard.as_ref().expect("api node [wireguard]");
    let (s, p, a) = (swg.address.addr, pwg.address.addr, awg.address.addr);

    // Who talks to whom: signer <-> producer <-> api node, and nothing else.
    let peers = |wg: &WireGuardConfig| wg.peers.iter().map(|p| p.address).collect::<Vec<_>>();
    assert_eq!(peers(swg), [p], "the signer's only peer is the producer");
    assert_eq!(peers(pwg), [s, a], "the producer's peers are the signer and the api node");
    assert_eq!(peers(awg), [p], "the api node's only peer is the producer");

    // The same public key for the same machine, wherever it is listed, and a key per machine.
    let producer_key = peer(swg, p).public_key;
    assert!(producer_key == peer(awg, p).public_key, "two keys for the producer");
    assert!(peer(pwg, s).public_key != peer(pwg, a).public_key, "signer and edge share a key");
    assert!(producer_key != peer(pwg, s).public_key && producer_key != peer(pwg, a).public_key);

    // Private listeners bind tunnel addresses; the producer asks the signer through the tunnel;
    // the api node follows the producer through it; the gateway reaches the api node on
    // loopback beside it.
    assert_eq!(signer.listen.tcp.map(|t| t.ip()), Some(s));
    assert!(signer.listen.unix_socket.is_none(), "the signer host serves the tunnel only");
    assert_eq!(producer.producer.private_listen.ip(), p);
    assert_eq!(producer.producer.signer, signer.listen.tcp.expect("tcp").to_string());
    assert_eq!(api.api.producer, producer.producer.private_listen);
    assert!(api.api.http_listen.ip().is_loopback());
    let gateway =
        rempart_gateway::Policy::load(&production().join("gateway.toml")).expect("gateway.toml");
    let nodes: Vec<_> = gateway.pools().iter().flat_map(|pool| pool.nodes.clone()).collect();
    assert_eq!(nodes, [api.api.http_listen]);
    assert!(gateway.listeners().admin.ip().is_loopback(), "metrics never face the Internet");

    // Both nodes of the chain read the same genesis: one file, beside both configurations.
    assert_eq!(producer.genesis, api.genesis);
}
