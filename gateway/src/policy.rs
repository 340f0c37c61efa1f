//! The gateway policy: `policies/gateway.toml` parsed, then validated into a [`Policy`] that
//! cannot hold an invalid value.
//!
//! Parsing rejects unknown keys; every error names the file, line and column so an operator
//! can fix it without guessing. This module never touches the network or the clock, and it
//! never lets an admin API (`/v1/producer/*`, `/v1/net/*`, `/v1/db_size/*`, …) onto the
//! allowlist, whatever the file says.

use std::collections::{BTreeMap, HashMap};
use std::net::{IpAddr, SocketAddr};
use std::num::NonZeroU32;
use std::path::{Path, PathBuf};
use std::time::Duration;

use serde::Deserialize;
use toml::Spanned;

use crate::filter::{ActionPattern, FilterPolicy, OverLimit};

#[cfg(test)]
mod tests;

/// Path prefixes of node APIs that must never be reachable from the Internet: they pause
/// production, change peers, or expose internals. Validation refuses any route that could
/// match one of them.
pub const FORBIDDEN_PREFIXES: &[&str] = &[
    "/v1/producer/",
    "/v1/net/",
    "/v1/db_size/",
    "/v1/test_control/",
    "/v1/prometheus/",
    "/v1/resource_monitor/",
    "/v1/admin/",
    "/v1/wallet/",
    "/v1/keosd/",
    "/v1/txn_test_gen/",
];

/// Smallest `send_wait_bytes_per_client`: one answer the gateway reads whole from the
/// upstream must fit.
pub const SEND_WAIT_MIN: usize = crate::proxy::BUFFERED_RESPONSE_MAX as usize;

/// Why a policy file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PolicyError {
    /// The file could not be read.
    #[error("{file}: cannot read the policy file: {source}")]
    Read {
        /// The file.
        file: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid TOML or does not have the expected shape (unknown key, wrong
    /// type, missing key).
    #[error("{file}:{line}:{column}: {message}")]
    Syntax {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong.
        message: String,
    },
    /// The file is well formed but a value is not acceptable.
    #[error("{file}:{line}:{column}: {message}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// 1-based line.
        line: usize,
        /// 1-based column.
        column: usize,
        /// What is wrong and how to fix it.
        message: String,
    },
}

impl PolicyError {
    /// The 1-based line and column of the error, when it has one.
    pub fn position(&self) -> Option<(usize, usize)> {
        match self {
            PolicyError::Syntax { line, column, .. }
            | PolicyError::Invalid { line, column, .. } => Some((*line, *column)),
            PolicyError::Read { .. } => None,
        }
    }
}

