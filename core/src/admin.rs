//! Administrative commands for the signer and their M-of-N approvals: what an administrator
//! proposes (`rempart admin propose`), what each YubiKey signs (`approve`), what travels inside
//! a [`crate::protocol::AdminRequest`] (`submit`), and the check the signer runs before it acts.
//!
//! An [`AdminCommand`] names one signer and one chain, one [`AdminAction`], an expiry and a
//! random [`Nonce`]. Its [`AdminCommand::digest`] is sha256 of a domain tag then the packed
//! command, so an approval can never be mistaken for (or replayed as) a transaction or block
//! signature. An [`Approval`] is an admin key and its signature over that digest.
//! [`verify_approvals`] accepts a command only with at least M distinct, valid approvals by
//! known admin keys before it expires; every refusal is a typed [`AdminError`].
//!
//! A proposal travels between administrators as a JSON file ([`Proposal`]): the packed command
//! in hex (what is signed) next to its readable fields (what a person reads), checked to agree
//! when the file is read, so nobody approves something other than what they were shown.
//!
//! This module does no I/O. What must never happen here: accepting a command whose approvals
//! do not verify over the exact packed bytes, counting one admin twice, or a panic on a hostile
//! file or frame.

use std::fmt;
use std::str::FromStr;

use serde::{Deserialize, Serialize};

use crate::checksum::Checksum256;
use crate::codec::{self, DecodeError, Pack, Reader, Unpack};
use crate::key::{KeyType, PublicKey, Signature};
use crate::name::Name;
use crate::time::TimePointSec;

#[cfg(test)]
mod tests;

/// Prefixed to the packed command before hashing: approvals are signatures over nothing else.
pub const DIGEST_DOMAIN: &[u8] = b"rempart-admin-command/1\0";

/// The longest a command may stay valid: its expiry at most this far past the time it is
/// checked. It bounds how long the signer must remember a nonce.
pub const MAX_VALIDITY_SECS: u32 = 7 * 24 * 3600;

/// The most approvals one command may carry.
pub const MAX_APPROVALS: usize = 32;

/// The `format` field of a proposal file.
pub const PROPOSAL_FORMAT: &str = "rempart-admin-proposal/1";

/// Why an admin command, approval or proposal file was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AdminError {
    /// The command's expiry has passed.
    #[error(
        "the command expired at {expires} (now {now}): propose it again with a later --expires"
    )]
    Expired {
        /// When it expired.
        expires: TimePointSec,
        /// The time it was checked.
        now: TimePointSec,
    },
    /// The expiry is further in the future than [`MAX_VALIDITY_SECS`].
    #[error(
        "the command expires at {expires}, more than {max_secs} s after now ({now}): propose \
         it again with a nearer expiry"
    )]
    ExpiryTooFar {
        /// The expiry given.
        expires: TimePointSec,
        /// The time it was checked.
        now: TimePointSec,
        /// The longest validity allowed.
        max_secs: u32,
    },
    /// Two approvals by the same admin key.
    #[error("admin key {0} approved twice: each admin counts once; remove the duplicate")]
    DuplicateAdmin(PublicKey),
    /// An approval by a key that is not one of the signer's admin keys.
    #[error(
        "{0} is not an admin key of this signer: only keys listed in [admin] keys of \
         signer.toml may approve"
    )]
    UnknownAdmin(PublicKey),
    /// A signature that is not the named admin's over this command's digest.
    #[error(
        "the approval by {0} does not verify over this command: the command was changed after \
         it was approved, or the approval belongs to another command"
    )]
    BadSignature(PublicKey),
    /// Fewer valid approvals than the threshold.
    #[error("{have} valid approval(s), {need} required: collect more approvals before submitting")]
    BelowThreshold {
        /// Valid approvals present.
        have: usize,
        /// The threshold M.
        need: usize,
    },
    /// More approvals than [`MAX_APPROVALS`].
    #[error("{count} approvals, more than the {max} a command may carry")]
    TooManyApprovals {
        /// Approvals given.
        count: usize,
        /// The limit.
        max: usize,
    },
    /// A threshold of zero would accept unapproved commands.
    #[error(
        "an approval threshold of 0 would accept unapproved commands: set [admin] threshold ≥ 1"
    )]
    ZeroThreshold,
    /// The command is for another signer.
    #[error("the command is for signer {found}, this is signer {expected}")]
    WrongSigner {
        /// This signer's id.
        expected: Name,
        /// The id in the command.
        found: Name,
    },
    /// The command is for another chain.
    #[error("the command is for chain {found}, this signer serves chain {expected}")]
    WrongChain {
        /// This signer's chain.
        expected: Checksum256,
        /// The chain in the command.
        found: Checksum256,
    },
    /// The proposal file is not valid JSON of the expected shape.
    #[error("the proposal file is not a valid {PROPOSAL_FORMAT} file: {0}")]
    Json(String),
    /// The packed command in the file does not decode.
    #[error("the packed command in the proposal file does not decode: {0}")]
    Decode(DecodeError),
    /// The readable fields and the packed command disagree.
    #[error(
        "the proposal file's readable fields disagree with its packed command ({field}): the \
         file was edited; do not approve it"
    )]
    Mismatch {
        /// The first field that disagrees.
        field: &'static str,
    },
}

