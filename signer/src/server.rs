//! The request path: the framed protocol over Unix and TCP connections, and [`Signer`], which
//! decides and signs.
//!
//! A `SignBlock` is checked in this order: chain id, producer, the key it names — the policy's
//! key for that producer or one an administrator's `rotate`/`add_key` created for it (usable at
//! once, no restart: the key the chain's schedule names is the one the node asks for), never a
//! retired one — then, under a per-producer lock so the guards see one request at a time, the
//! guard (a repeated request gets the stored signature back), the producer's other keys (none
//! may have signed this height or slot or a later one: after a switch the old key cannot sign
//! in the new key's place), the block timestamp against the clock; then the guard's intent for
//! the block is written durably on the guard worker's thread while the HSM signs on this one,
//! and the signature's audit line is written as soon as the HSM answers. Only when the intent
//! and the audit line are both durable does the signature leave, so a signature waits for the
//! HSM plus the audit fsync, or for the guard's fsyncs, whichever is longer, not for all of
//! them. If the guard write fails after the audit line was written, the refusal line that
//! follows says that signature was not released. What happened to each key's last intent
//! (released with which signature, or never released) is kept in memory and, at start, read
//! back from the audit log (see [`crate::guard`]).
//! A peer that sends garbage gets an error frame or a closed connection; nothing it sends can
//! stop the daemon from serving other connections. One accept loop serves both listeners; when
//! `accept` fails (out of file descriptors, say) it backs off from 10 ms to 1 s and logs once
//! per burst instead of spinning. While an administrator has paused signing, new signatures are
//! refused (repeats of a signed request still get their stored signature: nothing new leaves).
//! After each `SignBlock` reply is written, a `debug` event on the [`TIMING_TARGET`] target
//! splits the time spent inside the signer (HSM, guard fsync, audit fsync); the benchmark reads
//! it. This module never releases a signature the guard state on disk does not hold, and never
//! signs a digest it did not compute itself.

use std::collections::{BTreeMap, HashMap};
use std::future::Future;
use std::net::IpAddr;
use std::sync::atomic::{AtomicBool, AtomicU64, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use rempart_core::backoff::AcceptBackoff;
use rempart_core::block::ProducerKey;
use rempart_core::key::PublicKey;
use rempart_core::protocol::{
    ErrorCode, ErrorResponse, FrameDecoder, LastSigned, ProtocolError, Request, Response,
    SignBlockRequest, SignBlockResponse, StatusResponse, encode_frame,
};
use rempart_core::{Checksum256, Name};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::sync::Semaphore;

use crate::audit::{AuditError, AuditEvent, AuditLog, AuditWriter, ReadLine};
use crate::guard::{Decision, Guard, GuardError, GuardKey, GuardState, Intent, Outcome, StateLock};
use crate::keyring::Keyring;
use crate::metrics::Metrics;
use crate::policy::Policy;
use crate::worker::{Ticket, Worker};

#[cfg(test)]
pub(crate) mod testing;
#[cfg(test)]
mod tests;

/// Bad frames tolerated on one connection before it is closed.
const MAX_BAD_FRAMES: u32 = 8;

/// The `tracing` target of the per-request timing events (`debug` level): enable it with
/// `REMPART_LOG=info,rempart_signer::timing=debug`.
pub const TIMING_TARGET: &str = "rempart_signer::timing";

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
    /// The admin state (nonces seen, paused, retired keys) could not be read.
    #[error(transparent)]
    AdminState(#[from] crate::admin::AdminStateError),
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

/// The refusal of a request that came while the signer stops; `what` says what did not happen.
fn stopping(what: &str) -> Refusal {
    Refusal::new(
        ErrorCode::Busy,
        "stopping",
        format!(
            "the signer is stopping; {what}. Send it to another signer, or again once this one \
             has restarted"
        ),
    )
}

/// The refusal of a signature whose audit line could not be written: nothing is released.
fn audit_refusal(e: AuditError) -> Refusal {
    match e {
        AuditError::Closed => stopping("the signature was not released"),
        e => Refusal::new(ErrorCode::Internal, "audit", e.to_string()),
    }
}

/// A request counted by [`Signer::enter`] until it is answered.
pub(crate) struct Flight<'a>(&'a Signer);

impl Drop for Flight<'_> {
    fn drop(&mut self) {
        if self.0.in_flight.fetch_sub(1, Ordering::SeqCst) == 1 {
            self.0.idle.notify_waiters();
        }
    }
}

/// The deciding and signing part of the daemon, shared by every connection.
pub struct Signer {
    policy: Policy,
    keyring: Keyring,
    guard: Guard,
    /// Writes guard intents while the HSM signs.
    guard_worker: Worker,
    /// Prepares the next guard temporary files between signatures (a thread of its own, so
    /// that an intent never queues behind a preparation).
    prepare_worker: Worker,
    /// Claims blocks in the shared guard (`[shared_guard]`) while the intent is written and
    /// the HSM signs.
    claim_worker: Worker,
    /// What happened to each key's last two intents, when known: the newest first (its write
    /// may have failed, leaving the one before on disk).
    known: Mutex<HashMap<(Name, PublicKey), LastTwo>>,
    /// Each key's next guard temporary file, being prepared by the guard worker.
    preparing: Mutex<HashMap<(Name, PublicKey), Preparing>>,
    audit: AuditWriter,
    metrics: Arc<Metrics>,
    producer_locks: BTreeMap<Name, Mutex<()>>,
    refusals: AtomicU64,
    paused: AtomicBool,
    /// Set by [`Signer::stop`]: requests that would sign or audit are refused from then on.
    stopping: AtomicBool,
    /// Requests that may sign or audit, being answered (see [`Signer::enter`]).
    in_flight: AtomicUsize,
    /// Told when `in_flight` falls to zero.
    idle: tokio::sync::Notify,
    /// Turns true at the stop: connections waiting for a request close.
    stop_signal: tokio::sync::watch::Sender<bool>,
    admin: Option<crate::admin::Admin>,
    /// The guard shared with standby signers, when `[shared_guard]` is set.
    shared_guard: std::sync::OnceLock<Arc<crate::shared_guard::SharedGuard>>,
    /// One signing process per state directory; declared last, so released only after the
    /// workers above have finished what they were given.
    _state_lock: StateLock,
}

