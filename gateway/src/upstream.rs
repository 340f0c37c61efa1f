//! Upstream pools of api nodes: choice of a node (round robin or least connections), passive
//! ejection with exponential backoff, and active health checks that understand the chain.
//!
//! A node is used only while its last `get_info` answered in time, its head block is recent
//! enough and not too far behind the best node of the pool, and it is not ejected. When no
//! node qualifies the pool has no node to give: requests fail with 503 rather than reaching a
//! stale node. This module never forwards client requests itself (that is `proxy`).
//!
//! Each pool keeps its keep-alive connections per worker thread of the gateway (`keepalive`):
//! an upstream connection is driven by a task of the worker that opened it, so a request and
//! the connection that carries it always run on the same thread, without cross-thread
//! wake-ups.

use std::cell::Cell;
use std::net::SocketAddr;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Weak};
use std::time::{SystemTime, UNIX_EPOCH};

use bytes::Bytes;
use futures_util::StreamExt;
use http::{Method, Request, Response, header};
use http_body_util::combinators::BoxBody;
use http_body_util::{BodyExt, Full, Limited};
use rempart_core::time::TimePoint;
use tokio::sync::Notify;

use crate::keepalive::{Keepalive, KeepaliveError, UpResponseBody};
use crate::policy::{self, Balancing};

#[cfg(test)]
mod tests;

/// Boxed error of request and response bodies.
pub type BoxError = Box<dyn std::error::Error + Send + Sync>;
/// Body sent to an upstream.
pub type UpBody = BoxBody<Bytes, BoxError>;

thread_local! {
    /// The index of the gateway worker running on this thread (0 outside the workers).
    static WORKER: Cell<usize> = const { Cell::new(0) };
}

/// Marks the current thread as gateway worker `index`: its requests use that worker's
/// upstream clients.
pub fn set_worker(index: usize) {
    WORKER.with(|w| w.set(index));
}

/// The index of the gateway worker running on this thread (0 outside the workers): state
/// kept per worker (idle connections, round-robin positions, metrics) is indexed by it.
pub fn worker() -> usize {
    WORKER.with(Cell::get)
}

/// A value on a cache line of its own, so that workers updating neighbouring values do not
/// take the line from each other.
#[derive(Debug, Default)]
#[repr(align(128))]
pub struct Padded<T>(pub T);

/// One api node and what the gateway knows about it.
#[derive(Debug)]
pub struct Node {
    /// Its address.
    pub addr: SocketAddr,
    /// Its address as the authority of upstream request URIs.
    authority: http::uri::Authority,
    /// Requests in flight, counted per worker: each worker changes only its own count (on a
    /// line of its own), so the fields read on every request stay on clean lines.
    in_flight: Box<[Padded<AtomicUsize>]>,
    checked_ok: AtomicBool,
    head_block: AtomicU64,
    failures: AtomicU32,
    ejected_until_ms: AtomicU64,
}

impl Node {
    fn new(addr: SocketAddr, workers: usize) -> Self {
        // A socket address in text is always a valid authority.
        let authority = addr
            .to_string()
            .parse()
            .unwrap_or_else(|_| http::uri::Authority::from_static("127.0.0.1"));
        Node {
            addr,
            authority,
            in_flight: (0..workers.max(1)).map(|_| Padded::default()).collect(),
            // Optimistic until the first health check says otherwise, so a restart does not
            // refuse traffic for a whole interval.
            checked_ok: AtomicBool::new(true),
            head_block: AtomicU64::new(0),
            failures: AtomicU32::new(0),
            ejected_until_ms: AtomicU64::new(0),
        }
    }

    /// Its address as the authority of upstream request URIs.
    pub fn authority(&self) -> &http::uri::Authority {
        &self.authority
    }

    /// Requests in flight to this node.
    pub fn in_flight(&self) -> usize {
        self.in_flight.iter().map(|n| n.0.load(Ordering::Relaxed)).sum()
    }

    /// The last head block number it reported.
    pub fn head_block(&self) -> u64 {
        self.head_block.load(Ordering::Relaxed)
    }
}

