//! The signer's sandbox: once keys are open and listeners bound, the process gives up everything
//! it does not need to keep answering sign requests, so that code execution inside it gains
//! almost nothing — no new programs, no new sockets, no files outside its state directory, no
//! privileges, no core dumps, no debugger, no swapped-out secrets.
//!
//! [`apply`] must run on the only thread of the process, **before** the tokio runtime (or any
//! other thread) starts: landlock and capabilities bind the calling thread only, so a worker
//! thread that already existed would keep the full rights. Bind the listeners with `std`, apply
//! the sandbox, then build the runtime and convert the listeners with `from_std`. [`apply`]
//! checks this and refuses otherwise. It must never leave the process half-sandboxed and
//! running: every step fails closed with an error that says what to change, and a weaker setting
//! is taken only when the configuration names it `dangerous_…`.
//!
//! The steps, in order: load and compile the seccomp policy (a bad policy changes nothing);
//! open the landlock paths; RLIMIT_CORE = 0; not dumpable; lock memory; no_new_privs; landlock;
//! drop every capability (bounding, ambient, inheritable, permitted, effective) and read them
//! back; last, the seccomp filters, applied to all threads, killing the process (SIGSYS, shell
//! status 159) on any system call the policy does not list.
//!
//! When the signer dies that way, the kernel log names the call: `audit: type=1326 …
//! comm="rempart-signer" sig=31 … syscall=N` (`dmesg`, or the audit log). Look N up in the
//! x86_64 system call table; add the call to the policy only with a comment saying why the
//! signer needs it, and never one of those the probe proves forbidden.

use std::fmt;
use std::path::{Path, PathBuf};
use std::str::FromStr;

use caps::CapSet;
use landlock::{
    ABI, Access, AccessFs, AccessNet, BitFlags, LandlockStatus, PathBeneath, PathFd, Ruleset,
    RulesetAttr, RulesetCreatedAttr, RulesetStatus, Scope,
};
use rustix::mm::{MlockAllFlags, mlockall};
use rustix::process::{
    DumpableBehavior, Resource, Rlimit, dumpable_behavior, getrlimit, set_dumpable_behavior,
    setrlimit,
};

pub mod probe;
mod seccomp;

pub use seccomp::{SeccompPolicy, SeccompPolicyError};

#[cfg(test)]
mod tests;

/// What the sandbox restricts the process to. Build it with [`SandboxConfig::new`] and set the
/// public fields; the defaults are the strict ones.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxConfig {
    /// The state directory (double-sign guard, audit log): the only tree the process may read
    /// and write after the sandbox is on (create, write, rename and remove files and
    /// directories; never execute, make devices, fifos, sockets or symlinks). `None` for a
    /// process that writes no file at all (the signer's WireGuard statistics reader).
    pub state_dir: Option<PathBuf>,
    /// The seccomp policy (seccompiler JSON, see [`SeccompPolicy`]), read before anything else.
    pub seccomp_policy: PathBuf,
    /// Trees the process may still read (files and directory listings). SoftHSM2 re-reads its
    /// token directory (the generation and object files, under read locks) at every signature,
    /// so its `directories.tokendir` must be listed here: otherwise the read fails with EACCES,
    /// SoftHSM2 opens a socket to syslog the error, and seccomp kills the process at the first
    /// signature.
    pub read_only_paths: Vec<PathBuf>,
    /// Further trees with the same rights as the state directory (e.g. an audit log kept
    /// elsewhere, SoftHSM2's token directory).
    pub read_write_paths: Vec<PathBuf>,
    /// How memory is locked against swapping; see [`MemoryLock`].
    pub memory_lock: MemoryLock,
    /// Run even when the kernel has no landlock at all (not built in, or not enabled at boot):
    /// the filesystem is then confined only by seccomp and file permissions. Off by default;
    /// without it such a kernel is an error.
    pub dangerous_allow_no_landlock: bool,
}

impl SandboxConfig {
    /// The strict configuration: read-write access to `state_dir` only, every page locked
    /// ([`MemoryLock::All`]), landlock required.
    pub fn new(state_dir: impl Into<PathBuf>, seccomp_policy: impl Into<PathBuf>) -> Self {
        Self {
            state_dir: Some(state_dir.into()),
            seccomp_policy: seccomp_policy.into(),
            read_only_paths: Vec::new(),
            read_write_paths: Vec::new(),
            memory_lock: MemoryLock::All,
            dangerous_allow_no_landlock: false,
        }
    }
}

