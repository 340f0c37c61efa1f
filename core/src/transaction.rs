//! Antelope transactions: actions, the transaction header with its TaPoS fields, signed and
//! packed transactions, their ids and signing digests, and the bounded inflation of zlib-packed
//! transactions.
//!
//! Layouts are exactly those of Antelope's `FC_REFLECT` declarations, so ids and digests match
//! nodeos byte for byte. Ids and digests are always computed over the *re-packed* transaction,
//! as nodeos does, never over bytes a client sent.
//!
//! What must never happen here: a compressed transaction (a zlib bomb) making us allocate more
//! than [`UnpackLimits::max_inflated_bytes`], a decoder accepting trailing bytes, or a panic on
//! anything a client sent.

use std::io::Read;

use serde::{Deserialize, Serialize};

use crate::checksum::Checksum256;
use crate::codec::{self, Bytes, DecodeError, Pack, Reader, Unpack, VarUint32};
use crate::key::{KeyError, PrivateKey, PublicKey, Signature};
use crate::name::Name;
use crate::time::TimePointSec;

/// Default bound on the inflated size of a zlib-compressed `packed_trx` or
/// `packed_context_free_data`: 512 KiB, half of nodeos's own 1 MiB bound and far above any
/// transaction a 30 ms CPU budget can execute.
pub const DEFAULT_MAX_INFLATED_BYTES: usize = 512 * 1024;

/// Why a transaction could not be decoded, inflated or verified.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum TransactionError {
    /// The bytes of `what` do not decode as Antelope's layout; `source` names the field path.
    #[error(
        "{what} is malformed: {source}; the client must send a transaction packed as nodeos packs it"
    )]
    Decode {
        /// The part being decoded (`packed_trx`, `packed_context_free_data`, …).
        what: &'static str,
        /// The decoder's error, with the field path.
        #[source]
        source: DecodeError,
    },
    /// Inflating `what` produced more than the configured bound. Nothing beyond the bound was
    /// kept in memory.
    #[error(
        "{what} inflates to more than {limit} bytes and was refused; raise max_inflated_bytes only if legitimate transactions are this large"
    )]
    InflateTooLarge {
        /// The part being inflated.
        what: &'static str,
        /// The bound in force, in bytes.
        limit: usize,
    },
    /// `what` is marked zlib-compressed but is not a complete, valid zlib stream.
    #[error("{what} is marked zlib-compressed but is not a valid zlib stream: {reason}")]
    BadZlib {
        /// The part being inflated.
        what: &'static str,
        /// What the inflater reported.
        reason: String,
    },
    /// Bytes follow the end of the zlib stream of `what`.
    #[error("{what} has {count} bytes after the end of its zlib stream; send exactly one stream")]
    TrailingCompressed {
        /// The part being inflated.
        what: &'static str,
        /// How many bytes followed the stream.
        count: usize,
    },
    /// A compression value other than 0/`none` and 1/`zlib`.
    #[error("unknown compression {value:?}; use 0 (\"none\") or 1 (\"zlib\")")]
    BadCompression {
        /// The value received.
        value: String,
    },
    /// A signature from which no public key can be recovered.
    #[error("signature {index} is invalid: {source}")]
    Signature {
        /// Position of the signature in the transaction.
        index: usize,
        /// Why recovery failed.
        #[source]
        source: KeyError,
    },
    /// Two signatures recover the same key, which nodeos refuses (`tx_duplicate_sig`).
    #[error("signatures {first} and {second} were both made by {key}; sign once per key")]
    DuplicateSignature {
        /// Position of the first signature by the key.
        first: usize,
        /// Position of the repeated one.
        second: usize,
        /// The key that signed twice.
        key: PublicKey,
    },
}

crate::packed_struct! {
    /// An account and one of its permissions (`permission_level`): who authorises an action.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
    pub struct PermissionLevel {
        /// The authorising account.
        pub actor: Name,
        /// Its permission, usually `active` or `owner`.
        pub permission: Name,
    }
}

crate::packed_struct! {
    /// One call of a contract action, with its data still packed (the ABI decodes it).
    #[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
    pub struct Action {
        /// The contract account.
        pub account: Name,
        /// The action name.
        pub name: Name,
        /// The authorisations it carries.
        pub authorization: Vec<PermissionLevel>,
        /// The packed action arguments (hex in JSON).
        pub data: Bytes,
    }
}

