//! The apply thread: the one place that changes chain state.
//!
//! It waits for commands. `Start` opens a redb write transaction and keeps it open while the
//! block fills (pushes are applied one by one, each in its own overlay), until `Finish` seals,
//! signs and commits it, or `Abort` (or a failed signature) drops it. `Apply` checks and
//! re-applies a producer's block in one write. In-memory copies of the head, the block-id
//! merkle and the action sequence change only after a commit succeeded, so a failed block
//! leaves the thread exactly as the disk is. Nothing here reads the clock.

use std::path::{Path, PathBuf};
use std::sync::mpsc::{Receiver, Sender, SyncSender};
use std::sync::{Arc, Mutex};

use rempart_core::block::{
    BlockHeader, IncrementalMerkle, SignedBlock, SignedBlockHeader, TransactionReceipt,
    TransactionReceiptHeader, TransactionStatus, TransactionVariant, merkle,
};
use rempart_core::key::{PublicKey, Signature};
use rempart_core::protocol::SignBlockRequest;
use rempart_core::transaction::Action;
use rempart_core::{BlockTimestamp, Checksum256, Name, Pack, VarUint32, from_bytes, to_bytes};
use tokio::sync::watch;

use super::error::{BlockError, ChainError, SignFailure, TxError};
use super::execution::Execution;
use super::trace::TransactionTrace;
use super::{
    BlockSummary, ChainInfo, PendingBlock, PreparedTransaction, SIGN_WAIT, scheduled_producer,
};
use crate::account::{self, PermissionRecord};
use crate::authority::{Authority, AuthorityError, Checker, Level, PermissionSource};
use crate::config::{Limits, MAX_TRANSACTION_FUEL};
use crate::genesis::{Genesis, ProducerSchedule};
use crate::native;
use crate::store::{BlockWrite, Head, Overlay, Store, StoreError, key};
use crate::vm::{Vm, VmConfig};

const EOSIO: Name = Name::from_const("eosio");
const ACTIVE: Name = Name::from_const("active");
const EOSIO_ANY: Name = Name::from_const("eosio.any");

/// CPU billed per transaction (µs). Fixed, so every node computes the same receipts.
pub(super) const BILLED_CPU_US: u32 = 100;
/// Longest a transaction may expire after the block time (seconds).
const MAX_TRX_LIFETIME_SEC: i64 = 3600;

/// State key of the block-id incremental merkle (ids of blocks 1..=head).
const MERKLE_KEY: &[u8] = b"~blockroot_merkle";
/// State key of the last global action sequence.
const GLOBAL_SEQUENCE_KEY: &[u8] = b"~global_sequence";
/// State key of the last block each scheduled producer produced ([`last_irreversible`]).
const LAST_PRODUCED_KEY: &[u8] = b"~last_produced";

rempart_core::packed_struct! {
    /// The last block one producer produced.
    #[derive(Debug, Clone, Copy, PartialEq, Eq)]
    struct LastProduced {
        producer: Name,
        block_num: u32,
    }
}

/// The last irreversible block once `producer` produced block `num` under `schedule`, and
/// records that block as `producer`'s last: Antelope's rule that a block is final once 2/3+1 of
/// the scheduled producers have produced it or a block on top of it, that is the `(n-1)/3`-th
/// smallest of their last block numbers (a scheduled producer that has produced nothing yet
/// counts 0). It never goes back (`previous`). With one producer it is the head, as before.
fn last_irreversible(
    w: &mut BlockWrite<'_>,
    schedule: &ProducerSchedule,
    producer: Name,
    num: u32,
    previous: u32,
) -> Result<u32, StoreError> {
    let mut last: Vec<LastProduced> = match w.get(LAST_PRODUCED_KEY)? {
        Some(bytes) => from_bytes(&bytes).map_err(corrupt("last produced blocks"))?,
        None => Vec::new(),
    };
    // Producers that left the schedule no longer count.
    last.retain(|l| schedule.producers.iter().any(|p| p.producer_name == l.producer));
    match last.iter_mut().find(|l| l.producer == producer) {
        Some(l) => l.block_num = num,
        None => last.push(LastProduced { producer, block_num: num }),
    }
    last.sort_by_key(|l| l.producer);
    w.put(LAST_PRODUCED_KEY, &to_bytes(&last))?;
    let mut nums: Vec<u32> = schedule
        .producers
        .iter()
        .map(|p| last.iter().find(|l| l.producer == p.producer_name).map_or(0, |l| l.block_num))
        .collect();
    nums.sort_unstable();
    let lib = nums.get(nums.len().saturating_sub(1) / 3).copied().unwrap_or(num);
    Ok(lib.clamp(previous, num))
}

/// Where a waiting push stands: the caller may cancel it only before the apply thread takes it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum PushState {
    /// Queued.
    Waiting,
    /// Being applied; an answer will come.
    Taken,
    /// The caller gave up; never apply it.
    Cancelled,
}

/// A push waiting for the apply thread.
pub(crate) struct PushJob {
    pub(crate) trx: Box<PreparedTransaction>,
    pub(crate) state: Arc<Mutex<PushState>>,
    pub(crate) reply: SyncSender<Result<TransactionTrace, TxError>>,
}

