//! Keep-alive HTTP/1.1 connections to the api nodes, kept apart per gateway worker thread:
//! a request checks out an idle connection of its own worker to the chosen node (or opens
//! one), and the connection goes back to that worker's idle list when the answer's body has
//! been read to its end.
//!
//! Each worker's lists are only ever touched by that worker, so their locks are never
//! contended. A connection has no task of its own: the request using it drives it (writes the
//! request, reads the answer and its body) from the task that serves that request, so an
//! exchange costs no wake-up of another task and no hand-over between tasks; an idle
//! connection is polled again when it is next checked out, which is when a close by the node
//! is noticed. A request is sent again on another connection only when hyper hands it
//! back unsent (the idle connection had been closed meanwhile); a request that may have left
//! is never repeated here (retries of idempotent reads on another node are `proxy`'s). Idle
//! connections are bounded per worker and node, and dropped after [`IDLE_TIMEOUT`].
//!
//! A request that finds no idle connection starts opening one and meanwhile queues for the
//! next connection given back, taking whichever comes first (the other one is kept idle): a
//! burst of requests to a node slow to accept connections is then served by the connections
//! already open instead of waiting for (and failing with) new ones.

use std::collections::VecDeque;
use std::future::{Future, poll_fn};
use std::net::SocketAddr;
use std::pin::{Pin, pin};
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use http::{Request, Response};
use http_body::{Body, Frame, SizeHint};
use hyper::body::Incoming;
use hyper::client::conn::http1::{self, Connection, SendRequest};
use hyper_util::rt::TokioIo;
use tokio::net::TcpStream;
use tokio::sync::oneshot;
use tokio::time::Instant;

use crate::upstream::UpBody;

#[cfg(test)]
mod tests;

/// An idle connection is closed after this long unused.
pub const IDLE_TIMEOUT: Duration = Duration::from_secs(30);

/// Why a request to a node failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum KeepaliveError {
    /// No connection could be opened to the node.
    #[error("cannot connect to node {addr}: {source}; is it running and listening there?")]
    Connect {
        /// The node.
        addr: SocketAddr,
        /// The I/O error.
        source: std::io::Error,
    },
    /// The node did not accept the connection in time.
    #[error("node {0} did not accept a connection within the pool's connect_timeout")]
    ConnectTimeout(SocketAddr),
    /// The HTTP exchange with the node failed.
    #[error("HTTP/1.1 exchange with node {addr} failed: {source}")]
    Http {
        /// The node.
        addr: SocketAddr,
        /// What hyper reported.
        source: hyper::Error,
    },
}

impl KeepaliveError {
    /// Whether the failure happened before any connection to the node existed.
    pub fn is_connect(&self) -> bool {
        matches!(self, KeepaliveError::Connect { .. } | KeepaliveError::ConnectTimeout(_))
    }
}

/// hyper's side of an upstream connection: reads and writes it when polled.
type Driver = Pin<Box<Connection<TokioIo<TcpStream>, UpBody>>>;

/// An HTTP/1.1 connection to a node, driven by whoever holds it.
struct UpConn {
    sender: SendRequest<UpBody>,
    /// `None` once the connection has ended: dropping it hands back, as unsent, a request
    /// queued that it never took, and fails one it took without answering.
    conn: Option<Driver>,
    addr: SocketAddr,
}

impl UpConn {
    /// Lets the connection make progress (write a queued request, read an answer, notice a
    /// close); the waker of `cx` is woken when it can make more.
    fn drive(&mut self, cx: &mut Context<'_>) {
        let Some(conn) = self.conn.as_mut() else { return };
        if let Poll::Ready(result) = conn.as_mut().poll(cx) {
            self.conn = None;
            if let Err(e) = result {
                tracing::debug!(node = %self.addr, error = %e, "upstream connection ended with an error");
            }
        }
    }

    /// Whether the connection is known to be closed.
    fn is_closed(&self) -> bool {
        self.conn.is_none() || self.sender.is_closed()
    }

    /// Ready for a request, or the connection closed meanwhile.
    ///
    /// A connection that already asked for its next request is not driven here: the poll
    /// that sends the request reads first, so a close by the node that arrived meanwhile
    /// still hands the request back unsent (hyper writes no request on a connection whose
    /// reading side has closed).
    fn poll_ready(&mut self, cx: &mut Context<'_>) -> Poll<Result<(), hyper::Error>> {
        if self.conn.is_some()
            && let Poll::Ready(Ok(())) = self.sender.poll_ready(cx)
        {
            return Poll::Ready(Ok(()));
        }
        self.drive(cx);
        self.sender.poll_ready(cx)
    }
}

