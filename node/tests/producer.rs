//! The producer as real processes: `rempart-node run --role producer` with its blocks signed by
//! a real `rempart-signer` (soft backend, development chain) over a Unix socket, transactions
//! pushed over the private protocol, and kill -9 of the producer under load. After every
//! restart the chain is consistent (each block links to the previous one), every transaction
//! a client saw in a committed block is still there, and replaying the block log gives the
//! very state the kills left.
//!
//! The api node is killed the same way while clients push through its HTTP API: after every
//! restart it resumes following from its own head (never going back) and at the end it holds
//! the producer's blocks, with every transaction a client saw in a block.
//!
//! Cycles: 50 of each by default (the issue's number), `REMPART_PRODUCER_KILL_CYCLES` and
//! `REMPART_API_KILL_CYCLES` to change them. One signer process serves every cycle; each wait
//! polls with a deadline. The signer binary is built with `cargo build -p rempart-signer` (a
//! no-op when fresh) next to this test's own binary.

#[path = "../../tests/support/etcd.rs"]
mod etcd;
mod support;

use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::sync::Arc;
use std::time::Duration;

use rempart_core::block::SignedBlock;
use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::{Checksum256, Name, from_bytes};
use rempart_node::chain::{Chain, sign_transaction};
use rempart_node::config::Limits;
use rempart_node::genesis::Genesis;
use rempart_node::peer::PushClient;
use rempart_node::producer::clock;
use rempart_node::store::Store;
use support::*;

/// Kill cycles of a test: `var` when set, else `default`.
fn cycles(var: &str, default: u32) -> u32 {
    std::env::var(var).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

struct Deployment {
    dir: tempfile::TempDir,
    genesis: Genesis,
    config: PathBuf,
    private: std::net::SocketAddr,
    metrics: PathBuf,
}

fn deploy() -> Deployment {
    let dir = tempfile::tempdir().expect("tempdir");
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(root.join("policies/genesis.json"), dir.path().join("genesis.json"))
        .expect("genesis");
    let genesis = Genesis::load(&dir.path().join("genesis.json")).expect("genesis");
    let port = free_port();
    let config = dir.path().join("node.toml");
    std::fs::write(
        &config,
        format!(
            r#"genesis = "genesis.json"
[producer]
data_dir = "producer"
name = "eosio"
private_listen = "127.0.0.1:{port}"
signer = "unix:signer.sock"
sign_timeout_ms = 400
metrics_file = "producer.prom"
[api]
data_dir = "api"
http_listen = "127.0.0.1:{api}"
producer = "127.0.0.1:{port}"
"#,
            api = free_port()
        ),
    )
    .expect("node.toml");
    write_dev_signer(dir.path(), &genesis.chain_id());
    Deployment {
        metrics: dir.path().join("producer.prom"),
        private: format!("127.0.0.1:{port}").parse().expect("addr"),
        dir,
        genesis,
        config,
    }
}

fn start_producer(d: &Deployment) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.dir.path().join("producer.log"))
        .expect("log");
    let child = Command::new(env!("CARGO_BIN_EXE_rempart-node"))
        .args(["run", "--role", "producer", "--config"])
        .arg(&d.config)
        .stdout(Stdio::null())
        .stderr(log)
        .spawn()
        .expect("spawn producer");
    Proc(child)
}

fn producer_log(d: &Deployment) -> String {
    std::fs::read_to_string(d.dir.path().join("producer.log")).unwrap_or_default()
}

/// The id of block 1, which every node derives from the genesis: the TaPoS reference.
fn genesis_block_id(genesis: &Genesis) -> Checksum256 {
    let dir = tempfile::tempdir().expect("tempdir");
    let store = Arc::new(Store::open(&dir.path().join("s.redb")).expect("store"));
    Chain::open(store, genesis, Limits::default()).expect("chain").info().head_block_id
}

