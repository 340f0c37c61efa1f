//! The request path: framing check, allowlist, rate limit, bounded body, then the upstream
//! with retries of idempotent reads; every request ends in one access-log line and metrics.
//!
//! Request bodies are read fully before any byte goes upstream, bounded by the route class's
//! `max_body_bytes` and the body read timeout (as nginx's request buffering does): an upstream
//! never sees a partial, slow or malformed body, a slow client never holds an upstream
//! connection, and a read can be replayed on another node. Nothing here trusts a client
//! header: `X-Forwarded-For` is set from the TCP peer and whatever the client sent is dropped.

use std::convert::Infallible;
use std::net::SocketAddr;
use std::sync::Arc;
use std::sync::atomic::{AtomicU64, Ordering};
use std::time::Instant;

use bytes::Bytes;
use http::header::{self, HeaderMap, HeaderName, HeaderValue};
use http::uri::{Authority, PathAndQuery};
use http::{Method, Request, Response, StatusCode, Uri, Version};
use http_body_util::{BodyExt, Full, LengthLimitError, Limited};
use hyper::body::Body;
use rempart_core::time::TimePointSec;

use crate::conn::{AccountOwner, FramingFlag, SendAccount, SendCharge};
use crate::error::{Fault, RequestError};
use crate::keepalive::UpResponseBody;
use crate::limit::{ClientKey, Decision};
use crate::policy::is_canonical_path;
use crate::state::{Runtime, Shared};
use crate::upstream::{BoxError, Pick, UpBody};

#[cfg(test)]
mod tests;

/// Body of responses sent downstream.
pub type RespBody = UpBody;

/// What the service knows about the connection a request came on.
#[derive(Debug)]
pub struct ConnCtx {
    /// The TCP peer.
    pub peer: SocketAddr,
    /// Its limiter key.
    pub key: ClientKey,
    /// Whether it is in a trusted network.
    pub trusted: bool,
    /// HTTP/1 framing violations found on this connection.
    pub framing: Option<FramingFlag>,
    /// Requests seen so far on the connection.
    pub requests: AtomicU64,
    /// The `X-Forwarded-For` value sent upstream: the peer's address, made once per
    /// connection.
    pub forwarded_for: HeaderValue,
    /// Where answers read whole are counted until they leave (HTTP/2 connections, whose
    /// client may keep its window shut on them); `None` for HTTP/1.
    pub holds: Option<SendAccount>,
    /// Turns true when the gateway stops (HTTP/1 connections): each answer then carries
    /// `Connection: close`. `None` for HTTP/2, which closes with a GOAWAY.
    pub stopping: Option<tokio::sync::watch::Receiver<bool>>,
}

impl ConnCtx {
    /// The context of a connection from `peer`.
    pub fn new(
        peer: SocketAddr,
        key: ClientKey,
        trusted: bool,
        framing: Option<FramingFlag>,
    ) -> ConnCtx {
        // An IP address in text is always a valid header value.
        let forwarded_for = HeaderValue::from_str(&peer.ip().to_string())
            .unwrap_or_else(|_| HeaderValue::from_static("unknown"));
        ConnCtx {
            peer,
            key,
            trusted,
            framing,
            requests: AtomicU64::new(0),
            forwarded_for,
            holds: None,
            stopping: None,
        }
    }
}

/// A downstream connection as its requests see it: the gateway's state and the connection's
/// context. Each request holds a clone of the connection's `Arc`, whose count only the
/// connection's worker touches, instead of a clone of the gateway-wide `Arc<Shared>`, whose
/// count every worker would move between their cores on every request.
#[derive(Debug)]
pub struct Downstream {
    /// The gateway's state.
    pub shared: Arc<Shared>,
    /// The connection.
    pub ctx: ConnCtx,
}

/// What one request did, for the access log and metrics.
#[derive(Debug, Default)]
struct Trace {
    class: Option<usize>,
    upstream: Option<SocketAddr>,
    limit: &'static str,
    filter: &'static str,
    attempts: u32,
}

/// What a downstream request body must be to go through [`handle`]: hyper's HTTP/1 body or
/// the gateway's HTTP/2 one.
pub trait RequestBody: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static {}

impl<B> RequestBody for B where B: Body<Data = Bytes, Error: Into<BoxError>> + Send + Unpin + 'static
{}

