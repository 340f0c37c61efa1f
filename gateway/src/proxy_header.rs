//! PROXY protocol v2 (the binary header L4 load balancers put before the client's bytes): read
//! from connections of configured balancers only, to learn the real client address.
//!
//! Exactly the header's bytes are read, so the TLS handshake that follows is untouched. The
//! header is bounded (at most 16 + 512 bytes) and read under a deadline; anything malformed
//! closes the connection. A client-sent header on a direct connection is never parsed: it just
//! fails the TLS handshake.

use std::io;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};

use tokio::io::{AsyncRead, AsyncReadExt};

#[cfg(test)]
mod tests;

/// The 12-byte signature that opens every v2 header.
pub const SIGNATURE: [u8; 12] = *b"\r\n\r\n\0\r\nQUIT\n";

/// Longest address block accepted (addresses plus TLVs).
const MAX_BLOCK: usize = 512;

/// Why a PROXY header was refused.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum ProxyHeaderError {
    /// Reading failed or the connection closed.
    #[error("reading the PROXY header failed: {0}")]
    Io(#[from] io::Error),
    /// The bytes are not a PROXY protocol v2 header.
    #[error("not a PROXY protocol v2 header: {0}")]
    Malformed(&'static str),
}

/// Reads one v2 header and returns the client address it carries; `peer` when the header is a
/// LOCAL command (the balancer's own health check) or carries no IP addresses.
pub async fn read<S: AsyncRead + Unpin>(
    stream: &mut S,
    peer: SocketAddr,
) -> Result<SocketAddr, ProxyHeaderError> {
    let mut head = [0u8; 16];
    stream.read_exact(&mut head).await?;
    if head[..12] != SIGNATURE {
        return Err(ProxyHeaderError::Malformed("bad signature"));
    }
    let version = head[12] >> 4;
    let command = head[12] & 0x0f;
    if version != 2 {
        return Err(ProxyHeaderError::Malformed("version is not 2"));
    }
    let len = usize::from(u16::from_be_bytes([head[14], head[15]]));
    if len > MAX_BLOCK {
        return Err(ProxyHeaderError::Malformed("address block too long"));
    }
    let mut block = vec![0u8; len];
    stream.read_exact(&mut block).await?;
    match command {
        0x0 => return Ok(peer),
        0x1 => {}
        _ => return Err(ProxyHeaderError::Malformed("unknown command")),
    }
    let family = head[13] >> 4;
    match family {
        0x1 => {
            let b = block.get(..12).ok_or(ProxyHeaderError::Malformed("short IPv4 block"))?;
            let ip = Ipv4Addr::new(b[0], b[1], b[2], b[3]);
            let port = u16::from_be_bytes([b[8], b[9]]);
            Ok(SocketAddr::new(IpAddr::V4(ip), port))
        }
        0x2 => {
            let b = block.get(..36).ok_or(ProxyHeaderError::Malformed("short IPv6 block"))?;
            let mut a = [0u8; 16];
            a.copy_from_slice(&b[..16]);
            let port = u16::from_be_bytes([b[32], b[33]]);
            Ok(SocketAddr::new(IpAddr::V6(Ipv6Addr::from(a)), port))
        }
        // UNSPEC or UNIX: no client IP to learn.
        _ => Ok(peer),
    }
}

/// Encodes a v2 PROXY header for `client` → `server` (used by tests and tools that front the
/// gateway).
pub fn encode(client: SocketAddr, server: SocketAddr) -> Vec<u8> {
    let mut out = SIGNATURE.to_vec();
    out.push(0x21);
    match (client, server) {
        (SocketAddr::V4(c), SocketAddr::V4(s)) => {
            out.push(0x11);
            out.extend_from_slice(&12u16.to_be_bytes());
            out.extend_from_slice(&c.ip().octets());
            out.extend_from_slice(&s.ip().octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&s.port().to_be_bytes());
        }
        (c, s) => {
            let v6 = |a: SocketAddr| match a.ip() {
                IpAddr::V4(v4) => v4.to_ipv6_mapped(),
                IpAddr::V6(v6) => v6,
            };
            out.push(0x21);
            out.extend_from_slice(&36u16.to_be_bytes());
            out.extend_from_slice(&v6(c).octets());
            out.extend_from_slice(&v6(s).octets());
            out.extend_from_slice(&c.port().to_be_bytes());
            out.extend_from_slice(&s.port().to_be_bytes());
        }
    }
    out
}
