//! Account endpoints: `get_info`, `get_account` (permissions with their `linkauth` links and
//! the resource fields clients decode), `get_required_keys` and `get_producers`.
//!
//! Resources are not metered on this chain: limits are reported as unlimited (-1), as nodeos
//! does for an account without a system contract. Nothing here writes state.

use std::collections::{BTreeMap, BTreeSet};

use rempart_core::key::PublicKey;
use rempart_core::transaction::Transaction;
use rempart_core::{Name, from_bytes};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use super::abi::{AbiCache, AccountParams};
use crate::account::{PermissionRecord, Permissions};
use crate::authority::{AuthorityError, Checker, Level};
use crate::config::Limits;
use crate::genesis::ProducerSchedule;
use crate::store::{Snapshot, StoreError, key};

/// `get_info`: every field wharfkit's decoder requires, and eosjs's LIB time.
pub(super) fn get_info(snap: &Snapshot) -> Result<Value, ApiError> {
    let head = snap.head()?.ok_or_else(|| ApiError::internal("chain not initialised"))?;
    let chain_id = snap.chain_id()?.ok_or_else(|| ApiError::internal("chain not initialised"))?;
    // get_info is the health probe: decode the LIB block only when it is not the head.
    let lib_time = if head.lib_num == head.block_num {
        head.timestamp
    } else {
        match snap.block(head.lib_num)? {
            Some(bytes) => from_bytes::<rempart_core::block::SignedBlock>(&bytes)
                .map(|b| b.signed_header.header.timestamp)
                .unwrap_or(head.timestamp),
            None => head.timestamp,
        }
    };
    Ok(json!({
        "server_version": "00000000",
        "chain_id": chain_id,
        "head_block_num": head.block_num,
        "last_irreversible_block_num": head.lib_num,
        "last_irreversible_block_id": head.lib_id,
        "head_block_id": head.block_id,
        "head_block_time": head.timestamp,
        "head_block_producer": head.producer,
        "virtual_block_cpu_limit": 200_000_000u64,
        "virtual_block_net_limit": 1_048_576_000u64,
        "block_cpu_limit": 200_000u64,
        "block_net_limit": 1_048_576u64,
        "server_version_string": super::SERVER_VERSION,
        "fork_db_head_block_num": head.block_num,
        "fork_db_head_block_id": head.block_id,
        "server_full_version_string": super::SERVER_VERSION,
        "earliest_available_block_num": 1,
        "last_irreversible_block_time": lib_time,
        "total_cpu_weight": 0,
        "total_net_weight": 0,
    }))
}

/// Errors unless `account` exists.
pub(super) fn require_account(snap: &Snapshot, account: Name) -> Result<(), ApiError> {
    match snap.get(&key::account(account))? {
        Some(_) => Ok(()),
        None => Err(ApiError::unknown_account(account)),
    }
}

fn name_at(k: &[u8], at: usize) -> Result<Name, ApiError> {
    let bytes: [u8; 8] = k
        .get(at..at + 8)
        .and_then(|b| b.try_into().ok())
        .ok_or_else(|| ApiError::internal("state key shorter than its layout"))?;
    Ok(Name(u64::from_be_bytes(bytes)))
}

/// Most permissions or links listed for one account.
const MAX_LISTED: usize = 4096;

/// `get_account` in nodeos's shape (resources are unlimited: -1).
pub(super) fn get_account(snap: &Snapshot, p: AccountParams) -> Result<Value, ApiError> {
    let rec = crate::account::account(snap, p.account_name)?
        .ok_or_else(|| ApiError::unknown_account(p.account_name))?;
    let head = snap.head()?;
    let head_time = head.as_ref().map(|h| h.timestamp).unwrap_or_default();

    // linkauth entries: 'l' ‖ account ‖ code ‖ action → required permission.
    let mut links: BTreeMap<Name, Vec<Value>> = BTreeMap::new();
    let prefix = key::link(p.account_name, Name(0), Name(0));
    let prefix = &prefix[..9];
    for (k, v) in snap.scan(prefix, prefix, MAX_LISTED)? {
        let requirement: Name =
            from_bytes(&v).map_err(|source| StoreError::Corrupt { what: "link", source })?;
        let code = name_at(&k, 9)?;
        let action = name_at(&k, 17)?;
        let entry = if action == Name(0) {
            json!({ "account": code })
        } else {
            json!({ "account": code, "action": action })
        };
        links.entry(requirement).or_default().push(entry);
    }

    let mut permissions = Vec::new();
    let prefix = key::permission_prefix(p.account_name);
    for (k, v) in snap.scan(&prefix, &prefix, MAX_LISTED)? {
        let perm: PermissionRecord =
            from_bytes(&v).map_err(|source| StoreError::Corrupt { what: "permission", source })?;
        let name = name_at(&k, 9)?;
        let parent = if perm.parent == Name(0) { String::new() } else { perm.parent.to_string() };
        permissions.push(json!({
            "perm_name": name,
            "parent": parent,
            "required_auth": perm.auth,
            "linked_actions": links.remove(&name).unwrap_or_default(),
        }));
    }
    let unlimited = json!({
        "used": 0,
        "available": -1,
        "max": -1,
        "last_usage_update_time": head_time,
        "current_used": 0,
    });
    Ok(json!({
        "account_name": rec.name,
        "head_block_num": head.as_ref().map_or(0, |h| h.block_num),
        "head_block_time": head_time,
        "privileged": rec.privileged,
        "last_code_update": rec.last_code_update,
        "created": rec.creation_date,
        "ram_quota": -1,
        "net_weight": -1,
        "cpu_weight": -1,
        "net_limit": unlimited,
        "cpu_limit": unlimited,
        "subjective_cpu_bill_limit": unlimited,
        "ram_usage": 0,
        "permissions": permissions,
        "total_resources": {
            "owner": rec.name,
            "net_weight": "0.0000 SYS",
            "cpu_weight": "0.0000 SYS",
            "ram_bytes": 0,
        },
        "self_delegated_bandwidth": null,
        "refund_request": null,
        "voter_info": null,
        "rex_info": null,
        "eosio_any_linked_actions": [],
    }))
}

