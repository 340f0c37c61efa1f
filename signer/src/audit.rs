//! The audit log: one JSON line per event (start, stop, policy load, signature, refusal), each
//! carrying the sha256 of the previous line, so that removing, reordering or editing a line
//! breaks the chain at that point and `rempart-signer audit verify` names it.
//!
//! The log is append-only: this module opens it with `O_APPEND`, never rewrites a complete line,
//! and fsyncs every line before the caller goes on (a signature is audited before it is
//! released, so a signature missing from the log never left the signer: the guard relies on
//! this after a restart, see [`AuditLog::open_reading`]). It never records secrets: no PIN, no
//! private key, no raw request bytes.
//!
//! One crash leaves a mark it must survive: a line cut short. A kill -9 during the write can
//! stop it at a page boundary (the kernel checks for a fatal signal between pages), and a power
//! loss can keep part of an unsynced line. Such a last line without its newline was never
//! acknowledged (its append had not returned, so nothing it records was released). Opening the
//! log to append copies it, byte for byte, to a file beside the log, cuts it off, and records
//! that as the next line ([`AuditEvent::TornTail`]); `verify` still reports it as it stands.
//! Anything else that does not verify stops the daemon.

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Read as _, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::{Mutex, MutexGuard};
use std::time::{Duration, Instant, SystemTime, UNIX_EPOCH};

use serde::Serialize;
use sha2::{Digest, Sha256};

#[cfg(test)]
mod tests;

/// The `prev` of the first line.
pub const GENESIS_PREV: &str = "0000000000000000000000000000000000000000000000000000000000000000";

/// Longest line `verify` accepts (a line is a few hundred bytes).
const MAX_LINE: usize = 64 * 1024;

/// Why the audit log could not be written or does not verify.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AuditError {
    /// The log could not be opened, read, written or synced.
    #[error("audit log {path}: {source}")]
    Io {
        /// The log.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The hash chain is broken at `line`.
    #[error("audit log {path}: line {line} is broken: {reason}")]
    Broken {
        /// The log.
        path: PathBuf,
        /// 1-based number of the first bad line.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
    /// The log the daemon was about to append to does not verify.
    #[error(
        "audit log {path} does not verify at line {line} ({reason}); the signer will not append \
         to a broken log. Keep it as evidence (move it aside), investigate, then start again \
         with a new log"
    )]
    RefuseToAppend {
        /// The log.
        path: PathBuf,
        /// 1-based number of the first bad line.
        line: u64,
        /// What is wrong with it.
        reason: String,
    },
}

/// One audited event.
#[derive(Debug, Clone, Serialize)]
#[serde(tag = "event", rename_all = "snake_case")]
#[non_exhaustive]
pub enum AuditEvent {
    /// The daemon started serving.
    Start {
        /// Signer version.
        version: String,
        /// Process id.
        pid: u32,
        /// Key backend.
        backend: String,
        /// Public keys opened.
        keys: Vec<String>,
        /// The policy marks the chain as a development chain.
        dangerous_dev_chain: bool,
    },
    /// The daemon stopped.
    Stop {
        /// Why.
        reason: String,
    },
    /// A policy file was loaded.
    PolicyLoad {
        /// Its path.
        path: String,
        /// sha256 of its bytes.
        sha256: String,
        /// The chain id it names.
        chain_id: String,
    },
    /// A signature was released.
    Signature {
        /// Chain id.
        chain_id: String,
        /// Producer.
        producer: String,
        /// Key.
        key: String,
        /// Block number.
        block_num: u32,
        /// Block slot.
        slot: u32,
        /// Digest signed.
        digest: String,
        /// Signature released.
        signature: String,
        /// Returned from the guard state (a repeated request), not freshly signed.
        replay: bool,
        /// HSM calls it took (0 for a replay).
        attempts: u32,
        /// Who asked.
        peer: String,
    },
    /// A request was refused.
    Refusal {
        /// Stable reason label.
        reason: String,
        /// The full message sent back.
        message: String,
        /// Who asked.
        peer: String,
        /// Producer named in the request, if any.
        producer: Option<String>,
        /// Block number in the request, if any.
        block_num: Option<u32>,
        /// Digest computed, if any.
        digest: Option<String>,
    },
    /// The log ended with a line cut short by a crash (see the module documentation); it was
    /// moved aside before this line was written.
    TornTail {
        /// The number the cut line had (this line's `seq`).
        line: u64,
        /// Its length in bytes.
        bytes: u64,
        /// sha256 of its bytes.
        sha256: String,
        /// The file now holding them.
        saved_to: String,
    },
    /// An administrative command: `refused`, `approved` (verified, nonce recorded), `executed`
    /// or `failed`.
    Admin {
        /// Which step.
        step: String,
        /// The action (snake_case), when the command decoded.
        action: Option<String>,
        /// The command digest the approvals signed, when it decoded.
        digest: Option<String>,
        /// The command's nonce, when it decoded.
        nonce: Option<String>,
        /// The admin keys whose approvals verified.
        approvers: Vec<String>,
        /// What happened or why it was refused.
        message: String,
        /// Who sent it.
        peer: String,
    },
}

