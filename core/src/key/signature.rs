//! Signatures in EOS compact form: a header byte (27 + 4 + recovery id) then r and s, 65 bytes,
//! written `SIG_K1_…` or `SIG_R1_…`. Also public-key recovery, verification by recovery, fc's
//! canonical rule, and turning a raw r‖s from an HSM or YubiKey into this form.
//!
//! Never accept a header outside 27..=34, and never hand back a converted HSM signature whose
//! recovery id does not give back the key that was asked for.

use std::fmt;
use std::str::FromStr;

use super::public::compress_p256;
use super::{Check, KeyError, KeyType, PublicKey, decode_checked, encode_checked};
use crate::checksum::Checksum256;
use crate::codec::{DecodeError, Pack, Reader, Unpack};

/// An Antelope signature in compact form: header, r (32 bytes), s (32 bytes).
///
/// Build it from outside bytes with [`Signature::from_bytes`], which checks the header.
#[derive(Clone, Copy, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub enum Signature {
    /// A secp256k1 signature.
    K1([u8; 65]),
    /// A NIST P-256 signature.
    R1([u8; 65]),
}

/// The header byte for a compressed-key signature with this recovery id.
fn header_for(recid: u8) -> u8 {
    27 + 4 + recid
}

fn check_header(header: u8) -> Result<(), KeyError> {
    if (27..=34).contains(&header) { Ok(()) } else { Err(KeyError::BadHeader(header)) }
}

/// fc's canonical rule for K1: r and s each have the top bit clear and are DER-minimal (a zero
/// first byte only when the next byte needs it).
pub(super) fn fc_canonical(rs: &[u8]) -> bool {
    let (r, s) = (&rs[0..32], &rs[32..64]);
    r[0] & 0x80 == 0
        && !(r[0] == 0 && r[1] & 0x80 == 0)
        && s[0] & 0x80 == 0
        && !(s[0] == 0 && s[1] & 0x80 == 0)
}

fn secp_message(digest: &Checksum256) -> secp256k1::Message {
    secp256k1::Message::from_digest(digest.0)
}

/// Recovers a K1 key from compact r‖s and a recovery id.
fn recover_k1(rs: &[u8], recid: u8, digest: &Checksum256) -> Result<PublicKey, KeyError> {
    let id = secp256k1::ecdsa::RecoveryId::from_u8_masked(recid);
    let sig = secp256k1::ecdsa::RecoverableSignature::from_compact(rs, id)
        .map_err(|_| KeyError::InvalidSignature(KeyType::K1))?;
    let pk = sig
        .recover_ecdsa(secp_message(digest))
        .map_err(|_| KeyError::RecoveryFailed(KeyType::K1))?;
    Ok(PublicKey::K1(pk.serialize()))
}

/// Recovers an R1 key from an r‖s signature and a recovery id.
fn recover_r1(
    sig: &p256::ecdsa::Signature,
    recid: u8,
    digest: &Checksum256,
) -> Result<PublicKey, KeyError> {
    // p256 does not re-export `RecoveryId`; `TryFrom<u8>` reaches it by inference.
    let id = (recid & 3).try_into().map_err(|_| KeyError::RecoveryFailed(KeyType::R1))?;
    let vk = p256::ecdsa::VerifyingKey::recover_from_prehash(&digest.0, sig, id)
        .map_err(|_| KeyError::RecoveryFailed(KeyType::R1))?;
    Ok(PublicKey::R1(compress_p256(&vk.into())))
}

/// Width of the signed windows of [`lincomb_vartime`]: tables of 8 odd multiples.
const WNAF_WIDTH: u32 = 5;

/// A 256-bit scalar is cut into this many 64-bit pieces, each with its own table of a
/// pre-doubled base point, so the shared chain of doublings is 64 long instead of 256.
const PIECES: usize = 4;

