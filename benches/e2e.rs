//! The end-to-end benchmark of issue 9, on the perimeter `rempart up` runs (release build):
//! - time from starting `rempart up` (fresh data directory) to the first `get_info` served
//!   through the gateway's TLS, median of several runs;
//! - token transfers per second from clients through the gateway's TLS to the api nodes and
//!   into blocks: signed here (rempart-core, the development key), pushed over HTTPS keep-alive
//!   connections, counted in the blocks afterwards (transfers included / load time);
//! - block interval jitter under that load: p99 of |interval − 500 ms| between the producer's
//!   "block produced" log lines, timed as `up` streams them.
//!
//! Run: `cargo bench -p rempart --bench e2e` (E2E_RUNS, E2E_SECONDS, E2E_CONNECTIONS tune it).
//! It uses `up`'s fixed ports (8443, 9100, 8888, 8889, 9876): nothing else may hold them. It
//! raises the gateway's per-client rates in its own data directory only (one client machine is
//! the whole load), never touches another data directory and stops every `up` it starts.

use std::io::{BufRead as _, BufReader};
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, mpsc};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use bytes::Bytes as HttpBytes;
use http_body_util::{BodyExt as _, Full};
use hyper_util::rt::TokioIo;
use rempart::up::layout::{self, DEV_PRIVATE_KEY, Layout, set_key};
use rempart_core::key::PrivateKey;
use rempart_core::transaction::{Action, PermissionLevel, Transaction};
use rempart_core::{Bytes, Checksum256, Name, TimePointSec, to_bytes};
use rempart_node::authority::Authority;
use rempart_node::chain::sign_transaction;
use rempart_node::native::{NewAccount, SetAbi, SetCode};
use rustls::pki_types::{CertificateDer, ServerName, pem::PemObject as _};
use serde_json::{Value, json};

const GATEWAY: &str = "127.0.0.1:8443";

fn env_or(key: &str, default: u64) -> u64 {
    std::env::var(key).ok().and_then(|v| v.parse().ok()).unwrap_or(default)
}

fn main() {
    // `cargo bench` passes --bench; nothing else is taken from the command line.
    let runs = env_or("E2E_RUNS", 5) as usize;
    let seconds = env_or("E2E_SECONDS", 20);
    let connections = env_or("E2E_CONNECTIONS", 16) as usize;
    let bin = stage();
    let runtime = tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .enable_all()
        .build()
        .expect("runtime");

    let mut startups = Vec::new();
    for run in 0..runs {
        let data = tempfile::tempdir().expect("tempdir");
        let t0 = Instant::now();
        let mut up = Up::start(&bin, data.path());
        let ca = Layout::new(data.path().to_path_buf()).ca();
        let took = until_info(&runtime, &ca, t0, Duration::from_secs(120));
        println!(
            "startup run {}: {:.2} s to the first get_info through the gateway",
            run + 1,
            took.as_secs_f64()
        );
        startups.push(took.as_secs_f64());
        up.stop();
    }

    // Throughput: a data directory started once, its gateway's per-client rates raised.
    let data = tempfile::tempdir().expect("tempdir");
    let layout = Layout::new(data.path().to_path_buf());
    let mut up = Up::start(&bin, data.path());
    until_info(&runtime, &layout.ca(), Instant::now(), Duration::from_secs(120));
    up.stop();
    let mut policy = std::fs::read_to_string(layout.gateway_toml()).expect("gateway.toml");
    for class in ["route_classes.read", "route_classes.push"] {
        for key in ["per_second", "burst"] {
            policy = set_key(&policy, class, key, Some("1000000")).expect("policy key");
        }
    }
    policy = set_key(&policy, "access", "ban_after", Some("1000000")).expect("policy key");
    layout::write(&layout.gateway_toml(), &policy).expect("gateway.toml");
    let mut up = Up::start(&bin, data.path());
    until_info(&runtime, &layout.ca(), Instant::now(), Duration::from_secs(120));
    let config = tls_config(&layout.ca()).expect("the CA");
    let missed_before = missed_slots(&layout.producer_metrics());
    let load = runtime.block_on(throughput(config, seconds, connections));
    let missed = missed_slots(&layout.producer_metrics()) - missed_before;
    let intervals = up.block_intervals(load.window.0, load.window.1);
    up.stop();

    let mut jitter: Vec<f64> = intervals.iter().map(|i| (i - 500.0).abs()).collect();
    jitter.sort_by(f64::total_cmp);
    println!();
    println!(
        "## rempart up end to end ({} runs, load {seconds} s, {connections} connections)",
        runs
    );
    let startup = median(&mut startups);
    println!("startup to first get_info via gateway: median {startup:.2} s (runs: {startups:.2?})");
    println!(
        "transfers: {} pushed, {} accepted, {} included in blocks {}..={}: {:.0} transfers/s",
        load.pushed,
        load.accepted,
        load.included,
        load.blocks.0,
        load.blocks.1,
        load.included as f64 / seconds as f64
    );
    println!(
        "block interval under load: {} intervals, p50 |dev| {:.1} ms, p99 |dev| {:.1} ms, max {:.1} ms",
        jitter.len(),
        percentile(&jitter, 0.50),
        percentile(&jitter, 0.99),
        jitter.last().copied().unwrap_or(0.0)
    );
    println!("slots missed by the producer during the load: {missed}");
    println!("push latency: p50 {:.1} ms, p99 {:.1} ms", load.latency_ms.0, load.latency_ms.1);
}

