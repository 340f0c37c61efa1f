//! The node's durable state: one redb file holding chain state, the block log and its indexes.
//!
//! Everything a block changes is written in one redb write transaction ([`BlockWrite`]) that is
//! committed with an fsync, so a `kill -9` at any instant leaves either the previous head or the
//! new one on disk, never a mixture. Transactions inside a block stage their changes in an
//! [`Overlay`] first; a failed transaction drops its overlay and leaves nothing behind. The
//! history indexes (transaction → block, account → actions) are gathered in memory while the
//! block fills and written in key order inside the same write transaction, just before it
//! commits. Recently read state is cached in memory across blocks, kept equal to the block's
//! writes and dropped whenever a block does not commit.
//!
//! Why redb (4.6, the version in Cargo.lock): it is written in Rust (no C library to build; it
//! calls libc only for `pread`/`pwrite` and file locks) and is ACID with write transactions one
//! at a time, which is exactly one write transaction per block. Its data lives in copy-on-write
//! B+trees, and a commit at the default durability (one fsync, with checksums and a transaction
//! id that let an interrupted commit be detected and rolled back) never overwrites the last
//! committed tree, so after a `kill -9` the file opens at the last committed block (an unclean
//! shutdown costs a repair scan at open, not data). It runs no background thread: nothing
//! compacts or flushes behind our back, and its `compact()` is explicit and never called here.
//! Readers get MVCC snapshots that do not block the writer, so the chain API reads while the
//! apply thread writes the next block. It is maintained (its README says "stable and
//! maintained", with releases every few weeks: 4.4 to 4.6 from October to November 2026) and
//! licensed MIT OR Apache-2.0.
//!
//! This module knows bytes and keys, not chain rules: it must never decide whether a transaction
//! or block is valid, and it never reads the clock.

use std::collections::BTreeMap;
use std::ops::Bound;
use std::path::Path;

use redb::{
    Database, ReadOnlyTable, ReadTransaction, ReadableDatabase, ReadableTable, Table,
    TableDefinition, WriteTransaction,
};
use rempart_core::codec::{Pack, Unpack};
use rempart_core::{BlockTimestamp, Checksum256, Name, from_bytes, packed_struct, to_bytes};

/// Chain state: prefixed keys (see [`key`]) to packed records.
const STATE: TableDefinition<&[u8], &[u8]> = TableDefinition::new("state");
/// Signed blocks by number, as packed `signed_block` bytes.
const BLOCKS: TableDefinition<u32, &[u8]> = TableDefinition::new("blocks");
/// Block id by number (TaPoS and `get_block` by number).
const BLOCK_ID_BY_NUM: TableDefinition<u32, &[u8; 32]> = TableDefinition::new("block_id_by_num");
/// Block number by id.
const BLOCK_NUM_BY_ID: TableDefinition<&[u8; 32], u32> = TableDefinition::new("block_num_by_id");
/// Transaction id → expiration (seconds): the duplicate set, pruned once expired.
const TX_DEDUP: TableDefinition<&[u8; 32], u32> = TableDefinition::new("tx_dedup");
/// (expiration seconds, transaction id) → (): the pruning order of [`TX_DEDUP`].
const TX_EXPIRY: TableDefinition<(u32, &[u8; 32]), ()> = TableDefinition::new("tx_expiry");
/// Transaction id → block number that included it (history), kept forever.
const TX_BLOCK: TableDefinition<&[u8; 32], u32> = TableDefinition::new("tx_block");
/// (account, account sequence) → packed [`ActionPosition`]: the actions each account took part
/// in (`get_actions`), numbered from 0 per account in the order the chain applied them.
const ACCOUNT_ACTIONS: TableDefinition<(u64, u64), &[u8]> = TableDefinition::new("account_actions");
/// Singletons: the chain id, the genesis, the head.
const META: TableDefinition<&str, &[u8]> = TableDefinition::new("meta");

/// A state key and its value.
pub type Entry = (Vec<u8>, Vec<u8>);

const META_CHAIN_ID: &str = "chain_id";
const META_GENESIS: &str = "genesis";
const META_HEAD: &str = "head";