/// Account names a1111…, a1112…: base-5 digits in the name alphabet.
fn account_name(i: u32) -> Name {
    let mut s = String::from("acc");
    let mut v = i;
    for _ in 0..9 {
        s.push((b'1' + (v % 5) as u8) as char);
        v /= 5;
    }
    s.parse().expect("name")
}

#[test]
fn producer_signs_through_the_signer_and_survives_kill_9_under_load() {
    let cycles = cycles("REMPART_PRODUCER_KILL_CYCLES", 50);
    let bin = signer_bin();
    let d = deploy();
    let _signer = start_dev_signer(d.dir.path(), &bin);
    let chain_id = d.genesis.chain_id();
    let ref_block = genesis_block_id(&d.genesis);
    let dev: PrivateKey = DEV_WIF.parse().expect("dev key");
    let rt = tokio::runtime::Builder::new_multi_thread().enable_all().build().expect("runtime");
    let client = PushClient::new(d.private, chain_id, 1 << 20);

    // (transaction id, block it was reported in, head committed when the producer was killed)
    let mut seen: Vec<(String, u32, u32)> = Vec::new();
    let next = Arc::new(std::sync::atomic::AtomicU32::new(0));
    let mut last_head = 0u32;
    for cycle in 0..=cycles {
        let producer = start_producer(&d);
        wait_for("the producer to make blocks", Duration::from_secs(60), || {
            metrics_head(&d.metrics) > last_head
        });
        // Load: four clients push concurrently while blocks are made; kill -9 mid-stream.
        let acked = Arc::new(std::sync::Mutex::new(Vec::<(String, u32)>::new()));
        let refused = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
        let tasks: Vec<_> = (0..4)
            .map(|_| {
                let (client, next, acked, refused) =
                    (client.clone(), next.clone(), acked.clone(), refused.clone());
                let dev = dev.clone();
                rt.spawn(async move {
                    loop {
                        let i = next.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                        let key = PrivateKey::generate(KeyType::K1);
                        let t = newaccount_trx(account_name(i), &ref_block, &key);
                        let packed = sign_transaction(t, &[&dev], &chain_id);
                        match client.push(packed).await {
                            Ok(trace) => {
                                let id = trace["id"].as_str().unwrap_or_default().to_string();
                                let block = trace["block_num"].as_u64().unwrap_or(0) as u32;
                                acked.lock().expect("lock").push((id, block));
                            }
                            // 503s while the producer is down or restarting are expected;
                            // anything else is a refusal the test reports.
                            Err(e) if e.status == 503 => {
                                tokio::time::sleep(Duration::from_millis(20)).await;
                            }
                            Err(e) => refused.lock().expect("lock").push(e.to_string()),
                        }
                    }
                })
            })
            .collect();
        let target = metrics_head(&d.metrics) + 2;
        let end = clock::instant() + Duration::from_secs(60);
        while metrics_head(&d.metrics) < target {
            if clock::instant() > end {
                let log = producer_log(&d);
                let tail: Vec<_> = log.lines().rev().take(40).collect();
                panic!(
                    "cycle {cycle}: no blocks under load; producer log (newest first):\n{}",
                    tail.join("\n")
                );
            }
            std::thread::sleep(Duration::from_millis(20));
        }
        last_head = metrics_head(&d.metrics);
        drop(producer); // SIGKILL, with pushes in flight
        for t in &tasks {
            t.abort();
        }
        let refused = refused.lock().expect("lock").clone();
        assert!(refused.is_empty(), "pushes refused: {refused:?}\n{}", producer_log(&d));
        let acked = std::mem::take(&mut *acked.lock().expect("lock"));
        eprintln!("cycle {cycle}: killed at head {last_head}, {} pushes acknowledged", acked.len());
        seen.extend(acked.into_iter().map(|(id, b)| (id, b, last_head)));
    }

    // Every block links to the previous one; every transaction reported in a block that was
    // committed before the kill is in that block.
    let store = Store::open(&d.dir.path().join("producer/state.redb")).expect("open store");
    let snap = store.read().expect("snapshot");
    let head = snap.head().expect("head").expect("a head");
    assert!(head.block_num >= last_head, "head {} went back below {last_head}", head.block_num);
    let mut previous = snap.block_id(1).expect("read").expect("block 1");
    for n in 2..=head.block_num {
        let bytes = snap.block(n).expect("read").unwrap_or_else(|| panic!("block {n} missing"));
        let b: SignedBlock = from_bytes(&bytes).expect("block decodes");
        assert_eq!(b.signed_header.header.previous, previous, "block {n} does not link");
        previous = b.id();
        assert_eq!(snap.block_id(n).expect("read"), Some(previous));
    }
    let committed: Vec<_> = seen.iter().filter(|(_, b, h)| b <= h).collect();
    assert!(!committed.is_empty(), "no transaction reached a committed block");
    for (id, block, _) in committed {
        let id: Checksum256 = id.parse().expect("id");
        let found = snap.transaction_block(&id).expect("read");
        assert_eq!(
            found,
            Some(*block),
            "transaction {id} of committed block {block} moved or is lost"
        );
    }
    // The state the kills left behind is exactly what the block log makes: a replay into a
    // fresh store agrees with it.
    drop(snap);
    drop(store);
    let report = rempart_node::ops::replay(
        &d.dir.path().join("producer"),
        &d.genesis,
        Limits::default(),
        |_, _| {},
    )
    .expect("replay");
    assert!(report.matches(), "replayed state {} != {}", report.rebuilt, report.original);
}

