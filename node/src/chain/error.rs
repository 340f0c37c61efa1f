//! The chain's errors: why a transaction, a block or the chain itself was refused, each
//! transaction error mapped to the nodeos exception (code, name, what) clients already know.
//!
//! This module only names failures; it must never decide anything. Messages say what was wrong
//! and, where an operator or client can act, what to do.

use rempart_core::key::PublicKey;
use rempart_core::{Checksum256, Name};

use crate::native::NativeError;
use crate::store::StoreError;

/// Why a transaction was refused. Nothing it did remains in the state.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum TxError {
    /// The packed transaction (or its signatures) is too large.
    #[error("{0}")]
    TooBig(String),
    /// `packed_trx` is not a valid zlib stream or inflates past the limit.
    #[error("{0}")]
    Decompression(String),
    /// `packed_trx` does not decode.
    #[error("{0}")]
    Malformed(String),
    /// A signature recovers no key.
    #[error("{0}")]
    BadSignature(String),
    /// Two signatures by the same key.
    #[error("{0}")]
    DuplicateSignature(String),
    /// The transaction has no actions.
    #[error("transaction has no actions; add at least one")]
    NoAction,
    /// No action carries an authorization.
    #[error("transaction must have at least one authorization")]
    NoAuths,
    /// A feature this chain does not run (delays, context-free actions, extensions).
    #[error("{0}")]
    Unsupported(String),
    /// Expired against the pending block's time.
    #[error("expired transaction {id}: expiration is {expiration}, block time is {now}")]
    Expired {
        /// The transaction.
        id: Checksum256,
        /// Its expiration.
        expiration: String,
        /// The pending block's time.
        now: String,
    },
    /// Expiration more than an hour after the pending block's time.
    #[error(
        "transaction expiration {expiration} is too far in the future (block time {now}); at most 3600 s ahead"
    )]
    ExpirationTooFar {
        /// Its expiration.
        expiration: String,
        /// The pending block's time.
        now: String,
    },
    /// TaPoS names a block this chain does not have.
    #[error(
        "transaction's reference block (num {ref_block_num}, prefix {ref_block_prefix}) did not match; take ref_block_num/prefix from a recent block of this chain"
    )]
    BadReferenceBlock {
        /// The low 16 bits of the referenced number.
        ref_block_num: u16,
        /// The referenced prefix.
        ref_block_prefix: u32,
    },
    /// The same id was already accepted and has not expired.
    #[error("duplicate transaction {0}")]
    Duplicate(Checksum256),
    /// Signatures that satisfied no declared authorization.
    #[error("transaction bears irrelevant signatures from these keys: {}", keys(.0))]
    IrrelevantSignatures(Vec<PublicKey>),
    /// A declared authorization the signatures do not satisfy.
    #[error(
        "transaction declares authority '{actor}@{permission}', but does not have signatures for it"
    )]
    Unsatisfied {
        /// The actor.
        actor: Name,
        /// Its permission.
        permission: Name,
    },
    /// A declared permission lower than the one `linkauth` (or the default `active`) requires.
    #[error(
        "action declares irrelevant authority '{actor}@{declared}'; minimum authority is {actor}@{required}"
    )]
    IrrelevantAuth {
        /// The actor.
        actor: Name,
        /// What it declared.
        declared: Name,
        /// What the action needs.
        required: Name,
    },
    /// An action references an account or permission that does not exist.
    #[error("{0}")]
    ActionValidate(String),
    /// A native `eosio` action failed.
    #[error("{0}")]
    Native(#[from] NativeError),
    /// A contract action failed in the VM.
    #[error("{message}")]
    Contract {
        /// nodeos code, name and what.
        nodeos: (u64, &'static str, &'static str),
        /// What failed.
        message: String,
    },
    /// The pending block holds as many transactions as a block may.
    #[error("the block is full ({0} transactions); retry in the next block")]
    BlockFull(usize),
    /// No block is being produced (an api node, or a producer that is not running).
    #[error(
        "this node is not producing a block now; send the transaction to the producer or retry"
    )]
    NotProducing,
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

fn keys(k: &[PublicKey]) -> String {
    k.iter().map(|k| k.to_string()).collect::<Vec<_>>().join(", ")
}