/// Why the store failed. Every variant means the disk or the file is at fault, not the input.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum StoreError {
    /// redb reported an error.
    #[error("state database: {0}; check the disk and the data directory's permissions")]
    Db(#[from] redb::Error),
    /// A stored record did not decode: the file is damaged or from another version.
    #[error("stored {what} is corrupt ({source}); restore the data directory from a snapshot")]
    Corrupt {
        /// Which record.
        what: &'static str,
        /// The decoding error.
        source: rempart_core::DecodeError,
    },
    /// The database was initialised for another chain.
    #[error("data directory belongs to chain {found}, not {expected}; use another data_dir")]
    WrongChain {
        /// Chain id in the configuration.
        expected: Checksum256,
        /// Chain id in the database.
        found: Checksum256,
    },
    /// The database has no genesis yet.
    #[error("data directory is not initialised; run `rempart-node init` first")]
    NotInitialised,
}

macro_rules! from_redb {
    ($($t:ty),*) => {$(
        impl From<$t> for StoreError {
            fn from(e: $t) -> Self {
                StoreError::Db(e.into())
            }
        }
    )*};
}
from_redb!(
    redb::DatabaseError,
    redb::TransactionError,
    redb::TableError,
    redb::StorageError,
    redb::CommitError
);

packed_struct! {
    /// The chain head as stored: what `get_info` reports and where the next block starts.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct Head {
        /// Head block number.
        pub block_num: u32,
        /// Head block id.
        pub block_id: Checksum256,
        /// Head block time slot.
        pub timestamp: BlockTimestamp,
        /// Producer of the head block.
        pub producer: Name,
        /// Last irreversible block number.
        pub lib_num: u32,
        /// Last irreversible block id.
        pub lib_id: Checksum256,
        /// Version of the active producer schedule.
        pub schedule_version: u32,
    }
}

/// Key layouts of the [`STATE`] table. Integers are big-endian so that keys sort by value.
pub mod key {
    use rempart_core::{Checksum256, Name};

    /// Account record of `account`.
    pub fn account(account: Name) -> Vec<u8> {
        with_names(b'a', &[account])
    }
    /// Permission `perm` of `account`.
    pub fn permission(account: Name, perm: Name) -> Vec<u8> {
        with_names(b'p', &[account, perm])
    }
    /// Prefix of every permission of `account`.
    pub fn permission_prefix(account: Name) -> Vec<u8> {
        with_names(b'p', &[account])
    }
    /// `linkauth` entry: which permission of `account` an action `code::action` requires
    /// (`action` zero for the whole contract).
    pub fn link(account: Name, code: Name, action: Name) -> Vec<u8> {
        with_names(b'l', &[account, code, action])
    }
    /// ABI bytes of `account`.
    pub fn abi(account: Name) -> Vec<u8> {
        with_names(b'b', &[account])
    }
    /// Code hash of `account` (absent when it has no code).
    pub fn code_hash(account: Name) -> Vec<u8> {
        with_names(b'h', &[account])
    }
    /// Code bytes with this hash.
    pub fn code(hash: &Checksum256) -> Vec<u8> {
        let mut k = vec![b'c'];
        k.extend_from_slice(hash.as_bytes());
        k
    }
    /// Active producer schedule.
    pub fn schedule() -> Vec<u8> {
        vec![b's']
    }
    /// A contract table row.
    pub fn row(code: Name, scope: Name, table: Name, primary: u64) -> Vec<u8> {
        let mut k = with_names(b't', &[code, scope, table]);
        k.extend_from_slice(&primary.to_be_bytes());
        k
    }
    /// Prefix of every row of one contract table in one scope.
    pub fn table_prefix(code: Name, scope: Name, table: Name) -> Vec<u8> {
        with_names(b't', &[code, scope, table])
    }

    fn with_names(tag: u8, names: &[Name]) -> Vec<u8> {
        let mut k = Vec::with_capacity(1 + 8 * names.len());
        k.push(tag);
        for n in names {
            k.extend_from_slice(&n.value().to_be_bytes());
        }
        k
    }
}

/// The node's database file.
#[derive(Debug)]
pub struct Store {
    db: Database,
    /// State values as the last committed block left them, for the next block's reads.
    cache: std::sync::Mutex<StateCache>,
}

