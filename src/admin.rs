//! `rempart admin`: key ceremonies on an administrator's machine. `enroll` creates (or adopts)
//! the admin key in a YubiKey's PIV slot 9c and prints it as `PUB_R1_…`; `propose` writes a
//! command for one signer and chain to a proposal file; `show` prints what a file asks;
//! `approve` shows the command, asks the PIN and adds the YubiKey's signature over the command
//! digest; `submit` sends the approved command to the signer over its protocol.
//!
//! The YubiKey parts (`enroll`, `approve`) need the cargo feature `yubikey` (libpcsclite);
//! without it they say so. What must never happen here: signing anything but the digest of the
//! command that was shown, a PIN reaching argv, a log or an error message, or a proposal file
//! left half-written.

use std::io::Write;
use std::path::{Path, PathBuf};

use clap::{Args, Subcommand, ValueEnum};
use rempart_core::admin::{AdminAction, AdminCommand, AdminError, Nonce, Proposal};
use rempart_core::key::{KeyType, PublicKey};
use rempart_core::{Checksum256, Name, TimePointSec};

#[cfg(feature = "yubikey")]
mod card;
pub mod journal;
mod submit;

#[cfg(test)]
mod tests;

/// Exit status for bad input (a bad file, a bad argument value).
pub const EXIT_DATA: u8 = 65;
/// Exit status when the YubiKey or the signer cannot be reached.
pub const EXIT_UNAVAILABLE: u8 = 69;
/// Exit status when the card or the signer refused (wrong PIN, refused command).
pub const EXIT_REFUSED: u8 = 77;
/// Exit status when a file could not be read or written.
pub const EXIT_IO: u8 = 74;

/// Why an admin subcommand failed. No variant carries a PIN.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum AdminCliError {
    /// A proposal or command was refused by rempart-core's checks.
    #[error("{0}")]
    Command(#[from] AdminError),
    /// A file could not be read or written.
    #[error("{path}: {source}")]
    File {
        /// The file.
        path: PathBuf,
        /// The I/O error.
        #[source]
        source: std::io::Error,
    },
    /// A command-line value is invalid.
    #[error("{0}")]
    Usage(String),
    /// The command is missing a field its action needs, or has one it does not.
    #[error("--action {action} {problem}")]
    ActionArgs {
        /// The action.
        action: &'static str,
        /// What is wrong.
        problem: &'static str,
    },
    /// The file exists and `propose` never overwrites.
    #[error("{0} already exists: choose another --out or remove it first")]
    Exists(PathBuf),
    /// No YubiKey (or no card in the named reader).
    #[error("no YubiKey found{0}: plug it in, or check `pcsc_scan` and --reader")]
    NoCard(String),
    /// More than one YubiKey and no --reader to choose.
    #[error("several YubiKeys are present ({0}): choose one with --reader")]
    SeveralCards(String),
    /// The card refused the PIN.
    #[error("the YubiKey refused the PIN ({tries} tries left before it locks): nothing was signed")]
    WrongPin {
        /// Tries left.
        tries: u8,
    },
    /// The PIN is blocked.
    #[error("the YubiKey's PIN is blocked: unblock it with the PUK (ykman piv access unblock-pin)")]
    PinLocked,
    /// Slot 9c holds no key to adopt or sign with.
    #[error("slot 9c holds no P-256 key: run `rempart admin enroll` first")]
    NoKey,
    /// The card does not report slot 9c's public key (and no PIN was given to learn it).
    #[error(
        "this YubiKey does not report slot 9c's public key (firmware before 5.2.3): run enroll \
         --adopt with a PIN (typed, or --pin-file) so the key is learnt from a signature"
    )]
    NoMetadata,
    /// Any other card failure.
    #[error("YubiKey: {0}")]
    Card(String),
    /// The PIN could not be read.
    #[error("cannot read the PIN: {0}")]
    Pin(String),
    /// This build has no YubiKey support.
    #[error(
        "this rempart was built without YubiKey support: rebuild with `cargo build --features \
         yubikey` (needs libpcsclite)"
    )]
    NoYubikeySupport,
    /// The signer could not be reached or answered badly.
    #[error("signer {endpoint}: {message}")]
    Signer {
        /// Where it was reached.
        endpoint: String,
        /// What went wrong.
        message: String,
    },
    /// The audit journal cannot be opened, locked, verified or written; nothing was done, or
    /// (when appending failed) the step's outcome is not on record.
    #[error(
        "audit journal: {0}; fix it or name another with --audit (keep a broken journal as \
         evidence)"
    )]
    Audit(String),
    /// No --audit and no data directory (neither XDG_DATA_HOME nor HOME is set).
    #[error("no audit journal: set HOME or XDG_DATA_HOME, or pass --audit FILE")]
    NoAuditPath,
    /// The signer refused the command.
    #[error("the signer refused the command ({code}): {message}")]
    Refused {
        /// The protocol's error code name.
        code: String,
        /// The signer's explanation.
        message: String,
    },
}

