//! ABI definitions (`eosio::abi/1.0` to `1.2`) and the ABI-driven JSON⇄binary codec.
//!
//! [`AbiDef`] is an ABI as a contract ships it, in both of its forms: the JSON that
//! `cleos set abi` reads and `get_abi` returns (nodeos field names), and the binary that the
//! `setabi` action carries and `get_raw_abi` returns (byte for byte what `fc::raw::pack` writes
//! for Antelope's `abi_def`, with `variants` and `action_results` as trailing extensions).
//! [`Abi`] is an `AbiDef` that passed validation: the version is `eosio::abi/1.x`, no name is
//! defined twice, every type it names resolves, no alias, base or by-value cycle exists and
//! nesting is bounded. Only an `Abi` converts data, with [`Abi::json_to_bin`] and
//! [`Abi::bin_to_json`], following the JSON conventions described below.
//!
//! What must never happen here: a hostile ABI or a hostile blob overflowing the stack,
//! allocating beyond what its input could hold, running without bound or panicking; an error
//! that does not say which definition or which field path is wrong. JSON ABIs are read
//! leniently where nodeos is (missing arrays are empty, unknown fields such as `____comment`
//! are ignored); binary input never is.
//!
//! # JSON conventions
//!
//! - Integers up to 32 bits, `varint32` and `varuint32` are JSON numbers.
//! - `int64` and `uint64` are numbers when their magnitude is at most `0xffffffff`, strings
//!   beyond (fc's `stringify_large_ints` rule; nodeos leaves large *negative* `int64` as
//!   numbers, which JavaScript cannot hold exactly, so we make them strings too).
//! - `int128` and `uint128` are always decimal strings; `float128` is `0x` and 32 hex digits
//!   (the 16 bytes in wire order), as nodeos writes it.
//! - `float32` and `float64` are JSON numbers (eosjs and wharfkit's form; nodeos quotes them),
//!   the shortest decimal that reads back to the same value; NaN and infinities are the strings
//!   `"nan"`, `"inf"`, `"-inf"`.
//! - `bool` is `true`/`false` (nodeos writes `1`/`0`; both are accepted on input).
//! - `bytes` is lower-case hex; `name`, `symbol`, `symbol_code`, `asset`, the time types,
//!   checksums, `public_key` and `signature` are their usual strings; `extended_asset` is
//!   `{"quantity": …, "contract": …}`; a variant is `["type_name", value]`.
//! - On input every integer may be a JSON number or a decimal string, and is range-checked
//!   (256 is not a `uint8`); floats may be numbers or strings.
//! - A struct is a JSON object. A missing field is an error, except a missing `T?` field, which
//!   is `null` as in nodeos, and a missing trailing `T$` binary extension, which ends the
//!   struct; an unknown field is an error (nodeos ignores it: we refuse data we would drop).
//!   A struct without a base may also be given as an array of its field values, as nodeos
//!   accepts.

use std::collections::HashMap;
use std::sync::LazyLock;

use serde::{Deserialize, Serialize};
use serde_json::Value;

use crate::codec::{Bytes, DecodeError, Pack, Reader, Unpack, VarUint32, from_bytes, to_bytes};
use crate::name::Name;

mod builtin;
mod schema;
mod serializer;

/// Deepest nesting of values (structs, vectors, optionals, variants) the codec follows, as
/// nodeos's `abi_serializer::max_recursion_depth`. Validation also rejects ABIs whose structs
/// nest by value or through bases deeper than this.
pub const MAX_DEPTH: usize = 32;

/// The bios-compatible ABI of the `eosio` account (native actions `newaccount`, `updateauth`,
/// `deleteauth`, `linkauth`, `unlinkauth`, `setcode`, `setabi`, … and the bios contract's
/// `setprods`, `setpriv`, `setalimits`, `setparams`, `activate`, …), as JSON.
pub const EOSIO_SYSTEM_ABI_JSON: &str = include_str!("../abi/eosio.abi.json");

/// The standard `eosio.token` ABI (`create`, `issue`, `retire`, `transfer`, `open`, `close`;
/// tables `accounts` and `stat`), as JSON.
pub const EOSIO_TOKEN_ABI_JSON: &str = include_str!("../abi/eosio.token.abi.json");

static EOSIO_SYSTEM_ABI: LazyLock<Abi> = LazyLock::new(|| {
    Abi::from_json(EOSIO_SYSTEM_ABI_JSON).expect("the bundled eosio ABI is valid (tested)")
});
static EOSIO_TOKEN_ABI: LazyLock<Abi> = LazyLock::new(|| {
    Abi::from_json(EOSIO_TOKEN_ABI_JSON).expect("the bundled eosio.token ABI is valid (tested)")
});

