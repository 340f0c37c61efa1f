;; Hostile: imports a function no Antelope node provides; setcode must name it.
(module
  (import "env" "get_wall_clock" (func $clock (result i64)))
  (func (export "apply") (param i64 i64 i64) (drop (call $clock))))
