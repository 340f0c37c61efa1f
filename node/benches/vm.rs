//! Criterion benchmark of the contract VM: one `eosio.token` `transfer` applied through
//! [`Vm::apply`] on the C token contract over a real redb store (the transaction's overlay is
//! committed into one open block write; no signatures, no fsync). Results are in BENCHMARKS.md.
//!
//! A bench measures; it must never assert behaviour that the tests own.

use criterion::{Criterion, criterion_group, criterion_main};
use rempart_core::transaction::{Action, PermissionLevel};
use rempart_core::{Asset, BlockTimestamp, Bytes, Name, TimePoint, to_bytes};
use rempart_node::account::AccountRecord;
use rempart_node::store::{Overlay, Store, StoreError, key};
use rempart_node::vm::{ApplyContext, Host, Vm, VmConfig, VmError};

struct NoHost;

impl Host for NoHost {
    fn require_recipient(&mut self, _: &Overlay<'_, '_>, _: Name) -> Result<(), String> {
        Ok(())
    }
    fn send_inline(&mut self, _: &Overlay<'_, '_>, _: Action) -> Result<(), String> {
        Ok(())
    }
}

fn name(s: &str) -> Name {
    s.parse().expect("name")
}

fn action(contract: &str, act: &str, actor: &str, parts: &[Vec<u8>]) -> Action {
    Action {
        account: name(contract),
        name: name(act),
        authorization: vec![PermissionLevel { actor: name(actor), permission: name("active") }],
        data: Bytes(parts.concat()),
    }
}

fn apply(vm: &Vm, o: &mut Overlay<'_, '_>, act: &Action) -> Result<(), VmError> {
    let ctx = ApplyContext {
        receiver: act.account,
        action: act,
        block_time: TimePoint(1_700_000_000_000_000),
        publication_time: TimePoint(1_700_000_000_000_000),
        sender: Name(0),
    };
    let mut fuel = vm.config().max_transaction_fuel;
    vm.apply(o, &mut NoHost, &ctx, &mut fuel).map(drop)
}

fn token_transfer(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("state.redb")).expect("store");
    let vm = Vm::new(VmConfig::default()).expect("vm");
    let code = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/token.wasm"))
        .expect("token.wasm");
    let info = vm.validate(&code).expect("token accepted");
    let asset = |s: &str| to_bytes(&s.parse::<Asset>().expect("asset"));
    let memo = to_bytes("bench");
    store
        .write(|w| -> Result<(), VmError> {
            let mut o = Overlay::new(w);
            for a in ["eosio.token", "issuer", "alice"] {
                let rec = AccountRecord {
                    name: name(a),
                    creation_date: BlockTimestamp(0),
                    privileged: false,
                    last_code_update: BlockTimestamp(0),
                };
                o.put_record(key::account(name(a)), &rec);
            }
            o.put(key::code(&info.hash), code.clone());
            o.put(key::code_hash(name("eosio.token")), to_bytes(&info.hash));
            let issuer = to_bytes(&name("issuer"));
            let create = [issuer.clone(), asset("1000000000.0000 SYS")];
            apply(&vm, &mut o, &action("eosio.token", "create", "eosio.token", &create))?;
            let issue = [issuer, asset("1000000000.0000 SYS"), memo.clone()];
            apply(&vm, &mut o, &action("eosio.token", "issue", "issuer", &issue))?;
            o.commit()?;
            Ok(())
        })
        .expect("token set up");

    let transfer = action(
        "eosio.token",
        "transfer",
        "issuer",
        &[to_bytes(&name("issuer")), to_bytes(&name("alice")), asset("0.0001 SYS"), memo],
    );
    let result: Result<(), StoreError> = store.write(|w| {
        c.bench_function("vm/token transfer (apply, overlay commit)", |b| {
            b.iter(|| {
                let mut o = Overlay::new(w);
                apply(&vm, &mut o, &transfer).expect("transfer");
                o.commit().expect("commit");
            })
        });
        Ok(())
    });
    result.expect("block write");

    // The fixed cost of one action: store, instance, fiber, an `apply` that returns at once.
    let empty =
        wat::parse_str(r#"(module (memory 1) (func (export "apply") (param i64 i64 i64)))"#)
            .expect("wat");
    let info = vm.validate(&empty).expect("empty accepted");
    let noop = action("alice", "noop", "alice", &[]);
    let result: Result<(), StoreError> = store.write(|w| {
        let mut o = Overlay::new(w);
        o.put(key::code(&info.hash), empty.clone());
        o.put(key::code_hash(name("alice")), to_bytes(&info.hash));
        c.bench_function("vm/empty action", |b| {
            b.iter(|| apply(&vm, &mut o, &noop).expect("noop"))
        });
        Ok(())
    });
    result.expect("block write");
}

criterion_group!(benches, token_transfer);
criterion_main!(benches);