/// What the apply thread is asked to do.
pub(crate) enum Command {
    Start {
        timestamp: BlockTimestamp,
        reply: Sender<Result<PendingBlock, BlockError>>,
    },
    Push(PushJob),
    Finish {
        request: Sender<SignBlockRequest>,
        signature: Receiver<Result<Signature, SignFailure>>,
        done: Sender<Result<BlockSummary, BlockError>>,
    },
    Abort {
        reply: Sender<()>,
    },
    Apply {
        block: Box<SignedBlock>,
        prepared: Vec<PreparedTransaction>,
        reply: Sender<Result<BlockSummary, BlockError>>,
    },
}

/// The block being built or re-applied.
struct Pending {
    block_num: u32,
    timestamp: BlockTimestamp,
    schedule: ProducerSchedule,
    /// A proposed schedule this block announces in its header (`new_producers`).
    new_producers: Option<ProducerSchedule>,
    /// What the signing digest commits to: the announced schedule's hash, else the active's.
    schedule_hash: Checksum256,
    producer: crate::genesis::ProducerKey,
    receipts: Vec<TransactionReceipt>,
    action_digests: Vec<Checksum256>,
    accepted: Vec<PreparedTransaction>,
    global_sequence: u64,
}

/// What a committed block changes in the thread's memory.
struct Committed {
    head: Head,
    merkle: IncrementalMerkle,
    global_sequence: u64,
    schedule: ProducerSchedule,
    summary: BlockSummary,
}

/// The apply thread's state.
pub(crate) struct Worker {
    store: Arc<Store>,
    chain_id: Checksum256,
    limits: Limits,
    head: Head,
    merkle: IncrementalMerkle,
    global_sequence: u64,
    schedule: ProducerSchedule,
    /// Pushes that arrived while no block was pending.
    deferred: Vec<PushJob>,
    /// Transactions of an abandoned block, tried again in the next one.
    retry: Vec<PreparedTransaction>,
    /// The contract VM (compiled modules cached by code hash).
    vm: Vm,
    /// Decoded authorities by the exact bytes of their permission record.
    auth_cache: AuthorityCache,
    /// Where the block about to be signed is written first (see [`super::ChainOptions`]).
    intent_path: Option<PathBuf>,
    /// A block that may have been signed but was not committed before a crash: the next block
    /// started is this one again, identical, so the signer can answer with its stored signature.
    recovery: Option<SignedBlock>,
    /// The block of the current attempt, once its request went to the signer.
    sent: Option<SignedBlock>,
}

fn corrupt(what: &'static str) -> impl FnOnce(rempart_core::DecodeError) -> StoreError {
    move |source| StoreError::Corrupt { what, source }
}

/// The slot as a time point in µs.
fn micros(t: BlockTimestamp) -> i64 {
    t.to_time_point().0
}

/// The schedule changes of a block boundary, as Antelope's legacy schedules go (a block is
/// final once signed here, so each step takes one block): a schedule announced in the
/// previous block's header comes into force, and then a schedule proposed by `setprods` or
/// `regproducer` is announced in this block's `new_producers`. Returns the schedule in force
/// and the one announced, if any. The block that announces is still signed under the old
/// schedule; the next one is the first of the new version.
fn promote_schedule(
    w: &mut BlockWrite<'_>,
) -> Result<(ProducerSchedule, Option<ProducerSchedule>), StoreError> {
    if let Some(bytes) = w.get(&native::announced_schedule_key())? {
        w.put(&key::schedule(), &bytes)?;
        w.delete(&native::announced_schedule_key())?;
    }
    let mut announced = None;
    if let Some(bytes) = w.get(&native::pending_schedule_key())? {
        w.put(&native::announced_schedule_key(), &bytes)?;
        w.delete(&native::pending_schedule_key())?;
        announced = Some(from_bytes(&bytes).map_err(corrupt("proposed schedule"))?);
    }
    let bytes = w.get(&key::schedule())?.ok_or(StoreError::NotInitialised)?;
    Ok((from_bytes(&bytes).map_err(corrupt("schedule"))?, announced))
}

/// The legacy schedule a header's `new_producers` carries.
fn header_schedule(s: &ProducerSchedule) -> rempart_core::block::ProducerSchedule {
    rempart_core::block::ProducerSchedule {
        version: s.version,
        producers: s
            .producers
            .iter()
            .map(|p| rempart_core::block::ProducerKey {
                producer_name: p.producer_name,
                block_signing_key: p.block_signing_key,
            })
            .collect(),
    }
}

/// The hash the signing digest commits to as the pending schedule: sha256 of the packed
/// (legacy) schedule last announced — the active one at genesis, as nodeos initialises it, and
/// the new one from the block whose `new_producers` carries it.
fn schedule_hash(s: &ProducerSchedule) -> Checksum256 {
    Checksum256::hash(&to_bytes(s))
}

/// nodeos's `transaction_receipt::digest`.
fn receipt_digest(header: &TransactionReceiptHeader, packed_digest: &Checksum256) -> Checksum256 {
    let mut out = Vec::with_capacity(64);
    header.status.pack(&mut out);
    header.cpu_usage_us.pack(&mut out);
    header.net_usage_words.pack(&mut out);
    packed_digest.pack(&mut out);
    Checksum256::hash(&out)
}

