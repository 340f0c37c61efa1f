//! The seccomp policy: a seccompiler JSON file, checked, compiled and installed.
//!
//! The file (`policies/seccomp/signer.x86_64.json`) is seccompiler's format: a map of named
//! filters, each `{"mismatch_action", "match_action", "filter": [{"syscall", "args"?,
//! "comment"}]}`. On top of seccompiler's own checks this module insists on what makes the file
//! a policy with reasons that fails closed: every rule carries a non-empty `comment`; a system
//! call listed without `args` is listed once (seccompiler would silently turn that unconditional
//! entry into the conditional ones beside it); exactly one filter is the allowlist (`mismatch_action`
//! `kill_process`, `match_action` `allow`); any other filter only takes rights away
//! (`mismatch_action` `allow`, e.g. `clone3` answered ENOSYS). The kernel stacks filters and
//! the strictest answer wins, so such extra filters can never widen the allowlist. They are
//! installed first and the allowlist last, since the allowlist does not permit `seccomp(2)`.
//! This module must never install a filter it did not check, nor fall back to no filter.

use std::collections::BTreeMap;
use std::fmt;
use std::path::Path;

use seccompiler::{BpfProgram, TargetArch};
use serde_json::Value;

/// The largest policy file accepted; the shipped one is a few kilobytes.
const MAX_POLICY_BYTES: usize = 1 << 20;

/// Why a seccomp policy was rejected.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SeccompPolicyError {
    /// The file could not be read.
    #[error("cannot read seccomp policy {path}: {source}")]
    Read {
        /// The file.
        path: String,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// The file is larger than any sensible policy.
    #[error("seccomp policy is {size} bytes, over the {max} byte limit")]
    TooLarge {
        /// Its size.
        size: usize,
        /// The limit.
        max: usize,
    },
    /// The file is not JSON.
    #[error("seccomp policy is not valid JSON: {0}")]
    Json(#[from] serde_json::Error),
    /// The JSON does not have the expected shape or rules.
    #[error("seccomp policy: {0}")]
    Invalid(String),
    /// A rule has no `comment` saying why the system call is needed.
    #[error(
        "seccomp policy: filter `{filter}` allows `{syscall}` without a `comment`: every rule \
         must say why the signer needs that system call"
    )]
    Uncommented {
        /// The filter.
        filter: String,
        /// The system call.
        syscall: String,
    },
    /// A system call is listed unconditionally and again in another entry of one filter.
    #[error(
        "seccomp policy: filter `{filter}` lists `{syscall}` more than once with an entry \
         without `args`: keep a single unconditional entry, or give every entry its `args`"
    )]
    Duplicate {
        /// The filter.
        filter: String,
        /// The system call.
        syscall: String,
    },
    /// This machine's architecture has no seccompiler syscall table.
    #[error("seccomp: architecture {0} is not supported by seccompiler")]
    Arch(String),
    /// seccompiler rejected the policy (unknown syscall name, bad argument condition, …).
    #[error("seccomp policy does not compile: {0}")]
    Compile(String),
}

/// A checked, compiled seccomp policy, ready to install.
pub struct SeccompPolicy {
    /// Filters that only take rights away, installed first (name order).
    refinements: Vec<(String, BpfProgram)>,
    /// The allowlist, installed last.
    allowlist: (String, BpfProgram),
}

impl fmt::Debug for SeccompPolicy {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("SeccompPolicy")
            .field("refinements", &self.refinements.iter().map(|(n, _)| n).collect::<Vec<_>>())
            .field("allowlist", &self.allowlist.0)
            .finish()
    }
}

impl SeccompPolicy {
    /// Reads, checks and compiles the policy at `path` for this machine's architecture.
    pub fn load(path: &Path) -> Result<Self, SeccompPolicyError> {
        let read = |source| SeccompPolicyError::Read { path: path.display().to_string(), source };
        let meta = std::fs::metadata(path).map_err(read)?;
        let size = usize::try_from(meta.len()).unwrap_or(usize::MAX);
        if size > MAX_POLICY_BYTES {
            return Err(SeccompPolicyError::TooLarge { size, max: MAX_POLICY_BYTES });
        }
        let bytes = std::fs::read(path).map_err(read)?;
        Self::from_json(&bytes)
    }

    /// Checks and compiles a policy held in memory.
    pub fn from_json(bytes: &[u8]) -> Result<Self, SeccompPolicyError> {
        if bytes.len() > MAX_POLICY_BYTES {
            return Err(SeccompPolicyError::TooLarge { size: bytes.len(), max: MAX_POLICY_BYTES });
        }
        let doc: Value = serde_json::from_slice(bytes)?;
        let allowlist_name = check(&doc)?;
        let arch = TargetArch::try_from(std::env::consts::ARCH)
            .map_err(|_| SeccompPolicyError::Arch(std::env::consts::ARCH.to_owned()))?;
        let compiled = seccompiler::compile_from_json(bytes, arch)
            .map_err(|e| SeccompPolicyError::Compile(e.to_string()))?;
        let mut compiled: BTreeMap<String, BpfProgram> = compiled.into_iter().collect();
        let allowlist = compiled.remove_entry(&allowlist_name).ok_or_else(|| {
            SeccompPolicyError::Invalid(format!("filter `{allowlist_name}` did not compile"))
        })?;
        Ok(Self { refinements: compiled.into_iter().collect(), allowlist })
    }

