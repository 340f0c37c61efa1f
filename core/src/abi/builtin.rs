//! The ABI's built-in types: their names, the fewest bytes each occupies, and their conversion
//! between JSON (the conventions in [`crate::abi`]) and the wire.
//!
//! Each conversion reuses the crate's own type (`Name`, `Asset`, `TimePoint`, `PublicKey`, …)
//! so there is one parser and one encoder per type. What must never happen here: a value
//! accepted that its type cannot hold (every integer is range-checked, every string parsed
//! strictly), or a byte read beyond what the reader holds.

use std::fmt::Display;
use std::str::FromStr;

use serde_json::{Number, Value};

use super::limit;
use crate::asset::{Asset, ExtendedAsset, Symbol, SymbolCode};
use crate::checksum::{Checksum160, Checksum256, Checksum512};
use crate::codec::{Bytes, DecodeError, Pack, Reader, Unpack, VarInt32, VarUint32};
use crate::key::{PublicKey, Signature};
use crate::name::Name;
use crate::time::{BlockTimestamp, TimePoint, TimePointSec};

/// A built-in ABI type.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(super) enum Builtin {
    Bool,
    Int8,
    Uint8,
    Int16,
    Uint16,
    Int32,
    Uint32,
    Int64,
    Uint64,
    Int128,
    Uint128,
    VarInt32,
    VarUint32,
    Float32,
    Float64,
    Float128,
    TimePoint,
    TimePointSec,
    BlockTimestamp,
    Name,
    Bytes,
    String,
    Checksum160,
    Checksum256,
    Checksum512,
    PublicKey,
    Signature,
    Symbol,
    SymbolCode,
    Asset,
    ExtendedAsset,
}

/// Every built-in with its ABI name and the fewest bytes one value occupies on the wire.
const TABLE: [(Builtin, &str, usize); 31] = [
    (Builtin::Bool, "bool", 1),
    (Builtin::Int8, "int8", 1),
    (Builtin::Uint8, "uint8", 1),
    (Builtin::Int16, "int16", 2),
    (Builtin::Uint16, "uint16", 2),
    (Builtin::Int32, "int32", 4),
    (Builtin::Uint32, "uint32", 4),
    (Builtin::Int64, "int64", 8),
    (Builtin::Uint64, "uint64", 8),
    (Builtin::Int128, "int128", 16),
    (Builtin::Uint128, "uint128", 16),
    (Builtin::VarInt32, "varint32", 1),
    (Builtin::VarUint32, "varuint32", 1),
    (Builtin::Float32, "float32", 4),
    (Builtin::Float64, "float64", 8),
    (Builtin::Float128, "float128", 16),
    (Builtin::TimePoint, "time_point", 8),
    (Builtin::TimePointSec, "time_point_sec", 4),
    (Builtin::BlockTimestamp, "block_timestamp_type", 4),
    (Builtin::Name, "name", 8),
    (Builtin::Bytes, "bytes", 1),
    (Builtin::String, "string", 1),
    (Builtin::Checksum160, "checksum160", 20),
    (Builtin::Checksum256, "checksum256", 32),
    (Builtin::Checksum512, "checksum512", 64),
    (Builtin::PublicKey, "public_key", <PublicKey as Unpack>::MIN_SIZE),
    (Builtin::Signature, "signature", <Signature as Unpack>::MIN_SIZE),
    (Builtin::Symbol, "symbol", 8),
    (Builtin::SymbolCode, "symbol_code", 8),
    (Builtin::Asset, "asset", 16),
    (Builtin::ExtendedAsset, "extended_asset", 24),
];

impl Builtin {
    /// The built-in called `name`, if any.
    pub(super) fn from_name(name: &str) -> Option<Builtin> {
        TABLE.iter().find(|(_, n, _)| *n == name).map(|(b, _, _)| *b)
    }

