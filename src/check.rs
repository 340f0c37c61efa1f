//! `rempart check [DIR]`: validates every policy file of a directory together, without starting
//! anything. Each file is loaded by its own program's library (the same validation the program
//! runs at start), then the files are checked against each other: the producer's block key in
//! the genesis schedule is one a signer signs with and holds, the signer's chain is the
//! genesis's chain, the gateway's pools point at the api nodes, the producer asks the signer
//! where it listens, the api nodes follow the producer.
//!
//! Files are recognised by name: `signer*.toml`, `node*.toml`, `gateway*.toml` (the genesis is
//! the one each node configuration names). A `node-api*.toml` configures an api node only (as on
//! an edge host): its `[producer]` section is unused, so its signer address is not
//! cross-checked. A signer with `[wireguard]` and a sandbox whose tunnel-statistics reader's
//! seccomp policy is not installed beside its own gets a warning (it would run, without per-peer
//! counters on boringtun), not an error. It never writes, never connects anywhere and never prints a secret (a soft key
//! file is read only to derive its public key).

use std::collections::BTreeSet;
use std::io::{self, Write};
use std::net::SocketAddr;
use std::path::{Path, PathBuf};

use rempart_core::key::PublicKey;
use rempart_signer::policy::{BackendConfig, normalize};

/// Exit status when a file is invalid or the files disagree.
pub const EXIT_INVALID: u8 = 1;

/// One problem found by `rempart check`, explained for the operator.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum CheckError {
    /// The directory cannot be listed.
    #[error("{dir}: {reason}; give the directory holding the policy files")]
    Dir {
        /// The directory.
        dir: PathBuf,
        /// The I/O error.
        reason: String,
    },
    /// A file does not validate on its own.
    #[error("{file}: {reason}")]
    Invalid {
        /// The file.
        file: PathBuf,
        /// What its program's validation said.
        reason: String,
    },
    /// No node configuration: nothing to cross-check against.
    #[error(
        "{dir}: no node*.toml: the genesis and every cross-reference come from a node configuration"
    )]
    NoNode {
        /// The directory.
        dir: PathBuf,
    },
    /// The producer is not in the genesis schedule.
    #[error(
        "{file}: [producer] name = {producer:?} is not in the schedule of {genesis}: put it in \
         initial_schedule.producers, or name a scheduled producer"
    )]
    NotScheduled {
        /// The node configuration.
        file: PathBuf,
        /// The producer.
        producer: String,
        /// The genesis.
        genesis: PathBuf,
    },
    /// No signer policy signs for the producer with the scheduled key.
    #[error(
        "{file}: producer {producer:?} signs with {key} in the genesis schedule, but no signer \
         policy has [[producers]] account = {producer:?} with that key (found: {found}); put \
         the key the genesis schedules into the signer policy, or regenerate the genesis with \
         the signer's key"
    )]
    KeyNotInSigner {
        /// The node configuration.
        file: PathBuf,
        /// The producer.
        producer: String,
        /// The scheduled key.
        key: String,
        /// What the signer policies list for it.
        found: String,
    },
    /// The signer lists a key it does not hold.
    #[error(
        "{file}: [[producers]] {producer} signs with {key}, but no key file in \
         [backend.soft] key_files holds it (they hold: {held}); point key_files at that key's \
         file"
    )]
    KeyNotHeld {
        /// The signer policy.
        file: PathBuf,
        /// The producer.
        producer: String,
        /// The listed key.
        key: String,
        /// The public keys of the key files.
        held: String,
    },
    /// The signer's chain is not the genesis's chain.
    #[error(
        "{file}: [chain] id = {signer} but {genesis} makes chain {expected}: the signer would \
         refuse every block; set id = \"{expected}\""
    )]
    ChainMismatch {
        /// The signer policy.
        file: PathBuf,
        /// Its chain id.
        signer: String,
        /// The genesis.
        genesis: PathBuf,
        /// The genesis's chain id.
        expected: String,
    },
    /// A gateway pool names an address no api node listens on.
    #[error(
        "{file}: pool {pool:?} sends requests to {node}, but no node configuration has [api] \
         http_listen = \"{node}\" (api nodes: {apis}); fix the pool's nodes or the node's \
         http_listen"
    )]
    PoolNodeUnknown {
        /// The gateway policy.
        file: PathBuf,
        /// The pool.
        pool: String,
        /// The address.
        node: SocketAddr,
        /// The api nodes' addresses.
        apis: String,
    },
    /// The producer asks a signer address no signer listens on.
    #[error(
        "{file}: [producer] signer = {signer:?} but no signer policy listens there (signers: \
         {listeners}); the producer would miss every slot; make them the same"
    )]
    SignerUnreachable {
        /// The node configuration.
        file: PathBuf,
        /// The node's signer address.
        signer: String,
        /// The signers' listeners.
        listeners: String,
    },
    /// An api node follows an address no producer listens on.
    #[error(
        "{file}: [api] producer = {producer} but no node configuration has [producer] \
         private_listen = \"{producer}\"; the api node would never receive a block"
    )]
    ProducerUnknown {
        /// The node configuration.
        file: PathBuf,
        /// The address.
        producer: SocketAddr,
    },
}

