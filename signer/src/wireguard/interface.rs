//! Creating or updating the WireGuard interface: keys and peers through `wireguard-control`
//! (kernel netlink, or the userspace implementation's UAPI socket), then the tunnel address and
//! the link state through `ip`.
//!
//! Why `ip` rather than a netlink crate for the address and the link: the calls are idempotent
//! (`address replace`, `link set up`; addresses of an earlier configuration are removed), iproute2 is on every Linux host that runs
//! WireGuard (and in this project's test packages), its error messages are the ones operators
//! know, and the netlink route crates change their API at every 0.x release. It runs before the
//! signer's sandbox closes, which forbids new programs afterwards.
//!
//! The backend: an interface whose UAPI socket answers is userspace; otherwise `auto` tries the
//! kernel module and falls back to userspace. The userspace program is started here, not by
//! wireguard-control, so that the choice is explicit ([`UserspaceChoice`]: `boringtun-cli` or
//! `wireguard-go` on `PATH`, or `$WG_USERSPACE_IMPLEMENTATION` /
//! `$WG_QUICK_USERSPACE_IMPLEMENTATION`) and each program gets the flags it needs; it daemonizes,
//! answers on `/var/run/wireguard/IFACE.sock` once its parent exits, and outlives this process,
//! like a kernel interface would. This file must never leave a configured interface down without
//! an error, and never print a private key.

use std::ffi::OsString;
use std::os::fd::AsFd;
use std::os::unix::net::UnixStream;
use std::path::{Path, PathBuf};
use std::process::{Command, Stdio};
use std::time::Duration;

use wireguard_control::{Backend, DeviceUpdate, InterfaceName, Key, PeerConfigBuilder};

use super::health::StatsReader;
use super::key::read_private_key;
use super::{BackendChoice, PeerConfig, UserspaceChoice, WgKey, WireGuardConfig, WireGuardError};

/// Where wireguard-go and boringtun put their UAPI sockets (wireguard-control looks in the same
/// two places).
const UAPI_DIRS: [&str; 2] = ["/var/run/wireguard", "/run/wireguard"];

/// A configured, up WireGuard interface.
#[derive(Debug)]
pub struct Interface {
    name: String,
    backend: Backend,
    implementation: &'static str,
    public_key: WgKey,
}

/// Ties a listening socket to the tunnel interface (SO_BINDTODEVICE): the kernel then hands it
/// only connections that arrived through the tunnel, whatever address they were sent to, so a
/// packet that reaches the host by another path with a peer's source address finds no listener.
/// Call it before the sandbox closes (setsockopt is not allowed afterwards).
pub fn bind_to_interface(listener: &impl AsFd, interface: &str) -> Result<(), WireGuardError> {
    nix::sys::socket::setsockopt(
        listener,
        nix::sys::socket::sockopt::BindToDevice,
        &std::ffi::OsString::from(interface),
    )
    .map_err(|e| WireGuardError::BindToDevice {
        interface: interface.to_string(),
        source: std::io::Error::from(e),
    })
}

pub(super) fn uapi_socket(name: &str) -> Option<PathBuf> {
    UAPI_DIRS.iter().map(|d| PathBuf::from(d).join(format!("{name}.sock"))).find(|p| p.exists())
}

/// Whether a userspace interface named `name` answers on its UAPI socket.
fn userspace_running(name: &str) -> bool {
    uapi_socket(name).is_some_and(|p| UnixStream::connect(p).is_ok())
}

/// A userspace WireGuard program, resolved.
#[derive(Clone, PartialEq, Eq, Debug)]
pub(super) struct Userspace {
    /// What to execute.
    pub(super) program: PathBuf,
    /// What it is: "boringtun", "wireguard-go", or "custom" for an environment variable's program.
    pub(super) kind: &'static str,
}

/// The first `name` in the directories of `path` (a `$PATH` value).
fn find_on_path(name: &str, path: Option<&std::ffi::OsStr>) -> Option<PathBuf> {
    std::env::split_paths(path?).map(|d| d.join(name)).find(|p| p.is_file())
}

