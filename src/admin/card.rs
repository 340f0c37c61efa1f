//! The YubiKey side of a ceremony, through the `yubikey` crate over PC/SC: find the card, create
//! or read the P-256 key in PIV slot 9c, and sign a command digest after the PIN.
//!
//! Only the 32-byte digest of a command ever reaches the card, and only after the PIN was
//! verified; the DER signature it returns is checked against the slot's public key (by
//! recovery) before it becomes an approval. The PIN is never kept beyond the call.

use rempart_core::Checksum256;
use rempart_core::admin::{AdminCommand, Approval};
use rempart_core::key::{KeyType, PublicKey, Signature};
use yubikey::piv::{self, AlgorithmId, SlotId};
use yubikey::{MgmKey, PinPolicy, TouchPolicy, YubiKey};

use super::{AdminCliError, PinPolicyArg};

fn card_err(e: yubikey::Error) -> AdminCliError {
    match e {
        yubikey::Error::WrongPin { tries } => AdminCliError::WrongPin { tries },
        yubikey::Error::PinLocked => AdminCliError::PinLocked,
        other => AdminCliError::Card(other.to_string()),
    }
}

/// Every PC/SC reader, and whether a YubiKey (PIV applet) answers in it.
pub(super) fn readers() -> Result<Vec<(String, bool)>, AdminCliError> {
    let mut ctx = yubikey::reader::Context::open().map_err(|e| {
        AdminCliError::NoCard(format!(" (PC/SC unavailable: {e}; is pcscd running?)"))
    })?;
    let list = ctx.iter().map_err(card_err)?;
    Ok(list.map(|r| (r.name().into_owned(), r.open().is_ok())).collect())
}

/// Opens the one YubiKey present, or the one in the reader whose name contains `reader`.
///
/// A card that another program just reset or held answers the first connection with a PC/SC
/// error ("the smart card has been reset", a sharing violation) that a new connection clears,
/// so such a scan is tried again a few times before the card is called missing.
pub(super) fn open(reader: Option<&str>) -> Result<YubiKey, AdminCliError> {
    const ATTEMPTS: u32 = 4;
    let mut attempt = 1;
    loop {
        match open_once(reader) {
            Err((_, true)) if attempt < ATTEMPTS => {
                std::thread::sleep(std::time::Duration::from_millis(50 << attempt));
                attempt += 1;
            }
            Ok(yk) => return Ok(yk),
            Err((e, _)) => return Err(e),
        }
    }
}

/// One scan; on failure, whether a reader answered with a PC/SC error worth another scan.
fn open_once(reader: Option<&str>) -> Result<YubiKey, (AdminCliError, bool)> {
    let mut ctx = yubikey::reader::Context::open().map_err(|e| {
        (AdminCliError::NoCard(format!(" (PC/SC unavailable: {e}; is pcscd running?)")), false)
    })?;
    let mut found = Vec::new();
    let mut failures = Vec::new();
    let mut transient = false;
    for r in ctx.iter().map_err(|e| (card_err(e), false))? {
        let name = r.name().into_owned();
        if reader.is_some_and(|want| !name.contains(want)) {
            continue;
        }
        match r.open() {
            Ok(yk) => found.push((name, yk)),
            Err(e) => {
                transient |= matches!(e, yubikey::Error::PcscError { .. });
                failures.push(format!("{name}: {e}"));
            }
        }
    }
    match found.len() {
        0 => Err((
            AdminCliError::NoCard(format!(
                "{} ({})",
                reader.map(|r| format!(" in a reader named like {r:?}")).unwrap_or_default(),
                if failures.is_empty() { "no reader".to_owned() } else { failures.join("; ") }
            )),
            transient,
        )),
        1 => Ok(found.remove(0).1),
        _ => Err((
            AdminCliError::SeveralCards(
                found.iter().map(|(n, _)| n.as_str()).collect::<Vec<_>>().join(", "),
            ),
            false,
        )),
    }
}

fn to_public(spki: &yubikey::piv::SlotMetadata) -> Result<PublicKey, AdminCliError> {
    let public = spki.public.as_ref().ok_or(AdminCliError::NoKey)?;
    PublicKey::from_sec1(KeyType::R1, public.subject_public_key.raw_bytes())
        .map_err(|_| AdminCliError::NoKey)
}

/// The public key in slot 9c.
pub(super) fn public_key(yk: &mut YubiKey) -> Result<PublicKey, AdminCliError> {
    let meta = piv::metadata(yk, SlotId::Signature).map_err(|e| match e {
        yubikey::Error::NotFound | yubikey::Error::GenericError => AdminCliError::NoKey,
        yubikey::Error::NotSupported | yubikey::Error::ParseError => AdminCliError::NoMetadata,
        other => card_err(other),
    })?;
    to_public(&meta)
}