/// The width-[`WNAF_WIDTH`] non-adjacent form of a 64-bit piece, least significant digit
/// first: odd digits in -15..=15, at most one non-zero digit in any 5 consecutive ones.
fn wnaf64(piece: u64) -> [i8; 65] {
    let full = 1u128 << WNAF_WIDTH;
    let mut k = u128::from(piece);
    let mut digits = [0i8; 65];
    for digit in &mut digits {
        if k == 0 {
            break;
        }
        if k & 1 == 1 {
            // k ≡ window (mod 2^w): the digit is window or window - 2^w, whichever is in
            // (-2^(w-1), 2^(w-1)); taking it off k clears k's low w bits.
            let window = k & (full - 1);
            if window >= full / 2 {
                *digit = window as i8 - full as i8;
                k += full - window;
            } else {
                *digit = window as i8;
                k -= window;
            }
        }
        k >>= 1;
    }
    digits
}

/// The [`PIECES`] 64-bit pieces of a scalar, least significant first.
fn pieces(k: &p256::Scalar) -> [u64; PIECES] {
    use p256::elliptic_curve::PrimeField as _;
    let be = k.to_repr();
    let mut out = [0u64; PIECES];
    for (piece, chunk) in out.iter_mut().zip(be.rchunks_exact(8)) {
        let mut bytes = [0u8; 8];
        bytes.copy_from_slice(chunk);
        *piece = u64::from_be_bytes(bytes);
    }
    out
}

/// For each piece i, the odd multiples 1, 3, …, 15 times 2^(64·i)·P: everything
/// [`lincomb_vartime`] adds for one point. Public points only.
#[derive(Debug)]
pub(super) struct PointTables([[p256::ProjectivePoint; 8]; PIECES]);

impl PointTables {
    pub(super) fn new(p: &p256::ProjectivePoint) -> PointTables {
        use p256::elliptic_curve::group::Group as _;
        let mut tables = [[*p; 8]; PIECES];
        let mut base = *p;
        for table in &mut tables {
            let twice = base.double();
            table[0] = base;
            for i in 1..table.len() {
                table[i] = table[i - 1] + twice;
            }
            for _ in 0..64 {
                base = base.double();
            }
        }
        PointTables(tables)
    }
}

/// a·P + b·Q from both points' tables, with interleaved signed windows (Straus–Shamir over
/// 2 × [`PIECES`] pieces): one chain of 64 doublings, an addition per non-zero digit.
/// Variable time: use it only on public values (verifying a signature), never on a secret
/// scalar. p256's own `lincomb` is two constant-time multiplications, 512 doublings.
pub(super) fn lincomb_vartime(
    p: &PointTables,
    a: &p256::Scalar,
    q: &PointTables,
    b: &p256::Scalar,
) -> p256::ProjectivePoint {
    use p256::elliptic_curve::group::Group as _;
    let mut streams = Vec::with_capacity(2 * PIECES);
    for (tables, k) in [(p, a), (q, b)] {
        for (table, piece) in tables.0.iter().zip(pieces(k)) {
            streams.push((wnaf64(piece), table));
        }
    }
    let top = streams
        .iter()
        .filter_map(|(digits, _)| digits.iter().rposition(|&d| d != 0))
        .max()
        .unwrap_or(0);
    let mut acc = p256::ProjectivePoint::IDENTITY;
    for i in (0..=top).rev() {
        acc = acc.double();
        for (digits, table) in &streams {
            let d = digits[i];
            let entry = &table[usize::from(d.unsigned_abs() / 2)];
            if d > 0 {
                acc += entry;
            } else if d < 0 {
                acc -= entry;
            }
        }
    }
    acc
}

/// The generator's tables, built once.
fn generator_tables() -> &'static PointTables {
    static TABLES: std::sync::OnceLock<PointTables> = std::sync::OnceLock::new();
    TABLES.get_or_init(|| PointTables::new(&p256::ProjectivePoint::GENERATOR))
}

/// Keys whose tables are kept: a signer converts signatures of a handful of keys, over and
/// over; a key beyond this evicts the oldest.
const KEPT_KEYS: usize = 8;

