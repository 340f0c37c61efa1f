//! The signer's wire protocol: the messages a producer node (and an admin tool) exchanges with
//! `rempart-signer`, and the framing that carries them over a stream.
//!
//! A frame is a 4-byte little-endian payload length, then the payload: the protocol version
//! byte ([`PROTOCOL_VERSION`]) and exactly one packed message ([`Request`] or [`Response`]).
//! Messages use the Antelope codec; their variant tags are `varuint32`. A payload longer than
//! [`MAX_FRAME_BYTES`] is refused from its length alone, before any of it is buffered, and the
//! connection must then be closed.
//!
//! A [`Request::SignBlock`] carries the whole block header and what the signing digest commits
//! to, never a bare digest: the signer computes the digest itself
//! ([`SignBlockRequest::digest`]) and so knows the producer, block number and slot it signs
//! for, which its double-sign guard needs.
//!
//! This module does no I/O. What must never happen here: buffering more than one frame of at
//! most [`MAX_FRAME_BYTES`], accepting trailing bytes or an unknown tag, or a panic on anything a
//! peer sends.

use crate::block::{BlockHeader, ProducerKey};
use crate::checksum::Checksum256;
use crate::codec::{self, Bytes, DecodeError, Pack, Reader, Unpack};
use crate::key::{PublicKey, Signature};
use crate::name::Name;
use crate::time::BlockTimestamp;

/// The protocol version this build speaks; the first payload byte of every frame.
pub const PROTOCOL_VERSION: u8 = 1;

/// Largest payload (version byte included) a frame may carry: 64 KiB.
pub const MAX_FRAME_BYTES: usize = 64 * 1024;

/// Bytes of the length prefix.
pub const FRAME_HEADER_BYTES: usize = 4;

/// Why a frame or message was refused.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum ProtocolError {
    /// A length prefix (or a message to send) over the limit. Nothing of it was buffered.
    #[error(
        "frame of {size} bytes exceeds the limit of {limit} bytes; the peer is misbehaving or does not speak the rempart signer protocol: close the connection"
    )]
    FrameTooLarge {
        /// The payload size announced or needed.
        size: u64,
        /// The limit, [`MAX_FRAME_BYTES`].
        limit: usize,
    },
    /// A length prefix of zero: a payload holds at least the version byte.
    #[error("empty frame (a payload holds at least the version byte): close the connection")]
    EmptyFrame,
    /// The payload's version byte is not [`PROTOCOL_VERSION`].
    #[error(
        "protocol version {got} is not supported (this side speaks version {supported}); run the same rempart release on the node and the signer"
    )]
    UnsupportedVersion {
        /// The version byte received.
        got: u8,
        /// The version this side speaks.
        supported: u8,
    },
    /// The message does not decode; `source` carries the field path.
    #[error("malformed {what}: {source}")]
    Decode {
        /// The message type expected.
        what: &'static str,
        /// The decoder's error.
        #[source]
        source: DecodeError,
    },
    /// The decoder already refused the stream; nothing after a framing error can be trusted.
    #[error("the frame decoder stopped after an earlier framing error: close the connection")]
    Closed,
}

/// A message that travels in a frame.
pub trait Message: Pack + Unpack {
    /// Its name, for errors.
    const NAME: &'static str;
}

/// Packs `msg` into one frame: length, version byte, message. A message whose payload would
/// exceed [`MAX_FRAME_BYTES`] is refused here rather than by the peer.
pub fn encode_frame<M: Message>(msg: &M) -> Result<Vec<u8>, ProtocolError> {
    let mut out = vec![0u8; FRAME_HEADER_BYTES];
    out.push(PROTOCOL_VERSION);
    msg.pack(&mut out);
    let size = out.len() - FRAME_HEADER_BYTES;
    if size > MAX_FRAME_BYTES {
        return Err(ProtocolError::FrameTooLarge { size: size as u64, limit: MAX_FRAME_BYTES });
    }
    // size <= MAX_FRAME_BYTES, so it fits in a u32.
    out[..FRAME_HEADER_BYTES].copy_from_slice(&(size as u32).to_le_bytes());
    Ok(out)
}