/// Counts a request in flight to a node until dropped; then wakes a request queued for a
/// place, if any.
#[derive(Debug)]
pub struct InFlight<'a> {
    count: &'a AtomicUsize,
    queue: &'a Queue,
}

impl Drop for InFlight<'_> {
    fn drop(&mut self) {
        self.count.fetch_sub(1, Ordering::Relaxed);
        // One load on the usual path: the lock-free count of waiters is only written while
        // requests queue.
        if self.queue.waiting.load(Ordering::Relaxed) > 0 {
            self.queue.freed.notify_one();
        }
    }
}

/// Requests waiting for a node of the pool to fall below its in-flight cap.
#[derive(Debug, Default)]
struct Queue {
    waiting: AtomicUsize,
    freed: Notify,
}

/// Counts a queued request until dropped.
struct Waiting<'a>(&'a AtomicUsize);

impl Drop for Waiting<'_> {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// What [`Pool::pick`] found.
#[derive(Debug)]
pub enum Pick<'a> {
    /// Node `.0`, with the request counted in flight to it.
    Node(usize, InFlight<'a>),
    /// Every eligible node is at `max_in_flight_per_node`.
    Busy,
    /// No node is up (or every one was tried).
    NoNode,
}

/// Milliseconds since the Unix epoch, by the wall clock (ejections and head ages are judged
/// against it).
fn now_ms() -> u64 {
    SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis() as u64)
}

/// A pool of nodes with its client and settings.
#[derive(Debug)]
pub struct Pool {
    /// The pool's policy.
    pub config: policy::Pool,
    nodes: Vec<Arc<Node>>,
    /// Round-robin position of each worker: a counter shared by the workers would move its
    /// cache line between their cores on every request.
    next: Box<[Padded<AtomicUsize>]>,
    /// Idle connections to the nodes, per worker thread.
    keepalive: Arc<Keepalive>,
    /// Requests waiting for a place below the nodes' in-flight cap; kept across reloads
    /// with the nodes, so a place freed by a request of the replaced pool wakes the new
    /// pool's waiters.
    queue: Arc<Queue>,
}

impl Pool {
    /// A pool for `config` served by `workers` worker threads, keeping the state of nodes
    /// that `old` already knew. `max_idle_per_node` applies to each worker.
    pub fn new(config: &policy::Pool, old: Option<&Pool>, workers: usize) -> Pool {
        let nodes = config
            .nodes
            .iter()
            .map(|addr| {
                old.and_then(|o| o.nodes.iter().find(|n| n.addr == *addr).cloned())
                    .unwrap_or_else(|| Arc::new(Node::new(*addr, workers)))
            })
            .collect();
        let keepalive = Arc::new(Keepalive::new(
            config.nodes.len(),
            workers,
            config.max_idle_per_node,
            config.connect_timeout,
        ));
        // Workers start at different nodes, so together they still go round the pool.
        let next = (0..workers.max(1)).map(|w| Padded(AtomicUsize::new(w))).collect();
        let queue = old.map(|o| o.queue.clone()).unwrap_or_default();
        Pool { config: config.clone(), nodes, next, keepalive, queue }
    }

    /// The nodes.
    pub fn nodes(&self) -> &[Arc<Node>] {
        &self.nodes
    }