/// A 16-byte random value that makes each command unique; the signer refuses one it has seen.
/// Written as 32 hex digits.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug)]
pub struct Nonce(pub [u8; 16]);

impl Nonce {
    /// A fresh nonce from the operating system's random source.
    pub fn random() -> Nonce {
        use rand_core::RngCore as _;
        let mut b = [0u8; 16];
        rand_core::OsRng.fill_bytes(&mut b);
        Nonce(b)
    }
}

impl fmt::Display for Nonce {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

/// A nonce that is not 32 hex digits.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("a nonce is 32 hex digits")]
pub struct NonceError;

impl FromStr for Nonce {
    type Err = NonceError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut b = [0u8; 16];
        hex::decode_to_slice(s, &mut b).map_err(|_| NonceError)?;
        Ok(Nonce(b))
    }
}

crate::serde_via_string!(Nonce);

impl Pack for Nonce {
    fn pack(&self, out: &mut Vec<u8>) {
        self.0.pack(out);
    }
}

impl Unpack for Nonce {
    const MIN_SIZE: usize = 16;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_array().map(Nonce)
    }
}

/// What an approved command does. The tag is a `varuint32` on the wire.
#[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
#[serde(tag = "kind", rename_all = "snake_case", deny_unknown_fields)]
pub enum AdminAction {
    /// Generate a new signing key for `producer` inside the HSM, in addition to its keys
    /// (tag 0). The result carries the new public key.
    AddKey {
        /// The producer account the key signs for.
        producer: Name,
        /// The curve of the new key.
        key_type: KeyType,
    },
    /// Generate the producer's next block-signing key inside the HSM (tag 1). The old key stays
    /// usable until it is retired, so the switch on chain can happen between two blocks.
    Rotate {
        /// The producer account.
        producer: Name,
        /// The curve of the new key.
        key_type: KeyType,
    },
    /// Stop signing with `key` for good (tag 2); `destroy` also deletes it from the HSM.
    Retire {
        /// The producer account.
        producer: Name,
        /// The key to retire.
        key: PublicKey,
        /// Delete the key from the HSM as well.
        destroy: bool,
    },
    /// Refuse every signing request until resumed (tag 3).
    Pause,
    /// Sign again after a pause (tag 4).
    Resume,
    /// Allow the signing policy file whose sha256 is given to replace the current one (tag 5).
    ReplacePolicy {
        /// sha256 of the new policy file's bytes.
        sha256: Checksum256,
    },
}

impl AdminAction {
    /// A short snake_case name, for audit lines and messages.
    pub fn name(&self) -> &'static str {
        match self {
            AdminAction::AddKey { .. } => "add_key",
            AdminAction::Rotate { .. } => "rotate",
            AdminAction::Retire { .. } => "retire",
            AdminAction::Pause => "pause",
            AdminAction::Resume => "resume",
            AdminAction::ReplacePolicy { .. } => "replace_policy",
        }
    }
}

