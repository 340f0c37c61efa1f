//! Contract table endpoints: `get_table_rows` (primary index), `get_currency_balance` and
//! `get_currency_stats`, over rows stored at `store::key::row(code, scope, table, primary)`.
//!
//! A stored row value is the payer followed by the row's bytes, as the VM writes it
//! ([`crate::vm::encode_row`]). Every query is bounded: at most [`MAX_ROWS`] rows are
//! returned and at most [`MAX_SCANNED`] are read; a query that would read more fails with a
//! contract table query error naming the bounds to narrow. Nothing here writes state.

use std::collections::VecDeque;

use rempart_core::Name;
use rempart_core::asset::SymbolCode;
use serde::Deserialize;
use serde_json::{Value, json};

use super::ApiError;
use crate::store::{Entry, Snapshot, key};

/// Most rows one call returns.
pub(super) const MAX_ROWS: u32 = 1000;
/// Most rows one call reads (reverse queries read up to their lower bound).
pub(super) const MAX_SCANNED: usize = 100_000;
/// Rows read per store scan.
const CHUNK: usize = 256;

fn default_limit() -> u32 {
    10
}

#[derive(Deserialize)]
pub(super) struct TableRowsParams {
    code: Name,
    scope: Value,
    table: Name,
    #[serde(default)]
    json: bool,
    #[serde(default)]
    lower_bound: Option<Value>,
    #[serde(default)]
    upper_bound: Option<Value>,
    #[serde(default = "default_limit")]
    limit: u32,
    #[serde(default)]
    reverse: bool,
    #[serde(default)]
    index_position: Option<Value>,
    #[serde(default)]
    key_type: Option<String>,
    #[serde(default)]
    show_payer: bool,
}

/// A scope: a name, or the number of a non-name scope (a symbol code, say).
fn parse_scope(v: &Value) -> Result<Name, ApiError> {
    match v {
        Value::String(s) => {
            if let Ok(n) = s.parse::<Name>() {
                return Ok(n);
            }
            if let Ok(n) = s.parse::<u64>() {
                return Ok(Name(n));
            }
            if let Ok(c) = s.parse::<SymbolCode>() {
                return Ok(Name(c.value()));
            }
            Err(ApiError::bad_request(format!("scope {s:?} is neither a name nor a number")))
        }
        Value::Number(n) => n
            .as_u64()
            .map(Name)
            .ok_or_else(|| ApiError::bad_request(format!("scope {n} is not a u64"))),
        _ => Err(ApiError::bad_request("scope must be a name or a number")),
    }
}

/// A primary-key bound: empty is none; digits are a number; otherwise a name.
fn parse_bound(v: Option<&Value>, key_type: &str) -> Result<Option<u64>, ApiError> {
    match v {
        None | Some(Value::Null) => Ok(None),
        Some(Value::Number(n)) => n
            .as_u64()
            .map(Some)
            .ok_or_else(|| ApiError::bad_request(format!("bound {n} is not a u64"))),
        Some(Value::String(s)) if s.is_empty() => Ok(None),
        Some(Value::String(s)) => {
            if key_type != "name"
                && let Ok(n) = s.parse::<u64>()
            {
                return Ok(Some(n));
            }
            s.parse::<Name>().map(|n| Some(n.value())).map_err(|_| {
                ApiError::bad_request(format!("bound {s:?} is neither a number nor a name"))
            })
        }
        Some(_) => Err(ApiError::bad_request("bounds must be strings or numbers")),
    }
}

/// Splits a stored row value into payer and row bytes (the VM's layout).
fn split_row(v: &[u8]) -> Result<(Name, &[u8]), ApiError> {
    crate::vm::decode_row(v).ok_or_else(|| ApiError::internal("stored row shorter than its payer"))
}

fn primary_of(k: &[u8]) -> u64 {
    let tail: [u8; 8] = k[k.len() - 8..].try_into().unwrap_or([0; 8]);
    u64::from_be_bytes(tail)
}

/// Rows of one table with primary keys in `[lower, upper]`, `limit` of them (from the top
/// when `reverse`), and whether more follow (with the key to continue from).
fn select(
    snap: &Snapshot,
    prefix: &[u8],
    lower: u64,
    upper: u64,
    limit: usize,
    reverse: bool,
) -> Result<(Vec<Entry>, Option<u64>), ApiError> {
    let mut from = prefix.to_vec();
    from.extend_from_slice(&lower.to_be_bytes());
    let mut kept: VecDeque<Entry> = VecDeque::new();
    let mut scanned = 0usize;
    let mut inclusive = true;
    loop {
        let chunk = snap.scan(prefix, &from, CHUNK + 1)?;
        let mut last_key = None;
        let mut reached_end = chunk.len() <= CHUNK;
        for (k, v) in chunk.into_iter() {
            if !inclusive && k == from {
                continue;
            }
            if primary_of(&k) > upper {
                reached_end = true;
                break;
            }
            scanned += 1;
            last_key = Some(k.clone());
            kept.push_back((k, v));
            if !reverse && kept.len() > limit {
                // One past the limit: it is the next key.
                let next = kept.pop_back().map(|(k, _)| primary_of(&k));
                return Ok((kept.into_iter().collect(), next));
            }
            if reverse && kept.len() > limit + 1 {
                kept.pop_front();
            }
            if scanned >= MAX_SCANNED {
                return Err(ApiError::table_query(format!(
                    "query reads more than {MAX_SCANNED} rows; narrow it with lower_bound and \
                     upper_bound"
                )));
            }
        }
        match last_key {
            Some(k) if !reached_end => {
                from = k;
                inclusive = false;
            }
            _ => break,
        }
    }
    if reverse {
        let mut rows: Vec<Entry> = kept.into_iter().rev().collect();
        let next = if rows.len() > limit { rows.pop().map(|(k, _)| primary_of(&k)) } else { None };
        Ok((rows, next))
    } else {
        Ok((kept.into_iter().collect(), None))
    }
}

