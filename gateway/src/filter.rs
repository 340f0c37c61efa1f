//! The API filter (the job Patroneos did, without its holes): transaction bodies of
//! `push_transaction`, `send_transaction`, `push_transactions`, and the wrapped
//! `{"transaction": …}` of `send_transaction2`, `compute_transaction` and
//! `send_read_only_transaction` are decoded with `rempart-core` and
//! checked for size, number of actions, signatures, expiration window and a contract/action
//! block- or allowlist; expensive queries (`get_table_rows`, `get_table_by_scope`,
//! `get_producers`, `get_activated_protocol_features`, `get_actions`) get their `limit` capped
//! and absurd bounds refused. Transactions must come packed (`packed_trx`), as every client
//! library sends them; the unpacked JSON form is refused.
//!
//! The body handed to the filter is already bounded by the route class's `max_body_bytes`;
//! zlib inflation is bounded by `max_transaction_bytes`. What passes is re-serialised from what
//! was checked, so the upstream never reads a field the filter did not (duplicate keys,
//! unknown fields, parser differences). A body the filter cannot read is refused, never
//! passed: this module fails closed. It never does I/O, never reads the clock (the caller
//! passes the time), and never panics on client bytes.

use std::str::FromStr;

use bytes::Bytes;
use rempart_core::Name;
use rempart_core::key::Signature;
use rempart_core::time::TimePointSec;
use rempart_core::transaction::{
    Action, Compression, PackedTransaction, Transaction, TransactionError, UnpackLimits,
};
use serde::{Deserialize, Serialize};
use serde_json::Value;

#[cfg(test)]
mod tests;

/// What to do with a query whose `limit` is above [`FilterPolicy::max_query_limit`].
#[derive(Clone, Copy, Debug, PartialEq, Eq, Deserialize)]
#[serde(rename_all = "snake_case")]
pub enum OverLimit {
    /// Lower the limit to the cap and forward the query (clients page on as usual, since the
    /// answer says `more`).
    Clamp,
    /// Refuse the query with 400 `query_limit_too_high`.
    Reject,
}

/// A contract, or one action of a contract: `eosio.token` or `eosio.token::transfer`.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct ActionPattern {
    /// The contract account.
    pub account: Name,
    /// The action; `None` matches every action of the contract.
    pub action: Option<Name>,
}

impl ActionPattern {
    /// Whether `act` is covered by this pattern.
    pub fn matches(&self, act: &Action) -> bool {
        self.account == act.account && self.action.is_none_or(|a| a == act.name)
    }
}

impl FromStr for ActionPattern {
    type Err = String;
    fn from_str(s: &str) -> Result<Self, String> {
        let (account, action) = match s.split_once("::") {
            Some((c, a)) => (c, Some(a)),
            None => (s, None),
        };
        let name = |n: &str| {
            if n.is_empty() {
                return Err(format!("{s:?} has an empty name"));
            }
            Name::from_str(n).map_err(|e| format!("{s:?}: {e}"))
        };
        Ok(ActionPattern { account: name(account)?, action: action.map(name).transpose()? })
    }
}

impl std::fmt::Display for ActionPattern {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        match self.action {
            Some(a) => write!(f, "{}::{a}", self.account),
            None => write!(f, "{}", self.account),
        }
    }
}

/// The filter's settings, validated from the policy's `[filter]` section.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct FilterPolicy {
    /// Largest packed transaction, and largest packed context-free data, in bytes after zlib
    /// inflation (inflation stops one byte past it).
    pub max_transaction_bytes: usize,
    /// Most actions in one transaction.
    pub max_actions: usize,
    /// Most context-free actions in one transaction.
    pub max_context_free_actions: usize,
    /// Most signatures on one transaction.
    pub max_signatures: usize,
    /// Latest accepted expiration, in seconds after the gateway's clock.
    pub max_expiration_ahead_secs: u32,
    /// Most transactions in one `push_transactions` call.
    pub max_transactions_per_push: usize,
    /// Contracts and actions refused in any transaction (checked first).
    pub blocked: Vec<ActionPattern>,
    /// If not empty, only these contracts and actions may appear in a transaction.
    pub allowed: Vec<ActionPattern>,
    /// Highest `limit` of a table query, and highest `|offset|` of `get_actions`.
    pub max_query_limit: u32,
    /// What happens to a query above the cap.
    pub over_limit: OverLimit,
    /// Longest `lower_bound` / `upper_bound` of a table query, in characters.
    pub max_bound_chars: usize,
}

