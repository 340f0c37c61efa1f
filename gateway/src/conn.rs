//! Downstream connections: caps per client and in total, and the I/O wrapper that enforces the
//! idle timeout and feeds the HTTP/1 framing scanner.
//!
//! A connection over a cap is closed before any byte is read from it. Nothing here reads a
//! header or trusts the client: the client key is the TCP peer address.
//!
//! On HTTP/2 connections the wrapper also coalesces writes: the `h2` crate flushes after every
//! few frames, and each flush through TLS is one record and one `writev`. Holding a flush for
//! one scheduler pass lets the other streams of the connection add their frames, so one
//! record carries several responses; while other streams of the connection still wait for
//! their answer, the flush is held for a few more passes (at most [`MAX_HOLD_PASSES`]), so
//! a client's burst of requests is answered in one write as HAProxy's event loop does. The
//! buffer is bounded and nothing is ever held longer than those few passes of the runtime.

use std::collections::HashMap;
use std::future::Future;
use std::io;
use std::pin::Pin;
use std::sync::atomic::{AtomicBool, AtomicU32, AtomicUsize, Ordering};
use std::sync::{Arc, Mutex, OnceLock};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use tokio::io::{AsyncRead, AsyncWrite, ReadBuf};
use tokio::time::{Instant, Sleep};

use crate::framing::{Flag, Scanner};
use crate::limit::ClientKey;

#[cfg(test)]
mod tests;

/// Why a connection was refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Refusal {
    /// The gateway has `total` connections open.
    Total,
    /// This client has `per_client` connections open.
    Client,
}

impl Refusal {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            Refusal::Total => "total_cap",
            Refusal::Client => "client_cap",
        }
    }
}

/// Counts open connections, in total and per client key, and the bytes of HTTP/2 answers held
/// for clients that keep their flow-control window closed.
#[derive(Debug, Default)]
pub struct ConnTracker {
    total: AtomicU32,
    per_client: Mutex<HashMap<ClientKey, ClientConns>>,
    /// Answer bytes waiting on clients, all clients together.
    waiting: AtomicUsize,
}

/// One client's open connections and the answer bytes waiting on it.
#[derive(Debug)]
struct ClientConns {
    open: u32,
    waiting: Arc<AtomicUsize>,
}

/// Holds a connection's place; dropping it frees the place.
#[derive(Debug)]
pub struct ConnGuard {
    tracker: Arc<ConnTracker>,
    key: ClientKey,
    waiting: Arc<AtomicUsize>,
}

impl ConnTracker {
    /// Admits a connection of `key` if both caps allow it.
    pub fn admit(
        self: &Arc<Self>,
        key: ClientKey,
        per_client: u32,
        total: u32,
    ) -> Result<ConnGuard, Refusal> {
        let mut map = self.per_client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if self.total.load(Ordering::Relaxed) >= total {
            return Err(Refusal::Total);
        }
        let c = map.entry(key).or_insert_with(|| ClientConns { open: 0, waiting: Arc::default() });
        if c.open >= per_client {
            return Err(Refusal::Client);
        }
        c.open += 1;
        self.total.fetch_add(1, Ordering::Relaxed);
        Ok(ConnGuard { tracker: self.clone(), key, waiting: c.waiting.clone() })
    }

    /// Connections open now.
    pub fn open(&self) -> u32 {
        self.total.load(Ordering::Relaxed)
    }

    /// Answer bytes waiting on clients now.
    pub fn waiting(&self) -> usize {
        self.waiting.load(Ordering::Relaxed)
    }
}

impl ConnGuard {
    /// The account of the answers this connection holds for its client: at most `per_client`
    /// bytes for the client (all its connections together) and `total` for all clients.
    pub fn send_account(&self, per_client: usize, total: usize) -> SendAccount {
        SendAccount {
            tracker: self.tracker.clone(),
            client: self.waiting.clone(),
            per_client,
            total,
        }
    }
}