/// A guard temporary file being prepared (see [`Guard::prepare`]).
type Preparing = Ticket<Result<(), GuardError>>;

/// What is known of a key's last two intents, the newest first.
type LastTwo = [Option<Known>; 2];

/// The outcome of one intent, named by its block so it never applies to another intent.
#[derive(Debug, Clone, Copy)]
struct Known {
    block: (u32, rempart_core::BlockTimestamp, Checksum256),
    outcome: Outcome,
}

impl Known {
    fn of(intent: &Intent, outcome: Outcome) -> Known {
        Known { block: (intent.block_num, intent.slot, intent.digest), outcome }
    }

    /// The outcome of `state`'s intent, if one of `known` is about it.
    fn outcome_for(known: Option<&LastTwo>, state: &GuardState) -> Option<Outcome> {
        let i = state.intent.as_ref()?;
        known?
            .iter()
            .flatten()
            .find(|k| k.block == (i.block_num, i.slot, i.digest))
            .map(|k| k.outcome)
    }
}

/// Where the time of one request went inside the signer, for the timing event and the
/// benchmark. Transport is what a client measures beyond [`RequestTiming::total`].
#[derive(Debug, Clone, Copy, Default, PartialEq, Eq)]
pub struct RequestTiming {
    /// From the decoded request to the response, inside the blocking handler.
    pub total: Duration,
    /// From the decoded request to the first backend call: the checks, the guard state read
    /// from disk, the intent handed to the guard worker.
    pub before_backend: Duration,
    /// Inside the key backend (every attempt of the canonical-signature loop).
    pub backend: Duration,
    /// Backend calls made (0 for a replay or a refusal before signing).
    pub backend_calls: u32,
    /// The durable guard intent: write, fsync, rename, fsync of the directory (on the guard
    /// worker's thread, while the HSM signs).
    pub guard_commit: Duration,
    /// Audit appends (write and fsync) on this request's path.
    pub audit: Duration,
    /// From the HSM's answer until the audit line and the guard intent are both durable (zero
    /// when the request did not reach them).
    pub durable: Duration,
    /// The claim in the guard shared with standby signers (on the claim worker's thread, while
    /// the intent is written and the HSM signs); zero without `[shared_guard]`.
    pub claim: Duration,
    /// From the HSM's answer until the claim's answer (zero when the claim came first).
    pub claim_wait: Duration,
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

/// Reads the audit log at start for what happened to each key's last intent: a signature line
/// for it after its recorded position means released; the position in the log and no such line
/// means never released; a log without the position (replaced) leaves it unknown.
struct IntentRecovery {
    chain_id: String,
    intents: Vec<RecoveringIntent>,
}

struct RecoveringIntent {
    id: (Name, PublicKey),
    intent: Intent,
    producer: String,
    key: String,
    digest: String,
    covered: bool,
    released: Option<rempart_core::key::Signature>,
}

impl IntentRecovery {
    fn new(chain_id: Checksum256, intents: &[((Name, PublicKey), Intent)]) -> IntentRecovery {
        IntentRecovery {
            chain_id: chain_id.to_string(),
            intents: intents
                .iter()
                .map(|(id, intent)| RecoveringIntent {
                    id: *id,
                    intent: intent.clone(),
                    producer: id.0.to_string(),
                    key: id.1.to_string(),
                    digest: intent.digest.to_string(),
                    covered: false,
                    released: None,
                })
                .collect(),
        }
    }

    fn read(&mut self, line: &ReadLine<'_>) {
        let v = line.value;
        let text = |field: &str| v.get(field).and_then(|f| f.as_str());
        let signature =
            text("event") == Some("signature") && text("chain_id") == Some(&self.chain_id);
        for r in &mut self.intents {
            if line.seq == r.intent.audit_seq && line.hash == r.intent.audit_hash {
                r.covered = true;
            }
            if signature
                && line.seq > r.intent.audit_seq
                && text("producer") == Some(&r.producer)
                && text("key") == Some(&r.key)
                && text("digest") == Some(&r.digest)
                && v.get("block_num").and_then(|b| b.as_u64())
                    == Some(u64::from(r.intent.block_num))
                && let Some(sig) = text("signature").and_then(|s| s.parse().ok())
            {
                r.released = Some(sig);
            }
        }
    }

    fn finish(self) -> HashMap<(Name, PublicKey), LastTwo> {
        let mut known = HashMap::new();
        for r in self.intents {
            let outcome = match (r.released, r.covered) {
                (Some(sig), _) => Outcome::Released(sig),
                (None, true) => Outcome::NotReleased,
                (None, false) => {
                    tracing::warn!(
                        producer = %r.id.0,
                        key = %r.id.1,
                        block_num = r.intent.block_num,
                        slot = r.intent.slot.0,
                        "the audit log does not reach back to this key's last guard intent (was \
                         it replaced?): that block counts as signed, and no other block at or \
                         below its height or slot will be"
                    );
                    continue;
                }
            };
            known.insert(r.id, [Some(Known::of(&r.intent, outcome)), None]);
        }
        known
    }
}

impl Signer {
    /// Takes the state directory's lock (one signer per state), checks that every producer's
    /// key is held and its guard state readable, and opens the audit log. Refuses to start
    /// otherwise (fail closed).
    pub fn new(
        policy: Policy,
        keyring: Keyring,
        metrics: Arc<Metrics>,
    ) -> Result<Signer, ServerError> {
        let state_lock = Guard::new(&policy.state_dir).lock()?;
        Signer::with_lock(policy, keyring, metrics, state_lock)
    }

