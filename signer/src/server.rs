//! The request path: the framed protocol over Unix and TCP connections, and [`Signer`], which
//! decides and signs.
//!
//! A `SignBlock` is checked in this order: chain id, producer, the key the policy names for that
//! producer, then — under a per-key lock, so the guard sees one request at a time — the guard
//! (a repeated request gets the stored signature back), the block timestamp against the clock,
//! the HSM, the durable guard commit and the audit line; only then does the signature leave.
//! A peer that sends garbage gets an error frame or a closed connection; nothing it sends can
//! stop the daemon from serving other connections. This module never releases a signature the
//! guard state on disk does not hold, and never signs a digest it did not compute itself.

use std::collections::BTreeMap;
use std::net::IpAddr;
use std::sync::atomic::Ordering;
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rempart_core::Checksum256;
use rempart_core::block::ProducerKey;
use rempart_core::key::PublicKey;
use rempart_core::protocol::{
    ErrorCode, ErrorResponse, FrameDecoder, LastSigned, ProtocolError, Request, Response,
    SignBlockRequest, SignBlockResponse, StatusResponse, encode_frame,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::audit::{AuditError, AuditEvent, AuditLog};
use crate::guard::{Decision, Guard, GuardError, GuardKey, SignedBlock};
use crate::keyring::Keyring;
use crate::metrics::Metrics;
use crate::policy::Policy;

#[cfg(test)]
mod tests;

/// Bad frames tolerated on one connection before it is closed.
const MAX_BAD_FRAMES: u32 = 8;

/// Why the signer could not start serving.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ServerError {
    /// A producer's key is not in the key backend.
    #[error(
        "the policy says producer {producer} signs with {key}, but the {backend} backend holds \
         no such key (it holds: {held}); fix [[producers]] or the backend's keys"
    )]
    KeyNotHeld {
        /// The producer.
        producer: String,
        /// The key the policy names.
        key: PublicKey,
        /// The backend.
        backend: &'static str,
        /// The keys the backend holds.
        held: String,
    },
    /// A guard state is missing or corrupt.
    #[error(transparent)]
    Guard(#[from] GuardError),
    /// The audit log cannot be used.
    #[error(transparent)]
    Audit(#[from] AuditError),
}

/// A refusal or failure, as sent back and audited.
#[derive(Debug, Clone)]
struct Refusal {
    code: ErrorCode,
    reason: &'static str,
    message: String,
}

impl Refusal {
    fn new(code: ErrorCode, reason: &'static str, message: impl Into<String>) -> Refusal {
        Refusal { code, reason, message: message.into() }
    }
}

/// The deciding and signing part of the daemon, shared by every connection.
pub struct Signer {
    policy: Policy,
    keyring: Keyring,
    guard: Guard,
    audit: Mutex<AuditLog>,
    metrics: Arc<Metrics>,
    key_locks: BTreeMap<PublicKey, Mutex<()>>,
    refusals: std::sync::atomic::AtomicU64,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Signer").field("keyring", &self.keyring).finish_non_exhaustive()
    }
}

fn now_ms() -> i64 {
    SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| i64::try_from(d.as_millis()).unwrap_or(i64::MAX))
}

