//! The signing policy: `policies/signer.toml` parsed, then validated into a [`Policy`] that
//! cannot be invalid.
//!
//! Every table rejects unknown keys, every error names the file, line and column, and the
//! validation refuses what would be dangerous without saying so: a TCP listener on a wildcard
//! address, a development key backend on a chain not marked `dangerous_dev_chain`, a unix
//! socket nobody may use. Relative paths are resolved against the policy file's directory.
//! This module reads the policy file only; it never reads the PIN, never opens keys and never
//! creates files.

use std::collections::BTreeSet;
use std::net::{IpAddr, SocketAddr};
use std::ops::Range;
use std::path::{Path, PathBuf};
use std::time::Duration;

use rempart_core::key::PublicKey;
use rempart_core::{Checksum256, Name};
use serde::Deserialize;
use toml::Spanned;

use crate::sandbox::MemoryLock;
use crate::wireguard::WireGuardConfig;
use crate::wireguard::config::{ConfigError, WireGuardSection, check_private_listener};

#[cfg(test)]
mod tests;

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{path}: cannot read the signer policy: {source}")]
    Read {
        /// The policy file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected shape.
    #[error("{path}:{line}:{column}: {message}")]
    Parse {
        /// The policy file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong there.
        message: String,
    },
    /// The file parses but a value is refused.
    #[error("{path}:{line}:{column}: {message}")]
    Invalid {
        /// The policy file.
        path: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
}

/// A validated signing policy.
#[derive(Debug, Clone)]
pub struct Policy {
    /// The chain every signed block must belong to.
    pub chain_id: Checksum256,
    /// sha256 of the file's bytes: what an approved `replace-policy` admin command names.
    pub sha256: Checksum256,
    /// The chain is a development chain: the `soft` backend is allowed.
    pub dangerous_dev_chain: bool,
    /// How far a block timestamp may be from the signer's clock, either way.
    pub max_clock_skew: Duration,
    /// Producers this signer signs for, each with the one key that signs for it.
    pub producers: Vec<ProducerPolicy>,
    /// Where the keys live.
    pub backend: BackendConfig,
    /// Where requests come from.
    pub listen: ListenConfig,
    /// The directory holding the double-sign guard state.
    pub state_dir: PathBuf,
    /// The append-only audit log.
    pub audit_log: PathBuf,
    /// Size at which the audit log is sealed and a new one begun (see `crate::audit`).
    pub audit_segment_bytes: u64,
    /// Connection and time limits.
    pub limits: Limits,
    /// Where metrics go.
    pub metrics: MetricsConfig,
    /// How the process is locked down once keys are open and listeners bound.
    pub sandbox: SandboxSettings,
    /// The WireGuard interface the TCP listener lives on, set up before the sandbox closes.
    pub wireguard: Option<WireGuardConfig>,
    /// Who may approve administrative commands (`[admin]`); none when absent.
    pub admin: Option<crate::admin::AdminPolicy>,
    /// The keosd `sign_digest` endpoint for a stock nodeos (`[keosd_compat]`); none when
    /// absent, which is the default.
    pub keosd_compat: Option<KeosdCompat>,
    /// The double-sign guard shared with standby signers through etcd (`[shared_guard]`).
    pub shared_guard: Option<crate::shared_guard::SharedGuardConfig>,
}

/// The keosd-compatible `POST /v1/wallet/sign_digest` endpoint (`crate::keosd`). A bare digest
/// cannot be checked against the double-sign guard, so this is off unless the policy says it
/// knows (`dangerous_bare_digests = true`).
#[derive(Debug, Clone)]
pub struct KeosdCompat {
    /// Its own Unix socket (mode 0600; peers as `[listen]` allows).
    pub unix_socket: Option<PathBuf>,
    /// Its own TCP address (the same rules as `[listen] tcp`; peers as `[listen]` allows).
    pub tcp: Option<SocketAddr>,
    /// The keys that sign bare digests; each is a `[[producers]]` key.
    pub keys: BTreeSet<PublicKey>,
    /// The least time between two different digests signed by one key.
    pub min_interval: Duration,
}

/// Sandbox settings (see `crate::sandbox::SandboxConfig`).
#[derive(Debug, Clone)]
pub struct SandboxSettings {
    /// The seccomp policy file.
    pub seccomp_policy: PathBuf,
    /// How memory is locked.
    pub memory_lock: MemoryLock,
    /// Trees still readable after the sandbox is on.
    pub read_only_paths: Vec<PathBuf>,
    /// Trees still writable besides the state directory.
    pub read_write_paths: Vec<PathBuf>,
    /// Run on a kernel without landlock.
    pub dangerous_allow_no_landlock: bool,
    /// Do not sandbox at all (development and tests only).
    pub dangerous_disabled: bool,
}

/// One producer account and the key that signs its blocks.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ProducerPolicy {
    /// The producer account.
    pub account: Name,
    /// The block-signing key (its public half).
    pub key: PublicKey,
}

