//! Crate tests of the gateway as a whole: real TLS, real sockets on 127.0.0.1:0, an in-test
//! hyper upstream (until api nodes exist). One binary so it links once.

mod access;
mod certs;
mod filter;
mod handover;
mod memory;
mod protection;
mod proxy;
mod reload;
mod slow_read;
mod smuggling;
mod support;
mod tls;
mod workers;