/// Most bytes (keys and values) the state cache holds before it starts over.
const CACHE_MAX_BYTES: usize = 32 << 20;
/// Largest value the state cache keeps (code is cached by the VM, compiled).
const CACHE_MAX_VALUE: usize = 4096;

/// Recently read state values (`None`: known absent), exactly as the write transaction that
/// holds it sees them: kept equal to what [`BlockWrite::put`] and [`BlockWrite::delete`]
/// write, handed from one committed block to the next, dropped when a block
/// aborts or its commit fails (it may then hold writes that never reached the disk).
#[derive(Debug, Default)]
struct StateCache {
    values: std::collections::HashMap<Vec<u8>, Option<Vec<u8>>>,
    bytes: usize,
}

impl StateCache {
    fn get(&self, key: &[u8]) -> Option<&Option<Vec<u8>>> {
        self.values.get(key)
    }

    /// Keeps a held entry equal to a value just written (a key it does not hold is read from
    /// the table when asked, which has the write).
    fn refresh(&mut self, key: &[u8], value: Option<&[u8]>) {
        let len = value.map_or(0, <[u8]>::len);
        let Some(slot) = self.values.get_mut(key) else { return };
        let old = slot.as_ref().map_or(0, Vec::len);
        if len > CACHE_MAX_VALUE {
            self.values.remove(key);
            self.bytes -= key.len() + old;
            return;
        }
        *slot = value.map(<[u8]>::to_vec);
        // May pass the bound by one value; the next `set` starts over.
        self.bytes = self.bytes - old + len;
    }

    fn set(&mut self, key: &[u8], value: Option<&[u8]>) {
        let len = value.map_or(0, <[u8]>::len);
        if len > CACHE_MAX_VALUE {
            if let Some(old) = self.values.remove(key) {
                self.bytes -= key.len() + old.map_or(0, |v| v.len());
            }
            return;
        }
        if self.bytes + key.len() + len > CACHE_MAX_BYTES {
            self.values.clear();
            self.bytes = 0;
        }
        self.bytes += key.len() + len;
        if let Some(old) = self.values.insert(key.to_vec(), value.map(<[u8]>::to_vec)) {
            self.bytes -= key.len() + old.map_or(0, |v| v.len());
        }
    }
}

impl Store {
    /// Opens (or creates) the database at `path`.
    pub fn open(path: &Path) -> Result<Store, StoreError> {
        let db = Database::create(path)?;
        let txn = db.begin_write()?;
        {
            // Create every table so that readers never meet a missing one.
            txn.open_table(STATE)?;
            txn.open_table(BLOCKS)?;
            txn.open_table(BLOCK_ID_BY_NUM)?;
            txn.open_table(BLOCK_NUM_BY_ID)?;
            txn.open_table(TX_DEDUP)?;
            txn.open_table(TX_EXPIRY)?;
            txn.open_table(TX_BLOCK)?;
            txn.open_table(ACCOUNT_ACTIONS)?;
            txn.open_table(META)?;
        }
        txn.commit()?;
        Ok(Store { db, cache: Default::default() })
    }

    /// A consistent snapshot for readers (the API); never blocks the writer.
    pub fn read(&self) -> Result<Snapshot, StoreError> {
        let txn = self.db.begin_read()?;
        Ok(Snapshot {
            state: txn.open_table(STATE)?,
            blocks: txn.open_table(BLOCKS)?,
            id_by_num: txn.open_table(BLOCK_ID_BY_NUM)?,
            num_by_id: txn.open_table(BLOCK_NUM_BY_ID)?,
            tx_block: txn.open_table(TX_BLOCK)?,
            account_actions: txn.open_table(ACCOUNT_ACTIONS)?,
            meta: txn.open_table(META)?,
            _txn: txn,
        })
    }

