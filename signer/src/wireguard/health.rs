//! Tunnel health: per peer, the last handshake, its age and the bytes received and sent, read
//! periodically from the interface, kept in a [`TunnelHealth`] that metrics render, with a log
//! line when a peer's handshake goes stale and when it recovers.
//!
//! The sandboxed signer reads through [`StatsReader::Uapi`]: one connection to the UAPI socket of
//! the userspace implementation (boringtun or wireguard-go), opened before the sandbox and kept;
//! each read is a `write` of `get=1` and `read`s of the answer, calls the seccomp policy already
//! allows. Should that connection break (the userspace process went away), the reader reports it
//! and the metrics say the statistics are down; the signer cannot reconnect and the operator
//! restarts it after restoring the interface. boringtun answers one request per connection, so
//! on boringtun the sandboxed signer reads through [`StatsReader::Child`]: a confined child
//! process, started before the sandbox, that may open Unix sockets and nothing else (see
//! `reader.rs`). A kernel interface under the sandbox has no reader
//! ([`StatsReader::Unavailable`]). Parsing never trusts the peer process: answers are bounded in
//! size and malformed lines are errors. Nothing here reads or keeps a private key (the UAPI
//! answer's `private_key` line is skipped; boringtun sends `own_public_key` instead).

use std::collections::BTreeMap;
use std::fmt::Write as _;
use std::io::{BufRead as _, BufReader, Read as _, Write as _};
use std::net::IpAddr;
use std::os::unix::net::UnixStream;
use std::sync::{Arc, Mutex};
use std::time::{Duration, SystemTime, UNIX_EPOCH};

use super::{WgKey, WireGuardError};

/// The largest UAPI answer accepted (bytes); a device with hundreds of peers stays far below.
pub(super) const MAX_ANSWER: u64 = 1 << 20;

/// One peer's counters as the interface reports them.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PeerStats {
    /// The peer's public key.
    pub public_key: WgKey,
    /// The endpoint it was last seen at.
    pub endpoint: Option<String>,
    /// When the last handshake completed; `None` if never.
    pub last_handshake: Option<SystemTime>,
    /// Bytes received from it.
    pub rx_bytes: u64,
    /// Bytes sent to it.
    pub tx_bytes: u64,
    /// The addresses of its allowed IPs (prefix lengths dropped): a configured peer is found by
    /// its tunnel address here, so a key rotated on the live interface is reported as it is.
    pub allowed_ips: Vec<IpAddr>,
}

/// The peer a per-peer line belongs to: the last `public_key` seen.
fn current<'a>(
    peers: &'a mut [PeerStats],
    key: &str,
    n: usize,
) -> Result<&'a mut PeerStats, String> {
    peers.last_mut().ok_or_else(|| format!("line {}: {key} before any public_key", n + 1))
}

