//! The Antelope binary codec: the exact bytes `fc::raw` writes and reads.
//!
//! Integers are little-endian, lengths are LEB128 `varuint32`, booleans are one byte that must
//! be 0 or 1, optionals are a presence byte, vectors a length then the elements, fixed arrays
//! the raw elements. Types declare their layout once with [`packed_struct!`](crate::packed_struct).
//!
//! Every decoder here works on hostile bytes: it never panics, never allocates more than the
//! input could hold (a length prefix is checked against the bytes that remain before anything
//! is reserved) and reports where and why it stopped.

use std::fmt;

/// Why bytes could not be decoded. `at` positions are byte offsets into the input.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum DecodeError {
    /// The input ended inside a value.
    #[error("input ends at byte {at} but {needed} more bytes are needed")]
    UnexpectedEnd {
        /// Offset where the missing bytes should start.
        at: usize,
        /// How many bytes were missing.
        needed: usize,
    },
    /// A complete value was read but bytes remain after it.
    #[error("{count} trailing bytes after a complete value")]
    TrailingBytes {
        /// Number of bytes left over.
        count: usize,
    },
    /// A `varuint32` longer than 5 bytes or above `u32::MAX`.
    #[error("varuint32 at byte {at} is malformed or exceeds 32 bits")]
    BadVarint {
        /// Offset of the first byte of the varint.
        at: usize,
    },
    /// A length or element count larger than the remaining input could possibly hold.
    #[error("length {claimed} at byte {at} exceeds what the remaining {remaining} bytes can hold")]
    LengthTooLarge {
        /// Offset of the length prefix.
        at: usize,
        /// The length the input claimed.
        claimed: u64,
        /// Bytes that remained after the prefix.
        remaining: usize,
    },
    /// A length larger than a configured limit.
    #[error("{what} of {size} bytes exceeds the limit of {limit} bytes")]
    TooLarge {
        /// What was too large.
        what: &'static str,
        /// Its size.
        size: u64,
        /// The limit in force.
        limit: u64,
    },
    /// A boolean byte other than 0 or 1.
    #[error("invalid bool byte {value:#04x} at byte {at}")]
    InvalidBool {
        /// Offset of the byte.
        at: usize,
        /// The byte found.
        value: u8,
    },
    /// A string that is not UTF-8.
    #[error("string at byte {at} is not valid UTF-8")]
    InvalidUtf8 {
        /// Offset of the string's first byte.
        at: usize,
    },
    /// An enum or variant tag outside the known set.
    #[error("unknown {what} tag {tag} at byte {at}")]
    UnknownTag {
        /// The type whose tag was read.
        what: &'static str,
        /// The tag found.
        tag: u64,
        /// Offset of the tag.
        at: usize,
    },
    /// A value that decoded but is not valid for its type.
    #[error("invalid {what} at byte {at}: {reason}")]
    Invalid {
        /// The type being decoded.
        what: &'static str,
        /// Offset of the value.
        at: usize,
        /// Why it is invalid.
        reason: String,
    },
    /// Nesting deeper than the decoder allows.
    #[error("nesting deeper than {limit} levels at byte {at}")]
    TooDeep {
        /// Offset where the limit was hit.
        at: usize,
        /// The depth limit.
        limit: usize,
    },
    /// An error inside a named field; the chain of these is the field path.
    #[error("{field}: {source}")]
    InField {
        /// Field name.
        field: &'static str,
        /// The underlying error.
        source: Box<DecodeError>,
    },
}

impl DecodeError {
    /// Wraps the error with the name of the field it happened in.
    #[must_use]
    pub fn in_field(self, field: &'static str) -> Self {
        DecodeError::InField { field, source: Box::new(self) }
    }

    /// The innermost error, without the field path.
    pub fn root(&self) -> &DecodeError {
        match self {
            DecodeError::InField { source, .. } => source.root(),
            other => other,
        }
    }
}

/// Writes a value in Antelope's binary form.
pub trait Pack {
    /// Appends the packed bytes of `self` to `out`.
    fn pack(&self, out: &mut Vec<u8>);
}

