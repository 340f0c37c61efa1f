//! History endpoints (`/v1/history/get_transaction`, `/v1/history/get_actions`), answered from
//! the block log and the transaction index in the snapshot.
//!
//! No traces are stored: an action trace here is rebuilt from the action as the block carries
//! it (receiver = the contract account), which is what native actions produce. `get_actions`
//! reads the account action index the chain writes with each block (every transaction action
//! under its contract and each authorizing actor, numbered from 0 per account), so its cost
//! is the actions it returns (at most [`MAX_ACTIONS`]), however long the chain. Nothing here
//! writes state.

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

/// Most actions `get_actions` returns.
pub(super) const MAX_ACTIONS: usize = 1000;

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

/// The account sequence numbers `get_actions` returns, as nodeos's history plugin computes
/// them: `pos` -1 stands for one past the last action; a negative `offset` reaches back from
/// `pos`, a positive one forward, both ends included. `None` when the range is empty.
pub(super) fn action_range(last: Option<u64>, pos: i64, offset: i64) -> Option<(u64, u64)> {
    let pos = if pos == -1 { last.map_or(0, |l| l as i64 + 1) } else { pos };
    let (start, end) = if offset > 0 {
        (pos, pos.saturating_add(offset))
    } else {
        (pos.saturating_add(offset), pos)
    };
    let (start, end) = (start.max(0) as u64, end.min(last? as i64));
    if end < 0 || start > end as u64 {
        return None;
    }
    // At most MAX_ACTIONS, the newest when reaching back.
    let end = end as u64;
    let start =
        if offset > 0 { start } else { start.max(end.saturating_sub(MAX_ACTIONS as u64 - 1)) };
    let end = if offset > 0 { end.min(start + MAX_ACTIONS as u64 - 1) } else { end };
    Some((start, end))
}

pub(super) fn get_actions(
    snap: &Snapshot,
    limits: &Limits,
    p: ActionsParams,
) -> Result<Value, ApiError> {
    let head = snap.head()?.ok_or_else(|| ApiError::internal("chain not initialised"))?;
    let last = snap.last_account_action(p.account_name)?;
    let range = action_range(last, p.pos.unwrap_or(-1), p.offset.unwrap_or(-20));
    let entries = match range {
        Some((from, to)) => snap.account_actions(p.account_name, from, to)?,
        None => Vec::new(),
    };
    let ulimits = unpack_limits(limits);
    let mut cache = AbiCache::new(snap);
    let mut block: Option<SignedBlock> = None;
    let mut actions = Vec::with_capacity(entries.len());
    for (seq, at) in entries {
        if block.as_ref().is_none_or(|b| b.block_num() != at.block_num) {
            block = load_block(snap, at.block_num)?;
        }
        let missing =
            || ApiError::internal(format!("action {seq} of the index is not in the block log"));
        let b = block.as_ref().ok_or_else(missing)?;
        let TransactionVariant::Packed(packed) =
            &b.transactions.get(at.trx_index as usize).ok_or_else(missing)?.trx
        else {
            return Err(missing());
        };
        let trx: Transaction = packed
            .unpack_transaction(&ulimits)
            .map_err(|e| ApiError::internal(format!("stored transaction does not decode: {e}")))?;
        let act = trx.actions.get(at.action_index as usize).ok_or_else(missing)?;
        let ctx = TraceContext {
            trx_id: trx.id(),
            block_num: at.block_num,
            block_time: b.signed_header.header.timestamp,
        };
        actions.push(json!({
            "global_action_seq": seq,
            "account_action_seq": seq,
            "block_num": at.block_num,
            "block_time": ctx.block_time,
            "action_trace": action_trace(&mut cache, &ctx, at.action_index as usize + 1, act)?,
        }));
    }
    Ok(json!({
        "actions": actions,
        "last_irreversible_block": head.lib_num,
        "time_limit_exceeded_error": false,
    }))
}
