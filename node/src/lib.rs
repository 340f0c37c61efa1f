//! `rempart-node`: a small Antelope-compatible chain that real clients accept.
//!
//! State lives in one redb file ([`store`]); the producer role makes a block every 500 ms slot and
//! has its blocks signed by `rempart-signer`; the api role follows a producer, verifies every
//! block and serves the nodeos chain API. The binary in `main.rs` only parses arguments and calls
//! into this library; nothing here calls `process::exit`.

pub mod account;
pub mod api;
pub mod authority;
pub mod chain;
pub mod config;
pub mod genesis;
pub mod listen;
pub mod metrics;
pub mod native;
pub mod ops;
pub mod peer;
pub mod producer;
pub mod role;
pub mod store;
pub mod tunnel;
pub mod vm;
