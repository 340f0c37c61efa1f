//! Antelope blocks: headers with their ids and signing digests, producer schedules (legacy and
//! weighted-authority), transaction receipts, signed blocks, and the two merkle constructions
//! nodeos uses (`merkle()` over a list and the incremental merkle of block ids).
//!
//! Layouts are exactly those of Antelope's `FC_REFLECT` declarations (pre-Savanna, legacy
//! consensus), so ids and digests match nodeos byte for byte. Variant tags are `varuint32`, as
//! fc writes a `std::variant`.
//!
//! What must never happen here: a decoder accepting an unknown variant tag or an inconsistent
//! incremental merkle, a panic on hostile bytes, or a signing digest that differs from what
//! nodeos's `block_header_state::sig_digest` computes.

use serde::{Deserialize, Serialize};

use crate::checksum::Checksum256;
use crate::codec::{self, DecodeError, Pack, Reader, Unpack, VarUint32};
use crate::key::{KeyError, PublicKey, Signature};
use crate::name::Name;
use crate::time::BlockTimestamp;
use crate::transaction::{Extension, PackedTransaction, varuint32_serde};

/// The block number carried in a block id: the big-endian `u32` in bytes 0..4.
pub fn block_num_from_id(id: &Checksum256) -> u32 {
    u32::from_be_bytes([id.0[0], id.0[1], id.0[2], id.0[3]])
}

crate::packed_struct! {
    /// A producer and its single signing key (`producer_key`), as legacy schedules list them.
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
    pub struct ProducerKey {
        /// The producer account.
        pub producer_name: Name,
        /// The key its blocks are signed with.
        pub block_signing_key: PublicKey,
    }
}

crate::packed_struct! {
    /// A legacy producer schedule (`producer_schedule_type`), the form a block header's
    /// `new_producers` carries.
    #[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
    pub struct ProducerSchedule {
        /// Incremented each time the schedule changes.
        pub version: u32,
        /// The producers in slot order.
        pub producers: Vec<ProducerKey>,
    }
}

impl ProducerSchedule {
    /// sha256 of the packed schedule.
    pub fn schedule_hash(&self) -> Checksum256 {
        Checksum256::hash_packed(self)
    }
}

crate::packed_struct! {
    /// A key and its weight in a block signing authority (`key_weight`).
    #[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Debug, Serialize, Deserialize)]
    pub struct KeyWeight {
        /// The key.
        pub key: PublicKey,
        /// Its weight towards the threshold.
        pub weight: u16,
    }
}

/// Who may sign a producer's blocks (`block_signing_authority`, a `std::variant` whose only
/// alternative is `block_signing_authority_v0`, tag 0).
///
/// JSON is fc's form of a variant, `[0, {"threshold": …, "keys": […]}]`; the ABI form
/// `["block_signing_authority_v0", {…}]` is accepted too.
#[derive(Clone, PartialEq, Eq, Hash, Debug)]
pub enum BlockSigningAuthority {
    /// Keys with weights and a threshold (tag 0).
    V0 {
        /// Total weight of signing keys needed.
        threshold: u32,
        /// The keys.
        keys: Vec<KeyWeight>,
    },
}

const AUTHORITY: &str = "block_signing_authority";
const AUTHORITY_V0: &str = "block_signing_authority_v0";

impl BlockSigningAuthority {
    /// The weight needed.
    pub fn threshold(&self) -> u32 {
        match self {
            BlockSigningAuthority::V0 { threshold, .. } => *threshold,
        }
    }

    /// The keys and their weights.
    pub fn keys(&self) -> &[KeyWeight] {
        match self {
            BlockSigningAuthority::V0 { keys, .. } => keys,
        }
    }

    /// Whether signatures by `signers` reach the threshold. Each distinct key counts once. A
    /// threshold of 0, which nodeos never lets into a schedule, is never satisfied.
    pub fn is_satisfied_by(&self, signers: &[PublicKey]) -> bool {
        let threshold = self.threshold();
        let mut total: u64 = 0;
        let keys = self.keys();
        for (i, kw) in keys.iter().enumerate() {
            let repeated = keys[..i].iter().any(|k| k.key == kw.key);
            if !repeated && signers.contains(&kw.key) {
                total += u64::from(kw.weight);
            }
        }
        threshold > 0 && total >= u64::from(threshold)
    }
}