/// Parses the answer to a UAPI `get=1` request (without its final empty line), read at `now`.
///
/// wireguard-go (like the kernel) reports `last_handshake_time_sec` as UNIX time, 0 for never;
/// boringtun reports the time elapsed since the handshake and leaves the line out for never
/// (cloudflare/boringtun issue 447). boringtun's answer is recognised by its `own_public_key`
/// line (wireguard-go sends `private_key` instead), and its age is turned into a time before
/// `now`.
pub fn parse_uapi(answer: &str, now: SystemTime) -> Result<Vec<PeerStats>, String> {
    let mut peers: Vec<PeerStats> = Vec::new();
    let mut secs: Option<u64> = None;
    let mut nanos: u32 = 0;
    let mut errno = None;
    let elapsed = answer.lines().any(|l| l.starts_with("own_public_key="));
    let finish = |peers: &mut Vec<PeerStats>, secs: &mut Option<u64>, nanos: &mut u32| {
        if let (Some(p), Some(s)) = (peers.last_mut(), secs.take()) {
            let at = Duration::new(s, (*nanos).min(999_999_999));
            p.last_handshake = match elapsed {
                true => now.checked_sub(at),
                false if s > 0 => Some(UNIX_EPOCH + at),
                false => None,
            };
        }
        *nanos = 0;
    };
    for (n, line) in answer.lines().enumerate() {
        if line.is_empty() {
            break;
        }
        let (key, value) =
            line.split_once('=').ok_or_else(|| format!("line {}: no '=' in {line:?}", n + 1))?;
        let bad = || format!("line {}: bad {key} value {value:?}", n + 1);
        match key {
            "public_key" => {
                finish(&mut peers, &mut secs, &mut nanos);
                let public_key = WgKey::from_hex(value).ok_or_else(bad)?;
                peers.push(PeerStats {
                    public_key,
                    endpoint: None,
                    last_handshake: None,
                    rx_bytes: 0,
                    tx_bytes: 0,
                    allowed_ips: Vec::new(),
                });
            }
            "endpoint" => current(&mut peers, key, n)?.endpoint = Some(value.to_string()),
            "rx_bytes" => {
                current(&mut peers, key, n)?.rx_bytes = value.parse().map_err(|_| bad())?
            }
            "tx_bytes" => {
                current(&mut peers, key, n)?.tx_bytes = value.parse().map_err(|_| bad())?
            }
            "last_handshake_time_sec" => {
                current(&mut peers, key, n)?;
                secs = Some(value.parse().map_err(|_| bad())?);
            }
            "last_handshake_time_nsec" => {
                current(&mut peers, key, n)?;
                nanos = value.parse().map_err(|_| bad())?;
            }
            "allowed_ip" => {
                let cidr: super::Cidr = value.parse().map_err(|_| bad())?;
                current(&mut peers, key, n)?.allowed_ips.push(cidr.addr);
            }
            "errno" => errno = Some(value.parse::<i32>().map_err(|_| bad())?),
            // Device and peer settings this module does not report (and the private key,
            // which it never keeps).
            _ => {}
        }
    }
    finish(&mut peers, &mut secs, &mut nanos);
    match errno {
        Some(0) => Ok(peers),
        Some(e) => Err(format!("the interface answered errno={e}")),
        None => Err("the answer has no errno line (truncated?)".into()),
    }
}

/// Where statistics come from.
#[derive(Debug)]
#[non_exhaustive]
pub enum StatsReader {
    /// A UAPI connection to the userspace implementation, opened once and kept (the sandboxed
    /// signer).
    Uapi {
        /// The interface.
        interface: String,
        /// The connection.
        stream: UnixStream,
    },
    /// A confined child process that opens a UAPI connection per read (the sandboxed signer
    /// on boringtun, which answers one request per connection): see [`super::reader`].
    #[cfg(feature = "wireguard")]
    Child {
        /// The interface.
        interface: String,
        /// The child.
        child: super::reader::StatsChild,
    },
    /// A fresh query per read through wireguard-control (processes that may open sockets).
    #[cfg(feature = "wireguard")]
    Query {
        /// The interface.
        interface: String,
        /// Its backend.
        backend: wireguard_control::Backend,
    },
    /// No statistics in this process, and why.
    Unavailable {
        /// The interface.
        interface: String,
        /// Why (logged once).
        reason: String,
    },
}

impl StatsReader {
    /// The interface read.
    pub fn interface(&self) -> &str {
        match self {
            StatsReader::Uapi { interface, .. } | StatsReader::Unavailable { interface, .. } => {
                interface
            }
            #[cfg(feature = "wireguard")]
            StatsReader::Query { interface, .. } | StatsReader::Child { interface, .. } => {
                interface
            }
        }
    }

