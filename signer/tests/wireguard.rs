//! The private network on real interfaces: two network namespaces joined by a veth pair, a
//! wireguard-go interface in each (named explicitly: `userspace = "wireguard-go"`), the real
//! `rempart-signer` (sandboxed) in one, bound to its tunnel address, and a client in the other
//! that signs blocks through the tunnel — also after the client's WireGuard key is rotated on
//! both live interfaces while the signer runs; and the same with boringtun, what
//! `userspace = "auto"` picks when `boringtun-cli` is on PATH, on both sides, where the
//! signer's per-peer counters come through its confined statistics reader child, and a key
//! rotation goes through boringtun's remove-then-add workaround.
//!
//! The namespace tests need root, iproute2, wireguard-go and /dev/net/tun (the boringtun test
//! also `boringtun-cli` on PATH): under `CI=true` they fail when any is missing, elsewhere they
//! are skipped with a line saying why. Interface names are unique per test (the UAPI sockets in
//! /run/wireguard are shared by every namespace). Everything a test creates — namespaces, the
//! signer, the wireguard-go and boringtun processes (found by their exact command line, killed
//! by PID) — is removed by a guard's `Drop`, even when the test fails. No sleep synchronises anything: every wait polls with a deadline.

#![cfg(feature = "wireguard")]

mod common;
#[path = "../../tests/support/netns.rs"]
mod netns;

use std::io::Read as _;
use std::net::{SocketAddr, TcpStream};
use std::os::unix::fs::PermissionsExt as _;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::{Duration, Instant};

use common::{BIN, DEV_PUB, DEV_WIF, ci, now_slot, request, wait_for};
use netns::{namespaces_or_skip, run, wireguard_go_pids};
use rempart_core::BlockTimestamp;
use rempart_core::key::PublicKey;
use rempart_signer::client::{Client, ClientError};
use rempart_signer::wireguard::{
    BackendChoice, Interface, PeerConfig, UserspaceChoice, WgKey, WireGuardConfig,
    generate_key_file,
};

const SIGNER_TUNNEL: &str = "10.98.0.1";
const CLIENT_TUNNEL: &str = "10.98.0.2";
const SIGNER_VETH: &str = "10.99.0.1";
const CLIENT_VETH: &str = "10.99.0.2";
const SIGNER_WG_PORT: u16 = 51820;
const CLIENT_WG_PORT: u16 = 51821;
const SIGNER_TCP_PORT: u16 = 7010;
/// The keosd-compatible endpoint, on the tunnel address too.
const KEOSD_PORT: u16 = 8900;

/// The signer's and the client's namespaces joined by veth, with an interface name for each;
/// everything goes with `net` on drop.
struct Net {
    signer_ns: String,
    client_ns: String,
    signer_if: String,
    client_if: String,
    _net: netns::Net,
}

impl Net {
    fn new() -> Net {
        let mut net = netns::Net::new("rwg");
        let signer_ns = net.namespace("s");
        let client_ns = net.namespace("c");
        net.veth(
            &signer_ns,
            &format!("{SIGNER_VETH}/24"),
            &client_ns,
            &format!("{CLIENT_VETH}/24"),
        );
        Net {
            signer_if: net.interface("s"),
            client_if: net.interface("c"),
            signer_ns,
            client_ns,
            _net: net,
        }
    }

    fn inside<T: Send>(&self, ns: &str, f: impl FnOnce() -> T + Send) -> T {
        netns::inside(ns, f)
    }
}

/// The signer process, killed (SIGKILL, by PID) and reaped on drop.
struct Daemon {
    child: std::process::Child,
}

impl Drop for Daemon {
    fn drop(&mut self) {
        let _ = self.child.kill();
        let _ = self.child.wait();
    }
}

/// The signer's deployment: policy, dev key, WireGuard key, state, a log of its stderr.
struct Deployment {
    dir: tempfile::TempDir,
    policy: PathBuf,
    socket: PathBuf,
    log: PathBuf,
    key: PublicKey,
    signer_wg: WgKey,
    client_wg: WgKey,
    client_key_file: PathBuf,
}

