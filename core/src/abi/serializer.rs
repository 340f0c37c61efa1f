//! The ABI-driven codec: a JSON value to its binary form and back, walking the resolved types
//! of a validated ABI, with the JSON conventions described in [`crate::abi`].
//!
//! Binary extensions follow nodeos: on decode a `$` field is left out of the JSON when the
//! input has ended; on encode an absent `$` field ends the struct, which is allowed only where
//! the struct's data ends the whole value (the last field of the last field … of the top-level
//! type, through optionals and variants but never inside a vector or a base).
//!
//! What must never happen here: recursion deeper than [`MAX_DEPTH`] (a hostile ABI or blob
//! fails with [`AbiError::TooDeep`]), a vector reserved for more elements than the remaining
//! input could hold, a panic, or an error that does not give the field path.

use std::fmt::Write as _;

use serde_json::{Map, Value};

use super::builtin::{kind, show};
use super::schema::{Schema, StructInfo, Ty};
use super::{AbiError, MAX_DEPTH, limit};
use crate::codec::{DecodeError, Reader, Unpack, write_varuint32};

/// One step of the path to the value being converted.
#[derive(Debug, Clone, Copy)]
enum Seg<'a> {
    Field(&'a str),
    Index(usize),
    Variant(&'a str),
}

/// Where the codec is: the top-level type name, then fields, indexes and variant alternatives.
#[derive(Debug)]
struct Path<'a> {
    root: &'a str,
    segs: Vec<Seg<'a>>,
}

impl<'a> Path<'a> {
    fn new(root: &'a str) -> Self {
        Path { root, segs: Vec::new() }
    }

    /// `transfer.quantity`, `newaccount.owner.keys[0].key`, `op<transfer>.memo`.
    fn render(&self) -> String {
        let mut s = limit(self.root);
        for seg in &self.segs {
            match seg {
                Seg::Field(f) => {
                    s.push('.');
                    s.push_str(&limit(f));
                }
                Seg::Index(i) => {
                    let _ = write!(s, "[{i}]");
                }
                Seg::Variant(t) => {
                    let _ = write!(s, "<{}>", limit(t));
                }
            }
        }
        s
    }
}

/// Converts `value` of type `ty` (named `root` in errors) into its binary form.
pub(super) fn json_to_bin(
    schema: &Schema,
    root: &str,
    ty: &Ty,
    value: &Value,
) -> Result<Vec<u8>, AbiError> {
    let mut enc = Encoder { schema, path: Path::new(root), out: Vec::new() };
    enc.value(ty, value, 1, true)?;
    Ok(enc.out)
}

/// Converts the binary form of a value of type `ty` (named `root` in errors) into JSON; every
/// byte must be used.
pub(super) fn bin_to_json(
    schema: &Schema,
    root: &str,
    ty: &Ty,
    bytes: &[u8],
) -> Result<Value, AbiError> {
    let mut dec = Decoder { schema, path: Path::new(root), r: Reader::new(bytes) };
    let value = dec.value(ty, 1)?;
    match dec.r.remaining() {
        0 => Ok(value),
        count => Err(AbiError::TrailingBytes { type_name: limit(root), count }),
    }
}

/// A struct and its bases, outermost base first, with the number of fields in all of them.
fn fields_of(schema: &Schema, i: usize) -> (Vec<&StructInfo>, usize) {
    let chain: Vec<&StructInfo> =
        schema.chain(i).into_iter().filter_map(|k| schema.structs.get(k)).collect();
    let total = chain.iter().map(|s| s.fields.len()).sum();
    (chain, total)
}

struct Encoder<'a> {
    schema: &'a Schema,
    path: Path<'a>,
    out: Vec<u8>,
}

impl<'a> Encoder<'a> {
    fn error(&self, reason: String) -> AbiError {
        AbiError::Value { path: self.path.render(), reason }
    }