    /// Reads every peer's counters. Blocking (bounded by the socket timeouts).
    pub fn read(&mut self) -> Result<Vec<PeerStats>, WireGuardError> {
        let interface = self.interface().to_string();
        let err = |message: String| WireGuardError::Stats { interface: interface.clone(), message };
        match self {
            StatsReader::Uapi { stream, .. } => uapi_get(stream).map_err(err),
            #[cfg(feature = "wireguard")]
            StatsReader::Child { child, .. } => {
                child.answer().and_then(|a| parse_uapi(&a, SystemTime::now())).map_err(err)
            }
            // Our own UAPI query rather than wireguard-control's: its parser prints a line on
            // stdout for every key it does not know, and boringtun answers `own_public_key`.
            #[cfg(feature = "wireguard")]
            StatsReader::Query { interface, backend: wireguard_control::Backend::Userspace } => {
                uapi_get(&super::interface::connect_uapi(interface).map_err(err)?).map_err(err)
            }
            #[cfg(feature = "wireguard")]
            StatsReader::Query { interface, backend } => {
                let name: wireguard_control::InterfaceName =
                    interface.parse().map_err(|e| err(format!("{e}")))?;
                let device = wireguard_control::Device::get(&name, *backend)
                    .map_err(|e| err(format!("cannot query the interface: {e}")))?;
                Ok(device
                    .peers
                    .into_iter()
                    .map(|p| PeerStats {
                        public_key: WgKey(p.config.public_key.0),
                        endpoint: p.config.endpoint.map(|e| e.to_string()),
                        last_handshake: p.stats.last_handshake_time,
                        rx_bytes: p.stats.rx_bytes,
                        tx_bytes: p.stats.tx_bytes,
                        allowed_ips: p.config.allowed_ips.iter().map(|a| a.address).collect(),
                    })
                    .collect())
            }
            StatsReader::Unavailable { reason, .. } => Err(err(reason.clone())),
        }
    }
}

/// One `get=1` exchange on a UAPI connection: the answer up to its blank line, parsed.
fn uapi_get(stream: &UnixStream) -> Result<Vec<PeerStats>, String> {
    parse_uapi(&uapi_answer(stream)?, SystemTime::now())
}

/// One `get=1` exchange on a UAPI connection: the answer up to its blank line (at most
/// `MAX_ANSWER` bytes).
pub(super) fn uapi_answer(stream: &UnixStream) -> Result<String, String> {
    let mut writer = stream;
    writer.write_all(b"get=1\n\n").map_err(|e| format!("UAPI write: {e}"))?;
    let mut reader = BufReader::new(stream.take(MAX_ANSWER));
    let mut answer = String::new();
    loop {
        let before = answer.len();
        let n = reader.read_line(&mut answer).map_err(|e| format!("UAPI read: {e}"))?;
        if n == 0 {
            return Err("the userspace WireGuard closed the UAPI connection".into());
        }
        if &answer[before..] == "\n" {
            return Ok(answer);
        }
    }
}

/// One configured peer's health.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct PeerHealth {
    /// Its tunnel address (from the configuration).
    pub address: IpAddr,
    /// Its public key: the one the interface routes the address to (a key rotated on the live
    /// interface shows here), the configured one until the interface reports it.
    pub public_key: WgKey,
    /// Its counters, if the interface reported this peer.
    pub stats: Option<PeerStats>,
    /// Whether its handshake is stale (older than the threshold, or none).
    pub stale: bool,
}

/// The interface's health at the last read.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Snapshot {
    /// The interface.
    pub interface: String,
    /// When the statistics were read.
    pub read_at: SystemTime,
    /// Why the last read failed, if it did (the peers keep the last good counters).
    pub error: Option<String>,
    /// Every configured peer.
    pub peers: Vec<PeerHealth>,
}

/// The latest [`Snapshot`], shared between the monitor and whoever renders it.
#[derive(Debug, Default)]
pub struct TunnelHealth {
    latest: Mutex<Option<Snapshot>>,
}

fn escape(v: &str) -> String {
    v.replace('\\', "\\\\").replace('"', "\\\"").replace('\n', "\\n")
}

