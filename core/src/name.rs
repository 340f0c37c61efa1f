//! Antelope `name`: up to 13 characters of `.12345a-z` packed into a `u64`, 5 bits for each of
//! the first twelve and 4 bits for the thirteenth.
//!
//! Parsing is strict, as nodeos is: a string that does not survive the round trip (trailing
//! dots, a thirteenth character above `j`, upper case, anything outside the alphabet) is an
//! error, never silently normalised into another account.

use std::fmt;
use std::str::FromStr;

use crate::codec::{DecodeError, Pack, Reader, Unpack};

const CHARMAP: &[u8; 32] = b".12345abcdefghijklmnopqrstuvwxyz";

/// An Antelope account, action, table or permission name.
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Name(pub u64);

/// Why a string is not a valid name.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum NameError {
    /// More than 13 characters.
    #[error("name {0:?} is longer than 13 characters")]
    TooLong(String),
    /// A character outside `.12345a-z`.
    #[error("name {name:?} has character {ch:?} outside `.12345a-z`")]
    BadChar {
        /// The whole input.
        name: String,
        /// The offending character.
        ch: char,
    },
    /// The 13th character can only be one of `.12345a-j`.
    #[error("name {0:?}: the 13th character must be one of `.12345a-j`")]
    BadThirteenth(String),
    /// The string does not round-trip (trailing dots).
    #[error("name {name:?} is not normalized (it reads back as {normalized:?})")]
    NotNormalized {
        /// The input.
        name: String,
        /// What it reads back as.
        normalized: String,
    },
}

fn char_value(c: u8) -> Option<u64> {
    match c {
        b'a'..=b'z' => Some(u64::from(c - b'a') + 6),
        b'1'..=b'5' => Some(u64::from(c - b'1') + 1),
        b'.' => Some(0),
        _ => None,
    }
}

impl Name {
    /// Parses a name at compile time; panics (a compile error in const context) if invalid.
    pub const fn from_const(s: &str) -> Name {
        let b = s.as_bytes();
        assert!(b.len() <= 13, "name longer than 13 characters");
        let mut value = 0u64;
        let mut i = 0;
        while i < b.len() {
            let c = b[i];
            let v = match c {
                b'a'..=b'z' => (c - b'a') as u64 + 6,
                b'1'..=b'5' => (c - b'1') as u64 + 1,
                b'.' => 0,
                _ => panic!("invalid character in name"),
            };
            if i < 12 {
                value |= (v & 0x1f) << (64 - 5 * (i + 1));
            } else {
                assert!(v <= 0x0f, "invalid 13th character in name");
                value |= v;
            }
            i += 1;
        }
        Name(value)
    }

    /// The raw `u64` value.
    pub const fn value(self) -> u64 {
        self.0
    }

    /// Writes the canonical string form into a stack buffer and returns its length.
    fn write(self, buf: &mut [u8; 13]) -> usize {
        let mut tmp = self.0;
        for i in 0..13 {
            let (mask, shift) = if i == 0 { (0x0f, 4) } else { (0x1f, 5) };
            buf[12 - i] = CHARMAP[(tmp & mask) as usize];
            tmp >>= shift;
        }
        let mut len = 13;
        while len > 0 && buf[len - 1] == b'.' {
            len -= 1;
        }
        len
    }
}

impl FromStr for Name {
    type Err = NameError;

    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let b = s.as_bytes();
        if b.len() > 13 {
            return Err(NameError::TooLong(s.to_owned()));
        }
        let mut value = 0u64;
        for (i, &c) in b.iter().enumerate() {
            let v = char_value(c).ok_or_else(|| NameError::BadChar {
                name: s.to_owned(),
                ch: s[i..].chars().next().unwrap_or('?'),
            })?;
            if i < 12 {
                value |= (v & 0x1f) << (64 - 5 * (i + 1));
            } else {
                if v > 0x0f {
                    return Err(NameError::BadThirteenth(s.to_owned()));
                }
                value |= v;
            }
        }
        let name = Name(value);
        let mut buf = [0u8; 13];
        let len = name.write(&mut buf);
        if &buf[..len] != b {
            return Err(NameError::NotNormalized {
                name: s.to_owned(),
                normalized: String::from_utf8_lossy(&buf[..len]).into_owned(),
            });
        }
        Ok(name)
    }
}

impl fmt::Display for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut buf = [0u8; 13];
        let len = self.write(&mut buf);
        // CHARMAP is ASCII, so this cannot fail.
        f.write_str(std::str::from_utf8(&buf[..len]).map_err(|_| fmt::Error)?)
    }
}

impl fmt::Debug for Name {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Name({self})")
    }
}

impl From<u64> for Name {
    fn from(v: u64) -> Self {
        Name(v)
    }
}

impl Pack for Name {
    fn pack(&self, out: &mut Vec<u8>) {
        self.0.pack(out);
    }
}
impl Unpack for Name {
    const MIN_SIZE: usize = 8;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        u64::unpack(r).map(Name)
    }
}

crate::serde_via_string!(Name);

#[cfg(test)]
mod tests;
