//! The log writer of the gateway, the node and the signer: lines go through a bounded queue to
//! a thread of their own, which writes them to stdout or stderr. When the reader of that stream stalls (a
//! log shipper down, a container runtime's blocking log driver, a paused terminal), lines past
//! [`BUFFER_LINES`] are dropped and counted ([`dropped_lines`], which each program's metrics
//! report): a full pipe costs log lines, never a request, a block or a signature. Written in
//! place, one full pipe (64 KiB, a few hundred lines) blocks every thread at its next line.
//!
//! The durable records (the signer's audit log, the chain) never go through here. The signer's
//! sandbox must be applied while the process has one thread, so it logs through
//! [`deferred_stderr`]: in place until [`start_deferred`], called once the sandbox is on,
//! starts the thread (which the sandbox then confines like every other).

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

/// The background writer [`deferred_stderr`] hands lines to once [`start_deferred`] ran.
static DEFERRED: OnceLock<NonBlocking> = OnceLock::new();

/// Where a line from [`deferred_stderr`] goes: stderr in place, or the background thread.
#[derive(Debug)]
pub enum DeferredWriter {
    /// Written by the thread that logs, before the background thread exists.
    InPlace(std::io::Stderr),
    /// Queued for the background thread.
    Queued(NonBlocking),
}

impl Write for DeferredWriter {
    fn write(&mut self, buf: &[u8]) -> std::io::Result<usize> {
        match self {
            DeferredWriter::InPlace(w) => w.write(buf),
            DeferredWriter::Queued(w) => w.write(buf),
        }
    }

    fn write_all(&mut self, buf: &[u8]) -> std::io::Result<()> {
        match self {
            DeferredWriter::InPlace(w) => w.write_all(buf),
            DeferredWriter::Queued(w) => w.write_all(buf),
        }
    }

    fn flush(&mut self) -> std::io::Result<()> {
        match self {
            DeferredWriter::InPlace(w) => w.flush(),
            DeferredWriter::Queued(w) => w.flush(),
        }
    }
}

/// A writer for `tracing_subscriber::fmt().with_writer(deferred_stderr)` in a program that
/// must not start a thread before some point (the signer's sandbox): stderr written in place
/// until [`start_deferred`], the background thread after.
pub fn deferred_stderr() -> DeferredWriter {
    match DEFERRED.get() {
        Some(w) => DeferredWriter::Queued(w.clone()),
        None => DeferredWriter::InPlace(std::io::stderr()),
    }
}

/// Starts the thread named `thread` that writes [`deferred_stderr`]'s lines from now on. Keep
/// the guard until the program ends (dropping it writes what is queued, waiting a second at
/// most for a stalled reader). `None` when it already runs.
pub fn start_deferred(thread: &str) -> Option<WorkerGuard> {
    if DEFERRED.get().is_some() {
        return None;
    }
    let (writer, guard) = background(std::io::stderr(), thread);
    DEFERRED.set(writer).ok().map(|()| guard)
}