/// The tables of the R1 key `compressed` (decompressed and built once per key kept), or `None`
/// when the bytes are not a point on the curve.
fn key_tables(compressed: &[u8; 33]) -> Option<std::sync::Arc<PointTables>> {
    use std::sync::{Arc, Mutex};
    type Kept = Vec<([u8; 33], Arc<PointTables>)>;
    static KEPT: Mutex<Kept> = Mutex::new(Vec::new());
    let lookup = |kept: &Kept| kept.iter().find(|(k, _)| k == compressed).map(|(_, t)| t.clone());
    if let Some(t) = lookup(&KEPT.lock().unwrap_or_else(|e| e.into_inner())) {
        return Some(t);
    }
    let q = p256::PublicKey::from_sec1_bytes(compressed).ok()?;
    let tables = Arc::new(PointTables::new(&q.to_projective()));
    let mut kept = KEPT.lock().unwrap_or_else(|e| e.into_inner());
    if lookup(&kept).is_none() {
        if kept.len() == KEPT_KEYS {
            kept.remove(0);
        }
        kept.push((*compressed, tables.clone()));
    }
    Some(tables)
}

/// The recovery id of an R1 signature made by `public`, found with one verification instead
/// of trial recoveries (each of which costs a square root and two scalar multiplications).
///
/// Verifying computes the nonce point R = z/s·G + r/s·Q; the signature is valid when x(R)
/// reduced mod n equals r, and then the recovery id is y(R)'s parity, plus 2 when x(R) was at
/// least n. `None` when the signature does not verify under `public`. Everything here is
/// public (signature, digest, key), so R is computed in variable time.
pub(super) fn r1_recovery_id(
    sig: &p256::ecdsa::Signature,
    digest: &Checksum256,
    public: &PublicKey,
) -> Option<u8> {
    use p256::elliptic_curve::PrimeField as _;
    use p256::elliptic_curve::ops::Reduce;
    use p256::elliptic_curve::point::AffineCoordinates as _;
    use p256::{AffinePoint, FieldBytes, Scalar, U256};

    let PublicKey::R1(bytes) = public else { return None };
    let q = key_tables(bytes)?;
    let (r, s) = sig.split_scalars();
    let z = <Scalar as Reduce<U256>>::reduce_bytes(&FieldBytes::from(digest.0));
    let s_inv = Option::<Scalar>::from(s.invert())?;
    let point = lincomb_vartime(generator_tables(), &(z * s_inv), &q, &(*r * s_inv));
    let point = AffinePoint::from(point);
    if point == AffinePoint::IDENTITY {
        return None;
    }
    let x = point.x();
    if <Scalar as Reduce<U256>>::reduce_bytes(&x) != *r {
        return None;
    }
    let x_reduced = bool::from(Scalar::from_repr(x).is_none());
    Some(u8::from(bool::from(point.y_is_odd())) | (u8::from(x_reduced) << 1))
}

fn p256_signature(rs: &[u8]) -> Result<p256::ecdsa::Signature, KeyError> {
    p256::ecdsa::Signature::from_slice(rs).map_err(|_| KeyError::InvalidSignature(KeyType::R1))
}

impl Signature {
    /// A signature of `key_type` from its 65 compact bytes; the header must be in 27..=34.
    pub fn from_bytes(key_type: KeyType, bytes: &[u8; 65]) -> Result<Signature, KeyError> {
        check_header(bytes[0])?;
        Ok(match key_type {
            KeyType::K1 => Signature::K1(*bytes),
            KeyType::R1 => Signature::R1(*bytes),
        })
    }

    /// Builds a signature from a recovery id (0..=3) and r‖s, with header 27 + 4 + recid.
    fn from_parts(key_type: KeyType, recid: u8, rs: &[u8; 64]) -> Signature {
        let mut b = [0u8; 65];
        b[0] = header_for(recid & 3);
        b[1..].copy_from_slice(rs);
        match key_type {
            KeyType::K1 => Signature::K1(b),
            KeyType::R1 => Signature::R1(b),
        }
    }

    /// The curve of this signature.
    pub fn key_type(&self) -> KeyType {
        match self {
            Signature::K1(_) => KeyType::K1,
            Signature::R1(_) => KeyType::R1,
        }
    }

    /// The 65 compact bytes: header, r, s.
    pub fn as_bytes(&self) -> &[u8; 65] {
        match self {
            Signature::K1(b) | Signature::R1(b) => b,
        }
    }

