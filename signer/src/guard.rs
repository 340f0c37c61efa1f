//! The double-sign guard: per (chain id, producer, key) the last block signed, kept on disk.
//!
//! Before the HSM signs a block, an *intent* naming it (block number, slot, digest) is written
//! to a temporary file, fsync'd, renamed over the state file and the directory fsync'd; the
//! signer writes it while the HSM signs, and no signature leaves before it is durable. A kill -9
//! at any instant therefore leaves either the old or the new state, never a signature out in the
//! world that the state does not know. The next intent moves the previous one, with the
//! signature that was released for it, into `last`.
//!
//! After a restart an intent may or may not have been released. The audit log decides: a
//! signature is released only after its audit line is durable, and the intent records the audit
//! log's position (line number and hash) when it was written. A signature line for the intent
//! means released (and the same request gets that signature back); no such line in a log that
//! still holds the recorded position means never released (the producer may sign another block
//! at that height); a log that no longer holds it (replaced) leaves the intent *possibly*
//! released, which refuses every block at or below it, itself included (its signature is not
//! known, and a new one would be a second). The same request gets the stored signature back; a
//! block number or slot not above the last one with another digest is refused. A missing or
//! corrupt state file stops signing for that key: this module never re-creates a state file by
//! itself, only [`Guard::init`] (the operator's `guard init`) does, and it refuses to overwrite
//! one. One process at a time signs from a state directory ([`Guard::lock`]).

use std::fs::{self, File, OpenOptions};
use std::io::{ErrorKind, Write};
use std::path::{Path, PathBuf};
use std::sync::{Arc, Mutex};

use rempart_core::key::{PublicKey, Signature};
use rempart_core::{BlockTimestamp, Checksum256, Name};
use serde::{Deserialize, Serialize};
use sha2::{Digest, Sha256};

#[cfg(test)]
mod tests;

/// The state file format version written. Version 1 (read too) had no `intent`, and every
/// `last` carried its signature.
const VERSION: u32 = 2;

/// Why the guard refused or could not decide.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum GuardError {
    /// No state file for this key: signing stays off until the operator creates it.
    #[error(
        "no double-sign guard state for producer {producer} key {key} at {path}: signing is \
         stopped for this key. If this key has never signed on this chain, run `rempart-signer \
         guard init --policy <signer.toml>`; if it signed elsewhere before, pass that signer's \
         last block with --min-block and --min-slot. Never do this to get past an error you do \
         not understand: a lost guard state is how producers double-sign"
    )]
    Missing {
        /// The expected state file.
        path: PathBuf,
        /// The producer.
        producer: Name,
        /// The key.
        key: PublicKey,
    },
    /// The state file exists but cannot be trusted.
    #[error(
        "double-sign guard state {path} is corrupt ({reason}): signing is stopped for this key. \
         Restore the file from a backup, or move it aside and run `rempart-signer guard init \
         --policy <signer.toml> --min-block N --min-slot S` with N and S at least the last \
         block and slot this key signed (see the audit log)"
    )]
    Corrupt {
        /// The state file.
        path: PathBuf,
        /// What is wrong with it.
        reason: String,
    },
    /// `guard init` found a state file already there.
    #[error("double-sign guard state {0} already exists; refusing to overwrite it")]
    AlreadyExists(PathBuf),
    /// The request would sign a second, different block at a height or slot already signed.
    #[error(
        "refused: block {block_num} slot {slot} with digest {digest} is not above the last \
         signed block {last_block_num} slot {last_slot} (digest {last_digest})"
    )]
    DoubleSign {
        /// The requested block number.
        block_num: u32,
        /// The requested slot.
        slot: u32,
        /// The requested digest.
        digest: Checksum256,
        /// The last block signed.
        last_block_num: u32,
        /// Its slot.
        last_slot: u32,
        /// Its digest.
        last_digest: Checksum256,
    },
    /// The request is at or below the floor set by `guard init`.
    #[error(
        "refused: block {block_num} slot {slot} is not above the guard floor (block \
         {floor_block}, slot {floor_slot}) set when this key's guard was initialised"
    )]
    BelowFloor {
        /// The requested block number.
        block_num: u32,
        /// The requested slot.
        slot: u32,
        /// The floor block.
        floor_block: u32,
        /// The floor slot.
        floor_slot: u32,
    },
    /// The same block again, but whether its signature left (and which) cannot be known: the
    /// audit log beside the guard no longer reaches back to its intent.
    #[error(
        "refused: block {block_num} slot {slot} may already have been signed, and the audit log \
         no longer shows with which signature (was it replaced?), so it is neither signed again \
         nor answered. Put back the audit log that was in use, or move this key's guard file \
         aside and run `rempart-signer guard init --policy <signer.toml> --min-block {below} \
         --min-slot {slot}` to sign this height at a later slot"
    )]
    Unconfirmed {
        /// The requested block number.
        block_num: u32,
        /// The slot of the intent.
        slot: u32,
        /// The block below it.
        below: u32,
    },
    /// Another process holds the state directory's lock: two signers on one state could each
    /// sign a different block at one height, since each trusts its own watermark.
    #[error(
        "the double-sign guard state in {dir} is in use by another process (it holds the lock \
         on {lock}): stop the other rempart-signer first; two signers on one state can each \
         sign a different block at the same height"
    )]
    InUse {
        /// The state directory.
        dir: PathBuf,
        /// Its lock file.
        lock: PathBuf,
    },
    /// Reading or writing the state failed.
    #[error("double-sign guard state {path}: {source}; signing is stopped until this is fixed")]
    Io {
        /// The file or directory.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
}

