//! Validation of an [`AbiDef`] into the resolved form the codec walks: every type name resolved
//! once into a [`Ty`] tree (aliases followed, suffixes applied), struct bases linked, the
//! fewest bytes each struct occupies known so that vector counts can be checked against the
//! input before anything is allocated.
//!
//! Type names follow nodeos: a name is a built-in, an alias, a struct or a variant, with at
//! most one `[]` or `?` suffix (deeper nesting goes through an alias); `$` may only end a
//! struct field's type, and once a struct (with its bases) has a `$` field every later field
//! must be `$` too. Fixed-size arrays `T[N]` are refused: nodeos does not encode them
//! consistently.
//!
//! What must never happen here: an ABI accepted while one of its types does not resolve or an
//! alias, base or by-value cycle exists; validation itself recursing or working without bound
//! on a hostile ABI (every walk is capped at [`MAX_DEPTH`] levels, every definition is resolved
//! a bounded number of times).

use std::collections::{HashMap, HashSet};

use super::builtin::Builtin;
use super::{AbiDef, AbiError, MAX_DEPTH, limit};

/// A resolved type.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum Ty {
    Builtin(Builtin),
    /// Index into [`Schema::structs`].
    Struct(usize),
    /// Index into [`Schema::variants`].
    Variant(usize),
    Optional(Box<Ty>),
    Array(Box<Ty>),
}

/// One of a struct's own fields.
#[derive(Debug, Clone)]
pub(super) struct Field {
    pub(super) name: String,
    pub(super) ty: Ty,
    /// Declared with a trailing `$`: may be absent at the end of the data.
    pub(super) extension: bool,
}

/// A struct, its own fields and a link to its base.
#[derive(Debug, Clone)]
pub(super) struct StructInfo {
    pub(super) name: String,
    pub(super) base: Option<usize>,
    pub(super) fields: Vec<Field>,
    /// Names of `fields`, to spot unknown JSON keys.
    names: HashSet<String>,
    /// Fewest bytes a value occupies, base included.
    pub(super) min_size: usize,
}

impl StructInfo {
    /// Whether the struct itself (not its base) declares a field called `name`.
    pub(super) fn has_field(&self, name: &str) -> bool {
        self.names.contains(name)
    }
}

/// A variant and its alternatives, in tag order.
#[derive(Debug, Clone)]
pub(super) struct VariantInfo {
    pub(super) name: String,
    pub(super) types: Vec<(String, Ty)>,
}

/// The resolved types of one validated ABI.
#[derive(Debug, Clone, Default)]
pub(super) struct Schema {
    typedefs: HashMap<String, String>,
    struct_index: HashMap<String, usize>,
    variant_index: HashMap<String, usize>,
    pub(super) structs: Vec<StructInfo>,
    pub(super) variants: Vec<VariantInfo>,
}

/// Why a type name did not resolve.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(super) enum ResolveError {
    /// Not a known type; the text says why.
    Unknown(String),
    /// Aliases that lead back to themselves.
    Cycle(Vec<String>),
    /// An alias chain longer than [`MAX_DEPTH`].
    TooDeep,
}

impl ResolveError {
    /// The error, attributed to the definition where the type name appeared.
    pub(super) fn in_definition(self, definition: String) -> AbiError {
        match self {
            ResolveError::Unknown(reason) => AbiError::Definition { definition, reason },
            ResolveError::Cycle(chain) => {
                AbiError::Cycle { definition, chain: format!("of aliases {}", chain.join(" -> ")) }
            }
            ResolveError::TooDeep => AbiError::Definition {
                definition,
                reason: format!("aliases chain deeper than {MAX_DEPTH} levels"),
            },
        }
    }
}

fn unknown(name: &str) -> ResolveError {
    let n = limit(name);
    let reason = if name.contains('$') {
        format!(
            "type {n:?}: `$` (binary extension) is only allowed at the end of a struct field's type"
        )
    } else if name.ends_with("[]") || name.ends_with('?') {
        format!(
            "type {n:?}: a type name takes at most one `[]` or `?` suffix; declare an alias for \
             the inner type, as nodeos requires"
        )
    } else if name.ends_with(']') {
        format!("type {n:?}: fixed-size arrays `T[N]` are not supported; use `T[]`")
    } else {
        format!("unknown type {n:?}: not a built-in, alias, struct or variant of this ABI")
    };
    ResolveError::Unknown(reason)
}