/// An extension: a type tag and its packed payload (`std::pair<uint16_t, vector<char>>`).
/// In JSON it is `[tag, "hex"]`, as fc writes a pair.
pub type Extension = (u16, Bytes);

crate::packed_struct! {
    /// The fields every transaction starts with (`transaction_header`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
    pub struct TransactionHeader {
        /// The transaction is invalid after this time.
        pub expiration: TimePointSec,
        /// Low 16 bits of the reference block's number (TaPoS).
        pub ref_block_num: u16,
        /// Bytes 8..12 of the reference block's id, little-endian (TaPoS).
        pub ref_block_prefix: u32,
        /// Upper bound on NET usage in 8-byte words; 0 means the chain's limit.
        #[serde(default, with = "varuint32_serde")]
        pub max_net_usage_words: VarUint32,
        /// Upper bound on CPU usage in ms; 0 means the chain's limit.
        #[serde(default)]
        pub max_cpu_usage_ms: u8,
        /// Seconds to delay execution.
        #[serde(default, with = "varuint32_serde")]
        pub delay_sec: VarUint32,
    }
}

/// Low 16 bits of the block number carried in a block id: the `ref_block_num` of a transaction
/// that references that block.
pub fn ref_block_num(block_id: &Checksum256) -> u16 {
    // The block number is the big-endian u32 in bytes 0..4; its low 16 bits are bytes 2..4.
    u16::from_be_bytes([block_id.0[2], block_id.0[3]])
}

/// Bytes 8..12 of a block id read little-endian: the `ref_block_prefix` of a transaction that
/// references that block.
pub fn ref_block_prefix(block_id: &Checksum256) -> u32 {
    u32::from_le_bytes([block_id.0[8], block_id.0[9], block_id.0[10], block_id.0[11]])
}

impl TransactionHeader {
    /// Points the TaPoS fields at the block `block_id`.
    pub fn set_reference_block(&mut self, block_id: &Checksum256) {
        self.ref_block_num = ref_block_num(block_id);
        self.ref_block_prefix = ref_block_prefix(block_id);
    }

    /// Whether the TaPoS fields reference the block `block_id`.
    pub fn verify_reference_block(&self, block_id: &Checksum256) -> bool {
        self.ref_block_num == ref_block_num(block_id)
            && self.ref_block_prefix == ref_block_prefix(block_id)
    }
}

crate::packed_struct! {
    /// An unsigned transaction: the header, then the actions (`transaction`). In JSON the header
    /// fields sit at the top level, as nodeos writes them.
    #[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
    pub struct Transaction {
        /// Expiration, TaPoS and resource limits.
        #[serde(flatten)]
        pub header: TransactionHeader,
        /// Actions that run without authorisation or state access.
        #[serde(default)]
        pub context_free_actions: Vec<Action>,
        /// The actions.
        #[serde(default)]
        pub actions: Vec<Action>,
        /// Extensions; none are defined for transactions in the chains we serve.
        #[serde(default)]
        pub transaction_extensions: Vec<Extension>,
    }
}

impl Transaction {
    /// The transaction id: sha256 of the packed transaction.
    pub fn id(&self) -> Checksum256 {
        Checksum256::hash_packed(self)
    }

    /// The digest each signature signs: sha256(chain_id ‖ packed transaction ‖ cfd hash), where
    /// the cfd hash is 32 zero bytes when `context_free_data` is empty and otherwise the sha256
    /// of the packed `context_free_data` vector (Antelope's `transaction::sig_digest`).
    pub fn signing_digest(
        &self,
        chain_id: &Checksum256,
        context_free_data: &[Bytes],
    ) -> Checksum256 {
        let cfd_hash = if context_free_data.is_empty() {
            Checksum256::ZERO
        } else {
            Checksum256::hash_packed(context_free_data)
        };
        Checksum256::hash_parts(&[chain_id.as_ref(), &codec::to_bytes(self), cfd_hash.as_ref()])
    }

    /// Points the TaPoS fields at the block `block_id`.
    pub fn set_reference_block(&mut self, block_id: &Checksum256) {
        self.header.set_reference_block(block_id);
    }

    /// Whether the TaPoS fields reference the block `block_id`.
    pub fn verify_reference_block(&self, block_id: &Checksum256) -> bool {
        self.header.verify_reference_block(block_id)
    }
}