/// Serves one downstream request, over HTTP/1 or HTTP/2 alike.
pub async fn handle<B: RequestBody>(
    conn: Arc<Downstream>,
    req: Request<B>,
) -> Result<Response<RespBody>, Infallible> {
    let start = Instant::now();
    let (shared, ctx) = (&*conn.shared, &conn.ctx);
    let index = ctx.requests.fetch_add(1, Ordering::Relaxed);
    let rt = shared.current();
    let mut trace = Trace { limit: "none", filter: "none", ..Trace::default() };
    if req.method() == Method::GET
        && let Some(doc) = rt.documents.get(req.uri().path())
    {
        let mut resp = document_response(doc.clone());
        shared.metrics.request("documents", 200, Fault::None, start.elapsed());
        closing_if_stopped(ctx, &mut resp);
        return Ok(resp);
    }
    let (parts, body) = req.into_parts();
    let mut body = Some(body);
    let result = proxy(&conn, &rt, index, &parts, &mut body, &mut trace).await;
    // A refused HTTP/2 request's body is drained in the background so its stream ends cleanly
    // and the answer is not delayed; HTTP/1 leaves an unread body to hyper, which closes the
    // connection rather than parse what follows (it may be a smuggling attempt).
    if let Some(unread) = body.take()
        && ctx.framing.is_none()
    {
        tokio::spawn(drain(unread));
    }
    let (resp, fault, code) = match result {
        Ok(resp) => {
            let fault = if resp.status().is_server_error() { Fault::Upstream } else { Fault::None };
            (resp, fault, "ok")
        }
        Err(e) => {
            if let RequestError::Limited(_) = e {
                let class = class_name(&rt, trace.class);
                shared.metrics.limited(class, trace.limit);
            }
            if let RequestError::Filtered(r) = &e {
                shared.metrics.filtered(class_name(&rt, trace.class), r.reason());
            }
            (
                e.response::<Full<Bytes>>().map(|b| b.map_err(|never| match never {}).boxed()),
                e.fault(),
                e.code(),
            )
        }
    };
    if fault == Fault::Downstream {
        shared.violation(ctx.peer.ip(), ctx.key, ctx.trusted, rt.policy.access());
    }
    let latency = start.elapsed();
    let class = class_name(&rt, trace.class);
    shared.metrics.request(class, resp.status().as_u16(), fault, latency);
    tracing::info!(
        target: "rempart_gateway::access",
        client = %ctx.peer.ip(),
        method = %parts.method,
        path = %truncated(parts.uri.path(), 256),
        version = ?parts.version,
        route = class,
        status = resp.status().as_u16(),
        fault = fault.label(),
        reason = code,
        upstream = %trace.upstream.map(|a| a.to_string()).unwrap_or_default(),
        attempts = trace.attempts,
        latency_ms = latency.as_secs_f64() * 1000.0,
        limit = trace.limit,
        filter = trace.filter,
    );
    let mut resp = resp;
    closing_if_stopped(ctx, &mut resp);
    Ok(resp)
}

/// Marks `resp` to close its HTTP/1 connection once the gateway is stopping.
fn closing_if_stopped(ctx: &ConnCtx, resp: &mut Response<RespBody>) {
    if ctx.stopping.as_ref().is_some_and(|s| *s.borrow()) {
        resp.headers_mut().insert(header::CONNECTION, HeaderValue::from_static("close"));
    }
}

/// `s` cut to at most `chars` characters (for the access log).
fn truncated(s: &str, chars: usize) -> &str {
    s.char_indices().nth(chars).map_or(s, |(i, _)| &s[..i])
}

fn document_response(doc: Bytes) -> Response<RespBody> {
    let mut r = Response::new(Full::new(doc).map_err(|never| match never {}).boxed());
    let h = r.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static("application/json"));
    h.insert(header::ACCESS_CONTROL_ALLOW_ORIGIN, HeaderValue::from_static("*"));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("public, max-age=60"));
    r
}

fn class_name(rt: &Runtime, class: Option<usize>) -> &str {
    class.and_then(|c| rt.policy.classes().get(c)).map_or("none", |c| c.name.as_str())
}

