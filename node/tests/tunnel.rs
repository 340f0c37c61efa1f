//! The node's private network on real interfaces: a producer in one network namespace and an
//! api node in another, joined by a veth pair, each bringing up its own `[wireguard]`
//! interface (wireguard-go) from its node.toml. The api node follows the producer through the
//! tunnel; the producer's private listener is reachable neither on its veth address nor from a
//! tunnel address that is not a configured peer, and a non-peer source on its own host is
//! closed unserved by its peer filter.
//! `rempart-node check` accepts the configuration and refuses a wildcard private listener. With
//! the signer in a third namespace behind the tunnel, taking its side down makes the producer
//! miss slots (counted, with the error logged) and production resumes when it comes back.
//!
//! Needs root, iproute2, wireguard-go and /dev/net/tun: under `CI=true` the test fails when any
//! is missing, elsewhere it is skipped with a line saying why. Interface names are unique per
//! run (wireguard-go's UAPI sockets in /run/wireguard are shared by every namespace).
//! Everything the test creates — namespaces, nodes, the signer, the wireguard-go processes
//! (found by their exact command line, killed by PID) — is removed by guards' `Drop`, even when
//! the test fails. No sleep synchronises anything: every wait polls with a deadline.

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd as _;
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Child, Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

use rempart_node::genesis::Genesis;
use rempart_node::producer::clock;
use rempart_signer::wireguard::{WgKey, generate_key_file};

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
const SIGNER_WG_PORT: u16 = 51832;
const SIGNER_TCP_PORT: u16 = 7010;
const PRODUCER_WG_PORT: u16 = 51830;
const API_WG_PORT: u16 = 51831;
const PRIVATE_PORT: u16 = 9876;

fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

/// Whether this machine can run the namespace test; panics under CI when it cannot.
fn namespaces_or_skip(test: &str) -> bool {
    let mut missing = Vec::new();
    if !rustix::process::geteuid().is_root() {
        missing.push("root".to_string());
    }
    for tool in ["ip", "wireguard-go"] {
        let found = std::env::var_os("PATH")
            .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()));
        if !found {
            missing.push(tool.to_string());
        }
    }
    if !Path::new("/dev/net/tun").exists() {
        missing.push("/dev/net/tun".into());
    }
    if missing.is_empty() {
        return true;
    }
    assert!(
        !ci(),
        "{test} needs {} and CI=true: run CI as root with iproute2 and wireguard-go",
        missing.join(", ")
    );
    eprintln!("{test}: skipped, missing {}", missing.join(", "));
    false
}

fn run(program: &str, args: &[&str]) {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
}

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

/// The PIDs of `wireguard-go IFACE` processes (exact command line; the interface names are
/// unique to this run, so this finds only what the test started).
fn wireguard_go_pids(iface: &str) -> Vec<i32> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        if args.len() == 2 && args[0].ends_with(b"wireguard-go") && args[1] == iface.as_bytes() {
            pids.push(pid);
        }
    }
    pids
}

/// A child process killed (SIGKILL, by PID) and reaped on drop.
struct Proc(Child);

impl Drop for Proc {
    fn drop(&mut self) {
        let _ = self.0.kill();
        let _ = self.0.wait();
    }
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// The producer's and the api node's namespaces joined by veth, and with `signer` a third one
/// for the signer linked to the producer's by another veth pair; removed with everything in
/// them on drop.
struct Net {
    producer_ns: String,
    api_ns: String,
    signer_ns: String,
    producer_if: String,
    api_if: String,
    signer_if: String,
}

impl Net {
    fn new(signer: bool) -> Net {
        let tag = format!("{}{}", std::process::id() % 10_000, NEXT.fetch_add(1, Ordering::SeqCst));
        let net = Net {
            producer_ns: format!("rnt-p-{tag}"),
            api_ns: format!("rnt-a-{tag}"),
            signer_ns: format!("rnt-s-{tag}"),
            producer_if: format!("rntp{tag}"),
            api_if: format!("rnta{tag}"),
            signer_if: format!("rnts{tag}"),
        };
        let mut links = vec![(
            &net.producer_ns,
            &net.api_ns,
            format!("rnvp{tag}"),
            format!("rnva{tag}"),
            PRODUCER_VETH,
            API_VETH,
        )];
        if signer {
            links.push((
                &net.producer_ns,
                &net.signer_ns,
                format!("rnvq{tag}"),
                format!("rnvs{tag}"),
                PRODUCER_SIGNER_VETH,
                SIGNER_VETH,
            ));
        }
        let namespaces: &[&String] = if signer {
            &[&net.producer_ns, &net.api_ns, &net.signer_ns]
        } else {
            &[&net.producer_ns, &net.api_ns]
        };
        for ns in namespaces {
            run("ip", &["netns", "add", ns]);
            run("ip", &["-n", ns, "link", "set", "lo", "up"]);
        }
        for (ns_a, ns_b, va, vb, addr_a, addr_b) in &links {
            run("ip", &["link", "add", va, "type", "veth", "peer", "name", vb]);
            for (ns, dev, addr) in [(ns_a, va, addr_a), (ns_b, vb, addr_b)] {
                run("ip", &["link", "set", dev, "netns", ns]);
                run("ip", &["-n", ns, "address", "add", &format!("{addr}/24"), "dev", dev]);
                run("ip", &["-n", ns, "link", "set", dev, "up"]);
            }
        }
        net
    }

