use std::sync::atomic::Ordering;

use rempart_core::key::PrivateKey;

use super::*;

/// A backend returning fixed raw signatures, to drive the re-sign loop.
struct Scripted {
    key: PublicKey,
    private: PrivateKey,
    /// How many raw signatures to return non-canonical (high r) before a good one.
    bad: std::sync::atomic::AtomicU32,
}

impl Backend for Scripted {
    fn kind(&self) -> &'static str {
        "scripted"
    }
    fn public_keys(&self) -> Vec<PublicKey> {
        vec![self.key]
    }
    fn sign_raw(&self, _key: &PublicKey, digest: &[u8; 32]) -> Result<[u8; 64], KeyringError> {
        let sig = self.private.sign(&Checksum256(*digest));
        let mut rs = [0u8; 64];
        rs.copy_from_slice(sig.rs());
        if self.bad.load(Ordering::Relaxed) > 0 {
            self.bad.fetch_sub(1, Ordering::Relaxed);
            // Not by this key over this digest: a wrong s.
            rs[63] ^= 1;
            rs[40] ^= 0x55;
        }
        Ok(rs)
    }
}

#[test]
fn signs_with_held_keys_only() {
    let private = PrivateKey::generate(KeyType::K1);
    let key = private.public_key();
    let metrics = Arc::new(Metrics::default());
    let ring = Keyring::new(Box::new(Scripted { key, private, bad: 0.into() }), 4, metrics.clone())
        .unwrap();
    let digest = Checksum256([9; 32]);
    let signed = ring.sign(&key, &digest).unwrap();
    assert_eq!(signed.attempts, 1);
    assert!(signed.signature.verify(&digest, &key));
    assert_eq!(metrics.hsm_latency.count(), 1);

    let stranger = PrivateKey::generate(KeyType::R1).public_key();
    assert!(matches!(ring.sign(&stranger, &digest), Err(KeyringError::UnknownKey(_))));
    // A backend with fixed keys adopts none while running; a key already held is a no-op.
    ring.adopt(&key).unwrap();
    let err = ring.adopt(&stranger).unwrap_err();
    assert!(matches!(err, KeyringError::NotAllowed(_)) && err.to_string().contains("restart"));
    assert_eq!(ring.public_keys(), vec![key]);
}

#[test]
fn a_signature_not_by_the_key_is_an_error() {
    let private = PrivateKey::generate(KeyType::R1);
    let key = private.public_key();
    let ring = Keyring::new(
        Box::new(Scripted { key, private, bad: 1.into() }),
        4,
        Arc::new(Metrics::default()),
    )
    .unwrap();
    let err = ring.sign(&key, &Checksum256([1; 32])).unwrap_err();
    assert!(matches!(err, KeyringError::BadSignature { .. }), "{err}");
}

#[cfg(feature = "soft")]
#[test]
fn duplicate_keys_are_refused() {
    let private = PrivateKey::generate(KeyType::K1);
    let backend = soft::SoftBackend::from_keys(vec![private.clone(), private]);
    assert!(matches!(
        Keyring::new(Box::new(backend), 4, Arc::new(Metrics::default())),
        Err(KeyringError::DuplicateKey(_))
    ));
}