    /// The header byte.
    pub fn header(&self) -> u8 {
        self.as_bytes()[0]
    }

    /// The recovery id, `(header - 27) & 3`.
    pub fn recovery_id(&self) -> u8 {
        self.header().wrapping_sub(27) & 3
    }

    /// r‖s, 64 bytes.
    pub fn rs(&self) -> &[u8] {
        &self.as_bytes()[1..]
    }

    /// The public key that produced this signature over `digest`.
    ///
    /// This does not apply fc's canonical rule; call [`Signature::is_canonical`] where the
    /// chain requires it.
    pub fn recover(&self, digest: &Checksum256) -> Result<PublicKey, KeyError> {
        check_header(self.header())?;
        match self {
            Signature::K1(b) => recover_k1(&b[1..], self.recovery_id(), digest),
            Signature::R1(b) => recover_r1(&p256_signature(&b[1..])?, self.recovery_id(), digest),
        }
    }

    /// Whether this is `key`'s signature over `digest`: the recovered key equals `key`, as
    /// nodeos checks.
    pub fn verify(&self, digest: &Checksum256, key: &PublicKey) -> bool {
        self.key_type() == key.key_type() && self.recover(digest).is_ok_and(|k| &k == key)
    }

    /// fc's canonical rule: for K1, r and s have the top bit clear and are DER-minimal; for R1,
    /// s is in the lower half of the order (low-S) and r, s are valid scalars.
    pub fn is_canonical(&self) -> bool {
        match self {
            Signature::K1(b) => fc_canonical(&b[1..]),
            Signature::R1(b) => p256_signature(&b[1..]).is_ok_and(|s| s.normalize_s().is_none()),
        }
    }

    /// Turns a raw ECDSA r‖s over `digest` by `public` (as an HSM or YubiKey returns it) into
    /// EOS form: s is made low, the recovery id found by trial recovery against `public`.
    ///
    /// For K1 a result that fc would call non-canonical is [`KeyError::NotCanonical`]: the
    /// caller signs again (with a bounded number of attempts). No recovery id giving back
    /// `public` is [`KeyError::RecoveryMismatch`].
    pub fn from_raw_rs(
        key_type: KeyType,
        rs: &[u8; 64],
        digest: &Checksum256,
        public: &PublicKey,
    ) -> Result<Signature, KeyError> {
        if public.key_type() != key_type {
            return Err(KeyError::KeyTypeMismatch { expected: key_type, found: public.key_type() });
        }
        let (r, s) = rs.split_at(32);
        if r.iter().all(|&b| b == 0) || s.iter().all(|&b| b == 0) {
            return Err(KeyError::InvalidSignature(key_type));
        }
        match key_type {
            KeyType::K1 => {
                let mut sig = secp256k1::ecdsa::Signature::from_compact(rs)
                    .map_err(|_| KeyError::InvalidSignature(KeyType::K1))?;
                sig.normalize_s();
                let low = sig.serialize_compact();
                // Canonical first: half of all raw signatures fail it, and the caller signs
                // again without paying for the recovery.
                if !fc_canonical(&low) {
                    return Err(KeyError::NotCanonical);
                }
                let recid = (0..4u8)
                    .find(|&id| recover_k1(&low, id, digest).is_ok_and(|k| &k == public))
                    .ok_or(KeyError::RecoveryMismatch)?;
                Ok(Signature::from_parts(KeyType::K1, recid, &low))
            }
            KeyType::R1 => {
                let sig = p256_signature(rs)?;
                let sig = sig.normalize_s().unwrap_or(sig);
                let recid =
                    r1_recovery_id(&sig, digest, public).ok_or(KeyError::RecoveryMismatch)?;
                let low: [u8; 64] = sig.to_bytes().into();
                Ok(Signature::from_parts(KeyType::R1, recid, &low))
            }
        }
    }

