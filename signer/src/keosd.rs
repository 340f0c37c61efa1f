//! The keosd `sign_digest` endpoint, for a stock nodeos (`[keosd_compat]`, off by default).
//!
//! nodeos signs its blocks through `signature-provider = KEY=KEOSD:<url>`: it POSTs
//! `["<digest hex>", "<public key>"]` to `<url>` (for example
//! `http://10.98.0.1:8900/v1/wallet/sign_digest`, or `unix:///run/rempart/keosd.sock/v1/wallet/sign_digest`)
//! and reads back a JSON string, the signature. This module answers that, so a producer still
//! running nodeos gets the signer's HSM keys, canonical K1 signatures, audit log, sandbox and
//! private listeners without changing its node.
//!
//! What it cannot do is the double-sign guard: a bare digest says nothing of the block's height
//! or slot. So the endpoint is refused unless the policy says `dangerous_bare_digests = true`,
//! serves only the keys listed, and keeps what it can:
//! - the same digest again (a retry) gets the same signature, from the last 16 of each key;
//! - two different digests for one key are at least `min_interval_ms` apart (a producer signs
//!   one block per 500 ms slot), so a compromised node cannot have many forks signed at once;
//! - every signature and refusal is audited with the peer, and counted; a pause by the
//!   administrators stops it like it stops `SignBlock`.
//!
//! HTTP/1.1 only as far as nodeos needs it: keep-alive, `Content-Length` bodies of at most
//! 4 KiB (no chunked uploads), one request at a time, the `[limits]` request and idle timeouts.

use std::collections::{BTreeSet, HashMap, VecDeque};
use std::sync::{Arc, Mutex};
use std::time::{Duration, Instant};

use rempart_core::checksum::Checksum256;
use rempart_core::key::{PublicKey, Signature};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use crate::audit::{AuditError, AuditEvent};
use crate::policy::KeosdCompat;
use crate::server::{ConnectionLimits, Signer};

/// Why a digest is refused while the signer stops.
const STOPPING: &str = "the signer is stopping; the digest was not signed. Send it to another \
                        signer, or again once this one has restarted";

#[cfg(test)]
mod tests;

/// The path nodeos posts to.
pub const PATH: &str = "/v1/wallet/sign_digest";
/// Largest request head.
const MAX_HEAD: usize = 8 * 1024;
/// Largest request body (the array is about 130 bytes).
const MAX_BODY: usize = 4 * 1024;
/// Signatures remembered per key for retries.
const REMEMBERED: usize = 16;

/// An answer: the HTTP status and the JSON body.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Answer {
    /// HTTP status.
    pub status: u16,
    /// JSON body.
    pub body: String,
}

impl Answer {
    fn signature(sig: &Signature) -> Answer {
        Answer { status: 200, body: serde_json::Value::String(sig.to_string()).to_string() }
    }

    /// keosd's error shape: `{"code", "message", "error": {"code", "name", "what", "details"}}`.
    fn error(status: u16, name: &str, what: &str, detail: &str) -> Answer {
        let message = status_text(status);
        let body = serde_json::json!({
            "code": status,
            "message": message,
            "error": {
                "code": 0,
                "name": name,
                "what": what,
                "details": [{ "message": detail, "file": "", "line_number": 0, "method": "" }],
            },
        });
        Answer { status, body: body.to_string() }
    }
}

/// What each key signed lately.
#[derive(Debug, Default)]
struct Recent {
    /// When the last digest not seen before was signed.
    last_new: Option<Instant>,
    /// The last digests signed, newest last.
    signed: VecDeque<(Checksum256, Signature)>,
}

/// The endpoint: the signer, the policy's keys and interval, and what each key signed lately.
#[derive(Debug)]
pub struct Service {
    signer: Arc<Signer>,
    keys: BTreeSet<PublicKey>,
    min_interval: Duration,
    recent: Mutex<HashMap<PublicKey, Recent>>,
}

impl Service {
    /// The endpoint of `signer` under `config`.
    pub fn new(signer: Arc<Signer>, config: &KeosdCompat) -> Service {
        Service {
            signer,
            keys: config.keys.clone(),
            min_interval: config.min_interval,
            recent: Mutex::default(),
        }
    }

    /// The signer behind it.
    pub fn signer(&self) -> &Arc<Signer> {
        &self.signer
    }