/// `userspace`: the signer's `[wireguard] userspace` ("wireguard-go" or "boringtun").
fn deployment(signer_if: &str, listen_tcp: &str, userspace: &str) -> Deployment {
    let dir = tempfile::tempdir().unwrap();
    let keyfile = dir.path().join("dev.key");
    std::fs::write(&keyfile, format!("{DEV_WIF}\n")).unwrap();
    std::fs::set_permissions(&keyfile, std::fs::Permissions::from_mode(0o600)).unwrap();
    std::fs::create_dir(dir.path().join("state")).unwrap();
    let signer_key_file = dir.path().join("signer-wg.key");
    let client_key_file = dir.path().join("client-wg.key");
    let signer_wg = generate_key_file(&signer_key_file).unwrap();
    let client_wg = generate_key_file(&client_key_file).unwrap();
    let seccomp =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/seccomp/signer.x86_64.json");
    let text = format!(
        r#"
[chain]
id = "{chain}"
dangerous_dev_chain = true
max_clock_skew_ms = 60000
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
{listen_tcp}
[state]
dir = "state"
audit_log = "state/audit.jsonl"
[limits]
request_timeout_ms = 5000
[metrics]
file = "state/metrics.prom"
[keosd_compat]
dangerous_bare_digests = true
tcp = "{SIGNER_TUNNEL}:{KEOSD_PORT}"
keys = ["{DEV_PUB}"]
min_interval_ms = 0
[sandbox]
seccomp_policy = "{seccomp}"
memory_lock = "current"
[wireguard]
interface = "{iface}"
private_key_file = "signer-wg.key"
listen_port = {SIGNER_WG_PORT}
address = "{SIGNER_TUNNEL}/24"
userspace = "{userspace}"
stats_interval_secs = 1
[[wireguard.peers]]
public_key = "{client_wg}"
address = "{CLIENT_TUNNEL}"
endpoint = "{CLIENT_VETH}:{CLIENT_WG_PORT}"
"#,
        chain = common::CHAIN,
        seccomp = seccomp.display(),
        iface = signer_if,
    );
    let policy = dir.path().join("signer.toml");
    std::fs::write(&policy, text).unwrap();
    Deployment {
        socket: dir.path().join("signer.sock"),
        log: dir.path().join("signer.log"),
        policy,
        key: DEV_PUB.parse().unwrap(),
        signer_wg,
        client_wg,
        client_key_file,
        dir,
    }
}

impl Deployment {
    fn log_text(&self) -> String {
        std::fs::read_to_string(&self.log).unwrap_or_default()
    }

    /// Starts the real signer inside the signer namespace and waits for its Unix socket.
    fn spawn(&self, net: &Net) -> Daemon {
        let out = Command::new(BIN).args(["guard", "init", "--policy"]).arg(&self.policy).output();
        let out = out.unwrap();
        assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
        let log = std::fs::File::create(&self.log).unwrap();
        let child = Command::new("ip")
            .args(["netns", "exec", &net.signer_ns, BIN, "run", "--policy"])
            .arg(&self.policy)
            .stdout(Stdio::null())
            .stderr(log)
            .spawn()
            .unwrap();
        let mut daemon = Daemon { child };
        let end = Instant::now() + Duration::from_secs(30);
        while std::os::unix::net::UnixStream::connect(&self.socket).is_err() {
            if let Ok(Some(status)) = daemon.child.try_wait() {
                panic!("the signer exited ({status}) before serving:\n{}", self.log_text());
            }
            assert!(Instant::now() < end, "the signer never served:\n{}", self.log_text());
            std::thread::sleep(Duration::from_millis(5));
        }
        daemon
    }

    /// The client side's tunnel, as the node configures it.
    fn client_config(&self, net: &Net) -> WireGuardConfig {
        WireGuardConfig {
            interface: net.client_if.clone(),
            private_key_file: self.client_key_file.clone(),
            listen_port: CLIENT_WG_PORT,
            address: format!("{CLIENT_TUNNEL}/24").parse().unwrap(),
            backend: BackendChoice::Auto,
            userspace: UserspaceChoice::Auto,
            peers: vec![PeerConfig {
                public_key: self.signer_wg,
                address: SIGNER_TUNNEL.parse().unwrap(),
                endpoint: Some(format!("{SIGNER_VETH}:{SIGNER_WG_PORT}").parse().unwrap()),
                keepalive: Some(Duration::from_secs(5)),
            }],
            stale_handshake: Duration::from_secs(180),
            stats_interval: Duration::from_secs(1),
        }
    }

    fn metrics(&self) -> String {
        std::fs::read_to_string(self.dir.path().join("state/metrics.prom")).unwrap_or_default()
    }
}

fn tcp_endpoint() -> SocketAddr {
    format!("{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}").parse().unwrap()
}

/// Signs block `n` through a fresh client on this thread's runtime, within `within`.
/// The slot of block `n`: fixed per test run, so that a retry is the same request (which the
/// guard answers with the same signature) and never a second block at that height.
fn slot(base: BlockTimestamp, n: u32) -> BlockTimestamp {
    BlockTimestamp(base.0 + n)
}

fn sign(
    key: &PublicKey,
    base: BlockTimestamp,
    n: u32,
    within: Duration,
) -> Result<(), ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = Client::new(rempart_signer::client::Endpoint::Tcp(tcp_endpoint()));
        let deadline = tokio::time::Instant::now() + within;
        client.sign_block(request(key, n, slot(base, n), 7), deadline).await.map(|_| ())
    })
}

/// The signer's `Status` over the tunnel.
fn status() -> Result<rempart_core::protocol::StatusResponse, ClientError> {
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    rt.block_on(async {
        let mut client = Client::new(rempart_signer::client::Endpoint::Tcp(tcp_endpoint()));
        client.status(tokio::time::Instant::now() + Duration::from_secs(5)).await
    })
}

