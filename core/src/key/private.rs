//! Private keys: parsing `PVT_K1_…`, `PVT_R1_…` and WIF, generation from OS randomness, and
//! signing. Only development keys and tests ever hold a private key in this process; production
//! keys stay in an HSM.
//!
//! A private key must never be printed: there is no `Display`, `Debug` shows the public key
//! only, the string forms come back in `Zeroizing` buffers, and parse errors never quote the
//! input. The secret is erased when the key is dropped.

use std::fmt;
use std::str::FromStr;

use rand_core::RngCore as _;
use zeroize::Zeroizing;

use super::public::compress_p256;
use super::{Check, KeyError, KeyType, PublicKey, Signature, decode_checked, encode_checked};
use crate::checksum::Checksum256;

/// The secret scalar, in the form each curve library signs with.
#[derive(Clone)]
enum Secret {
    /// secp256k1. `SecretKey` is `Copy` and does not erase itself: [`PrivateKey`]'s `Drop` does.
    K1(secp256k1::SecretKey),
    /// P-256. `SigningKey` zeroizes itself on drop.
    R1(p256::ecdsa::SigningKey),
}

/// A K1 or R1 private key. Erased on drop; never displayed.
#[derive(Clone)]
pub struct PrivateKey {
    secret: Secret,
    public: PublicKey,
}

impl Drop for PrivateKey {
    fn drop(&mut self) {
        if let Secret::K1(sk) = &mut self.secret {
            sk.non_secure_erase();
        }
    }
}

impl PrivateKey {
    /// A new random key of `key_type`, from the operating system's random source.
    pub fn generate(key_type: KeyType) -> PrivateKey {
        loop {
            let mut bytes = Zeroizing::new([0u8; 32]);
            rand_core::OsRng.fill_bytes(&mut bytes[..]);
            // Zero or a value at or above the order is refused; the chance is below 2^-127.
            if let Ok(key) = Self::from_bytes(key_type, &bytes) {
                return key;
            }
        }
    }

    /// A key of `key_type` from its 32-byte big-endian scalar; zero or a value not below the
    /// curve order is [`KeyError::InvalidScalar`].
    pub fn from_bytes(key_type: KeyType, bytes: &[u8; 32]) -> Result<PrivateKey, KeyError> {
        let invalid = KeyError::InvalidScalar(key_type);
        match key_type {
            KeyType::K1 => {
                let sk = secp256k1::SecretKey::from_secret_bytes(*bytes).map_err(|_| invalid)?;
                let public = PublicKey::K1(sk.public_key().serialize());
                Ok(PrivateKey { secret: Secret::K1(sk), public })
            }
            KeyType::R1 => {
                let field = Zeroizing::new(p256::FieldBytes::from(*bytes));
                let sk = p256::ecdsa::SigningKey::from_bytes(&field).map_err(|_| invalid)?;
                let public =
                    PublicKey::R1(compress_p256(&p256::PublicKey::from(sk.verifying_key())));
                Ok(PrivateKey { secret: Secret::R1(sk), public })
            }
        }
    }

    /// The curve of this key.
    pub fn key_type(&self) -> KeyType {
        self.public.key_type()
    }

    /// The matching public key.
    pub fn public_key(&self) -> PublicKey {
        self.public
    }

    /// The 32-byte scalar, in a buffer zeroed when dropped.
    fn secret_bytes(&self) -> Zeroizing<[u8; 32]> {
        let mut out = Zeroizing::new([0u8; 32]);
        match &self.secret {
            Secret::K1(sk) => out.copy_from_slice(sk.as_secret_bytes()),
            Secret::R1(sk) => out.copy_from_slice(&Zeroizing::new(sk.to_bytes())),
        }
        out
    }

    /// The `PVT_K1_…` or `PVT_R1_…` string. Handle with care: it is the key.
    pub fn to_secret_string(&self) -> Zeroizing<String> {
        let (prefix, check) = match self.key_type() {
            KeyType::K1 => ("PVT_K1_", Check::Ripemd(b"K1")),
            KeyType::R1 => ("PVT_R1_", Check::Ripemd(b"R1")),
        };
        encode_checked(prefix, &self.secret_bytes()[..], check)
    }

