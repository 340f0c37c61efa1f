//! Token amounts: `symbol_code` (up to 7 letters `A-Z`), `symbol` (precision and code, as
//! `4,SYS`), `asset` (an amount in the symbol's smallest unit, as `1.0000 SYS`) and
//! `extended_asset` (an asset and the contract that issues it).
//!
//! The string forms follow nodeos: the precision of a parsed asset is the number of digits after
//! the point, amounts are bounded by `2^62 - 1`, and nothing is rounded.

use std::fmt;
use std::str::FromStr;

use crate::codec::{DecodeError, Pack, Reader, Unpack};
use crate::name::Name;

/// Largest precision a symbol can carry.
pub const MAX_PRECISION: u8 = 18;
/// Largest absolute amount of an asset, as in Antelope (`2^62 - 1`).
pub const MAX_AMOUNT: i64 = (1 << 62) - 1;

/// Why a symbol or an asset string is invalid.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum AssetError {
    /// A symbol code that is empty, too long or not `A-Z`.
    #[error("symbol code {0:?} must be 1 to 7 upper-case letters A-Z")]
    BadCode(String),
    /// A precision above 18.
    #[error("precision {0} exceeds the maximum of 18")]
    BadPrecision(u64),
    /// A symbol string not of the form `4,SYS`.
    #[error("symbol {0:?} must look like `4,SYS`")]
    BadSymbol(String),
    /// An asset string not of the form `1.0000 SYS`.
    #[error("asset {0:?} must look like `1.0000 SYS`")]
    BadAsset(String),
    /// An amount out of range.
    #[error("asset amount in {0:?} is out of range (at most 2^62-1 units)")]
    OutOfRange(String),
}

/// A symbol code: up to 7 upper-case letters stored little-endian in a `u64`.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct SymbolCode(pub u64);

impl SymbolCode {
    /// The raw value.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// Whether the raw value is 1–7 letters `A-Z` with no gaps.
    pub fn is_valid(self) -> bool {
        let mut v = self.0;
        if v == 0 {
            return false;
        }
        for _ in 0..7 {
            let c = (v & 0xff) as u8;
            if !c.is_ascii_uppercase() {
                return false;
            }
            v >>= 8;
            if v == 0 {
                return true;
            }
        }
        false
    }
}

impl FromStr for SymbolCode {
    type Err = AssetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if s.is_empty() || s.len() > 7 || !s.bytes().all(|c| c.is_ascii_uppercase()) {
            return Err(AssetError::BadCode(s.to_owned()));
        }
        Ok(SymbolCode(s.bytes().rev().fold(0u64, |acc, c| (acc << 8) | u64::from(c))))
    }
}

impl fmt::Display for SymbolCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut v = self.0;
        while v != 0 {
            let c = (v & 0xff) as u8;
            if c.is_ascii_graphic() {
                write!(f, "{}", c as char)?;
            } else {
                write!(f, "\\x{c:02x}")?;
            }
            v >>= 8;
        }
        Ok(())
    }
}

impl fmt::Debug for SymbolCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "SymbolCode({self})")
    }
}

impl Pack for SymbolCode {
    fn pack(&self, out: &mut Vec<u8>) {
        self.0.pack(out);
    }
}
impl Unpack for SymbolCode {
    const MIN_SIZE: usize = 8;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let c = SymbolCode(u64::unpack(r)?);
        if !c.is_valid() {
            return Err(DecodeError::Invalid {
                what: "symbol_code",
                at,
                reason: format!("{:#x} is not 1-7 letters A-Z", c.0),
            });
        }
        Ok(c)
    }
}

/// A symbol: precision in the low byte, code in the upper seven.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Symbol(pub u64);

impl Symbol {
    /// A symbol from a precision and a code.
    pub fn new(precision: u8, code: SymbolCode) -> Result<Self, AssetError> {
        if precision > MAX_PRECISION {
            return Err(AssetError::BadPrecision(precision.into()));
        }
        Ok(Symbol((code.0 << 8) | u64::from(precision)))
    }
    /// Digits after the point.
    pub const fn precision(self) -> u8 {
        (self.0 & 0xff) as u8
    }
    /// The code part.
    pub const fn code(self) -> SymbolCode {
        SymbolCode(self.0 >> 8)
    }
    /// The raw value.
    pub const fn value(self) -> u64 {
        self.0
    }
    fn is_valid(self) -> bool {
        self.precision() <= MAX_PRECISION && self.code().is_valid()
    }
}

