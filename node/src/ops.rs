//! Offline operations on a role's data directory: `snapshot` (the whole database at its head,
//! read in one redb read transaction, into a versioned, checksummed file), `restore` (such a
//! file into an empty data directory) and `replay` (state rebuilt from the block log by
//! re-applying every block through [`Chain::apply_block`] into a fresh store, then compared
//! with the original by a state digest).
//!
//! A snapshot holds the chain id, the genesis, the head, every state record and the block log
//! with its ids; restore rebuilds the transaction indexes (history and the duplicate set) from
//! the blocks, so a restored node serves the same chain API and refuses the same duplicates.
//!
//! These run while the node is stopped: redb locks the database file, so each one refuses a
//! data directory that a running node holds. They must never write into the data directory
//! they read from (replay writes its rebuilt store beside it) nor leave a half-restored one.

use std::io::Write;
use std::path::{Path, PathBuf};
use std::sync::Arc;

use rempart_core::block::SignedBlock;
use rempart_core::codec::{Reader, write_varuint32};
use rempart_core::transaction::UnpackLimits;
use rempart_core::{Checksum256, DecodeError, from_bytes, to_bytes};

use crate::chain::{BlockError, Chain, ChainError};
use crate::config::Limits;
use crate::genesis::Genesis;
use crate::store::{Head, Snapshot, Store, StoreError};

/// First bytes of every snapshot file.
pub const SNAPSHOT_MAGIC: &[u8; 8] = b"RMPSNAP\0";

/// The snapshot format this build writes and reads.
pub const SNAPSHOT_VERSION: u32 = 1;

/// The state database's file name inside a data directory.
pub const STATE_FILE: &str = "state.redb";

/// The rebuilt database's file name inside a data directory (written by [`replay`]).
pub const REPLAY_FILE: &str = "replay.redb";

/// State entries read per range scan while walking the whole state.
const SCAN_CHUNK: usize = 4096;

/// Why an operation failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum OpsError {
    /// The database could not be read or written.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The database is open in another process.
    #[error("{0} is in use by another process; stop the node before this operation")]
    InUse(PathBuf),
    /// The chain could not be opened over the fresh store.
    #[error(transparent)]
    Chain(#[from] ChainError),
    /// A block of the log was refused when re-applied.
    #[error("replay stopped at block {block_num}: {source}; the block log is damaged")]
    Block {
        /// The block.
        block_num: u32,
        /// Why it was refused.
        source: BlockError,
    },
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// The error.
        source: std::io::Error,
    },
    /// The data directory has no chain yet.
    #[error("{0} holds no chain; run `rempart-node init` (or restore a snapshot) first")]
    NotInitialised(PathBuf),
    /// The data directory was initialised but the node never made its genesis block.
    #[error("{0} has no blocks yet; run the node once (it makes block 1) before this operation")]
    NoBlocks(PathBuf),
    /// Restore refuses to write over anything.
    #[error("{0} is not empty; restore only into an empty or missing data directory")]
    NotEmpty(PathBuf),
    /// The input is not a snapshot file.
    #[error("{0} is not a rempart-node snapshot (bad magic)")]
    NotSnapshot(PathBuf),
    /// The snapshot was written by another format version.
    #[error(
        "snapshot format version {found} is not supported (this build reads version {SNAPSHOT_VERSION})"
    )]
    Version {
        /// The version in the file.
        found: u32,
    },
    /// The trailing checksum does not match the content.
    #[error("{0} is damaged: its checksum does not match its content; take the snapshot again")]
    Checksum(PathBuf),
    /// The content does not decode although its checksum matches.
    #[error("snapshot content does not decode ({0}); it was written by an incompatible build")]
    Malformed(DecodeError),
    /// The snapshot (or the database) belongs to another chain than the configured genesis.
    #[error("the snapshot is of chain {found}, the configured genesis is chain {expected}")]
    WrongChain {
        /// Chain id of the configured genesis.
        expected: Checksum256,
        /// Chain id in the snapshot.
        found: Checksum256,
    },
    /// A block the head needs is missing from the log.
    #[error("block {0} is missing from the block log; the database is damaged")]
    MissingBlock(u32),
    /// After restoring, the state digest differs from the one recorded in the snapshot.
    #[error("restored state digest {found} differs from the snapshot's {expected}")]
    RestoredDigest {
        /// Digest recorded in the snapshot.
        expected: Checksum256,
        /// Digest of the restored database.
        found: Checksum256,
    },
}

