//! `rempart admin submit`: one `Admin` request to the signer over its framed protocol (a Unix
//! socket or TCP over WireGuard, the channels signing uses), then its answer.
//!
//! Blocking I/O with a deadline on every read and write. Nothing is retried: a command either
//! reached the signer once or the operator sees why not (a resend would be refused as a replayed
//! nonce anyway).

use std::io::{Read, Write};
use std::time::{Duration, Instant};

use rempart_core::admin::AdminOutcome;
use rempart_core::protocol::{AdminRequest, FrameDecoder, Request, Response, encode_frame};
use rempart_core::{Bytes, codec};

use super::{AdminCliError, SubmitArgs, io_err, read_proposal};

trait Stream: Read + Write {}
impl<T: Read + Write> Stream for T {}

fn connect(endpoint: &str, timeout: Duration) -> std::io::Result<Box<dyn Stream>> {
    if let Some(path) = endpoint.strip_prefix("unix:") {
        let s = std::os::unix::net::UnixStream::connect(path)?;
        s.set_read_timeout(Some(timeout))?;
        s.set_write_timeout(Some(timeout))?;
        return Ok(Box::new(s));
    }
    let addr: std::net::SocketAddr = endpoint.parse().map_err(|_| {
        std::io::Error::new(
            std::io::ErrorKind::InvalidInput,
            "the signer is unix:/path/to.sock or host:port",
        )
    })?;
    let s = std::net::TcpStream::connect_timeout(&addr, timeout)?;
    s.set_read_timeout(Some(timeout))?;
    s.set_write_timeout(Some(timeout))?;
    s.set_nodelay(true)?;
    Ok(Box::new(s))
}

/// Sends the request and waits for the response with its id, until `deadline`.
fn exchange(
    stream: &mut dyn Stream,
    request: &Request,
    deadline: Instant,
) -> Result<Response, String> {
    let frame = encode_frame(request).map_err(|e| e.to_string())?;
    stream.write_all(&frame).map_err(|e| format!("cannot send: {e}"))?;
    let mut decoder = FrameDecoder::new();
    let mut buf = [0u8; 8192];
    loop {
        if Instant::now() >= deadline {
            return Err("no answer before the deadline (--timeout-ms)".into());
        }
        let n = stream.read(&mut buf).map_err(|e| format!("cannot read the answer: {e}"))?;
        if n == 0 {
            return Err("the signer closed the connection without answering".into());
        }
        let mut input = &buf[..n];
        while !input.is_empty() {
            match decoder.decode::<Response>(&mut input) {
                Ok(Some(r)) if r.request_id() == request.request_id() || r.request_id() == 0 => {
                    return Ok(r);
                }
                Ok(_) => {}
                Err(e) => return Err(format!("bad answer: {e}")),
            }
        }
    }
}

/// Sends the approved proposal in `a.file` to `a.signer`, prints the outcome and returns it
/// (for the journal).
pub(super) fn submit(a: &SubmitArgs, out: &mut dyn Write) -> Result<String, AdminCliError> {
    let proposal = read_proposal(&a.file)?;
    let timeout = Duration::from_millis(a.timeout_ms.max(1));
    let deadline = Instant::now() + timeout;
    let signer_err =
        |message: String| AdminCliError::Signer { endpoint: a.signer.clone(), message };
    let mut stream =
        connect(&a.signer, timeout).map_err(|e| signer_err(format!("cannot connect: {e}")))?;
    let request_id =
        u64::from_le_bytes(proposal.command.nonce.0[..8].try_into().unwrap_or([1; 8])) | 1;
    let request =
        Request::Admin(AdminRequest { request_id, command: Bytes(proposal.to_request_bytes()) });
    let stdout = std::path::Path::new("<stdout>");
    match exchange(stream.as_mut(), &request, deadline).map_err(signer_err)? {
        Response::Admin(r) => {
            let outcome: AdminOutcome = codec::from_bytes(&r.result.0)
                .map_err(|e| signer_err(format!("unreadable admin result: {e}")))?;
            if outcome.digest != proposal.command.digest() {
                return Err(signer_err(format!(
                    "the signer answered for command {}, not this one",
                    outcome.digest
                )));
            }
            let mut done = format!("done: {}", outcome.summary);
            if let Some(key) = outcome.new_key {
                done.push_str(&format!("\nnew key: {key}"));
            }
            writeln!(out, "{done}").map_err(|e| io_err(stdout, e))?;
            Ok(done)
        }
        Response::Error(e) => {
            Err(AdminCliError::Refused { code: e.code.to_string(), message: e.message })
        }
        other => Err(signer_err(format!("unexpected answer {other:?}"))),
    }
}
