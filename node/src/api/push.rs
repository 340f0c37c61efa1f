//! Push endpoints (`push_transaction`, `send_transaction`, `send_transaction2`,
//! `push_transactions`): each transaction is decoded and bounded here first — so garbage never
//! reaches the producer — then forwarded over the private network, and the producer's trace
//! comes back in nodeos's `{transaction_id, processed}` shape.
//!
//! This module applies nothing and never retries a push whose outcome is unknown.

use std::sync::Arc;

use rempart_core::transaction::{PackedTransaction, TransactionError, UnpackLimits};
use serde_json::{Value, json};

use super::{ApiContext, ApiError};

/// Most transactions one `push_transactions` call carries (nodeos's bound).
pub(super) const MAX_PUSH_BATCH: usize = 1000;

/// Which push endpoint.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Kind {
    One,
    Two,
    Many,
}

impl Kind {
    pub(super) fn from_path(path: &str) -> Option<Kind> {
        match path {
            "/v1/chain/push_transaction" | "/v1/chain/send_transaction" => Some(Kind::One),
            "/v1/chain/send_transaction2" => Some(Kind::Two),
            "/v1/chain/push_transactions" => Some(Kind::Many),
            _ => None,
        }
    }
}

/// A decoding failure as nodeos names it.
fn decode_error(e: TransactionError) -> ApiError {
    match e {
        TransactionError::InflateTooLarge { .. } | TransactionError::BadZlib { .. } => {
            ApiError::chain(
                3_040_001,
                "tx_decompression_error",
                "Error decompressing transaction",
                e.to_string(),
            )
        }
        TransactionError::BadCompression { .. } => ApiError::chain(
            3_040_014,
            "unknown_transaction_compression",
            "Unknown transaction compression",
            e.to_string(),
        ),
        other => ApiError::packed_transaction(other.to_string()),
    }
}

/// Parses and checks one packed transaction; returns it with its id.
fn check(ctx: &ApiContext, v: Value) -> Result<(PackedTransaction, String), ApiError> {
    let packed: PackedTransaction = serde_json::from_value(v)
        .map_err(|e| ApiError::packed_transaction(format!("invalid packed transaction: {e}")))?;
    if packed.signatures.len() > ctx.limits.max_signatures {
        return Err(ApiError::chain(
            3_040_013,
            "tx_too_big",
            "Transaction is too big",
            format!(
                "{} signatures; at most {} are accepted",
                packed.signatures.len(),
                ctx.limits.max_signatures
            ),
        ));
    }
    if packed.packed_trx.0.len() > ctx.limits.max_transaction_bytes {
        return Err(ApiError::chain(
            3_040_013,
            "tx_too_big",
            "Transaction is too big",
            format!("packed_trx exceeds {} bytes", ctx.limits.max_transaction_bytes),
        ));
    }
    let limits = UnpackLimits { max_inflated_bytes: ctx.limits.max_transaction_bytes };
    let signed = packed.to_signed(&limits).map_err(decode_error)?;
    if signed.transaction.actions.is_empty() {
        return Err(ApiError::chain(
            3_040_002,
            "tx_no_action",
            "Transaction should have at least one normal action",
            "the transaction has no actions",
        ));
    }
    Ok((packed, signed.transaction.id().to_string()))
}

async fn forward(ctx: &ApiContext, v: Value) -> Result<Value, ApiError> {
    let (packed, id) = check(ctx, v)?;
    let producer = ctx.producer.as_ref().ok_or_else(|| {
        ApiError::unavailable("this node does not accept transactions; send them to an api node")
    })?;
    let processed = producer.push(packed).await?;
    Ok(json!({ "transaction_id": id, "processed": processed }))
}

pub(super) async fn handle(
    ctx: &Arc<ApiContext>,
    kind: Kind,
    body: Value,
) -> Result<Value, ApiError> {
    match kind {
        Kind::One => forward(ctx, body).await,
        Kind::Two => {
            let trx = body
                .get("transaction")
                .cloned()
                .ok_or_else(|| ApiError::bad_request("send_transaction2 needs `transaction`"))?;
            forward(ctx, trx).await
        }
        Kind::Many => {
            let Value::Array(items) = body else {
                return Err(ApiError::bad_request("push_transactions takes an array"));
            };
            if items.len() > MAX_PUSH_BATCH {
                return Err(ApiError::chain(
                    3_040_012,
                    "too_many_tx_at_once",
                    "Pushing too many transactions at once",
                    format!("{} transactions; at most {MAX_PUSH_BATCH} per call", items.len()),
                ));
            }
            let mut out = Vec::with_capacity(items.len());
            for item in items {
                out.push(match forward(ctx, item).await {
                    Ok(v) => v,
                    Err(e) => {
                        json!({ "transaction_id": null, "processed": { "except": e.body() } })
                    }
                });
            }
            Ok(Value::Array(out))
        }
    }
}