    /// [`Signer::new`] with the state directory's lock already taken (by a caller that wanted
    /// it before anything else, such as bringing up a tunnel or logging in to an HSM).
    pub fn with_lock(
        policy: Policy,
        keyring: Keyring,
        metrics: Arc<Metrics>,
        state_lock: StateLock,
    ) -> Result<Signer, ServerError> {
        let guard = Guard::new(&policy.state_dir);
        let mut producer_locks = BTreeMap::new();
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
            producer_locks.insert(p.account, Mutex::new(()));
        }
        let admin = crate::admin::Admin::open(&policy)?;
        let mut keys: Vec<(Name, PublicKey)> =
            policy.producers.iter().map(|p| (p.account, p.key)).collect();
        keys.extend(admin.as_ref().map(crate::admin::Admin::created_keys).unwrap_or_default());
        let intents: Vec<((Name, PublicKey), Intent)> = keys
            .iter()
            .filter_map(|&(producer, key)| {
                let gkey = GuardKey { chain_id: policy.chain_id, producer, key };
                Some(((producer, key), guard.load(&gkey).ok()?.intent?))
            })
            .collect();
        let mut recovery = IntentRecovery::new(policy.chain_id, &intents);
        // After a crash that left an intent, its signature line may be in the sealed log before
        // this one: that log is read too.
        let audit = AuditLog::open_segmented(
            &policy.audit_log,
            Some(policy.audit_segment_bytes),
            !intents.is_empty(),
            &mut |line| recovery.read(line),
        )?;
        let _ = metrics.audit.set(audit.stats());
        let known = recovery.finish();
        // Keys administrators created since the policy was written sign again after a restart.
        for (producer, key) in
            admin.as_ref().map(crate::admin::Admin::created_keys).unwrap_or_default()
        {
            if admin.as_ref().is_some_and(|a| a.is_retired(&key)) {
                continue;
            }
            if let Err(e) = keyring.adopt(&key) {
                tracing::warn!(
                    %producer,
                    %key,
                    error = %e,
                    "a key created by an admin command is not usable: it signs nothing until it \
                     is back in the token; retire it with an approved `retire` if it is gone"
                );
            }
        }
        // An administrator's pause outlives a restart.
        let paused = admin.as_ref().is_some_and(crate::admin::Admin::paused);
        Ok(Signer {
            policy,
            keyring,
            guard,
            guard_worker: Worker::new("guard-writer"),
            prepare_worker: Worker::new("guard-prepare"),
            claim_worker: Worker::new("shared-claim"),
            known: Mutex::new(known),
            preparing: Mutex::default(),
            audit: AuditWriter::new(audit),
            metrics,
            producer_locks,
            refusals: 0.into(),
            paused: paused.into(),
            stopping: false.into(),
            in_flight: 0.into(),
            idle: tokio::sync::Notify::new(),
            stop_signal: tokio::sync::watch::Sender::new(false),
            admin,
            shared_guard: std::sync::OnceLock::new(),
            _state_lock: state_lock,
        })
    }

    /// Makes every new signature claim its block in the guard shared with standby signers
    /// (`crate::shared_guard`) first. Set once, before serving.
    pub fn set_shared_guard(&self, guard: Arc<crate::shared_guard::SharedGuard>) {
        let _ = self.shared_guard.set(guard);
    }

    /// The guard shared with standby signers, if any.
    pub fn shared_guard(&self) -> Option<&Arc<crate::shared_guard::SharedGuard>> {
        self.shared_guard.get()
    }

    /// The policy in force.
    pub fn policy(&self) -> &Policy {
        &self.policy
    }

    /// The key backend.
    pub fn keyring(&self) -> &Keyring {
        &self.keyring
    }

    /// The keys that may sign for `producer`: the policy's, then those administrators created
    /// for it (retired ones excluded). Empty when this signer does not sign for it.
    pub fn producer_keys(&self, producer: Name) -> Vec<PublicKey> {
        let mut keys = self.all_producer_keys(producer);
        if let Some(admin) = &self.admin {
            keys.retain(|k| !admin.is_retired(k));
        }
        keys
    }

    /// Every key of `producer` this signer ever held, retired or not (none when its policy does
    /// not sign for `producer`): the double-sign check across keys looks at them all.
    fn all_producer_keys(&self, producer: Name) -> Vec<PublicKey> {
        let Some(key) = self.policy.key_for(producer) else { return Vec::new() };
        let mut keys = vec![*key];
        if let Some(admin) = &self.admin {
            for (p, k) in admin.created_keys() {
                if p == producer && !keys.contains(&k) {
                    keys.push(k);
                }
            }
        }
        keys
    }

    /// The metrics.
    pub fn metrics(&self) -> &Arc<Metrics> {
        &self.metrics
    }

    /// Whether signing is paused. Only an administrator's M-of-N approved `pause` or `resume`
    /// flips it (see [`crate::admin`]; it outlives a restart), and `Status` reports it.
    pub fn is_paused(&self) -> bool {
        self.paused.load(Ordering::SeqCst)
    }

    /// Pauses or resumes signing. While paused every new signature is refused with
    /// `ErrorCode::Paused`; a repeated request still gets its stored signature back.
    pub fn set_paused(&self, paused: bool) {
        if self.paused.swap(paused, Ordering::SeqCst) != paused {
            tracing::warn!(paused, "signing {}", if paused { "paused" } else { "resumed" });
        }
    }

