//! Public keys: compressed SEC1 points on secp256k1 (K1) or P-256 (R1), their `PUB_K1_…`,
//! `PUB_R1_…` and legacy `EOS…` strings and their binary form. A point that is not on its curve
//! is refused by every constructor that sees outside bytes.

use std::fmt;
use std::str::FromStr;

use p256::elliptic_curve::sec1::ToEncodedPoint as _;

use super::{Check, KeyError, KeyType, decode_checked, encode_checked};
use crate::codec::{DecodeError, Pack, Reader, Unpack};

/// An Antelope public key: a compressed SEC1 point (33 bytes) on its curve.
///
/// Build it from outside bytes with [`PublicKey::from_bytes`] or [`PublicKey::from_sec1`],
/// which check the point; the variants themselves do not.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum PublicKey {
    /// A secp256k1 key.
    K1([u8; 33]),
    /// A NIST P-256 key.
    R1([u8; 33]),
}

impl PublicKey {
    /// A key of `key_type` from its 33 compressed bytes, checked to be a point on the curve.
    pub fn from_bytes(key_type: KeyType, bytes: &[u8; 33]) -> Result<PublicKey, KeyError> {
        Self::from_sec1(key_type, bytes)
    }

    /// A key of `key_type` from SEC1 bytes, compressed (33 bytes) or uncompressed (65 bytes,
    /// as a PKCS#11 `CKA_EC_POINT` holds once its DER header is removed). The point is checked.
    pub fn from_sec1(key_type: KeyType, bytes: &[u8]) -> Result<PublicKey, KeyError> {
        let invalid = KeyError::InvalidPoint(key_type);
        match key_type {
            KeyType::K1 => {
                let pk = secp256k1::PublicKey::from_slice(bytes).map_err(|_| invalid)?;
                Ok(PublicKey::K1(pk.serialize()))
            }
            KeyType::R1 => {
                let pk = p256::PublicKey::from_sec1_bytes(bytes).map_err(|_| invalid)?;
                Ok(PublicKey::R1(compress_p256(&pk)))
            }
        }
    }

    /// The curve of this key.
    pub fn key_type(&self) -> KeyType {
        match self {
            PublicKey::K1(_) => KeyType::K1,
            PublicKey::R1(_) => KeyType::R1,
        }
    }

    /// The 33 compressed SEC1 bytes.
    pub fn as_bytes(&self) -> &[u8; 33] {
        match self {
            PublicKey::K1(b) | PublicKey::R1(b) => b,
        }
    }

    /// Whether the bytes are a valid point on the key's curve.
    pub fn is_valid(&self) -> bool {
        Self::from_sec1(self.key_type(), self.as_bytes()).is_ok()
    }

    /// The legacy `EOS…` string. Only K1 keys have one; an R1 key is an error.
    pub fn to_legacy_string(&self) -> Result<String, KeyError> {
        match self {
            PublicKey::K1(b) => Ok(encode_checked("EOS", b, Check::Ripemd(b"")).to_string()),
            PublicKey::R1(_) => Err(KeyError::Unsupported {
                what: "the legacy EOS… form exists only for K1 keys",
            }),
        }
    }
}

/// The 33-byte compressed encoding of a P-256 point.
pub(super) fn compress_p256(pk: &p256::PublicKey) -> [u8; 33] {
    let point = pk.to_encoded_point(true);
    let mut out = [0u8; 33];
    out.copy_from_slice(point.as_bytes());
    out
}

const WHAT: &str = "public key";

impl FromStr for PublicKey {
    type Err = KeyError;

    /// Parses `PUB_K1_…`, `PUB_R1_…` or legacy `EOS…`; the checksum and the point are checked.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key_type, body, check, form) = if let Some(body) = s.strip_prefix("PUB_K1_") {
            (KeyType::K1, body, Check::Ripemd(b"K1"), "PUB_K1 ripemd160")
        } else if let Some(body) = s.strip_prefix("PUB_R1_") {
            (KeyType::R1, body, Check::Ripemd(b"R1"), "PUB_R1 ripemd160")
        } else if s.starts_with("PUB_WA_") {
            return Err(KeyError::Unsupported { what: "WebAuthn keys are not supported" });
        } else if let Some(body) = s.strip_prefix("EOS") {
            (KeyType::K1, body, Check::Ripemd(b""), "legacy EOS ripemd160")
        } else {
            return Err(KeyError::BadPrefix { what: WHAT, expected: "PUB_K1_, PUB_R1_ or EOS" });
        };
        let payload = decode_checked(body, WHAT, form, 33, check)?;
        Self::from_sec1(key_type, &payload)
    }
}

impl fmt::Display for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            PublicKey::K1(b) => encode_checked("PUB_K1_", b, Check::Ripemd(b"K1")),
            PublicKey::R1(b) => encode_checked("PUB_R1_", b, Check::Ripemd(b"R1")),
        };
        f.write_str(&s)
    }
}

impl fmt::Debug for PublicKey {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "PublicKey({self})")
    }
}

impl Pack for PublicKey {
    fn pack(&self, out: &mut Vec<u8>) {
        out.push(self.key_type().tag());
        out.extend_from_slice(self.as_bytes());
    }
}

impl Unpack for PublicKey {
    const MIN_SIZE: usize = 34;

    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let key_type = KeyType::unpack_tag(r, WHAT)?;
        let at = r.position();
        let bytes: [u8; 33] = r.read_array()?;
        // Bytes checked when first decoded: a valid compressed point is stored as it came.
        if r.trusts_keys() && matches!(bytes[0], 2 | 3) {
            return Ok(match key_type {
                KeyType::K1 => PublicKey::K1(bytes),
                KeyType::R1 => PublicKey::R1(bytes),
            });
        }
        Self::from_bytes(key_type, &bytes).map_err(|e| DecodeError::Invalid {
            what: WHAT,
            at,
            reason: e.to_string(),
        })
    }
}

crate::serde_via_string!(PublicKey);