    /// As [`Signature::from_raw_rs`], for an ASN.1 DER `ECDSA-Sig-Value` (what a YubiKey's PIV
    /// applet returns).
    pub fn from_der_rs(
        key_type: KeyType,
        der: &[u8],
        digest: &Checksum256,
        public: &PublicKey,
    ) -> Result<Signature, KeyError> {
        let rs: [u8; 64] = match key_type {
            KeyType::K1 => secp256k1::ecdsa::Signature::from_der(der)
                .map_err(|_| KeyError::InvalidSignature(KeyType::K1))?
                .serialize_compact(),
            KeyType::R1 => p256::ecdsa::Signature::from_der(der)
                .map_err(|_| KeyError::InvalidSignature(KeyType::R1))?
                .to_bytes()
                .into(),
        };
        Self::from_raw_rs(key_type, &rs, digest, public)
    }

    /// Builds a K1 signature from libsecp256k1's recoverable form.
    pub(super) fn from_secp_recoverable(sig: &secp256k1::ecdsa::RecoverableSignature) -> Self {
        let (id, rs) = sig.serialize_compact();
        Signature::from_parts(KeyType::K1, id.to_u8(), &rs)
    }

    /// Builds an R1 signature from a p256 signature and recovery id.
    pub(super) fn from_p256(sig: &p256::ecdsa::Signature, recid: u8) -> Self {
        let rs: [u8; 64] = sig.to_bytes().into();
        Signature::from_parts(KeyType::R1, recid, &rs)
    }

    /// Recovers an R1 key from a p256 signature and recovery id (tests compare it with
    /// [`r1_recovery_id`]).
    #[cfg(test)]
    pub(super) fn recover_p256(
        sig: &p256::ecdsa::Signature,
        recid: u8,
        digest: &Checksum256,
    ) -> Result<PublicKey, KeyError> {
        recover_r1(sig, recid, digest)
    }
}

const WHAT: &str = "signature";

impl FromStr for Signature {
    type Err = KeyError;

    /// Parses `SIG_K1_…` or `SIG_R1_…`; the checksum and the header (27..=34) are checked.
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let (key_type, body, check, form) = if let Some(body) = s.strip_prefix("SIG_K1_") {
            (KeyType::K1, body, Check::Ripemd(b"K1"), "SIG_K1 ripemd160")
        } else if let Some(body) = s.strip_prefix("SIG_R1_") {
            (KeyType::R1, body, Check::Ripemd(b"R1"), "SIG_R1 ripemd160")
        } else if s.starts_with("SIG_WA_") {
            return Err(KeyError::Unsupported { what: "WebAuthn signatures are not supported" });
        } else {
            return Err(KeyError::BadPrefix { what: WHAT, expected: "SIG_K1_ or SIG_R1_" });
        };
        let payload = decode_checked(body, WHAT, form, 65, check)?;
        let mut b = [0u8; 65];
        b.copy_from_slice(&payload);
        Self::from_bytes(key_type, &b)
    }
}

impl fmt::Display for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let s = match self {
            Signature::K1(b) => encode_checked("SIG_K1_", b, Check::Ripemd(b"K1")),
            Signature::R1(b) => encode_checked("SIG_R1_", b, Check::Ripemd(b"R1")),
        };
        f.write_str(&s)
    }
}

impl fmt::Debug for Signature {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Signature({self})")
    }
}

impl Pack for Signature {
    fn pack(&self, out: &mut Vec<u8>) {
        out.push(self.key_type().tag());
        out.extend_from_slice(self.as_bytes());
    }
}

impl Unpack for Signature {
    const MIN_SIZE: usize = 66;

    fn unpack(r: &mut Reader<'_>) -> Result<Self, DecodeError> {
        let key_type = KeyType::unpack_tag(r, WHAT).map_err(|e| match e {
            DecodeError::Invalid { what, at, .. } => DecodeError::Invalid {
                what,
                at,
                reason: "WebAuthn signatures are not supported".to_owned(),
            },
            other => other,
        })?;
        let at = r.position();
        let bytes: [u8; 65] = r.read_array()?;
        Self::from_bytes(key_type, &bytes).map_err(|e| DecodeError::Invalid {
            what: WHAT,
            at,
            reason: e.to_string(),
        })
    }
}

crate::serde_via_string!(Signature);