impl Pack for BlockSigningAuthority {
    fn pack(&self, out: &mut Vec<u8>) {
        match self {
            BlockSigningAuthority::V0 { threshold, keys } => {
                codec::write_varuint32(out, 0);
                threshold.pack(out);
                keys.pack(out);
            }
        }
    }
}

impl Unpack for BlockSigningAuthority {
    const MIN_SIZE: usize = 1 + 4 + 1;

    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        match r.read_varuint32()? {
            0 => Ok(BlockSigningAuthority::V0 {
                threshold: u32::unpack(r).map_err(|e| e.in_field("threshold"))?,
                keys: Vec::unpack(r).map_err(|e| e.in_field("keys"))?,
            }),
            tag => Err(DecodeError::UnknownTag { what: AUTHORITY, tag: u64::from(tag), at }),
        }
    }
}

/// The JSON object of `block_signing_authority_v0`.
#[derive(Serialize, Deserialize)]
struct AuthorityV0Json {
    threshold: u32,
    keys: Vec<KeyWeight>,
}

impl Serialize for BlockSigningAuthority {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            BlockSigningAuthority::V0 { threshold, keys } => {
                (0u32, AuthorityV0Json { threshold: *threshold, keys: keys.clone() }).serialize(s)
            }
        }
    }
}

impl<'de> Deserialize<'de> for BlockSigningAuthority {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let (tag, body) = <(VariantTag, AuthorityV0Json)>::deserialize(d)?;
        match tag.0 {
            0 => Ok(BlockSigningAuthority::V0 { threshold: body.threshold, keys: body.keys }),
            other => Err(serde::de::Error::custom(format!(
                "unknown {AUTHORITY} tag {other}; only 0 ({AUTHORITY_V0}) exists"
            ))),
        }
    }
}

/// A variant tag in JSON: a number, or the name `block_signing_authority_v0` (tag 0).
struct VariantTag(u64);

impl<'de> Deserialize<'de> for VariantTag {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = VariantTag;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("0 or \"block_signing_authority_v0\"")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<VariantTag, E> {
                Ok(VariantTag(v))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<VariantTag, E> {
                u64::try_from(v)
                    .map(VariantTag)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<VariantTag, E> {
                if v == AUTHORITY_V0 {
                    Ok(VariantTag(0))
                } else {
                    Err(E::invalid_value(serde::de::Unexpected::Str(v), &self))
                }
            }
        }
        d.deserialize_any(V)
    }
}

crate::packed_struct! {
    /// A producer and the authority that signs its blocks (`producer_authority`).
    #[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
    pub struct ProducerAuthority {
        /// The producer account.
        pub producer_name: Name,
        /// Who may sign its blocks.
        pub authority: BlockSigningAuthority,
    }
}

impl From<ProducerKey> for ProducerAuthority {
    /// A legacy entry as nodeos upgrades it: the one key with weight 1 and threshold 1.
    fn from(pk: ProducerKey) -> Self {
        ProducerAuthority {
            producer_name: pk.producer_name,
            authority: BlockSigningAuthority::V0 {
                threshold: 1,
                keys: vec![KeyWeight { key: pk.block_signing_key, weight: 1 }],
            },
        }
    }
}

crate::packed_struct! {
    /// A producer schedule with weighted signing authorities (`producer_authority_schedule`).
    #[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
    pub struct ProducerAuthoritySchedule {
        /// Incremented each time the schedule changes.
        pub version: u32,
        /// The producers in slot order.
        pub producers: Vec<ProducerAuthority>,
    }
}

impl ProducerAuthoritySchedule {
    /// sha256 of the packed schedule: the `schedule_hash` a pending schedule commits to.
    pub fn schedule_hash(&self) -> Checksum256 {
        Checksum256::hash_packed(self)
    }
}

impl From<ProducerSchedule> for ProducerAuthoritySchedule {
    fn from(s: ProducerSchedule) -> Self {
        ProducerAuthoritySchedule {
            version: s.version,
            producers: s.producers.into_iter().map(ProducerAuthority::from).collect(),
        }
    }
}