    /// Answers one request body of `POST /v1/wallet/sign_digest` from `peer`. Blocks on the key
    /// backend and the audit log.
    pub fn sign_digest(&self, body: &[u8], peer: &str) -> Answer {
        let parsed = serde_json::from_slice::<(String, String)>(body)
            .map_err(|e| format!("the body must be [\"<digest hex>\", \"<public key>\"]: {e}"))
            .and_then(|(digest, key)| {
                let digest: Checksum256 = digest
                    .parse()
                    .map_err(|e| format!("digest {digest:?} is not 32 bytes of hex: {e}"))?;
                let key: PublicKey =
                    key.parse().map_err(|e| format!("{key:?} is not a public key: {e}"))?;
                Ok((digest, key))
            });
        let (digest, key) = match parsed {
            Ok(p) => p,
            Err(detail) => {
                return self.refuse(400, "bad_request", &detail, peer, None);
            }
        };
        if !self.keys.contains(&key) {
            let detail = format!(
                "{key} does not sign bare digests here ([keosd_compat] keys); the signer's other \
                 keys sign blocks only through SignBlock, which the double-sign guard checks"
            );
            return self.refuse(403, "keosd_key_not_enabled", &detail, peer, Some(&digest));
        }
        if self.signer.is_paused() {
            let detail = "signing is paused by an administrator; ask them to resume it";
            return self.refuse(403, "paused", detail, peer, Some(&digest));
        }
        // Counted until answered, so that a stop waits for this signature's audit line.
        let Some(_flight) = self.signer.enter() else {
            return self.refuse(503, "stopping", STOPPING, peer, Some(&digest));
        };
        // One digest at a time per endpoint: the interval check and the record of what was
        // signed must see each other's effects. A producer signs one block at a time anyway.
        let mut recent = self.recent.lock().unwrap_or_else(|e| e.into_inner());
        let mine = recent.entry(key).or_default();
        if let Some((_, sig)) = mine.signed.iter().find(|(d, _)| *d == digest) {
            let sig = *sig;
            drop(recent);
            return match self.audit_signature(&key, &digest, &sig, 0, peer) {
                Ok(()) => Answer::signature(&sig),
                Err(e) => self.refuse_unaudited(&e, peer, &digest),
            };
        }
        if let Some(last) = mine.last_new
            && last.elapsed() < self.min_interval
        {
            let detail = format!(
                "{key} signed another digest {} ms ago; [keosd_compat] min_interval_ms is {}: a \
                 producer signs one block per slot",
                last.elapsed().as_millis(),
                self.min_interval.as_millis()
            );
            drop(recent);
            return self.refuse(403, "keosd_too_soon", &detail, peer, Some(&digest));
        }
        let signed = match self.signer.keyring().sign(&key, &digest) {
            Ok(s) => s,
            Err(e) => {
                drop(recent);
                return self.refuse(500, e.reason(), &e.to_string(), peer, Some(&digest));
            }
        };
        // Audited before it leaves: an audit failure releases nothing.
        if let Err(e) =
            self.audit_signature(&key, &digest, &signed.signature, signed.attempts, peer)
        {
            drop(recent);
            return self.refuse_unaudited(&e, peer, &digest);
        }
        mine.last_new = Some(Instant::now());
        if mine.signed.len() == REMEMBERED {
            mine.signed.pop_front();
        }
        mine.signed.push_back((digest, signed.signature));
        drop(recent);
        let metrics = self.signer.metrics();
        metrics.digest_signatures.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        metrics.hsm_latency.observe(signed.backend_time);
        Answer::signature(&signed.signature)
    }

    fn audit_signature(
        &self,
        key: &PublicKey,
        digest: &Checksum256,
        sig: &Signature,
        attempts: u32,
        peer: &str,
    ) -> Result<(), AuditError> {
        self.signer.audit(&AuditEvent::DigestSignature {
            key: key.to_string(),
            digest: digest.to_string(),
            signature: sig.to_string(),
            replay: attempts == 0,
            attempts,
            peer: peer.to_owned(),
        })
    }

    /// The refusal of a signature whose audit line failed: it is not released.
    fn refuse_unaudited(&self, e: &AuditError, peer: &str, digest: &Checksum256) -> Answer {
        match e {
            AuditError::Closed => self.refuse(503, "stopping", STOPPING, peer, Some(digest)),
            e => self.refuse(500, "audit", &e.to_string(), peer, Some(digest)),
        }
    }

