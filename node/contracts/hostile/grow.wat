;; Hostile: writes a row, then grows its memory one page at a time without end, ignoring the -1
;; that memory.grow returns once the limit is reached. Fuel must stop it; the row must not survive.
(module
  (import "env" "db_store_i64" (func $store (param i64 i64 i64 i64 i32 i32) (result i32)))
  (memory 1)
  (func (export "apply") (param $r i64) (param $c i64) (param $a i64)
    (drop (call $store (i64.const 1) (i64.const 1) (local.get $r) (i64.const 7) (i32.const 0) (i32.const 8)))
    (loop $more (drop (memory.grow (i32.const 1))) (br $more))))
