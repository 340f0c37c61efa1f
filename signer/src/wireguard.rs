//! The private network: a WireGuard interface shared by the signer and the node.
//!
//! A `[wireguard]` section names the interface, the private-key file (mode 0600), the listen
//! port, the tunnel address (CIDR) and the peers (public key, tunnel address, optional endpoint
//! and keepalive). [`config`] parses it for the signer's policy and the node's configuration
//! alike, and holds the rule every private listener follows; [`WireGuardConfig`] is the section
//! validated. With the `wireguard` feature, [`Interface::up`] creates or updates the interface
//! (the kernel backend when the module exists, otherwise boringtun or wireguard-go, see
//! [`UserspaceChoice`]), assigns the tunnel address and brings the link up, and [`health`] reads
//! per-peer handshake age and transfer counters into metrics and `Status`.
//!
//! Who calls what, and when: the signer calls [`Interface::up`] and [`Interface::stats_reader`]
//! (or [`Interface::sandboxed_stats_reader`]) in `Daemon::prepare`, before its sandbox closes;
//! afterwards it only reads and writes on the UAPI connection opened then, or on the pipes of
//! the confined child that reads boringtun for it ([`reader`]): no new socket in the signer, so
//! its seccomp policy does not grow. The node
//! calls the same functions at start (parsing its own `[wireguard]` with
//! [`config::WireGuardSection`], checking its listeners with [`config::check_private_listener`])
//! and may poll with `health::StatsReader::Query`.
//!
//! This module must never log or print a private key, never accept a private-key file that group
//! or others can read, and never leave a half-configured interface silently: every step fails
//! with an error that says what to fix.

use std::fmt;
use std::net::IpAddr;
use std::path::PathBuf;
use std::str::FromStr;
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;

pub mod config;
pub mod health;
#[cfg(feature = "wireguard")]
mod interface;
#[cfg(feature = "wireguard")]
mod key;
#[cfg(feature = "wireguard")]
pub mod reader;

#[cfg(feature = "wireguard")]
pub use interface::{Interface, PeerChanges, bind_to_interface};
#[cfg(feature = "wireguard")]
pub use key::{generate_key_file, read_private_key};

#[cfg(test)]
mod tests;

/// Why the WireGuard interface could not be set up, a key not read or written, or statistics
/// not read.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum WireGuardError {
    /// A key is not 32 bytes of standard base64 (what `wg genkey` and `rempart wg keygen` write).
    #[error("{what} is not a WireGuard key (44 characters of base64, as `wg genkey` writes)")]
    BadKey {
        /// Which key.
        what: String,
    },
    /// The private-key file could not be read or created.
    #[error("{path}: {action}: {source}")]
    KeyFile {
        /// The file.
        path: PathBuf,
        /// What was attempted.
        action: &'static str,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The private-key file is readable by group or others.
    #[error(
        "{path}: mode {mode:o} lets group or others read the WireGuard private key; run \
         `chmod 600 {path}` (and check who else saw it)"
    )]
    KeyFileMode {
        /// The file.
        path: PathBuf,
        /// Its permission bits.
        mode: u32,
    },
    /// `rempart wg keygen` refuses to replace an existing key.
    #[error("{path} already exists; refusing to overwrite a private key (remove it first)")]
    KeyFileExists {
        /// The file.
        path: PathBuf,
    },
    /// The interface name is not a valid Linux interface name.
    #[error("interface name {name:?} is invalid: 1 to 15 characters of [A-Za-z0-9_.-]")]
    InterfaceName {
        /// The name.
        name: String,
    },
    /// wireguard-control could not configure the interface.
    #[error(
        "cannot configure WireGuard interface {interface} ({backend} backend): {source}. {hint}"
    )]
    Configure {
        /// The interface.
        interface: String,
        /// "kernel" or "userspace".
        backend: &'static str,
        /// What failed.
        source: std::io::Error,
        /// What to check.
        hint: &'static str,
    },
    /// An `ip` command failed.
    #[error(
        "`ip {args}` failed: {message}; is iproute2 installed and the process root (or \
             CAP_NET_ADMIN)?"
    )]
    Ip {
        /// The arguments.
        args: String,
        /// Its exit status and stderr, or the spawn error.
        message: String,
    },
    /// A listener could not be tied to the tunnel interface (SO_BINDTODEVICE).
    #[error(
        "cannot bind the listener to interface {interface} (SO_BINDTODEVICE): {source}; the \
         signer needs root or CAP_NET_RAW at start"
    )]
    BindToDevice {
        /// The interface.
        interface: String,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The configured userspace WireGuard program is not on `PATH`.
    #[error(
        "no userspace WireGuard found: {wanted} is not on PATH; install it (tests/run.sh shows \
         how) or choose another with [wireguard] userspace"
    )]
    NoUserspace {
        /// What was looked for.
        wanted: &'static str,
    },
    /// The userspace WireGuard program did not start the interface.
    #[error(
        "cannot start {program} for WireGuard interface {interface}: {message}; run as root (or \
         with CAP_NET_ADMIN), check /dev/net/tun, and that no other process holds the interface"
    )]
    StartUserspace {
        /// The interface.
        interface: String,
        /// The program.
        program: PathBuf,
        /// Its exit status and stderr, or the spawn error.
        message: String,
    },
    /// The userspace statistics socket could not be opened or used.
    #[error("WireGuard statistics of {interface}: {message}")]
    Stats {
        /// The interface.
        interface: String,
        /// What failed.
        message: String,
    },
}

