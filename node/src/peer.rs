//! The private producer⇄api protocol over TCP (WireGuard side only): an api node follows the
//! producer's blocks (or another api node's) and forwards the transactions clients push to it.
//!
//! - [`serve_producer`] runs on the producer, and on an api node with a private listener (so
//!   that further api nodes can follow it): each connection opens with a chain-id handshake,
//!   then either subscribes to blocks (every stored block from a height, then each new one as
//!   the chain commits it, with heartbeats while idle) or pushes transactions one at a time
//!   (the service answers each through its [`PushHandler`]: the producer's chain applies it,
//!   an api node relays it upstream with its [`PushClient`]; the trace or the nodeos error
//!   goes back unchanged).
//! - [`follow`] runs on an api node: it resumes from its own head, applies each block through
//!   its [`BlockSink`] (which verifies it), reconnects with backoff when the link fails, and
//!   stops for good — saying why in [`FollowerState`] — when a block fails verification.
//! - [`PushClient`] is the api node's side of pushes, with a small pool of connections.
//!
//! Frames are bounded and versioned ([`wire`]); pushes in flight per api node
//! ([`MAX_PUSHES_IN_FLIGHT`]) and links per producer ([`MAX_PRODUCER_CONNECTIONS`]) are bounded. This module never decides whether a block or a
//! transaction is valid (the chain does), never applies a block out of order, and never
//! retries a push whose request may have reached the producer.

pub mod wire;

use std::future::Future;
use std::net::SocketAddr;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::time::Duration;

use rempart_core::backoff::AcceptBackoff;
use rempart_core::block::SignedBlock;
use rempart_core::transaction::PackedTransaction;
use rempart_core::{Bytes, Checksum256, from_bytes};
use serde_json::Value;
use tokio::net::{TcpListener, TcpStream};
use tokio::sync::watch;

use crate::api::ApiError;
use crate::listen;
use crate::store::Store;
use wire::{FromProducer, ToProducer, WireError};

/// Why a peer link failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum PeerError {
    /// The connection failed.
    #[error("peer connection: {0}; check that the producer's private address is reachable")]
    Io(#[from] std::io::Error),
    /// The peer sent something this protocol does not allow.
    #[error("peer protocol violation: {0}")]
    Protocol(String),
    /// The peer follows another chain.
    #[error("peer is on chain {theirs}, this node on {ours}; point it at a node of the same chain")]
    WrongChain {
        /// This node's chain id.
        ours: Checksum256,
        /// The peer's.
        theirs: Checksum256,
    },
    /// The peer closed the connection, saying why.
    #[error("peer closed the link: {0}")]
    Closed(String),
    /// The peer did not answer in time.
    #[error("peer did not answer within {0:?}")]
    Timeout(Duration),
    /// A block from the producer failed verification; following stops.
    #[error("block {block_num} rejected: {reason}; this api node stops following until fixed")]
    BadBlock {
        /// The block number.
        block_num: u32,
        /// Why the chain refused it.
        reason: String,
    },
    /// Reading local state failed.
    #[error("local state: {0}")]
    Store(#[from] crate::store::StoreError),
}

/// Applies pushed transactions (the producer's chain).
pub trait TransactionSink: Send + Sync {
    /// Applies `trx` in the pending block; the trace as nodeos's `processed` JSON, or the
    /// nodeos error. Called on a blocking thread.
    fn push(&self, trx: PackedTransaction) -> Result<Value, ApiError>;
}

/// What a push answers: the trace (nodeos's `processed` JSON) or the nodeos error.
pub type PushAnswer = Pin<Box<dyn Future<Output = Result<Value, ApiError>> + Send>>;

/// Answers the pushes that reach a block-serving node: every [`TransactionSink`] (the
/// producer's chain applies the transaction on a blocking thread) and a [`PushClient`] (an api
/// node relays it to the node it follows and hands back the answer unchanged).
pub trait PushHandler: Send + Sync {
    /// Handles `trx`; the answer goes back to the api node that forwarded it.
    fn handle(self: Arc<Self>, trx: PackedTransaction) -> PushAnswer;
}

impl<T: TransactionSink + 'static> PushHandler for T {
    fn handle(self: Arc<Self>, trx: PackedTransaction) -> PushAnswer {
        Box::pin(async move {
            tokio::task::spawn_blocking(move || self.push(trx))
                .await
                .unwrap_or_else(|e| Err(ApiError::internal(format!("producer failed: {e}"))))
        })
    }
}