impl SandboxConfig {
    /// The strict configuration for a process that writes no file: no state directory, so
    /// landlock grants nothing but the `read_only_paths` set afterwards; every page locked,
    /// landlock required. The signer's WireGuard statistics reader confines itself with it.
    pub fn without_state_dir(seccomp_policy: impl Into<PathBuf>) -> Self {
        Self { state_dir: None, ..Self::new(PathBuf::new(), seccomp_policy) }
    }
}

/// How the sandbox keeps secrets out of swap (`mlockall`).
#[derive(Clone, Copy, Debug, Default, PartialEq, Eq, serde::Deserialize, serde::Serialize)]
#[serde(rename_all = "snake_case")]
#[non_exhaustive]
pub enum MemoryLock {
    /// Every page, present and future (`MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT`). Needs
    /// RLIMIT_MEMLOCK unlimited once capabilities are gone (systemd `LimitMEMLOCK=infinity`, or
    /// a hard limit of infinity that the sandbox raises the soft limit to): with a finite limit
    /// the first allocation past it would fail, so a finite limit is an error instead.
    #[default]
    All,
    /// The pages mapped now, where the keys already are (`MCL_CURRENT | MCL_ONFAULT`); memory
    /// allocated later is not locked. Works with a finite RLIMIT_MEMLOCK when the process has
    /// CAP_IPC_LOCK at this point (root) or its whole address space fits the limit.
    Current,
    /// No locking: secrets may reach swap. For machines without swap or development only.
    DangerousOff,
}

impl MemoryLock {
    /// The name used in configuration files and on the command line.
    pub fn as_str(self) -> &'static str {
        match self {
            Self::All => "all",
            Self::Current => "current",
            Self::DangerousOff => "dangerous_off",
        }
    }
}

impl fmt::Display for MemoryLock {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for MemoryLock {
    type Err = SandboxError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "all" => Ok(Self::All),
            "current" => Ok(Self::Current),
            "dangerous_off" => Ok(Self::DangerousOff),
            other => Err(SandboxError::UnknownMemoryLock(other.to_owned())),
        }
    }
}

/// What landlock enforces, as found at [`apply`] time.
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub enum LandlockOutcome {
    /// Every requested restriction is enforced.
    Full {
        /// The landlock ABI used (the kernel's, capped at the newest this build knows).
        abi: i32,
    },
    /// An older kernel: the rights it knows are enforced, newer ones (e.g. TCP or signal
    /// scoping) are not.
    Partial {
        /// The landlock ABI used.
        abi: i32,
    },
    /// The kernel has no landlock and `dangerous_allow_no_landlock` was set.
    DangerouslyAbsent,
}

/// What [`apply`] put in place, read back from the kernel where it can be; log it at start.
#[derive(Clone, Debug, PartialEq, Eq)]
#[non_exhaustive]
pub struct SandboxReport {
    /// The landlock outcome.
    pub landlock: LandlockOutcome,
    /// How memory was locked.
    pub memory_lock: MemoryLock,
    /// Whether the capability bounding set was emptied. It is left as is only when the process
    /// had no CAP_SETPCAP to empty it (an unprivileged user): with no_new_privs set and execve
    /// forbidden, no capability can come back from it.
    pub bounding_set_cleared: bool,
    /// How many seccomp filters were installed.
    pub seccomp_filters: usize,
}

impl fmt::Display for SandboxReport {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let landlock = match self.landlock {
            LandlockOutcome::Full { abi } => format!("landlock ABI {abi} fully enforced"),
            LandlockOutcome::Partial { abi } => format!("landlock ABI {abi} partially enforced"),
            LandlockOutcome::DangerouslyAbsent => {
                "NO LANDLOCK (dangerous_allow_no_landlock)".to_owned()
            }
        };
        let bounding =
            if self.bounding_set_cleared { "cleared" } else { "unchanged (unprivileged)" };
        write!(
            f,
            "sandbox on: {landlock}; {} seccomp filter(s), kill on violation; memory lock {}; \
             capabilities dropped, bounding set {bounding}; no_new_privs; not dumpable; \
             RLIMIT_CORE=0",
            self.seccomp_filters, self.memory_lock
        )
    }
}

