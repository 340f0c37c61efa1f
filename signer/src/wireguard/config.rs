//! The `[wireguard]` section as a file holds it, and its validation into a
//! [`WireGuardConfig`], shared by the signer's policy and the node's
//! configuration so that both read the same keys with the same rules; and the rule every
//! private listener follows ([`check_private_listener`]).
//!
//! Errors carry the byte span of the offending value, which the caller turns into a line and
//! column of its own file. This module reads no file: the private key is checked when the
//! interface comes up (`Interface::up`).

use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::PathBuf;
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use super::{BackendChoice, Cidr, PeerConfig, UserspaceChoice, WgKey, WireGuardConfig};

/// A refused value: where it is (a byte span of the file) and what to do about it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ConfigError {
    /// The byte span of the value in the file (`0..0` when the whole section is at fault and
    /// has no span).
    pub span: Range<usize>,
    /// What is wrong and how to fix it.
    pub message: String,
}

impl ConfigError {
    fn new(span: Range<usize>, message: impl Into<String>) -> ConfigError {
        ConfigError { span, message: message.into() }
    }
}

/// The `[wireguard]` table as written (unknown keys are refused). Validate it with
/// [`WireGuardSection::validate`].
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
pub struct WireGuardSection {
    interface: Spanned<String>,
    private_key_file: Spanned<PathBuf>,
    #[serde(default = "default_listen_port")]
    listen_port: Spanned<u16>,
    address: Spanned<String>,
    #[serde(default = "default_backend")]
    backend: Spanned<String>,
    #[serde(default = "default_backend")]
    userspace: Spanned<String>,
    #[serde(default = "default_stale_handshake_secs")]
    stale_handshake_secs: Spanned<u64>,
    #[serde(default = "default_stats_interval_secs")]
    stats_interval_secs: Spanned<u64>,
    #[serde(default)]
    peers: Vec<Spanned<PeerSection>>,
}

/// One `[[wireguard.peers]]` table as written.
#[derive(Deserialize, Debug)]
#[serde(deny_unknown_fields)]
struct PeerSection {
    public_key: Spanned<String>,
    address: Spanned<IpAddr>,
    endpoint: Option<Spanned<SocketAddr>>,
    persistent_keepalive_secs: Option<Spanned<u16>>,
}

fn default_listen_port() -> Spanned<u16> {
    Spanned::new(0..0, 0)
}
fn default_backend() -> Spanned<String> {
    Spanned::new(0..0, "auto".into())
}
fn default_stale_handshake_secs() -> Spanned<u64> {
    // WireGuard rekeys every 120 s while traffic flows; 180 s leaves a missed rekey visible.
    Spanned::new(0..0, 180)
}
fn default_stats_interval_secs() -> Spanned<u64> {
    Spanned::new(0..0, 10)
}