impl PushHandler for PushClient {
    fn handle(self: Arc<Self>, trx: PackedTransaction) -> PushAnswer {
        Box::pin(async move { self.push(trx).await })
    }
}

/// Applies followed blocks (the api node's chain).
pub trait BlockSink: Send + Sync {
    /// The number of the next block this chain needs (head + 1).
    fn next_block_num(&self) -> Result<u32, String>;
    /// Verifies and applies `block`, or says why it was refused (nothing applied).
    /// Called on a blocking thread.
    fn apply_block(&self, block: &SignedBlock) -> Result<(), String>;
}

/// Tells block subscribers that the head moved. The producer (or an api node serving
/// followers) calls [`HeadNotifier::notify`] after each commit; subscribers also re-read the store head at [`POLL_INTERVAL`], so a
/// missed notification delays a block, never loses it.
#[derive(Debug, Clone)]
pub struct HeadNotifier(Arc<watch::Sender<u32>>);

impl HeadNotifier {
    /// A notifier starting at `head`.
    pub fn new(head: u32) -> Self {
        HeadNotifier(Arc::new(watch::Sender::new(head)))
    }

    /// The head is now `head`.
    pub fn notify(&self, head: u32) {
        self.0.send_replace(head);
    }

    fn subscribe(&self) -> watch::Receiver<u32> {
        self.0.subscribe()
    }
}

/// How often an idle block stream re-reads the store head.
pub const POLL_INTERVAL: Duration = Duration::from_millis(250);
/// How long a block stream stays silent before a heartbeat.
pub const HEARTBEAT_INTERVAL: Duration = Duration::from_secs(5);
/// How long a follower waits for any frame before it reconnects.
pub const FOLLOW_IDLE_TIMEOUT: Duration = Duration::from_secs(20);
/// How long a handshake may take.
pub const HANDSHAKE_TIMEOUT: Duration = Duration::from_secs(5);
/// How long a push may wait for the producer's answer.
pub const PUSH_TIMEOUT: Duration = Duration::from_secs(30);
/// Blocks read from the store per batch when streaming.
const BATCH: u32 = 64;

/// The block-serving side of the private protocol: the producer's, or an api node's that
/// other api nodes follow.
pub struct ProducerService {
    /// This node's state (blocks are read from snapshots).
    pub store: Arc<Store>,
    /// The chain id api nodes must present.
    pub chain_id: Checksum256,
    /// Answers pushed transactions: the producer's chain, or an api node's [`PushClient`].
    pub sink: Arc<dyn PushHandler>,
    /// Head changes.
    pub heads: HeadNotifier,
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
}

impl std::fmt::Debug for ProducerService {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("ProducerService").field("chain_id", &self.chain_id).finish()
    }
}

/// Serves api nodes on `listener` until `shutdown` completes.
pub async fn serve_producer(
    listener: TcpListener,
    service: Arc<ProducerService>,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    serve_producer_from(listener, service, |_| true, shutdown).await
}

/// [`serve_producer`], closing at once every connection whose source `allow` refuses (the
/// role passes `crate::tunnel::PeerFilter`: configured WireGuard peers only).
pub async fn serve_producer_from(
    listener: TcpListener,
    service: Arc<ProducerService>,
    allow: impl Fn(SocketAddr) -> bool,
    shutdown: impl Future<Output = ()>,
) -> std::io::Result<()> {
    tokio::pin!(shutdown);
    let slots = Arc::new(tokio::sync::Semaphore::new(MAX_PRODUCER_CONNECTIONS));
    let mut backoff = AcceptBackoff::new();
    loop {
        let (stream, peer) = tokio::select! {
            () = &mut shutdown => return Ok(()),
            accepted = listen::next_connection(&listener, &mut backoff, "producer link") => accepted,
        };
        if !allow(peer) {
            tracing::warn!(%peer, "connection refused: not a configured WireGuard peer");
            continue;
        }
        let Ok(slot) = slots.clone().try_acquire_owned() else {
            tracing::warn!(%peer, limit = MAX_PRODUCER_CONNECTIONS, "too many api node links; closed");
            continue;
        };
        let service = service.clone();
        tokio::spawn(async move {
            let _slot = slot;
            match serve_connection(stream, &service).await {
                Ok(()) => tracing::debug!(%peer, "api node disconnected"),
                Err(e) => tracing::info!(%peer, error = %e, "api node link ended"),
            }
        });
    }
}