async fn proxy<B: RequestBody>(
    conn: &Arc<Downstream>,
    rt: &Runtime,
    index: u64,
    parts: &http::request::Parts,
    body: &mut Option<B>,
    trace: &mut Trace,
) -> Result<Response<RespBody>, RequestError> {
    let (shared, ctx) = (&*conn.shared, &conn.ctx);
    if let Some(flag) = ctx.framing.as_ref().and_then(|f| f.get().copied())
        && index >= flag.request
    {
        return Err(RequestError::Framing(flag.reason));
    }
    if !ctx.trusted && shared.bans.is_banned(ctx.key) {
        return Err(RequestError::Banned);
    }
    if parts.method != Method::GET && parts.method != Method::POST {
        return Err(RequestError::Method);
    }
    let conns = rt.policy.connections();
    let target_len = parts.uri.path_and_query().map_or(0, |p| p.as_str().len());
    if target_len > conns.max_uri_bytes {
        return Err(RequestError::UriTooLong);
    }
    let path = parts.uri.path();
    if !is_canonical_path(path) {
        return Err(RequestError::BadPath);
    }
    let route = rt.policy.route(path).ok_or(RequestError::NotAllowed)?;
    trace.class = Some(route.class);
    let class = rt.policy.classes().get(route.class).ok_or(RequestError::Internal)?;
    let decision = rt.limiters.check(&class.name, ctx.key, ctx.trusted);
    trace.limit = decision.label();
    if let Decision::Limited { wait, .. } = decision {
        return Err(RequestError::Limited(wait));
    }

    if let Some(cl) = parts.headers.get(header::CONTENT_LENGTH) {
        let n: u64 = cl
            .to_str()
            .ok()
            .and_then(|s| s.parse().ok())
            .ok_or(RequestError::Framing("invalid Content-Length"))?;
        if n > class.max_body_bytes {
            return Err(RequestError::TooLarge(class.max_body_bytes));
        }
    }
    let body = body.take().ok_or(RequestError::Internal)?;
    let body = read_body(body, class.max_body_bytes, conns.body_read_timeout).await?;
    let body = match rt.policy.filter().inspect(path, body, gateway_time()) {
        Ok(passed) => {
            trace.filter = passed.decision;
            if passed.decision == "clamped" {
                shared.metrics.clamped(&class.name);
            }
            passed.body
        }
        Err(rejection) => {
            trace.filter = rejection.reason();
            return Err(RequestError::Filtered(rejection));
        }
    };

    let pool = rt.pools.get(class.pool).ok_or(RequestError::Internal)?;
    let attempts = if route.retry { pool.config.max_attempts } else { 1 };
    let mut tried: Vec<usize> = Vec::new();
    let mut last_err = RequestError::NoUpstream;
    let mut last_resp: Option<Response<UpResponseBody>> = None;
    while (tried.len() as u32) < attempts {
        let (i, in_flight) = match pool.pick_queued(&tried).await {
            Pick::Node(i, in_flight) => (i, in_flight),
            Pick::Busy => {
                // Every node left is at its cap: what was already tried failing decides the
                // answer if there was a try, else the pool is busy.
                if tried.is_empty() {
                    last_err = RequestError::UpstreamBusy;
                }
                break;
            }
            Pick::NoNode => break,
        };
        if !tried.is_empty() {
            shared.metrics.retry();
        }
        tried.push(i);
        trace.attempts += 1;
        let node = &pool.nodes()[i];
        trace.upstream = Some(node.addr);
        let up_req = upstream_request(parts, node.authority(), &ctx.forwarded_for, body.clone())?;
        let result = tokio::time::timeout(class.timeout, pool.request(i, up_req)).await;
        drop(in_flight);
        match result {
            Err(_) => {
                pool.failure(i);
                shared.metrics.ejection();
                last_err = RequestError::UpstreamTimeout;
                last_resp = None;
                break;
            }
            Ok(Err(e)) => {
                pool.failure(i);
                shared.metrics.ejection();
                tracing::warn!(node = %node.addr, error = %e, connect = e.is_connect(), "upstream request failed");
                // A retryable route is an idempotent read: any transport failure may be
                // replayed on another node (attempts is 1 for everything else).
                last_err = RequestError::Upstream;
                last_resp = None;
            }
            Ok(Ok(resp)) => {
                let s = resp.status();
                if s == StatusCode::BAD_GATEWAY || s == StatusCode::SERVICE_UNAVAILABLE {
                    pool.failure(i);
                    shared.metrics.ejection();
                    last_resp = Some(resp);
                    continue;
                }
                pool.success(i);
                return downstream_response(resp, class.timeout, conn).await;
            }
        }
    }
    match last_resp {
        Some(resp) => downstream_response(resp, class.timeout, conn).await,
        None => Err(last_err),
    }
}

/// The gateway's clock in whole seconds, for transaction expiration checks.
fn gateway_time() -> TimePointSec {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    TimePointSec(u32::try_from(secs).unwrap_or(u32::MAX))
}