/// What a snapshot holds (or held, after a restore).
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SnapshotSummary {
    /// The chain id.
    pub chain_id: Checksum256,
    /// The head at the time of the snapshot.
    pub head: Head,
    /// Number of state records.
    pub state_entries: u64,
    /// Number of blocks in the log.
    pub blocks: u32,
    /// [`state_digest`] of the state.
    pub state_digest: Checksum256,
}

/// The outcome of [`replay`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ReplayReport {
    /// The head that was replayed up to.
    pub head: u32,
    /// Digest of the original state.
    pub original: Checksum256,
    /// Digest of the rebuilt state.
    pub rebuilt: Checksum256,
    /// Where the rebuilt database is.
    pub rebuilt_path: PathBuf,
}

impl ReplayReport {
    /// Whether the rebuilt state equals the original.
    pub fn matches(&self) -> bool {
        self.original == self.rebuilt
    }
}

fn open_store(path: &Path) -> Result<Store, OpsError> {
    match Store::open(path) {
        Ok(s) => Ok(s),
        Err(StoreError::Db(redb::Error::DatabaseAlreadyOpen)) => {
            Err(OpsError::InUse(path.to_owned()))
        }
        Err(e) => Err(e.into()),
    }
}

fn open_existing(data_dir: &Path) -> Result<Store, OpsError> {
    let path = data_dir.join(STATE_FILE);
    if !path.is_file() {
        return Err(OpsError::NotInitialised(data_dir.to_owned()));
    }
    open_store(&path)
}

fn io(path: &Path) -> impl FnOnce(std::io::Error) -> OpsError + '_ {
    move |source| OpsError::Io { path: path.to_owned(), source }
}

/// Visits every state record in key order, in chunks of one range scan each.
fn for_each_state(snap: &Snapshot, mut f: impl FnMut(&[u8], &[u8])) -> Result<u64, StoreError> {
    let mut from: Vec<u8> = Vec::new();
    let mut count = 0u64;
    loop {
        let chunk = snap.scan(&[], &from, SCAN_CHUNK)?;
        for (k, v) in &chunk {
            f(k, v);
        }
        count += chunk.len() as u64;
        match chunk.last() {
            Some((k, _)) if chunk.len() == SCAN_CHUNK => {
                // The smallest key after `k`.
                from = k.clone();
                from.push(0);
            }
            _ => return Ok(count),
        }
    }
}

/// sha256 over every state record (length-prefixed key and value, in key order) and the packed
/// head: two databases with the same digest hold the same chain state at the same head.
pub fn state_digest(snap: &Snapshot) -> Result<Checksum256, OpsError> {
    let mut buf = Vec::new();
    let mut running = Checksum256::hash(b"rempart-node state digest v1");
    for_each_state(snap, |k, v| {
        write_varuint32(&mut buf, k.len() as u32);
        buf.extend_from_slice(k);
        write_varuint32(&mut buf, v.len() as u32);
        buf.extend_from_slice(v);
        if buf.len() >= 1 << 20 {
            running = Checksum256::hash_parts(&[running.as_bytes(), &buf]);
            buf.clear();
        }
    })?;
    let head = snap.head()?.map(|h| to_bytes(&h)).unwrap_or_default();
    Ok(Checksum256::hash_parts(&[running.as_bytes(), &buf, &head]))
}

/// The state digest of the database in `data_dir`.
pub fn digest_of(data_dir: &Path) -> Result<Checksum256, OpsError> {
    let store = open_existing(data_dir)?;
    state_digest(&store.read()?)
}

fn put_bytes(out: &mut Vec<u8>, b: &[u8]) {
    write_varuint32(out, b.len() as u32);
    out.extend_from_slice(b);
}