    fn refuse(
        &self,
        status: u16,
        reason: &'static str,
        detail: &str,
        peer: &str,
        digest: Option<&Checksum256>,
    ) -> Answer {
        self.signer.metrics().refused(reason);
        tracing::warn!(peer, reason, "keosd sign_digest refused: {detail}");
        let event = AuditEvent::Refusal {
            reason: reason.to_owned(),
            message: detail.to_owned(),
            peer: peer.to_owned(),
            producer: None,
            block_num: None,
            digest: digest.map(ToString::to_string),
        };
        match self.signer.audit(&event) {
            Ok(()) => {}
            Err(AuditError::Closed) => tracing::info!("refusal not audited: the log is closed"),
            Err(e) => tracing::error!(error = %e, "cannot audit a refusal"),
        }
        Answer::error(status, reason, "refused", detail)
    }
}

/// One parsed request head.
#[derive(Debug, PartialEq, Eq)]
struct Head {
    method: String,
    path: String,
    content_length: Option<usize>,
    close: bool,
    head_len: usize,
}

/// Parses a request head from the front of `buf`: `Ok(None)` when incomplete.
fn parse_head(buf: &[u8]) -> Result<Option<Head>, Answer> {
    let mut headers = [httparse::EMPTY_HEADER; 32];
    let mut req = httparse::Request::new(&mut headers);
    let head_len = match req.parse(buf) {
        Ok(httparse::Status::Complete(n)) => n,
        Ok(httparse::Status::Partial) if buf.len() > MAX_HEAD => {
            return Err(Answer::error(
                413,
                "head_too_large",
                "bad request",
                "request head over 8 KiB",
            ));
        }
        Ok(httparse::Status::Partial) => return Ok(None),
        Err(e) => {
            return Err(Answer::error(
                400,
                "bad_request",
                "bad request",
                &format!("malformed HTTP: {e}"),
            ));
        }
    };
    if head_len > MAX_HEAD {
        return Err(Answer::error(413, "head_too_large", "bad request", "request head over 8 KiB"));
    }
    let mut content_length = None;
    let mut close = req.version == Some(0);
    for h in req.headers.iter() {
        let value = std::str::from_utf8(h.value).unwrap_or("").trim();
        if h.name.eq_ignore_ascii_case("content-length") {
            let n = value.parse::<usize>().map_err(|_| {
                Answer::error(400, "bad_request", "bad request", "Content-Length is not a number")
            })?;
            if content_length.is_some_and(|m| m != n) {
                return Err(Answer::error(
                    400,
                    "bad_request",
                    "bad request",
                    "two Content-Lengths",
                ));
            }
            content_length = Some(n);
        } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
            return Err(Answer::error(
                411,
                "length_required",
                "bad request",
                "chunked bodies are not accepted; send Content-Length",
            ));
        } else if h.name.eq_ignore_ascii_case("connection") {
            if value.eq_ignore_ascii_case("close") {
                close = true;
            } else if value.eq_ignore_ascii_case("keep-alive") {
                close = false;
            }
        }
    }
    Ok(Some(Head {
        method: req.method.unwrap_or("").to_owned(),
        path: req.path.unwrap_or("").to_owned(),
        content_length,
        close,
        head_len,
    }))
}

/// The reason phrase of the statuses this endpoint answers.
fn status_text(status: u16) -> &'static str {
    match status {
        200 => "OK",
        400 => "Bad Request",
        403 => "Forbidden",
        404 => "Not Found",
        405 => "Method Not Allowed",
        408 => "Request Timeout",
        411 => "Length Required",
        413 => "Payload Too Large",
        _ => "Internal Server Error",
    }
}

fn write_answer(out: &mut Vec<u8>, answer: &Answer, close: bool) {
    let reason = status_text(answer.status);
    out.extend_from_slice(
        format!(
            "HTTP/1.1 {} {reason}\r\nContent-Type: application/json\r\nContent-Length: {}\r\n\
             Connection: {}\r\n\r\n",
            answer.status,
            answer.body.len(),
            if close { "close" } else { "keep-alive" }
        )
        .as_bytes(),
    );
    out.extend_from_slice(answer.body.as_bytes());
}