impl Drop for ConnGuard {
    fn drop(&mut self) {
        let mut map =
            self.tracker.per_client.lock().unwrap_or_else(|poisoned| poisoned.into_inner());
        if let Some(c) = map.get_mut(&self.key) {
            c.open -= 1;
            if c.open == 0 {
                map.remove(&self.key);
            }
        }
        self.tracker.total.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Which bound an answer waiting on its client would have gone past.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum OverBudget {
    /// `send_wait_bytes_per_client`.
    Client,
    /// `send_wait_bytes_total`.
    Total,
}

/// Where one connection counts the answers it holds for its client (HTTP/2): the client's
/// share, shared by all its connections, and the gateway's total. It lives inside the
/// connection's context (no allocation of its own); a charge keeps alive whatever owns it.
#[derive(Debug, Clone)]
pub struct SendAccount {
    tracker: Arc<ConnTracker>,
    client: Arc<AtomicUsize>,
    per_client: usize,
    total: usize,
}

impl SendAccount {
    /// Counts `bytes` as held for the client, unless that would take the client past its
    /// share or everyone past the total.
    fn take(&self, bytes: usize) -> Result<(), OverBudget> {
        let take = |counter: &AtomicUsize, cap: usize| {
            counter
                .fetch_update(Ordering::Relaxed, Ordering::Relaxed, |now| {
                    now.checked_add(bytes).filter(|after| *after <= cap)
                })
                .is_ok()
        };
        if !take(&self.client, self.per_client) {
            return Err(OverBudget::Client);
        }
        if !take(&self.tracker.waiting, self.total) {
            self.client.fetch_sub(bytes, Ordering::Relaxed);
            return Err(OverBudget::Total);
        }
        Ok(())
    }

    fn give(&self, bytes: usize) {
        self.client.fetch_sub(bytes, Ordering::Relaxed);
        self.tracker.waiting.fetch_sub(bytes, Ordering::Relaxed);
    }

    /// Whether the client's share has no room left for `room` more bytes.
    pub fn client_full(&self, room: usize) -> bool {
        self.client.load(Ordering::Relaxed).saturating_add(room) > self.per_client
    }
}

/// What holds an account while a charge on it lasts: a borrow of it (if any), or the
/// connection that contains it.
pub trait AccountOwner {
    /// The account, if the owner has one.
    fn account(&self) -> Option<&SendAccount>;
}

impl AccountOwner for Option<&SendAccount> {
    fn account(&self) -> Option<&SendAccount> {
        *self
    }
}

/// Bytes counted as held for a client; dropping it gives them back.
#[derive(Debug)]
pub struct SendCharge<O: AccountOwner> {
    owner: O,
    bytes: usize,
}

impl<O: AccountOwner> SendCharge<O> {
    /// Counts `bytes` against the account `owner` holds (nothing if it holds none), unless
    /// that would go past the client's share or the total.
    pub fn new(owner: O, bytes: usize) -> Result<Self, OverBudget> {
        if let Some(a) = owner.account() {
            a.take(bytes)?;
        }
        Ok(SendCharge { owner, bytes })
    }
}

impl<O: AccountOwner> Drop for SendCharge<O> {
    fn drop(&mut self) {
        if let Some(a) = self.owner.account() {
            a.give(self.bytes);
        }
    }
}

/// The first framing violation of a connection, shared between the I/O wrapper that finds
/// it and the service that refuses the request.
pub type FramingFlag = Arc<OnceLock<Flag>>;

/// Above this many buffered bytes a coalescing wrapper writes through before taking more
/// (a TLS record holds 16 KiB of plaintext).
const COALESCE_MAX: usize = 64 * 1024;
/// The coalescing buffer's first allocation (it grows to [`COALESCE_MAX`] when needed).
const COALESCE_START: usize = 16 * 1024;

/// Most scheduler passes a flush is held while other streams of the connection still wait
/// for their answer (the first pass is always taken).
pub const MAX_HOLD_PASSES: u32 = 12;
/// Longest a flush is held for other streams' answers, however short the passes.
pub const MAX_HOLD: Duration = Duration::from_micros(500);

/// A flush held back for one scheduler pass.
type Deferred = Pin<Box<dyn Future<Output = ()> + Send>>;

/// Counts the streams of an HTTP/2 connection whose answer is not ready yet, shared between
/// the connection's task and its I/O wrapper.
#[derive(Debug, Clone, Default)]
pub struct Awaiting(Arc<AtomicUsize>);

impl Awaiting {
    /// Counts one more stream until the guard is dropped (when its answer is ready).
    pub fn start(&self) -> AwaitingGuard {
        self.0.fetch_add(1, Ordering::Relaxed);
        AwaitingGuard(self.0.clone())
    }

    /// Streams still waiting for their answer.
    pub fn count(&self) -> usize {
        self.0.load(Ordering::Relaxed)
    }
}

/// One stream waiting for its answer; dropping it says the answer is ready (or the stream
/// is gone).
#[derive(Debug)]
pub struct AwaitingGuard(Arc<AtomicUsize>);

impl Drop for AwaitingGuard {
    fn drop(&mut self) {
        self.0.fetch_sub(1, Ordering::Relaxed);
    }
}

/// Writes held back until the next flush (HTTP/2 connections only).
struct Coalesce {
    buf: Vec<u8>,
    /// Bytes of `buf` already handed to the inner stream.
    sent: usize,
    /// The pending yield of a held flush.
    deferred: Option<Deferred>,
    /// Passes the current flush has been held for.
    passes: u32,
    /// When the current flush was first held.
    held_since: Option<Instant>,
    /// The held flush is done waiting and is now writing.
    writing: bool,
    /// Streams whose answers a held flush may wait for.
    awaiting: Awaiting,
}

impl std::fmt::Debug for Coalesce {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Coalesce")
            .field("buffered", &(self.buf.len() - self.sent))
            .field("deferred", &self.deferred.is_some())
            .field("passes", &self.passes)
            .finish()
    }
}

impl Coalesce {
    /// Whether a flush should wait for another scheduler pass before writing.
    fn hold(&self) -> bool {
        self.passes == 0
            || (self.passes < MAX_HOLD_PASSES
                && self.awaiting.count() > 0
                && self.buf.len() - self.sent < COALESCE_MAX
                && self.held_since.is_some_and(|t| t.elapsed() < MAX_HOLD))
    }
}

/// Set when a connection was closed because its client did not take what it was sent.
pub type SendTimedOut = Arc<AtomicBool>;

/// Wraps a downstream stream: closes it after `idle` without progress either way, or when
/// its writes stay undrained for `send_timeout` (a client that does not read what it asked
/// for), and feeds what the client sends to the HTTP/1 framing scanner.
#[derive(Debug)]
pub struct EdgeIo<T> {
    inner: T,
    idle: Duration,
    send_timeout: Duration,
    /// Fires at the earliest time the connection could be idle, or blocked on the client,
    /// for too long; when it fires early because of progress since, it is moved to the next
    /// such time then (moving a timer on every read and write costs more than checking it
    /// once per period).
    deadline: Pin<Box<Sleep>>,
    last_progress: Instant,
    /// Since when a write or flush has waited on the client without draining everything.
    blocked_since: Option<Instant>,
    send_timed_out: SendTimedOut,
    scanner: Option<Scanner>,
    flag: FramingFlag,
    coalesce: Option<Coalesce>,
}

impl<T> EdgeIo<T> {
    /// Wraps `inner`; `scanner` is `Some` for HTTP/1 connections. Also gives the flag of
    /// its first framing violation and the one set if the send timeout closes it (handed
    /// out here, not by a method: a borrow of the wrapper before it moves into the
    /// connection's future made the connection's task keep room for a second wrapper,
    /// 1.4 KiB per connection).
    pub fn new(
        inner: T,
        idle: Duration,
        send_timeout: Duration,
        scanner: Option<Scanner>,
    ) -> (Self, FramingFlag, SendTimedOut) {
        let flag: FramingFlag = Arc::default();
        let send_timed_out: SendTimedOut = Arc::default();
        (
            EdgeIo {
                inner,
                idle,
                send_timeout,
                deadline: Box::pin(tokio::time::sleep(idle)),
                last_progress: Instant::now(),
                blocked_since: None,
                send_timed_out: send_timed_out.clone(),
                scanner,
                flag: flag.clone(),
                coalesce: None,
            },
            flag,
            send_timed_out,
        )
    }

