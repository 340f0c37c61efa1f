//! The committed contracts match their sources: `node/contracts/build.sh` compiles each `.c`
//! with clang + lld, the memory export lld always adds is stripped (CDT contracts keep memory
//! private), and the result must equal the committed `.wasm`. With `REMPART_BLESS=1` the
//! committed file is rewritten instead. Without clang the check is skipped, except under
//! `CI=true`, where a missing clang is a failure.

use std::path::Path;
use std::process::Command;

use wasm_encoder::{ExportKind, ExportSection, RawSection};
use wasmparser::{ExternalKind, Parser, Payload};

/// The module without its memory exports; every other section is copied as is.
fn strip_memory_export(linked: &[u8]) -> Vec<u8> {
    let mut module = wasm_encoder::Module::new();
    for payload in Parser::new(0).parse_all(linked) {
        let payload = payload.expect("linked module parses");
        if let Payload::ExportSection(reader) = &payload {
            let mut exports = ExportSection::new();
            for e in reader.clone() {
                let e = e.expect("export");
                let kind = match e.kind {
                    ExternalKind::Func => ExportKind::Func,
                    ExternalKind::Global => ExportKind::Global,
                    ExternalKind::Table => ExportKind::Table,
                    ExternalKind::Memory => continue,
                    other => panic!("unexpected export kind {other:?}"),
                };
                exports.export(e.name, kind, e.index);
            }
            module.section(&exports);
        } else if let Some((id, range)) = payload.as_section() {
            module.section(&RawSection { id, data: &linked[range] });
        }
    }
    module.finish()
}

fn clang_present() -> bool {
    Command::new("clang").arg("--version").output().is_ok_and(|o| o.status.success())
        && Command::new("wasm-ld").arg("--version").output().is_ok_and(|o| o.status.success())
}

#[test]
fn committed_wasm_matches_a_fresh_build() {
    if !clang_present() {
        assert!(
            std::env::var("CI").as_deref() != Ok("true"),
            "clang and lld are required under CI to check node/contracts/*.wasm; \
             install them (tests/run.sh does)"
        );
        eprintln!("skipping: clang/wasm-ld not installed, committed .wasm not rebuilt");
        return;
    }
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts");
    let out = tempfile::tempdir().expect("temp dir");
    let status = Command::new("bash")
        .arg(dir.join("build.sh"))
        .arg(out.path())
        .status()
        .expect("run build.sh");
    assert!(status.success(), "node/contracts/build.sh failed");
    let bless = std::env::var("REMPART_BLESS").as_deref() == Ok("1");
    let mut checked = 0;
    for entry in std::fs::read_dir(out.path()).expect("read out dir") {
        let path = entry.expect("entry").path();
        let file = path.file_name().and_then(|f| f.to_str()).expect("name").to_string();
        let Some(name) = file.strip_suffix(".linked.wasm") else { continue };
        let fresh = strip_memory_export(&std::fs::read(&path).expect("read linked"));
        let committed_path = dir.join(format!("{name}.wasm"));
        if bless {
            std::fs::write(&committed_path, &fresh).expect("bless");
        }
        let committed = std::fs::read(&committed_path).unwrap_or_default();
        assert!(
            committed == fresh,
            "{} differs from a fresh build of {name}.c; run \
             REMPART_BLESS=1 cargo test -p rempart-node --test vm",
            committed_path.display()
        );
        checked += 1;
    }
    assert!(checked > 0, "build.sh produced no contracts");
}

#[test]
fn token_is_in_cdt_shape() {
    let code = super::common::token_wasm();
    let mut exports = Vec::new();
    for payload in Parser::new(0).parse_all(&code) {
        if let Payload::ExportSection(reader) = payload.expect("parses") {
            for e in reader {
                let e = e.expect("export");
                exports.push((e.name.to_string(), e.kind));
            }
        }
    }
    assert_eq!(exports, vec![("apply".to_string(), ExternalKind::Func)], "only apply is exported");
}
