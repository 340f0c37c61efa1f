//! The `rempart-gateway` binary: argument parsing, logging setup and exit codes around the
//! library. It must stay thin: no gateway logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rempart_gateway::{Config, GatewayError, Listeners, Policy, run};
use tokio::signal::unix::{SignalKind, signal};

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
        Command::Serve { policy } => serve(policy),
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

fn serve(file: PathBuf) -> ExitCode {
    tracing_subscriber::fmt()
        .json()
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
    let rt = match tokio::runtime::Builder::new_multi_thread().enable_all().build() {
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
        let config = Config { policy_file: Some(file), ..Config::default() };
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
            loop {
                tokio::select! {
                    _ = hup.recv() => reload.notify_one(),
                    _ = term.recv() => return,
                    _ = int.recv() => return,
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