/// Polls the signer's `Status` over the tunnel until its one peer is the deployment's client
/// with a handshake, bytes both ways, not stale and no error; returns that `Status`.
fn status_with_counters(d: &Deployment) -> rempart_core::protocol::StatusResponse {
    let mut last = None;
    wait_for("the peer's handshake and counters in Status", Duration::from_secs(20), || {
        let s = status().expect("Status through the tunnel");
        let ok = s.tunnel.len() == 1
            && s.tunnel[0].address == CLIENT_TUNNEL
            && s.tunnel[0].public_key == d.client_wg.to_string()
            && s.tunnel[0].last_handshake > 0
            && s.tunnel[0].rx_bytes > 0
            && s.tunnel[0].tx_bytes > 0
            && !s.tunnel[0].stale
            && s.tunnel[0].error.is_empty();
        last = Some(s);
        ok
    });
    last.expect("at least one Status")
}

/// Polls `sign` until it succeeds, with a deadline (the first packets after a handshake or a
/// link change can be lost).
fn sign_eventually(key: &PublicKey, base: BlockTimestamp, n: u32, within: Duration) {
    let end = Instant::now() + within;
    loop {
        match sign(key, base, n, Duration::from_secs(2)) {
            Ok(()) => return,
            Err(e) => {
                assert!(Instant::now() < end, "block {n} never signed through the tunnel: {e}")
            }
        }
    }
}

/// Rotates the client's WireGuard key while the sandboxed signer runs, as an operator does: a
/// new key, the signer's policy names it, and `Interface::apply` (what `rempart wg apply` runs)
/// syncs both live interfaces. Blocks `first` and `first + 1` are signed through the new key,
/// the signer keeps its PID, its Status names the new key with counters and no error (read
/// after its sandbox closed), and the old key gets nothing through.
fn rotate_client_key(
    d: &Deployment,
    net: &Net,
    signer: &mut Daemon,
    client: &WireGuardConfig,
    base: BlockTimestamp,
    first: u32,
) {
    let pid = signer.child.id();
    let new_key_file = d.dir.path().join("client-wg-2.key");
    let new_wg = generate_key_file(&new_key_file).unwrap();
    let text = std::fs::read_to_string(&d.policy).unwrap();
    std::fs::write(&d.policy, text.replace(&d.client_wg.to_string(), &new_wg.to_string())).unwrap();
    let signer_side = rempart_signer::policy::Policy::load(&d.policy).unwrap().wireguard.unwrap();
    let (_, changes) = net.inside(&net.signer_ns, || Interface::apply(&signer_side)).unwrap();
    assert!(!changes.private_key_changed, "{changes:?}");
    assert_eq!((changes.added, changes.removed), (vec![new_wg], vec![d.client_wg]));
    let mut rotated = client.clone();
    rotated.private_key_file = new_key_file;
    net.inside(&net.client_ns.clone(), || {
        let (iface, changes) = Interface::apply(&rotated).expect("the client's new key");
        assert!(changes.private_key_changed && iface.public_key() == new_wg, "{changes:?}");
        assert_eq!(changes.kept, [d.signer_wg], "the signer stays the client's peer");
        sign_eventually(&d.key, base, first, Duration::from_secs(30));
        wait_for("the new key in Status", Duration::from_secs(20), || {
            let s = status().expect("Status through the tunnel");
            s.tunnel.len() == 1
                && s.tunnel[0].public_key == new_wg.to_string()
                && s.tunnel[0].rx_bytes > 0
                && s.tunnel[0].error.is_empty()
        });
        // The old key no longer gets through; the new one again does.
        Interface::apply(client).expect("back to the old key");
        let e = sign(&d.key, base, first + 1, Duration::from_secs(3)).unwrap_err();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
        Interface::apply(&rotated).expect("the new key again");
        sign_eventually(&d.key, base, first + 1, Duration::from_secs(30));
    });
    assert!(signer.child.try_wait().unwrap().is_none(), "the signer still runs");
    assert_eq!(signer.child.id(), pid);
}