    /// Its ABI name.
    pub(super) fn name(self) -> &'static str {
        TABLE.iter().find(|(b, _, _)| *b == self).map_or("?", |(_, n, _)| n)
    }

    /// The fewest bytes one value occupies on the wire.
    pub(super) fn min_size(self) -> usize {
        TABLE.iter().find(|(b, _, _)| *b == self).map_or(1, |(_, _, s)| *s)
    }

    /// Appends the wire form of the JSON value `v`. The error says what is wrong with `v`.
    pub(super) fn encode(self, v: &Value, out: &mut Vec<u8>) -> Result<(), String> {
        let what = self.name();
        match self {
            Builtin::Bool => encode_bool(v)?.pack(out),
            Builtin::Int8 => ranged::<i8, _>(signed(v, what)?, v, what)?.pack(out),
            Builtin::Uint8 => ranged::<u8, _>(unsigned(v, what)?, v, what)?.pack(out),
            Builtin::Int16 => ranged::<i16, _>(signed(v, what)?, v, what)?.pack(out),
            Builtin::Uint16 => ranged::<u16, _>(unsigned(v, what)?, v, what)?.pack(out),
            Builtin::Int32 => ranged::<i32, _>(signed(v, what)?, v, what)?.pack(out),
            Builtin::Uint32 => ranged::<u32, _>(unsigned(v, what)?, v, what)?.pack(out),
            Builtin::Int64 => ranged::<i64, _>(signed(v, what)?, v, what)?.pack(out),
            Builtin::Uint64 => ranged::<u64, _>(unsigned(v, what)?, v, what)?.pack(out),
            Builtin::Int128 => signed(v, what)?.pack(out),
            Builtin::Uint128 => unsigned(v, what)?.pack(out),
            Builtin::VarInt32 => VarInt32(ranged(signed(v, what)?, v, what)?).pack(out),
            Builtin::VarUint32 => VarUint32(ranged(unsigned(v, what)?, v, what)?).pack(out),
            Builtin::Float32 => {
                let x = float(v, what)?;
                // Rounding to the nearest f32 is intended; overflow to infinity is not.
                let f = x as f32;
                if x.is_finite() && !f.is_finite() {
                    return Err(format!("{} is out of range for float32", show(v)));
                }
                f.pack(out);
            }
            Builtin::Float64 => float(v, what)?.pack(out),
            Builtin::Float128 => encode_float128(v)?.pack(out),
            Builtin::TimePoint => parsed::<TimePoint>(v, what)?.pack(out),
            Builtin::TimePointSec => parsed::<TimePointSec>(v, what)?.pack(out),
            Builtin::BlockTimestamp => parsed::<BlockTimestamp>(v, what)?.pack(out),
            Builtin::Name => parsed::<Name>(v, what)?.pack(out),
            Builtin::Bytes => {
                let s = string(v, "bytes (a hex string)")?;
                let b = hex::decode(s).map_err(|e| format!("bytes {}: {e}", show(v)))?;
                Bytes(b).pack(out);
            }
            Builtin::String => string(v, what)?.pack(out),
            Builtin::Checksum160 => parsed::<Checksum160>(v, what)?.pack(out),
            Builtin::Checksum256 => parsed::<Checksum256>(v, what)?.pack(out),
            Builtin::Checksum512 => parsed::<Checksum512>(v, what)?.pack(out),
            Builtin::PublicKey => parsed::<PublicKey>(v, what)?.pack(out),
            Builtin::Signature => parsed::<Signature>(v, what)?.pack(out),
            Builtin::Symbol => parsed::<Symbol>(v, what)?.pack(out),
            Builtin::SymbolCode => parsed::<SymbolCode>(v, what)?.pack(out),
            Builtin::Asset => parsed::<Asset>(v, what)?.pack(out),
            Builtin::ExtendedAsset => {
                if !v.is_object() {
                    return Err(expected("extended_asset {\"quantity\", \"contract\"}", v));
                }
                let e: ExtendedAsset = serde_json::from_value(v.clone())
                    .map_err(|e| format!("extended_asset {}: {e}", show(v)))?;
                e.pack(out);
            }
        }
        Ok(())
    }

    /// Reads one value from the wire into its JSON form.
    pub(super) fn decode(self, r: &mut Reader<'_>) -> Result<Value, DecodeError> {
        Ok(match self {
            Builtin::Bool => Value::Bool(bool::unpack(r)?),
            Builtin::Int8 => Value::from(i8::unpack(r)?),
            Builtin::Uint8 => Value::from(u8::unpack(r)?),
            Builtin::Int16 => Value::from(i16::unpack(r)?),
            Builtin::Uint16 => Value::from(u16::unpack(r)?),
            Builtin::Int32 => Value::from(i32::unpack(r)?),
            Builtin::Uint32 => Value::from(u32::unpack(r)?),
            Builtin::Int64 => json_i64(i64::unpack(r)?),
            Builtin::Uint64 => json_u64(u64::unpack(r)?),
            Builtin::Int128 => Value::String(i128::unpack(r)?.to_string()),
            Builtin::Uint128 => Value::String(u128::unpack(r)?.to_string()),
            Builtin::VarInt32 => Value::from(VarInt32::unpack(r)?.0),
            Builtin::VarUint32 => Value::from(VarUint32::unpack(r)?.0),
            Builtin::Float32 => json_f32(f32::unpack(r)?),
            Builtin::Float64 => json_f64(f64::unpack(r)?),
            Builtin::Float128 => {
                Value::String(format!("0x{}", hex::encode(<[u8; 16]>::unpack(r)?)))
            }
            Builtin::TimePoint => text(TimePoint::unpack(r)?),
            Builtin::TimePointSec => text(TimePointSec::unpack(r)?),
            Builtin::BlockTimestamp => text(BlockTimestamp::unpack(r)?),
            Builtin::Name => text(Name::unpack(r)?),
            Builtin::Bytes => text(Bytes::unpack(r)?),
            Builtin::String => Value::String(String::unpack(r)?),
            Builtin::Checksum160 => text(Checksum160::unpack(r)?),
            Builtin::Checksum256 => text(Checksum256::unpack(r)?),
            Builtin::Checksum512 => text(Checksum512::unpack(r)?),
            Builtin::PublicKey => text(PublicKey::unpack(r)?),
            Builtin::Signature => text(Signature::unpack(r)?),
            Builtin::Symbol => text(Symbol::unpack(r)?),
            Builtin::SymbolCode => text(SymbolCode::unpack(r)?),
            Builtin::Asset => text(Asset::unpack(r)?),
            Builtin::ExtendedAsset => {
                let e = ExtendedAsset::unpack(r)?;
                let mut m = serde_json::Map::new();
                m.insert("quantity".to_owned(), text(e.quantity));
                m.insert("contract".to_owned(), text(e.contract));
                Value::Object(m)
            }
        })
    }
}

