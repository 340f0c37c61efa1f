//! The `soft` backend: development keys read from files. DANGEROUS outside a development chain.
//!
//! A key file holds one `PVT_K1_…`/`PVT_R1_…` (or WIF) string on its first line and must be
//! readable by its owner only (mode 0600 or 0400); anything looser is refused at load. The
//! backend opens only when the policy marks the chain `dangerous_dev_chain = true`, and the
//! daemon logs a warning at every start. The key lives in memory in `rempart_core`'s
//! `PrivateKey` (erased on drop); it is never printed, logged or written anywhere.

use std::os::unix::fs::PermissionsExt;
use std::path::Path;

use rempart_core::Checksum256;
use rempart_core::key::{PrivateKey, PublicKey};
use zeroize::Zeroizing;

use super::{Backend, KeyringError};

#[cfg(test)]
mod tests;

/// Development keys held in process memory.
pub struct SoftBackend {
    keys: Vec<PrivateKey>,
}

/// Reads one key file, refusing loose permissions.
pub fn load_key_file(path: &Path) -> Result<PrivateKey, KeyringError> {
    let err = |reason: String| KeyringError::KeyFile { path: path.display().to_string(), reason };
    let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
    if !meta.is_file() {
        return Err(err("not a regular file".into()));
    }
    let mode = meta.permissions().mode() & 0o777;
    if mode & 0o077 != 0 {
        return Err(err(format!(
            "mode {mode:03o} lets other users read the key; run chmod 600 on it (or better, \
             move the key into an HSM)"
        )));
    }
    let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
    let text = std::str::from_utf8(&bytes).map_err(|_| err("not UTF-8".into()))?;
    let line = text.lines().next().unwrap_or("").trim();
    line.parse::<PrivateKey>().map_err(|e| err(format!("not a private key: {e}")))
}

impl SoftBackend {
    /// Loads the key files; refused unless `dangerous_dev_chain`.
    pub fn open(
        files: &[impl AsRef<Path>],
        dangerous_dev_chain: bool,
    ) -> Result<SoftBackend, KeyringError> {
        if !dangerous_dev_chain {
            return Err(KeyringError::NotAllowed(
                "the soft backend is refused unless the policy sets dangerous_dev_chain = true"
                    .into(),
            ));
        }
        let keys = files.iter().map(|f| load_key_file(f.as_ref())).collect::<Result<_, _>>()?;
        Ok(SoftBackend { keys })
    }

    /// A backend over keys already in memory (tests and `rempart up`).
    pub fn from_keys(keys: Vec<PrivateKey>) -> SoftBackend {
        SoftBackend { keys }
    }
}

impl Backend for SoftBackend {
    fn kind(&self) -> &'static str {
        "soft"
    }

    fn public_keys(&self) -> Vec<PublicKey> {
        self.keys.iter().map(PrivateKey::public_key).collect()
    }

    fn sign_raw(&self, key: &PublicKey, digest: &[u8; 32]) -> Result<[u8; 64], KeyringError> {
        let private = self
            .keys
            .iter()
            .find(|k| k.public_key() == *key)
            .ok_or(KeyringError::UnknownKey(*key))?;
        let sig = private.sign(&Checksum256(*digest));
        let mut rs = [0u8; 64];
        rs.copy_from_slice(sig.rs());
        Ok(rs)
    }
}
