//! `policies/node.toml`: parsed strictly (unknown keys rejected, errors with line and column),
//! then validated into a [`Config`] that cannot be invalid.
//!
//! Relative paths in the file are resolved against the file's directory. The optional
//! `[wireguard]` section has the signer's shape and is validated by the signer crate's shared
//! module; the producer's `private_listen`, and an api node's when it has one, must then bind
//! the tunnel address (and loopback without a tunnel). This module never opens sockets,
//! databases or key files; it only says what the operator asked for.

use std::net::SocketAddr;
use std::ops::Range;
use std::path::{Path, PathBuf};

use rempart_core::Name;
use rempart_signer::wireguard::WireGuardConfig;
use rempart_signer::wireguard::config::{self as wg_config, WireGuardSection};
use serde::Deserialize;
use toml::Spanned;

/// Why the configuration was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ConfigError {
    /// The file could not be read.
    #[error("cannot read {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML for this schema (the message carries line and column).
    #[error("{path}: {message}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What toml said, with line and column.
        message: String,
    },
    /// A value parsed but is not acceptable.
    #[error("{path}: {field}: {reason}")]
    Invalid {
        /// The file.
        path: PathBuf,
        /// The offending key.
        field: &'static str,
        /// Why it is refused and what to do.
        reason: String,
    },
    /// A value is refused at a known position of the file.
    #[error("{path}:{line}:{column}: {message}")]
    At {
        /// The file.
        path: PathBuf,
        /// 1-based line of the value.
        line: usize,
        /// 1-based column of the value.
        column: usize,
        /// What is wrong and what to do.
        message: String,
    },
}

/// 1-based line and column of a byte offset in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    genesis: PathBuf,
    producer: RawProducer,
    api: RawApi,
    #[serde(default)]
    limits: Limits,
    #[serde(default)]
    wireguard: Option<Spanned<WireGuardSection>>,
}

/// Standby signers a producer may list.
pub const MAX_STANDBY_SIGNERS: usize = 4;

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProducer {
    data_dir: PathBuf,
    name: Name,
    private_listen: Spanned<SocketAddr>,
    #[serde(default)]
    signer: Option<String>,
    #[serde(default)]
    standby_signers: Vec<String>,
    #[serde(default = "default_sign_timeout_ms")]
    sign_timeout_ms: u64,
    #[serde(default)]
    metrics_file: Option<PathBuf>,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawApi {
    data_dir: PathBuf,
    http_listen: SocketAddr,
    producer: Spanned<SocketAddr>,
    #[serde(default)]
    private_listen: Option<Spanned<SocketAddr>>,
    #[serde(default)]
    metrics_file: Option<PathBuf>,
}

/// Highest accepted `limits.max_transaction_fuel`: ten times the shipped budget. It is also the
/// budget every node re-applies a received block's transactions with, so a node whose own
/// budget is lower still follows a producer whose budget is higher: the local budget decides
/// only what this node accepts into a block it builds.
pub const MAX_TRANSACTION_FUEL: u64 = 500_000_000;

fn default_sign_timeout_ms() -> u64 {
    250
}

/// Size and work limits; the defaults are the shipped policy.
#[derive(Debug, Clone, Deserialize, PartialEq, Eq)]
#[serde(deny_unknown_fields, default)]
pub struct Limits {
    /// Largest `packed_trx` accepted, after inflation (bytes).
    pub max_transaction_bytes: usize,
    /// Largest HTTP request body (bytes).
    pub max_http_body_bytes: usize,
    /// Most transactions in one block.
    pub max_block_transactions: usize,
    /// Most signatures on one transaction.
    pub max_signatures: usize,
    /// Deepest account-permission recursion when checking authority.
    pub max_authority_depth: usize,
    /// Largest ABI accepted by `setabi` (bytes).
    pub max_abi_bytes: usize,
    /// Largest code accepted by `setcode` (bytes).
    pub max_code_bytes: usize,
    /// The CPU budget of one transaction, in fuel (about one unit per WebAssembly instruction
    /// plus host work), shared by all its actions, notifications and inline actions; past it
    /// the transaction fails with `tx_cpu_usage_exceeded` and nothing is written.
    pub max_transaction_fuel: u64,
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_transaction_bytes: 512 * 1024,
            max_http_body_bytes: 1024 * 1024,
            max_block_transactions: 5_000,
            max_signatures: 32,
            max_authority_depth: 6,
            max_abi_bytes: 256 * 1024,
            max_code_bytes: 384 * 1024,
            max_transaction_fuel: 50_000_000,
        }
    }
}