/// Resolves `choice`: `env` is `$WG_USERSPACE_IMPLEMENTATION` else
/// `$WG_QUICK_USERSPACE_IMPLEMENTATION` (honoured by `auto` only), `path` is `$PATH`.
pub(super) fn resolve_userspace(
    choice: UserspaceChoice,
    env: Option<OsString>,
    path: Option<&std::ffi::OsStr>,
) -> Result<Userspace, WireGuardError> {
    let found = |kind: &'static str, name: &str| {
        find_on_path(name, path).map(|program| Userspace { program, kind })
    };
    let missing = |wanted: &'static str| WireGuardError::NoUserspace { wanted };
    match choice {
        UserspaceChoice::Boringtun => {
            found("boringtun", "boringtun-cli").ok_or(missing("boringtun-cli"))
        }
        UserspaceChoice::WireguardGo => {
            found("wireguard-go", "wireguard-go").ok_or(missing("wireguard-go"))
        }
        UserspaceChoice::Auto => {
            if let Some(program) = env.filter(|p| !p.is_empty()) {
                let program = PathBuf::from(program);
                let name = program.file_name().and_then(|n| n.to_str()).unwrap_or("");
                let kind = match name {
                    "boringtun-cli" | "boringtun" => "boringtun",
                    "wireguard-go" => "wireguard-go",
                    _ => "custom",
                };
                return Ok(Userspace { program, kind });
            }
            // boringtun first: it meets the tunnel latency target (BENCHMARKS.md, "Signer:
            // sign-request latency over the WireGuard tunnel"), wireguard-go does not.
            found("boringtun", "boringtun-cli")
                .or_else(|| found("wireguard-go", "wireguard-go"))
                .ok_or(missing("boringtun-cli or wireguard-go"))
        }
    }
}

/// A connection to the UAPI socket of userspace interface `name`, with 2 s read and write
/// timeouts (set now: a sandboxed caller cannot call setsockopt later).
pub(super) fn connect_uapi(name: &str) -> Result<UnixStream, String> {
    connect_uapi_at(&uapi_socket(name).ok_or("the UAPI socket is missing")?)
}

/// A connection to the UAPI socket at `path`, with 2 s read and write timeouts.
pub(super) fn connect_uapi_at(path: &Path) -> Result<UnixStream, String> {
    let stream = UnixStream::connect(path)
        .map_err(|e| format!("cannot connect to {}: {e}", path.display()))?;
    stream
        .set_read_timeout(Some(Duration::from_secs(2)))
        .and_then(|()| stream.set_write_timeout(Some(Duration::from_secs(2))))
        .map_err(|e| format!("cannot set socket timeouts: {e}"))?;
    Ok(stream)
}

/// The `own_public_key` a userspace interface reports (boringtun does; wireguard-go reports its
/// private key instead), or `None`.
fn own_public_key(name: &str) -> Option<WgKey> {
    let answer = super::health::uapi_answer(&connect_uapi(name).ok()?).ok()?;
    answer.lines().find_map(|l| l.strip_prefix("own_public_key=")).and_then(WgKey::from_hex)
}

/// Starts `userspace` for interface `name` and waits for its parent to exit (both programs
/// daemonize and exit once the interface and its UAPI socket exist). boringtun gets
/// `--disable-drop-privileges` (it otherwise switches to the login user, which fails for a
/// service started as root) and a log of its own next to its socket.
fn start_userspace(name: &str, userspace: &Userspace) -> Result<(), WireGuardError> {
    let failed = |message: String| WireGuardError::StartUserspace {
        interface: name.to_string(),
        program: userspace.program.clone(),
        message,
    };
    let mut command = Command::new(&userspace.program);
    if userspace.kind == "boringtun" {
        let dir = Path::new(UAPI_DIRS[0]);
        std::fs::create_dir_all(dir)
            .map_err(|e| failed(format!("cannot create {}: {e}", dir.display())))?;
        command.arg("--disable-drop-privileges").arg("--log").arg(dir.join(format!("{name}.log")));
    }
    let out = command
        .arg(name)
        .stdin(Stdio::null())
        .stdout(Stdio::null())
        .stderr(Stdio::piped())
        .output()
        .map_err(|e| failed(e.to_string()))?;
    if !out.status.success() {
        return Err(failed(format!(
            "{}: {}",
            out.status,
            String::from_utf8_lossy(&out.stderr).trim()
        )));
    }
    if !userspace_running(name) {
        return Err(failed("it exited without a UAPI socket in /var/run/wireguard".into()));
    }
    tracing::info!(
        interface = name,
        implementation = userspace.kind,
        program = %userspace.program.display(),
        "userspace WireGuard started"
    );
    Ok(())
}

