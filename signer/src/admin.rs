//! Administrative commands on the signer: the `[admin]` section of `signer.toml` (the signer's
//! id, the admins' public keys, the threshold M), the check of an `Admin` request (M distinct
//! valid approvals by admin keys, right signer and chain, not expired, nonce never seen) and
//! its execution: pause and resume signing, generate a new key inside the HSM (`add_key`,
//! `rotate`), retire a key (and optionally destroy it), approve a policy file by its sha256.
//!
//! State that must survive a restart — the nonces seen (until they expire), the paused flag,
//! retired keys, keys created, approved policies — lives in `admin-state.json` in the state
//! directory, written like the double-sign guard: temporary file, fsync, rename, fsync of the
//! directory. A nonce is recorded durably *before* its command runs, so a command never runs
//! twice, even across a crash.
//!
//! Every refusal and every step is audited. What must never happen here: a command executed
//! without M valid approvals, a replayed nonce accepted, a state file that does not parse
//! silently ignored (the signer refuses to start instead), or a retired key signing again.

use std::collections::BTreeMap;
use std::fs::{self, File, OpenOptions};
use std::io::Write as _;
use std::os::unix::fs::OpenOptionsExt as _;
use std::path::{Path, PathBuf};
use std::sync::Mutex;

use rempart_core::admin::{AdminAction, AdminOutcome, ApprovedCommand, verify_approvals};
use rempart_core::key::{KeyType, PublicKey};
use rempart_core::protocol::{AdminRequest, AdminResponse, ErrorCode, ErrorResponse, Response};
use rempart_core::{BlockTimestamp, Bytes, Checksum256, Name, TimePointSec, codec};
use serde::{Deserialize, Serialize};

use crate::audit::AuditEvent;
use crate::guard::{Guard, GuardKey};
use crate::policy::Policy;
use crate::server::Signer;

#[cfg(test)]
mod tests;

/// The state file's name in the state directory.
pub const STATE_FILE: &str = "admin-state.json";

/// Why the admin state could not be read or written.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminStateError {
    /// Reading, writing or syncing failed.
    #[error("admin state {path}: {source}")]
    Io {
        /// The file.
        path: PathBuf,
        /// What the OS said.
        source: std::io::Error,
    },
    /// The HSM PIN, needed to create and destroy keys, could not be read at start.
    #[error("admin commands need the HSM PIN at start: {0}")]
    Pin(String),
    /// Administrators approved a policy file (`replace-policy`) and this is not it.
    #[error(
        "this policy file has sha256 {file}, but the last policy the administrators approved \
         has sha256 {approved}; the signer starts only with the approved file. Install it, or \
         have this one approved: rempart admin propose --action replace-policy --policy-sha256 \
         {file}"
    )]
    UnapprovedPolicy {
        /// sha256 of the file the signer was started with.
        file: Checksum256,
        /// sha256 of the last approved one.
        approved: Checksum256,
    },
    /// The file does not parse: the signer will not guess which nonces it has seen.
    #[error(
        "admin state {path} is corrupt ({reason}); the signer will not start without knowing \
         which admin commands already ran. Restore it from a backup or investigate"
    )]
    Corrupt {
        /// The file.
        path: PathBuf,
        /// What is wrong.
        reason: String,
    },
}

/// The `[admin]` section as written in `signer.toml`.
#[derive(Debug, Clone, Deserialize)]
#[serde(deny_unknown_fields)]
pub struct AdminSection {
    signer_id: String,
    keys: Vec<String>,
    threshold: usize,
}

/// The validated `[admin]` section: who may approve commands for this signer, and how many
/// must.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AdminPolicy {
    /// This signer's id: commands name it.
    pub signer_id: Name,
    /// The admins' public keys (`PUB_R1_…` from `rempart admin enroll`).
    pub keys: Vec<PublicKey>,
    /// M: distinct valid approvals a command needs.
    pub threshold: usize,
}

