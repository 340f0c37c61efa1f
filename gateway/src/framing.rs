//! HTTP/1 request-framing scanner: follows the raw bytes of a downstream HTTP/1 connection
//! and flags the first request whose framing could be read two ways (request smuggling).
//!
//! hyper already refuses invalid and conflicting `Content-Length` values, non-chunked final
//! `Transfer-Encoding`, obs-fold and bad chunk sizes; but it accepts a request carrying both
//! `Content-Length` and `Transfer-Encoding` (it drops the length), repeated identical lengths
//! and `Transfer-Encoding` lists such as `identity, chunked`. This scanner refuses all of these
//! at the edge, so the service answers 400 before any byte reaches an upstream. It only reads:
//! it never changes the bytes, never allocates more than one request head, and once it loses
//! track (a head larger than the limit) it stops judging and leaves the refusal to hyper.

#[cfg(test)]
mod tests;

/// What the scanner found wrong with a request.
pub type Violation = &'static str;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum State {
    /// Reading a request head; `usize` bytes of it buffered.
    Head,
    /// Skipping this many bytes of a `Content-Length` body.
    Body(u64),
    /// Reading a chunk-size line.
    ChunkSize,
    /// Skipping chunk data, then its CRLF.
    ChunkData(u64),
    /// Expecting the CRLF after chunk data (`0` = CR, `1` = LF).
    ChunkEnd(u8),
    /// Reading trailer lines after the last chunk.
    Trailers,
    /// Gave up judging (oversized head, or after a violation).
    Off,
}

/// The scanner of one connection.
#[derive(Debug)]
pub struct Scanner {
    state: State,
    line: Vec<u8>,
    max_head: usize,
    /// Request heads completed so far.
    heads: u64,
}

/// The first bad request of a connection: its index (0 = first request) and why.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Flag {
    /// Index of the bad request on the connection.
    pub request: u64,
    /// Why it is refused.
    pub reason: Violation,
}

impl Scanner {
    /// A scanner that judges heads up to `max_head` bytes.
    pub fn new(max_head: usize) -> Self {
        Scanner { state: State::Head, line: Vec::new(), max_head, heads: 0 }
    }

    /// Feeds bytes read from the client. Returns the first violation found, after which the
    /// scanner stops.
    pub fn feed(&mut self, mut data: &[u8]) -> Option<Flag> {
        while !data.is_empty() {
            match self.state {
                State::Off => return None,
                State::Head => {
                    let (consumed, done) = self.take_head_bytes(data);
                    data = &data[consumed..];
                    if done {
                        let head = std::mem::take(&mut self.line);
                        let index = self.heads;
                        self.heads += 1;
                        match judge_head(&head) {
                            Ok(next) => self.state = next,
                            Err(reason) => {
                                self.state = State::Off;
                                return Some(Flag { request: index, reason });
                            }
                        }
                    } else if self.line.len() > self.max_head {
                        self.state = State::Off;
                        self.line = Vec::new();
                    }
                }
                State::Body(n) => {
                    let k = (data.len() as u64).min(n);
                    data = &data[k as usize..];
                    self.state = if n == k { State::Head } else { State::Body(n - k) };
                }
                State::ChunkData(n) => {
                    let k = (data.len() as u64).min(n);
                    data = &data[k as usize..];
                    self.state = if n == k { State::ChunkEnd(0) } else { State::ChunkData(n - k) };
                }
                State::ChunkEnd(i) => {
                    let want = if i == 0 { b'\r' } else { b'\n' };
                    if data[0] != want {
                        return self.fail("chunk data not followed by CRLF");
                    }
                    data = &data[1..];
                    self.state = if i == 0 { State::ChunkEnd(1) } else { State::ChunkSize };
                }
                State::ChunkSize | State::Trailers => {
                    let Some(pos) = data.iter().position(|&b| b == b'\n') else {
                        self.line.extend_from_slice(data);
                        if self.line.len() > 4096 {
                            return self.fail("chunk-size or trailer line too long");
                        }
                        return None;
                    };
                    self.line.extend_from_slice(&data[..=pos]);
                    data = &data[pos + 1..];
                    let line = std::mem::take(&mut self.line);
                    let Some(line) = line.strip_suffix(b"\r\n") else {
                        return self.fail("chunk line not ended by CRLF");
                    };
                    if self.state == State::Trailers {
                        if line.is_empty() {
                            self.state = State::Head;
                        }
                        continue;
                    }
                    match chunk_size(line) {
                        Some(0) => self.state = State::Trailers,
                        Some(n) => self.state = State::ChunkData(n),
                        None => return self.fail("invalid chunk size"),
                    }
                }
            }
        }
        None
    }