/// The validated [`EOSIO_SYSTEM_ABI_JSON`].
pub fn eosio_system_abi() -> &'static Abi {
    &EOSIO_SYSTEM_ABI
}

/// The validated [`EOSIO_TOKEN_ABI_JSON`].
pub fn eosio_token_abi() -> &'static Abi {
    &EOSIO_TOKEN_ABI
}

/// Why an ABI or the data it describes was refused. Every message names the definition or the
/// field path (`transfer.quantity`, `newaccount.owner.keys[0].key`) and what to fix.
#[derive(Debug, Clone, PartialEq, thiserror::Error)]
#[non_exhaustive]
pub enum AbiError {
    /// ABI JSON that does not parse into an ABI.
    #[error(
        "ABI JSON is malformed: {0}; fix the ABI file (an object with `version`, `structs`, `actions`, …)"
    )]
    Json(String),
    /// ABI bytes that do not decode into an ABI.
    #[error("ABI binary is malformed: {0}; it must be a packed abi_def, as `setabi` carries")]
    Binary(DecodeError),
    /// A version other than `eosio::abi/1.x`.
    #[error("ABI version {0:?} is not supported: it must start with `eosio::abi/1.`")]
    Version(String),
    /// A name defined twice, or clashing with a built-in type or another kind of definition.
    #[error(
        "{kind} {name:?} is defined more than once or clashes with a built-in or another type; \
         rename or remove one"
    )]
    Duplicate {
        /// The kind of definition (`type`, `struct`, `variant`, `action`, …).
        kind: &'static str,
        /// The clashing name.
        name: String,
    },
    /// An alias, base or by-value chain that leads back to where it started.
    #[error("{definition}: circular definition {chain}; break the cycle")]
    Cycle {
        /// The definition where the cycle was found.
        definition: String,
        /// The cycle, as `a -> b -> a`.
        chain: String,
    },
    /// A definition that is otherwise invalid: unknown type, misplaced `$`, nesting too deep.
    #[error("{definition}: {reason}")]
    Definition {
        /// The offending definition, e.g. `struct "transfer" field "quantity"`.
        definition: String,
        /// What is wrong with it.
        reason: String,
    },
    /// A type name the ABI does not define (and that is not built in).
    #[error("type {0:?} is not defined by this ABI nor built in; check the type name")]
    UnknownType(String),
    /// An action the ABI does not declare.
    #[error("action {0} is not declared by this ABI; check the action name and the contract")]
    UnknownAction(Name),
    /// A JSON value that does not fit its type.
    #[error("{path}: {reason}")]
    Value {
        /// Where in the value, e.g. `transfer.quantity`.
        path: String,
        /// What is wrong with it.
        reason: String,
    },
    /// Bytes that do not decode as their type.
    #[error("{path}: {error}")]
    Decode {
        /// Where in the value the bytes stopped making sense.
        path: String,
        /// The decoding error (its offsets are into the whole input).
        error: DecodeError,
    },
    /// Data nested deeper than [`MAX_DEPTH`].
    #[error(
        "{path}: nested deeper than {limit} levels; the data or its ABI is too deeply recursive"
    )]
    TooDeep {
        /// Where the limit was hit.
        path: String,
        /// The limit.
        limit: usize,
    },
    /// Bytes left over after a complete value.
    #[error("{count} bytes remain after a complete {type_name}; the data is longer than its type")]
    TrailingBytes {
        /// The type that was decoded.
        type_name: String,
        /// How many bytes were left.
        count: usize,
    },
}

/// Shortens a name or value quoted in an error so a hostile ABI cannot make messages huge.
pub(crate) fn limit(s: &str) -> String {
    const MAX: usize = 64;
    if s.len() <= MAX {
        return s.to_owned();
    }
    let mut end = MAX;
    while !s.is_char_boundary(end) {
        end -= 1;
    }
    format!("{}…", &s[..end])
}

crate::packed_struct! {
    /// An alias (`types` entry): `new_type_name` stands for `type`.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct TypeDef {
        /// The alias.
        pub new_type_name: String,
        /// The type it stands for.
        pub r#type: String,
    }
}

crate::packed_struct! {
    /// One field of a struct.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct FieldDef {
        /// The field name (the JSON key).
        pub name: String,
        /// Its type, possibly with a `?`, `[]` or trailing `$` suffix.
        pub r#type: String,
    }
}

crate::packed_struct! {
    /// A struct: the fields of `base` (if not empty) then its own.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct StructDef {
        /// The struct's type name.
        pub name: String,
        /// The struct it extends, or empty.
        pub base: String,
        /// Its own fields, in wire order.
        pub fields: Vec<FieldDef>,
    }
}

