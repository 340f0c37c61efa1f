//! `rempart wg`: WireGuard keys for the private network between the producer and the signer,
//! and key rotation on live interfaces.
//!
//! `rempart wg keygen --out FILE` writes a new private key (base64, as `wg genkey` does) to a
//! file created with mode 0600, refusing to overwrite anything, and prints the public key on
//! stdout for the peer's `[[wireguard.peers]]`. `rempart wg apply FILE` syncs the live interface
//! named by the `[wireguard]` section of FILE (a signer.toml or a node.toml) to that section —
//! private key, listen port, peers, tunnel address — without restarting the process that owns
//! the interface: the sandboxed signer cannot reconfigure its interface itself, and accepts
//! connections by the peer's tunnel address, which a rotation keeps. The key file format, its
//! checks and the interface code are the signer library's (`rempart_signer::wireguard`), which
//! both the signer and the node use. This module must never print or log the private key.

use std::io::{self, Write};
use std::path::{Path, PathBuf};

use clap::Subcommand;
use rempart_signer::wireguard::{Interface, WgKey, WireGuardConfig};

/// Exit status when the key file cannot be written (sysexits EX_CANTCREAT).
pub const EXIT_CANT_CREATE: u8 = 73;

/// Exit status when FILE is neither a valid signer policy nor a valid node configuration with a
/// `[wireguard]` section (sysexits EX_USAGE, as every rempart configuration error).
pub const EXIT_CONFIG: u8 = 64;

/// Exit status when the live interface could not be synced (sysexits EX_UNAVAILABLE).
pub const EXIT_UNAVAILABLE: u8 = 69;

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
    /// Sync the live interface of FILE's [wireguard] section (a signer.toml or node.toml) to
    /// that section: keys, peers, address. Run it as root in the interface's network namespace
    /// after editing both sides' files; the signer or node keeps running.
    Apply {
        /// The signer policy or node configuration holding the [wireguard] section.
        #[arg(value_name = "FILE")]
        file: PathBuf,
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
        WgCommand::Apply { file } => apply(file, out, err),
    }
}

/// The `[wireguard]` section of a signer policy or a node configuration, whichever FILE is.
fn wireguard_section(file: &Path) -> Result<WireGuardConfig, String> {
    let (what, section) = match rempart_signer::policy::Policy::load(file) {
        Ok(policy) => ("signer policy", policy.wireguard),
        Err(signer) => match rempart_node::config::Config::load(file) {
            Ok(config) => ("node configuration", config.wireguard),
            Err(node) => {
                return Err(format!(
                    "{} is neither a valid signer policy nor a valid node configuration.\nAs a \
                     signer policy: {signer}\nAs a node configuration: {node}",
                    file.display()
                ));
            }
        },
    };
    section.ok_or_else(|| {
        format!(
            "{} is a {what} without a [wireguard] section: there is no interface to apply",
            file.display()
        )
    })
}

fn apply(file: &Path, out: &mut dyn Write, err: &mut dyn Write) -> io::Result<u8> {
    let config = match wireguard_section(file) {
        Ok(c) => c,
        Err(e) => {
            writeln!(err, "rempart wg apply: {e}")?;
            return Ok(EXIT_CONFIG);
        }
    };
    let (iface, changes) = match Interface::apply(&config) {
        Ok(r) => r,
        Err(e) => {
            writeln!(err, "rempart wg apply: {e}")?;
            return Ok(EXIT_UNAVAILABLE);
        }
    };
    let address =
        |k: &WgKey| config.peers.iter().find(|p| p.public_key == *k).map(|p| p.address.to_string());
    writeln!(
        out,
        "interface {} ({}): public key {}{}",
        iface.name(),
        iface.backend(),
        iface.public_key(),
        if changes.private_key_changed { " (new: every peer handshakes again)" } else { "" }
    )?;
    for (word, keys) in
        [("added", &changes.added), ("kept", &changes.kept), ("removed", &changes.removed)]
    {
        for k in keys {
            match address(k) {
                Some(a) => writeln!(out, "{word} peer {k} at {a}")?,
                None => writeln!(out, "{word} peer {k}")?,
            }
        }
    }
    out.flush()?;
    Ok(0)
}

#[cfg(test)]
mod tests;