    /// The names of the filters, in installation order (the allowlist last).
    pub fn filter_names(&self) -> Vec<&str> {
        self.refinements
            .iter()
            .map(|(n, _)| n.as_str())
            .chain(std::iter::once(self.allowlist.0.as_str()))
            .collect()
    }

    /// Installs every filter on every thread of the process; returns how many.
    pub(super) fn install(&self) -> Result<usize, super::SandboxError> {
        for (name, program) in self.refinements.iter().chain(std::iter::once(&self.allowlist)) {
            seccompiler::apply_filter_all_threads(program).map_err(|e| {
                super::SandboxError::SeccompInstall { name: name.clone(), message: e.to_string() }
            })?;
        }
        Ok(self.refinements.len() + 1)
    }
}

/// What a filter's actions make it.
#[derive(PartialEq)]
enum FilterKind {
    Allowlist,
    Refinement,
}

/// Checks the rules seccompiler does not; returns the allowlist's name.
fn check(doc: &Value) -> Result<String, SeccompPolicyError> {
    let invalid = |msg: String| SeccompPolicyError::Invalid(msg);
    let filters = doc
        .as_object()
        .ok_or_else(|| invalid("the top level must be an object of named filters".to_owned()))?;
    let mut allowlists = Vec::new();
    for (name, filter) in filters {
        let filter = filter
            .as_object()
            .ok_or_else(|| invalid(format!("filter `{name}` must be an object")))?;
        let action = |keys: [&str; 2]| keys.iter().find_map(|k| filter.get(*k));
        let mismatch = action(["mismatch_action", "default_action"]);
        let on_match = action(["match_action", "filter_action"]);
        let kind = match (mismatch.and_then(Value::as_str), on_match.and_then(Value::as_str)) {
            (Some("kill_process"), Some("allow")) => FilterKind::Allowlist,
            (Some("allow"), m) if m != Some("allow") && on_match.is_some() => {
                FilterKind::Refinement
            }
            _ => {
                return Err(invalid(format!(
                    "filter `{name}` must be either the allowlist (mismatch_action \
                     \"kill_process\", match_action \"allow\") or a filter that only takes \
                     rights away (mismatch_action \"allow\", another match_action); found \
                     mismatch_action {} and match_action {}",
                    show(mismatch),
                    show(on_match)
                )));
            }
        };
        if kind == FilterKind::Allowlist {
            allowlists.push(name.clone());
        }
        let rules = filter
            .get("filter")
            .and_then(Value::as_array)
            .ok_or_else(|| invalid(format!("filter `{name}` needs a `filter` array of rules")))?;
        let mut seen = BTreeMap::new();
        for rule in rules {
            let syscall = rule.get("syscall").and_then(Value::as_str).ok_or_else(|| {
                invalid(format!("filter `{name}` has a rule without a `syscall` name"))
            })?;
            let commented =
                rule.get("comment").and_then(Value::as_str).is_some_and(|c| !c.trim().is_empty());
            if !commented {
                return Err(SeccompPolicyError::Uncommented {
                    filter: name.clone(),
                    syscall: syscall.to_owned(),
                });
            }
            // Several entries for one call are alternatives (any one matching allows it), but
            // only when each has conditions: seccompiler drops an unconditional entry next to
            // conditional ones, silently turning "always" into "only when".
            let conditional = rule.get("args").is_some_and(|a| !a.is_null());
            let entry = seen.entry(syscall).or_insert((0_usize, false));
            entry.0 += 1;
            entry.1 |= !conditional;
            if entry.0 > 1 && entry.1 {
                return Err(SeccompPolicyError::Duplicate {
                    filter: name.clone(),
                    syscall: syscall.to_owned(),
                });
            }
        }
    }
    match allowlists.as_slice() {
        [one] => Ok(one.clone()),
        [] => Err(invalid(
            "no allowlist: one filter must have mismatch_action \"kill_process\" and \
             match_action \"allow\""
                .to_owned(),
        )),
        many => Err(invalid(format!(
            "{} allowlists ({}): there must be exactly one, since the first would forbid \
             installing the next",
            many.len(),
            many.join(", ")
        ))),
    }
}

fn show(v: Option<&Value>) -> String {
    v.map_or_else(|| "(missing)".to_owned(), Value::to_string)
}
