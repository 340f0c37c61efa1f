//! Network namespaces for the tests and benchmarks that need a real private network: named
//! namespaces joined by veth pairs, userspace WireGuard interfaces (wireguard-go, or boringtun
//! where asked) inside them, code run on a thread that lives in a namespace ([`inside`]), and
//! TCP connections from a chosen source address with a bounded connect time. Included by path
//! (`#[path = "../../tests/support/netns.rs"] mod netns;`) from the signer's and the node's
//! namespace tests and from the end-to-end suite; it depends on `std` and `rustix` only (plus
//! `wg`, `ip` and `wireguard-go` on `PATH`).
//!
//! Everything a [`Net`] creates — namespaces, veth links, the wireguard-go and boringtun-cli
//! processes behind its interfaces (found by their exact command line, killed by PID), their
//! UAPI sockets and boringtun's logs — is removed by its `Drop`, even when the test fails. Names are unique per process and per `Net`
//! (wireguard-go's UAPI sockets in /run/wireguard are shared by every namespace). This module
//! must never touch a namespace, interface or process it did not create, and never sends
//! traffic anywhere but into the namespaces it made.
#![allow(dead_code, unreachable_pub, reason = "each including test uses a different part")]

use std::net::{SocketAddr, TcpStream};
use std::os::fd::AsFd as _;
use std::path::Path;
use std::process::{Command, Stdio};
use std::sync::atomic::{AtomicU32, Ordering};
use std::time::Duration;

/// Whether `CI=true` (a missing requirement then fails the test instead of skipping it).
pub fn ci() -> bool {
    std::env::var("CI").is_ok_and(|v| v == "true")
}

fn on_path(tool: &str) -> bool {
    std::env::var_os("PATH")
        .is_some_and(|p| std::env::split_paths(&p).any(|d| d.join(tool).is_file()))
}