async fn serve_connection(mut stream: TcpStream, svc: &ProducerService) -> Result<(), PeerError> {
    stream.set_nodelay(true)?;
    let max = svc.max_frame_bytes;
    let hello =
        tokio::time::timeout(HANDSHAKE_TIMEOUT, wire::read::<ToProducer, _>(&mut stream, max))
            .await
            .map_err(|_| PeerError::Timeout(HANDSHAKE_TIMEOUT))??;
    match hello {
        Some(ToProducer::Hello { chain_id }) if chain_id == svc.chain_id => {}
        Some(ToProducer::Hello { chain_id }) => {
            // Say which chain this is, so the api node stops for good instead of retrying.
            let head = current_head(&svc.store).await?;
            wire::write(&mut stream, &FromProducer::Welcome { chain_id: svc.chain_id, head })
                .await?;
            return Err(PeerError::WrongChain { ours: svc.chain_id, theirs: chain_id });
        }
        Some(_) => return Err(PeerError::Protocol("first frame must be Hello".into())),
        None => return Ok(()),
    }
    let head = current_head(&svc.store).await?;
    wire::write(&mut stream, &FromProducer::Welcome { chain_id: svc.chain_id, head }).await?;
    loop {
        match wire::read::<ToProducer, _>(&mut stream, max).await? {
            None => return Ok(()),
            Some(ToProducer::Subscribe { from }) => return stream_blocks(stream, svc, from).await,
            Some(ToProducer::Push { id, trx }) => {
                let answer = match svc.sink.clone().handle(trx).await {
                    Ok(trace) => FromProducer::Pushed { id, trace: trace.to_string() },
                    Err(e) => FromProducer::Refused { id, error: to_wire(&e) },
                };
                wire::write(&mut stream, &answer).await?;
            }
            Some(ToProducer::Hello { .. }) => {
                return Err(PeerError::Protocol("Hello sent twice".into()));
            }
        }
    }
}

async fn current_head(store: &Arc<Store>) -> Result<u32, PeerError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || -> Result<u32, PeerError> {
        Ok(store.read()?.head()?.map_or(0, |h| h.block_num))
    })
    .await
    .map_err(|e| PeerError::Protocol(format!("head read failed: {e}")))?
}

/// Blocks `from..=min(head, from + BATCH - 1)` as stored, and the head.
async fn read_batch(store: &Arc<Store>, from: u32) -> Result<(Vec<Vec<u8>>, u32), PeerError> {
    let store = store.clone();
    tokio::task::spawn_blocking(move || -> Result<(Vec<Vec<u8>>, u32), PeerError> {
        let snap = store.read()?;
        let head = snap.head()?.map_or(0, |h| h.block_num);
        let mut out = Vec::new();
        let mut n = from;
        while n <= head && out.len() < BATCH as usize {
            match snap.block(n)? {
                Some(b) => out.push(b),
                None => break,
            }
            n += 1;
        }
        Ok((out, head))
    })
    .await
    .map_err(|e| PeerError::Protocol(format!("block read failed: {e}")))?
}

async fn stream_blocks(
    mut stream: TcpStream,
    svc: &ProducerService,
    from: u32,
) -> Result<(), PeerError> {
    let mut heads = svc.heads.subscribe();
    let mut next = from.max(1);
    // Idle poll ticks since the last frame sent; a heartbeat goes out every
    // HEARTBEAT_INTERVAL of silence (counted in ticks: no clock is read here).
    let ticks_per_heartbeat = (HEARTBEAT_INTERVAL.as_millis() / POLL_INTERVAL.as_millis()).max(1);
    let mut idle_ticks = 0u128;
    // The follower sends nothing more; a read that returns means it closed the link.
    let (mut rd, mut wr) = stream.split();
    let mut probe = [0u8; 1];
    loop {
        let (blocks, head) = read_batch(&svc.store, next).await?;
        if blocks.is_empty() && next <= head {
            let reason = format!("block {next} is not in this producer's log");
            wire::write(&mut wr, &FromProducer::Fatal { reason: reason.clone() }).await?;
            return Err(PeerError::Closed(reason));
        }
        if !blocks.is_empty() {
            for b in blocks {
                wire::write(&mut wr, &FromProducer::Block { block: Bytes(b) }).await?;
                next += 1;
            }
            idle_ticks = 0;
            continue;
        }
        tokio::select! {
            changed = heads.changed() => {
                if changed.is_err() {
                    return Ok(());
                }
            }
            () = tokio::time::sleep(POLL_INTERVAL) => {
                idle_ticks += 1;
                if idle_ticks >= ticks_per_heartbeat {
                    wire::write(&mut wr, &FromProducer::Heartbeat { head }).await?;
                    idle_ticks = 0;
                }
            }
            n = tokio::io::AsyncReadExt::read(&mut rd, &mut probe) => {
                return match n {
                    Ok(0) => Ok(()),
                    Ok(_) => Err(PeerError::Protocol("request sent on a block stream".into())),
                    Err(e) => Err(e.into()),
                };
            }
        }
    }
}

