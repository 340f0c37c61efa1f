//! The `rempart-gateway` binary: argument parsing, logging setup and exit codes around the
//! library. It must stay thin: no gateway logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rempart_gateway::{Config, GatewayError, Listeners, Policy, run};
use tokio::signal::unix::{SignalKind, signal};

/// mimalloc instead of glibc's allocator: the request path allocates and frees many small
/// buffers (headers, frames, records) from thread-local heaps, where glibc's arenas spent a
/// tenth of the gateway's user time under load.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Exit code for an invalid configuration (sysexits EX_USAGE).
const EXIT_CONFIG: u8 = 64;
/// Exit code for a runtime failure (sysexits EX_SOFTWARE).
const EXIT_RUNTIME: u8 = 70;

#[derive(Parser)]
#[command(name = "rempart-gateway", version, about = "TLS edge of the rempart perimeter")]
struct Cli {
    #[command(subcommand)]
    command: Command,
}

#[derive(Subcommand)]
enum Command {
    /// Validate a policy file: prints OK, or the error with its line and column (exit 64).
    Check {
        /// The policy file.
        file: PathBuf,
    },
    /// Serve: listen on the policy's addresses until SIGINT or SIGTERM; SIGHUP or a change of
    /// the file reloads the policy.
    Serve {
        /// The policy file.
        #[arg(long, default_value = "policies/gateway.toml")]
        policy: PathBuf,
        /// Stop as on SIGTERM when stdin reaches end of file: `rempart up` holds the other end
        /// of the pipe, so the gateway never outlives it, even when it is killed with SIGKILL.
        #[arg(long, hide = true)]
        exit_with_stdin: bool,
        /// Threads serving TLS connections, each with its own event loop (default: one per
        /// CPU core).
        #[arg(long)]
        workers: Option<usize>,
    },
    /// Write a development CA and a localhost server certificate (never for production).
    DevCert {
        /// Directory to write ca.pem, server.pem and server.key into.
        #[arg(long, default_value = "certs")]
        out: PathBuf,
    },
}

fn main() -> ExitCode {
    let cli = Cli::parse();
    match cli.command {
        Command::Check { file } => match Policy::load(&file) {
            Ok(_) => {
                println!("OK");
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
        },
        Command::Serve { policy, exit_with_stdin, workers } => {
            serve(policy, exit_with_stdin, workers)
        }
        Command::DevCert { out } => match rempart_gateway::dev_cert::write_dev_certs(&out) {
            Ok(files) => {
                println!(
                    "wrote {}, {} and {} (development only)",
                    files.ca.display(),
                    files.cert.display(),
                    files.key.display()
                );
                ExitCode::SUCCESS
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        },
    }
}

/// With `enabled` (`--exit-with-stdin`), resolves once stdin, a pipe from `rempart up`, reaches
/// end of file or fails: `up` has exited, even by SIGKILL. Read on the runtime, without a thread.
/// Without `enabled`, or when stdin is not a pipe (logged), never resolves.
async fn stdin_closed(enabled: bool) {
    use std::os::fd::AsFd;
    use tokio::io::AsyncReadExt;
    if enabled {
        let stdin = std::io::stdin().as_fd().try_clone_to_owned();
        match stdin.and_then(tokio::net::unix::pipe::Receiver::from_owned_fd) {
            Ok(mut pipe) => {
                let mut buf = [0u8; 256];
                while !matches!(pipe.read(&mut buf).await, Ok(0) | Err(_)) {}
                return;
            }
            Err(e) => tracing::warn!(error = %e, "--exit-with-stdin ignored: stdin is no pipe"),
        }
    }
    std::future::pending::<()>().await
}

fn serve(file: PathBuf, exit_with_stdin: bool, workers: Option<usize>) -> ExitCode {
    // Its own thread writes the log: a stalled reader of stdout costs log lines, counted in the
    // metrics, never the serving (see `rempart_core::log`).
    let (log, _flushed_at_exit) = rempart_core::log::background(std::io::stdout(), "gateway-log");
    tracing_subscriber::fmt()
        .json()
        .with_writer(log)
        .with_env_filter(
            tracing_subscriber::EnvFilter::try_from_default_env()
                .unwrap_or_else(|_| tracing_subscriber::EnvFilter::new("info")),
        )
        .with_current_span(false)
        .init();
    let policy = match Policy::load(&file) {
        Ok(p) => p,
        Err(e) => {
            eprintln!("{e}");
            return ExitCode::from(EXIT_CONFIG);
        }
    };
    let workers = workers
        .or_else(|| std::thread::available_parallelism().ok().map(usize::from))
        .unwrap_or(1)
        .max(1);
    // This thread is worker 0 and also runs the admin listener, health checks and reloads;
    // `run` starts the other workers, each on its own single-thread runtime.
    let rt = match tokio::runtime::Builder::new_current_thread().enable_all().build() {
        Ok(rt) => rt,
        Err(e) => {
            eprintln!("cannot start the async runtime: {e}");
            return ExitCode::from(EXIT_RUNTIME);
        }
    };
    rt.block_on(async move {
        let listeners = match Listeners::bind(&policy).await {
            Ok(l) => l,
            Err(e) => {
                eprintln!("{e}");
                return ExitCode::from(EXIT_RUNTIME);
            }
        };
        let config = Config { policy_file: Some(file), workers, ..Config::default() };
        let reload = config.reload.clone();
        // Installed before anything is served: SIGHUP's default action ends the process, so a
        // reload asked for as soon as the listeners answer must already find the handler.
        let (Ok(mut hup), Ok(mut term), Ok(mut int)) = (
            signal(SignalKind::hangup()),
            signal(SignalKind::terminate()),
            signal(SignalKind::interrupt()),
        ) else {
            eprintln!("cannot install signal handlers");
            return ExitCode::from(EXIT_RUNTIME);
        };
        let shutdown = async move {
            let closed = stdin_closed(exit_with_stdin);
            tokio::pin!(closed);
            loop {
                tokio::select! {
                    _ = hup.recv() => reload.notify_one(),
                    _ = term.recv() => return,
                    _ = int.recv() => return,
                    _ = &mut closed => {
                        tracing::info!("stdin closed: stopping");
                        return;
                    }
                }
            }
        };
        match run(listeners, policy, config, shutdown).await {
            Ok(()) => ExitCode::SUCCESS,
            Err(
                e @ (GatewayError::Tls(_) | GatewayError::Policy(_) | GatewayError::Document(_)),
            ) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_CONFIG)
            }
            Err(e) => {
                eprintln!("{e}");
                ExitCode::from(EXIT_RUNTIME)
            }
        }
    })
}