    /// Counts a request that may sign or audit until the returned guard is dropped; `None`
    /// once the signer is stopping (the caller refuses the request). The count goes up before
    /// the flag is read and [`Signer::stop`] sets the flag before it reads the count, so a
    /// request either sees the stop or is waited for by it.
    pub(crate) fn enter(&self) -> Option<Flight<'_>> {
        self.in_flight.fetch_add(1, Ordering::SeqCst);
        let flight = Flight(self);
        (!self.stopping.load(Ordering::SeqCst)).then_some(flight)
    }

    /// Stops signing for good: requests that would sign or audit are refused from now on
    /// (`Busy`, reason `stopping`), those being answered get up to `drain` to finish, then the
    /// stop line closes the audit log. Nothing is audited after it, and so nothing signed is
    /// released after it: a request that outlives `drain` fails its audit line and is refused.
    pub async fn stop(&self, reason: &str, drain: Duration) -> Result<(), AuditError> {
        self.stopping.store(true, Ordering::SeqCst);
        self.stop_signal.send_replace(true);
        let drained = tokio::time::timeout(drain, async {
            loop {
                let idle = self.idle.notified();
                tokio::pin!(idle);
                idle.as_mut().enable();
                if self.in_flight.load(Ordering::SeqCst) == 0 {
                    return;
                }
                idle.await;
            }
        })
        .await;
        if drained.is_err() {
            tracing::warn!(
                in_flight = self.in_flight.load(Ordering::SeqCst),
                "requests still running {drain:?} after the stop: what they would sign is \
                 refused (the audit log is closed) and never released"
            );
        }
        self.audit.close(&AuditEvent::Stop { reason: reason.to_string() })
    }

    /// Resolves once [`Signer::stop`] has begun: a connection waiting for its next request
    /// closes then, one in the middle of a request finishes it first.
    pub(crate) async fn stopped(&self) {
        let mut signal = self.stop_signal.subscribe();
        let _ = signal.wait_for(|stopping| *stopping).await;
    }

    /// Appends an event to the audit log.
    pub fn audit(&self, event: &AuditEvent) -> Result<(), AuditError> {
        self.audit_timed(event).0
    }

    fn audit_timed(&self, event: &AuditEvent) -> (Result<(), AuditError>, Duration) {
        let (r, took) = self.audit.append(event);
        self.metrics.audit_latency.observe(took);
        (r, took)
    }

    /// Answers one request. Blocking (HSM calls, fsync): run it off the async workers.
    pub fn handle(&self, request: Request, peer: &str) -> Response {
        self.handle_timed(request, peer).0
    }

    /// [`Signer::handle`], also saying where the time went.
    pub fn handle_timed(&self, request: Request, peer: &str) -> (Response, RequestTiming) {
        let id = request.request_id();
        let mut timing = RequestTiming::default();
        let response = match request {
            Request::SignBlock(req) => {
                let started = Instant::now();
                let flight = self.enter();
                let r = match flight {
                    Some(_) => self.sign_block(&req, peer, started, &mut timing),
                    None => {
                        Err(stopping(&format!("block {} was not signed", req.header.block_num())))
                    }
                };
                let resp = match r {
                    Ok(resp) => Response::Signature(resp),
                    Err(refusal) => self.refuse(id, refusal, peer, Some(&req), &mut timing),
                };
                drop(flight);
                timing.total = started.elapsed();
                self.metrics.request_latency.observe(timing.total);
                resp
            }
            Request::PublicKeys { request_id } => Response::PublicKeys {
                request_id,
                keys: self
                    .policy
                    .producers
                    .iter()
                    .flat_map(|p| {
                        self.producer_keys(p.account)
                            .into_iter()
                            .map(|k| ProducerKey { producer_name: p.account, block_signing_key: k })
                    })
                    .collect(),
            },
            Request::Status { request_id } => Response::Status(self.status(request_id)),
            Request::Admin(req) => match (&self.admin, self.enter()) {
                (Some(_), None) => self.refuse(
                    id,
                    stopping("the admin command was not run"),
                    peer,
                    None,
                    &mut timing,
                ),
                (Some(admin), Some(_flight)) => admin.handle(self, &req, peer),
                (None, _) => self.refuse(
                    id,
                    Refusal::new(
                        ErrorCode::Unauthorized,
                        "admin_not_configured",
                        crate::admin::NOT_CONFIGURED,
                    ),
                    peer,
                    None,
                    &mut timing,
                ),
            },
        };
        (response, timing)
    }

    fn status(&self, request_id: u64) -> StatusResponse {
        let mut last_signed = Vec::new();
        let keys =
            self.policy.producers.iter().flat_map(|p| {
                self.all_producer_keys(p.account).into_iter().map(|k| (p.account, k))
            });
        for (producer, k) in keys {
            let key = GuardKey { chain_id: self.policy.chain_id, producer, key: k };
            if let Ok(state) = self.guard.load(&key)
                && let Some(last) =
                    state.watermark(self.outcome_for((producer, k), &state).as_ref())
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
            paused: self.is_paused(),
            signatures: self.metrics.signatures.load(Ordering::Relaxed)
                + self.metrics.replays.load(Ordering::Relaxed),
            refusals: self.refusals.load(Ordering::Relaxed),
            last_signed,
            tunnel: self.metrics.wireguard.status(),
        }
    }

    fn refuse(
        &self,
        request_id: u64,
        refusal: Refusal,
        peer: &str,
        req: Option<&SignBlockRequest>,
        timing: &mut RequestTiming,
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
        let (audited, took) = self.audit_timed(&event);
        timing.audit += took;
        match audited {
            Ok(()) => {}
            // After the stop line: refusals of late requests are in the daemon's log only.
            Err(AuditError::Closed) => tracing::info!("refusal not audited: the log is closed"),
            Err(e) => tracing::error!(error = %e, "cannot audit a refusal"),
        }
        Response::Error(ErrorResponse { request_id, code: refusal.code, message: refusal.message })
    }

    fn sign_block(
        &self,
        req: &SignBlockRequest,
        peer: &str,
        started: Instant,
        timing: &mut RequestTiming,
    ) -> Result<SignBlockResponse, Refusal> {
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
        if policy.key_for(producer).is_none() {
            return Err(Refusal::new(
                ErrorCode::UnknownKey,
                "unknown_producer",
                format!("this signer does not sign for producer {producer}"),
            ));
        }
        let key = &req.signing_key;
        if self.admin.as_ref().is_some_and(|a| a.is_retired(key)) {
            return Err(Refusal::new(
                ErrorCode::UnknownKey,
                "retired_key",
                format!(
                    "key {key} of producer {producer} was retired by the administrators; the \
                     node must ask for the key the producer schedule names now"
                ),
            ));
        }
        let keys = self.producer_keys(producer);
        if !keys.contains(key) {
            let list = keys.iter().map(ToString::to_string).collect::<Vec<_>>().join(", ");
            return Err(Refusal::new(
                ErrorCode::UnknownKey,
                "wrong_key",
                format!(
                    "producer {producer} signs with {list} in this signer (its policy and keys \
                     created by admin commands), not {key}; check the producer schedule on \
                     chain against this signer"
                ),
            ));
        }
        let digest: Checksum256 = req.digest();
        let block_num = req.header.block_num();
        let slot = req.header.timestamp;
        let gkey = GuardKey { chain_id: policy.chain_id, producer, key: *key };

        let lock = self.producer_locks.get(&producer).ok_or_else(|| {
            Refusal::new(ErrorCode::Internal, "internal", format!("no lock for {producer}"))
        })?;
        let _serial = lock.lock().unwrap_or_else(|e| e.into_inner());

        let guard_err = |e: GuardError| {
            let code = match e {
                GuardError::DoubleSign { .. }
                | GuardError::BelowFloor { .. }
                | GuardError::Unconfirmed { .. } => ErrorCode::DoubleSign,
                _ => ErrorCode::Internal,
            };
            Refusal::new(code, e.reason(), e.to_string())
        };
        let state = self.guard.load(&gkey).map_err(guard_err)?;
        let id = (producer, *key);
        let outcome = self.outcome_for(id, &state);
        let decision =
            Guard::check(&state, outcome.as_ref(), block_num, slot, &digest).map_err(guard_err)?;
        if let Decision::Replay(signature) = decision {
            let event = signature_event(req, &digest, &signature, 0, peer);
            let (audited, took) = self.audit_timed(&event);
            timing.audit += took;
            audited.map_err(audit_refusal)?;
            self.metrics.replays.fetch_add(1, Ordering::Relaxed);
            return Ok(SignBlockResponse {
                request_id: req.request_id,
                block_num,
                digest,
                signature,
            });
        }
        // One height, one slot, one key: another key of this producer that signed here or
        // later (the key before a switch, or after one) stops this key from signing it.
        for other in self.all_producer_keys(producer) {
            if other == *key {
                continue;
            }
            let okey = GuardKey { chain_id: policy.chain_id, producer, key: other };
            let ostate = self.guard.load(&okey).map_err(guard_err)?;
            let Some(last) =
                ostate.watermark(self.outcome_for((producer, other), &ostate).as_ref())
            else {
                continue;
            };
            if last.block_num >= block_num || last.slot >= slot {
                return Err(Refusal::new(
                    ErrorCode::DoubleSign,
                    "other_key_signed",
                    format!(
                        "producer {producer}'s key {other} already signed block {} at slot {}; \
                         {key} may sign only above both, so block {block_num} at slot {} is \
                         refused: one height is never signed by two keys",
                        last.block_num, last.slot.0, slot.0
                    ),
                ));
            }
        }
        if self.is_paused() {
            return Err(Refusal::new(
                ErrorCode::Paused,
                "paused",
                format!(
                    "signing is paused by an administrator; block {block_num} was not signed. \
                     Ask the signer's administrators to resume it"
                ),
            ));
        }

        let block_ms = slot.to_time_point().millis();
        let now = now_ms();
        let skew = (block_ms - now).unsigned_abs();
        let max = u64::try_from(policy.max_clock_skew.as_millis()).unwrap_or(u64::MAX);
        // A past block that the shared guard's record names exactly was claimed, inside its
        // signer's clock limit, and signed by a standby that then went silent: the producer
        // sends it here again, and it may be signed late. It exists signed already, and no
        // other block may take its height, so refusing it would only stall the producer.
        let claimed_late = skew > max
            && block_ms < now
            && self.shared_guard.get().is_some_and(|shared| {
                shared.names(&policy.chain_id, producer, block_num, slot, &digest).unwrap_or(false)
            });
        if claimed_late {
            tracing::warn!(
                %producer,
                block_num,
                skew_ms = skew,
                "signing late a block the shared guard's record names (a failover retry)"
            );
        } else if skew > max {
            return Err(Refusal::new(
                ErrorCode::ClockSkew,
                "clock_skew",
                format!(
                    "block {block_num} timestamp is {skew} ms from this signer's clock (limit \
                     {max} ms); check NTP on the producer and the signer"
                ),
            ));
        }

        // Standby signers: the block is claimed in the shared guard on the claim worker while
        // the intent is written and the HSM signs. Nothing is released (no audit line, no
        // answer) before the claim is granted; a refused claim leaves at most an intent that
        // is known never released, which stops no other block (see `Outcome::NotReleased`).
        // (A replay has returned above; an intent already on disk claims its own block again,
        // which is granted unless another signer has signed another block there since.)
        let claiming = self.shared_guard.get().map(|shared| {
            let (shared, metrics, chain_id, key) =
                (shared.clone(), self.metrics.clone(), policy.chain_id, *key);
            self.claim_worker.run(move || {
                let started = Instant::now();
                let claimed = shared.claim(&chain_id, producer, &key, block_num, slot, &digest);
                let took = started.elapsed();
                metrics.shared_guard_latency.observe(took);
                (claimed, took)
            })
        });

        // The intent goes to the guard worker, then this thread asks the HSM: the guard's
        // fsyncs run while the HSM signs, and nothing leaves until the intent is durable.
        let (audit_seq, audit_hash) = self.audit.position();
        let intent = Intent { block_num, slot, digest, audit_seq, audit_hash };
        // A temporary file still being prepared is not waited for (see `Guard::prepare`).
        if let Some(preparing) = self.lock_preparing().remove(&id) {
            preparing.abandon();
        }
        let writing = (decision == Decision::Sign).then(|| {
            let next = state.with_intent(outcome.as_ref(), intent.clone());
            let guard = self.guard.clone();
            self.guard_worker.run(move || {
                let started = Instant::now();
                (guard.write_state(&next), started.elapsed())
            })
        });
        // The intent the state on disk holds once `writing` succeeded (or already held).
        let intent = match (&writing, &state.intent) {
            (None, Some(held)) => held.clone(),
            _ => intent,
        };
        // From here to the release, every way out releases nothing: this intent is then known
        // never released, whether or not it reached the disk (what is known applies only to a
        // state that holds this very intent).
        timing.before_backend = started.elapsed();
        // Every refusal from here to the claim's answer releases nothing. A write the worker
        // had not started never happens: the state on disk, and what is known of the intent
        // it holds, stay as they were. Recording this intent would push that knowledge out of
        // `known` after two such failures in a row, and the intent on disk would then count as
        // possibly released. A write already started is finished before going on, and this
        // intent may be the one on disk.
        let not_released =
            |writing: Option<Ticket<_>>, refusal: Refusal| -> Result<SignBlockResponse, Refusal> {
                let may_be_on_disk = writing.is_none_or(|ticket| ticket.withdraw().is_some());
                if may_be_on_disk {
                    self.set_known(id, &intent, Outcome::NotReleased);
                }
                Err(refusal)
            };
        let signed = match self.keyring.sign(key, &digest) {
            Ok(signed) => signed,
            Err(e) => {
                // A claim in flight finishes on its thread; granted or not, it signs nothing.
                if let Some(ticket) = claiming {
                    ticket.abandon();
                }
                let refusal = Refusal::new(ErrorCode::Backend, e.reason(), e.to_string());
                return not_released(writing, refusal);
            }
        };
        timing.backend = signed.backend_time;
        timing.backend_calls = signed.attempts;
        if let Some(ticket) = claiming {
            let waiting = Instant::now();
            let answer = ticket.wait();
            timing.claim_wait = waiting.elapsed();
            let refusal = match answer {
                Ok((Ok(()), took)) => {
                    timing.claim = took;
                    None
                }
                Ok((Err(e), took)) => {
                    timing.claim = took;
                    let code = match e {
                        crate::shared_guard::ClaimError::DoubleSign { .. } => ErrorCode::DoubleSign,
                        crate::shared_guard::ClaimError::Unavailable { .. } => ErrorCode::Internal,
                    };
                    Some(Refusal::new(code, e.reason(), e.to_string()))
                }
                Err(gone) => Some(Refusal::new(
                    ErrorCode::Internal,
                    "shared_guard_unavailable",
                    gone.to_string(),
                )),
            };
            if let Some(refusal) = refusal {
                return not_released(writing, refusal);
            }
        }

        let started = Instant::now();
        let event = signature_event(req, &digest, &signed.signature, signed.attempts, peer);
        let (audited, took) = self.audit_timed(&event);
        timing.audit += took;
        let written = match writing.map(Ticket::wait) {
            None => Ok(()),
            Some(Ok((written, took))) => {
                timing.guard_commit = took;
                self.metrics.guard_latency.observe(took);
                if written.is_ok() {
                    // The next intent's temporary file, made while this signature travels.
                    let (guard, gkey) = (self.guard.clone(), gkey.clone());
                    let ticket = self.prepare_worker.run(move || guard.prepare(&gkey));
                    self.lock_preparing().insert(id, ticket);
                }
                written.map_err(guard_err)
            }
            Some(Err(gone)) => Err(Refusal::new(ErrorCode::Internal, "guard_io", gone.to_string())),
        };
        timing.durable = started.elapsed();
        if let Err(mut refusal) = written {
            // The state on disk may hold the old intent or this one; this one never left. (After
            // a restart its audit line counts it as released: the safe side.)
            self.set_known(id, &intent, Outcome::NotReleased);
            if audited.is_ok() {
                refusal.message.push_str(
                    "; the signature in the audit line just before this refusal was NOT released \
                     (the guard state could not be made durable)",
                );
            }
            return Err(refusal);
        }
        if let Err(e) = audited {
            self.set_known(id, &intent, Outcome::NotReleased);
            return Err(audit_refusal(e));
        }
        self.set_known(id, &intent, Outcome::Released(signed.signature));
        self.metrics.signatures.fetch_add(1, Ordering::Relaxed);
        Ok(SignBlockResponse {
            request_id: req.request_id,
            block_num,
            digest,
            signature: signed.signature,
        })
    }

    /// What is known of the outcome of `state`'s intent for key `id`.
    fn outcome_for(&self, id: (Name, PublicKey), state: &GuardState) -> Option<Outcome> {
        Known::outcome_for(self.known.lock().unwrap_or_else(|e| e.into_inner()).get(&id), state)
    }

    fn lock_preparing(&self) -> std::sync::MutexGuard<'_, HashMap<(Name, PublicKey), Preparing>> {
        self.preparing.lock().unwrap_or_else(|e| e.into_inner())
    }

    fn set_known(&self, id: (Name, PublicKey), intent: &Intent, outcome: Outcome) {
        let new = Known::of(intent, outcome);
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let entry = known.entry(id).or_default();
        if entry[0].is_some_and(|k| k.block != new.block) {
            entry[1] = entry[0];
        }
        entry[0] = Some(new);
    }
}