impl AdminSection {
    /// Checks the section: a valid signer id, distinct valid keys, 1 ≤ threshold ≤ keys.
    pub fn validate(&self) -> Result<AdminPolicy, String> {
        let signer_id: Name = self.signer_id.parse().map_err(|e| {
            format!("[admin] signer_id {:?} is not a valid name: {e}", self.signer_id)
        })?;
        let mut keys = Vec::with_capacity(self.keys.len());
        for k in &self.keys {
            let key: PublicKey =
                k.parse().map_err(|e| format!("[admin] keys: {k:?} is not a public key: {e}"))?;
            if keys.contains(&key) {
                return Err(format!("[admin] keys lists {key} twice; each admin counts once"));
            }
            keys.push(key);
        }
        if self.threshold == 0 || self.threshold > keys.len() {
            return Err(format!(
                "[admin] threshold must be 1..={} (the number of keys), not {}",
                keys.len(),
                self.threshold
            ));
        }
        Ok(AdminPolicy { signer_id, keys, threshold: self.threshold })
    }
}

/// What survives a restart.
#[derive(Debug, Clone, Default, PartialEq, Eq, Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct State {
    /// Nonces of commands that passed verification (hex) and their expiry (unix seconds).
    nonces: BTreeMap<String, u32>,
    /// Signing is paused.
    paused: bool,
    /// Keys retired: never used to sign again.
    retired: Vec<PublicKey>,
    /// Keys created in the HSM by `add_key` and `rotate`: (producer, key).
    created: Vec<(Name, PublicKey)>,
    /// Policy files approved by sha256.
    approved_policies: Vec<Checksum256>,
}

/// Generates and destroys keys in the signer's PKCS#11 token. The PIN is read at start,
/// before the sandbox closes the file, and kept in a buffer zeroed on drop.
struct Hsm {
    #[cfg(feature = "pkcs11")]
    config: crate::policy::Pkcs11Config,
    #[cfg(feature = "pkcs11")]
    pin: zeroize::Zeroizing<String>,
}

impl std::fmt::Debug for Hsm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Hsm").finish_non_exhaustive()
    }
}

/// The admin side of a running signer.
#[derive(Debug)]
pub struct Admin {
    policy: AdminPolicy,
    chain_id: Checksum256,
    path: PathBuf,
    dir: PathBuf,
    /// The state in force. Held only to read it or to swap in a persisted successor, never
    /// across a disk write: the signing path reads it (`paused`, `is_retired`) for every block.
    state: Mutex<State>,
    /// Serialises [`Admin::update`]s, disk writes included.
    writing: Mutex<()>,
    hsm: Option<Hsm>,
}

fn now() -> TimePointSec {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map_or(0, |d| d.as_secs());
    TimePointSec(u32::try_from(secs).unwrap_or(u32::MAX))
}

/// A refusal: the code and message sent back, and the audit label.
struct Refused {
    code: ErrorCode,
    message: String,
}

impl Refused {
    fn new(code: ErrorCode, message: impl Into<String>) -> Refused {
        Refused { code, message: message.into() }
    }
}

impl Admin {
    /// The admin side for `policy`, or `None` when it has no `[admin]` section. Reads the state
    /// file (absent: a fresh state); a corrupt one is an error.
    pub fn open(policy: &Policy) -> Result<Option<Admin>, AdminStateError> {
        let Some(admin) = &policy.admin else { return Ok(None) };
        let path = policy.state_dir.join(STATE_FILE);
        let state = match fs::read_to_string(&path) {
            Ok(text) => serde_json::from_str(&text).map_err(|e| AdminStateError::Corrupt {
                path: path.clone(),
                reason: e.to_string(),
            })?,
            Err(e) if e.kind() == std::io::ErrorKind::NotFound => State::default(),
            Err(source) => return Err(AdminStateError::Io { path, source }),
        };
        // Once administrators have approved a policy by its hash, nobody with write access to
        // signer.toml alone changes what this signer does.
        if let Some(&approved) = state.approved_policies.last()
            && approved != policy.sha256
        {
            return Err(AdminStateError::UnapprovedPolicy { file: policy.sha256, approved });
        }
        let hsm = match &policy.backend {
            #[cfg(feature = "pkcs11")]
            crate::policy::BackendConfig::Pkcs11(config) => Some(Hsm {
                config: config.clone(),
                pin: crate::keyring::pkcs11::read_pin(&config.pin)
                    .map_err(|e| AdminStateError::Pin(e.to_string()))?,
            }),
            #[allow(unreachable_patterns, reason = "which variants exist depends on features")]
            _ => None,
        };
        Ok(Some(Admin {
            policy: admin.clone(),
            chain_id: policy.chain_id,
            path,
            dir: policy.state_dir.clone(),
            state: Mutex::new(state),
            writing: Mutex::new(()),
            hsm,
        }))
    }

    /// Whether an administrator left signing paused (it stays paused across restarts).
    pub fn paused(&self) -> bool {
        self.lock().paused
    }