fn metric(d: &Deployment, name: &str) -> u64 {
    let text = std::fs::read_to_string(&d.metrics).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with(&format!("{name}{{")))
        .and_then(|l| l.rsplit(' ').next())
        .and_then(|v| v.parse().ok())
        .unwrap_or(0)
}

#[test]
fn without_its_signer_the_producer_counts_missed_slots_then_resumes() {
    let bin = signer_bin();
    let d = deploy();
    let producer = start_producer(&d);
    wait_for("missed slots in the metrics", Duration::from_secs(30), || {
        metric(&d, "rempart_node_missed_slots_total") >= 2
    });
    assert_eq!(metrics_head(&d.metrics), 1, "no block without a signature");
    let _signer = start_dev_signer(d.dir.path(), &bin);
    wait_for("blocks once the signer is up", Duration::from_secs(30), || {
        metrics_head(&d.metrics) >= 3
    });
    drop(producer);
    // Every block was made once: the chain links and heights are contiguous.
    let store = Store::open(&d.dir.path().join("producer/state.redb")).expect("open store");
    let snap = store.read().expect("snapshot");
    let head = snap.head().expect("head").expect("a head");
    let mut slots = Vec::new();
    for n in 2..=head.block_num {
        let b: SignedBlock =
            from_bytes(&snap.block(n).expect("read").expect("block")).expect("block decodes");
        slots.push(b.signed_header.header.timestamp);
    }
    assert!(slots.windows(2).all(|w| w[0] < w[1]), "slots go forward: {slots:?}");
}

/// Waits until the producer's head is `by` blocks above where it is now.
fn advance(d: &Deployment, what: &str, by: u32) {
    let target = metrics_head(&d.metrics) + by;
    wait_for(what, Duration::from_secs(60), || metrics_head(&d.metrics) >= target);
}

/// Per block number, the digests a signer's audit log says it released a signature for. (A
/// line a kill -9 cut short is not JSON, and names no released signature.)
fn signed_digests(audit: &Path) -> std::collections::BTreeMap<u64, Vec<String>> {
    let mut out = std::collections::BTreeMap::<u64, Vec<String>>::new();
    let text = std::fs::read_to_string(audit).expect("audit log");
    let lines: Vec<&str> = text.lines().collect();
    for (i, line) in lines.iter().enumerate() {
        let Ok(v) = serde_json::from_str::<serde_json::Value>(line) else {
            assert_eq!(i + 1, lines.len(), "only a last line may be cut: {line}");
            continue;
        };
        if v["event"] == "signature" {
            let n = v["block_num"].as_u64().expect("block_num");
            out.entry(n).or_default().push(v["digest"].as_str().expect("digest").to_owned());
        }
    }
    out
}

