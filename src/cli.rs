//! The command-line interface: the subcommands an operator types and what each one does today.
//!
//! Each subcommand hands over to its module ([`crate::up`], [`crate::check`], [`crate::admin`],
//! [`wg`]); a subcommand that is not built says so plainly, prints the help and exits with
//! [`EXIT_NOT_BUILT`]. This module must never pretend to start, check or change anything it
//! does not.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::{CommandFactory, Parser, Subcommand};

pub mod wg;

/// Exit status of a subcommand that is part of the interface but not built yet (the same status
/// clap uses for a usage error: the request cannot be served as typed).
pub const EXIT_NOT_BUILT: u8 = 2;

/// Exit status when the report itself could not be written (a closed terminal or pipe).
pub const EXIT_IO: u8 = 74;

/// The operator CLI of the rempart perimeter for Antelope block producers.
#[derive(Debug, Parser)]
#[command(
    name = "rempart",
    version,
    about = "Operator CLI of the rempart perimeter for Antelope block producers",
    long_about = "Operator CLI of the rempart perimeter for Antelope block producers: a TLS \
                  gateway, api and producer nodes, and a sandboxed block signer.\n\n\
                  `rempart up` runs the whole perimeter on this machine for development; \
                  `rempart check` validates a directory of policy files together.",
    arg_required_else_help = true
)]
pub struct Cli {
    /// What to do.
    #[command(subcommand)]
    pub command: Command,
}

/// The subcommands of `rempart`.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
#[non_exhaustive]
pub enum Command {
    /// Run the whole perimeter on this machine: a development chain, a signer, a producer, two
    /// api nodes and the gateway on https://127.0.0.1:8443, until Ctrl-C.
    Up(crate::up::UpArgs),
    /// Validate every policy file of a directory, alone and against each other.
    Check {
        /// The directory holding signer*.toml, node*.toml, gateway*.toml.
        #[arg(value_name = "DIR", default_value = "policies")]
        dir: PathBuf,
    },
    /// Key ceremonies: YubiKey admin keys and M-of-N approved signer commands.
    Admin(crate::admin::AdminArgs),
    /// The WireGuard private network between the producer and the signer.
    Wg {
        /// What to do.
        #[command(subcommand)]
        command: wg::WgCommand,
    },
}

impl Command {
    /// The word the operator types for this subcommand.
    pub fn word(&self) -> &'static str {
        match self {
            Command::Up(_) => "up",
            Command::Check { .. } => "check",
            Command::Admin(_) => "admin",
            Command::Wg { .. } => "wg",
        }
    }

    /// Whether this subcommand does its job in this build.
    pub fn is_built(&self) -> bool {
        match self {
            Command::Up(_) | Command::Check { .. } | Command::Wg { .. } | Command::Admin(_) => true,
        }
    }
}

/// Runs the parsed command line, writing results to `out` and what the operator must read about
/// failures to `err`, and returns the process exit status.
///
/// # Errors
///
/// Returns the I/O error when `out` or `err` cannot be written.
pub fn run(cli: &Cli, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let command = &cli.command;
    if let Command::Wg { command } = command {
        return wg::run(command, out, err);
    }
    if let Command::Up(args) = command {
        return crate::up::run(args, out, err);
    }
    if let Command::Check { dir } = command {
        return crate::check::run(dir, out, err);
    }
    if let Command::Admin(args) = command {
        return match crate::admin::run(args, out) {
            Ok(code) => Ok(code),
            Err(e) => {
                writeln!(err, "rempart admin: {e}")?;
                Ok(e.exit_code())
            }
        };
    }
    let out = err;
    if !command.is_built() {
        writeln!(
            out,
            "`rempart {}` is not built yet: it arrives with a later milestone of rempart. \
             Nothing was started or changed.\n",
            command.word()
        )?;
        write!(out, "{}", Cli::command().render_long_help())?;
        out.flush()?;
        return Ok(EXIT_NOT_BUILT);
    }
    Ok(0)
}

#[cfg(test)]
mod tests;