/// A JSON value as quoted in an error, shortened.
pub(super) fn show(v: &Value) -> String {
    limit(&v.to_string())
}

/// A short name for the kind of a JSON value.
pub(super) fn kind(v: &Value) -> &'static str {
    match v {
        Value::Null => "null",
        Value::Bool(_) => "a boolean",
        Value::Number(_) => "a number",
        Value::String(_) => "a string",
        Value::Array(_) => "an array",
        Value::Object(_) => "an object",
    }
}

fn expected(what: &str, v: &Value) -> String {
    format!("expected {what}, got {} {}", kind(v), show(v))
}

fn text(v: impl Display) -> Value {
    Value::String(v.to_string())
}

fn string<'v>(v: &'v Value, what: &str) -> Result<&'v str, String> {
    v.as_str().ok_or_else(|| expected(what, v))
}

/// Parses a string value with the type's own `FromStr`.
fn parsed<T: FromStr>(v: &Value, what: &str) -> Result<T, String>
where
    T::Err: Display,
{
    string(v, &format!("{what} (a string)"))?
        .parse()
        .map_err(|e| format!("{what} {}: {e}", show(v)))
}

fn encode_bool(v: &Value) -> Result<bool, String> {
    match v {
        Value::Bool(b) => Ok(*b),
        Value::Number(n) if n.as_u64() == Some(0) => Ok(false),
        Value::Number(n) if n.as_u64() == Some(1) => Ok(true),
        Value::String(s) if s == "true" => Ok(true),
        Value::String(s) if s == "false" => Ok(false),
        _ => Err(expected("bool (true, false, 1 or 0)", v)),
    }
}

/// Largest integer a JSON float holds exactly.
const MAX_EXACT_FLOAT: f64 = 9_007_199_254_740_992.0;