/// Writes a snapshot of the database in `data_dir` to `out` (through a temporary file renamed
/// into place once fsync'd). Everything is read in one read transaction: the state, the log
/// and the head belong together.
pub fn snapshot(data_dir: &Path, out: &Path) -> Result<SnapshotSummary, OpsError> {
    let store = open_existing(data_dir)?;
    let snap = store.read()?;
    let (Some(chain_id), Some(genesis)) = (snap.chain_id()?, snap.genesis()?) else {
        return Err(OpsError::NotInitialised(data_dir.to_owned()));
    };
    let head = snap.head()?.ok_or_else(|| OpsError::NoBlocks(data_dir.to_owned()))?;
    let state_digest = state_digest(&snap)?;

    let mut body = Vec::new();
    body.extend_from_slice(SNAPSHOT_MAGIC);
    body.extend_from_slice(&SNAPSHOT_VERSION.to_le_bytes());
    body.extend_from_slice(chain_id.as_bytes());
    put_bytes(&mut body, &to_bytes(&head));
    put_bytes(&mut body, &genesis);
    body.extend_from_slice(state_digest.as_bytes());
    let mut entries = Vec::new();
    let state_entries = for_each_state(&snap, |k, v| {
        put_bytes(&mut entries, k);
        put_bytes(&mut entries, v);
    })?;
    body.extend_from_slice(&state_entries.to_le_bytes());
    body.extend_from_slice(&entries);
    drop(entries);
    body.extend_from_slice(&head.block_num.to_le_bytes());
    for n in 1..=head.block_num {
        let block = snap.block(n)?.ok_or(OpsError::MissingBlock(n))?;
        let id = snap.block_id(n)?.ok_or(OpsError::MissingBlock(n))?;
        body.extend_from_slice(id.as_bytes());
        put_bytes(&mut body, &block);
    }
    let checksum = Checksum256::hash(&body);
    body.extend_from_slice(checksum.as_bytes());

    let tmp = out.with_extension("partial");
    let mut file = std::fs::File::create(&tmp).map_err(io(&tmp))?;
    file.write_all(&body).map_err(io(&tmp))?;
    file.sync_all().map_err(io(&tmp))?;
    drop(file);
    std::fs::rename(&tmp, out).map_err(io(out))?;
    let blocks = head.block_num;
    Ok(SnapshotSummary { chain_id, head, state_entries, blocks, state_digest })
}

/// A decoded snapshot file, borrowing the file's bytes.
struct Parsed<'a> {
    chain_id: Checksum256,
    head: Head,
    genesis: &'a [u8],
    state_digest: Checksum256,
    state: Vec<(&'a [u8], &'a [u8])>,
    blocks: Vec<(Checksum256, &'a [u8])>,
}

fn parse<'a>(bytes: &'a [u8], path: &Path) -> Result<Parsed<'a>, OpsError> {
    if bytes.len() < SNAPSHOT_MAGIC.len() + 4 || !bytes.starts_with(SNAPSHOT_MAGIC) {
        return Err(OpsError::NotSnapshot(path.to_owned()));
    }
    let version = u32::from_le_bytes(bytes[8..12].try_into().unwrap_or([0; 4]));
    if version != SNAPSHOT_VERSION {
        return Err(OpsError::Version { found: version });
    }
    let Some(body_len) = bytes.len().checked_sub(32) else {
        return Err(OpsError::Checksum(path.to_owned()));
    };
    let (body, checksum) = bytes.split_at(body_len);
    if Checksum256::hash(body).as_bytes() != checksum {
        return Err(OpsError::Checksum(path.to_owned()));
    }
    let mut r = Reader::new(&body[12..]);
    let malformed = OpsError::Malformed;
    let chain_id = Checksum256(r.read_array().map_err(malformed)?);
    let head: Head = from_bytes(r.read_prefixed_bytes().map_err(malformed)?).map_err(malformed)?;
    let genesis = r.read_prefixed_bytes().map_err(malformed)?;
    let state_digest = Checksum256(r.read_array().map_err(malformed)?);
    let count = u64::from_le_bytes(r.read_array().map_err(malformed)?);
    // Each entry takes at least two length bytes: refuse counts the input cannot hold.
    if count > (r.remaining() / 2) as u64 {
        return Err(OpsError::Malformed(DecodeError::LengthTooLarge {
            at: r.position(),
            claimed: count,
            remaining: r.remaining(),
        }));
    }
    let mut state = Vec::with_capacity(count as usize);
    for _ in 0..count {
        let k = r.read_prefixed_bytes().map_err(malformed)?;
        let v = r.read_prefixed_bytes().map_err(malformed)?;
        state.push((k, v));
    }
    let blocks_count = u32::from_le_bytes(r.read_array().map_err(malformed)?);
    if blocks_count != head.block_num || blocks_count as usize > r.remaining() / 33 {
        return Err(OpsError::Malformed(DecodeError::LengthTooLarge {
            at: r.position(),
            claimed: u64::from(blocks_count),
            remaining: r.remaining(),
        }));
    }
    let mut blocks = Vec::with_capacity(blocks_count as usize);
    for _ in 0..blocks_count {
        let id = Checksum256(r.read_array().map_err(malformed)?);
        blocks.push((id, r.read_prefixed_bytes().map_err(malformed)?));
    }
    r.finish().map_err(malformed)?;
    Ok(Parsed { chain_id, head, genesis, state_digest, state, blocks })
}