impl GuardError {
    /// A short stable label for metrics and the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            GuardError::Missing { .. } => "guard_missing",
            GuardError::Corrupt { .. } => "guard_corrupt",
            GuardError::AlreadyExists(_) => "guard_exists",
            GuardError::DoubleSign { .. } => "double_sign",
            GuardError::BelowFloor { .. } => "below_floor",
            GuardError::Unconfirmed { .. } => "guard_unconfirmed",
            GuardError::InUse { .. } => "guard_in_use",
            GuardError::Io { .. } => "guard_io",
        }
    }
}

/// Which key's guard: the triple the watermark belongs to.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct GuardKey {
    /// The chain.
    pub chain_id: Checksum256,
    /// The producer account.
    pub producer: Name,
    /// The signing key.
    pub key: PublicKey,
}

/// One signed block as the guard remembers it.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct SignedBlock {
    /// Block number.
    pub block_num: u32,
    /// Block timestamp slot.
    pub slot: BlockTimestamp,
    /// The digest signed.
    pub digest: Checksum256,
    /// The signature released; `None` for an intent whose signature is not known (its audit
    /// log was replaced), which is never released again and never re-signed over.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub signature: Option<Signature>,
}

/// A block about to be signed: durable before its signature can leave.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct Intent {
    /// Block number.
    pub block_num: u32,
    /// Block timestamp slot.
    pub slot: BlockTimestamp,
    /// The digest to be signed.
    pub digest: Checksum256,
    /// Lines in the audit log when the intent was written: the intent's signature, if it was
    /// released, is on a later line.
    pub audit_seq: u64,
    /// The sha256 of line `audit_seq` (the log's `prev` then): proves after a restart that the
    /// log read is the one the intent was written beside.
    pub audit_hash: String,
}

/// What is known about the intent in a state: released with this signature, or never released.
/// No outcome at all means unknown (a restart over a replaced audit log): possibly released.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Outcome {
    /// The signature left the signer (its audit line is durable).
    Released(Signature),
    /// Nothing left the signer for this intent.
    NotReleased,
}

/// The persisted state of one key's guard.
#[derive(Debug, Clone, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct GuardState {
    /// Format version.
    pub version: u32,
    /// The chain.
    pub chain_id: Checksum256,
    /// The producer.
    pub producer: Name,
    /// The key.
    pub key: PublicKey,
    /// Blocks at or below this number are never signed (set by `guard init`).
    pub floor_block: u32,
    /// Slots at or below this are never signed (set by `guard init`).
    pub floor_slot: BlockTimestamp,
    /// The last block signed, if any.
    pub last: Option<SignedBlock>,
    /// The block being signed, or signed last: see [`Outcome`] for whether it was released.
    #[serde(default, skip_serializing_if = "Option::is_none")]
    pub intent: Option<Intent>,
}