impl Worker {
    /// Loads (or creates, from `genesis`) the chain in `store`.
    pub(super) fn open(
        store: Arc<Store>,
        genesis: &Genesis,
        limits: Limits,
        intent_path: Option<PathBuf>,
    ) -> Result<Worker, ChainError> {
        let chain_id = genesis.chain_id();
        store.write(|w| -> Result<(), StoreError> {
            match w.chain_id()? {
                Some(found) if found == chain_id => {}
                Some(found) => return Err(StoreError::WrongChain { expected: chain_id, found }),
                None => genesis.install(w, Some(&super::eosio_abi_bin()))?,
            }
            if w.head()?.is_none() {
                genesis_block(w, genesis)?;
            }
            Ok(())
        })?;
        let snap = store.read()?;
        let head = snap.head()?.ok_or(StoreError::NotInitialised)?;
        let merkle: IncrementalMerkle = snap
            .get_record(MERKLE_KEY, "block-id merkle")?
            .ok_or_else(|| ChainError::Corrupt("the block-id merkle is missing".into()))?;
        if merkle.node_count() != u64::from(head.block_num) {
            return Err(ChainError::Corrupt(format!(
                "block-id merkle holds {} ids for head {}",
                merkle.node_count(),
                head.block_num
            )));
        }
        let global_sequence: u64 = snap.get_record(GLOBAL_SEQUENCE_KEY, "sequence")?.unwrap_or(0);
        let schedule: ProducerSchedule = snap
            .get_record(&key::schedule(), "schedule")?
            .ok_or_else(|| ChainError::Corrupt("no producer schedule".into()))?;
        drop(snap);
        let vm = Vm::new(VmConfig {
            max_code_bytes: limits.max_code_bytes,
            max_transaction_fuel: limits.max_transaction_fuel,
            ..VmConfig::default()
        })
        .map_err(|e| ChainError::Vm(e.to_string()))?;
        let recovery = intent_path.as_deref().and_then(|p| read_intent(p, &head));
        if let Some(b) = &recovery {
            tracing::warn!(
                block_num = b.block_num(),
                timestamp = %b.signed_header.header.timestamp,
                "a block was sent for signing but not committed before the node stopped; \
                 producing it again, identical"
            );
        }
        Ok(Worker {
            store,
            chain_id,
            limits,
            head,
            merkle,
            global_sequence,
            schedule,
            deferred: Vec::new(),
            retry: Vec::new(),
            vm,
            auth_cache: AuthorityCache::default(),
            intent_path,
            recovery,
            sent: None,
        })
    }

    pub(super) fn info(&self) -> ChainInfo {
        ChainInfo {
            chain_id: self.chain_id,
            head_block_num: self.head.block_num,
            head_block_id: self.head.block_id,
            head_block_time: self.head.timestamp,
            head_block_producer: self.head.producer,
            last_irreversible_block_num: self.head.lib_num,
            last_irreversible_block_id: self.head.lib_id,
            schedule: self.schedule.clone(),
        }
    }

    /// Serves commands until the channel closes.
    pub(super) fn run(mut self, rx: Receiver<Command>, info: &watch::Sender<ChainInfo>) {
        while let Ok(cmd) = rx.recv() {
            match cmd {
                Command::Push(job) => self.deferred.push(job),
                Command::Start { timestamp, reply } => self.produce(&rx, info, timestamp, reply),
                Command::Apply { block, prepared, reply } => {
                    let store = self.store.clone();
                    let r = store.write(|w| self.apply_block(w, &block, &prepared));
                    let r = r.map(|c| self.commit(c, info));
                    let _ = reply.send(r);
                }
                Command::Finish { done, .. } => {
                    let _ = done.send(Err(BlockError::State(
                        "no block is pending; start one with start_block first",
                    )));
                }
                Command::Abort { reply } => {
                    let _ = reply.send(());
                }
            }
        }
        for job in self.deferred.drain(..) {
            let _ = job.reply.send(Err(TxError::NotProducing));
        }
    }

    fn commit(&mut self, c: Committed, info: &watch::Sender<ChainInfo>) -> BlockSummary {
        self.head = c.head;
        self.merkle = c.merkle;
        self.global_sequence = c.global_sequence;
        self.schedule = c.schedule;
        info.send_replace(self.info());
        c.summary
    }