/// Decodes one payload (version byte and message), refusing trailing bytes.
pub fn decode_payload<M: Message>(payload: &[u8]) -> Result<M, ProtocolError> {
    let (&version, message) = payload.split_first().ok_or(ProtocolError::EmptyFrame)?;
    if version != PROTOCOL_VERSION {
        return Err(ProtocolError::UnsupportedVersion {
            got: version,
            supported: PROTOCOL_VERSION,
        });
    }
    codec::from_bytes(message).map_err(|source| ProtocolError::Decode { what: M::NAME, source })
}

/// Reassembles frames from a byte stream: push bytes in, pop messages out. It holds at most one
/// frame, never more than [`MAX_FRAME_BYTES`] of payload, and checks each length prefix as
/// soon as its four bytes arrive.
///
/// ```
/// use rempart_core::protocol::{FrameDecoder, Request, encode_frame};
/// let bytes = encode_frame(&Request::Status { request_id: 7 }).unwrap();
/// let mut decoder = FrameDecoder::new();
/// let mut input = &bytes[..];
/// let msg: Option<Request> = decoder.decode(&mut input).unwrap();
/// assert_eq!(msg, Some(Request::Status { request_id: 7 }));
/// ```
#[derive(Debug, Default)]
pub struct FrameDecoder {
    header: [u8; FRAME_HEADER_BYTES],
    header_len: usize,
    /// Payload size, known once the header is complete.
    expected: Option<usize>,
    payload: Vec<u8>,
    failed: bool,
}

impl FrameDecoder {
    /// A decoder at the start of a stream.
    pub fn new() -> Self {
        Self::default()
    }

    /// Takes bytes from `data` up to the end of the current frame and returns how many it took.
    /// It takes nothing while a complete frame waits to be popped; the caller pops, then pushes
    /// the rest. A framing error stops the decoder for good.
    pub fn push(&mut self, data: &[u8]) -> Result<usize, ProtocolError> {
        if self.failed {
            return Err(ProtocolError::Closed);
        }
        let mut used = 0;
        if self.expected.is_none() {
            let take = (FRAME_HEADER_BYTES - self.header_len).min(data.len());
            self.header[self.header_len..self.header_len + take].copy_from_slice(&data[..take]);
            self.header_len += take;
            used += take;
            if self.header_len < FRAME_HEADER_BYTES {
                return Ok(used);
            }
            let size = u32::from_le_bytes(self.header);
            let size_usize = usize::try_from(size).unwrap_or(usize::MAX);
            if size_usize > MAX_FRAME_BYTES {
                self.failed = true;
                return Err(ProtocolError::FrameTooLarge {
                    size: u64::from(size),
                    limit: MAX_FRAME_BYTES,
                });
            }
            if size == 0 {
                self.failed = true;
                return Err(ProtocolError::EmptyFrame);
            }
            self.payload.reserve_exact(size_usize);
            self.expected = Some(size_usize);
        }
        if let Some(expected) = self.expected {
            let rest = &data[used..];
            let take = (expected - self.payload.len()).min(rest.len());
            self.payload.extend_from_slice(&rest[..take]);
            used += take;
        }
        Ok(used)
    }

    /// Whether a complete frame waits to be popped.
    pub fn has_frame(&self) -> bool {
        self.expected == Some(self.payload.len())
    }

    /// Whether the decoder is between frames (no partial frame buffered): a stream may end
    /// cleanly only here.
    pub fn is_idle(&self) -> bool {
        self.header_len == 0 && self.expected.is_none()
    }

    /// Removes the waiting frame, if any, and decodes it. A message that does not decode is
    /// an error, but the frame is consumed and the stream stays in sync.
    pub fn pop<M: Message>(&mut self) -> Result<Option<M>, ProtocolError> {
        if self.failed {
            return Err(ProtocolError::Closed);
        }
        if !self.has_frame() {
            return Ok(None);
        }
        let result = decode_payload(&self.payload);
        self.payload.clear();
        self.header_len = 0;
        self.expected = None;
        result.map(Some)
    }

