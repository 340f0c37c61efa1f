use std::os::unix::fs::PermissionsExt;

use clap::Parser;

use crate::cli::{Cli, run};

fn keygen(path: &std::path::Path) -> (u8, String, String) {
    let cli = Cli::try_parse_from(["rempart", "wg", "keygen", "--out", path.to_str().unwrap()])
        .expect("the command line parses");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&cli, &mut out, &mut err).expect("writing to a Vec cannot fail");
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

#[test]
fn keygen_writes_a_0600_key_and_prints_the_public_key_that_the_signer_derives() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wg.key");
    let (code, out, err) = keygen(&path);
    assert_eq!(code, 0, "{err}");
    let mode = std::fs::metadata(&path).unwrap().permissions().mode() & 0o777;
    assert_eq!(mode, 0o600);
    let printed: rempart_signer::wireguard::WgKey = out.trim().parse().unwrap();
    let read = rempart_signer::wireguard::read_private_key(&path).unwrap();
    assert_eq!(read.public(), printed);
    let text = std::fs::read_to_string(&path).unwrap();
    assert!(!out.contains(text.trim()), "the private key must never be printed");
    assert!(!err.contains(text.trim()), "the private key must never be printed");
}

#[test]
fn keygen_refuses_to_overwrite_and_leaves_the_old_key() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wg.key");
    std::fs::write(&path, "old\n").unwrap();
    let (code, out, err) = keygen(&path);
    assert_eq!(code, super::EXIT_CANT_CREATE);
    assert!(out.is_empty());
    assert!(err.contains("already exists; refusing to overwrite"), "{err}");
    assert_eq!(std::fs::read_to_string(&path).unwrap(), "old\n");
}

#[test]
fn keygen_into_a_missing_directory_fails_clearly() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("missing/wg.key");
    let (code, _, err) = keygen(&path);
    assert_eq!(code, super::EXIT_CANT_CREATE);
    assert!(err.contains("cannot create the key file"), "{err}");
}

fn apply(file: &std::path::Path) -> (u8, String, String) {
    let cli = Cli::try_parse_from(["rempart", "wg", "apply", file.to_str().unwrap()])
        .expect("the command line parses");
    let (mut out, mut err) = (Vec::new(), Vec::new());
    let code = run(&cli, &mut out, &mut err).expect("writing to a Vec cannot fail");
    (code, String::from_utf8(out).unwrap(), String::from_utf8(err).unwrap())
}

/// A signer policy (PKCS#11 backend: nothing is opened by loading it), with `wireguard` appended.
fn signer_policy(dir: &std::path::Path, wireguard: &str) -> std::path::PathBuf {
    let text = format!(
        "[chain]\nid = \"{}\"\nmax_clock_skew_ms = 1000\n[[producers]]\naccount = \"eosio\"\n\
         key = \"PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63\"\n[backend]\n\
         kind = \"pkcs11\"\n[backend.pkcs11]\nmodule = \"/m.so\"\ntoken_label = \"t\"\n\
         pin_env = \"PIN\"\nkeys = [{{ label = \"k\" }}]\n[listen]\nunix_socket = \"s.sock\"\n\
         allow_own_uid = true\n[state]\ndir = \"state\"\n\
         audit_log = \"state/audit.jsonl\"\n{wireguard}",
        "02".repeat(32)
    );
    let path = dir.join("signer.toml");
    std::fs::write(&path, text).unwrap();
    path
}

#[test]
fn apply_refuses_a_file_without_a_tunnel_or_that_is_no_policy() {
    let dir = tempfile::tempdir().unwrap();
    let (code, out, err) = apply(&signer_policy(dir.path(), ""));
    assert_eq!(code, super::EXIT_CONFIG, "{err}");
    assert!(out.is_empty());
    assert!(err.contains("is a signer policy without a [wireguard] section"), "{err}");

    let junk = dir.path().join("junk.toml");
    std::fs::write(&junk, "what = 1\n").unwrap();
    let (code, _, err) = apply(&junk);
    assert_eq!(code, super::EXIT_CONFIG);
    assert!(err.contains("neither a valid signer policy nor a valid node configuration"), "{err}");
    assert!(err.contains("As a signer policy:") && err.contains("As a node configuration:"));
}

