//! HTTP/2 downstream connections served with the `h2` crate: one task per connection accepts
//! its streams and drives every request as a future inside that same task, on the request
//! path HTTP/1 uses too (`proxy::handle`).
//!
//! hyper's HTTP/2 server spawns a task per stream and hands frames between the connection's
//! task and the streams' tasks; here the connection, its streams and their upstream requests
//! are polled together, so a response is written by the poll that produced it. The protections
//! are those of the `h2` crate configured from the policy: maximum concurrent streams, the
//! rapid-reset limits (resets before accept, resets caused locally), the header list size
//! (which also bounds CONTINUATION frames), plus the idle timeout of the I/O wrapper beneath.
//! This module never spawns a task per stream, never judges a request itself (that is
//! `proxy`), and never hands the `h2` crate response data beyond the client's flow-control
//! window.
//!
//! A client that asks for answers and keeps its window shut (slow read) makes the gateway
//! hold them. That is bounded. Every answer held for the client is counted against its share
//! and the gateway's total (`send_wait_bytes_*`): an answer read whole from the moment it is
//! read (`proxy`), the rest of a chunk while it waits for window (here). What finds no room is
//! reset; a stream whose waits add up to the send timeout is reset; while the client's share
//! is full its new streams are refused before they reach a node. Each counts towards a ban,
//! as a refused request does.

use std::future::{Future, poll_fn};
use std::pin::{Pin, pin};
use std::sync::Arc;
use std::sync::atomic::{AtomicBool, Ordering};
use std::task::{Context, Poll, ready};
use std::time::Duration;

use bytes::Bytes;
use futures_util::stream::{FuturesUnordered, StreamExt};
use h2::server::SendResponse;
use h2::{Reason, RecvStream, SendStream};
use http::{HeaderValue, Request, Response, header};
use http_body::{Body, Frame, SizeHint};
use tokio::io::{AsyncRead, AsyncWrite};
use tokio::sync::watch;

use crate::conn::{Awaiting, AwaitingGuard, OverBudget, SendAccount, SendCharge};
use crate::policy::{Connections, SEND_WAIT_MIN};
use crate::proxy::{self, Downstream, RespBody};
use crate::upstream::BoxError;

#[cfg(test)]
mod tests;

/// Flow-control window offered to the client per stream and per connection (as hyper's
/// server offers): a request body up to this size arrives without waiting for the gateway.
const WINDOW: u32 = 1024 * 1024;
/// Most bytes of response data the `h2` crate may queue per stream (only data within the
/// client's window is handed to it, so this bounds one stream's burst).
const MAX_SEND_BUFFER: usize = 400 * 1024;
/// Least a waiting stream is charged: a streamed answer holds an upstream connection and
/// what its socket buffers, beyond the chunk in hand.
const MIN_WAIT_CHARGE: usize = 16 * 1024;

/// A stream the client opened: its request and the handle to answer it.
type Accepted = (Request<RecvStream>, SendResponse<Bytes>);
/// A frame of a response body, `None` at its end.
type BodyFrame = Option<Result<Frame<Bytes>, BoxError>>;

/// Why an answer was given up because its client did not take it.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum SlowReader {
    /// The stream's waits for window added up to the send timeout.
    Timeout,
    /// No room left in the client's share (`send_wait_bytes_per_client`).
    ClientBudget,
    /// No room left in the total for all clients (`send_wait_bytes_total`).
    TotalBudget,
}

impl SlowReader {
    /// The metric label.
    pub fn label(self) -> &'static str {
        match self {
            SlowReader::Timeout => "stream_timeout",
            SlowReader::ClientBudget => "client_budget",
            SlowReader::TotalBudget => "total_budget",
        }
    }
}

impl From<OverBudget> for SlowReader {
    fn from(over: OverBudget) -> Self {
        match over {
            OverBudget::Client => SlowReader::ClientBudget,
            OverBudget::Total => SlowReader::TotalBudget,
        }
    }
}

/// How the answers of one connection may wait on its client: counted in `account` (always
/// there on the gateway's connections), for at most `timeout` each.
#[derive(Debug)]
struct Sending {
    account: Option<SendAccount>,
    timeout: Duration,
}

/// Why an answer was not delivered.
#[derive(Debug)]
enum SendFailure {
    /// The stream or connection failed (or the client reset the stream).
    H2(h2::Error),
    /// The client did not take it; the stream has been reset.
    Slow(SlowReader),
}

impl From<h2::Error> for SendFailure {
    fn from(e: h2::Error) -> Self {
        SendFailure::H2(e)
    }
}