#[derive(Serialize)]
struct Line<'a> {
    seq: u64,
    time_ms: u64,
    #[serde(flatten)]
    event: &'a AuditEvent,
    prev: &'a str,
}

/// An open audit log, ready to append.
#[derive(Debug)]
pub struct AuditLog {
    path: PathBuf,
    file: File,
    prev: String,
    seq: u64,
    /// Bytes up to the end of the last acknowledged line.
    acked_bytes: u64,
    /// The last append failed: the file may hold bytes past `acked_bytes`.
    failed: bool,
}

impl AuditLog {
    /// Opens (or creates, mode 0600) the log; an existing log must verify first.
    pub fn open(path: &Path) -> Result<AuditLog, AuditError> {
        Self::open_reading(path, &mut |_| {})
    }

    /// Opens the log as [`AuditLog::open`] does, showing `read` every line of an existing log
    /// as it is verified (before it is known that the whole log verifies).
    pub fn open_reading(
        path: &Path,
        read: &mut dyn FnMut(&ReadLine<'_>),
    ) -> Result<AuditLog, AuditError> {
        let io = |source| AuditError::Io { path: path.to_path_buf(), source };
        let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
        let (prev, seq, torn) = match File::open(path) {
            Ok(f) => match scan(path, f, read) {
                Ok(s) => (s.last_hash, s.lines, s.torn_tail),
                Err(AuditError::Broken { path, line, reason }) => {
                    return Err(AuditError::RefuseToAppend { path, line, reason });
                }
                Err(e) => return Err(e),
            },
            Err(e) if e.kind() == ErrorKind::NotFound => (GENESIS_PREV.to_string(), 0, None),
            Err(e) => return Err(io(e)),
        };
        let torn = torn.map(|end| set_torn_tail_aside(path, dir, end, seq + 1)).transpose()?;
        let file =
            OpenOptions::new().append(true).create(true).mode(0o600).open(path).map_err(io)?;
        if seq == 0 {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        let acked_bytes = file.metadata().map_err(io)?.len();
        let mut log =
            AuditLog { path: path.to_path_buf(), file, prev, seq, acked_bytes, failed: false };
        if let Some(event) = torn {
            log.append(&event)?;
        }
        Ok(log)
    }

    /// Appends one event and fsyncs it.
    pub fn append(&mut self, event: &AuditEvent) -> Result<(), AuditError> {
        let time_ms = SystemTime::now()
            .duration_since(UNIX_EPOCH)
            .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
        let line = Line { seq: self.seq + 1, time_ms, event, prev: &self.prev };
        let mut text = serde_json::to_string(&line)
            .map_err(|e| AuditError::Io { path: self.path.clone(), source: e.into() })?;
        let hash = hex::encode(Sha256::digest(text.as_bytes()));
        text.push('\n');
        let io = |source| AuditError::Io { path: self.path.clone(), source };
        if self.failed {
            // What a failed append left (part of a line, or a whole line whose sync failed) was
            // never acknowledged: the log goes back to its last acknowledged line, or this
            // append fails too. Without this, the next line would follow the leftover, and its
            // `prev` (the last acknowledged line's hash) would break the chain there.
            self.file.set_len(self.acked_bytes).and_then(|()| self.file.sync_data()).map_err(io)?;
            self.failed = false;
        }
        // One write call; a kill -9 can still cut it at a page boundary, see the module docs.
        let written = self.file.write_all(text.as_bytes()).and_then(|()| self.file.sync_data());
        if let Err(e) = written {
            self.failed = true;
            return Err(io(e));
        }
        self.acked_bytes += text.len() as u64;
        self.prev = hash;
        self.seq += 1;
        Ok(())
    }

    /// The number of lines and the sha256 of the last one (the `prev` of the next line).
    pub fn position(&self) -> (u64, String) {
        (self.seq, self.prev.clone())
    }

    /// Number of lines in the log.
    pub fn len(&self) -> u64 {
        self.seq
    }

    /// True when nothing was ever logged.
    pub fn is_empty(&self) -> bool {
        self.seq == 0
    }
}

/// The result of one append and the time it took (waiting for the log, writing, fsync).
pub type Appended = (Result<(), AuditError>, Duration);

/// The audit log shared by every request; lines from every thread go through one lock, so the
/// hash chain stays one sequence.
#[derive(Debug)]
pub struct AuditWriter {
    log: Mutex<AuditLog>,
}

fn lock(log: &Mutex<AuditLog>) -> MutexGuard<'_, AuditLog> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

impl AuditWriter {
    /// Shares `log`.
    pub fn new(log: AuditLog) -> AuditWriter {
        AuditWriter { log: Mutex::new(log) }
    }

    /// Appends `event` on this thread and fsyncs it.
    pub fn append(&self, event: &AuditEvent) -> Appended {
        let started = Instant::now();
        let r = lock(&self.log).append(event);
        (r, started.elapsed())
    }

    /// See [`AuditLog::position`].
    pub fn position(&self) -> (u64, String) {
        lock(&self.log).position()
    }
}

/// One verified line shown to [`AuditLog::open_reading`]'s reader.
#[derive(Debug)]
pub struct ReadLine<'a> {
    /// 1-based line number (its `seq`).
    pub seq: u64,
    /// The sha256 of the line.
    pub hash: &'a str,
    /// The line's JSON.
    pub value: &'a serde_json::Value,
}

/// What `verify` found in a good log.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Verified {
    /// Number of lines.
    pub lines: u64,
    /// sha256 of the last line (the `prev` the next line will carry).
    pub last_hash: String,
    /// Where a last line without its newline starts (a write cut by a crash); `None` when the
    /// log ends with a complete line. Only [`AuditLog::open`] accepts one, after setting it
    /// aside; [`verify`] reports it as a broken line.
    torn_tail: Option<u64>,
}