/// Why the filter refused a request. Every variant has a stable reason code
/// ([`Rejection::reason`]) used in the answer, the access log and the metrics.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum Rejection {
    /// The body is not the JSON this endpoint takes.
    #[error("the request body is not the JSON this API takes: {0}")]
    BadJson(String),
    /// The transaction could not be decoded or inflated.
    #[error("the transaction could not be decoded: {0}")]
    BadTransaction(String),
    /// The packed transaction or its context-free data is too large.
    #[error("the transaction is larger than {limit} bytes, the most this gateway forwards")]
    TooBig {
        /// The bound in force.
        limit: usize,
    },
    /// The transaction has no action.
    #[error("the transaction must have at least one action")]
    NoActions,
    /// Too many actions.
    #[error("the transaction has {count} actions; at most {limit} are accepted here")]
    TooManyActions {
        /// Actions sent.
        count: usize,
        /// The bound in force.
        limit: usize,
    },
    /// Too many context-free actions.
    #[error("the transaction has {count} context-free actions; at most {limit} are accepted here")]
    TooManyContextFreeActions {
        /// Context-free actions sent.
        count: usize,
        /// The bound in force.
        limit: usize,
    },
    /// Too many signatures.
    #[error("the transaction has {count} signatures; at most {limit} are accepted here")]
    TooManySignatures {
        /// Signatures sent.
        count: usize,
        /// The bound in force.
        limit: usize,
    },
    /// The expiration is already past.
    #[error("the transaction expired at {expiration} (gateway time {now}); sign it again")]
    Expired {
        /// The transaction's expiration.
        expiration: TimePointSec,
        /// The gateway's time.
        now: TimePointSec,
    },
    /// The expiration is too far ahead.
    #[error(
        "the transaction expires at {expiration}, more than {limit_secs} s after the gateway time {now}; set a nearer expiration"
    )]
    ExpirationTooFar {
        /// The transaction's expiration.
        expiration: TimePointSec,
        /// The gateway's time.
        now: TimePointSec,
        /// The bound in force, in seconds.
        limit_secs: u32,
    },
    /// An action is on the blocklist.
    #[error("action {0} is not accepted by this gateway")]
    Blocked(String),
    /// An allowlist is in force and an action is not on it.
    #[error("action {0} is not on this gateway's list of accepted actions")]
    NotAllowed(String),
    /// Too many transactions in one `push_transactions`.
    #[error("{count} transactions were pushed at once; at most {limit} are accepted here")]
    TooManyTransactions {
        /// Transactions sent.
        count: usize,
        /// The bound in force.
        limit: usize,
    },
    /// A query's limit is above the cap and the policy rejects rather than clamps.
    #[error(
        "{field} {value} is above {limit}, the most this gateway serves; page with a lower {field}"
    )]
    LimitTooHigh {
        /// `limit` or `offset`.
        field: &'static str,
        /// The value sent.
        value: u64,
        /// The cap.
        limit: u32,
    },
    /// A query parameter is out of any sensible range.
    #[error("{0}")]
    BadQuery(String),
}

impl Rejection {
    /// The stable reason code (answer's `error.name`, access log, metric label).
    pub fn reason(&self) -> &'static str {
        match self {
            Rejection::BadJson(_) => "bad_json",
            Rejection::BadTransaction(_) => "bad_transaction",
            Rejection::TooBig { .. } => "tx_too_big",
            Rejection::NoActions => "tx_no_action",
            Rejection::TooManyActions { .. } => "too_many_actions",
            Rejection::TooManyContextFreeActions { .. } => "too_many_cf_actions",
            Rejection::TooManySignatures { .. } => "too_many_signatures",
            Rejection::Expired { .. } => "tx_expired",
            Rejection::ExpirationTooFar { .. } => "tx_expiration_too_far",
            Rejection::Blocked(_) => "action_blocked",
            Rejection::NotAllowed(_) => "action_not_allowed",
            Rejection::TooManyTransactions { .. } => "too_many_transactions",
            Rejection::LimitTooHigh { .. } => "query_limit_too_high",
            Rejection::BadQuery(_) => "bad_query",
        }
    }

    /// The nodeos exception code closest in meaning (`error.code` of the answer), so clients
    /// that branch on nodeos codes behave as they would with nodeos: `transaction_exception`
    /// (3040000) and its children, or `database_exception` (3060000) for queries.
    pub fn nodeos_code(&self) -> u64 {
        match self {
            Rejection::BadTransaction(_) => 3_040_001,
            Rejection::NoActions => 3_040_002,
            Rejection::Expired { .. } => 3_040_005,
            Rejection::ExpirationTooFar { .. } => 3_040_006,
            Rejection::TooManyTransactions { .. } => 3_040_011,
            Rejection::TooBig { .. } => 3_040_012,
            Rejection::LimitTooHigh { .. } | Rejection::BadQuery(_) => 3_060_000,
            _ => 3_040_000,
        }
    }

    /// All reason codes, for documentation and tests.
    pub const REASONS: &'static [&'static str] = &[
        "bad_json",
        "bad_transaction",
        "tx_too_big",
        "tx_no_action",
        "too_many_actions",
        "too_many_cf_actions",
        "too_many_signatures",
        "tx_expired",
        "tx_expiration_too_far",
        "action_blocked",
        "action_not_allowed",
        "too_many_transactions",
        "query_limit_too_high",
        "bad_query",
    ];
}

