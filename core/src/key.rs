//! Antelope keys and signatures, K1 (secp256k1) and R1 (NIST P-256): their binary form, their
//! string forms (`PUB_K1_…`, legacy `EOS…`, `PVT_K1_…`, WIF, `SIG_K1_…`, and the R1 variants),
//! signing, public-key recovery and the conversion of a raw HSM signature into EOS form.
//!
//! What must never happen here:
//! - a secret reaching a log, an error or a `Debug` string: [`PrivateKey`] has no `Display`, its
//!   `Debug` shows only the public key, its string forms come back in `Zeroizing` buffers, and a
//!   parse error never quotes the text it was given;
//! - our own signing handing out a K1 signature that is not canonical under fc's rule (nodeos
//!   would refuse it), or a signature whose recovery id does not give back the signing key;
//! - a hostile string or byte buffer making a decoder panic, allocate beyond its input, or run
//!   long: base58 input is bounded by length before it is decoded.
//!
//! WebAuthn (`WA`) keys and signatures are refused with a clear error wherever they appear.

use std::fmt;
use std::str::FromStr;

use ripemd::Digest as _;
use zeroize::Zeroizing;

mod private;
mod public;
mod signature;

pub use private::PrivateKey;
pub use public::PublicKey;
pub use signature::Signature;

/// The curve of a key or signature, with its wire tag.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord, Debug)]
pub enum KeyType {
    /// secp256k1, wire tag 0, the usual Antelope key.
    K1 = 0,
    /// NIST P-256 (secp256r1), wire tag 1: HSMs and YubiKeys.
    R1 = 1,
}

impl KeyType {
    /// The wire tag: 0 for K1, 1 for R1.
    pub fn tag(self) -> u8 {
        self as u8
    }

    /// The two-letter name that appears in string forms and checksums: `K1` or `R1`.
    pub fn as_str(self) -> &'static str {
        match self {
            KeyType::K1 => "K1",
            KeyType::R1 => "R1",
        }
    }

    /// The name of the curve, for messages.
    pub fn curve(self) -> &'static str {
        match self {
            KeyType::K1 => "secp256k1",
            KeyType::R1 => "P-256",
        }
    }

    /// Reads a wire tag; 2 (WebAuthn) and anything else unknown is a decode error.
    fn unpack_tag(
        r: &mut crate::codec::Reader<'_>,
        what: &'static str,
    ) -> Result<KeyType, crate::codec::DecodeError> {
        let at = r.position();
        match r.read_u8()? {
            0 => Ok(KeyType::K1),
            1 => Ok(KeyType::R1),
            2 => Err(crate::codec::DecodeError::Invalid {
                what,
                at,
                reason: "WebAuthn keys are not supported".to_owned(),
            }),
            tag => Err(crate::codec::DecodeError::UnknownTag { what, tag: u64::from(tag), at }),
        }
    }
}

impl fmt::Display for KeyType {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(self.as_str())
    }
}

impl FromStr for KeyType {
    type Err = KeyError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "K1" | "k1" => Ok(KeyType::K1),
            "R1" | "r1" => Ok(KeyType::R1),
            "WA" | "wa" => Err(KeyError::Unsupported { what: "WebAuthn keys are not supported" }),
            _ => Err(KeyError::BadPrefix { what: "key type", expected: "K1 or R1" }),
        }
    }
}

crate::serde_via_string!(KeyType);

