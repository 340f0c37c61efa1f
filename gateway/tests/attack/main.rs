//! Attack tests with the real tools attackers and auditors use: slowhttptest (slowloris and
//! slow body), Python h2 clients (rapid reset, CONTINUATION flood), testssl.sh (TLS audit), and
//! many simulated clients against the rate limits, also shared by two gateways through a real
//! redis-server. The gateway runs in-process on 127.0.0.1:0; the tools are separate processes
//! aimed only at it.
//!
//! The tests install nothing: `tests/run.sh` installs the Debian packages. When a tool is
//! missing a test fails if `CI=true` and otherwise says why and returns. The tests take a
//! machine-wide lock so two of them never load the two cores at once (nextest runs each test
//! in its own process).

// The harness is shared with the `edge` test binary; each binary uses only part of it.
#[allow(dead_code)]
#[path = "../edge/support.rs"]
mod support;

mod acme;
mod h2flood;
mod rate;
mod shared;
mod slow;
mod slow_read;
mod tls_audit;
mod tools;
