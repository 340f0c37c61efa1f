//! `rempart-node snapshot`, `restore` and `replay` as an operator runs them: the real binary
//! over a configuration file and a data directory holding blocks with transactions; and its logs,
//! one JSON object per line on stderr with `--log-format json`, which a stalled reader of
//! stderr never lets hold up the API.

mod support;

use std::path::Path;
use std::process::Command;
use std::sync::Arc;

use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::{Name, TimePointSec};
use rempart_node::chain::{Chain, sign_transaction};
use rempart_node::config::Limits;
use rempart_node::genesis::Genesis;
use rempart_node::ops;
use rempart_node::store::Store;
use support::{DEV_WIF, newaccount_trx};

fn node(args: &[&str], config: &Path) -> std::process::Output {
    Command::new(env!("CARGO_BIN_EXE_rempart-node"))
        .args(args)
        .arg("--config")
        .arg(config)
        .output()
        .expect("run rempart-node")
}

/// A node.toml whose producer data lives in `producer/` and api data in `api/`, the api
/// serving on `http_listen`.
fn node_toml(http_listen: &str) -> String {
    format!(
        r#"genesis = "genesis.json"
[producer]
data_dir = "producer"
name = "eosio"
private_listen = "127.0.0.1:1"
signer = "unix:signer.sock"
[api]
data_dir = "api"
http_listen = "{http_listen}"
producer = "127.0.0.1:1"
"#
    )
}

/// A configuration in `dir` whose producer data lives in `producer/` and api data in `api/`.
fn deploy(dir: &Path) -> (Genesis, std::path::PathBuf) {
    let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
    std::fs::copy(root.join("policies/genesis.json"), dir.join("genesis.json")).expect("copy");
    let config = dir.join("node.toml");
    std::fs::write(&config, node_toml("127.0.0.1:1")).expect("node.toml");
    (Genesis::load(&dir.join("genesis.json")).expect("genesis"), config)
}