#[test]
fn the_producer_moves_to_its_standby_signer_and_back_without_two_blocks_at_one_height() {
    let bin = signer_bin();
    let d = deploy();
    let standby = with_standby(&d);
    write_dev_signer(&standby, &d.genesis.chain_id());
    let primary = start_dev_signer(d.dir.path(), &bin);
    let second = start_dev_signer(&standby, &bin);
    let producer = start_producer(&d);
    advance(&d, "blocks from the first signer", 4);
    assert_eq!(metric(&d, "rempart_node_signer_failovers_total"), 0);
    wait_for("both signers probed ready", Duration::from_secs(30), || {
        signer_ready(&d, 0) == Some(1) && signer_ready(&d, 1) == Some(1)
    });

    // The first signer dies: after a missed slot or two the standby signs, and the probe
    // says the first one is not ready.
    drop(primary);
    advance(&d, "blocks from the standby signer", 4);
    wait_for("the first signer probed not ready", Duration::from_secs(30), || {
        signer_ready(&d, 0) == Some(0)
    });
    assert_eq!(signer_ready(&d, 1), Some(1));
    assert!(producer_log(&d).contains("signer not ready"));
    assert_eq!(metric(&d, "rempart_node_signer_in_use"), 1);
    assert!(metric(&d, "rempart_node_signer_failovers_total") >= 1);

    // The first signer is back and the standby dies: the producer goes back to the first.
    let _primary = restart_dev_signer(d.dir.path(), &bin);
    drop(second);
    advance(&d, "blocks from the first signer again", 4);
    assert_eq!(metric(&d, "rempart_node_signer_in_use"), 0);
    assert!(metric(&d, "rempart_node_signer_failovers_total") >= 2);
    let log = producer_log(&d);
    assert!(log.contains("the next block goes to the next signer"), "{log}");

    // Both signers signed blocks, and never two different blocks at one height between them.
    let logs =
        [d.dir.path().join("signer-state/audit.jsonl"), standby.join("signer-state/audit.jsonl")];
    assert!(logs.iter().all(|l| !signed_digests(l).is_empty()), "each signer signed");
    assert_one_block_per_height(&logs);
    // And the chain holds one block per height, each linking to the one before.
    drop(producer);
    assert_chain_links(&d);
}

/// `rempart_node_signer_ready` of signer `index` in the producer's metrics file.
fn signer_ready(d: &Deployment, index: usize) -> Option<u64> {
    let text = std::fs::read_to_string(&d.metrics).unwrap_or_default();
    let label = format!("signer=\"{index}\"");
    text.lines()
        .find(|l| l.starts_with("rempart_node_signer_ready{") && l.contains(&label))
        .and_then(|l| l.rsplit(' ').next()?.parse().ok())
}

/// Lists a standby signer, at `standby/signer.sock`, in the producer's configuration; returns
/// the directory to write it into.
fn with_standby(d: &Deployment) -> PathBuf {
    let text = std::fs::read_to_string(&d.config).expect("node.toml");
    let text = text.replace(
        "signer = \"unix:signer.sock\"",
        "signer = \"unix:signer.sock\"\nstandby_signers = [\"unix:standby/signer.sock\"]",
    );
    std::fs::write(&d.config, text).expect("node.toml");
    let standby = d.dir.path().join("standby");
    std::fs::create_dir(&standby).expect("standby dir");
    standby
}

/// The producer's chain: every block links to the one before.
fn assert_chain_links(d: &Deployment) {
    let store = Store::open(&d.dir.path().join("producer/state.redb")).expect("open store");
    let snap = store.read().expect("snapshot");
    let head = snap.head().expect("head").expect("a head");
    let mut previous = snap.block_id(1).expect("read").expect("block 1");
    for n in 2..=head.block_num {
        let b: SignedBlock =
            from_bytes(&snap.block(n).expect("read").expect("block")).expect("block decodes");
        assert_eq!(b.signed_header.header.previous, previous, "block {n} does not link");
        previous = b.id();
    }
}

