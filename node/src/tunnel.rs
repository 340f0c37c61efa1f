//! The node's side of the private network: the `[wireguard]` interface brought up before any
//! listener binds, its per-peer health read into the metrics, and the rule that the producer's
//! private listener serves configured peers only.
//!
//! The interface itself is managed by the signer crate's shared module
//! (`rempart_signer::wireguard`): this module only calls it at the right moment and keeps what
//! the roles need. It must never accept a connection whose source is not a configured peer's
//! tunnel address, never log a private key, and never let a failed bring-up pass silently: the
//! role refuses to start instead.

use std::net::{IpAddr, SocketAddr};
use std::sync::Arc;

use rempart_signer::wireguard::health::{self, Expected, TunnelHealth};
use rempart_signer::wireguard::{Interface, WireGuardConfig, WireGuardError, bind_to_interface};

/// Why the private network could not be set up.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TunnelError {
    /// The interface could not be created, configured or read.
    #[error(
        "the [wireguard] interface could not be set up: {0}; the node does not start without \
         its tunnel"
    )]
    Interface(#[from] WireGuardError),
    /// The bring-up task did not finish.
    #[error("the WireGuard bring-up task failed: {0}")]
    Task(String),
}

/// Which sources a private listener accepts: every one on loopback without a tunnel, only the
/// configured peers' tunnel addresses with one.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PeerFilter {
    /// No tunnel: the listener binds loopback (the configuration checked it) and serves this host.
    Loopback,
    /// A tunnel: only these source addresses.
    Peers(Vec<IpAddr>),
}

impl PeerFilter {
    /// The filter of a configuration: its peers with `[wireguard]`, loopback without.
    pub fn new(config: Option<&WireGuardConfig>) -> PeerFilter {
        match config {
            Some(wg) => PeerFilter::Peers(wg.peer_addresses().collect()),
            None => PeerFilter::Loopback,
        }
    }

    /// Whether a connection from `peer` may be served.
    pub fn allows(&self, peer: SocketAddr) -> bool {
        let ip = match peer.ip() {
            IpAddr::V6(v6) => v6.to_ipv4_mapped().map_or(IpAddr::V6(v6), IpAddr::V4),
            v4 => v4,
        };
        match self {
            PeerFilter::Loopback => ip.is_loopback(),
            PeerFilter::Peers(allowed) => allowed.contains(&ip),
        }
    }
}

/// The interface, up, and its health as last read.
#[derive(Debug)]
pub struct Tunnel {
    interface: Interface,
    config: WireGuardConfig,
    health: Arc<TunnelHealth>,
}

impl Tunnel {
    /// Creates or updates the interface (blocking: it runs `ip` and talks to the kernel or the
    /// userspace program, boringtun or wireguard-go as the signer's rule picks), off the async
    /// workers.
    pub async fn up(config: &WireGuardConfig) -> Result<Tunnel, TunnelError> {
        let cfg = config.clone();
        let interface = tokio::task::spawn_blocking(move || Interface::up(&cfg))
            .await
            .map_err(|e| TunnelError::Task(e.to_string()))??;
        tracing::info!(
            interface = interface.name(),
            backend = interface.backend(),
            implementation = interface.implementation(),
            address = %config.address,
            public_key = %interface.public_key(),
            "private network up"
        );
        Ok(Tunnel { interface, config: config.clone(), health: Arc::default() })
    }

    /// Starts reading the per-peer statistics every `stats_interval` into [`Tunnel::health`];
    /// a stale handshake is logged when it becomes stale and when it is fresh again. The task
    /// ends when the runtime does.
    pub fn monitor(&self) -> Result<tokio::task::JoinHandle<()>, TunnelError> {
        let reader = self.interface.stats_reader(false)?;
        let expected = Expected::from_config(&self.config);
        Ok(tokio::spawn(health::monitor(
            reader,
            expected,
            self.health.clone(),
            self.config.stats_interval,
        )))
    }

    /// The health shared with the metrics.
    pub fn health(&self) -> Arc<TunnelHealth> {
        self.health.clone()
    }

    /// The interface name.
    pub fn name(&self) -> &str {
        self.interface.name()
    }

    /// Ties a listener to the tunnel interface (SO_BINDTODEVICE): only packets that came
    /// through the tunnel reach it.
    pub fn bind_listener(&self, listener: &tokio::net::TcpListener) -> Result<(), TunnelError> {
        Ok(bind_to_interface(listener, self.interface.name())?)
    }

    /// Why a connection to `peer` may be failing, when the tunnel says so: the peer's
    /// handshake is stale or the statistics cannot be read. `None` when the tunnel looks fine.
    pub fn trouble(&self, peer: IpAddr) -> Option<String> {
        stale_reason(&self.health, self.name(), peer)
    }
}

/// What `rempart-node check` adds to the configuration's validation: the private-key file
/// exists, holds a key and is readable by its owner only. Returns this node's public key (what
/// the peers configure). Touches no interface.
pub fn check_key(
    config: &WireGuardConfig,
) -> Result<rempart_signer::wireguard::WgKey, TunnelError> {
    Ok(rempart_signer::wireguard::read_private_key(&config.private_key_file)?.public())
}

/// The tunnel's reason for `peer` being unreachable, from the last health snapshot.
pub fn stale_reason(health: &TunnelHealth, interface: &str, peer: IpAddr) -> Option<String> {
    let s = health.snapshot()?;
    if let Some(e) = &s.error {
        return Some(format!("WireGuard statistics of {interface} unreadable: {e}"));
    }
    let p = s.peers.iter().find(|p| p.address == peer)?;
    p.stale.then(|| {
        let age = p
            .stats
            .as_ref()
            .and_then(|st| st.last_handshake)
            .and_then(|t| s.read_at.duration_since(t).ok())
            .map_or_else(|| "never".to_string(), |d| format!("{}s ago", d.as_secs()));
        format!(
            "the WireGuard handshake with {peer} on {interface} is stale (last {age}): the tunnel \
             to it is down; check the peer, its endpoint and the path between the hosts"
        )
    })
}

#[cfg(test)]
mod tests;