/// The key backend and its settings.
#[derive(Debug, Clone)]
#[non_exhaustive]
pub enum BackendConfig {
    /// A PKCS#11 module.
    Pkcs11(Pkcs11Config),
    /// Development key files.
    Soft(SoftConfig),
    /// An R1 key in a YubiKey's PIV slot (cargo feature `yubikey`).
    Yubikey(YubikeyConfig),
}

/// YubiKey settings: which card, which slot, which key it must hold, and the PIN.
#[derive(Debug, Clone)]
pub struct YubikeyConfig {
    /// Part of the PC/SC reader name (needed when several cards are present).
    pub reader: Option<String>,
    /// The PIV slot: `9a`, `9c`, `9d` or `9e`.
    pub slot: String,
    /// The `PUB_R1_…` key the slot must hold (checked at start).
    pub key: PublicKey,
    /// Where the PIN comes from.
    pub pin: PinSource,
}

/// PKCS#11 settings.
#[derive(Debug, Clone)]
pub struct Pkcs11Config {
    /// The module (shared library) path.
    pub module: PathBuf,
    /// The token label.
    pub token_label: String,
    /// Where the user PIN comes from.
    pub pin: PinSource,
    /// The keys to open, by label or id.
    pub keys: Vec<KeySelector>,
}

/// Where the PKCS#11 user PIN comes from. Never the command line.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum PinSource {
    /// A file (first line, trailing newline removed).
    File(PathBuf),
    /// An environment variable.
    Env(String),
}

/// A key inside the token.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum KeySelector {
    /// By `CKA_LABEL`.
    Label(String),
    /// By `CKA_ID` (bytes).
    Id(Vec<u8>),
}

/// Development key files.
#[derive(Debug, Clone)]
pub struct SoftConfig {
    /// Files each holding one `PVT_K1_`/`PVT_R1_` private key, mode 0600.
    pub key_files: Vec<PathBuf>,
}

/// Listeners.
#[derive(Debug, Clone)]
pub struct ListenConfig {
    /// The Unix socket path (created with mode 0600).
    pub unix_socket: Option<PathBuf>,
    /// Peer uids allowed on the Unix socket (SO_PEERCRED).
    pub allowed_uids: BTreeSet<u32>,
    /// Also allow peers running as the signer's own uid.
    pub allow_own_uid: bool,
    /// The TCP address, never a wildcard.
    pub tcp: Option<SocketAddr>,
    /// Peer addresses allowed on TCP.
    pub tcp_allowed_peers: BTreeSet<IpAddr>,
}

/// Connection and time limits.
#[derive(Debug, Clone, Copy)]
pub struct Limits {
    /// Connections served at once; more wait in the kernel backlog.
    pub max_connections: usize,
    /// Time allowed for one request to arrive whole, from its first byte. A request being
    /// signed is answered when the HSM answers (the client's own deadline bounds its wait).
    pub request_timeout: Duration,
    /// Time a connection may stay idle between requests.
    pub idle_timeout: Duration,
    /// HSM attempts per signature before giving up on a canonical K1 signature.
    pub max_sign_attempts: u32,
}

/// Where metrics go.
#[derive(Debug, Clone, Default)]
pub struct MetricsConfig {
    /// A file rewritten atomically with the Prometheus text.
    pub file: Option<PathBuf>,
    /// A loopback address serving `GET /metrics`.
    pub listen: Option<SocketAddr>,
}

