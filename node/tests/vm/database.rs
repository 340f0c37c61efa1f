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