/// Why an HTTP/2 connection ended early.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum Http2Error {
    /// The HTTP/2 protocol failed: the client broke it, went away, or exceeded a limit.
    #[error("HTTP/2 connection failed: {0}")]
    Protocol(#[from] h2::Error),
}

/// Serves an HTTP/2 connection over `io` until the client closes it, it fails, or `stop`
/// turns true (then it finishes the streams it has with a GOAWAY and closes). Answers that
/// wait on the client's window are counted in the connection's account (`holds`).
pub async fn serve<T>(
    io: T,
    downstream: Arc<Downstream>,
    limits: &Connections,
    mut stop: watch::Receiver<bool>,
    awaiting: Awaiting,
) -> Result<(), Http2Error>
where
    T: AsyncRead + AsyncWrite + Unpin + Send + 'static,
{
    let mut builder = h2::server::Builder::new();
    builder
        .initial_window_size(WINDOW)
        .initial_connection_window_size(WINDOW)
        .max_send_buffer_size(MAX_SEND_BUFFER)
        .max_concurrent_streams(limits.h2_max_concurrent_streams)
        .max_pending_accept_reset_streams(limits.h2_max_pending_accept_reset_streams)
        .max_local_error_reset_streams(Some(limits.h2_max_local_error_reset_streams))
        .max_header_list_size(u32::try_from(limits.max_header_bytes).unwrap_or(u32::MAX));
    // A stop during the handshake does not drop the connection: its client has most likely
    // sent a request along with its preface (a connection accepted as the gateway stopped
    // accepting, in a handover). The GOAWAY below lets that stream finish. The idle timeout,
    // and the drain's, bound a client that sends nothing.
    let mut conn = builder.handshake::<T, Bytes>(io).await?;
    // At a stop the GOAWAY waits for the client's next stream, or `close_idle_after` without
    // one, as an HTTP/1.1 connection waits for one more request. Sent at once, it can reach a
    // client before the request it is about to send, and a client that does not retry (hyper
    // does not) fails that request unsent: a connection accepted as the gateway hands over,
    // whose client sends its request after the server's preface, loses it that way. The
    // GOAWAY still lets every accepted stream finish.
    let grace = downstream.shared.close_idle_after;
    let mut stopping = *stop.borrow();
    let mut goaway: Option<Pin<Box<tokio::time::Sleep>>> =
        stopping.then(|| Box::pin(tokio::time::sleep(grace)));
    // One wait for the stop signal for the whole connection (not one per stream accepted).
    // It borrows the receiver: the drain waits until every receiver is dropped, so this one
    // must live as long as the connection, not end with the wait.
    let mut stop_signal = pin!(stop.wait_for(|s| *s));
    let sending = Sending { account: downstream.ctx.holds.clone(), timeout: limits.send_timeout };
    let sending = &sending;
    let mut streams = FuturesUnordered::new();
    // Set by each stream accepted (an atomic: the connection's future must be `Send`).
    let accepted = AtomicBool::new(false);
    let accept = |(req, respond): Accepted| {
        accepted.store(true, Ordering::Relaxed);
        serve_stream(downstream.clone(), req, respond, awaiting.start(), sending)
    };
    let ended = poll_fn(|cx| {
        if !stopping && stop_signal.as_mut().poll(cx).is_ready() {
            stopping = true;
            accepted.store(false, Ordering::Relaxed);
            goaway = Some(Box::pin(tokio::time::sleep(grace)));
        }
        let polled = poll_connection(cx, &mut conn, &mut streams, &accept);
        if let Some(timer) = goaway.as_mut()
            && (accepted.load(Ordering::Relaxed) || timer.as_mut().poll(cx).is_ready())
        {
            goaway = None;
            conn.graceful_shutdown();
            // The GOAWAY is written, and a connection with nothing left to do ends, by the
            // connection's next poll.
            cx.waker().wake_by_ref();
        }
        polled
    })
    .await;
    ended.map_err(Http2Error::from)
}

/// Runs every stream future that can progress (their frames are then written by the same
/// poll of the connection) and starts one for each stream the client opens, until the
/// connection ends.
fn poll_connection<T, F>(
    cx: &mut Context<'_>,
    conn: &mut h2::server::Connection<T, Bytes>,
    streams: &mut FuturesUnordered<F>,
    accept: &impl Fn(Accepted) -> F,
) -> Poll<Result<(), h2::Error>>
where
    T: AsyncRead + AsyncWrite + Unpin,
    F: Future<Output = ()>,
{
    loop {
        while let Poll::Ready(Some(())) = streams.poll_next_unpin(cx) {}
        match ready!(conn.poll_accept(cx)) {
            // Polled by the next turn of the loop, before the next accept.
            Some(Ok(stream)) => streams.push(accept(stream)),
            Some(Err(e)) => return Poll::Ready(Err(e)),
            None => return Poll::Ready(Ok(())),
        }
    }
}

