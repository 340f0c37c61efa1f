//! Block endpoints (`get_block`, `get_block_info`, `get_block_header_state`) and the nodeos
//! JSON shape of blocks and of the transactions they carry, which history reuses.
//!
//! Blocks are read from the block log in the snapshot and decoded with core's bounded
//! decoders; a block that does not decode is reported as a corrupt store, never half-shown.

use rempart_core::block::{SignedBlock, TransactionReceipt, TransactionVariant};
use rempart_core::transaction::{PackedTransaction, UnpackLimits, ref_block_num, ref_block_prefix};
use rempart_core::{Checksum256, from_bytes};
use serde::Deserialize;
use serde_json::{Map, Value, json};

use super::ApiError;
use super::abi::AbiCache;
use crate::genesis::ProducerSchedule;
use crate::store::{Snapshot, StoreError, key};

#[derive(Deserialize)]
pub(super) struct BlockParams {
    block_num_or_id: Value,
}

#[derive(Deserialize)]
pub(super) struct BlockNumParams {
    block_num: Value,
}

/// The block a `block_num_or_id` names: a number (JSON or decimal string) or a 64-hex id.
pub(super) fn find_block(snap: &Snapshot, which: &Value) -> Result<SignedBlock, ApiError> {
    let shown = match which {
        Value::String(s) => s.chars().take(80).collect::<String>(),
        other => other.to_string().chars().take(80).collect(),
    };
    let num = match which {
        Value::Number(n) => n.as_u64().and_then(|n| u32::try_from(n).ok()),
        Value::String(s) if s.len() == 64 => {
            let id: Checksum256 =
                s.parse().map_err(|_| ApiError::bad_request(format!("bad block id {shown}")))?;
            snap.block_num(&id)?
        }
        Value::String(s) => s.trim().parse::<u32>().ok(),
        _ => None,
    };
    let num = num.ok_or_else(|| ApiError::unknown_block(&shown))?;
    load_block(snap, num)?.ok_or_else(|| ApiError::unknown_block(&shown))
}

/// Block `num` from the log, decoded.
pub(super) fn load_block(snap: &Snapshot, num: u32) -> Result<Option<SignedBlock>, ApiError> {
    let Some(bytes) = snap.block(num)? else { return Ok(None) };
    let block =
        from_bytes(&bytes).map_err(|source| StoreError::Corrupt { what: "block", source })?;
    Ok(Some(block))
}

fn extensions_json(ext: &[(u16, rempart_core::Bytes)]) -> Value {
    Value::Array(ext.iter().map(|(t, d)| json!({ "type": t, "data": d })).collect())
}

/// The header fields as nodeos writes them (no id, no transactions).
fn header_json(block: &SignedBlock) -> Map<String, Value> {
    let h = &block.signed_header.header;
    let mut m = Map::new();
    m.insert("timestamp".into(), json!(h.timestamp));
    m.insert("producer".into(), json!(h.producer));
    m.insert("confirmed".into(), json!(h.confirmed));
    m.insert("previous".into(), json!(h.previous));
    m.insert("transaction_mroot".into(), json!(h.transaction_mroot));
    m.insert("action_mroot".into(), json!(h.action_mroot));
    m.insert("schedule_version".into(), json!(h.schedule_version));
    m.insert("new_producers".into(), json!(h.new_producers));
    m.insert("header_extensions".into(), extensions_json(&h.header_extensions));
    m.insert("producer_signature".into(), json!(block.signed_header.producer_signature));
    m
}

/// A packed transaction as `get_block` shows it: the packed fields, its id, and the
/// transaction decoded (action data through the contracts' ABIs).
pub(super) fn packed_json(
    cache: &mut AbiCache<'_>,
    limits: &UnpackLimits,
    p: &PackedTransaction,
) -> Result<Value, ApiError> {
    let mut v = json!({
        "signatures": p.signatures,
        "compression": p.compression,
        "packed_context_free_data": p.packed_context_free_data,
        "packed_trx": p.packed_trx,
    });
    // A block in our log passed validation; if it no longer decodes, show the packed form only.
    if let Ok(signed) = p.to_signed(limits) {
        v["id"] = json!(signed.transaction.id());
        v["context_free_data"] = json!(signed.context_free_data);
        v["transaction"] = transaction_json(cache, &signed.transaction)?;
    }
    Ok(v)
}