fn to_wire(e: &ApiError) -> WireError {
    WireError {
        status: e.status,
        code: e.code,
        name: e.name.to_string(),
        what: e.what.to_string(),
        detail: e.detail.clone(),
    }
}

fn from_wire(e: WireError) -> ApiError {
    ApiError {
        status: e.status,
        code: e.code,
        name: e.name.into(),
        what: e.what.into(),
        detail: e.detail,
    }
}

async fn connect(
    addr: SocketAddr,
    chain_id: Checksum256,
    max: usize,
) -> Result<(TcpStream, u32), PeerError> {
    let fut = async {
        let mut stream = TcpStream::connect(addr).await?;
        stream.set_nodelay(true)?;
        wire::write(&mut stream, &ToProducer::Hello { chain_id }).await?;
        match wire::read::<FromProducer, _>(&mut stream, max).await? {
            Some(FromProducer::Welcome { chain_id: theirs, head }) => {
                if theirs != chain_id {
                    return Err(PeerError::WrongChain { ours: chain_id, theirs });
                }
                Ok((stream, head))
            }
            Some(FromProducer::Fatal { reason }) => Err(PeerError::Closed(reason)),
            Some(_) => Err(PeerError::Protocol("expected Welcome".into())),
            None => Err(PeerError::Closed("closed during the handshake".into())),
        }
    };
    tokio::time::timeout(HANDSHAKE_TIMEOUT, fut)
        .await
        .map_err(|_| PeerError::Timeout(HANDSHAKE_TIMEOUT))?
}

/// Most idle push connections kept open.
const MAX_IDLE_PUSH_CONNECTIONS: usize = 16;
/// Most pushes one api node has in flight to the producer; more wait (up to [`PUSH_TIMEOUT`]).
pub const MAX_PUSHES_IN_FLIGHT: usize = 64;
/// Most connections the producer serves at once; more are closed on accept.
pub const MAX_PRODUCER_CONNECTIONS: usize = 256;

/// Forwards transactions to the producer (the api node's side of pushes).
#[derive(Debug, Clone)]
pub struct PushClient {
    inner: Arc<PushInner>,
}

#[derive(Debug)]
struct PushInner {
    addr: SocketAddr,
    chain_id: Checksum256,
    max_frame_bytes: usize,
    idle: Mutex<Vec<TcpStream>>,
    next_id: std::sync::atomic::AtomicU64,
    in_flight: tokio::sync::Semaphore,
}

impl PushClient {
    /// A client for the producer at `addr` on chain `chain_id`. Connects lazily.
    pub fn new(addr: SocketAddr, chain_id: Checksum256, max_frame_bytes: usize) -> Self {
        PushClient {
            inner: Arc::new(PushInner {
                addr,
                chain_id,
                max_frame_bytes,
                idle: Mutex::new(Vec::new()),
                next_id: std::sync::atomic::AtomicU64::new(1),
                in_flight: tokio::sync::Semaphore::new(MAX_PUSHES_IN_FLIGHT),
            }),
        }
    }

    fn take_idle(&self) -> Option<TcpStream> {
        let mut idle = self.inner.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        while let Some(s) = idle.pop() {
            // A live idle connection has nothing to read; EOF or stray bytes mean drop it.
            let mut b = [0u8; 1];
            match s.try_read(&mut b) {
                Err(e) if e.kind() == std::io::ErrorKind::WouldBlock => return Some(s),
                _ => continue,
            }
        }
        None
    }