/// One request: through the shared request path, then its answer down the stream. A reset
/// from the client cancels the request wherever it is, upstream included.
async fn serve_stream(
    downstream: Arc<Downstream>,
    req: Request<RecvStream>,
    mut respond: SendResponse<Bytes>,
    waiting: AwaitingGuard,
    sending: &Sending,
) {
    // While the client's share of held answers has no room for one more answer read whole,
    // its new streams are refused before they cost an upstream request: REFUSED_STREAM tells
    // it they were not processed and may be retried. (The gateway's total is not checked
    // here: other clients, whose answers do not wait, must not be refused because slow
    // readers filled it.)
    if sending.account.as_ref().is_some_and(|a| a.client_full(SEND_WAIT_MIN)) {
        respond.send_reset(Reason::REFUSED_STREAM);
        slow_reader(&downstream, SlowReader::ClientBudget);
        return;
    }
    let req = req.map(RecvBody::new);
    // Boxed: the request path's future is most of a stream's, and this one is moved whole
    // into the connection's set of streams when it is accepted.
    let mut handling = Box::pin(proxy::handle(downstream.clone(), req));
    let answered = poll_fn(|cx| {
        if let Poll::Ready(r) = handling.as_mut().poll(cx) {
            return Poll::Ready(Some(r));
        }
        match respond.poll_reset(cx) {
            Poll::Ready(_) => Poll::Ready(None),
            Poll::Pending => Poll::Pending,
        }
    })
    .await;
    drop(waiting);
    let Some(Ok(resp)) = answered else {
        return;
    };
    match send_response(&mut respond, resp, sending).await {
        Ok(()) => {}
        Err(SendFailure::H2(e)) => tracing::debug!(error = %e, "HTTP/2 response not delivered"),
        Err(SendFailure::Slow(why)) => slow_reader(&downstream, why),
    }
}

/// Counts a stream given up because its client does not take its answers, towards a ban too.
fn slow_reader(downstream: &Downstream, why: SlowReader) {
    let ctx = &downstream.ctx;
    let shared = &downstream.shared;
    shared.metrics.slow_reader(why.label());
    tracing::debug!(client = %ctx.peer.ip(), reason = why.label(), "HTTP/2 stream given up: the client does not take its answers");
    shared.violation(ctx.peer.ip(), ctx.key, ctx.trusted, shared.runtime.load().policy.access());
}

/// Sends `resp` on the stream: headers (with `Content-Length` when the body's size is known),
/// then the body at the pace of the client's flow-control window.
async fn send_response(
    respond: &mut SendResponse<Bytes>,
    resp: Response<RespBody>,
    sending: &Sending,
) -> Result<(), SendFailure> {
    let (mut parts, mut body) = resp.into_parts();
    // Connection-specific headers are forbidden in HTTP/2 (RFC 9113 §8.2.2).
    proxy::strip_hop_by_hop(&mut parts.headers);
    if body.is_end_stream() {
        respond.send_response(Response::from_parts(parts, ()), true)?;
        return Ok(());
    }
    if let Some(len) = body.size_hint().exact() {
        parts.headers.entry(header::CONTENT_LENGTH).or_insert_with(|| HeaderValue::from(len));
    }
    // A body already in hand (the usual small answer) leaves with its headers: the first
    // frame is polled before the headers are sent.
    let first = poll_fn(|cx| match Pin::new(&mut body).poll_frame(cx) {
        Poll::Ready(f) => Poll::Ready(Some(f)),
        Poll::Pending => Poll::Ready(None),
    })
    .await;
    let mut tx = respond.send_response(Response::from_parts(parts, ()), false)?;
    let mut waited = Duration::ZERO;
    let mut next = first;
    loop {
        let frame = match next.take() {
            Some(f) => f,
            None => match next_frame(&mut tx, &mut body).await? {
                Some(f) => f,
                None => return Ok(()),
            },
        };
        match frame {
            None => {
                tx.send_data(Bytes::new(), true)?;
                return Ok(());
            }
            Some(Err(e)) => {
                tracing::debug!(error = %e, "upstream body failed mid-answer");
                tx.send_reset(Reason::INTERNAL_ERROR);
                return Ok(());
            }
            Some(Ok(frame)) => match frame.into_data() {
                Ok(data) => {
                    let end = body.is_end_stream();
                    match send_data(&mut tx, data, end, &mut waited, sending).await {
                        Ok(()) => {}
                        Err(SendFailure::Slow(why)) => {
                            tx.send_reset(Reason::CANCEL);
                            return Err(SendFailure::Slow(why));
                        }
                        Err(e) => return Err(e),
                    }
                    if end {
                        return Ok(());
                    }
                }
                Err(frame) => {
                    if let Ok(trailers) = frame.into_trailers() {
                        tx.send_trailers(trailers)?;
                        return Ok(());
                    }
                }
            },
        }
    }
}