#[test]
fn a_block_is_signed_through_the_tunnel_and_only_through_it() {
    if !namespaces_or_skip("a_block_is_signed_through_the_tunnel_and_only_through_it") {
        return;
    }
    let net = Net::new();
    // The signer's side runs wireguard-go: what follows proves the UAPI connection it keeps
    // through the sandbox (boringtun closes it after one answer: see the boringtun test).
    let d = deployment(
        &net.signer_if,
        &format!("tcp = \"{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}\""),
        "wireguard-go",
    );
    let mut signer = d.spawn(&net);
    let base = now_slot();
    assert!(d.log_text().contains("WireGuard interface up"), "{}", d.log_text());

    let mut client = d.client_config(&net);
    client.userspace = UserspaceChoice::WireguardGo;
    net.inside(&net.client_ns.clone(), || {
        let iface = Interface::up(&client).expect("the client's tunnel comes up");
        assert_eq!(iface.backend(), "userspace", "this machine has no kernel WireGuard");
        // Named explicitly: `auto` would take boringtun where it is on PATH.
        assert_eq!(iface.implementation(), "wireguard-go");
        let found: Vec<&str> =
            netns::userspace_processes(&net.client_if).into_iter().map(|(_, p)| p).collect();
        assert_eq!(found, ["wireguard-go"], "the process behind {}", net.client_if);
        assert_eq!(iface.public_key(), d.client_wg);
        // Idempotent: a second run changes nothing and fails nothing.
        Interface::up(&client).expect("re-applying the same configuration");

        // 1. Through the tunnel: signed, and a bare digest signed by the keosd-compatible
        //    endpoint on the tunnel address (as a stock nodeos on this peer would ask).
        sign_eventually(&d.key, base, 2, Duration::from_secs(30));
        let digest = rempart_core::checksum::Checksum256::hash(b"through the tunnel");
        let (status, body) = keosd_sign(&digest).expect("the keosd endpoint answers");
        assert_eq!(status, 200, "{body}");
        let text: String = serde_json::from_str(&body).unwrap();
        let sig: rempart_core::key::Signature = text.parse().unwrap();
        assert_eq!(sig.recover(&digest).unwrap(), d.key);

        // 2. The signer's veth address: nothing listens there.
        let veth: SocketAddr = format!("{SIGNER_VETH}:{SIGNER_TCP_PORT}").parse().unwrap();
        let e = TcpStream::connect_timeout(&veth, Duration::from_secs(5)).unwrap_err();
        assert_eq!(e.kind(), std::io::ErrorKind::ConnectionRefused, "{e}");

        // 3. Tunnel down: the sign fails with a clear error, within its deadline.
        run("ip", &["-n", &net.client_ns, "link", "set", "dev", &net.client_if, "down"]);
        let started = Instant::now();
        let err = sign(&d.key, base, 3, Duration::from_secs(2)).unwrap_err();
        assert!(started.elapsed() < Duration::from_secs(5));
        let text = err.to_string();
        assert!(text.contains("no answer from the signer at 10.98.0.1"), "{text}");
        assert!(text.contains("last error"), "the cause is named: {text}");

        // 4. Tunnel back: signing resumes (the same block: the guard answers a retry).
        run("ip", &["-n", &net.client_ns, "link", "set", "dev", &net.client_if, "up"]);
        sign_eventually(&d.key, base, 3, Duration::from_secs(30));
        sign_eventually(&d.key, base, 4, Duration::from_secs(30));

        // 5. Status reports the peer's handshake and counters, read after the sandbox closed.
        assert!(status_with_counters(&d).signatures >= 3);
    });

    // 6. A non-peer address: from inside the signer's namespace the source is the signer's own
    //    tunnel address, which is no peer: accepted by the kernel (local delivery counts as
    //    arriving on the address's interface), closed by the signer.
    net.inside(&net.signer_ns.clone(), || {
        let mut s = TcpStream::connect_timeout(&tcp_endpoint(), Duration::from_secs(5))
            .expect("the kernel accepts; the signer decides");
        s.set_read_timeout(Some(Duration::from_secs(5))).unwrap();
        let mut buf = [0u8; 1];
        let n = s.read(&mut buf).unwrap_or(0);
        assert_eq!(n, 0, "a non-peer gets nothing but a closed connection");
        let e = sign(&d.key, base, 5, Duration::from_millis(500)).unwrap_err();
        assert!(matches!(e, ClientError::Timeout { .. }), "{e}");
        // The keosd endpoint applies the same peer rules.
        let digest = rempart_core::checksum::Checksum256::hash(b"from no peer");
        assert!(keosd_sign(&digest).is_err(), "a non-peer gets no keosd answer");
    });
    wait_for("the refusal of the non-peer in the log", Duration::from_secs(10), || {
        d.log_text().contains("tcp peer not allowed")
    });
    // The listener is tied to the tunnel interface (SO_BINDTODEVICE): packets that reach the
    // host by another path find no listener.
    let out =
        Command::new("ip").args(["netns", "exec", &net.signer_ns, "ss", "-ltnH"]).output().unwrap();
    let listeners = String::from_utf8_lossy(&out.stdout);
    for port in [SIGNER_TCP_PORT, KEOSD_PORT] {
        assert!(
            listeners.contains(&format!("{SIGNER_TUNNEL}%{}:{port}", net.signer_if)),
            "{listeners}"
        );
    }

    // 7. Health after the sandbox closed: the interface's counters for the peer, read through
    //    the UAPI connection opened before it.
    let peer = format!("peer=\"{CLIENT_TUNNEL}\",public_key=\"{}\"", d.client_wg);
    wait_for("WireGuard metrics with traffic", Duration::from_secs(20), || {
        let m = d.metrics();
        m.contains(&format!("rempart_wireguard_stats_up{{interface=\"{}\"}} 1", net.signer_if))
            && m.lines().any(|l| {
                l.starts_with("rempart_wireguard_peer_receive_bytes_total")
                    && l.contains(&peer)
                    && !l.ends_with(" 0")
            })
            && m.contains(&format!(
                "rempart_wireguard_peer_stale{{interface=\"{}\",{peer}}} 0",
                net.signer_if
            ))
    });
    assert!(d.log_text().contains("sandbox"), "the signer ran sandboxed: {}", d.log_text());

    // Key rotation while the sandboxed signer runs (it cannot touch its interface itself): the
    // client gets a new key, the policy names it, and `rempart wg apply`'s `Interface::apply`
    // syncs both live interfaces. The signer keeps its PID, signs through the new key, and its
    // Status names the new key (read through the UAPI connection it opened before the sandbox).
    rotate_client_key(&d, &net, &mut signer, &client, base, 6);

    // 8. The wireguard-go process behind the signer's interface dies: the sandboxed signer
    //    cannot reconnect, says so in its log, metrics and Status, and keeps serving its
    //    Unix socket.
    for pid in wireguard_go_pids(&net.signer_if) {
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    }
    wait_for("stats down in the metrics", Duration::from_secs(20), || {
        d.metrics()
            .contains(&format!("rempart_wireguard_stats_up{{interface=\"{}\"}} 0", net.signer_if))
    });
    assert!(d.log_text().contains("cannot read WireGuard statistics"), "{}", d.log_text());
    let rt = tokio::runtime::Builder::new_current_thread().enable_all().build().unwrap();
    let s = rt
        .block_on(async {
            let mut c = Client::new(rempart_signer::client::Endpoint::Unix(d.socket.clone()));
            c.status(tokio::time::Instant::now() + Duration::from_secs(5)).await
        })
        .expect("Status over the Unix socket");
    assert_eq!(s.tunnel.len(), 1);
    assert!(!s.tunnel[0].error.is_empty(), "the read error is reported: {:?}", s.tunnel[0]);
    assert!(s.tunnel[0].rx_bytes > 0, "the last good counters are kept");

    // 9. Updating an interface to another address removes the old one (it would keep
    //    answering otherwise).
    let mut moved = client.clone();
    moved.address = "10.98.0.5/24".parse().unwrap();
    net.inside(&net.client_ns.clone(), || Interface::up(&moved).expect("the moved tunnel"));
    let out = Command::new("ip")
        .args(["-n", &net.client_ns, "-o", "-4", "address", "show", "dev", &net.client_if])
        .output()
        .unwrap();
    let text = String::from_utf8_lossy(&out.stdout);
    assert!(text.contains("10.98.0.5/24") && !text.contains(CLIENT_TUNNEL), "{text}");
}