/// What the filter did with a request it let through.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Passed {
    /// The body to forward: the original when the endpoint is not inspected, else the
    /// re-serialised checked value.
    pub body: Bytes,
    /// `none` (not an inspected endpoint), `checked`, or `clamped` (a query limit lowered).
    pub decision: &'static str,
}

/// The shape of an inspected endpoint's body.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
enum Endpoint {
    /// One packed transaction.
    Transaction,
    /// `{transaction, …}`: `send_transaction2` (with its retry options), `compute_transaction`
    /// and `send_read_only_transaction`.
    Wrapped,
    /// `push_transactions`: an array of packed transactions.
    Transactions,
    /// A table query with `limit`, `lower_bound`, `upper_bound`; nodeos's default limit.
    Table(u64),
    /// `get_actions`: `pos` and `offset`.
    Actions,
}

/// The endpoint behind `path`, compared without case and without a trailing `/`, so a prefix
/// route cannot carry a transaction past the filter under a variant spelling.
fn endpoint(path: &str) -> Option<Endpoint> {
    let p = path.trim_end_matches('/').to_ascii_lowercase();
    Some(match p.as_str() {
        "/v1/chain/push_transaction" | "/v1/chain/send_transaction" => Endpoint::Transaction,
        "/v1/chain/send_transaction2"
        | "/v1/chain/compute_transaction"
        | "/v1/chain/send_read_only_transaction" => Endpoint::Wrapped,
        "/v1/chain/push_transactions" => Endpoint::Transactions,
        "/v1/chain/get_table_rows" | "/v1/chain/get_table_by_scope" => Endpoint::Table(10),
        "/v1/chain/get_producers" => Endpoint::Table(50),
        "/v1/chain/get_activated_protocol_features" => Endpoint::Table(10),
        "/v1/history/get_actions" => Endpoint::Actions,
        _ => return None,
    })
}

/// Whether requests to `path` are inspected by the filter.
pub fn inspects(path: &str) -> bool {
    endpoint(path).is_some()
}

/// `push_transaction`'s body as sent; signatures stay strings until their count is checked.
#[derive(Deserialize)]
struct WireTransaction {
    #[serde(default)]
    signatures: Vec<String>,
    #[serde(default)]
    compression: Compression,
    #[serde(default)]
    packed_context_free_data: rempart_core::Bytes,
    packed_trx: rempart_core::Bytes,
}

/// The body of `send_transaction2` (the transaction and nodeos's retry options), and of
/// `compute_transaction` and `send_read_only_transaction` (the transaction alone).
#[derive(Deserialize, Serialize)]
struct WrappedTransaction<T> {
    #[serde(default, skip_serializing_if = "Option::is_none")]
    return_failure_trace: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_trx: Option<bool>,
    #[serde(default, skip_serializing_if = "Option::is_none")]
    retry_trx_num_blocks: Option<u16>,
    transaction: T,
}

fn json<'a, T: Deserialize<'a>>(body: &'a [u8]) -> Result<T, Rejection> {
    serde_json::from_slice(body).map_err(|e| Rejection::BadJson(e.to_string()))
}

fn to_body<T: Serialize>(v: &T) -> Bytes {
    // Serialising plain data (strings, numbers, maps with string keys) into a Vec cannot fail.
    Bytes::from(serde_json::to_vec(v).unwrap_or_default())
}