    /// Runs `f` inside one write transaction and commits (with fsync) if it returns `Ok`.
    /// An `Err` from `f` aborts: nothing it wrote reaches the disk.
    pub fn write<R, E>(&self, f: impl FnOnce(&mut BlockWrite<'_>) -> Result<R, E>) -> Result<R, E>
    where
        E: From<StoreError>,
    {
        let txn = self.db.begin_write().map_err(StoreError::from)?;
        // Writers are serialised by redb, so the cache is taken whole for this transaction and
        // given back only if it commits.
        let cache = std::mem::take(&mut *self.cache.lock().unwrap_or_else(|e| e.into_inner()));
        let (result, cache) = {
            let mut w = BlockWrite::open(&txn, cache)?;
            let r = f(&mut w);
            let r = match r {
                Ok(v) => w.write_history().map(|()| v).map_err(E::from),
                Err(e) => Err(e),
            };
            (r, w.cache.into_inner())
        };
        match result {
            Ok(r) => {
                txn.commit().map_err(StoreError::from)?;
                *self.cache.lock().unwrap_or_else(|e| e.into_inner()) = cache;
                Ok(r)
            }
            Err(e) => {
                txn.abort().map_err(StoreError::from)?;
                Err(e)
            }
        }
    }
}

/// A read-only, consistent view of the database.
pub struct Snapshot {
    state: ReadOnlyTable<&'static [u8], &'static [u8]>,
    blocks: ReadOnlyTable<u32, &'static [u8]>,
    id_by_num: ReadOnlyTable<u32, &'static [u8; 32]>,
    num_by_id: ReadOnlyTable<&'static [u8; 32], u32>,
    tx_block: ReadOnlyTable<&'static [u8; 32], u32>,
    account_actions: ReadOnlyTable<(u64, u64), &'static [u8]>,
    meta: ReadOnlyTable<&'static str, &'static [u8]>,
    _txn: ReadTransaction,
}

impl std::fmt::Debug for Snapshot {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Snapshot")
    }
}

impl Snapshot {
    /// A state value.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.state.get(key)?.map(|v| v.value().to_vec()))
    }

    /// A decoded state record.
    pub fn get_record<T: Unpack>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        decode_opt(self.get(key)?, what)
    }

    /// State entries whose key starts with `prefix` and is at least `from`, in key order, at
    /// most `limit` of them.
    pub fn scan(&self, prefix: &[u8], from: &[u8], limit: usize) -> Result<Vec<Entry>, StoreError> {
        let mut out = Vec::new();
        for entry in self.state.range::<&[u8]>(from..)? {
            let (k, v) = entry?;
            if !k.value().starts_with(prefix) || out.len() >= limit {
                break;
            }
            out.push((k.value().to_vec(), v.value().to_vec()));
        }
        Ok(out)
    }

    /// The chain head, `None` before `init`.
    pub fn head(&self) -> Result<Option<Head>, StoreError> {
        decode_opt(self.meta.get(META_HEAD)?.map(|v| v.value().to_vec()), "head")
    }

    /// The chain id, `None` before `init`.
    pub fn chain_id(&self) -> Result<Option<Checksum256>, StoreError> {
        decode_opt(self.meta.get(META_CHAIN_ID)?.map(|v| v.value().to_vec()), "chain id")
    }

    /// The packed genesis stored at `init`.
    pub fn genesis(&self) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.meta.get(META_GENESIS)?.map(|v| v.value().to_vec()))
    }

    /// Packed signed block by number.
    pub fn block(&self, num: u32) -> Result<Option<Vec<u8>>, StoreError> {
        Ok(self.blocks.get(num)?.map(|v| v.value().to_vec()))
    }

    /// Block id by number.
    pub fn block_id(&self, num: u32) -> Result<Option<Checksum256>, StoreError> {
        Ok(self.id_by_num.get(num)?.map(|v| Checksum256(*v.value())))
    }

    /// Block number by id.
    pub fn block_num(&self, id: &Checksum256) -> Result<Option<u32>, StoreError> {
        Ok(self.num_by_id.get(id.as_bytes())?.map(|v| v.value()))
    }

    /// Block that included transaction `id`.
    pub fn transaction_block(&self, id: &Checksum256) -> Result<Option<u32>, StoreError> {
        Ok(self.tx_block.get(id.as_bytes())?.map(|v| v.value()))
    }

    /// The sequence number of the last action `account` took part in, `None` if none.
    pub fn last_account_action(&self, account: Name) -> Result<Option<u64>, StoreError> {
        let a = account.value();
        let mut range = self.account_actions.range((a, 0)..=(a, u64::MAX))?;
        Ok(range.next_back().transpose()?.map(|(k, _)| k.value().1))
    }

    /// The actions `account` took part in with sequence numbers in `from..=to`, in order.
    pub fn account_actions(
        &self,
        account: Name,
        from: u64,
        to: u64,
    ) -> Result<Vec<(u64, ActionPosition)>, StoreError> {
        let a = account.value();
        let mut out = Vec::new();
        for entry in self.account_actions.range((a, from)..=(a, to))? {
            let (k, v) = entry?;
            let pos = from_bytes(v.value())
                .map_err(|source| StoreError::Corrupt { what: "action index", source })?;
            out.push((k.value().1, pos));
        }
        Ok(out)
    }
}