/// One `POST /v1/wallet/sign_digest` to the keosd-compatible endpoint on the signer's tunnel
/// address: (status, body), or the I/O error of a closed or refused connection.
fn keosd_sign(digest: &rempart_core::checksum::Checksum256) -> std::io::Result<(u16, String)> {
    use std::io::Write as _;
    let addr: SocketAddr = format!("{SIGNER_TUNNEL}:{KEOSD_PORT}").parse().unwrap();
    let mut s = TcpStream::connect_timeout(&addr, Duration::from_secs(5))?;
    s.set_read_timeout(Some(Duration::from_secs(5)))?;
    let body = format!("[\"{digest}\",\"{DEV_PUB}\"]");
    let req = format!(
        "POST /v1/wallet/sign_digest HTTP/1.1\r\nHost: {SIGNER_TUNNEL}\r\nContent-Length: {}\r\n\
         Connection: close\r\n\r\n{body}",
        body.len()
    );
    s.write_all(req.as_bytes())?;
    let mut answer = String::new();
    s.read_to_string(&mut answer)?;
    let (head, body) = answer
        .split_once("\r\n\r\n")
        .ok_or_else(|| std::io::Error::other(format!("no HTTP answer: {answer:?}")))?;
    let status = head.get(9..12).and_then(|c| c.parse().ok()).unwrap_or(0);
    Ok((status, body.to_owned()))
}

/// Whether `boringtun-cli` is on `PATH`. Panics under `CI=true` when it is not (tests/run.sh
/// installs it); elsewhere prints why the test is skipped.
fn boringtun_or_skip(test: &str) -> bool {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("boringtun-cli").is_file()));
    if !found {
        assert!(!ci(), "{test} needs boringtun-cli on PATH and CI=true: see tests/run.sh");
        eprintln!("{test}: skipped, boringtun-cli is not on PATH");
    }
    found
}

/// The child processes of the signer (PID `signer`) started by its main thread: its
/// WireGuard statistics reader (boringtun daemonizes, so it is no child).
fn children(signer: u32) -> Vec<i32> {
    std::fs::read_to_string(format!("/proc/{signer}/task/{signer}/children"))
        .unwrap_or_default()
        .split_whitespace()
        .filter_map(|p| p.parse().ok())
        .collect()
}

/// The value of the metrics line that starts with `name{labels}`, if present.
fn metric(text: &str, name_and_labels: &str) -> Option<u64> {
    text.lines().find_map(|l| l.strip_prefix(name_and_labels)?.trim().parse().ok())
}

