;; Host-function probe: the first byte of the action data picks one probe (an index into the
;; table below), the rest are its arguments. Each probe prints what the host functions answered,
;; so tests compare the console (or the error) with known answers. Memory: 0x0000 " ",
;; 0x0010 "abc", 0x0020 "abcdef", 0x0030 "abd", 0x0040 "ok", 0x1000 the action data,
;; 0x2000 output buffer, 0x3000 resource limits.
(module
  (type $probe (func))
  (import "env" "read_action_data" (func $read_action_data (param i32 i32) (result i32)))
  (import "env" "action_data_size" (func $action_data_size (result i32)))
  (import "env" "current_receiver" (func $current_receiver (result i64)))
  (import "env" "current_time" (func $current_time (result i64)))
  (import "env" "publication_time" (func $publication_time (result i64)))
  (import "env" "require_auth2" (func $require_auth2 (param i64 i64)))
  (import "env" "eosio_assert_message" (func $eosio_assert_message (param i32 i32 i32)))
  (import "env" "abort" (func $abort))
  (import "env" "prints_l" (func $prints_l (param i32 i32)))
  (import "env" "printi" (func $printi (param i64)))
  (import "env" "printui" (func $printui (param i64)))
  (import "env" "printn" (func $printn (param i64)))
  (import "env" "printhex" (func $printhex (param i32 i32)))
  (import "env" "sha256" (func $sha256 (param i32 i32 i32)))
  (import "env" "sha1" (func $sha1 (param i32 i32 i32)))
  (import "env" "sha512" (func $sha512 (param i32 i32 i32)))
  (import "env" "ripemd160" (func $ripemd160 (param i32 i32 i32)))
  (import "env" "assert_sha256" (func $assert_sha256 (param i32 i32 i32)))
  (import "env" "recover_key" (func $recover_key (param i32 i32 i32 i32 i32) (result i32)))
  (import "env" "assert_recover_key" (func $assert_recover_key (param i32 i32 i32 i32 i32)))
  (import "env" "memmove" (func $memmove (param i32 i32 i32) (result i32)))
  (import "env" "memcmp" (func $memcmp (param i32 i32 i32) (result i32)))
  (import "env" "get_active_producers" (func $get_active_producers (param i32 i32) (result i32)))
  (import "env" "is_privileged" (func $is_privileged (param i64) (result i32)))
  (import "env" "is_feature_activated" (func $is_feature_activated (param i32) (result i32)))
  (import "env" "get_resource_limits" (func $get_resource_limits (param i64 i32 i32 i32)))
  (import "env" "set_proposed_producers" (func $set_proposed_producers (param i32 i32) (result i64)))
  (import "env" "get_blockchain_parameters_packed" (func $get_blockchain_parameters_packed (param i32 i32) (result i32)))
  (import "env" "set_blockchain_parameters_packed" (func $set_blockchain_parameters_packed (param i32 i32)))
  (import "env" "set_privileged" (func $set_privileged (param i64 i32)))
  (import "env" "set_resource_limits" (func $set_resource_limits (param i64 i64 i64 i64)))
  (import "env" "preactivate_feature" (func $preactivate_feature (param i32)))
  (memory 1)
  (data (i32.const 0x00) " ")
  (data (i32.const 0x10) "abc")
  (data (i32.const 0x20) "abcdef")
  (data (i32.const 0x30) "abd")
  (data (i32.const 0x40) "ok")
  (global $size (mut i32) (i32.const 0))
  (table 16 funcref)
  (elem (i32.const 0) $hashes $assert_sha $recover $assert_recover $context $auth2 $assert_msg
        $do_abort $mem $producers $set_producers $get_params $set_params $set_priv $set_limits
        $preactivate)

  (func $sp (call $prints_l (i32.const 0x00) (i32.const 1)))
  (func $ok (call $prints_l (i32.const 0x40) (i32.const 2)))

  ;; 0: sha256, sha1, sha512, ripemd160 of "abc", in hex.
  (func $hashes
    (call $sha256 (i32.const 0x10) (i32.const 3) (i32.const 0x2000))
    (call $printhex (i32.const 0x2000) (i32.const 32)) (call $sp)
    (call $sha1 (i32.const 0x10) (i32.const 3) (i32.const 0x2000))
    (call $printhex (i32.const 0x2000) (i32.const 20)) (call $sp)
    (call $sha512 (i32.const 0x10) (i32.const 3) (i32.const 0x2000))
    (call $printhex (i32.const 0x2000) (i32.const 64)) (call $sp)
    (call $ripemd160 (i32.const 0x10) (i32.const 3) (i32.const 0x2000))
    (call $printhex (i32.const 0x2000) (i32.const 20)))
  ;; 1 [hash 32]: assert_sha256("abc", hash).
  (func $assert_sha
    (call $assert_sha256 (i32.const 0x10) (i32.const 3) (i32.const 0x1001)) (call $ok))
  ;; 2 [out_len 1][digest 32][signature ...]: recover_key into a buffer of out_len bytes;
  ;; prints the returned size and that many bytes of the buffer.
  (func $recover (local $n i32)
    (local.set $n (call $recover_key (i32.const 0x1002) (i32.const 0x1022)
      (i32.sub (global.get $size) (i32.const 0x22))
      (i32.const 0x2000) (i32.load8_u (i32.const 0x1001))))
    (call $printi (i64.extend_i32_s (local.get $n))) (call $sp)
    (call $printhex (i32.const 0x2000) (local.get $n)))
  ;; 3 [digest 32][signature 66][key ...]: assert_recover_key.
  (func $assert_recover
    (call $assert_recover_key (i32.const 0x1001) (i32.const 0x1021) (i32.const 66)
      (i32.const 0x1063) (i32.sub (global.get $size) (i32.const 0x63)))
    (call $ok))
  ;; 4: receiver (number and name), block time, publication time, -5 signed, -1 unsigned.
  (func $context
    (call $printui (call $current_receiver)) (call $sp)
    (call $printn (call $current_receiver)) (call $sp)
    (call $printi (call $current_time)) (call $sp)
    (call $printi (call $publication_time)) (call $sp)
    (call $printi (i64.const -5)) (call $sp)
    (call $printui (i64.const -1)))
  ;; 5 [actor 8][permission 8]: require_auth2.
  (func $auth2
    (call $require_auth2 (i64.load (i32.const 0x1001)) (i64.load (i32.const 0x1009))) (call $ok))
  ;; 6 [message ...]: a passing eosio_assert_message, then a failing one with the message.
  (func $assert_msg
    (call $eosio_assert_message (i32.const 1) (i32.const 0x1001)
      (i32.sub (global.get $size) (i32.const 1)))
    (call $eosio_assert_message (i32.const 0) (i32.const 0x1001)
      (i32.sub (global.get $size) (i32.const 1))))
  ;; 7: abort.
  (func $do_abort (call $abort))
  ;; 8: overlapping memmove both ways, then memcmp less, equal, greater and empty.
  (func $mem
    (drop (call $memmove (i32.const 0x22) (i32.const 0x20) (i32.const 4)))
    (call $prints_l (i32.const 0x20) (i32.const 6)) (call $sp)
    (drop (call $memmove (i32.const 0x20) (i32.const 0x22) (i32.const 4)))
    (call $prints_l (i32.const 0x20) (i32.const 6)) (call $sp)
    (call $printi (i64.extend_i32_s (call $memcmp (i32.const 0x10) (i32.const 0x30) (i32.const 3))))
    (call $sp)
    (call $printi (i64.extend_i32_s (call $memcmp (i32.const 0x10) (i32.const 0x20) (i32.const 3))))
    (call $sp)
    (call $printi (i64.extend_i32_s (call $memcmp (i32.const 0x30) (i32.const 0x10) (i32.const 3))))
    (call $sp)
    (call $printi (i64.extend_i32_s (call $memcmp (i32.const 0x30) (i32.const 0x10) (i32.const 0)))))
  ;; 9: the read-only producer and parameter intrinsics.
  (func $producers
    (call $printi (i64.extend_i32_s (call $get_active_producers (i32.const 0x2000) (i32.const 0x100))))
    (call $sp)
    (call $printi (i64.extend_i32_s (call $is_privileged (call $current_receiver)))) (call $sp)
    (call $printi (i64.extend_i32_s (call $is_feature_activated (i32.const 0x2000)))) (call $sp)
    (call $get_resource_limits (call $current_receiver)
      (i32.const 0x3000) (i32.const 0x3008) (i32.const 0x3010))
    (call $printi (i64.load (i32.const 0x3000))) (call $sp)
    (call $printi (i64.load (i32.const 0x3008))) (call $sp)
    (call $printi (i64.load (i32.const 0x3010))))
  ;; 10-15: the privileged writes (and the parameter read), each refused.
  (func $set_producers (drop (call $set_proposed_producers (i32.const 0x2000) (i32.const 0))))
  (func $get_params
    (drop (call $get_blockchain_parameters_packed (i32.const 0x2000) (i32.const 0x100))))
  (func $set_params (call $set_blockchain_parameters_packed (i32.const 0x2000) (i32.const 0)))
  (func $set_priv (call $set_privileged (call $current_receiver) (i32.const 1)))
  (func $set_limits
    (call $set_resource_limits (call $current_receiver) (i64.const 0) (i64.const 0) (i64.const 0)))
  (func $preactivate (call $preactivate_feature (i32.const 0x2000)))

  (func (export "apply") (param i64 i64 i64)
    (global.set $size (call $action_data_size))
    (drop (call $read_action_data (i32.const 0x1000) (i32.const 0x1000)))
    (call_indirect (type $probe) (i32.load8_u (i32.const 0x1000)))))