impl FromStr for Symbol {
    type Err = AssetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (p, c) = s.split_once(',').ok_or_else(|| AssetError::BadSymbol(s.to_owned()))?;
        if p.is_empty() || p.len() > 2 || !p.bytes().all(|b| b.is_ascii_digit()) {
            return Err(AssetError::BadSymbol(s.to_owned()));
        }
        let precision: u8 = p.parse().map_err(|_| AssetError::BadSymbol(s.to_owned()))?;
        Symbol::new(precision, c.parse()?)
    }
}

impl fmt::Display for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "{},{}", self.precision(), self.code())
    }
}

impl fmt::Debug for Symbol {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Symbol({self})")
    }
}

impl Pack for Symbol {
    fn pack(&self, out: &mut Vec<u8>) {
        self.0.pack(out);
    }
}
impl Unpack for Symbol {
    const MIN_SIZE: usize = 8;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let s = Symbol(u64::unpack(r)?);
        if !s.is_valid() {
            return Err(DecodeError::Invalid {
                what: "symbol",
                at,
                reason: format!("{:#x} has a bad precision or code", s.0),
            });
        }
        Ok(s)
    }
}

/// An amount of a token.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub struct Asset {
    /// Amount in the smallest unit.
    pub amount: i64,
    /// The token symbol.
    pub symbol: Symbol,
}

impl Asset {
    /// Whether the amount is within `±(2^62-1)`.
    pub fn is_amount_within_range(&self) -> bool {
        (-MAX_AMOUNT..=MAX_AMOUNT).contains(&self.amount)
    }
}

impl FromStr for Asset {
    type Err = AssetError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let bad = || AssetError::BadAsset(s.to_owned());
        let t = s.trim();
        let (num, code) = t.split_once(' ').ok_or_else(bad)?;
        let code: SymbolCode = code.trim().parse()?;
        let (neg, digits) = match num.strip_prefix('-') {
            Some(rest) => (true, rest),
            None => (false, num),
        };
        let (int, frac) = match digits.split_once('.') {
            Some((i, f)) => (i, f),
            None => (digits, ""),
        };
        if int.is_empty()
            || !int.bytes().all(|b| b.is_ascii_digit())
            || !frac.bytes().all(|b| b.is_ascii_digit())
            || (digits.contains('.') && frac.is_empty())
        {
            return Err(bad());
        }
        let precision = u8::try_from(frac.len()).map_err(|_| AssetError::BadPrecision(u64::MAX))?;
        let symbol = Symbol::new(precision, code)?;
        let mut amount: i128 = 0;
        for b in int.bytes().chain(frac.bytes()) {
            amount = amount * 10 + i128::from(b - b'0');
            if amount > i128::from(MAX_AMOUNT) {
                return Err(AssetError::OutOfRange(s.to_owned()));
            }
        }
        let amount = if neg { -amount } else { amount };
        Ok(Asset { amount: amount as i64, symbol })
    }
}

impl fmt::Display for Asset {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let p = u32::from(self.symbol.precision());
        let abs = self.amount.unsigned_abs();
        let sign = if self.amount < 0 { "-" } else { "" };
        if p == 0 {
            write!(f, "{sign}{abs} {}", self.symbol.code())
        } else {
            let div = 10u64.pow(p);
            write!(
                f,
                "{sign}{}.{:0width$} {}",
                abs / div,
                abs % div,
                self.symbol.code(),
                width = p as usize
            )
        }
    }
}

impl Pack for Asset {
    fn pack(&self, out: &mut Vec<u8>) {
        self.amount.pack(out);
        self.symbol.pack(out);
    }
}
impl Unpack for Asset {
    const MIN_SIZE: usize = 16;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let a = Asset { amount: i64::unpack(r)?, symbol: Symbol::unpack(r)? };
        if !a.is_amount_within_range() {
            return Err(DecodeError::Invalid {
                what: "asset",
                at,
                reason: format!("amount {} is beyond 2^62-1", a.amount),
            });
        }
        Ok(a)
    }
}

crate::packed_struct! {
    /// An asset together with the contract that issues it.
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, serde::Serialize, serde::Deserialize)]
    #[serde(deny_unknown_fields)]
    pub struct ExtendedAsset {
        /// The amount.
        pub quantity: Asset,
        /// The issuing contract.
        pub contract: Name,
    }
}

crate::serde_via_string!(SymbolCode, Symbol, Asset);

#[cfg(test)]
mod tests;