/// The next frame of `body`, or `Ok(None)` if the client reset the stream meanwhile.
async fn next_frame(
    tx: &mut SendStream<Bytes>,
    body: &mut RespBody,
) -> Result<Option<BodyFrame>, h2::Error> {
    poll_fn(|cx| {
        if let Poll::Ready(f) = Pin::new(&mut *body).poll_frame(cx) {
            return Poll::Ready(Ok(Some(f)));
        }
        match tx.poll_reset(cx) {
            Poll::Ready(Ok(_)) => Poll::Ready(Ok(None)),
            Poll::Ready(Err(e)) => Poll::Ready(Err(e)),
            Poll::Pending => Poll::Pending,
        }
    })
    .await
}

/// Sends one data chunk, each part as the client's window makes room for it: the `h2`
/// crate is never handed more than the window, and the rest of the chunk waits here,
/// counted against the client (see [`wait_for_window`]).
async fn send_data(
    tx: &mut SendStream<Bytes>,
    mut data: Bytes,
    end: bool,
    waited: &mut Duration,
    sending: &Sending,
) -> Result<(), SendFailure> {
    if data.is_empty() {
        return Ok(tx.send_data(data, end)?);
    }
    loop {
        tx.reserve_capacity(data.len());
        let room = tx.capacity();
        if room == 0 {
            // Boxed: only a stream that waits pays for its timer, and every stream's future
            // (also the size of each connection's idle stream queue) stays as small as before.
            Box::pin(wait_for_window(tx, data.len(), waited, sending)).await?;
            continue;
        }
        if room >= data.len() {
            return Ok(tx.send_data(data, end)?);
        }
        tx.send_data(data.split_to(room), false)?;
    }
}

/// Waits until the client's window gives the stream room, with `held` bytes counted as
/// waiting on the client meanwhile. Refused at once if that would go past the client's or
/// the gateway's bound; given up when the stream's waits add up to the send timeout.
async fn wait_for_window(
    tx: &mut SendStream<Bytes>,
    held: usize,
    waited: &mut Duration,
    sending: &Sending,
) -> Result<(), SendFailure> {
    let _charge = SendCharge::new(sending.account.as_ref(), held.max(MIN_WAIT_CHARGE))
        .map_err(|over| SendFailure::Slow(SlowReader::from(over)))?;
    let left = sending.timeout.saturating_sub(*waited);
    let start = tokio::time::Instant::now();
    let capacity = tokio::time::timeout(left, poll_fn(|cx| tx.poll_capacity(cx))).await;
    *waited += start.elapsed();
    match capacity {
        Err(_) => Err(SendFailure::Slow(SlowReader::Timeout)),
        Ok(Some(Ok(_))) => Ok(()),
        Ok(Some(Err(e))) => Err(e.into()),
        Ok(None) => Err(h2::Error::from(Reason::CANCEL).into()),
    }
}

/// A request body read from an HTTP/2 stream; every chunk read gives its bytes back to the
/// client's flow-control window.
#[derive(Debug)]
pub struct RecvBody {
    recv: RecvStream,
    data_done: bool,
}

impl RecvBody {
    /// Reads the body of `recv`.
    pub fn new(recv: RecvStream) -> Self {
        RecvBody { recv, data_done: false }
    }
}

impl Body for RecvBody {
    type Data = Bytes;
    type Error = h2::Error;

    fn poll_frame(
        mut self: Pin<&mut Self>,
        cx: &mut Context<'_>,
    ) -> Poll<Option<Result<Frame<Bytes>, h2::Error>>> {
        if !self.data_done {
            match ready!(self.recv.poll_data(cx)) {
                Some(Ok(data)) => {
                    let _ = self.recv.flow_control().release_capacity(data.len());
                    return Poll::Ready(Some(Ok(Frame::data(data))));
                }
                Some(Err(e)) => return Poll::Ready(Some(Err(e))),
                None => self.data_done = true,
            }
        }
        match ready!(self.recv.poll_trailers(cx)) {
            Ok(Some(trailers)) => Poll::Ready(Some(Ok(Frame::trailers(trailers)))),
            Ok(None) => Poll::Ready(None),
            Err(e) => Poll::Ready(Some(Err(e))),
        }
    }

    fn is_end_stream(&self) -> bool {
        self.recv.is_end_stream()
    }

    fn size_hint(&self) -> SizeHint {
        SizeHint::default()
    }
}
