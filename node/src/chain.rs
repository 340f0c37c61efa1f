//! The chain: the only writer of the node's state. It accepts transactions into the pending
//! block (producer role), seals and signs blocks, and verifies and re-applies blocks from a
//! producer (api role).
//!
//! One thread (the apply thread, [`worker`]) owns every state change. A block is one redb
//! write transaction held open from [`Chain::start_block`] to [`Chain::finish_block`], so a
//! block reaches the disk whole or not at all; each transaction inside it runs in its own
//! [`crate::store::Overlay`], so a failed transaction leaves nothing behind; its actions run
//! natively (`eosio`) or in the contract VM, with notifications and inline actions
//! (`execution`). Everything that
//! needs no state — inflating, decoding and recovering signatures (the costly part) — runs on
//! the caller's thread before the apply thread sees the transaction, so many callers recover
//! signatures in parallel; a block's transactions are recovered on scoped threads.
//!
//! Irreversibility: a block is final once 2/3+1 of the scheduled producers have produced it
//! or a block on top of it (Antelope's rule), so with one producer the head is final as soon
//! as its signed block is committed, and with several LIB follows the producers' turns. This
//! module must never read the wall clock (times are block times
//! handed in) and never write outside a block.

pub mod error;
mod execution;
pub mod trace;
mod worker;

use std::collections::BTreeSet;
use std::sync::mpsc::{self, Receiver, RecvTimeoutError};
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rempart_core::block::SignedBlock;
use rempart_core::key::{PublicKey, Signature};
use rempart_core::protocol::SignBlockRequest;
use rempart_core::transaction::{PackedTransaction, Transaction, TransactionError, UnpackLimits};
use rempart_core::{BlockTimestamp, Checksum256, Name, Pack, to_bytes};
use serde_json::Value;
use tokio::sync::watch;

pub use error::{BlockError, ChainError, SignFailure, TxError};
pub use trace::{ActionReceipt, ActionTrace, TransactionTrace};

use crate::config::Limits;
use crate::genesis::{Genesis, ProducerKey, ProducerSchedule};
use crate::store::Store;
use worker::{Command, PushJob, PushState, Worker};

/// Blocks each producer makes in a row before the next one's turn (Antelope's
/// `producer_repetitions`).
pub const PRODUCER_REPETITIONS: u32 = 12;

const EOSIO: Name = Name::from_const("eosio");

/// How long [`Chain::push_transaction`] waits for a pending block before giving up.
pub const PUSH_WAIT: Duration = Duration::from_secs(5);

/// Longest the apply thread waits for a block signature before abandoning the block.
pub const SIGN_WAIT: Duration = Duration::from_secs(30);

/// The chain as `get_info` reports it.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ChainInfo {
    /// The chain id.
    pub chain_id: Checksum256,
    /// Head block number.
    pub head_block_num: u32,
    /// Head block id.
    pub head_block_id: Checksum256,
    /// Head block slot.
    pub head_block_time: BlockTimestamp,
    /// Producer of the head block.
    pub head_block_producer: Name,
    /// Last irreversible block number.
    pub last_irreversible_block_num: u32,
    /// Last irreversible block id.
    pub last_irreversible_block_id: Checksum256,
    /// The active producer schedule.
    pub schedule: ProducerSchedule,
}

/// How a chain is opened.
#[derive(Debug, Clone, Default)]
pub struct ChainOptions {
    /// Size and work limits.
    pub limits: Limits,
    /// Producer only: a file where each block is written (fsync'd) before it goes to the signer.
    /// If the node dies after the signer signed but before the block was committed, the signer
    /// refuses any other block at that height; with this file the restarted chain makes the
    /// very same block again (its next [`Chain::start_block`] reuses the recorded slot and
    /// transactions), and the signer answers with the signature it already gave.
    pub sign_intent: Option<std::path::PathBuf>,
}

/// A block that was started and is accepting transactions.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct PendingBlock {
    /// Its number.
    pub block_num: u32,
    /// Its slot.
    pub timestamp: BlockTimestamp,
    /// The producer scheduled for the slot and the key that must sign.
    pub producer: ProducerKey,
    /// The block was sent for signing before and goes again, identical: its signature may
    /// have been given (an answer lost, or a restart since).
    pub resent: bool,
}

/// A block that was committed.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BlockSummary {
    /// Its number.
    pub block_num: u32,
    /// Its id.
    pub id: Checksum256,
    /// Its slot.
    pub timestamp: BlockTimestamp,
    /// Its producer.
    pub producer: Name,
    /// How many transactions it holds.
    pub transactions: usize,
}