/// Every height signed by the signers whose audit logs are `logs`, with one digest each.
fn assert_one_block_per_height(logs: &[PathBuf]) -> usize {
    let mut all = std::collections::BTreeMap::<u64, Vec<String>>::new();
    for log in logs {
        for (n, digests) in signed_digests(log) {
            all.entry(n).or_default().extend(digests);
        }
    }
    for (n, digests) in &all {
        let mut digests = digests.clone();
        digests.sort();
        digests.dedup();
        assert_eq!(digests.len(), 1, "block {n} was signed with two digests: {digests:?}");
    }
    all.len()
}

#[test]
fn standby_signers_sharing_their_guard_survive_kill_9_of_the_one_in_use() {
    let cycles = cycles("REMPART_FAILOVER_KILL_CYCLES", 20);
    let Some(program) = etcd::Etcd::program() else { return };
    let bin = signer_bin();
    let d = deploy();
    let etcd = etcd::Etcd::start(&program, d.dir.path());
    let standby = with_standby(&d);
    let dirs = [d.dir.path().to_path_buf(), standby];
    for (dir, name) in dirs.iter().zip(["a", "b"]) {
        let shared = format!(
            "[shared_guard]\netcd = \"127.0.0.1:{}\"\nprefix = \"/rempart/guard/\"\n\
             name = \"signer-{name}\"\ntimeout_ms = 1000\n",
            etcd.port
        );
        if dir != d.dir.path() {
            write_dev_signer_with(dir, &d.genesis.chain_id(), &shared);
        } else {
            // deploy() wrote the first one; give it the shared guard too.
            let policy = dir.join("signer.toml");
            let text = std::fs::read_to_string(&policy).expect("signer.toml") + &shared;
            std::fs::write(&policy, text).expect("signer.toml");
        }
    }
    let mut signers =
        [Some(start_dev_signer(&dirs[0], &bin)), Some(start_dev_signer(&dirs[1], &bin))];
    let producer = start_producer(&d);
    advance(&d, "blocks from the first signer", 2);

    // Each cycle kills the signer in use at a random moment of a slot, waits for two blocks from
    // the other one, and starts the killed one again.
    let random = std::collections::hash_map::RandomState::new();
    for cycle in 0..cycles {
        let in_use = usize::try_from(metric(&d, "rempart_node_signer_in_use")).expect("index");
        let delay = std::hash::BuildHasher::hash_one(&random, cycle) % 500;
        std::thread::sleep(Duration::from_millis(delay));
        drop(signers[in_use].take()); // SIGKILL
        advance(&d, &format!("cycle {cycle}: blocks from the other signer"), 2);
        signers[in_use] = Some(restart_dev_signer(&dirs[in_use], &bin));
    }
    let failovers = metric(&d, "rempart_node_signer_failovers_total");
    assert!(failovers >= u64::from(cycles), "{failovers} failovers in {cycles} cycles");
    let heights = assert_one_block_per_height(&[
        dirs[0].join("signer-state/audit.jsonl"),
        dirs[1].join("signer-state/audit.jsonl"),
    ]);
    let missed = metric(&d, "rempart_node_missed_slots_total");
    eprintln!("{cycles} kills, {failovers} failovers, {missed} missed slots, {heights} heights");
    drop(producer);
    assert_chain_links(&d);
}

