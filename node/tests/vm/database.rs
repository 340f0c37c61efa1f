//! Antelope's i64 database rules through a small WAT contract: iterator numbering (rows from 0,
//! end iterators `-(table + 2)`, `-1` for a missing table), next/previous/bounds, the iterator
//! cache, deleted rows, writes to another contract's table, and console output.

use rempart_node::vm::VmError;

use super::common::{Chain, n};

/// `fill` stores rows 10, 20 and 30 in table `t`, scope 1; `walk` prints what each iterator
/// call returns; `gone` reads a row it removed; `foreign` removes a row of another contract.
const DB_CONTRACT: &str = r#"(module
  (import "env" "db_store_i64" (func $store (param i64 i64 i64 i64 i32 i32) (result i32)))
  (import "env" "db_remove_i64" (func $remove (param i32)))
  (import "env" "db_get_i64" (func $get (param i32 i32 i32) (result i32)))
  (import "env" "db_next_i64" (func $next (param i32 i32) (result i32)))
  (import "env" "db_previous_i64" (func $previous (param i32 i32) (result i32)))
  (import "env" "db_find_i64" (func $find (param i64 i64 i64 i64) (result i32)))
  (import "env" "db_lowerbound_i64" (func $lower (param i64 i64 i64 i64) (result i32)))
  (import "env" "db_upperbound_i64" (func $upper (param i64 i64 i64 i64) (result i32)))
  (import "env" "db_end_i64" (func $end (param i64 i64 i64) (result i32)))
  (import "env" "printi" (func $printi (param i64)))
  (import "env" "prints_l" (func $prints_l (param i32 i32)))
  (import "env" "require_recipient" (func $notify (param i64)))
  (import "env" "send_inline" (func $inline (param i32 i32)))
  (memory 1)
  (data (i32.const 100) " ")
  (data (i32.const 400) "\00\00\00\00\00\85\5c\34\00\00\00\00\00\00\80\6b\00\00")
  (global $self (mut i64) (i64.const 0))
  (func $p (param i32) (call $printi (i64.extend_i32_s (local.get 0))) (call $prints_l (i32.const 100) (i32.const 1)))
  (func $pk (call $printi (i64.load (i32.const 200))) (call $prints_l (i32.const 100) (i32.const 1)))
  (func (export "apply") (param $r i64) (param $c i64) (param $a i64)
    (global.set $self (local.get $r))
    ;; fill
    (if (i64.eq (local.get $a) (i64.const 6603139070841323520)) (then
      (drop (call $store (i64.const 1) (i64.const -4035225266123964416) (local.get $r) (i64.const 10) (i32.const 0) (i32.const 4)))
      (drop (call $store (i64.const 1) (i64.const -4035225266123964416) (local.get $r) (i64.const 30) (i32.const 0) (i32.const 4)))
      (drop (call $store (i64.const 1) (i64.const -4035225266123964416) (local.get $r) (i64.const 20) (i32.const 0) (i32.const 4)))))
    ;; walk
    (if (i64.eq (local.get $a) (i64.const -2187904993971929088)) (then
      (call $p (call $end (local.get $r) (i64.const 1) (i64.const -4035225266123964416)))
      (call $p (call $find (local.get $r) (i64.const 1) (i64.const -4035225266123964416) (i64.const 20)))
      (call $p (call $next (i32.const 0) (i32.const 200))) (call $pk)
      (call $p (call $next (i32.const 1) (i32.const 200)))
      (call $p (call $previous (i32.const -2) (i32.const 200))) (call $pk)
      (call $p (call $lower (local.get $r) (i64.const 1) (i64.const -4035225266123964416) (i64.const 15)))
      (call $p (call $upper (local.get $r) (i64.const 1) (i64.const -4035225266123964416) (i64.const 30)))
      (call $p (call $find (local.get $r) (i64.const 1) (i64.const -3458764513820540928) (i64.const 10)))
      (call $p (call $find (local.get $r) (i64.const 1) (i64.const -4035225266123964416) (i64.const 10)))
      (call $p (call $previous (i32.const 2) (i32.const 200)))
      (call $p (call $get (i32.const 0) (i32.const 0) (i32.const 0)))))
;; note: notify alice (twice) and send alice::hi inline
    (if (i64.eq (local.get $a) (i64.const -7119452139058888704)) (then
      (call $notify (i64.const 3773036822876127232))
      (call $notify (i64.const 3773036822876127232))
      (call $inline (i32.const 400) (i32.const 18))))
    ;; gone
    (if (i64.eq (local.get $a) (i64.const 7288688968806170624)) (then
      (call $remove (call $find (local.get $r) (i64.const 1) (i64.const -4035225266123964416) (i64.const 10)))
      (drop (call $get (i32.const 0) (i32.const 300) (i32.const 4)))))
    ;; foreign: remove row 10 of contract `db`
    (if (i64.eq (local.get $a) (i64.const 6714487929256804352)) (then
      (call $remove (call $find (i64.const 5314247560297185280) (i64.const 1) (i64.const -4035225266123964416) (i64.const 10)))))))"#;