/// Starts the configured userspace program unless the interface already answers; returns what
/// carries the interface ("userspace" when it was already running: the program is not known).
fn ensure_userspace(config: &WireGuardConfig) -> Result<&'static str, WireGuardError> {
    if userspace_running(&config.interface) {
        return Ok("userspace");
    }
    let env = std::env::var_os("WG_USERSPACE_IMPLEMENTATION")
        .or_else(|| std::env::var_os("WG_QUICK_USERSPACE_IMPLEMENTATION"));
    let userspace = resolve_userspace(config.userspace, env, std::env::var_os("PATH").as_deref())?;
    start_userspace(&config.interface, &userspace)?;
    Ok(userspace.kind)
}

fn backend_name(b: Backend) -> &'static str {
    match b {
        Backend::Kernel => "kernel",
        Backend::Userspace => "userspace",
    }
}

fn hint(b: Backend) -> &'static str {
    match b {
        Backend::Kernel => {
            "The kernel needs the wireguard module (modprobe wireguard), or set backend = \
             \"userspace\" and install boringtun-cli or wireguard-go"
        }
        Backend::Userspace => {
            "Install boringtun-cli or wireguard-go (see [wireguard] userspace), run as root (or \
             with CAP_NET_ADMIN) and check that /dev/net/tun exists"
        }
    }
}

/// Runs `ip ARGS` and returns its stdout, mapping failure to a typed error with its stderr.
fn ip(args: &[&str]) -> Result<Vec<u8>, WireGuardError> {
    let joined = args.join(" ");
    let out = Command::new("ip")
        .args(args)
        .output()
        .map_err(|e| WireGuardError::Ip { args: joined.clone(), message: e.to_string() })?;
    if out.status.success() {
        return Ok(out.stdout);
    }
    Err(WireGuardError::Ip {
        args: joined,
        message: format!("{}: {}", out.status, String::from_utf8_lossy(&out.stderr).trim()),
    })
}

/// The global-scope addresses on `dev` (`ip -j address show`), as `addr/prefix` strings.
fn global_addresses(dev: &str) -> Result<Vec<String>, WireGuardError> {
    #[derive(serde::Deserialize)]
    struct Link {
        #[serde(default)]
        addr_info: Vec<AddrInfo>,
    }
    #[derive(serde::Deserialize)]
    struct AddrInfo {
        local: Option<String>,
        prefixlen: Option<u8>,
        scope: Option<String>,
    }
    let args = ["-j", "address", "show", "dev", dev];
    let out = ip(&args)?;
    let links: Vec<Link> = serde_json::from_slice(&out).map_err(|e| WireGuardError::Ip {
        args: args.join(" "),
        message: format!("unexpected output: {e}"),
    })?;
    Ok(links
        .into_iter()
        .flat_map(|l| l.addr_info)
        .filter(|a| a.scope.as_deref() == Some("global"))
        .filter_map(|a| Some(format!("{}/{}", a.local?, a.prefixlen?)))
        .collect())
}

/// One configured peer as wireguard-control sets it: its one tunnel address as allowed IPs
/// (replacing any others), endpoint and keepalive.
fn peer_builder(peer: &PeerConfig) -> PeerConfigBuilder {
    let host = if peer.address.is_ipv4() { 32 } else { 128 };
    let mut b = PeerConfigBuilder::new(&Key(peer.public_key.0))
        .replace_allowed_ips()
        .add_allowed_ip(peer.address, host);
    if let Some(e) = peer.endpoint {
        b = b.set_endpoint(e);
    }
    if let Some(k) = peer.keepalive {
        b = b.set_persistent_keepalive_interval(u16::try_from(k.as_secs()).unwrap_or(u16::MAX));
    }
    b
}