impl FilterPolicy {
    /// Inspects a request to `path` with `body` at gateway time `now`. Requests to endpoints
    /// the filter does not know pass unchanged.
    pub fn inspect(&self, path: &str, body: Bytes, now: TimePointSec) -> Result<Passed, Rejection> {
        let Some(endpoint) = endpoint(path) else {
            return Ok(Passed { body, decision: "none" });
        };
        let checked = |body| Ok(Passed { body, decision: "checked" });
        match endpoint {
            Endpoint::Transaction => {
                let trx = self.transaction(json(&body)?, now)?;
                checked(to_body(&trx))
            }
            Endpoint::Wrapped => {
                let w: WrappedTransaction<WireTransaction> = json(&body)?;
                let out = WrappedTransaction {
                    return_failure_trace: w.return_failure_trace,
                    retry_trx: w.retry_trx,
                    retry_trx_num_blocks: w.retry_trx_num_blocks,
                    transaction: self.transaction(w.transaction, now)?,
                };
                checked(to_body(&out))
            }
            Endpoint::Transactions => {
                // Count before decoding any of them as a transaction.
                let all: Vec<Value> = json(&body)?;
                if all.len() > self.max_transactions_per_push {
                    return Err(Rejection::TooManyTransactions {
                        count: all.len(),
                        limit: self.max_transactions_per_push,
                    });
                }
                let mut out = Vec::with_capacity(all.len());
                for v in all {
                    let wire =
                        serde_json::from_value(v).map_err(|e| Rejection::BadJson(e.to_string()))?;
                    out.push(self.transaction(wire, now)?);
                }
                checked(to_body(&out))
            }
            Endpoint::Table(default_limit) => self.table(&body, default_limit),
            Endpoint::Actions => self.actions(&body),
        }
    }

    /// Checks one transaction and returns it as it will be forwarded.
    fn transaction(
        &self,
        wire: WireTransaction,
        now: TimePointSec,
    ) -> Result<PackedTransaction, Rejection> {
        if wire.signatures.len() > self.max_signatures {
            return Err(Rejection::TooManySignatures {
                count: wire.signatures.len(),
                limit: self.max_signatures,
            });
        }
        let limit = self.max_transaction_bytes;
        if wire.compression == Compression::None
            && (wire.packed_trx.0.len() > limit || wire.packed_context_free_data.0.len() > limit)
        {
            return Err(Rejection::TooBig { limit });
        }
        let mut signatures = Vec::with_capacity(wire.signatures.len());
        for (i, s) in wire.signatures.iter().enumerate() {
            let sig = Signature::from_str(s).map_err(|e| {
                Rejection::BadTransaction(format!("signature {i} is not a valid signature: {e}"))
            })?;
            signatures.push(sig);
        }
        let packed = PackedTransaction {
            signatures,
            compression: wire.compression,
            packed_context_free_data: wire.packed_context_free_data,
            packed_trx: wire.packed_trx,
        };
        let limits = UnpackLimits { max_inflated_bytes: limit };
        let opened = |e: TransactionError| match e {
            TransactionError::InflateTooLarge { .. } => Rejection::TooBig { limit },
            other => Rejection::BadTransaction(other.to_string()),
        };
        let trx = packed.unpack_transaction(&limits).map_err(opened)?;
        packed.context_free_data(&limits).map_err(opened)?;
        self.contents(&trx, now)?;
        Ok(packed)
    }

    fn contents(&self, trx: &Transaction, now: TimePointSec) -> Result<(), Rejection> {
        if trx.actions.is_empty() {
            return Err(Rejection::NoActions);
        }
        if trx.actions.len() > self.max_actions {
            return Err(Rejection::TooManyActions {
                count: trx.actions.len(),
                limit: self.max_actions,
            });
        }
        if trx.context_free_actions.len() > self.max_context_free_actions {
            return Err(Rejection::TooManyContextFreeActions {
                count: trx.context_free_actions.len(),
                limit: self.max_context_free_actions,
            });
        }
        let expiration = trx.header.expiration;
        if expiration.0 < now.0 {
            return Err(Rejection::Expired { expiration, now });
        }
        if u64::from(expiration.0) > u64::from(now.0) + u64::from(self.max_expiration_ahead_secs) {
            return Err(Rejection::ExpirationTooFar {
                expiration,
                now,
                limit_secs: self.max_expiration_ahead_secs,
            });
        }
        for act in trx.context_free_actions.iter().chain(&trx.actions) {
            let name = || format!("{}::{}", act.account, act.name);
            if self.blocked.iter().any(|p| p.matches(act)) {
                return Err(Rejection::Blocked(name()));
            }
            if !self.allowed.is_empty() && !self.allowed.iter().any(|p| p.matches(act)) {
                return Err(Rejection::NotAllowed(name()));
            }
        }
        Ok(())
    }

