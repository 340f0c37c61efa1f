//! The double-sign guard shared by standby signers through etcd (`[shared_guard]`).
//!
//! A producer that keeps a standby signer (a second machine, a second HSM holding the same
//! key) must never get two different blocks signed at one height or slot, one by each signer:
//! each signer's own guard state knows only what that signer signed. With `[shared_guard]`,
//! every signer also claims each block in etcd before signing it. One record per chain and
//! producer holds the last block claimed (number, slot, digest, key, signer), and a claim is a
//! compare-and-swap transaction on that record's revision:
//! - a block above the record in both number and slot is claimed;
//! - the very block the record names (same number, slot and digest) is granted again (a retry,
//!   or the standby finishing what the other signer started);
//! - anything else is refused, whoever asks: one height, one block.
//!
//! A claim is made once the signer's own guard allows the block, on a thread of its own while
//! the intent is written and the HSM signs, so that its round trip costs no time of its own
//! unless it is the slowest of the three. Nothing is released before it is granted: no audit
//! line, no answer. A refused claim thus leaves at most an intent known never released, which
//! stops no other block, here or after a restart (the audit log has no signature for it). A
//! claim that lost a race reads the record that won and decides again.
//!
//! The connection to etcd (its JSON gateway, HTTP/1.1) is opened before the sandbox, which
//! forbids new sockets, and kept alive by a ping every `PING_EVERY`. When it breaks, signing
//! fails closed (`shared_guard_unavailable`), and the daemon stops with exit code 75
//! (EX_TEMPFAIL) so that its supervisor starts it again on a fresh connection.

use std::collections::HashMap;
use std::io::{Read, Write};
use std::net::{SocketAddr, TcpStream};
use std::sync::Mutex;
use std::sync::atomic::{AtomicBool, Ordering};
use std::time::Duration;

use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as B64;
use rempart_core::checksum::Checksum256;
use rempart_core::key::PublicKey;
use rempart_core::{BlockTimestamp, Name};
use serde::{Deserialize, Serialize};

#[cfg(test)]
mod tests;

/// How often an idle connection is used, so that neither etcd nor a middlebox closes it.
pub const PING_EVERY: Duration = Duration::from_secs(30);
/// Largest answer read from etcd.
const MAX_ANSWER: usize = 1 << 20;
/// Claims tried in a row when other signers keep winning the race.
const MAX_ROUNDS: usize = 8;

/// `[shared_guard]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct SharedGuardConfig {
    /// etcd's client address (its JSON gateway), an IP address and port.
    pub etcd: SocketAddr,
    /// Prefix of the records' keys; the same on every signer of one producer.
    pub prefix: String,
    /// This signer's name in the records (which signer claimed a block).
    pub name: String,
    /// Deadline of one exchange with etcd.
    pub timeout: Duration,
}

/// The record of one chain and producer: the last block claimed.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Record {
    /// Block number.
    pub block_num: u32,
    /// Block slot.
    pub slot: u32,
    /// The digest signed.
    pub digest: String,
    /// The key that signs it.
    pub key: String,
    /// The signer that claimed it.
    pub signer: String,
}

/// Why a claim was not granted.
#[derive(Debug, thiserror::Error)]
pub enum ClaimError {
    /// Another block holds this height or slot.
    #[error(
        "the shared guard's record for {producer} names block {} at slot {} (digest {}) claimed \
         by signer {:?}: block {block_num} at slot {slot} may not be signed, by this signer or any \
         other",
        record.block_num, record.slot, record.digest, record.signer
    )]
    DoubleSign {
        /// The producer.
        producer: Name,
        /// What the record holds.
        record: Record,
        /// The block asked for.
        block_num: u32,
        /// Its slot.
        slot: u32,
    },
    /// etcd cannot be asked: nothing is signed until it can.
    #[error(
        "the shared guard (etcd at {etcd}) cannot be asked: {why}; nothing is signed without it. \
         The signer stops so that its supervisor starts it again once etcd answers"
    )]
    Unavailable {
        /// etcd's address.
        etcd: SocketAddr,
        /// What went wrong.
        why: String,
    },
}

