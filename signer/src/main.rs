//! The `rempart-signer` binary: parses the command line, calls the library, maps outcomes to
//! exit codes (64 configuration, 65 data such as a broken audit log or guard state, 69 HSM
//! unavailable, 70 sandbox or internal failure, 71 OS).
//!
//! It stays thin and keeps the start-up order the sandbox needs: everything up to
//! `Daemon::sandbox` runs on the only thread; the tokio runtime is built after it. It never
//! takes a PIN or a key on the command line.

use std::ffi::OsString;
use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand, ValueEnum};
use rempart_core::BlockTimestamp;
use rempart_core::key::KeyType;
use rempart_signer::audit;
use rempart_signer::daemon::Daemon;
use rempart_signer::guard::{Guard, GuardKey};
use rempart_signer::policy::{BackendConfig, PinSource, Policy};

const EXIT_CONFIG: u8 = 64;
const EXIT_DATA: u8 = 65;
const EXIT_UNAVAILABLE: u8 = 69;
const EXIT_SOFTWARE: u8 = 70;

#[derive(Parser)]
#[command(name = "rempart-signer", version, about = "HSM-backed block-signing daemon")]
struct Cli {
    /// Log format on stderr.
    #[arg(long, value_enum, default_value_t = LogFormat::Text, global = true)]
    log_format: LogFormat,
    #[command(subcommand)]
    command: Command,
}

#[derive(Clone, Copy, ValueEnum)]
enum LogFormat {
    Text,
    Json,
}

#[derive(Subcommand)]
enum Command {
    /// Run the daemon.
    Run {
        /// The signing policy (signer.toml).
        #[arg(long)]
        policy: PathBuf,
        /// Stop as on SIGTERM when stdin reaches end of file: `rempart up` holds the other end
        /// of the pipe, so the signer never outlives it, even when it is killed with SIGKILL.
        /// The thread reading stdin starts after the sandbox, so it is confined like the rest.
        #[arg(long, hide = true)]
        exit_with_stdin: bool,
    },
    /// Validate a policy file and exit.
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Generate a key pair inside a PKCS#11 token and print its public key.
    Keygen {
        /// Take module, token and PIN source from this policy's [backend.pkcs11].
        #[arg(long)]
        policy: Option<PathBuf>,
        /// The PKCS#11 module (without --policy).
        #[arg(long)]
        module: Option<PathBuf>,
        /// The token label (without --policy).
        #[arg(long)]
        token_label: Option<String>,
        /// A file holding the user PIN (without --policy).
        #[arg(long)]
        pin_file: Option<PathBuf>,
        /// An environment variable holding the user PIN (without --policy).
        #[arg(long)]
        pin_env: Option<String>,
        /// k1 (secp256k1) or r1 (P-256).
        #[arg(long)]
        key_type: String,
        /// CKA_LABEL of the new pair.
        #[arg(long)]
        label: String,
    },
    /// The audit log.
    Audit {
        #[command(subcommand)]
        command: AuditCommand,
    },
    /// The double-sign guard state.
    Guard {
        #[command(subcommand)]
        command: GuardCommand,
    },
}

#[derive(Subcommand)]
enum AuditCommand {
    /// Check the hash chain; report the first broken line. Several files are checked in order
    /// as one chain, each continuing the one before (`audit.jsonl.[0-9]* audit.jsonl`).
    Verify {
        /// The audit logs, oldest first.
        #[arg(required = true)]
        files: Vec<PathBuf>,
    },
}

#[derive(Subcommand)]
enum GuardCommand {
    /// Create the guard state of every producer in the policy that has none. Never overwrites.
    Init {
        /// The signing policy.
        #[arg(long)]
        policy: PathBuf,
        /// Only this producer.
        #[arg(long)]
        producer: Option<String>,
        /// Never sign at or below this block (a key that signed elsewhere before).
        #[arg(long, default_value_t = 0)]
        min_block: u32,
        /// Never sign at or below this slot.
        #[arg(long, default_value_t = 0)]
        min_slot: u32,
    },
}

fn init_logging(format: LogFormat) {
    let filter = tracing_subscriber::EnvFilter::try_from_env("REMPART_LOG")
        .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info"));
    // In place until `run` has sandboxed the process, from a thread of its own after that.
    let builder = tracing_subscriber::fmt()
        .with_env_filter(filter)
        .with_writer(rempart_core::log::deferred_stderr);
    match format {
        LogFormat::Text => builder.init(),
        LogFormat::Json => builder.json().init(),
    }
}