/// The producer role's settings.
#[derive(Debug, Clone)]
pub struct ProducerConfig {
    /// Where the state database lives.
    pub data_dir: PathBuf,
    /// The producer account this node signs for.
    pub name: Name,
    /// Private address serving blocks and accepting forwarded transactions (WireGuard side).
    pub private_listen: SocketAddr,
    /// The `rempart-signer` that signs blocks: `unix:/path` or `IP:port`. Blocks are always
    /// signed there; the node never holds a block-signing key.
    pub signer: String,
    /// Signers asked in turn when the one in use does not answer or cannot sign (its key
    /// backend or its shared guard failed): the same key in other HSMs, sharing its guard.
    pub standby_signers: Vec<String>,
    /// How long to wait for a signature before the slot counts as missed.
    pub sign_timeout: std::time::Duration,
    /// Prometheus text file rewritten after every block, when set.
    pub metrics_file: Option<PathBuf>,
}

/// The api role's settings.
#[derive(Debug, Clone)]
pub struct ApiConfig {
    /// Where the replica's state database lives.
    pub data_dir: PathBuf,
    /// Where the chain API listens (behind the gateway).
    pub http_listen: SocketAddr,
    /// The private address of the node this one follows: the producer, or another api node's
    /// `private_listen`.
    pub producer: SocketAddr,
    /// When set, this api node serves its verified blocks on this private address and relays
    /// the transactions pushed there to the node it follows, so that further api nodes can
    /// follow it exactly as they follow a producer. `None`: no private listener.
    pub private_listen: Option<SocketAddr>,
    /// Prometheus text file rewritten after every block, when set.
    pub metrics_file: Option<PathBuf>,
}

/// A validated node configuration.
#[derive(Debug, Clone)]
pub struct Config {
    /// The genesis file.
    pub genesis: PathBuf,
    /// Producer role.
    pub producer: ProducerConfig,
    /// Api role.
    pub api: ApiConfig,
    /// Limits.
    pub limits: Limits,
    /// The private network, when `[wireguard]` is present: both roles bring the interface up
    /// before listening, and the producer's private listener accepts only its peers.
    pub wireguard: Option<WireGuardConfig>,
}