    /// Writes `v` as a `ty`. `allow_ext`: this value ends the whole data, so a struct in it may
    /// leave out trailing binary extension fields.
    fn value(
        &mut self,
        ty: &'a Ty,
        v: &Value,
        depth: usize,
        allow_ext: bool,
    ) -> Result<(), AbiError> {
        if depth > MAX_DEPTH {
            return Err(AbiError::TooDeep { path: self.path.render(), limit: MAX_DEPTH });
        }
        match ty {
            Ty::Builtin(b) => b.encode(v, &mut self.out).map_err(|reason| self.error(reason)),
            Ty::Optional(inner) => {
                if v.is_null() {
                    self.out.push(0);
                    Ok(())
                } else {
                    self.out.push(1);
                    self.value(inner, v, depth + 1, allow_ext)
                }
            }
            Ty::Array(inner) => {
                let Some(items) = v.as_array() else {
                    return Err(self.error(format!(
                        "expected an array, got {} {}",
                        kind(v),
                        show(v)
                    )));
                };
                let len = u32::try_from(items.len())
                    .map_err(|_| self.error("the array has more than 2^32-1 elements".into()))?;
                write_varuint32(&mut self.out, len);
                for (n, item) in items.iter().enumerate() {
                    self.path.segs.push(Seg::Index(n));
                    self.value(inner, item, depth + 1, false)?;
                    self.path.segs.pop();
                }
                Ok(())
            }
            Ty::Variant(i) => self.variant(*i, v, depth, allow_ext),
            Ty::Struct(i) => self.structure(*i, v, depth, allow_ext),
        }
    }

    fn variant(
        &mut self,
        i: usize,
        v: &Value,
        depth: usize,
        allow_ext: bool,
    ) -> Result<(), AbiError> {
        let schema = self.schema;
        let Some(var) = schema.variants.get(i) else {
            return Err(self.error("variant missing from the ABI".into()));
        };
        let (name, inner) = match v.as_array().map(Vec::as_slice) {
            Some([Value::String(name), inner]) => (name, inner),
            _ => {
                return Err(self.error(format!(
                    "variant {} must be [\"type_name\", value], got {}",
                    limit(&var.name),
                    show(v)
                )));
            }
        };
        let Some(tag) = var.types.iter().position(|(t, _)| t == name) else {
            let choices: Vec<&str> = var.types.iter().take(8).map(|(t, _)| t.as_str()).collect();
            return Err(self.error(format!(
                "{:?} is not one of the types of variant {} ({}{})",
                limit(name),
                limit(&var.name),
                choices.join(", "),
                if var.types.len() > 8 { ", …" } else { "" }
            )));
        };
        let wire_tag =
            u32::try_from(tag).map_err(|_| self.error("variant tag too large".into()))?;
        write_varuint32(&mut self.out, wire_tag);
        let (type_name, ty) = &var.types[tag];
        self.path.segs.push(Seg::Variant(type_name));
        self.value(ty, inner, depth + 1, allow_ext)?;
        self.path.segs.pop();
        Ok(())
    }

    fn structure(
        &mut self,
        i: usize,
        v: &Value,
        depth: usize,
        allow_ext: bool,
    ) -> Result<(), AbiError> {
        let schema = self.schema;
        let (chain, total) = fields_of(schema, i);
        let Some(st) = chain.last() else {
            return Err(self.error("struct missing from the ABI".into()));
        };
        let fields = chain.iter().flat_map(|s| s.fields.iter());
        match v {
            Value::Object(map) => {
                if let Some(key) = map.keys().find(|k| !chain.iter().any(|s| s.has_field(k))) {
                    return Err(self.error(format!(
                        "unknown field {:?}: struct {} has no such field",
                        limit(key),
                        limit(&st.name)
                    )));
                }
                let mut absent_extension: Option<&str> = None;
                for (n, f) in fields.enumerate() {
                    match map.get(&f.name) {
                        Some(fv) => {
                            if let Some(absent) = absent_extension {
                                return Err(self.error(format!(
                                    "field {:?} is given but the binary extension field {:?} \
                                     before it is not; give both or neither",
                                    limit(&f.name),
                                    limit(absent)
                                )));
                            }
                            self.path.segs.push(Seg::Field(&f.name));
                            self.value(&f.ty, fv, depth + 1, allow_ext && n + 1 == total)?;
                            self.path.segs.pop();
                        }
                        // nodeos writes a missing optional field as null.
                        None if !f.extension && matches!(f.ty, Ty::Optional(_)) => {
                            self.out.push(0);
                        }
                        None if f.extension && allow_ext => {
                            absent_extension.get_or_insert(&f.name);
                        }
                        None => {
                            let note = if f.extension {
                                " (a binary extension may be left out only at the very end of \
                                 the data)"
                            } else {
                                ""
                            };
                            return Err(self.error(format!(
                                "missing field {:?} of struct {}{note}",
                                limit(&f.name),
                                limit(&st.name)
                            )));
                        }
                    }
                }
                Ok(())
            }
            Value::Array(items) => {
                if chain.len() > 1 {
                    return Err(self.error(format!(
                        "struct {} has a base, so it must be given as an object, not an array",
                        limit(&st.name)
                    )));
                }
                if items.len() > total {
                    return Err(self.error(format!(
                        "{} values given for struct {}, which has {total} fields",
                        items.len(),
                        limit(&st.name)
                    )));
                }
                for (n, f) in fields.enumerate() {
                    match items.get(n) {
                        Some(fv) => {
                            self.path.segs.push(Seg::Field(&f.name));
                            self.value(&f.ty, fv, depth + 1, allow_ext && n + 1 == total)?;
                            self.path.segs.pop();
                        }
                        None if f.extension && allow_ext => break,
                        None => {
                            return Err(self.error(format!(
                                "only {} values given for struct {}: field {:?} is missing",
                                items.len(),
                                limit(&st.name),
                                limit(&f.name)
                            )));
                        }
                    }
                }
                Ok(())
            }
            _ => Err(self.error(format!(
                "expected struct {} as an object, got {} {}",
                limit(&st.name),
                kind(v),
                show(v)
            ))),
        }
    }
}