/// A transaction decoded and with its signatures recovered: everything that needs no state,
/// done off the apply thread ([`Chain::prepare`]).
#[derive(Debug, Clone)]
pub struct PreparedTransaction {
    pub(crate) packed: PackedTransaction,
    pub(crate) trx: Transaction,
    pub(crate) id: Checksum256,
    pub(crate) keys: BTreeSet<PublicKey>,
    pub(crate) net_usage_words: u32,
    pub(crate) packed_digest: Checksum256,
    /// Per action: its data is `eosio` native data that decoded here with every key checked
    /// on its curve ([`crate::native::data_is_valid`]), so the apply thread need not check
    /// them again.
    pub(crate) validated: Vec<bool>,
}

/// The producer scheduled for `timestamp`: each producer has [`PRODUCER_REPETITIONS`]
/// consecutive slots, in schedule order.
pub fn scheduled_producer(schedule: &ProducerSchedule, timestamp: BlockTimestamp) -> &ProducerKey {
    let n = schedule.producers.len().max(1) as u64;
    let reps = u64::from(PRODUCER_REPETITIONS);
    let index = (u64::from(timestamp.0) % (n * reps)) / reps;
    // A stored schedule always names at least one producer (validated by genesis/setprods).
    &schedule.producers[(index as usize).min(schedule.producers.len().saturating_sub(1))]
}

/// Decodes `packed` within `limits` and recovers its signing keys for `chain_id`.
pub(crate) fn prepare(
    packed: PackedTransaction,
    chain_id: &Checksum256,
    limits: &Limits,
) -> Result<PreparedTransaction, TxError> {
    if packed.packed_trx.0.len() > limits.max_transaction_bytes {
        return Err(TxError::TooBig(format!(
            "packed_trx of {} bytes exceeds the limit of {} bytes",
            packed.packed_trx.0.len(),
            limits.max_transaction_bytes
        )));
    }
    if packed.signatures.len() > limits.max_signatures {
        return Err(TxError::TooBig(format!(
            "{} signatures; at most {} are accepted",
            packed.signatures.len(),
            limits.max_signatures
        )));
    }
    let unpack = UnpackLimits { max_inflated_bytes: limits.max_transaction_bytes };
    let signed = packed.to_signed(&unpack).map_err(tx_decode_error)?;
    let keys = signed.recover_keys(chain_id).map_err(tx_decode_error)?;
    let id = signed.transaction.id();
    let net_bytes = to_bytes(&packed).len() + 12;
    let net_usage_words = u32::try_from(net_bytes.div_ceil(8)).unwrap_or(u32::MAX);
    let packed_digest = packed_digest(&packed);
    let validated = signed
        .transaction
        .actions
        .iter()
        .map(|a| a.account == EOSIO && crate::native::data_is_valid(a.name, &a.data.0))
        .collect();
    Ok(PreparedTransaction {
        trx: signed.transaction,
        packed,
        id,
        keys: keys.into_iter().collect(),
        net_usage_words,
        packed_digest,
        validated,
    })
}

impl PreparedTransaction {
    /// The transaction id.
    pub fn id(&self) -> Checksum256 {
        self.id
    }

    /// The decoded transaction.
    pub fn transaction(&self) -> &Transaction {
        &self.trx
    }
}

fn tx_decode_error(e: TransactionError) -> TxError {
    match e {
        TransactionError::InflateTooLarge { .. }
        | TransactionError::BadZlib { .. }
        | TransactionError::TrailingCompressed { .. } => TxError::Decompression(e.to_string()),
        TransactionError::Signature { .. } => TxError::BadSignature(e.to_string()),
        TransactionError::DuplicateSignature { .. } => TxError::DuplicateSignature(e.to_string()),
        other => TxError::Malformed(other.to_string()),
    }
}

/// nodeos's legacy `packed_transaction::packed_digest`: sha256(compression ‖ packed_trx ‖
/// sha256(signatures ‖ packed_context_free_data)).
fn packed_digest(p: &PackedTransaction) -> Checksum256 {
    let mut prunable = Vec::new();
    p.signatures.pack(&mut prunable);
    p.packed_context_free_data.pack(&mut prunable);
    let prunable = Checksum256::hash(&prunable);
    let mut out = Vec::new();
    p.compression.pack(&mut out);
    p.packed_trx.pack(&mut out);
    prunable.pack(&mut out);
    Checksum256::hash(&out)
}

