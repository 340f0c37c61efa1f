//! The node's private network on real interfaces, in four network namespaces joined by veth
//! pairs: the signer, the producer and the api node, each bringing up its own `[wireguard]`
//! interface from its file (here named explicitly: `userspace = "wireguard-go"`), with tunnels
//! producer⇄signer and api⇄producer (the signer's TCP listener on its tunnel address), and a
//! stranger with a WireGuard key that no one configured. Blocks are produced and signed through
//! the tunnel, the api node follows them, and eosjs pushes a transaction to the api node and
//! finds it in a block. The signer's port is unreachable from the api namespace on every
//! address and from its own veth link; the stranger gets nothing through; the producer's
//! private listener is reachable neither on its veth address nor from a tunnel address that is
//! not a configured peer, and a non-peer source on its own host is closed unserved.
//! `rempart-node check` accepts the configuration and refuses a wildcard private listener.
//!
//! The second test runs on what `userspace = "auto"` picks: boringtun where `boringtun-cli` is
//! on PATH (tests/run.sh puts it there; under `CI=true` it must be), else wireguard-go. It takes
//! the signer's side of the tunnel down (slots are missed and counted, the producer logs the
//! stale handshake naming the signer's peer, production resumes, the signer refuses nothing:
//! retries are legitimate), then rotates the producer's WireGuard key on every side with what
//! `rempart wg apply` runs (`Interface::apply` on each live interface; on boringtun, which
//! cannot update a live peer, every peer is removed and the configured ones added again) while
//! the signer keeps running (same PID), and shows that blocks are signed through the new key,
//! that Status and metrics name it, and that the old key no longer gets through.
//!
//! Needs root, iproute2, wireguard-go, wireguard-tools, /dev/net/tun and (for the second test)
//! boringtun-cli on PATH: under `CI=true` the tests fail when any is missing (and when node or
//! the npm clients are), elsewhere they are skipped with a line saying why. Everything they
//! create — namespaces, nodes, the signer, the wireguard-go and boringtun processes (killed by
//! PID) — is removed by guards' `Drop` (tests/support/netns.rs), even when a test fails. No
//! sleep synchronises anything: every wait polls with a deadline.

#[path = "../../tests/support/netns.rs"]
mod netns;
mod support;

use std::io::{Read as _, Write as _};
use std::net::SocketAddr;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::time::Duration;

use netns::{WgPeer, connect, inside, namespaces_or_skip, run};
use rempart_core::protocol::StatusResponse;
use rempart_node::genesis::Genesis;
use rempart_node::producer::clock;
use rempart_signer::client::{Client, Endpoint};
use rempart_signer::wireguard::{Interface, WgKey, WireGuardConfig, generate_key_file};
use support::signer_bin;

const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";
const DEV_PUB: &str = "PUB_K1_6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5BoDq63";

const PRODUCER_TUNNEL: &str = "10.98.0.1";
const API_TUNNEL: &str = "10.98.0.2";
const STRANGER_TUNNEL: &str = "10.98.0.3";
const SIGNER_TUNNEL: &str = "10.98.0.4";
const PRODUCER_VETH: &str = "10.99.0.1";
const API_VETH: &str = "10.99.0.2";
const PRODUCER_SIGNER_VETH: &str = "10.97.0.1";
const SIGNER_VETH: &str = "10.97.0.2";
const SIGNER_STRANGER_VETH: &str = "10.96.0.1";
const STRANGER_SIGNER_VETH: &str = "10.96.0.2";
const PRODUCER_STRANGER_VETH: &str = "10.95.0.1";
const STRANGER_PRODUCER_VETH: &str = "10.95.0.2";
const SIGNER_WG_PORT: u16 = 51832;
const SIGNER_TCP_PORT: u16 = 7010;
const PRODUCER_WG_PORT: u16 = 51830;
const API_WG_PORT: u16 = 51831;
const STRANGER_WG_PORT: u16 = 51833;
const PRIVATE_PORT: u16 = 9876;

fn wait_for(
    what: &str,
    timeout: Duration,
    mut cond: impl FnMut() -> bool,
    log: impl Fn() -> String,
) {
    let end = clock::instant() + timeout;
    while !cond() {
        assert!(clock::instant() < end, "timed out waiting for {what}\n{}", log());
        std::thread::sleep(Duration::from_millis(20));
    }
}

/// A child process killed (SIGKILL, by PID) and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

/// The signer's, the producer's and the api node's namespaces (producer⇄api and producer⇄signer
/// veth links) and, with `stranger`, a fourth one linked to the signer and the producer;
/// removed with everything in them on drop.
struct Net {
    producer_ns: String,
    api_ns: String,
    signer_ns: String,
    producer_if: String,
    api_if: String,
    signer_if: String,
    /// The stranger's namespace and interface name.
    stranger: Option<(String, String)>,
    net: netns::Net,
}