/// Reads and discards a small remainder of a refused request's body, so an HTTP/2 stream
/// ends cleanly instead of being reset (resets count toward the rapid-reset limit, which would
/// close a client's whole connection for a few refused requests). Bounded in size and time.
async fn drain<B: RequestBody>(body: B) {
    if body.is_end_stream() {
        return;
    }
    let deadline = std::time::Duration::from_millis(50);
    let _ = tokio::time::timeout(deadline, Limited::new(body, 16 * 1024).collect()).await;
}

async fn read_body<B: RequestBody>(
    body: B,
    cap: u64,
    timeout: std::time::Duration,
) -> Result<Bytes, RequestError> {
    // No body (a GET): nothing to wait for, bound or gather.
    if body.is_end_stream() {
        return Ok(Bytes::new());
    }
    let limit = usize::try_from(cap).unwrap_or(usize::MAX);
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Err(_) => Err(RequestError::BodyTimeout),
        Ok(Err(e)) if e.downcast_ref::<LengthLimitError>().is_some() => {
            Err(RequestError::TooLarge(cap))
        }
        Ok(Err(_)) => Err(RequestError::BodyRead),
        Ok(Ok(c)) => Ok(c.to_bytes()),
    }
}

/// Hop-by-hop headers (RFC 9110 §7.6.1) and anything the `Connection` header names.
pub fn strip_hop_by_hop(headers: &mut HeaderMap) {
    // The usual message has none: one pass over its names instead of a lookup per name.
    if !headers.keys().any(is_hop_by_hop) {
        return;
    }
    let named = connection_named(headers);
    let mut drop: Vec<HeaderName> = headers.keys().filter(|k| is_hop_by_hop(k)).cloned().collect();
    drop.extend(named);
    for n in drop {
        headers.remove(n);
    }
}

/// Whether `name` is hop-by-hop whatever the `Connection` header says: `Connection` itself,
/// `Keep-Alive`, `TE`, `Trailer`, `Transfer-Encoding`, `Upgrade` and any `Proxy-*`.
fn is_hop_by_hop(name: &HeaderName) -> bool {
    name == header::CONNECTION
        || name == header::TE
        || name == header::TRAILER
        || name == header::TRANSFER_ENCODING
        || name == header::UPGRADE
        || name.as_str() == "keep-alive"
        || name.as_str().starts_with("proxy-")
}

/// The header names listed in `headers`' `Connection` values (hop-by-hop for that message).
fn connection_named(headers: &HeaderMap) -> Vec<HeaderName> {
    headers
        .get_all(header::CONNECTION)
        .iter()
        .filter_map(|v| v.to_str().ok())
        .flat_map(|s| s.split(','))
        .filter_map(|t| HeaderName::from_bytes(t.trim().as_bytes()).ok())
        .collect()
}

/// Forwarding headers a client may have sent: the gateway sets its own and trusts none.
fn is_forwarding(name: &HeaderName) -> bool {
    name == header::FORWARDED
        || matches!(
            name.as_str(),
            "x-forwarded-for" | "x-real-ip" | "x-forwarded-proto" | "x-forwarded-host"
        )
}

fn upstream_request(
    parts: &http::request::Parts,
    node: &Authority,
    forwarded_for: &HeaderValue,
    body: Bytes,
) -> Result<Request<UpBody>, RequestError> {
    // Origin form: the connection already goes to the node.
    let pq = parts.uri.path_and_query().cloned().unwrap_or_else(|| PathAndQuery::from_static("/"));
    let uri = Uri::from(pq);
    // One pass copies what goes upstream: hop-by-hop, forwarding and length headers stay
    // behind (hyper sets the length of the body it sends).
    let named = connection_named(&parts.headers);
    let mut headers = HeaderMap::with_capacity(parts.headers.keys_len() + 3);
    for (name, value) in &parts.headers {
        if is_hop_by_hop(name)
            || is_forwarding(name)
            || name == header::CONTENT_LENGTH
            || named.contains(name)
        {
            continue;
        }
        headers.append(name.clone(), value.clone());
    }
    if !headers.contains_key(header::HOST)
        && let Some(host) =
            parts.uri.authority().and_then(|a| HeaderValue::from_str(a.as_str()).ok())
    {
        headers.insert(header::HOST, host);
    }
    if !headers.contains_key(header::HOST)
        && let Ok(host) = HeaderValue::from_str(node.as_str())
    {
        headers.insert(header::HOST, host);
    }
    headers.insert(HeaderName::from_static("x-forwarded-for"), forwarded_for.clone());
    headers.insert(HeaderName::from_static("x-forwarded-proto"), HeaderValue::from_static("https"));
    let mut req = Request::new(Full::new(body).map_err(|never| match never {}).boxed());
    *req.method_mut() = parts.method.clone();
    *req.uri_mut() = uri;
    *req.version_mut() = Version::HTTP_11;
    *req.headers_mut() = headers;
    Ok(req)
}