    /// One produced block: start, pushes, then finish or abort.
    fn produce(
        &mut self,
        rx: &Receiver<Command>,
        info: &watch::Sender<ChainInfo>,
        timestamp: BlockTimestamp,
        reply: Sender<Result<PendingBlock, BlockError>>,
    ) {
        let store = self.store.clone();
        let mut start = Some(reply);
        let mut done: Option<Sender<Result<BlockSummary, BlockError>>> = None;
        let mut accepted: Vec<PreparedTransaction> = Vec::new();
        let recovering = self.recovery.take();
        let timestamp = recovering.as_ref().map_or(timestamp, |b| b.signed_header.header.timestamp);
        let result = store.write(|w| {
            let mut pending = self.begin(w, timestamp)?;
            if let Some(r) = start.take() {
                let _ = r.send(Ok(PendingBlock {
                    block_num: pending.block_num,
                    timestamp,
                    producer: pending.producer.clone(),
                    resent: recovering.is_some(),
                }));
            }
            let result = self.fill_and_seal(w, rx, &mut pending, &mut done, recovering.as_ref());
            accepted = std::mem::take(&mut pending.accepted);
            result
        });
        match result {
            Ok(c) => {
                self.sent = None;
                let summary = self.commit(c, info);
                if let Some(d) = done {
                    let _ = d.send(Ok(summary));
                }
            }
            Err(e) => {
                // Only an explicit refusal tells that the signer did not sign a block sent
                // again (a block it signed is given back before any other check); without an
                // answer it may have, and a different block at this height would be refused
                // as a double sign for ever.
                let refused = matches!(e, BlockError::Refused { .. });
                match (self.sent.take(), &recovering) {
                    // The signer may have signed it and the answer got lost: the next block is
                    // this one again, so that a signature already given is given back.
                    (Some(block), None) => self.recovery = Some(block),
                    (Some(block), Some(_)) if !refused => self.recovery = Some(block),
                    // Transactions of the abandoned block get another chance in the next one.
                    _ => self.retry = accepted,
                }
                if let Some(r) = start {
                    let _ = r.send(Err(e));
                } else if let Some(d) = done {
                    let _ = d.send(Err(e));
                }
            }
        }
    }

    /// Checks the slot, promotes a proposed schedule and prunes expired duplicates.
    fn begin(
        &mut self,
        w: &mut BlockWrite<'_>,
        timestamp: BlockTimestamp,
    ) -> Result<Pending, BlockError> {
        if timestamp <= self.head.timestamp {
            return Err(BlockError::Timestamp {
                timestamp: timestamp.to_string(),
                head: self.head.timestamp.to_string(),
            });
        }
        let (schedule, new_producers) = promote_schedule(w)?;
        let schedule_hash = schedule_hash(new_producers.as_ref().unwrap_or(&schedule));
        let producer = scheduled_producer(&schedule, timestamp).clone();
        let now_sec = u32::try_from(micros(timestamp).div_euclid(1_000_000)).unwrap_or(u32::MAX);
        w.prune_expired(now_sec)?;
        Ok(Pending {
            block_num: self.head.block_num + 1,
            timestamp,
            schedule,
            new_producers,
            schedule_hash,
            producer,
            receipts: Vec::new(),
            action_digests: Vec::new(),
            accepted: Vec::new(),
            global_sequence: self.global_sequence,
        })
    }

    fn fill_and_seal(
        &mut self,
        w: &mut BlockWrite<'_>,
        rx: &Receiver<Command>,
        pending: &mut Pending,
        done: &mut Option<Sender<Result<BlockSummary, BlockError>>>,
        recovering: Option<&SignedBlock>,
    ) -> Result<Committed, BlockError> {
        if let Some(block) = recovering {
            return self.reproduce(w, rx, pending, done, block);
        }
        for p in std::mem::take(&mut self.retry) {
            if let Err(e) = self.apply_transaction(
                w,
                pending,
                p,
                self.limits.max_transaction_fuel,
                self.limits.max_block_transactions,
            ) {
                tracing::info!(error = %e, "transaction of an abandoned block dropped");
            }
        }
        for job in std::mem::take(&mut self.deferred) {
            self.run_push(w, pending, job);
        }
        loop {
            let Ok(cmd) = rx.recv() else { return Err(BlockError::Aborted) };
            match cmd {
                Command::Push(job) => self.run_push(w, pending, job),
                Command::Start { reply, .. } => {
                    let _ = reply.send(Err(BlockError::State("a block is already pending")));
                }
                Command::Apply { reply, .. } => {
                    let _ = reply.send(Err(BlockError::State(
                        "a block is being produced; a producer does not apply others' blocks",
                    )));
                }
                Command::Abort { reply } => {
                    let _ = reply.send(());
                    return Err(BlockError::Aborted);
                }
                Command::Finish { request, signature, done: d } => {
                    *done = Some(d);
                    return self.seal(w, pending, &request, &signature);
                }
            }
        }
    }

    /// Builds the intent block again from its own transactions, taking no push meanwhile, so
    /// that its header (and so its digest) is the one the signer may already have signed.
    fn reproduce(
        &mut self,
        w: &mut BlockWrite<'_>,
        rx: &Receiver<Command>,
        pending: &mut Pending,
        done: &mut Option<Sender<Result<BlockSummary, BlockError>>>,
        block: &SignedBlock,
    ) -> Result<Committed, BlockError> {
        let num = block.block_num();
        for (index, r) in block.transactions.iter().enumerate() {
            let packed = r.trx.as_packed().cloned().ok_or(BlockError::Unsupported {
                block_num: num,
                reason: "intent block carries a transaction id".into(),
            })?;
            let fail = |source| BlockError::Transaction { block_num: num, index, source };
            let p = super::prepare(packed, &self.chain_id, &self.limits).map_err(fail)?;
            self.apply_transaction(w, pending, p, MAX_TRANSACTION_FUEL, usize::MAX)
                .map_err(fail)?;
        }
        if self.header(pending) != block.signed_header.header {
            return Err(BlockError::Mismatch {
                block_num: num,
                field: "re-produced header",
                found: format!("{:?}", self.header(pending)),
                expected: format!("{:?}", block.signed_header.header),
            });
        }
        loop {
            let Ok(cmd) = rx.recv() else { return Err(BlockError::Aborted) };
            match cmd {
                Command::Push(job) => self.deferred.push(job),
                Command::Start { reply, .. } => {
                    let _ = reply.send(Err(BlockError::State("a block is already pending")));
                }
                Command::Apply { reply, .. } => {
                    let _ = reply.send(Err(BlockError::State("a block is being produced")));
                }
                Command::Abort { reply } => {
                    let _ = reply.send(());
                    return Err(BlockError::Aborted);
                }
                Command::Finish { request, signature, done: d } => {
                    *done = Some(d);
                    return self.seal(w, pending, &request, &signature);
                }
            }
        }
    }