impl ClaimError {
    /// Stable reason label.
    pub fn reason(&self) -> &'static str {
        match self {
            ClaimError::DoubleSign { .. } => "shared_double_sign",
            ClaimError::Unavailable { .. } => "shared_guard_unavailable",
        }
    }
}

/// The connection to etcd, opened before the sandbox.
#[derive(Debug)]
struct Connection {
    stream: TcpStream,
    buf: Vec<u8>,
}

/// The shared guard of one signer.
#[derive(Debug)]
pub struct SharedGuard {
    config: SharedGuardConfig,
    /// `None` once broken: the sandbox allows no new one.
    conn: Mutex<Option<Connection>>,
    /// Per record key: its last known revision and content.
    known: Mutex<HashMap<String, Option<(i64, Record)>>>,
    lost: AtomicBool,
    lost_notify: tokio::sync::Notify,
}

#[derive(Deserialize)]
struct TxnAnswer {
    #[serde(default)]
    header: Header,
    #[serde(default)]
    succeeded: bool,
    #[serde(default)]
    responses: Vec<serde_json::Value>,
}

#[derive(Deserialize, Default)]
struct Header {
    #[serde(default)]
    revision: String,
}

#[derive(Deserialize)]
struct Kv {
    #[serde(default)]
    mod_revision: String,
    #[serde(default)]
    value: String,
}

impl SharedGuard {
    /// Connects to etcd and checks that it answers. Must run before the sandbox.
    pub fn connect(config: &SharedGuardConfig) -> Result<SharedGuard, ClaimError> {
        let unavailable = |why: String| ClaimError::Unavailable { etcd: config.etcd, why };
        let stream = TcpStream::connect_timeout(&config.etcd, config.timeout)
            .map_err(|e| unavailable(format!("cannot connect: {e}")))?;
        stream
            .set_read_timeout(Some(config.timeout))
            .and_then(|()| stream.set_write_timeout(Some(config.timeout)))
            .and_then(|()| stream.set_nodelay(true))
            .map_err(|e| unavailable(e.to_string()))?;
        let guard = SharedGuard {
            config: config.clone(),
            conn: Mutex::new(Some(Connection { stream, buf: Vec::new() })),
            known: Mutex::default(),
            lost: AtomicBool::new(false),
            lost_notify: tokio::sync::Notify::new(),
        };
        guard.ping()?;
        Ok(guard)
    }

    /// etcd's address.
    pub fn etcd(&self) -> SocketAddr {
        self.config.etcd
    }

    /// Resolves once the connection is lost (the daemon then stops, to be started again).
    pub async fn lost(&self) {
        loop {
            let notified = self.lost_notify.notified();
            if self.lost.load(Ordering::SeqCst) {
                return;
            }
            notified.await;
        }
    }

    /// Uses the connection (asks etcd's cluster status), so that it stays open and a broken one
    /// is found while idle rather than at the next block.
    pub fn ping(&self) -> Result<(), ClaimError> {
        self.post("/v3/maintenance/status", "{}").map(|_| ())
    }

