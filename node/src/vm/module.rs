//! Acceptance of contract code: the checks `setcode` runs before a module may be stored, and the
//! rewrite that exports a CDT contract's private memory so that host functions can reach it.
//!
//! Everything here reads untrusted bytes: it never panics, never allocates more than the input
//! could justify, and names the first thing it rejects. It never compiles or runs code; the
//! engine does that after these checks pass.

use std::ops::Range;

use wasm_encoder::{ExportKind, ExportSection, RawSection};
use wasmparser::{ExternalKind, Parser, Payload, TypeRef};

use super::VmError;
use super::host::SUPPORTED_IMPORTS;

/// Name under which the rewrite exports memory 0 when the module does not export it itself.
pub(crate) const MEMORY_EXPORT: &str = "memory";

/// What the checks learned about a module, and the bytes to compile.
#[derive(Debug)]
pub(crate) struct Accepted {
    /// The module to compile: the original with memory 0 exported.
    pub(crate) rewritten: Vec<u8>,
    /// The export name of memory 0, `None` when the module has no memory.
    pub(crate) memory_export: Option<String>,
    /// Initial size of memory 0 in 64 KiB pages.
    pub(crate) initial_pages: u64,
    /// Functions the module imports from `env`, in import order.
    pub(crate) imports: Vec<String>,
}

/// Checks `code` as `setcode` must and rewrites it to export its memory.
pub(crate) fn accept(
    code: &[u8],
    max_code_bytes: usize,
    max_memory_bytes: usize,
) -> Result<Accepted, VmError> {
    if code.len() > max_code_bytes {
        return Err(VmError::TooBig { size: code.len(), limit: max_code_bytes });
    }
    if code.len() < 8 || &code[..4] != b"\0asm" {
        return Err(VmError::NotWasm);
    }
    if code[4..8] != [1, 0, 0, 0] {
        return Err(VmError::Malformed("not a core WebAssembly module of version 1".into()));
    }
    let malformed = |e: wasmparser::BinaryReaderError| VmError::Malformed(e.to_string());

    let mut sections: Vec<(u8, Range<usize>)> = Vec::new();
    let mut imports = Vec::new();
    let mut exports: Vec<(String, ExternalKind, u32)> = Vec::new();
    let mut export_section = None;
    let mut memories = 0u32;
    let mut initial_pages = 0u64;
    let mut has_apply = false;

    for payload in Parser::new(0).parse_all(code) {
        let payload = payload.map_err(malformed)?;
        if let Some(section) = payload.as_section() {
            sections.push(section);
        }
        match payload {
            Payload::ImportSection(reader) => {
                for import in reader.into_imports() {
                    let import = import.map_err(malformed)?;
                    let known = import.module == "env"
                        && matches!(import.ty, TypeRef::Func(_))
                        && SUPPORTED_IMPORTS.contains(&import.name);
                    if !known {
                        return Err(VmError::UnknownImport {
                            module: import.module.to_string(),
                            name: import.name.to_string(),
                        });
                    }
                    imports.push(import.name.to_string());
                }
            }
            Payload::MemorySection(reader) => {
                for memory in reader {
                    let memory = memory.map_err(malformed)?;
                    if memories == 0 {
                        initial_pages = memory.initial;
                    }
                    memories += 1;
                }
            }
            Payload::ExportSection(reader) => {
                export_section = Some(sections.len() - 1);
                for export in reader {
                    let export = export.map_err(malformed)?;
                    if export.name == "apply" && export.kind == ExternalKind::Func {
                        has_apply = true;
                    }
                    exports.push((export.name.to_string(), export.kind, export.index));
                }
            }
            Payload::Version { encoding: wasmparser::Encoding::Component, .. } => {
                return Err(VmError::Malformed("a component, not a core module".into()));
            }
            _ => {}
        }
    }
    if !has_apply {
        return Err(VmError::MissingApply);
    }
    if memories > 1 {
        return Err(VmError::Malformed(format!("{memories} memories; a contract has at most one")));
    }
    let initial_bytes = initial_pages.saturating_mul(65_536);
    if initial_bytes > max_memory_bytes as u64 {
        return Err(VmError::MemoryLimit { limit: max_memory_bytes });
    }

    let existing = exports
        .iter()
        .find(|(_, kind, index)| *kind == ExternalKind::Memory && *index == 0)
        .map(|(name, _, _)| name.clone());
    let (memory_export, rewritten) = match (memories, existing) {
        (0, _) => (None, code.to_vec()),
        (_, Some(name)) => (Some(name), code.to_vec()),
        (_, None) => {
            let name = unique_name(&exports);
            let mut section = ExportSection::new();
            for (n, kind, index) in &exports {
                section.export(n, export_kind(*kind)?, *index);
            }
            section.export(&name, ExportKind::Memory, 0);
            // `has_apply` implies an export section.
            let at = export_section.ok_or(VmError::MissingApply)?;
            (Some(name), rebuild(code, &sections, at, &section))
        }
    };
    Ok(Accepted { rewritten, memory_export, initial_pages, imports })
}

/// An export name for the memory that no existing export uses.
fn unique_name(exports: &[(String, ExternalKind, u32)]) -> String {
    let mut name = MEMORY_EXPORT.to_string();
    while exports.iter().any(|(n, _, _)| *n == name) {
        name.push('_');
    }
    name
}

fn export_kind(kind: ExternalKind) -> Result<ExportKind, VmError> {
    Ok(match kind {
        ExternalKind::Func => ExportKind::Func,
        ExternalKind::Table => ExportKind::Table,
        ExternalKind::Memory => ExportKind::Memory,
        ExternalKind::Global => ExportKind::Global,
        ExternalKind::Tag => ExportKind::Tag,
        other => return Err(VmError::Malformed(format!("unsupported export kind {other:?}"))),
    })
}

/// The module with section `at` (the export section) replaced by `exports`; every other section
/// is copied byte for byte.
fn rebuild(
    code: &[u8],
    sections: &[(u8, Range<usize>)],
    at: usize,
    exports: &ExportSection,
) -> Vec<u8> {
    let mut module = wasm_encoder::Module::new();
    for (i, (id, range)) in sections.iter().enumerate() {
        if i == at {
            module.section(exports);
        } else {
            module.section(&RawSection { id: *id, data: &code[range.clone()] });
        }
    }
    module.finish()
}

#[cfg(test)]
mod tests;
