//! Errors of the chain API in the shape nodeos answers with, which eosjs and wharfkit read:
//! `{code, message, error:{code, name, what, details:[{message, file, line_number, method}]}}`.
//!
//! Every rejection a client can cause maps to a nodeos exception code and name so existing
//! tools show the right message; this module must never leak internal paths or state.

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
    pub name: &'static str,
    /// nodeos exception summary.
    pub what: &'static str,
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
        ApiError { status: 500, code, name, what, detail: detail.into() }
    }

    /// A request the node cannot parse (HTTP 400).
    pub fn bad_request(detail: impl Into<String>) -> Self {
        ApiError {
            status: 400,
            code: 3_200_006,
            name: "invalid_http_request",
            what: "invalid http request",
            detail: detail.into(),
        }
    }

    /// An endpoint that does not exist (HTTP 404).
    pub fn not_found(path: &str) -> Self {
        ApiError {
            status: 404,
            code: 0,
            name: "exception",
            what: "unspecified",
            detail: format!("Unknown Endpoint {path}"),
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

    /// The node failed internally (disk, bug); the client is not at fault.
    pub fn internal(detail: impl Into<String>) -> Self {
        ApiError {
            status: 500,
            code: 0,
            name: "exception",
            what: "unspecified",
            detail: detail.into(),
        }
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
