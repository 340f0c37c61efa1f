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