/// The signer with `userspace = "auto"` and boringtun-cli on PATH (the default deployment): it
/// starts boringtun-cli itself and signs through the tunnel; under the production sandbox its Status and metrics carry the peer's handshake
/// age and byte counters, which grow after a signature — read by its confined child
/// (`wg-stats-reader`), since boringtun closes each UAPI connection after one answer and the
/// signer may not open another. Killing that child gives a clear, lasting Status and metrics
/// error while signing goes on. A reader that may connect per read (the node's) sees
/// boringtun's handshake as a recent time (boringtun reports an age, not a UNIX time), and
/// re-applying the same configuration on a live boringtun interface reports no key change
/// (boringtun hides its private key). Rotating the client's key on both live boringtun
/// interfaces (`rempart wg apply`: boringtun cannot update a live peer, so every peer is
/// removed and the configured ones added again) keeps the signer running, and its reader
/// child reports the new key.
#[test]
fn a_signer_on_boringtun_reports_per_peer_counters_through_its_confined_reader() {
    let name = "a_signer_on_boringtun_reports_per_peer_counters_through_its_confined_reader";
    if !namespaces_or_skip(name) || !boringtun_or_skip(name) {
        return;
    }
    let net = Net::new();
    let tcp = format!("tcp = \"{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}\"");
    let d = deployment(&net.signer_if, &tcp, "auto");
    let mut signer = d.spawn(&net);
    let base = now_slot();
    // `auto` picked boringtun (it is on PATH; wireguard-go may be too).
    let behind: Vec<&str> =
        netns::userspace_processes(&net.signer_if).into_iter().map(|(_, p)| p).collect();
    assert_eq!(behind, ["boringtun"], "{}", d.log_text());
    let log = d.log_text();
    assert!(log.contains("read by a confined child process"), "{log}");
    assert!(log.contains("wg-stats-reader: sandbox on: landlock ABI"), "{log}");
    // The socket is bound before the signer's own sandbox closes.
    wait_for("the signer's own sandbox", Duration::from_secs(10), || {
        d.log_text().contains("sandbox on: landlock ABI 7 fully enforced; 3 seccomp")
    });
    let readers = children(signer.child.id());
    assert_eq!(readers.len(), 1, "one reader child: {readers:?}");
    let cmdline = std::fs::read(format!("/proc/{}/cmdline", readers[0])).unwrap();
    assert!(cmdline.split(|b| *b == 0).nth(1) == Some(b"wg-stats-reader"), "{cmdline:?}");

    let client = d.client_config(&net);
    let peer = format!("peer=\"{CLIENT_TUNNEL}\",public_key=\"{}\"", d.client_wg);
    let labels = format!("{{interface=\"{}\",{peer}}}", net.signer_if);
    net.inside(&net.client_ns.clone(), || {
        let iface = Interface::up(&client).expect("the client's boringtun tunnel comes up");
        assert_eq!(iface.implementation(), "boringtun", "what `auto` picks with boringtun-cli");
        sign_eventually(&d.key, base, 2, Duration::from_secs(30));

        // Status over the tunnel: a recent handshake and both counters, no error.
        let before = status_with_counters(&d).tunnel.remove(0);
        let now = std::time::SystemTime::now().duration_since(std::time::UNIX_EPOCH).unwrap();
        assert!(now.as_secs().abs_diff(before.last_handshake) < 180, "{before:?}");

        // A signature later, both counters have grown.
        sign_eventually(&d.key, base, 3, Duration::from_secs(30));
        wait_for("counters that grow after a signature", Duration::from_secs(20), || {
            let s = status().expect("Status through the tunnel");
            s.tunnel.len() == 1
                && s.tunnel[0].rx_bytes > before.rx_bytes
                && s.tunnel[0].tx_bytes > before.tx_bytes
                && s.tunnel[0].error.is_empty()
        });

        let mut reader = iface.stats_reader(false).expect("a per-read statistics reader");
        for _ in 0..2 {
            let peers = reader.read().expect("boringtun's statistics on a fresh connection");
            assert_eq!(peers.len(), 1);
            let age = peers[0].last_handshake.and_then(|t| t.elapsed().ok());
            assert!(age.is_some_and(|a| a < Duration::from_secs(180)), "{:?}", peers[0]);
            assert!(peers[0].rx_bytes > 0 && peers[0].tx_bytes > 0, "{:?}", peers[0]);
        }
        // boringtun cannot update a live peer: apply removes and re-adds it, and the device
        // keeps answering and carrying traffic.
        let (again, changes) = Interface::apply(&client).expect("re-applying on boringtun");
        assert_eq!(again.implementation(), "boringtun");
        assert!(!changes.private_key_changed, "{changes:?}");
        assert_eq!(changes.kept, [d.signer_wg]);
        sign_eventually(&d.key, base, 4, Duration::from_secs(30));
        let (_, changes) = Interface::apply(&client).expect("and again");
        assert_eq!(changes.kept, [d.signer_wg]);
        assert_eq!(reader.read().expect("boringtun still answers").len(), 1);
    });

    // The metrics file, written by the sandboxed signer: statistics up, the handshake age and
    // traffic both ways for the peer.
    wait_for("WireGuard metrics with traffic", Duration::from_secs(20), || {
        let m = d.metrics();
        m.contains(&format!("rempart_wireguard_stats_up{{interface=\"{}\"}} 1", net.signer_if))
            && metric(&m, &format!("rempart_wireguard_peer_handshake_age_seconds{labels}"))
                .is_some_and(|age| age < 180)
            && metric(&m, &format!("rempart_wireguard_peer_receive_bytes_total{labels}"))
                .is_some_and(|b| b > 0)
            && metric(&m, &format!("rempart_wireguard_peer_transmit_bytes_total{labels}"))
                .is_some_and(|b| b > 0)
    });

    // Key rotation on boringtun (every peer removed, the configured ones added again) while
    // the sandboxed signer runs: its reader child reports the new key.
    rotate_client_key(&d, &net, &mut signer, &client, base, 5);

    // The reader child dies: Status and the metrics say so and why, the log too; the signer
    // keeps signing through the tunnel.
    for pid in readers {
        let pid = rustix::process::Pid::from_raw(pid).unwrap();
        rustix::process::kill_process(pid, rustix::process::Signal::KILL).unwrap();
    }
    net.inside(&net.client_ns.clone(), || {
        wait_for("the reader's death in Status", Duration::from_secs(20), || {
            let s = status().expect("Status through the tunnel");
            s.tunnel.len() == 1
                && s.tunnel[0].error.contains("statistics reader process")
                && s.tunnel[0].error.contains("restart the signer")
                && s.tunnel[0].rx_bytes > 0
        });
        sign_eventually(&d.key, base, 7, Duration::from_secs(30));
    });
    wait_for("stats down in the metrics", Duration::from_secs(20), || {
        d.metrics()
            .contains(&format!("rempart_wireguard_stats_up{{interface=\"{}\"}} 0", net.signer_if))
    });
    let log = d.log_text();
    assert!(log.contains("cannot read WireGuard statistics") && log.contains("is gone"), "{log}");
    assert!(signer.child.try_wait().unwrap().is_none(), "the signer still runs");
}