packed_struct! {
    /// Where an action of the account action index ([`Snapshot::account_actions`]) is.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    pub struct ActionPosition {
        /// The block.
        pub block_num: u32,
        /// The transaction's index among the block's transactions.
        pub trx_index: u32,
        /// The action's index among the transaction's actions.
        pub action_index: u32,
    }
}

/// What a block adds to the history indexes, kept in memory while the block fills and written
/// once, in key order, just before the block commits ([`BlockWrite::write_history`]).
#[derive(Debug, Default)]
struct History {
    /// Transaction ids and their block, in apply order.
    transactions: Vec<([u8; 32], u32)>,
    ids: std::collections::HashSet<[u8; 32]>,
    /// (account, position) in apply order.
    actions: Vec<(u64, ActionPosition)>,
}

/// Everything one block writes, inside one redb write transaction.
pub struct BlockWrite<'t> {
    state: Table<'t, &'static [u8], &'static [u8]>,
    blocks: Table<'t, u32, &'static [u8]>,
    id_by_num: Table<'t, u32, &'static [u8; 32]>,
    num_by_id: Table<'t, &'static [u8; 32], u32>,
    tx_dedup: Table<'t, &'static [u8; 32], u32>,
    tx_expiry: Table<'t, (u32, &'static [u8; 32]), ()>,
    tx_block: Table<'t, &'static [u8; 32], u32>,
    account_actions: Table<'t, (u64, u64), &'static [u8]>,
    meta: Table<'t, &'static str, &'static [u8]>,
    cache: std::cell::RefCell<StateCache>,
    history: History,
}

impl std::fmt::Debug for BlockWrite<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("BlockWrite")
    }
}

impl<'t> BlockWrite<'t> {
    fn open(txn: &'t WriteTransaction, cache: StateCache) -> Result<Self, StoreError> {
        Ok(BlockWrite {
            state: txn.open_table(STATE)?,
            blocks: txn.open_table(BLOCKS)?,
            id_by_num: txn.open_table(BLOCK_ID_BY_NUM)?,
            num_by_id: txn.open_table(BLOCK_NUM_BY_ID)?,
            tx_dedup: txn.open_table(TX_DEDUP)?,
            tx_expiry: txn.open_table(TX_EXPIRY)?,
            tx_block: txn.open_table(TX_BLOCK)?,
            account_actions: txn.open_table(ACCOUNT_ACTIONS)?,
            meta: txn.open_table(META)?,
            cache: std::cell::RefCell::new(cache),
            history: History::default(),
        })
    }