crate::packed_struct! {
    /// A block header (`block_header`).
    #[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
    pub struct BlockHeader {
        /// The block's slot.
        pub timestamp: BlockTimestamp,
        /// The producer of the slot.
        pub producer: Name,
        /// How many prior blocks this producer confirms.
        pub confirmed: u16,
        /// The previous block's id; its first four bytes give this block's number minus one.
        pub previous: Checksum256,
        /// Merkle root of the transaction receipts.
        pub transaction_mroot: Checksum256,
        /// Merkle root of the action receipts.
        pub action_mroot: Checksum256,
        /// Version of the active schedule that produced this block.
        pub schedule_version: u32,
        /// A proposed legacy schedule, when this block announces one.
        #[serde(default)]
        pub new_producers: Option<ProducerSchedule>,
        /// Header extensions.
        #[serde(default)]
        pub header_extensions: Vec<Extension>,
    }
}

impl BlockHeader {
    /// This block's number: one more than the number in `previous` (wrapping at `u32::MAX`, as
    /// nodeos's arithmetic does).
    pub fn block_num(&self) -> u32 {
        block_num_from_id(&self.previous).wrapping_add(1)
    }

    /// sha256 of the packed header.
    pub fn digest(&self) -> Checksum256 {
        Checksum256::hash_packed(self)
    }

    /// The block id: the digest with its first four bytes replaced by the big-endian block
    /// number.
    pub fn id(&self) -> Checksum256 {
        let mut id = self.digest();
        id.0[..4].copy_from_slice(&self.block_num().to_be_bytes());
        id
    }

    /// The digest a producer signs (nodeos's `block_header_state::sig_digest`):
    /// sha256(sha256(digest ‖ blockroot_merkle_root) ‖ pending_schedule_hash).
    pub fn signing_digest(
        &self,
        blockroot_merkle_root: &Checksum256,
        pending_schedule_hash: &Checksum256,
    ) -> Checksum256 {
        let header_bmroot =
            Checksum256::hash_parts(&[self.digest().as_ref(), blockroot_merkle_root.as_ref()]);
        Checksum256::hash_parts(&[header_bmroot.as_ref(), pending_schedule_hash.as_ref()])
    }
}

crate::packed_struct! {
    /// A block header with the producer's signature (`signed_block_header`). In JSON the
    /// header's fields sit at the top level, as nodeos writes them.
    #[derive(Clone, PartialEq, Eq, Hash, Debug, Serialize, Deserialize)]
    pub struct SignedBlockHeader {
        /// The header.
        #[serde(flatten)]
        pub header: BlockHeader,
        /// The producer's signature over [`BlockHeader::signing_digest`].
        pub producer_signature: Signature,
    }
}

impl SignedBlockHeader {
    /// The block id.
    pub fn id(&self) -> Checksum256 {
        self.header.id()
    }

    /// The block number.
    pub fn block_num(&self) -> u32 {
        self.header.block_num()
    }

    /// The key that made `producer_signature`, given what the signing digest commits to.
    pub fn recover_producer_key(
        &self,
        blockroot_merkle_root: &Checksum256,
        pending_schedule_hash: &Checksum256,
    ) -> Result<PublicKey, KeyError> {
        self.producer_signature
            .recover(&self.header.signing_digest(blockroot_merkle_root, pending_schedule_hash))
    }
}

/// What became of a transaction in a block (`transaction_receipt_header::status_enum`, one
/// byte on the wire). JSON uses nodeos's names (`executed`, `soft_fail`, …); numbers are
/// accepted too.
#[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default)]
pub enum TransactionStatus {
    /// Succeeded; no error handler ran.
    #[default]
    Executed = 0,
    /// Failed objectively, the error handler succeeded.
    SoftFail = 1,
    /// Failed objectively and the error handler failed too.
    HardFail = 2,
    /// Scheduled for later execution.
    Delayed = 3,
    /// Expired, with its CPU and NET refunded.
    Expired = 4,
}

impl TransactionStatus {
    const ALL: [TransactionStatus; 5] = [
        TransactionStatus::Executed,
        TransactionStatus::SoftFail,
        TransactionStatus::HardFail,
        TransactionStatus::Delayed,
        TransactionStatus::Expired,
    ];

    /// The name nodeos writes in JSON.
    pub fn as_str(self) -> &'static str {
        match self {
            TransactionStatus::Executed => "executed",
            TransactionStatus::SoftFail => "soft_fail",
            TransactionStatus::HardFail => "hard_fail",
            TransactionStatus::Delayed => "delayed",
            TransactionStatus::Expired => "expired",
        }
    }

    /// The status with wire byte `tag`.
    pub fn from_tag(tag: u8) -> Option<Self> {
        Self::ALL.get(usize::from(tag)).copied()
    }
}

