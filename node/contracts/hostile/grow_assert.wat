;; Hostile: writes a row, grows its memory one page at a time until memory.grow returns -1 (the
;; node's limit), then fails its own assertion, as a contract whose allocator ran dry does.
(module
  (import "env" "db_store_i64" (func $store (param i64 i64 i64 i64 i32 i32) (result i32)))
  (import "env" "eosio_assert" (func $assert (param i32 i32)))
  (memory 1)
  (data (i32.const 16) "out of memory\00")
  (func (export "apply") (param $r i64) (param $c i64) (param $a i64)
    (drop (call $store (i64.const 1) (i64.const 1) (local.get $r) (i64.const 7) (i32.const 0) (i32.const 8)))
    (block $refused
      (loop $more
        (br_if $refused (i32.eq (memory.grow (i32.const 1)) (i32.const -1)))
        (br $more)))
    (call $assert (i32.const 0) (i32.const 16))))