/// A TCP relay to a signer's Unix socket that, while `mute` is set, passes requests on and
/// throws the answers away: the signer signs, the node hears nothing.
fn muting_relay(socket: PathBuf, mute: Arc<std::sync::atomic::AtomicBool>) -> u16 {
    use std::io::{Read, Write};
    let listener = std::net::TcpListener::bind("127.0.0.1:0").expect("bind relay");
    let port = listener.local_addr().expect("addr").port();
    std::thread::spawn(move || {
        for conn in listener.incoming() {
            let Ok(mut down) = conn else { continue };
            let Ok(mut up) = std::os::unix::net::UnixStream::connect(&socket) else { continue };
            let (mut down2, mut up2) =
                (down.try_clone().expect("clone"), up.try_clone().expect("clone"));
            std::thread::spawn(move || {
                let _ = std::io::copy(&mut down2, &mut up2);
                let _ = up2.shutdown(std::net::Shutdown::Both);
            });
            let mute = mute.clone();
            std::thread::spawn(move || {
                let mut buf = [0u8; 16 * 1024];
                while let Ok(n) = up.read(&mut buf) {
                    if n == 0
                        || (!mute.load(std::sync::atomic::Ordering::SeqCst)
                            && down.write_all(&buf[..n]).is_err())
                    {
                        break;
                    }
                }
                let _ = down.shutdown(std::net::Shutdown::Both);
            });
        }
    });
    port
}

#[test]
fn a_block_the_silent_signer_signed_is_not_given_up_when_the_standby_refuses_it() {
    let bin = signer_bin();
    let d = deploy();
    // The producer reaches its first signer through a relay that can lose the answers; the
    // standby serves another chain, so it refuses every block (and the producer moves on).
    let mute = Arc::new(std::sync::atomic::AtomicBool::new(false));
    let port = muting_relay(d.dir.path().join("signer.sock"), mute.clone());
    let text = std::fs::read_to_string(&d.config).expect("node.toml");
    let text = text.replace(
        "signer = \"unix:signer.sock\"",
        &format!("signer = \"127.0.0.1:{port}\"\nstandby_signers = [\"unix:standby/signer.sock\"]"),
    );
    std::fs::write(&d.config, text).expect("node.toml");
    let standby = d.dir.path().join("standby");
    std::fs::create_dir(&standby).expect("standby dir");
    write_dev_signer(&standby, &Checksum256([7; 32]));
    let _primary = start_dev_signer(d.dir.path(), &bin);
    let _standby = start_dev_signer(&standby, &bin);
    let _producer = start_producer(&d);
    advance(&d, "blocks from the first signer", 3);

    // The first signer signs the next block, and its answer is lost: the producer moves on to
    // the standby, which refuses that block. The first signer may hold it (it does), so the
    // block goes back to it, which gives its signature again, and the chain goes on.
    let head = metrics_head(&d.metrics);
    mute.store(true, std::sync::atomic::Ordering::SeqCst);
    wait_for("the move to the standby", Duration::from_secs(30), || {
        metric(&d, "rempart_node_signer_failovers_total") >= 1
    });
    mute.store(false, std::sync::atomic::Ordering::SeqCst);
    advance(&d, "blocks after the lost answer", 3);
    assert!(metric(&d, "rempart_node_signer_failovers_total") >= 2, "back to the first signer");
    let log = producer_log(&d);
    assert!(log.contains("may have signed this block"), "{log}");
    // The block whose answer was lost is the one in the chain at that height: one digest per
    // height in the signer's log, and no refused block at the next height.
    let log = d.dir.path().join("signer-state/audit.jsonl");
    assert_one_block_per_height(std::slice::from_ref(&log));
    let signed = signed_digests(&log);
    assert!(signed.contains_key(&u64::from(head + 1)), "block {} was signed", head + 1);
    let audit = std::fs::read_to_string(d.dir.path().join("signer-state/audit.jsonl")).unwrap();
    assert!(!audit.contains("double_sign"), "the first signer never refused a block: {audit}");
}

/// POSTs `{}` to `path` on `addr` and returns the JSON answer (HTTP/1.1, connection closed).
fn http_post(addr: std::net::SocketAddr, path: &str) -> Option<serde_json::Value> {
    http_request(addr, path, "{}").map(|(_, v)| v)
}

