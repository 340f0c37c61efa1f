//! Authorities and the check that a set of signing keys satisfies one.
//!
//! An authority is a threshold over weighted keys and weighted permissions of other accounts
//! (waits are carried but never count, as delays are not supported). Satisfaction recurses into
//! account permissions down to a depth limit and records which keys it used, so a signature
//! that satisfied nothing can be refused. This module decides from data only: it never reads
//! the store or the clock itself ([`PermissionSource`] is how it sees state).

use std::collections::BTreeSet;

use rempart_core::key::PublicKey;
use rempart_core::{Name, packed_struct};
use serde::{Deserialize, Serialize};

/// An account permission (`permission_level`): `actor@permission`. Core's type, so actions,
/// authorities and the checker speak the same one.
pub use rempart_core::transaction::PermissionLevel as Level;

packed_struct! {
    /// A key and its weight.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct KeyWeight {
        /// The key.
        pub key: PublicKey,
        /// Its weight.
        pub weight: u16,
    }
}

packed_struct! {
    /// Another account's permission and its weight.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct PermissionLevelWeight {
        /// The permission.
        pub permission: Level,
        /// Its weight.
        pub weight: u16,
    }
}

packed_struct! {
    /// A delay and its weight (never satisfied here: delays are not supported).
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct WaitWeight {
        /// Seconds.
        pub wait_sec: u32,
        /// Its weight.
        pub weight: u16,
    }
}

packed_struct! {
    /// An Antelope `authority`.
    #[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
    pub struct Authority {
        /// Weight needed.
        pub threshold: u32,
        /// Weighted keys, sorted and unique.
        pub keys: Vec<KeyWeight>,
        /// Weighted account permissions, sorted and unique.
        pub accounts: Vec<PermissionLevelWeight>,
        /// Weighted waits.
        pub waits: Vec<WaitWeight>,
    }
}

impl Authority {
    /// A single key with threshold 1.
    pub fn single_key(key: PublicKey) -> Authority {
        Authority {
            threshold: 1,
            keys: vec![KeyWeight { key, weight: 1 }],
            accounts: Vec::new(),
            waits: Vec::new(),
        }
    }

    /// Antelope's validity rule: threshold above zero, keys and accounts sorted and unique,
    /// no zero weight, and the weights can reach the threshold.
    pub fn validate(&self) -> Result<(), String> {
        if self.threshold == 0 {
            return Err("authority threshold must be above zero".into());
        }
        if self.keys.windows(2).any(|w| w[0].key >= w[1].key) {
            return Err("authority keys must be sorted and unique".into());
        }
        if self.accounts.windows(2).any(|w| w[0].permission >= w[1].permission) {
            return Err("authority accounts must be sorted and unique".into());
        }
        if self.waits.windows(2).any(|w| w[0].wait_sec >= w[1].wait_sec) {
            return Err("authority waits must be sorted and unique".into());
        }
        let weights = self
            .keys
            .iter()
            .map(|k| k.weight)
            .chain(self.accounts.iter().map(|a| a.weight))
            .chain(self.waits.iter().map(|w| w.weight));
        let mut total = 0u64;
        for w in weights {
            if w == 0 {
                return Err("authority weights must be above zero".into());
            }
            total += u64::from(w);
        }
        if total < u64::from(self.threshold) {
            return Err("authority weights cannot reach its threshold".into());
        }
        Ok(())
    }
}

/// Why an authority check failed.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AuthorityError {
    /// The named permission does not exist.
    #[error("permission {0}@{1} does not exist")]
    UnknownPermission(Name, Name),
    /// The provided keys do not reach the threshold.
    #[error("the signatures do not satisfy {0}@{1}")]
    Unsatisfied(Name, Name),
    /// The state could not be read.
    #[error("state read failed: {0}")]
    State(String),
}

/// How the checker sees permissions.
pub trait PermissionSource {
    /// The authority of `level`, `None` if it does not exist.
    fn authority(&self, level: Level) -> Result<Option<Authority>, AuthorityError>;
}

/// Checks authorities against one transaction's recovered keys, remembering the keys used.
#[derive(Debug)]
pub struct Checker<'k> {
    provided: &'k BTreeSet<PublicKey>,
    levels: BTreeSet<Level>,
    used: BTreeSet<PublicKey>,
    max_depth: usize,
}

impl<'k> Checker<'k> {
    /// A checker over `provided` keys, recursing at most `max_depth` account levels.
    pub fn new(provided: &'k BTreeSet<PublicKey>, max_depth: usize) -> Self {
        Checker { provided, levels: BTreeSet::new(), used: BTreeSet::new(), max_depth }
    }

    /// Also counts `level` as provided: an authority naming it (directly, or through nested
    /// account permissions) gets its weight, as Antelope grants `contract@eosio.code` to the
    /// inline actions a contract sends.
    pub fn provide_level(&mut self, level: Level) {
        self.levels.insert(level);
    }

    /// Errors unless the provided keys satisfy `level`'s authority.
    pub fn require(
        &mut self,
        source: &dyn PermissionSource,
        level: Level,
    ) -> Result<(), AuthorityError> {
        if self.levels.contains(&level) {
            return Ok(());
        }
        let auth = source
            .authority(level)?
            .ok_or(AuthorityError::UnknownPermission(level.actor, level.permission))?;
        if self.satisfies(source, &auth, 0)? {
            Ok(())
        } else {
            Err(AuthorityError::Unsatisfied(level.actor, level.permission))
        }
    }

    fn satisfies(
        &mut self,
        source: &dyn PermissionSource,
        auth: &Authority,
        depth: usize,
    ) -> Result<bool, AuthorityError> {
        let threshold = u64::from(auth.threshold);
        let mut total = 0u64;
        for kw in &auth.keys {
            if self.provided.contains(&kw.key) {
                self.used.insert(kw.key);
                total += u64::from(kw.weight);
                if total >= threshold {
                    return Ok(true);
                }
            }
        }
        if depth < self.max_depth {
            for pw in &auth.accounts {
                if self.levels.contains(&pw.permission) {
                    total += u64::from(pw.weight);
                    if total >= threshold {
                        return Ok(true);
                    }
                    continue;
                }
                if let Some(inner) = source.authority(pw.permission)?
                    && self.satisfies(source, &inner, depth + 1)?
                {
                    total += u64::from(pw.weight);
                    if total >= threshold {
                        return Ok(true);
                    }
                }
            }
        }
        Ok(total >= threshold)
    }

    /// Provided keys that satisfied nothing (irrelevant signatures).
    pub fn unused(&self) -> Vec<PublicKey> {
        self.provided.difference(&self.used).copied().collect()
    }

    /// Keys used so far.
    pub fn used(&self) -> &BTreeSet<PublicKey> {
        &self.used
    }
}

#[cfg(test)]
mod tests;