/// Generates a new P-256 key in slot 9c with `policy` (replacing any key there) and returns
/// its public key. Needs the management key: the factory default unless `mgm_hex` is given.
pub(super) fn generate(
    yk: &mut YubiKey,
    policy: PinPolicyArg,
    mgm_hex: Option<&str>,
) -> Result<PublicKey, AdminCliError> {
    let mgm = match mgm_hex {
        Some(h) => {
            let bytes = zeroize::Zeroizing::new(hex::decode(h.trim()).map_err(|_| {
                AdminCliError::Usage("the management key file must hold 48 hex digits".into())
            })?);
            MgmKey::from_bytes(&bytes[..]).map_err(|_| {
                AdminCliError::Usage("the management key must be 24 bytes (3DES)".into())
            })?
        }
        None => MgmKey::default(),
    };
    yk.authenticate(mgm).map_err(|e| {
        AdminCliError::Card(format!("the management key was refused ({e}): pass --mgm-key-file"))
    })?;
    let pin_policy = match policy {
        PinPolicyArg::Always => PinPolicy::Always,
        PinPolicyArg::Once => PinPolicy::Once,
    };
    let spki =
        piv::generate(yk, SlotId::Signature, AlgorithmId::EccP256, pin_policy, TouchPolicy::Never)
            .map_err(card_err)?;
    PublicKey::from_sec1(KeyType::R1, spki.subject_public_key.raw_bytes())
        .map_err(|e| AdminCliError::Card(format!("the card returned an invalid key: {e}")))
}

/// Verifies `pin` and signs `digest` with slot 9c: a DER `ECDSA-Sig-Value`.
fn sign(yk: &mut YubiKey, pin: &[u8], digest: &Checksum256) -> Result<Vec<u8>, AdminCliError> {
    yk.verify_pin(pin).map_err(card_err)?;
    let der =
        piv::sign_data(yk, &digest.0, AlgorithmId::EccP256, SlotId::Signature).map_err(card_err)?;
    Ok(der.to_vec())
}

/// The keys that could have made the DER signature `der` over `digest`.
fn candidates(der: &[u8], digest: &Checksum256) -> Result<Vec<PublicKey>, AdminCliError> {
    let sig = p256::ecdsa::Signature::from_der(der)
        .map_err(|_| AdminCliError::Card("the card returned a malformed signature".into()))?;
    let rs: [u8; 64] = sig.to_bytes().into();
    let mut out = Vec::new();
    for recid in 0..4u8 {
        let mut bytes = [0u8; 65];
        bytes[0] = 27 + 4 + recid;
        bytes[1..].copy_from_slice(&rs);
        if let Ok(key) = Signature::from_bytes(KeyType::R1, &bytes).and_then(|s| s.recover(digest))
        {
            out.push(key);
        }
    }
    Ok(out)
}

/// The key that made `der` over `digest`: the one key a second signature over the same digest
/// also recovers to (ECDSA signatures are randomised, so two share only the signing key).
fn signing_key(
    yk: &mut YubiKey,
    pin: &[u8],
    digest: &Checksum256,
    der: &[u8],
) -> Result<PublicKey, AdminCliError> {
    let second = sign(yk, pin, digest)?;
    let others = candidates(&second, digest)?;
    let common: Vec<PublicKey> =
        candidates(der, digest)?.into_iter().filter(|k| others.contains(k)).collect();
    match common.as_slice() {
        [k] => Ok(*k),
        _ => {
            Err(AdminCliError::Card("cannot tell slot 9c's public key from its signatures".into()))
        }
    }
}

/// The key in slot 9c of a card that does not report slot metadata (firmware before 5.2.3,
/// the test card): learnt from two signatures over a fixed digest that no command can have
/// (commands are packed structs, this is the hash of a text), after `pin`.
pub(super) fn public_key_by_signing(
    yk: &mut YubiKey,
    pin: &[u8],
) -> Result<PublicKey, AdminCliError> {
    let digest = Checksum256::hash(b"rempart admin enroll --adopt: which key is in slot 9c?");
    yk.verify_pin(pin).map_err(card_err)?;
    // The PIN was right: a card that cannot sign has no key in the slot.
    let der = piv::sign_data(yk, &digest.0, AlgorithmId::EccP256, SlotId::Signature)
        .map_err(|e| match e {
            yubikey::Error::GenericError | yubikey::Error::NotFound => AdminCliError::NoKey,
            other => card_err(other),
        })?
        .to_vec();
    signing_key(yk, pin, &digest, &der)
}

/// Verifies `pin`, signs the digest of `cmd` with slot 9c and returns the approval.
///
/// The admin key is read from the card's slot metadata; a card that does not report it (older
/// firmware, the test card) signs a second time and the key is the one both signatures recover
/// to (ECDSA signatures are randomised, so two signatures share only the signing key).
pub(super) fn approve(
    yk: &mut YubiKey,
    pin: &[u8],
    cmd: &AdminCommand,
) -> Result<Approval, AdminCliError> {
    let digest = cmd.digest();
    let known = public_key(yk).ok();
    let der = sign(yk, pin, &digest)?;
    let key = match known {
        Some(k) => k,
        None => signing_key(yk, pin, &digest, &der)?,
    };
    let signature = Signature::from_der_rs(KeyType::R1, &der, &digest, &key).map_err(|e| {
        AdminCliError::Card(format!("the card's signature is not by slot 9c's key: {e}"))
    })?;
    Ok(Approval { key, signature })
}