/// Why the sandbox could not be applied. The process must not serve after any of these.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum SandboxError {
    /// The seccomp policy is unreadable or invalid.
    #[error(transparent)]
    Policy(#[from] SeccompPolicyError),
    /// Other threads exist, which landlock and capability changes would not reach.
    #[error(
        "the process has {count} threads: apply the sandbox before starting the async runtime or \
         any thread (landlock and capabilities bind only the calling thread); bind listeners \
         with std, apply, then build the runtime and convert them with from_std"
    )]
    Threads {
        /// How many threads were found.
        count: usize,
    },
    /// The thread count could not be read.
    #[error("cannot count this process's threads in /proc/self/task ({0}); is /proc mounted?")]
    ThreadCount(#[source] std::io::Error),
    /// A system call of a sandbox step failed.
    #[error("sandbox step `{step}` failed: {source}")]
    Step {
        /// The step.
        step: &'static str,
        /// The error.
        #[source]
        source: std::io::Error,
    },
    /// RLIMIT_MEMLOCK is finite, so locking future memory would make allocations fail.
    #[error(
        "memory_lock = \"all\" needs RLIMIT_MEMLOCK unlimited, but it is soft {current} / hard \
         {maximum} bytes and cannot be raised: start the signer with LimitMEMLOCK=infinity \
         (systemd) or `ulimit -l unlimited`, or set memory_lock = \"current\" to lock only the \
         memory mapped so far (the keys)"
    )]
    MemoryLimit {
        /// The soft limit, as text.
        current: String,
        /// The hard limit, as text.
        maximum: String,
    },
    /// An unknown `memory_lock` value.
    #[error("unknown memory_lock `{0}`: use all, current or dangerous_off")]
    UnknownMemoryLock(String),
    /// A landlock path could not be opened.
    #[error("cannot open {path} for the landlock rules ({source}): create it or fix the path")]
    LandlockPath {
        /// The path.
        path: PathBuf,
        /// The error.
        #[source]
        source: landlock::PathFdError,
    },
    /// Landlock refused the ruleset.
    #[error("landlock: {0}")]
    Landlock(#[from] landlock::RulesetError),
    /// The kernel has no landlock and the configuration does not allow running without it.
    #[error(
        "the kernel has no landlock ({0}): refusing to run with the filesystem unconfined. Boot \
         a kernel with landlock enabled (CONFIG_SECURITY_LANDLOCK=y and `landlock` in lsm=), or \
         set dangerous_allow_no_landlock = true to accept the risk"
    )]
    NoLandlock(String),
    /// A capability call failed.
    #[error("cannot drop capabilities ({step}): {message}")]
    Capabilities {
        /// Which set.
        step: &'static str,
        /// The error text from the caps crate.
        message: String,
    },
    /// A check after the steps found something still open.
    #[error("sandbox check failed: {0}; refusing to continue")]
    Verify(String),
    /// The kernel refused the seccomp filter.
    #[error("cannot install seccomp filter `{name}`: {message}")]
    SeccompInstall {
        /// The filter's name in the policy.
        name: String,
        /// The error.
        message: String,
    },
}

/// Applies the sandbox to the whole process. Call it once, from the only thread, after the keys
/// are opened and the listeners bound, before the runtime starts (see the module docs). On
/// error, exit: some steps may already be in place, and none is ever undone.
pub fn apply(cfg: &SandboxConfig) -> Result<SandboxReport, SandboxError> {
    let policy = SeccompPolicy::load(&cfg.seccomp_policy)?;
    ensure_single_thread()?;
    let rules = landlock_rules(cfg)?;

    let no_core = Rlimit { current: Some(0), maximum: Some(0) };
    setrlimit(Resource::Core, no_core).map_err(step("setrlimit(RLIMIT_CORE, 0)"))?;
    set_dumpable_behavior(DumpableBehavior::NotDumpable)
        .map_err(step("prctl(PR_SET_DUMPABLE, 0)"))?;
    lock_memory(cfg.memory_lock)?;
    rustix::thread::set_no_new_privs(true).map_err(step("prctl(PR_SET_NO_NEW_PRIVS, 1)"))?;
    let landlock = restrict_filesystem(rules, cfg.dangerous_allow_no_landlock)?;
    let bounding_set_cleared = drop_capabilities()?;
    verify()?;
    quiet_panics();
    let seccomp_filters = policy.install()?;

    Ok(SandboxReport {
        landlock,
        memory_lock: cfg.memory_lock,
        bounding_set_cleared,
        seccomp_filters,
    })
}

