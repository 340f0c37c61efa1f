//! The private producer⇄api protocol on the wire: frames and messages.
//!
//! A frame is a 4-byte little-endian payload length, then the payload: the protocol version
//! byte ([`PEER_PROTOCOL_VERSION`]) and exactly one packed message (Antelope codec, `varuint32`
//! variant tags). A length above the reader's limit is refused from the header alone, and the
//! payload buffer grows only as bytes actually arrive, so a lying length costs nothing.
//!
//! What must never happen here: accepting an unknown version or tag, trailing bytes, or a
//! frame over the limit; a panic on anything a peer sends.

use rempart_core::codec::{Pack, Reader, Unpack, write_varuint32};
use rempart_core::transaction::PackedTransaction;
use rempart_core::{Bytes, Checksum256, DecodeError, from_bytes, packed_struct, to_bytes};
use tokio::io::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};

use super::PeerError;

/// Version byte opening every payload.
pub const PEER_PROTOCOL_VERSION: u8 = 1;

/// Default largest payload: a block of thousands of transactions fits; a hostile length
/// does not make us buffer more than this.
pub const DEFAULT_MAX_FRAME_BYTES: usize = 64 * 1024 * 1024;

packed_struct! {
    /// A nodeos-shaped error carried back to the api node.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct WireError {
        /// HTTP status the api node answers with.
        pub status: u16,
        /// nodeos exception code.
        pub code: u64,
        /// nodeos exception name.
        pub name: String,
        /// nodeos exception summary.
        pub what: String,
        /// Detail message.
        pub detail: String,
    }
}

/// What an api node sends the producer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum ToProducer {
    /// Opens a connection: the chain the api node follows.
    Hello {
        /// Its chain id; a different chain is refused.
        chain_id: Checksum256,
    },
    /// Streams every block from `from` on, then each new one as it is produced.
    Subscribe {
        /// First block number wanted.
        from: u32,
    },
    /// Applies a transaction and answers with its trace or a nodeos error.
    Push {
        /// Echoed in the answer.
        id: u64,
        /// The transaction as the client sent it.
        trx: PackedTransaction,
    },
}

/// What the producer sends an api node.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum FromProducer {
    /// Accepts a [`ToProducer::Hello`].
    Welcome {
        /// The producer's chain id.
        chain_id: Checksum256,
        /// Its head block number.
        head: u32,
    },
    /// One block, packed as the block log stores it.
    Block {
        /// Packed `signed_block`.
        block: Bytes,
    },
    /// The transaction applied; its trace in nodeos's JSON shape.
    Pushed {
        /// The request id.
        id: u64,
        /// The trace (`processed`) as JSON text.
        trace: String,
    },
    /// The transaction was refused.
    Refused {
        /// The request id.
        id: u64,
        /// Why.
        error: WireError,
    },
    /// Nothing new; the producer is alive at `head`.
    Heartbeat {
        /// Its head block number.
        head: u32,
    },
    /// The producer closes the connection for this reason.
    Fatal {
        /// Why.
        reason: String,
    },
}

fn tag(r: &mut Reader<'_>, what: &'static str, max: u32) -> Result<u32, DecodeError> {
    let at = r.position();
    let t = r.read_varuint32()?;
    if t > max {
        return Err(DecodeError::UnknownTag { what, tag: u64::from(t), at });
    }
    Ok(t)
}

impl Pack for ToProducer {
    fn pack(&self, out: &mut Vec<u8>) {
        match self {
            ToProducer::Hello { chain_id } => {
                write_varuint32(out, 0);
                chain_id.pack(out);
            }
            ToProducer::Subscribe { from } => {
                write_varuint32(out, 1);
                from.pack(out);
            }
            ToProducer::Push { id, trx } => {
                write_varuint32(out, 2);
                id.pack(out);
                trx.pack(out);
            }
        }
    }
}

impl Unpack for ToProducer {
    const MIN_SIZE: usize = 1;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match tag(r, "peer request", 2)? {
            0 => ToProducer::Hello { chain_id: Unpack::unpack(r)? },
            1 => ToProducer::Subscribe { from: Unpack::unpack(r)? },
            _ => ToProducer::Push { id: Unpack::unpack(r)?, trx: Unpack::unpack(r)? },
        })
    }
}