impl Signer {
    /// Checks that every producer's key is held and its guard state readable, and opens the
    /// audit log. Refuses to start otherwise (fail closed).
    pub fn new(
        policy: Policy,
        keyring: Keyring,
        metrics: Arc<Metrics>,
    ) -> Result<Signer, ServerError> {
        let guard = Guard::new(&policy.state_dir);
        let mut key_locks = BTreeMap::new();
        for p in &policy.producers {
            if !keyring.holds(&p.key) {
                return Err(ServerError::KeyNotHeld {
                    producer: p.account.to_string(),
                    key: p.key,
                    backend: keyring.kind(),
                    held: keyring
                        .public_keys()
                        .iter()
                        .map(ToString::to_string)
                        .collect::<Vec<_>>()
                        .join(", "),
                });
            }
            guard.load(&GuardKey { chain_id: policy.chain_id, producer: p.account, key: p.key })?;
            key_locks.insert(p.key, Mutex::new(()));
        }
        let audit = AuditLog::open(&policy.audit_log)?;
        Ok(Signer {
            policy,
            keyring,
            guard,
            audit: Mutex::new(audit),
            metrics,
            key_locks,
            refusals: 0.into(),
        })
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The key backend.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Appends an event to the audit log.
    pub fn audit(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let started = Instant::now();
        let mut log = self.audit.lock().unwrap_or_else(|e| e.into_inner());
        let r = log.append(event);
        self.metrics.audit_latency.observe(started.elapsed());
        r
    }

    /// Answers one request. Blocking (HSM calls, fsync): run it off the async workers.
    pub fn handle(&self, request: Request, peer: &str) -> Response {
        let id = request.request_id();
        match request {
            Request::SignBlock(req) => {
                let started = Instant::now();
                let r = self.sign_block(&req, peer);
                self.metrics.request_latency.observe(started.elapsed());
                match r {
                    Ok(resp) => Response::Signature(resp),
                    Err(refusal) => self.refuse(id, refusal, peer, Some(&req)),
                }
            }
            Request::PublicKeys { request_id } => Response::PublicKeys {
                request_id,
                keys: self
                    .policy
                    .producers
                    .iter()
                    .map(|p| ProducerKey { producer_name: p.account, block_signing_key: p.key })
                    .collect(),
            },
            Request::Status { request_id } => Response::Status(self.status(request_id)),
            Request::Admin(_) => self.refuse(
                id,
                Refusal::new(
                    ErrorCode::Unauthorized,
                    "admin_unsupported",
                    "admin commands are not enabled in this signer",
                ),
                peer,
                None,
            ),
        }
    }

    fn status(&self, request_id: u64) -> StatusResponse {
        let mut last_signed = Vec::new();
        for p in &self.policy.producers {
            let key = GuardKey { chain_id: self.policy.chain_id, producer: p.account, key: p.key };
            if let Ok(state) = self.guard.load(&key)
                && let Some(last) = state.last
            {
                last_signed.push(LastSigned {
                    chain_id: key.chain_id,
                    producer: key.producer,
                    key: key.key,
                    block_num: last.block_num,
                    timestamp: last.slot,
                    digest: last.digest,
                });
            }
        }
        StatusResponse {
            request_id,
            paused: false,
            signatures: self.metrics.signatures.load(Ordering::Relaxed)
                + self.metrics.replays.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
            last_signed,
        }
    }

    fn refuse(
        &self,
        request_id: u64,
        refusal: Refusal,
        peer: &str,
        req: Option<&SignBlockRequest>,
    ) -> Response {
        self.metrics.refused(refusal.reason);
        self.refusals.fetch_add(1, Ordering::Relaxed);
        tracing::warn!(peer, reason = refusal.reason, "refused: {}", refusal.message);
        let event = AuditEvent::Refusal {
            reason: refusal.reason.to_string(),
            message: refusal.message.clone(),
            peer: peer.to_string(),
            producer: req.map(|r| r.header.producer.to_string()),
            block_num: req.map(|r| r.header.block_num()),
            digest: req.map(|r| r.digest().to_string()),
        };
        if let Err(e) = self.audit(&event) {
            tracing::error!(error = %e, "cannot audit a refusal");
        }
        Response::Error(ErrorResponse { request_id, code: refusal.code, message: refusal.message })
    }

    fn sign_block(&self, req: &SignBlockRequest, peer: &str) -> Result<SignBlockResponse, Refusal> {
        let policy = &self.policy;
        if req.chain_id != policy.chain_id {
            return Err(Refusal::new(
                ErrorCode::WrongChain,
                "wrong_chain",
                format!(
                    "this signer serves chain {}, not {}; check the node's and the signer's \
                     configuration",
                    policy.chain_id, req.chain_id
                ),
            ));
        }
        let producer = req.header.producer;
        let Some(key) = policy.key_for(producer) else {
            return Err(Refusal::new(
                ErrorCode::UnknownKey,
                "unknown_producer",
                format!("this signer does not sign for producer {producer}"),
            ));
        };
        if *key != req.signing_key {
            return Err(Refusal::new(
                ErrorCode::UnknownKey,
                "wrong_key",
                format!(
                    "producer {producer} signs with {key} in this signer's policy, not {}",
                    req.signing_key
                ),
            ));
        }
        let digest: Checksum256 = req.digest();
        let block_num = req.header.block_num();
        let slot = req.header.timestamp;
        let gkey = GuardKey { chain_id: policy.chain_id, producer, key: *key };

        let lock = self.key_locks.get(key).ok_or_else(|| {
            Refusal::new(ErrorCode::Internal, "internal", format!("no lock for key {key}"))
        })?;
        let _serial = lock.lock().unwrap_or_else(|e| e.into_inner());

        let guard_err = |e: GuardError| {
            let code = match e {
                GuardError::DoubleSign { .. } | GuardError::BelowFloor { .. } => {
                    ErrorCode::DoubleSign
                }
                _ => ErrorCode::Internal,
            };
            Refusal::new(code, e.reason(), e.to_string())
        };
        let mut state = self.guard.load(&gkey).map_err(guard_err)?;
        match Guard::check(&state, block_num, slot, &digest).map_err(guard_err)? {
            Decision::Replay(signature) => {
                self.audit(&AuditEvent::Signature {
                    chain_id: policy.chain_id.to_string(),
                    producer: producer.to_string(),
                    key: key.to_string(),
                    block_num,
                    slot: slot.0,
                    digest: digest.to_string(),
                    signature: signature.to_string(),
                    replay: true,
                    attempts: 0,
                    peer: peer.to_string(),
                })
                .map_err(|e| Refusal::new(ErrorCode::Internal, "audit", e.to_string()))?;
                self.metrics.replays.fetch_add(1, Ordering::Relaxed);
                return Ok(SignBlockResponse {
                    request_id: req.request_id,
                    block_num,
                    digest,
                    signature,
                });
            }
            Decision::Sign => {}
        }

        let block_ms = slot.to_time_point().millis();
        let skew = (block_ms - now_ms()).unsigned_abs();
        let max = u64::try_from(policy.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        if skew > max {
            return Err(Refusal::new(
                ErrorCode::ClockSkew,
                "clock_skew",
                format!(
                    "block {block_num} timestamp is {skew} ms from this signer's clock (limit \
                     {max} ms); check NTP on the producer and the signer"
                ),
            ));
        }

        let signed = self
            .keyring
            .sign(key, &digest)
            .map_err(|e| Refusal::new(ErrorCode::Backend, e.reason(), e.to_string()))?;

        let started = Instant::now();
        self.guard
            .commit(
                &mut state,
                SignedBlock { block_num, slot, digest, signature: signed.signature },
            )
            .map_err(guard_err)?;
        self.metrics.guard_latency.observe(started.elapsed());

        self.audit(&AuditEvent::Signature {
            chain_id: policy.chain_id.to_string(),
            producer: producer.to_string(),
            key: key.to_string(),
            block_num,
            slot: slot.0,
            digest: digest.to_string(),
            signature: signed.signature.to_string(),
            replay: false,
            attempts: signed.attempts,
            peer: peer.to_string(),
        })
        .map_err(|e| Refusal::new(ErrorCode::Internal, "audit", e.to_string()))?;
        self.metrics.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(SignBlockResponse {
            request_id: req.request_id,
            block_num,
            digest,
            signature: signed.signature,
        })
    }
}

/// Time limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From a request's first byte to its reply.
    pub request_timeout: Duration,
    /// Between requests.
    pub idle_timeout: Duration,
}

fn error_frame(request_id: u64, code: ErrorCode, message: String) -> Vec<u8> {
    let resp = Response::Error(ErrorResponse { request_id, code, message });
    // An error response is far below the frame limit.
    encode_frame(&resp).unwrap_or_default()
}

/// Serves one connection until the peer closes it, misbehaves or times out.
pub async fn serve_connection<S>(
    mut stream: S,
    signer: Arc<Signer>,
    peer: String,
    limits: ConnectionLimits,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut decoder = FrameDecoder::new();
    let mut buf = vec![0u8; 16 * 1024];
    let mut pending: Vec<u8> = Vec::new();
    let mut bad = 0u32;
    let mut deadline: Option<tokio::time::Instant> = None;
    loop {
        // Decode what is buffered first.
        let mut input = &pending[..];
        let result: Result<Option<Request>, ProtocolError> = decoder.decode(&mut input);
        let used = pending.len() - input.len();
        pending.drain(..used);
        match result {
            Ok(Some(request)) => {
                let handle_deadline = deadline
                    .take()
                    .unwrap_or_else(|| tokio::time::Instant::now() + limits.request_timeout);
                let id = request.request_id();
                let s = signer.clone();
                let p = peer.clone();
                let task = tokio::task::spawn_blocking(move || s.handle(request, &p));
                let frame = match tokio::time::timeout_at(handle_deadline, task).await {
                    Ok(Ok(resp)) => encode_frame(&resp).unwrap_or_else(|e| {
                        error_frame(id, ErrorCode::Internal, format!("cannot encode reply: {e}"))
                    }),
                    Ok(Err(join)) => {
                        tracing::error!(error = %join, "request handler failed");
                        error_frame(id, ErrorCode::Internal, "request handler failed".into())
                    }
                    Err(_) => error_frame(
                        id,
                        ErrorCode::Busy,
                        "request timed out inside the signer; retry the same request (it is \
                         answered from the guard state if it was signed)"
                            .into(),
                    ),
                };
                if stream.write_all(&frame).await.is_err() {
                    return;
                }
                if !decoder.is_idle() || !pending.is_empty() {
                    deadline = Some(tokio::time::Instant::now() + limits.request_timeout);
                }
                continue;
            }
            Ok(None) => {}
            Err(e @ (ProtocolError::Decode { .. } | ProtocolError::UnsupportedVersion { .. })) => {
                signer.metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
                signer.metrics.refused("malformed");
                bad += 1;
                let code = if matches!(e, ProtocolError::UnsupportedVersion { .. }) {
                    ErrorCode::UnsupportedVersion
                } else {
                    ErrorCode::Malformed
                };
                tracing::warn!(peer, error = %e, "bad frame");
                let _ = stream.write_all(&error_frame(0, code, e.to_string())).await;
                if bad >= MAX_BAD_FRAMES {
                    return;
                }
                deadline = None;
                continue;
            }
            Err(e) => {
                // Framing is lost (oversized or empty frame): say why, then close.
                signer.metrics.bad_frames.fetch_add(1, Ordering::Relaxed);
                signer.metrics.refused("malformed");
                tracing::warn!(peer, error = %e, "closing connection");
                let _ =
                    stream.write_all(&error_frame(0, ErrorCode::Malformed, e.to_string())).await;
                let _ = stream.shutdown().await;
                return;
            }
        }
        if !pending.is_empty() {
            continue;
        }
        // Need more bytes: idle wait between requests, request deadline inside one.
        let wait_until = match deadline {
            Some(d) => d,
            None if decoder.is_idle() => tokio::time::Instant::now() + limits.idle_timeout,
            None => {
                let d = tokio::time::Instant::now() + limits.request_timeout;
                deadline = Some(d);
                d
            }
        };
        let n = match tokio::time::timeout_at(wait_until, stream.read(&mut buf)).await {
            Ok(Ok(0)) | Ok(Err(_)) => return,
            Ok(Ok(n)) => n,
            Err(_) => {
                if !decoder.is_idle() {
                    let _ = stream
                        .write_all(&error_frame(
                            0,
                            ErrorCode::Malformed,
                            "request not completed in time; closing".into(),
                        ))
                        .await;
                }
                return;
            }
        };
        if decoder.is_idle() && deadline.is_none() {
            deadline = Some(tokio::time::Instant::now() + limits.request_timeout);
        }
        pending.extend_from_slice(&buf[..n]);
    }
}

/// Who may connect.
#[derive(Debug, Clone, Default)]
pub struct PeerRules {
    /// Unix socket peer uids allowed.
    pub allowed_uids: std::collections::BTreeSet<u32>,
    /// TCP peer addresses allowed.
    pub tcp_allowed_peers: std::collections::BTreeSet<IpAddr>,
}

/// Accepts Unix connections until `shutdown` resolves, checking SO_PEERCRED.
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    signer: Arc<Signer>,
    rules: Arc<PeerRules>,
    slots: Arc<Semaphore>,
    limits: ConnectionLimits,
) {
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, _) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "unix accept failed");
                continue;
            }
        };
        let uid = match stream.peer_cred() {
            Ok(c) => c.uid(),
            Err(e) => {
                tracing::warn!(error = %e, "cannot read peer credentials; closing");
                continue;
            }
        };
        if !rules.allowed_uids.contains(&uid) {
            signer.metrics.refused("peer_uid");
            tracing::warn!(uid, "unix peer uid not allowed; closing");
            continue;
        }
        signer.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let s = signer.clone();
        tokio::spawn(async move {
            serve_connection(stream, s, format!("unix:uid={uid}"), limits).await;
            drop(permit);
        });
    }
}

/// Accepts TCP connections until `shutdown` resolves, from allowed peer addresses only.
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    signer: Arc<Signer>,
    rules: Arc<PeerRules>,
    slots: Arc<Semaphore>,
    limits: ConnectionLimits,
) {
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let (stream, addr) = match listener.accept().await {
            Ok(s) => s,
            Err(e) => {
                tracing::warn!(error = %e, "tcp accept failed");
                continue;
            }
        };
        if !rules.tcp_allowed_peers.contains(&addr.ip()) {
            signer.metrics.refused("peer_address");
            tracing::warn!(%addr, "tcp peer not allowed; closing");
            continue;
        }
        let _ = stream.set_nodelay(true);
        signer.metrics.connections.fetch_add(1, Ordering::Relaxed);
        let s = signer.clone();
        tokio::spawn(async move {
            serve_connection(stream, s, format!("tcp:{addr}"), limits).await;
            drop(permit);
        });
    }
}
