//! Key backends behind one trait, and the loop that turns their raw ECDSA r‖s into EOS
//! signatures.
//!
//! A [`Backend`] knows its keys by their public halves and makes one raw signature per call
//! (`pkcs11`: an HSM, `soft`: development key files; a YubiKey backend plugs in the same way).
//! [`Keyring`] adds what is common: low-S, recovery id by trial recovery and fc's canonical
//! rule through `rempart_core`'s `Signature::from_raw_rs`, signing again (bounded, counted) when
//! a K1 signature is not canonical, and latency accounting. A backend with more than one HSM
//! session ([`Backend::parallel`]) gets two K1 attempts at a time, one on the caller's thread and
//! one on the keyring's lane thread: about half of K1 signatures are canonical, so pairs cut the
//! calls in a row from 2 on average (and 7 at the 99th percentile) to 1.3 (and 4). An attempt
//! no longer needed is abandoned, its signature dropped unseen. Nothing here decides *whether* to
//! sign — that is the policy and the guard — and no private key material ever leaves a backend.
//! A key created in the token while the signer runs (an administrator's `rotate`) joins the
//! ring through [`Keyring::adopt`], so the switch to it needs no restart; keys only ever join,
//! a retired key is refused by the server, not forgotten here.

use std::sync::{Arc, RwLock};
use std::time::{Duration, Instant};

use rempart_core::Checksum256;
use rempart_core::key::{KeyError, KeyType, PublicKey, Signature};

use crate::metrics::Metrics;
use crate::worker::{Ticket, Worker};

#[cfg(feature = "pkcs11")]
pub mod pkcs11;
#[cfg(feature = "soft")]
pub mod soft;
#[cfg(feature = "yubikey")]
pub mod yubikey;

#[cfg(test)]
mod tests;

/// Why a key backend could not open or sign.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeyringError {
    /// The PKCS#11 module could not be loaded or initialised.
    #[error(
        "cannot load the PKCS#11 module {path}: {message}; check [backend.pkcs11] module and that \
         the HSM's library is installed"
    )]
    Module {
        /// The module path.
        path: String,
        /// What failed.
        message: String,
    },
    /// No token with the configured label is present.
    #[error(
        "no token labelled {label:?} is present (tokens seen: {seen:?}); plug in or initialise \
         the token, or fix [backend.pkcs11] token_label"
    )]
    TokenAbsent {
        /// The label looked for.
        label: String,
        /// The labels present.
        seen: Vec<String>,
    },
    /// The token refused the PIN.
    #[error(
        "the token {label:?} refused the PIN: check the PIN file or variable. Stop before \
         retrying: repeated wrong PINs lock the token"
    )]
    WrongPin {
        /// The token label.
        label: String,
    },
    /// The token's user PIN is locked.
    #[error("the token {label:?} has its user PIN locked: the security officer must unlock it")]
    PinLocked {
        /// The token label.
        label: String,
    },
    /// The PIN could not be read from its configured source.
    #[error("cannot read the HSM PIN from {source_name}: {reason}")]
    Pin {
        /// Where it was looked for (file path or variable name, never the PIN).
        source_name: String,
        /// What is wrong.
        reason: String,
    },
    /// No key matches a configured selector.
    #[error("no private key {selector} in token {label:?}; create it with `rempart-signer keygen`")]
    KeyNotFound {
        /// The selector, as written.
        selector: String,
        /// The token.
        label: String,
    },
    /// Several keys match a configured selector.
    #[error("{count} private keys match {selector} in token {label:?}; select by a unique id")]
    KeyAmbiguous {
        /// The selector.
        selector: String,
        /// The token.
        label: String,
        /// How many matched.
        count: usize,
    },
    /// A key that is not held the way a block-signing key must be.
    #[error("key {selector} refused: {reason}")]
    KeyUnsafe {
        /// The selector.
        selector: String,
        /// Why.
        reason: String,
    },
    /// A key on a curve that is neither secp256k1 nor P-256.
    #[error("key {selector} is on an unsupported curve (CKA_EC_PARAMS {params}); use K1 or R1")]
    UnsupportedCurve {
        /// The selector.
        selector: String,
        /// The parameters, hex.
        params: String,
    },
    /// The YubiKey backend could not open or sign.
    #[error("YubiKey backend: {0}")]
    Yubikey(String),
    /// A development key file was refused.
    #[error("key file {path}: {reason}")]
    KeyFile {
        /// The file.
        path: String,
        /// Why.
        reason: String,
    },
    /// A backend that the policy does not allow here.
    #[error("{0}")]
    NotAllowed(String),
    /// A request for a key this signer does not hold.
    #[error("this signer holds no key {0}")]
    UnknownKey(PublicKey),
    /// The same public key appears twice.
    #[error("key {0} is configured twice")]
    DuplicateKey(PublicKey),
    /// The HSM never produced a canonical K1 signature in the attempts allowed.
    #[error("no canonical signature after {attempts} HSM calls; raise limits.max_sign_attempts")]
    NotCanonical {
        /// Calls made.
        attempts: u32,
    },
    /// The HSM returned a signature that is not by the key over the digest.
    #[error("the HSM returned an unusable signature for {key}: {source}")]
    BadSignature {
        /// The key.
        key: PublicKey,
        /// Why it is unusable.
        source: KeyError,
    },
    /// A PKCS#11 call failed.
    #[error("PKCS#11 {operation} failed: {message}")]
    Pkcs11 {
        /// The operation.
        operation: &'static str,
        /// The module's error.
        message: String,
    },
    /// The key pair could not be generated.
    #[error("key generation failed: {0}")]
    Keygen(String),
}