fn is_empty_dir(dir: &Path) -> Result<bool, OpsError> {
    match std::fs::read_dir(dir) {
        Ok(mut entries) => Ok(entries.next().is_none()),
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => Ok(true),
        Err(e) => Err(OpsError::Io { path: dir.to_owned(), source: e }),
    }
}

/// Restores the snapshot `input` into `data_dir`, which must be empty or missing, for the chain
/// of `genesis`. The whole restore is one store write: on any failure the new database file is
/// removed and the data directory is left as it was.
pub fn restore(
    input: &Path,
    data_dir: &Path,
    genesis: &Genesis,
    limits: &Limits,
) -> Result<SnapshotSummary, OpsError> {
    if !is_empty_dir(data_dir)? {
        return Err(OpsError::NotEmpty(data_dir.to_owned()));
    }
    let bytes = std::fs::read(input).map_err(io(input))?;
    let p = parse(&bytes, input)?;
    let expected = genesis.chain_id();
    if p.chain_id != expected || Checksum256::hash(p.genesis) != expected {
        return Err(OpsError::WrongChain { expected, found: p.chain_id });
    }
    std::fs::create_dir_all(data_dir).map_err(io(data_dir))?;
    let path = data_dir.join(STATE_FILE);
    let result = write_restore(&path, &p, limits);
    if result.is_err() {
        let _ = std::fs::remove_file(&path);
    }
    result
}

fn write_restore(
    path: &Path,
    p: &Parsed<'_>,
    limits: &Limits,
) -> Result<SnapshotSummary, OpsError> {
    let store = open_store(path)?;
    let limits = UnpackLimits { max_inflated_bytes: limits.max_transaction_bytes };
    store.write(|w| -> Result<(), OpsError> {
        w.set_genesis(&p.chain_id, p.genesis)?;
        for (k, v) in &p.state {
            w.put(k, v)?;
        }
        for (i, (id, packed)) in p.blocks.iter().enumerate() {
            let num = i as u32 + 1;
            w.append_block(num, id, packed)?;
            let block: SignedBlock = from_bytes(packed).map_err(OpsError::Malformed)?;
            for (trx_index, receipt) in (0u32..).zip(&block.transactions) {
                let Some(trx) = receipt.trx.as_packed() else { continue };
                let signed = trx.to_signed(&limits).map_err(|e| {
                    OpsError::Malformed(DecodeError::Invalid {
                        what: "transaction",
                        at: 0,
                        reason: format!("block {num}: {e}"),
                    })
                })?;
                let tid = signed.transaction.id();
                w.record_transaction(&tid, signed.transaction.header.expiration.0, num)?;
                w.record_actions(num, trx_index, &signed.transaction.actions);
            }
        }
        w.set_head(&p.head)?;
        // Block time of the head, as the chain prunes at each block.
        let head_sec = p.head.timestamp.to_time_point().0.div_euclid(1_000_000);
        w.prune_expired(u32::try_from(head_sec).unwrap_or(u32::MAX))?;
        Ok(())
    })?;
    let found = state_digest(&store.read()?)?;
    if found != p.state_digest {
        return Err(OpsError::RestoredDigest { expected: p.state_digest, found });
    }
    Ok(SnapshotSummary {
        chain_id: p.chain_id,
        head: p.head.clone(),
        state_entries: p.state.len() as u64,
        blocks: p.blocks.len() as u32,
        state_digest: found,
    })
}