/// A transaction in nodeos's JSON shape, action data decoded where an ABI allows.
pub(super) fn transaction_json(
    cache: &mut AbiCache<'_>,
    trx: &rempart_core::transaction::Transaction,
) -> Result<Value, ApiError> {
    let h = &trx.header;
    let cfa = trx
        .context_free_actions
        .iter()
        .map(|a| cache.action_json(a))
        .collect::<Result<Vec<_>, _>>()?;
    let actions =
        trx.actions.iter().map(|a| cache.action_json(a)).collect::<Result<Vec<_>, _>>()?;
    Ok(json!({
        "expiration": h.expiration,
        "ref_block_num": h.ref_block_num,
        "ref_block_prefix": h.ref_block_prefix,
        "max_net_usage_words": h.max_net_usage_words.0,
        "max_cpu_usage_ms": h.max_cpu_usage_ms,
        "delay_sec": h.delay_sec.0,
        "context_free_actions": cfa,
        "actions": actions,
        "transaction_extensions": trx.transaction_extensions,
    }))
}

fn receipt_json(
    cache: &mut AbiCache<'_>,
    limits: &UnpackLimits,
    r: &TransactionReceipt,
) -> Result<Value, ApiError> {
    let trx = match &r.trx {
        TransactionVariant::Id(id) => json!(id),
        TransactionVariant::Packed(p) => packed_json(cache, limits, p)?,
    };
    Ok(json!({
        "status": r.header.status,
        "cpu_usage_us": r.header.cpu_usage_us,
        "net_usage_words": r.header.net_usage_words.0,
        "trx": trx,
    }))
}

/// A whole block in `get_block`'s shape.
pub(super) fn block_json(snap: &Snapshot, block: &SignedBlock) -> Result<Value, ApiError> {
    let limits = UnpackLimits::default();
    let mut cache = AbiCache::new(snap);
    let id = block.id();
    let mut m = header_json(block);
    let transactions = block
        .transactions
        .iter()
        .map(|r| receipt_json(&mut cache, &limits, r))
        .collect::<Result<Vec<_>, _>>()?;
    m.insert("transactions".into(), Value::Array(transactions));
    // Written only when present: wharfkit 1.2 declares `block_extensions` as one optional
    // struct it cannot resolve, so even `[]` fails its decoder; eosjs ignores the field.
    if !block.block_extensions.is_empty() {
        m.insert("block_extensions".into(), extensions_json(&block.block_extensions));
    }
    m.insert("id".into(), json!(id));
    m.insert("block_num".into(), json!(block.block_num()));
    m.insert("ref_block_prefix".into(), json!(ref_block_prefix(&id)));
    Ok(Value::Object(m))
}

pub(super) fn get_block(snap: &Snapshot, p: BlockParams) -> Result<Value, ApiError> {
    let block = find_block(snap, &p.block_num_or_id)?;
    block_json(snap, &block)
}

pub(super) fn get_block_info(snap: &Snapshot, p: BlockNumParams) -> Result<Value, ApiError> {
    let block = find_block(snap, &p.block_num)?;
    let id = block.id();
    let mut m = header_json(&block);
    m.remove("new_producers");
    m.remove("header_extensions");
    m.insert("block_num".into(), json!(block.block_num()));
    m.insert("ref_block_num".into(), json!(ref_block_num(&id)));
    m.insert("id".into(), json!(id));
    m.insert("ref_block_prefix".into(), json!(ref_block_prefix(&id)));
    Ok(Value::Object(m))
}

pub(super) fn get_block_header_state(snap: &Snapshot, p: BlockParams) -> Result<Value, ApiError> {
    let block = find_block(snap, &p.block_num_or_id)?;
    let id = block.id();
    let head = snap.head()?;
    let lib = head.as_ref().map_or(0, |h| h.lib_num);
    let schedule: Option<ProducerSchedule> = snap.get_record(&key::schedule(), "schedule")?;
    let schedule = schedule.map(|s| {
        json!({
            "version": s.version,
            "producers": s.producers.iter().map(|p| json!({
                "producer_name": p.producer_name,
                "authority": [0, {
                    "threshold": 1,
                    "keys": [{"key": p.block_signing_key, "weight": 1}],
                }],
            })).collect::<Vec<_>>(),
        })
    });
    let mut header = header_json(&block);
    header.remove("new_producers");
    let timestamp = header.get("timestamp").cloned().unwrap_or(Value::Null);
    Ok(json!({
        "block_num": block.block_num(),
        "dpos_proposed_irreversible_blocknum": lib,
        "dpos_irreversible_blocknum": lib,
        "id": id,
        "timestamp": timestamp,
        "header": Value::Object(header),
        "active_schedule": schedule,
        "blockroot_merkle": null,
        "producer_to_last_produced": [],
        "producer_to_last_implied_irb": [],
        "valid_block_signing_authority": null,
        "confirm_count": [],
        "pending_schedule": null,
        "activated_protocol_features": null,
        "additional_signatures": [],
    }))
}