/// Blocks 2..=11 in `data_dir`, each with one newaccount.
fn make_blocks(data_dir: &Path, genesis: &Genesis) {
    std::fs::create_dir_all(data_dir).expect("dir");
    let store = Arc::new(Store::open(&data_dir.join(ops::STATE_FILE)).expect("store"));
    let chain = Chain::open(store, genesis, Limits::default()).expect("chain");
    let dev: PrivateKey = DEV_WIF.parse().expect("key");
    for i in 0..10u8 {
        let info = chain.info();
        let name: Name = format!("user{}", (b'a' + i) as char).parse().expect("name");
        let owner = PrivateKey::generate(KeyType::K1);
        let mut t = newaccount_trx(name, &info.head_block_id, &owner);
        // The chain's clock is its head block, not the wall clock.
        let head_sec = info.head_block_time.to_time_point().0 / 1_000_000;
        t.header.expiration = TimePointSec((head_sec + 600) as u32);
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

/// Every line of `stderr` as a JSON object with a timestamp, a level and fields, as
/// `--log-format json` promises; panics naming the first line that is not.
fn json_lines(stderr: &str) -> Vec<serde_json::Value> {
    let lines: Vec<serde_json::Value> = stderr
        .lines()
        .map(|l| {
            let v: serde_json::Value =
                serde_json::from_str(l).unwrap_or_else(|e| panic!("not JSON ({e}): {l:?}"));
            assert!(v.is_object(), "not an object: {l}");
            assert!(v["timestamp"].is_string() && v["level"].is_string(), "{l}");
            assert!(v["fields"]["message"].is_string(), "{l}");
            v
        })
        .collect();
    assert!(!lines.is_empty(), "no log lines at all");
    lines
}

#[test]
fn json_logs_are_one_object_per_line_from_replay_and_a_running_node() {
    let dir = tempfile::tempdir().expect("tempdir");
    let (genesis, config) = deploy(dir.path());
    make_blocks(&dir.path().join("producer"), &genesis);

    // replay with stderr not a terminal logs its progress instead of drawing a bar.
    let out = node(&["--log-format", "json", "replay", "--role", "producer"], &config);
    assert!(out.status.success(), "{}", text(&out));
    let logs = json_lines(&String::from_utf8_lossy(&out.stderr));
    let last = logs.last().expect("a line");
    assert_eq!(last["fields"]["message"], "replay progress", "{last}");
    assert_eq!(last["fields"]["done"], last["fields"]["total"], "{last}");
    assert_eq!(last["level"], "INFO");
    // The flag decides: text logs are not JSON.
    let out = node(&["--log-format", "text", "replay", "--role", "producer"], &config);
    assert!(out.status.success(), "{}", text(&out));
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert!(stderr.contains("replay progress"), "{stderr}");
    assert!(stderr.lines().all(|l| serde_json::from_str::<serde_json::Value>(l).is_err()));

    // A running api node (JSON is the default) whose producer refuses connections: its start,
    // the link failure and its stop on stdin's end are each one JSON line.
    let run_config = dir.path().join("run.toml");
    std::fs::write(&run_config, node_toml("127.0.0.1:0")).expect("run.toml");
    let mut child = Command::new(env!("CARGO_BIN_EXE_rempart-node"))
        .args(["run", "--role", "api", "--exit-with-stdin", "--config"])
        .arg(&run_config)
        .stdin(std::process::Stdio::piped())
        .stdout(std::process::Stdio::null())
        .stderr(std::process::Stdio::piped())
        .spawn()
        .expect("run rempart-node");
    let stdin = child.stdin.take().expect("stdin");
    let mut stderr = std::io::BufReader::new(child.stderr.take().expect("stderr"));
    let mut seen = String::new();
    loop {
        let mut line = String::new();
        let n = std::io::BufRead::read_line(&mut stderr, &mut line).expect("read stderr");
        assert!(n > 0, "the node exited before its link failed:\n{seen}");
        seen.push_str(&line);
        if line.contains("block stream from the producer ended") {
            break;
        }
    }
    drop(stdin);
    std::io::Read::read_to_string(&mut stderr, &mut seen).expect("read stderr");
    let status = child.wait().expect("wait");
    assert!(status.success(), "{status}\n{seen}");
    let logs = json_lines(&seen);
    let message = |m: &str| logs.iter().find(|l| l["fields"]["message"] == m);
    let start = message("api node starting").expect("start logged");
    assert_eq!(start["fields"]["head"], 1, "{start}");
    assert_eq!(start["fields"]["chain_id"], genesis.chain_id().to_string(), "{start}");
    let ended = message("block stream from the producer ended").expect("link failure");
    assert_eq!(ended["level"], "WARN", "{ended}");
    let stop = message("stopping").expect("stop logged");
    assert_eq!(stop["fields"]["reason"], "stdin closed", "{stop}");
}

/// A log reader that stalls (a log shipper down, a container runtime's blocking log driver)
/// costs log lines, never service: an api node whose stderr is a pipe nothing reads logs a
/// line (at `debug`) for each of 3 000 connections that send garbage, far more than the pipe
/// holds, and keeps answering them and then `get_info`. Written in place, the first full pipe
/// blocked every thread at its next line.
#[test]
fn a_stalled_log_reader_never_holds_up_the_api() {
    use std::io::{Read, Write};
    use std::net::TcpStream;
    use std::time::Duration;

    let dir = tempfile::tempdir().expect("tempdir");
    deploy(dir.path());
    let port = support::free_port();
    let run_config = dir.path().join("run.toml");
    std::fs::write(&run_config, node_toml(&format!("127.0.0.1:{port}"))).expect("run.toml");
    let mut node = support::Proc(
        Command::new(env!("CARGO_BIN_EXE_rempart-node"))
            .args(["run", "--role", "api", "--exit-with-stdin", "--config"])
            .arg(&run_config)
            .env("RUST_LOG", "debug")
            .stdin(std::process::Stdio::piped())
            .stdout(std::process::Stdio::null())
            .stderr(std::process::Stdio::piped())
            .spawn()
            .expect("run rempart-node"),
    );
    // Held open and never read: the pipe fills and stays full.
    let _unread = node.0.stderr.take().expect("stderr");
    let exchange = |request: &[u8]| -> std::io::Result<Vec<u8>> {
        let mut s = TcpStream::connect(("127.0.0.1", port))?;
        s.set_read_timeout(Some(Duration::from_secs(10)))?;
        s.write_all(request)?;
        let mut answer = Vec::new();
        s.read_to_end(&mut answer)?;
        Ok(answer)
    };
    let get_info = b"POST /v1/chain/get_info HTTP/1.1\r\nHost: node\r\nConnection: close\r\n\
                     Content-Length: 0\r\n\r\n";
    support::wait_for("the api node to answer get_info", Duration::from_secs(30), || {
        assert!(node.0.try_wait().expect("wait").is_none(), "the node exited before serving");
        exchange(get_info).is_ok()
    });
    for n in 0..3_000 {
        let answer = exchange(b"NOT HTTP AT ALL\r\n\r\n").unwrap_or_else(|e| {
            panic!("connection {n}: the node stopped answering while nothing read its log: {e}")
        });
        assert!(answer.starts_with(b"HTTP/1.1 400"), "{}", String::from_utf8_lossy(&answer));
    }
    let answer = exchange(get_info).expect("get_info after the flood");
    assert!(answer.starts_with(b"HTTP/1.1 200"), "{}", String::from_utf8_lossy(&answer));
    drop(node.0.stdin.take());
    let mut status = None;
    support::wait_for("the node to stop when stdin closed", Duration::from_secs(20), || {
        status = node.0.try_wait().expect("wait");
        status.is_some()
    });
    assert!(status.is_some_and(|s| s.success()), "{status:?}");
}