/// The audit line of a released signature: a replay of a stored one when `attempts` is 0.
fn signature_event(
    req: &SignBlockRequest,
    digest: &Checksum256,
    signature: &rempart_core::key::Signature,
    attempts: u32,
    peer: &str,
) -> AuditEvent {
    AuditEvent::Signature {
        chain_id: req.chain_id.to_string(),
        producer: req.header.producer.to_string(),
        key: req.signing_key.to_string(),
        block_num: req.header.block_num(),
        slot: req.header.timestamp.0,
        digest: digest.to_string(),
        signature: signature.to_string(),
        replay: attempts == 0,
        attempts,
        peer: peer.to_string(),
    }
}

/// Time limits of one connection.
#[derive(Debug, Clone, Copy)]
pub struct ConnectionLimits {
    /// From a request's first byte until it is read whole (and, on a current-thread runtime,
    /// until its reply: see `run_handler`).
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
                let block_num = match &request {
                    Request::SignBlock(r) => Some(r.header.block_num()),
                    _ => None,
                };
                let mut timing = None;
                let frame = match run_handler(&signer, request, &peer, handle_deadline).await {
                    Handled::Answered(resp, t) => {
                        timing = Some((t, !matches!(resp, Response::Error(_))));
                        encode_frame(&resp).unwrap_or_else(|e| {
                            error_frame(
                                id,
                                ErrorCode::Internal,
                                format!("cannot encode reply: {e}"),
                            )
                        })
                    }
                    Handled::Failed(why) => {
                        tracing::error!(error = %why, "request handler failed");
                        error_frame(id, ErrorCode::Internal, "request handler failed".into())
                    }
                    Handled::TimedOut => error_frame(
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
                if let (Some(block_num), Some((t, ok))) = (block_num, timing) {
                    // After the reply is written: logging never delays a signature.
                    tracing::debug!(
                        target: TIMING_TARGET,
                        request_id = id,
                        block_num,
                        ok,
                        total_us = micros(t.total),
                        before_backend_us = micros(t.before_backend),
                        backend_us = micros(t.backend),
                        backend_calls = t.backend_calls,
                        guard_commit_us = micros(t.guard_commit),
                        audit_us = micros(t.audit),
                        durable_us = micros(t.durable),
                        claim_us = micros(t.claim),
                        claim_wait_us = micros(t.claim_wait),
                        "sign_block timing"
                    );
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
        let read = tokio::time::timeout_at(wait_until, stream.read(&mut buf));
        let n = match tokio::select! {
            r = read => r,
            () = signer.stopped(), if decoder.is_idle() => return,
        } {
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

/// How the handler of one request ended.
#[expect(
    clippy::large_enum_variant,
    reason = "a handler's result, moved once from the handler to its connection and never stored"
)]
enum Handled {
    /// Its answer, and where its time went.
    Answered(Response, RequestTiming),
    /// It panicked: a bug, answered with an internal error; the daemon keeps serving.
    Failed(String),
    /// Still running at the deadline (current-thread runtimes only, see [`run_handler`]).
    TimedOut,
}

/// Runs the blocking handler for one request. On a multi-thread runtime (the daemon's) it runs
/// on this task's own thread (`block_in_place`): a handoff to a blocking-pool thread and back
/// cost 0.1–0.2 ms per signature on the benchmark VM, more than a SoftHSM2 R1 signature. The
/// runtime hands this worker's other tasks to another thread meanwhile, so a slow HSM delays
/// this connection only, and a request that overruns its deadline inside the signer is
/// answered late with its real answer. On a current-thread runtime (where `block_in_place` is
/// not allowed) it goes to the blocking pool, and a handler still running at the deadline is
/// answered `Busy` (it still finishes). Either way a panicking handler is answered, not fatal
/// to the connection.
async fn run_handler(
    signer: &Arc<Signer>,
    request: Request,
    peer: &str,
    deadline: tokio::time::Instant,
) -> Handled {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        let handled = tokio::task::block_in_place(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                signer.handle_timed(request, peer)
            }))
        });
        return match handled {
            Ok((resp, timing)) => Handled::Answered(resp, timing),
            Err(_) => Handled::Failed("the handler panicked".into()),
        };
    }
    let (s, p) = (signer.clone(), peer.to_owned());
    let task = tokio::task::spawn_blocking(move || s.handle_timed(request, &p));
    match tokio::time::timeout_at(deadline, task).await {
        Ok(Ok((resp, timing))) => Handled::Answered(resp, timing),
        Ok(Err(join)) => Handled::Failed(join.to_string()),
        Err(_) => Handled::TimedOut,
    }
}