    fn fail(&mut self, reason: Violation) -> Option<Flag> {
        self.state = State::Off;
        Some(Flag { request: self.heads.saturating_sub(1), reason })
    }

    /// Appends head bytes up to and including the blank line; returns (consumed, complete).
    fn take_head_bytes(&mut self, data: &[u8]) -> (usize, bool) {
        // Empty lines before a request line are allowed (RFC 9112 §2.2).
        let mut start = 0;
        if self.line.is_empty() {
            while start < data.len() && (data[start] == b'\r' || data[start] == b'\n') {
                start += 1;
            }
        }
        for (i, &b) in data.iter().enumerate().skip(start) {
            self.line.push(b);
            // A blank line ends the head; bare-LF forms are recognised here so the judge
            // can refuse them.
            if b == b'\n' && (self.line.ends_with(b"\n\r\n") || self.line.ends_with(b"\n\n")) {
                return (i + 1, true);
            }
            if self.line.len() > self.max_head {
                return (i + 1, false);
            }
        }
        (data.len(), false)
    }
}

fn chunk_size(line: &[u8]) -> Option<u64> {
    let digits = match line.iter().position(|&b| b == b';') {
        Some(p) => &line[..p],
        None => line,
    };
    if digits.is_empty() || digits.len() > 16 {
        return None;
    }
    let s = std::str::from_utf8(digits).ok()?;
    if !s.bytes().all(|b| b.is_ascii_hexdigit()) {
        return None;
    }
    u64::from_str_radix(s, 16).ok()
}

/// Judges one complete head (request line, headers, blank line) and returns how its body is
/// framed.
fn judge_head(head: &[u8]) -> Result<State, Violation> {
    let mut lines = head.split(|&b| b == b'\n');
    let _request_line = lines.next();
    let mut content_length: Option<u64> = None;
    let mut cl_count = 0;
    let mut te: Option<Vec<u8>> = None;
    for raw in lines {
        let line = raw.strip_suffix(b"\r").ok_or("bare LF in request head")?;
        if line.is_empty() {
            break;
        }
        if line[0] == b' ' || line[0] == b'\t' {
            return Err("obs-fold (header continued on the next line)");
        }
        let Some(colon) = line.iter().position(|&b| b == b':') else {
            return Err("header line without a colon");
        };
        let name = &line[..colon];
        if name.is_empty() || name.iter().any(|b| b.is_ascii_whitespace()) {
            return Err("whitespace in a header name");
        }
        let value = trim(&line[colon + 1..]);
        if name.eq_ignore_ascii_case(b"content-length") {
            cl_count += 1;
            if cl_count > 1 {
                return Err("more than one Content-Length");
            }
            if value.is_empty() || value.len() > 19 || !value.iter().all(u8::is_ascii_digit) {
                return Err("invalid Content-Length");
            }
            let s = std::str::from_utf8(value).map_err(|_| "invalid Content-Length")?;
            content_length = Some(s.parse().map_err(|_| "invalid Content-Length")?);
        } else if name.eq_ignore_ascii_case(b"transfer-encoding") {
            if te.is_some() {
                return Err("more than one Transfer-Encoding");
            }
            te = Some(value.to_ascii_lowercase());
        }
    }
    match (content_length, te) {
        (Some(_), Some(_)) => Err("both Content-Length and Transfer-Encoding"),
        (None, Some(te)) if te == b"chunked" => Ok(State::ChunkSize),
        (None, Some(_)) => Err("Transfer-Encoding other than exactly chunked"),
        (Some(0), None) | (None, None) => Ok(State::Head),
        (Some(n), None) => Ok(State::Body(n)),
    }
}

fn trim(v: &[u8]) -> &[u8] {
    let start = v.iter().position(|b| *b != b' ' && *b != b'\t').unwrap_or(v.len());
    let end = v.iter().rposition(|b| *b != b' ' && *b != b'\t').map_or(start, |e| e + 1);
    &v[start..end.max(start)]
}