impl Net {
    fn new(stranger: bool) -> Net {
        let mut net = netns::Net::new("rnt");
        let cidr = |a: &str| format!("{a}/24");
        let producer_ns = net.namespace("p");
        let api_ns = net.namespace("a");
        let signer_ns = net.namespace("s");
        net.veth(&producer_ns, &cidr(PRODUCER_VETH), &api_ns, &cidr(API_VETH));
        net.veth(&producer_ns, &cidr(PRODUCER_SIGNER_VETH), &signer_ns, &cidr(SIGNER_VETH));
        let stranger = stranger.then(|| {
            let ns = net.namespace("x");
            net.veth(&signer_ns, &cidr(SIGNER_STRANGER_VETH), &ns, &cidr(STRANGER_SIGNER_VETH));
            net.veth(
                &producer_ns,
                &cidr(PRODUCER_STRANGER_VETH),
                &ns,
                &cidr(STRANGER_PRODUCER_VETH),
            );
            (ns, net.interface("x"))
        });
        Net {
            producer_if: net.interface("p"),
            api_if: net.interface("a"),
            signer_if: net.interface("s"),
            producer_ns,
            api_ns,
            signer_ns,
            stranger,
            net,
        }
    }
}

/// One `[[wireguard.peers]]` table.
fn peer_toml(key: WgKey, address: &str, endpoint: &str) -> String {
    format!(
        "[[wireguard.peers]]\npublic_key = \"{key}\"\naddress = \"{address}\"\n\
         endpoint = \"{endpoint}\"\npersistent_keepalive_secs = 1\n"
    )
}

/// One node's configuration: `me` is its tunnel address, `peers` its rendered peer tables.
fn node_toml(
    private_listen: &str,
    signer: &str,
    iface: &str,
    key_file: &str,
    port: u16,
    me: &str,
    peers: &str,
) -> String {
    format!(
        r#"genesis = "genesis.json"
[producer]
data_dir = "producer"
name = "eosio"
private_listen = "{private_listen}"
signer = "{signer}"
sign_timeout_ms = 400
metrics_file = "producer.prom"
[api]
data_dir = "api"
http_listen = "127.0.0.1:8888"
producer = "{PRODUCER_TUNNEL}:{PRIVATE_PORT}"
metrics_file = "api.prom"
[wireguard]
interface = "{iface}"
private_key_file = "{key_file}"
listen_port = {port}
address = "{me}/24"
stats_interval_secs = 1
{peers}"#
    )
}

/// The signer's policy: soft development key, no sandbox (test harness), its Unix socket (for
/// readiness and Status) and a TCP listener on its tunnel address with the producer as its
/// one peer.
fn signer_toml(chain: &str, iface: &str, producer_wg: WgKey) -> String {
    format!(
        r#"[chain]
id = "{chain}"
dangerous_dev_chain = true
max_clock_skew_ms = 1500
[[producers]]
account = "eosio"
key = "{DEV_PUB}"
[backend]
kind = "soft"
[backend.soft]
key_files = ["dev.key"]
[listen]
unix_socket = "signer.sock"
allow_own_uid = true
tcp = "{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}"
[state]
dir = "signer-state"
audit_log = "signer-state/audit.jsonl"
[metrics]
file = "signer-state/metrics.prom"
[sandbox]
dangerous_disabled = true
[wireguard]
interface = "{iface}"
private_key_file = "signer-wg.key"
listen_port = {SIGNER_WG_PORT}
address = "{SIGNER_TUNNEL}/24"
stats_interval_secs = 1
{}"#,
        peer_toml(
            producer_wg,
            PRODUCER_TUNNEL,
            &format!("{PRODUCER_SIGNER_VETH}:{PRODUCER_WG_PORT}")
        )
    )
}

/// A running deployment: the signer, the producer and the api node, each in its namespace.
struct Deployment {
    dir: tempfile::TempDir,
    producer_text: String,
    producer_wg: WgKey,
    signer_wg: WgKey,
    procs: Vec<Proc>,
}