/// From here a panic prints its thread, place and message, never a backtrace. Printing one
/// reads the working directory (`getcwd`) and the executable, which the seccomp filter and
/// landlock forbid: with `RUST_BACKTRACE` set, the default hook would turn a panic that tokio
/// contains in one task into the end of the whole signer (SIGSYS). Under landlock the frames
/// could not be named anyway.
fn quiet_panics() {
    std::panic::set_hook(Box::new(|info| {
        let thread = std::thread::current();
        eprintln!("thread '{}' {info}", thread.name().unwrap_or("<unnamed>"));
    }));
}

fn step(name: &'static str) -> impl FnOnce(rustix::io::Errno) -> SandboxError {
    move |errno| SandboxError::Step { step: name, source: errno.into() }
}

fn ensure_single_thread() -> Result<(), SandboxError> {
    let count = std::fs::read_dir("/proc/self/task").map_err(SandboxError::ThreadCount)?.count();
    if count == 1 { Ok(()) } else { Err(SandboxError::Threads { count }) }
}

fn lock_memory(mode: MemoryLock) -> Result<(), SandboxError> {
    match mode {
        MemoryLock::DangerousOff => Ok(()),
        MemoryLock::Current => mlockall(MlockAllFlags::CURRENT | MlockAllFlags::ONFAULT)
            .map_err(step("mlockall(MCL_CURRENT | MCL_ONFAULT)")),
        MemoryLock::All => {
            let limit = getrlimit(Resource::Memlock);
            if limit.current.is_some() || limit.maximum.is_some() {
                let unlimited = Rlimit { current: None, maximum: None };
                if setrlimit(Resource::Memlock, unlimited).is_err() {
                    let text = |v: Option<u64>| v.map_or("unlimited".to_owned(), |v| v.to_string());
                    return Err(SandboxError::MemoryLimit {
                        current: text(limit.current),
                        maximum: text(limit.maximum),
                    });
                }
            }
            mlockall(MlockAllFlags::CURRENT | MlockAllFlags::FUTURE | MlockAllFlags::ONFAULT)
                .map_err(step("mlockall(MCL_CURRENT | MCL_FUTURE | MCL_ONFAULT)"))
        }
    }
}

/// The landlock ABI this code was tested with: rights newer than this are not requested.
const LANDLOCK_ABI: ABI = ABI::V7;

/// Rights on the state directory and the read-write paths: files and directories, no execute,
/// no device, fifo, socket or symlink creation, no device ioctls.
fn read_write_access() -> BitFlags<AccessFs> {
    AccessFs::ReadFile
        | AccessFs::ReadDir
        | AccessFs::WriteFile
        | AccessFs::Truncate
        | AccessFs::MakeReg
        | AccessFs::MakeDir
        | AccessFs::RemoveFile
        | AccessFs::RemoveDir
        | AccessFs::Refer
}

fn read_only_access() -> BitFlags<AccessFs> {
    AccessFs::ReadFile | AccessFs::ReadDir
}

/// Opens every landlock path first, so a typo fails before anything is restricted. A path
/// naming a file (a PKCS#11 module's configuration, say) gets only the rights that apply to
/// files, so that landlock enforces the rule fully instead of reporting it partial.
fn landlock_rules(cfg: &SandboxConfig) -> Result<Vec<PathBeneath<PathFd>>, SandboxError> {
    let open = |path: &Path, access: BitFlags<AccessFs>| {
        let access = match std::fs::metadata(path) {
            Ok(m) if !m.is_dir() => access & AccessFs::from_file(LANDLOCK_ABI),
            _ => access,
        };
        PathFd::new(path)
            .map(|fd| PathBeneath::new(fd, access))
            .map_err(|source| SandboxError::LandlockPath { path: path.to_path_buf(), source })
    };
    let mut rules = Vec::new();
    for path in cfg.state_dir.iter().chain(&cfg.read_write_paths) {
        rules.push(open(path, read_write_access())?);
    }
    for path in &cfg.read_only_paths {
        rules.push(open(path, read_only_access())?);
    }
    Ok(rules)
}