    fn run_push(&mut self, w: &mut BlockWrite<'_>, pending: &mut Pending, job: PushJob) {
        {
            let mut s = job.state.lock().unwrap_or_else(|e| e.into_inner());
            if *s == PushState::Cancelled {
                return;
            }
            *s = PushState::Taken;
        }
        let r = self.apply_transaction(
            w,
            pending,
            *job.trx,
            self.limits.max_transaction_fuel,
            self.limits.max_block_transactions,
        );
        let _ = job.reply.send(r);
    }

    /// Builds, signs and writes the pending block.
    fn seal(
        &mut self,
        w: &mut BlockWrite<'_>,
        pending: &mut Pending,
        request: &Sender<SignBlockRequest>,
        signature: &Receiver<Result<Signature, SignFailure>>,
    ) -> Result<Committed, BlockError> {
        let header = self.header(pending);
        let num = pending.block_num;
        let req = SignBlockRequest {
            request_id: 0,
            chain_id: self.chain_id,
            header: header.clone(),
            blockroot_merkle_root: self.merkle.root(),
            pending_schedule_hash: pending.schedule_hash,
            signing_key: pending.producer.block_signing_key,
        };
        let intent = SignedBlock {
            signed_header: SignedBlockHeader {
                header: req.header.clone(),
                producer_signature: unsigned(),
            },
            transactions: pending.receipts.clone(),
            block_extensions: Vec::new(),
        };
        if let Some(path) = &self.intent_path {
            write_intent(path, &to_bytes(&intent)).map_err(|e| BlockError::Signer {
                block_num: num,
                reason: format!("cannot record the block before signing it: {e}"),
            })?;
        }
        self.sent = Some(intent);
        request.send(req).map_err(|_| BlockError::Aborted)?;
        let sig = match signature.recv_timeout(SIGN_WAIT) {
            Ok(Ok(sig)) => sig,
            Ok(Err(SignFailure::Refused(reason))) => {
                return Err(BlockError::Refused { block_num: num, reason });
            }
            Ok(Err(SignFailure::NoAnswer(reason))) => {
                return Err(BlockError::Signer { block_num: num, reason });
            }
            Err(_) => {
                return Err(BlockError::Signer {
                    block_num: num,
                    reason: "no signature came back".into(),
                });
            }
        };
        let signed = SignedBlockHeader { header, producer_signature: sig };
        self.check_signature(&signed, &pending.schedule_hash, &pending.producer.block_signing_key)?;
        let block = SignedBlock {
            signed_header: signed,
            transactions: std::mem::take(&mut pending.receipts),
            block_extensions: Vec::new(),
        };
        self.write_block(w, pending, &block)
    }

    fn header(&self, pending: &Pending) -> BlockHeader {
        let digests: Vec<Checksum256> = pending
            .receipts
            .iter()
            .zip(&pending.accepted)
            .map(|(r, p)| receipt_digest(&r.header, &p.packed_digest))
            .collect();
        BlockHeader {
            timestamp: pending.timestamp,
            producer: pending.producer.producer_name,
            confirmed: 0,
            previous: self.head.block_id,
            transaction_mroot: merkle(&digests),
            action_mroot: merkle(&pending.action_digests),
            schedule_version: pending.schedule.version,
            new_producers: pending.new_producers.as_ref().map(header_schedule),
            header_extensions: Vec::new(),
        }
    }

    fn check_signature(
        &self,
        signed: &SignedBlockHeader,
        schedule_hash: &Checksum256,
        expected: &PublicKey,
    ) -> Result<(), BlockError> {
        let num = signed.block_num();
        match signed.recover_producer_key(&self.merkle.root(), schedule_hash) {
            Ok(k) if k == *expected => Ok(()),
            Ok(k) => Err(BlockError::BadSignature {
                block_num: num,
                expected: *expected,
                reason: format!("it recovers to {k}"),
            }),
            Err(e) => Err(BlockError::BadSignature {
                block_num: num,
                expected: *expected,
                reason: e.to_string(),
            }),
        }
    }

