//! The audit journal of `rempart admin`: one hash-chained JSON line per ceremony step on this
//! machine (`propose`, `enroll`, `approve`, `submit`), whether it succeeded or was refused
//! (a wrong PIN, a refused command, a bad file), written with the signer's own audit module so
//! that `rempart-signer audit verify FILE` checks it like the signer's log.
//!
//! The journal is opened, locked and verified before the step runs: a journal that cannot be
//! written or does not verify stops the step before the card or the signer is touched (a last
//! line cut by a crash is set aside and recorded, as the signer does with its log). It never
//! records a PIN, a management key or anything read from a secret file.

use std::fs::{DirBuilder, File, OpenOptions};
use std::os::unix::fs::{DirBuilderExt as _, OpenOptionsExt as _};
use std::path::{Path, PathBuf};

use rempart_core::admin::Proposal;
use rempart_core::key::PublicKey;
use rempart_signer::audit::{AuditEvent, AuditLog};

use super::AdminCliError;

/// The journal's file name in the data directory.
pub const FILE_NAME: &str = "admin-audit.jsonl";

/// The default journal: `admin-audit.jsonl` in the data directory `rempart up` uses.
pub fn default_path() -> Option<PathBuf> {
    crate::up::default_data_dir().map(|d| d.join(FILE_NAME))
}

/// An open, locked journal.
pub(super) struct Journal {
    log: AuditLog,
    // Held for the whole step: a second `rempart admin` appending at once would fork the chain.
    _lock: File,
    peer: String,
}

fn audit_err(e: impl std::fmt::Display) -> AdminCliError {
    AdminCliError::Audit(e.to_string())
}

impl Journal {
    /// Creates the directory (mode 0700) and the journal (0600) if needed, locks it and checks
    /// its chain.
    pub(super) fn open(path: &Path) -> Result<Journal, AdminCliError> {
        if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
            DirBuilder::new()
                .recursive(true)
                .mode(0o700)
                .create(dir)
                .map_err(|e| audit_err(format!("{}: {e}", dir.display())))?;
        }
        let lock = OpenOptions::new()
            .append(true)
            .create(true)
            .mode(0o600)
            .open(path)
            .map_err(|e| audit_err(format!("{}: {e}", path.display())))?;
        lock.lock().map_err(|e| audit_err(format!("cannot lock {}: {e}", path.display())))?;
        let log = AuditLog::open(path).map_err(audit_err)?;
        let peer = format!("rempart admin, uid {}", rustix::process::getuid().as_raw());
        Ok(Journal { log, _lock: lock, peer })
    }

    /// Appends the outcome of `step` (`propose`, `enroll`, `approve`, `submit`): the step name
    /// when it succeeded with `done` as message, `<step>_refused` with the error otherwise.
    pub(super) fn record(
        &mut self,
        step: &str,
        proposal: Option<&Proposal>,
        approvers: &[PublicKey],
        outcome: Result<&str, &AdminCliError>,
        context: &str,
    ) -> Result<(), AdminCliError> {
        let (step, message) = match outcome {
            Ok(done) => (step.to_owned(), done.to_owned()),
            Err(e) => (format!("{step}_refused"), e.to_string()),
        };
        let command = proposal.map(|p| &p.command);
        let event = AuditEvent::Admin {
            step,
            action: command.map(|c| c.action.name().to_owned()),
            digest: command.map(|c| c.digest().to_string()),
            nonce: command.map(|c| c.nonce.to_string()),
            approvers: approvers.iter().map(ToString::to_string).collect(),
            message,
            peer: if context.is_empty() {
                self.peer.clone()
            } else {
                format!("{}, {context}", self.peer)
            },
        };
        self.log.append(&event).map_err(audit_err)
    }
}