fn main() -> ExitCode {
    let args: Vec<OsString> = std::env::args_os().collect();
    if args.get(1).is_some_and(|a| a == "sandbox-probe") {
        return rempart_signer::sandbox::probe::main(args[2..].to_vec());
    }
    #[cfg(feature = "wireguard")]
    if args.get(1).is_some_and(|a| a == rempart_signer::wireguard::reader::SUBCOMMAND) {
        return rempart_signer::wireguard::reader::main(args[2..].to_vec());
    }
    let cli = Cli::parse();
    init_logging(cli.log_format);
    match cli.command {
        Command::Run { policy, exit_with_stdin } => run(&policy, exit_with_stdin),
        Command::Check { file } => match Policy::load(&file) {
            Ok(p) => {
                println!(
                    "{}: ok (chain {}, {} producer(s), backend {})",
                    file.display(),
                    p.chain_id,
                    p.producers.len(),
                    match p.backend {
                        BackendConfig::Pkcs11(_) => "pkcs11",
                        BackendConfig::Soft(_) => "soft",
                        BackendConfig::Yubikey(_) => "yubikey",
                        _ => "other",
                    }
                );
                #[cfg(feature = "wireguard")]
                if let Some(w) = rempart_signer::wireguard::reader::missing_policy_warning(&p) {
                    eprintln!("rempart-signer: warning: {w}");
                }
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_CONFIG, &e),
        },
        Command::Keygen { policy, module, token_label, pin_file, pin_env, key_type, label } => {
            keygen(policy, module, token_label, pin_file, pin_env, &key_type, &label)
        }
        Command::Audit { command: AuditCommand::Verify { files } } => {
            match audit::verify_chain(&files) {
                Ok(v) => {
                    let (first, last) = (v.first_seq, v.first_seq + v.lines.saturating_sub(1));
                    let named = match files.as_slice() {
                        [one] => one.display().to_string(),
                        all => format!("{} files", all.len()),
                    };
                    let from = v.continues.map(|c| format!(", continuing {c}")).unwrap_or_default();
                    println!(
                        "{named}: {} line(s) (seq {first}..={last}{from}), chain intact",
                        v.lines
                    );
                    ExitCode::SUCCESS
                }
                Err(e @ audit::AuditError::Broken { .. }) => fail(EXIT_DATA, &e),
                Err(e) => fail(EXIT_CONFIG, &e),
            }
        }
        Command::Guard {
            command: GuardCommand::Init { policy, producer, min_block, min_slot },
        } => guard_init(&policy, producer.as_deref(), min_block, min_slot),
    }
}

fn fail(code: u8, e: &dyn std::fmt::Display) -> ExitCode {
    eprintln!("rempart-signer: {e}");
    ExitCode::from(code)
}

fn run(policy: &std::path::Path, exit_with_stdin: bool) -> ExitCode {
    let daemon = match Daemon::prepare(policy) {
        Ok(d) => d,
        Err(e) => return fail(e.exit_code(), &e),
    };
    if let Err(e) = daemon.sandbox() {
        return fail(e.exit_code(), &e);
    }
    // Only now may a thread start. From here a stalled reader of stderr costs log lines
    // (counted in the metrics), never a signature: a full pipe no longer blocks the thread
    // that logs.
    let log = rempart_core::log::start_deferred("signer-log");
    let runtime = match tokio::runtime::Builder::new_multi_thread()
        .worker_threads(2)
        .max_blocking_threads(16)
        .enable_all()
        .build()
    {
        Ok(r) => r,
        Err(e) => return fail(EXIT_SOFTWARE, &e),
    };
    // The handlers are installed before serving starts: a SIGTERM right after the daemon says
    // it serves stops it cleanly (a stop line in the audit log), never by the default action.
    // SIGXFSZ is caught too: a write past the file-size limit then fails with EFBIG, which the
    // audit log and the guard handle (nothing released), instead of ending the process.
    let result = runtime.block_on(async {
        use tokio::signal::unix::{SignalKind, signal};
        let xfsz = SignalKind::from_raw(rustix::process::Signal::XFSZ.as_raw());
        let handlers =
            (signal(SignalKind::terminate()), signal(SignalKind::interrupt()), signal(xfsz));
        daemon
            .serve(async move {
                let (Ok(mut term), Ok(mut int), Ok(mut xfsz)) = handlers else {
                    return "cannot install signal handlers".to_string();
                };
                let closed = rempart_signer::daemon::stdin_closed(exit_with_stdin);
                tokio::pin!(closed);
                loop {
                    tokio::select! {
                        _ = term.recv() => return "SIGTERM".to_string(),
                        _ = int.recv() => return "SIGINT".to_string(),
                        () = &mut closed => return "stdin closed".to_string(),
                        Some(()) = xfsz.recv() => tracing::error!(
                            "a write reached the file-size limit (SIGXFSZ, RLIMIT_FSIZE) and \
                             failed; nothing it was for was released. Raise the limit (systemd \
                             LimitFSIZE=) for the signer"
                        ),
                    }
                }
            })
            .await
    });
    // Queued lines first (a second at most for a stalled reader), then the last word.
    drop(log);
    match result {
        Ok(()) => ExitCode::SUCCESS,
        Err(e) => fail(e.exit_code(), &e),
    }
}

