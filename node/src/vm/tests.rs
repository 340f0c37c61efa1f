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

#[test]
fn int128_helpers_compute_like_compiler_rt() {
    use rempart_core::transaction::Action;
    // Through a real apply: the results are printed with printi128/printui128.
    let vm = Vm::new(VmConfig::default()).expect("engine");
    let code = wat::parse_str(
        r#"(module
            (import "env" "__multi3" (func $mul (param i32 i64 i64 i64 i64)))
            (import "env" "__udivti3" (func $udiv (param i32 i64 i64 i64 i64)))
            (import "env" "__ashrti3" (func $sar (param i32 i64 i64 i32)))
            (import "env" "printi128" (func $pi (param i32)))
            (import "env" "printui128" (func $pu (param i32)))
            (import "env" "prints_l" (func $ps (param i32 i32)))
            (memory 1) (data (i32.const 100) " ")
            (func (export "apply") (param i64 i64 i64)
              (call $mul (i32.const 0) (i64.const 3) (i64.const 1) (i64.const -5) (i64.const -1))
              (call $pi (i32.const 0)) (call $ps (i32.const 100) (i32.const 1))
              (call $udiv (i32.const 16) (i64.const -1) (i64.const -1) (i64.const 2) (i64.const 0))
              (call $pu (i32.const 16)) (call $ps (i32.const 100) (i32.const 1))
              (call $sar (i32.const 32) (i64.const 0) (i64.const -8) (i32.const 200))
              (call $pi (i32.const 32))))"#,
    )
    .expect("wat");
    let info = vm.validate(&code).expect("accepted");
    let dir = tempfile::tempdir().expect("dir");
    let store = crate::store::Store::open(&dir.path().join("s.redb")).expect("store");
    struct Nothing;
    impl Host for Nothing {
        fn require_recipient(&mut self, _: &Overlay<'_, '_>, _: Name) -> Result<(), String> {
            Ok(())
        }
        fn send_inline(&mut self, _: &Overlay<'_, '_>, _: Action) -> Result<(), String> {
            Ok(())
        }
    }
    let console = store
        .write(|w| -> Result<String, VmError> {
            let mut o = Overlay::new(w);
            o.put(key::code(&info.hash), code.clone());
            o.put(key::code_hash(Name(1)), rempart_core::to_bytes(&info.hash));
            let act = Action {
                account: Name(1),
                name: Name(2),
                authorization: vec![],
                data: rempart_core::Bytes(vec![]),
            };
            let ctx = ApplyContext {
                receiver: Name(1),
                action: &act,
                block_time: TimePoint(0),
                publication_time: TimePoint(0),
                sender: Name(0),
            };
            let mut fuel = 1_000_000;
            Ok(vm.apply(&mut o, &mut Nothing, &ctx, &mut fuel)?.console)
        })
        .expect("apply");
    let expected = format!("{} {} -1", ((1i128 << 64) + 3) * -5, u128::MAX / 2);
    assert_eq!(console, expected);
}

#[test]
fn vm_is_shareable_across_threads() {
    fn shareable<T: Send + Sync>() {}
    shareable::<Vm>();
}