impl WireGuardSection {
    /// Validates the section. `span` is the section's own span (for errors about the whole
    /// table); `resolve` turns the private-key path into an absolute one (relative paths are
    /// the caller's business: each file resolves them against its own directory).
    pub fn validate(
        &self,
        span: Range<usize>,
        resolve: &dyn Fn(&Spanned<PathBuf>) -> Result<PathBuf, ConfigError>,
    ) -> Result<WireGuardConfig, ConfigError> {
        let interface = self.interface.get_ref().clone();
        if !super::valid_interface_name(&interface) {
            return Err(ConfigError::new(
                self.interface.span(),
                format!(
                    "interface {interface:?} is not a valid interface name (1 to 15 characters \
                     of A-Z a-z 0-9 _ . -)"
                ),
            ));
        }
        let private_key_file = resolve(&self.private_key_file)?;
        let address: Cidr =
            self.address.get_ref().parse().map_err(|e| {
                ConfigError::new(self.address.span(), format!("tunnel address: {e}"))
            })?;
        let ip = address.addr;
        if ip.is_unspecified() || ip.is_loopback() || ip.is_multicast() {
            return Err(ConfigError::new(
                self.address.span(),
                format!("tunnel address {ip} must be a unicast address of the tunnel network"),
            ));
        }
        let backend: BackendChoice = self
            .backend
            .get_ref()
            .parse()
            .map_err(|e: String| ConfigError::new(self.backend.span(), e))?;
        let userspace: UserspaceChoice = self
            .userspace
            .get_ref()
            .parse()
            .map_err(|e: String| ConfigError::new(self.userspace.span(), e))?;
        let stale = *self.stale_handshake_secs.get_ref();
        if !(10..=86_400).contains(&stale) {
            return Err(ConfigError::new(
                self.stale_handshake_secs.span(),
                "stale_handshake_secs must be 10..=86400 (WireGuard rekeys every 120 s)",
            ));
        }
        let every = *self.stats_interval_secs.get_ref();
        if !(1..=3_600).contains(&every) {
            return Err(ConfigError::new(
                self.stats_interval_secs.span(),
                "stats_interval_secs must be 1..=3600",
            ));
        }
        let mut peers: Vec<PeerConfig> = Vec::new();
        for p in &self.peers {
            let raw = p.get_ref();
            let public_key = WgKey::parse(raw.public_key.get_ref(), "the peer's public_key")
                .map_err(|e| ConfigError::new(raw.public_key.span(), e.to_string()))?;
            let peer_ip = *raw.address.get_ref();
            if !address.contains(peer_ip) || peer_ip == ip {
                return Err(ConfigError::new(
                    raw.address.span(),
                    format!(
                        "peer address {peer_ip} must be another address inside the tunnel \
                         network {address}"
                    ),
                ));
            }
            if peers.iter().any(|q| q.public_key == public_key) {
                return Err(ConfigError::new(
                    raw.public_key.span(),
                    "this public key is listed twice",
                ));
            }
            if peers.iter().any(|q| q.address == peer_ip) {
                return Err(ConfigError::new(
                    raw.address.span(),
                    format!("two peers have the tunnel address {peer_ip}; each needs its own"),
                ));
            }
            let keepalive = match &raw.persistent_keepalive_secs {
                Some(k) if *k.get_ref() == 0 => {
                    return Err(ConfigError::new(
                        k.span(),
                        "persistent_keepalive_secs = 0: omit the key to disable keepalives",
                    ));
                }
                Some(k) => Some(Duration::from_secs(u64::from(*k.get_ref()))),
                None => None,
            };
            peers.push(PeerConfig {
                public_key,
                address: peer_ip,
                endpoint: raw.endpoint.as_ref().map(|e| *e.get_ref()),
                keepalive,
            });
        }
        if peers.is_empty() {
            return Err(ConfigError::new(
                span,
                "[wireguard] has no [[wireguard.peers]]: name each peer's public key and its \
                 tunnel address",
            ));
        }
        Ok(WireGuardConfig {
            interface,
            private_key_file,
            listen_port: *self.listen_port.get_ref(),
            address,
            backend,
            userspace,
            peers,
            stale_handshake: Duration::from_secs(stale),
            stats_interval: Duration::from_secs(every),
        })
    }
}

/// The rule of every private listener (the signer's TCP listener; the producer's block-serving
/// and push-forwarding listeners): it binds the tunnel address when there is a tunnel, and a
/// loopback address otherwise — never a wildcard, never another address. `what` names the
/// listener's key in messages. Returns the message to show at the address's position.
pub fn check_private_listener(
    what: &str,
    addr: SocketAddr,
    wireguard: Option<&WireGuardConfig>,
) -> Result<(), String> {
    let ip = addr.ip();
    if ip.is_unspecified() || ip.is_multicast() {
        return Err(format!(
            "{what} address {addr} is a wildcard; bind the WireGuard tunnel address (or \
             127.0.0.1 on one host) only"
        ));
    }
    match wireguard {
        Some(wg) if ip != wg.address.addr => Err(format!(
            "{what} address {addr} is not the WireGuard tunnel address {}; a private listener \
             binds the tunnel address only (write {what} = \"{}\")",
            wg.address.addr,
            SocketAddr::new(wg.address.addr, addr.port())
        )),
        None if !ip.is_loopback() => Err(format!(
            "{what} address {addr} is neither loopback nor a WireGuard tunnel address; add a \
             [wireguard] section whose address is {ip} (the tunnel is then set up and only its \
             peers are accepted), or bind 127.0.0.1 on one host"
        )),
        _ => Ok(()),
    }
}