#[cfg_attr(not(feature = "pkcs11"), allow(unused_variables))]
fn keygen(
    policy: Option<PathBuf>,
    module: Option<PathBuf>,
    token_label: Option<String>,
    pin_file: Option<PathBuf>,
    pin_env: Option<String>,
    key_type: &str,
    label: &str,
) -> ExitCode {
    let key_type: KeyType = match key_type.parse() {
        Ok(k) => k,
        Err(e) => return fail(EXIT_CONFIG, &format!("--key-type: {e}")),
    };
    let (module, token, pin) = match policy {
        Some(p) => match Policy::load(&p) {
            Ok(Policy { backend: BackendConfig::Pkcs11(c), .. }) => {
                (c.module, c.token_label, c.pin)
            }
            Ok(_) => return fail(EXIT_CONFIG, &"the policy's backend is not pkcs11"),
            Err(e) => return fail(EXIT_CONFIG, &e),
        },
        None => {
            let pin = match (pin_file, pin_env) {
                (Some(f), None) => PinSource::File(f),
                (None, Some(v)) => PinSource::Env(v),
                _ => return fail(EXIT_CONFIG, &"give exactly one of --pin-file or --pin-env"),
            };
            let (Some(m), Some(t)) = (module, token_label) else {
                return fail(EXIT_CONFIG, &"give --policy, or --module and --token-label");
            };
            (m, t, pin)
        }
    };
    #[cfg(feature = "pkcs11")]
    {
        match rempart_signer::keyring::pkcs11::generate(&module, &token, &pin, key_type, label) {
            Ok(key) => {
                println!("{key}");
                ExitCode::SUCCESS
            }
            Err(e) => fail(EXIT_UNAVAILABLE, &e),
        }
    }
    #[cfg(not(feature = "pkcs11"))]
    fail(EXIT_CONFIG, &"this build has no pkcs11 backend")
}

fn guard_init(
    policy: &std::path::Path,
    producer: Option<&str>,
    min_block: u32,
    min_slot: u32,
) -> ExitCode {
    let policy = match Policy::load(policy) {
        Ok(p) => p,
        Err(e) => return fail(EXIT_CONFIG, &e),
    };
    let guard = Guard::new(&policy.state_dir);
    // A running signer keeps its watermarks in memory and would write over what this creates.
    let _lock = match guard.lock() {
        Ok(lock) => lock,
        Err(e) => return fail(EXIT_DATA, &e),
    };
    let mut failed = false;
    let mut matched = false;
    for p in &policy.producers {
        if producer.is_some_and(|name| name != p.account.to_string()) {
            continue;
        }
        matched = true;
        let key = GuardKey { chain_id: policy.chain_id, producer: p.account, key: p.key };
        match guard.init(&key, min_block, BlockTimestamp(min_slot)) {
            Ok(path) => println!("created {} for {} {}", path.display(), p.account, p.key),
            Err(e) => {
                eprintln!("rempart-signer: {e}");
                failed = true;
            }
        }
    }
    if !matched {
        return fail(EXIT_CONFIG, &"no producer in the policy matches --producer");
    }
    if failed { ExitCode::from(EXIT_DATA) } else { ExitCode::SUCCESS }
}