    /// A state value as this block sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        if let Some(v) = self.cache.borrow().get(key) {
            return Ok(v.clone());
        }
        let v = self.state.get(key)?.map(|v| v.value().to_vec());
        self.cache.borrow_mut().set(key, v.as_deref());
        Ok(v)
    }

    /// The first state entry with a key in `(after, ..)` (or `[from, ..)`) that starts with
    /// `prefix`.
    fn next_after(&self, prefix: &[u8], lower: Bound<&[u8]>) -> Result<Option<Entry>, StoreError> {
        let mut range = self.state.range::<&[u8]>((lower, Bound::Unbounded))?;
        match range.next() {
            Some(entry) => {
                let (k, v) = entry?;
                if k.value().starts_with(prefix) {
                    Ok(Some((k.value().to_vec(), v.value().to_vec())))
                } else {
                    Ok(None)
                }
            }
            None => Ok(None),
        }
    }

    /// The last state entry with a key in `[prefix, upper)`; the caller bounds `upper` so that
    /// every key in the range starts with `prefix`.
    fn last_before(&self, prefix: &[u8], upper: Bound<&[u8]>) -> Result<Option<Entry>, StoreError> {
        let mut range = self.state.range::<&[u8]>((Bound::Included(prefix), upper))?;
        match range.next_back() {
            Some(entry) => {
                let (k, v) = entry?;
                Ok(Some((k.value().to_vec(), v.value().to_vec())))
            }
            None => Ok(None),
        }
    }

    /// Stores a state value.
    pub fn put(&mut self, key: &[u8], value: &[u8]) -> Result<(), StoreError> {
        self.state.insert(key, value)?;
        self.cache.get_mut().refresh(key, Some(value));
        Ok(())
    }

    /// Removes a state value.
    pub fn delete(&mut self, key: &[u8]) -> Result<(), StoreError> {
        self.state.remove(key)?;
        self.cache.get_mut().refresh(key, None);
        Ok(())
    }

    /// The head as of this write (the previous block's, until [`BlockWrite::set_head`]).
    pub fn head(&self) -> Result<Option<Head>, StoreError> {
        decode_opt(self.meta.get(META_HEAD)?.map(|v| v.value().to_vec()), "head")
    }

    /// Records the new head.
    pub fn set_head(&mut self, head: &Head) -> Result<(), StoreError> {
        self.meta.insert(META_HEAD, to_bytes(head).as_slice())?;
        Ok(())
    }

    /// The chain id, `None` before `init`.
    pub fn chain_id(&self) -> Result<Option<Checksum256>, StoreError> {
        decode_opt(self.meta.get(META_CHAIN_ID)?.map(|v| v.value().to_vec()), "chain id")
    }

    /// Records the chain id and genesis (at `init` only).
    pub fn set_genesis(
        &mut self,
        chain_id: &Checksum256,
        genesis: &[u8],
    ) -> Result<(), StoreError> {
        self.meta.insert(META_CHAIN_ID, chain_id.as_bytes().as_slice())?;
        self.meta.insert(META_GENESIS, genesis)?;
        Ok(())
    }

    /// Block id by number (TaPoS).
    pub fn block_id(&self, num: u32) -> Result<Option<Checksum256>, StoreError> {
        Ok(self.id_by_num.get(num)?.map(|v| Checksum256(*v.value())))
    }

    /// Appends a block to the log and its indexes.
    pub fn append_block(
        &mut self,
        num: u32,
        id: &Checksum256,
        packed: &[u8],
    ) -> Result<(), StoreError> {
        self.blocks.insert(num, packed)?;
        self.id_by_num.insert(num, id.as_bytes())?;
        self.num_by_id.insert(id.as_bytes(), num)?;
        Ok(())
    }

    /// Whether a transaction id was ever included. The history index answers it: an id commits
    /// to the transaction's expiration, so the same id again is a duplicate until it expires
    /// and expired after, and a separate duplicate set would only repeat the index.
    pub fn is_duplicate(&self, id: &Checksum256) -> Result<bool, StoreError> {
        Ok(self.history.ids.contains(id.as_bytes()) || self.tx_block.get(id.as_bytes())?.is_some())
    }

    /// Adds a transaction to the history index, which is also the duplicate set
    /// ([`BlockWrite::is_duplicate`]); `expiration` is no longer stored apart.
    pub fn record_transaction(
        &mut self,
        id: &Checksum256,
        _expiration: u32,
        block_num: u32,
    ) -> Result<(), StoreError> {
        self.history.ids.insert(*id.as_bytes());
        self.history.transactions.push((*id.as_bytes(), block_num));
        Ok(())
    }

    /// Adds a transaction's actions to the account action index: each action under its
    /// contract account and every actor of its authorizations, once per account.
    pub fn record_actions(
        &mut self,
        block_num: u32,
        trx_index: u32,
        actions: &[rempart_core::transaction::Action],
    ) {
        for (i, act) in actions.iter().enumerate() {
            let pos = ActionPosition {
                block_num,
                trx_index,
                action_index: u32::try_from(i).unwrap_or(u32::MAX),
            };
            let accounts =
                std::iter::once(act.account).chain(act.authorization.iter().map(|l| l.actor));
            let mut seen: Vec<Name> = Vec::with_capacity(1 + act.authorization.len());
            for a in accounts {
                if !seen.contains(&a) {
                    seen.push(a);
                    self.history.actions.push((a.value(), pos));
                }
            }
        }
    }

    /// Writes what the block added to the history indexes, in key order (most of a block's
    /// actions go to a few accounts, whose entries are then appended side by side).
    fn write_history(&mut self) -> Result<(), StoreError> {
        let mut h = std::mem::take(&mut self.history);
        h.transactions.sort_unstable();
        for (id, num) in &h.transactions {
            self.tx_block.insert(id, *num)?;
        }
        // Stable: an account's actions keep their apply order.
        h.actions.sort_by_key(|(a, _)| *a);
        let mut next: Option<(u64, u64)> = None;
        for (a, pos) in &h.actions {
            let seq = match next {
                Some((acc, seq)) if acc == *a => seq,
                _ => {
                    let mut range = self.account_actions.range((*a, 0)..=(*a, u64::MAX))?;
                    let last = range.next_back().transpose()?.map(|(k, _)| k.value().1);
                    last.map_or(0, |l| l + 1)
                }
            };
            self.account_actions.insert((*a, seq), to_bytes(pos).as_slice())?;
            next = Some((*a, seq + 1));
        }
        Ok(())
    }

    /// Drops entries of the former duplicate set (data directories written before the history
    /// index took its place) that expired strictly before `now_sec` (block time, never the
    /// wall clock). Returns how many were dropped.
    pub fn prune_expired(&mut self, now_sec: u32) -> Result<usize, StoreError> {
        let mut expired = Vec::new();
        for entry in self.tx_expiry.range::<(u32, &[u8; 32])>(..(now_sec, &[0u8; 32]))? {
            let (k, _) = entry?;
            let (exp, id) = k.value();
            expired.push((exp, *id));
        }
        for (exp, id) in &expired {
            self.tx_expiry.remove((*exp, id))?;
            self.tx_dedup.remove(id)?;
        }
        Ok(expired.len())
    }
}

