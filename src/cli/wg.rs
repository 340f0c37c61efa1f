//! `rempart wg`: WireGuard keys for the private network between the producer and the signer.
//!
//! `rempart wg keygen --out FILE` writes a new private key (base64, as `wg genkey` does) to a
//! file created with mode 0600, refusing to overwrite anything, and prints the public key on
//! stdout for the peer's `[[wireguard.peers]]`. The key file format and its checks are the
//! signer library's (`rempart_signer::wireguard`), which both the signer and the node read. This
//! module must never print or log the private key.

use std::io::{self, Write};
use std::path::PathBuf;

use clap::Subcommand;

/// Exit status when the key file cannot be written (sysexits EX_CANTCREAT).
pub const EXIT_CANT_CREATE: u8 = 73;

/// The `rempart wg` subcommands.
#[derive(Debug, Clone, PartialEq, Eq, Subcommand)]
#[non_exhaustive]
pub enum WgCommand {
    /// Write a new private key to FILE (mode 0600; never overwrites) and print its public key.
    Keygen {
        /// The private-key file to create (what `[wireguard] private_key_file` names).
        #[arg(long, value_name = "FILE")]
        out: PathBuf,
    },
}

/// Runs a `rempart wg` subcommand: results on `out`, failures on `err`.
///
/// # Errors
///
/// Returns the I/O error when `out` or `err` cannot be written.
pub fn run(command: &WgCommand, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    match command {
        WgCommand::Keygen { out: file } => {
            match rempart_signer::wireguard::generate_key_file(file) {
                Ok(public) => {
                    writeln!(out, "{public}")?;
                    out.flush()?;
                    writeln!(
                        err,
                        "wrote the private key to {} (mode 0600); the line above is its public \
                         key: put it in the peer's [[wireguard.peers]] public_key",
                        file.display()
                    )?;
                    Ok(0)
                }
                Err(e) => {
                    writeln!(err, "rempart wg keygen: {e}")?;
                    Ok(EXIT_CANT_CREATE)
                }
            }
        }
    }
}

#[cfg(test)]
mod tests;