impl Pack for TransactionStatus {
    fn pack(&self, out: &mut Vec<u8>) {
        out.push(*self as u8);
    }
}

impl Unpack for TransactionStatus {
    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let tag = r.read_u8()?;
        Self::from_tag(tag).ok_or(DecodeError::UnknownTag {
            what: "transaction status",
            tag: u64::from(tag),
            at,
        })
    }
}

impl Serialize for TransactionStatus {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.serialize_str(self.as_str())
    }
}

impl<'de> Deserialize<'de> for TransactionStatus {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        struct V;
        impl serde::de::Visitor<'_> for V {
            type Value = TransactionStatus;
            fn expecting(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
                f.write_str("executed, soft_fail, hard_fail, delayed, expired or 0..=4")
            }
            fn visit_u64<E: serde::de::Error>(self, v: u64) -> Result<TransactionStatus, E> {
                u8::try_from(v)
                    .ok()
                    .and_then(TransactionStatus::from_tag)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Unsigned(v), &self))
            }
            fn visit_i64<E: serde::de::Error>(self, v: i64) -> Result<TransactionStatus, E> {
                u64::try_from(v)
                    .map_err(|_| E::invalid_value(serde::de::Unexpected::Signed(v), &self))
                    .and_then(|u| self.visit_u64(u))
            }
            fn visit_str<E: serde::de::Error>(self, v: &str) -> Result<TransactionStatus, E> {
                TransactionStatus::ALL
                    .into_iter()
                    .find(|s| s.as_str() == v)
                    .ok_or_else(|| E::invalid_value(serde::de::Unexpected::Str(v), &self))
            }
        }
        d.deserialize_any(V)
    }
}

crate::packed_struct! {
    /// Status and resource usage of a transaction in a block (`transaction_receipt_header`).
    #[derive(Clone, Copy, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
    pub struct TransactionReceiptHeader {
        /// What became of the transaction.
        pub status: TransactionStatus,
        /// CPU billed, in microseconds.
        pub cpu_usage_us: u32,
        /// NET billed, in 8-byte words.
        #[serde(with = "varuint32_serde")]
        pub net_usage_words: VarUint32,
    }
}

/// The transaction a receipt refers to (`std::variant<transaction_id_type,
/// packed_transaction>`, `varuint32` tag).
///
/// JSON follows nodeos's `get_block`: the id as a hex string or the packed transaction as an
/// object, without the tag; fc's `[tag, value]` form is accepted as well.
#[derive(Clone, PartialEq, Eq, Debug)]
pub enum TransactionVariant {
    /// Only the id (tag 0): deferred and `onerror` transactions.
    Id(Checksum256),
    /// The whole packed transaction (tag 1).
    Packed(PackedTransaction),
}

impl TransactionVariant {
    /// The id when the receipt carries only the id.
    pub fn as_id(&self) -> Option<&Checksum256> {
        match self {
            TransactionVariant::Id(id) => Some(id),
            TransactionVariant::Packed(_) => None,
        }
    }

    /// The packed transaction when the receipt carries it.
    pub fn as_packed(&self) -> Option<&PackedTransaction> {
        match self {
            TransactionVariant::Id(_) => None,
            TransactionVariant::Packed(p) => Some(p),
        }
    }
}

impl Pack for TransactionVariant {
    fn pack(&self, out: &mut Vec<u8>) {
        match self {
            TransactionVariant::Id(id) => {
                codec::write_varuint32(out, 0);
                id.pack(out);
            }
            TransactionVariant::Packed(p) => {
                codec::write_varuint32(out, 1);
                p.pack(out);
            }
        }
    }
}

impl Unpack for TransactionVariant {
    const MIN_SIZE: usize = 1 + 4;

    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        match r.read_varuint32()? {
            0 => Checksum256::unpack(r).map(TransactionVariant::Id).map_err(|e| e.in_field("id")),
            1 => PackedTransaction::unpack(r)
                .map(TransactionVariant::Packed)
                .map_err(|e| e.in_field("packed_transaction")),
            tag => Err(DecodeError::UnknownTag {
                what: "transaction receipt variant",
                tag: u64::from(tag),
                at,
            }),
        }
    }
}