/// One transaction's staged changes over a [`BlockWrite`]: reads see the staged values first;
/// [`Overlay::commit`] applies them, dropping the overlay discards them.
#[derive(Debug)]
pub struct Overlay<'b, 't> {
    base: &'b mut BlockWrite<'t>,
    changes: BTreeMap<Vec<u8>, Option<Vec<u8>>>,
}

impl<'b, 't> Overlay<'b, 't> {
    /// An empty overlay over `base`.
    pub fn new(base: &'b mut BlockWrite<'t>) -> Self {
        Overlay { base, changes: BTreeMap::new() }
    }

    /// The value as this transaction sees it.
    pub fn get(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        match self.changes.get(key) {
            Some(v) => Ok(v.clone()),
            None => self.base.get(key),
        }
    }

    /// A decoded record as this transaction sees it.
    pub fn get_record<T: Unpack>(
        &self,
        key: &[u8],
        what: &'static str,
    ) -> Result<Option<T>, StoreError> {
        decode_opt(self.get(key)?, what)
    }

    /// Stages a value.
    pub fn put(&mut self, key: Vec<u8>, value: Vec<u8>) {
        self.changes.insert(key, Some(value));
    }

    /// Stages a packed record.
    pub fn put_record<T: Pack>(&mut self, key: Vec<u8>, value: &T) {
        self.put(key, to_bytes(value));
    }

    /// Stages a removal.
    pub fn delete(&mut self, key: Vec<u8>) {
        self.changes.insert(key, None);
    }