/// Reads a value from Antelope's binary form.
pub trait Unpack: Sized {
    /// The fewest bytes one value can occupy. Vector decoding uses it to refuse counts the
    /// remaining input cannot hold before allocating anything.
    const MIN_SIZE: usize = 1;

    /// Reads one value, advancing the reader.
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError>;
}

/// Packs a value into a new buffer.
pub fn to_bytes<T: Pack + ?Sized>(value: &T) -> Vec<u8> {
    let mut out = Vec::new();
    value.pack(&mut out);
    out
}

/// Unpacks exactly one value: trailing bytes are an error.
pub fn from_bytes<T: Unpack>(data: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader::new(data);
    let v = T::unpack(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// Decodes bytes that this process validated itself when it first decoded them (a node's own
/// state records, data already decoded by [`from_bytes`]): as [`from_bytes`], except that
/// public keys are not checked again on their curve. Never use it on bytes from the network.
pub fn from_trusted_bytes<T: Unpack>(data: &[u8]) -> Result<T, DecodeError> {
    let mut r = Reader { trusted_keys: true, ..Reader::new(data) };
    let v = T::unpack(&mut r)?;
    r.finish()?;
    Ok(v)
}

/// A cursor over untrusted bytes.
#[derive(Debug, Clone)]
pub struct Reader<'a> {
    data: &'a [u8],
    pos: usize,
    trusted_keys: bool,
}

impl<'a> Reader<'a> {
    /// A reader at the start of `data`.
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data, pos: 0, trusted_keys: false }
    }

    /// Whether public keys were checked when these bytes were first decoded
    /// ([`from_trusted_bytes`]), so decoding may skip the curve check.
    pub fn trusts_keys(&self) -> bool {
        self.trusted_keys
    }

    /// Current offset.
    pub fn position(&self) -> usize {
        self.pos
    }

    /// Bytes not yet read.
    pub fn remaining(&self) -> usize {
        self.data.len() - self.pos
    }

    /// The unread bytes, without consuming them.
    pub fn rest(&self) -> &'a [u8] {
        &self.data[self.pos..]
    }

    /// Errors unless every byte has been read.
    pub fn finish(&self) -> Result<(), DecodeError> {
        match self.remaining() {
            0 => Ok(()),
            count => Err(DecodeError::TrailingBytes { count }),
        }
    }

    /// Takes the next `n` bytes.
    pub fn read_bytes(&mut self, n: usize) -> Result<&'a [u8], DecodeError> {
        if n > self.remaining() {
            return Err(DecodeError::UnexpectedEnd { at: self.pos, needed: n - self.remaining() });
        }
        let s = &self.data[self.pos..self.pos + n];
        self.pos += n;
        Ok(s)
    }

    /// Takes the next `N` bytes as an array.
    pub fn read_array<const N: usize>(&mut self) -> Result<[u8; N], DecodeError> {
        let mut a = [0u8; N];
        a.copy_from_slice(self.read_bytes(N)?);
        Ok(a)
    }

    /// Takes one byte.
    pub fn read_u8(&mut self) -> Result<u8, DecodeError> {
        Ok(self.read_bytes(1)?[0])
    }

    /// Reads a LEB128 `varuint32`: at most 5 bytes, at most `u32::MAX`.
    pub fn read_varuint32(&mut self) -> Result<u32, DecodeError> {
        let at = self.pos;
        let mut value: u64 = 0;
        for i in 0..5 {
            let b = self.read_u8()?;
            value |= u64::from(b & 0x7f) << (7 * i);
            if b & 0x80 == 0 {
                return u32::try_from(value).map_err(|_| DecodeError::BadVarint { at });
            }
        }
        Err(DecodeError::BadVarint { at })
    }

    /// Reads an element count and checks that `count * min_size` bytes remain.
    pub fn read_count(&mut self, min_size: usize) -> Result<usize, DecodeError> {
        let at = self.pos;
        let claimed = self.read_varuint32()?;
        let count = claimed as usize;
        let need = count.saturating_mul(min_size.max(1));
        if need > self.remaining() {
            return Err(DecodeError::LengthTooLarge {
                at,
                claimed: u64::from(claimed),
                remaining: self.remaining(),
            });
        }
        Ok(count)
    }

    /// Reads a length-prefixed byte string.
    pub fn read_prefixed_bytes(&mut self) -> Result<&'a [u8], DecodeError> {
        let n = self.read_count(1)?;
        self.read_bytes(n)
    }
}