/// How far the by-value walk of structs has got with one struct.
#[derive(Debug, Clone, Copy)]
enum Mark {
    New,
    Busy,
    /// Fewest bytes, and how many structs deep it nests by value (itself included).
    Done(usize, usize),
}

/// A definition's name, quoted and shortened for messages.
fn quoted(name: &str) -> String {
    format!("{:?}", limit(name))
}

fn check_name(kind: &'static str, name: &str, index: usize) -> Result<(), AbiError> {
    let reason = if name.is_empty() {
        "has an empty name"
    } else if name.ends_with(']') || name.ends_with('?') || name.contains('$') {
        "has a name ending in `]` or `?` or containing `$`, which could never be referred to"
    } else {
        return Ok(());
    };
    Err(AbiError::Definition {
        definition: format!("{kind} #{index} {}", quoted(name)),
        reason: reason.to_owned(),
    })
}

impl Schema {
    /// Validates the types, structs and variants of `def` and resolves them.
    pub(super) fn build(def: &AbiDef) -> Result<Schema, AbiError> {
        let mut s = Schema::default();
        let dup = |kind, name: &str| AbiError::Duplicate { kind, name: limit(name) };
        for (i, t) in def.types.iter().enumerate() {
            let name = &t.new_type_name;
            check_name("type", name, i)?;
            if Builtin::from_name(name).is_some()
                || s.typedefs.insert(name.clone(), t.r#type.clone()).is_some()
            {
                return Err(dup("type", name));
            }
        }
        for (i, st) in def.structs.iter().enumerate() {
            check_name("struct", &st.name, i)?;
            if Builtin::from_name(&st.name).is_some()
                || s.typedefs.contains_key(&st.name)
                || s.struct_index.insert(st.name.clone(), i).is_some()
            {
                return Err(dup("struct", &st.name));
            }
        }
        for (i, v) in def.variants.iter().enumerate() {
            check_name("variant", &v.name, i)?;
            if Builtin::from_name(&v.name).is_some()
                || s.typedefs.contains_key(&v.name)
                || s.struct_index.contains_key(&v.name)
                || s.variant_index.insert(v.name.clone(), i).is_some()
            {
                return Err(dup("variant", &v.name));
            }
        }

        // Every alias resolves; resolving the alias itself finds cycles through it.
        for t in &def.types {
            s.resolve(&t.new_type_name)
                .map_err(|e| e.in_definition(format!("type {}", quoted(&t.new_type_name))))?;
        }

        let mut structs = Vec::with_capacity(def.structs.len());
        for st in &def.structs {
            structs.push(s.struct_info(st)?);
        }
        let mut variants = Vec::with_capacity(def.variants.len());
        for v in &def.variants {
            let mut types = Vec::with_capacity(v.types.len());
            for t in &v.types {
                let ty = s.resolve(t).map_err(|e| {
                    e.in_definition(format!("variant {} type {}", quoted(&v.name), quoted(t)))
                })?;
                types.push((t.clone(), ty));
            }
            variants.push(VariantInfo { name: v.name.clone(), types });
        }
        s.structs = structs;
        s.variants = variants;

        // Per struct: (declares a `$` field, declares a plain field).
        let kinds: Vec<(bool, bool)> = s
            .structs
            .iter()
            .map(|st| {
                (st.fields.iter().any(|f| f.extension), st.fields.iter().any(|f| !f.extension))
            })
            .collect();
        for i in 0..s.structs.len() {
            s.check_bases(i, &kinds)?;
        }
        let mut marks = vec![Mark::New; s.structs.len()];
        let mut stack = Vec::new();
        for i in 0..s.structs.len() {
            s.min_size_of(i, &mut marks, &mut stack)?;
        }
        for (st, mark) in s.structs.iter_mut().zip(marks) {
            if let Mark::Done(n, _) = mark {
                st.min_size = n;
            }
        }
        Ok(s)
    }

    /// Resolves a struct's base and own fields.
    fn struct_info(&self, st: &super::StructDef) -> Result<StructInfo, AbiError> {
        let what = format!("struct {}", quoted(&st.name));
        let base = if st.base.is_empty() {
            None
        } else {
            match self.resolve(&st.base) {
                Ok(Ty::Struct(j)) => Some(j),
                Ok(_) => {
                    return Err(AbiError::Definition {
                        definition: what,
                        reason: format!("base {} is not a struct", quoted(&st.base)),
                    });
                }
                Err(e) => return Err(e.in_definition(format!("{what} base"))),
            }
        };
        let mut fields = Vec::with_capacity(st.fields.len());
        let mut names = HashSet::with_capacity(st.fields.len());
        let mut extension_seen = false;
        for f in &st.fields {
            let field_what = || format!("{what} field {}", quoted(&f.name));
            if !names.insert(f.name.clone()) {
                return Err(AbiError::Definition {
                    definition: field_what(),
                    reason: "the field is declared twice".to_owned(),
                });
            }
            let (ty, extension) = match f.r#type.strip_suffix('$') {
                Some(t) => (t, true),
                None => (f.r#type.as_str(), false),
            };
            if !extension && extension_seen {
                return Err(AbiError::Definition {
                    definition: field_what(),
                    reason: "follows a binary extension (`$`) field without being one; every \
                             field after a `$` field must be `$` too"
                        .to_owned(),
                });
            }
            extension_seen |= extension;
            let ty = self.resolve(ty).map_err(|e| e.in_definition(field_what()))?;
            fields.push(Field { name: f.name.clone(), ty, extension });
        }
        Ok(StructInfo { name: st.name.clone(), base, fields, names, min_size: 0 })
    }

    /// Checks the base chain of struct `i`: no cycle, at most [`MAX_DEPTH`] long, and no plain
    /// field after a base's binary extension field. `kinds[k]` says whether struct `k` declares
    /// a `$` field and whether it declares a plain one.
    fn check_bases(&self, i: usize, kinds: &[(bool, bool)]) -> Result<(), AbiError> {
        let what = || format!("struct {}", quoted(&self.structs[i].name));
        let mut chain = vec![i];
        let mut cur = i;
        while let Some(b) = self.structs[cur].base {
            if chain.contains(&b) {
                let mut names: Vec<String> =
                    chain.iter().map(|&k| limit(&self.structs[k].name)).collect();
                names.push(limit(&self.structs[b].name));
                return Err(AbiError::Cycle {
                    definition: what(),
                    chain: format!("of bases {}", names.join(" -> ")),
                });
            }
            if chain.len() >= MAX_DEPTH {
                return Err(AbiError::Definition {
                    definition: what(),
                    reason: format!("its chain of bases is longer than {MAX_DEPTH}"),
                });
            }
            chain.push(b);
            cur = b;
        }
        let mut extension_seen = false;
        for &k in chain.iter().rev() {
            let (has_extension, has_plain) = kinds[k];
            if extension_seen && has_plain {
                return Err(AbiError::Definition {
                    definition: format!("struct {}", quoted(&self.structs[k].name)),
                    reason: "declares plain fields after the binary extension (`$`) fields of \
                             its base; every field after a `$` field must be `$` too"
                        .to_owned(),
                });
            }
            extension_seen |= has_extension;
        }
        Ok(())
    }

    /// The fewest bytes a value of struct `i` occupies and how deep it nests by value,
    /// refusing structs that contain themselves by value (through fields without `?`, `[]` or
    /// `$`, aliases or bases) and by-value nesting deeper than twice [`MAX_DEPTH`].
    fn min_size_of<'s>(
        &'s self,
        i: usize,
        marks: &mut [Mark],
        stack: &mut Vec<(usize, &'s str)>,
    ) -> Result<(usize, usize), AbiError> {
        const LIMIT: usize = 2 * MAX_DEPTH;
        match marks[i] {
            Mark::Done(n, depth) => return Ok((n, depth)),
            Mark::Busy => {
                let from = stack.iter().position(|&(k, _)| k == i).unwrap_or(0);
                let mut chain: Vec<String> = stack[from..]
                    .iter()
                    .map(|&(k, via)| format!("{}.{}", limit(&self.structs[k].name), limit(via)))
                    .collect();
                chain.push(limit(&self.structs[i].name));
                return Err(AbiError::Cycle {
                    definition: format!("struct {}", quoted(&self.structs[i].name)),
                    chain: format!("(it contains itself by value) {}", chain.join(" -> ")),
                });
            }
            Mark::New => {}
        }
        let too_deep = || AbiError::Definition {
            definition: format!("struct {}", quoted(&self.structs[i].name)),
            reason: format!(
                "structs nest by value (through fields and bases) deeper than {LIMIT} levels"
            ),
        };
        if stack.len() >= LIMIT {
            return Err(too_deep());
        }
        marks[i] = Mark::Busy;
        let st = &self.structs[i];
        let (mut total, mut deepest) = (0usize, 0usize);
        if let Some(b) = st.base {
            stack.push((i, "(base)"));
            (total, deepest) = self.min_size_of(b, marks, stack)?;
            stack.pop();
        }
        for f in st.fields.iter().filter(|f| !f.extension) {
            let n = match f.ty {
                Ty::Struct(j) => {
                    stack.push((i, &f.name));
                    let (n, depth) = self.min_size_of(j, marks, stack)?;
                    stack.pop();
                    deepest = deepest.max(depth);
                    n
                }
                ref other => self.min_size(other),
            };
            total = total.saturating_add(n);
        }
        let depth = deepest + 1;
        if depth > LIMIT {
            return Err(too_deep());
        }
        marks[i] = Mark::Done(total, depth);
        Ok((total, depth))
    }

    /// The fewest bytes a value of `ty` occupies (at least 0; vectors use at least 1).
    pub(super) fn min_size(&self, ty: &Ty) -> usize {
        match ty {
            Ty::Builtin(b) => b.min_size(),
            Ty::Struct(i) => self.structs.get(*i).map_or(0, |s| s.min_size),
            Ty::Variant(_) | Ty::Optional(_) | Ty::Array(_) => 1,
        }
    }

    /// Struct `i` and its bases, outermost base first: the order their fields are written in.
    pub(super) fn chain(&self, i: usize) -> Vec<usize> {
        let mut chain = vec![i];
        let mut cur = i;
        while let Some(b) = self.structs.get(cur).and_then(|s| s.base) {
            if chain.len() > MAX_DEPTH || chain.contains(&b) {
                break; // unreachable after validation; never loop
            }
            chain.push(b);
            cur = b;
        }
        chain.reverse();
        chain
    }

    /// Resolves a type name with at most one `[]` or `?` suffix.
    pub(super) fn resolve(&self, ty: &str) -> Result<Ty, ResolveError> {
        let mut aliases = Vec::new();
        self.resolve_in(ty, &mut aliases)
    }

    fn resolve_in<'s>(&'s self, ty: &str, aliases: &mut Vec<&'s str>) -> Result<Ty, ResolveError> {
        if let Some(inner) = ty.strip_suffix("[]") {
            Ok(Ty::Array(Box::new(self.resolve_name(inner, aliases)?)))
        } else if let Some(inner) = ty.strip_suffix('?') {
            Ok(Ty::Optional(Box::new(self.resolve_name(inner, aliases)?)))
        } else {
            self.resolve_name(ty, aliases)
        }
    }

    /// Resolves a type name without suffix, following aliases (tracked in `aliases`).
    fn resolve_name<'s>(
        &'s self,
        name: &str,
        aliases: &mut Vec<&'s str>,
    ) -> Result<Ty, ResolveError> {
        if let Some(b) = Builtin::from_name(name) {
            return Ok(Ty::Builtin(b));
        }
        if let Some(&i) = self.struct_index.get(name) {
            return Ok(Ty::Struct(i));
        }
        if let Some(&i) = self.variant_index.get(name) {
            return Ok(Ty::Variant(i));
        }
        let Some((alias, target)) = self.typedefs.get_key_value(name) else {
            return Err(unknown(name));
        };
        if aliases.contains(&alias.as_str()) {
            let mut chain: Vec<String> = aliases.iter().map(|a| limit(a)).collect();
            chain.push(limit(alias));
            return Err(ResolveError::Cycle(chain));
        }
        if aliases.len() >= MAX_DEPTH {
            return Err(ResolveError::TooDeep);
        }
        aliases.push(alias);
        let ty = self.resolve_in(target, aliases);
        aliases.pop();
        ty
    }
}