    /// Sends `req` (origin-form target, `Host` set) to node `i` over a keep-alive connection
    /// of the worker running on this thread.
    ///
    /// (Not an `async fn`: that would be one more layer holding `req` beside the future it
    /// is moved into.)
    pub fn request(
        &self,
        i: usize,
        req: Request<UpBody>,
    ) -> impl Future<Output = Result<Response<UpResponseBody>, KeepaliveError>> + '_ {
        let worker = worker();
        let addr = self.nodes[i].addr;
        self.keepalive.request(worker, i, addr, req)
    }

    /// Whether node `i` may take requests now.
    pub fn is_up(&self, i: usize) -> bool {
        self.nodes.get(i).is_some_and(|n| {
            n.checked_ok.load(Ordering::Relaxed)
                && n.ejected_until_ms.load(Ordering::Relaxed) <= now_ms()
        })
    }

    /// Chooses a node not in `tried` and below its in-flight cap, and counts a request in
    /// flight to it. The cap is checked, then the count raised: workers choosing at the same
    /// moment may pass it by one request each.
    pub fn pick(&self, tried: &[usize]) -> Pick<'_> {
        let n = self.nodes.len();
        let next = &self.next[worker() % self.next.len()].0;
        // Only this worker moves its position: a load and a store, no locked instruction.
        let start = next.load(Ordering::Relaxed);
        next.store(start.wrapping_add(1), Ordering::Relaxed);
        let cap = self.config.max_in_flight_per_node;
        let mut busy = false;
        let candidates = (0..n)
            .map(|k| (start + k) % n)
            .filter(|i| !tried.contains(i) && self.is_up(*i))
            .map(|i| (i, self.nodes[i].in_flight()))
            .filter(|(_, load)| {
                busy |= *load >= cap;
                *load < cap
            });
        let chosen = match self.config.balancing {
            Balancing::RoundRobin => candidates.into_iter().next(),
            Balancing::LeastConnections => candidates.min_by_key(|(_, load)| *load),
        };
        let Some((chosen, _)) = chosen else {
            return if busy { Pick::Busy } else { Pick::NoNode };
        };
        let node = &self.nodes[chosen];
        let mine = &node.in_flight[worker() % node.in_flight.len()].0;
        mine.fetch_add(1, Ordering::Relaxed);
        Pick::Node(chosen, InFlight { count: mine, queue: &self.queue })
    }

    /// As [`Pool::pick`], but while every eligible node is at its cap, waits up to the
    /// pool's `queue_timeout` for one to take the request.
    pub async fn pick_queued(&self, tried: &[usize]) -> Pick<'_> {
        match self.pick(tried) {
            Pick::Busy => {}
            found => return found,
        }
        let deadline = tokio::time::Instant::now() + self.config.queue_timeout;
        self.queue.waiting.fetch_add(1, Ordering::Relaxed);
        let _waiting = Waiting(&self.queue.waiting);
        loop {
            // Registered before looking, so a place freed meanwhile is not missed.
            let freed = self.queue.freed.notified();
            let mut freed = std::pin::pin!(freed);
            freed.as_mut().enable();
            match self.pick(tried) {
                Pick::Busy => {}
                // A wake-up this request received and did not need is passed on by tokio
                // when `freed` is dropped.
                found => return found,
            }
            if tokio::time::timeout_at(deadline, freed).await.is_err() {
                return Pick::Busy;
            }
        }
    }

    /// Records a failed request to node `i`: ejects it for `eject_base × 2^(failures−1)`, at
    /// most `eject_max`.
    pub fn failure(&self, i: usize) {
        let Some(node) = self.nodes.get(i) else { return };
        let f = node.failures.fetch_add(1, Ordering::Relaxed).min(20);
        let base = self.config.eject_base.as_millis() as u64;
        let span = base.saturating_mul(1u64 << f).min(self.config.eject_max.as_millis() as u64);
        node.ejected_until_ms.store(now_ms().saturating_add(span), Ordering::Relaxed);
    }

    /// Records a successful request to node `i`.
    pub fn success(&self, i: usize) {
        if let Some(node) = self.nodes.get(i)
            && node.failures.load(Ordering::Relaxed) != 0
        {
            node.failures.store(0, Ordering::Relaxed);
        }
    }

    /// One round of health checks over every node, concurrently; then marks nodes in or out.
    pub async fn check_health(&self) {
        let timeout = self.config.health_timeout;
        let checks = (0..self.nodes.len())
            .map(|i| tokio::time::timeout(timeout, get_info(self, i)))
            .collect::<futures_util::stream::FuturesOrdered<_>>();
        let results: Vec<Option<HeadInfo>> = checks
            .map(|r| match r {
                Ok(Ok(info)) => Some(info),
                _ => None,
            })
            .collect()
            .await;
        let now = now_ms();
        let best = results.iter().flatten().map(|i| i.head_block_num).max();
        let max_age = self.config.max_head_age.as_millis() as u64;
        for (node, info) in self.nodes.iter().zip(&results) {
            let ok = match (info, best) {
                (Some(i), Some(best)) => {
                    now.saturating_sub(i.head_block_time_ms) <= max_age
                        && best - i.head_block_num <= u64::from(self.config.max_lag_blocks)
                }
                _ => false,
            };
            if let Some(i) = info {
                node.head_block.store(i.head_block_num, Ordering::Relaxed);
            }
            let was = node.checked_ok.swap(ok, Ordering::Relaxed);
            if was != ok {
                tracing::warn!(node = %node.addr, pool = %self.config.name, up = ok, "upstream health changed");
            }
        }
    }
}