fn chain() -> Chain {
    let chain = Chain::new(&["db", "other", "alice"]);
    let code = wat::parse_str(DB_CONTRACT).expect("wat");
    chain.set_code("db", &code).expect("setcode db");
    chain.set_code("other", &code).expect("setcode other");
    chain.push("db", "fill", &["db"], vec![]).expect("fill");
    chain
}

#[test]
fn iterators_follow_antelope_numbering() {
    let chain = chain();
    let walked = chain.push("db", "walk", &["db"], vec![]).expect("walk");
    assert_eq!(walked.outcome.console, "-2 0 1 30 -2 1 30 0 -2 -1 2 -1 4 ");
    assert!(walked.outcome.fuel_used > 0);
}

#[test]
fn deleted_rows_and_foreign_tables_are_refused() {
    let chain = chain();
    let before = chain.state();
    match chain.push("db", "gone", &["db"], vec![]) {
        Err(VmError::Db(m)) => assert_eq!(m, "dereference of deleted object"),
        other => panic!("expected a database error, got {other:?}"),
    }
    // `other` runs the same code but tries to remove a row of `db`: reading is allowed,
    // writing is not.
    match chain.push("other", "foreign", &["alice"], vec![]) {
        Err(VmError::Db(m)) => assert_eq!(m, "db access violation"),
        other => panic!("expected a database error, got {other:?}"),
    }
    assert_eq!(chain.state(), before);
}

#[test]
fn notifications_and_inline_actions_reach_the_host() {
    let chain = chain();
    let pushed = chain.push("db", "note", &["db"], vec![]).expect("note");
    assert_eq!(pushed.notified, vec![n("alice")]);
    assert_eq!(pushed.inline.len(), 1);
    assert_eq!((pushed.inline[0].account, pushed.inline[0].name), (n("alice"), n("hi")));
    assert!(pushed.inline[0].authorization.is_empty() && pushed.inline[0].data.0.is_empty());
}

#[test]
fn eosio_exit_ends_the_action_successfully_and_fuel_is_accounted() {
    let chain = Chain::new(&["quitter"]);
    let code = wat::parse_str(
        r#"(module
            (import "env" "db_store_i64" (func $store (param i64 i64 i64 i64 i32 i32) (result i32)))
            (import "env" "eosio_exit" (func $exit (param i32)))
            (memory 1)
            (func (export "apply") (param $r i64) (param i64 i64)
              (drop (call $store (i64.const 1) (i64.const 1) (local.get $r) (i64.const 7) (i32.const 0) (i32.const 8)))
              (call $exit (i32.const 0))
              unreachable))"#,
    )
    .expect("wat");
    chain.set_code("quitter", &code).expect("setcode");
    let mut fuel = 1_000_000;
    let pushed = chain
        .push_with_fuel("quitter", "go", &["quitter"], vec![], &mut fuel)
        .expect("eosio_exit is a success");
    assert_eq!(fuel, 1_000_000 - pushed.outcome.fuel_used, "the budget shrinks by what was used");
    let k = rempart_node::store::key::row(
        n("quitter"),
        rempart_core::Name(1),
        rempart_core::Name(1),
        7,
    );
    assert!(
        chain.store.read().unwrap().get(&k).unwrap().is_some(),
        "the row before eosio_exit stays"
    );
}