impl Deployment {
    /// Writes every file and checks nothing yet; starts nothing yet. `userspace`: every side's
    /// `[wireguard] userspace` ("auto", "wireguard-go" or "boringtun").
    fn write(net: &Net, userspace: &str) -> Deployment {
        let userspace = |text: String| {
            text.replace("[wireguard]\n", &format!("[wireguard]\nuserspace = \"{userspace}\"\n"))
        };
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::copy(root.join("policies/genesis.json"), d.join("genesis.json")).expect("genesis");
        let genesis = Genesis::load(&d.join("genesis.json")).expect("genesis");
        let producer_wg = generate_key_file(&d.join("producer-wg.key")).expect("producer key");
        let api_wg = generate_key_file(&d.join("api-wg.key")).expect("api key");
        let signer_wg = generate_key_file(&d.join("signer-wg.key")).expect("signer key");
        let producer_peers = peer_toml(api_wg, API_TUNNEL, &format!("{API_VETH}:{API_WG_PORT}"))
            + &peer_toml(signer_wg, SIGNER_TUNNEL, &format!("{SIGNER_VETH}:{SIGNER_WG_PORT}"));
        let producer_text = userspace(node_toml(
            &format!("{PRODUCER_TUNNEL}:{PRIVATE_PORT}"),
            &format!("{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}"),
            &net.producer_if,
            "producer-wg.key",
            PRODUCER_WG_PORT,
            PRODUCER_TUNNEL,
            &producer_peers,
        ));
        std::fs::write(d.join("producer.toml"), &producer_text).expect("producer.toml");
        let api_text = userspace(node_toml(
            &format!("{API_TUNNEL}:{PRIVATE_PORT}"),
            "unix:unused.sock",
            &net.api_if,
            "api-wg.key",
            API_WG_PORT,
            API_TUNNEL,
            &peer_toml(
                producer_wg,
                PRODUCER_TUNNEL,
                &format!("{PRODUCER_VETH}:{PRODUCER_WG_PORT}"),
            ),
        ));
        std::fs::write(d.join("api.toml"), api_text).expect("api.toml");
        std::fs::write(d.join("dev.key"), format!("{DEV_WIF}\n")).expect("key");
        std::fs::set_permissions(d.join("dev.key"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        std::fs::create_dir(d.join("signer-state")).expect("state");
        let chain = genesis.chain_id().to_string();
        let signer_text = userspace(signer_toml(&chain, &net.signer_if, producer_wg));
        std::fs::write(d.join("signer.toml"), signer_text).expect("signer.toml");
        Deployment { producer_text, producer_wg, signer_wg, procs: Vec::new(), dir }
    }

    fn path(&self, f: &str) -> PathBuf {
        self.dir.path().join(f)
    }

    fn log(&self, f: &str) -> String {
        std::fs::read_to_string(self.path(f)).unwrap_or_default()
    }

    fn logs(&self) -> String {
        ["signer.log", "producer.log", "api.log"]
            .iter()
            .map(|f| format!("{f}:\n{}\n", self.log(f)))
            .collect()
    }

    /// Starts the signer in its namespace, then the producer and the api node in theirs.
    fn start(&mut self, net: &Net) {
        let signer = signer_bin();
        let policy = self.path("signer.toml");
        let out = Command::new(&signer)
            .args(["guard", "init", "--policy"])
            .arg(&policy)
            .output()
            .expect("guard init");
        assert!(out.status.success(), "guard init: {}", String::from_utf8_lossy(&out.stderr));
        // `ip netns exec` executes the program in place: the child's PID is the signer's.
        let child = Command::new("ip")
            .args(["netns", "exec", &net.signer_ns])
            .arg(&signer)
            .args(["run", "--policy"])
            .arg(&policy)
            .stdout(Stdio::null())
            .stderr(std::fs::File::create(self.path("signer.log")).expect("log"))
            .spawn()
            .expect("spawn signer");
        self.procs.push(Proc(child));
        let socket = self.path("signer.sock");
        wait_for(
            "the signer socket",
            Duration::from_secs(30),
            || std::os::unix::net::UnixStream::connect(&socket).is_ok(),
            || self.log("signer.log"),
        );
        let node = env!("CARGO_BIN_EXE_rempart-node");
        for (ns, role) in [(&net.producer_ns, "producer"), (&net.api_ns, "api")] {
            let child = Command::new("ip")
                .args(["netns", "exec", ns, node, "--log-format", "text", "run", "--role", role])
                .arg("--config")
                .arg(self.path(&format!("{role}.toml")))
                .stdout(Stdio::null())
                .stderr(std::fs::File::create(self.path(&format!("{role}.log"))).expect("log"))
                .spawn()
                .expect("spawn node");
            self.procs.push(Proc(child));
        }
    }

    /// The signer's PID, and whether it still runs.
    fn signer_pid(&mut self) -> (u32, bool) {
        let child = &mut self.procs[0].0;
        (child.id(), child.try_wait().expect("try_wait").is_none())
    }

    /// The signer's `Status` over its Unix socket.
    fn status(&self) -> StatusResponse {
        let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().expect("rt");
        rt.block_on(async {
            let mut c = Client::new(Endpoint::Unix(self.path("signer.sock")));
            c.status(tokio::time::Instant::from_std(clock::instant() + Duration::from_secs(5)))
                .await
        })
        .expect("Status over the Unix socket")
    }
}

fn metric(file: &Path, prefix: &str) -> Option<String> {
    let text = std::fs::read_to_string(file).ok()?;
    text.lines()
        .find(|l| l.starts_with(prefix))
        .and_then(|l| l.rsplit(' ').next())
        .map(str::to_string)
}

fn head(file: &Path) -> u32 {
    metric(file, "rempart_node_head_block_num{").and_then(|v| v.parse().ok()).unwrap_or(0)
}

fn missed(prom: &Path) -> u64 {
    metric(prom, "rempart_node_missed_slots_total{").and_then(|v| v.parse().ok()).unwrap_or(0)
}

/// The node_modules of tests/clients when node and eosjs are installed; under `CI=true` their
/// absence fails the test.
fn eosjs_modules() -> Option<PathBuf> {
    let modules = Path::new(env!("CARGO_MANIFEST_DIR")).join("../tests/clients/node_modules");
    let node = Command::new("node").arg("--version").output().is_ok_and(|o| o.status.success());
    if node && modules.join("eosjs/package.json").is_file() {
        return Some(modules);
    }
    let missing = if node {
        "eosjs is not installed: run `npm ci` in tests/clients (tests/run.sh does)"
    } else {
        "node is not installed: apt-get install --no-install-recommends nodejs npm"
    };
    assert!(!netns::ci(), "the eosjs push through the tunnel cannot run: {missing}");
    eprintln!("skipping the eosjs push through the tunnel: {missing}");
    None
}

/// eosjs: creates an account with the eosio key through the api node, then polls (with a
/// deadline) the transaction's history and its block until the block holds it.
const EOSJS_PUSH: &str = r#"
'use strict';
const { JsonRpc, Api } = require('eosjs');
const { JsSignatureProvider } = require('eosjs/dist/eosjs-jssig');
(async () => {
  const req = JSON.parse(require('fs').readFileSync(0, 'utf8'));
  const rpc = new JsonRpc(req.url, { fetch });
  const signer = new JsSignatureProvider([req.wif]);
  const key = (await signer.getAvailableKeys())[0];
  const api = new Api({ rpc, signatureProvider: signer,
    textDecoder: new TextDecoder(), textEncoder: new TextEncoder() });
  const auth = { threshold: 1, keys: [{ key, weight: 1 }], accounts: [], waits: [] };
  const pushed = await api.transact({ actions: [{
    account: 'eosio', name: 'newaccount',
    authorization: [{ actor: 'eosio', permission: 'active' }],
    data: { creator: 'eosio', name: req.name, owner: auth, active: auth },
  }] }, { blocksBehind: 3, expireSeconds: 60 });
  const id = pushed.transaction_id;
  const deadline = Date.now() + 30000;
  for (;;) {
    try {
      const t = await rpc.history_get_transaction(id);
      const b = await rpc.get_block(t.block_num);
      if (b.transactions.some((x) => x.trx.id === id)) {
        console.log(JSON.stringify({ id, block_num: b.block_num, producer: b.producer }));
        return;
      }
    } catch (e) { /* not in a block yet */ }
    if (Date.now() > deadline) throw new Error(`transaction ${id} never appeared in a block`);
    await new Promise((r) => setTimeout(r, 200));
  }
})().catch((e) => {
  console.log(JSON.stringify({ fatal: e && e.json ? JSON.stringify(e.json) : String(e && e.stack || e) }));
});
"#;

/// Whether `boringtun-cli` is on `PATH`; under `CI=true` it must be (tests/run.sh installs it),
/// so that the default (`userspace = "auto"`) is tested on what it picks in production.
fn boringtun_on_path() -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("boringtun-cli").is_file()));
    assert!(found || !netns::ci(), "boringtun-cli is not on PATH: tests/run.sh installs it");
    found
}