/// The producer's missed-slot counter from its metrics file (0 before it has one).
fn missed_slots(file: &Path) -> u64 {
    let text = std::fs::read_to_string(file).unwrap_or_default();
    text.lines()
        .find(|l| l.starts_with("rempart_node_missed_slots_total"))
        .and_then(|l| l.rsplit(' ').next()?.trim().parse().ok())
        .unwrap_or(0)
}

fn median(v: &mut [f64]) -> f64 {
    v.sort_by(f64::total_cmp);
    percentile(v, 0.5)
}

fn percentile(sorted: &[f64], q: f64) -> f64 {
    if sorted.is_empty() {
        return f64::NAN;
    }
    let i = ((sorted.len() as f64 - 1.0) * q).round() as usize;
    sorted[i]
}

/// Builds the three programs in release and copies them with `rempart` into a directory of
/// their own, so that `up` finds them without running cargo (that would count in the startup).
fn stage() -> tempfile::TempDir {
    let rempart = PathBuf::from(env!("CARGO_BIN_EXE_rempart"));
    let target = rempart.parent().expect("target dir").to_path_buf();
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let mut cmd = Command::new(cargo);
    cmd.arg("build").current_dir(env!("CARGO_MANIFEST_DIR"));
    if target.ends_with("release") {
        cmd.arg("--release");
    }
    for p in ["rempart-signer", "rempart-node", "rempart-gateway"] {
        cmd.args(["-p", p, "--bin", p]);
    }
    assert!(cmd.status().expect("cargo").success(), "cargo build of the programs failed");
    let dir = tempfile::tempdir().expect("tempdir");
    for p in ["rempart", "rempart-signer", "rempart-node", "rempart-gateway"] {
        std::fs::copy(target.join(p), dir.path().join(p)).expect("copy program");
    }
    dir
}

/// `rempart up` as a child: its producer's "block produced" lines timed as they arrive.
struct Up {
    child: Child,
    blocks: Arc<Mutex<Vec<Instant>>>,
    done: mpsc::Receiver<()>,
}

impl Up {
    fn start(bin: &tempfile::TempDir, data: &Path) -> Up {
        let mut child = Command::new(bin.path().join("rempart"))
            .args(["up", "--data"])
            .arg(data)
            .stdin(Stdio::null())
            .stdout(Stdio::piped())
            .stderr(Stdio::null())
            .spawn()
            .expect("spawn rempart up");
        let stdout = child.stdout.take().expect("stdout");
        let blocks = Arc::new(Mutex::new(Vec::new()));
        let (tx, done) = mpsc::channel();
        let b = blocks.clone();
        std::thread::spawn(move || {
            for line in BufReader::new(stdout).lines() {
                let Ok(line) = line else { break };
                if line.trim_start().starts_with("producer") && line.contains("block produced") {
                    b.lock().expect("lock").push(Instant::now());
                }
            }
            let _ = tx.send(());
        });
        Up { child, blocks, done }
    }

    /// Intervals (ms) between blocks produced within the window.
    fn block_intervals(&self, from: Instant, to: Instant) -> Vec<f64> {
        let b = self.blocks.lock().expect("lock");
        let inside: Vec<&Instant> = b.iter().filter(|t| **t >= from && **t <= to).collect();
        inside.windows(2).map(|w| (*w[1] - *w[0]).as_secs_f64() * 1000.0).collect()
    }

    /// SIGINT, then wait for `up` to stop everything (its output closes).
    fn stop(&mut self) {
        let pid = rustix::process::Pid::from_raw(self.child.id() as i32).expect("pid");
        let _ = rustix::process::kill_process(pid, rustix::process::Signal::INT);
        let _ = self.done.recv_timeout(Duration::from_secs(60));
        let _ = self.child.wait();
    }
}

impl Drop for Up {
    fn drop(&mut self) {
        if matches!(self.child.try_wait(), Ok(None)) {
            self.stop();
        }
    }
}