impl Serialize for TransactionVariant {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        match self {
            TransactionVariant::Id(id) => id.serialize(s),
            TransactionVariant::Packed(p) => p.serialize(s),
        }
    }
}

impl<'de> Deserialize<'de> for TransactionVariant {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        #[derive(Deserialize)]
        #[serde(untagged)]
        enum Repr {
            Id(Checksum256),
            Packed(PackedTransaction),
            Tagged(u64, serde_json::Value),
        }
        use serde::de::Error;
        match Repr::deserialize(d)? {
            Repr::Id(id) => Ok(TransactionVariant::Id(id)),
            Repr::Packed(p) => Ok(TransactionVariant::Packed(p)),
            Repr::Tagged(0, v) => {
                serde_json::from_value(v).map(TransactionVariant::Id).map_err(D::Error::custom)
            }
            Repr::Tagged(1, v) => {
                serde_json::from_value(v).map(TransactionVariant::Packed).map_err(D::Error::custom)
            }
            Repr::Tagged(tag, _) => Err(D::Error::custom(format!(
                "unknown transaction receipt variant tag {tag}; expected 0 (id) or 1 (packed)"
            ))),
        }
    }
}

crate::packed_struct! {
    /// A transaction as a block records it (`transaction_receipt`). In JSON the header's
    /// fields sit at the top level, beside `trx`.
    #[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
    pub struct TransactionReceipt {
        /// Status and usage.
        #[serde(flatten)]
        pub header: TransactionReceiptHeader,
        /// The transaction or its id.
        pub trx: TransactionVariant,
    }
}

crate::packed_struct! {
    /// A whole block (`signed_block`). In JSON the signed header's fields sit at the top
    /// level, as nodeos writes them.
    #[derive(Clone, PartialEq, Eq, Debug, Serialize, Deserialize)]
    pub struct SignedBlock {
        /// The signed header.
        #[serde(flatten)]
        pub signed_header: SignedBlockHeader,
        /// The transaction receipts, in execution order.
        #[serde(default)]
        pub transactions: Vec<TransactionReceipt>,
        /// Block extensions.
        #[serde(default)]
        pub block_extensions: Vec<Extension>,
    }
}

impl SignedBlock {
    /// The block id.
    pub fn id(&self) -> Checksum256 {
        self.signed_header.id()
    }

    /// The block number.
    pub fn block_num(&self) -> u32 {
        self.signed_header.block_num()
    }
}

/// Clears the top bit of byte 0: the form of a left node in a canonical pair.
fn canonical_left(d: &Checksum256) -> Checksum256 {
    let mut c = *d;
    c.0[0] &= 0x7f;
    c
}

/// Sets the top bit of byte 0: the form of a right node in a canonical pair.
fn canonical_right(d: &Checksum256) -> Checksum256 {
    let mut c = *d;
    c.0[0] |= 0x80;
    c
}

/// sha256 of the canonical pair (left with the top bit cleared, right with it set), Antelope's
/// `digest_type::hash(make_canonical_pair(l, r))`.
pub fn canonical_pair_hash(left: &Checksum256, right: &Checksum256) -> Checksum256 {
    Checksum256::hash_parts(&[canonical_left(left).as_ref(), canonical_right(right).as_ref()])
}

/// Antelope's legacy `merkle()`: pairs are hashed canonically level by level, an odd level
/// repeats its last node, one leaf is its own root and no leaf gives the zero digest.
pub fn merkle(leaves: &[Checksum256]) -> Checksum256 {
    let mut level: Vec<Checksum256> = leaves.to_vec();
    if level.is_empty() {
        return Checksum256::ZERO;
    }
    while level.len() > 1 {
        level = level
            .chunks(2)
            .map(|pair| {
                let left = &pair[0];
                canonical_pair_hash(left, pair.get(1).unwrap_or(left))
            })
            .collect();
    }
    level[0]
}

/// Antelope's legacy `incremental_merkle`: the root of a growing list of leaves, equal at every
/// step to [`merkle`] over the leaves so far, kept in O(log n) nodes. Nodeos keeps the
/// `blockroot_merkle` of block ids this way.
///
/// The binary form is nodeos's (`_active_nodes` then `_node_count`); decoding checks that the
/// number of active nodes is the one `node_count` implies.
#[derive(Clone, PartialEq, Eq, Hash, Debug, Default, Serialize, Deserialize)]
#[serde(try_from = "IncrementalMerkleJson")]
pub struct IncrementalMerkle {
    #[serde(rename = "_active_nodes")]
    active_nodes: Vec<Checksum256>,
    #[serde(rename = "_node_count")]
    node_count: u64,
}