/// The `[wireguard]` section of a signer policy or a node configuration, as `rempart wg apply`
/// reads it.
fn wireguard_of(file: &Path, signer: bool) -> WireGuardConfig {
    let wg = if signer {
        rempart_signer::policy::Policy::load(file).expect("signer.toml").wireguard
    } else {
        rempart_node::config::Config::load(file).expect("node.toml").wireguard
    };
    wg.expect("a [wireguard] section")
}

#[test]
fn blocks_are_signed_through_the_tunnel_the_api_node_follows_and_nothing_else_gets_in() {
    let name = "blocks_are_signed_through_the_tunnel_the_api_node_follows_and_nothing_else_gets_in";
    if !namespaces_or_skip(name) {
        return;
    }
    let modules = eosjs_modules();
    let net = Net::new(true);
    // wireguard-go named explicitly (`auto` takes boringtun where it is on PATH; the second
    // test runs on that), so that both implementations stay covered.
    let mut d = Deployment::write(&net, "wireguard-go");
    let producer_listen = format!("{PRODUCER_TUNNEL}:{PRIVATE_PORT}");

    // `check` accepts the file and names this side's public key; a wildcard is refused.
    let node = env!("CARGO_BIN_EXE_rempart-node");
    let producer_toml = d.path("producer.toml");
    let out = Command::new(node).args(["check", "--config"]).arg(&producer_toml).output();
    let out = out.expect("check");
    let stdout = String::from_utf8_lossy(&out.stdout);
    assert!(out.status.success(), "{stdout}{}", String::from_utf8_lossy(&out.stderr));
    assert!(stdout.contains(&d.producer_wg.to_string()), "{stdout}");
    let wild = d.path("wild.toml");
    std::fs::write(
        &wild,
        d.producer_text.replace(
            &format!("private_listen = \"{producer_listen}\""),
            "private_listen = \"0.0.0.0:9876\"",
        ),
    )
    .expect("wild.toml");
    let out = Command::new(node).args(["check", "--config"]).arg(&wild).output().expect("check");
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("wild.toml:5:18") && stderr.contains("wildcard"), "{stderr}");

    d.start(&net);
    let log = |f: &str| d.log(f);
    let all = || d.logs();

    // Blocks signed through the producer⇄signer tunnel, followed through the api⇄producer one.
    let api_prom = d.path("api.prom");
    wait_for(
        "the api node to apply block 3",
        Duration::from_secs(60),
        || head(&api_prom) >= 3,
        all,
    );
    assert!(log("signer.log").contains("WireGuard interface up"), "{}", all());
    assert!(log("producer.log").contains("private network up"), "{}", all());
    assert!(log("api.log").contains("private network up"), "{}", all());
    assert!(d.status().signatures >= 2, "the signer signed blocks 2 and 3");

    // Tunnel health in the producer's metrics: a handshake with the api node and bytes sent.
    let producer_prom = d.path("producer.prom");
    let labels = format!("interface=\"{}\",peer=\"{API_TUNNEL}\"", net.producer_if);
    wait_for(
        "the producer's tunnel metrics",
        Duration::from_secs(30),
        || {
            let n = |m: &str| {
                metric(&producer_prom, &format!("{m}{{{labels}"))
                    .and_then(|v| v.parse::<u64>().ok())
                    .unwrap_or(0)
            };
            n("rempart_wireguard_peer_last_handshake_seconds") > 0
                && n("rempart_wireguard_peer_transmit_bytes_total") > 0
        },
        || log("producer.prom"),
    );
    assert_eq!(
        metric(&producer_prom, &format!("rempart_wireguard_peer_stale{{{labels}")).as_deref(),
        Some("0"),
        "{}",
        log("producer.prom")
    );

    // eosjs pushes to the api node (in its namespace), which forwards through the tunnel to the
    // producer; the transaction comes back in a block that the api node followed.
    if let Some(modules) = modules {
        wait_for("a few real-time blocks", Duration::from_secs(30), || head(&api_prom) >= 6, all);
        let request = serde_json::json!({
            "url": "http://127.0.0.1:8888", "wif": DEV_WIF, "name": "tunnelbob",
        });
        let mut child = Command::new("ip")
            .args(["netns", "exec", &net.api_ns, "node", "-e", EOSJS_PUSH])
            .env("NODE_PATH", &modules)
            .stdin(Stdio::piped())
            .stdout(Stdio::piped())
            .stderr(Stdio::piped())
            .spawn()
            .expect("run node");
        let mut stdin = child.stdin.take().expect("stdin");
        stdin.write_all(request.to_string().as_bytes()).expect("request");
        drop(stdin);
        let out = child.wait_with_output().expect("node output");
        let v: serde_json::Value = serde_json::from_slice(&out.stdout).unwrap_or_else(|e| {
            panic!(
                "eosjs printed no JSON ({e}): {}{}\n{}",
                String::from_utf8_lossy(&out.stdout),
                String::from_utf8_lossy(&out.stderr),
                all()
            )
        });
        assert!(v.get("fatal").is_none(), "eosjs failed: {v}\n{}", all());
        assert!(v["block_num"].as_u64().is_some_and(|n| n > 3), "{v}");
        assert_eq!(v["producer"], "eosio", "{v}");
    }

    let signer_tcp: SocketAddr = format!("{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}").parse().expect("a");
    let on = |ip: &str, port: u16| -> SocketAddr { format!("{ip}:{port}").parse().expect("addr") };
    let private: SocketAddr = producer_listen.parse().expect("addr");
    inside(&net.api_ns, || {
        // The signer's port, from the api namespace: not through the tunnel (the api node's
        // interface has no peer for the signer's address), not on any veth address.
        for to in [
            signer_tcp,
            on(SIGNER_VETH, SIGNER_TCP_PORT),
            on(SIGNER_STRANGER_VETH, SIGNER_TCP_PORT),
            on(PRODUCER_SIGNER_VETH, SIGNER_TCP_PORT),
        ] {
            let r = connect(None, to, Duration::from_secs(2));
            assert!(r.is_err(), "the api namespace reached the signer's port at {to}");
        }
        // Outside the tunnel: nothing listens on the producer's veth address.
        let e = connect(None, on(PRODUCER_VETH, PRIVATE_PORT), Duration::from_secs(5))
            .expect_err("veth address");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");

        // A tunnel address that is not a configured peer: nothing gets through.
        let extra = format!("{STRANGER_TUNNEL}/32");
        run("ip", &["-n", &net.api_ns, "address", "add", &extra, "dev", &net.api_if]);
        let r = connect(Some(STRANGER_TUNNEL), private, Duration::from_secs(3));
        assert!(r.is_err(), "a non-peer tunnel address reached the producer");

        // The configured peer still does.
        connect(Some(API_TUNNEL), private, Duration::from_secs(5)).expect("the api node's address");
    });

    // The signer's veth address, from the producer next to it: outside the tunnel, refused.
    inside(&net.producer_ns, || {
        let e = connect(None, on(SIGNER_VETH, SIGNER_TCP_PORT), Duration::from_secs(5))
            .expect_err("the signer's veth address");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");
    });

    // A stranger with its own WireGuard key, which no one configured, aimed at both the signer
    // and the producer: its handshakes go out and nothing comes back.
    let (x_ns, x_if) = net.stranger.clone().expect("a stranger");
    let x_key = d.path("stranger-wg.key");
    generate_key_file(&x_key).expect("stranger key");
    let (signer_wg, producer_wg) = (d.signer_wg.to_string(), d.producer_wg.to_string());
    let signer_end = format!("{SIGNER_STRANGER_VETH}:{SIGNER_WG_PORT}");
    let producer_end = format!("{PRODUCER_STRANGER_VETH}:{PRODUCER_WG_PORT}");
    net.net.wireguard_go(
        &x_ns,
        &x_if,
        &x_key,
        STRANGER_WG_PORT,
        &format!("{STRANGER_TUNNEL}/24"),
        &[
            WgPeer { public_key: &signer_wg, address: SIGNER_TUNNEL, endpoint: Some(&signer_end) },
            WgPeer {
                public_key: &producer_wg,
                address: PRODUCER_TUNNEL,
                endpoint: Some(&producer_end),
            },
        ],
    );
    inside(&x_ns, || {
        for to in [signer_tcp, private] {
            let r = connect(None, to, Duration::from_secs(3));
            assert!(r.is_err(), "the stranger reached {to} through the tunnel");
        }
    });
    let transfer = run("ip", &["netns", "exec", &x_ns, "wg", "show", &x_if, "transfer"]);
    let lines: Vec<Vec<&str>> = transfer.lines().map(|l| l.split('\t').collect()).collect();
    assert_eq!(lines.len(), 2, "{transfer}");
    for l in &lines {
        assert!(l[1] == "0" && l[2] != "0", "handshakes sent, nothing received: {transfer}");
    }

    // On the producer's own host the source is its own tunnel address, which is no peer: the
    // kernel delivers it locally, the producer closes it at once unserved (a served connection
    // would wait 5 s for its Hello) and says why.
    inside(&net.producer_ns, || {
        let mut s = connect(None, private, Duration::from_secs(5)).expect("local delivery");
        s.set_read_timeout(Some(Duration::from_secs(3))).expect("timeout");
        let mut buf = [0u8; 16];
        match s.read(&mut buf) {
            Ok(0) => {}
            Err(e) if e.kind() == std::io::ErrorKind::ConnectionReset => {}
            other => panic!("the producer served a connection from a non-peer: {other:?}"),
        }
    });
    wait_for(
        "the refusal of the non-peer in the producer's log",
        Duration::from_secs(10),
        || log("producer.log").contains("not a configured WireGuard peer"),
        all,
    );

    // The producer kept producing and the api node kept following.
    let h = head(&api_prom);
    wait_for(
        "the api node to keep following",
        Duration::from_secs(30),
        || head(&api_prom) > h,
        all,
    );
}