// ---------------------------------------------------------------------------------------------
// Raw shape, as written in the file.

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPolicy {
    listeners: RawListeners,
    tls: RawTls,
    pools: Vec<RawPool>,
    limits: RawLimits,
    connections: RawConnections,
    access: RawAccess,
    documents: RawDocuments,
    filter: RawFilter,
    route_classes: BTreeMap<String, RawClass>,
    routes: Vec<RawRoute>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawDocuments {
    bp_json: Option<Spanned<String>>,
    chains_json: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawFilter {
    max_transaction_bytes: Spanned<usize>,
    max_actions: Spanned<usize>,
    max_context_free_actions: usize,
    max_signatures: Spanned<usize>,
    max_expiration_ahead_s: Spanned<u32>,
    max_transactions_per_push: Spanned<usize>,
    blocked: Vec<Spanned<String>>,
    allowed: Vec<Spanned<String>>,
    max_query_limit: Spanned<u32>,
    over_limit: OverLimit,
    max_bound_chars: Spanned<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAccess {
    proxy_protocol_from: Vec<Spanned<String>>,
    allow: Vec<Spanned<String>>,
    deny: Vec<Spanned<String>>,
    trusted: Vec<Spanned<String>>,
    trusted_factor: Spanned<u32>,
    ban_after: Spanned<u32>,
    ban_window_ms: Spanned<u64>,
    ban_ms: Spanned<u64>,
    max_tracked_offenders: Spanned<usize>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawListeners {
    tls: Spanned<String>,
    redirect: Option<Spanned<String>>,
    admin: Spanned<String>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawTls {
    reload_interval_ms: Spanned<u64>,
    session_cache_entries: Spanned<usize>,
    certificates: Spanned<Vec<RawCertificate>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawCertificate {
    server_names: Spanned<Vec<Spanned<String>>>,
    cert: Spanned<String>,
    key: Spanned<String>,
    acme: Option<Spanned<RawAcme>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawAcme {
    directory: Spanned<String>,
    contact: Spanned<Vec<Spanned<String>>>,
    account: Spanned<String>,
    renew_days_before: Spanned<u64>,
    #[serde(default)]
    directory_ca: Option<Spanned<String>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawPool {
    name: Spanned<String>,
    nodes: Spanned<Vec<Spanned<String>>>,
    balancing: Balancing,
    connect_timeout_ms: Spanned<u64>,
    max_attempts: Spanned<u32>,
    health_interval_ms: Spanned<u64>,
    health_timeout_ms: Spanned<u64>,
    max_head_age_ms: Spanned<u64>,
    max_lag_blocks: u32,
    eject_base_ms: Spanned<u64>,
    eject_max_ms: Spanned<u64>,
    max_idle_per_node: usize,
    max_in_flight_per_node: Spanned<usize>,
    queue_timeout_ms: Spanned<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawLimits {
    client_prefix_v4: Spanned<u8>,
    client_prefix_v6: Spanned<u8>,
    max_tracked_clients: Spanned<usize>,
    retain_interval_ms: Spanned<u64>,
    global_per_second: Spanned<u32>,
    global_burst: Spanned<u32>,
    #[serde(default)]
    shared: Option<Spanned<RawShared>>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawShared {
    redis: Spanned<String>,
    #[serde(default)]
    username: Option<Spanned<String>>,
    #[serde(default)]
    password_file: Option<Spanned<String>>,
    key_prefix: Spanned<String>,
    sync_interval_ms: Spanned<u64>,
    timeout_ms: Spanned<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawConnections {
    per_client: Spanned<u32>,
    total: Spanned<u32>,
    tls_handshake_timeout_ms: Spanned<u64>,
    header_read_timeout_ms: Spanned<u64>,
    body_read_timeout_ms: Spanned<u64>,
    idle_timeout_ms: Spanned<u64>,
    send_timeout_ms: Spanned<u64>,
    send_wait_bytes_per_client: Spanned<usize>,
    send_wait_bytes_total: Spanned<usize>,
    max_header_bytes: Spanned<usize>,
    max_uri_bytes: Spanned<usize>,
    h2_max_concurrent_streams: Spanned<u32>,
    h2_max_pending_accept_reset_streams: usize,
    h2_max_local_error_reset_streams: usize,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawClass {
    pool: Spanned<String>,
    per_second: Spanned<u32>,
    burst: Spanned<u32>,
    max_body_bytes: Spanned<u64>,
    timeout_ms: Spanned<u64>,
}

#[derive(Deserialize)]
#[serde(deny_unknown_fields)]
struct RawRoute {
    path: Spanned<String>,
    class: Spanned<String>,
    #[serde(default)]
    retry: bool,
}

// ---------------------------------------------------------------------------------------------
// Validated shape.

/// How a pool chooses a node for each request.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum Balancing {
    /// Each healthy node in turn.
    RoundRobin,
    /// The healthy node with the fewest requests in flight (ties go round robin).
    LeastConnections,
}

/// The addresses the gateway listens on.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Listeners {
    /// The public TLS listener.
    pub tls: SocketAddr,
    /// The optional plain-HTTP listener, which only redirects to HTTPS.
    pub redirect: Option<SocketAddr>,
    /// The admin listener (`/metrics`, `/healthz`), always on a private or loopback address.
    pub admin: SocketAddr,
}

/// One certificate chain with its key and the names it serves.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Certificate {
    /// Lower-case server names (SNI); `*.example.com` matches one label.
    pub server_names: Vec<String>,
    /// PEM file with the chain, leaf first (resolved against the policy file's directory).
    pub cert: PathBuf,
    /// PEM file with the private key.
    pub key: PathBuf,
    /// Obtain and renew `cert` and `key` from an ACME CA; `None`: the files are managed
    /// outside (certbot, say) and only re-read when they change.
    pub acme: Option<Acme>,
}

/// Where and how a certificate is obtained by ACME (RFC 8555), with HTTP-01 challenges
/// answered on the redirect listener.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Acme {
    /// The CA's directory URL (https).
    pub directory: String,
    /// Contact URIs given to the CA (`mailto:`).
    pub contact: Vec<String>,
    /// File holding the ACME account's credentials (created mode 0600 on first use).
    pub account: PathBuf,
    /// Renew when the certificate has less than this left.
    pub renew_before: Duration,
    /// PEM of the CA that signs the directory's own HTTPS certificate, for a private or test
    /// ACME CA; `None`: the system's roots.
    pub directory_ca: Option<PathBuf>,
}

/// TLS settings.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Tls {
    /// How often certificate files are checked for changes.
    pub reload_interval: Duration,
    /// Entries of the stateful session-resumption cache.
    pub session_cache_entries: usize,
    /// Certificates; the first also answers clients that send no known server name.
    pub certificates: Vec<Certificate>,
}

/// A pool of upstream api nodes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Pool {
    /// Name used by route classes.
    pub name: String,
    /// Node addresses.
    pub nodes: Vec<SocketAddr>,
    /// Choice of node.
    pub balancing: Balancing,
    /// Deadline to open a TCP connection to a node.
    pub connect_timeout: Duration,
    /// Attempts for a retryable read (1 = no retry).
    pub max_attempts: u32,
    /// Period of the `get_info` health check.
    pub health_interval: Duration,
    /// Deadline of one health check.
    pub health_timeout: Duration,
    /// A node whose head block is older than this is out.
    pub max_head_age: Duration,
    /// A node more than this many blocks behind the best member is out.
    pub max_lag_blocks: u32,
    /// First passive ejection; doubles on each further failure.
    pub eject_base: Duration,
    /// Longest passive ejection.
    pub eject_max: Duration,
    /// Idle keep-alive connections kept per node.
    pub max_idle_per_node: usize,
    /// Most requests one node is sent at once (awaiting its answer's head).
    pub max_in_flight_per_node: usize,
    /// Longest a request waits for a node below its cap before 503.
    pub queue_timeout: Duration,
}

/// Client keys, tracked-client bounds and the global limit.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Limits {
    /// IPv4 clients are keyed by this prefix length (1–32).
    pub client_prefix_v4: u8,
    /// IPv6 clients are keyed by this prefix length (1–64).
    pub client_prefix_v6: u8,
    /// Most clients tracked per route class; beyond, new clients share one bucket.
    pub max_tracked_clients: usize,
    /// How often idle clients are forgotten.
    pub retain_interval: Duration,
    /// Requests per second across all clients.
    pub global_per_second: NonZeroU32,
    /// Burst across all clients.
    pub global_burst: NonZeroU32,
    /// Per-client limits counted across every gateway sharing this Redis, if any.
    pub shared: Option<SharedLimits>,
}

/// Where and how often the per-client limits are shared with other gateways (see
/// [`crate::fleet`]).
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct SharedLimits {
    /// The Redis server, `host:port`.
    pub redis: String,
    /// The Redis ACL user, if not the default one.
    pub username: Option<String>,
    /// A file whose first line is the Redis password (read at each connection, never logged).
    pub password_file: Option<PathBuf>,
    /// Prefix of every key the gateway writes, so several fleets can share one server.
    pub key_prefix: String,
    /// How often counts are exchanged.
    pub sync_interval: Duration,
    /// Deadline of one exchange (and of connecting).
    pub timeout: Duration,
}

/// Connection caps, timeouts and protocol bounds.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Connections {
    /// Open connections per client key.
    pub per_client: u32,
    /// Open connections in total.
    pub total: u32,
    /// Deadline for the TLS handshake.
    pub tls_handshake_timeout: Duration,
    /// Deadline for a complete request head (HTTP/1).
    pub header_read_timeout: Duration,
    /// Deadline for a complete request body.
    pub body_read_timeout: Duration,
    /// A connection with no bytes either way for this long is closed.
    pub idle_timeout: Duration,
    /// Longest the gateway waits on a client to take one answer: an HTTP/2 stream's total
    /// wait for the client's flow-control window, or a connection's writes not draining.
    pub send_timeout: Duration,
    /// Most bytes of HTTP/2 answers held at once for one client while it keeps its window
    /// closed (trusted clients are not held to it).
    pub send_wait_bytes_per_client: usize,
    /// Most bytes of HTTP/2 answers held at once for all such clients together.
    pub send_wait_bytes_total: usize,
    /// Largest request head (HTTP/1) or header list (HTTP/2).
    pub max_header_bytes: usize,
    /// Longest request target.
    pub max_uri_bytes: usize,
    /// HTTP/2 streams open at once per connection.
    pub h2_max_concurrent_streams: u32,
    /// HTTP/2 streams reset by the client before being served (rapid-reset defence).
    pub h2_max_pending_accept_reset_streams: usize,
    /// HTTP/2 streams the gateway may reset because of client errors before it closes the
    /// connection.
    pub h2_max_local_error_reset_streams: usize,
}

/// JSON documents the gateway serves itself, from files (the producer information standard).
#[derive(Clone, Debug, PartialEq, Eq, Default)]
pub struct Documents {
    /// Served at `/bp.json`.
    pub bp_json: Option<PathBuf>,
    /// Served at `/chains.json`.
    pub chains_json: Option<PathBuf>,
}

/// An IPv4 or IPv6 network in CIDR form (`10.0.0.0/8`, `2001:db8::/32`, or one address).
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Cidr {
    /// The network as a 128-bit value (IPv4 as IPv4-mapped IPv6).
    net: u128,
    /// Prefix length over the 128-bit value.
    len: u8,
}

impl Cidr {
    fn to_u128(ip: IpAddr) -> u128 {
        match ip {
            IpAddr::V4(v4) => u128::from(v4.to_ipv6_mapped()),
            IpAddr::V6(v6) => match v6.to_ipv4_mapped() {
                Some(v4) => u128::from(v4.to_ipv6_mapped()),
                None => u128::from(v6),
            },
        }
    }

    fn mask(len: u8) -> u128 {
        if len == 0 { 0 } else { u128::MAX << (128 - u32::from(len)) }
    }

    /// Whether `ip` is inside the network.
    pub fn contains(&self, ip: IpAddr) -> bool {
        Cidr::to_u128(ip) & Cidr::mask(self.len) == self.net
    }
}

impl std::str::FromStr for Cidr {
    type Err = ();
    fn from_str(s: &str) -> Result<Self, ()> {
        let (addr, len) = match s.split_once('/') {
            Some((a, l)) => (a, Some(l.parse::<u8>().map_err(|_| ())?)),
            None => (s, None),
        };
        let ip: IpAddr = addr.parse().map_err(|_| ())?;
        let (max, offset) = match ip {
            IpAddr::V4(_) => (32, 96),
            IpAddr::V6(_) => (128, 0),
        };
        let len = len.unwrap_or(max);
        if len > max {
            return Err(());
        }
        let len = len + offset;
        let net = Cidr::to_u128(ip);
        if net & !Cidr::mask(len) != 0 {
            return Err(());
        }
        Ok(Cidr { net, len })
    }
}

/// Who may connect, who is trusted, and when a client is banned.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Access {
    /// Load balancers whose connections start with a PROXY protocol v2 header giving the real
    /// client; only they are believed, and they must send it.
    pub proxy_protocol_from: Vec<Cidr>,
    /// If not empty, only these networks may connect.
    pub allow: Vec<Cidr>,
    /// These networks are refused at connect time (checked before `allow`).
    pub deny: Vec<Cidr>,
    /// Trusted networks: their per-class rates are multiplied by `trusted_factor` and they are
    /// never banned.
    pub trusted: Vec<Cidr>,
    /// Rate multiplier of trusted clients.
    pub trusted_factor: NonZeroU32,
    /// Refusals (4xx decided by the gateway) within `ban_window` that ban a client.
    pub ban_after: u32,
    /// The window in which refusals are counted.
    pub ban_window: Duration,
    /// How long a ban lasts.
    pub ban: Duration,
    /// Most clients tracked for bans; beyond, new offenders are not tracked.
    pub max_tracked_offenders: usize,
}

impl Access {
    /// Whether `ip` is denied, or not on a non-empty allow list.
    pub fn refuses(&self, ip: IpAddr) -> bool {
        self.deny.iter().any(|c| c.contains(ip))
            || (!self.allow.is_empty() && !self.allow.iter().any(|c| c.contains(ip)))
    }

    /// Whether connections from `ip` carry a PROXY protocol v2 header.
    pub fn expects_proxy_header(&self, ip: IpAddr) -> bool {
        self.proxy_protocol_from.iter().any(|c| c.contains(ip))
    }

    /// Whether `ip` is trusted.
    pub fn is_trusted(&self, ip: IpAddr) -> bool {
        self.trusted.iter().any(|c| c.contains(ip))
    }
}

/// A route class: the rate, size and time budget shared by a group of routes.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct RouteClass {
    /// Name (also the metric label).
    pub name: String,
    /// Index of the pool in [`Policy::pools`].
    pub pool: usize,
    /// Requests per second per client.
    pub per_second: NonZeroU32,
    /// Burst per client.
    pub burst: NonZeroU32,
    /// Largest request body.
    pub max_body_bytes: u64,
    /// Deadline for the upstream's response head.
    pub timeout: Duration,
}

/// What a route matches.
#[derive(Clone, Debug, PartialEq, Eq)]
pub enum PathPattern {
    /// Exactly this path.
    Exact(String),
    /// Any path starting with this prefix (written `prefix*` in the file).
    Prefix(String),
}

/// An allowed path.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Route {
    /// The path or prefix.
    pub pattern: PathPattern,
    /// Index of the class in [`Policy::classes`].
    pub class: usize,
    /// Whether this is an idempotent read that may be retried on another node.
    pub retry: bool,
}

/// A validated policy. Only [`Policy::parse`] and [`Policy::load`] make one.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Policy {
    listeners: Listeners,
    tls: Tls,
    pools: Vec<Pool>,
    limits: Limits,
    connections: Connections,
    access: Access,
    documents: Documents,
    filter: FilterPolicy,
    classes: Vec<RouteClass>,
    routes: Vec<Route>,
    exact: HashMap<String, usize>,
    prefixes: Vec<(String, usize)>,
}