/// A WireGuard key (public or private): 32 bytes, written as standard base64.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct WgKey(pub [u8; 32]);

impl WgKey {
    /// Parses standard base64 (44 characters with one `=`); `what` names the key in the error.
    pub fn parse(text: &str, what: &str) -> Result<WgKey, WireGuardError> {
        let bad = || WireGuardError::BadKey { what: what.to_string() };
        let text = text.trim();
        if text.len() != 44 {
            return Err(bad());
        }
        let bytes = STANDARD.decode(text).map_err(|_| bad())?;
        let arr: [u8; 32] = bytes.try_into().map_err(|_| bad())?;
        Ok(WgKey(arr))
    }

    /// Parses lowercase hex (the UAPI form).
    pub fn from_hex(text: &str) -> Option<WgKey> {
        let bytes = hex::decode(text).ok()?;
        bytes.try_into().ok().map(WgKey)
    }
}

impl FromStr for WgKey {
    type Err = WireGuardError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        WgKey::parse(s, "the key")
    }
}

impl fmt::Display for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&STANDARD.encode(self.0))
    }
}

impl fmt::Debug for WgKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "WgKey({self})")
    }
}

/// An address with its prefix length, e.g. `10.98.0.1/24`.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct Cidr {
    /// The address.
    pub addr: IpAddr,
    /// The prefix length (0..=32 for IPv4, 0..=128 for IPv6).
    pub prefix: u8,
}

impl Cidr {
    /// Whether `ip` lies in this network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        match (self.addr, ip) {
            (IpAddr::V4(n), IpAddr::V4(a)) => {
                let mask = u32::MAX.checked_shl(32 - u32::from(self.prefix)).unwrap_or(0);
                u32::from(n) & mask == u32::from(a) & mask
            }
            (IpAddr::V6(n), IpAddr::V6(a)) => {
                let mask = u128::MAX.checked_shl(128 - u32::from(self.prefix)).unwrap_or(0);
                u128::from(n) & mask == u128::from(a) & mask
            }
            _ => false,
        }
    }
}

impl FromStr for Cidr {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (a, p) = s
            .split_once('/')
            .ok_or_else(|| format!("{s:?} has no prefix length (write e.g. 10.98.0.1/24)"))?;
        let addr: IpAddr = a.parse().map_err(|_| format!("{a:?} is not an IP address"))?;
        let max = if addr.is_ipv4() { 32 } else { 128 };
        let prefix: u8 = p
            .parse()
            .ok()
            .filter(|p| *p <= max)
            .ok_or_else(|| format!("prefix length {p:?} must be 0..={max}"))?;
        Ok(Cidr { addr, prefix })
    }
}

impl fmt::Display for Cidr {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{}/{}", self.addr, self.prefix)
    }
}