impl KeyringError {
    /// A short stable label for metrics and the audit log.
    pub fn reason(&self) -> &'static str {
        match self {
            KeyringError::UnknownKey(_) => "unknown_key",
            KeyringError::NotCanonical { .. } => "not_canonical",
            KeyringError::BadSignature { .. } => "bad_hsm_signature",
            _ => "backend",
        }
    }
}

/// One key backend: keys known by their public halves, one raw signature per call.
pub trait Backend: Send + Sync {
    /// `pkcs11`, `soft`, …
    fn kind(&self) -> &'static str;
    /// The public keys this backend can sign with.
    fn public_keys(&self) -> Vec<PublicKey>;
    /// One raw ECDSA signature r‖s (32 + 32 bytes, big-endian) over `digest` with `key`.
    fn sign_raw(&self, key: &PublicKey, digest: &[u8; 32]) -> Result<[u8; 64], KeyringError>;
    /// True when two [`Backend::sign_raw`] calls can run at the same time (two HSM sessions)
    /// and each yields an independent signature (a random nonce; never for a deterministic
    /// RFC 6979 signer, whose retries differ only by what the caller changes).
    fn parallel(&self) -> bool {
        false
    }
    /// Starts signing with `key`, a key pair created in the backend after it was opened (an
    /// administrator's `rotate` or `add_key`), after the same checks as a configured key.
    /// Backends whose keys are fixed at start refuse.
    fn adopt(&self, key: &PublicKey) -> Result<(), KeyringError> {
        Err(KeyringError::NotAllowed(format!(
            "the {} backend cannot take key {key} while running: configure it and restart the \
             signer",
            self.kind()
        )))
    }
}

/// A signature and what it cost.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Signed {
    /// The EOS signature.
    pub signature: Signature,
    /// Backend calls made (1 unless a K1 signature had to be made again).
    pub attempts: u32,
    /// Time spent inside the backend.
    pub backend_time: Duration,
}

/// A backend plus the EOS conversion and re-sign loop.
pub struct Keyring {
    backend: Arc<dyn Backend>,
    /// The second K1 attempt's thread, for a [`Backend::parallel`] backend.
    lane: Worker,
    keys: RwLock<Vec<PublicKey>>,
    max_attempts: u32,
    metrics: Arc<Metrics>,
}

impl std::fmt::Debug for Keyring {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keyring")
            .field("backend", &self.backend.kind())
            .field("keys", &self.public_keys())
            .finish()
    }
}

