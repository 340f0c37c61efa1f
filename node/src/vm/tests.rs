//! Unit tests of the VM's error mapping and configuration.

use super::*;

#[test]
fn nodeos_codes_of_contract_errors() {
    assert_eq!(VmError::Assert("x".into()).nodeos().0, 3_050_003);
    assert_eq!(VmError::OutOfFuel { budget: 1 }.nodeos().1, "tx_cpu_usage_exceeded");
    assert_eq!(VmError::Overlap.nodeos().1, "overlapping_memory_error");
}

#[test]
fn engine_starts_with_the_default_limits() {
    let vm = Vm::new(VmConfig::default()).expect("engine");
    assert_eq!(vm.cached_modules(), 0);
}

fn module(n: u32) -> Vec<u8> {
    wat::parse_str(format!(
        r#"(module (global i32 (i32.const {n})) (func (export "apply") (param i64 i64 i64)))"#
    ))
    .expect("wat")
}

#[test]
fn module_cache_is_bounded_and_evicts_the_least_recently_used() {
    let vm = Vm::new(VmConfig { cache_modules: 2, ..VmConfig::default() }).expect("engine");
    let a = vm.validate(&module(1)).expect("a").hash;
    let b = vm.validate(&module(2)).expect("b").hash;
    assert!(vm.lookup(&a).is_some(), "touch a so that b is the oldest");
    let c = vm.validate(&module(3)).expect("c").hash;
    assert_eq!(vm.cached_modules(), 2);
    assert!(vm.lookup(&a).is_some() && vm.lookup(&c).is_some());
    assert!(vm.lookup(&b).is_none(), "b was evicted");
}

#[test]
fn validate_reports_imports_and_memory() {
    let vm = Vm::new(VmConfig::default()).expect("engine");
    let code = wat::parse_str(
        r#"(module (import "env" "prints" (func (param i32))) (memory 3)
                   (func (export "apply") (param i64 i64 i64)))"#,
    )
    .expect("wat");
    let info = vm.validate(&code).expect("accepted");
    assert_eq!(info.imports, vec!["prints".to_string()]);
    assert_eq!(info.initial_pages, 3);
    assert_eq!(info.hash, Checksum256::hash(&code));
}
