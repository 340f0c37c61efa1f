//! `rempart-signer`: the block-signing daemon of the rempart perimeter.
//!
//! Keys stay in hardware ([`keyring`]); the daemon knows what it signs (it computes the block
//! digest itself from the header and what it commits to), signs only what the [`policy`]
//! allows, never signs two different blocks at one height or slot ([`guard`]), records every
//! decision in a hash-chained [`audit`] log, and serves the framed protocol of
//! `rempart_core::protocol` ([`server`]) to the node through [`client`].
//!
//! This crate must never release a signature that the guard state on disk does not already
//! hold, never log a PIN or a private key, and never call `process::exit` outside `main`.

pub mod admin;
pub mod audit;
pub mod client;
pub mod daemon;
pub mod guard;
pub mod keosd;
pub mod keyring;
pub mod metrics;
pub mod policy;
pub mod sandbox;
pub mod server;
pub mod shared_guard;
pub mod wireguard;
pub mod worker;
