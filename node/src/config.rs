//! `policies/node.toml`: parsed strictly (unknown keys rejected, errors with line and column),
//! then validated into a [`Config`] that cannot be invalid.
//!
//! Relative paths in the file are resolved against the file's directory. This module never
//! opens sockets or databases; it only says what the operator asked for.

use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rempart_core::Name;
use serde::Deserialize;

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
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConfig {
    genesis: PathBuf,
    producer: RawProducer,
    api: RawApi,
    #[serde(default)]
    limits: Limits,
}

#[derive(Debug, Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProducer {
    data_dir: PathBuf,
    name: Name,
    private_listen: SocketAddr,
    #[serde(default)]
    signer: Option<String>,
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
    producer: SocketAddr,
    #[serde(default)]
    metrics_file: Option<PathBuf>,
}

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
}

impl Default for Limits {
    fn default() -> Self {
        Limits {
            max_transaction_bytes: 512 * 1024,
            max_http_body_bytes: 1024 * 1024,
            max_block_transactions: 5_000,
            max_signatures: 32,
            max_authority_depth: 6,
            max_abi_bytes: 512 * 1024,
            max_code_bytes: 1024 * 1024,
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
    /// The producer's private address.
    pub producer: SocketAddr,
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
        let signer = match raw.producer.signer {
            Some(addr) if addr.strip_prefix("unix:").is_some_and(|p| !p.is_empty()) => {
                // A relative socket path is relative to this file, like every other path.
                let p = &addr["unix:".len()..];
                format!("unix:{}", base.join(p).display())
            }
            Some(addr) if addr.parse::<SocketAddr>().is_ok() => addr,
            Some(addr) => {
                return Err(invalid(
                    "producer.signer",
                    format!("{addr:?} is neither unix:/path/to.sock nor IP:port"),
                ));
            }
            None => {
                return Err(invalid(
                    "producer.signer",
                    "missing: set the address of rempart-signer (unix:/path or IP:port)".into(),
                ));
            }
        };
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
        if l.max_transaction_bytes > 16 * 1024 * 1024 {
            return Err(invalid("limits.max_transaction_bytes", "must be at most 16 MiB".into()));
        }
        Ok(Config {
            genesis: base.join(raw.genesis),
            producer: ProducerConfig {
                data_dir: base.join(raw.producer.data_dir),
                name: raw.producer.name,
                private_listen: raw.producer.private_listen,
                signer,
                sign_timeout: std::time::Duration::from_millis(raw.producer.sign_timeout_ms),
                metrics_file: raw.producer.metrics_file.map(|p| base.join(p)),
            },
            api: ApiConfig {
                data_dir: base.join(raw.api.data_dir),
                http_listen: raw.api.http_listen,
                producer: raw.api.producer,
                metrics_file: raw.api.metrics_file.map(|p| base.join(p)),
            },
            limits: raw.limits,
        })
    }
}

#[cfg(test)]
mod tests;