impl Policy {
    /// Reads and validates a policy file. Relative file names inside it are resolved against
    /// the file's directory.
    pub fn load(file: &Path) -> Result<Policy, PolicyError> {
        let text = std::fs::read_to_string(file)
            .map_err(|source| PolicyError::Read { file: file.to_path_buf(), source })?;
        Policy::parse(&text, file)
    }

    /// Parses and validates policy text; `file` names it in errors and anchors relative paths.
    pub fn parse(text: &str, file: &Path) -> Result<Policy, PolicyError> {
        let raw: RawPolicy = toml::from_str(text).map_err(|e| {
            let (line, column) = e.span().map(|s| line_col(text, s.start)).unwrap_or((1, 1));
            PolicyError::Syntax {
                file: file.to_path_buf(),
                line,
                column,
                message: e.message().trim().to_owned(),
            }
        })?;
        let base = file.parent().unwrap_or(Path::new(".")).to_path_buf();
        Validator { text, file, base }.policy(raw)
    }

    /// Listener addresses.
    pub fn listeners(&self) -> &Listeners {
        &self.listeners
    }
    /// TLS settings.
    pub fn tls(&self) -> &Tls {
        &self.tls
    }
    /// Upstream pools.
    pub fn pools(&self) -> &[Pool] {
        &self.pools
    }
    /// Limits.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }
    /// Connection settings.
    pub fn connections(&self) -> &Connections {
        &self.connections
    }
    /// Access lists and bans.
    pub fn access(&self) -> &Access {
        &self.access
    }
    /// Documents served from files.
    pub fn documents(&self) -> &Documents {
        &self.documents
    }
    /// The API filter's settings.
    pub fn filter(&self) -> &FilterPolicy {
        &self.filter
    }
    /// Route classes.
    pub fn classes(&self) -> &[RouteClass] {
        &self.classes
    }
    /// Allowed routes.
    pub fn routes(&self) -> &[Route] {
        &self.routes
    }