    /// Claims block `block_num` at `slot` with `digest`, signed by `key`, for `producer` on
    /// `chain_id`. Blocks on etcd (bounded by the configured timeout per exchange).
    pub fn claim(
        &self,
        chain_id: &Checksum256,
        producer: Name,
        key: &PublicKey,
        block_num: u32,
        slot: BlockTimestamp,
        digest: &Checksum256,
    ) -> Result<(), ClaimError> {
        let record_key = format!("{}{chain_id}/{producer}", self.config.prefix);
        let wanted = Record {
            block_num,
            slot: slot.0,
            digest: digest.to_string(),
            key: key.to_string(),
            signer: self.config.name.clone(),
        };
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let mut current = known.get(&record_key).cloned().flatten();
        for _ in 0..MAX_ROUNDS {
            if let Some((_, record)) = &current
                && (record.block_num >= block_num || record.slot >= slot.0)
            {
                if record.block_num == block_num
                    && record.slot == slot.0
                    && record.digest == wanted.digest
                {
                    return Ok(());
                }
                return Err(ClaimError::DoubleSign {
                    producer,
                    record: record.clone(),
                    block_num,
                    slot: slot.0,
                });
            }
            let k = B64.encode(&record_key);
            let value = serde_json::to_string(&wanted).expect("a record serializes");
            let compare = match &current {
                Some((revision, _)) => serde_json::json!({
                    "key": k, "result": "EQUAL", "target": "MOD",
                    "mod_revision": revision.to_string(),
                }),
                None => serde_json::json!({
                    "key": k, "result": "EQUAL", "target": "VERSION", "version": "0",
                }),
            };
            let body = serde_json::json!({
                "compare": [compare],
                "success": [{ "request_put": { "key": k, "value": B64.encode(&value) } }],
                "failure": [{ "request_range": { "key": k } }],
            });
            let text = self.post("/v3/kv/txn", &body.to_string())?;
            let answer: TxnAnswer = serde_json::from_str(&text)
                .map_err(|e| self.unavailable(format!("etcd's answer is not a txn answer: {e}")))?;
            if answer.succeeded {
                let revision = answer.header.revision.parse().map_err(|_| {
                    self.unavailable(format!("no revision in etcd's answer: {text}"))
                })?;
                known.insert(record_key, Some((revision, wanted)));
                return Ok(());
            }
            // Another signer changed the record: read what won and decide again.
            current = self.record_of(&answer)?;
            known.insert(record_key.clone(), current.clone());
        }
        Err(self.unavailable(format!(
            "the record {record_key} changed {MAX_ROUNDS} times in a row while claiming"
        )))
    }

    /// Whether the record of `producer` on `chain_id` names exactly this block (read from
    /// etcd, so that another signer's claim counts). Nothing is claimed.
    pub fn names(
        &self,
        chain_id: &Checksum256,
        producer: Name,
        block_num: u32,
        slot: BlockTimestamp,
        digest: &Checksum256,
    ) -> Result<bool, ClaimError> {
        let record_key = format!("{}{chain_id}/{producer}", self.config.prefix);
        let k = B64.encode(&record_key);
        // A transaction with no comparison always succeeds: its range is the record now.
        let body = serde_json::json!({ "success": [{ "request_range": { "key": k } }] });
        let mut known = self.known.lock().unwrap_or_else(|e| e.into_inner());
        let text = self.post("/v3/kv/txn", &body.to_string())?;
        let answer: TxnAnswer = serde_json::from_str(&text)
            .map_err(|e| self.unavailable(format!("etcd's answer is not a txn answer: {e}")))?;
        let current = self.record_of(&answer)?;
        let named = current.as_ref().is_some_and(|(_, r)| {
            r.block_num == block_num && r.slot == slot.0 && r.digest == digest.to_string()
        });
        known.insert(record_key, current);
        Ok(named)
    }

    /// The record a failed transaction read back (`None`: there is none).
    fn record_of(&self, answer: &TxnAnswer) -> Result<Option<(i64, Record)>, ClaimError> {
        let kvs = answer
            .responses
            .first()
            .and_then(|r| r.get("response_range"))
            .and_then(|r| r.get("kvs"))
            .cloned()
            .unwrap_or(serde_json::Value::Array(Vec::new()));
        let kvs: Vec<Kv> = serde_json::from_value(kvs)
            .map_err(|e| self.unavailable(format!("etcd's range answer: {e}")))?;
        let Some(kv) = kvs.into_iter().next() else { return Ok(None) };
        let revision = kv
            .mod_revision
            .parse()
            .map_err(|_| self.unavailable("no mod_revision in etcd's range answer".into()))?;
        let bytes = B64
            .decode(&kv.value)
            .map_err(|e| self.unavailable(format!("the record is not base64: {e}")))?;
        let record: Record = serde_json::from_slice(&bytes).map_err(|e| {
            self.unavailable(format!(
                "the shared record is not a rempart-signer record ({e}); an operator must look \
                 at it (etcdctl get --prefix {}) before any signer signs for this producer",
                self.config.prefix
            ))
        })?;
        Ok(Some((revision, record)))
    }