fn micros(d: Duration) -> u64 {
    u64::try_from(d.as_micros()).unwrap_or(u64::MAX)
}

/// Who may connect.
#[derive(Debug, Clone, Default)]
pub struct PeerRules {
    /// Unix socket peer uids allowed.
    pub allowed_uids: std::collections::BTreeSet<u32>,
    /// TCP peer addresses allowed.
    pub tcp_allowed_peers: std::collections::BTreeSet<IpAddr>,
}

/// What the accept loop does with one accepted connection.
enum Admission<S> {
    /// Serve it; the string names the peer in logs and the audit log.
    Admit(S, String),
    /// Close it: `reason` is the metrics label, `peer` what is known of the peer.
    Refuse { reason: &'static str, peer: String },
}

/// A bound listener the accept loop serves: accepts one connection and decides whether the
/// peer may use it. An `Err` is a failure of `accept` itself, which the loop backs off from.
trait Listener: Send + 'static {
    /// The connection type.
    type Stream: AsyncRead + AsyncWrite + Unpin + Send + 'static;
    /// `unix` or `tcp`, for logs.
    const KIND: &'static str;
    fn accept_peer(
        &self,
        rules: &PeerRules,
    ) -> impl Future<Output = std::io::Result<Admission<Self::Stream>>> + Send;
}

