//! The files `rempart up` writes under its data directory on first start: the shipped policies
//! (embedded in the binary) adjusted for one producer, two api nodes and the gateway on one
//! machine, the development certificates, the signer's development key or SoftHSM2 token.
//!
//! The layout mirrors the repository (`policies/`, `certs/`, `var/`) so that the shipped files'
//! relative paths (`../var/signer/…`, `../certs/…`) hold unchanged. It must never overwrite a
//! data directory that exists: a second start reuses what the first one wrote.

use std::fs;
use std::io::Write;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::{Path, PathBuf};

use super::UpError;

/// The shipped signer policy (development chain, soft key, unix socket).
pub const SIGNER_TOML: &str = include_str!("../../policies/signer.toml");
/// The shipped node configuration (producer `eosio`, api on 127.0.0.1:8888).
pub const NODE_TOML: &str = include_str!("../../policies/node.toml");
/// The shipped gateway policy (https://127.0.0.1:8443).
pub const GATEWAY_TOML: &str = include_str!("../../policies/gateway.toml");
/// The shipped genesis (the well-known development key).
pub const GENESIS_JSON: &str = include_str!("../../policies/genesis.json");
/// The signer's seccomp allowlist.
pub const SECCOMP_JSON: &str = include_str!("../../policies/seccomp/signer.x86_64.json");
/// The seccomp allowlist of the signer's WireGuard statistics reader child: a sandboxed signer
/// with `[wireguard]` on boringtun finds it beside its own and has no per-peer tunnel counters
/// without it.
pub const READER_SECCOMP_JSON: &str =
    include_str!("../../policies/seccomp/wg-stats-reader.x86_64.json");

/// The well-known development private key of `eosio` (public knowledge; development only).
pub const DEV_PRIVATE_KEY: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";
/// Its public key, legacy form (what the shipped genesis names).
pub const DEV_PUBLIC_KEY: &str = "EOS6MRyAjQq8ud7hVNYcfnVPJqcVpscN5So8BhtHuGYqET5GDW5CV";

/// The producer's private address (blocks to the api nodes).
pub const PRODUCER_LISTEN: &str = "127.0.0.1:9876";
/// The api nodes' chain API addresses.
pub const API_LISTEN: [&str; 2] = ["127.0.0.1:8888", "127.0.0.1:8889"];
/// The gateway's public TLS address.
pub const GATEWAY_TLS: &str = "127.0.0.1:8443";
/// The gateway's admin address (/healthz, /metrics).
pub const GATEWAY_ADMIN: &str = "127.0.0.1:9100";

/// Where everything lives under the data directory.
#[derive(Debug, Clone)]
pub struct Layout {
    /// The data directory itself.
    pub root: PathBuf,
}

impl Layout {
    /// The layout under `root`.
    pub fn new(root: PathBuf) -> Layout {
        Layout { root }
    }
    /// `policies/`.
    pub fn policies(&self) -> PathBuf {
        self.root.join("policies")
    }
    /// The signer policy.
    pub fn signer_toml(&self) -> PathBuf {
        self.policies().join("signer.toml")
    }
    /// The node configuration of the producer (index 0) or api node `i` (1, 2).
    pub fn node_toml(&self, i: usize) -> PathBuf {
        match i {
            0 => self.policies().join("node-producer.toml"),
            i => self.policies().join(format!("node-api{i}.toml")),
        }
    }
    /// The gateway policy.
    pub fn gateway_toml(&self) -> PathBuf {
        self.policies().join("gateway.toml")
    }
    /// The genesis file.
    pub fn genesis(&self) -> PathBuf {
        self.policies().join("genesis.json")
    }
    /// `certs/` (ca.pem, server.pem, server.key).
    pub fn certs(&self) -> PathBuf {
        self.root.join("certs")
    }
    /// The CA clients trust.
    pub fn ca(&self) -> PathBuf {
        self.certs().join("ca.pem")
    }
    /// The signer's state directory (guard, audit log, socket, dev key).
    pub fn signer_state(&self) -> PathBuf {
        self.root.join("var/signer")
    }
    /// The signer's unix socket.
    pub fn signer_socket(&self) -> PathBuf {
        self.signer_state().join("signer.sock")
    }
    /// The producer's metrics file (its head block number).
    pub fn producer_metrics(&self) -> PathBuf {
        self.root.join("var/node/producer.prom")
    }
    /// The data directory of the producer (0) or api node `i`.
    pub fn node_data(&self, i: usize) -> PathBuf {
        match i {
            0 => self.root.join("var/node/producer"),
            i => self.root.join(format!("var/node/api{i}")),
        }
    }
    /// SoftHSM2's configuration and token directory (with `--hsm softhsm`).
    pub fn softhsm(&self) -> PathBuf {
        self.root.join("softhsm")
    }
    /// Written last on first start: its presence means the configuration is complete.
    pub fn marker(&self) -> PathBuf {
        self.root.join("rempart-up.done")
    }
}

