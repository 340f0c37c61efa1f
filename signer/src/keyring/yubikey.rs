//! The `yubikey` backend: the block-signing key is a P-256 (R1) key in a YubiKey's PIV slot,
//! reached through PC/SC (`pcscd`) with the `yubikey` crate. For producers who keep the block
//! key on a YubiKey rather than in an HSM.
//!
//! The policy names the slot and the key it must hold (`PUB_R1_…`); at start the backend signs
//! a probe digest and refuses to open unless the signature recovers to that key, so a swapped
//! card never signs. The PIN (from a 0600 file or an environment variable, never argv) is
//! presented before every signature, which a PIN policy of "always" requires. The PC/SC
//! connection is opened before the sandbox and kept: the sandbox forbids new sockets.

use std::sync::Mutex;

use rempart_core::Checksum256;
use rempart_core::key::{KeyType, PublicKey, Signature};
use yubikey::YubiKey;
use yubikey::piv::{AlgorithmId, SlotId};
use zeroize::Zeroizing;

use super::{Backend, KeyringError};
use crate::policy::{PinSource, YubikeyConfig};

/// A key in one PIV slot of one YubiKey.
pub struct YubikeyBackend {
    card: Mutex<YubiKey>,
    slot: SlotId,
    key: PublicKey,
    pin: Zeroizing<String>,
}

impl std::fmt::Debug for YubikeyBackend {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("YubikeyBackend").field("key", &self.key).finish_non_exhaustive()
    }
}

fn err(message: impl Into<String>) -> KeyringError {
    KeyringError::Yubikey(message.into())
}

fn read_pin(source: &PinSource) -> Result<Zeroizing<String>, KeyringError> {
    match source {
        PinSource::File(path) => {
            use std::os::unix::fs::PermissionsExt;
            let name = path.display().to_string();
            let pin_err = |reason: String| KeyringError::Pin { source_name: name.clone(), reason };
            let meta = std::fs::metadata(path).map_err(|e| pin_err(e.to_string()))?;
            if meta.permissions().mode() & 0o077 != 0 {
                return Err(pin_err("other users can read it; run chmod 600 on it".into()));
            }
            let text =
                Zeroizing::new(std::fs::read_to_string(path).map_err(|e| pin_err(e.to_string()))?);
            Ok(Zeroizing::new(text.lines().next().unwrap_or("").to_owned()))
        }
        PinSource::Env(var) => std::env::var(var).map(Zeroizing::new).map_err(|_| {
            KeyringError::Pin { source_name: var.clone(), reason: "the variable is not set".into() }
        }),
    }
}

/// The PIV slot named `9a`, `9c`, `9d` or `9e`.
pub fn slot_of(name: &str) -> Option<SlotId> {
    match name {
        "9a" => Some(SlotId::Authentication),
        "9c" => Some(SlotId::Signature),
        "9d" => Some(SlotId::KeyManagement),
        "9e" => Some(SlotId::CardAuthentication),
        _ => None,
    }
}

impl YubikeyBackend {
    /// Opens the YubiKey (the one present, or the one in the reader whose name contains
    /// `config.reader`) and checks that `config.slot` holds `config.key`.
    pub fn open(config: &YubikeyConfig) -> Result<YubikeyBackend, KeyringError> {
        let slot = slot_of(&config.slot)
            .ok_or_else(|| err(format!("unknown PIV slot {:?}", config.slot)))?;
        if config.key.key_type() != KeyType::R1 {
            return Err(err("a YubiKey PIV slot holds a P-256 key: the key must be PUB_R1_…"));
        }
        let pin = read_pin(&config.pin)?;
        let mut ctx = yubikey::reader::Context::open()
            .map_err(|e| err(format!("PC/SC is unavailable ({e}); is pcscd running?")))?;
        let mut found = Vec::new();
        for reader in ctx.iter().map_err(|e| err(e.to_string()))? {
            let name = reader.name().into_owned();
            if config.reader.as_deref().is_some_and(|want| !name.contains(want)) {
                continue;
            }
            if let Ok(card) = reader.open() {
                found.push((name, card));
            }
        }
        let card = match found.len() {
            1 => found.remove(0).1,
            0 => return Err(err("no YubiKey found: plug it in, or fix [backend.yubikey] reader")),
            _ => {
                let names: Vec<_> = found.iter().map(|(n, _)| n.clone()).collect();
                return Err(err(format!(
                    "several YubiKeys are present ({}): name one with [backend.yubikey] reader",
                    names.join(", ")
                )));
            }
        };
        let backend = YubikeyBackend { card: Mutex::new(card), slot, key: config.key, pin };
        // The probe: the slot must hold the configured key.
        let probe = Checksum256::hash(b"rempart-signer yubikey backend probe");
        backend.sign_der(&probe).and_then(|der| {
            Signature::from_der_rs(KeyType::R1, &der, &probe, &backend.key).map_err(|_| {
                err(format!(
                    "slot {} does not hold {}: check [backend.yubikey] key and that the right \
                     card is plugged in",
                    config.slot, backend.key
                ))
            })
        })?;
        Ok(backend)
    }

    fn sign_der(&self, digest: &Checksum256) -> Result<Vec<u8>, KeyringError> {
        let mut card = self.card.lock().unwrap_or_else(|e| e.into_inner());
        card.verify_pin(self.pin.as_bytes()).map_err(|e| match e {
            yubikey::Error::WrongPin { tries } => err(format!(
                "the YubiKey refused the PIN ({tries} tries left): fix the PIN source before the \
                 card locks"
            )),
            other => err(format!("PIN verification failed: {other}")),
        })?;
        yubikey::piv::sign_data(&mut card, &digest.0, AlgorithmId::EccP256, self.slot)
            .map(|b| b.to_vec())
            .map_err(|e| err(format!("signing failed: {e}")))
    }
}

impl Backend for YubikeyBackend {
    fn kind(&self) -> &'static str {
        "yubikey"
    }

    fn public_keys(&self) -> Vec<PublicKey> {
        vec![self.key]
    }

    fn sign_raw(&self, key: &PublicKey, digest: &[u8; 32]) -> Result<[u8; 64], KeyringError> {
        if key != &self.key {
            return Err(KeyringError::UnknownKey(*key));
        }
        let digest = Checksum256(*digest);
        let der = self.sign_der(&digest)?;
        let sig = Signature::from_der_rs(KeyType::R1, &der, &digest, key)
            .map_err(|source| KeyringError::BadSignature { key: *key, source })?;
        let mut rs = [0u8; 64];
        rs.copy_from_slice(sig.rs());
        Ok(rs)
    }
}