#[test]
fn apply_never_creates_an_interface_and_says_what_to_start() {
    let dir = tempfile::tempdir().unwrap();
    let key = dir.path().join("wg.key");
    rempart_signer::wireguard::generate_key_file(&key).unwrap();
    let wireguard = format!(
        "[wireguard]\ninterface = \"rwa{}\"\nprivate_key_file = \"wg.key\"\n\
         address = \"10.98.0.4/24\"\nbackend = \"userspace\"\n[[wireguard.peers]]\n\
         public_key = \"{}\"\naddress = \"10.98.0.1\"\n",
        std::process::id() % 100_000,
        rempart_signer::wireguard::WgKey([9; 32])
    );
    let (code, out, err) = apply(&signer_policy(dir.path(), &wireguard));
    assert_eq!(code, super::EXIT_UNAVAILABLE, "{out}{err}");
    assert!(err.contains("never creates one"), "{err}");
    let text = std::fs::read_to_string(&key).unwrap();
    assert!(!err.contains(text.trim()), "the private key must never be printed");
}

#[path = "../../../tests/support/netns.rs"]
mod netns;

/// Root and namespaces: `apply` syncs a live wireguard-go interface to the file and says what
/// changed; the interface then has the file's key and peers and nothing else.
#[test]
fn apply_syncs_a_live_interface_to_the_file() {
    if !netns::namespaces_or_skip("apply_syncs_a_live_interface_to_the_file") {
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let mut net = netns::Net::new("rwa");
    let ns = net.namespace("s");
    let iface = net.interface("s");
    let old_key = dir.path().join("old.key");
    rempart_signer::wireguard::generate_key_file(&old_key).unwrap();
    let [kept, gone, added] = [[1; 32], [2; 32], [3; 32]].map(rempart_signer::wireguard::WgKey);
    let (kept_s, gone_s) = (kept.to_string(), gone.to_string());
    net.wireguard_go(
        &ns,
        &iface,
        &old_key,
        51820,
        "10.98.0.9/24",
        &[
            netns::WgPeer { public_key: &kept_s, address: "10.98.0.1", endpoint: None },
            netns::WgPeer { public_key: &gone_s, address: "10.98.0.2", endpoint: None },
        ],
    );
    let new_public = rempart_signer::wireguard::generate_key_file(&dir.path().join("wg.key"));
    let new_public = new_public.unwrap();
    let wireguard = format!(
        "[wireguard]\ninterface = \"{iface}\"\nprivate_key_file = \"wg.key\"\nlisten_port = \
         51820\naddress = \"10.98.0.4/24\"\n[[wireguard.peers]]\npublic_key = \"{kept}\"\n\
         address = \"10.98.0.1\"\n[[wireguard.peers]]\npublic_key = \"{added}\"\n\
         address = \"10.98.0.3\"\n"
    );
    let policy = signer_policy(dir.path(), &wireguard);
    let (code, out, err) = netns::inside(&ns, || apply(&policy));
    assert_eq!(code, 0, "{out}{err}");
    assert!(out.contains(&format!("public key {new_public} (new: every peer handshakes again)")));
    assert!(out.contains(&format!("added peer {added} at 10.98.0.3")), "{out}");
    assert!(out.contains(&format!("kept peer {kept} at 10.98.0.1")), "{out}");
    assert!(out.contains(&format!("removed peer {gone}")), "{out}");
    let show = |what: &str| netns::run("ip", &["netns", "exec", &ns, "wg", "show", &iface, what]);
    assert_eq!(show("public-key").trim(), new_public.to_string());
    let mut peers: Vec<String> = show("peers").lines().map(str::to_string).collect();
    peers.sort();
    let mut want = vec![kept.to_string(), added.to_string()];
    want.sort();
    assert_eq!(peers, want);
    let addr = netns::run("ip", &["-n", &ns, "-o", "-4", "address", "show", "dev", &iface]);
    assert!(addr.contains("10.98.0.4/24") && !addr.contains("10.98.0.9"), "{addr}");
    let key_text = std::fs::read_to_string(dir.path().join("wg.key")).unwrap();
    assert!(!out.contains(key_text.trim()) && !err.contains(key_text.trim()));

    // Again: nothing changes.
    let (code, out, _) = netns::inside(&ns, || apply(&policy));
    assert_eq!(code, 0);
    assert!(!out.contains("(new:") && !out.contains("added") && !out.contains("removed"), "{out}");
}