impl Keyring {
    /// Wraps a backend; `max_attempts` bounds the HSM calls per signature.
    pub fn new(
        backend: Box<dyn Backend>,
        max_attempts: u32,
        metrics: Arc<Metrics>,
    ) -> Result<Keyring, KeyringError> {
        let keys = backend.public_keys();
        for (i, k) in keys.iter().enumerate() {
            if keys[..i].contains(k) {
                return Err(KeyringError::DuplicateKey(*k));
            }
        }
        Ok(Keyring {
            backend: Arc::from(backend),
            lane: Worker::new("hsm-lane"),
            keys: RwLock::new(keys),
            max_attempts: max_attempts.max(1),
            metrics,
        })
    }

    /// The backend kind.
    pub fn kind(&self) -> &'static str {
        self.backend.kind()
    }

    /// The public keys held.
    pub fn public_keys(&self) -> Vec<PublicKey> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).clone()
    }

    /// True when `key` is held.
    pub fn holds(&self, key: &PublicKey) -> bool {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).contains(key)
    }

    /// Makes `key`, created in the backend while the signer runs, available for signing (see
    /// [`Backend::adopt`]). A key already held is left as it is.
    pub fn adopt(&self, key: &PublicKey) -> Result<(), KeyringError> {
        let mut keys = self.keys.write().unwrap_or_else(|e| e.into_inner());
        if keys.contains(key) {
            return Ok(());
        }
        self.backend.adopt(key)?;
        keys.push(*key);
        Ok(())
    }

    /// Signs `digest` with `key`, in EOS form (low-S, recovery id, canonical for K1).
    pub fn sign(&self, key: &PublicKey, digest: &Checksum256) -> Result<Signed, KeyringError> {
        if !self.holds(key) {
            return Err(KeyringError::UnknownKey(*key));
        }
        let pairs = key.key_type() == KeyType::K1 && self.backend.parallel();
        let mut backend_time = Duration::ZERO;
        let mut attempts = 0;
        let mut spare: Option<Ticket<Timed>> = None;
        while attempts < self.max_attempts {
            if pairs && spare.is_none() && attempts + 2 <= self.max_attempts {
                let (backend, k, d) = (self.backend.clone(), *key, *digest.as_bytes());
                spare = Some(self.lane.run(move || timed(|| backend.sign_raw(&k, &d))));
            }
            attempts += 1;
            let (raw, took) = timed(|| self.backend.sign_raw(key, digest.as_bytes()));
            backend_time += took;
            let mut found = self.convert(key, digest, raw, took);
            if matches!(found, Ok(None))
                && let Some(ticket) = spare.take()
            {
                attempts += 1;
                let waited = Instant::now();
                let (raw, took) = ticket.wait().unwrap_or_else(|gone| {
                    (
                        Err(KeyringError::Module {
                            path: "hsm-lane".into(),
                            message: gone.to_string(),
                        }),
                        Duration::ZERO,
                    )
                });
                backend_time += waited.elapsed();
                found = self.convert(key, digest, raw, took);
            }
            match found {
                Ok(None) => {}
                Ok(Some(signature)) => {
                    if let Some(ticket) = spare {
                        ticket.abandon();
                    }
                    return Ok(Signed { signature, attempts, backend_time });
                }
                Err(e) => {
                    if let Some(ticket) = spare {
                        ticket.abandon();
                    }
                    return Err(e);
                }
            }
        }
        Err(KeyringError::NotCanonical { attempts: self.max_attempts })
    }

    /// One backend answer in EOS form: `None` when a K1 signature is not canonical.
    fn convert(
        &self,
        key: &PublicKey,
        digest: &Checksum256,
        raw: Result<[u8; 64], KeyringError>,
        took: Duration,
    ) -> Result<Option<Signature>, KeyringError> {
        self.metrics.hsm_latency.observe(took);
        match Signature::from_raw_rs(key.key_type(), &raw?, digest, key) {
            Ok(signature) => Ok(Some(signature)),
            Err(KeyError::NotCanonical) if key.key_type() == KeyType::K1 => {
                self.metrics.canonical_retries.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
                Ok(None)
            }
            Err(source) => Err(KeyringError::BadSignature { key: *key, source }),
        }
    }
}

/// A backend answer and how long it took.
type Timed = (Result<[u8; 64], KeyringError>, Duration);

fn timed(f: impl FnOnce() -> Result<[u8; 64], KeyringError>) -> Timed {
    let started = Instant::now();
    let r = f();
    (r, started.elapsed())
}