/// Runs health checks of `pool` every interval until the pool is dropped (replaced by a
/// reload).
pub fn spawn_health(pool: &Arc<Pool>) {
    let weak: Weak<Pool> = Arc::downgrade(pool);
    let interval = pool.config.health_interval;
    tokio::spawn(async move {
        let mut tick = tokio::time::interval(interval);
        tick.set_missed_tick_behavior(tokio::time::MissedTickBehavior::Delay);
        loop {
            tick.tick().await;
            let Some(pool) = weak.upgrade() else { return };
            pool.check_health().await;
        }
    });
}

/// The part of `get_info` that health checks judge.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct HeadInfo {
    /// Head block number.
    pub head_block_num: u64,
    /// Head block time, ms since the Unix epoch.
    pub head_block_time_ms: u64,
}

/// Why a `get_info` answer was not usable.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum HealthError {
    /// The request failed.
    #[error("get_info request failed: {0}")]
    Request(String),
    /// The node answered with an error status.
    #[error("get_info answered {0}")]
    Status(u16),
    /// The answer lacks the head fields or is not JSON.
    #[error("get_info answer unusable: {0}")]
    Body(String),
}

async fn get_info(pool: &Pool, i: usize) -> Result<HeadInfo, HealthError> {
    let req = Request::builder()
        .method(Method::POST)
        .uri("/v1/chain/get_info")
        .header(header::HOST, pool.nodes[i].authority.as_str())
        .header(header::CONTENT_TYPE, "application/json")
        .body(Full::new(Bytes::from_static(b"{}")).map_err(|e| match e {}).boxed())
        .map_err(|e| HealthError::Request(e.to_string()))?;
    let resp = pool.request(i, req).await.map_err(|e| HealthError::Request(e.to_string()))?;
    if !resp.status().is_success() {
        return Err(HealthError::Status(resp.status().as_u16()));
    }
    let body = Limited::new(resp.into_body(), 64 * 1024)
        .collect()
        .await
        .map_err(|e| HealthError::Body(e.to_string()))?
        .to_bytes();
    parse_head_info(&body)
}

/// Reads `head_block_num` and `head_block_time` from a `get_info` answer.
pub fn parse_head_info(body: &[u8]) -> Result<HeadInfo, HealthError> {
    let v: serde_json::Value =
        serde_json::from_slice(body).map_err(|e| HealthError::Body(e.to_string()))?;
    let num = v
        .get("head_block_num")
        .and_then(serde_json::Value::as_u64)
        .ok_or_else(|| HealthError::Body("no head_block_num".into()))?;
    let time = v
        .get("head_block_time")
        .and_then(serde_json::Value::as_str)
        .ok_or_else(|| HealthError::Body("no head_block_time".into()))?;
    let ms = parse_block_time_ms(time)
        .ok_or_else(|| HealthError::Body(format!("head_block_time {time:?} is not a UTC time")))?;
    Ok(HeadInfo { head_block_num: num, head_block_time_ms: ms })
}

/// Parses a chain time (`2024-01-01T00:00:50.000`, UTC) into ms since the epoch.
fn parse_block_time_ms(s: &str) -> Option<u64> {
    let t: TimePoint = s.parse().ok()?;
    u64::try_from(t.millis()).ok()
}
