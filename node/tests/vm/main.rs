//! Contract VM tests over a real store: the C token contract through the VM, host functions
//! against known answers, hostile contracts,
//! determinism, Antelope's database iterator rules and the committed `.wasm` matching its source.
//! One binary (one link of wasmtime), a module per concern.

mod common;
mod contracts;
mod database;
mod host;
mod hostile;
mod pool;
mod token;