#[test]
fn slots_missed_while_the_tunnel_is_down_resume_and_a_key_rotation_needs_no_signer_restart() {
    let name =
        "slots_missed_while_the_tunnel_is_down_resume_and_a_key_rotation_needs_no_signer_restart";
    if !namespaces_or_skip(name) {
        return;
    }
    let net = Net::new(false);
    let mut d = Deployment::write(&net, "auto");
    // The producer calls a handshake older than 10 s stale (the least a policy accepts), so that
    // its warning comes while the tunnel is down, within this test's time. (WireGuard rekeys
    // only every 120 s while traffic flows: a live peer's handshake ages past 10 s too.)
    let stale_policy = d.producer_text.replace(
        "stats_interval_secs = 1\n",
        "stats_interval_secs = 1\nstale_handshake_secs = 10\n",
    );
    assert_ne!(stale_policy, d.producer_text, "the producer's [wireguard] changed shape");
    d.producer_text = stale_policy;
    std::fs::write(d.path("producer.toml"), &d.producer_text).expect("producer.toml");
    d.start(&net);
    let api_prom = d.path("api.prom");
    let producer_prom = d.path("producer.prom");
    let signer_prom = d.path("signer-state/metrics.prom");
    wait_for(
        "blocks signed through the tunnel and followed",
        Duration::from_secs(60),
        || head(&api_prom) >= 3,
        || d.logs(),
    );
    assert!(d.log("signer.log").contains("WireGuard interface up"), "{}", d.logs());
    // `auto` picked boringtun on every side where it is on PATH (it must be under CI=true).
    let expected = if boringtun_on_path() { "boringtun" } else { "wireguard-go" };
    for iface in [&net.signer_if, &net.producer_if, &net.api_if] {
        let behind: Vec<&str> =
            netns::userspace_processes(iface).into_iter().map(|(_, p)| p).collect();
        assert_eq!(behind, [expected], "the program behind {iface}");
    }
    let (pid, running) = d.signer_pid();
    assert!(running, "{}", d.logs());
    let exe = std::fs::read_link(format!("/proc/{pid}/exe")).expect("the signer's exe");
    assert!(exe.ends_with("rempart-signer"), "PID {pid} is {}", exe.display());

    // The signer's side of the tunnel goes down: every slot is missed, with the reason logged,
    // and nothing is signed anywhere else (the node holds no block-signing key).
    let before = missed(&producer_prom);
    // The producer's warning that names the signer's peer as stale (its tunnel address).
    let stale_signer = |d: &Deployment| {
        d.log("producer.log").lines().any(|l| {
            l.contains("WireGuard handshake with the peer is stale") && l.contains(SIGNER_TUNNEL)
        })
    };
    // The tunnel goes down once the producer's handshake with the signer is 7 s old, so that
    // the warning (past 10 s) comes about as soon as the missed slots do: a longer outage only
    // makes abandoned requests arrive later.
    let handshake = format!(
        "rempart_wireguard_peer_last_handshake_seconds{{interface=\"{}\",peer=\"{SIGNER_TUNNEL}\"",
        net.producer_if
    );
    wait_for(
        "the producer's handshake with the signer to be 7 s old",
        Duration::from_secs(30),
        || {
            let at = metric(&producer_prom, &handshake).and_then(|v| v.parse::<i64>().ok());
            let now_secs = clock::now().0 / 1_000_000;
            at.is_some_and(|t| t > 0 && now_secs >= t + 7)
        },
        || format!("{}\n{}", d.log("producer.prom"), d.logs()),
    );
    assert!(!stale_signer(&d), "stale while the tunnel was up and fresh: {}", d.logs());
    run("ip", &["-n", &net.signer_ns, "link", "set", "dev", &net.signer_if, "down"]);
    wait_for(
        "missed slots while the tunnel is down",
        Duration::from_secs(30),
        || missed(&producer_prom) >= before + 3,
        || d.logs(),
    );
    let log = d.log("producer.log");
    assert!(log.contains("slot missed: the block was not signed"), "{log}");
    assert!(log.contains(SIGNER_TUNNEL), "the signer's address is named: {log}");
    // While it is still down, the producer's health monitor logs the signer's peer as stale.
    wait_for(
        "the producer's stale-handshake warning for the signer's peer",
        Duration::from_secs(30),
        || stale_signer(&d),
        || d.logs(),
    );
    let stalled = head(&producer_prom);

    // Back up: production resumes and the api node follows.
    run("ip", &["-n", &net.signer_ns, "link", "set", "dev", &net.signer_if, "up"]);
    wait_for(
        "production to resume",
        Duration::from_secs(60),
        || head(&producer_prom) >= stalled + 3 && head(&api_prom) >= stalled + 3,
        || d.logs(),
    );
    // A block sent again after a lost answer is the same request: the guard answers it and
    // refuses nothing.
    // (A retry whose slot has passed may be refused for clock skew, as any late request is; the
    // double-sign guard must never be what refuses it.)
    let no_double_sign = |d: &Deployment| {
        let m = std::fs::read_to_string(&signer_prom).unwrap_or_default();
        assert!(!m.contains("reason=\"double_sign\""), "the guard refused a retry: {m}");
        let s = d.status();
        assert!(s.signatures > 0, "{s:?}");
        let log = d.log("signer.log");
        assert!(!log.contains("double_sign"), "the guard refused a retry: {log}");
        let log = d.log("producer.log");
        assert!(!log.contains("is not above the last signed block"), "a retry tripped: {log}");
    };
    no_double_sign(&d);

    // Key rotation, as an operator does it: a new key for the producer, every file edited, then
    // `rempart wg apply FILE` on each host (here its library call, in each namespace). The
    // signer keeps running: it accepts the producer by its tunnel address, which stays.
    let new_wg = generate_key_file(&d.path("producer-wg-2.key")).expect("new key");
    let (old, new) = (d.producer_wg.to_string(), new_wg.to_string());
    for f in ["signer.toml", "api.toml"] {
        let text = std::fs::read_to_string(d.path(f)).expect("read");
        assert!(text.contains(&old));
        std::fs::write(d.path(f), text.replace(&old, &new)).expect("write");
    }
    let producer_toml = d.producer_text.replace("\"producer-wg.key\"", "\"producer-wg-2.key\"");
    std::fs::write(d.path("producer.toml"), producer_toml).expect("producer.toml");
    let rotated_at = head(&producer_prom);
    for (ns, file, signer) in [
        (&net.signer_ns, "signer.toml", true),
        (&net.api_ns, "api.toml", false),
        (&net.producer_ns, "producer.toml", false),
    ] {
        let config = wireguard_of(&d.path(file), signer);
        let (iface, changes) = inside(ns, || Interface::apply(&config)).expect("apply");
        if ns == &net.producer_ns {
            assert!(changes.private_key_changed && iface.public_key() == new_wg, "{changes:?}");
            assert!(changes.removed.is_empty() && changes.kept.len() == 2, "{changes:?}");
        } else {
            assert_eq!(
                (changes.added.clone(), changes.removed.clone()),
                (vec![new_wg], vec![d.producer_wg])
            );
        }
    }
    wait_for(
        "blocks signed through the new key",
        Duration::from_secs(60),
        || head(&producer_prom) >= rotated_at + 3 && head(&api_prom) >= rotated_at + 3,
        || d.logs(),
    );
    assert_eq!(d.signer_pid(), (pid, true), "the signer was not restarted");
    assert_eq!(d.log("signer.log").matches("WireGuard interface up").count(), 1);
    // Status and metrics name the new key for the producer's address.
    let labels = format!("peer=\"{PRODUCER_TUNNEL}\",public_key=\"{new}\"");
    wait_for(
        "the new key in the signer's Status and metrics",
        Duration::from_secs(20),
        || {
            let s = d.status();
            let m = std::fs::read_to_string(&signer_prom).unwrap_or_default();
            s.tunnel.len() == 1
                && s.tunnel[0].address == PRODUCER_TUNNEL
                && s.tunnel[0].public_key == new
                && s.tunnel[0].last_handshake > 0
                && m.contains(&labels)
        },
        || format!("{:?}\n{}", d.status(), d.logs()),
    );

    // The old key no longer gets through: the producer's interface back on it reaches nothing.
    let key = |f: &str| d.path(f).to_string_lossy().into_owned();
    let wg_key = |k: &str| {
        run(
            "ip",
            &["netns", "exec", &net.producer_ns, "wg", "set", &net.producer_if, "private-key", k],
        )
    };
    wg_key(&key("producer-wg.key"));
    inside(&net.producer_ns, || {
        let r = connect(
            Some(PRODUCER_TUNNEL),
            format!("{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}").parse().expect("a"),
            Duration::from_secs(3),
        );
        assert!(r.is_err(), "the old key reached the signer");
    });
    wg_key(&key("producer-wg-2.key"));
    let back = head(&producer_prom);
    wait_for(
        "production with the new key again",
        Duration::from_secs(60),
        || head(&producer_prom) >= back + 3 && head(&api_prom) >= back + 3,
        || d.logs(),
    );
    assert_eq!(d.signer_pid(), (pid, true), "the signer was not restarted");
    no_double_sign(&d);
}