/// A TLS client configuration trusting only `ca` (None until the file exists).
fn tls_config(ca: &Path) -> Option<Arc<rustls::ClientConfig>> {
    let mut roots = rustls::RootCertStore::empty();
    roots.add(CertificateDer::from_pem_file(ca).ok()?).ok()?;
    let provider = Arc::new(rustls::crypto::aws_lc_rs::default_provider());
    let config = rustls::ClientConfig::builder_with_provider(provider)
        .with_safe_default_protocol_versions()
        .ok()?
        .with_root_certificates(roots)
        .with_no_client_auth();
    Some(Arc::new(config))
}

/// Polls get_info through the gateway until it answers, trusting the data directory's CA (which
/// a first start writes while it runs); the time since `t0`.
fn until_info(
    runtime: &tokio::runtime::Runtime,
    ca: &Path,
    t0: Instant,
    limit: Duration,
) -> Duration {
    loop {
        let ok = runtime.block_on(async {
            let mut s = connect(tls_config(ca)?).await.ok()?;
            let (status, _) = post(&mut s, "/v1/chain/get_info", "{}".into()).await.ok()?;
            (status == 200).then_some(())
        });
        if ok.is_some() {
            return t0.elapsed();
        }
        assert!(t0.elapsed() < limit, "no get_info through the gateway within {limit:?}");
        // The poll interval of a deadline-bounded wait.
        std::thread::sleep(Duration::from_millis(20));
    }
}

type Sender = hyper::client::conn::http1::SendRequest<Full<HttpBytes>>;

async fn connect(config: Arc<rustls::ClientConfig>) -> std::io::Result<Sender> {
    let tcp = tokio::net::TcpStream::connect(GATEWAY).await?;
    tcp.set_nodelay(true)?;
    let tls = tokio_rustls::TlsConnector::from(config)
        .connect(ServerName::try_from("127.0.0.1").expect("name").to_owned(), tcp)
        .await?;
    let (send, conn) = hyper::client::conn::http1::handshake(TokioIo::new(tls))
        .await
        .map_err(std::io::Error::other)?;
    tokio::spawn(conn);
    Ok(send)
}

async fn post(s: &mut Sender, path: &str, body: String) -> Result<(u16, Value), String> {
    s.ready().await.map_err(|e| e.to_string())?;
    let req = hyper::Request::post(path)
        .header("host", "127.0.0.1")
        .body(Full::new(HttpBytes::from(body)))
        .map_err(|e| e.to_string())?;
    let resp = s.send_request(req).await.map_err(|e| e.to_string())?;
    let status = resp.status().as_u16();
    let body = resp.into_body().collect().await.map_err(|e| e.to_string())?.to_bytes();
    Ok((status, serde_json::from_slice(&body).unwrap_or(Value::Null)))
}

fn n(s: &str) -> Name {
    s.parse().expect("name")
}

fn action(account: &str, name: &str, actor: &str, data: Vec<u8>) -> Action {
    Action {
        account: n(account),
        name: n(name),
        authorization: vec![PermissionLevel { actor: n(actor), permission: n("active") }],
        data: Bytes(data),
    }
}

fn token(name: &str, actor: &str, args: Value) -> Action {
    let abi = rempart_core::abi::eosio_token_abi();
    action("eosio.token", name, actor, abi.action_json_to_bin(n(name), &args).expect("pack"))
}

/// What a push needs from get_info.
#[derive(Clone)]
struct Tapos {
    chain_id: Checksum256,
    head_id: Checksum256,
}

async fn tapos(s: &mut Sender) -> (Tapos, u64) {
    let (_, info) = post(s, "/v1/chain/get_info", "{}".into()).await.expect("get_info");
    let chain_id = info["chain_id"].as_str().expect("chain_id").parse().expect("chain id");
    let head_id = info["head_block_id"].as_str().expect("head id").parse().expect("head id");
    (Tapos { chain_id, head_id }, info["head_block_num"].as_u64().expect("head"))
}

fn signed(actions: Vec<Action>, t: &Tapos, key: &PrivateKey) -> String {
    let mut trx = Transaction { actions, ..Default::default() };
    let now = SystemTime::now().duration_since(UNIX_EPOCH).expect("clock").as_secs();
    trx.header.expiration = TimePointSec(now as u32 + 120);
    trx.set_reference_block(&t.head_id);
    serde_json::to_string(&sign_transaction(trx, &[key], &t.chain_id)).expect("json")
}

/// Pushes one setup transaction; panics with the node's answer when refused.
async fn setup_push(s: &mut Sender, actions: Vec<Action>, key: &PrivateKey) {
    let (t, _) = tapos(s).await;
    let (status, body) =
        post(s, "/v1/chain/push_transaction", signed(actions, &t, key)).await.expect("push");
    assert!(status < 300, "setup push refused ({status}): {body}");
}