crate::packed_struct! {
    /// A transaction with its signatures and context-free data (`signed_transaction`). In JSON
    /// the transaction's fields sit at the top level, as nodeos writes them.
    #[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
    pub struct SignedTransaction {
        /// The transaction.
        #[serde(flatten)]
        pub transaction: Transaction,
        /// Its signatures.
        #[serde(default)]
        pub signatures: Vec<Signature>,
        /// Data for the context-free actions, committed to by the signing digest.
        #[serde(default)]
        pub context_free_data: Vec<Bytes>,
    }
}

impl SignedTransaction {
    /// An unsigned transaction with no context-free data.
    pub fn new(transaction: Transaction) -> Self {
        SignedTransaction { transaction, signatures: Vec::new(), context_free_data: Vec::new() }
    }

    /// The digest the signatures sign on chain `chain_id`.
    pub fn signing_digest(&self, chain_id: &Checksum256) -> Checksum256 {
        self.transaction.signing_digest(chain_id, &self.context_free_data)
    }

    /// Signs for chain `chain_id` with `key` and appends the signature.
    pub fn sign(&mut self, key: &PrivateKey, chain_id: &Checksum256) {
        let digest = self.signing_digest(chain_id);
        self.signatures.push(key.sign(&digest));
    }

    /// The keys that made the signatures, in order. A signature that recovers no key, or two
    /// signatures by the same key, is an error (nodeos refuses both).
    pub fn recover_keys(&self, chain_id: &Checksum256) -> Result<Vec<PublicKey>, TransactionError> {
        recover_keys(&self.signatures, &self.signing_digest(chain_id))
    }
}

fn recover_keys(
    signatures: &[Signature],
    digest: &Checksum256,
) -> Result<Vec<PublicKey>, TransactionError> {
    let mut keys: Vec<PublicKey> = Vec::with_capacity(signatures.len());
    for (index, sig) in signatures.iter().enumerate() {
        let key =
            sig.recover(digest).map_err(|source| TransactionError::Signature { index, source })?;
        if let Some(first) = keys.iter().position(|k| *k == key) {
            return Err(TransactionError::DuplicateSignature { first, second: index, key });
        }
        keys.push(key);
    }
    Ok(keys)
}

/// How `packed_trx` and `packed_context_free_data` are encoded (`compression_type`, one byte on
/// the wire).
///
/// JSON: nodeos writes the names `"none"` and `"zlib"` (as in `get_block`), and that is what we
/// write; clients send any of `0`, `1`, `false`, `true`, `"none"` or `"zlib"` to
/// `push_transaction` and `send_transaction`, and all six are accepted.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum Compression {
    /// The bytes are the packed value itself.
    #[default]
    None = 0,
    /// The bytes are a zlib stream of the packed value.
    Zlib = 1,
}

impl Compression {
    /// The name nodeos writes in JSON: `none` or `zlib`.
    pub fn as_str(self) -> &'static str {
        match self {
            Compression::None => "none",
            Compression::Zlib => "zlib",
        }
    }

    /// The wire byte.
    pub fn tag(self) -> u8 {
        self as u8
    }
}

impl TryFrom<u8> for Compression {
    type Error = TransactionError;
    fn try_from(value: u8) -> Result<Self, Self::Error> {
        match value {
            0 => Ok(Compression::None),
            1 => Ok(Compression::Zlib),
            other => Err(TransactionError::BadCompression { value: other.to_string() }),
        }
    }
}

impl std::str::FromStr for Compression {
    type Err = TransactionError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        match s {
            "none" | "0" => Ok(Compression::None),
            "zlib" | "1" => Ok(Compression::Zlib),
            other => {
                Err(TransactionError::BadCompression { value: other.chars().take(40).collect() })
            }
        }
    }
}

impl Pack for Compression {
    fn pack(&self, out: &mut Vec<u8>) {
        out.push(self.tag());
    }
}

impl Unpack for Compression {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let tag = r.read_u8()?;
        Compression::try_from(tag).map_err(|_| DecodeError::UnknownTag {
            what: "compression",
            tag: u64::from(tag),
            at,
        })
    }
}