    fn unavailable(&self, why: String) -> ClaimError {
        ClaimError::Unavailable { etcd: self.config.etcd, why }
    }

    /// One POST on the kept-alive connection: the answer's body. Any failure breaks the
    /// connection for good (see the module documentation).
    fn post(&self, path: &str, body: &str) -> Result<String, ClaimError> {
        let mut conn = self.conn.lock().unwrap_or_else(|e| e.into_inner());
        let Some(c) = conn.as_mut() else {
            return Err(self.unavailable("the connection was lost earlier".into()));
        };
        match exchange(c, &self.config.etcd, path, body) {
            Ok((200, text)) => Ok(text),
            // etcd answered (an error of its own, such as no leader): the connection still
            // works, so only this request is refused.
            Ok((status, text)) => Err(self.unavailable(format!("etcd answered {status}: {text}"))),
            Err(why) => {
                *conn = None;
                self.lost.store(true, Ordering::SeqCst);
                self.lost_notify.notify_waiters();
                Err(self.unavailable(why))
            }
        }
    }
}

/// Writes one request and reads its answer: the status and the `Content-Length` body. An
/// `Err` means the connection can no longer be trusted.
fn exchange(
    c: &mut Connection,
    etcd: &SocketAddr,
    path: &str,
    body: &str,
) -> Result<(u16, String), String> {
    let request = format!(
        "POST {path} HTTP/1.1\r\nHost: {etcd}\r\nContent-Type: application/json\r\n\
         Content-Length: {}\r\n\r\n{body}",
        body.len()
    );
    c.stream.write_all(request.as_bytes()).map_err(|e| format!("cannot write: {e}"))?;
    let mut chunk = [0u8; 8192];
    loop {
        let mut headers = [httparse::EMPTY_HEADER; 32];
        let mut resp = httparse::Response::new(&mut headers);
        match resp.parse(&c.buf) {
            Ok(httparse::Status::Complete(head)) => {
                let status = resp.code.unwrap_or(0);
                let mut length = None;
                for h in resp.headers.iter() {
                    if h.name.eq_ignore_ascii_case("content-length") {
                        length =
                            std::str::from_utf8(h.value).ok().and_then(|v| v.trim().parse().ok());
                    } else if h.name.eq_ignore_ascii_case("transfer-encoding") {
                        return Err("etcd answered with a chunked body".into());
                    }
                }
                let Some(length) = length.filter(|n: &usize| *n <= MAX_ANSWER) else {
                    return Err("etcd's answer has no usable Content-Length".into());
                };
                if c.buf.len() >= head + length {
                    let text = String::from_utf8_lossy(&c.buf[head..head + length]).into_owned();
                    c.buf.drain(..head + length);
                    return Ok((status, text));
                }
            }
            Ok(httparse::Status::Partial) if c.buf.len() > MAX_ANSWER => {
                return Err("etcd's answer head is too long".into());
            }
            Ok(httparse::Status::Partial) => {}
            Err(e) => return Err(format!("etcd's answer is not HTTP: {e}")),
        }
        let n = c.stream.read(&mut chunk).map_err(|e| format!("no answer: {e}"))?;
        if n == 0 {
            return Err("etcd closed the connection".into());
        }
        c.buf.extend_from_slice(&chunk[..n]);
    }
}
