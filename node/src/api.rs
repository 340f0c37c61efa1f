//! The chain API over HTTP/1.1 (hyper): the nodeos endpoints that eosjs, wharfkit and Python
//! clients call, served from a consistent snapshot of the state database.
//!
//! Bodies are parsed as JSON whatever their content type (eosjs sends `text/plain`), an empty
//! body is `{}`, bodies are bounded, errors have the nodeos shape ([`ApiError`]) and timestamps
//! are written without a trailing `Z`. Read handlers run on a blocking thread over one redb
//! read snapshot: they never write state and never wait for the apply thread. The push
//! endpoints never apply anything here either: they check that a transaction decodes, then
//! forward it to the producer over the private network ([`crate::peer::PushClient`]).

pub mod error;

mod abi;
mod account;
mod block;
mod history;
mod push;
mod table;

use std::convert::Infallible;
use std::future::Future;
use std::sync::Arc;

use bytes::Bytes;
use http_body_util::{BodyExt, Full, Limited};
use hyper::body::Incoming;
use hyper::{Method, Request, Response, StatusCode};
use hyper_util::rt::TokioIo;
use rempart_core::backoff::AcceptBackoff;
use serde::Deserialize;
use serde_json::{Value, json};
use tokio::net::TcpListener;

pub use error::ApiError;

use crate::config::Limits;
use crate::listen;
use crate::peer::PushClient;
use crate::store::{Snapshot, Store};

/// Reported as `server_version_string`.
pub const SERVER_VERSION: &str = concat!("rempart-node-", env!("CARGO_PKG_VERSION"));

/// How long a client may take to send a request's headers (slow clients hold a connection).
pub const HEADER_READ_TIMEOUT: std::time::Duration = std::time::Duration::from_secs(30);

/// What the handlers share.
#[derive(Debug)]
pub struct ApiContext {
    /// The state database (read through snapshots only).
    pub store: Arc<Store>,
    /// Size limits: HTTP body, packed transaction, signatures.
    pub limits: Limits,
    /// Where pushed transactions go; `None` refuses pushes (503).
    pub producer: Option<PushClient>,
    /// Read handlers running at once; more wait their turn.
    reads: tokio::sync::Semaphore,
}

/// Most read handlers running at once (each holds a blocking thread and a read snapshot).
pub const MAX_CONCURRENT_READS: usize = 64;

impl ApiContext {
    /// A context over `store` with `limits`, forwarding pushes to `producer` when given.
    pub fn new(store: Arc<Store>, limits: Limits, producer: Option<PushClient>) -> Self {
        ApiContext {
            store,
            limits,
            producer,
            reads: tokio::sync::Semaphore::new(MAX_CONCURRENT_READS),
        }
    }
}

/// Serves the chain API on `listener` until `shutdown` completes.
pub async fn serve(
    listener: TcpListener,
    ctx: Arc<ApiContext>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let mut backoff = AcceptBackoff::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listen::next_connection(&listener, &mut backoff, "chain API") => accepted,
        };
        let ctx = ctx.clone();
        tokio::spawn(async move {
            let service = hyper::service::service_fn(move |req| {
                let ctx = ctx.clone();
                async move { Ok::<_, Infallible>(handle(&ctx, req).await) }
            });
            if let Err(e) = hyper::server::conn::http1::Builder::new()
                .timer(hyper_util::rt::TokioTimer::new())
                .header_read_timeout(HEADER_READ_TIMEOUT)
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
pub async fn handle(ctx: &Arc<ApiContext>, req: Request<Incoming>) -> Response<Full<Bytes>> {
    let path = req.uri().path().to_owned();
    let method = req.method().clone();
    let max = ctx.limits.max_http_body_bytes;
    let result = async {
        if method != Method::GET && method != Method::POST {
            return Err(ApiError::bad_request(format!("method {method} is not supported")));
        }
        let body = Limited::new(req.into_body(), max)
            .collect()
            .await
            .map_err(|e| ApiError {
                status: 413,
                ..ApiError::bad_request(format!(
                    "request body refused ({e}); the limit is {max} bytes"
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

/// Decodes the request parameters, naming the field that is wrong.
fn params<T: for<'de> Deserialize<'de>>(v: Value) -> Result<T, ApiError> {
    serde_json::from_value(v).map_err(|e| ApiError::bad_request(format!("invalid parameters: {e}")))
}

/// Dispatches: pushes go to the producer, everything else reads one snapshot.
pub async fn route(ctx: &Arc<ApiContext>, path: &str, body: Value) -> Result<Value, ApiError> {
    if let Some(kind) = push::Kind::from_path(path) {
        return push::handle(ctx, kind, body).await;
    }
    let _turn = ctx.reads.acquire().await.map_err(|_| ApiError::unavailable("shutting down"))?;
    let ctx2 = ctx.clone();
    let path = path.to_owned();
    // redb reads are synchronous; keep them off the async workers.
    tokio::task::spawn_blocking(move || {
        let snap = ctx2.store.read()?;
        read_route(&snap, &ctx2.limits, &path, body)
    })
    .await
    .map_err(|e| ApiError::internal(format!("handler failed: {e}")))?
}

/// Answers a read endpoint from one snapshot.
pub fn read_route(
    snap: &Snapshot,
    limits: &Limits,
    path: &str,
    body: Value,
) -> Result<Value, ApiError> {
    match path {
        "/v1/chain/get_info" => account::get_info(snap),
        "/v1/chain/get_block" => block::get_block(snap, params(body)?),
        "/v1/chain/get_block_info" => block::get_block_info(snap, params(body)?),
        "/v1/chain/get_block_header_state" => block::get_block_header_state(snap, params(body)?),
        "/v1/chain/get_account" => account::get_account(snap, params(body)?),
        "/v1/chain/get_abi" => abi::get_abi(snap, params(body)?),
        "/v1/chain/get_raw_abi" => abi::get_raw_abi(snap, params(body)?),
        "/v1/chain/get_raw_code_and_abi" => abi::get_raw_code_and_abi(snap, params(body)?),
        "/v1/chain/get_code_hash" => abi::get_code_hash(snap, params(body)?),
        "/v1/chain/abi_json_to_bin" => abi::abi_json_to_bin(snap, params(body)?),
        "/v1/chain/abi_bin_to_json" => abi::abi_bin_to_json(snap, params(body)?),
        "/v1/chain/get_required_keys" => account::get_required_keys(snap, limits, params(body)?),
        "/v1/chain/get_producers" => account::get_producers(snap),
        "/v1/chain/get_table_rows" => table::get_table_rows(snap, params(body)?),
        "/v1/chain/get_currency_balance" => table::get_currency_balance(snap, params(body)?),
        "/v1/chain/get_currency_stats" => table::get_currency_stats(snap, params(body)?),
        "/v1/history/get_transaction" => history::get_transaction(snap, limits, params(body)?),
        "/v1/history/get_actions" => history::get_actions(snap, limits, params(body)?),
        _ => Err(ApiError::not_found(path)),
    }
}

#[cfg(test)]
pub(crate) mod fixture;
#[cfg(test)]
mod tests;