impl Serialize for Compression {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for Compression {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = Compression;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("0, 1, false, true, \"none\" or \"zlib\"")
            }
            fn visit_bool<E: serde::de::Error>(self, v: bool) -> Result<Compression, E> {
                Ok(if v { Compression::Zlib } else { Compression::None })
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<Compression, E> {
                match v {
                    0 => Ok(Compression::None),
                    1 => Ok(Compression::Zlib),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Unsigned(v), &self)),
                }
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<Compression, E> {
                match u64::try_from(v) {
                    Ok(u) => self.visit_u64(u),
                    Err(_) => Err(E::invalid_value(serde::de::Unexpected::Signed(v), &self)),
                }
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<Compression, E> {
                match v {
                    "none" => Ok(Compression::None),
                    "zlib" => Ok(Compression::Zlib),
                    _ => Err(E::invalid_value(serde::de::Unexpected::Str(v), &self)),
                }
            }
        }
        d.deserialize_any(V)
    }
}

/// Bounds applied when a packed transaction is opened.
#[derive(Clone, Copy, PartialEq, Eq, Debug)]
pub struct UnpackLimits {
    /// Largest inflated size, in bytes, of a zlib-compressed `packed_trx` or
    /// `packed_context_free_data`. Inflation stops one byte past it.
    pub max_inflated_bytes: usize,
}

impl Default for UnpackLimits {
    fn default() -> Self {
        UnpackLimits { max_inflated_bytes: DEFAULT_MAX_INFLATED_BYTES }
    }
}

crate::packed_struct! {
    /// A signed transaction as clients send it and blocks carry it (`packed_transaction`): the
    /// transaction and its context-free data stay packed, possibly zlib-compressed.
    ///
    /// In JSON this is the `push_transaction` body `{signatures, compression,
    /// packed_context_free_data, packed_trx}` with hex byte strings; see [`Compression`] for the
    /// forms of `compression`. Extra fields (nodeos's `id`, `transaction`, …) are ignored.
    #[derive(Clone, PartialEq, Eq, Debug, Default, Serialize, Deserialize)]
    pub struct PackedTransaction {
        /// The signatures.
        #[serde(default)]
        pub signatures: Vec<Signature>,
        /// How the two byte strings below are encoded.
        #[serde(default)]
        pub compression: Compression,
        /// The packed `vector<bytes>` of context-free data; empty when there is none.
        #[serde(default)]
        pub packed_context_free_data: Bytes,
        /// The packed transaction.
        pub packed_trx: Bytes,
    }
}

impl PackedTransaction {
    /// Packs `trx`, compressing both parts when `compression` is [`Compression::Zlib`]. Empty
    /// context-free data packs to no bytes at all, as in nodeos.
    pub fn from_signed(trx: &SignedTransaction, compression: Compression) -> Self {
        let packed_trx = codec::to_bytes(&trx.transaction);
        let packed_cfd = if trx.context_free_data.is_empty() {
            Vec::new()
        } else {
            codec::to_bytes(&trx.context_free_data)
        };
        let (packed_trx, packed_cfd) = match compression {
            Compression::None => (packed_trx, packed_cfd),
            Compression::Zlib => {
                let cfd = if packed_cfd.is_empty() { packed_cfd } else { deflate(&packed_cfd) };
                (deflate(&packed_trx), cfd)
            }
        };
        PackedTransaction {
            signatures: trx.signatures.clone(),
            compression,
            packed_context_free_data: Bytes(packed_cfd),
            packed_trx: Bytes(packed_trx),
        }
    }

    /// The transaction, inflated within `limits` and decoded; trailing bytes are an error.
    pub fn unpack_transaction(
        &self,
        limits: &UnpackLimits,
    ) -> Result<Transaction, TransactionError> {
        const WHAT: &str = "packed_trx";
        let raw = self.open(&self.packed_trx.0, WHAT, limits)?;
        codec::from_bytes(&raw).map_err(|source| TransactionError::Decode { what: WHAT, source })
    }

    /// The context-free data, inflated within `limits` and decoded; no bytes means none.
    pub fn context_free_data(&self, limits: &UnpackLimits) -> Result<Vec<Bytes>, TransactionError> {
        const WHAT: &str = "packed_context_free_data";
        if self.packed_context_free_data.0.is_empty() {
            return Ok(Vec::new());
        }
        let raw = self.open(&self.packed_context_free_data.0, WHAT, limits)?;
        codec::from_bytes(&raw).map_err(|source| TransactionError::Decode { what: WHAT, source })
    }