    /// Appends the block, its indexes, the new head and the chain's counters.
    fn write_block(
        &self,
        w: &mut BlockWrite<'_>,
        pending: &Pending,
        block: &SignedBlock,
    ) -> Result<Committed, BlockError> {
        let id = block.id();
        let num = pending.block_num;
        w.append_block(num, &id, &to_bytes(block))?;
        let mut merkle = self.merkle.clone();
        merkle.append(id);
        w.put(MERKLE_KEY, &to_bytes(&merkle))?;
        w.put(GLOBAL_SEQUENCE_KEY, &to_bytes(&pending.global_sequence))?;
        let producer = pending.producer.producer_name;
        let lib_num = last_irreversible(w, &pending.schedule, producer, num, self.head.lib_num)?;
        let lib_id = if lib_num == num {
            id
        } else {
            w.block_id(lib_num)?.ok_or_else(|| {
                BlockError::State("the last irreversible block is missing from the block log")
            })?
        };
        let head = Head {
            block_num: num,
            block_id: id,
            timestamp: pending.timestamp,
            producer,
            lib_num,
            lib_id,
            schedule_version: pending.schedule.version,
        };
        w.set_head(&head)?;
        Ok(Committed {
            head,
            merkle,
            global_sequence: pending.global_sequence,
            schedule: pending.schedule.clone(),
            summary: BlockSummary {
                block_num: num,
                id,
                timestamp: pending.timestamp,
                producer: pending.producer.producer_name,
                transactions: block.transactions.len(),
            },
        })
    }

    /// Checks and re-applies a producer's block.
    fn apply_block(
        &mut self,
        w: &mut BlockWrite<'_>,
        block: &SignedBlock,
        prepared: &[PreparedTransaction],
    ) -> Result<Committed, BlockError> {
        let h = &block.signed_header.header;
        let num = block.block_num();
        if num != self.head.block_num + 1 || h.previous != self.head.block_id {
            return Err(BlockError::Unlinkable {
                block_num: num,
                head_num: self.head.block_num,
                head_id: self.head.block_id,
                previous: h.previous,
            });
        }
        if !h.header_extensions.is_empty() || !block.block_extensions.is_empty() {
            return Err(BlockError::Unsupported {
                block_num: num,
                reason: "extensions are not accepted in blocks".into(),
            });
        }
        let mut pending = self.begin(w, h.timestamp)?;
        // A block announces exactly the schedule the chain proposed before it, or none.
        if h.new_producers != pending.new_producers.as_ref().map(header_schedule) {
            return Err(BlockError::Unsupported {
                block_num: num,
                reason: format!(
                    "new_producers is {:?} where this chain announces {:?}",
                    h.new_producers.as_ref().map(|s| s.version),
                    pending.new_producers.as_ref().map(|s| s.version)
                ),
            });
        }
        if h.producer != pending.producer.producer_name {
            return Err(BlockError::WrongProducer {
                producer: h.producer,
                scheduled: pending.producer.producer_name,
                timestamp: h.timestamp.to_string(),
            });
        }
        if h.schedule_version != pending.schedule.version {
            return Err(mismatch(
                num,
                "schedule_version",
                h.schedule_version,
                pending.schedule.version,
            ));
        }
        let key = pending.producer.block_signing_key;
        self.check_signature(&block.signed_header, &pending.schedule_hash, &key)?;
        for (index, (receipt, p)) in block.transactions.iter().zip(prepared).enumerate() {
            if receipt.header.status != TransactionStatus::Executed {
                return Err(BlockError::Unsupported {
                    block_num: num,
                    reason: format!(
                        "receipt {index} has status {}",
                        receipt.header.status.as_str()
                    ),
                });
            }
            self.apply_transaction(w, &mut pending, p.clone(), MAX_TRANSACTION_FUEL, usize::MAX)
                .map_err(|source| BlockError::Transaction { block_num: num, index, source })?;
            let ours = pending.receipts.last().map(|r| r.header);
            if ours != Some(receipt.header) {
                return Err(mismatch(
                    num,
                    "transaction receipt",
                    format!("{:?}", receipt.header),
                    format!("{ours:?}"),
                ));
            }
        }
        let ours = self.header(&pending);
        if ours.transaction_mroot != h.transaction_mroot {
            return Err(mismatch(
                num,
                "transaction_mroot",
                h.transaction_mroot,
                ours.transaction_mroot,
            ));
        }
        if ours.action_mroot != h.action_mroot {
            return Err(mismatch(num, "action_mroot", h.action_mroot, ours.action_mroot));
        }
        self.write_block(w, &pending, block)
    }