/// Gives the interface exactly the configured tunnel address and brings the link up.
fn address_and_link(config: &WireGuardConfig) -> Result<(), WireGuardError> {
    let wanted = config.address.to_string();
    // An address from an earlier configuration would keep answering: remove it first
    // (removing a primary IPv4 address also removes the secondaries of its subnet, so the
    // wanted address is put back afterwards).
    for old in global_addresses(&config.interface)? {
        if old != wanted {
            tracing::info!(
                interface = %config.interface,
                address = %old,
                "removing an old tunnel address"
            );
            ip(&["address", "del", &old, "dev", &config.interface])?;
        }
    }
    ip(&["address", "replace", &wanted, "dev", &config.interface])?;
    ip(&["link", "set", "dev", &config.interface, "up"]).map(drop)
}

/// What [`Interface::apply`] changed on a live interface.
#[derive(Clone, PartialEq, Eq, Debug, Default)]
#[non_exhaustive]
pub struct PeerChanges {
    /// Peers the interface did not have.
    pub added: Vec<WgKey>,
    /// Peers the interface had and the configuration no longer lists (their sessions end).
    pub removed: Vec<WgKey>,
    /// Peers kept (their allowed IPs, endpoint and keepalive set again; sessions untouched).
    pub kept: Vec<WgKey>,
    /// Whether the interface's own private key was replaced (every session handshakes again).
    pub private_key_changed: bool,
    /// Whether the listen port was changed.
    pub listen_port_changed: bool,
}

impl Interface {
    /// Syncs a live interface to `config` without recreating it — what an operator runs to
    /// rotate a key while the signer or node keeps running (`rempart wg apply`): peers the
    /// configuration no longer lists are removed, new ones added, kept ones updated in place;
    /// the private key and listen port are set only when they differ, so unchanged peers keep
    /// their sessions. The tunnel address and link state are then set as [`Interface::up`]
    /// does. Fails when the interface does not exist (this never creates one: a process that
    /// owns the interface creates it at start).
    pub fn apply(config: &WireGuardConfig) -> Result<(Interface, PeerChanges), WireGuardError> {
        let name = interface_name(config)?;
        let backend = match config.backend {
            BackendChoice::Kernel => Backend::Kernel,
            BackendChoice::Userspace => Backend::Userspace,
            BackendChoice::Auto => {
                if userspace_running(&config.interface) {
                    Backend::Userspace
                } else {
                    Backend::Kernel
                }
            }
        };
        let device = wireguard_control::Device::get(&name, backend).map_err(|source| {
            WireGuardError::Configure {
                interface: config.interface.clone(),
                backend: backend_name(backend),
                source,
                hint: "`rempart wg apply` updates a live interface and never creates one: start \
                       the signer or node that owns it first (it creates the interface), and \
                       run this in its network namespace as root",
            }
        })?;
        let private = read_private_key(&config.private_key_file)?;
        let public_key = private.public();
        // boringtun answers `own_public_key` instead of `private_key`, which wireguard-control
        // does not read: ask the socket directly (only boringtun answers it).
        let boringtun_public = match (&device.public_key, backend) {
            (None, Backend::Userspace) => own_public_key(&config.interface),
            _ => None,
        };
        let boringtun = boringtun_public.is_some();
        let live_public = device.public_key.as_ref().map(|k| WgKey(k.0)).or(boringtun_public);
        let mut changes = PeerChanges {
            private_key_changed: live_public != Some(public_key),
            listen_port_changed: config.listen_port != 0
                && device.listen_port != Some(config.listen_port),
            ..PeerChanges::default()
        };
        let mut update = DeviceUpdate::new();
        if changes.private_key_changed {
            update = update.set_private_key(private.to_control());
        }
        drop(private);
        if changes.listen_port_changed {
            update = update.set_listen_port(config.listen_port);
        }
        let wanted: Vec<WgKey> = config.peers.iter().map(|p| p.public_key).collect();
        let live: Vec<WgKey> = device.peers.iter().map(|p| WgKey(p.config.public_key.0)).collect();
        // Removals first: a new peer then takes over the tunnel address of the peer it replaces.
        for key in live.iter().filter(|k| !wanted.contains(k) || boringtun) {
            update = update.remove_peer_by_key(&Key(key.0));
            if !wanted.contains(key) {
                changes.removed.push(*key);
            }
        }
        // boringtun 0.7 cannot update a live peer (setting one stops the whole device from
        // answering, even SIGTERM: cloudflare/boringtun issue 40), and after a `remove` in a
        // request every later peer of that request is removed too. So on boringtun every live
        // peer is removed by one request and the configured ones added by a second: kept
        // peers handshake again (one round trip) instead of keeping their sessions.
        let mut adds = DeviceUpdate::new();
        for peer in &config.peers {
            if boringtun {
                adds = adds.add_peer(peer_builder(peer));
            } else {
                update = update.add_peer(peer_builder(peer));
            }
            if live.contains(&peer.public_key) {
                changes.kept.push(peer.public_key);
            } else {
                changes.added.push(peer.public_key);
            }
        }
        let configure = |update: DeviceUpdate| {
            update.apply(&name, backend).map_err(|source| WireGuardError::Configure {
                interface: config.interface.clone(),
                backend: backend_name(backend),
                source,
                hint: hint(backend),
            })
        };
        configure(update)?;
        if boringtun {
            configure(adds)?;
        }
        address_and_link(config)?;
        tracing::info!(
            interface = %config.interface,
            public_key = %public_key,
            added = changes.added.len(),
            removed = changes.removed.len(),
            kept = changes.kept.len(),
            private_key_changed = changes.private_key_changed,
            "WireGuard interface synced to its configuration"
        );
        let implementation = if boringtun { "boringtun" } else { backend_name(backend) };
        Ok((
            Interface { name: config.interface.clone(), backend, implementation, public_key },
            changes,
        ))
    }
}