struct IdleConn {
    conn: UpConn,
    since: Instant,
}

/// What one worker has for one node: its idle connections, and the requests waiting for one.
#[derive(Default)]
struct Slot {
    idle: VecDeque<IdleConn>,
    waiters: VecDeque<oneshot::Sender<UpConn>>,
}

/// Most connections one request goes through before giving up on a node whose connections
/// all close before taking a request.
const MAX_CLOSED: usize = 16;

/// The idle connections of every worker to every node of a pool.
pub struct Keepalive {
    /// `lists[worker * nodes + node]`.
    lists: Vec<Mutex<Slot>>,
    nodes: usize,
    max_idle: usize,
    connect_timeout: Duration,
}

impl std::fmt::Debug for Keepalive {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Keepalive")
            .field("nodes", &self.nodes)
            .field("max_idle", &self.max_idle)
            .finish_non_exhaustive()
    }
}

impl Keepalive {
    /// Idle lists for `nodes` nodes and `workers` workers, keeping at most `max_idle`
    /// connections per worker and node.
    pub fn new(nodes: usize, workers: usize, max_idle: usize, connect_timeout: Duration) -> Self {
        let lists = (0..nodes * workers.max(1)).map(|_| Mutex::default()).collect();
        Keepalive { lists, nodes, max_idle, connect_timeout }
    }

    fn list(&self, slot: usize) -> std::sync::MutexGuard<'_, Slot> {
        self.lists[slot % self.lists.len()].lock().unwrap_or_else(|poisoned| poisoned.into_inner())
    }

    /// The most recently used idle connection of `slot` still open, if any.
    fn checkout(&self, slot: usize) -> Option<UpConn> {
        let list = &mut self.list(slot).idle;
        let now = Instant::now();
        // Oldest first: expired ones are at the front.
        while list.front().is_some_and(|c| now.duration_since(c.since) >= IDLE_TIMEOUT) {
            list.pop_front();
        }
        while let Some(c) = list.pop_back() {
            if !c.conn.is_closed() {
                return Some(c.conn);
            }
        }
        None
    }

    /// Gives a connection to the first request still waiting, else keeps it idle.
    fn checkin(&self, slot: usize, mut conn: UpConn) {
        if conn.is_closed() {
            return;
        }
        let mut list = self.list(slot);
        while let Some(waiter) = list.waiters.pop_front() {
            match waiter.send(conn) {
                Ok(()) => return,
                Err(back) => conn = back,
            }
        }
        if list.idle.len() < self.max_idle {
            list.idle.push_back(IdleConn { conn, since: Instant::now() });
        }
    }

    /// With no idle connection: opens one, and takes it or a connection given back first,
    /// whichever comes first. Fails only if the new connection fails before one comes back.
    async fn wait_or_connect(
        self: &Arc<Self>,
        slot: usize,
        addr: SocketAddr,
    ) -> Result<UpConn, KeepaliveError> {
        let (waiter, mut given) = oneshot::channel();
        {
            let mut list = self.list(slot);
            // Requests that stopped waiting (failed or cancelled) leave their place here.
            list.waiters.retain(|w| !w.is_closed());
            list.waiters.push_back(waiter);
        }
        let home = self.clone();
        // A task of its own: if a connection comes back first, this one still ends in the
        // idle list for the next request.
        let mut connecting = tokio::spawn(async move {
            let conn = home.connect(addr).await?;
            home.checkin(slot, conn);
            Ok::<(), KeepaliveError>(())
        });
        let mut connected = false;
        loop {
            tokio::select! {
                biased;
                got = &mut given => match got {
                    Ok(conn) => return Ok(conn),
                    // The pool was dropped (a reload replaced it): connect directly.
                    Err(_) => return self.connect(addr).await,
                },
                done = &mut connecting, if !connected => match done {
                    // Given to this request or an earlier one: wait for the next.
                    Ok(Ok(())) => connected = true,
                    Ok(Err(e)) => return Err(e),
                    Err(_) => return self.connect(addr).await,
                },
            }
        }
    }

    /// Sends `req` (origin-form target, `Host` set) to node `node` at `addr` over a kept-alive
    /// connection of worker `worker`, or a new one.
    pub async fn request(
        self: &Arc<Self>,
        worker: usize,
        node: usize,
        addr: SocketAddr,
        mut req: Request<UpBody>,
    ) -> Result<Response<UpResponseBody>, KeepaliveError> {
        let slot = worker * self.nodes + node;
        let http = |source| KeepaliveError::Http { addr, source };
        let mut closed = 0;
        loop {
            let mut up = match self.checkout(slot) {
                Some(up) => up,
                // Boxed: the rare path's future (a connect and a hyper handshake) would
                // otherwise make every request's future larger, and it is moved on creation.
                None => Box::pin(self.wait_or_connect(slot, addr)).await?,
            };
            if let Err(e) = poll_fn(|cx| up.poll_ready(cx)).await {
                closed += 1;
                if closed >= MAX_CLOSED {
                    return Err(http(e));
                }
                continue;
            }
            // The request is queued at once; the first poll below writes it.
            let mut sent = pin!(up.sender.try_send_request(req));
            let result = poll_fn(|cx| {
                up.drive(cx);
                sent.as_mut().poll(cx)
            })
            .await;
            match result {
                Ok(resp) => return Ok(self.answer(slot, up, resp)),
                Err(mut e) => match e.take_message() {
                    // The connection closed before the request left: try another.
                    Some(unsent) if closed + 1 < MAX_CLOSED => {
                        closed += 1;
                        req = unsent;
                    }
                    _ => return Err(http(e.into_error())),
                },
            }
        }
    }

    fn answer(
        self: &Arc<Self>,
        slot: usize,
        up: UpConn,
        resp: Response<Incoming>,
    ) -> Response<UpResponseBody> {
        resp.map(|body| {
            let mut body = UpResponseBody { body, back: Some((self.clone(), slot, up)) };
            if body.body.is_end_stream() {
                body.release();
            }
            body
        })
    }

    async fn connect(&self, addr: SocketAddr) -> Result<UpConn, KeepaliveError> {
        let tcp = match tokio::time::timeout(self.connect_timeout, TcpStream::connect(addr)).await {
            Err(_) => return Err(KeepaliveError::ConnectTimeout(addr)),
            Ok(Err(source)) => return Err(KeepaliveError::Connect { addr, source }),
            Ok(Ok(tcp)) => tcp,
        };
        let _ = tcp.set_nodelay(true);
        let (sender, conn) = http1::Builder::new()
            .handshake(TokioIo::new(tcp))
            .await
            .map_err(|source| KeepaliveError::Http { addr, source })?;
        Ok(UpConn { sender, conn: Some(Box::pin(conn)), addr })
    }
}