    /// Checks and runs one transaction in the pending block. On error nothing it did remains.
    /// `fuel` is the transaction's CPU budget: the node's policy for a block it builds,
    /// [`MAX_TRANSACTION_FUEL`] for a block it re-applies (fuel use is deterministic, so every
    /// transaction the producer ran within its budget runs here within the ceiling). Likewise
    /// `max_transactions`: the node's `max_block_transactions` for its own blocks, none for a
    /// block it re-applies (the producer's policy decided; the frame limit bounds it), so an api
    /// node configured lower still follows.
    fn apply_transaction(
        &mut self,
        w: &mut BlockWrite<'_>,
        pending: &mut Pending,
        p: PreparedTransaction,
        fuel: u64,
        max_transactions: usize,
    ) -> Result<TransactionTrace, TxError> {
        if pending.receipts.len() >= max_transactions {
            return Err(TxError::BlockFull(pending.receipts.len()));
        }
        let h = &p.trx.header;
        let now = micros(pending.timestamp);
        let exp = p.trx.header.expiration.to_time_point().0;
        if now >= exp {
            return Err(TxError::Expired {
                id: p.id,
                expiration: h.expiration.to_string(),
                now: pending.timestamp.to_string(),
            });
        }
        if exp > now + MAX_TRX_LIFETIME_SEC * 1_000_000 {
            return Err(TxError::ExpirationTooFar {
                expiration: h.expiration.to_string(),
                now: pending.timestamp.to_string(),
            });
        }
        let head_num = pending.block_num - 1;
        let back = head_num.wrapping_sub(u32::from(h.ref_block_num)) & 0xffff;
        let ref_ok = match head_num.checked_sub(back) {
            Some(n) if n > 0 => w.block_id(n)?.is_some_and(|id| h.verify_reference_block(&id)),
            _ => false,
        };
        if !ref_ok {
            return Err(TxError::BadReferenceBlock {
                ref_block_num: h.ref_block_num,
                ref_block_prefix: h.ref_block_prefix,
            });
        }
        if w.is_duplicate(&p.id)? {
            return Err(TxError::Duplicate(p.id));
        }
        if h.delay_sec.0 != 0 {
            return Err(TxError::Unsupported("delayed transactions are not supported".into()));
        }
        if !p.trx.context_free_actions.is_empty() {
            return Err(TxError::Unsupported("context-free actions are not supported".into()));
        }
        if !p.trx.transaction_extensions.is_empty() {
            return Err(TxError::Unsupported("transaction extensions are not supported".into()));
        }
        if p.trx.actions.is_empty() {
            return Err(TxError::NoAction);
        }

        let mut o = Overlay::new(w);
        check_authorization(&o, &p, &self.limits, &mut self.auth_cache)?;
        let mut run = Execution {
            vm: &self.vm,
            limits: &self.limits,
            now: pending.timestamp,
            sequence: pending.global_sequence,
            fuel,
            traces: Vec::with_capacity(p.trx.actions.len()),
            validated: false,
        };
        for (i, act) in p.trx.actions.iter().enumerate() {
            run.validated = p.validated.get(i).copied().unwrap_or(false);
            run.run(&mut o, act, 0, Name(0), 0)?;
        }
        let (sequence, traces) = (run.sequence, run.traces);
        o.commit()?;
        let expiration = p.trx.header.expiration.0;
        w.record_transaction(&p.id, expiration, pending.block_num)?;
        let trx_index = u32::try_from(pending.receipts.len()).unwrap_or(u32::MAX);
        w.record_actions(pending.block_num, trx_index, &p.trx.actions);

        let header = TransactionReceiptHeader {
            status: TransactionStatus::Executed,
            cpu_usage_us: BILLED_CPU_US,
            net_usage_words: VarUint32(p.net_usage_words),
        };
        pending.global_sequence = sequence;
        pending.action_digests.extend(traces.iter().map(|t| t.receipt.digest()));
        pending
            .receipts
            .push(TransactionReceipt { header, trx: TransactionVariant::Packed(p.packed.clone()) });
        let trace = TransactionTrace {
            id: p.id,
            block_num: pending.block_num,
            block_time: pending.timestamp,
            receipt: header,
            elapsed: BILLED_CPU_US,
            net_usage: u64::from(p.net_usage_words) * 8,
            action_traces: traces,
        };
        pending.accepted.push(p);
        Ok(trace)
    }
}

fn mismatch(
    block_num: u32,
    field: &'static str,
    found: impl std::fmt::Display,
    expected: impl std::fmt::Display,
) -> BlockError {
    BlockError::Mismatch {
        block_num,
        field,
        found: found.to_string(),
        expected: expected.to_string(),
    }
}

/// Decoded authorities keyed by the exact stored bytes of their permission record: decoding
/// checks every key on its curve (the costliest part of an authority check), and a record's
/// bytes fully determine its authority, so a hit is always right and nothing needs
/// invalidating. Bounded: cleared when full.
#[derive(Default)]
struct AuthorityCache(std::collections::HashMap<Vec<u8>, Authority>);

/// Most records the cache holds.
const AUTHORITY_CACHE_MAX: usize = 4096;

/// The transaction's view of permissions, through the cache.
struct CachedPermissions<'a, 'o, 'b, 't> {
    o: &'o Overlay<'b, 't>,
    cache: std::cell::RefCell<&'a mut AuthorityCache>,
}

impl PermissionSource for CachedPermissions<'_, '_, '_, '_> {
    fn authority(&self, level: Level) -> Result<Option<Authority>, AuthorityError> {
        let state = |e: StoreError| AuthorityError::State(e.to_string());
        let Some(raw) =
            self.o.get(&key::permission(level.actor, level.permission)).map_err(state)?
        else {
            return Ok(None);
        };
        let mut cache = self.cache.borrow_mut();
        if let Some(a) = cache.0.get(&raw) {
            return Ok(Some(a.clone()));
        }
        let rec: PermissionRecord =
            from_bytes(&raw).map_err(|e| state(corrupt("permission")(e)))?;
        if cache.0.len() >= AUTHORITY_CACHE_MAX {
            cache.0.clear();
        }
        cache.0.insert(raw, rec.auth.clone());
        Ok(Some(rec.auth))
    }
}

/// Native `eosio` actions whose required permission `linkauth` cannot change: their handlers
/// check the declared permission themselves.
fn special(act: &Action) -> bool {
    const SPECIAL: [Name; 5] = [
        Name::from_const("updateauth"),
        Name::from_const("deleteauth"),
        Name::from_const("linkauth"),
        Name::from_const("unlinkauth"),
        Name::from_const("canceldelay"),
    ];
    act.account == EOSIO && SPECIAL.contains(&act.name)
}