/// Actions of [`BACK_CONTRACT`]: `seed` stores the u64 primary keys of its data in table 100,
/// scope 1 (plus one row in each neighbouring table, which must never show); `mixed` stores 25
/// and 5 and removes 20 in the same transaction, then walks back from the end and from the
/// first row; `deleted` asks for the row before one it removed; `badend` passes a made-up end
/// iterator; `drain` removes every row after taking the end iterator, then walks back; `last`
/// prints the row before the end once.
fn back_contract() -> String {
    let a = |s: &str| n(s).value() as i64;
    format!(
        r#"(module
  (import "env" "db_store_i64" (func $store (param i64 i64 i64 i64 i32 i32) (result i32)))
  (import "env" "db_remove_i64" (func $remove (param i32)))
  (import "env" "db_previous_i64" (func $previous (param i32 i32) (result i32)))
  (import "env" "db_find_i64" (func $find (param i64 i64 i64 i64) (result i32)))
  (import "env" "db_lowerbound_i64" (func $lower (param i64 i64 i64 i64) (result i32)))
  (import "env" "db_end_i64" (func $end (param i64 i64 i64) (result i32)))
  (import "env" "read_action_data" (func $read (param i32 i32) (result i32)))
  (import "env" "printi" (func $printi (param i64)))
  (import "env" "prints_l" (func $prints_l (param i32 i32)))
  (memory 2)
  (data (i32.const 100) " ")
  (global $self (mut i64) (i64.const 0))
  (func $put (param $scope i64) (param $table i64) (param $id i64)
    (drop (call $store (local.get $scope) (local.get $table) (global.get $self) (local.get $id)
                       (i32.const 0) (i32.const 8))))
  (func $print (param i64) (call $printi (local.get 0)) (call $prints_l (i32.const 100) (i32.const 1)))
  (func $back (param $itr i32)
    (loop $more
      (local.set $itr (call $previous (local.get $itr) (i32.const 200)))
      (if (i32.ge_s (local.get $itr) (i32.const 0))
        (then (call $print (i64.load (i32.const 200))) (br $more))))
    (call $print (i64.extend_i32_s (local.get $itr))))
  (func (export "apply") (param $r i64) (param $c i64) (param $a i64)
    (local $n i32) (local $i i32) (local $e i32)
    (global.set $self (local.get $r))
    (if (i64.eq (local.get $a) (i64.const {seed})) (then
      (local.set $n (call $read (i32.const 1024) (i32.const 65536)))
      (block $done (loop $each
        (br_if $done (i32.ge_u (local.get $i) (local.get $n)))
        (call $put (i64.const 1) (i64.const 100) (i64.load (i32.add (i32.const 1024) (local.get $i))))
        (local.set $i (i32.add (local.get $i) (i32.const 8)))
        (br $each)))
      (call $put (i64.const 0) (i64.const 100) (i64.const 1))
      (call $put (i64.const 2) (i64.const 100) (i64.const 0))
      (call $put (i64.const 1) (i64.const 99) (i64.const -1))
      (call $put (i64.const 1) (i64.const 101) (i64.const 0))))
    (if (i64.eq (local.get $a) (i64.const {mixed})) (then
      (call $put (i64.const 1) (i64.const 100) (i64.const 25))
      (call $put (i64.const 1) (i64.const 100) (i64.const 5))
      (call $remove (call $find (local.get $r) (i64.const 1) (i64.const 100) (i64.const 20)))
      (call $back (call $end (local.get $r) (i64.const 1) (i64.const 100)))
      (call $back (call $lower (local.get $r) (i64.const 1) (i64.const 100) (i64.const 0)))))
    (if (i64.eq (local.get $a) (i64.const {walk})) (then
      (call $back (call $end (local.get $r) (i64.const 1) (i64.const 100)))))
    (if (i64.eq (local.get $a) (i64.const {deleted})) (then
      (local.set $i (call $find (local.get $r) (i64.const 1) (i64.const 100) (i64.const 10)))
      (call $remove (local.get $i))
      (drop (call $previous (local.get $i) (i32.const 200)))))
    (if (i64.eq (local.get $a) (i64.const {badend})) (then
      (drop (call $previous (i32.const -2147483648) (i32.const 200)))))
    (if (i64.eq (local.get $a) (i64.const {drain})) (then
      (local.set $e (call $end (local.get $r) (i64.const 1) (i64.const 100)))
      (block $empty (loop $each
        (local.set $i (call $lower (local.get $r) (i64.const 1) (i64.const 100) (i64.const 0)))
        (br_if $empty (i32.lt_s (local.get $i) (i32.const 0)))
        (call $remove (local.get $i))
        (br $each)))
      (call $back (local.get $e))))
    (if (i64.eq (local.get $a) (i64.const {last})) (then
      (drop (call $previous (call $end (local.get $r) (i64.const 1) (i64.const 100)) (i32.const 200)))
      (call $print (i64.load (i32.const 200)))))))"#,
        seed = a("seed"),
        mixed = a("mixed"),
        walk = a("walk"),
        deleted = a("deleted"),
        badend = a("badend"),
        drain = a("drain"),
        last = a("last"),
    )
}

/// A chain whose `back` account runs [`back_contract`], seeded with `primaries`.
fn back_chain(primaries: &[u64]) -> Chain {
    let chain = Chain::new(&["back"]);
    let code = wat::parse_str(back_contract()).expect("wat");
    chain.set_code("back", &code).expect("setcode");
    let data: Vec<u8> = primaries.iter().flat_map(|p| p.to_le_bytes()).collect();
    chain.push("back", "seed", &["back"], data).expect("seed");
    chain
}

