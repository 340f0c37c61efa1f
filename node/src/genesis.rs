//! The genesis file: what the chain starts from, and the chain id derived from it.
//!
//! The chain id is the sha256 of the canonical packed genesis (timestamp, initial key, initial
//! producer schedule), so two nodes agree on the chain exactly when their genesis files agree.
//! This module must never accept a genesis that could produce a different id on another node:
//! unknown fields are refused and the schedule is checked.

use std::path::{Path, PathBuf};

use rempart_core::key::PublicKey;
use rempart_core::{Checksum256, Name, TimePoint, packed_struct, to_bytes};
use serde::Deserialize;

/// Why the genesis file was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GenesisError {
    /// The file could not be read.
    #[error("cannot read genesis {path}: {source}")]
    Read {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The file is not valid JSON for this schema.
    #[error("genesis {path}: {source}")]
    Parse {
        /// The file.
        path: PathBuf,
        /// What serde said (with line and column).
        source: serde_json::Error,
    },
    /// A value parsed but is not acceptable.
    #[error("genesis: {0}")]
    Invalid(String),
}

packed_struct! {
    /// One producer and the key its blocks are signed with (`producer_key`).
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct ProducerKey {
        /// The producer account.
        pub producer_name: Name,
        /// Its block-signing key.
        pub block_signing_key: PublicKey,
    }
}

packed_struct! {
    /// A producer schedule: producers take turns in this order.
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize, serde::Serialize)]
    #[serde(deny_unknown_fields)]
    pub struct ProducerSchedule {
        /// Incremented at every change.
        pub version: u32,
        /// Producers in turn order.
        pub producers: Vec<ProducerKey>,
    }
}

packed_struct! {
    /// The genesis state.
    #[derive(Debug, Clone, PartialEq, Eq, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Genesis {
        /// Time of block 1; produced blocks follow in later slots.
        pub initial_timestamp: TimePoint,
        /// Owner and active key of the `eosio` account.
        pub initial_key: PublicKey,
        /// The first producer schedule (its version must be 0).
        pub initial_schedule: ProducerSchedule,
    }
}

/// Most producers in a schedule, as in Antelope.
pub const MAX_PRODUCERS: usize = 125;

impl Genesis {
    /// Reads and checks a genesis file.
    pub fn load(path: &Path) -> Result<Genesis, GenesisError> {
        let text = std::fs::read_to_string(path)
            .map_err(|source| GenesisError::Read { path: path.to_owned(), source })?;
        let g: Genesis = serde_json::from_str(&text)
            .map_err(|source| GenesisError::Parse { path: path.to_owned(), source })?;
        g.validate()?;
        Ok(g)
    }

    /// Checks the schedule: version 0, 1 to 125 distinct producers.
    pub fn validate(&self) -> Result<(), GenesisError> {
        validate_schedule(&self.initial_schedule.producers).map_err(GenesisError::Invalid)?;
        if self.initial_schedule.version != 0 {
            return Err(GenesisError::Invalid("initial_schedule.version must be 0".into()));
        }
        if self.initial_timestamp.0 < 946_684_800_000_000 {
            return Err(GenesisError::Invalid("initial_timestamp must be after 2000-01-01".into()));
        }
        Ok(())
    }

    /// sha256 of the packed genesis.
    pub fn chain_id(&self) -> Checksum256 {
        Checksum256::hash(&to_bytes(self))
    }
}

impl Genesis {
    /// Writes the initial state into an empty database: chain id and genesis, the privileged
    /// `eosio` account with `initial_key` as owner and active, the producer schedule and, when
    /// given, the packed ABI of `eosio`.
    pub fn install(
        &self,
        w: &mut crate::store::BlockWrite<'_>,
        eosio_abi: Option<&[u8]>,
    ) -> Result<(), crate::store::StoreError> {
        use crate::account::{AccountRecord, PermissionRecord};
        use crate::authority::Authority;
        use crate::store::key;
        use rempart_core::BlockTimestamp;

        let now = BlockTimestamp::from_time_point(self.initial_timestamp);
        let eosio = Name::from_const("eosio");
        let owner = Name::from_const("owner");
        w.set_genesis(&self.chain_id(), &to_bytes(self))?;
        let account = AccountRecord {
            name: eosio,
            creation_date: now,
            privileged: true,
            last_code_update: now,
        };
        w.put(&key::account(eosio), &to_bytes(&account))?;
        let auth = Authority::single_key(self.initial_key);
        let perm = PermissionRecord { parent: Name(0), auth: auth.clone(), last_updated: now };
        w.put(&key::permission(eosio, owner), &to_bytes(&perm))?;
        let perm = PermissionRecord { parent: owner, auth, last_updated: now };
        w.put(&key::permission(eosio, Name::from_const("active")), &to_bytes(&perm))?;
        w.put(&key::schedule(), &to_bytes(&self.initial_schedule))?;
        if let Some(abi) = eosio_abi {
            w.put(&key::abi(eosio), abi)?;
        }
        Ok(())
    }
}

/// Why `init` failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum InitError {
    /// The data directory could not be created.
    #[error("cannot create data directory {path}: {source}")]
    DataDir {
        /// The directory.
        path: PathBuf,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The store failed or belongs to another chain.
    #[error(transparent)]
    Store(#[from] crate::store::StoreError),
}

/// Creates (or checks) the state database in `data_dir` for this genesis and returns the chain
/// id. Running it again on the same chain changes nothing; on another chain's data it fails.
pub fn init_data_dir(genesis: &Genesis, data_dir: &Path) -> Result<Checksum256, InitError> {
    std::fs::create_dir_all(data_dir)
        .map_err(|source| InitError::DataDir { path: data_dir.to_owned(), source })?;
    let store = crate::store::Store::open(&data_dir.join("state.redb"))?;
    let expected = genesis.chain_id();
    store.write(|w| -> Result<(), crate::store::StoreError> {
        match w.chain_id()? {
            Some(found) if found == expected => Ok(()),
            Some(found) => Err(crate::store::StoreError::WrongChain { expected, found }),
            None => genesis.install(w, Some(&crate::chain::eosio_abi_bin())),
        }
    })?;
    Ok(expected)
}

/// Checks a list of producers for a schedule: 1 to [`MAX_PRODUCERS`], no name twice.
pub fn validate_schedule(producers: &[ProducerKey]) -> Result<(), String> {
    if producers.is_empty() || producers.len() > MAX_PRODUCERS {
        return Err(format!("a schedule names 1 to {MAX_PRODUCERS} producers"));
    }
    let mut names: Vec<Name> = producers.iter().map(|p| p.producer_name).collect();
    names.sort();
    if names.windows(2).any(|w| w[0] == w[1]) {
        return Err("a producer appears twice in the schedule".into());
    }
    Ok(())
}

#[cfg(test)]
mod tests;