    /// A query body as a JSON object (an empty body is `{}`, as nodeos reads it).
    fn object(body: &[u8]) -> Result<serde_json::Map<String, Value>, Rejection> {
        if body.iter().all(u8::is_ascii_whitespace) {
            return Ok(serde_json::Map::new());
        }
        match json::<Value>(body)? {
            Value::Object(m) => Ok(m),
            _ => Err(Rejection::BadJson("the body must be a JSON object".into())),
        }
    }

    fn table(&self, body: &[u8], default_limit: u64) -> Result<Passed, Rejection> {
        let mut q = FilterPolicy::object(body)?;
        for field in ["lower_bound", "upper_bound"] {
            match q.get(field) {
                None | Some(Value::Null) | Some(Value::Number(_)) => {}
                Some(Value::String(s)) if s.chars().count() <= self.max_bound_chars => {}
                Some(_) => {
                    return Err(Rejection::BadQuery(format!(
                        "{field} must be a number or a string of at most {} characters",
                        self.max_bound_chars
                    )));
                }
            }
        }
        let limit = match q.get("limit") {
            None | Some(Value::Null) => default_limit,
            Some(v) => unsigned(v).ok_or_else(|| {
                Rejection::BadQuery("limit must be a non-negative whole number".into())
            })?,
        };
        let cap = self.max_query_limit;
        let mut decision = "checked";
        if limit > u64::from(cap) {
            match self.over_limit {
                OverLimit::Reject => {
                    return Err(Rejection::LimitTooHigh {
                        field: "limit",
                        value: limit,
                        limit: cap,
                    });
                }
                OverLimit::Clamp => {
                    q.insert("limit".into(), Value::from(cap));
                    decision = "clamped";
                }
            }
        }
        Ok(Passed { body: to_body(&q), decision })
    }

    fn actions(&self, body: &[u8]) -> Result<Passed, Rejection> {
        let mut q = FilterPolicy::object(body)?;
        let int = |field: &str, min: i64| -> Result<Option<i64>, Rejection> {
            match q.get(field) {
                None | Some(Value::Null) => Ok(None),
                Some(v) => signed(v)
                    .filter(|n| (min..=i64::from(i32::MAX)).contains(n))
                    .map(Some)
                    .ok_or_else(|| {
                        Rejection::BadQuery(format!(
                            "{field} must be a whole number between {min} and {}",
                            i32::MAX
                        ))
                    }),
            }
        };
        int("pos", -1)?;
        let offset = int("offset", i64::from(i32::MIN))?;
        let cap = i64::from(self.max_query_limit);
        let mut decision = "checked";
        if let Some(off) = offset
            && off.abs() > cap
        {
            match self.over_limit {
                OverLimit::Reject => {
                    return Err(Rejection::LimitTooHigh {
                        field: "offset",
                        value: off.unsigned_abs(),
                        limit: self.max_query_limit,
                    });
                }
                OverLimit::Clamp => {
                    q.insert("offset".into(), Value::from(off.signum() * cap));
                    decision = "clamped";
                }
            }
        }
        Ok(Passed { body: to_body(&q), decision })
    }
}

/// A JSON number or numeric string holding a whole number ≥ 0 (`u64::MAX` when larger).
fn unsigned(v: &Value) -> Option<u64> {
    match v {
        Value::Number(n) => n.as_u64().or_else(|| {
            // A larger whole number saturates; negatives and fractions are refused.
            n.as_f64().filter(|f| f.fract() == 0.0 && *f >= 0.0).map(|_| u64::MAX)
        }),
        Value::String(s)
            if !s.is_empty() && s.len() <= 40 && s.bytes().all(|b| b.is_ascii_digit()) =>
        {
            Some(s.parse::<u64>().unwrap_or(u64::MAX))
        }
        _ => None,
    }
}

/// A JSON number or numeric string holding a whole number that fits an `i64`.
fn signed(v: &Value) -> Option<i64> {
    match v {
        Value::Number(n) => n.as_i64(),
        Value::String(s) if s.len() <= 20 => s.parse::<i64>().ok(),
        _ => None,
    }
}