type PushReply = Result<TransactionTrace, TxError>;

/// Waits for a push's answer: up to [`PUSH_WAIT`] for a block to take it, then cancels it
/// unless the apply thread already took it (its answer is then coming).
fn wait_reply(rx: &Receiver<PushReply>, state: &Mutex<PushState>) -> PushReply {
    match rx.recv_timeout(PUSH_WAIT) {
        Ok(r) => r,
        Err(RecvTimeoutError::Disconnected) => Err(TxError::NotProducing),
        Err(RecvTimeoutError::Timeout) => {
            {
                let mut s = state.lock().unwrap_or_else(|e| e.into_inner());
                if *s == PushState::Waiting {
                    *s = PushState::Cancelled;
                    return Err(TxError::NotProducing);
                }
            }
            rx.recv().unwrap_or(Err(TxError::NotProducing))
        }
    }
}

/// Prepares every transaction of a block, on scoped threads when there are many.
fn prepare_all(
    packed: Vec<PackedTransaction>,
    chain_id: &Checksum256,
    limits: &Limits,
) -> Vec<Result<PreparedTransaction, TxError>> {
    const PER_THREAD_MIN: usize = 8;
    let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
    if packed.len() < 2 * PER_THREAD_MIN || threads < 2 {
        return packed.into_iter().map(|p| prepare(p, chain_id, limits)).collect();
    }
    let chunk = packed.len().div_ceil(threads);
    let mut chunks: Vec<Vec<PackedTransaction>> = Vec::new();
    let mut it = packed.into_iter().peekable();
    while it.peek().is_some() {
        chunks.push(it.by_ref().take(chunk).collect());
    }
    std::thread::scope(|s| {
        let handles: Vec<_> = chunks
            .into_iter()
            .map(|c| {
                s.spawn(move || {
                    c.into_iter().map(|p| prepare(p, chain_id, limits)).collect::<Vec<_>>()
                })
            })
            .collect();
        handles
            .into_iter()
            .flat_map(|h| {
                h.join().unwrap_or_else(|_| {
                    vec![Err(TxError::Malformed("signature recovery thread panicked".into()))]
                })
            })
            .collect()
    })
}

/// The chain. Share it in an `Arc`: the HTTP server, the private listener and the producer
/// loop all call it; every state change goes through its one apply thread.
pub struct Chain {
    store: Arc<Store>,
    chain_id: Checksum256,
    limits: Limits,
    info: Arc<watch::Sender<ChainInfo>>,
    tx: Option<mpsc::Sender<Command>>,
    thread: Option<std::thread::JoinHandle<()>>,
}

impl std::fmt::Debug for Chain {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Chain").field("chain_id", &self.chain_id).finish_non_exhaustive()
    }
}

impl Drop for Chain {
    fn drop(&mut self) {
        // Closing the channel ends the apply thread (abandoning any pending block).
        self.tx = None;
        if let Some(t) = self.thread.take() {
            let _ = t.join();
        }
    }
}

impl Chain {
    /// Opens the chain in `store`: installs `genesis` into an empty store (with block 1, the
    /// genesis block), refuses a store of another chain, and starts the apply thread.
    pub fn open(store: Arc<Store>, genesis: &Genesis, limits: Limits) -> Result<Chain, ChainError> {
        Self::open_with(store, genesis, ChainOptions { limits, sign_intent: None })
    }

    /// [`Chain::open`] with every option.
    pub fn open_with(
        store: Arc<Store>,
        genesis: &Genesis,
        options: ChainOptions,
    ) -> Result<Chain, ChainError> {
        let limits = options.limits;
        let worker = Worker::open(store.clone(), genesis, limits.clone(), options.sign_intent)?;
        let chain_id = genesis.chain_id();
        let info = Arc::new(watch::Sender::new(worker.info()));
        let (tx, rx) = mpsc::channel();
        let thread = {
            let info = info.clone();
            std::thread::Builder::new()
                .name("rempart-apply".into())
                .spawn(move || worker.run(rx, &info))
                .map_err(ChainError::Thread)?
        };
        Ok(Chain { store, chain_id, limits, info, tx: Some(tx), thread: Some(thread) })
    }

    /// The chain id.
    pub fn chain_id(&self) -> Checksum256 {
        self.chain_id
    }

    /// The state database (read it through snapshots).
    pub fn store(&self) -> &Arc<Store> {
        &self.store
    }

    /// The limits transactions are checked against.
    pub fn limits(&self) -> &Limits {
        &self.limits
    }