/// Serves one connection: requests one at a time until the peer closes, asks to, sends
/// something malformed, or stays idle past the idle timeout.
pub async fn serve_connection<S>(
    mut stream: S,
    service: Arc<Service>,
    peer: String,
    limits: ConnectionLimits,
) where
    S: AsyncRead + AsyncWrite + Unpin,
{
    let mut buf: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 4096];
    loop {
        // The head: the idle timeout until its first byte, the request timeout from there.
        let mut deadline =
            (!buf.is_empty()).then(|| tokio::time::Instant::now() + limits.request_timeout);
        let head = loop {
            match parse_head(&buf) {
                Ok(Some(h)) => break Ok(h),
                Ok(None) => {}
                Err(a) => break Err(a),
            }
            let wait = deadline.map_or(limits.idle_timeout, |d| {
                d.saturating_duration_since(tokio::time::Instant::now())
            });
            let read = tokio::time::timeout(wait, stream.read(&mut chunk));
            let between_requests = buf.is_empty();
            match tokio::select! {
                r = read => r,
                () = service.signer.stopped(), if between_requests => return,
            } {
                Ok(Ok(0)) | Ok(Err(_)) => return,
                Ok(Ok(n)) => {
                    buf.extend_from_slice(&chunk[..n]);
                    deadline.get_or_insert_with(|| {
                        tokio::time::Instant::now() + limits.request_timeout
                    });
                }
                Err(_) if deadline.is_none() => return,
                Err(_) => {
                    let a = Answer::error(
                        408,
                        "timeout",
                        "bad request",
                        "request not received in time",
                    );
                    break Err(a);
                }
            }
        };
        let head = match head {
            Ok(h) => h,
            Err(answer) => {
                service.signer.metrics().refused("keosd_bad_http");
                let mut out = Vec::new();
                write_answer(&mut out, &answer, true);
                let _ = stream.write_all(&out).await;
                return;
            }
        };
        let answer_and_close = |answer: Answer| (answer, true);
        let (answer, close) = if head.method != "POST" {
            answer_and_close(Answer::error(405, "method_not_allowed", "bad request", "only POST"))
        } else if head.path != PATH {
            answer_and_close(Answer::error(
                404,
                "not_found",
                "unknown endpoint",
                &format!("only {PATH} is served"),
            ))
        } else {
            match head.content_length {
                None => answer_and_close(Answer::error(
                    411,
                    "length_required",
                    "bad request",
                    "send Content-Length",
                )),
                Some(n) if n > MAX_BODY => answer_and_close(Answer::error(
                    413,
                    "body_too_large",
                    "bad request",
                    "body over 4 KiB",
                )),
                Some(n) => {
                    let deadline = deadline
                        .unwrap_or_else(|| tokio::time::Instant::now() + limits.request_timeout);
                    while buf.len() < head.head_len + n {
                        let wait = deadline.saturating_duration_since(tokio::time::Instant::now());
                        match tokio::time::timeout(wait, stream.read(&mut chunk)).await {
                            Ok(Ok(0)) | Ok(Err(_)) => return,
                            Ok(Ok(k)) => buf.extend_from_slice(&chunk[..k]),
                            Err(_) => {
                                let mut out = Vec::new();
                                let a = Answer::error(
                                    408,
                                    "timeout",
                                    "bad request",
                                    "body not received in time",
                                );
                                write_answer(&mut out, &a, true);
                                let _ = stream.write_all(&out).await;
                                return;
                            }
                        }
                    }
                    let body = buf[head.head_len..head.head_len + n].to_vec();
                    buf.drain(..head.head_len + n);
                    let answer = run(&service, body, &peer).await;
                    (answer, head.close)
                }
            }
        };
        let mut out = Vec::new();
        write_answer(&mut out, &answer, close);
        if stream.write_all(&out).await.is_err() || close {
            return;
        }
    }
}

/// Runs the blocking signing on this task's own thread (multi-thread runtime) or on the
/// blocking pool, as the framed protocol's handler does.
async fn run(service: &Arc<Service>, body: Vec<u8>, peer: &str) -> Answer {
    use tokio::runtime::{Handle, RuntimeFlavor};
    if Handle::current().runtime_flavor() == RuntimeFlavor::MultiThread {
        let answered = tokio::task::block_in_place(|| {
            std::panic::catch_unwind(std::panic::AssertUnwindSafe(|| {
                service.sign_digest(&body, peer)
            }))
        });
        return answered.unwrap_or_else(|_| {
            Answer::error(500, "internal", "internal error", "the handler panicked")
        });
    }
    let (s, p) = (service.clone(), peer.to_owned());
    match tokio::task::spawn_blocking(move || s.sign_digest(&body, &p)).await {
        Ok(a) => a,
        Err(e) => Answer::error(500, "internal", "internal error", &e.to_string()),
    }
}