// ---------------------------------------------------------------------------------------------
// The file's shape.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    chain: RawChain,
    #[serde(default)]
    producers: Vec<RawProducer>,
    backend: RawBackend,
    listen: RawListen,
    state: RawState,
    #[serde(default)]
    limits: RawLimits,
    #[serde(default)]
    metrics: RawMetrics,
    #[serde(default)]
    sandbox: RawSandbox,
    wireguard: Option<Spanned<WireGuardSection>>,
    admin: Option<Spanned<crate::admin::AdminSection>>,
    keosd_compat: Option<Spanned<RawKeosdCompat>>,
    shared_guard: Option<Spanned<RawSharedGuard>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSharedGuard {
    etcd: Spanned<SocketAddr>,
    prefix: Spanned<String>,
    name: Spanned<String>,
    timeout_ms: Spanned<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeosdCompat {
    dangerous_bare_digests: Spanned<bool>,
    unix_socket: Option<Spanned<PathBuf>>,
    tcp: Option<Spanned<SocketAddr>>,
    keys: Spanned<Vec<Spanned<String>>>,
    min_interval_ms: Spanned<u64>,
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawSandbox {
    seccomp_policy: Option<Spanned<PathBuf>>,
    #[serde(default)]
    memory_lock: MemoryLock,
    #[serde(default)]
    read_only_paths: Vec<Spanned<PathBuf>>,
    #[serde(default)]
    read_write_paths: Vec<Spanned<PathBuf>>,
    #[serde(default)]
    dangerous_allow_no_landlock: bool,
    #[serde(default)]
    dangerous_disabled: bool,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawChain {
    id: Checksum256,
    #[serde(default = "spanned_default")]
    dangerous_dev_chain: Spanned<bool>,
    max_clock_skew_ms: Spanned<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawProducer {
    account: Spanned<Name>,
    key: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawBackend {
    kind: Spanned<String>,
    pkcs11: Option<Spanned<RawPkcs11>>,
    soft: Option<Spanned<RawSoft>>,
    yubikey: Option<Spanned<RawYubikey>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawYubikey {
    reader: Option<String>,
    slot: Spanned<String>,
    key: Spanned<String>,
    pin_file: Option<Spanned<PathBuf>>,
    pin_env: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPkcs11 {
    module: Spanned<PathBuf>,
    token_label: Spanned<String>,
    pin_file: Option<Spanned<PathBuf>>,
    pin_env: Option<Spanned<String>>,
    keys: Spanned<Vec<Spanned<RawKeySelector>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawKeySelector {
    label: Option<String>,
    id: Option<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawSoft {
    key_files: Spanned<Vec<Spanned<PathBuf>>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListen {
    unix_socket: Option<Spanned<PathBuf>>,
    #[serde(default = "spanned_default")]
    allowed_uids: Spanned<Vec<u32>>,
    #[serde(default)]
    allow_own_uid: bool,
    tcp: Option<Spanned<SocketAddr>>,
    #[serde(default = "spanned_default")]
    tcp_allowed_peers: Spanned<Vec<IpAddr>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawState {
    dir: Spanned<PathBuf>,
    audit_log: Spanned<PathBuf>,
    #[serde(default = "default_audit_segment_mib")]
    audit_segment_mib: Spanned<u64>,
}

/// 64 MiB: about 110 000 signature lines, a few weeks of a top-21 producer's blocks, verified
/// in a fraction of a second at a start.
fn default_audit_segment_mib() -> Spanned<u64> {
    Spanned::new(0..0, 64)
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    #[serde(default = "default_max_connections")]
    max_connections: Spanned<usize>,
    #[serde(default = "default_request_timeout_ms")]
    request_timeout_ms: Spanned<u64>,
    #[serde(default = "default_idle_timeout_ms")]
    idle_timeout_ms: Spanned<u64>,
    #[serde(default = "default_max_sign_attempts")]
    max_sign_attempts: Spanned<u32>,
}

impl Default for RawLimits {
    fn default() -> Self {
        RawLimits {
            max_connections: default_max_connections(),
            request_timeout_ms: default_request_timeout_ms(),
            idle_timeout_ms: default_idle_timeout_ms(),
            max_sign_attempts: default_max_sign_attempts(),
        }
    }
}

fn spanned_default<T: Default>() -> Spanned<T> {
    Spanned::new(0..0, T::default())
}
fn default_max_connections() -> Spanned<usize> {
    Spanned::new(0..0, 16)
}
fn default_request_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 2_000)
}
fn default_idle_timeout_ms() -> Spanned<u64> {
    Spanned::new(0..0, 60_000)
}
fn default_max_sign_attempts() -> Spanned<u32> {
    // 2^-64 odds of running out with an HSM whose K1 signatures are canonical half the time.
    Spanned::new(0..0, 64)
}

#[derive(Deserialize, Default)]
#[serde(deny_unknown_fields)]
struct RawMetrics {
    file: Option<Spanned<PathBuf>>,
    listen: Option<Spanned<SocketAddr>>,
}

// ---------------------------------------------------------------------------------------------

/// 1-based line and column of a byte offset in `text`.
fn line_column(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let column = before.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    (line, column)
}

struct Validator<'a> {
    path: &'a Path,
    text: &'a str,
}

impl Validator<'_> {
    fn err(&self, span: Range<usize>, message: impl Into<String>) -> PolicyError {
        let (line, column) = line_column(self.text, span.start);
        PolicyError::Invalid {
            path: self.path.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    /// An absolute path: relative ones are resolved against the policy file's directory.
    fn absolute(&self, p: &Spanned<PathBuf>, what: &str) -> Result<PathBuf, PolicyError> {
        let path = p.get_ref();
        if path.as_os_str().is_empty() {
            return Err(self.err(p.span(), format!("{what} is empty")));
        }
        if path.is_absolute() {
            return Ok(path.clone());
        }
        let base =
            self.path.parent().filter(|b| !b.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let base = std::path::absolute(base).map_err(|e| {
            self.err(
                p.span(),
                format!("{what} {path:?} is relative and {base:?} cannot be resolved: {e}"),
            )
        })?;
        Ok(normalize(&base.join(path)))
    }

    fn validate(&self, raw: RawPolicy) -> Result<Policy, PolicyError> {
        let dev = *raw.chain.dangerous_dev_chain.get_ref();
        let skew_ms = *raw.chain.max_clock_skew_ms.get_ref();
        if skew_ms == 0 || skew_ms > 60_000 {
            return Err(self.err(
                raw.chain.max_clock_skew_ms.span(),
                "max_clock_skew_ms must be between 1 and 60000 (a block slot is 500 ms)",
            ));
        }

        let mut producers = Vec::new();
        let mut seen = BTreeSet::new();
        for p in &raw.producers {
            let key: PublicKey = p.key.get_ref().parse().map_err(|e| {
                self.err(
                    p.key.span(),
                    format!("producer key {:?} is not a public key: {e}", p.key.get_ref()),
                )
            })?;
            let account = *p.account.get_ref();
            if !seen.insert(account) {
                return Err(self.err(
                    p.account.span(),
                    format!("producer {account} is listed twice; one key signs for each producer"),
                ));
            }
            producers.push(ProducerPolicy { account, key });
        }
        if producers.is_empty() {
            return Err(self.err(
                0..0,
                "no [[producers]]: list at least one producer account and the key that signs for it",
            ));
        }

        let backend = match raw.backend.kind.get_ref().as_str() {
            "pkcs11" => {
                let Some(p) = &raw.backend.pkcs11 else {
                    return Err(self.err(
                        raw.backend.kind.span(),
                        "backend kind is \"pkcs11\" but there is no [backend.pkcs11] table",
                    ));
                };
                BackendConfig::Pkcs11(self.pkcs11(p)?)
            }
            "soft" => {
                let Some(s) = &raw.backend.soft else {
                    return Err(self.err(
                        raw.backend.kind.span(),
                        "backend kind is \"soft\" but there is no [backend.soft] table",
                    ));
                };
                if !dev {
                    return Err(self.err(
                        raw.backend.kind.span(),
                        "the soft backend keeps keys in files and is refused unless [chain] sets \
                         dangerous_dev_chain = true; production chains use pkcs11",
                    ));
                }
                let mut files = Vec::new();
                for f in s.get_ref().key_files.get_ref() {
                    files.push(self.absolute(f, "key file")?);
                }
                if files.is_empty() {
                    return Err(self.err(s.get_ref().key_files.span(), "key_files is empty"));
                }
                BackendConfig::Soft(SoftConfig { key_files: files })
            }
            "yubikey" => {
                let Some(y) = &raw.backend.yubikey else {
                    return Err(self.err(
                        raw.backend.kind.span(),
                        "backend kind is \"yubikey\" but there is no [backend.yubikey] table",
                    ));
                };
                BackendConfig::Yubikey(self.yubikey(y)?)
            }
            other => {
                return Err(self.err(
                    raw.backend.kind.span(),
                    format!(
                        "unknown backend kind {other:?}; expected \"pkcs11\", \"yubikey\" or \
                         \"soft\""
                    ),
                ));
            }
        };

        let wireguard = raw.wireguard.as_ref().map(|w| self.wireguard(w)).transpose()?;
        let admin = match &raw.admin {
            Some(a) => Some(a.get_ref().validate().map_err(|m| self.err(a.span(), m))?),
            None => None,
        };
        let listen = self.listen(&raw.listen, wireguard.as_ref())?;
        let state_dir = self.absolute(&raw.state.dir, "state dir")?;
        let audit_log = self.absolute(&raw.state.audit_log, "audit log")?;
        let segment = &raw.state.audit_segment_mib;
        if !(1..=1024 * 1024).contains(segment.get_ref()) {
            return Err(self.err(
                segment.span(),
                "audit_segment_mib must be 1..=1048576: the audit log is sealed and a new one \
                 begun at that size",
            ));
        }
        let audit_segment_bytes = segment.get_ref() * 1024 * 1024;

        let l = &raw.limits;
        if *l.max_connections.get_ref() == 0 || *l.max_connections.get_ref() > 4096 {
            return Err(self.err(l.max_connections.span(), "max_connections must be 1..=4096"));
        }
        for (v, name) in
            [(&l.request_timeout_ms, "request_timeout_ms"), (&l.idle_timeout_ms, "idle_timeout_ms")]
        {
            if *v.get_ref() == 0 || *v.get_ref() > 3_600_000 {
                return Err(self.err(v.span(), format!("{name} must be 1..=3600000")));
            }
        }
        if *l.max_sign_attempts.get_ref() == 0 || *l.max_sign_attempts.get_ref() > 1000 {
            return Err(self.err(l.max_sign_attempts.span(), "max_sign_attempts must be 1..=1000"));
        }
        let limits = Limits {
            max_connections: *l.max_connections.get_ref(),
            request_timeout: Duration::from_millis(*l.request_timeout_ms.get_ref()),
            idle_timeout: Duration::from_millis(*l.idle_timeout_ms.get_ref()),
            max_sign_attempts: *l.max_sign_attempts.get_ref(),
        };

        let mut metrics = MetricsConfig::default();
        if let Some(f) = &raw.metrics.file {
            metrics.file = Some(self.absolute(f, "metrics file")?);
        }
        if let Some(a) = &raw.metrics.listen {
            if !a.get_ref().ip().is_loopback() {
                return Err(self.err(
                    a.span(),
                    format!(
                        "metrics listen address {} is not loopback; metrics are served on \
                         127.0.0.1 or ::1 only",
                        a.get_ref()
                    ),
                ));
            }
            metrics.listen = Some(*a.get_ref());
        }

        let sb = &raw.sandbox;
        let seccomp_policy = match &sb.seccomp_policy {
            Some(p) => self.absolute(p, "seccomp policy")?,
            None => self.absolute(
                &Spanned::new(0..0, PathBuf::from("seccomp/signer.x86_64.json")),
                "seccomp policy",
            )?,
        };
        let sandbox = SandboxSettings {
            seccomp_policy,
            memory_lock: sb.memory_lock,
            read_only_paths: sb
                .read_only_paths
                .iter()
                .map(|p| self.absolute(p, "read-only path"))
                .collect::<Result<_, _>>()?,
            read_write_paths: sb
                .read_write_paths
                .iter()
                .map(|p| self.absolute(p, "read-write path"))
                .collect::<Result<_, _>>()?,
            dangerous_allow_no_landlock: sb.dangerous_allow_no_landlock,
            dangerous_disabled: sb.dangerous_disabled,
        };

        let keosd_compat = raw
            .keosd_compat
            .as_ref()
            .map(|k| self.keosd_compat(k, &producers, &listen, wireguard.as_ref()))
            .transpose()?;

        let shared_guard = match &raw.shared_guard {
            Some(g) => Some(self.shared_guard(g.get_ref())?),
            None => None,
        };

        Ok(Policy {
            shared_guard,
            keosd_compat,
            sandbox,
            chain_id: raw.chain.id,
            sha256: Checksum256::hash(self.text.as_bytes()),
            dangerous_dev_chain: dev,
            max_clock_skew: Duration::from_millis(skew_ms),
            producers,
            backend,
            listen,
            state_dir,
            audit_log,
            audit_segment_bytes,
            limits,
            metrics,
            wireguard,
            admin,
        })
    }

    fn yubikey(&self, y: &Spanned<RawYubikey>) -> Result<YubikeyConfig, PolicyError> {
        let r = y.get_ref();
        if !["9a", "9c", "9d", "9e"].contains(&r.slot.get_ref().as_str()) {
            return Err(self.err(r.slot.span(), "slot must be \"9a\", \"9c\", \"9d\" or \"9e\""));
        }
        let key: PublicKey = r
            .key
            .get_ref()
            .parse()
            .map_err(|e| self.err(r.key.span(), format!("key is not a public key: {e}")))?;
        if key.key_type() != rempart_core::key::KeyType::R1 {
            return Err(self.err(r.key.span(), "a YubiKey PIV key is P-256: key must be PUB_R1_…"));
        }
        let pin = match (&r.pin_file, &r.pin_env) {
            (Some(f), None) => PinSource::File(self.absolute(f, "PIN file")?),
            (None, Some(e)) if !e.get_ref().is_empty() => PinSource::Env(e.get_ref().clone()),
            (Some(f), Some(_)) => {
                return Err(self.err(f.span(), "set pin_file or pin_env, not both"));
            }
            _ => {
                return Err(self.err(
                    y.span(),
                    "[backend.yubikey] needs pin_file or pin_env (the PIN is never taken from \
                     the command line)",
                ));
            }
        };
        Ok(YubikeyConfig { reader: r.reader.clone(), slot: r.slot.get_ref().clone(), key, pin })
    }

    fn pkcs11(&self, p: &Spanned<RawPkcs11>) -> Result<Pkcs11Config, PolicyError> {
        let r = p.get_ref();
        let module = self.absolute(&r.module, "PKCS#11 module")?;
        if r.token_label.get_ref().is_empty() || r.token_label.get_ref().len() > 32 {
            return Err(self.err(r.token_label.span(), "token_label must be 1 to 32 bytes"));
        }
        let pin = match (&r.pin_file, &r.pin_env) {
            (Some(f), None) => PinSource::File(self.absolute(f, "PIN file")?),
            (None, Some(e)) if !e.get_ref().is_empty() => PinSource::Env(e.get_ref().clone()),
            (None, Some(e)) => return Err(self.err(e.span(), "pin_env is empty")),
            (Some(f), Some(_)) => {
                return Err(self.err(f.span(), "set pin_file or pin_env, not both"));
            }
            (None, None) => {
                return Err(self.err(
                    p.span(),
                    "[backend.pkcs11] needs pin_file or pin_env (the PIN is never taken from \
                     the command line)",
                ));
            }
        };
        let mut keys = Vec::new();
        for k in r.keys.get_ref() {
            let sel = match (&k.get_ref().label, &k.get_ref().id) {
                (Some(l), None) if !l.is_empty() => KeySelector::Label(l.clone()),
                (None, Some(id)) => KeySelector::Id(hex::decode(id).map_err(|_| {
                    self.err(k.span(), format!("key id {id:?} is not hex (e.g. id = \"01\")"))
                })?),
                _ => {
                    return Err(self.err(
                        k.span(),
                        "each key names exactly one of label = \"…\" or id = \"hex\"",
                    ));
                }
            };
            keys.push(sel);
        }
        if keys.is_empty() {
            return Err(
                self.err(r.keys.span(), "keys is empty: name the signing keys in the token")
            );
        }
        Ok(Pkcs11Config { module, token_label: r.token_label.get_ref().clone(), pin, keys })
    }

    fn listen(
        &self,
        l: &RawListen,
        wireguard: Option<&WireGuardConfig>,
    ) -> Result<ListenConfig, PolicyError> {
        let unix_socket = match &l.unix_socket {
            Some(p) => Some(self.absolute(p, "unix socket")?),
            None => None,
        };
        let allowed_uids: BTreeSet<u32> = l.allowed_uids.get_ref().iter().copied().collect();
        if unix_socket.is_some() && allowed_uids.is_empty() && !l.allow_own_uid {
            return Err(self.err(
                l.allowed_uids.span(),
                "allowed_uids is empty and allow_own_uid is false: nobody could connect; name \
                 the uid(s) of the node allowed on the unix socket",
            ));
        }
        let tcp = match &l.tcp {
            Some(a) => {
                let ip = a.get_ref().ip();
                if ip.is_unspecified() || ip.is_multicast() {
                    return Err(self.err(
                        a.span(),
                        format!(
                            "tcp address {} is a wildcard; bind the WireGuard interface address \
                             (or 127.0.0.1) only",
                            a.get_ref()
                        ),
                    ));
                }
                self.private_listener(a, wireguard)?;
                Some(*a.get_ref())
            }
            None => None,
        };
        let mut tcp_allowed_peers: BTreeSet<IpAddr> =
            l.tcp_allowed_peers.get_ref().iter().copied().collect();
        if let Some(wg) = wireguard {
            if let Some(stray) =
                tcp_allowed_peers.iter().find(|ip| !wg.peer_addresses().any(|p| p == **ip))
            {
                return Err(self.err(
                    l.tcp_allowed_peers.span(),
                    format!(
                        "tcp_allowed_peers names {stray}, which is not the tunnel address of any \
                         [[wireguard.peers]]; only WireGuard peers may reach the TCP listener"
                    ),
                ));
            }
            tcp_allowed_peers.extend(wg.peer_addresses());
        }
        if tcp.is_some() && tcp_allowed_peers.is_empty() {
            return Err(self.err(
                l.tcp_allowed_peers.span(),
                "tcp_allowed_peers is empty: name the peer address(es) allowed to connect over tcp",
            ));
        }
        if unix_socket.is_none() && tcp.is_none() {
            return Err(self.err(0..0, "[listen] needs unix_socket or tcp (or both)"));
        }
        Ok(ListenConfig {
            unix_socket,
            allowed_uids,
            allow_own_uid: l.allow_own_uid,
            tcp,
            tcp_allowed_peers,
        })
    }

    /// The `[wireguard]` section (validated by `crate::wireguard::config`).
    fn wireguard(&self, w: &Spanned<WireGuardSection>) -> Result<WireGuardConfig, PolicyError> {
        w.get_ref()
            .validate(w.span(), &|p| {
                self.absolute(p, "WireGuard private-key file").map_err(|e| match e {
                    PolicyError::Invalid { message, .. } => ConfigError { span: p.span(), message },
                    other => ConfigError { span: p.span(), message: other.to_string() },
                })
            })
            .map_err(|e| self.err(e.span, e.message))
    }

    /// A private listener binds the tunnel address, or loopback when there is no tunnel.
    fn shared_guard(
        &self,
        g: &RawSharedGuard,
    ) -> Result<crate::shared_guard::SharedGuardConfig, PolicyError> {
        let etcd = *g.etcd.get_ref();
        if etcd.ip().is_unspecified() || etcd.port() == 0 {
            return Err(
                self.err(g.etcd.span(), "shared_guard.etcd must be etcd's address and port")
            );
        }
        let prefix = g.prefix.get_ref();
        if !prefix.starts_with('/') || !prefix.ends_with('/') || prefix.len() < 2 {
            return Err(self.err(
                g.prefix.span(),
                "shared_guard.prefix must start and end with / (like \"/rempart/guard/\"), and be \
                 the same on every signer of the producer",
            ));
        }
        let name = g.name.get_ref();
        if name.is_empty() || name.len() > 64 || name.chars().any(char::is_whitespace) {
            return Err(self.err(
                g.name.span(),
                "shared_guard.name must be 1 to 64 characters without spaces",
            ));
        }
        let ms = *g.timeout_ms.get_ref();
        if !(1..=10_000).contains(&ms) {
            return Err(self.err(g.timeout_ms.span(), "shared_guard.timeout_ms must be 1..=10000"));
        }
        Ok(crate::shared_guard::SharedGuardConfig {
            etcd,
            prefix: prefix.clone(),
            name: name.clone(),
            timeout: Duration::from_millis(ms),
        })
    }

    fn keosd_compat(
        &self,
        k: &Spanned<RawKeosdCompat>,
        producers: &[ProducerPolicy],
        listen: &ListenConfig,
        wireguard: Option<&WireGuardConfig>,
    ) -> Result<KeosdCompat, PolicyError> {
        let r = k.get_ref();
        if !*r.dangerous_bare_digests.get_ref() {
            return Err(self.err(
                r.dangerous_bare_digests.span(),
                "[keosd_compat] signs bare digests, which the double-sign guard cannot check: \
                 set dangerous_bare_digests = true to say so, or remove the section",
            ));
        }
        let unix_socket = match &r.unix_socket {
            Some(p) => Some(self.absolute(p, "keosd_compat unix socket")?),
            None => None,
        };
        if unix_socket.is_some() && unix_socket == listen.unix_socket {
            return Err(self.err(
                r.unix_socket.as_ref().map_or(0..0, |p| p.span()),
                "keosd_compat.unix_socket is [listen]'s socket; give it a path of its own",
            ));
        }
        let tcp = match &r.tcp {
            Some(a) => {
                if a.get_ref().ip().is_unspecified() || a.get_ref().ip().is_multicast() {
                    return Err(self
                        .err(a.span(), format!("keosd_compat.tcp {} is a wildcard", a.get_ref())));
                }
                check_private_listener("keosd_compat tcp", *a.get_ref(), wireguard)
                    .map_err(|m| self.err(a.span(), m))?;
                if listen.tcp_allowed_peers.is_empty() {
                    return Err(self.err(
                        a.span(),
                        "keosd_compat.tcp needs [listen] tcp_allowed_peers (or [wireguard] \
                         peers): nobody could connect",
                    ));
                }
                Some(*a.get_ref())
            }
            None => None,
        };
        if unix_socket.is_none() && tcp.is_none() {
            return Err(self.err(k.span(), "[keosd_compat] needs unix_socket or tcp (or both)"));
        }
        let mut keys = BTreeSet::new();
        for key in r.keys.get_ref() {
            let parsed: PublicKey = key.get_ref().parse().map_err(|e| {
                self.err(key.span(), format!("{:?} is not a public key: {e}", key.get_ref()))
            })?;
            if !producers.iter().any(|p| p.key == parsed) {
                return Err(self.err(
                    key.span(),
                    format!(
                        "{parsed} is no [[producers]] key; keosd_compat signs only with a \
                         producer's block-signing key"
                    ),
                ));
            }
            keys.insert(parsed);
        }
        if keys.is_empty() {
            return Err(self.err(r.keys.span(), "keosd_compat.keys is empty"));
        }
        let ms = *r.min_interval_ms.get_ref();
        if ms > 60_000 {
            return Err(self.err(
                r.min_interval_ms.span(),
                "min_interval_ms must be 0..=60000 (a block slot is 500 ms)",
            ));
        }
        Ok(KeosdCompat { unix_socket, tcp, keys, min_interval: Duration::from_millis(ms) })
    }

    fn private_listener(
        &self,
        a: &Spanned<SocketAddr>,
        wireguard: Option<&WireGuardConfig>,
    ) -> Result<(), PolicyError> {
        check_private_listener("tcp", *a.get_ref(), wireguard).map_err(|m| self.err(a.span(), m))
    }
}

/// Removes `.` and resolves `..` lexically (no symlinks followed: the files may not exist yet).
pub fn normalize(p: &Path) -> PathBuf {
    use std::path::Component;
    let mut out = PathBuf::new();
    for c in p.components() {
        match c {
            Component::CurDir => {}
            Component::ParentDir => {
                out.pop();
            }
            other => out.push(other),
        }
    }
    out
}

impl Policy {
    /// Parses and validates policy text; `path` is used in error messages only.
    pub fn from_toml(path: &Path, text: &str) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let (line, column) = line_column(text, e.span().map_or(0, |s| s.start));
            PolicyError::Parse {
                path: path.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_string(),
            }
        })?;
        Validator { path, text }.validate(raw)
    }

    /// Reads, parses and validates a policy file.
    pub fn load(path: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| PolicyError::Read { path: path.to_path_buf(), source })?;
        Policy::from_toml(path, &text)
    }

    /// The key that signs for `producer`, if this signer signs for it.
    pub fn key_for(&self, producer: Name) -> Option<&PublicKey> {
        self.producers.iter().find(|p| p.account == producer).map(|p| &p.key)
    }
}