    /// Head, LIB and schedule as of the last committed block.
    pub fn info(&self) -> ChainInfo {
        self.info.borrow().clone()
    }

    /// Sees every committed block's [`ChainInfo`].
    pub fn watch(&self) -> watch::Receiver<ChainInfo> {
        self.info.subscribe()
    }

    fn send(&self, cmd: Command) -> bool {
        self.tx.as_ref().is_some_and(|tx| tx.send(cmd).is_ok())
    }

    /// Starts the block of slot `timestamp` (after the head's). Transactions pushed from now on
    /// go into it; pushes that waited for a block are applied first.
    pub fn start_block(&self, timestamp: BlockTimestamp) -> Result<PendingBlock, BlockError> {
        let (reply, rx) = mpsc::channel();
        if !self.send(Command::Start { timestamp, reply }) {
            return Err(BlockError::Aborted);
        }
        rx.recv().unwrap_or(Err(BlockError::Aborted))
    }

    /// Applies a transaction in the pending block (waiting up to [`PUSH_WAIT`] for one to
    /// start). Decoding and signature recovery happen here, on the caller's thread.
    pub fn push_transaction(&self, trx: PackedTransaction) -> Result<TransactionTrace, TxError> {
        self.push_prepared(self.prepare(trx)?)
    }

    /// Decodes `trx` within the limits and recovers its signing keys, on this thread: the part
    /// of a push that needs no state and costs the most.
    pub fn prepare(&self, trx: PackedTransaction) -> Result<PreparedTransaction, TxError> {
        prepare(trx, &self.chain_id, &self.limits)
    }

    /// Applies prepared transactions in the pending block, in order, without waiting for one
    /// answer before sending the next (each waits for a block as [`Chain::push_prepared`]).
    ///
    /// The apply thread takes them in order, so this waits for the last answer first: the
    /// others are in their channels by then, and the apply thread never has to wake this
    /// thread (a futex call per answer) before the batch is done.
    pub fn push_prepared_many(
        &self,
        trxs: Vec<PreparedTransaction>,
    ) -> Vec<Result<TransactionTrace, TxError>> {
        let queued: Vec<_> = trxs.into_iter().map(|p| self.enqueue(p)).collect();
        let wait = |q: &Option<(Receiver<PushReply>, Arc<Mutex<PushState>>)>| match q {
            Some((rx, state)) => wait_reply(rx, state),
            None => Err(TxError::NotProducing),
        };
        let last = queued.last().map(wait);
        let mut out: Vec<_> = queued[..queued.len().saturating_sub(1)].iter().map(wait).collect();
        out.extend(last);
        out
    }

    /// [`Chain::push_transaction`] for a transaction already prepared.
    pub fn push_prepared(
        &self,
        prepared: PreparedTransaction,
    ) -> Result<TransactionTrace, TxError> {
        match self.enqueue(prepared) {
            Some((rx, state)) => wait_reply(&rx, &state),
            None => Err(TxError::NotProducing),
        }
    }

    fn enqueue(
        &self,
        p: PreparedTransaction,
    ) -> Option<(Receiver<PushReply>, Arc<Mutex<PushState>>)> {
        // One answer: a one-slot channel allocates its slot here, on the caller's thread, and
        // the apply thread's send neither allocates nor blocks.
        let (reply, rx) = mpsc::sync_channel(1);
        let state = Arc::new(Mutex::new(PushState::Waiting));
        let job = PushJob { trx: Box::new(p), state: state.clone(), reply };
        self.send(Command::Push(job)).then_some((rx, state))
    }

    /// Seals the pending block: builds the header, has `sign` sign it (called on this thread
    /// with the exact request the signer needs), checks the signature against the scheduled
    /// key and commits the block in one store write. On any failure nothing is written and the
    /// block's transactions are tried again in the next block.
    pub fn finish_block(
        &self,
        sign: impl FnOnce(&SignBlockRequest) -> Result<Signature, SignFailure>,
    ) -> Result<BlockSummary, BlockError> {
        let (request_tx, request_rx) = mpsc::channel();
        let (signature_tx, signature_rx) = mpsc::channel();
        let (done, done_rx) = mpsc::channel();
        let cmd = Command::Finish { request: request_tx, signature: signature_rx, done };
        if !self.send(cmd) {
            return Err(BlockError::Aborted);
        }
        if let Ok(req) = request_rx.recv() {
            let _ = signature_tx.send(sign(&req));
        }
        drop(signature_tx);
        done_rx.recv().unwrap_or(Err(BlockError::Aborted))
    }

