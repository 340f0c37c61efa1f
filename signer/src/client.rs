//! The client library the node uses to reach `rempart-signer`: connect over a Unix socket or
//! TCP, sign a block before a deadline, reconnect when the connection breaks.
//!
//! Retrying a `SignBlock` is safe by design: the signer answers a repeated request from its
//! guard state with the very same signature. So on a broken connection the client reconnects
//! and sends the same request again until the deadline; so it does after a `Busy` answer (the
//! signer's own time limit ran out: the request may still be signed behind it, and the caller
//! must not take it for a refusal and sign another block at that height). Any other refusal is
//! never retried. Every
//! signature is checked before it is returned (same digest as the node computed, signature by
//! the requested key). This module never logs or alters what it is asked to sign.
//!
//! A TCP connection is closed with a reset (`SO_LINGER` 0), never a graceful close: a request
//! the client gave up on while the network (the WireGuard tunnel) was down must not sit in the
//! kernel's send queue and reach the signer when the tunnel returns, to be signed after the
//! producer moved on (a later request for that height with another digest is then refused as
//! a double sign: correct, but noise).

use std::fmt;
use std::net::SocketAddr;
use std::path::PathBuf;
use std::str::FromStr;

use rempart_core::block::ProducerKey;
use rempart_core::protocol::{
    ErrorCode, FrameDecoder, ProtocolError, Request, Response, SignBlockRequest, SignBlockResponse,
    StatusResponse, encode_frame,
};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use tokio::net::{TcpStream, UnixStream};
use tokio::time::Instant;

#[cfg(test)]
mod tests;

/// Where the signer listens: `unix:/path/to.sock` or `host:port`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Endpoint {
    /// A Unix socket path.
    Unix(PathBuf),
    /// A TCP address.
    Tcp(SocketAddr),
}

impl fmt::Display for Endpoint {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self {
            Endpoint::Unix(p) => write!(f, "unix:{}", p.display()),
            Endpoint::Tcp(a) => write!(f, "{a}"),
        }
    }
}

impl FromStr for Endpoint {
    type Err = ClientError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        if let Some(p) = s.strip_prefix("unix:") {
            if p.is_empty() {
                return Err(ClientError::BadEndpoint(s.to_string()));
            }
            return Ok(Endpoint::Unix(PathBuf::from(p)));
        }
        s.parse().map(Endpoint::Tcp).map_err(|_| ClientError::BadEndpoint(s.to_string()))
    }
}

/// Why a request to the signer did not produce an answer.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ClientError {
    /// The endpoint string is neither `unix:PATH` nor `IP:PORT`.
    #[error("signer endpoint {0:?} is neither unix:/path nor IP:port")]
    BadEndpoint(String),
    /// The deadline passed; `last` is the last transport error, if any.
    #[error("no answer from the signer at {endpoint} before the deadline{}", last.as_ref().map(|l| format!(" (last error: {l})")).unwrap_or_default())]
    Timeout {
        /// The endpoint.
        endpoint: String,
        /// The last transport error seen.
        last: Option<String>,
    },
    /// The signer refused or failed the request. Never retried automatically.
    #[error("the signer refused ({code}): {message}")]
    Refused {
        /// The error code.
        code: ErrorCode,
        /// The signer's explanation.
        message: String,
    },
    /// The signer answered something that cannot be right.
    #[error("the signer's answer is wrong: {0}")]
    BadAnswer(String),
    /// The request cannot be encoded (too large).
    #[error(transparent)]
    Protocol(#[from] ProtocolError),
}

impl ClientError {
    /// The signer's error code, when it refused.
    pub fn code(&self) -> Option<ErrorCode> {
        match self {
            ClientError::Refused { code, .. } => Some(*code),
            _ => None,
        }
    }
}

trait Stream: AsyncRead + AsyncWrite + Unpin + Send + Sync {}
impl<T: AsyncRead + AsyncWrite + Unpin + Send + Sync> Stream for T {}

struct Connection {
    stream: Box<dyn Stream>,
    decoder: FrameDecoder,
    pending: Vec<u8>,
}

/// A connection to the signer that reconnects on demand.
pub struct Client {
    endpoint: Endpoint,
    conn: Option<Connection>,
    next_id: u64,
}

impl fmt::Debug for Client {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Client")
            .field("endpoint", &self.endpoint)
            .field("connected", &self.conn.is_some())
            .finish()
    }
}

impl Client {
    /// A client for `endpoint`; it connects on first use.
    pub fn new(endpoint: Endpoint) -> Client {
        Client { endpoint, conn: None, next_id: 1 }
    }

    /// The endpoint.
    pub fn endpoint(&self) -> &Endpoint {
        &self.endpoint
    }

    /// Connects now (otherwise the first request does).
    pub async fn connect(&mut self, deadline: Instant) -> Result<(), ClientError> {
        match tokio::time::timeout_at(deadline, self.open()).await {
            Ok(Ok(c)) => {
                self.conn = Some(c);
                Ok(())
            }
            Ok(Err(e)) => Err(self.timeout(Some(e.to_string()))),
            Err(_) => Err(self.timeout(None)),
        }
    }

    fn timeout(&self, last: Option<String>) -> ClientError {
        ClientError::Timeout { endpoint: self.endpoint.to_string(), last }
    }

