//! WireGuard private-key files: generated with mode 0600 (never over an existing file) and read
//! only when group and others cannot read them.
//!
//! The key is base64 on one line, as `wg genkey` writes it, so the files interoperate with
//! wireguard-tools. This file must never print, log or return a private key in an error.

use std::io::Write as _;
use std::os::unix::fs::{OpenOptionsExt, PermissionsExt};
use std::path::Path;

use wireguard_control::Key;
use zeroize::Zeroizing;

use super::{WgKey, WireGuardError};

/// A private key held in memory that is wiped on drop.
pub struct PrivateKey(Zeroizing<[u8; 32]>);

impl PrivateKey {
    /// Its public key.
    pub fn public(&self) -> WgKey {
        WgKey(Key(*self.0).get_public().0)
    }

    /// The key in wireguard-control's form (a copy the caller hands to the interface at once).
    pub(super) fn to_control(&self) -> Key {
        Key(*self.0)
    }
}

impl std::fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "PrivateKey(public {})", self.public())
    }
}

/// Creates `path` with a fresh private key (mode 0600, refusing to overwrite anything) and
/// returns the public key to hand to the peer.
pub fn generate_key_file(path: &Path) -> Result<WgKey, WireGuardError> {
    let err = |action, source| WireGuardError::KeyFile { path: path.to_path_buf(), action, source };
    let key = Key::generate_private();
    let text = Zeroizing::new(format!("{}\n", key.to_base64()));
    let public = WgKey(key.get_public().0);
    let mut key = key;
    key.0.fill(0);
    let mut file =
        match std::fs::OpenOptions::new().write(true).create_new(true).mode(0o600).open(path) {
            Ok(f) => f,
            Err(e) if e.kind() == std::io::ErrorKind::AlreadyExists => {
                return Err(WireGuardError::KeyFileExists { path: path.to_path_buf() });
            }
            Err(e) => return Err(err("cannot create the key file", e)),
        };
    // The umask may have cleared bits but never adds any; set 0600 explicitly anyway.
    file.set_permissions(std::fs::Permissions::from_mode(0o600))
        .map_err(|e| err("cannot set mode 0600", e))?;
    file.write_all(text.as_bytes()).map_err(|e| err("cannot write the key", e))?;
    file.sync_all().map_err(|e| err("cannot fsync the key file", e))?;
    if let Some(dir) = path.parent().filter(|d| !d.as_os_str().is_empty()) {
        std::fs::File::open(dir)
            .and_then(|d| d.sync_all())
            .map_err(|e| err("cannot fsync the key file's directory", e))?;
    }
    Ok(public)
}

/// Reads a private-key file, refusing it when group or others have any permission on it.
pub fn read_private_key(path: &Path) -> Result<PrivateKey, WireGuardError> {
    let err = |action, source| WireGuardError::KeyFile { path: path.to_path_buf(), action, source };
    let file = std::fs::File::open(path).map_err(|e| err("cannot open the private-key file", e))?;
    let meta = file.metadata().map_err(|e| err("cannot read the key file's metadata", e))?;
    let mode = meta.permissions().mode() & 0o7777;
    if mode & 0o077 != 0 {
        return Err(WireGuardError::KeyFileMode { path: path.to_path_buf(), mode });
    }
    if !meta.is_file() || meta.len() > 256 {
        return Err(WireGuardError::BadKey {
            what: format!("{} (not a key file)", path.display()),
        });
    }
    let mut text = Zeroizing::new(String::new());
    std::io::Read::read_to_string(&mut &file, &mut text)
        .map_err(|e| err("cannot read the private-key file", e))?;
    let key = WgKey::parse(&text, &format!("the private key in {}", path.display()))?;
    Ok(PrivateKey(Zeroizing::new(key.0)))
}