/// What `rempart check` found.
#[derive(Debug, Default)]
pub struct Report {
    /// One line per file that validated on its own.
    pub ok: Vec<String>,
    /// What could not be confirmed (e.g. a key file not created yet), not an error.
    pub notes: Vec<String>,
    /// What would run, but with something lost (e.g. a signer's tunnel counters), not an error.
    pub warnings: Vec<String>,
    /// The problems.
    pub errors: Vec<CheckError>,
}

struct Signer {
    file: PathBuf,
    policy: rempart_signer::policy::Policy,
}

struct Node {
    file: PathBuf,
    config: rempart_node::config::Config,
    genesis: Option<rempart_node::genesis::Genesis>,
}

fn list<T: std::fmt::Display>(items: impl IntoIterator<Item = T>) -> String {
    let v: Vec<String> = items.into_iter().map(|i| i.to_string()).collect();
    if v.is_empty() { "none".into() } else { v.join(", ") }
}

/// Validates every policy file in `dir`, alone and together.
pub fn check_dir(dir: &Path) -> Report {
    let mut report = Report::default();
    let entries = match std::fs::read_dir(dir) {
        Ok(e) => e,
        Err(e) => {
            report.errors.push(CheckError::Dir { dir: dir.into(), reason: e.to_string() });
            return report;
        }
    };
    let mut files: Vec<PathBuf> = entries.filter_map(|e| e.ok().map(|e| e.path())).collect();
    files.sort();
    let (mut signers, mut nodes, mut gateways) = (Vec::new(), Vec::new(), Vec::new());
    for file in files.into_iter().filter(|f| f.extension().is_some_and(|e| e == "toml")) {
        let name = file.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
        let invalid = |reason: String| CheckError::Invalid { file: file.clone(), reason };
        if name.starts_with("signer") {
            match rempart_signer::policy::Policy::load(&file) {
                Ok(policy) => {
                    report.ok.push(format!(
                        "{}: signer policy, chain {}",
                        file.display(),
                        policy.chain_id
                    ));
                    if let Some(w) =
                        rempart_signer::wireguard::reader::missing_policy_warning(&policy)
                    {
                        report.warnings.push(format!("{}: {w}", file.display()));
                    }
                    signers.push(Signer { file, policy });
                }
                Err(e) => report.errors.push(invalid(e.to_string())),
            }
        } else if name.starts_with("node") {
            match rempart_node::config::Config::load(&file) {
                Ok(config) => {
                    let genesis = match rempart_node::genesis::Genesis::load(&config.genesis) {
                        Ok(g) => Some(g),
                        Err(e) => {
                            report.errors.push(CheckError::Invalid {
                                file: config.genesis.clone(),
                                reason: e.to_string(),
                            });
                            None
                        }
                    };
                    report.ok.push(format!("{}: node configuration", file.display()));
                    nodes.push(Node { file, config, genesis });
                }
                Err(e) => report.errors.push(invalid(e.to_string())),
            }
        } else if name.starts_with("gateway") {
            match rempart_gateway::Policy::load(&file) {
                Ok(policy) => {
                    report.ok.push(format!("{}: gateway policy", file.display()));
                    gateways.push((file, policy));
                }
                Err(e) => report.errors.push(invalid(e.to_string())),
            }
        } else {
            report.notes.push(format!(
                "{}: not checked (name policy files signer*.toml, node*.toml or gateway*.toml)",
                file.display()
            ));
        }
    }
    if nodes.is_empty() {
        report.errors.push(CheckError::NoNode { dir: dir.into() });
    }
    cross_check_keys(&signers, &nodes, &mut report);
    cross_check_addresses(&signers, &nodes, &gateways, &mut report);
    report
}