    /// The whole signed transaction. Open it once with this and use the [`SignedTransaction`]
    /// methods when more than one of id, digest and keys is needed.
    pub fn to_signed(&self, limits: &UnpackLimits) -> Result<SignedTransaction, TransactionError> {
        Ok(SignedTransaction {
            transaction: self.unpack_transaction(limits)?,
            signatures: self.signatures.clone(),
            context_free_data: self.context_free_data(limits)?,
        })
    }

    /// The transaction id (of the re-packed transaction, as nodeos computes it).
    pub fn id(&self, limits: &UnpackLimits) -> Result<Checksum256, TransactionError> {
        Ok(self.unpack_transaction(limits)?.id())
    }

    /// The digest the signatures sign on chain `chain_id`.
    pub fn signing_digest(
        &self,
        chain_id: &Checksum256,
        limits: &UnpackLimits,
    ) -> Result<Checksum256, TransactionError> {
        Ok(self.to_signed(limits)?.signing_digest(chain_id))
    }

    /// The keys that made the signatures, in order; see [`SignedTransaction::recover_keys`].
    pub fn recover_keys(
        &self,
        chain_id: &Checksum256,
        limits: &UnpackLimits,
    ) -> Result<Vec<PublicKey>, TransactionError> {
        self.to_signed(limits)?.recover_keys(chain_id)
    }

    fn open<'a>(
        &self,
        data: &'a [u8],
        what: &'static str,
        limits: &UnpackLimits,
    ) -> Result<std::borrow::Cow<'a, [u8]>, TransactionError> {
        match self.compression {
            Compression::None => Ok(std::borrow::Cow::Borrowed(data)),
            Compression::Zlib => {
                inflate_bounded(data, what, limits.max_inflated_bytes).map(std::borrow::Cow::Owned)
            }
        }
    }
}

/// zlib-compresses `data` at the best level, as nodeos does.
fn deflate(data: &[u8]) -> Vec<u8> {
    use std::io::Write;
    let mut enc = flate2::write::ZlibEncoder::new(Vec::new(), flate2::Compression::best());
    // Writing into a Vec<u8> cannot fail: the only errors would come from the sink.
    enc.write_all(data).expect("zlib into a Vec cannot fail");
    enc.finish().expect("zlib into a Vec cannot fail")
}

/// Inflates one zlib stream, refusing output beyond `limit` bytes (the inflater is read through
/// `take(limit + 1)` and the buffer never grows past `limit`) and bytes after the stream.
fn inflate_bounded(
    data: &[u8],
    what: &'static str,
    limit: usize,
) -> Result<Vec<u8>, TransactionError> {
    let cap = u64::try_from(limit).unwrap_or(u64::MAX).saturating_add(1);
    let mut reader = flate2::bufread::ZlibDecoder::new(data).take(cap);
    let mut out: Vec<u8> = Vec::new();
    let mut chunk = [0u8; 16 * 1024];
    loop {
        let n = match reader.read(&mut chunk) {
            Ok(0) => break,
            Ok(n) => n,
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => continue,
            Err(e) => return Err(TransactionError::BadZlib { what, reason: e.to_string() }),
        };
        let len = out.len() + n;
        if len > limit {
            return Err(TransactionError::InflateTooLarge { what, limit });
        }
        if out.capacity() < len {
            // Grow geometrically but never past the bound.
            let want = len.max(out.capacity().saturating_mul(2)).min(limit);
            out.reserve_exact(want - out.len());
        }
        out.extend_from_slice(&chunk[..n]);
    }
    let consumed = reader.into_inner().total_in();
    let consumed = usize::try_from(consumed).unwrap_or(usize::MAX);
    if consumed < data.len() {
        return Err(TransactionError::TrailingCompressed { what, count: data.len() - consumed });
    }
    Ok(out)
}

/// serde for [`VarUint32`] as a plain JSON number, as nodeos writes `fc::unsigned_int`.
pub(crate) mod varuint32_serde {
    use serde::{Deserialize, Deserializer, Serializer};

    use crate::codec::VarUint32;

    pub(crate) fn serialize<S: Serializer>(v: &VarUint32, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_u32(v.0)
    }

    pub(crate) fn deserialize<'de, D: Deserializer<'de>>(d: D) -> Result<VarUint32, D::Error> {
        u32::deserialize(d).map(VarUint32)
    }
}

#[cfg(test)]
mod tests;
