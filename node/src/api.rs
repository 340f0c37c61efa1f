//! The chain API over HTTP/1.1 (hyper): the nodeos endpoints that eosjs, wharfkit and Python
//! clients call, served from a consistent snapshot of the state database.
//!
//! Bodies are parsed as JSON whatever their content type (eosjs sends `text/plain`), an empty
//! body is `{}`, bodies are bounded, errors have the nodeos shape ([`ApiError`]) and timestamps
//! are written without a trailing `Z`. Handlers only read state; they never write it and never
//! block the apply thread.

pub mod error;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use base64::Engine as _;
use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rempart_core::{Checksum256, Name};
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use error::ApiError;

use crate::store::{Snapshot, Store, key};

/// Reported as `server_version` / `server_version_string`.
pub const SERVER_VERSION: &str = concat!("rempart-node-", env!("CARGO_PKG_VERSION"));

/// What the handlers share.
#[derive(Debug)]
pub struct ApiContext {
    /// The state database.
    pub store: Arc<Store>,
    /// Largest request body accepted.
    pub max_body_bytes: usize,
}

/// Serves the chain API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ApiContext>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listener.accept() => match accepted {
                Ok(a) => a,
                Err(e) => {
                    // Out of file descriptors and the like: keep serving the connections we have.
                    tracing::warn!(error = %e, "accept failed");
                    continue;
                }
            },
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .keep_alive(true)
                .serve_connection(TokioIo::new(stream), service)
                .await
            {
                tracing::debug!(%peer, error = %e, "connection ended with an error");
            }
        });
    }
}

/// Answers one request.
pub async fn handle(ctx: &ApiContext, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let result = async {
        if method != Method::GET && method != Method::POST {
            return Err(ApiError::bad_request(format!("method {method} is not supported")));
        }
        let body = Limited::new(req.into_body(), ctx.max_body_bytes)
            .collect()
            .await
            .map_err(|e| ApiError {
                status: 413,
                ..ApiError::bad_request(format!(
                    "request body refused ({e}); the limit is {} bytes",
                    ctx.max_body_bytes
                ))
            })?
            .to_bytes();
        let params = parse_body(&body)?;
        route(ctx, &path, params).await
    }
    .await;
    match result {
        Ok(v) => json_response(StatusCode::OK, &v),
        Err(e) => {
            let status =
                StatusCode::from_u16(e.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
            json_response(status, &e.body())
        }
    }
}

/// The request body as JSON: empty (or only whitespace) is `{}`.
pub fn parse_body(body: &[u8]) -> Result<Value, ApiError> {
    if body.iter().all(u8::is_ascii_whitespace) {
        return Ok(json!({}));
    }
    serde_json::from_slice(body)
        .map_err(|e| ApiError::bad_request(format!("body is not JSON: {e}")))
}

fn json_response(status: StatusCode, v: &Value) -> Response<Full<Bytes>> {
    let mut resp = Response::new(Full::new(Bytes::from(v.to_string())));
    *resp.status_mut() = status;
    resp.headers_mut().insert(
        hyper::header::CONTENT_TYPE,
        hyper::header::HeaderValue::from_static("application/json"),
    );
    resp
}

fn params<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid parameters: {e}")))
}

async fn route(ctx: &ApiContext, path: &str, body: Value) -> Result<Value, ApiError> {
    let store = ctx.store.clone();
    let path = path.to_owned();
    // redb reads are synchronous; keep them off the async workers.
    tokio::task::spawn_blocking(move || {
        let snap = store.read()?;
        read_route(&snap, &path, body)
    })
    .await
    .map_err(|e| ApiError::internal(format!("handler failed: {e}")))?
}

fn read_route(snap: &Snapshot, path: &str, body: Value) -> Result<Value, ApiError> {
    match path {
        "/v1/chain/get_info" => get_info(snap),
        "/v1/chain/get_account" => get_account(snap, params(body)?),
        "/v1/chain/get_raw_abi" => get_raw_abi(snap, params(body)?),
        "/v1/chain/get_code_hash" => get_code_hash(snap, params(body)?),
        "/v1/chain/get_raw_code_and_abi" => get_raw_code_and_abi(snap, params(body)?),
        "/v1/chain/get_currency_balance" => {
            let _: CurrencyBalanceParams = params(body)?;
            // Token contracts arrive with WebAssembly; until then no account holds a balance.
            Ok(json!([]))
        }
        _ => Err(ApiError::not_found(path)),
    }
}