/// A signer on boringtun whose reader child cannot confine itself (its seccomp policy is not
/// beside the signer's) still starts and signs through the tunnel; its Status, metrics and log
/// say why it has no counters.
#[test]
fn a_signer_on_boringtun_without_the_reader_policy_signs_and_says_why() {
    let name = "a_signer_on_boringtun_without_the_reader_policy_signs_and_says_why";
    if !namespaces_or_skip(name) || !boringtun_or_skip(name) {
        return;
    }
    let net = Net::new();
    let tcp = format!("tcp = \"{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}\"");
    let d = deployment(&net.signer_if, &tcp, "boringtun");
    let shipped =
        Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/seccomp/signer.x86_64.json");
    let lone = d.dir.path().join("seccomp");
    std::fs::create_dir(&lone).unwrap();
    std::fs::copy(&shipped, lone.join("signer.x86_64.json")).unwrap();
    let text = std::fs::read_to_string(&d.policy).unwrap();
    let moved = text.replace(
        &shipped.display().to_string(),
        &lone.join("signer.x86_64.json").display().to_string(),
    );
    assert_ne!(moved, text);
    std::fs::write(&d.policy, moved).unwrap();
    // `check` warns, naming the missing file, and passes: the signer runs without it.
    let (ok, stderr) = check(&d.policy);
    let reader = lone.join("wg-stats-reader.x86_64.json");
    assert!(ok && stderr.contains("warning") && stderr.contains(&reader.display().to_string()));
    let _signer = d.spawn(&net);
    let base = now_slot();
    let mut client = d.client_config(&net);
    client.userspace = UserspaceChoice::Boringtun;
    net.inside(&net.client_ns.clone(), || {
        Interface::up(&client).expect("the client's boringtun tunnel comes up");
        sign_eventually(&d.key, base, 2, Duration::from_secs(30));
        let s = status().expect("Status through the tunnel");
        assert_eq!(s.tunnel.len(), 1);
        let e = &s.tunnel[0].error;
        assert!(e.contains("did not start") && e.contains("wg-stats-reader.x86_64.json"), "{e}");
    });
    wait_for("stats down in the metrics", Duration::from_secs(20), || {
        d.metrics()
            .contains(&format!("rempart_wireguard_stats_up{{interface=\"{}\"}} 0", net.signer_if))
    });
    assert!(d.log_text().contains("runs without tunnel statistics"), "{}", d.log_text());
}

fn check(policy: &Path) -> (bool, String) {
    let out = Command::new(BIN).arg("check").arg(policy).output().unwrap();
    (
        out.status.success() && out.status.code() == Some(0),
        String::from_utf8_lossy(&out.stderr).into(),
    )
}