/// Every declared authorization exists, is at least what the action needs (linkauth, else
/// `active`) and is satisfied by the recovered keys; every key satisfied something.
fn check_authorization(
    o: &Overlay<'_, '_>,
    p: &PreparedTransaction,
    limits: &Limits,
    cache: &mut AuthorityCache,
) -> Result<(), TxError> {
    let view = CachedPermissions { o, cache: std::cell::RefCell::new(cache) };
    let mut checker = Checker::new(&p.keys, limits.max_authority_depth);
    let mut any = false;
    for act in &p.trx.actions {
        if account::account(o, act.account)?.is_none() {
            return Err(TxError::ActionValidate(format!(
                "action's code account '{}' does not exist",
                act.account
            )));
        }
        for l in &act.authorization {
            any = true;
            // The action's own account was just found.
            if l.actor != act.account && account::account(o, l.actor)?.is_none() {
                return Err(TxError::ActionValidate(format!(
                    "action's authorizing actor '{}' does not exist",
                    l.actor
                )));
            }
            if o.get(&key::permission(l.actor, l.permission))?.is_none() {
                return Err(TxError::ActionValidate(format!(
                    "action's authorizations include a non-existent permission: {}@{}",
                    l.actor, l.permission
                )));
            }
            if !special(act) {
                let min = account::linked_permission(o, l.actor, act.account, act.name)?
                    .unwrap_or(ACTIVE);
                if min != EOSIO_ANY
                    && !account::satisfies(
                        o,
                        l.actor,
                        l.permission,
                        min,
                        limits.max_authority_depth,
                    )?
                {
                    return Err(TxError::IrrelevantAuth {
                        actor: l.actor,
                        declared: l.permission,
                        required: min,
                    });
                }
            }
            checker.require(&view, *l).map_err(|e| match e {
                AuthorityError::State(s) => TxError::ActionValidate(format!("state read: {s}")),
                _ => TxError::Unsatisfied { actor: l.actor, permission: l.permission },
            })?;
        }
    }
    if !any {
        return Err(TxError::NoAuths);
    }
    let unused = checker.unused();
    if !unused.is_empty() {
        return Err(TxError::IrrelevantSignatures(unused));
    }
    Ok(())
}

/// Writes block 1: the genesis block every node of the chain derives identically.
fn genesis_block(w: &mut BlockWrite<'_>, genesis: &Genesis) -> Result<(), StoreError> {
    let chain_id = genesis.chain_id();
    let header = BlockHeader {
        timestamp: BlockTimestamp::from_time_point(genesis.initial_timestamp),
        producer: EOSIO,
        confirmed: 1,
        previous: Checksum256::ZERO,
        transaction_mroot: Checksum256::ZERO,
        action_mroot: chain_id,
        schedule_version: 0,
        new_producers: None,
        header_extensions: Vec::new(),
    };
    // The genesis block is not signed: every node builds it from the genesis file.
    let block = SignedBlock {
        signed_header: SignedBlockHeader { header, producer_signature: unsigned() },
        transactions: Vec::new(),
        block_extensions: Vec::new(),
    };
    let id = block.id();
    w.append_block(1, &id, &to_bytes(&block))?;
    let mut merkle = IncrementalMerkle::new();
    merkle.append(id);
    w.put(MERKLE_KEY, &to_bytes(&merkle))?;
    w.put(GLOBAL_SEQUENCE_KEY, &to_bytes(&0u64))?;
    w.set_head(&Head {
        block_num: 1,
        block_id: id,
        timestamp: block.signed_header.header.timestamp,
        producer: EOSIO,
        lib_num: 1,
        lib_id: id,
        schedule_version: 0,
    })
}

/// The placeholder signature of blocks that carry none (genesis, sign intents).
fn unsigned() -> Signature {
    let mut b = [0u8; 65];
    b[0] = 27;
    Signature::K1(b)
}

/// The intent block, if it is the block right after `head`.
fn read_intent(path: &Path, head: &Head) -> Option<SignedBlock> {
    let bytes = std::fs::read(path).ok()?;
    let block: SignedBlock = match from_bytes(&bytes) {
        Ok(b) => b,
        Err(e) => {
            tracing::warn!(path = %path.display(), error = %e, "unreadable sign intent ignored");
            return None;
        }
    };
    (block.block_num() == head.block_num + 1
        && block.signed_header.header.previous == head.block_id)
        .then_some(block)
}

/// Writes `data` to `path` durably: temporary file, fsync, rename, fsync of the directory.
fn write_intent(path: &Path, data: &[u8]) -> std::io::Result<()> {
    use std::io::Write;
    let mut tmp = path.to_path_buf();
    tmp.as_mut_os_string().push(".tmp");
    let mut f = std::fs::File::create(&tmp)?;
    f.write_all(data)?;
    f.sync_all()?;
    std::fs::rename(&tmp, path)?;
    if let Some(dir) = path.parent() {
        std::fs::File::open(if dir.as_os_str().is_empty() { Path::new(".") } else { dir })?
            .sync_all()?;
    }
    Ok(())
}
