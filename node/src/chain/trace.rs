//! What applying a transaction produced: its trace (the `processed` object nodeos returns from
//! `push_transaction`) and the action receipts whose digests the block's `action_mroot` commits
//! to.
//!
//! Traces are built on the apply thread from data only; turning action data into JSON needs
//! ABIs, so [`TransactionTrace::to_json`] runs on the caller's thread with a decoder it is
//! given. Nothing here reads the state or the clock.

use rempart_core::block::TransactionReceiptHeader;
use rempart_core::transaction::Action;
use rempart_core::{BlockTimestamp, Checksum256, Name, VarUint32, packed_struct};
use serde_json::{Value, json};

packed_struct! {
    /// An action receipt (`action_receipt`): what the block's `action_mroot` commits to.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct ActionReceipt {
        /// The account whose code ran.
        pub receiver: Name,
        /// sha256 of the packed action.
        pub act_digest: Checksum256,
        /// Position of this action among every action the chain ran.
        pub global_sequence: u64,
        /// Position among the actions this receiver ran (here: the global sequence).
        pub recv_sequence: u64,
        /// Per authorizing actor, its sequence (here: the global sequence).
        pub auth_sequence: Vec<(Name, u64)>,
        /// Code version of the receiver.
        pub code_sequence: VarUint32,
        /// ABI version of the receiver.
        pub abi_sequence: VarUint32,
    }
}

impl ActionReceipt {
    /// sha256 of the packed receipt: a leaf of `action_mroot`.
    pub fn digest(&self) -> Checksum256 {
        Checksum256::hash_packed(self)
    }
}

/// One executed action (or notification) in a trace.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ActionTrace {
    /// 1-based position in the transaction's execution order.
    pub action_ordinal: u32,
    /// Ordinal of the action that caused this one (0 for a transaction's own actions).
    pub creator_action_ordinal: u32,
    /// Ordinal of the nearest ancestor that was not a notification.
    pub closest_unnotified_ancestor_action_ordinal: u32,
    /// The account whose code ran.
    pub receiver: Name,
    /// The action.
    pub act: Action,
    /// Its receipt.
    pub receipt: ActionReceipt,
    /// What the contract printed.
    pub console: String,
}

/// A transaction as applied: the `processed` part of a `push_transaction` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TransactionTrace {
    /// Transaction id.
    pub id: Checksum256,
    /// Number of the block that includes it.
    pub block_num: u32,
    /// That block's slot.
    pub block_time: BlockTimestamp,
    /// Status and billed usage, as the block's receipt carries them.
    pub receipt: TransactionReceiptHeader,
    /// Billed CPU in µs (nominal: the chain bills a fixed amount per transaction so that every
    /// node computes the same receipts).
    pub elapsed: u32,
    /// Billed NET in bytes.
    pub net_usage: u64,
    /// The actions run, in order.
    pub action_traces: Vec<ActionTrace>,
}

impl TransactionTrace {
    /// nodeos's `processed` JSON. `decode` turns an action's data into JSON with its
    /// contract's ABI (`None` when there is no ABI or the data does not match it; `data` is
    /// then the hex string, as nodeos writes it).
    pub fn to_json(&self, decode: &dyn Fn(&Action) -> Option<Value>) -> Value {
        let block_time = self.block_time.to_string();
        let traces: Vec<Value> = self
            .action_traces
            .iter()
            .map(|t| {
                let hex_data = hex::encode(&t.act.data.0);
                let data = decode(&t.act).unwrap_or_else(|| Value::String(hex_data.clone()));
                let r = &t.receipt;
                json!({
                    "action_ordinal": t.action_ordinal,
                    "creator_action_ordinal": t.creator_action_ordinal,
                    "closest_unnotified_ancestor_action_ordinal":
                        t.closest_unnotified_ancestor_action_ordinal,
                    "receipt": {
                        "receiver": r.receiver.to_string(),
                        "act_digest": r.act_digest.to_string(),
                        "global_sequence": r.global_sequence,
                        "recv_sequence": r.recv_sequence,
                        "auth_sequence": r.auth_sequence.iter()
                            .map(|(a, s)| json!([a.to_string(), s]))
                            .collect::<Vec<_>>(),
                        "code_sequence": r.code_sequence.0,
                        "abi_sequence": r.abi_sequence.0,
                    },
                    "receiver": t.receiver.to_string(),
                    "act": {
                        "account": t.act.account.to_string(),
                        "name": t.act.name.to_string(),
                        "authorization": t.act.authorization.iter()
                            .map(|l| json!({"actor": l.actor.to_string(),
                                            "permission": l.permission.to_string()}))
                            .collect::<Vec<_>>(),
                        "data": data,
                        "hex_data": hex_data,
                    },
                    "context_free": false,
                    "elapsed": 0,
                    "console": t.console,
                    "trx_id": self.id.to_string(),
                    "block_num": self.block_num,
                    "block_time": block_time,
                    "producer_block_id": null,
                    "account_ram_deltas": [],
                    "except": null,
                    "error_code": null,
                    "return_value_hex_data": "",
                })
            })
            .collect();
        json!({
            "id": self.id.to_string(),
            "block_num": self.block_num,
            "block_time": block_time,
            "producer_block_id": null,
            "receipt": {
                "status": self.receipt.status.as_str(),
                "cpu_usage_us": self.receipt.cpu_usage_us,
                "net_usage_words": self.receipt.net_usage_words.0,
            },
            "elapsed": self.elapsed,
            "net_usage": self.net_usage,
            "scheduled": false,
            "action_traces": traces,
            "account_ram_delta": null,
            "except": null,
            "error_code": null,
        })
    }
}