pub(super) fn get_table_rows(snap: &Snapshot, p: TableRowsParams) -> Result<Value, ApiError> {
    let index_ok = match &p.index_position {
        None | Some(Value::Null) => true,
        Some(Value::String(s)) => matches!(s.as_str(), "" | "1" | "primary" | "first"),
        Some(Value::Number(n)) => n.as_u64() == Some(1),
        Some(_) => false,
    };
    if !index_ok {
        return Err(ApiError::table_query(
            "only the primary index (index_position 1) is supported",
        ));
    }
    let scope = parse_scope(&p.scope)?;
    let key_type = p.key_type.as_deref().unwrap_or("");
    let lower = parse_bound(p.lower_bound.as_ref(), key_type)?.unwrap_or(0);
    let upper = parse_bound(p.upper_bound.as_ref(), key_type)?.unwrap_or(u64::MAX);
    let limit = p.limit.clamp(1, MAX_ROWS) as usize;
    super::account::require_account(snap, p.code)?;
    let row_type = if p.json {
        let abi = super::abi::require(snap, p.code)?;
        let ty = abi.table_type(p.table).map(str::to_owned).ok_or_else(|| {
            ApiError::table_query(format!("table {} is not specified in the ABI", p.table))
        })?;
        Some((abi, ty))
    } else {
        None
    };
    let prefix = key::table_prefix(p.code, scope, p.table);
    let (entries, next) = if lower > upper {
        (Vec::new(), None)
    } else {
        select(snap, &prefix, lower, upper, limit, p.reverse)?
    };
    let mut rows = Vec::with_capacity(entries.len());
    for (_, v) in &entries {
        let (payer, data) = split_row(v)?;
        let data = match &row_type {
            Some((abi, ty)) => {
                abi.bin_to_json(ty, data).map_err(|e| ApiError::unpack(e.to_string()))?
            }
            None => Value::String(hex::encode(data)),
        };
        rows.push(if p.show_payer { json!({ "data": data, "payer": payer }) } else { data });
    }
    let next_key = match next {
        Some(k) if key_type == "name" => Name(k).to_string(),
        Some(k) => k.to_string(),
        None => String::new(),
    };
    Ok(json!({ "rows": rows, "more": next.is_some(), "next_key": next_key }))
}

#[derive(Deserialize)]
pub(super) struct CurrencyBalanceParams {
    code: Name,
    account: Name,
    #[serde(default)]
    symbol: Option<String>,
}

/// Every row of one table in one scope, decoded with `abi` (bounded by [`MAX_ROWS`]).
fn all_rows(snap: &Snapshot, code: Name, scope: Name, table: Name) -> Result<Vec<Value>, ApiError> {
    let abi = super::abi::require(snap, code)?;
    let ty = abi.table_type(table).ok_or_else(|| {
        ApiError::table_query(format!("table {table} is not specified in the ABI"))
    })?;
    let prefix = key::table_prefix(code, scope, table);
    let (entries, _) = select(snap, &prefix, 0, u64::MAX, MAX_ROWS as usize, false)?;
    entries
        .iter()
        .map(|(_, v)| {
            let (_, data) = split_row(v)?;
            abi.bin_to_json(ty, data).map_err(|e| ApiError::unpack(e.to_string()))
        })
        .collect()
}

fn symbol_of(asset: &str) -> Option<&str> {
    asset.split_whitespace().nth(1)
}

pub(super) fn get_currency_balance(
    snap: &Snapshot,
    p: CurrencyBalanceParams,
) -> Result<Value, ApiError> {
    let want = p.symbol.as_deref().map(str::trim).filter(|s| !s.is_empty());
    let rows = all_rows(snap, p.code, p.account, Name::from_const("accounts"))?;
    let balances: Vec<Value> = rows
        .into_iter()
        .filter_map(|r| r.get("balance").and_then(Value::as_str).map(str::to_owned))
        .filter(|b| want.is_none() || symbol_of(b) == want)
        .map(Value::String)
        .collect();
    Ok(Value::Array(balances))
}

#[derive(Deserialize)]
pub(super) struct CurrencyStatsParams {
    code: Name,
    symbol: String,
}

pub(super) fn get_currency_stats(
    snap: &Snapshot,
    p: CurrencyStatsParams,
) -> Result<Value, ApiError> {
    let code: SymbolCode = p
        .symbol
        .trim()
        .parse()
        .map_err(|e| ApiError::bad_request(format!("symbol {:?}: {e}", p.symbol)))?;
    let rows = all_rows(snap, p.code, Name(code.value()), Name::from_const("stat"))?;
    let mut out = serde_json::Map::new();
    for r in rows {
        if let Some(sym) = r.get("supply").and_then(Value::as_str).and_then(symbol_of) {
            out.insert(sym.to_owned(), r.clone());
        }
    }
    Ok(Value::Object(out))
}