/// Sets `key = value` in `[section]` of a TOML text, keeping every comment; `None` removes the
/// line. A key that is absent (or only commented out) is inserted right after the section
/// header. A missing section is an error: the shipped file no longer has the shape `up` knows.
pub fn set_key(
    text: &str,
    section: &str,
    key: &str,
    value: Option<&str>,
) -> Result<String, UpError> {
    let is_header = |t: &str| t == format!("[{section}]") || t == format!("[[{section}]]");
    let mut out: Vec<String> = Vec::new();
    let mut header_at: Option<usize> = None;
    let mut in_section = false;
    let mut done = false;
    let insert = |out: &mut Vec<String>, at: usize| {
        if let Some(v) = value {
            out.insert(at + 1, format!("{key} = {v}"));
        }
    };
    for line in text.lines() {
        let trimmed = line.trim();
        if trimmed.starts_with('[') {
            if in_section && !done {
                done = true;
                if let Some(at) = header_at {
                    insert(&mut out, at);
                }
            }
            in_section = !done && header_at.is_none() && is_header(trimmed);
            if in_section {
                header_at = Some(out.len());
            }
            out.push(line.to_string());
            continue;
        }
        let is_key =
            trimmed.strip_prefix(key).is_some_and(|rest| rest.trim_start().starts_with('='));
        if in_section && is_key && !done {
            done = true;
            if let Some(v) = value {
                out.push(format!("{key} = {v}"));
            }
            continue;
        }
        out.push(line.to_string());
    }
    if in_section && !done {
        done = true;
        if let Some(at) = header_at {
            insert(&mut out, at);
        }
    }
    if !done {
        return Err(UpError::Template { section: section.into(), key: key.into() });
    }
    let mut s = out.join("\n");
    s.push('\n');
    Ok(s)
}

/// A quoted TOML string.
pub fn quoted(s: &str) -> String {
    format!("{s:?}")
}

/// Writes `text` to `path`, creating parent directories.
pub fn write(path: &Path, text: &str) -> Result<(), UpError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| UpError::io(dir, e))?;
    }
    fs::write(path, text).map_err(|e| UpError::io(path, e))
}

/// Writes the signer's seccomp allowlist and, beside it, its statistics reader's (whatever the
/// signer policy says: one that gains a `[wireguard]` section later needs both), into
/// `policies/seccomp/`.
pub fn write_seccomp(layout: &Layout) -> Result<(), UpError> {
    let dir = layout.policies().join("seccomp");
    write(&dir.join("signer.x86_64.json"), SECCOMP_JSON)?;
    write(&dir.join("wg-stats-reader.x86_64.json"), READER_SECCOMP_JSON)
}

/// Writes a secret (key, PIN) with mode 0600 from the start.
pub fn write_secret(path: &Path, text: &str) -> Result<(), UpError> {
    if let Some(dir) = path.parent() {
        fs::create_dir_all(dir).map_err(|e| UpError::io(dir, e))?;
    }
    let _ = fs::remove_file(path);
    let mut f = fs::OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(path)
        .map_err(|e| UpError::io(path, e))?;
    f.write_all(text.as_bytes()).map_err(|e| UpError::io(path, e))
}

/// The node configuration of the producer (0) or api node `i`, from the shipped one.
pub fn node_config(i: usize) -> Result<String, UpError> {
    let mut text =
        set_key(NODE_TOML, "producer", "metrics_file", Some(&quoted("../var/node/producer.prom")))?;
    text = set_key(&text, "producer", "private_listen", Some(&quoted(PRODUCER_LISTEN)))?;
    text = set_key(&text, "api", "producer", Some(&quoted(PRODUCER_LISTEN)))?;
    let api = if i == 0 { 1 } else { i };
    text = set_key(&text, "api", "data_dir", Some(&quoted(&format!("../var/node/api{api}"))))?;
    set_key(&text, "api", "http_listen", Some(&quoted(API_LISTEN[api - 1])))
}

/// The gateway policy, from the shipped one: both api nodes in the pool, no redirect listener.
pub fn gateway_config() -> Result<String, UpError> {
    let mut text = set_key(GATEWAY_TOML, "listeners", "tls", Some(&quoted(GATEWAY_TLS)))?;
    text = set_key(&text, "listeners", "admin", Some(&quoted(GATEWAY_ADMIN)))?;
    text = set_key(&text, "listeners", "redirect", None)?;
    let nodes = API_LISTEN.iter().map(|a| quoted(a)).collect::<Vec<_>>().join(", ");
    set_key(&text, "pools", "nodes", Some(&format!("[{nodes}]")))
}

/// Writes the development certificates (the gateway's own generator), the key mode 0600.
pub fn write_certs(layout: &Layout) -> Result<(), UpError> {
    let dir = layout.certs();
    fs::create_dir_all(&dir).map_err(|e| UpError::io(&dir, e))?;
    let files = rempart_gateway::dev_cert::write_dev_certs(&dir)
        .map_err(|e| UpError::Setup(format!("development certificates: {e}")))?;
    fs::set_permissions(&files.key, fs::Permissions::from_mode(0o600))
        .map_err(|e| UpError::io(&files.key, e))
}