/// The interface name of `config`, checked.
fn interface_name(config: &WireGuardConfig) -> Result<InterfaceName, WireGuardError> {
    if !super::valid_interface_name(&config.interface) {
        return Err(WireGuardError::InterfaceName { name: config.interface.clone() });
    }
    config
        .interface
        .parse()
        .map_err(|_| WireGuardError::InterfaceName { name: config.interface.clone() })
}

impl Interface {
    /// Creates or updates the interface named by `config`: private key, listen port, exactly the
    /// configured peers (others are removed), the tunnel address, link up. Idempotent: running
    /// it again on a configured interface changes nothing.
    pub fn up(config: &WireGuardConfig) -> Result<Interface, WireGuardError> {
        let name = interface_name(config)?;
        let private = read_private_key(&config.private_key_file)?;
        let public_key = private.public();
        let mut update = DeviceUpdate::new()
            .set_private_key(private.to_control())
            .set_listen_port(config.listen_port)
            .replace_peers();
        for peer in &config.peers {
            update = update.add_peer(peer_builder(peer));
        }
        let configure = |backend: Backend| {
            update.clone().apply(&name, backend).map_err(|source| WireGuardError::Configure {
                interface: config.interface.clone(),
                backend: backend_name(backend),
                source,
                hint: hint(backend),
            })
        };
        let userspace = || {
            let implementation = ensure_userspace(config)?;
            configure(Backend::Userspace)?;
            Ok::<_, WireGuardError>((Backend::Userspace, implementation))
        };
        let (backend, implementation) = match config.backend {
            BackendChoice::Kernel => {
                configure(Backend::Kernel)?;
                (Backend::Kernel, "kernel")
            }
            BackendChoice::Userspace => userspace()?,
            BackendChoice::Auto if userspace_running(&config.interface) => userspace()?,
            BackendChoice::Auto => match configure(Backend::Kernel) {
                Ok(()) => (Backend::Kernel, "kernel"),
                Err(kernel) => {
                    tracing::info!(
                        interface = %config.interface,
                        "kernel WireGuard unavailable ({kernel}); using a userspace implementation"
                    );
                    userspace()?
                }
            },
        };
        drop(private);
        address_and_link(config)?;
        tracing::info!(
            interface = %config.interface,
            backend = backend_name(backend),
            implementation,
            address = %config.address,
            public_key = %public_key,
            peers = config.peers.len(),
            "WireGuard interface up"
        );
        Ok(Interface { name: config.interface.clone(), backend, implementation, public_key })
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        &self.name
    }

