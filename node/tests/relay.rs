//! An api node that follows another api node, as real processes: a producer whose blocks a real
//! `rempart-signer` (soft backend, development chain) signs, api node A following it with
//! `api.private_listen` set, and api node B following A.
//!
//! B reaches the producer's head with the producer's very blocks (byte for byte, verified again
//! by B); a transaction pushed over HTTP to B is relayed through A to the producer, lands in a
//! block the producer made and is served by B; a refusal comes back through the relay exactly
//! as A gives it; SIGKILL of A stops B advancing (B stays up, its state intact) and B resumes
//! from its own head when A restarts; with the producer gone, a push to B is a 503 relayed
//! from A. Each wait polls with a deadline; the signer binary is built with `cargo build -p
//! rempart-signer` (a no-op when fresh) next to this test's own binary.

mod support;

use std::net::SocketAddr;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use rempart_core::Checksum256;
use rempart_core::key::{KeyType, PrivateKey};
use rempart_node::chain::sign_transaction;
use rempart_node::genesis::Genesis;
use rempart_node::store::Store;
use serde_json::Value;
use support::*;

fn until(what: &str, secs: u64, done: impl FnMut() -> bool) {
    wait_for(what, Duration::from_secs(secs), done);
}

/// The test's directory: genesis, signer policy and key, and the two nodes' configurations
/// (`a.toml` runs the producer and api node A, `b.toml` api node B).
struct Net {
    dir: tempfile::TempDir,
    chain_id: Checksum256,
    http_a: SocketAddr,
    http_b: SocketAddr,
}

impl Net {
    fn new() -> Net {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json");
        std::fs::copy(root, d.join("genesis.json")).expect("genesis");
        let chain_id = Genesis::load(&d.join("genesis.json")).expect("genesis").chain_id();
        let (producer, relay, http_a, http_b) =
            (free_port(), free_port(), free_port(), free_port());
        let node = |api: &str, http: u16, upstream: u16, listen: &str| {
            format!(
                "genesis = \"genesis.json\"\n[producer]\ndata_dir = \"producer\"\nname = \
                 \"eosio\"\nprivate_listen = \"127.0.0.1:{producer}\"\nsigner = \
                 \"unix:signer.sock\"\nsign_timeout_ms = 400\nmetrics_file = \"producer.prom\"\n\
                 [api]\ndata_dir = \"{api}\"\nhttp_listen = \"127.0.0.1:{http}\"\nproducer = \
                 \"127.0.0.1:{upstream}\"\n{listen}"
            )
        };
        let listen = format!("private_listen = \"127.0.0.1:{relay}\"\n");
        std::fs::write(d.join("a.toml"), node("a", http_a, producer, &listen)).expect("a.toml");
        std::fs::write(d.join("b.toml"), node("b", http_b, relay, "")).expect("b.toml");
        write_dev_signer(d, &chain_id);
        let at = |p: u16| SocketAddr::from(([127, 0, 0, 1], p));
        Net { dir, chain_id, http_a: at(http_a), http_b: at(http_b) }
    }

    fn path(&self, name: &str) -> PathBuf {
        self.dir.path().join(name)
    }

    /// The signer, built next to this test binary, with its guard initialised.
    fn signer(&self) -> Proc {
        start_dev_signer(self.dir.path(), &signer_bin())
    }

    /// `rempart-node run --role <role> --config <config>`, its log in `<log>.log`.
    fn node(&self, role: &str, config: &str, log: &str) -> Proc {
        let log = std::fs::OpenOptions::new()
            .create(true)
            .append(true)
            .open(self.path(&format!("{log}.log")))
            .expect("log");
        let child = Command::new(env!("CARGO_BIN_EXE_rempart-node"))
            .args(["--log-format", "text", "run", "--role", role, "--config"])
            .arg(self.path(config))
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn node");
        Proc(child)
    }

    fn log(&self, name: &str) -> String {
        std::fs::read_to_string(self.path(&format!("{name}.log"))).unwrap_or_default()
    }

    /// The producer's head from its metrics file (0 before it writes one).
    fn producer_head(&self) -> u32 {
        metrics_head(&self.path("producer.prom"))
    }
}

/// POSTs `body` to `path`; the status and JSON answer, `None` when the node is not there.
fn post(addr: SocketAddr, path: &str, body: &str) -> Option<(u16, Value)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(40))).ok()?;
    let n = body.len();
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: n\r\nContent-Length: {n}\r\nConnection: close\r\n\r\n{body}"
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut answer = String::new();
    s.read_to_string(&mut answer).ok()?;
    let (head, json) = answer.split_once("\r\n\r\n")?;
    Some((head.split(' ').nth(1)?.parse().ok()?, serde_json::from_str(json).ok()?))
}

fn info(addr: SocketAddr) -> Option<Value> {
    post(addr, "/v1/chain/get_info", "{}").map(|(_, v)| v)
}