impl TunnelHealth {
    /// The last snapshot, if any read happened.
    pub fn snapshot(&self) -> Option<Snapshot> {
        self.latest.lock().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// Every configured peer's health in the protocol's `Status` form (empty without a tunnel).
    pub fn status(&self) -> Vec<rempart_core::protocol::TunnelPeer> {
        let Some(s) = self.snapshot() else { return Vec::new() };
        s.peers
            .iter()
            .map(|p| {
                let st = p.stats.as_ref();
                rempart_core::protocol::TunnelPeer {
                    address: p.address.to_string(),
                    public_key: p.public_key.to_string(),
                    last_handshake: st
                        .and_then(|s| s.last_handshake)
                        .and_then(|t| t.duration_since(UNIX_EPOCH).ok())
                        .map_or(0, |d| d.as_secs()),
                    rx_bytes: st.map_or(0, |s| s.rx_bytes),
                    tx_bytes: st.map_or(0, |s| s.tx_bytes),
                    stale: p.stale,
                    error: s.error.clone().unwrap_or_default(),
                }
            })
            .collect()
    }

    /// Replaces the snapshot.
    pub fn store(&self, s: Snapshot) {
        *self.latest.lock().unwrap_or_else(|e| e.into_inner()) = Some(s);
    }

    /// Appends the Prometheus exposition (nothing when WireGuard is not configured).
    pub fn render(&self, out: &mut String) {
        let Some(s) = self.snapshot() else { return };
        let now = SystemTime::now();
        let iface = escape(&s.interface);
        let _ = writeln!(
            out,
            "# HELP rempart_wireguard_stats_up Whether the last read of the interface's \
             statistics succeeded.\n# TYPE rempart_wireguard_stats_up gauge\n\
             rempart_wireguard_stats_up{{interface=\"{iface}\"}} {}",
            u8::from(s.error.is_none())
        );
        let mut families: [(&str, &str, &str, String); 5] = [
            (
                "rempart_wireguard_peer_last_handshake_seconds",
                "gauge",
                "Unix time of the peer's last handshake (0: never).",
                String::new(),
            ),
            (
                "rempart_wireguard_peer_handshake_age_seconds",
                "gauge",
                "Seconds since the peer's last handshake (absent: never).",
                String::new(),
            ),
            (
                "rempart_wireguard_peer_stale",
                "gauge",
                "1 when the peer's handshake is older than the stale threshold or never happened.",
                String::new(),
            ),
            (
                "rempart_wireguard_peer_receive_bytes_total",
                "counter",
                "Bytes received from the peer.",
                String::new(),
            ),
            (
                "rempart_wireguard_peer_transmit_bytes_total",
                "counter",
                "Bytes sent to the peer.",
                String::new(),
            ),
        ];
        for p in &s.peers {
            let labels = format!(
                "interface=\"{iface}\",peer=\"{}\",public_key=\"{}\"",
                p.address, p.public_key
            );
            let st = p.stats.as_ref();
            let hs = st.and_then(|s| s.last_handshake);
            let ts = hs.and_then(|t| t.duration_since(UNIX_EPOCH).ok()).map_or(0, |d| d.as_secs());
            let _ = writeln!(families[0].3, "{}{{{labels}}} {ts}", families[0].0);
            if let Some(age) = hs.map(|t| now.duration_since(t).unwrap_or_default()) {
                let _ = writeln!(families[1].3, "{}{{{labels}}} {}", families[1].0, age.as_secs());
            }
            let _ = writeln!(families[2].3, "{}{{{labels}}} {}", families[2].0, u8::from(p.stale));
            let rx = st.map_or(0, |s| s.rx_bytes);
            let tx = st.map_or(0, |s| s.tx_bytes);
            let _ = writeln!(families[3].3, "{}{{{labels}}} {rx}", families[3].0);
            let _ = writeln!(families[4].3, "{}{{{labels}}} {tx}", families[4].0);
        }
        for (name, kind, help, body) in &mut families {
            let _ = writeln!(out, "# HELP {name} {help}\n# TYPE {name} {kind}");
            out.push_str(body);
        }
    }
}

/// What the monitor compares the statistics against.
#[derive(Clone, Debug)]
pub struct Expected {
    /// The configured peers: public key → tunnel address.
    pub peers: BTreeMap<WgKey, IpAddr>,
    /// A handshake older than this is stale.
    pub stale_after: Duration,
    /// When the tunnel came up: a peer that never handshook is stale only once `stale_after`
    /// has passed since then (a fresh start is not an alarm).
    pub since: SystemTime,
}

impl Expected {
    /// The peers and threshold of `config`, counting from now.
    pub fn from_config(config: &super::WireGuardConfig) -> Expected {
        Expected {
            peers: config.peers.iter().map(|p| (p.public_key, p.address)).collect(),
            stale_after: config.stale_handshake,
            since: SystemTime::now(),
        }
    }
}

/// Folds one read into a snapshot, logging peers whose staleness changed since `previous`.
pub fn update(
    interface: &str,
    expected: &Expected,
    read: Result<Vec<PeerStats>, WireGuardError>,
    previous: Option<&Snapshot>,
    now: SystemTime,
) -> Snapshot {
    let (stats, error) = match read {
        Ok(s) => (Some(s), None),
        Err(e) => (None, Some(e.to_string())),
    };
    let mut peers = Vec::new();
    for (configured, address) in &expected.peers {
        let old = previous.and_then(|p| p.peers.iter().find(|h| h.address == *address));
        // The peer is the one the interface routes its tunnel address to (after a key rotation
        // with `rempart wg apply` that is the new key, which this process never configured),
        // else the configured key.
        let st = match &stats {
            Some(all) => all
                .iter()
                .find(|s| s.allowed_ips.contains(address))
                .or_else(|| all.iter().find(|s| s.public_key == *configured))
                .cloned(),
            None => old.and_then(|o| o.stats.clone()),
        };
        let key = &st.as_ref().map_or(*configured, |s| s.public_key);
        let was = old.map_or(*configured, |o| o.public_key);
        if *key != was {
            tracing::info!(
                interface,
                peer = %address,
                public_key = %key,
                previous_key = %was,
                "the WireGuard peer at this tunnel address has a new public key on the interface"
            );
        }
        let age = |t: SystemTime| now.duration_since(t).unwrap_or_default();
        let stale = match st.as_ref().and_then(|s| s.last_handshake) {
            Some(t) => age(t) > expected.stale_after,
            None => age(expected.since) > expected.stale_after,
        };
        let was_stale = old.is_some_and(|o| o.stale);
        if stale && !was_stale {
            tracing::warn!(
                interface,
                peer = %address,
                public_key = %key,
                last_handshake_secs_ago = ?st.as_ref().and_then(|s| s.last_handshake)
                    .map(|t| now.duration_since(t).unwrap_or_default().as_secs()),
                "WireGuard handshake with the peer is stale (older than {}s or none): check the \
                 peer, its endpoint and the path between the hosts",
                expected.stale_after.as_secs()
            );
        } else if !stale && was_stale {
            tracing::info!(interface, peer = %address, "WireGuard handshake with the peer is fresh again");
        }
        peers.push(PeerHealth { address: *address, public_key: *key, stats: st, stale });
    }
    if let Some(e) = &error
        && previous.is_none_or(|p| p.error.is_none())
    {
        tracing::error!(interface, "cannot read WireGuard statistics: {e}");
    }
    Snapshot { interface: interface.to_string(), read_at: now, error, peers }
}

/// Reads statistics every `interval` into `health` until the task is dropped. An unavailable
/// reader is reported once and the monitor ends.
pub async fn monitor(
    mut reader: StatsReader,
    expected: Expected,
    health: Arc<TunnelHealth>,
    interval: Duration,
) {
    let interface = reader.interface().to_string();
    if let StatsReader::Unavailable { reason, .. } = &reader {
        tracing::warn!(interface, "no live WireGuard statistics in this process: {reason}");
        let peers = expected
            .peers
            .iter()
            .map(|(k, a)| PeerHealth { address: *a, public_key: *k, stats: None, stale: false })
            .collect();
        health.store(Snapshot {
            interface,
            read_at: SystemTime::now(),
            error: Some(reason.clone()),
            peers,
        });
        return;
    }
    let mut tick = tokio::time::interval(interval);
    tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
    loop {
        tick.tick().await;
        let joined = tokio::task::spawn_blocking(move || {
            let r = reader.read();
            (reader, r)
        })
        .await;
        let Ok((back, read)) = joined else { return };
        reader = back;
        let previous = health.snapshot();
        health.store(update(&interface, &expected, read, previous.as_ref(), SystemTime::now()));
    }
}