impl fmt::Display for AdminAction {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            AdminAction::AddKey { producer, key_type } => {
                write!(f, "add a new {key_type} key for producer {producer}")
            }
            AdminAction::Rotate { producer, key_type } => {
                write!(f, "rotate producer {producer}'s block-signing key to a new {key_type} key")
            }
            AdminAction::Retire { producer, key, destroy } => {
                write!(f, "retire key {key} of producer {producer}")?;
                if *destroy { f.write_str(" and DESTROY it in the HSM") } else { Ok(()) }
            }
            AdminAction::Pause => f.write_str("PAUSE all signing"),
            AdminAction::Resume => f.write_str("resume signing"),
            AdminAction::ReplacePolicy { sha256 } => {
                write!(f, "replace the signing policy by the file with sha256 {sha256}")
            }
        }
    }
}

fn pack_key_type(k: KeyType, out: &mut Vec<u8>) {
    out.push(k.tag());
}

fn unpack_key_type(r: &mut Reader<'_>) -> Result<KeyType, DecodeError> {
    let at = r.position();
    match r.read_u8()? {
        0 => Ok(KeyType::K1),
        1 => Ok(KeyType::R1),
        tag => Err(DecodeError::UnknownTag { what: "key type", tag: u64::from(tag), at }),
    }
}

impl Pack for AdminAction {
    fn pack(&self, out: &mut Vec<u8>) {
        match self {
            AdminAction::AddKey { producer, key_type } => {
                codec::write_varuint32(out, 0);
                producer.pack(out);
                pack_key_type(*key_type, out);
            }
            AdminAction::Rotate { producer, key_type } => {
                codec::write_varuint32(out, 1);
                producer.pack(out);
                pack_key_type(*key_type, out);
            }
            AdminAction::Retire { producer, key, destroy } => {
                codec::write_varuint32(out, 2);
                producer.pack(out);
                key.pack(out);
                destroy.pack(out);
            }
            AdminAction::Pause => codec::write_varuint32(out, 3),
            AdminAction::Resume => codec::write_varuint32(out, 4),
            AdminAction::ReplacePolicy { sha256 } => {
                codec::write_varuint32(out, 5);
                sha256.pack(out);
            }
        }
    }
}

fn field<T: Unpack>(r: &mut Reader<'_>, name: &'static str) -> Result<T, DecodeError> {
    T::unpack(r).map_err(|e| e.in_field(name))
}

impl Unpack for AdminAction {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        Ok(match r.read_varuint32()? {
            0 => AdminAction::AddKey {
                producer: field(r, "producer")?,
                key_type: unpack_key_type(r).map_err(|e| e.in_field("key_type"))?,
            },
            1 => AdminAction::Rotate {
                producer: field(r, "producer")?,
                key_type: unpack_key_type(r).map_err(|e| e.in_field("key_type"))?,
            },
            2 => AdminAction::Retire {
                producer: field(r, "producer")?,
                key: field(r, "key")?,
                destroy: field(r, "destroy")?,
            },
            3 => AdminAction::Pause,
            4 => AdminAction::Resume,
            5 => AdminAction::ReplacePolicy { sha256: field(r, "sha256")? },
            tag => {
                return Err(DecodeError::UnknownTag {
                    what: "admin action",
                    tag: u64::from(tag),
                    at,
                });
            }
        })
    }
}

crate::packed_struct! {
    /// One command for one signer on one chain, as the admins approve it.
    #[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct AdminCommand {
        /// The signer that must execute it (`[admin] signer_id` in its signer.toml).
        pub signer_id: Name,
        /// The chain that signer serves.
        pub chain_id: Checksum256,
        /// What to do.
        pub action: AdminAction,
        /// After this second the command is refused.
        pub expires: TimePointSec,
        /// Random; the signer refuses a nonce it has executed or refused before.
        pub nonce: Nonce,
    }
}

impl AdminCommand {
    /// The packed bytes (what the digest commits to).
    pub fn packed(&self) -> Vec<u8> {
        codec::to_bytes(self)
    }

    /// The digest every approval signs: sha256([`DIGEST_DOMAIN`] ‖ packed command).
    pub fn digest(&self) -> Checksum256 {
        Checksum256::hash_parts(&[DIGEST_DOMAIN, &self.packed()])
    }