    /// The first entry (as this transaction sees it) whose key starts with `prefix` and is at
    /// or after `from` (`inclusive`) or strictly after it.
    pub fn next(
        &self,
        prefix: &[u8],
        from: &[u8],
        inclusive: bool,
    ) -> Result<Option<Entry>, StoreError> {
        let mut lower: Vec<u8> = from.to_vec();
        let mut incl = inclusive;
        loop {
            let bound = if incl {
                Bound::Included(lower.as_slice())
            } else {
                Bound::Excluded(lower.as_slice())
            };
            let base = self.base.next_after(prefix, bound)?;
            let staged = self
                .changes
                .range::<[u8], _>((bound, Bound::Unbounded))
                .next()
                .filter(|(k, _)| k.starts_with(prefix))
                .map(|(k, v)| (k.clone(), v.clone()));
            let Some(pick) = nearer(base, staged, true) else {
                return Ok(None);
            };
            // A base entry may be shadowed by a staged change.
            let value = match self.changes.get(&pick.0) {
                Some(v) => v.clone(),
                None => pick.1,
            };
            match value {
                Some(v) => return Ok(Some((pick.0, v))),
                None => {
                    lower = pick.0;
                    incl = false;
                }
            }
        }
    }

    /// The last entry (as this transaction sees it) whose key starts with `prefix` and is
    /// strictly before `before`, or the last one with that prefix when `before` is `None`: one
    /// ordered lookup in the block and one in the staged changes, plus one more of each per
    /// staged removal it steps over.
    pub fn previous(
        &self,
        prefix: &[u8],
        before: Option<&[u8]>,
    ) -> Result<Option<Entry>, StoreError> {
        let end = prefix_end(prefix);
        let mut upper: Option<Vec<u8>> = match (before, end) {
            (Some(b), _) if b <= prefix => return Ok(None),
            (Some(b), Some(e)) if e.as_slice() < b => Some(e),
            (Some(b), _) => Some(b.to_vec()),
            (None, e) => e,
        };
        loop {
            let bound = match &upper {
                Some(u) => Bound::Excluded(u.as_slice()),
                None => Bound::Unbounded,
            };
            let base = self.base.last_before(prefix, bound)?;
            let staged = self
                .changes
                .range::<[u8], _>((Bound::Included(prefix), bound))
                .next_back()
                .map(|(k, v)| (k.clone(), v.clone()));
            let Some(pick) = nearer(base, staged, false) else {
                return Ok(None);
            };
            if !pick.0.starts_with(prefix) {
                return Ok(None);
            }
            // A base entry may be shadowed by a staged change.
            let value = match self.changes.get(&pick.0) {
                Some(v) => v.clone(),
                None => pick.1,
            };
            match value {
                Some(v) => return Ok(Some((pick.0, v))),
                None => upper = Some(pick.0),
            }
        }
    }

    /// Applies the staged changes to the block.
    pub fn commit(self) -> Result<(), StoreError> {
        for (k, v) in self.changes {
            match v {
                Some(v) => self.base.put(&k, &v)?,
                None => self.base.delete(&k)?,
            }
        }
        Ok(())
    }

    /// The block write under this overlay, for the non-state parts of a transaction (dedup).
    pub fn base(&self) -> &BlockWrite<'t> {
        self.base
    }
}

/// The entry an [`Overlay`] walk steps to: whichever of the block's and the staged candidates
/// comes first in the walk's direction (`forward`: ascending keys), the staged one on a tie. A
/// staged `None` is a removal the caller steps over.
fn nearer(
    base: Option<Entry>,
    staged: Option<(Vec<u8>, Option<Vec<u8>>)>,
    forward: bool,
) -> Option<(Vec<u8>, Option<Vec<u8>>)> {
    match (base, staged) {
        (None, None) => None,
        (Some((bk, bv)), None) => Some((bk, Some(bv))),
        (None, Some(s)) => Some(s),
        (Some((bk, bv)), Some((sk, sv))) => {
            if (forward && sk <= bk) || (!forward && sk >= bk) {
                Some((sk, sv))
            } else {
                Some((bk, Some(bv)))
            }
        }
    }
}

/// The first key after every key that starts with `prefix`; `None` when there is none (the
/// prefix is empty or all `0xff`).
fn prefix_end(prefix: &[u8]) -> Option<Vec<u8>> {
    let mut end = prefix.to_vec();
    while let Some(last) = end.pop() {
        if last < 0xff {
            end.push(last + 1);
            return Some(end);
        }
    }
    None
}

fn decode_opt<T: Unpack>(v: Option<Vec<u8>>, what: &'static str) -> Result<Option<T>, StoreError> {
    v.map(|b| from_bytes(&b).map_err(|source| StoreError::Corrupt { what, source })).transpose()
}

#[cfg(test)]
mod tests;