crate::packed_struct! {
    /// An action the contract accepts and the type of its data.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ActionDef {
        /// The action name.
        pub name: Name,
        /// The type of its data (usually a struct of the same name).
        pub r#type: String,
        /// The Ricardian contract text.
        pub ricardian_contract: String,
    }
}

crate::packed_struct! {
    /// A table the contract stores and the type of its rows.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct TableDef {
        /// The table name.
        pub name: Name,
        /// The primary index type (`i64`).
        pub index_type: String,
        /// Names of the key fields (informational).
        pub key_names: Vec<String>,
        /// Types of the key fields (informational).
        pub key_types: Vec<String>,
        /// The row type.
        pub r#type: String,
    }
}

crate::packed_struct! {
    /// A Ricardian clause.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ClausePair {
        /// The clause id.
        pub id: String,
        /// The clause text.
        pub body: String,
    }
}

crate::packed_struct! {
    /// A message for an `eosio_assert_code` error code.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ErrorMessage {
        /// The code; in JSON a number or a decimal string.
        #[serde(with = "error_code")]
        pub error_code: u64,
        /// The message.
        pub error_msg: String,
    }
}

crate::packed_struct! {
    /// A variant (ABI 1.1): one of `types`, written as a `varuint32` index then the value.
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct VariantDef {
        /// The variant's type name.
        pub name: String,
        /// Its alternatives, in tag order.
        pub types: Vec<String>,
    }
}

crate::packed_struct! {
    /// The type an action returns (ABI 1.2).
    #[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
    #[serde(default)]
    pub struct ActionResultDef {
        /// The action name.
        pub name: Name,
        /// The type of its return value.
        pub result_type: String,
    }
}

/// An ABI as shipped, not yet validated: see [`Abi`] for the checked form.
///
/// Binary: the fields in order, `variants` and `action_results` being Antelope's
/// `may_not_exist` extensions: absent at the end of the input they read as empty; written, they
/// are always present (as `fc::raw::pack` does). An empty EOSIO 2.1 `kv_tables` map after them,
/// as eosjs 22 writes, is read and dropped. JSON: nodeos's field names; missing fields
/// read as empty and unknown ones are ignored, as nodeos does.
#[derive(Debug, Clone, PartialEq, Eq, Default, Serialize, Deserialize)]
#[serde(default)]
pub struct AbiDef {
    /// `eosio::abi/1.0`, `1.1` or `1.2`.
    pub version: String,
    /// Aliases.
    pub types: Vec<TypeDef>,
    /// Structs.
    pub structs: Vec<StructDef>,
    /// Actions.
    pub actions: Vec<ActionDef>,
    /// Tables.
    pub tables: Vec<TableDef>,
    /// Ricardian clauses.
    pub ricardian_clauses: Vec<ClausePair>,
    /// Error messages.
    pub error_messages: Vec<ErrorMessage>,
    /// Extensions: `[tag, hex bytes]` pairs.
    pub abi_extensions: Vec<(u16, Bytes)>,
    /// Variants (binary extension, ABI 1.1).
    pub variants: Vec<VariantDef>,
    /// Action result types (binary extension, ABI 1.2).
    pub action_results: Vec<ActionResultDef>,
}

impl AbiDef {
    /// Parses the JSON form.
    pub fn from_json(json: &str) -> Result<AbiDef, AbiError> {
        serde_json::from_str(json).map_err(|e| AbiError::Json(e.to_string()))
    }

    /// Decodes the binary form; trailing bytes are an error.
    pub fn from_bin(data: &[u8]) -> Result<AbiDef, AbiError> {
        from_bytes(data).map_err(AbiError::Binary)
    }

    /// The binary form, as `setabi` carries it.
    pub fn to_bin(&self) -> Vec<u8> {
        to_bytes(self)
    }
}

impl Pack for AbiDef {
    fn pack(&self, out: &mut Vec<u8>) {
        self.version.pack(out);
        self.types.pack(out);
        self.structs.pack(out);
        self.actions.pack(out);
        self.tables.pack(out);
        self.ricardian_clauses.pack(out);
        self.error_messages.pack(out);
        self.abi_extensions.pack(out);
        self.variants.pack(out);
        self.action_results.pack(out);
    }
}

/// Reads one field of [`AbiDef`], naming it in errors.
fn field<T: Unpack>(r: &mut Reader<'_>, name: &'static str) -> Result<T, DecodeError> {
    T::unpack(r).map_err(|e| e.in_field(name))
}