/// Writes a LEB128 `varuint32`.
pub fn write_varuint32(out: &mut Vec<u8>, mut v: u32) {
    loop {
        let b = (v & 0x7f) as u8;
        v >>= 7;
        if v == 0 {
            out.push(b);
            return;
        }
        out.push(b | 0x80);
    }
}

macro_rules! impl_int {
    ($($t:ty),*) => {$(
        impl Pack for $t {
            fn pack(&self, out: &mut Vec<u8>) {
                out.extend_from_slice(&self.to_le_bytes());
            }
        }
        impl Unpack for $t {
            const MIN_SIZE: usize = std::mem::size_of::<$t>();
            fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
                Ok(<$t>::from_le_bytes(r.read_array()?))
            }
        }
    )*};
}
impl_int!(u8, u16, u32, u64, u128, i8, i16, i32, i64, i128, f32, f64);

impl Pack for bool {
    fn pack(&self, out: &mut Vec<u8>) {
        out.push(u8::from(*self));
    }
}
impl Unpack for bool {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        match r.read_u8()? {
            0 => Ok(false),
            1 => Ok(true),
            value => Err(DecodeError::InvalidBool { at, value }),
        }
    }
}

/// An unsigned LEB128 integer of at most 32 bits (`varuint32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VarUint32(pub u32);

impl Pack for VarUint32 {
    fn pack(&self, out: &mut Vec<u8>) {
        write_varuint32(out, self.0);
    }
}
impl Unpack for VarUint32 {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_varuint32().map(VarUint32)
    }
}

/// A zigzag-encoded signed LEB128 integer of at most 32 bits (`varint32`).
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct VarInt32(pub i32);

impl Pack for VarInt32 {
    fn pack(&self, out: &mut Vec<u8>) {
        let zz = ((self.0 << 1) ^ (self.0 >> 31)) as u32;
        write_varuint32(out, zz);
    }
}
impl Unpack for VarInt32 {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let zz = r.read_varuint32()?;
        Ok(VarInt32(((zz >> 1) as i32) ^ -((zz & 1) as i32)))
    }
}

impl Pack for str {
    fn pack(&self, out: &mut Vec<u8>) {
        write_varuint32(out, len_u32(self.len()));
        out.extend_from_slice(self.as_bytes());
    }
}
impl Pack for String {
    fn pack(&self, out: &mut Vec<u8>) {
        self.as_str().pack(out);
    }
}
impl Unpack for String {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let bytes = r.read_prefixed_bytes()?;
        std::str::from_utf8(bytes).map(str::to_owned).map_err(|_| DecodeError::InvalidUtf8 { at })
    }
}

/// Converts a length to the `u32` the wire format carries. Antelope values are far below 4 GiB;
/// a larger one is a programming error, not input, so it saturates rather than wrapping silently.
fn len_u32(len: usize) -> u32 {
    u32::try_from(len).unwrap_or(u32::MAX)
}

/// A length-prefixed byte string (`bytes`, `vector<char>`), shown as hex.
#[derive(Clone, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Bytes(pub Vec<u8>);

impl fmt::Debug for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Bytes({})", hex::encode(&self.0))
    }
}

impl fmt::Display for Bytes {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(&self.0))
    }
}

impl From<Vec<u8>> for Bytes {
    fn from(v: Vec<u8>) -> Self {
        Bytes(v)
    }
}

impl AsRef<[u8]> for Bytes {
    fn as_ref(&self) -> &[u8] {
        &self.0
    }
}

impl Pack for Bytes {
    fn pack(&self, out: &mut Vec<u8>) {
        write_varuint32(out, len_u32(self.0.len()));
        out.extend_from_slice(&self.0);
    }
}
impl Unpack for Bytes {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_prefixed_bytes().map(|b| Bytes(b.to_vec()))
    }
}

