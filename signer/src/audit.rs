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
//!
//! The log does not grow without bound, and a start does not read years of it: the daemon
//! opens it with a segment size ([`AuditLog::open_segmented`]). Once the log holds that many
//! bytes, the next append first seals it: the file is renamed `<log>.<last seq, 12 digits>`
//! (so a sorted listing is the chain's order), and a new log begins with an
//! [`AuditEvent::Continued`] line whose `seq` and `prev` carry on from the sealed file's last
//! line. A start verifies only the live log (and, after a crash that left a guard intent, the
//! sealed file before it, where that signature may be); `verify` checks several files in
//! order, each continuing the one before. Sealed files are never written again: archive them
//! or delete them. The new log is written complete under `<log>.next` before it is renamed into
//! place, so a crash between the steps leaves either the old log, or the sealed file and no
//! log (the next open continues from the newest sealed file).

use std::fs::{File, OpenOptions};
use std::io::{BufRead, BufReader, ErrorKind, Read as _, Seek, SeekFrom, Write};
use std::os::unix::fs::OpenOptionsExt;
use std::path::{Path, PathBuf};
use std::sync::atomic::{AtomicU64, Ordering};
use std::sync::{Arc, Mutex, MutexGuard};
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
    /// The stop line was the log's last: the signer is stopping, and what would be audited
    /// after it (a signature, so its release) is refused.
    #[error("the audit log is closed: the signer is stopping")]
    Closed,
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
    /// A bare digest was signed for the keosd-compatible endpoint (`crate::keosd`): no block,
    /// so no guard.
    DigestSignature {
        /// Key.
        key: String,
        /// Digest signed.
        digest: String,
        /// Signature released.
        signature: String,
        /// The same digest asked again, answered with the signature already given.
        replay: bool,
        /// Backend calls it took (0 for a replay).
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
    /// The first line of a log that carries on from a sealed one (see the module
    /// documentation): its `seq` and `prev` follow that file's last line.
    Continued {
        /// The sealed file's name, beside this one.
        from: String,
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

/// What the metrics report about the audit log: its live size and its seals.
#[derive(Debug, Default)]
pub struct AuditStats {
    live_bytes: AtomicU64,
    seals: AtomicU64,
    seal_failures: AtomicU64,
}

impl AuditStats {
    /// Bytes in the live log (acknowledged lines).
    pub fn live_bytes(&self) -> u64 {
        self.live_bytes.load(Ordering::Relaxed)
    }

    /// Logs sealed since the start.
    pub fn seals(&self) -> u64 {
        self.seals.load(Ordering::Relaxed)
    }

    /// Seals that failed since the start (the log then stays in use, growing past its size).
    pub fn seal_failures(&self) -> u64 {
        self.seal_failures.load(Ordering::Relaxed)
    }
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
    /// Seal the log before an append once it holds this many bytes (`None`: never).
    seal_at: Option<u64>,
    /// After a failed seal, the size at which to try again.
    seal_retry_at: u64,
    /// A seal failed half-way and the log is not under its name: nothing more is appended.
    lost: bool,
    stats: Arc<AuditStats>,
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
        Self::open_segmented(path, None, false, read)
    }

    /// Opens the log as [`AuditLog::open_reading`] does, sealing it before an append once it
    /// holds `seal_at` bytes (see the module documentation). With `history`, a log that
    /// continues a sealed file shows `read` that file's lines first, when it is still there.
    /// A missing log beside sealed files carries on from the newest of them.
    pub fn open_segmented(
        path: &Path,
        seal_at: Option<u64>,
        history: bool,
        read: &mut dyn FnMut(&ReadLine<'_>),
    ) -> Result<AuditLog, AuditError> {
        let io = |source| AuditError::Io { path: path.to_path_buf(), source };
        let dir = parent(path);
        let next = sibling(path, "next");
        match std::fs::remove_file(&next) {
            Ok(()) => tracing::warn!(
                file = %next.display(),
                "removed a new audit log that a crash left before it took over (its only line \
                 is written again)"
            ),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(e) => return Err(AuditError::Io { path: next, source: e }),
        }
        let refuse = |e| match e {
            AuditError::Broken { path, line, reason } => {
                AuditError::RefuseToAppend { path, line, reason }
            }
            e => e,
        };
        let (prev, seq, torn) = match File::open(path) {
            Ok(f) => {
                if history && let Some(first) = continues(path)? {
                    read_sealed_before(dir, &first, read);
                }
                let s = scan(path, f, read).map_err(refuse)?;
                (s.last_hash, s.first_seq + s.lines - 1, s.torn_tail)
            }
            Err(e) if e.kind() == ErrorKind::NotFound => match sealed_logs(path)?.pop() {
                Some(sealed) => {
                    let f = File::open(&sealed)
                        .map_err(|source| AuditError::Io { path: sealed.clone(), source })?;
                    let s = scan(&sealed, f, read).map_err(refuse)?;
                    if s.torn_tail.is_some() {
                        return Err(AuditError::RefuseToAppend {
                            path: sealed,
                            line: s.lines + 1,
                            reason: "a sealed log ends with an incomplete line".into(),
                        });
                    }
                    tracing::warn!(
                        sealed = %sealed.display(),
                        "no audit log beside sealed ones (a crash while sealing, or it was moved \
                         away): a new one carries on from the newest sealed log"
                    );
                    // The new log holds its `continued` line; it is opened below like any log.
                    let seq = s.first_seq + s.lines - 1;
                    let prev = begin_continued(path, &sealed, seq, &s.last_hash)?;
                    (prev, seq + 1, None)
                }
                None => (GENESIS_PREV.to_string(), 0, None),
            },
            Err(e) => return Err(io(e)),
        };
        let torn = torn.map(|end| set_torn_tail_aside(path, dir, end, seq + 1)).transpose()?;
        let file =
            OpenOptions::new().append(true).create(true).mode(0o600).open(path).map_err(io)?;
        if seq == 0 {
            File::open(dir).and_then(|d| d.sync_all()).map_err(io)?;
        }
        let acked_bytes = file.metadata().map_err(io)?.len();
        let mut log = AuditLog {
            path: path.to_path_buf(),
            file,
            prev,
            seq,
            acked_bytes,
            failed: false,
            seal_at,
            seal_retry_at: 0,
            lost: false,
            stats: Arc::new(AuditStats {
                live_bytes: AtomicU64::new(acked_bytes),
                ..AuditStats::default()
            }),
        };
        if let Some(event) = torn {
            log.append(&event)?;
        }
        Ok(log)
    }

    fn lost_error(&self) -> AuditError {
        AuditError::Io {
            path: self.path.clone(),
            source: std::io::Error::other(
                "sealing the audit log failed half-way and it is no longer under its name; \
                 restart the signer, which carries on from the newest sealed log",
            ),
        }
    }

    /// Seals the log: a new log holding one [`AuditEvent::Continued`] line is written and
    /// synced as `<log>.next`, the log is renamed `<log>.<last seq>`, and `<log>.next` renamed
    /// into its place. An error before the second rename leaves the log as it was.
    fn seal(&mut self) -> Result<(), AuditError> {
        let sealed = sibling(&self.path, &format!("{:012}", self.seq));
        if sealed.exists() {
            return Err(AuditError::Io {
                path: sealed,
                source: std::io::Error::new(
                    ErrorKind::AlreadyExists,
                    "a sealed audit log of that name already exists; it is never overwritten",
                ),
            });
        }
        let next = sibling(&self.path, "next");
        // What an earlier seal that failed half-way left (it was never linked in).
        if let Err(e) = std::fs::remove_file(&next)
            && e.kind() != ErrorKind::NotFound
        {
            return Err(AuditError::Io { path: next, source: e });
        }
        let (file, prev, bytes) = write_continued(&next, &sealed, self.seq, &self.prev)?;
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| AuditError::Io { path: p, source }
        };
        if let Err(e) = std::fs::rename(&self.path, &sealed) {
            let _ = std::fs::remove_file(&next);
            return Err(io(&self.path)(e));
        }
        if let Err(e) = std::fs::rename(&next, &self.path) {
            // No log under its name now. Until a rename back succeeds nothing more is
            // appended (the next open would carry on from the sealed file on its own).
            if std::fs::rename(&sealed, &self.path).is_err() {
                self.lost = true;
            }
            return Err(io(&self.path)(e));
        }
        // The new log is in place: every line from now on goes to it.
        self.file = file;
        self.acked_bytes = bytes;
        self.prev = prev;
        self.seq += 1;
        if let Err(e) = sync_dir(parent(&self.path)) {
            tracing::warn!(error = %e, "cannot sync the audit log's directory after sealing");
        }
        tracing::info!(sealed = %sealed.display(), lines = self.seq - 1, "audit log sealed");
        Ok(())
    }

    /// Appends one event and fsyncs it.
    pub fn append(&mut self, event: &AuditEvent) -> Result<(), AuditError> {
        if self.lost {
            return Err(self.lost_error());
        }
        if let Some(at) = self.seal_at
            && self.acked_bytes >= at.max(self.seal_retry_at)
            && !self.failed
        {
            // A log that cannot be sealed stays in use: sealing keeps the log small, the line
            // is what must not be lost. Tried again after another sixteenth of the size.
            match self.seal() {
                Ok(()) => {
                    self.seal_retry_at = 0;
                    self.stats.seals.fetch_add(1, Ordering::Relaxed);
                }
                Err(e) => {
                    tracing::error!(error = %e, "cannot seal the audit log; appending to it still");
                    self.seal_retry_at = self.acked_bytes + at.div_ceil(16);
                    self.stats.seal_failures.fetch_add(1, Ordering::Relaxed);
                }
            }
            self.stats.live_bytes.store(self.acked_bytes, Ordering::Relaxed);
            if self.lost {
                return Err(self.lost_error());
            }
        }
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
        self.stats.live_bytes.store(self.acked_bytes, Ordering::Relaxed);
        self.prev = hash;
        self.seq += 1;
        Ok(())
    }

    /// Its live size and seals, shared with the metrics.
    pub fn stats(&self) -> Arc<AuditStats> {
        self.stats.clone()
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
    log: Mutex<Writing>,
}

/// The log, and whether [`AuditWriter::close`] wrote its last line.
#[derive(Debug)]
struct Writing {
    log: AuditLog,
    closed: bool,
}

fn lock(log: &Mutex<Writing>) -> MutexGuard<'_, Writing> {
    log.lock().unwrap_or_else(|e| e.into_inner())
}

impl AuditWriter {
    /// Shares `log`.
    pub fn new(log: AuditLog) -> AuditWriter {
        AuditWriter { log: Mutex::new(Writing { log, closed: false }) }
    }

    /// Appends `event` on this thread and fsyncs it; [`AuditError::Closed`] after
    /// [`AuditWriter::close`].
    pub fn append(&self, event: &AuditEvent) -> Appended {
        let started = Instant::now();
        let mut w = lock(&self.log);
        let r = if w.closed { Err(AuditError::Closed) } else { w.log.append(event) };
        drop(w);
        (r, started.elapsed())
    }

    /// Appends `event` as the log's last line: every later append is refused with
    /// [`AuditError::Closed`], even when this one failed (the log then ends without it).
    pub fn close(&self, event: &AuditEvent) -> Result<(), AuditError> {
        let mut w = lock(&self.log);
        if w.closed {
            return Err(AuditError::Closed);
        }
        w.closed = true;
        w.log.append(event)
    }

    /// See [`AuditLog::position`].
    pub fn position(&self) -> (u64, String) {
        lock(&self.log).log.position()
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
    /// The `seq` of the first line: 1, or more in a log that continues a sealed one.
    pub first_seq: u64,
    /// The `prev` of the first line: [`GENESIS_PREV`], or the hash of the sealed log's last
    /// line.
    pub first_prev: String,
    /// The sealed log this one continues, named by its first line.
    pub continues: Option<String>,
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

fn parent(path: &Path) -> &Path {
    path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."))
}

/// `<log>.<suffix>` beside the log.
fn sibling(path: &Path, suffix: &str) -> PathBuf {
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("audit.jsonl");
    parent(path).join(format!("{name}.{suffix}"))
}

fn sync_dir(dir: &Path) -> std::io::Result<()> {
    File::open(dir).and_then(|d| d.sync_all())
}

/// The first line of a log that continues a sealed one.
struct ContinuedLine {
    from: String,
    seq: u64,
    prev: String,
}

/// Shows `read` the lines of the sealed log that `first` continues, when that file is still
/// there, verifies, and ends where `first` begins; otherwise says why it is left out.
fn read_sealed_before(dir: &Path, first: &ContinuedLine, read: &mut dyn FnMut(&ReadLine<'_>)) {
    let sealed = dir.join(&first.from);
    let leave_out = |why: &str| {
        tracing::warn!(
            file = %sealed.display(),
            "the sealed audit log before this one is not read ({why}); a guard intent left by a \
             crash may need it"
        );
    };
    let linked = match File::open(&sealed).map(|f| scan(&sealed, f, &mut |_| {})) {
        Ok(Ok(v)) => v.last_hash == first.prev && v.first_seq + v.lines == first.seq,
        Ok(Err(e)) => return leave_out(&e.to_string()),
        Err(e) => return leave_out(&e.to_string()),
    };
    if !linked {
        return leave_out("it does not end where the live log begins");
    }
    if let Err(e) = File::open(&sealed).map(|f| scan(&sealed, f, read)) {
        leave_out(&e.to_string());
    }
}

/// The first line of the log at `path`, when it continues a sealed log.
fn continues(path: &Path) -> Result<Option<ContinuedLine>, AuditError> {
    let f =
        File::open(path).map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
    let mut first = Vec::new();
    BufReader::new(f)
        .take(MAX_LINE as u64)
        .read_until(b'\n', &mut first)
        .map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
    let v: Option<serde_json::Value> = serde_json::from_slice(&first).ok();
    Ok(v.filter(|v| v.get("event").and_then(|e| e.as_str()) == Some("continued")).and_then(|v| {
        Some(ContinuedLine {
            from: v.get("from")?.as_str()?.to_string(),
            seq: v.get("seq")?.as_u64()?,
            prev: v.get("prev")?.as_str()?.to_string(),
        })
    }))
}

/// The sealed logs beside the log at `path` (`<log>.<12 digits>`), oldest first.
pub fn sealed_logs(path: &Path) -> Result<Vec<PathBuf>, AuditError> {
    let dir = parent(path);
    let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("audit.jsonl");
    let io = |source| AuditError::Io { path: dir.into(), source };
    let mut sealed = Vec::new();
    for entry in std::fs::read_dir(dir).map_err(io)? {
        let Some(file) = entry.map_err(io)?.file_name().to_str().map(str::to_string) else {
            continue;
        };
        if file
            .strip_prefix(name)
            .and_then(|r| r.strip_prefix('.'))
            .is_some_and(|d| d.len() == 12 && d.bytes().all(|b| b.is_ascii_digit()))
        {
            sealed.push(file);
        }
    }
    sealed.sort();
    Ok(sealed.into_iter().map(|n| dir.join(n)).collect())
}

/// Creates `file` (it must not exist) holding the [`AuditEvent::Continued`] line that follows
/// line `seq` (hash `prev`) of `sealed`, synced: the open file, the new line's hash and its
/// length.
fn write_continued(
    file: &Path,
    sealed: &Path,
    seq: u64,
    prev: &str,
) -> Result<(File, String, u64), AuditError> {
    let io = |source| AuditError::Io { path: file.to_path_buf(), source };
    let from = sealed.file_name().and_then(|n| n.to_str()).unwrap_or_default().to_string();
    let time_ms = SystemTime::now()
        .duration_since(UNIX_EPOCH)
        .map_or(0, |d| u64::try_from(d.as_millis()).unwrap_or(u64::MAX));
    let event = AuditEvent::Continued { from };
    let line = Line { seq: seq + 1, time_ms, event: &event, prev };
    let mut text = serde_json::to_string(&line).map_err(|e| io(e.into()))?;
    let hash = hex::encode(Sha256::digest(text.as_bytes()));
    text.push('\n');
    let mut f =
        OpenOptions::new().append(true).create_new(true).mode(0o600).open(file).map_err(io)?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_data()).map_err(io)?;
    Ok((f, hash, text.len() as u64))
}

/// Begins a log at `path` (absent) continuing `sealed`, whose last line is `seq` with hash
/// `prev`: written under `<log>.next`, then renamed into place. The new line's hash.
fn begin_continued(path: &Path, sealed: &Path, seq: u64, prev: &str) -> Result<String, AuditError> {
    let next = sibling(path, "next");
    let (_, hash, _) = write_continued(&next, sealed, seq, prev)?;
    let io = |source| AuditError::Io { path: path.to_path_buf(), source };
    std::fs::rename(&next, path).map_err(io)?;
    sync_dir(parent(path)).map_err(io)?;
    Ok(hash)
}

/// Checks `paths` in order as one chain: each file verifies (see [`verify`]), and each after
/// the first continues the one before (its first line is the `continued` line that follows
/// that file's last). The whole chain: where its first file starts, every line counted, and
/// the hash its last file ends with.
pub fn verify_chain(paths: &[PathBuf]) -> Result<Verified, AuditError> {
    let mut before: Option<(&Path, Verified)> = None;
    let mut start: Option<Verified> = None;
    let mut lines = 0;
    for path in paths {
        let v = verify(path)?;
        if let Some((p, b)) = &before {
            let name = p.file_name().and_then(|n| n.to_str()).unwrap_or_default();
            let follows = v.first_prev == b.last_hash && v.first_seq == b.first_seq + b.lines;
            if !follows {
                return Err(AuditError::Broken {
                    path: path.clone(),
                    line: 1,
                    reason: format!(
                        "it does not continue {name} (its first line must be a `continued` line \
                         with seq {} and the sha256 of that file's last line as prev)",
                        b.first_seq + b.lines
                    ),
                });
            }
            if v.continues.as_deref() != Some(name) {
                tracing::warn!(file = %path.display(), continues = ?v.continues, "it names another sealed file than {name}, though the chain holds");
            }
        }
        lines += v.lines;
        start.get_or_insert_with(|| v.clone());
        before = Some((path, v));
    }
    match (start, before) {
        (Some(s), Some((_, v))) => Ok(Verified { lines, last_hash: v.last_hash, ..s }),
        _ => Err(AuditError::Io {
            path: PathBuf::new(),
            source: std::io::Error::new(ErrorKind::InvalidInput, "no audit log named"),
        }),
    }
}

/// Checks every line of the log: valid JSON, `seq` counting from 1 (or from a first line that
/// continues a sealed log), `prev` equal to the sha256 of the line before. Reports the first
/// broken line, numbered from the file's first line.
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
    let mut first_prev = prev.clone();
    let mut first_seq: u64 = 1;
    let mut continues = None;
    let mut n: u64 = 0;
    let mut end: u64 = 0;
    let mut buf = Vec::new();
    loop {
        buf.clear();
        let read = (&mut reader)
            .take(MAX_LINE as u64 + 1)
            .read_until(b'\n', &mut buf)
            .map_err(|source| AuditError::Io { path: path.to_path_buf(), source })?;
        let verified = |torn_tail, last_hash: String, first_prev: String, continues| Verified {
            lines: n,
            first_seq,
            first_prev,
            continues,
            last_hash,
            torn_tail,
        };
        if read == 0 {
            return Ok(verified(None, prev, first_prev, continues));
        }
        if !buf.ends_with(b"\n") && buf.len() <= MAX_LINE {
            // The end of the file without a newline: a torn write (see the module docs).
            return Ok(verified(Some(end), prev, first_prev, continues));
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
        let event = v.get("event").and_then(|e| e.as_str());
        if n == 1 && event == Some("continued") {
            // The first line of a log that carries on from a sealed one: the chain starts
            // from what it says the sealed log ended with (`verify_chain` checks that).
            let Some(p) = v.get("prev").and_then(|p| p.as_str()).filter(|p| is_sha256_hex(p))
            else {
                return Err(broken("a continued line needs the sealed log's last hash as prev"));
            };
            let Some(seq) = v.get("seq").and_then(|s| s.as_u64()).filter(|&s| s >= 2) else {
                return Err(broken("a continued line needs a seq of 2 or more"));
            };
            if v.get("from").and_then(|f| f.as_str()).is_none() {
                return Err(broken("a continued line names the sealed log it follows (from)"));
            }
            prev = p.to_string();
            first_prev = prev.clone();
            first_seq = seq;
            continues = v.get("from").and_then(|f| f.as_str()).map(str::to_string);
        }
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
        let seq = first_seq + n - 1;
        if v.get("seq").and_then(|s| s.as_u64()) != Some(seq) {
            return Err(broken(&format!("seq is not {seq}")));
        }
        if event.is_none() {
            return Err(broken("no event"));
        }
        prev = hex::encode(Sha256::digest(body));
        visit(&ReadLine { seq, hash: &prev, value: &v });
    }
}

fn is_sha256_hex(s: &str) -> bool {
    s.len() == 64 && s.bytes().all(|b| b.is_ascii_digit() || (b'a'..=b'f').contains(&b))
}
