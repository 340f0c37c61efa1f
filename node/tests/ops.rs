//! `rempart-node snapshot`, `restore` and `replay` as an operator runs them: the real binary
//! over a configuration file and a data directory holding blocks with transactions.

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::transaction::{Action, PermissionLevel, Transaction};
use rempart_core::{Bytes, Name, TimePointSec, to_bytes};
use rempart_node::authority::Authority;
use rempart_node::chain::{Chain, sign_transaction};
use rempart_node::config::Limits;
use rempart_node::genesis::Genesis;
use rempart_node::native::NewAccount;
use rempart_node::ops;
use rempart_node::store::Store;

const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

fn node(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rempart-node"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run rempart-node")
}

/// A configuration in `dir` whose producer data lives in `producer/` and api data in `api/`.
fn deploy(dir: &Path) -> (Genesis, std::path::PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(root.join("policies/genesis.json"), dir.join("genesis.json")).expect("copy");
    let config = dir.join("node.toml");
    std::fs::write(
        &config,
        r#"genesis = "genesis.json"
[producer]
data_dir = "producer"
name = "eosio"
private_listen = "127.0.0.1:1"
signer = "unix:signer.sock"
[api]
data_dir = "api"
http_listen = "127.0.0.1:1"
producer = "127.0.0.1:1"
"#,
    )
    .expect("node.toml");
    (Genesis::load(&dir.join("genesis.json")).expect("genesis"), config)
}

/// Blocks 2..=11 in `data_dir`, each with one newaccount.
fn make_blocks(data_dir: &Path, genesis: &Genesis) {
    std::fs::create_dir_all(data_dir).expect("dir");
    let store = Arc::new(Store::open(&data_dir.join(ops::STATE_FILE)).expect("store"));
    let chain = Chain::open(store, genesis, Limits::default()).expect("chain");
    let dev: PrivateKey = DEV_WIF.parse().expect("key");
    let eosio = Name::from_const("eosio");
    for i in 0..10u8 {
        let info = chain.info();
        let auth = Authority::single_key(PrivateKey::generate(KeyType::K1).public_key());
        let name: Name = format!("user{}", (b'a' + i) as char).parse().expect("name");
        let data = NewAccount { creator: eosio, name, owner: auth.clone(), active: auth };
        let mut t = Transaction {
            actions: vec![Action {
                account: eosio,
                name: Name::from_const("newaccount"),
                authorization: vec![PermissionLevel {
                    actor: eosio,
                    permission: Name::from_const("active"),
                }],
                data: Bytes(to_bytes(&data)),
            }],
            ..Default::default()
        };
        let head_sec = info.head_block_time.to_time_point().0 / 1_000_000;
        t.header.expiration = TimePointSec((head_sec + 600) as u32);
        t.set_reference_block(&info.head_block_id);
        chain.start_block(info.head_block_time.next()).expect("start");
        chain.push_transaction(sign_transaction(t, &[&dev], &chain.chain_id())).expect("push");
        chain.finish_block(|req| Ok(dev.sign(&req.digest()))).expect("block");
    }
}

fn text(o: &std::process::Output) -> String {
    format!("{}{}", String::from_utf8_lossy(&o.stdout), String::from_utf8_lossy(&o.stderr))
}

#[test]
fn snapshot_restore_and_replay_through_the_binary() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (genesis, config) = deploy(dir.path());
    make_blocks(&dir.path().join("producer"), &genesis);
    let original = ops::digest_of(&dir.path().join("producer")).expect("digest");

    let snap = dir.path().join("producer.snap");
    let out =
        node(&["snapshot", "--role", "producer", "--out", snap.to_str().expect("utf8")], &config);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("at block 11"), "{}", text(&out));
    assert!(text(&out).contains(&original.to_string()), "{}", text(&out));

    // Into the api role's empty data directory: the same state at the same head.
    let out = node(&["restore", "--role", "api", "--in", snap.to_str().expect("utf8")], &config);
    assert!(out.status.success(), "{}", text(&out));
    assert_eq!(ops::digest_of(&dir.path().join("api")).expect("digest"), original);
    // A second restore is refused: the directory is no longer empty.
    let out = node(&["restore", "--role", "api", "--in", snap.to_str().expect("utf8")], &config);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("is not empty"), "{}", text(&out));

    let out = node(&["replay", "--role", "api"], &config);
    assert!(out.status.success(), "{}", text(&out));
    assert!(text(&out).contains("equals the original"), "{}", text(&out));
    assert!(text(&out).contains(&original.to_string()), "{}", text(&out));
}

#[test]
fn a_damaged_snapshot_is_refused_with_a_clear_error() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (genesis, config) = deploy(dir.path());
    make_blocks(&dir.path().join("producer"), &genesis);
    let snap = dir.path().join("producer.snap");
    let out =
        node(&["snapshot", "--role", "producer", "--out", snap.to_str().expect("utf8")], &config);
    assert!(out.status.success(), "{}", text(&out));
    let mut bytes = std::fs::read(&snap).expect("read");
    let last = bytes.len() - 40;
    bytes[last] ^= 0x80;
    std::fs::write(&snap, bytes).expect("write");
    let out = node(&["restore", "--role", "api", "--in", snap.to_str().expect("utf8")], &config);
    assert_eq!(out.status.code(), Some(1));
    assert!(text(&out).contains("checksum does not match"), "{}", text(&out));
    assert!(!dir.path().join("api").join(ops::STATE_FILE).exists());
}