impl GuardState {
    /// The highest block this key may have released, with its signature when known: the
    /// intent unless it is known never released, else `last`.
    pub fn watermark(&self, outcome: Option<&Outcome>) -> Option<SignedBlock> {
        match (&self.intent, outcome) {
            (Some(_), Some(Outcome::NotReleased)) | (None, _) => self.last.clone(),
            (Some(i), outcome) => Some(SignedBlock {
                block_num: i.block_num,
                slot: i.slot,
                digest: i.digest,
                signature: match outcome {
                    Some(Outcome::Released(s)) => Some(*s),
                    _ => None,
                },
            }),
        }
    }

    /// The state to make durable before signing `intent`: the watermark becomes `last`.
    pub fn with_intent(&self, outcome: Option<&Outcome>, intent: Intent) -> GuardState {
        GuardState {
            version: VERSION,
            last: self.watermark(outcome),
            intent: Some(intent),
            ..self.clone()
        }
    }
}

/// What the guard says about a request.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Decision {
    /// Exactly this block was signed already: return this signature, do not sign again.
    Replay(Signature),
    /// The block is above everything released: make [`GuardState::with_intent`] durable
    /// ([`Guard::write_state`]) before the signature leaves.
    Sign,
    /// The state's intent is exactly this block, durable already, and no signature for it is
    /// known to have left: sign it without writing the state again.
    SignIntent,
}

/// State files are padded to a multiple of this, so that consecutive states of one key have the
/// same size and the next one can overwrite a temporary file prepared in advance.
const PAD: usize = 512;

