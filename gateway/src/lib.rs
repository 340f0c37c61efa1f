//! `rempart-gateway`: the only public face of a rempart perimeter. It terminates TLS, lets
//! through only allowlisted chain API paths, limits each client, and proxies to a pool of
//! healthy api nodes.
//!
//! The library holds everything; the binary only parses arguments, loads the policy and maps
//! errors to exit codes. Nothing here exits the process or trusts a client-supplied header for
//! a security decision.

pub mod acme;
pub mod ban;
pub mod conn;
pub mod dev_cert;
pub mod document;
pub mod error;
pub mod filter;
pub mod fleet;
pub mod framing;
pub mod handover;
pub mod http2;
pub mod keepalive;
pub mod limit;
pub mod metrics;
pub mod policy;
pub mod proxy;
pub mod proxy_header;
pub mod resp;
pub mod server;
pub mod state;
pub mod tls;
pub mod upstream;

pub use error::{Fault, RequestError};
pub use policy::{Policy, PolicyError};
pub use server::{Config, GatewayError, Listeners, run};