/// Whether this machine can run a namespace test (root, iproute2, wireguard-go, wireguard-tools,
/// /dev/net/tun). Panics under `CI=true` when it cannot; elsewhere prints why and returns false.
pub fn namespaces_or_skip(test: &str) -> bool {
    let mut missing = Vec::new();
    if !rustix::process::geteuid().is_root() {
        missing.push("root".to_string());
    }
    for tool in ["ip", "wireguard-go", "wg"] {
        if !on_path(tool) {
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
        "{test} needs {} and CI=true: run CI as root with tests/run.sh's packages (iproute2, \
         wireguard-go, wireguard-tools)",
        missing.join(", ")
    );
    eprintln!("{test}: skipped, missing {}", missing.join(", "));
    false
}

/// Runs a command to completion, panicking with its stderr when it fails; returns its stdout.
pub fn run(program: &str, args: &[&str]) -> String {
    let out = Command::new(program).args(args).output().expect("spawn");
    assert!(
        out.status.success(),
        "{program} {}: {}",
        args.join(" "),
        String::from_utf8_lossy(&out.stderr)
    );
    String::from_utf8_lossy(&out.stdout).into_owned()
}

/// The PIDs of `wireguard-go IFACE` and `boringtun-cli [FLAGS] IFACE` processes (exact command
/// line: interface names are unique to one [`Net`], so this finds only what the test started).
pub fn wireguard_go_pids(iface: &str) -> Vec<i32> {
    userspace_processes(iface).into_iter().map(|(pid, _)| pid).collect()
}

/// The userspace WireGuard processes behind `iface`: PID and "wireguard-go" or "boringtun".
pub fn userspace_processes(iface: &str) -> Vec<(i32, &'static str)> {
    let Ok(dir) = std::fs::read_dir("/proc") else { return Vec::new() };
    let mut pids = Vec::new();
    for entry in dir.flatten() {
        let Some(pid) = entry.file_name().to_str().and_then(|n| n.parse::<i32>().ok()) else {
            continue;
        };
        let Ok(cmdline) = std::fs::read(entry.path().join("cmdline")) else { continue };
        let args: Vec<&[u8]> = cmdline.split(|b| *b == 0).filter(|a| !a.is_empty()).collect();
        if args.len() == 2 && args[0].ends_with(b"wireguard-go") && args[1] == iface.as_bytes() {
            pids.push((pid, "wireguard-go"));
        } else if args.len() >= 2
            && args[0].ends_with(b"boringtun-cli")
            && args.last() == Some(&iface.as_bytes())
        {
            pids.push((pid, "boringtun"));
        }
    }
    pids
}

/// Kills (SIGKILL, by PID) the wireguard-go processes behind `iface`; returns how many.
pub fn kill_wireguard_go(iface: &str) -> usize {
    let pids = wireguard_go_pids(iface);
    for pid in &pids {
        if let Some(pid) = rustix::process::Pid::from_raw(*pid) {
            let _ = rustix::process::kill_process(pid, rustix::process::Signal::KILL);
        }
    }
    pids.len()
}

/// Runs `f` on a thread that lives in network namespace `ns`: the sockets it opens and the
/// processes it starts belong to that namespace. A panic in `f` is the caller's panic.
pub fn inside<T: Send>(ns: &str, f: impl FnOnce() -> T + Send) -> T {
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

/// Connects from `source` (when given) to `to`, failing after `within` when nothing answers.
pub fn connect(
    source: Option<&str>,
    to: SocketAddr,
    within: Duration,
) -> std::io::Result<TcpStream> {
    use rustix::net::{AddressFamily, SocketType, sockopt};
    let family = if to.is_ipv4() { AddressFamily::INET } else { AddressFamily::INET6 };
    let fd = rustix::net::socket(family, SocketType::STREAM, None)?;
    // connect(2) honours the send timeout: a SYN that nobody answers fails in time.
    sockopt::set_socket_timeout(&fd, sockopt::Timeout::Send, Some(within))?;
    if let Some(ip) = source {
        let ip: std::net::IpAddr = ip.parse().expect("a source IP address");
        rustix::net::bind(&fd, &SocketAddr::new(ip, 0))?;
    }
    rustix::net::connect(&fd, &to)?;
    Ok(TcpStream::from(fd))
}

/// One peer of a [`Net::wireguard_go`] interface.
pub struct WgPeer<'a> {
    /// Its public key (base64).
    pub public_key: &'a str,
    /// Its tunnel address (allowed IPs: this address alone).
    pub address: &'a str,
    /// Where to reach it (`ip:port`), when this side initiates.
    pub endpoint: Option<&'a str>,
}

static NEXT: AtomicU32 = AtomicU32::new(0);

/// Namespaces, veth links and WireGuard interface names made for one test; all removed on drop.
pub struct Net {
    prefix: String,
    tag: String,
    namespaces: Vec<String>,
    interfaces: Vec<String>,
    links: u32,
}

impl Net {
    /// A new, empty set. `prefix` (1 to 3 ASCII letters) starts every name, so a leftover is
    /// recognisable; the tag after it is unique per process and per `Net`.
    pub fn new(prefix: &str) -> Net {
        assert!((1..=3).contains(&prefix.len()) && prefix.bytes().all(|b| b.is_ascii_lowercase()));
        let tag = format!("{}{}", std::process::id() % 10_000, NEXT.fetch_add(1, Ordering::SeqCst));
        Net { prefix: prefix.into(), tag, namespaces: Vec::new(), interfaces: Vec::new(), links: 0 }
    }

    /// Creates a namespace for `role` (a short word) with its loopback up; returns its name.
    pub fn namespace(&mut self, role: &str) -> String {
        let ns = format!("{}-{role}-{}", self.prefix, self.tag);
        run("ip", &["netns", "add", &ns]);
        self.namespaces.push(ns.clone());
        run("ip", &["-n", &ns, "link", "set", "lo", "up"]);
        ns
    }

    /// Joins namespaces `a` and `b` by a veth pair with addresses `cidr_a` and `cidr_b` (e.g.
    /// `10.99.0.1/24`), both up. The links go with their namespaces.
    pub fn veth(&mut self, a: &str, cidr_a: &str, b: &str, cidr_b: &str) {
        let n = self.links;
        self.links += 1;
        let (va, vb) = (self.name(&format!("v{n}a")), self.name(&format!("v{n}b")));
        run("ip", &["link", "add", &va, "type", "veth", "peer", "name", &vb]);
        for (ns, dev, cidr) in [(a, &va, cidr_a), (b, &vb, cidr_b)] {
            run("ip", &["link", "set", dev, "netns", ns]);
            run("ip", &["-n", ns, "address", "add", cidr, "dev", dev]);
            run("ip", &["-n", ns, "link", "set", dev, "up"]);
        }
    }

    /// A WireGuard interface name for `role` (one or two letters), unique to this `Net`; its
    /// wireguard-go process and UAPI socket are removed on drop whoever created them (the
    /// program under test or [`Net::wireguard_go`]).
    pub fn interface(&mut self, role: &str) -> String {
        let name = self.name(role);
        self.interfaces.push(name.clone());
        name
    }

    fn name(&self, role: &str) -> String {
        let name = format!("{}{role}{}", self.prefix, self.tag);
        assert!(name.len() <= 15, "interface name {name} is longer than IFNAMSIZ - 1");
        name
    }

    /// Starts wireguard-go for `iface` (from [`Net::interface`]) inside `ns`, configures it with
    /// `wg set` (private key file, listen port, peers with their one address each and a 1 s
    /// keepalive), gives it `cidr` and brings it up. Tests of the product's own interface code
    /// use that code instead; this is for the other ends (strangers, clients of a benchmark).
    pub fn wireguard_go(
        &self,
        ns: &str,
        iface: &str,
        private_key_file: &Path,
        listen_port: u16,
        cidr: &str,
        peers: &[WgPeer<'_>],
    ) {
        self.userspace("wireguard-go", ns, iface, private_key_file, listen_port, cidr, peers);
    }

    /// [`Net::wireguard_go`] with another program: `wireguard-go` or a `boringtun-cli` (which
    /// then keeps root's privileges and logs to /var/run/wireguard/IFACE.log).
    #[allow(clippy::too_many_arguments, reason = "one call site per suite, all named")]
    pub fn userspace(
        &self,
        program: &str,
        ns: &str,
        iface: &str,
        private_key_file: &Path,
        listen_port: u16,
        cidr: &str,
        peers: &[WgPeer<'_>],
    ) {
        assert!(self.interfaces.iter().any(|i| i == iface), "{iface} is not from Net::interface");
        let log = format!("/var/run/wireguard/{iface}.log");
        let mut args = vec!["netns", "exec", ns, program];
        if program.ends_with("boringtun-cli") {
            std::fs::create_dir_all("/var/run/wireguard").expect("/var/run/wireguard");
            args.extend(["--disable-drop-privileges", "--log", &log]);
        }
        args.push(iface);
        run("ip", &args);
        self.wg_set(ns, iface, private_key_file, listen_port, peers);
        run("ip", &["-n", ns, "address", "add", cidr, "dev", iface]);
        run("ip", &["-n", ns, "link", "set", iface, "up"]);
    }

    /// `wg set` on an existing interface: replaces its private key, listen port and peers.
    pub fn wg_set(
        &self,
        ns: &str,
        iface: &str,
        private_key_file: &Path,
        listen_port: u16,
        peers: &[WgPeer<'_>],
    ) {
        let key = private_key_file.to_str().expect("a UTF-8 key path");
        let port = listen_port.to_string();
        let mut args = vec!["netns", "exec", ns, "wg", "set", iface, "private-key", key];
        args.extend(["listen-port", &port]);
        let allowed: Vec<String> = peers.iter().map(|p| host_route(p.address)).collect();
        for (p, allowed) in peers.iter().zip(&allowed) {
            args.extend([
                "peer",
                p.public_key,
                "allowed-ips",
                allowed,
                "persistent-keepalive",
                "1",
            ]);
            if let Some(e) = p.endpoint {
                args.extend(["endpoint", e]);
            }
        }
        run("ip", &args);
    }
}

fn host_route(address: &str) -> String {
    if address.contains(':') { format!("{address}/128") } else { format!("{address}/32") }
}

impl Drop for Net {
    fn drop(&mut self) {
        for iface in &self.interfaces {
            kill_wireguard_go(iface);
            for dir in ["/var/run/wireguard", "/run/wireguard"] {
                let _ = std::fs::remove_file(Path::new(dir).join(format!("{iface}.sock")));
                let _ = std::fs::remove_file(Path::new(dir).join(format!("{iface}.log")));
            }
        }
        for ns in &self.namespaces {
            let _ = Command::new("ip").args(["netns", "del", ns]).stderr(Stdio::null()).status();
        }
    }
}
