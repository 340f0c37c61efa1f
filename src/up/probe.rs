//! Readiness probes for `rempart up`: is the signer's socket accepting, is the producer's head
//! advancing, does an api node answer `get_info`, does the gateway answer `/healthz`.
//!
//! Each probe is one bounded attempt (connect and read under a short deadline) that answers
//! yes or no; the caller polls it until its own deadline. A probe never blocks the runtime and
//! never reads more than a small reply.

use std::net::SocketAddr;
use std::path::Path;
use std::time::Duration;

use tokio::io::{AsyncReadExt, AsyncWriteExt};

/// Deadline of one probe attempt.
const ATTEMPT: Duration = Duration::from_millis(1000);
/// Largest reply a probe reads.
const MAX_REPLY: u64 = 64 * 1024;

/// Whether the unix socket accepts a connection.
pub async fn unix_accepts(path: &Path) -> bool {
    matches!(tokio::time::timeout(ATTEMPT, tokio::net::UnixStream::connect(path)).await, Ok(Ok(_)))
}

/// The head block number in a node's metrics file, if it has one yet.
pub fn metrics_head(path: &Path) -> Option<u64> {
    let text = std::fs::read_to_string(path).ok()?;
    // `rempart_node_head_block_num{role="producer"} 121`
    text.lines()
        .filter(|l| l.starts_with("rempart_node_head_block_num"))
        .find_map(|l| l.rsplit(' ').next())
        .and_then(|v| v.trim().parse().ok())
}

/// One plain HTTP/1.1 request; the status code and body on success.
pub async fn http(addr: SocketAddr, method: &str, path: &str) -> Option<(u16, String)> {
    let attempt = async {
        let mut s = tokio::net::TcpStream::connect(addr).await.ok()?;
        let req = format!(
            "{method} {path} HTTP/1.1\r\nHost: {addr}\r\nContent-Length: 0\r\nConnection: close\r\n\r\n"
        );
        s.write_all(req.as_bytes()).await.ok()?;
        let mut buf = Vec::new();
        (&mut s).take(MAX_REPLY).read_to_end(&mut buf).await.ok()?;
        let text = String::from_utf8_lossy(&buf).into_owned();
        let status = text.split(' ').nth(1)?.parse().ok()?;
        let body = text.split_once("\r\n\r\n").map(|(_, b)| b.to_string()).unwrap_or_default();
        Some((status, body))
    };
    tokio::time::timeout(ATTEMPT, attempt).await.ok().flatten()
}

/// `get_info` of an api node: its chain id and head block number.
pub async fn get_info(addr: SocketAddr) -> Option<(String, u64)> {
    let (status, body) = http(addr, "POST", "/v1/chain/get_info").await?;
    if status != 200 {
        return None;
    }
    // The node may answer with chunked framing: the JSON object is between the braces.
    let json = &body[body.find('{')?..=body.rfind('}')?];
    let v: serde_json::Value = serde_json::from_str(json).ok()?;
    Some((v.get("chain_id")?.as_str()?.to_string(), v.get("head_block_num")?.as_u64()?))
}

/// Whether the gateway's admin listener answers `/healthz` with 200.
pub async fn healthz(addr: SocketAddr) -> bool {
    matches!(http(addr, "GET", "/healthz").await, Some((200, _)))
}