/// Rebuilds the state of `data_dir` from its block log: a fresh store ([`REPLAY_FILE`] in the
/// same directory, replaced if present) gets the genesis, then every block from 2 to the head
/// through [`Chain::apply_block`] (signatures, receipts and merkle roots checked again).
/// `progress(done, total)` is called after each block. The original database is only read.
pub fn replay(
    data_dir: &Path,
    genesis: &Genesis,
    limits: Limits,
    mut progress: impl FnMut(u32, u32),
) -> Result<ReplayReport, OpsError> {
    let original = open_existing(data_dir)?;
    let snap = original.read()?;
    let found = snap.chain_id()?.ok_or_else(|| OpsError::NotInitialised(data_dir.to_owned()))?;
    let head = snap.head()?.ok_or_else(|| OpsError::NoBlocks(data_dir.to_owned()))?;
    let expected = genesis.chain_id();
    if found != expected {
        return Err(OpsError::WrongChain { expected, found });
    }
    let rebuilt_path = data_dir.join(REPLAY_FILE);
    match std::fs::remove_file(&rebuilt_path) {
        Ok(()) => {}
        Err(e) if e.kind() == std::io::ErrorKind::NotFound => {}
        Err(e) => return Err(OpsError::Io { path: rebuilt_path, source: e }),
    }
    let fresh = Arc::new(open_store(&rebuilt_path)?);
    let chain = Chain::open(fresh.clone(), genesis, limits)?;
    progress(1, head.block_num);
    for n in 2..=head.block_num {
        let bytes = snap.block(n)?.ok_or(OpsError::MissingBlock(n))?;
        let block: SignedBlock = from_bytes(&bytes).map_err(OpsError::Malformed)?;
        chain.apply_block(&block).map_err(|source| OpsError::Block { block_num: n, source })?;
        progress(n, head.block_num);
    }
    drop(chain);
    let original_digest = state_digest(&snap)?;
    let rebuilt = state_digest(&fresh.read()?)?;
    Ok(ReplayReport { head: head.block_num, original: original_digest, rebuilt, rebuilt_path })
}

/// A `progress` callback for [`replay`]: on a terminal, one line on stderr rewritten in place
/// (carriage return) at most ten times a second, with the rate; otherwise a log line every
/// tenth of the way, so that logs stay readable.
pub fn progress_line() -> impl FnMut(u32, u32) {
    use std::io::IsTerminal;
    let terminal = std::io::stderr().is_terminal();
    let start = crate::producer::clock::instant();
    let mut last_draw: Option<std::time::Instant> = None;
    let mut last_tenth = 0u64;
    move |done, total| {
        let total = total.max(1);
        if terminal {
            let now = crate::producer::clock::instant();
            let due = last_draw.is_none_or(|t| now.duration_since(t).as_millis() >= 100);
            if due || done == total {
                last_draw = Some(now);
                let rate = f64::from(done) / start.elapsed().as_secs_f64().max(1e-3);
                let pct = u64::from(done) * 100 / u64::from(total);
                let width = 30usize;
                let filled = (pct as usize * width / 100).min(width);
                let bar = format!("{}{}", "#".repeat(filled), "-".repeat(width - filled));
                let mut err = std::io::stderr().lock();
                let _ = write!(
                    err,
                    "\rreplay [{bar}] {done}/{total} blocks {pct:>3}% {rate:.0} blocks/s"
                );
                if done == total {
                    let _ = writeln!(err);
                }
                let _ = err.flush();
            }
        } else {
            let tenth = u64::from(done) * 10 / u64::from(total);
            if tenth > last_tenth || done == total {
                last_tenth = tenth;
                tracing::info!(done, total, "replay progress");
            }
        }
    }
}

#[cfg(test)]
mod tests;