/// Why a key or signature was refused. No variant ever carries secret material or the text a
/// private key was parsed from.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyError {
    /// The string does not start with a known prefix.
    #[error("{what} must start with {expected}")]
    BadPrefix {
        /// What was being parsed.
        what: &'static str,
        /// The prefixes accepted.
        expected: &'static str,
    },
    /// A character outside the base58 alphabet.
    #[error("{what} is not valid base58: check for a typo (0, O, I and l are not base58)")]
    BadBase58 {
        /// What was being parsed.
        what: &'static str,
    },
    /// The string is longer than any valid one.
    #[error("{what} is {chars} characters long, more than the {max} a valid one can have")]
    TooLong {
        /// What was being parsed.
        what: &'static str,
        /// Characters given.
        chars: usize,
        /// The most a valid string can have.
        max: usize,
    },
    /// The checksum does not match: the string was mistyped, truncated or corrupted.
    #[error("{what} has a bad {form} checksum: the string was mistyped or corrupted")]
    BadChecksum {
        /// What was being parsed.
        what: &'static str,
        /// Which checksum was checked.
        form: &'static str,
    },
    /// The decoded payload has the wrong length.
    #[error("{what} decodes to {found} bytes, expected {expected}")]
    WrongLength {
        /// What was being parsed.
        what: &'static str,
        /// Bytes expected (payload and checksum).
        expected: usize,
        /// Bytes found.
        found: usize,
    },
    /// A public key that is not a point on its curve.
    #[error("{0} public key is not a valid point on the curve")]
    InvalidPoint(KeyType),
    /// A private key that is zero or not below the curve order.
    #[error("{0} private key is not a valid scalar (zero or not below the curve order)")]
    InvalidScalar(KeyType),
    /// A signature whose `r` or `s` is zero or not below the curve order.
    #[error("{0} signature has r or s zero or not below the curve order")]
    InvalidSignature(KeyType),
    /// A signature header byte outside 27..=34.
    #[error("signature header byte {0} is outside 27..=34")]
    BadHeader(u8),
    /// A key type or form rempart does not support.
    #[error("unsupported: {what}")]
    Unsupported {
        /// What is not supported.
        what: &'static str,
    },
    /// A key of one type where another was required.
    #[error("expected a {expected} key, got a {found} key")]
    KeyTypeMismatch {
        /// The type required.
        expected: KeyType,
        /// The type given.
        found: KeyType,
    },
    /// A K1 signature that fc's canonical rule refuses: sign again.
    #[error("K1 signature is not canonical under fc's rule: sign again")]
    NotCanonical,
    /// No public key can be recovered from the signature and digest.
    #[error("no public key can be recovered from this {0} signature and digest")]
    RecoveryFailed(KeyType),
    /// No recovery id gives back the expected public key.
    #[error(
        "no recovery id gives back the expected public key: the signature is not by this key \
         over this digest"
    )]
    RecoveryMismatch,
}

/// The checksum a string form carries after its payload.
#[derive(Clone, Copy)]
enum Check {
    /// First 4 bytes of ripemd160(payload ‖ suffix); an empty suffix is the legacy form.
    Ripemd(&'static [u8]),
    /// First 4 bytes of sha256(sha256(payload)): WIF.
    DoubleSha256,
}

impl Check {
    fn compute(self, payload: &[u8]) -> [u8; 4] {
        let mut out = [0u8; 4];
        match self {
            Check::Ripemd(suffix) => {
                let mut h = ripemd::Ripemd160::new();
                h.update(payload);
                h.update(suffix);
                out.copy_from_slice(&h.finalize()[..4]);
            }
            Check::DoubleSha256 => {
                let first = Zeroizing::new(<[u8; 32]>::from(sha2::Sha256::digest(payload)));
                out.copy_from_slice(&sha2::Sha256::digest(*first)[..4]);
            }
        }
        out
    }
}

/// The longest base58 string that can encode `bytes` bytes: each leading zero byte is one `1`,
/// the rest needs log(256)/log(58) ≈ 1.366 characters a byte.
fn max_base58_chars(bytes: usize) -> usize {
    bytes * 138 / 100 + 2
}

/// Decodes base58 `body` into a payload of exactly `len` bytes followed by a 4-byte `check`.
/// Returns the payload in a buffer that is zeroed when dropped (it may be a secret).
fn decode_checked(
    body: &str,
    what: &'static str,
    form: &'static str,
    len: usize,
    check: Check,
) -> Result<Zeroizing<Vec<u8>>, KeyError> {
    let total = len + 4;
    let max = max_base58_chars(total);
    if body.len() > max {
        return Err(KeyError::TooLong { what, chars: body.len(), max });
    }
    let raw =
        Zeroizing::new(bs58::decode(body).into_vec().map_err(|_| KeyError::BadBase58 { what })?);
    if raw.len() != total {
        return Err(KeyError::WrongLength { what, expected: total, found: raw.len() });
    }
    let (payload, sum) = raw.split_at(len);
    if check.compute(payload) != sum {
        return Err(KeyError::BadChecksum { what, form });
    }
    Ok(Zeroizing::new(payload.to_vec()))
}

/// Encodes `prefix` then base58 of `payload ‖ check`, in a buffer zeroed when dropped.
fn encode_checked(prefix: &str, payload: &[u8], check: Check) -> Zeroizing<String> {
    let mut raw = Zeroizing::new(Vec::with_capacity(payload.len() + 4));
    raw.extend_from_slice(payload);
    raw.extend_from_slice(&check.compute(payload));
    // Encode into a fixed buffer so no reallocation leaves a copy of a secret behind.
    let mut buf = Zeroizing::new([0u8; 128]);
    let n = bs58::encode(&raw[..]).onto(&mut buf[..]).unwrap_or(0);
    let mut out = Zeroizing::new(String::with_capacity(prefix.len() + n));
    out.push_str(prefix);
    for &b in &buf[..n] {
        out.push(char::from(b));
    }
    out
}

#[cfg(test)]
mod tests;