    /// Coalesces writes until a flush, and holds each flush for one scheduler pass, or a few
    /// while `awaiting` counts streams without their answer yet (for HTTP/2, whose streams
    /// answer independently).
    pub fn coalescing(mut self, awaiting: Awaiting) -> Self {
        self.coalesce = Some(Coalesce {
            // Allocated by the first write, given back when drained with no stream waiting:
            // an idle HTTP/2 connection holds no buffer here.
            buf: Vec::new(),
            sent: 0,
            deferred: None,
            passes: 0,
            held_since: None,
            writing: false,
            awaiting,
        });
        self
    }

    fn progress(&mut self) {
        self.last_progress = Instant::now();
    }

    /// A write or flush has to wait on the client: starts the send timeout's clock unless it
    /// runs already.
    fn blocked(&mut self) {
        if self.blocked_since.is_none() {
            let now = Instant::now();
            self.blocked_since = Some(now);
            let due = now + self.send_timeout;
            if self.deadline.deadline() > due {
                self.deadline.as_mut().reset(due);
            }
        }
    }

    /// Everything written has been handed to the inner stream.
    fn drained(&mut self) {
        self.blocked_since = None;
    }

    fn check_idle(&mut self, cx: &mut Context<'_>) -> io::Result<()> {
        loop {
            match self.deadline.as_mut().poll(cx) {
                Poll::Pending => return Ok(()),
                Poll::Ready(()) => {
                    let now = Instant::now();
                    let send_due = self.blocked_since.map(|t| t + self.send_timeout);
                    if send_due.is_some_and(|due| due <= now) {
                        self.send_timed_out.store(true, Ordering::Relaxed);
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "the client did not take its answer within the send timeout",
                        ));
                    }
                    let idle_due = self.last_progress + self.idle;
                    if idle_due <= now {
                        return Err(io::Error::new(
                            io::ErrorKind::TimedOut,
                            "connection idle for too long",
                        ));
                    }
                    let due = send_due.map_or(idle_due, |d| d.min(idle_due));
                    self.deadline.as_mut().reset(due);
                }
            }
        }
    }

    /// What a write to the inner stream gave: bytes written count as progress, and a write
    /// that has to wait is when an idle connection is noticed.
    fn wrote(
        &mut self,
        cx: &mut Context<'_>,
        written: Poll<io::Result<usize>>,
    ) -> Poll<io::Result<usize>> {
        match written {
            Poll::Ready(Ok(n)) => {
                if n > 0 {
                    self.progress();
                }
                Poll::Ready(Ok(n))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                self.blocked();
                self.check_idle(cx)?;
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncRead + Unpin> AsyncRead for EdgeIo<T> {
    fn poll_read(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        buf: &mut ReadBuf<'_>,
    ) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        let before = buf.filled().len();
        match Pin::new(&mut this.inner).poll_read(cx, buf) {
            Poll::Ready(Ok(())) => {
                let new = &buf.filled()[before..];
                if !new.is_empty() {
                    if let Some(scanner) = this.scanner.as_mut()
                        && let Some(flag) = scanner.feed(new)
                    {
                        let _ = this.flag.set(flag);
                        this.scanner = None;
                    }
                    this.progress();
                }
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.check_idle(cx)?;
                Poll::Pending
            }
        }
    }
}

impl<T: AsyncWrite + Unpin> EdgeIo<T> {
    /// Hands every buffered byte to the inner stream.
    fn poll_drain(&mut self, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        loop {
            let Some(c) = self.coalesce.as_mut() else {
                return Poll::Ready(Ok(()));
            };
            if c.sent == c.buf.len() {
                if c.awaiting.count() == 0 {
                    c.buf = Vec::new();
                } else {
                    c.buf.clear();
                }
                c.sent = 0;
                return Poll::Ready(Ok(()));
            }
            match Pin::new(&mut self.inner).poll_write(cx, &c.buf[c.sent..]) {
                Poll::Ready(Ok(0)) => {
                    return Poll::Ready(Err(io::ErrorKind::WriteZero.into()));
                }
                Poll::Ready(Ok(n)) => {
                    c.sent += n;
                    self.progress();
                }
                Poll::Ready(Err(e)) => return Poll::Ready(Err(e)),
                Poll::Pending => {
                    self.blocked();
                    self.check_idle(cx)?;
                    return Poll::Pending;
                }
            }
        }
    }

    /// Buffers `bufs` (after writing through if the buffer is full).
    fn poll_buffer(
        &mut self,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Option<Poll<io::Result<usize>>> {
        let full = self.coalesce.as_ref()?.buf.len() >= COALESCE_MAX;
        if full {
            if let Poll::Ready(Err(e)) = self.poll_drain(cx) {
                return Some(Poll::Ready(Err(e)));
            }
            if self.coalesce.as_ref()?.buf.len() >= COALESCE_MAX {
                return Some(Poll::Pending);
            }
        }
        let c = self.coalesce.as_mut()?;
        if c.buf.capacity() == 0 {
            c.buf.reserve(COALESCE_START);
        }
        let mut n = 0;
        for b in bufs {
            c.buf.extend_from_slice(b);
            n += b.len();
        }
        Some(Poll::Ready(Ok(n)))
    }
}

impl<T: AsyncWrite + Unpin> AsyncWrite for EdgeIo<T> {
    fn poll_write(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        data: &[u8],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(p) = this.poll_buffer(cx, &[io::IoSlice::new(data)]) {
            return p;
        }
        let written = Pin::new(&mut this.inner).poll_write(cx, data);
        this.wrote(cx, written)
    }

    fn poll_flush(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        if let Some(c) = this.coalesce.as_mut()
            && c.sent < c.buf.len()
        {
            // Hold the flush for a pass of the scheduler (yield_now puts the task behind the
            // others that are ready, and after the next poll of the I/O driver), so other
            // streams can add their frames first.
            while !c.writing {
                if let Some(deferred) = c.deferred.as_mut() {
                    ready!(deferred.as_mut().poll(cx));
                    c.deferred = None;
                    c.passes += 1;
                }
                if c.passes == 0 {
                    c.held_since = Some(Instant::now());
                }
                if c.hold() {
                    c.deferred = Some(Box::pin(tokio::task::yield_now()));
                } else {
                    c.writing = true;
                }
            }
            ready!(this.poll_drain(cx))?;
            if let Some(c) = this.coalesce.as_mut() {
                c.writing = false;
                c.passes = 0;
                c.held_since = None;
            }
        }
        match Pin::new(&mut this.inner).poll_flush(cx) {
            Poll::Ready(Ok(())) => {
                this.drained();
                Poll::Ready(Ok(()))
            }
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => {
                this.blocked();
                this.check_idle(cx)?;
                Poll::Pending
            }
        }
    }

    fn poll_shutdown(self: Pin<&mut Self>, cx: &mut Context<'_>) -> Poll<io::Result<()>> {
        let this = self.get_mut();
        ready!(this.poll_drain(cx))?;
        Pin::new(&mut this.inner).poll_shutdown(cx)
    }

    fn poll_write_vectored(
        self: Pin<&mut Self>,
        cx: &mut Context<'_>,
        bufs: &[io::IoSlice<'_>],
    ) -> Poll<io::Result<usize>> {
        let this = self.get_mut();
        if let Some(p) = this.poll_buffer(cx, bufs) {
            return p;
        }
        let written = Pin::new(&mut this.inner).poll_write_vectored(cx, bufs);
        this.wrote(cx, written)
    }

    fn is_write_vectored(&self) -> bool {
        self.coalesce.is_some() || self.inner.is_write_vectored()
    }
}