/// `get_info`: every field wharfkit's decoder requires.
fn get_info(snap: &Snapshot) -> Result<Value, ApiError> {
    let head = snap.head()?.ok_or_else(|| ApiError::internal("chain not initialised"))?;
    let chain_id = snap.chain_id()?.ok_or_else(|| ApiError::internal("chain not initialised"))?;
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
        "server_version_string": SERVER_VERSION,
        "fork_db_head_block_num": head.block_num,
        "fork_db_head_block_id": head.block_id,
        "server_full_version_string": SERVER_VERSION,
        "earliest_available_block_num": 1,
        "last_irreversible_block_time": head.timestamp,
    }))
}

#[derive(Deserialize)]
struct AccountParams {
    account_name: Name,
}

#[derive(Deserialize)]
#[allow(dead_code)]
struct CurrencyBalanceParams {
    code: Name,
    account: Name,
    #[serde(default)]
    symbol: Option<String>,
}

fn require_account(snap: &Snapshot, account: Name) -> Result<(), ApiError> {
    match snap.get(&key::account(account))? {
        Some(_) => Ok(()),
        None => Err(ApiError::unknown_account(account)),
    }
}

/// Code hash of an account (zero when it has no code).
fn code_hash(snap: &Snapshot, account: Name) -> Result<Checksum256, ApiError> {
    Ok(snap.get_record(&key::code_hash(account), "code hash")?.unwrap_or(Checksum256::ZERO))
}

fn get_raw_abi(snap: &Snapshot, p: AccountParams) -> Result<Value, ApiError> {
    require_account(snap, p.account_name)?;
    let abi = snap.get(&key::abi(p.account_name))?.unwrap_or_default();
    let abi_hash = if abi.is_empty() { Checksum256::ZERO } else { Checksum256::hash(&abi) };
    Ok(json!({
        "account_name": p.account_name,
        "code_hash": code_hash(snap, p.account_name)?,
        "abi_hash": abi_hash,
        "abi": base64::engine::general_purpose::STANDARD.encode(&abi),
    }))
}

/// `get_account` in nodeos's shape (resources are unlimited: -1).
fn get_account(snap: &Snapshot, p: AccountParams) -> Result<Value, ApiError> {
    let rec = crate::account::account(snap, p.account_name)?
        .ok_or_else(|| ApiError::unknown_account(p.account_name))?;
    let head = snap.head()?;
    let mut permissions = Vec::new();
    let prefix = key::permission_prefix(p.account_name);
    for (k, v) in snap.scan(&prefix, &prefix, 1024)? {
        let perm: crate::account::PermissionRecord = rempart_core::from_bytes(&v)
            .map_err(|source| crate::store::StoreError::Corrupt { what: "permission", source })?;
        let name_bytes: [u8; 8] = k[9..17].try_into().map_err(|_| ApiError::internal("bad key"))?;
        let name = Name(u64::from_be_bytes(name_bytes));
        let parent = if perm.parent == Name(0) { String::new() } else { perm.parent.to_string() };
        permissions.push(json!({
            "perm_name": name,
            "parent": parent,
            "required_auth": perm.auth,
            "linked_actions": [],
        }));
    }
    let unlimited = json!({"used": 0, "available": -1, "max": -1});
    Ok(json!({
        "account_name": rec.name,
        "head_block_num": head.as_ref().map_or(0, |h| h.block_num),
        "head_block_time": head.as_ref().map(|h| h.timestamp),
        "privileged": rec.privileged,
        "last_code_update": rec.last_code_update,
        "created": rec.creation_date,
        "ram_quota": -1,
        "net_weight": -1,
        "cpu_weight": -1,
        "net_limit": unlimited,
        "cpu_limit": unlimited,
        "ram_usage": 0,
        "permissions": permissions,
        "total_resources": null,
        "self_delegated_bandwidth": null,
        "refund_request": null,
        "voter_info": null,
    }))
}

fn get_code_hash(snap: &Snapshot, p: AccountParams) -> Result<Value, ApiError> {
    require_account(snap, p.account_name)?;
    Ok(json!({ "account_name": p.account_name, "code_hash": code_hash(snap, p.account_name)? }))
}

fn get_raw_code_and_abi(snap: &Snapshot, p: AccountParams) -> Result<Value, ApiError> {
    require_account(snap, p.account_name)?;
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

#[cfg(test)]
mod tests;