    /// Pushes from `input` (advancing it past what was taken) and pops: the next message, or
    /// `None` once `input` is used up without completing a frame. Call it in a loop until it
    /// returns `None`.
    pub fn decode<M: Message>(&mut self, input: &mut &[u8]) -> Result<Option<M>, ProtocolError> {
        let used = self.push(input)?;
        *input = &input[used..];
        self.pop()
    }
}

/// Writes a static_variant tag.
fn tag(out: &mut Vec<u8>, t: u32) {
    codec::write_varuint32(out, t);
}

/// Decodes a field, naming it in the error path.
fn field<T: Unpack>(r: &mut Reader<'_>, name: &'static str) -> Result<T, DecodeError> {
    T::unpack(r).map_err(|e| e.in_field(name))
}

crate::packed_struct! {
    /// Asks the signer to sign a block (tag 0 of [`Request`]).
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct SignBlockRequest {
        /// Chosen by the requester, echoed in the response.
        pub request_id: u64,
        /// The chain the block belongs to; the signer refuses chains it does not serve.
        pub chain_id: Checksum256,
        /// The header to sign.
        pub header: BlockHeader,
        /// Root of the block-id merkle the digest commits to.
        pub blockroot_merkle_root: Checksum256,
        /// Hash of the pending producer schedule the digest commits to.
        pub pending_schedule_hash: Checksum256,
        /// The key to sign with; it must belong to `header.producer`.
        pub signing_key: PublicKey,
    }
}

impl SignBlockRequest {
    /// The digest to sign, computed from the header: nodeos's `sig_digest`.
    pub fn digest(&self) -> Checksum256 {
        self.header.signing_digest(&self.blockroot_merkle_root, &self.pending_schedule_hash)
    }
}

crate::packed_struct! {
    /// An administrative command (tag 3 of [`Request`]), M-of-N approved: see [`crate::admin`].
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct AdminRequest {
        /// Chosen by the requester, echoed in the response.
        pub request_id: u64,
        /// The packed [`crate::admin::ApprovedCommand`]: the command and its approvals.
        pub command: Bytes,
    }
}

/// What a client asks the signer.
#[derive(Clone, PartialEq, Eq, Debug)]
#[expect(
    clippy::large_enum_variant,
    reason = "one request per frame of up to 64 KiB; a box would only add an allocation"
)]
pub enum Request {
    /// Sign a block header (tag 0).
    SignBlock(SignBlockRequest),
    /// List the producer keys the signer holds (tag 1).
    PublicKeys {
        /// Echoed in the response.
        request_id: u64,
    },
    /// Report counters and the last signed block per key (tag 2).
    Status {
        /// Echoed in the response.
        request_id: u64,
    },
    /// Run an administrative command (tag 3).
    Admin(AdminRequest),
}

impl Request {
    /// The id the response will echo.
    pub fn request_id(&self) -> u64 {
        match self {
            Request::SignBlock(r) => r.request_id,
            Request::PublicKeys { request_id } | Request::Status { request_id } => *request_id,
            Request::Admin(r) => r.request_id,
        }
    }
}

impl Pack for Request {
    fn pack(&self, out: &mut Vec<u8>) {
        match self {
            Request::SignBlock(r) => {
                tag(out, 0);
                r.pack(out);
            }
            Request::PublicKeys { request_id } => {
                tag(out, 1);
                request_id.pack(out);
            }
            Request::Status { request_id } => {
                tag(out, 2);
                request_id.pack(out);
            }
            Request::Admin(r) => {
                tag(out, 3);
                r.pack(out);
            }
        }
    }
}

impl Unpack for Request {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        match r.read_varuint32()? {
            0 => field(r, "sign_block").map(Request::SignBlock),
            1 => Ok(Request::PublicKeys { request_id: field(r, "request_id")? }),
            2 => Ok(Request::Status { request_id: field(r, "request_id")? }),
            3 => field(r, "admin").map(Request::Admin),
            t => Err(DecodeError::UnknownTag { what: "request", tag: u64::from(t), at }),
        }
    }
}

