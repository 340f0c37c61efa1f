//! A small Redis client: RESP2 commands over one TCP connection, for the limits that several
//! gateways share ([`crate::fleet`]).
//!
//! The gateway sends three commands (`AUTH`, `SCRIPT LOAD`, `EVALSHA`), so it speaks the
//! protocol itself rather than pulling in a general client and its URL and IDNA stacks. Replies
//! are parsed incrementally and bounded (size, element count, nesting), so a misbehaving server
//! can cost the gateway an error, never unbounded memory.

use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};
use tokio::net::TcpStream;

#[cfg(test)]
mod tests;

/// Largest reply accepted, in bytes.
const MAX_REPLY: usize = 64 << 20;
/// Most elements in one array reply.
const MAX_ELEMENTS: usize = 1 << 20;
/// Deepest nesting of arrays accepted.
const MAX_DEPTH: usize = 4;
/// Longest simple line (status, error, integer, length).
const MAX_LINE: usize = 64 << 10;

/// One reply.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Reply {
    /// `+OK`.
    Status(String),
    /// `-ERR …`: the server refused the command.
    Error(String),
    /// `:42`.
    Int(i64),
    /// `$…`: bytes, or nil.
    Bulk(Option<Vec<u8>>),
    /// `*…`: elements, or nil.
    Array(Option<Vec<Reply>>),
}

/// What went wrong talking to Redis.
#[derive(Debug, thiserror::Error)]
pub enum RespError {
    /// Connecting, reading or writing failed.
    #[error("redis at {addr}: {source}")]
    Io {
        /// The server.
        addr: String,
        /// The cause.
        source: std::io::Error,
    },
    /// No answer in time.
    #[error("redis at {0}: no answer within the timeout")]
    Timeout(String),
    /// The server sent something that is not RESP2 (or is over the bounds).
    #[error("redis at {addr}: malformed reply: {what}")]
    Malformed {
        /// The server.
        addr: String,
        /// What was wrong.
        what: &'static str,
    },
    /// The server closed the connection.
    #[error("redis at {0}: connection closed")]
    Closed(String),
    /// The server answered with an error, or with a reply of the wrong kind.
    #[error("redis at {addr}: {what}")]
    Refused {
        /// The server.
        addr: String,
        /// The server's error text, or what was expected.
        what: String,
    },
}

/// Appends `args` as one RESP array of bulk strings.
pub fn encode(args: &[&[u8]], out: &mut Vec<u8>) {
    out.extend_from_slice(format!("*{}\r\n", args.len()).as_bytes());
    for a in args {
        out.extend_from_slice(format!("${}\r\n", a.len()).as_bytes());
        out.extend_from_slice(a);
        out.extend_from_slice(b"\r\n");
    }
}

/// Parses one reply from the front of `buf`: `Ok(None)` when more bytes are needed, else the
/// reply and the bytes it used.
pub fn parse(buf: &[u8]) -> Result<Option<(Reply, usize)>, &'static str> {
    parse_at(buf, 0, 0)
}

fn parse_at(buf: &[u8], at: usize, depth: usize) -> Result<Option<(Reply, usize)>, &'static str> {
    let Some((&kind, rest)) = buf[at..].split_first() else { return Ok(None) };
    let Some(end) = rest.iter().take(MAX_LINE + 1).position(|&b| b == b'\n') else {
        return if rest.len() > MAX_LINE { Err("line too long") } else { Ok(None) };
    };
    if end == 0 || rest[end - 1] != b'\r' {
        return Err("line not ended by CRLF");
    }
    let line = std::str::from_utf8(&rest[..end - 1]).map_err(|_| "line not UTF-8")?;
    let next = at + 1 + end + 1;
    match kind {
        b'+' => Ok(Some((Reply::Status(line.to_owned()), next))),
        b'-' => Ok(Some((Reply::Error(line.to_owned()), next))),
        b':' => {
            let n = line.parse::<i64>().map_err(|_| "integer reply not a number")?;
            Ok(Some((Reply::Int(n), next)))
        }
        b'$' => {
            let len = length(line)?;
            let Some(len) = len else { return Ok(Some((Reply::Bulk(None), next))) };
            if len > MAX_REPLY {
                return Err("bulk reply over the size limit");
            }
            if buf.len() < next + len + 2 {
                return Ok(None);
            }
            if &buf[next + len..next + len + 2] != b"\r\n" {
                return Err("bulk reply not ended by CRLF");
            }
            Ok(Some((Reply::Bulk(Some(buf[next..next + len].to_vec())), next + len + 2)))
        }
        b'*' => {
            let Some(count) = length(line)? else { return Ok(Some((Reply::Array(None), next))) };
            if count > MAX_ELEMENTS {
                return Err("array reply over the element limit");
            }
            if depth >= MAX_DEPTH {
                return Err("array reply nested too deep");
            }
            let mut items = Vec::with_capacity(count.min(1024));
            let mut pos = next;
            for _ in 0..count {
                match parse_at(buf, pos, depth + 1)? {
                    Some((item, used)) => {
                        items.push(item);
                        pos = used;
                    }
                    None => return Ok(None),
                }
            }
            Ok(Some((Reply::Array(Some(items)), pos)))
        }
        _ => Err("unknown reply type"),
    }
}

