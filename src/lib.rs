//! `rempart`: the operator's entry point to the perimeter (`rempart up`, `rempart check`,
//! `rempart admin`, `rempart wg`).
//!
//! The library holds everything the binary does so that tests drive it without spawning a
//! process. It never calls `process::exit` and never claims that a part exists before it does.

pub mod admin;
pub mod check;
pub mod cli;
pub mod up;