impl Message for Request {
    const NAME: &'static str = "request";
}

crate::packed_struct! {
    /// A block signature (tag 0 of [`Response`]).
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct SignBlockResponse {
        /// The request's id.
        pub request_id: u64,
        /// The number of the block signed.
        pub block_num: u32,
        /// The digest signed, so the node can check it computed the same one.
        pub digest: Checksum256,
        /// The signature.
        pub signature: Signature,
    }
}

crate::packed_struct! {
    /// The last block a key signed, as the double-sign guard remembers it.
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct LastSigned {
        /// The chain.
        pub chain_id: Checksum256,
        /// The producer.
        pub producer: Name,
        /// The key.
        pub key: PublicKey,
        /// The block number signed.
        pub block_num: u32,
        /// The block's slot.
        pub timestamp: BlockTimestamp,
        /// The digest signed.
        pub digest: Checksum256,
    }
}

crate::packed_struct! {
    /// The signer's state (tag 2 of [`Response`]).
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct StatusResponse {
        /// The request's id.
        pub request_id: u64,
        /// Whether signing is paused by an administrator.
        pub paused: bool,
        /// Signatures handed out since start.
        pub signatures: u64,
        /// Requests refused since start (double-sign, wrong chain, …).
        pub refusals: u64,
        /// The last block signed per (chain, producer, key).
        pub last_signed: Vec<LastSigned>,
        /// The WireGuard peers' health as last read (empty without a tunnel).
        pub tunnel: Vec<TunnelPeer>,
    }
}

crate::packed_struct! {
    /// One WireGuard peer of the signer's tunnel, as the signer last read its counters.
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct TunnelPeer {
        /// The peer's tunnel address.
        pub address: String,
        /// The peer's WireGuard public key (base64).
        pub public_key: String,
        /// Unix time (seconds) of the last handshake; 0 when none happened or none is known.
        pub last_handshake: u64,
        /// Bytes received from the peer.
        pub rx_bytes: u64,
        /// Bytes sent to the peer.
        pub tx_bytes: u64,
        /// The handshake is older than the signer's stale threshold, or never happened.
        pub stale: bool,
        /// Why the counters could not be read, if they could not (empty when they were).
        pub error: String,
    }
}

/// Why the signer refused or failed a request (a `u16` on the wire).
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug)]
pub enum ErrorCode {
    /// The request did not decode. Fix the client.
    Malformed = 1,
    /// The frame's protocol version is not supported. Align the releases.
    UnsupportedVersion = 2,
    /// The signer does not serve this chain id. Check both configurations.
    WrongChain = 3,
    /// Signing would contradict an earlier signature (same or lower block or slot, another
    /// digest). Never retry; investigate.
    DoubleSign = 4,
    /// The block's slot is too far from the signer's clock. Check NTP on both hosts.
    ClockSkew = 5,
    /// The signer has no such key, or it does not belong to the header's producer.
    UnknownKey = 6,
    /// An administrator paused signing.
    Paused = 7,
    /// The key backend (HSM, YubiKey) failed. Retrying may help; check the signer's log.
    Backend = 8,
    /// The signer is at capacity. Retry later.
    Busy = 9,
    /// The admin command lacks valid approvals, or the peer may not make this request.
    Unauthorized = 10,
    /// A bug or an unexpected state in the signer; see its log.
    Internal = 11,
}

impl ErrorCode {
    const ALL: [ErrorCode; 11] = [
        ErrorCode::Malformed,
        ErrorCode::UnsupportedVersion,
        ErrorCode::WrongChain,
        ErrorCode::DoubleSign,
        ErrorCode::ClockSkew,
        ErrorCode::UnknownKey,
        ErrorCode::Paused,
        ErrorCode::Backend,
        ErrorCode::Busy,
        ErrorCode::Unauthorized,
        ErrorCode::Internal,
    ];

    /// The wire value.
    pub fn code(self) -> u16 {
        self as u16
    }

    /// The code with wire value `code`.
    pub fn from_code(code: u16) -> Option<Self> {
        Self::ALL.into_iter().find(|c| c.code() == code)
    }

