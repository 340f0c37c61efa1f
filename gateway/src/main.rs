//! The `rempart-gateway` binary: argument parsing, logging setup and exit codes around the
//! library. It must stay thin: no gateway logic lives here.

use std::path::PathBuf;
use std::process::ExitCode;

use clap::{Parser, Subcommand};
use rempart_gateway::Policy;

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