impl Listener for tokio::net::UnixListener {
    type Stream = tokio::net::UnixStream;
    const KIND: &'static str = "unix";

    async fn accept_peer(&self, rules: &PeerRules) -> std::io::Result<Admission<Self::Stream>> {
        let (stream, _) = self.accept().await?;
        let uid = match stream.peer_cred() {
            Ok(c) => c.uid(),
            Err(e) => return Ok(Admission::Refuse { reason: "peer_cred", peer: e.to_string() }),
        };
        if !rules.allowed_uids.contains(&uid) {
            return Ok(Admission::Refuse { reason: "peer_uid", peer: format!("uid={uid}") });
        }
        Ok(Admission::Admit(stream, format!("unix:uid={uid}")))
    }
}

impl Listener for tokio::net::TcpListener {
    type Stream = tokio::net::TcpStream;
    const KIND: &'static str = "tcp";

    async fn accept_peer(&self, rules: &PeerRules) -> std::io::Result<Admission<Self::Stream>> {
        let (stream, addr) = self.accept().await?;
        if !rules.tcp_allowed_peers.contains(&addr.ip()) {
            return Ok(Admission::Refuse { reason: "peer_address", peer: addr.to_string() });
        }
        let _ = stream.set_nodelay(true);
        Ok(Admission::Admit(stream, format!("tcp:{addr}")))
    }
}