impl AdminCliError {
    /// The process exit status for this error.
    pub fn exit_code(&self) -> u8 {
        match self {
            AdminCliError::File { .. } | AdminCliError::Audit(_) => EXIT_IO,
            AdminCliError::NoCard(_)
            | AdminCliError::SeveralCards(_)
            | AdminCliError::Card(_)
            | AdminCliError::NoYubikeySupport
            | AdminCliError::Signer { .. } => EXIT_UNAVAILABLE,
            AdminCliError::WrongPin { .. }
            | AdminCliError::PinLocked
            | AdminCliError::Refused { .. } => EXIT_REFUSED,
            AdminCliError::Usage(_)
            | AdminCliError::ActionArgs { .. }
            | AdminCliError::NoAuditPath => 64,
            _ => EXIT_DATA,
        }
    }
}

/// `rempart admin …`
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct AdminArgs {
    /// The append-only, hash-chained audit journal of propose, enroll, approve and submit
    /// (each success and each refusal, a wrong PIN included); check it with `rempart-signer
    /// audit verify FILE`. Default: admin-audit.jsonl in $XDG_DATA_HOME/rempart, else
    /// ~/.local/share/rempart.
    #[arg(long, global = true, value_name = "FILE")]
    pub audit: Option<PathBuf>,
    /// The ceremony step.
    #[command(subcommand)]
    pub step: AdminStep,
}

/// The steps of a key ceremony.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
pub enum AdminStep {
    /// Generate a P-256 admin key in the YubiKey's PIV slot 9c (or adopt the one there) and
    /// print it as PUB_R1_… for the signer's [admin] keys.
    Enroll(EnrollArgs),
    /// Write a command for one signer and chain to a new proposal file.
    Propose(ProposeArgs),
    /// Print what a proposal file asks and who approved it.
    Show {
        /// The proposal file.
        file: PathBuf,
    },
    /// Show the command, ask the YubiKey PIN and add this YubiKey's approval to the file.
    Approve(ApproveArgs),
    /// Send an approved proposal to the signer.
    Submit(SubmitArgs),
    /// List the PC/SC readers and whether a YubiKey answers in each.
    Readers,
}

/// Which PC/SC reader and how to reach the card.
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct CardArgs {
    /// Use the YubiKey in the reader whose name contains this text (needed when several are
    /// plugged in).
    #[arg(long)]
    pub reader: Option<String>,
}

/// The PIN policy of a new admin key.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum PinPolicyArg {
    /// The PIN before every signature (recommended for admin keys).
    Always,
    /// The PIN once per session.
    Once,
}

/// `rempart admin enroll`
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct EnrollArgs {
    /// The card.
    #[command(flatten)]
    pub card: CardArgs,
    /// When the card asks for the PIN.
    #[arg(long, value_enum, default_value = "always")]
    pub pin_policy: PinPolicyArg,
    /// Keep the key already in slot 9c instead of generating one.
    #[arg(long)]
    pub adopt: bool,
    /// With --adopt, on a card that does not report slot 9c's key: read the PIN from this file
    /// (first line; readable by you only) instead of the terminal.
    #[arg(long, requires = "adopt")]
    pub pin_file: Option<PathBuf>,
    /// A file holding the card's management key (48 hex digits, 3DES); the factory default
    /// when absent.
    #[arg(long)]
    pub mgm_key_file: Option<PathBuf>,
}