impl TxError {
    /// The nodeos exception this error is: (code, name, what).
    pub fn nodeos(&self) -> (u64, &'static str, &'static str) {
        use TxError::*;
        match self {
            TooBig(_) | BlockFull(_) => (3_040_013, "tx_too_big", "Transaction is too big"),
            Decompression(_) => {
                (3_040_001, "tx_decompression_error", "Error decompressing transaction")
            }
            Malformed(_) | BadSignature(_) => {
                (3_010_010, "packed_transaction_type_exception", "Invalid packed transaction")
            }
            DuplicateSignature(_) => {
                (3_090_001, "tx_duplicate_sig", "Duplicate signature included")
            }
            NoAction => (3_040_002, "tx_no_action", "Transaction has no actions"),
            NoAuths => (3_040_003, "tx_no_auths", "Transaction has no authorizations"),
            Unsupported(_) => (3_040_000, "transaction_exception", "Transaction exception"),
            Expired { .. } => (3_040_005, "expired_tx_exception", "Expired Transaction"),
            ExpirationTooFar { .. } => {
                (3_040_006, "tx_exp_too_far_exception", "Transaction Expiration Too Far")
            }
            BadReferenceBlock { .. } => {
                (3_040_007, "invalid_ref_block_exception", "Invalid Reference Block")
            }
            Duplicate(_) => (3_040_008, "tx_duplicate", "Duplicate transaction"),
            IrrelevantSignatures(_) => {
                (3_090_002, "tx_irrelevant_sig", "Transaction includes an irrelevant signature")
            }
            Unsatisfied { .. } => {
                (3_090_003, "unsatisfied_authorization", "Unsatisfied authorization")
            }
            IrrelevantAuth { .. } => {
                (3_090_005, "irrelevant_auth_exception", "Irrelevant authority included")
            }
            ActionValidate(_) => {
                (3_050_000, "action_validate_exception", "Action validate exception")
            }
            Native(e) => e.nodeos(),
            Contract { nodeos, .. } => *nodeos,
            NotProducing => (3_170_000, "producer_exception", "Producer exception"),
            Store(_) => (3_060_000, "database_exception", "Database exception"),
        }
    }
}

/// Why a block was refused (apply) or not produced. Nothing was written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum BlockError {
    /// The block does not link to the head.
    #[error(
        "block {block_num} does not follow the head (head {head_num} {head_id}, block's previous {previous})"
    )]
    Unlinkable {
        /// The block's number.
        block_num: u32,
        /// The head number.
        head_num: u32,
        /// The head id.
        head_id: Checksum256,
        /// The block's `previous`.
        previous: Checksum256,
    },
    /// The timestamp is not after the head's.
    #[error("block timestamp {timestamp} is not after the head's {head}")]
    Timestamp {
        /// The block's slot.
        timestamp: String,
        /// The head's slot.
        head: String,
    },
    /// The producer is not the one scheduled for the slot.
    #[error("block is signed for producer {producer}, but slot {timestamp} belongs to {scheduled}")]
    WrongProducer {
        /// The header's producer.
        producer: Name,
        /// Who the schedule names.
        scheduled: Name,
        /// The slot.
        timestamp: String,
    },
    /// The signature does not recover to the scheduled key.
    #[error("block {block_num} signature is not by {expected}: {reason}")]
    BadSignature {
        /// The block number.
        block_num: u32,
        /// The scheduled key.
        expected: PublicKey,
        /// What recovery gave.
        reason: String,
    },
    /// A header field differs from what this chain computes.
    #[error("block {block_num}: {field} is {found}, this node computes {expected}")]
    Mismatch {
        /// The block number.
        block_num: u32,
        /// The field.
        field: &'static str,
        /// What the block says.
        found: String,
        /// What re-applying gave.
        expected: String,
    },
    /// A transaction of the block fails.
    #[error("block {block_num} transaction {index}: {source}")]
    Transaction {
        /// The block number.
        block_num: u32,
        /// Its position in the block.
        index: usize,
        /// Why it fails.
        source: TxError,
    },
    /// Something this chain does not accept in a block (extensions, new producers, ...).
    #[error("block {block_num}: {reason}")]
    Unsupported {
        /// The block number.
        block_num: u32,
        /// What.
        reason: String,
    },
    /// No signature came back (no answer in time, the link broke, the intent could not be
    /// recorded): the signer may or may not have signed this block.
    #[error("block {block_num} was not signed: {reason}")]
    Signer {
        /// The block number.
        block_num: u32,
        /// Why.
        reason: String,
    },
    /// The signer answered with a refusal: it did not sign this block.
    #[error("block {block_num} was refused by the signer: {reason}")]
    Refused {
        /// The block number.
        block_num: u32,
        /// The signer's reason.
        reason: String,
    },
    /// A block is being produced (start/apply while pending), or none is (finish).
    #[error("{0}")]
    State(&'static str),
    /// The pending block was dropped (abort, or the chain is shutting down).
    #[error("the pending block was abandoned")]
    Aborted,
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

/// Why the chain could not be opened.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ChainError {
    /// The store failed or belongs to another chain.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// The stored chain state is inconsistent.
    #[error("stored chain state is inconsistent: {0}; restore the data directory from a snapshot")]
    Corrupt(String),
    /// The contract VM could not start.
    #[error("cannot start the contract VM: {0}")]
    Vm(String),
    /// The apply thread could not start.
    #[error("cannot start the apply thread: {0}")]
    Thread(std::io::Error),
}

/// Why the signing callback of [`crate::chain::Chain::finish_block`] returned no signature.
///
/// The two cases differ for a block sent again after a restart: only an explicit refusal proves
/// the signer did not sign it; without an answer it may have, and then any other block at that
/// height would be refused as a double sign.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum SignFailure {
    /// The signer answered and refused.
    #[error("{0}")]
    Refused(String),
    /// No answer: timeout, broken link, signer down.
    #[error("{0}")]
    NoAnswer(String),
}