/// What a listener speaks.
#[derive(Debug, Clone)]
pub enum Protocol {
    /// The framed signer protocol (`SignBlock`, `PublicKeys`, `Status`, `Admin`).
    Frames(Arc<Signer>),
    /// The keosd-compatible `sign_digest` endpoint (`crate::keosd`).
    Keosd(Arc<crate::keosd::Service>),
}

impl Protocol {
    fn signer(&self) -> &Arc<Signer> {
        match self {
            Protocol::Frames(s) => s,
            Protocol::Keosd(k) => k.signer(),
        }
    }

    /// Serves one admitted connection.
    fn serve<S>(
        &self,
        stream: S,
        peer: String,
        limits: ConnectionLimits,
    ) -> std::pin::Pin<Box<dyn Future<Output = ()> + Send>>
    where
        S: AsyncRead + AsyncWrite + Unpin + Send + 'static,
    {
        match self {
            Protocol::Frames(s) => Box::pin(serve_connection(stream, s.clone(), peer, limits)),
            Protocol::Keosd(k) => {
                Box::pin(crate::keosd::serve_connection(stream, k.clone(), peer, limits))
            }
        }
    }
}

/// The accept loop of every listener. Returns only when the connection slots are closed; the
/// daemon stops it by aborting its task at shutdown.
async fn serve_listener<L: Listener>(
    listener: L,
    protocol: Protocol,
    rules: Arc<PeerRules>,
    slots: Arc<Semaphore>,
    limits: ConnectionLimits,
) {
    let signer = protocol.signer().clone();
    let mut backoff = AcceptBackoff::new();
    loop {
        let Ok(permit) = slots.clone().acquire_owned().await else { return };
        let admission = match listener.accept_peer(&rules).await {
            Ok(a) => a,
            Err(e) => {
                let (wait, log) = backoff.failed();
                if log {
                    tracing::warn!(
                        error = %e,
                        "{} accept failed; retrying with a growing pause (up to {:?}), further \
                         failures of this burst are not logged",
                        L::KIND,
                        AcceptBackoff::MAX
                    );
                }
                drop(permit);
                tokio::time::sleep(wait).await;
                continue;
            }
        };
        let failures = backoff.succeeded();
        if failures > 0 {
            tracing::info!("{} accept works again after {failures} failure(s)", L::KIND);
        }
        match admission {
            Admission::Refuse { reason, peer } => {
                signer.metrics.refused(reason);
                tracing::warn!(peer, reason, "{} peer not allowed; closing", L::KIND);
            }
            Admission::Admit(stream, peer) => {
                signer.metrics.connections.fetch_add(1, Ordering::Relaxed);
                let served = protocol.serve(stream, peer, limits);
                tokio::spawn(async move {
                    served.await;
                    drop(permit);
                });
            }
        }
    }
}

/// Accepts Unix connections from the allowed uids (SO_PEERCRED), at most as many at once as
/// `slots` has permits, and serves `protocol` on them. Runs until its task is aborted
/// (`Daemon::serve` does at shutdown).
pub async fn serve_unix(
    listener: tokio::net::UnixListener,
    protocol: Protocol,
    rules: Arc<PeerRules>,
    slots: Arc<Semaphore>,
    limits: ConnectionLimits,
) {
    serve_listener(listener, protocol, rules, slots, limits).await;
}

/// Accepts TCP connections from the allowed peer addresses, at most as many at once as
/// `slots` has permits, and serves `protocol` on them. Runs until its task is aborted
/// (`Daemon::serve` does at shutdown).
pub async fn serve_tcp(
    listener: tokio::net::TcpListener,
    protocol: Protocol,
    rules: Arc<PeerRules>,
    slots: Arc<Semaphore>,
    limits: ConnectionLimits,
) {
    serve_listener(listener, protocol, rules, slots, limits).await;
}