    /// Runs `f` on a thread inside namespace `ns` (its sockets belong to that namespace).
    fn inside<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> T {
        std::thread::scope(|s| {
            s.spawn(|| {
                let handle = std::fs::File::open(format!("/run/netns/{ns}")).expect("netns");
                rustix::thread::move_into_link_name_space(
                    handle.as_fd(),
                    Some(rustix::thread::LinkNameSpaceType::Network),
                )
                .expect("setns");
                f()
            })
            .join()
            .unwrap_or_else(|p| std::panic::resume_unwind(p))
        })
    }
}

impl Drop for Net {
    fn drop(&mut self) {
        for iface in [&self.producer_if, &self.api_if, &self.signer_if] {
            for pid in wireguard_go_pids(iface) {
                if let Some(pid) = rustix::process::Pid::from_raw(pid) {
                    let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
                }
            }
            for dir in ["/var/run/wireguard", "/run/wireguard"] {
                let _ = std::fs::remove_file(Path::new(dir).join(format!("{iface}.sock")));
            }
        }
        for ns in [&self.producer_ns, &self.api_ns, &self.signer_ns] {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}

/// The signer binary, built next to this test binary.
fn signer_bin() -> PathBuf {
    let cargo = std::env::var("CARGO").unwrap_or_else(|_| "cargo".into());
    let out = Command::new(cargo)
        .args(["build", "-p", "rempart-signer", "--bin", "rempart-signer"])
        .current_dir(env!("CARGO_MANIFEST_DIR"))
        .output()
        .expect("run cargo");
    assert!(
        out.status.success(),
        "cargo build -p rempart-signer: {}",
        String::from_utf8_lossy(&out.stderr)
    );
    let exe = std::env::current_exe().expect("test binary path");
    let dir = exe.parent().and_then(Path::parent).expect("target profile directory");
    dir.join("rempart-signer")
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

/// The signer's policy: soft development key, no sandbox (test harness), the Unix socket and,
/// with `tunnel`, a TCP listener on its tunnel address with the producer as its one peer.
fn signer_toml(chain: &str, tunnel: Option<(&str, WgKey)>) -> String {
    let (tcp, wireguard) = match tunnel {
        None => (String::new(), String::new()),
        Some((iface, producer_wg)) => (
            format!("tcp = \"{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}\"\n"),
            format!(
                "[wireguard]\ninterface = \"{iface}\"\nprivate_key_file = \"signer-wg.key\"\n\
                 listen_port = {SIGNER_WG_PORT}\naddress = \"{SIGNER_TUNNEL}/24\"\n\
                 stats_interval_secs = 1\n{}",
                peer_toml(
                    producer_wg,
                    PRODUCER_TUNNEL,
                    &format!("{PRODUCER_SIGNER_VETH}:{PRODUCER_WG_PORT}")
                )
            ),
        ),
    };
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
{tcp}[state]
dir = "signer-state"
audit_log = "signer-state/audit.jsonl"
[sandbox]
dangerous_disabled = true
{wireguard}"#
    )
}

/// A running deployment: the signer (in the root namespace on its Unix socket, or in its own
/// namespace behind the tunnel), the producer and the api node, each in its namespace.
struct Deployment {
    dir: tempfile::TempDir,
    producer_toml: PathBuf,
    producer_text: String,
    producer_wg: WgKey,
    procs: Vec<Proc>,
}

impl Deployment {
    /// Writes every file and checks the producer's configuration; starts nothing yet.
    fn write(net: &Net, signer_in_tunnel: bool) -> Deployment {
        let dir = tempfile::tempdir().expect("tempdir");
        let d = dir.path();
        let root = Path::new(env!("CARGO_MANIFEST_DIR")).join("..");
        std::fs::copy(root.join("policies/genesis.json"), d.join("genesis.json")).expect("genesis");
        let genesis = Genesis::load(&d.join("genesis.json")).expect("genesis");
        let producer_wg = generate_key_file(&d.join("producer-wg.key")).expect("producer key");
        let api_wg = generate_key_file(&d.join("api-wg.key")).expect("api key");
        let mut producer_peers =
            peer_toml(api_wg, API_TUNNEL, &format!("{API_VETH}:{API_WG_PORT}"));
        let mut signer = "unix:signer.sock".to_string();
        let mut signer_tunnel = None;
        if signer_in_tunnel {
            let signer_wg = generate_key_file(&d.join("signer-wg.key")).expect("signer key");
            producer_peers.push_str(&peer_toml(
                signer_wg,
                SIGNER_TUNNEL,
                &format!("{SIGNER_VETH}:{SIGNER_WG_PORT}"),
            ));
            signer = format!("{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}");
            signer_tunnel = Some((net.signer_if.as_str(), producer_wg));
        }
        let producer_text = node_toml(
            &format!("{PRODUCER_TUNNEL}:{PRIVATE_PORT}"),
            &signer,
            &net.producer_if,
            "producer-wg.key",
            PRODUCER_WG_PORT,
            PRODUCER_TUNNEL,
            &producer_peers,
        );
        std::fs::write(d.join("producer.toml"), &producer_text).expect("producer.toml");
        let api_text = node_toml(
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
        );
        std::fs::write(d.join("api.toml"), api_text).expect("api.toml");
        std::fs::write(d.join("dev.key"), format!("{DEV_WIF}\n")).expect("key");
        std::fs::set_permissions(d.join("dev.key"), std::fs::Permissions::from_mode(0o600))
            .expect("chmod");
        std::fs::create_dir(d.join("signer-state")).expect("state");
        let chain = genesis.chain_id().to_string();
        std::fs::write(d.join("signer.toml"), signer_toml(&chain, signer_tunnel))
            .expect("signer.toml");
        Deployment {
            producer_toml: d.join("producer.toml"),
            producer_text,
            producer_wg,
            procs: Vec::new(),
            dir,
        }
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

    /// Starts the signer (in `signer_ns` when given), then the producer and the api node.
    fn start(&mut self, net: &Net, signer_ns: Option<&str>) {
        let signer = signer_bin();
        let policy = self.path("signer.toml");
        let out = Command::new(&signer)
            .args(["guard", "init", "--policy"])
            .arg(&policy)
            .output()
            .expect("guard init");
        assert!(out.status.success(), "guard init: {}", String::from_utf8_lossy(&out.stderr));
        let mut cmd = match signer_ns {
            Some(ns) => {
                let mut c = Command::new("ip");
                c.args(["netns", "exec", ns]).arg(&signer);
                c
            }
            None => Command::new(&signer),
        };
        let child = cmd
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

/// Connects from `source` (when given) to `to` with a bounded connect time.
fn connect(source: Option<&str>, to: SocketAddr, within: Duration) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let fd = rustix::net::socket(AddressFamily::INET, SocketType::STREAM, None)?;
    // connect(2) honours the send timeout: a SYN that nobody answers fails in time.
    sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, Some(within))?;
    if let Some(ip) = source {
        let from: SocketAddr = format!("{ip}:0").parse().expect("source");
        rustix::net::bind(&fd, &from)?;
    }
    rustix::net::connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

#[test]
fn an_api_node_follows_the_producer_through_the_tunnel_and_nothing_else_gets_in() {
    let name = "an_api_node_follows_the_producer_through_the_tunnel_and_nothing_else_gets_in";
    if !namespaces_or_skip(name) {
        return;
    }
    let net = Net::new(false);
    let mut d = Deployment::write(&net, false);
    let producer_listen = format!("{PRODUCER_TUNNEL}:{PRIVATE_PORT}");

    // `check` accepts the file and names this side's public key; a wildcard is refused.
    let node = env!("CARGO_BIN_EXE_rempart-node");
    let out = Command::new(node)
        .args(["check", "--config"])
        .arg(&d.producer_toml)
        .output()
        .expect("check");
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

    // The signer in the root namespace (Unix socket: the path crosses namespaces).
    d.start(&net, None);
    let log = |f: &str| d.log(f);
    let both = || d.logs();

    // The api node follows the producer's blocks through the tunnel.
    let api_prom = d.path("api.prom");
    wait_for(
        "the api node to apply block 3",
        Duration::from_secs(60),
        || head(&api_prom) >= 3,
        both,
    );
    assert!(log("producer.log").contains("private network up"), "{}", both());
    assert!(log("api.log").contains("private network up"), "{}", both());

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

    let private: SocketAddr = producer_listen.parse().expect("addr");
    net.inside(&net.api_ns.clone(), || {
        // Outside the tunnel: nothing listens on the producer's veth address.
        let veth: SocketAddr = format!("{PRODUCER_VETH}:{PRIVATE_PORT}").parse().expect("addr");
        let e = connect(None, veth, Duration::from_secs(5)).expect_err("veth address");
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");

        // A tunnel address that is not a configured peer: nothing gets through.
        run(
            "ip",
            &[
                "-n",
                &net.api_ns,
                "address",
                "add",
                &format!("{STRANGER_TUNNEL}/32"),
                "dev",
                &net.api_if,
            ],
        );
        let r = connect(Some(STRANGER_TUNNEL), private, Duration::from_secs(3));
        assert!(r.is_err(), "a non-peer tunnel address reached the producer");

        // The configured peer still does.
        connect(Some(API_TUNNEL), private, Duration::from_secs(5)).expect("the api node's address");
    });

    // On the producer's own host the source is its own tunnel address, which is no peer: the
    // kernel delivers it locally, the producer closes it at once unserved (a served connection
    // would wait 5 s for its Hello) and says why.
    net.inside(&net.producer_ns.clone(), || {
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
        both,
    );

    // The producer kept producing and the api node kept following.
    let h = head(&api_prom);
    wait_for(
        "the api node to keep following",
        Duration::from_secs(30),
        || head(&api_prom) > h,
        both,
    );
}

fn missed(prom: &Path) -> u64 {
    metric(prom, "rempart_node_missed_slots_total{").and_then(|v| v.parse().ok()).unwrap_or(0)
}

#[test]
fn the_producer_misses_slots_while_its_tunnel_to_the_signer_is_down_and_resumes() {
    let name = "the_producer_misses_slots_while_its_tunnel_to_the_signer_is_down_and_resumes";
    if !namespaces_or_skip(name) {
        return;
    }
    let net = Net::new(true);
    let mut d = Deployment::write(&net, true);
    d.start(&net, Some(&net.signer_ns));
    let api_prom = d.path("api.prom");
    let producer_prom = d.path("producer.prom");
    wait_for(
        "blocks signed through the tunnel and followed",
        Duration::from_secs(60),
        || head(&api_prom) >= 3,
        || d.logs(),
    );
    assert!(d.log("signer.log").contains("WireGuard interface up"), "{}", d.logs());

    // The signer's side of the tunnel goes down: every slot is missed, with the reason logged,
    // and nothing is signed anywhere else (the node holds no block-signing key).
    let before = missed(&producer_prom);
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
    let stalled = head(&producer_prom);

    // Back up: production resumes and the api node follows; no retry trips the signer's
    // double-sign guard (its refusal would be in the producer's log).
    run("ip", &["-n", &net.signer_ns, "link", "set", "dev", &net.signer_if, "up"]);
    wait_for(
        "production to resume",
        Duration::from_secs(60),
        || head(&producer_prom) >= stalled + 3 && head(&api_prom) >= stalled + 3,
        || d.logs(),
    );
    let log = d.log("producer.log");
    assert!(
        !log.contains("is not above the last signed block"),
        "a retry tripped the guard: {log}"
    );
}
