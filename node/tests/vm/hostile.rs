//! Hostile contracts: each fails with its own clear error at the right moment (setcode for bad
//! modules, apply for bad behaviour) and leaves the state exactly as it was.

use rempart_node::vm::{VmConfig, VmError};

use super::common::{Chain, hostile};

fn chain() -> Chain {
    Chain::new(&["evil", "alice"])
}

/// Deploys `code` on `evil`, runs one action and returns the error; the contract wrote a row
/// first, which must not survive.
fn run_hostile(chain: &Chain, code: &[u8], fuel: u64) -> VmError {
    chain.set_code("evil", code).expect("the module itself is acceptable");
    let before = chain.state();
    let mut left = fuel;
    let err = chain
        .push_with_fuel("evil", "go", &["alice"], vec![], &mut left)
        .expect_err("hostile action must fail");
    assert_eq!(chain.state(), before, "a failed action leaves the state untouched");
    err
}

#[test]
fn infinite_loop_runs_out_of_fuel() {
    let chain = chain();
    let err = run_hostile(&chain, &hostile("loop"), 2_000_000);
    assert!(matches!(err, VmError::OutOfFuel { budget: 2_000_000 }), "{err}");
    assert!(err.to_string().contains("CPU budget"), "{err}");
    assert_eq!(err.nodeos().1, "tx_cpu_usage_exceeded");
}

#[test]
fn unbounded_memory_growth_ends_on_fuel() {
    // memory.grow past the limit returns -1, as in core WebAssembly and eos-vm; a contract that
    // ignores it and keeps growing is stopped by its CPU budget.
    let config = VmConfig { max_memory_bytes: 4 * 1024 * 1024, ..VmConfig::default() };
    let chain = Chain::with_config(&["evil", "alice"], config);
    let err = run_hostile(&chain, &hostile("grow"), 2_000_000);
    assert!(matches!(err, VmError::OutOfFuel { budget: 2_000_000 }), "{err}");
    assert!(err.to_string().contains("CPU budget"), "{err}");
}

#[test]
fn memory_growth_refused_at_the_limit_fails_the_contracts_own_assertion() {
    let config = VmConfig { max_memory_bytes: 4 * 1024 * 1024, ..VmConfig::default() };
    let chain = Chain::with_config(&["evil", "alice"], config);
    let err = run_hostile(&chain, &hostile("grow_assert"), 50_000_000);
    match err {
        VmError::Assert(m) => assert_eq!(m, "out of memory"),
        other => panic!("expected the contract's assertion, got {other}"),
    }
}

#[test]
fn memory_grow_past_the_limit_returns_minus_one_and_the_action_goes_on() {
    let config = VmConfig { max_memory_bytes: 4 * 1024 * 1024, ..VmConfig::default() };
    let chain = Chain::with_config(&["evil", "alice"], config);
    // Grows by 3 pages (fits), then by 64 pages (past 4 MiB: -1), then prints both results and
    // the size it ended with, in pages.
    let code = wat::parse_str(
        r#"(module
            (import "env" "printi" (func $printi (param i64)))
            (import "env" "prints_l" (func $prints_l (param i32 i32)))
            (memory 1) (data (i32.const 0) " ")
            (func $p (param i32) (call $printi (i64.extend_i32_s (local.get 0)))
                                 (call $prints_l (i32.const 0) (i32.const 1)))
            (func (export "apply") (param i64 i64 i64)
              (call $p (memory.grow (i32.const 3)))
              (call $p (memory.grow (i32.const 64)))
              (call $p (memory.size))))"#,
    )
    .expect("wat");
    chain.set_code("evil", &code).expect("setcode");
    let pushed = chain.push("evil", "go", &["alice"], vec![]).expect("a refused grow is no error");
    assert_eq!(pushed.outcome.console, "1 -1 4 ");
}

#[test]
fn a_trap_after_a_refused_grow_says_so() {
    let config = VmConfig { max_memory_bytes: 2 * 1024 * 1024, ..VmConfig::default() };
    let chain = Chain::with_config(&["evil", "alice"], config);
    let code = wat::parse_str(
        r#"(module (memory 1)
            (func (export "apply") (param i64 i64 i64)
              (if (i32.eq (memory.grow (i32.const 100)) (i32.const -1)) (then unreachable))))"#,
    )
    .expect("wat");
    let err = run_hostile(&chain, &code, 1_000_000);
    match err {
        VmError::Trap(m) => {
            assert!(m.contains("unreachable"), "{m}");
            assert!(m.contains("after 1 memory.grow call(s) returned -1"), "{m}");
            assert!(m.contains("2097152 bytes"), "{m}");
        }
        other => panic!("expected a trap, got {other}"),
    }
}