/// Reads a `may_not_exist` extension: empty when the input has ended.
fn extension<T: Unpack>(r: &mut Reader<'_>, name: &'static str) -> Result<Vec<T>, DecodeError> {
    if r.remaining() == 0 { Ok(Vec::new()) } else { field(r, name) }
}

impl Unpack for AbiDef {
    const MIN_SIZE: usize = 8;

    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(AbiDef {
            version: field(r, "version")?,
            types: field(r, "types")?,
            structs: field(r, "structs")?,
            actions: field(r, "actions")?,
            tables: field(r, "tables")?,
            ricardian_clauses: field(r, "ricardian_clauses")?,
            error_messages: field(r, "error_messages")?,
            abi_extensions: field(r, "abi_extensions")?,
            variants: extension(r, "variants")?,
            action_results: extension(r, "action_results")?,
        })
        .and_then(|def| no_kv_tables(r).map(|()| def))
    }
}

/// EOSIO 2.1's `kv_tables` extension, which eosjs 22 still writes after `action_results` (an
/// empty map: one zero byte). nodeos stores `setabi` bytes without decoding them, so eosjs's
/// ABIs deploy there; here the empty map is accepted and a non-empty one, a feature Leap
/// removed, is refused by name.
fn no_kv_tables(r: &mut Reader<'_>) -> Result<(), DecodeError> {
    if r.remaining() == 0 {
        return Ok(());
    }
    let at = r.position();
    match VarUint32::unpack(r).map_err(|e| e.in_field("kv_tables"))? {
        VarUint32(0) => Ok(()),
        VarUint32(n) => Err(DecodeError::Invalid {
            what: "kv_tables",
            at,
            reason: format!(
                "{n} key-value tables (EOSIO 2.1 kv_tables are not supported; use multi_index \
                 tables)"
            ),
        }
        .in_field("kv_tables")),
    }
}

/// `error_code` in JSON: a number or a decimal string on input; on output a number up to
/// `0xffffffff`, a string beyond, as fc writes a `uint64`.
mod error_code {
    use std::fmt;

    use serde::de::{self, Visitor};
    use serde::{Deserializer, Serializer};

    pub(super) fn serialize<S: Serializer>(v: &u64, s: S) -> Result<S::Ok, S::Error> {
        if *v > u64::from(u32::MAX) { s.collect_str(v) } else { s.serialize_u64(*v) }
    }

    pub(super) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<u64, D::Error> {
        struct Code;
        impl Visitor<'_> for Code {
            type Value = u64;
            fn expecting(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
                f.write_str("an error code: a non-negative integer or a decimal string")
            }
            fn visit_u64<E: de::Error>(self, v: u64) -> Result<u64, E> {
                Ok(v)
            }
            fn visit_i64<E: de::Error>(self, v: i64) -> Result<u64, E> {
                u64::try_from(v).map_err(|_| E::custom(format!("error_code {v} is negative")))
            }
            fn visit_str<E: de::Error>(self, v: &str) -> Result<u64, E> {
                if v.is_empty() || !v.bytes().all(|b| b.is_ascii_digit()) {
                    return Err(E::custom(format!(
                        "error_code {:?} is not a decimal integer",
                        super::limit(v)
                    )));
                }
                v.parse().map_err(|_| E::custom(format!("error_code {v:?} exceeds 64 bits")))
            }
        }
        d.deserialize_any(Code)
    }
}

/// A validated ABI: every type it names resolves, nothing is circular, nesting is bounded.
/// Build it with [`Abi::new`] (or [`Abi::from_json`], [`Abi::from_bin`]); it converts data
/// between JSON and binary.
#[derive(Debug, Clone)]
pub struct Abi {
    def: AbiDef,
    schema: schema::Schema,
    actions: HashMap<Name, usize>,
    tables: HashMap<Name, usize>,
    action_results: HashMap<Name, usize>,
    error_messages: HashMap<u64, usize>,
}