struct Decoder<'a, 'b> {
    schema: &'a Schema,
    path: Path<'a>,
    r: Reader<'b>,
}

impl<'a> Decoder<'a, '_> {
    fn error(&self, error: DecodeError) -> AbiError {
        AbiError::Decode { path: self.path.render(), error }
    }

    fn value(&mut self, ty: &'a Ty, depth: usize) -> Result<Value, AbiError> {
        if depth > MAX_DEPTH {
            return Err(AbiError::TooDeep { path: self.path.render(), limit: MAX_DEPTH });
        }
        match ty {
            Ty::Builtin(b) => b.decode(&mut self.r).map_err(|e| self.error(e)),
            Ty::Optional(inner) => {
                if bool::unpack(&mut self.r).map_err(|e| self.error(e))? {
                    self.value(inner, depth + 1)
                } else {
                    Ok(Value::Null)
                }
            }
            Ty::Array(inner) => {
                // Each element takes at least `min` bytes (at least one is assumed even for
                // empty structs), so the count is bounded by the input before anything is
                // reserved.
                let min = self.schema.min_size(inner).max(1);
                let n = self.r.read_count(min).map_err(|e| self.error(e))?;
                let mut items = Vec::with_capacity(n.min(1024));
                for k in 0..n {
                    self.path.segs.push(Seg::Index(k));
                    items.push(self.value(inner, depth + 1)?);
                    self.path.segs.pop();
                }
                Ok(Value::Array(items))
            }
            Ty::Variant(i) => {
                let schema = self.schema;
                let Some(var) = schema.variants.get(*i) else {
                    return Err(self.error(DecodeError::Invalid {
                        what: "variant",
                        at: self.r.position(),
                        reason: "missing from the ABI".into(),
                    }));
                };
                let at = self.r.position();
                let tag = self.r.read_varuint32().map_err(|e| self.error(e))?;
                let Some((name, ty)) = var.types.get(tag as usize) else {
                    return Err(self.error(DecodeError::UnknownTag {
                        what: "variant",
                        tag: u64::from(tag),
                        at,
                    }));
                };
                self.path.segs.push(Seg::Variant(name));
                let value = self.value(ty, depth + 1)?;
                self.path.segs.pop();
                Ok(Value::Array(vec![Value::String(name.clone()), value]))
            }
            Ty::Struct(i) => {
                let (chain, _) = fields_of(self.schema, *i);
                let mut map = Map::new();
                for f in chain.iter().flat_map(|s| s.fields.iter()) {
                    if f.extension && self.r.remaining() == 0 {
                        continue;
                    }
                    self.path.segs.push(Seg::Field(&f.name));
                    let value = self.value(&f.ty, depth + 1)?;
                    self.path.segs.pop();
                    map.insert(f.name.clone(), value);
                }
                Ok(Value::Object(map))
            }
        }
    }
}

#[cfg(test)]
mod tests;