/// The actions a proposal can carry.
#[derive(Debug, Clone, Copy, PartialEq, Eq, ValueEnum)]
pub enum ActionArg {
    /// A new key for --producer, generated in the HSM.
    AddKey,
    /// The producer's next block-signing key, generated in the HSM.
    Rotate,
    /// Disable --key of --producer (and delete it with --destroy).
    Retire,
    /// Refuse all signing.
    Pause,
    /// Sign again.
    Resume,
    /// Allow the policy file with --policy-sha256.
    ReplacePolicy,
}

/// `rempart admin propose`
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ProposeArgs {
    /// The signer's id ([admin] signer_id of its signer.toml).
    #[arg(long)]
    pub signer_id: Name,
    /// The chain id the signer serves (64 hex digits).
    #[arg(long)]
    pub chain_id: Checksum256,
    /// What to do.
    #[arg(long, value_enum)]
    pub action: ActionArg,
    /// The producer account (add-key, rotate, retire).
    #[arg(long)]
    pub producer: Option<Name>,
    /// The curve of the new key (add-key, rotate).
    #[arg(long, default_value = "K1")]
    pub key_type: KeyType,
    /// The key to retire (retire).
    #[arg(long)]
    pub key: Option<PublicKey>,
    /// Also delete the retired key from the HSM (retire).
    #[arg(long)]
    pub destroy: bool,
    /// sha256 of the new policy file (replace-policy).
    #[arg(long)]
    pub policy_sha256: Option<Checksum256>,
    /// How long the command stays valid, in seconds (at most 7 days).
    #[arg(long, default_value_t = 3600)]
    pub expires_in: u32,
    /// The proposal file to create (never overwritten).
    #[arg(long)]
    pub out: PathBuf,
}

/// `rempart admin approve`
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct ApproveArgs {
    /// The proposal file; the approval is added to it.
    pub file: PathBuf,
    /// The card.
    #[command(flatten)]
    pub card: CardArgs,
    /// Read the PIN from this file (first line) instead of the terminal. For tests and
    /// scripted ceremonies; the file must be readable by you only.
    #[arg(long)]
    pub pin_file: Option<PathBuf>,
}

/// `rempart admin submit`
#[derive(Debug, Clone, PartialEq, Eq, Args)]
pub struct SubmitArgs {
    /// The approved proposal file.
    pub file: PathBuf,
    /// The signer: `unix:/path/to.sock` or `host:port` (its WireGuard address).
    #[arg(long)]
    pub signer: String,
    /// How long to wait for the answer, in milliseconds (rotate creates a key in the HSM).
    #[arg(long, default_value_t = 10_000)]
    pub timeout_ms: u64,
}