    /// The legacy WIF string (`5…`), for K1 keys only. Handle with care: it is the key.
    pub fn to_wif(&self) -> Option<Zeroizing<String>> {
        if self.key_type() != KeyType::K1 {
            return None;
        }
        let mut payload = Zeroizing::new([0u8; 33]);
        payload[0] = 0x80;
        payload[1..].copy_from_slice(&self.secret_bytes()[..]);
        Some(encode_checked("", &payload[..], Check::DoubleSha256))
    }

    /// Signs `digest`. K1 signatures are always canonical under fc's rule (RFC 6979 with a
    /// counter as extra data, retried until canonical); R1 signatures are low-S. The recovery
    /// id in the header always gives back this key.
    pub fn sign(&self, digest: &Checksum256) -> Signature {
        match &self.secret {
            Secret::K1(sk) => sign_k1(sk, digest),
            Secret::R1(sk) => sign_r1(sk, digest, &self.public),
        }
    }
}

fn sign_k1(sk: &secp256k1::SecretKey, digest: &Checksum256) -> Signature {
    let msg = secp256k1::Message::from_digest(digest.0);
    // About one attempt in two is canonical (low-S keeps s's top bit clear; r's is a coin
    // toss); each attempt is a fresh RFC 6979 nonce.
    let mut counter: u64 = 0;
    loop {
        counter = counter.wrapping_add(1);
        let mut noncedata = [0u8; 32];
        noncedata[24..].copy_from_slice(&counter.to_be_bytes());
        let rs = secp256k1::ecdsa::RecoverableSignature::sign_ecdsa_recoverable_with_noncedata(
            msg, sk, &noncedata,
        );
        let sig = Signature::from_secp_recoverable(&rs);
        if sig.is_canonical() {
            return sig;
        }
    }
}

fn sign_r1(sk: &p256::ecdsa::SigningKey, digest: &Checksum256, public: &PublicKey) -> Signature {
    // RFC 6979 fails only when r or s comes out zero, with probability about 2^-256.
    let (sig, recid) = sk
        .sign_prehash_recoverable(&digest.0)
        .expect("RFC 6979 P-256 signing over a 32-byte digest cannot fail");
    let mut id = u8::from(recid);
    // Low-S: negating s mirrors the nonce point, which flips the parity bit of the recovery id.
    let sig = match sig.normalize_s() {
        Some(low) => {
            id ^= 1;
            low
        }
        None => sig,
    };
    // Check the recovery id against our own key (one verification), so a header never names
    // the wrong key.
    if let Some(checked) = super::signature::r1_recovery_id(&sig, digest, public) {
        id = checked;
    }
    Signature::from_p256(&sig, id)
}

const WHAT: &str = "private key";

impl FromStr for PrivateKey {
    type Err = KeyError;

    /// Parses `PVT_K1_…`, `PVT_R1_…` or a WIF string. Errors never include the input.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key_type, payload) = if let Some(body) = s.strip_prefix("PVT_K1_") {
            (KeyType::K1, decode_checked(body, WHAT, "PVT_K1 ripemd160", 32, Check::Ripemd(b"K1"))?)
        } else if let Some(body) = s.strip_prefix("PVT_R1_") {
            (KeyType::R1, decode_checked(body, WHAT, "PVT_R1 ripemd160", 32, Check::Ripemd(b"R1"))?)
        } else if s.starts_with("PVT_") {
            return Err(KeyError::BadPrefix { what: WHAT, expected: "PVT_K1_, PVT_R1_ or WIF" });
        } else {
            let wif = decode_checked(s, "WIF private key", "WIF sha256d", 33, Check::DoubleSha256)?;
            if wif[0] != 0x80 {
                return Err(KeyError::BadPrefix {
                    what: "WIF private key",
                    expected: "version byte 0x80",
                });
            }
            (KeyType::K1, Zeroizing::new(wif[1..].to_vec()))
        };
        let mut bytes = Zeroizing::new([0u8; 32]);
        bytes.copy_from_slice(&payload);
        Self::from_bytes(key_type, &bytes)
    }
}

impl fmt::Debug for PrivateKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PrivateKey(public: {})", self.public)
    }
}