    /// Drops the pending block, if any; its transactions are tried again in the next one.
    pub fn abort_block(&self) {
        let (reply, rx) = mpsc::channel();
        if self.send(Command::Abort { reply }) {
            let _ = rx.recv();
        }
    }

    /// [`Chain::start_block`] then [`Chain::finish_block`]: a block with whatever pushes were
    /// waiting.
    pub fn produce_block(
        &self,
        timestamp: BlockTimestamp,
        sign: impl FnOnce(&SignBlockRequest) -> Result<Signature, SignFailure>,
    ) -> Result<BlockSummary, BlockError> {
        self.start_block(timestamp)?;
        self.finish_block(sign)
    }

    /// Verifies `block` (link to the head, slot, scheduled producer, signature by the
    /// scheduled key), re-applies its transactions with their signatures checked, compares
    /// receipts and merkle roots, and commits it. Any failure writes nothing.
    pub fn apply_block(&self, block: &SignedBlock) -> Result<BlockSummary, BlockError> {
        let num = block.block_num();
        let mut packed = Vec::with_capacity(block.transactions.len());
        for (index, r) in block.transactions.iter().enumerate() {
            match r.trx.as_packed() {
                Some(p) => packed.push(p.clone()),
                None => {
                    return Err(BlockError::Unsupported {
                        block_num: num,
                        reason: format!("receipt {index} carries only a transaction id"),
                    });
                }
            }
        }
        let mut prepared = Vec::with_capacity(packed.len());
        for (index, p) in prepare_all(packed, &self.chain_id, &self.limits).into_iter().enumerate()
        {
            prepared.push(p.map_err(|source| BlockError::Transaction {
                block_num: num,
                index,
                source,
            })?);
        }
        let (reply, rx) = mpsc::channel();
        if !self.send(Command::Apply { block: Box::new(block.clone()), prepared, reply }) {
            return Err(BlockError::Aborted);
        }
        rx.recv().unwrap_or(Err(BlockError::Aborted))
    }

    /// The trace as nodeos's `processed` JSON, action data decoded with each contract's ABI
    /// as committed (read from a snapshot, on this thread).
    pub fn trace_json(&self, trace: &TransactionTrace) -> Value {
        let snap = self.store.read().ok();
        let cache: std::cell::RefCell<
            std::collections::HashMap<Name, Option<rempart_core::abi::Abi>>,
        > = Default::default();
        let decode = |act: &rempart_core::transaction::Action| -> Option<Value> {
            let mut cache = cache.borrow_mut();
            let abi = cache.entry(act.account).or_insert_with(|| {
                let bytes = snap.as_ref()?.get(&crate::store::key::abi(act.account)).ok()??;
                rempart_core::abi::Abi::from_bin(&bytes).ok()
            });
            abi.as_ref()?.action_bin_to_json(act.name, &act.data.0).ok()
        };
        trace.to_json(&decode)
    }
}

impl crate::peer::TransactionSink for Chain {
    fn push(&self, trx: PackedTransaction) -> Result<Value, crate::api::ApiError> {
        match self.push_transaction(trx) {
            Ok(t) => Ok(self.trace_json(&t)),
            Err(e) => {
                let (code, name, what) = e.nodeos();
                Err(crate::api::ApiError::chain(code, name, what, e.to_string()))
            }
        }
    }
}

impl crate::peer::BlockSink for Chain {
    fn next_block_num(&self) -> Result<u32, String> {
        Ok(self.info().head_block_num + 1)
    }

    fn apply_block(&self, block: &SignedBlock) -> Result<(), String> {
        Chain::apply_block(self, block).map(|_| ()).map_err(|e| e.to_string())
    }
}

/// The packed ABI installed for `eosio` at genesis: core's bios-compatible system ABI.
pub fn eosio_abi_bin() -> Vec<u8> {
    rempart_core::abi::eosio_system_abi().def().to_bin()
}

/// Builds a packed transaction signed by `keys` (tests, benchmarks and tools).
pub fn sign_transaction(
    trx: Transaction,
    keys: &[&rempart_core::key::PrivateKey],
    chain_id: &Checksum256,
) -> PackedTransaction {
    let mut signed = rempart_core::transaction::SignedTransaction::new(trx);
    for k in keys {
        signed.sign(k, chain_id);
    }
    PackedTransaction::from_signed(&signed, rempart_core::transaction::Compression::None)
}

#[cfg(test)]
mod tests;