impl Abi {
    /// Validates `def`. Errors name the offending definition.
    pub fn new(def: AbiDef) -> Result<Abi, AbiError> {
        if !def.version.starts_with("eosio::abi/1.") {
            return Err(AbiError::Version(limit(&def.version)));
        }
        let schema = schema::Schema::build(&def)?;
        let actions = index_unique("action", def.actions.iter().map(|a| a.name))?;
        let tables = index_unique("table", def.tables.iter().map(|t| t.name))?;
        let action_results =
            index_unique("action result", def.action_results.iter().map(|a| a.name))?;
        let error_messages =
            index_unique("error message", def.error_messages.iter().map(|e| e.error_code))?;
        let check = |what: String, ty: &str| {
            schema.resolve(ty).map(drop).map_err(|e| e.in_definition(what))
        };
        for a in &def.actions {
            check(format!("action {:?}", a.name.to_string()), &a.r#type)?;
        }
        for t in &def.tables {
            check(format!("table {:?}", t.name.to_string()), &t.r#type)?;
        }
        for a in &def.action_results {
            check(format!("action result {:?}", a.name.to_string()), &a.result_type)?;
        }
        Ok(Abi { def, schema, actions, tables, action_results, error_messages })
    }

    /// Parses and validates the JSON form.
    pub fn from_json(json: &str) -> Result<Abi, AbiError> {
        Abi::new(AbiDef::from_json(json)?)
    }

    /// Decodes and validates the binary form.
    pub fn from_bin(data: &[u8]) -> Result<Abi, AbiError> {
        Abi::new(AbiDef::from_bin(data)?)
    }

    /// The definition this ABI was built from.
    pub fn def(&self) -> &AbiDef {
        &self.def
    }

    /// Gives back the definition.
    pub fn into_def(self) -> AbiDef {
        self.def
    }

    /// The type of an action's data, if the ABI declares the action.
    pub fn action_type(&self, action: Name) -> Option<&str> {
        self.actions.get(&action).map(|&i| self.def.actions[i].r#type.as_str())
    }

    /// The row type of a table, if the ABI declares it.
    pub fn table_type(&self, table: Name) -> Option<&str> {
        self.tables.get(&table).map(|&i| self.def.tables[i].r#type.as_str())
    }

    /// The return type of an action, if the ABI declares one.
    pub fn action_result_type(&self, action: Name) -> Option<&str> {
        self.action_results.get(&action).map(|&i| self.def.action_results[i].result_type.as_str())
    }

    /// The message for an `eosio_assert_code` error code, if the ABI has one.
    pub fn error_message(&self, code: u64) -> Option<&str> {
        self.error_messages.get(&code).map(|&i| self.def.error_messages[i].error_msg.as_str())
    }

    /// Whether `type_name` (with an optional `?` or `[]` suffix) names a type of this ABI or a
    /// built-in type.
    pub fn has_type(&self, type_name: &str) -> bool {
        self.schema.resolve(type_name).is_ok()
    }

    /// Converts a JSON value of type `type_name` into its binary form.
    pub fn json_to_bin(&self, type_name: &str, value: &Value) -> Result<Vec<u8>, AbiError> {
        let ty = self.resolve(type_name)?;
        serializer::json_to_bin(&self.schema, type_name, &ty, value)
    }

    /// Converts the binary form of a `type_name` value into JSON. Every byte must be used.
    pub fn bin_to_json(&self, type_name: &str, bytes: &[u8]) -> Result<Value, AbiError> {
        let ty = self.resolve(type_name)?;
        serializer::bin_to_json(&self.schema, type_name, &ty, bytes)
    }

    /// Converts an action's JSON data into its binary form.
    pub fn action_json_to_bin(&self, action: Name, value: &Value) -> Result<Vec<u8>, AbiError> {
        let ty = self.action_type(action).ok_or(AbiError::UnknownAction(action))?;
        self.json_to_bin(ty, value)
    }

    /// Converts an action's binary data into JSON.
    pub fn action_bin_to_json(&self, action: Name, bytes: &[u8]) -> Result<Value, AbiError> {
        let ty = self.action_type(action).ok_or(AbiError::UnknownAction(action))?;
        self.bin_to_json(ty, bytes)
    }

    fn resolve(&self, type_name: &str) -> Result<schema::Ty, AbiError> {
        self.schema.resolve(type_name).map_err(|_| AbiError::UnknownType(limit(type_name)))
    }
}

impl TryFrom<AbiDef> for Abi {
    type Error = AbiError;

    fn try_from(def: AbiDef) -> Result<Abi, AbiError> {
        Abi::new(def)
    }
}

/// Maps each key to its position, refusing a key seen twice.
fn index_unique<K: std::hash::Hash + Eq + ToString>(
    kind: &'static str,
    keys: impl Iterator<Item = K>,
) -> Result<HashMap<K, usize>, AbiError> {
    use std::collections::hash_map::Entry;
    let mut map = HashMap::new();
    for (i, k) in keys.enumerate() {
        match map.entry(k) {
            Entry::Occupied(e) => {
                return Err(AbiError::Duplicate { kind, name: limit(&e.key().to_string()) });
            }
            Entry::Vacant(e) => {
                e.insert(i);
            }
        }
    }
    Ok(map)
}

#[cfg(test)]
mod tests;