    /// The route allowing `path`: an exact match first, then the longest prefix. `None` means
    /// the path is not allowed.
    pub fn route(&self, path: &str) -> Option<&Route> {
        if let Some(&i) = self.exact.get(path) {
            return self.routes.get(i);
        }
        self.prefixes
            .iter()
            .find(|(p, _)| path.starts_with(p.as_str()))
            .and_then(|&(_, i)| self.routes.get(i))
    }
}

/// 1-based line and column (in characters) of byte `offset` in `text`.
fn line_col(text: &str, offset: usize) -> (usize, usize) {
    let offset = offset.min(text.len());
    let before = text.get(..offset).unwrap_or(text);
    let line = before.matches('\n').count() + 1;
    let line_start = before.rfind('\n').map_or(0, |i| i + 1);
    let column = before.get(line_start..).map_or(0, |s| s.chars().count()) + 1;
    (line, column)
}

struct Validator<'a> {
    text: &'a str,
    file: &'a Path,
    base: PathBuf,
}

impl Validator<'_> {
    fn err<T>(&self, at: &Spanned<T>, message: impl Into<String>) -> PolicyError {
        let (line, column) = line_col(self.text, at.span().start);
        PolicyError::Invalid {
            file: self.file.to_path_buf(),
            line,
            column,
            message: message.into(),
        }
    }

    fn addr(&self, s: &Spanned<String>, what: &str) -> Result<SocketAddr, PolicyError> {
        s.get_ref().parse().map_err(|_| {
            self.err(
                s,
                format!(
                    "{what} {:?} must be an IP address and port, like 127.0.0.1:8443",
                    s.get_ref()
                ),
            )
        })
    }

    fn positive_ms(&self, v: &Spanned<u64>, what: &str) -> Result<Duration, PolicyError> {
        match *v.get_ref() {
            0 => Err(self.err(v, format!("{what} must be more than 0 ms"))),
            ms if ms > 86_400_000 => Err(self.err(v, format!("{what} must be at most one day"))),
            ms => Ok(Duration::from_millis(ms)),
        }
    }

    fn nonzero(&self, v: &Spanned<u32>, what: &str) -> Result<NonZeroU32, PolicyError> {
        NonZeroU32::new(*v.get_ref())
            .ok_or_else(|| self.err(v, format!("{what} must be at least 1")))
    }

    fn path(&self, s: &Spanned<String>) -> Result<PathBuf, PolicyError> {
        if s.get_ref().is_empty() {
            return Err(self.err(s, "file name must not be empty"));
        }
        Ok(self.base.join(s.get_ref()))
    }

    fn policy(&self, raw: RawPolicy) -> Result<Policy, PolicyError> {
        let listeners = self.listeners(&raw.listeners)?;
        let tls = self.tls(&raw.tls)?;
        if listeners.redirect.is_none()
            && let Some(c) = raw.tls.certificates.get_ref().iter().find_map(|c| c.acme.as_ref())
        {
            return Err(self.err(
                c,
                "acme needs listeners.redirect: the CA checks HTTP-01 challenges on port 80",
            ));
        }
        let mut pools: Vec<Pool> = Vec::new();
        for p in &raw.pools {
            let pool = self.pool(p)?;
            if pools.iter().any(|q| q.name == pool.name) {
                return Err(self.err(&p.name, format!("pool {:?} is defined twice", pool.name)));
            }
            pools.push(pool);
        }
        let limits = self.limits(&raw.limits)?;
        let connections = self.connections(&raw.connections)?;
        let access = self.access(&raw.access)?;
        let documents = Documents {
            bp_json: raw.documents.bp_json.as_ref().map(|p| self.path(p)).transpose()?,
            chains_json: raw.documents.chains_json.as_ref().map(|p| self.path(p)).transpose()?,
        };
        let filter = self.filter(&raw.filter)?;
        let mut classes = Vec::new();
        for (name, c) in &raw.route_classes {
            classes.push(self.class(name, c, &pools)?);
        }
        if let Some(c) = classes.iter().find(|c| c.timeout >= connections.idle_timeout) {
            return Err(self.err(
                &raw.connections.idle_timeout_ms,
                format!(
                    "idle_timeout_ms must be longer than every route class timeout (class {:?} has {} ms)",
                    c.name,
                    c.timeout.as_millis()
                ),
            ));
        }
        let mut routes = Vec::new();
        let mut exact = HashMap::new();
        let mut prefixes = Vec::new();
        for r in &raw.routes {
            let route = self.route(r, &classes)?;
            let i = routes.len();
            let dup = match &route.pattern {
                PathPattern::Exact(p) => exact.insert(p.clone(), i).is_some(),
                PathPattern::Prefix(p) => {
                    let dup = prefixes.iter().any(|(q, _)| q == p);
                    prefixes.push((p.clone(), i));
                    dup
                }
            };
            if dup {
                return Err(
                    self.err(&r.path, format!("route {:?} is listed twice", r.path.get_ref()))
                );
            }
            routes.push(route);
        }
        prefixes.sort_by_key(|p| std::cmp::Reverse(p.0.len()));
        Ok(Policy {
            listeners,
            tls,
            pools,
            limits,
            connections,
            access,
            documents,
            filter,
            classes,
            routes,
            exact,
            prefixes,
        })
    }

    fn cidrs(&self, list: &[Spanned<String>]) -> Result<Vec<Cidr>, PolicyError> {
        list.iter()
            .map(|c| {
                c.get_ref().parse().map_err(|()| {
                    self.err(
                        c,
                        format!(
                            "{:?} must be an address or a network like 10.0.0.0/8 or 2001:db8::/32, with no host bits set",
                            c.get_ref()
                        ),
                    )
                })
            })
            .collect()
    }

    fn patterns(&self, list: &[Spanned<String>]) -> Result<Vec<ActionPattern>, PolicyError> {
        let mut out: Vec<ActionPattern> = Vec::new();
        for p in list {
            let pattern: ActionPattern = p.get_ref().parse().map_err(|e| {
                self.err(p, format!("{e}; write a contract (`eosio.token`) or a contract and action (`eosio.token::transfer`)"))
            })?;
            if out.contains(&pattern) {
                return Err(self.err(p, format!("{pattern} is listed twice")));
            }
            out.push(pattern);
        }
        Ok(out)
    }

    fn filter(&self, raw: &RawFilter) -> Result<FilterPolicy, PolicyError> {
        let at_least_one = |v: &Spanned<usize>, what: &str| {
            if *v.get_ref() == 0 {
                Err(self.err(v, format!("filter.{what} must be at least 1")))
            } else {
                Ok(*v.get_ref())
            }
        };
        let max_transaction_bytes =
            at_least_one(&raw.max_transaction_bytes, "max_transaction_bytes")?;
        if max_transaction_bytes > 1024 * 1024 {
            return Err(self.err(
                &raw.max_transaction_bytes,
                "filter.max_transaction_bytes must be at most 1048576 (nodeos's own bound)",
            ));
        }
        let max_expiration_ahead_secs = *raw.max_expiration_ahead_s.get_ref();
        if max_expiration_ahead_secs == 0 || max_expiration_ahead_secs > 86_400 {
            return Err(self.err(
                &raw.max_expiration_ahead_s,
                "filter.max_expiration_ahead_s must be between 1 and 86400 (nodeos accepts at most 3600 by default)",
            ));
        }
        let max_query_limit = *raw.max_query_limit.get_ref();
        if max_query_limit == 0 {
            return Err(self.err(&raw.max_query_limit, "filter.max_query_limit must be at least 1"));
        }
        let max_bound_chars = at_least_one(&raw.max_bound_chars, "max_bound_chars")?;
        let blocked = self.patterns(&raw.blocked)?;
        let allowed = self.patterns(&raw.allowed)?;
        if let Some((p, at)) = raw
            .allowed
            .iter()
            .zip(&allowed)
            .find_map(|(at, p)| blocked.contains(p).then_some((p, at)))
        {
            return Err(self.err(
                at,
                format!("{p} is both blocked and allowed; remove it from one of the two lists"),
            ));
        }
        Ok(FilterPolicy {
            max_transaction_bytes,
            max_actions: at_least_one(&raw.max_actions, "max_actions")?,
            max_context_free_actions: raw.max_context_free_actions,
            max_signatures: at_least_one(&raw.max_signatures, "max_signatures")?,
            max_expiration_ahead_secs,
            max_transactions_per_push: at_least_one(
                &raw.max_transactions_per_push,
                "max_transactions_per_push",
            )?,
            blocked,
            allowed,
            max_query_limit,
            over_limit: raw.over_limit,
            max_bound_chars,
        })
    }

    fn access(&self, raw: &RawAccess) -> Result<Access, PolicyError> {
        if *raw.ban_after.get_ref() == 0 {
            return Err(self.err(&raw.ban_after, "ban_after must be at least 1"));
        }
        if *raw.max_tracked_offenders.get_ref() == 0 {
            return Err(
                self.err(&raw.max_tracked_offenders, "max_tracked_offenders must be at least 1")
            );
        }
        Ok(Access {
            proxy_protocol_from: self.cidrs(&raw.proxy_protocol_from)?,
            allow: self.cidrs(&raw.allow)?,
            deny: self.cidrs(&raw.deny)?,
            trusted: self.cidrs(&raw.trusted)?,
            trusted_factor: self.nonzero(&raw.trusted_factor, "trusted_factor")?,
            ban_after: *raw.ban_after.get_ref(),
            ban_window: self.positive_ms(&raw.ban_window_ms, "ban_window_ms")?,
            ban: self.positive_ms(&raw.ban_ms, "ban_ms")?,
            max_tracked_offenders: *raw.max_tracked_offenders.get_ref(),
        })
    }

    fn listeners(&self, raw: &RawListeners) -> Result<Listeners, PolicyError> {
        let tls = self.addr(&raw.tls, "listeners.tls")?;
        let redirect =
            raw.redirect.as_ref().map(|r| self.addr(r, "listeners.redirect")).transpose()?;
        let admin = self.addr(&raw.admin, "listeners.admin")?;
        if !is_private(admin.ip()) {
            return Err(self.err(
                &raw.admin,
                format!(
                    "listeners.admin {admin} must be a loopback or private address (127.0.0.0/8, 10/8, 172.16/12, 192.168/16, ::1, fc00::/7): metrics must not face the Internet"
                ),
            ));
        }
        Ok(Listeners { tls, redirect, admin })
    }

    fn tls(&self, raw: &RawTls) -> Result<Tls, PolicyError> {
        let reload_interval =
            self.positive_ms(&raw.reload_interval_ms, "tls.reload_interval_ms")?;
        if *raw.session_cache_entries.get_ref() == 0 {
            return Err(self
                .err(&raw.session_cache_entries, "tls.session_cache_entries must be at least 1"));
        }
        if raw.certificates.get_ref().is_empty() {
            return Err(self.err(&raw.certificates, "at least one [[tls.certificates]] is needed"));
        }
        let mut certificates = Vec::new();
        let mut seen: Vec<String> = Vec::new();
        for c in raw.certificates.get_ref() {
            if c.server_names.get_ref().is_empty() {
                return Err(self.err(&c.server_names, "server_names must list at least one name"));
            }
            let mut names = Vec::new();
            for n in c.server_names.get_ref() {
                let name = n.get_ref().to_ascii_lowercase();
                if !valid_server_name(&name) {
                    return Err(self.err(
                        n,
                        format!("server name {:?} must be a DNS name, `*.` + a DNS name, or an IP address", n.get_ref()),
                    ));
                }
                if seen.contains(&name) {
                    return Err(
                        self.err(n, format!("server name {name:?} is served by two certificates"))
                    );
                }
                seen.push(name.clone());
                names.push(name);
            }
            let acme = c.acme.as_ref().map(|a| self.acme(a, &names)).transpose()?;
            certificates.push(Certificate {
                server_names: names,
                cert: self.path(&c.cert)?,
                key: self.path(&c.key)?,
                acme,
            });
        }
        Ok(Tls {
            reload_interval,
            session_cache_entries: *raw.session_cache_entries.get_ref(),
            certificates,
        })
    }

    fn acme(&self, raw: &Spanned<RawAcme>, names: &[String]) -> Result<Acme, PolicyError> {
        let a = raw.get_ref();
        if !a.directory.get_ref().starts_with("https://") {
            return Err(self.err(&a.directory, "acme.directory must be an https:// URL"));
        }
        if let Some(n) = names.iter().find(|n| n.starts_with("*.") || n.parse::<IpAddr>().is_ok()) {
            return Err(self.err(
                raw,
                format!(
                    "server name {n:?} cannot be validated over HTTP-01 (wildcards and IP \
                     addresses need another challenge): get this certificate outside the \
                     gateway, or drop the name"
                ),
            ));
        }
        let mut contact = Vec::new();
        for c in a.contact.get_ref() {
            if !c.get_ref().starts_with("mailto:") {
                return Err(self.err(c, "acme.contact entries must be mailto: URIs"));
            }
            contact.push(c.get_ref().clone());
        }
        let days = *a.renew_days_before.get_ref();
        if days == 0 || days > 60 {
            return Err(
                self.err(&a.renew_days_before, "acme.renew_days_before must be between 1 and 60")
            );
        }
        Ok(Acme {
            directory: a.directory.get_ref().clone(),
            contact,
            account: self.path(&a.account)?,
            renew_before: Duration::from_secs(days * 86_400),
            directory_ca: a.directory_ca.as_ref().map(|p| self.path(p)).transpose()?,
        })
    }

    fn pool(&self, raw: &RawPool) -> Result<Pool, PolicyError> {
        let name = raw.name.get_ref().clone();
        if name.is_empty() {
            return Err(self.err(&raw.name, "pool name must not be empty"));
        }
        if raw.nodes.get_ref().is_empty() {
            return Err(self.err(&raw.nodes, format!("pool {name:?} needs at least one node")));
        }
        let mut nodes = Vec::new();
        for n in raw.nodes.get_ref() {
            let a = self.addr(n, "node")?;
            if nodes.contains(&a) {
                return Err(self.err(n, format!("node {a} is listed twice")));
            }
            nodes.push(a);
        }
        if *raw.max_attempts.get_ref() == 0 || *raw.max_attempts.get_ref() > 5 {
            return Err(self.err(&raw.max_attempts, "max_attempts must be between 1 and 5"));
        }
        let eject_base = self.positive_ms(&raw.eject_base_ms, "eject_base_ms")?;
        let eject_max = self.positive_ms(&raw.eject_max_ms, "eject_max_ms")?;
        if eject_max < eject_base {
            return Err(self.err(&raw.eject_max_ms, "eject_max_ms must be at least eject_base_ms"));
        }
        let health_interval = self.positive_ms(&raw.health_interval_ms, "health_interval_ms")?;
        let health_timeout = self.positive_ms(&raw.health_timeout_ms, "health_timeout_ms")?;
        if health_timeout > health_interval {
            return Err(self.err(
                &raw.health_timeout_ms,
                "health_timeout_ms must not exceed health_interval_ms",
            ));
        }
        if *raw.max_in_flight_per_node.get_ref() == 0 {
            return Err(
                self.err(&raw.max_in_flight_per_node, "max_in_flight_per_node must be at least 1")
            );
        }
        Ok(Pool {
            name,
            nodes,
            balancing: raw.balancing,
            connect_timeout: self.positive_ms(&raw.connect_timeout_ms, "connect_timeout_ms")?,
            max_attempts: *raw.max_attempts.get_ref(),
            health_interval,
            health_timeout,
            max_head_age: self.positive_ms(&raw.max_head_age_ms, "max_head_age_ms")?,
            max_lag_blocks: raw.max_lag_blocks,
            eject_base,
            eject_max,
            max_idle_per_node: raw.max_idle_per_node,
            max_in_flight_per_node: *raw.max_in_flight_per_node.get_ref(),
            queue_timeout: self.positive_ms(&raw.queue_timeout_ms, "queue_timeout_ms")?,
        })
    }

    fn limits(&self, raw: &RawLimits) -> Result<Limits, PolicyError> {
        let v4 = *raw.client_prefix_v4.get_ref();
        if !(1..=32).contains(&v4) {
            return Err(
                self.err(&raw.client_prefix_v4, "client_prefix_v4 must be between 1 and 32")
            );
        }
        let v6 = *raw.client_prefix_v6.get_ref();
        if !(1..=64).contains(&v6) {
            return Err(
                self.err(&raw.client_prefix_v6, "client_prefix_v6 must be between 1 and 64")
            );
        }
        if *raw.max_tracked_clients.get_ref() == 0 {
            return Err(
                self.err(&raw.max_tracked_clients, "max_tracked_clients must be at least 1")
            );
        }
        Ok(Limits {
            client_prefix_v4: v4,
            client_prefix_v6: v6,
            max_tracked_clients: *raw.max_tracked_clients.get_ref(),
            retain_interval: self.positive_ms(&raw.retain_interval_ms, "retain_interval_ms")?,
            global_per_second: self.nonzero(&raw.global_per_second, "global_per_second")?,
            global_burst: self.nonzero(&raw.global_burst, "global_burst")?,
            shared: raw.shared.as_ref().map(|s| self.shared(s)).transpose()?,
        })
    }

    fn shared(&self, raw: &Spanned<RawShared>) -> Result<SharedLimits, PolicyError> {
        let s = raw.get_ref();
        let redis = s.redis.get_ref();
        let port_ok = redis.rsplit_once(':').is_some_and(|(host, port)| {
            !host.is_empty() && port.parse::<u16>().is_ok_and(|p| p > 0)
        });
        if !port_ok || redis.contains('/') {
            return Err(self.err(
                &s.redis,
                format!("limits.shared.redis {redis:?} must be host:port, like 10.98.0.10:6379"),
            ));
        }
        let prefix = s.key_prefix.get_ref();
        if prefix.is_empty() || prefix.len() > 64 || prefix.chars().any(|c| c.is_whitespace()) {
            return Err(self.err(
                &s.key_prefix,
                "limits.shared.key_prefix must be 1 to 64 characters without spaces",
            ));
        }
        let sync_interval =
            self.positive_ms(&s.sync_interval_ms, "limits.shared.sync_interval_ms")?;
        if !(10..=10_000).contains(s.sync_interval_ms.get_ref()) {
            return Err(self.err(
                &s.sync_interval_ms,
                "limits.shared.sync_interval_ms must be between 10 and 10000",
            ));
        }
        let timeout = self.positive_ms(&s.timeout_ms, "limits.shared.timeout_ms")?;
        if timeout > sync_interval * 10 {
            return Err(self
                .err(&s.timeout_ms, "limits.shared.timeout_ms must be at most 10 sync intervals"));
        }
        if let Some(u) = &s.username
            && u.get_ref().is_empty()
        {
            return Err(self.err(u, "limits.shared.username must not be empty"));
        }
        if s.username.is_some() && s.password_file.is_none() {
            return Err(self.err(raw, "limits.shared.username needs a password_file"));
        }
        Ok(SharedLimits {
            redis: redis.clone(),
            username: s.username.as_ref().map(|u| u.get_ref().clone()),
            password_file: s.password_file.as_ref().map(|p| self.path(p)).transpose()?,
            key_prefix: prefix.clone(),
            sync_interval,
            timeout,
        })
    }

    fn connections(&self, raw: &RawConnections) -> Result<Connections, PolicyError> {
        if *raw.per_client.get_ref() == 0 {
            return Err(self.err(&raw.per_client, "per_client must be at least 1"));
        }
        if raw.total.get_ref() < raw.per_client.get_ref() {
            return Err(self.err(&raw.total, "total must be at least per_client"));
        }
        if *raw.send_wait_bytes_per_client.get_ref() < SEND_WAIT_MIN {
            return Err(self.err(
                &raw.send_wait_bytes_per_client,
                format!("send_wait_bytes_per_client must be at least {SEND_WAIT_MIN}"),
            ));
        }
        if raw.send_wait_bytes_total.get_ref() < raw.send_wait_bytes_per_client.get_ref() {
            return Err(self.err(
                &raw.send_wait_bytes_total,
                "send_wait_bytes_total must be at least send_wait_bytes_per_client",
            ));
        }
        if *raw.max_header_bytes.get_ref() < 1024 {
            return Err(self.err(&raw.max_header_bytes, "max_header_bytes must be at least 1024"));
        }
        if *raw.max_uri_bytes.get_ref() < 64 {
            return Err(self.err(&raw.max_uri_bytes, "max_uri_bytes must be at least 64"));
        }
        if *raw.h2_max_concurrent_streams.get_ref() == 0 {
            return Err(self.err(
                &raw.h2_max_concurrent_streams,
                "h2_max_concurrent_streams must be at least 1",
            ));
        }
        Ok(Connections {
            per_client: *raw.per_client.get_ref(),
            total: *raw.total.get_ref(),
            tls_handshake_timeout: self
                .positive_ms(&raw.tls_handshake_timeout_ms, "tls_handshake_timeout_ms")?,
            header_read_timeout: self
                .positive_ms(&raw.header_read_timeout_ms, "header_read_timeout_ms")?,
            body_read_timeout: self
                .positive_ms(&raw.body_read_timeout_ms, "body_read_timeout_ms")?,
            idle_timeout: self.positive_ms(&raw.idle_timeout_ms, "idle_timeout_ms")?,
            send_timeout: self.positive_ms(&raw.send_timeout_ms, "send_timeout_ms")?,
            send_wait_bytes_per_client: *raw.send_wait_bytes_per_client.get_ref(),
            send_wait_bytes_total: *raw.send_wait_bytes_total.get_ref(),
            max_header_bytes: *raw.max_header_bytes.get_ref(),
            max_uri_bytes: *raw.max_uri_bytes.get_ref(),
            h2_max_concurrent_streams: *raw.h2_max_concurrent_streams.get_ref(),
            h2_max_pending_accept_reset_streams: raw.h2_max_pending_accept_reset_streams,
            h2_max_local_error_reset_streams: raw.h2_max_local_error_reset_streams,
        })
    }

    fn class(&self, name: &str, raw: &RawClass, pools: &[Pool]) -> Result<RouteClass, PolicyError> {
        let pool = pools.iter().position(|p| p.name == *raw.pool.get_ref()).ok_or_else(|| {
            self.err(
                &raw.pool,
                format!(
                    "route class {name:?} names pool {:?}, which is not defined",
                    raw.pool.get_ref()
                ),
            )
        })?;
        let valid_name = !name.is_empty()
            && name.bytes().all(|b| b.is_ascii_lowercase() || b.is_ascii_digit() || b == b'_');
        if !valid_name {
            return Err(self.err(
                &raw.pool,
                format!("route class name {name:?} must use only a-z, 0-9 and _"),
            ));
        }
        Ok(RouteClass {
            name: name.to_owned(),
            pool,
            per_second: self.nonzero(&raw.per_second, "per_second")?,
            burst: self.nonzero(&raw.burst, "burst")?,
            max_body_bytes: *raw.max_body_bytes.get_ref(),
            timeout: self.positive_ms(&raw.timeout_ms, "timeout_ms")?,
        })
    }

    fn route(&self, raw: &RawRoute, classes: &[RouteClass]) -> Result<Route, PolicyError> {
        let path = raw.path.get_ref();
        let pattern = match path.strip_suffix('*') {
            Some(prefix) => PathPattern::Prefix(prefix.to_owned()),
            None => PathPattern::Exact(path.clone()),
        };
        let body = match &pattern {
            PathPattern::Exact(p) | PathPattern::Prefix(p) => p,
        };
        if !body.starts_with('/') || !is_canonical_path(body) || body.contains('*') {
            return Err(self.err(
                &raw.path,
                format!("route {path:?} must start with /, use only unreserved characters, and may end with one *"),
            ));
        }
        if matches!(pattern, PathPattern::Prefix(_)) && !body.ends_with('/') {
            return Err(self.err(&raw.path, format!("prefix route {path:?} must end with /*")));
        }
        if let Some(f) = FORBIDDEN_PREFIXES.iter().find(|f| pattern_reaches(&pattern, f)) {
            return Err(self.err(
                &raw.path,
                format!("route {path:?} would expose {f}*, an admin API that must never be public; remove it"),
            ));
        }
        let class =
            classes.iter().position(|c| c.name == *raw.class.get_ref()).ok_or_else(|| {
                self.err(
                    &raw.class,
                    format!(
                        "route class {:?} is not defined in [route_classes]",
                        raw.class.get_ref()
                    ),
                )
            })?;
        Ok(Route { pattern, class, retry: raw.retry })
    }
}