    /// "kernel" or "userspace".
    pub fn backend(&self) -> &'static str {
        backend_name(self.backend)
    }

    /// What carries the interface: "kernel", "boringtun", "wireguard-go", "custom" (a program
    /// named by `$WG_USERSPACE_IMPLEMENTATION`), or "userspace" when this process found it
    /// already running and did not start it.
    pub fn implementation(&self) -> &'static str {
        self.implementation
    }

    /// This side's public key (what the peers configure).
    pub fn public_key(&self) -> WgKey {
        self.public_key
    }

    /// A statistics reader. `long_lived`: the caller will lose the right to open sockets (the
    /// signer's sandbox), so a wireguard-go interface gets one UAPI connection opened now and
    /// kept; a kernel or boringtun interface then has no reader ([`StatsReader::Unavailable`]:
    /// the kernel's statistics come from a netlink socket per query, and boringtun answers one
    /// request per UAPI connection, then closes it; [`Interface::sandboxed_stats_reader`]
    /// reads boringtun through a confined child instead). Otherwise every read queries afresh.
    pub fn stats_reader(&self, long_lived: bool) -> Result<StatsReader, WireGuardError> {
        if !long_lived {
            return Ok(StatsReader::Query { interface: self.name.clone(), backend: self.backend });
        }
        match self.backend {
            // boringtun is recognised by what it answers (`own_public_key`), also when this
            // process found it running; asking costs one connection, which boringtun closes.
            Backend::Userspace
                if self.implementation == "boringtun" || own_public_key(&self.name).is_some() =>
            {
                Ok(StatsReader::Unavailable {
                    interface: self.name.clone(),
                    reason: "boringtun answers one UAPI request per connection and the sandbox \
                             forbids opening another: this process has no reader child \
                             (Interface::sandboxed_stats_reader starts one); read the \
                             statistics with `wg show` or from the node"
                        .into(),
                })
            }
            Backend::Userspace => {
                let err = |message: String| WireGuardError::Stats {
                    interface: self.name.clone(),
                    message,
                };
                let stream = connect_uapi(&self.name).map_err(err)?;
                Ok(StatsReader::Uapi { interface: self.name.clone(), stream })
            }
            Backend::Kernel => Ok(StatsReader::Unavailable {
                interface: self.name.clone(),
                reason: "a sandboxed process cannot open the netlink socket the kernel backend \
                         needs; read the statistics with `wg show` or from the node"
                    .into(),
            }),
        }
    }

    /// The statistics reader of a process whose sandbox is about to close (the signer): on
    /// boringtun, a confined child process started now from `process`, which opens a UAPI
    /// connection per read ([`super::reader`]); otherwise [`Interface::stats_reader`]`(true)`
    /// (wireguard-go: one UAPI connection opened now and kept; kernel: none). Call it before
    /// the sandbox and from the process's main thread. A child that cannot start or confine
    /// itself (its seccomp policy missing, say) is logged as an error and leaves the process
    /// without statistics ([`StatsReader::Unavailable`], saying why in `Status` and the
    /// metrics) rather than without its service: signing does not depend on them.
    pub fn sandboxed_stats_reader(
        &self,
        process: &super::reader::ReaderProcess,
    ) -> Result<StatsReader, WireGuardError> {
        let boringtun = self.backend == Backend::Userspace
            && (self.implementation == "boringtun" || own_public_key(&self.name).is_some());
        if !boringtun {
            return self.stats_reader(true);
        }
        let started = uapi_socket(&self.name)
            .ok_or_else(|| "the UAPI socket is missing".to_string())
            .and_then(|socket| super::reader::StatsChild::spawn(process, &socket));
        match started {
            Ok(child) => {
                tracing::info!(
                    interface = %self.name,
                    pid = child.pid(),
                    "WireGuard statistics are read by a confined child process (boringtun \
                     answers one UAPI request per connection)"
                );
                Ok(StatsReader::Child { interface: self.name.clone(), child })
            }
            Err(e) => {
                let reason = format!(
                    "{e}; this signer runs without tunnel statistics until that is fixed and it \
                     is restarted (the reader's seccomp policy: {}, shipped in \
                     policies/seccomp/)",
                    process.seccomp_policy.display()
                );
                tracing::error!(interface = %self.name, "{reason}");
                Ok(StatsReader::Unavailable { interface: self.name.clone(), reason })
            }
        }
    }
}
