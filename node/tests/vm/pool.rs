//! The VM's instance slots: more concurrent actions than slots wait for a free one and then
//! run, and an action started from inside another on the same thread, with every slot taken,
//! fails at once with a typed error instead of waiting for itself.

use std::sync::{Arc, Barrier};

use rempart_core::transaction::{Action, PermissionLevel};
use rempart_core::{Bytes, Name, TimePoint, to_bytes};
use rempart_node::store::{Overlay, Store, key};
use rempart_node::vm::{ApplyContext, Host, Vm, VmConfig, VmError};

use super::common::n;

/// Asks to notify `alice` (so that the host is called mid-action), then prints "done".
const NOTIFYING: &str = r#"(module
  (import "env" "require_recipient" (func $notify (param i64)))
  (import "env" "prints_l" (func $prints_l (param i32 i32)))
  (memory 1) (data (i32.const 0) "done")
  (func (export "apply") (param i64 i64 i64)
    (call $notify (i64.const 3773036822876127232))
    (call $prints_l (i32.const 0) (i32.const 4))))"#;

/// A store of its own (redb allows one writer per file) holding the contract on `slow`.
fn store_with_code(vm: &Vm, dir: &tempfile::TempDir, file: &str) -> Store {
    let code = wat::parse_str(NOTIFYING).expect("wat");
    let info = vm.validate(&code).expect("accepted");
    let store = Store::open(&dir.path().join(file)).expect("store");
    store
        .write(|w| {
            let mut o = Overlay::new(w);
            o.put(key::code(&info.hash), code);
            o.put(key::code_hash(n("slow")), to_bytes(&info.hash));
            o.commit()
        })
        .expect("code");
    store
}

fn run(vm: &Vm, store: &Store, host: &mut dyn Host) -> Result<String, VmError> {
    let act = Action {
        account: n("slow"),
        name: n("go"),
        authorization: vec![PermissionLevel { actor: n("slow"), permission: n("active") }],
        data: Bytes(vec![]),
    };
    let ctx = ApplyContext {
        receiver: act.account,
        action: &act,
        block_time: TimePoint(0),
        publication_time: TimePoint(0),
        sender: Name(0),
    };
    store.write(|w| {
        let mut o = Overlay::new(w);
        let mut fuel = 1_000_000;
        vm.apply(&mut o, host, &ctx, &mut fuel).map(|out| out.console)
    })
}

/// Holds its action inside `require_recipient` until the test lets it go.
struct Held {
    inside: Arc<Barrier>,
    release: Arc<Barrier>,
}

impl Host for Held {
    fn require_recipient(&mut self, _: &Overlay<'_, '_>, _: Name) -> Result<(), String> {
        self.inside.wait();
        self.release.wait();
        Ok(())
    }
    fn send_inline(&mut self, _: &Overlay<'_, '_>, _: Action) -> Result<(), String> {
        Ok(())
    }
}

struct Free;

impl Host for Free {
    fn require_recipient(&mut self, _: &Overlay<'_, '_>, _: Name) -> Result<(), String> {
        Ok(())
    }
    fn send_inline(&mut self, _: &Overlay<'_, '_>, _: Action) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn the_node_needs_one_slot() {
    assert_eq!(VmConfig::default().concurrent_actions, 1, "one chain thread runs contracts");
}

#[test]
fn actions_beyond_the_slots_wait_for_one_and_then_run() {
    let vm = Arc::new(Vm::new(VmConfig { concurrent_actions: 2, ..VmConfig::default() }).unwrap());
    let dir = tempfile::tempdir().expect("dir");
    let stores: Vec<Arc<Store>> =
        (0..3).map(|i| Arc::new(store_with_code(&vm, &dir, &format!("s{i}.redb")))).collect();
    let inside = Arc::new(Barrier::new(3));
    let release = Arc::new(Barrier::new(3));
    let holders: Vec<_> = (0..2)
        .map(|i| {
            let (vm, store) = (vm.clone(), stores[i].clone());
            let mut host = Held { inside: inside.clone(), release: release.clone() };
            std::thread::spawn(move || run(&vm, &store, &mut host))
        })
        .collect();
    inside.wait();
    assert_eq!(vm.running_actions(), 2, "both slots are held mid-action");
    let third = {
        let (vm, store) = (vm.clone(), stores[2].clone());
        std::thread::spawn(move || run(&vm, &store, &mut Free))
    };
    // The third action can only be waiting: both slots stay held until `release`.
    while vm.waiting_actions() == 0 {
        std::thread::yield_now();
    }
    assert_eq!(vm.running_actions(), 2);
    assert!(!third.is_finished(), "the third action waits for a slot");
    release.wait();
    for h in holders {
        assert_eq!(h.join().expect("thread").expect("apply"), "done");
    }
    assert_eq!(third.join().expect("thread").expect("apply once a slot is free"), "done");
    assert_eq!((vm.running_actions(), vm.waiting_actions()), (0, 0));
}

/// Runs another action (on another store) from inside `require_recipient`.
struct Nested<'a> {
    vm: &'a Vm,
    store: &'a Store,
    result: Option<Result<String, VmError>>,
}

impl Host for Nested<'_> {
    fn require_recipient(&mut self, _: &Overlay<'_, '_>, _: Name) -> Result<(), String> {
        self.result = Some(run(self.vm, self.store, &mut Free));
        Ok(())
    }
    fn send_inline(&mut self, _: &Overlay<'_, '_>, _: Action) -> Result<(), String> {
        Ok(())
    }
}

#[test]
fn an_action_inside_another_with_every_slot_taken_fails_cleanly() {
    let vm = Vm::new(VmConfig::default()).expect("vm");
    let dir = tempfile::tempdir().expect("dir");
    let outer = store_with_code(&vm, &dir, "outer.redb");
    let inner = store_with_code(&vm, &dir, "inner.redb");
    let mut host = Nested { vm: &vm, store: &inner, result: None };
    assert_eq!(run(&vm, &outer, &mut host).expect("the outer action runs"), "done");
    let err = host.result.expect("the host ran").expect_err("no slot for the inner action");
    assert!(matches!(err, VmError::Busy { slots: 1 }), "{err}");
    assert!(err.to_string().contains("concurrent_actions"), "{err}");
    assert_eq!(err.nodeos().1, "resource_exhausted_exception");
    // With a second slot the same nesting runs.
    let vm = Vm::new(VmConfig { concurrent_actions: 2, ..VmConfig::default() }).expect("vm");
    let mut host = Nested { vm: &vm, store: &inner, result: None };
    assert_eq!(run(&vm, &outer, &mut host).expect("outer"), "done");
    assert_eq!(host.result.expect("ran").expect("inner runs in the second slot"), "done");
}
