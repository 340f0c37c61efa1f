//! History endpoints (`/v1/history/get_transaction`, `/v1/history/get_actions`), answered from
//! the block log and the transaction index in the snapshot.
//!
//! No traces are stored: an action trace here is rebuilt from the action as the block carries
//! it (receiver = the contract account), which is what native actions produce. `get_actions`
//! has no per-account index yet, so it scans the most recent [`MAX_SCANNED_BLOCKS`] blocks
//! (at most [`MAX_DECODED`] transactions, then `time_limit_exceeded_error`) and reports where
//! its window started (`scanned_from_block`). Nothing here writes state.

use rempart_core::block::{SignedBlock, TransactionVariant};
use rempart_core::transaction::{Action, Transaction, UnpackLimits};
use rempart_core::{BlockTimestamp, Checksum256, Name};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::abi::AbiCache;
use super::block::{load_block, packed_json};
use crate::config::Limits;
use crate::store::Snapshot;

/// Most blocks `get_actions` reads.
pub(super) const MAX_SCANNED_BLOCKS: u32 = 20_000;
/// Most actions `get_actions` returns.
pub(super) const MAX_ACTIONS: usize = 1000;
/// Most transactions `get_actions` decodes; past it the answer says `time_limit_exceeded_error`.
pub(super) const MAX_DECODED: usize = 50_000;

fn unpack_limits(limits: &Limits) -> UnpackLimits {
    UnpackLimits { max_inflated_bytes: limits.max_transaction_bytes }
}

#[derive(Deserialize)]
pub(super) struct TransactionParams {
    id: Checksum256,
}

struct TraceContext {
    trx_id: Checksum256,
    block_num: u32,
    block_time: BlockTimestamp,
}

fn action_trace(
    cache: &mut AbiCache<'_>,
    ctx: &TraceContext,
    ordinal: usize,
    act: &Action,
) -> Result<Value, ApiError> {
    Ok(json!({
        "action_ordinal": ordinal,
        "creator_action_ordinal": 0,
        "closest_unnotified_ancestor_action_ordinal": 0,
        "receipt": {
            "receiver": act.account,
            "act_digest": Checksum256::hash(&rempart_core::to_bytes(act)),
            "recv_sequence": 0,
            "auth_sequence": [],
            "code_sequence": 0,
            "abi_sequence": 0,
        },
        "receiver": act.account,
        "act": cache.action_json(act)?,
        "context_free": false,
        "elapsed": 0,
        "console": "",
        "trx_id": ctx.trx_id,
        "block_num": ctx.block_num,
        "block_time": ctx.block_time,
        "producer_block_id": null,
        "account_ram_deltas": [],
        "except": null,
        "error_code": null,
        "return_value_hex_data": "",
    }))
}

pub(super) fn get_transaction(
    snap: &Snapshot,
    limits: &Limits,
    p: TransactionParams,
) -> Result<Value, ApiError> {
    let num = snap.transaction_block(&p.id)?.ok_or_else(|| ApiError::unknown_transaction(p.id))?;
    let block = load_block(snap, num)?.ok_or_else(|| ApiError::unknown_transaction(p.id))?;
    let ulimits = unpack_limits(limits);
    let mut cache = AbiCache::new(snap);
    let lib = snap.head()?.map_or(0, |h| h.lib_num);
    for r in &block.transactions {
        let TransactionVariant::Packed(packed) = &r.trx else { continue };
        let Ok(signed) = packed.to_signed(&ulimits) else { continue };
        if signed.transaction.id() != p.id {
            continue;
        }
        let ctx = TraceContext {
            trx_id: p.id,
            block_num: num,
            block_time: block.signed_header.header.timestamp,
        };
        let traces = signed
            .transaction
            .actions
            .iter()
            .enumerate()
            .map(|(i, a)| action_trace(&mut cache, &ctx, i + 1, a))
            .collect::<Result<Vec<_>, _>>()?;
        let mut trx = super::block::transaction_json(&mut cache, &signed.transaction)?;
        trx["signatures"] = json!(signed.signatures);
        trx["context_free_data"] = json!(signed.context_free_data);
        return Ok(json!({
            "id": p.id,
            "trx": {
                "receipt": {
                    "status": r.header.status,
                    "cpu_usage_us": r.header.cpu_usage_us,
                    "net_usage_words": r.header.net_usage_words.0,
                    "trx": [1, packed_json(&mut cache, &ulimits, packed)?],
                },
                "trx": trx,
            },
            "block_time": ctx.block_time,
            "block_num": num,
            "last_irreversible_block": lib,
            "traces": traces,
        }));
    }
    Err(ApiError::unknown_transaction(p.id))
}