/// Number of levels of the tree over `n` leaves: log2 of `n` rounded up to a power of two, plus
/// one (Antelope's `calcluate_max_depth`).
fn max_depth(n: u64) -> u32 {
    if n == 0 { 0 } else { 64 - (n - 1).leading_zeros() + 1 }
}

impl IncrementalMerkle {
    /// An empty tree.
    pub fn new() -> Self {
        Self::default()
    }

    /// How many leaves were appended.
    pub fn node_count(&self) -> u64 {
        self.node_count
    }

    /// The current root; zero when empty.
    pub fn root(&self) -> Checksum256 {
        self.active_nodes.last().copied().unwrap_or(Checksum256::ZERO)
    }

    /// Appends a leaf and returns the new root.
    pub fn append(&mut self, leaf: Checksum256) -> Checksum256 {
        let depth = max_depth(self.node_count + 1);
        let mut index = self.node_count;
        let mut top = leaf;
        let mut partial = false;
        let mut lefts = self.active_nodes.iter();
        let mut updated = Vec::with_capacity(depth as usize);
        for _ in 1..depth {
            if index & 1 == 0 {
                // A left node with an implied right twin: the result is partial.
                if !partial {
                    updated.push(top);
                }
                top = canonical_pair_hash(&top, &top);
                partial = true;
            } else {
                // A right node: its left sibling is the next active node. The decoder checks
                // that `active_nodes` holds as many nodes as `node_count` implies, so it exists.
                let left = *lefts.next().unwrap_or(&Checksum256::ZERO);
                if partial {
                    updated.push(left);
                }
                top = canonical_pair_hash(&left, &top);
            }
            index >>= 1;
        }
        updated.push(top);
        self.active_nodes = updated;
        self.node_count += 1;
        top
    }

    /// A tree from its parts, refused unless `active_nodes` has the length `node_count` implies.
    fn checked(active_nodes: Vec<Checksum256>, node_count: u64) -> Result<Self, String> {
        // Leaves are block ids, so there are never more than 2^32 of them.
        if node_count > u64::from(u32::MAX) {
            return Err(format!("node count {node_count} exceeds the number of possible blocks"));
        }
        let expected = Self::active_len(node_count);
        if active_nodes.len() != expected {
            return Err(format!(
                "{} active nodes where {node_count} leaves imply {expected}",
                active_nodes.len()
            ));
        }
        Ok(IncrementalMerkle { active_nodes, node_count })
    }

    /// How many active nodes a tree of `n` leaves keeps.
    fn active_len(n: u64) -> usize {
        if n == 0 {
            return 0;
        }
        let mut index = n - 1;
        let mut partial = false;
        let mut count = 1;
        for _ in 1..max_depth(n) {
            if index & 1 == 0 {
                if !partial {
                    count += 1;
                }
                partial = true;
            } else if partial {
                count += 1;
            }
            index >>= 1;
        }
        count
    }
}

/// The unchecked JSON form of [`IncrementalMerkle`].
#[derive(Deserialize)]
struct IncrementalMerkleJson {
    _active_nodes: Vec<Checksum256>,
    _node_count: u64,
}

impl TryFrom<IncrementalMerkleJson> for IncrementalMerkle {
    type Error = String;
    fn try_from(j: IncrementalMerkleJson) -> Result<Self, String> {
        IncrementalMerkle::checked(j._active_nodes, j._node_count)
    }
}

impl Pack for IncrementalMerkle {
    fn pack(&self, out: &mut Vec<u8>) {
        self.active_nodes.pack(out);
        self.node_count.pack(out);
    }
}

impl Unpack for IncrementalMerkle {
    const MIN_SIZE: usize = 1 + 8;

    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let at = r.position();
        let active_nodes =
            Vec::<Checksum256>::unpack(r).map_err(|e| e.in_field("_active_nodes"))?;
        let node_count = u64::unpack(r).map_err(|e| e.in_field("_node_count"))?;
        IncrementalMerkle::checked(active_nodes, node_count)
            .map_err(|reason| DecodeError::Invalid { what: "incremental_merkle", at, reason })
    }
}

#[cfg(test)]
mod tests;