/// Copies the bytes of the log from `end` (its torn last line, number `line`) to a new file
/// beside it, syncs that, then cuts the log at `end`: the bytes are kept whatever the next
/// crash interrupts. Returns the event recording it.
fn set_torn_tail_aside(
    path: &Path,
    dir: &Path,
    end: u64,
    line: u64,
) -> Result<AuditEvent, AuditError> {
    let io = |p: &Path| {
        let p = p.to_path_buf();
        move |source| AuditError::Io { path: p, source }
    };
    let mut log = OpenOptions::new().read(true).write(true).open(path).map_err(io(path))?;
    log.seek(SeekFrom::Start(end)).map_err(io(path))?;
    let mut torn = Vec::new();
    (&mut log).take(MAX_LINE as u64 + 1).read_to_end(&mut torn).map_err(io(path))?;
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("audit.jsonl");
    let millis = SystemTime::now().duration_since(UNIX_EPOCH).map_or(0, |d| d.as_millis());
    let saved = dir.join(format!("{name}.torn-line-{line}-{millis}"));
    let mut out = OpenOptions::new()
        .write(true)
        .create_new(true)
        .mode(0o600)
        .open(&saved)
        .map_err(io(&saved))?;
    out.write_all(&torn).and_then(|()| out.sync_all()).map_err(io(&saved))?;
    File::open(dir).and_then(|d| d.sync_all()).map_err(io(dir))?;
    log.set_len(end).and_then(|()| log.sync_all()).map_err(io(path))?;
    tracing::warn!(
        log = %path.display(),
        line,
        bytes = torn.len(),
        saved_to = %saved.display(),
        "the audit log's last line was cut short by a crash (its write never completed, so \
         nothing it records was released); its bytes were moved aside and the cut is audited"
    );
    Ok(AuditEvent::TornTail {
        line,
        bytes: torn.len() as u64,
        sha256: hex::encode(Sha256::digest(&torn)),
        saved_to: saved.display().to_string(),
    })
}

