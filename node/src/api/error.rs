//! Errors of the chain API in the shape nodeos answers with, which eosjs and wharfkit read:
//! `{code, message, error:{code, name, what, details:[{message, file, line_number, method}]}}`.
//!
//! Every rejection a client can cause maps to a nodeos exception code and name so existing
//! tools show the right message; this module must never leak internal paths or state.

use std::borrow::Cow;

use serde_json::{Value, json};

/// One API failure: an HTTP status, a nodeos exception (code, name, what) and a detail message.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("{name} ({code}): {detail}")]
pub struct ApiError {
    /// HTTP status.
    pub status: u16,
    /// nodeos exception code.
    pub code: u64,
    /// nodeos exception name.
    pub name: Cow<'static, str>,
    /// nodeos exception summary.
    pub what: Cow<'static, str>,
    /// What exactly went wrong, for the operator and the client.
    pub detail: String,
}

impl ApiError {
    /// A chain exception (HTTP 500, as nodeos answers).
    pub fn chain(
        code: u64,
        name: &'static str,
        what: &'static str,
        detail: impl Into<String>,
    ) -> Self {
        ApiError {
            status: 500,
            code,
            name: Cow::Borrowed(name),
            what: Cow::Borrowed(what),
            detail: detail.into(),
        }
    }

    /// A request the node cannot parse (HTTP 400).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            ..Self::chain(3_200_006, "invalid_http_request", "invalid http request", detail)
        }
    }

    /// An endpoint that does not exist (HTTP 404).
    pub fn not_found(path: &str) -> Self {
        let shown: String = path.chars().take(200).collect();
        ApiError {
            status: 404,
            ..Self::chain(0, "exception", "unspecified", format!("Unknown Endpoint {shown}"))
        }
    }

    /// An unknown account.
    pub fn unknown_account(account: impl std::fmt::Display) -> Self {
        Self::chain(
            3_060_002,
            "account_query_exception",
            "Account Query Exception",
            format!("unknown account: {account}"),
        )
    }

    /// A block the node does not have.
    pub fn unknown_block(which: impl std::fmt::Display) -> Self {
        Self::chain(
            3_100_002,
            "unknown_block_exception",
            "Unknown block",
            format!("Could not find block: {which}"),
        )
    }

    /// A transaction the history does not know.
    pub fn unknown_transaction(id: impl std::fmt::Display) -> Self {
        Self::chain(
            3_040_011,
            "tx_not_found",
            "The transaction can not be found",
            format!("Transaction {id} not found in history"),
        )
    }

    /// An account without an ABI (or an ABI that does not declare what was asked).
    pub fn abi_not_found(detail: impl Into<String>) -> Self {
        Self::chain(3_015_001, "abi_not_found_exception", "No ABI found", detail)
    }

    /// Data that does not serialize with the ABI.
    pub fn pack(detail: impl Into<String>) -> Self {
        Self::chain(3_015_014, "pack_exception", "Pack data exception", detail)
    }

    /// Bytes that do not deserialize with the ABI.
    pub fn unpack(detail: impl Into<String>) -> Self {
        Self::chain(3_015_013, "unpack_exception", "Unpack data exception", detail)
    }

    /// A `packed_trx` (or its signatures) that does not decode.
    pub fn packed_transaction(detail: impl Into<String>) -> Self {
        Self::chain(
            3_010_010,
            "packed_transaction_type_exception",
            "Invalid packed transaction",
            detail,
        )
    }

    /// The available keys cannot satisfy a declared authorization.
    pub fn unsatisfied_authorization(detail: impl Into<String>) -> Self {
        Self::chain(
            3_090_003,
            "unsatisfied_authorization",
            "Provided keys, permissions, and delays do not satisfy declared authorizations",
            detail,
        )
    }

    /// A contract table query that cannot be answered.
    pub fn table_query(detail: impl Into<String>) -> Self {
        Self::chain(
            3_060_003,
            "contract_table_query_exception",
            "Contract Table Query Exception",
            detail,
        )
    }

    /// The node cannot take this request now (no producer connection, a push-less node).
    pub fn unavailable(detail: impl Into<String>) -> Self {
        ApiError { status: 503, ..Self::chain(0, "exception", "unspecified", detail) }
    }

    /// The node failed internally (disk, bug); the client is not at fault.
    pub fn internal(detail: impl Into<String>) -> Self {
        Self::chain(0, "exception", "unspecified", detail)
    }

    /// The nodeos JSON body.
    pub fn body(&self) -> Value {
        json!({
            "code": self.status,
            "message": message_for(self.status),
            "error": {
                "code": self.code,
                "name": self.name,
                "what": self.what,
                "details": [{
                    "message": self.detail,
                    "file": "",
                    "line_number": 0,
                    "method": self.name,
                }],
            },
        })
    }
}

fn message_for(status: u16) -> &'static str {
    match status {
        400 => "Bad Request",
        404 => "Not Found",
        413 => "Payload Too Large",
        503 => "Service Unavailable",
        _ => "Internal Service Error",
    }
}

impl From<crate::store::StoreError> for ApiError {
    fn from(e: crate::store::StoreError) -> Self {
        tracing::error!(error = %e, "state database error while serving the API");
        ApiError::internal("state database error; see the node log")
    }
}