#[test]
fn previous_walks_committed_and_same_transaction_rows_as_antelope() {
    let chain = back_chain(&[10, 20, 30]);
    let mixed = chain.push("back", "mixed", &["back"], vec![]).expect("mixed");
    // From the end: 30 (committed), 25 (this transaction), 20 skipped (removed in this
    // transaction), 10, 5 (this transaction), then -1; the row before the first is -1.
    assert_eq!(mixed.outcome.console, "30 25 10 5 -1 -1 ");
    let walk = chain.push("back", "walk", &["back"], vec![]).expect("walk");
    assert_eq!(walk.outcome.console, "30 25 10 5 -1 ", "the same once committed");
    let drain = chain.push("back", "drain", &["back"], vec![]).expect("drain");
    assert_eq!(drain.outcome.console, "-1 ", "previous of the end of an emptied table");
}

#[test]
fn previous_refuses_removed_rows_and_made_up_end_iterators() {
    let chain = back_chain(&[10, 20, 30]);
    let before = chain.state();
    match chain.push("back", "deleted", &["back"], vec![]) {
        Err(VmError::Db(m)) => assert_eq!(m, "dereference of deleted object"),
        other => panic!("expected a database error, got {other:?}"),
    }
    match chain.push("back", "badend", &["back"], vec![]) {
        Err(VmError::Db(m)) => assert_eq!(m, "not a valid end iterator"),
        other => panic!("expected a database error, got {other:?}"),
    }
    assert_eq!(chain.state(), before);
}

#[test]
fn previous_costs_the_same_whatever_the_table_size() {
    let small = back_chain(&[10, 20, 30]);
    let big: Vec<u64> = (1..=2000).map(|i| i * 10).collect();
    let big = back_chain(&big);
    let s = small.push("back", "last", &["back"], vec![]).expect("last of 3");
    let b = big.push("back", "last", &["back"], vec![]).expect("last of 2000");
    assert_eq!((s.outcome.console.as_str(), b.outcome.console.as_str()), ("30 ", "20000 "));
    assert_eq!(
        s.outcome.fuel_used, b.outcome.fuel_used,
        "db_previous_i64 is one ordered lookup, not a scan of the table"
    );
}

/// `Overlay::previous` against a model (a `BTreeMap` of the committed entries with the staged
/// changes applied), over prefixes that neighbour each other, staged puts over committed keys,
/// staged removals of committed and staged keys, and the all-`0xff` prefix.
#[test]
fn overlay_previous_matches_a_model() {
    use std::collections::BTreeMap;

    use rempart_node::store::{Overlay, Store};

    let prefixes: [&[u8]; 5] = [&[1, 2], &[1, 3], &[1, 2, 255], &[255, 255], &[1]];
    let mut seed = 0x2545_f491_4f6c_dd1du64;
    let mut next = move |m: u64| {
        seed = seed.wrapping_mul(6_364_136_223_846_793_005).wrapping_add(1_442_695_040_888_963_407);
        (seed >> 33) % m
    };
    for round in 0..20 {
        let dir = tempfile::tempdir().expect("dir");
        let store = Store::open(&dir.path().join("s.redb")).expect("store");
        let mut model: BTreeMap<Vec<u8>, Vec<u8>> = BTreeMap::new();
        let key = |next: &mut dyn FnMut(u64) -> u64| {
            let mut k = prefixes[next(prefixes.len() as u64) as usize].to_vec();
            for _ in 0..1 + next(2) {
                k.push([0u8, 1, 2, 3, 254, 255][next(6) as usize]);
            }
            k
        };
        store
            .write(|w| {
                let mut o = Overlay::new(w);
                for _ in 0..next(30) {
                    let k = key(&mut next);
                    o.put(k.clone(), vec![1]);
                    model.insert(k, vec![1]);
                }
                o.commit()
            })
            .expect("base");
        store
            .write(|w| -> Result<(), rempart_node::store::StoreError> {
                let mut o = Overlay::new(w);
                for _ in 0..next(30) {
                    let k = key(&mut next);
                    if next(3) == 0 {
                        o.delete(k.clone());
                        model.remove(&k);
                    } else {
                        o.put(k.clone(), vec![2, round]);
                        model.insert(k, vec![2, round]);
                    }
                }
                for prefix in prefixes {
                    let mut befores: Vec<Option<Vec<u8>>> = vec![None, Some(prefix.to_vec())];
                    for _ in 0..12 {
                        befores.push(Some(key(&mut next)));
                    }
                    for before in befores {
                        let want = model
                            .iter()
                            .rfind(|(k, _)| {
                                k.starts_with(prefix) && before.as_ref().is_none_or(|b| *k < b)
                            })
                            .map(|(k, v)| (k.clone(), v.clone()));
                        let got = o.previous(prefix, before.as_deref())?;
                        assert_eq!(
                            got, want,
                            "round {round}, prefix {prefix:?}, before {before:?}"
                        );
                    }
                }
                Ok(())
            })
            .expect("overlay");
    }
}