#[derive(Deserialize)]
pub(super) struct ActionsParams {
    account_name: Name,
    #[serde(default)]
    pos: Option<i64>,
    #[serde(default)]
    offset: Option<i64>,
}

/// Whether `account` took part in `act`: its receiver or one of its authorizers.
fn involves(act: &Action, account: Name) -> bool {
    act.account == account || act.authorization.iter().any(|a| a.actor == account)
}

struct Found {
    block_num: u32,
    block_time: BlockTimestamp,
    trx_id: Checksum256,
    ordinal: usize,
    action: Action,
}

/// Adds `block`'s actions involving `account` to `out`; returns how many transactions it
/// decoded.
fn matching_actions(
    block: &SignedBlock,
    ulimits: &UnpackLimits,
    account: Name,
    out: &mut Vec<Found>,
) -> usize {
    let mut decoded = 0;
    for r in &block.transactions {
        decoded += 1;
        let TransactionVariant::Packed(packed) = &r.trx else { continue };
        let Ok(trx): Result<Transaction, _> = packed.unpack_transaction(ulimits) else { continue };
        let id = trx.id();
        for (i, a) in trx.actions.into_iter().enumerate() {
            if involves(&a, account) {
                out.push(Found {
                    block_num: block.block_num(),
                    block_time: block.signed_header.header.timestamp,
                    trx_id: id,
                    ordinal: i + 1,
                    action: a,
                });
            }
        }
    }
    decoded
}

pub(super) fn get_actions(
    snap: &Snapshot,
    limits: &Limits,
    p: ActionsParams,
) -> Result<Value, ApiError> {
    let head = snap.head()?.ok_or_else(|| ApiError::internal("chain not initialised"))?;
    let first = head.block_num.saturating_sub(MAX_SCANNED_BLOCKS - 1).max(1);
    let ulimits = unpack_limits(limits);
    let mut found = Vec::new();
    let mut decoded = 0usize;
    let mut truncated = false;
    for num in first..=head.block_num {
        if decoded >= MAX_DECODED {
            truncated = true;
            break;
        }
        if let Some(block) = load_block(snap, num)? {
            decoded += matching_actions(&block, &ulimits, p.account_name, &mut found);
        }
    }
    // nodeos semantics: pos -1 means "from the newest"; offset -n also returns the n before.
    let total = found.len() as i64;
    let pos = p.pos.unwrap_or(-1);
    let offset = p.offset.unwrap_or(-20);
    let (start, end) = if pos < 0 {
        let end = total - 1;
        let start = if offset < 0 { end + offset } else { end };
        (start.max(0), end)
    } else if offset < 0 {
        ((pos + offset).max(0), pos.min(total - 1))
    } else {
        (pos, (pos + offset).min(total - 1))
    };
    let mut cache = AbiCache::new(snap);
    let mut actions = Vec::new();
    if total > 0 && start <= end {
        for seq in start..=end {
            let Ok(idx) = usize::try_from(seq) else { continue };
            let Some(f) = found.get(idx) else { continue };
            if actions.len() >= MAX_ACTIONS {
                break;
            }
            let ctx =
                TraceContext { trx_id: f.trx_id, block_num: f.block_num, block_time: f.block_time };
            actions.push(json!({
                "global_action_seq": seq,
                "account_action_seq": seq,
                "block_num": f.block_num,
                "block_time": f.block_time,
                "action_trace": action_trace(&mut cache, &ctx, f.ordinal, &f.action)?,
            }));
        }
    }
    Ok(json!({
        "actions": actions,
        "last_irreversible_block": head.lib_num,
        "time_limit_exceeded_error": truncated,
        "scanned_from_block": first,
    }))
}