    /// Refuses a command for another signer or chain.
    pub fn check_target(&self, signer_id: Name, chain_id: &Checksum256) -> Result<(), AdminError> {
        if self.signer_id != signer_id {
            return Err(AdminError::WrongSigner { expected: signer_id, found: self.signer_id });
        }
        if &self.chain_id != chain_id {
            return Err(AdminError::WrongChain { expected: *chain_id, found: self.chain_id });
        }
        Ok(())
    }

    /// Refuses a command that has expired at `now`, or whose expiry is more than
    /// [`MAX_VALIDITY_SECS`] after `now`.
    pub fn check_expiry(&self, now: TimePointSec) -> Result<(), AdminError> {
        if now > self.expires {
            return Err(AdminError::Expired { expires: self.expires, now });
        }
        if self.expires.0 - now.0 > MAX_VALIDITY_SECS {
            return Err(AdminError::ExpiryTooFar {
                expires: self.expires,
                now,
                max_secs: MAX_VALIDITY_SECS,
            });
        }
        Ok(())
    }
}

impl fmt::Display for AdminCommand {
    /// What a person approves, on several lines.
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        writeln!(f, "action:   {}", self.action)?;
        writeln!(f, "signer:   {}", self.signer_id)?;
        writeln!(f, "chain:    {}", self.chain_id)?;
        writeln!(f, "expires:  {} UTC", self.expires)?;
        writeln!(f, "nonce:    {}", self.nonce)?;
        write!(f, "digest:   {}", self.digest())
    }
}

crate::packed_struct! {
    /// One admin's approval: the admin's public key and its signature over the command digest.
    #[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct Approval {
        /// The admin key (`PUB_R1_…` for a YubiKey's slot 9c).
        pub key: PublicKey,
        /// Its signature over [`AdminCommand::digest`].
        pub signature: Signature,
    }
}

impl Approval {
    /// Whether the signature is `key`'s over `digest`.
    pub fn verifies(&self, digest: &Checksum256) -> bool {
        self.signature.verify(digest, &self.key)
    }
}

crate::packed_struct! {
    /// A command with its approvals: the `command` bytes of a
    /// [`crate::protocol::AdminRequest`].
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct ApprovedCommand {
        /// The command.
        pub command: AdminCommand,
        /// The approvals collected.
        pub approvals: Vec<Approval>,
    }
}

/// Checks `approvals` of `cmd` against the signer's `admin_keys` and threshold M at `now`:
/// not expired (nor valid for longer than [`MAX_VALIDITY_SECS`]), each approval by a known
/// admin key, no admin twice, each signature valid over the digest, and at least `threshold` of
/// them. Returns the approving keys in the order given.
///
/// One bad approval refuses the whole command: a tampered or misaddressed approval is a sign
/// of trouble an operator must see, not something to count around.
pub fn verify_approvals(
    cmd: &AdminCommand,
    approvals: &[Approval],
    admin_keys: &[PublicKey],
    threshold: usize,
    now: TimePointSec,
) -> Result<Vec<PublicKey>, AdminError> {
    if threshold == 0 {
        return Err(AdminError::ZeroThreshold);
    }
    cmd.check_expiry(now)?;
    if approvals.len() > MAX_APPROVALS {
        return Err(AdminError::TooManyApprovals { count: approvals.len(), max: MAX_APPROVALS });
    }
    let digest = cmd.digest();
    let mut approvers: Vec<PublicKey> = Vec::with_capacity(approvals.len());
    for approval in approvals {
        if approvers.contains(&approval.key) {
            return Err(AdminError::DuplicateAdmin(approval.key));
        }
        if !admin_keys.contains(&approval.key) {
            return Err(AdminError::UnknownAdmin(approval.key));
        }
        if !approval.verifies(&digest) {
            return Err(AdminError::BadSignature(approval.key));
        }
        approvers.push(approval.key);
    }
    if approvers.len() < threshold {
        return Err(AdminError::BelowThreshold { have: approvers.len(), need: threshold });
    }
    Ok(approvers)
}

/// A proposal file: the packed command (hex), its readable fields and digest, and the approvals
/// collected so far. [`Proposal::from_json`] checks that all of them agree.
#[derive(Clone, PartialEq, Eq, Debug)]
pub struct Proposal {
    /// The command.
    pub command: AdminCommand,
    /// Approvals collected so far, each verified over the command's digest when read.
    pub approvals: Vec<Approval>,
}

