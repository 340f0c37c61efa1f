//! Unit tests of module acceptance and the memory-export rewrite.

use super::*;

fn wat(text: &str) -> Vec<u8> {
    wat::parse_str(text).expect("wat")
}

#[test]
fn private_memory_gets_exported() {
    let code = wat(r#"(module (memory 1) (func (export "apply") (param i64 i64 i64)))"#);
    let a = accept(&code, 1 << 20, 1 << 25).expect("accepted");
    assert_eq!(a.memory_export.as_deref(), Some(MEMORY_EXPORT));
    let mut found = false;
    for p in Parser::new(0).parse_all(&a.rewritten) {
        if let Payload::ExportSection(r) = p.expect("parses") {
            for e in r {
                let e = e.expect("export");
                found |= e.name == MEMORY_EXPORT && e.kind == ExternalKind::Memory;
            }
        }
    }
    assert!(found, "rewritten module exports its memory");
}

#[test]
fn existing_memory_export_is_kept_and_name_clash_avoided() {
    let code =
        wat(r#"(module (memory (export "mem") 1) (func (export "apply") (param i64 i64 i64)))"#);
    assert_eq!(accept(&code, 1 << 20, 1 << 25).unwrap().memory_export.as_deref(), Some("mem"));
    let code = wat(r#"(module (memory 1) (func (export "memory") (param i64 i64 i64))
                      (func (export "apply") (param i64 i64 i64)))"#);
    assert_eq!(accept(&code, 1 << 20, 1 << 25).unwrap().memory_export.as_deref(), Some("memory_"));
}

#[test]
fn refusals_name_the_problem() {
    assert!(matches!(accept(b"int main() {}", 1 << 20, 1 << 25), Err(VmError::NotWasm)));
    let code = wat(
        r#"(module (import "env" "launch_missiles" (func)) (func (export "apply") (param i64 i64 i64)))"#,
    );
    match accept(&code, 1 << 20, 1 << 25) {
        Err(VmError::UnknownImport { module, name }) => {
            assert_eq!((module.as_str(), name.as_str()), ("env", "launch_missiles"));
        }
        other => panic!("expected UnknownImport, got {other:?}"),
    }
    let code = wat(r#"(module (func (export "main")))"#);
    assert!(matches!(accept(&code, 1 << 20, 1 << 25), Err(VmError::MissingApply)));
    let code = wat(r#"(module (memory 600) (func (export "apply") (param i64 i64 i64)))"#);
    assert!(matches!(accept(&code, 1 << 20, 1 << 25), Err(VmError::MemoryLimit { .. })));
    assert!(matches!(accept(&code, 10, 1 << 25), Err(VmError::TooBig { size: _, limit: 10 })));
    let mut truncated = wat(r#"(module (memory 1) (func (export "apply") (param i64 i64 i64)))"#);
    truncated.truncate(truncated.len() - 3);
    assert!(matches!(accept(&truncated, 1 << 20, 1 << 25), Err(VmError::Malformed(_))));
}