    /// A short snake_case name for logs and metrics.
    pub fn as_str(self) -> &'static str {
        match self {
            ErrorCode::Malformed => "malformed",
            ErrorCode::UnsupportedVersion => "unsupported_version",
            ErrorCode::WrongChain => "wrong_chain",
            ErrorCode::DoubleSign => "double_sign",
            ErrorCode::ClockSkew => "clock_skew",
            ErrorCode::UnknownKey => "unknown_key",
            ErrorCode::Paused => "paused",
            ErrorCode::Backend => "backend",
            ErrorCode::Busy => "busy",
            ErrorCode::Unauthorized => "unauthorized",
            ErrorCode::Internal => "internal",
        }
    }
}

impl std::fmt::Display for ErrorCode {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(self.as_str())
    }
}

impl Pack for ErrorCode {
    fn pack(&self, out: &mut Vec<u8>) {
        self.code().pack(out);
    }
}

impl Unpack for ErrorCode {
    const MIN_SIZE: usize = 2;

    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let code = u16::unpack(r)?;
        Self::from_code(code).ok_or(DecodeError::UnknownTag {
            what: "error code",
            tag: u64::from(code),
            at,
        })
    }
}

crate::packed_struct! {
    /// A refusal or failure (tag 3 of [`Response`]).
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct ErrorResponse {
        /// The request's id (0 when the request could not be decoded).
        pub request_id: u64,
        /// What kind of failure.
        pub code: ErrorCode,
        /// Details for the operator; never secret material.
        pub message: String,
    }
}

crate::packed_struct! {
    /// The result of an administrative command (tag 4 of [`Response`]).
    #[derive(Clone, PartialEq, Eq, Debug)]
    pub struct AdminResponse {
        /// The request's id.
        pub request_id: u64,
        /// The packed [`crate::admin::AdminOutcome`].
        pub result: Bytes,
    }
}

/// What the signer answers.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum Response {
    /// A block signature (tag 0).
    Signature(SignBlockResponse),
    /// The producer keys the signer holds (tag 1).
    PublicKeys {
        /// The request's id.
        request_id: u64,
        /// Each producer with a key it may sign with.
        keys: Vec<ProducerKey>,
    },
    /// The signer's state (tag 2).
    Status(StatusResponse),
    /// A refusal or failure (tag 3).
    Error(ErrorResponse),
    /// An administrative result (tag 4).
    Admin(AdminResponse),
}

impl Response {
    /// The id of the request this answers.
    pub fn request_id(&self) -> u64 {
        match self {
            Response::Signature(r) => r.request_id,
            Response::PublicKeys { request_id, .. } => *request_id,
            Response::Status(r) => r.request_id,
            Response::Error(r) => r.request_id,
            Response::Admin(r) => r.request_id,
        }
    }
}

impl Pack for Response {
    fn pack(&self, out: &mut Vec<u8>) {
        match self {
            Response::Signature(r) => {
                tag(out, 0);
                r.pack(out);
            }
            Response::PublicKeys { request_id, keys } => {
                tag(out, 1);
                request_id.pack(out);
                keys.pack(out);
            }
            Response::Status(r) => {
                tag(out, 2);
                r.pack(out);
            }
            Response::Error(r) => {
                tag(out, 3);
                r.pack(out);
            }
            Response::Admin(r) => {
                tag(out, 4);
                r.pack(out);
            }
        }
    }
}

impl Unpack for Response {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        match r.read_varuint32()? {
            0 => field(r, "signature").map(Response::Signature),
            1 => Ok(Response::PublicKeys {
                request_id: field(r, "request_id")?,
                keys: field(r, "keys")?,
            }),
            2 => field(r, "status").map(Response::Status),
            3 => field(r, "error").map(Response::Error),
            4 => field(r, "admin").map(Response::Admin),
            t => Err(DecodeError::UnknownTag { what: "response", tag: u64::from(t), at }),
        }
    }
}

impl Message for Response {
    const NAME: &'static str = "response";
}

#[cfg(test)]
mod tests;