/// The body of a node's answer, which drives its connection while it is read; once read to
/// its end, the connection goes back to the idle list it came from (dropped earlier, the
/// connection is closed instead).
pub struct UpResponseBody {
    body: Incoming,
    back: Option<(Arc<Keepalive>, usize, UpConn)>,
}

impl std::fmt::Debug for UpResponseBody {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("UpResponseBody").field("body", &self.body).finish_non_exhaustive()
    }
}

impl UpResponseBody {
    fn release(&mut self) {
        if let Some((home, slot, up)) = self.back.take() {
            home.checkin(slot, up);
        }
    }
}

impl Body for UpResponseBody {
    type Data = Bytes;
    type Error = hyper::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, hyper::Error>>> {
        let this = &mut *self;
        // The connection reads the body into the channel `body` takes it from, usually in the
        // same turn that read the answer's head: the channel is tried first, and the
        // connection driven only when it is empty (twice: a second turn catches what the
        // first made it read).
        let mut frame = Pin::new(&mut this.body).poll_frame(cx);
        for _ in 0..2 {
            if frame.is_ready() {
                break;
            }
            if let Some((_, _, up)) = this.back.as_mut() {
                up.drive(cx);
            }
            frame = Pin::new(&mut this.body).poll_frame(cx);
        }
        let frame = ready!(frame);
        match &frame {
            None => self.release(),
            Some(Ok(_)) if self.body.is_end_stream() => self.release(),
            Some(Ok(_)) => {}
            Some(Err(_)) => self.back = None,
        }
        Poll::Ready(frame)
    }

    fn is_end_stream(&self) -> bool {
        self.body.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        self.body.size_hint()
    }
}