    fn put_idle(&self, s: TcpStream) {
        let mut idle = self.inner.idle.lock().unwrap_or_else(std::sync::PoisonError::into_inner);
        if idle.len() < MAX_IDLE_PUSH_CONNECTIONS {
            idle.push(s);
        }
    }

    /// Has the producer apply `trx`: the trace (nodeos's `processed`) or the nodeos error.
    /// A link failure is a 503 that tells the client the outcome is unknown.
    pub async fn push(&self, trx: PackedTransaction) -> Result<Value, ApiError> {
        let unavailable = |e: PeerError| {
            tracing::warn!(error = %e, "cannot forward a transaction to the producer");
            ApiError::unavailable(format!(
                "the producer cannot be reached ({e}); the transaction may or may not have \
                 been applied: look it up before sending it again"
            ))
        };
        let _permit = tokio::time::timeout(PUSH_TIMEOUT, self.inner.in_flight.acquire())
            .await
            .ok()
            .and_then(Result::ok)
            .ok_or_else(|| {
                ApiError::unavailable(format!(
                    "{MAX_PUSHES_IN_FLIGHT} transactions are already on their way to the \
                     producer; the transaction was not sent, try again shortly"
                ))
            })?;
        let mut stream = match self.take_idle() {
            Some(s) => s,
            None => {
                let i = &self.inner;
                connect(i.addr, i.chain_id, i.max_frame_bytes)
                    .await
                    .map_err(|e| {
                        tracing::warn!(error = %e, "cannot connect to the producer");
                        ApiError::unavailable(format!(
                            "the producer cannot be reached ({e}); the transaction was not sent"
                        ))
                    })?
                    .0
            }
        };
        let id = self.inner.next_id.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let exchange = async {
            wire::write(&mut stream, &ToProducer::Push { id, trx }).await?;
            wire::read::<FromProducer, _>(&mut stream, self.inner.max_frame_bytes).await
        };
        let answer = tokio::time::timeout(PUSH_TIMEOUT, exchange)
            .await
            .map_err(|_| unavailable(PeerError::Timeout(PUSH_TIMEOUT)))?
            .map_err(unavailable)?;
        match answer {
            Some(FromProducer::Pushed { id: got, trace }) if got == id => {
                self.put_idle(stream);
                serde_json::from_str(&trace)
                    .map_err(|e| ApiError::internal(format!("producer sent a bad trace: {e}")))
            }
            Some(FromProducer::Refused { id: got, error }) if got == id => {
                self.put_idle(stream);
                Err(from_wire(error))
            }
            Some(FromProducer::Fatal { reason }) => Err(unavailable(PeerError::Closed(reason))),
            Some(_) => Err(unavailable(PeerError::Protocol("unexpected answer to a push".into()))),
            None => Err(unavailable(PeerError::Closed("closed before answering".into()))),
        }
    }
}

/// Where a follower stands.
#[derive(Debug, Clone, PartialEq, Eq)]
#[non_exhaustive]
pub enum FollowStatus {
    /// Not connected yet, or reconnecting after `last_error`.
    Connecting {
        /// Why the previous link ended, if one did.
        last_error: Option<String>,
    },
    /// Applying blocks; `head` is the last one applied.
    Following {
        /// Last applied block number.
        head: u32,
    },
    /// A block failed verification: following stopped for good.
    Stopped {
        /// Why.
        reason: String,
    },
}

/// A follower's observable state (for metrics, health and tests).
#[derive(Debug)]
pub struct FollowerState(watch::Sender<FollowStatus>);

impl Default for FollowerState {
    fn default() -> Self {
        FollowerState(watch::Sender::new(FollowStatus::Connecting { last_error: None }))
    }
}

impl FollowerState {
    /// The current status.
    pub fn status(&self) -> FollowStatus {
        self.0.borrow().clone()
    }

    /// A receiver that sees every status change.
    pub fn watch(&self) -> watch::Receiver<FollowStatus> {
        self.0.subscribe()
    }

    fn set(&self, s: FollowStatus) {
        self.0.send_replace(s);
    }
}

/// Follower settings.
#[derive(Debug, Clone)]
pub struct FollowConfig {
    /// The producer's private address.
    pub producer: SocketAddr,
    /// This node's chain id.
    pub chain_id: Checksum256,
    /// Largest frame accepted.
    pub max_frame_bytes: usize,
    /// First reconnection delay; doubles up to `max_backoff`.
    pub min_backoff: Duration,
    /// Longest reconnection delay.
    pub max_backoff: Duration,
}