impl Config {
    /// Reads and validates a configuration file.
    pub fn load(path: &Path) -> Result<Config, ConfigError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| ConfigError::Read { path: path.to_owned(), source })?;
        let base = path.parent().unwrap_or(Path::new("."));
        Config::parse(&text, path, base)
    }

    /// Parses and validates configuration text; `base` resolves relative paths.
    pub fn parse(text: &str, path: &Path, base: &Path) -> Result<Config, ConfigError> {
        let raw: RawConfig = toml::from_str(text)
            .map_err(|e| ConfigError::Parse { path: path.to_owned(), message: e.to_string() })?;
        let invalid = |field: &'static str, reason: String| ConfigError::Invalid {
            path: path.to_owned(),
            field,
            reason,
        };
        // A relative socket path is relative to this file, like every other path.
        let endpoint = |field: &'static str, addr: &str| match addr.strip_prefix("unix:") {
            Some(p) if !p.is_empty() => Ok(format!("unix:{}", base.join(p).display())),
            _ if addr.parse::<SocketAddr>().is_ok() => Ok(addr.to_owned()),
            _ => Err(invalid(field, format!("{addr:?} is neither unix:/path/to.sock nor IP:port"))),
        };
        let signer = match &raw.producer.signer {
            Some(addr) => endpoint("producer.signer", addr)?,
            None => {
                return Err(invalid(
                    "producer.signer",
                    "missing: set the address of rempart-signer (unix:/path or IP:port)".into(),
                ));
            }
        };
        if raw.producer.standby_signers.len() > MAX_STANDBY_SIGNERS {
            return Err(invalid(
                "producer.standby_signers",
                format!("at most {MAX_STANDBY_SIGNERS} standby signers"),
            ));
        }
        let mut standby_signers = Vec::new();
        for addr in &raw.producer.standby_signers {
            let e = endpoint("producer.standby_signers", addr)?;
            if e == signer || standby_signers.contains(&e) {
                return Err(invalid(
                    "producer.standby_signers",
                    format!("{addr:?} is listed twice (producer.signer counts)"),
                ));
            }
            standby_signers.push(e);
        }
        if !(10..=450).contains(&raw.producer.sign_timeout_ms) {
            return Err(invalid(
                "producer.sign_timeout_ms",
                "must be between 10 and 450 so a block is signed inside its 500 ms slot".into(),
            ));
        }
        let l = &raw.limits;
        for (field, v) in [
            ("limits.max_transaction_bytes", l.max_transaction_bytes),
            ("limits.max_http_body_bytes", l.max_http_body_bytes),
            ("limits.max_block_transactions", l.max_block_transactions),
            ("limits.max_signatures", l.max_signatures),
            ("limits.max_authority_depth", l.max_authority_depth),
            ("limits.max_abi_bytes", l.max_abi_bytes),
            ("limits.max_code_bytes", l.max_code_bytes),
        ] {
            if v == 0 {
                return Err(invalid(field, "must be greater than zero".into()));
            }
        }
        if l.max_transaction_fuel == 0 {
            return Err(invalid(
                "limits.max_transaction_fuel",
                "must be greater than zero: every contract action burns fuel".into(),
            ));
        }
        if l.max_transaction_fuel > MAX_TRANSACTION_FUEL {
            return Err(invalid(
                "limits.max_transaction_fuel",
                format!(
                    "must be at most {MAX_TRANSACTION_FUEL} so one transaction cannot hold the \
                     chain thread past a block's 500 ms slot; the shipped value is 50000000"
                ),
            ));
        }
        if l.max_transaction_bytes > 16 * 1024 * 1024 {
            return Err(invalid("limits.max_transaction_bytes", "must be at most 16 MiB".into()));
        }
        // setcode and setabi carry the code and the ABI inside a transaction: a limit at or
        // above the transaction's could never be what refuses them.
        for (field, v) in
            [("limits.max_code_bytes", l.max_code_bytes), ("limits.max_abi_bytes", l.max_abi_bytes)]
        {
            if v >= l.max_transaction_bytes {
                return Err(invalid(
                    field,
                    format!(
                        "must be below limits.max_transaction_bytes ({}): the setcode or setabi \
                         transaction carrying that much would be refused for its size first",
                        l.max_transaction_bytes
                    ),
                ));
            }
        }
        let at = |span: Range<usize>, message: String| {
            let (line, column) = line_column(text, span.start);
            ConfigError::At { path: path.to_owned(), line, column, message }
        };
        let wireguard = match &raw.wireguard {
            None => None,
            Some(w) => Some(
                w.get_ref()
                    .validate(w.span(), &|p| resolve_key_file(p, base))
                    .map_err(|e| at(e.span, format!("[wireguard]: {}", e.message)))?,
            ),
        };
        let listen = &raw.producer.private_listen;
        wg_config::check_private_listener(
            "producer.private_listen",
            *listen.get_ref(),
            wireguard.as_ref(),
        )
        .map_err(|m| at(listen.span(), m))?;
        if let Some(listen) = &raw.api.private_listen {
            wg_config::check_private_listener(
                "api.private_listen",
                *listen.get_ref(),
                wireguard.as_ref(),
            )
            .map_err(|m| at(listen.span(), m))?;
        }
        let signers = std::iter::once(("producer.signer", &signer))
            .chain(standby_signers.iter().map(|s| ("producer.standby_signers", s)));
        for (field, signer) in signers {
            let (Some(wg), Ok(addr)) = (&wireguard, signer.parse::<SocketAddr>()) else {
                continue;
            };
            // Blocks are signed through the tunnel (or on this host), never around it.
            let ip = addr.ip();
            if !ip.is_loopback() && !wg.peer_addresses().any(|p| p == ip) {
                return Err(invalid(
                    field,
                    format!(
                        "{addr} is neither loopback nor a [wireguard] peer's tunnel address; \
                         list the signer in [[wireguard.peers]] and use its tunnel address"
                    ),
                ));
            }
        }
        if let Some(wg) = &wireguard {
            // The api node reaches its producer through the tunnel, never around it.
            let producer = raw.api.producer.get_ref().ip();
            if producer != wg.address.addr && !wg.peer_addresses().any(|p| p == producer) {
                return Err(at(
                    raw.api.producer.span(),
                    format!(
                        "api.producer {producer} is not a [wireguard] peer's tunnel address; the \
                         api node must reach its producer through the tunnel (list the \
                         producer in [[wireguard.peers]] and use its tunnel address)"
                    ),
                ));
            }
        }
        Ok(Config {
            genesis: base.join(raw.genesis),
            producer: ProducerConfig {
                data_dir: base.join(raw.producer.data_dir),
                name: raw.producer.name,
                private_listen: raw.producer.private_listen.into_inner(),
                signer,
                standby_signers,
                sign_timeout: std::time::Duration::from_millis(raw.producer.sign_timeout_ms),
                metrics_file: raw.producer.metrics_file.map(|p| base.join(p)),
            },
            api: ApiConfig {
                data_dir: base.join(raw.api.data_dir),
                http_listen: raw.api.http_listen,
                producer: raw.api.producer.into_inner(),
                private_listen: raw.api.private_listen.map(Spanned::into_inner),
                metrics_file: raw.api.metrics_file.map(|p| base.join(p)),
            },
            limits: raw.limits,
            wireguard,
        })
    }
}

/// The private-key file as an absolute path (relative to the configuration's directory).
fn resolve_key_file(p: &Spanned<PathBuf>, base: &Path) -> Result<PathBuf, wg_config::ConfigError> {
    if p.get_ref().as_os_str().is_empty() {
        return Err(wg_config::ConfigError {
            span: p.span(),
            message: "private_key_file is empty: name the file holding this node's WireGuard \
                      private key (mode 0600)"
                .into(),
        });
    }
    Ok(base.join(p.get_ref()))
}

#[cfg(test)]
mod tests;