/// A length line: `-1` is nil; anything else must be a non-negative number.
fn length(line: &str) -> Result<Option<usize>, &'static str> {
    if line == "-1" {
        return Ok(None);
    }
    line.parse::<usize>().map(Some).map_err(|_| "length not a number")
}

/// One connection to a Redis server.
#[derive(Debug)]
pub struct Connection {
    addr: String,
    stream: TcpStream,
    buf: Vec<u8>,
    timeout: Duration,
}

impl Connection {
    /// Connects to `addr` (`host:port`) and, with `auth`, authenticates (`(user, password)`;
    /// no user means the default one). Every exchange is bounded by `timeout`.
    pub async fn connect(
        addr: &str,
        auth: Option<(Option<&str>, &str)>,
        timeout: Duration,
    ) -> Result<Connection, RespError> {
        let stream = tokio::time::timeout(timeout, TcpStream::connect(addr))
            .await
            .map_err(|_| RespError::Timeout(addr.to_owned()))?
            .map_err(|source| RespError::Io { addr: addr.to_owned(), source })?;
        stream.set_nodelay(true).ok();
        let mut conn = Connection { addr: addr.to_owned(), stream, buf: Vec::new(), timeout };
        if let Some((user, password)) = auth {
            let mut args: Vec<&[u8]> = vec![b"AUTH"];
            if let Some(user) = user {
                args.push(user.as_bytes());
            }
            args.push(password.as_bytes());
            match conn.call(&args).await? {
                Reply::Status(_) => {}
                other => return Err(conn.unexpected("AUTH", &other)),
            }
        }
        Ok(conn)
    }

    /// The server's address.
    pub fn addr(&self) -> &str {
        &self.addr
    }

    /// Sends one command and reads its reply (an error reply is returned as [`Reply::Error`]).
    pub async fn call(&mut self, args: &[&[u8]]) -> Result<Reply, RespError> {
        let mut out = Vec::new();
        encode(args, &mut out);
        let mut replies = self.pipeline(&out, 1).await?;
        Ok(replies.pop().expect("one reply read"))
    }

    /// Sends `commands` (already encoded, `count` of them) in one write and reads their
    /// `count` replies in order, all within the timeout.
    pub async fn pipeline(
        &mut self,
        commands: &[u8],
        count: usize,
    ) -> Result<Vec<Reply>, RespError> {
        let timeout = self.timeout;
        let addr = self.addr.clone();
        tokio::time::timeout(timeout, self.exchange(commands, count))
            .await
            .map_err(|_| RespError::Timeout(addr))?
    }

    async fn exchange(&mut self, commands: &[u8], count: usize) -> Result<Vec<Reply>, RespError> {
        let io = |addr: &str| {
            let addr = addr.to_owned();
            move |source| RespError::Io { addr, source }
        };
        self.stream.write_all(commands).await.map_err(io(&self.addr))?;
        let mut replies = Vec::with_capacity(count);
        while replies.len() < count {
            match parse(&self.buf) {
                Ok(Some((reply, used))) => {
                    self.buf.drain(..used);
                    replies.push(reply);
                    continue;
                }
                Ok(None) => {}
                Err(what) => return Err(RespError::Malformed { addr: self.addr.clone(), what }),
            }
            if self.buf.len() > MAX_REPLY {
                return Err(RespError::Malformed {
                    addr: self.addr.clone(),
                    what: "reply over the size limit",
                });
            }
            let mut chunk = [0u8; 16 << 10];
            let n = self.stream.read(&mut chunk).await.map_err(io(&self.addr))?;
            if n == 0 {
                return Err(RespError::Closed(self.addr.clone()));
            }
            self.buf.extend_from_slice(&chunk[..n]);
        }
        Ok(replies)
    }

    /// The error for `reply` where `what` expected another kind.
    pub fn unexpected(&self, what: &str, reply: &Reply) -> RespError {
        let what = match reply {
            Reply::Error(e) => format!("{what} refused: {e}"),
            other => format!("{what}: unexpected reply {other:?}"),
        };
        RespError::Refused { addr: self.addr.clone(), what }
    }
}