/// Whether a request matching `pattern` could reach an API under `forbidden`.
fn pattern_reaches(pattern: &PathPattern, forbidden: &str) -> bool {
    match pattern {
        PathPattern::Exact(p) => {
            let p = p.to_ascii_lowercase();
            p.starts_with(forbidden) || forbidden.strip_suffix('/') == Some(p.as_str())
        }
        PathPattern::Prefix(p) => {
            let p = p.to_ascii_lowercase();
            p.starts_with(forbidden) || forbidden.starts_with(p.as_str())
        }
    }
}

/// A path made only of `/`-separated segments of unreserved characters, with no empty, `.` or
/// `..` segment. Requests whose path is not canonical are refused before routing, so a route
/// never matches a path that an upstream would read differently.
pub fn is_canonical_path(path: &str) -> bool {
    let Some(rest) = path.strip_prefix('/') else {
        return false;
    };
    if rest.is_empty() {
        return true;
    }
    let segments: Vec<&str> = rest.split('/').collect();
    let last = segments.len() - 1;
    segments.iter().enumerate().all(|(i, s)| {
        if s.is_empty() {
            return i == last;
        }
        *s != "."
            && *s != ".."
            && s.bytes()
                .all(|b| b.is_ascii_alphanumeric() || matches!(b, b'-' | b'_' | b'.' | b'~'))
    })
}

fn valid_server_name(name: &str) -> bool {
    if name.parse::<IpAddr>().is_ok() {
        return true;
    }
    let dns = name.strip_prefix("*.").unwrap_or(name);
    !dns.is_empty()
        && dns.len() <= 253
        && dns.split('.').all(|l| {
            !l.is_empty()
                && l.len() <= 63
                && !l.starts_with('-')
                && !l.ends_with('-')
                && l.bytes().all(|b| b.is_ascii_alphanumeric() || b == b'-')
        })
}

/// Loopback, RFC 1918, link-local or IPv6 unique-local.
pub fn is_private(ip: IpAddr) -> bool {
    match ip {
        IpAddr::V4(v4) => v4.is_loopback() || v4.is_private() || v4.is_link_local(),
        IpAddr::V6(v6) => {
            v6.is_loopback()
                || (v6.segments()[0] & 0xfe00) == 0xfc00
                || (v6.segments()[0] & 0xffc0) == 0xfe80
                || v6.to_ipv4_mapped().is_some_and(|v4| is_private(IpAddr::V4(v4)))
        }
    }
}