/// The producer's scheduled key is signed with and held by a signer on the genesis's chain.
fn cross_check_keys(signers: &[Signer], nodes: &[Node], report: &mut Report) {
    for node in nodes {
        let Some(genesis) = &node.genesis else { continue };
        let chain = genesis.chain_id();
        for s in signers.iter().filter(|s| s.policy.chain_id != chain) {
            let error = CheckError::ChainMismatch {
                file: s.file.clone(),
                signer: s.policy.chain_id.to_string(),
                genesis: node.config.genesis.clone(),
                expected: chain.to_string(),
            };
            if !report.errors.contains(&error) {
                report.errors.push(error);
            }
        }
        let producer = node.config.producer.name;
        let Some(scheduled) =
            genesis.initial_schedule.producers.iter().find(|p| p.producer_name == producer)
        else {
            report.errors.push(CheckError::NotScheduled {
                file: node.file.clone(),
                producer: producer.to_string(),
                genesis: node.config.genesis.clone(),
            });
            continue;
        };
        let key = &scheduled.block_signing_key;
        let listed = signers
            .iter()
            .any(|s| s.policy.producers.iter().any(|p| p.account == producer && p.key == *key));
        if !listed && !signers.is_empty() {
            let found = signers.iter().flat_map(|s| {
                s.policy
                    .producers
                    .iter()
                    .filter(|p| p.account == producer)
                    .map(|p| p.key.to_string())
            });
            report.errors.push(CheckError::KeyNotInSigner {
                file: node.file.clone(),
                producer: producer.to_string(),
                key: key.to_string(),
                found: list(found),
            });
        }
    }
    for s in signers {
        match &s.policy.backend {
            BackendConfig::Soft(soft) => {
                let mut held: BTreeSet<String> = BTreeSet::new();
                let mut unknown = false;
                for f in &soft.key_files {
                    match rempart_signer::keyring::soft::load_key_file(f) {
                        Ok(k) => {
                            held.insert(k.public_key().to_string());
                        }
                        Err(e) if !f.exists() => {
                            unknown = true;
                            report.notes.push(format!(
                                "{}: key file {} does not exist yet, so the key it holds is not \
                                 checked ({e})",
                                s.file.display(),
                                f.display()
                            ));
                        }
                        Err(e) => report.errors.push(CheckError::Invalid {
                            file: s.file.clone(),
                            reason: e.to_string(),
                        }),
                    }
                }
                if unknown {
                    continue;
                }
                for p in &s.policy.producers {
                    let key: &PublicKey = &p.key;
                    if !held.contains(&key.to_string()) {
                        report.errors.push(CheckError::KeyNotHeld {
                            file: s.file.clone(),
                            producer: p.account.to_string(),
                            key: key.to_string(),
                            held: list(&held),
                        });
                    }
                }
            }
            _ => report.notes.push(format!(
                "{}: the keys live in a device; that it holds them is checked when the signer \
                 starts",
                s.file.display()
            )),
        }
    }
}

/// Gateway → api nodes → producer → signer: each names an address the next listens on.
fn cross_check_addresses(
    signers: &[Signer],
    nodes: &[Node],
    gateways: &[(PathBuf, rempart_gateway::Policy)],
    report: &mut Report,
) {
    let apis: BTreeSet<SocketAddr> = nodes.iter().map(|n| n.config.api.http_listen).collect();
    for (file, policy) in gateways {
        for pool in policy.pools() {
            for node in pool.nodes.iter().filter(|n| !apis.contains(n)) {
                report.errors.push(CheckError::PoolNodeUnknown {
                    file: file.clone(),
                    pool: pool.name.clone(),
                    node: *node,
                    apis: list(&apis),
                });
            }
        }
    }
    // An api node follows a producer or another api node that serves blocks (api.private_listen).
    let producers: BTreeSet<SocketAddr> = nodes
        .iter()
        .flat_map(|n| {
            std::iter::once(n.config.producer.private_listen).chain(n.config.api.private_listen)
        })
        .collect();
    for node in nodes.iter().filter(|n| !producers.contains(&n.config.api.producer)) {
        report.errors.push(CheckError::ProducerUnknown {
            file: node.file.clone(),
            producer: node.config.api.producer,
        });
    }
    if signers.is_empty() {
        return;
    }
    let mut listeners = Vec::new();
    for s in signers {
        if let Some(sock) = &s.policy.listen.unix_socket {
            listeners.push(format!("unix:{}", normalize(sock).display()));
        }
        if let Some(tcp) = s.policy.listen.tcp {
            listeners.push(tcp.to_string());
        }
    }
    // The node configurations agree on one signer address; report each distinct one once.
    let mut seen = BTreeSet::new();
    let api_only = |n: &&Node| {
        n.file.file_name().and_then(|f| f.to_str()).is_some_and(|f| f.starts_with("node-api"))
    };
    for node in nodes.iter().filter(|n| !api_only(n)) {
        let signer = &node.config.producer.signer;
        let normalised = match signer.strip_prefix("unix:") {
            Some(p) => format!("unix:{}", normalize(Path::new(p)).display()),
            None => signer.clone(),
        };
        if !listeners.contains(&normalised) && seen.insert(normalised) {
            report.errors.push(CheckError::SignerUnreachable {
                file: node.file.clone(),
                signer: signer.clone(),
                listeners: list(&listeners),
            });
        }
    }
}

/// Runs `rempart check`: what validated on `out`, notes and errors on `err`.
///
/// # Errors
///
/// Returns the I/O error when `out` or `err` cannot be written.
pub fn run(dir: &Path, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let report = check_dir(dir);
    for line in &report.ok {
        writeln!(out, "ok    {line}")?;
    }
    for note in &report.notes {
        writeln!(err, "note  {note}")?;
    }
    for warning in &report.warnings {
        writeln!(err, "warn  {warning}")?;
    }
    for e in &report.errors {
        writeln!(err, "error {e}")?;
    }
    if report.errors.is_empty() {
        writeln!(
            out,
            "{}: every policy file is valid and they agree with each other",
            dir.display()
        )?;
        Ok(0)
    } else {
        writeln!(
            err,
            "{}: {} problem(s); nothing was started or changed",
            dir.display(),
            report.errors.len()
        )?;
        Ok(EXIT_INVALID)
    }
}

#[cfg(test)]
mod tests;
