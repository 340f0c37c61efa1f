//! Fixed-size digests: `checksum160`, `checksum256`, `checksum512`, written as lower-case hex,
//! and the hash functions that make them.

use std::fmt;
use std::str::FromStr;

use sha2::Digest;

use crate::codec::{DecodeError, Pack, Reader, Unpack};

/// A hex string of the wrong length or with a non-hex character.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("expected {expected} hex characters, got {input:?}")]
pub struct ChecksumError {
    /// Hex characters expected.
    pub expected: usize,
    /// The input (truncated to 140 characters).
    pub input: String,
}

macro_rules! checksum {
    ($(#[$m:meta])* $name:ident, $n:literal) => {
        $(#[$m])*
        #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
        pub struct $name(pub [u8; $n]);

        impl $name {
            /// All zeros.
            pub const ZERO: Self = $name([0; $n]);
            /// The bytes.
            pub fn as_bytes(&self) -> &[u8; $n] {
                &self.0
            }
        }
        impl Default for $name {
            fn default() -> Self {
                Self::ZERO
            }
        }
        impl fmt::Display for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str(&hex::encode(self.0))
            }
        }
        impl fmt::Debug for $name {
            fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                write!(f, concat!(stringify!($name), "({})"), self)
            }
        }
        impl FromStr for $name {
            type Err = ChecksumError;
            fn from_str(s: &str) -> Result<Self, Self::Err> {
                let mut out = [0u8; $n];
                hex::decode_to_slice(s, &mut out).map_err(|_| ChecksumError {
                    expected: 2 * $n,
                    input: s.chars().take(140).collect(),
                })?;
                Ok($name(out))
            }
        }
        impl AsRef<[u8]> for $name {
            fn as_ref(&self) -> &[u8] {
                &self.0
            }
        }
        impl Pack for $name {
            fn pack(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.0);
            }
        }
        impl Unpack for $name {
            const MIN_SIZE: usize = $n;
            fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                r.read_array().map($name)
            }
        }
        crate::serde_via_string!($name);
    };
}

checksum!(
    /// A 20-byte digest (ripemd160, sha1).
    Checksum160,
    20
);
checksum!(
    /// A 32-byte digest (sha256): transaction and block ids, chain ids, signing digests.
    Checksum256,
    32
);
checksum!(
    /// A 64-byte digest (sha512).
    Checksum512,
    64
);

impl Checksum256 {
    /// sha256 of `data`.
    pub fn hash(data: &[u8]) -> Self {
        Checksum256(sha2::Sha256::digest(data).into())
    }

    /// sha256 of the concatenation of `parts`.
    pub fn hash_parts(parts: &[&[u8]]) -> Self {
        let mut h = sha2::Sha256::new();
        for p in parts {
            h.update(p);
        }
        Checksum256(h.finalize().into())
    }

    /// sha256 of a value's packed bytes.
    pub fn hash_packed<T: Pack + ?Sized>(value: &T) -> Self {
        Self::hash(&crate::codec::to_bytes(value))
    }
}

impl Checksum160 {
    /// ripemd160 of `data`.
    pub fn ripemd160(data: &[u8]) -> Self {
        Checksum160(ripemd::Ripemd160::digest(data).into())
    }
}

impl Checksum512 {
    /// sha512 of `data`.
    pub fn hash(data: &[u8]) -> Self {
        Checksum512(sha2::Sha512::digest(data).into())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hex_round_trip_and_errors() {
        let h = Checksum256::hash(b"abc");
        assert_eq!(
            h.to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
        assert_eq!(h.to_string().parse::<Checksum256>().unwrap(), h);
        assert_eq!(h.to_string().to_uppercase().parse::<Checksum256>().unwrap(), h);
        assert!("abcd".parse::<Checksum256>().is_err());
        assert!("zz".repeat(32).parse::<Checksum256>().is_err());
        assert_eq!(
            Checksum160::ripemd160(b"abc").to_string(),
            "8eb208f7e05d987a9b044a8e98c6b087f15a0bfc"
        );
        assert_eq!(Checksum256::hash_parts(&[b"a", b"bc"]), h);
    }
}