impl Pack for FromProducer {
    fn pack(&self, out: &mut Vec<u8>) {
        match self {
            FromProducer::Welcome { chain_id, head } => {
                write_varuint32(out, 0);
                chain_id.pack(out);
                head.pack(out);
            }
            FromProducer::Block { block } => {
                write_varuint32(out, 1);
                block.pack(out);
            }
            FromProducer::Pushed { id, trace } => {
                write_varuint32(out, 2);
                id.pack(out);
                trace.pack(out);
            }
            FromProducer::Refused { id, error } => {
                write_varuint32(out, 3);
                id.pack(out);
                error.pack(out);
            }
            FromProducer::Heartbeat { head } => {
                write_varuint32(out, 4);
                head.pack(out);
            }
            FromProducer::Fatal { reason } => {
                write_varuint32(out, 5);
                reason.pack(out);
            }
        }
    }
}

impl Unpack for FromProducer {
    const MIN_SIZE: usize = 1;
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        Ok(match tag(r, "peer response", 5)? {
            0 => FromProducer::Welcome { chain_id: Unpack::unpack(r)?, head: Unpack::unpack(r)? },
            1 => FromProducer::Block { block: Unpack::unpack(r)? },
            2 => FromProducer::Pushed { id: Unpack::unpack(r)?, trace: Unpack::unpack(r)? },
            3 => FromProducer::Refused { id: Unpack::unpack(r)?, error: Unpack::unpack(r)? },
            4 => FromProducer::Heartbeat { head: Unpack::unpack(r)? },
            _ => FromProducer::Fatal { reason: Unpack::unpack(r)? },
        })
    }
}

/// One encoded frame for `msg`.
pub fn encode<M: Pack>(msg: &M) -> Vec<u8> {
    let body = to_bytes(msg);
    let len = u32::try_from(body.len() + 1).unwrap_or(u32::MAX);
    let mut out = Vec::with_capacity(body.len() + 5);
    out.extend_from_slice(&len.to_le_bytes());
    out.push(PEER_PROTOCOL_VERSION);
    out.extend_from_slice(&body);
    out
}

/// Writes one frame.
pub async fn write<M: Pack, W: AsyncWrite + Unpin>(w: &mut W, msg: &M) -> Result<(), PeerError> {
    w.write_all(&encode(msg)).await?;
    w.flush().await?;
    Ok(())
}

/// Decodes one payload (version byte + message).
pub fn decode_payload<M: Unpack>(payload: &[u8]) -> Result<M, PeerError> {
    match payload.split_first() {
        None => Err(PeerError::Protocol("empty frame".into())),
        Some((&v, _)) if v != PEER_PROTOCOL_VERSION => Err(PeerError::Protocol(format!(
            "peer speaks protocol version {v}, this node {PEER_PROTOCOL_VERSION}; run the same \
             rempart-node version on producer and api nodes"
        ))),
        Some((_, body)) => from_bytes(body).map_err(|e| PeerError::Protocol(e.to_string())),
    }
}

/// Reads one frame; `Ok(None)` on a clean end of stream between frames.
pub async fn read<M: Unpack, R: AsyncRead + Unpin>(
    r: &mut R,
    max_frame_bytes: usize,
) -> Result<Option<M>, PeerError> {
    let mut header = [0u8; 4];
    match r.read_exact(&mut header).await {
        Ok(_) => {}
        Err(e) if e.kind() == std::io::ErrorKind::UnexpectedEof => return Ok(None),
        Err(e) => return Err(e.into()),
    }
    let len = u32::from_le_bytes(header) as usize;
    if len > max_frame_bytes {
        return Err(PeerError::Protocol(format!(
            "frame of {len} bytes is over the {max_frame_bytes}-byte limit"
        )));
    }
    let mut payload = Vec::new();
    let got = r.take(len as u64).read_to_end(&mut payload).await?;
    if got != len {
        return Err(PeerError::Protocol(format!("stream ended inside a {len}-byte frame")));
    }
    decode_payload(&payload).map(Some)
}