impl FollowConfig {
    /// Defaults for following `producer` on chain `chain_id`.
    pub fn new(producer: SocketAddr, chain_id: Checksum256) -> Self {
        FollowConfig {
            producer,
            chain_id,
            max_frame_bytes: wire::DEFAULT_MAX_FRAME_BYTES,
            min_backoff: Duration::from_millis(100),
            max_backoff: Duration::from_secs(5),
        }
    }
}

/// Follows the producer until `shutdown` completes (`Ok`) or a block fails verification
/// (`Err(PeerError::BadBlock)`, also recorded in `state`). Link failures reconnect with
/// exponential backoff and resume from the chain's own head.
pub async fn follow(
    cfg: FollowConfig,
    sink: Arc<dyn BlockSink>,
    state: Arc<FollowerState>,
    shutdown: impl Future<Output = ()>,
) -> Result<(), PeerError> {
    tokio::pin!(shutdown);
    let mut backoff = cfg.min_backoff;
    loop {
        let mut progressed = false;
        let result = tokio::select! {
            () = &mut shutdown => return Ok(()),
            r = follow_once(&cfg, &sink, &state, &mut progressed) => r,
        };
        let err = match result {
            Ok(()) => PeerError::Closed("producer closed the block stream".into()),
            Err(e @ (PeerError::BadBlock { .. } | PeerError::WrongChain { .. })) => {
                tracing::error!(error = %e, "follower stopped");
                state.set(FollowStatus::Stopped { reason: e.to_string() });
                return Err(e);
            }
            Err(e) => e,
        };
        if progressed {
            backoff = cfg.min_backoff;
        }
        tracing::warn!(error = %err, retry_in = ?backoff, "block stream from the producer ended");
        state.set(FollowStatus::Connecting { last_error: Some(err.to_string()) });
        tokio::select! {
            () = &mut shutdown => return Ok(()),
            () = tokio::time::sleep(backoff) => {}
        }
        backoff = (backoff * 2).min(cfg.max_backoff);
    }
}

async fn follow_once(
    cfg: &FollowConfig,
    sink: &Arc<dyn BlockSink>,
    state: &FollowerState,
    progressed: &mut bool,
) -> Result<(), PeerError> {
    let (mut stream, _) = connect(cfg.producer, cfg.chain_id, cfg.max_frame_bytes).await?;
    let s = sink.clone();
    let mut expected = tokio::task::spawn_blocking(move || s.next_block_num())
        .await
        .map_err(|e| PeerError::Protocol(format!("head read failed: {e}")))?
        .map_err(PeerError::Protocol)?;
    wire::write(&mut stream, &ToProducer::Subscribe { from: expected }).await?;
    if expected > 1 {
        state.set(FollowStatus::Following { head: expected - 1 });
    }
    loop {
        let frame = tokio::time::timeout(
            FOLLOW_IDLE_TIMEOUT,
            wire::read::<FromProducer, _>(&mut stream, cfg.max_frame_bytes),
        )
        .await
        .map_err(|_| PeerError::Timeout(FOLLOW_IDLE_TIMEOUT))??;
        match frame {
            None => return Ok(()),
            Some(FromProducer::Heartbeat { .. }) => {}
            Some(FromProducer::Fatal { reason }) => return Err(PeerError::Closed(reason)),
            Some(FromProducer::Block { block }) => {
                let block: SignedBlock = from_bytes(&block.0).map_err(|e| PeerError::BadBlock {
                    block_num: expected,
                    reason: format!("does not decode: {e}"),
                })?;
                let num = block.block_num();
                if num != expected {
                    return Err(PeerError::BadBlock {
                        block_num: num,
                        reason: format!("out of order: expected block {expected}"),
                    });
                }
                let s = sink.clone();
                tokio::task::spawn_blocking(move || s.apply_block(&block))
                    .await
                    .map_err(|e| PeerError::Protocol(format!("apply failed: {e}")))?
                    .map_err(|reason| PeerError::BadBlock { block_num: num, reason })?;
                *progressed = true;
                state.set(FollowStatus::Following { head: num });
                expected = num + 1;
            }
            Some(_) => {
                return Err(PeerError::Protocol("unexpected frame on a block stream".into()));
            }
        }
    }
}

#[cfg(test)]
mod tests;