#[derive(Deserialize)]
pub(super) struct RequiredKeysParams {
    transaction: Value,
    available_keys: Vec<PublicKey>,
}

/// Replaces action `data` given as JSON objects by its ABI serialization, so a transaction
/// built by hand (or by a client that did not serialize) still decodes.
fn serialize_action_data(
    cache: &mut AbiCache<'_>,
    actions: Option<&mut Value>,
) -> Result<(), ApiError> {
    let Some(Value::Array(actions)) = actions else { return Ok(()) };
    for act in actions {
        let Some(obj) = act.as_object_mut() else { continue };
        if matches!(obj.get("data"), Some(Value::String(_)) | None) {
            continue;
        }
        let account: Name = obj
            .get("account")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::bad_request("action without a valid account"))?;
        let name: Name = obj
            .get("name")
            .and_then(Value::as_str)
            .and_then(|s| s.parse().ok())
            .ok_or_else(|| ApiError::bad_request("action without a valid name"))?;
        let abi = cache
            .get(account)?
            .ok_or_else(|| ApiError::abi_not_found(format!("{account} has no ABI")))?;
        let data = obj.get("data").cloned().unwrap_or(Value::Null);
        let bin = abi.action_json_to_bin(name, &data).map_err(|e| ApiError::pack(e.to_string()))?;
        obj.insert("data".into(), Value::String(hex::encode(bin)));
    }
    Ok(())
}

/// `get_required_keys`: which of the available keys satisfy every declared authorization.
pub(super) fn get_required_keys(
    snap: &Snapshot,
    limits: &Limits,
    mut p: RequiredKeysParams,
) -> Result<Value, ApiError> {
    let mut cache = AbiCache::new(snap);
    serialize_action_data(&mut cache, p.transaction.get_mut("actions"))?;
    serialize_action_data(&mut cache, p.transaction.get_mut("context_free_actions"))?;
    let trx: Transaction = serde_json::from_value(p.transaction)
        .map_err(|e| ApiError::bad_request(format!("invalid transaction: {e}")))?;
    let available: BTreeSet<PublicKey> = p.available_keys.into_iter().collect();
    let mut checker = Checker::new(&available, limits.max_authority_depth);
    let source = Permissions(snap);
    for act in &trx.actions {
        for auth in &act.authorization {
            let level = Level { actor: auth.actor, permission: auth.permission };
            checker.require(&source, level).map_err(|e| match e {
                AuthorityError::State(s) => {
                    tracing::error!(error = %s, "state read failed in get_required_keys");
                    ApiError::internal("state database error; see the node log")
                }
                other => {
                    ApiError::unsatisfied_authorization(format!("{other} with the available keys"))
                }
            })?;
        }
    }
    let keys: Vec<String> = checker.used().iter().map(ToString::to_string).collect();
    Ok(json!({ "required_keys": keys }))
}

/// `get_producers`: the active schedule, without votes.
pub(super) fn get_producers(snap: &Snapshot) -> Result<Value, ApiError> {
    let schedule: Option<ProducerSchedule> = snap.get_record(&key::schedule(), "schedule")?;
    let rows: Vec<Value> = schedule
        .map(|s| s.producers)
        .unwrap_or_default()
        .into_iter()
        .map(|p| {
            json!({
                "owner": p.producer_name,
                "producer_key": p.block_signing_key,
                "url": "",
                "total_votes": "0.00000000000000000",
                "is_active": 1,
                "unpaid_blocks": 0,
                "last_claim_time": "1970-01-01T00:00:00.000",
                "location": 0,
            })
        })
        .collect();
    Ok(json!({ "rows": rows, "total_producer_vote_weight": "0.00000000000000000", "more": "" }))
}