/// Needs no root: `check` reads the policy only.
#[test]
fn check_refuses_a_private_listener_off_the_tunnel_address() {
    for (tcp, needle) in [
        ("0.0.0.0", "is a wildcard"),
        ("[::]", "is a wildcard"),
        (SIGNER_VETH, "is not the WireGuard tunnel address 10.98.0.1"),
    ] {
        let d = deployment_without_keys(&format!("tcp = \"{tcp}:{SIGNER_TCP_PORT}\""));
        let (ok, stderr) = check(&d.1);
        assert!(!ok && stderr.contains(needle), "{tcp}: {stderr}");
        assert!(stderr.contains("signer.toml:"), "the error names the file and line: {stderr}");
    }
    let d = deployment_without_keys(&format!("tcp = \"{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}\""));
    let (ok, stderr) = check(&d.1);
    assert!(ok, "{stderr}");
}

/// Needs no root: a sandboxed signer with `[wireguard]` whose statistics reader's seccomp
/// policy is not beside its own passes `check` with a warning naming that file and what is
/// lost; installed, no warning.
#[test]
fn check_warns_when_the_reader_policy_is_not_beside_the_signers() {
    let (dir, policy) =
        deployment_without_keys(&format!("tcp = \"{SIGNER_TUNNEL}:{SIGNER_TCP_PORT}\""));
    let installed = dir.path().join("seccomp");
    std::fs::create_dir(&installed).unwrap();
    let shipped = Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/seccomp");
    std::fs::copy(shipped.join("signer.x86_64.json"), installed.join("signer.x86_64.json"))
        .unwrap();
    let (ok, stderr) = check(&policy);
    let reader = installed.join("wg-stats-reader.x86_64.json");
    assert!(ok, "a warning, not a refusal: {stderr}");
    assert!(
        stderr.contains("warning") && stderr.contains(&reader.display().to_string()),
        "{stderr}"
    );
    assert!(stderr.contains("per-peer") && stderr.contains("boringtun"), "{stderr}");
    std::fs::copy(shipped.join("wg-stats-reader.x86_64.json"), &reader).unwrap();
    let (ok, stderr) = check(&policy);
    assert!(ok && !stderr.contains("warning"), "{stderr}");
}

/// The policy of [`deployment`] without generating anything but the file (for `check`).
fn deployment_without_keys(listen_tcp: &str) -> (tempfile::TempDir, PathBuf) {
    let tmp = tempfile::tempdir().unwrap();
    let dir = tmp.path();
    let peer = WgKey([9; 32]);
    let text = format!(
        "[chain]\nid = \"{}\"\nmax_clock_skew_ms = 1000\n[[producers]]\naccount = \"eosio\"\n\
         key = \"{DEV_PUB}\"\n[backend]\nkind = \"pkcs11\"\n[backend.pkcs11]\nmodule = \"/m.so\"\n\
         token_label = \"t\"\npin_env = \"PIN\"\nkeys = [{{ label = \"k\" }}]\n[listen]\n\
         {listen_tcp}\n[state]\ndir = \"state\"\naudit_log = \"state/audit.jsonl\"\n\
         [wireguard]\ninterface = \"{}\"\nprivate_key_file = \"wg.key\"\naddress = \
         \"{SIGNER_TUNNEL}/24\"\n[[wireguard.peers]]\npublic_key = \"{peer}\"\naddress = \
         \"{CLIENT_TUNNEL}\"\n",
        common::CHAIN,
        "rwg-check",
    );
    let path = dir.join("signer.toml");
    std::fs::write(&path, text).unwrap();
    (tmp, path)
}

/// Needs no root: the key file is read before any interface is touched.
#[test]
fn the_signer_refuses_to_start_with_a_private_key_others_can_read() {
    let d = deployment("rwg-mode", "", "auto");
    let key = d.dir.path().join("signer-wg.key");
    std::fs::set_permissions(&key, std::fs::Permissions::from_mode(0o644)).unwrap();
    let out =
        Command::new(BIN).args(["guard", "init", "--policy"]).arg(&d.policy).output().unwrap();
    assert!(out.status.success());
    let out = Command::new(BIN).args(["run", "--policy"]).arg(&d.policy).output().unwrap();
    let stderr = String::from_utf8_lossy(&out.stderr);
    assert_eq!(out.status.code(), Some(64), "{stderr}");
    assert!(stderr.contains("chmod 600"), "{stderr}");
    assert!(!d.socket.exists(), "nothing was served");
}

/// Key files interoperate with wireguard-tools: `wg pubkey` derives the same public key.
#[test]
fn wg_pubkey_agrees_with_the_generated_key() {
    let found = std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join("wg").is_file()));
    if !found {
        assert!(
            !ci(),
            "wg (wireguard-tools) is missing and CI=true: install tests/run.sh's packages"
        );
        eprintln!("wg_pubkey_agrees_with_the_generated_key: skipped, wg is not installed");
        return;
    }
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("wg.key");
    let public = generate_key_file(&path).unwrap();
    let out = Command::new("wg")
        .arg("pubkey")
        .stdin(std::fs::File::open(&path).unwrap())
        .output()
        .unwrap();
    assert!(out.status.success(), "{}", String::from_utf8_lossy(&out.stderr));
    assert_eq!(String::from_utf8_lossy(&out.stdout).trim(), public.to_string());
}