/// POSTs `body` to `path` on `addr`; the status and JSON answer, `None` when the connection
/// fails or breaks (the node is down or was killed mid-request).
fn http_request(
    addr: std::net::SocketAddr,
    path: &str,
    body: &str,
) -> Option<(u16, serde_json::Value)> {
    use std::io::{Read, Write};
    let mut s = std::net::TcpStream::connect(addr).ok()?;
    s.set_read_timeout(Some(Duration::from_secs(10))).ok()?;
    let req = format!(
        "POST {path} HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\nConnection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes()).ok()?;
    let mut out = String::new();
    s.read_to_string(&mut out).ok()?;
    let (head, body) = out.split_once("\r\n\r\n")?;
    let status = head.split(' ').nth(1)?.parse().ok()?;
    Some((status, serde_json::from_str(body).ok()?))
}

/// The api node's HTTP address from the deployment's configuration.
fn api_addr(d: &Deployment) -> std::net::SocketAddr {
    let text = std::fs::read_to_string(&d.config).expect("config");
    text.lines()
        .find_map(|l| l.strip_prefix("http_listen = \""))
        .and_then(|l| l.trim_end_matches('"').parse().ok())
        .expect("http_listen")
}

fn start_api(d: &Deployment) -> Proc {
    let log = std::fs::OpenOptions::new()
        .create(true)
        .append(true)
        .open(d.dir.path().join("api.log"))
        .expect("log");
    Proc(
        Command::new(env!("CARGO_BIN_EXE_rempart-node"))
            .args(["--log-format", "text", "run", "--role", "api", "--config"])
            .arg(&d.config)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .expect("spawn api"),
    )
}

/// The api node's head as its `get_info` reports it (0 while it is down).
fn api_head(api: std::net::SocketAddr) -> u32 {
    http_post(api, "/v1/chain/get_info")
        .and_then(|v| v["head_block_num"].as_u64())
        .map_or(0, |h| h as u32)
}

fn api_log(d: &Deployment) -> String {
    std::fs::read_to_string(d.dir.path().join("api.log")).unwrap_or_default()
}

#[test]
fn api_node_survives_kill_9_under_load_and_resumes_from_its_head() {
    use std::sync::atomic::{AtomicBool, AtomicU32, Ordering};
    let cycles: u32 =
        std::env::var("REMPART_API_KILL_CYCLES").ok().and_then(|v| v.parse().ok()).unwrap_or(50);
    let bin = signer_bin();
    let d = deploy();
    let _signer = start_dev_signer(d.dir.path(), &bin);
    let producer = start_producer(&d);
    let api = api_addr(&d);
    let chain_id = d.genesis.chain_id();
    let ref_block = genesis_block_id(&d.genesis);
    let dev: PrivateKey = DEV_WIF.parse().expect("dev key");
    wait_for("the producer to make blocks", Duration::from_secs(60), || {
        metrics_head(&d.metrics) >= 2
    });

    // Three clients push through the api node for the whole test; each counts what it saw.
    let stop = Arc::new(AtomicBool::new(false));
    let next = Arc::new(AtomicU32::new(0));
    let acked = Arc::new(std::sync::Mutex::new(Vec::<(Checksum256, u32)>::new()));
    let refused = Arc::new(std::sync::Mutex::new(Vec::<String>::new()));
    let clients: Vec<_> = (0..3)
        .map(|_| {
            let (stop, next, acked, refused, dev) =
                (stop.clone(), next.clone(), acked.clone(), refused.clone(), dev.clone());
            std::thread::spawn(move || {
                while !stop.load(Ordering::Relaxed) {
                    let i = next.fetch_add(1, Ordering::Relaxed);
                    let key = PrivateKey::generate(KeyType::K1);
                    let t = newaccount_trx(account_name(i), &ref_block, &key);
                    let body = serde_json::to_string(&sign_transaction(t, &[&dev], &chain_id))
                        .expect("json");
                    match http_request(api, "/v1/chain/push_transaction", &body) {
                        Some((200, v)) => {
                            let id = v["transaction_id"].as_str().unwrap_or_default();
                            let block = v["processed"]["block_num"].as_u64().unwrap_or(0);
                            acked
                                .lock()
                                .expect("lock")
                                .push((id.parse().expect("transaction id"), block as u32));
                        }
                        // The api node is down, restarting or lost its producer link: the
                        // client did not see an outcome; try the next transaction shortly.
                        None | Some((503, _)) => std::thread::sleep(Duration::from_millis(20)),
                        Some((status, v)) => {
                            refused.lock().expect("lock").push(format!("{status} {v}"));
                        }
                    }
                }
            })
        })
        .collect();

    let mut resumed_from = 0u32;
    for cycle in 0..cycles {
        let node = start_api(&d);
        // It resumes from its own head: never below the head it had when it was killed.
        wait_for("the api node to serve", Duration::from_secs(60), || api_head(api) > 0);
        let restarted_at = api_head(api);
        assert!(
            restarted_at >= resumed_from,
            "cycle {cycle}: restarted at {restarted_at}, below its head {resumed_from}\n{}",
            api_log(&d)
        );
        // It follows again, under load, then dies mid-stream.
        let target = restarted_at + 2;
        wait_for("the api node to follow", Duration::from_secs(60), || api_head(api) >= target);
        resumed_from = api_head(api);
        drop(node); // SIGKILL
        let n = acked.lock().expect("lock").len();
        eprintln!("api cycle {cycle}: killed at head {resumed_from}, {n} pushes acknowledged");
    }
    let _node = start_api(&d);
    let producer_head = metrics_head(&d.metrics);
    wait_for("the api node to catch up", Duration::from_secs(60), || api_head(api) > producer_head);
    stop.store(true, Ordering::Relaxed);
    for c in clients {
        c.join().expect("client thread");
    }
    let refused = refused.lock().expect("lock").clone();
    assert!(refused.is_empty(), "pushes refused: {refused:?}\n{}", api_log(&d));
    let acked = acked.lock().expect("lock").clone();
    assert!(!acked.is_empty(), "no push was acknowledged");
    // Every transaction a client saw in a block reaches the api node, in that block, once the
    // producer has committed it; the api node's blocks are the producer's.
    let last = acked.iter().map(|(_, b)| *b).max().unwrap_or(0);
    wait_for("the api node to pass every acknowledged block", Duration::from_secs(60), || {
        api_head(api) >= last
    });
    drop(_node);
    drop(producer);
    let pstore = Store::open(&d.dir.path().join("producer/state.redb")).expect("producer store");
    let astore = Store::open(&d.dir.path().join("api/state.redb")).expect("api store");
    let (p, a) = (pstore.read().expect("read"), astore.read().expect("read"));
    let ahead = a.head().expect("head").expect("a head");
    assert!(ahead.block_num >= last);
    for n in 1..=ahead.block_num {
        assert_eq!(a.block_id(n).expect("read"), p.block_id(n).expect("read"), "block {n}");
    }
    for (id, block) in &acked {
        assert_eq!(
            a.transaction_block(id).expect("read"),
            Some(*block),
            "transaction {id} seen in block {block} is not there on the api node"
        );
    }
    drop((p, a, pstore, astore));
    let report = rempart_node::ops::replay(
        &d.dir.path().join("api"),
        &d.genesis,
        Limits::default(),
        |_, _| {},
    )
    .expect("replay");
    assert!(report.matches(), "replayed state {} != {}", report.rebuilt, report.original);
}

#[test]
fn run_api_follows_the_producer_and_serves_get_info() {
    let bin = signer_bin();
    let d = deploy();
    let _signer = start_dev_signer(d.dir.path(), &bin);
    let _producer = start_producer(&d);
    let api = api_addr(&d);
    let _api = start_api(&d);
    let head = || {
        http_post(api, "/v1/chain/get_info").and_then(|v| v["head_block_num"].as_u64()).unwrap_or(0)
    };
    wait_for("the api node to follow the producer", Duration::from_secs(60), || head() >= 4);
    let info = http_post(api, "/v1/chain/get_info").expect("get_info");
    assert_eq!(info["chain_id"], d.genesis.chain_id().to_string());
    assert!(!info["head_block_time"].as_str().expect("time").ends_with('Z'));
}
