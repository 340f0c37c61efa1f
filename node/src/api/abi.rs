//! ABI endpoints (`get_abi`, `get_raw_abi`, `get_raw_code_and_abi`, `get_code_hash`,
//! `abi_json_to_bin`, `abi_bin_to_json`) and the per-request ABI cache other endpoints use to
//! show action data as JSON.
//!
//! ABIs come from the snapshot only and are validated by `rempart_core::abi` before use; a
//! stored ABI that does not validate is treated as absent (data stays hex), never trusted.

use std::collections::HashMap;
use std::sync::Arc;

use base64::Engine as _;
use rempart_core::abi::Abi;
use rempart_core::transaction::Action;
use rempart_core::{Bytes, Checksum256, Name};
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use crate::store::{Snapshot, key};

/// ABIs read during one request, by account.
pub(super) struct AbiCache<'s> {
    snap: &'s Snapshot,
    abis: HashMap<Name, Option<Arc<Abi>>>,
}

impl<'s> AbiCache<'s> {
    pub(super) fn new(snap: &'s Snapshot) -> Self {
        AbiCache { snap, abis: HashMap::new() }
    }

    /// The validated ABI of `account`, `None` when it has none (or an invalid one).
    pub(super) fn get(&mut self, account: Name) -> Result<Option<Arc<Abi>>, ApiError> {
        if let Some(a) = self.abis.get(&account) {
            return Ok(a.clone());
        }
        let abi = load(self.snap, account)?.map(Arc::new);
        self.abis.insert(account, abi.clone());
        Ok(abi)
    }

    /// An action in nodeos's JSON shape: `data` decoded with the contract's ABI when it can
    /// be, the hex otherwise, and always `hex_data`.
    pub(super) fn action_json(&mut self, act: &Action) -> Result<Value, ApiError> {
        let hex = hex::encode(&act.data.0);
        let decoded = self
            .get(act.account)?
            .and_then(|abi| abi.action_bin_to_json(act.name, &act.data.0).ok());
        Ok(json!({
            "account": act.account,
            "name": act.name,
            "authorization": act.authorization,
            "data": decoded.unwrap_or_else(|| Value::String(hex.clone())),
            "hex_data": hex,
        }))
    }
}

/// The stored ABI of `account`, validated; `None` when absent or invalid.
pub(super) fn load(snap: &Snapshot, account: Name) -> Result<Option<Abi>, ApiError> {
    let Some(bytes) = snap.get(&key::abi(account))? else { return Ok(None) };
    if bytes.is_empty() {
        return Ok(None);
    }
    match Abi::from_bin(&bytes) {
        Ok(abi) => Ok(Some(abi)),
        Err(e) => {
            tracing::warn!(%account, error = %e, "stored ABI does not validate; serving hex");
            Ok(None)
        }
    }
}

/// The ABI of `account` or a nodeos `abi_not_found_exception`.
pub(super) fn require(snap: &Snapshot, account: Name) -> Result<Abi, ApiError> {
    super::account::require_account(snap, account)?;
    load(snap, account)?.ok_or_else(|| ApiError::abi_not_found(format!("{account} has no ABI")))
}

#[derive(Deserialize)]
pub(super) struct AccountParams {
    pub(super) account_name: Name,
}

/// Code hash of an account (zero when it has no code).
pub(super) fn code_hash(snap: &Snapshot, account: Name) -> Result<Checksum256, ApiError> {
    Ok(snap.get_record(&key::code_hash(account), "code hash")?.unwrap_or(Checksum256::ZERO))
}

pub(super) fn get_abi(snap: &Snapshot, p: AccountParams) -> Result<Value, ApiError> {
    super::account::require_account(snap, p.account_name)?;
    match load(snap, p.account_name)? {
        Some(abi) => Ok(json!({ "account_name": p.account_name, "abi": abi.def() })),
        None => Ok(json!({ "account_name": p.account_name })),
    }
}

pub(super) fn get_raw_abi(snap: &Snapshot, p: AccountParams) -> Result<Value, ApiError> {
    super::account::require_account(snap, p.account_name)?;
    let abi = snap.get(&key::abi(p.account_name))?.unwrap_or_default();
    let abi_hash = if abi.is_empty() { Checksum256::ZERO } else { Checksum256::hash(&abi) };
    Ok(json!({
        "account_name": p.account_name,
        "code_hash": code_hash(snap, p.account_name)?,
        "abi_hash": abi_hash,
        "abi": base64::engine::general_purpose::STANDARD.encode(&abi),
    }))
}

pub(super) fn get_code_hash(snap: &Snapshot, p: AccountParams) -> Result<Value, ApiError> {
    super::account::require_account(snap, p.account_name)?;
    Ok(json!({ "account_name": p.account_name, "code_hash": code_hash(snap, p.account_name)? }))
}

pub(super) fn get_raw_code_and_abi(snap: &Snapshot, p: AccountParams) -> Result<Value, ApiError> {
    super::account::require_account(snap, p.account_name)?;
    let hash = code_hash(snap, p.account_name)?;
    let wasm = if hash == Checksum256::ZERO {
        Vec::new()
    } else {
        snap.get(&key::code(&hash))?.unwrap_or_default()
    };
    let abi = snap.get(&key::abi(p.account_name))?.unwrap_or_default();
    let b64 = base64::engine::general_purpose::STANDARD;
    Ok(json!({
        "account_name": p.account_name,
        "wasm": b64.encode(wasm),
        "abi": b64.encode(abi),
    }))
}

#[derive(Deserialize)]
pub(super) struct JsonToBinParams {
    code: Name,
    action: Name,
    args: Value,
}

pub(super) fn abi_json_to_bin(snap: &Snapshot, p: JsonToBinParams) -> Result<Value, ApiError> {
    let abi = require(snap, p.code)?;
    if abi.action_type(p.action).is_none() {
        return Err(ApiError::abi_not_found(format!(
            "the ABI of {} declares no action {}",
            p.code, p.action
        )));
    }
    let bin =
        abi.action_json_to_bin(p.action, &p.args).map_err(|e| ApiError::pack(e.to_string()))?;
    Ok(json!({ "binargs": hex::encode(bin) }))
}

#[derive(Deserialize)]
pub(super) struct BinToJsonParams {
    code: Name,
    action: Name,
    binargs: Bytes,
}

pub(super) fn abi_bin_to_json(snap: &Snapshot, p: BinToJsonParams) -> Result<Value, ApiError> {
    let abi = require(snap, p.code)?;
    if abi.action_type(p.action).is_none() {
        return Err(ApiError::abi_not_found(format!(
            "the ABI of {} declares no action {}",
            p.code, p.action
        )));
    }
    let args = abi
        .action_bin_to_json(p.action, &p.binargs.0)
        .map_err(|e| ApiError::unpack(e.to_string()))?;
    Ok(json!({ "args": args }))
}