/// The JSON shape of a proposal file.
#[derive(Serialize, Deserialize)]
#[serde(deny_unknown_fields)]
struct ProposalFile {
    format: String,
    /// What a person reads.
    command: AdminCommand,
    /// What is signed: the packed command, hex.
    packed_command: String,
    /// sha256(domain ‖ packed), hex.
    digest: Checksum256,
    approvals: Vec<Approval>,
}

impl Proposal {
    /// A proposal with no approvals yet.
    pub fn new(command: AdminCommand) -> Proposal {
        Proposal { command, approvals: Vec::new() }
    }

    /// Adds `approval` after checking it verifies over this command and that its key has not
    /// approved yet (a second approval by the same key replaces nothing and is refused).
    pub fn add_approval(&mut self, approval: Approval) -> Result<(), AdminError> {
        if self.approvals.iter().any(|a| a.key == approval.key) {
            return Err(AdminError::DuplicateAdmin(approval.key));
        }
        if self.approvals.len() >= MAX_APPROVALS {
            return Err(AdminError::TooManyApprovals {
                count: self.approvals.len() + 1,
                max: MAX_APPROVALS,
            });
        }
        if !approval.verifies(&self.command.digest()) {
            return Err(AdminError::BadSignature(approval.key));
        }
        self.approvals.push(approval);
        Ok(())
    }

    /// The bytes to put in a [`crate::protocol::AdminRequest`].
    pub fn to_request_bytes(&self) -> Vec<u8> {
        codec::to_bytes(&ApprovedCommand {
            command: self.command.clone(),
            approvals: self.approvals.clone(),
        })
    }

    /// The file's text: pretty JSON ending with a newline.
    pub fn to_json(&self) -> String {
        let file = ProposalFile {
            format: PROPOSAL_FORMAT.to_owned(),
            command: self.command.clone(),
            packed_command: hex::encode(self.command.packed()),
            digest: self.command.digest(),
            approvals: self.approvals.clone(),
        };
        // Every field serializes through Display or plain data: this cannot fail.
        let mut s = serde_json::to_string_pretty(&file).unwrap_or_default();
        s.push('\n');
        s
    }

    /// Reads a proposal file, checking the format, that the packed command decodes, that the
    /// readable fields and digest agree with it, and that every approval verifies over it and
    /// appears once.
    pub fn from_json(text: &str) -> Result<Proposal, AdminError> {
        let file: ProposalFile =
            serde_json::from_str(text).map_err(|e| AdminError::Json(e.to_string()))?;
        if file.format != PROPOSAL_FORMAT {
            return Err(AdminError::Json(format!(
                "format is {:?}, expected {PROPOSAL_FORMAT:?}",
                file.format
            )));
        }
        let packed = hex::decode(&file.packed_command)
            .map_err(|_| AdminError::Json("packed_command is not hex".to_owned()))?;
        let command: AdminCommand = codec::from_bytes(&packed).map_err(AdminError::Decode)?;
        let readable = &file.command;
        let field = if readable.signer_id != command.signer_id {
            Some("signer_id")
        } else if readable.chain_id != command.chain_id {
            Some("chain_id")
        } else if readable.action != command.action {
            Some("action")
        } else if readable.expires != command.expires {
            Some("expires")
        } else if readable.nonce != command.nonce {
            Some("nonce")
        } else if file.digest != command.digest() {
            Some("digest")
        } else {
            None
        };
        if let Some(field) = field {
            return Err(AdminError::Mismatch { field });
        }
        let mut proposal = Proposal::new(command);
        for approval in file.approvals {
            proposal.add_approval(approval)?;
        }
        Ok(proposal)
    }
}

crate::packed_struct! {
    /// What the signer answers to an executed command: the `result` bytes of a
    /// [`crate::protocol::AdminResponse`].
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct AdminOutcome {
        /// The digest of the command executed.
        pub digest: Checksum256,
        /// What was done, for the operator.
        pub summary: String,
        /// The new public key, for `add_key` and `rotate`.
        pub new_key: Option<PublicKey>,
    }
}