/// The state directory's lock, from [`Guard::lock`]: released when dropped.
#[derive(Debug)]
pub struct StateLock(#[allow(dead_code, reason = "held for its lock")] File);

/// The guard's directory of state files.
#[derive(Debug, Clone)]
pub struct Guard {
    dir: PathBuf,
    /// Held while a temporary file is prepared or written (clones share it).
    temp: Arc<Mutex<()>>,
}

impl Guard {
    /// A guard keeping its state in `dir` (which must exist; it is never created here).
    pub fn new(dir: &Path) -> Guard {
        Guard { dir: dir.to_path_buf(), temp: Arc::default() }
    }

    /// Takes the state directory's lock (`.lock` in it, created mode 0600), held until the
    /// returned value is dropped or the process ends, whichever comes first: one signing
    /// process per state. Refuses at once, never waits, when another holds it.
    pub fn lock(&self) -> Result<StateLock, GuardError> {
        if !self.dir.is_dir() {
            return Err(GuardError::Io {
                path: self.dir.clone(),
                source: std::io::Error::new(
                    ErrorKind::NotFound,
                    "the state directory does not exist: create it (mode 0700, owned by the \
                     signer's user) and run `rempart-signer guard init --policy <signer.toml>`",
                ),
            });
        }
        let lock = self.dir.join(".lock");
        let file = OpenOptions::new()
            .read(true)
            .write(true)
            .create(true)
            .truncate(false)
            .mode_0600()
            .open(&lock)
            .map_err(|source| GuardError::Io { path: lock.clone(), source })?;
        match file.try_lock() {
            Ok(()) => Ok(StateLock(file)),
            Err(fs::TryLockError::WouldBlock) => {
                Err(GuardError::InUse { dir: self.dir.clone(), lock })
            }
            Err(fs::TryLockError::Error(source)) => Err(GuardError::Io { path: lock, source }),
        }
    }

    fn temp_path(&self, path: &Path) -> PathBuf {
        let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("guard.state");
        self.dir.join(format!(".{name}.tmp"))
    }

    /// Creates, durably, the temporary file the next write of `key`'s state overwrites: as big
    /// as the state file now, so that write changes no file metadata and its flush needs no
    /// journal commit of its own (on this VM's disk about 0.13 ms of the 0.5 ms a durable
    /// state costs). Best done between two signatures, off the request's path; a write that
    /// finds no prepared file of its size, or a `prepare` still running, creates one as before.
    pub fn prepare(&self, key: &GuardKey) -> Result<(), GuardError> {
        let path = self.path(key);
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| GuardError::Io { path: p, source }
        };
        let len = fs::metadata(&path).map_err(io(&path))?.len();
        let tmp = self.temp_path(&path);
        let _one = self.temp.lock().unwrap_or_else(|e| e.into_inner());
        if fs::symlink_metadata(&tmp).is_ok_and(|m| m.is_file() && m.len() == len) {
            return Ok(());
        }
        let blank = vec![b' '; usize::try_from(len).unwrap_or(0)];
        create_synced(&tmp, &blank).map_err(io(&tmp))
    }

    /// The state file of `key`: readable names plus a hash of the whole triple.
    pub fn path(&self, key: &GuardKey) -> PathBuf {
        let mut h = Sha256::new();
        h.update(key.chain_id.as_bytes());
        h.update(key.producer.value().to_le_bytes());
        h.update(key.key.to_string().as_bytes());
        let tag = hex::encode(&h.finalize()[..8]);
        self.dir.join(format!("guard-{}-{}-{tag}.state", key.producer, key.key.key_type()))
    }

    /// Creates the state of a key that has not signed on this chain (or whose watermark from
    /// another signer is given as the floor). Refuses to overwrite an existing state.
    pub fn init(
        &self,
        key: &GuardKey,
        floor_block: u32,
        floor_slot: BlockTimestamp,
    ) -> Result<PathBuf, GuardError> {
        let path = self.path(key);
        match fs::symlink_metadata(&path) {
            Ok(_) => return Err(GuardError::AlreadyExists(path)),
            Err(e) if e.kind() == ErrorKind::NotFound => {}
            Err(source) => return Err(GuardError::Io { path, source }),
        }
        let state = GuardState {
            version: VERSION,
            chain_id: key.chain_id,
            producer: key.producer,
            key: key.key,
            floor_block,
            floor_slot,
            last: None,
            intent: None,
        };
        self.write(&path, &state)?;
        Ok(path)
    }

    /// Reads and checks the state of `key`. Missing or corrupt is an error, never a default.
    pub fn load(&self, key: &GuardKey) -> Result<GuardState, GuardError> {
        let path = self.path(key);
        let text = match fs::read(&path) {
            Ok(t) => t,
            Err(e) if e.kind() == ErrorKind::NotFound => {
                return Err(GuardError::Missing { path, producer: key.producer, key: key.key });
            }
            Err(source) => return Err(GuardError::Io { path, source }),
        };
        let corrupt = |reason: String| GuardError::Corrupt { path: path.clone(), reason };
        let text = std::str::from_utf8(&text).map_err(|_| corrupt("not UTF-8".into()))?;
        let (body, check) = text
            .strip_suffix('\n')
            .and_then(|t| t.split_once('\n'))
            .ok_or_else(|| corrupt("not two lines (body and checksum)".into()))?;
        let want = check
            .strip_prefix("sha256:")
            .ok_or_else(|| corrupt("second line is not `sha256:<hex>`".into()))?;
        if hex::encode(Sha256::digest(body.as_bytes())) != want {
            return Err(corrupt("checksum does not match the body".into()));
        }
        let state: GuardState =
            serde_json::from_str(body).map_err(|e| corrupt(format!("body: {e}")))?;
        if state.version != VERSION && !(state.version == 1 && state.intent.is_none()) {
            return Err(corrupt(format!("version {} (expected 1 or {VERSION})", state.version)));
        }
        if state.version == 1 && state.last.as_ref().is_some_and(|l| l.signature.is_none()) {
            return Err(corrupt("version 1 with a last block but no signature".into()));
        }
        if state.chain_id != key.chain_id || state.producer != key.producer || state.key != key.key
        {
            return Err(corrupt(format!(
                "it belongs to chain {} producer {} key {}",
                state.chain_id, state.producer, state.key
            )));
        }
        Ok(state)
    }

    /// Decides whether a block (number, slot, digest) may be signed given `state` and what is
    /// known of its intent (`None`: unknown, possibly released).
    pub fn check(
        state: &GuardState,
        outcome: Option<&Outcome>,
        block_num: u32,
        slot: BlockTimestamp,
        digest: &Checksum256,
    ) -> Result<Decision, GuardError> {
        if let Some(last) = state.watermark(outcome) {
            if last.block_num == block_num && last.digest == *digest {
                return match last.signature {
                    Some(signature) => Ok(Decision::Replay(signature)),
                    // Its signature may be out there: a new one would be a second signature
                    // for this height (of the same block, but still not the one released).
                    None => Err(GuardError::Unconfirmed {
                        block_num,
                        slot: last.slot.0,
                        below: block_num.saturating_sub(1),
                    }),
                };
            }
            if block_num <= last.block_num || slot <= last.slot {
                return Err(GuardError::DoubleSign {
                    block_num,
                    slot: slot.0,
                    digest: *digest,
                    last_block_num: last.block_num,
                    last_slot: last.slot.0,
                    last_digest: last.digest,
                });
            }
        }
        if block_num <= state.floor_block || slot <= state.floor_slot {
            return Err(GuardError::BelowFloor {
                block_num,
                slot: slot.0,
                floor_block: state.floor_block,
                floor_slot: state.floor_slot.0,
            });
        }
        if let Some(i) = &state.intent
            && outcome == Some(&Outcome::NotReleased)
            && (i.block_num, i.slot, i.digest) == (block_num, slot, *digest)
        {
            return Ok(Decision::SignIntent);
        }
        Ok(Decision::Sign)
    }

    /// Makes `state` the key's durable state (write-temp, fsync, rename, fsync of the directory).
    pub fn write_state(&self, state: &GuardState) -> Result<(), GuardError> {
        let key = GuardKey { chain_id: state.chain_id, producer: state.producer, key: state.key };
        self.write(&self.path(&key), state)
    }

    /// Write-temp, fsync, rename, fsync(dir). The temporary file is overwritten in place and
    /// its data flushed when [`Guard::prepare`] made it at this size, else created and fsync'd.
    fn write(&self, path: &Path, state: &GuardState) -> Result<(), GuardError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| GuardError::Io { path: p, source }
        };
        let body = serde_json::to_string(state)
            .map_err(|e| GuardError::Io { path: path.to_path_buf(), source: e.into() })?;
        // JSON allows trailing spaces; the checksum covers them.
        let width = body.len().div_ceil(PAD) * PAD;
        let body = format!("{body:width$}");
        let text = format!("{body}\nsha256:{}\n", hex::encode(Sha256::digest(body.as_bytes())));
        // Never wait for a `prepare` in progress: write beside it, the slow way.
        let (tmp, _one) = match self.temp.try_lock() {
            Ok(one) => (self.temp_path(path), Some(one)),
            Err(std::sync::TryLockError::Poisoned(e)) => {
                (self.temp_path(path), Some(e.into_inner()))
            }
            Err(std::sync::TryLockError::WouldBlock) => {
                let name = path.file_name().and_then(|n| n.to_str()).unwrap_or("guard.state");
                (self.dir.join(format!(".{name}.tmp2")), None)
            }
        };
        let prepared =
            OpenOptions::new().write(true).open(&tmp).ok().filter(|f| {
                f.metadata().is_ok_and(|m| m.is_file() && m.len() == text.len() as u64)
            });
        match prepared {
            Some(mut f) => {
                f.write_all(text.as_bytes()).map_err(io(&tmp))?;
                f.sync_data().map_err(io(&tmp))?;
            }
            None => create_synced(&tmp, text.as_bytes()).map_err(io(&tmp))?,
        }
        fs::rename(&tmp, path).map_err(io(path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        Ok(())
    }
}

/// Creates (or truncates) `path` with mode 0600, writes `bytes` and fsyncs it, metadata too.
fn create_synced(path: &Path, bytes: &[u8]) -> std::io::Result<()> {
    let mut f =
        OpenOptions::new().write(true).create(true).truncate(true).mode_0600().open(path)?;
    f.write_all(bytes)?;
    f.sync_all()
}

/// Files the signer writes are private to its user.
trait Mode0600 {
    fn mode_0600(&mut self) -> &mut Self;
}

impl Mode0600 for OpenOptions {
    fn mode_0600(&mut self) -> &mut Self {
        use std::os::unix::fs::OpenOptionsExt;
        self.mode(0o600)
    }
}