fn restrict_filesystem(
    rules: Vec<PathBeneath<PathFd>>,
    allow_absent: bool,
) -> Result<LandlockOutcome, SandboxError> {
    // Every filesystem right, TCP bind/connect and abstract-socket/signal scoping are handled
    // (denied) except what the rules grant. No network rule is added: the listeners are bound.
    let status = Ruleset::default()
        .handle_access(AccessFs::from_all(LANDLOCK_ABI))?
        .handle_access(AccessNet::from_all(LANDLOCK_ABI))?
        .scope(Scope::from_all(LANDLOCK_ABI))?
        .create()?
        .add_rules(rules.into_iter().map(Ok::<_, landlock::RulesetError>))?
        .restrict_self()?;
    if !status.no_new_privs {
        return Err(SandboxError::Verify("landlock did not set no_new_privs".to_owned()));
    }
    landlock_outcome(&status.ruleset, status.landlock, allow_absent)
}

/// The fail-closed decision on what landlock reported.
fn landlock_outcome(
    ruleset: &RulesetStatus,
    landlock: LandlockStatus,
    allow_absent: bool,
) -> Result<LandlockOutcome, SandboxError> {
    let abi = match landlock {
        LandlockStatus::Available { effective_abi, .. } => Some(effective_abi as i32),
        LandlockStatus::NotEnabled | LandlockStatus::NotImplemented => None,
    };
    match (ruleset, abi) {
        (RulesetStatus::FullyEnforced, Some(abi)) => Ok(LandlockOutcome::Full { abi }),
        (RulesetStatus::PartiallyEnforced, Some(abi)) => Ok(LandlockOutcome::Partial { abi }),
        _ if allow_absent => Ok(LandlockOutcome::DangerouslyAbsent),
        _ => Err(SandboxError::NoLandlock(match landlock {
            LandlockStatus::NotEnabled => "supported but not enabled at boot".to_owned(),
            LandlockStatus::NotImplemented => "not built into this kernel".to_owned(),
            LandlockStatus::Available { .. } => format!("ruleset {ruleset:?}"),
        })),
    }
}

/// Empties every capability set; returns whether the bounding set was emptied too.
fn drop_capabilities() -> Result<bool, SandboxError> {
    let caps_err = |step: &'static str| {
        move |e: caps::errors::CapsError| SandboxError::Capabilities {
            step,
            message: e.to_string(),
        }
    };
    let can_clear_bounding = caps::has_cap(None, CapSet::Effective, caps::Capability::CAP_SETPCAP)
        .map_err(caps_err("read effective"))?;
    if can_clear_bounding {
        caps::clear(None, CapSet::Bounding).map_err(caps_err("bounding"))?;
    }
    caps::clear(None, CapSet::Ambient).map_err(caps_err("ambient"))?;
    caps::clear(None, CapSet::Inheritable).map_err(caps_err("inheritable"))?;
    caps::clear(None, CapSet::Permitted).map_err(caps_err("permitted and effective"))?;
    for (set, name) in [
        (CapSet::Effective, "effective"),
        (CapSet::Permitted, "permitted"),
        (CapSet::Inheritable, "inheritable"),
        (CapSet::Ambient, "ambient"),
    ] {
        let left = caps::read(None, set).map_err(caps_err(name))?;
        if !left.is_empty() {
            return Err(SandboxError::Verify(format!("{name} capabilities remain: {left:?}")));
        }
    }
    if can_clear_bounding {
        let left = caps::read(None, CapSet::Bounding).map_err(caps_err("bounding"))?;
        if !left.is_empty() {
            return Err(SandboxError::Verify(format!("bounding capabilities remain: {left:?}")));
        }
    }
    Ok(can_clear_bounding)
}

/// Reads back what the kernel holds before the last door (seccomp) closes.
fn verify() -> Result<(), SandboxError> {
    let core = getrlimit(Resource::Core);
    if core.current != Some(0) || core.maximum != Some(0) {
        return Err(SandboxError::Verify(format!("RLIMIT_CORE is {core:?}, not 0")));
    }
    match dumpable_behavior().map_err(step("prctl(PR_GET_DUMPABLE)"))? {
        DumpableBehavior::NotDumpable => {}
        other => return Err(SandboxError::Verify(format!("process is still {other:?}"))),
    }
    if !rustix::thread::no_new_privs().map_err(step("prctl(PR_GET_NO_NEW_PRIVS)"))? {
        return Err(SandboxError::Verify("no_new_privs is not set".to_owned()));
    }
    Ok(())
}
