//! Accepting connections on the node's listeners (chain API, private producer link) without
//! spinning when `accept` fails.
//!
//! Out of file descriptors (EMFILE), `accept` fails until a connection closes. Retrying at once
//! would spin a core and write a warning per turn; here each failure waits as
//! [`AcceptBackoff`] says (10 ms doubling to 1 s), only the first failure of a burst and the
//! recovery are logged, and the connections already open are served meanwhile.

use std::future::Future;
use std::net::SocketAddr;

use rempart_core::backoff::AcceptBackoff;
use tokio::net::{TcpListener, TcpStream};

#[cfg(test)]
mod tests;

/// The next connection on `listener` (named `what` in the log), retrying failed accepts after
/// `backoff`'s pauses. Cancel-safe: dropped while it waits, no connection is lost.
pub async fn next_connection(
    listener: &TcpListener,
    backoff: &mut AcceptBackoff,
    what: &'static str,
) -> (TcpStream, SocketAddr) {
    accept_with(|| listener.accept(), backoff, what).await
}

/// [`next_connection`] over any `accept`.
async fn accept_with<T, F, Fut>(mut accept: F, backoff: &mut AcceptBackoff, what: &str) -> T
where
    F: FnMut() -> Fut,
    Fut: Future<Output = std::io::Result<T>>,
{
    loop {
        match accept().await {
            Ok(accepted) => {
                let failures = backoff.succeeded();
                if failures > 0 {
                    tracing::info!(listener = what, failures, "accept works again");
                }
                return accepted;
            }
            Err(e) => {
                let (wait, log) = backoff.failed();
                if log {
                    tracing::warn!(
                        listener = what,
                        error = %e,
                        "accept failed (out of file descriptors?); retrying with a growing pause \
                         up to {:?}, further failures of this burst are not logged",
                        AcceptBackoff::MAX
                    );
                }
                tokio::time::sleep(wait).await;
            }
        }
    }
}