    async fn open(&self) -> std::io::Result<Connection> {
        let stream: Box<dyn Stream> = match &self.endpoint {
            Endpoint::Unix(p) => Box::new(UnixStream::connect(p).await?),
            Endpoint::Tcp(a) => {
                let s = TcpStream::connect(a).await?;
                s.set_nodelay(true)?;
                // Dropping the connection (given up, broken, or the client gone) discards what
                // was not delivered instead of retransmitting it once the path is back.
                s.set_zero_linger()?;
                Box::new(s)
            }
        };
        Ok(Connection { stream, decoder: FrameDecoder::new(), pending: Vec::new() })
    }

    /// Sends `request` (its id is replaced by the client's) and waits for the matching response,
    /// reconnecting and resending on transport errors until `deadline`.
    async fn call(
        &mut self,
        mut request: Request,
        deadline: Instant,
    ) -> Result<Response, ClientError> {
        let id = self.next_id;
        self.next_id += 1;
        match &mut request {
            Request::SignBlock(r) => r.request_id = id,
            Request::PublicKeys { request_id } | Request::Status { request_id } => *request_id = id,
            Request::Admin(r) => r.request_id = id,
        }
        let frame = encode_frame(&request)?;
        let mut last: Option<String> = None;
        let mut backoff = std::time::Duration::from_millis(5);
        loop {
            if Instant::now() >= deadline {
                return Err(self.timeout(last));
            }
            let attempt = async {
                if self.conn.is_none() {
                    self.conn = Some(self.open().await?);
                }
                let conn =
                    self.conn.as_mut().ok_or_else(|| std::io::Error::other("no connection"))?;
                conn.stream.write_all(&frame).await?;
                read_response(conn, id).await
            };
            match tokio::time::timeout_at(deadline, attempt).await {
                Ok(Ok(Response::Error(e))) if e.code == ErrorCode::Busy => {
                    tracing::debug!(message = %e.message, endpoint = %self.endpoint, "signer busy");
                    last = Some(format!("the signer was busy: {}", e.message));
                    let wake = (Instant::now() + backoff).min(deadline);
                    tokio::time::sleep_until(wake).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_millis(100));
                }
                Ok(Ok(resp)) => return Ok(resp),
                Ok(Err(e)) => {
                    self.conn = None;
                    tracing::debug!(error = %e, endpoint = %self.endpoint, "signer connection lost");
                    last = Some(e.to_string());
                    let wake = (Instant::now() + backoff).min(deadline);
                    tokio::time::sleep_until(wake).await;
                    backoff = (backoff * 2).min(std::time::Duration::from_millis(100));
                }
                Err(_) => {
                    // A late answer would arrive on this connection: drop it.
                    self.conn = None;
                    return Err(self.timeout(last));
                }
            }
        }
    }

    /// Asks the signer to sign a block before `deadline`, and checks the answer: the digest
    /// must be the one computed here and the signature must be by `request.signing_key`.
    pub async fn sign_block(
        &mut self,
        request: SignBlockRequest,
        deadline: Instant,
    ) -> Result<SignBlockResponse, ClientError> {
        let digest = request.digest();
        let key = request.signing_key;
        let block_num = request.header.block_num();
        match self.call(Request::SignBlock(request), deadline).await? {
            Response::Signature(s) => {
                if s.digest != digest || s.block_num != block_num {
                    return Err(ClientError::BadAnswer(format!(
                        "signed block {} digest {}, asked block {block_num} digest {digest}",
                        s.block_num, s.digest
                    )));
                }
                if !s.signature.verify(&digest, &key) {
                    return Err(ClientError::BadAnswer(format!(
                        "signature {} is not by {key} over {digest}",
                        s.signature
                    )));
                }
                Ok(s)
            }
            other => Err(unexpected(other)),
        }
    }

    /// The producers and keys the signer signs for.
    pub async fn public_keys(
        &mut self,
        deadline: Instant,
    ) -> Result<Vec<ProducerKey>, ClientError> {
        match self.call(Request::PublicKeys { request_id: 0 }, deadline).await? {
            Response::PublicKeys { keys, .. } => Ok(keys),
            other => Err(unexpected(other)),
        }
    }

    /// The signer's counters and last signed blocks.
    pub async fn status(&mut self, deadline: Instant) -> Result<StatusResponse, ClientError> {
        match self.call(Request::Status { request_id: 0 }, deadline).await? {
            Response::Status(s) => Ok(s),
            other => Err(unexpected(other)),
        }
    }
}

fn unexpected(resp: Response) -> ClientError {
    match resp {
        Response::Error(e) => ClientError::Refused { code: e.code, message: e.message },
        other => ClientError::BadAnswer(format!("unexpected response {other:?}")),
    }
}

/// Reads frames until the response to `id` (an error frame with id 0 also ends the wait).
async fn read_response(conn: &mut Connection, id: u64) -> std::io::Result<Response> {
    let mut buf = [0u8; 8192];
    loop {
        let mut input = &conn.pending[..];
        let r: Result<Option<Response>, ProtocolError> = conn.decoder.decode(&mut input);
        let used = conn.pending.len() - input.len();
        conn.pending.drain(..used);
        match r {
            Ok(Some(resp)) => {
                let rid = resp.request_id();
                if rid == id || (rid == 0 && matches!(resp, Response::Error(_))) {
                    return Ok(resp);
                }
                continue; // a late answer to an earlier request
            }
            Ok(None) if !conn.pending.is_empty() => continue,
            Ok(None) => {}
            Err(e) => return Err(std::io::Error::new(std::io::ErrorKind::InvalidData, e)),
        }
        let n = conn.stream.read(&mut buf).await?;
        if n == 0 {
            return Err(std::io::Error::new(
                std::io::ErrorKind::UnexpectedEof,
                "the signer closed the connection",
            ));
        }
        conn.pending.extend_from_slice(&buf[..n]);
    }
}