    /// Whether `key` was retired: it must never sign again.
    pub fn is_retired(&self, key: &PublicKey) -> bool {
        self.lock().retired.contains(key)
    }

    /// Keys created in the HSM by admin commands, with their producer.
    pub fn created_keys(&self) -> Vec<(Name, PublicKey)> {
        self.lock().created.clone()
    }

    fn lock(&self) -> std::sync::MutexGuard<'_, State> {
        self.state.lock().unwrap_or_else(|e| e.into_inner())
    }

    /// Write-temp, fsync, rename, fsync(dir).
    fn persist(&self, state: &State) -> Result<(), AdminStateError> {
        let io = |p: &Path| {
            let p = p.to_path_buf();
            move |source| AdminStateError::Io { path: p, source }
        };
        let text = serde_json::to_string_pretty(state)
            .map_err(|e| AdminStateError::Io { path: self.path.clone(), source: e.into() })?;
        let tmp = self.dir.join(format!(".{STATE_FILE}.tmp"));
        {
            let mut f = OpenOptions::new()
                .write(true)
                .create(true)
                .truncate(true)
                .mode(0o600)
                .open(&tmp)
                .map_err(io(&tmp))?;
            f.write_all(text.as_bytes()).map_err(io(&tmp))?;
            f.sync_all().map_err(io(&tmp))?;
        }
        fs::rename(&tmp, &self.path).map_err(io(&self.path))?;
        File::open(&self.dir).and_then(|d| d.sync_all()).map_err(io(&self.dir))?;
        Ok(())
    }

    /// Applies `change` to a copy of the state, persists it, then keeps it: memory never gets
    /// ahead of the disk. Updates run one at a time (each `change` sees the last one's result),
    /// and while one is on its way to disk, readers get the state in force: a block signed
    /// meanwhile never waits for an admin command's fsyncs, which a slow disk can stretch past
    /// the producer's deadline.
    fn update(&self, change: impl FnOnce(&mut State)) -> Result<(), AdminStateError> {
        let _writing = self.writing.lock().unwrap_or_else(|e| e.into_inner());
        let mut next = self.lock().clone();
        change(&mut next);
        self.persist(&next)?;
        *self.lock() = next;
        Ok(())
    }

    /// Answers one `Admin` request: verify, record the nonce, audit, execute, audit.
    pub fn handle(&self, signer: &Signer, req: &AdminRequest, peer: &str) -> Response {
        let id = req.request_id;
        let cmd: ApprovedCommand = match codec::from_bytes(&req.command.0) {
            Ok(c) => c,
            Err(e) => {
                return self.refuse(
                    signer,
                    id,
                    peer,
                    None,
                    &[],
                    Refused::new(
                        ErrorCode::Malformed,
                        format!("the admin command does not decode: {e}"),
                    ),
                );
            }
        };
        let command = &cmd.command;
        let approvers = match self.verify(&cmd) {
            Ok(a) => a,
            Err(r) => return self.refuse(signer, id, peer, Some(&cmd), &[], r),
        };
        let nonce = command.nonce.to_string();
        let expires = command.expires.0;
        let now = now().0;
        let mut replayed = false;
        let recorded = self.update(|s| {
            // Forget nonces whose command can no longer pass the expiry check.
            s.nonces.retain(|_, exp| *exp >= now);
            replayed = s.nonces.contains_key(&nonce);
            if !replayed {
                s.nonces.insert(nonce.clone(), expires);
            }
        });
        let refuse = |r: Refused| self.refuse(signer, id, peer, Some(&cmd), &approvers, r);
        if replayed {
            return refuse(Refused::new(
                ErrorCode::Unauthorized,
                format!(
                    "nonce {nonce} was already used: a command runs once; propose it again for \
                     a new nonce"
                ),
            ));
        }
        // The nonce is spent and the approval audited before anything is done.
        let approved = recorded.map_err(|e| e.to_string()).and_then(|()| {
            signer
                .audit(&self.event("approved", Some(&cmd), &approvers, "", peer))
                .map_err(|e| e.to_string())
        });
        if let Err(e) = approved {
            return refuse(Refused::new(ErrorCode::Internal, format!("nothing was done: {e}")));
        }
        let digest = command.digest();
        let result = self.execute(signer, &command.action, &digest);
        match result {
            Ok((summary, new_key)) => {
                tracing::warn!(
                    peer,
                    action = command.action.name(),
                    "admin command executed: {summary}"
                );
                if let Err(e) =
                    signer.audit(&self.event("executed", Some(&cmd), &approvers, &summary, peer))
                {
                    tracing::error!("admin command executed but not audited: {e}");
                }
                let outcome = AdminOutcome { digest, summary, new_key };
                Response::Admin(AdminResponse {
                    request_id: id,
                    result: Bytes(codec::to_bytes(&outcome)),
                })
            }
            Err(r) => {
                let _ =
                    signer.audit(&self.event("failed", Some(&cmd), &approvers, &r.message, peer));
                tracing::error!(
                    peer,
                    action = command.action.name(),
                    "admin command failed: {}",
                    r.message
                );
                error(id, r)
            }
        }
    }

    fn verify(&self, cmd: &ApprovedCommand) -> Result<Vec<PublicKey>, Refused> {
        let unauthorized = |e: rempart_core::admin::AdminError| {
            Refused::new(ErrorCode::Unauthorized, e.to_string())
        };
        cmd.command.check_target(self.policy.signer_id, &self.chain_id).map_err(unauthorized)?;
        verify_approvals(
            &cmd.command,
            &cmd.approvals,
            &self.policy.keys,
            self.policy.threshold,
            now(),
        )
        .map_err(unauthorized)
    }

    fn execute(
        &self,
        signer: &Signer,
        action: &AdminAction,
        digest: &Checksum256,
    ) -> Result<(String, Option<PublicKey>), Refused> {
        let internal = |e: AdminStateError| Refused::new(ErrorCode::Internal, e.to_string());
        match action {
            AdminAction::Pause => {
                self.update(|s| s.paused = true).map_err(internal)?;
                signer.set_paused(true);
                Ok(("signing paused".into(), None))
            }
            AdminAction::Resume => {
                self.update(|s| s.paused = false).map_err(internal)?;
                signer.set_paused(false);
                Ok(("signing resumed".into(), None))
            }
            AdminAction::AddKey { producer, key_type }
            | AdminAction::Rotate { producer, key_type } => {
                // The new key's double-sign guard starts where the producer's keys are: it
                // never signs at or below a block or slot one of them signed.
                let guard = Guard::new(&self.dir);
                let mut current: Vec<PublicKey> =
                    signer.policy().key_for(*producer).into_iter().copied().collect();
                current.extend(
                    self.created_keys().into_iter().filter(|(p, _)| p == producer).map(|(_, k)| k),
                );
                let (mut floor_block, mut floor_slot) = (0, BlockTimestamp(0));
                for k in current {
                    let gkey = GuardKey { chain_id: self.chain_id, producer: *producer, key: k };
                    let state = guard.load(&gkey).map_err(|e| {
                        Refused::new(
                            ErrorCode::Internal,
                            format!("nothing was done: the guard of {producer}'s key {k}: {e}"),
                        )
                    })?;
                    // The intent counts, released or not: the new key starts above it.
                    let (b, s) = state
                        .watermark(None)
                        .map_or((state.floor_block, state.floor_slot), |l| (l.block_num, l.slot));
                    floor_block = floor_block.max(b);
                    floor_slot = floor_slot.max(s);
                }
                let label = format!("{producer}-{}", &digest.to_string()[..12]);
                let key = self.generate(*key_type, &label)?;
                self.update(|s| s.created.push((*producer, key))).map_err(internal)?;
                let gkey = GuardKey { chain_id: self.chain_id, producer: *producer, key };
                guard.init(&gkey, floor_block, floor_slot).map_err(|e| {
                    Refused::new(
                        ErrorCode::Internal,
                        format!("key {key} was created as {label:?} but its guard was not: {e}"),
                    )
                })?;
                // Usable at once: the node asks for it when the schedule names it.
                signer.keyring().adopt(&key).map_err(|e| {
                    Refused::new(
                        ErrorCode::Backend,
                        format!(
                            "key {key} was created as {label:?} with its guard, but the running \
                             signer cannot sign with it ({e}); restart the signer before the \
                             schedule names it"
                        ),
                    )
                })?;
                let what = if matches!(action, AdminAction::Rotate { .. }) {
                    "next block-signing key"
                } else {
                    "additional key"
                };
                Ok((
                    format!(
                        "{what} {key} for {producer} created in the HSM as {label:?}, its guard \
                         above block {floor_block}; the current key keeps signing until the \
                         schedule switches to the new one (announce it on chain with \
                         eosio::regproducer or setprods)"
                    ),
                    Some(key),
                ))
            }
            AdminAction::Retire { producer, key, destroy } => {
                if !signer.keyring().holds(key)
                    && !self.created_keys().iter().any(|(_, k)| k == key)
                {
                    return Err(Refused::new(
                        ErrorCode::UnknownKey,
                        format!("this signer holds no key {key}"),
                    ));
                }
                self.update(|s| {
                    if !s.retired.contains(key) {
                        s.retired.push(*key);
                    }
                })
                .map_err(internal)?;
                let mut summary = format!("key {key} of {producer} retired: it signs nothing more");
                if *destroy {
                    self.destroy(key)?;
                    summary.push_str(" and was destroyed in the HSM");
                }
                Ok((summary, None))
            }
            AdminAction::ReplacePolicy { sha256 } => {
                // The last approval is the one in force at the next start (approving an
                // older file again makes it the current one).
                self.update(|s| {
                    s.approved_policies.retain(|h| h != sha256);
                    s.approved_policies.push(*sha256);
                })
                .map_err(internal)?;
                Ok((
                    format!(
                        "the policy file with sha256 {sha256} is approved: install it and restart \
                         the signer"
                    ),
                    None,
                ))
            }
        }
    }

    #[cfg(feature = "pkcs11")]
    fn generate(&self, key_type: KeyType, label: &str) -> Result<PublicKey, Refused> {
        let hsm = self.hsm.as_ref().ok_or_else(no_hsm)?;
        crate::keyring::pkcs11::generate_with_pin(
            &hsm.config.module,
            &hsm.config.token_label,
            hsm.pin.clone(),
            key_type,
            label,
        )
        .map_err(|e| Refused::new(ErrorCode::Backend, format!("key generation failed: {e}")))
    }

    #[cfg(not(feature = "pkcs11"))]
    fn generate(&self, _: KeyType, _: &str) -> Result<PublicKey, Refused> {
        let _ = &self.hsm;
        Err(no_hsm())
    }

    #[cfg(feature = "pkcs11")]
    fn destroy(&self, key: &PublicKey) -> Result<(), Refused> {
        let hsm = self.hsm.as_ref().ok_or_else(no_hsm)?;
        crate::keyring::pkcs11::destroy(
            &hsm.config.module,
            &hsm.config.token_label,
            hsm.pin.clone(),
            key,
        )
        .map_err(|e| {
            Refused::new(
                ErrorCode::Backend,
                format!("the key is retired but could not be destroyed: {e}"),
            )
        })
    }

    #[cfg(not(feature = "pkcs11"))]
    fn destroy(&self, _: &PublicKey) -> Result<(), Refused> {
        Err(no_hsm())
    }

    fn event(
        &self,
        step: &str,
        cmd: Option<&ApprovedCommand>,
        approvers: &[PublicKey],
        message: &str,
        peer: &str,
    ) -> AuditEvent {
        AuditEvent::Admin {
            step: step.to_owned(),
            action: cmd.map(|c| c.command.action.name().to_owned()),
            digest: cmd.map(|c| c.command.digest().to_string()),
            nonce: cmd.map(|c| c.command.nonce.to_string()),
            approvers: approvers.iter().map(ToString::to_string).collect(),
            message: message.to_owned(),
            peer: peer.to_owned(),
        }
    }

    fn refuse(
        &self,
        signer: &Signer,
        id: u64,
        peer: &str,
        cmd: Option<&ApprovedCommand>,
        approvers: &[PublicKey],
        r: Refused,
    ) -> Response {
        tracing::warn!(peer, "admin command refused: {}", r.message);
        if let Err(e) = signer.audit(&self.event("refused", cmd, approvers, &r.message, peer)) {
            tracing::error!("admin refusal not audited: {e}");
        }
        error(id, r)
    }
}

fn no_hsm() -> Refused {
    Refused::new(
        ErrorCode::Backend,
        "this signer has no PKCS#11 backend: keys are generated and destroyed only inside an HSM",
    )
}

fn error(request_id: u64, r: Refused) -> Response {
    Response::Error(ErrorResponse { request_id, code: r.code, message: r.message })
}

/// The refusal when the policy has no `[admin]` section.
pub const NOT_CONFIGURED: &str = "admin commands are not enabled: add an [admin] section \
                                  (signer_id, keys, threshold) to signer.toml";