/// Runs one admin step, writing what the operator reads to `out`; returns the exit status.
/// `propose`, `enroll`, `approve` and `submit` are recorded in the audit journal, refusals
/// included; the journal is checked before the step starts.
pub fn run(args: &AdminArgs, out: &mut dyn Write) -> Result<u8, AdminCliError> {
    let stdout = Path::new("<stdout>");
    let open_journal = || {
        let path = match &args.audit {
            Some(p) => p.clone(),
            None => journal::default_path().ok_or(AdminCliError::NoAuditPath)?,
        };
        journal::Journal::open(&path)
    };
    match &args.step {
        AdminStep::Show { file } => {
            let p = read_proposal(file)?;
            show(&p, out).map_err(|e| io_err(stdout, e))?;
            Ok(0)
        }
        AdminStep::Readers => readers(out),
        AdminStep::Propose(a) => {
            let mut journal = open_journal()?;
            let result = propose(a, out, now());
            let p = result.as_ref().ok().and_then(|_| read_proposal(&a.out).ok());
            let done = format!("wrote {}", a.out.display());
            journal.record(
                "propose",
                p.as_ref(),
                &[],
                result.as_ref().map(|_| done.as_str()),
                "",
            )?;
            result
        }
        AdminStep::Enroll(a) => {
            let mut journal = open_journal()?;
            let result = enroll(a);
            let context = reader_context(&a.card);
            let done = result.as_ref().map(|k| format!("slot 9c holds {k}"));
            let keys: Vec<PublicKey> = result.iter().copied().collect();
            journal.record("enroll", None, &keys, done.as_deref().map_err(|e| *e), &context)?;
            writeln!(out, "{}", result?).map_err(|e| io_err(stdout, e))?;
            Ok(0)
        }
        AdminStep::Approve(a) => {
            let mut journal = open_journal()?;
            let p = read_proposal(&a.file).ok();
            let result = approve(a, out);
            let keys: Vec<PublicKey> = result.iter().copied().collect();
            let done = format!("approved {}", a.file.display());
            let context = reader_context(&a.card);
            let outcome = result.as_ref().map(|_| done.as_str());
            journal.record("approve", p.as_ref(), &keys, outcome, &context)?;
            result.map(|_| 0)
        }
        AdminStep::Submit(a) => {
            let mut journal = open_journal()?;
            let p = read_proposal(&a.file).ok();
            let result = submit::submit(a, out);
            let keys: Vec<PublicKey> =
                p.iter().flat_map(|p| p.approvals.iter().map(|x| x.key)).collect();
            let context = format!("signer {}", a.signer);
            journal.record("submit", p.as_ref(), &keys, result.as_deref(), &context)?;
            result.map(|_| 0)
        }
    }
}

/// The reader a card step used, for the journal.
fn reader_context(card: &CardArgs) -> String {
    card.reader.as_ref().map(|r| format!("reader {r}")).unwrap_or_default()
}

/// The current UTC second.
fn now() -> TimePointSec {
    let secs = std::time::SystemTime::now()
        .duration_since(std::time::UNIX_EPOCH)
        .map(|d| d.as_secs())
        .unwrap_or(0);
    TimePointSec(u32::try_from(secs).unwrap_or(u32::MAX))
}

fn io_err(path: &Path, source: std::io::Error) -> AdminCliError {
    AdminCliError::File { path: path.to_path_buf(), source }
}

/// Builds the action from the flags, refusing flags that do not belong to it.
pub fn action_from_args(a: &ProposeArgs) -> Result<AdminAction, AdminCliError> {
    let name = match a.action {
        ActionArg::AddKey => "add-key",
        ActionArg::Rotate => "rotate",
        ActionArg::Retire => "retire",
        ActionArg::Pause => "pause",
        ActionArg::Resume => "resume",
        ActionArg::ReplacePolicy => "replace-policy",
    };
    let err = |problem| AdminCliError::ActionArgs { action: name, problem };
    let needs_producer =
        matches!(a.action, ActionArg::AddKey | ActionArg::Rotate | ActionArg::Retire);
    if !needs_producer && a.producer.is_some() {
        return Err(err("takes no --producer"));
    }
    if a.action != ActionArg::Retire && (a.key.is_some() || a.destroy) {
        return Err(err("takes no --key or --destroy"));
    }
    if a.action != ActionArg::ReplacePolicy && a.policy_sha256.is_some() {
        return Err(err("takes no --policy-sha256"));
    }
    let producer = || a.producer.ok_or_else(|| err("needs --producer"));
    Ok(match a.action {
        ActionArg::AddKey => AdminAction::AddKey { producer: producer()?, key_type: a.key_type },
        ActionArg::Rotate => AdminAction::Rotate { producer: producer()?, key_type: a.key_type },
        ActionArg::Retire => AdminAction::Retire {
            producer: producer()?,
            key: a.key.ok_or_else(|| err("needs --key"))?,
            destroy: a.destroy,
        },
        ActionArg::Pause => AdminAction::Pause,
        ActionArg::Resume => AdminAction::Resume,
        ActionArg::ReplacePolicy => AdminAction::ReplacePolicy {
            sha256: a.policy_sha256.ok_or_else(|| err("needs --policy-sha256"))?,
        },
    })
}

