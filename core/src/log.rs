//! The log writer of the gateway and the node: lines go through a bounded queue to a thread of
//! their own, which writes them to stdout or stderr. When the reader of that stream stalls (a
//! log shipper down, a container runtime's blocking log driver, a paused terminal), lines past
//! [`BUFFER_LINES`] are dropped and counted ([`dropped_lines`], which each program's metrics
//! report): a full pipe costs log lines, never a request, a block or a signature. Written in
//! place, one full pipe (64 KiB, a few hundred lines) blocks every thread at its next line.
//!
//! The durable records (the signer's audit log, the chain) never go through here. The signer
//! does not use it: its sandbox must be applied while the process has one thread, and it logs a
//! few lines per start and per refusal, not one per signature.

use std::io::Write;
use std::sync::OnceLock;

pub use tracing_appender::non_blocking::WorkerGuard;
use tracing_appender::non_blocking::{ErrorCounter, NonBlocking, NonBlockingBuilder};

/// Lines held for a reader that falls behind (a few hundred bytes each: a few MiB at most).
pub const BUFFER_LINES: usize = 16_384;

static DROPPED: OnceLock<ErrorCounter> = OnceLock::new();

/// A writer for `tracing_subscriber::fmt().with_writer(..)` that hands lines to a thread named
/// `thread` writing them to `out`. Keep the guard until the program ends: dropping it writes
/// what is queued. The first writer made in a process is the one [`dropped_lines`] counts.
pub fn background<W: Write + Send + 'static>(out: W, thread: &str) -> (NonBlocking, WorkerGuard) {
    let (writer, guard) = NonBlockingBuilder::default()
        .lossy(true)
        .buffered_lines_limit(BUFFER_LINES)
        .thread_name(thread)
        .finish(out);
    let _ = DROPPED.set(writer.error_counter());
    (writer, guard)
}

/// Log lines dropped so far because the log's reader fell behind.
pub fn dropped_lines() -> u64 {
    DROPPED.get().map_or(0, |c| c.dropped_lines() as u64)
}