#[test]
fn initial_memory_over_the_limit_is_refused_at_setcode() {
    let config = VmConfig { max_memory_bytes: 2 * 1024 * 1024, ..VmConfig::default() };
    let chain = Chain::with_config(&["evil"], config);
    let code =
        wat::parse_str(r#"(module (memory 33) (func (export "apply") (param i64 i64 i64)))"#)
            .expect("wat");
    let err = chain.set_code("evil", &code).unwrap_err();
    assert!(matches!(err, VmError::MemoryLimit { limit: 2_097_152 }), "{err}");
    assert!(err.to_string().contains("initial size"), "{err}");
}

#[test]
fn deep_recursion_exhausts_the_stack() {
    let chain = chain();
    let err = run_hostile(&chain, &hostile("recurse"), 50_000_000);
    assert!(matches!(err, VmError::StackOverflow), "{err}");
}

#[test]
fn trap_is_reported() {
    let chain = chain();
    let err = run_hostile(&chain, &hostile("trap"), 50_000_000);
    match err {
        VmError::Trap(m) => assert!(m.contains("unreachable"), "{m}"),
        other => panic!("expected a trap, got {other}"),
    }
}

#[test]
fn setcode_refusals_name_the_problem() {
    let chain = chain();
    let before = chain.state();
    match chain.set_code("evil", &hostile("import")) {
        Err(VmError::UnknownImport { module, name }) => {
            assert_eq!((module.as_str(), name.as_str()), ("env", "get_wall_clock"));
        }
        other => panic!("expected an unknown import, got {other:?}"),
    }
    let err = chain.set_code("evil", b"#include <eosio/eosio.hpp>").unwrap_err();
    assert!(matches!(err, VmError::NotWasm), "{err}");
    let mut huge =
        wat::parse_str(r#"(module (func (export "apply") (param i64 i64 i64)))"#).unwrap();
    huge.extend(custom_section(2 * 1024 * 1024));
    let err = chain.set_code("evil", &huge).unwrap_err();
    assert!(matches!(err, VmError::TooBig { limit: 1_048_576, .. }), "{err}");
    let err = chain.set_code("evil", &wat::parse_str("(module)").unwrap()).unwrap_err();
    assert!(matches!(err, VmError::MissingApply), "{err}");
    let wrong = wat::parse_str(r#"(module (func (export "apply") (param i32)))"#).unwrap();
    assert!(matches!(chain.set_code("evil", &wrong), Err(VmError::MissingApply)));
    let simd = wat::parse_str(
        r#"(module (func (export "apply") (param i64 i64 i64) (drop (v128.const i64x2 0 0))))"#,
    )
    .unwrap();
    assert!(matches!(chain.set_code("evil", &simd), Err(VmError::Compile(_))), "SIMD is refused");
    assert_eq!(chain.state(), before, "refused code is never stored");
}

/// A custom section of `size` bytes (valid WebAssembly, just big).
fn custom_section(size: usize) -> Vec<u8> {
    let mut payload = vec![4u8];
    payload.extend_from_slice(b"junk");
    payload.resize(size, 0);
    let mut out = vec![0u8];
    let mut len = payload.len() as u32;
    loop {
        let byte = (len & 0x7f) as u8;
        len >>= 7;
        if len == 0 {
            out.push(byte);
            break;
        }
        out.push(byte | 0x80);
    }
    out.extend(payload);
    out
}

#[test]
fn host_calls_check_their_pointers_and_aliasing() {
    let chain = chain();
    let overlap = wat::parse_str(
        r#"(module
            (import "env" "memcpy" (func $memcpy (param i32 i32 i32) (result i32)))
            (memory 1)
            (func (export "apply") (param i64 i64 i64)
              (drop (call $memcpy (i32.const 10) (i32.const 4) (i32.const 8)))))"#,
    )
    .unwrap();
    let err = run_hostile(&chain, &overlap, 1_000_000);
    assert!(matches!(err, VmError::Overlap), "{err}");
    let outside = wat::parse_str(
        r#"(module
            (import "env" "prints_l" (func $p (param i32 i32)))
            (memory 1)
            (func (export "apply") (param i64 i64 i64)
              (call $p (i32.const 65530) (i32.const 100))))"#,
    )
    .unwrap();
    let err = run_hostile(&chain, &outside, 1_000_000);
    assert!(matches!(err, VmError::Access(_)), "{err}");
}

#[test]
fn oversized_tables_are_refused_at_setcode() {
    let chain = chain();
    let big = wat::parse_str(
        r#"(module (table 1000000 funcref) (func (export "apply") (param i64 i64 i64)))"#,
    )
    .unwrap();
    let err = chain.set_code("evil", &big).unwrap_err();
    assert!(matches!(err, VmError::Compile(_)), "{err}");
}