impl serde::Serialize for Bytes {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(&hex::encode(&self.0))
    }
}
impl<'de> serde::Deserialize<'de> for Bytes {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = <std::borrow::Cow<'de, str>>::deserialize(d)?;
        hex::decode(s.as_ref()).map(Bytes).map_err(serde::de::Error::custom)
    }
}

impl<T: Pack> Pack for Vec<T> {
    fn pack(&self, out: &mut Vec<u8>) {
        self.as_slice().pack(out);
    }
}
impl<T: Pack> Pack for [T] {
    fn pack(&self, out: &mut Vec<u8>) {
        write_varuint32(out, len_u32(self.len()));
        for v in self {
            v.pack(out);
        }
    }
}
impl<T: Unpack> Unpack for Vec<T> {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let n = r.read_count(T::MIN_SIZE)?;
        let mut v = Vec::with_capacity(n);
        for _ in 0..n {
            v.push(T::unpack(r)?);
        }
        Ok(v)
    }
}

impl<T: Pack> Pack for Option<T> {
    fn pack(&self, out: &mut Vec<u8>) {
        match self {
            None => out.push(0),
            Some(v) => {
                out.push(1);
                v.pack(out);
            }
        }
    }
}
impl<T: Unpack> Unpack for Option<T> {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        if bool::unpack(r)? { Ok(Some(T::unpack(r)?)) } else { Ok(None) }
    }
}

impl<const N: usize> Pack for [u8; N] {
    fn pack(&self, out: &mut Vec<u8>) {
        out.extend_from_slice(self);
    }
}
impl<const N: usize> Unpack for [u8; N] {
    const MIN_SIZE: usize = N;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        r.read_array()
    }
}

impl<A: Pack, B: Pack> Pack for (A, B) {
    fn pack(&self, out: &mut Vec<u8>) {
        self.0.pack(out);
        self.1.pack(out);
    }
}
impl<A: Unpack, B: Unpack> Unpack for (A, B) {
    const MIN_SIZE: usize = A::MIN_SIZE + B::MIN_SIZE;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok((A::unpack(r)?, B::unpack(r)?))
    }
}

impl<T: Pack + ?Sized> Pack for &T {
    fn pack(&self, out: &mut Vec<u8>) {
        (**self).pack(out);
    }
}

impl<T: Pack + ?Sized> Pack for Box<T> {
    fn pack(&self, out: &mut Vec<u8>) {
        (**self).pack(out);
    }
}

/// Declares a struct whose binary layout is its fields in order, as `FC_REFLECT` does, and
/// derives [`Pack`] and [`Unpack`] for it. Decoding errors name the field they happened in.
///
/// ```
/// rempart_core::packed_struct! {
///     /// A pair of counters.
///     #[derive(Debug, PartialEq)]
///     pub struct Pair { pub a: u32, pub b: u16 }
/// }
/// let bytes = rempart_core::codec::to_bytes(&Pair { a: 1, b: 2 });
/// assert_eq!(bytes, [1, 0, 0, 0, 2, 0]);
/// ```
#[macro_export]
macro_rules! packed_struct {
    (
        $(#[$meta:meta])*
        $vis:vis struct $name:ident {
            $( $(#[$fmeta:meta])* $fvis:vis $field:ident : $ty:ty ),* $(,)?
        }
    ) => {
        $(#[$meta])*
        $vis struct $name {
            $( $(#[$fmeta])* $fvis $field: $ty, )*
        }
        impl $crate::codec::Pack for $name {
            fn pack(&self, out: &mut ::std::vec::Vec<u8>) {
                $( $crate::codec::Pack::pack(&self.$field, out); )*
            }
        }
        impl $crate::codec::Unpack for $name {
            const MIN_SIZE: usize = 0 $( + <$ty as $crate::codec::Unpack>::MIN_SIZE )*;
            fn unpack(
                r: &mut $crate::codec::Reader<'_>,
            ) -> ::std::result::Result<Self, $crate::codec::DecodeError> {
                Ok(Self {
                    $( $field: <$ty as $crate::codec::Unpack>::unpack(r)
                        .map_err(|e| e.in_field(stringify!($field)))?, )*
                })
            }
        }
    };
}

#[cfg(test)]
mod tests;