/// Checks every line of the log: valid JSON, `seq` counting from 1, `prev` equal to the sha256
/// of the line before. Reports the first broken line.
pub fn verify(path: &Path) -> Result<Verified, AuditError> {
    let f =
        File::open(path).map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
    let verified = scan(path, f, &mut |_| {})?;
    if verified.torn_tail.is_some() {
        return Err(AuditError::Broken {
            path: path.to_path_buf(),
            line: verified.lines + 1,
            reason: "the last line is incomplete (no newline): a write cut by a crash, which the \
                     next writer (the signer at its start, `rempart admin` at its next step) \
                     moves aside"
                .to_string(),
        });
    }
    Ok(verified)
}

fn scan(
    path: &Path,
    f: File,
    visit: &mut dyn FnMut(&ReadLine<'_>),
) -> Result<Verified, AuditError> {
    let mut reader = BufReader::new(f);
    let mut prev = GENESIS_PREV.to_string();
    let mut n: u64 = 0;
    let mut end: u64 = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
        if read == 0 {
            return Ok(Verified { lines: n, last_hash: prev, torn_tail: None });
        }
        if !buf.ends_with(b"\n") && buf.len() <= MAX_LINE {
            // The end of the file without a newline: a torn write (see the module docs).
            return Ok(Verified { lines: n, last_hash: prev, torn_tail: Some(end) });
        }
        end += read as u64;
        n += 1;
        let broken = |reason: &str| AuditError::Broken {
            path: path.to_path_buf(),
            line: n,
            reason: reason.to_string(),
        };
        let Some(body) = buf.strip_suffix(b"\n") else {
            return Err(broken("longer than any line the signer writes"));
        };
        let v: serde_json::Value =
            serde_json::from_slice(body).map_err(|e| broken(&format!("not JSON: {e}")))?;
        match v.get("prev").and_then(|p| p.as_str()) {
            Some(p) if p == prev => {}
            Some(_) => {
                return Err(broken(
                    "its prev hash is not the sha256 of the line before: a line was removed, \
                     inserted, reordered or edited",
                ));
            }
            None => return Err(broken("no prev hash")),
        }
        if v.get("seq").and_then(|s| s.as_u64()) != Some(n) {
            return Err(broken(&format!("seq is not {n}")));
        }
        if v.get("event").and_then(|e| e.as_str()).is_none() {
            return Err(broken("no event"));
        }
        prev = hex::encode(Sha256::digest(body));
        visit(&ReadLine { seq: n, hash: &prev, value: &v });
    }
}