struct Load {
    pushed: u64,
    accepted: u64,
    included: u64,
    blocks: (u64, u64),
    window: (Instant, Instant),
    latency_ms: (f64, f64),
}

async fn throughput(config: Arc<rustls::ClientConfig>, seconds: u64, connections: usize) -> Load {
    let key: PrivateKey = DEV_PRIVATE_KEY.parse().expect("dev key");
    let mut s = connect(config.clone()).await.expect("connect");
    let a = Authority::single_key(key.public_key());
    let newaccount = |name: &str| {
        let d =
            NewAccount { creator: n("eosio"), name: n(name), owner: a.clone(), active: a.clone() };
        action("eosio", "newaccount", "eosio", to_bytes(&d))
    };
    setup_push(&mut s, vec![newaccount("eosio.token"), newaccount("alice")], &key).await;
    let wasm =
        std::fs::read(Path::new(env!("CARGO_MANIFEST_DIR")).join("node/contracts/token.wasm"))
            .expect("token.wasm");
    let code = SetCode { account: n("eosio.token"), vmtype: 0, vmversion: 0, code: Bytes(wasm) };
    let abi = SetAbi {
        account: n("eosio.token"),
        abi: Bytes(rempart_core::abi::eosio_token_abi().def().to_bin()),
    };
    setup_push(
        &mut s,
        vec![
            action("eosio", "setcode", "eosio.token", to_bytes(&code)),
            action("eosio", "setabi", "eosio.token", to_bytes(&abi)),
        ],
        &key,
    )
    .await;
    let create = json!({"issuer": "eosio.token", "maximum_supply": "1000000000.0000 SYS"});
    setup_push(&mut s, vec![token("create", "eosio.token", create)], &key).await;
    let issue = json!({"to": "eosio.token", "quantity": "1000000000.0000 SYS", "memo": ""});
    setup_push(&mut s, vec![token("issue", "eosio.token", issue)], &key).await;

    // The setup's last block is out before the load starts: the blocks counted hold transfers.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    let (t, first_head) = tapos(&mut s).await;
    let counter = Arc::new(AtomicU64::new(0));
    let accepted = Arc::new(AtomicU64::new(0));
    let latencies = Arc::new(Mutex::new(Vec::new()));
    let start = Instant::now();
    let end = start + Duration::from_secs(seconds);
    let mut tasks = Vec::new();
    for _ in 0..connections {
        let (config, t) = (config.clone(), t.clone());
        let key: PrivateKey = DEV_PRIVATE_KEY.parse().expect("dev key");
        let (counter, accepted, latencies) = (counter.clone(), accepted.clone(), latencies.clone());
        tasks.push(tokio::spawn(async move {
            let mut s = connect(config.clone()).await.expect("connect");
            let mut mine = Vec::new();
            while Instant::now() < end {
                let i = counter.fetch_add(1, Ordering::Relaxed);
                let args = json!({"from": "eosio.token", "to": "alice", "quantity": "0.0001 SYS", "memo": format!("bench {i}")});
                let body = signed(vec![token("transfer", "eosio.token", args)], &t, &key);
                let sent = Instant::now();
                match post(&mut s, "/v1/chain/push_transaction", body).await {
                    Ok((status, _)) if status < 300 => {
                        accepted.fetch_add(1, Ordering::Relaxed);
                        mine.push(sent.elapsed().as_secs_f64() * 1000.0);
                    }
                    Ok(_) => {}
                    Err(_) => match connect(config.clone()).await {
                        Ok(fresh) => s = fresh,
                        Err(_) => break,
                    },
                }
            }
            latencies.lock().expect("lock").extend(mine);
        }));
    }
    for t in tasks {
        let _ = t.await;
    }
    let stopped = Instant::now();
    // The last pushes land in the next block or two; then count what the blocks hold.
    tokio::time::sleep(Duration::from_millis(1500)).await;
    // The setup connection sat idle through the load (the gateway closes idle connections
    // after its header timeout): count on a fresh one.
    let mut s = connect(config.clone()).await.expect("connect");
    let (_, last_head) = tapos(&mut s).await;
    let mut included = 0;
    for b in first_head + 1..=last_head {
        let (_, block) =
            post(&mut s, "/v1/chain/get_block", json!({"block_num_or_id": b}).to_string())
                .await
                .expect("get_block");
        included += block["transactions"].as_array().map_or(0, |t| t.len() as u64);
    }
    let mut lat = latencies.lock().expect("lock").clone();
    lat.sort_by(f64::total_cmp);
    Load {
        pushed: counter.load(Ordering::Relaxed),
        accepted: accepted.load(Ordering::Relaxed),
        included,
        blocks: (first_head + 1, last_head),
        window: (start, stopped),
        latency_ms: (percentile(&lat, 0.5), percentile(&lat, 0.99)),
    }
}