/// `propose`: a new command with a random nonce, expiring `expires_in` seconds after `now`.
pub fn propose(
    a: &ProposeArgs,
    out: &mut dyn Write,
    now: TimePointSec,
) -> Result<u8, AdminCliError> {
    let action = action_from_args(a)?;
    if a.expires_in == 0 || a.expires_in > rempart_core::admin::MAX_VALIDITY_SECS {
        return Err(AdminCliError::Usage(format!(
            "--expires-in must be 1..={} seconds",
            rempart_core::admin::MAX_VALIDITY_SECS
        )));
    }
    let command = AdminCommand {
        signer_id: a.signer_id,
        chain_id: a.chain_id,
        action,
        expires: TimePointSec(now.0.saturating_add(a.expires_in)),
        nonce: Nonce::random(),
    };
    let proposal = Proposal::new(command);
    write_new(&a.out, &proposal.to_json())?;
    let stdout = Path::new("<stdout>");
    writeln!(out, "wrote {}", a.out.display()).map_err(|e| io_err(stdout, e))?;
    show(&proposal, out).map_err(|e| io_err(stdout, e))?;
    Ok(0)
}

/// Prints the command and its approvals.
pub fn show(p: &Proposal, out: &mut dyn Write) -> std::io::Result<()> {
    writeln!(out, "{}", p.command)?;
    writeln!(out, "approvals: {}", p.approvals.len())?;
    for a in &p.approvals {
        writeln!(out, "  {}", a.key)?;
    }
    Ok(())
}

/// Reads and checks a proposal file.
pub fn read_proposal(path: &Path) -> Result<Proposal, AdminCliError> {
    let text = std::fs::read_to_string(path).map_err(|e| io_err(path, e))?;
    Ok(Proposal::from_json(&text)?)
}

/// Creates `path` with `text`, refusing to replace an existing file.
fn write_new(path: &Path, text: &str) -> Result<(), AdminCliError> {
    let mut f =
        std::fs::OpenOptions::new().write(true).create_new(true).open(path).map_err(|e| {
            if e.kind() == std::io::ErrorKind::AlreadyExists {
                AdminCliError::Exists(path.to_path_buf())
            } else {
                io_err(path, e)
            }
        })?;
    f.write_all(text.as_bytes()).and_then(|()| f.sync_all()).map_err(|e| io_err(path, e))
}

/// Replaces `path` with `text` atomically: a temporary file beside it, fsync, rename, fsync
/// of the directory. A crash leaves the old file or the new one, never half of either.
// Only `approve` (feature `yubikey`) and the tests replace files.
#[cfg_attr(not(feature = "yubikey"), allow(dead_code))]
fn replace_atomically(path: &Path, text: &str) -> Result<(), AdminCliError> {
    let dir = path.parent().filter(|d| !d.as_os_str().is_empty()).unwrap_or(Path::new("."));
    let name = path.file_name().map(|n| n.to_string_lossy().into_owned()).unwrap_or_default();
    let tmp = dir.join(format!(".{name}.tmp.{}", std::process::id()));
    let write = || -> std::io::Result<()> {
        let mut f = std::fs::File::create(&tmp)?;
        f.write_all(text.as_bytes())?;
        f.sync_all()?;
        std::fs::rename(&tmp, path)?;
        std::fs::File::open(dir)?.sync_all()
    };
    write().map_err(|e| {
        let _ = std::fs::remove_file(&tmp);
        io_err(path, e)
    })
}