/// Which WireGuard implementation carries the interface.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum BackendChoice {
    /// An existing userspace interface (its UAPI socket answers) is kept; otherwise the kernel
    /// module, and the userspace program ([`UserspaceChoice`]) when the kernel has no WireGuard.
    #[default]
    Auto,
    /// The kernel module only.
    Kernel,
    /// A userspace implementation only, chosen by [`UserspaceChoice`].
    Userspace,
}

impl FromStr for BackendChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(BackendChoice::Auto),
            "kernel" => Ok(BackendChoice::Kernel),
            "userspace" => Ok(BackendChoice::Userspace),
            other => Err(format!(
                "unknown backend {other:?}; expected \"auto\", \"kernel\" or \"userspace\""
            )),
        }
    }
}

/// Which userspace program carries the interface when the kernel module does not (the
/// `userspace` key). Both speak the UAPI protocol on `/var/run/wireguard/IFACE.sock`, so the
/// same code configures and reads them; boringtun's differences are handled where they bite.
#[derive(Clone, Copy, PartialEq, Eq, Debug, Default)]
pub enum UserspaceChoice {
    /// `$WG_USERSPACE_IMPLEMENTATION` (else `$WG_QUICK_USERSPACE_IMPLEMENTATION`) when set, as
    /// wg-quick does; otherwise `boringtun-cli` when it is on `PATH` (it meets the tunnel
    /// latency target, wireguard-go does not), else `wireguard-go`.
    #[default]
    Auto,
    /// Cloudflare's `boringtun-cli` on `PATH`: about a fifth of wireguard-go's added latency
    /// per request here. It answers one UAPI request per connection, so the sandboxed signer
    /// reads its statistics through a confined child process ([`reader`]); and `rempart wg
    /// apply` re-adds every peer (it cannot update a live one), so kept peers handshake again.
    Boringtun,
    /// `wireguard-go` on `PATH`.
    WireguardGo,
}

impl FromStr for UserspaceChoice {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "auto" => Ok(UserspaceChoice::Auto),
            "boringtun" => Ok(UserspaceChoice::Boringtun),
            "wireguard-go" => Ok(UserspaceChoice::WireguardGo),
            other => Err(format!(
                "unknown userspace implementation {other:?}; expected \"auto\", \"boringtun\" \
                 or \"wireguard-go\""
            )),
        }
    }
}

/// One configured peer.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PeerConfig {
    /// Its public key.
    pub public_key: WgKey,
    /// Its one tunnel address (allowed IPs: this address alone, /32 or /128).
    pub address: IpAddr,
    /// Where to reach it, when this side initiates.
    pub endpoint: Option<std::net::SocketAddr>,
    /// Persistent keepalive interval, if any.
    pub keepalive: Option<Duration>,
}

/// A validated `[wireguard]` section.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct WireGuardConfig {
    /// The interface name (unique per host: wireguard-go's UAPI sockets in /run/wireguard are
    /// shared by every network namespace).
    pub interface: String,
    /// The private-key file (base64, mode 0600).
    pub private_key_file: PathBuf,
    /// The UDP listen port (0: random).
    pub listen_port: u16,
    /// This side's tunnel address and network.
    pub address: Cidr,
    /// Which implementation carries the interface.
    pub backend: BackendChoice,
    /// Which userspace program, when the interface is userspace.
    pub userspace: UserspaceChoice,
    /// The peers.
    pub peers: Vec<PeerConfig>,
    /// A peer whose last handshake is older than this is logged as stale.
    pub stale_handshake: Duration,
    /// How often statistics are read.
    pub stats_interval: Duration,
}

impl WireGuardConfig {
    /// The tunnel addresses of every peer: the only sources a private listener accepts.
    pub fn peer_addresses(&self) -> impl Iterator<Item = IpAddr> + '_ {
        self.peers.iter().map(|p| p.address)
    }
}

/// Whether `name` is a valid Linux interface name (IFNAMSIZ - 1 bytes, no `/`, space or `:`).
pub fn valid_interface_name(name: &str) -> bool {
    (1..=15).contains(&name.len())
        && name != "."
        && name != ".."
        && name.bytes().all(|b| b.is_ascii_alphanumeric() || b"_.-".contains(&b))
}