/// Upstream answers up to this size (by their `Content-Length`) are read whole before the
/// answer goes downstream; larger or unsized ones are streamed.
pub(crate) const BUFFERED_RESPONSE_MAX: u64 = 64 * 1024;

/// The upstream answer as sent downstream, hop-by-hop headers removed.
///
/// A small answer of known length is read whole first: headers and body then leave in one
/// write (one TLS record, one HTTP/2 flush, instead of one for the head and one for the body
/// as it trickles in from the upstream connection's task), and the upstream connection goes
/// back to the pool at once.
///
/// On a connection with an account (HTTP/2), the answer is counted against the client's
/// share and the total before it is read, until its bytes are taken to be sent: a client
/// that keeps its window shut cannot make the gateway read and hold more than that. When
/// there is no room, the answer is streamed instead, and the wait for the client's window
/// decides.
async fn downstream_response(
    resp: Response<UpResponseBody>,
    timeout: std::time::Duration,
    conn: &Arc<Downstream>,
) -> Result<Response<RespBody>, RequestError> {
    let (mut parts, body) = resp.into_parts();
    strip_hop_by_hop(&mut parts.headers);
    let small = parts
        .headers
        .get(header::CONTENT_LENGTH)
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.parse::<usize>().ok())
        .filter(|n| *n as u64 <= BUFFERED_RESPONSE_MAX);
    let Some(len) = small else {
        return Ok(Response::from_parts(parts, streamed(body)));
    };
    // An empty answer holds nothing; HTTP/1 connections have no account.
    let charge = if len > 0 && conn.ctx.holds.is_some() {
        match SendCharge::new(Held(conn.clone()), len) {
            Ok(charge) => Some(charge),
            Err(_) => return Ok(Response::from_parts(parts, streamed(body))),
        }
    } else {
        None
    };
    let limit = usize::try_from(BUFFERED_RESPONSE_MAX).unwrap_or(usize::MAX);
    match tokio::time::timeout(timeout, Limited::new(body, limit).collect()).await {
        Ok(Ok(collected)) => Ok(Response::from_parts(
            parts,
            match charge {
                Some(charge) => HeldBody { data: Some(collected.to_bytes()), charge: Some(charge) }
                    .map_err(|never| match never {})
                    .boxed(),
                None => Full::new(collected.to_bytes()).map_err(|never| match never {}).boxed(),
            },
        )),
        Ok(Err(_)) => Err(RequestError::Upstream),
        Err(_) => Err(RequestError::UpstreamTimeout),
    }
}

/// The upstream body passed on as it comes.
fn streamed(body: UpResponseBody) -> RespBody {
    body.map_err(|e| Box::new(e) as BoxError).boxed()
}

/// The connection whose account an answer read whole is counted in.
#[derive(Debug)]
struct Held(Arc<Downstream>);

impl AccountOwner for Held {
    fn account(&self) -> Option<&SendAccount> {
        self.0.ctx.holds.as_ref()
    }
}

/// An answer read whole, counted as held for its client until its bytes are taken.
struct HeldBody {
    data: Option<Bytes>,
    charge: Option<SendCharge<Held>>,
}

impl Body for HeldBody {
    type Data = Bytes;
    type Error = std::convert::Infallible;

    fn poll_frame(
        mut self: std::pin::Pin<&mut Self>,
        _cx: &mut std::task::Context<'_>,
    ) -> std::task::Poll<Option<Result<hyper::body::Frame<Bytes>, Self::Error>>> {
        // Taken to be sent: from here the sender counts what still waits for the window.
        self.charge = None;
        std::task::Poll::Ready(self.data.take().map(|d| Ok(hyper::body::Frame::data(d))))
    }

    fn is_end_stream(&self) -> bool {
        self.data.is_none()
    }

    fn size_hint(&self) -> hyper::body::SizeHint {
        hyper::body::SizeHint::with_exact(self.data.as_ref().map_or(0, |d| d.len() as u64))
    }
}