fn head(addr: SocketAddr) -> u32 {
    info(addr).and_then(|v| v["head_block_num"].as_u64()).map_or(0, |h| h as u32)
}

/// `eosio` creates `name`, TaPoS on block `reference`, signed with the development key.
fn newaccount(net: &Net, name: &str, reference: &Checksum256) -> String {
    let owner = PrivateKey::generate(KeyType::K1);
    let t = newaccount_trx(name.parse().expect("name"), reference, &owner);
    let dev: PrivateKey = DEV_WIF.parse().expect("dev key");
    serde_json::to_string(&sign_transaction(t, &[&dev], &net.chain_id)).expect("json")
}

#[test]
fn an_api_node_follows_another_api_node_and_pushes_through_it() {
    let net = Net::new();
    let _signer = net.signer();
    let producer = net.node("producer", "a.toml", "producer");
    let mut a = Some(net.node("api", "a.toml", "a"));
    let mut b = net.node("api", "b.toml", "b");
    let logs = || format!("--- a\n{}\n--- b\n{}", net.log("a"), net.log("b"));
    until("B to follow the producer through A", 60, || head(net.http_b) >= 4);

    // A push to B is relayed through A to the producer; B then serves the block holding it.
    let reference: Checksum256 = info(net.http_b).expect("get_info")["head_block_id"]
        .as_str()
        .and_then(|s| s.parse().ok())
        .expect("head id");
    let trx = newaccount(&net, "relayed", &reference);
    let (status, pushed) = post(net.http_b, "/v1/chain/push_transaction", &trx).expect("push");
    assert_eq!(status, 200, "{pushed}\n{}", logs());
    let id = pushed["transaction_id"].as_str().expect("id").to_string();
    let block = pushed["processed"]["block_num"].as_u64().expect("block_num");
    until("B to apply the block with the transaction", 30, || u64::from(head(net.http_b)) >= block);
    let (status, seen) =
        post(net.http_b, "/v1/history/get_transaction", &format!("{{\"id\":\"{id}\"}}"))
            .expect("get_transaction");
    assert_eq!((status, seen["block_num"].as_u64()), (200, Some(block)), "{seen}");
    let (status, account) =
        post(net.http_b, "/v1/chain/get_account", "{\"account_name\":\"relayed\"}").expect("acct");
    assert_eq!((status, &account["account_name"]), (200, &Value::from("relayed")), "{account}");
    // The producer's refusal travels back through the relay unchanged.
    let via_b = post(net.http_b, "/v1/chain/push_transaction", &trx).expect("duplicate via B");
    let via_a = post(net.http_a, "/v1/chain/push_transaction", &trx).expect("duplicate via A");
    assert_ne!(via_b.0, 200, "{}", via_b.1);
    assert_eq!(via_b, via_a, "a refusal relayed by A reaches B's client unchanged");

    // A is killed: B stays up and stops where it was; the producer goes on.
    drop(a.take());
    let stopped_at = head(net.http_b);
    until("the producer to move on", 30, || net.producer_head() >= stopped_at + 4);
    let still = head(net.http_b);
    until("the producer to move on again", 30, || net.producer_head() >= still + 4);
    assert_eq!(head(net.http_b), still, "B advanced without A\n{}", logs());
    assert!(b.0.try_wait().expect("status").is_none(), "B exited\n{}", logs());
    let (status, _) =
        post(net.http_b, "/v1/chain/push_transaction", &newaccount(&net, "nobody", &reference))
            .expect("push without A");
    assert_eq!(status, 503, "a push with A gone is unavailable");

    // A restarts: B resumes from its own head and catches up with the producer.
    a = Some(net.node("api", "a.toml", "a"));
    let target = net.producer_head();
    until("B to catch up after A restarted", 60, || head(net.http_b) >= target);
    assert!(!logs().contains("follower stopped"), "{}", logs());

    // The producer is gone: A, which relays B's pushes, answers 503 and B passes it on.
    drop(producer);
    let (status, e) =
        post(net.http_b, "/v1/chain/push_transaction", &newaccount(&net, "late", &reference))
            .expect("push without the producer");
    assert_eq!(status, 503, "{e}");
    assert!(e.to_string().contains("producer cannot be reached"), "{e}");

    // B's blocks are the producer's, byte for byte, at every height.
    drop(a.take());
    drop(b);
    let p = Store::open(&net.path("producer/state.redb")).expect("producer store");
    let r = Store::open(&net.path("b/state.redb")).expect("B store");
    let (p, r) = (p.read().expect("read"), r.read().expect("read"));
    let b_head = r.head().expect("head").expect("B has a head").block_num;
    assert!(b_head >= target, "B's stored head {b_head} is below {target}");
    for n in 1..=b_head {
        let ours = r.block(n).expect("read").expect("B holds the block");
        assert_eq!(Some(ours), p.block(n).expect("read"), "block {n} differs from the producer's");
    }
}