#[cfg(feature = "yubikey")]
fn enroll(a: &EnrollArgs) -> Result<PublicKey, AdminCliError> {
    let mgm = match &a.mgm_key_file {
        Some(p) => Some(read_secret_line(p)?),
        None => None,
    };
    let mut yk = card::open(a.card.reader.as_deref())?;
    if a.adopt {
        match card::public_key(&mut yk) {
            Err(AdminCliError::NoMetadata) => {
                let pin = read_pin(a.pin_file.as_deref(), "YubiKey PIN to read slot 9c's key: ")?;
                card::public_key_by_signing(&mut yk, pin.as_bytes())
            }
            other => other,
        }
    } else {
        card::generate(&mut yk, a.pin_policy, mgm.as_deref().map(String::as_str))
    }
}

#[cfg(feature = "yubikey")]
fn readers(out: &mut dyn Write) -> Result<u8, AdminCliError> {
    for (name, present) in card::readers()? {
        let state = if present { "YubiKey" } else { "no YubiKey" };
        writeln!(out, "{name}: {state}").map_err(|e| io_err(Path::new("<stdout>"), e))?;
    }
    Ok(0)
}

#[cfg(not(feature = "yubikey"))]
fn readers(_: &mut dyn Write) -> Result<u8, AdminCliError> {
    Err(AdminCliError::NoYubikeySupport)
}

#[cfg(not(feature = "yubikey"))]
fn enroll(_: &EnrollArgs) -> Result<PublicKey, AdminCliError> {
    Err(AdminCliError::NoYubikeySupport)
}

/// The first line of a secret file, without its line ending.
#[cfg(feature = "yubikey")]
fn read_secret_line(path: &Path) -> Result<zeroize::Zeroizing<String>, AdminCliError> {
    use std::os::unix::fs::PermissionsExt as _;
    let mode = std::fs::metadata(path).map_err(|e| io_err(path, e))?.permissions().mode();
    if mode & 0o077 != 0 {
        return Err(AdminCliError::Pin(format!(
            "{} has mode {:03o}: other users could read it; run chmod 600 on it",
            path.display(),
            mode & 0o777
        )));
    }
    let text = zeroize::Zeroizing::new(std::fs::read_to_string(path).map_err(|e| io_err(path, e))?);
    let line = text.lines().next().unwrap_or("");
    Ok(zeroize::Zeroizing::new(line.to_owned()))
}

/// The PIN from `file` (see [`read_secret_line`]) or typed at `prompt`.
#[cfg(feature = "yubikey")]
fn read_pin(
    file: Option<&Path>,
    prompt: &str,
) -> Result<zeroize::Zeroizing<String>, AdminCliError> {
    match file {
        Some(p) => read_secret_line(p),
        None => Ok(zeroize::Zeroizing::new(
            rpassword::prompt_password(prompt).map_err(|e| AdminCliError::Pin(e.to_string()))?,
        )),
    }
}

/// Adds the card's approval to the file; returns the approving key.
#[cfg(feature = "yubikey")]
fn approve(a: &ApproveArgs, out: &mut dyn Write) -> Result<PublicKey, AdminCliError> {
    let stdout = Path::new("<stdout>");
    let mut proposal = read_proposal(&a.file)?;
    writeln!(out, "You are approving:").map_err(|e| io_err(stdout, e))?;
    show(&proposal, out).map_err(|e| io_err(stdout, e))?;
    out.flush().map_err(|e| io_err(stdout, e))?;
    let mut yk = card::open(a.card.reader.as_deref())?;
    let pin = read_pin(a.pin_file.as_deref(), "YubiKey PIN to approve this command: ")?;
    let approval = card::approve(&mut yk, pin.as_bytes(), &proposal.command)?;
    let key = approval.key;
    proposal.add_approval(approval)?;
    replace_atomically(&a.file, &proposal.to_json())?;
    writeln!(
        out,
        "approved by {key}; {} approval(s) in {}",
        proposal.approvals.len(),
        a.file.display()
    )
    .map_err(|e| io_err(stdout, e))?;
    Ok(key)
}

#[cfg(not(feature = "yubikey"))]
fn approve(_: &ApproveArgs, _: &mut dyn Write) -> Result<PublicKey, AdminCliError> {
    Err(AdminCliError::NoYubikeySupport)
}