/// An integer from a JSON number (integral floats included) or a decimal string.
fn signed(v: &Value, what: &str) -> Result<i128, String> {
    match v {
        Value::Number(n) => {
            if let Some(i) = n.as_i64() {
                Ok(i128::from(i))
            } else if let Some(u) = n.as_u64() {
                Ok(i128::from(u))
            } else {
                exact_float(n, v, what).map(|f| f as i128)
            }
        }
        Value::String(s) => decimal(s, v, what),
        _ => Err(expected(&format!("{what} (a number or a decimal string)"), v)),
    }
}

/// A non-negative integer from a JSON number or a decimal string.
fn unsigned(v: &Value, what: &str) -> Result<u128, String> {
    let negative = || format!("{} is negative, but {what} is unsigned", show(v));
    match v {
        Value::Number(n) => {
            if let Some(u) = n.as_u64() {
                Ok(u128::from(u))
            } else if n.as_i64().is_some() {
                Err(negative())
            } else {
                let f = exact_float(n, v, what)?;
                if f < 0.0 { Err(negative()) } else { Ok(f as u128) }
            }
        }
        Value::String(s) if s.starts_with('-') => Err(negative()),
        Value::String(s) => decimal(s, v, what),
        _ => Err(expected(&format!("{what} (a number or a decimal string)"), v)),
    }
}

/// A float that is an exact integer; anything else is not an integer.
fn exact_float(n: &Number, v: &Value, what: &str) -> Result<f64, String> {
    match n.as_f64() {
        Some(f) if f.fract() == 0.0 && f.abs() <= MAX_EXACT_FLOAT => Ok(f),
        _ => Err(format!("{} is not an integer that {what} can hold exactly", show(v))),
    }
}

/// Parses `[-]digits` into any integer type; the error says whether it was the form or the range.
fn decimal<T: FromStr>(s: &str, v: &Value, what: &str) -> Result<T, String> {
    let digits = s.strip_prefix('-').unwrap_or(s);
    if digits.is_empty() || !digits.bytes().all(|b| b.is_ascii_digit()) {
        return Err(format!("{} is not a decimal integer (expected {what})", show(v)));
    }
    s.parse().map_err(|_| format!("{} is out of range for {what}", show(v)))
}

/// Narrows to the wire type, refusing values out of its range.
fn ranged<T: TryFrom<X>, X>(x: X, v: &Value, what: &str) -> Result<T, String> {
    T::try_from(x).map_err(|_| format!("{} is out of range for {what}", show(v)))
}

fn float(v: &Value, what: &str) -> Result<f64, String> {
    match v {
        Value::Number(n) => n.as_f64().ok_or_else(|| expected(what, v)),
        Value::String(s) => {
            s.parse().map_err(|_| format!("{} is not a number (expected {what})", show(v)))
        }
        _ => Err(expected(&format!("{what} (a number or a numeric string)"), v)),
    }
}

fn encode_float128(v: &Value) -> Result<[u8; 16], String> {
    let s = string(v, "float128 (32 hex digits)")?;
    let h = s.strip_prefix("0x").or_else(|| s.strip_prefix("0X")).unwrap_or(s);
    let mut out = [0u8; 16];
    hex::decode_to_slice(h, &mut out)
        .map_err(|_| format!("float128 {} must be 32 hex digits, optionally after 0x", show(v)))?;
    Ok(out)
}

/// fc's rule: 64-bit integers beyond 32 bits of magnitude are strings (JavaScript cannot hold
/// them exactly).
fn json_i64(i: i64) -> Value {
    if i.unsigned_abs() > u64::from(u32::MAX) { text(i) } else { Value::from(i) }
}

fn json_u64(u: u64) -> Value {
    if u > u64::from(u32::MAX) { text(u) } else { Value::from(u) }
}

fn non_finite(x: f64) -> Value {
    let s = if x.is_nan() {
        "nan"
    } else if x > 0.0 {
        "inf"
    } else {
        "-inf"
    };
    Value::String(s.to_owned())
}

fn json_f64(x: f64) -> Value {
    Number::from_f64(x).map_or_else(|| non_finite(x), Value::Number)
}

/// An f32 as the shortest decimal that reads back to it (not the f64 widening of it, which
/// would print `0.1` as `0.10000000149011612`).
fn json_f32(x: f32) -> Value {
    if !x.is_finite() {
        return non_finite(f64::from(x));
    }
    let shortest: f64 = x.to_string().parse().unwrap_or(f64::from(x));
    json_f64(shortest)
}
