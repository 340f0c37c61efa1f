//! `rempart-core`: the Antelope language every rempart program speaks.
//!
//! The binary codec ([`codec`]), names, symbols and assets, time types, digests, K1 and R1 keys
//! and signatures with their string forms ([`key`]), transactions ([`transaction`]), blocks and
//! producer schedules ([`block`]), ABI definitions and the ABI-driven JSON⇄binary codec
//! ([`abi`]), and the signer's wire protocol ([`protocol`]). Beside the language, one piece of
//! arithmetic every program's accept loops share: the pause after a failed `accept`
//! ([`backoff`]).
//!
//! This crate does no I/O (its test helpers aside: `testing`, behind the `test-support`
//! feature) and has no async code. Every decoder here sees hostile bytes: it is
//! bounded by its input, never panics, and reports what it rejected and where.

pub mod abi;
pub mod admin;
pub mod asset;
pub mod backoff;
pub mod block;
pub mod checksum;
pub mod codec;
pub mod key;
#[cfg(feature = "log")]
pub mod log;
pub mod name;
pub mod protocol;
#[cfg(any(test, feature = "test-support"))]
pub mod testing;
pub mod time;
pub mod transaction;

pub use asset::{Asset, ExtendedAsset, Symbol, SymbolCode};
pub use checksum::{Checksum160, Checksum256, Checksum512};
pub use codec::{Bytes, DecodeError, Pack, Unpack, VarInt32, VarUint32, from_bytes, to_bytes};
pub use name::Name;
pub use time::{BlockTimestamp, TimePoint, TimePointSec};

/// Implements `serde::Serialize` and `serde::Deserialize` through `Display` and `FromStr`, the
/// string form nodeos uses in JSON.
#[doc(hidden)]
#[macro_export]
macro_rules! serde_via_string {
    ($($t:ty),* $(,)?) => {$(
        impl ::serde::Serialize for $t {
            fn serialize<S: ::serde::Serializer>(&self, s: S) -> ::std::result::Result<S::Ok, S::Error> {
                s.collect_str(self)
            }
        }
        impl<'de> ::serde::Deserialize<'de> for $t {
            fn deserialize<D: ::serde::Deserializer<'de>>(d: D) -> ::std::result::Result<Self, D::Error> {
                let s = <::std::borrow::Cow<'de, str> as ::serde::Deserialize>::deserialize(d)?;
                s.parse().map_err(::serde::de::Error::custom)
            }
        }
    )*};
}
