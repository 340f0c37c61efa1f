//! The PKCS#11 backend (cryptoki, pinned): any HSM module — YubiHSM2, SoftHSM2, cloud HSMs.
//!
//! The module is loaded at run time from the configured path, the token found by label, the
//! user logged in with a PIN read from a file (mode 0600 or stricter) or an environment
//! variable — never from argv — and kept only in a zeroizing buffer for re-login after a
//! session loss. Keys are found by label or id and must be sensitive and not extractable;
//! `generate` creates such pairs inside the token, and a running backend adopts a pair created
//! after it opened (found by its public key, same checks) so a rotation needs no restart. The
//! PIN never reaches a log or an error.

use std::path::Path;
use std::sync::{Mutex, RwLock};

use cryptoki::context::{CInitializeArgs, CInitializeFlags, Function, Pkcs11};
use cryptoki::error::{Error as CkError, RvError};
use cryptoki::mechanism::Mechanism;
use cryptoki::object::{Attribute, AttributeType, KeyType as CkKeyType, ObjectClass, ObjectHandle};
use cryptoki::session::{Session, UserType};
use cryptoki::slot::Slot;
use cryptoki::types::AuthPin;
use rempart_core::key::{KeyType, PublicKey};
use zeroize::Zeroizing;

use super::{Backend, KeyringError};
use crate::policy::{KeySelector, PinSource, Pkcs11Config};

#[cfg(test)]
mod tests;

/// DER of OID 1.3.132.0.10 (secp256k1).
pub const EC_PARAMS_K1: &[u8] = &[0x06, 0x05, 0x2b, 0x81, 0x04, 0x00, 0x0a];
/// DER of OID 1.2.840.10045.3.1.7 (prime256v1 / P-256).
pub const EC_PARAMS_R1: &[u8] = &[0x06, 0x08, 0x2a, 0x86, 0x48, 0xce, 0x3d, 0x03, 0x01, 0x07];

/// Reads the PIN from its source into a zeroizing buffer, trailing newline removed.
pub fn read_pin(source: &PinSource) -> Result<Zeroizing<String>, KeyringError> {
    match source {
        PinSource::File(path) => {
            let name = path.display().to_string();
            let err = |reason: String| KeyringError::Pin { source_name: name.clone(), reason };
            let meta = std::fs::metadata(path).map_err(|e| err(e.to_string()))?;
            use std::os::unix::fs::PermissionsExt;
            let mode = meta.permissions().mode() & 0o777;
            if mode & 0o077 != 0 {
                return Err(err(format!(
                    "mode {mode:03o} lets other users read it; run chmod 600 on it"
                )));
            }
            let bytes = Zeroizing::new(std::fs::read(path).map_err(|e| err(e.to_string()))?);
            let text = std::str::from_utf8(&bytes).map_err(|_| err("not UTF-8".into()))?;
            let pin = text.lines().next().unwrap_or("");
            if pin.is_empty() {
                return Err(err("empty".into()));
            }
            Ok(Zeroizing::new(pin.to_string()))
        }
        PinSource::Env(var) => {
            let err = |reason: &str| KeyringError::Pin {
                source_name: format!("environment variable {var}"),
                reason: reason.to_string(),
            };
            let v = Zeroizing::new(std::env::var(var).map_err(|_| err("not set or not UTF-8"))?);
            let pin = v.trim_end_matches(['\r', '\n']);
            if pin.is_empty() {
                return Err(err("empty"));
            }
            Ok(Zeroizing::new(pin.to_string()))
        }
    }
}

fn ck(operation: &'static str) -> impl Fn(CkError) -> KeyringError {
    move |e| KeyringError::Pkcs11 { operation, message: e.to_string() }
}

/// Errors after which the session must be opened again and the key found anew. A removed
/// token shows as a lost session on real HSMs and as a stale key handle on SoftHSM2 (its
/// objects vanish with the token directory); logging in again then names the actual problem
/// (token absent, key gone) instead of a handle number.
fn session_lost(e: &CkError) -> bool {
    matches!(
        e,
        CkError::Pkcs11(
            RvError::SessionHandleInvalid
                | RvError::SessionClosed
                | RvError::DeviceRemoved
                | RvError::TokenNotPresent
                | RvError::TokenNotRecognized
                | RvError::UserNotLoggedIn
                | RvError::DeviceError
                | RvError::KeyHandleInvalid
                | RvError::ObjectHandleInvalid,
            _
        )
    )
}

fn selector_text(sel: &KeySelector) -> String {
    match sel {
        KeySelector::Label(l) => format!("label {l:?}"),
        KeySelector::Id(id) => format!("id {}", hex::encode(id)),
    }
}

fn selector_attr(sel: &KeySelector) -> Attribute {
    match sel {
        KeySelector::Label(l) => Attribute::Label(l.as_bytes().to_vec()),
        KeySelector::Id(id) => Attribute::Id(id.clone()),
    }
}

/// Strips the DER OCTET STRING around a `CKA_EC_POINT`; accepts the bare point too.
pub fn ec_point_bytes(v: &[u8]) -> Option<&[u8]> {
    match v {
        [0x04, len, rest @ ..] if usize::from(*len) == rest.len() && *len < 0x80 => Some(rest),
        [0x04, 0x81, len, rest @ ..] if usize::from(*len) == rest.len() => Some(rest),
        [0x04, ..] if v.len() == 65 => Some(v),
        [0x02 | 0x03, ..] if v.len() == 33 => Some(v),
        _ => None,
    }
}

/// The curve named by `CKA_EC_PARAMS`.
pub fn curve_of(params: &[u8]) -> Option<KeyType> {
    match params {
        EC_PARAMS_K1 => Some(KeyType::K1),
        EC_PARAMS_R1 => Some(KeyType::R1),
        _ => None,
    }
}

/// An opened token: the module, the slot and a logged-in session (`None` after a re-login
/// failed; the next signature tries again).
struct Token {
    ctx: Pkcs11,
    label: String,
    pin: Zeroizing<String>,
    session: Option<Session>,
}

impl Token {
    fn open(module: &Path, label: &str, pin: Zeroizing<String>) -> Result<Token, KeyringError> {
        let module_err =
            |message: String| KeyringError::Module { path: module.display().to_string(), message };
        if !module.exists() {
            return Err(module_err("no such file".into()));
        }
        let ctx = Pkcs11::new(module).map_err(|e| module_err(e.to_string()))?;
        match ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
            Err(e) => return Err(module_err(format!("C_Initialize: {e}"))),
        }
        let session = Self::login(&ctx, label, &pin)?;
        Ok(Token { ctx, label: label.to_string(), pin, session: Some(session) })
    }

    /// The logged-in session; `SessionHandleInvalid` when the last re-login failed, which the
    /// caller treats as a lost session.
    fn session(&self) -> Result<&Session, CkError> {
        self.session
            .as_ref()
            .ok_or(CkError::Pkcs11(RvError::SessionHandleInvalid, Function::OpenSession))
    }

    fn find_slot(ctx: &Pkcs11, label: &str) -> Result<Slot, KeyringError> {
        let slots = ctx.get_slots_with_token().map_err(ck("C_GetSlotList"))?;
        let mut seen = Vec::new();
        for slot in slots {
            let Ok(info) = ctx.get_token_info(slot) else { continue };
            let l = info.label().trim_end().to_string();
            if l == label {
                return Ok(slot);
            }
            seen.push(l);
        }
        Err(KeyringError::TokenAbsent { label: label.to_string(), seen })
    }

    fn login(ctx: &Pkcs11, label: &str, pin: &Zeroizing<String>) -> Result<Session, KeyringError> {
        let slot = Self::find_slot(ctx, label)?;
        let session = ctx.open_rw_session(slot).map_err(ck("C_OpenSession"))?;
        let auth = AuthPin::new(pin.as_str().into());
        match session.login(UserType::User, Some(&auth)) {
            Ok(()) | Err(CkError::Pkcs11(RvError::UserAlreadyLoggedIn, _)) => Ok(session),
            Err(CkError::Pkcs11(RvError::PinIncorrect, _)) => {
                Err(KeyringError::WrongPin { label: label.to_string() })
            }
            Err(CkError::Pkcs11(RvError::PinLocked, _)) => {
                Err(KeyringError::PinLocked { label: label.to_string() })
            }
            Err(e) => Err(ck("C_Login")(e)),
        }
    }

    /// Another session on the token, logged in with the first (a login is per application).
    fn open_spare(&self) -> Result<Session, KeyringError> {
        let slot = Self::find_slot(&self.ctx, &self.label)?;
        self.ctx.open_rw_session(slot).map_err(ck("C_OpenSession"))
    }

    fn reopen(&mut self) -> Result<(), KeyringError> {
        // Close the old session first: a module may give its handle number to the new one,
        // which dropping the old `Session` afterwards would then close.
        if let Some(old) = self.session.take() {
            let _ = old.close();
        }
        match Self::login(&self.ctx, &self.label, &self.pin) {
            Ok(s) => self.session = Some(s),
            Err(KeyringError::TokenAbsent { .. }) => {
                // Some modules (SoftHSM2) see a token that came back only after the library is
                // finalized and initialized again. No session of ours is open at this point
                // (the caller closed the spare and holds it).
                tracing::warn!(label = %self.label, "token absent; re-initialising the module");
                let _ = self.ctx.clone().finalize();
                match self.ctx.initialize(CInitializeArgs::new(CInitializeFlags::OS_LOCKING_OK)) {
                    Ok(()) | Err(CkError::Pkcs11(RvError::CryptokiAlreadyInitialized, _)) => {}
                    Err(e) => return Err(ck("C_Initialize")(e)),
                }
                self.session = Some(Self::login(&self.ctx, &self.label, &self.pin)?);
            }
            Err(e) => return Err(e),
        }
        Ok(())
    }

    fn find_one(
        &self,
        class: ObjectClass,
        sel: &KeySelector,
    ) -> Result<ObjectHandle, KeyringError> {
        let template =
            [Attribute::Class(class), Attribute::KeyType(CkKeyType::EC), selector_attr(sel)];
        let found =
            self.session().and_then(|s| s.find_objects(&template)).map_err(ck("C_FindObjects"))?;
        match found.as_slice() {
            [one] => Ok(*one),
            [] => Err(KeyringError::KeyNotFound {
                selector: format!(
                    "{}{}",
                    if class == ObjectClass::PUBLIC_KEY { "(public half) " } else { "" },
                    selector_text(sel)
                ),
                label: self.label.clone(),
            }),
            many => Err(KeyringError::KeyAmbiguous {
                selector: selector_text(sel),
                label: self.label.clone(),
                count: many.len(),
            }),
        }
    }

    /// The `CKA_ID` of the EC public key object whose point is `key`, if the token holds one.
    fn id_of(&self, key: &PublicKey) -> Result<Option<Vec<u8>>, KeyringError> {
        let session = self.session().map_err(ck("C_OpenSession"))?;
        let publics = session
            .find_objects(&[
                Attribute::Class(ObjectClass::PUBLIC_KEY),
                Attribute::KeyType(CkKeyType::EC),
            ])
            .map_err(ck("C_FindObjects"))?;
        for object in publics {
            let attrs = session
                .get_attributes(object, &[AttributeType::EcPoint, AttributeType::Id])
                .map_err(ck("C_GetAttributeValue"))?;
            let mut point = None;
            let mut id = None;
            for a in attrs {
                match a {
                    Attribute::EcPoint(p) => point = Some(p),
                    Attribute::Id(i) => id = Some(i),
                    _ => {}
                }
            }
            let matches = point
                .as_deref()
                .and_then(ec_point_bytes)
                .and_then(|b| PublicKey::from_sec1(key.key_type(), b).ok())
                .is_some_and(|k| &k == key);
            if matches {
                return id
                    .map(Some)
                    .ok_or_else(|| KeyringError::Keygen(format!("key {key} has no CKA_ID")));
            }
        }
        Ok(None)
    }

    /// Finds a key pair and returns its private handle and public key.
    fn open_key(&self, sel: &KeySelector) -> Result<(ObjectHandle, PublicKey), KeyringError> {
        let what = selector_text(sel);
        let private = self.find_one(ObjectClass::PRIVATE_KEY, sel)?;
        let attrs = self
            .session()
            .and_then(|s| {
                s.get_attributes(
                    private,
                    &[
                        AttributeType::EcParams,
                        AttributeType::Sensitive,
                        AttributeType::Extractable,
                    ],
                )
            })
            .map_err(ck("C_GetAttributeValue"))?;
        let mut params = None;
        let mut sensitive = None;
        let mut extractable = None;
        for a in attrs {
            match a {
                Attribute::EcParams(p) => params = Some(p),
                Attribute::Sensitive(s) => sensitive = Some(s),
                Attribute::Extractable(x) => extractable = Some(x),
                _ => {}
            }
        }
        if sensitive != Some(true) || extractable != Some(false) {
            return Err(KeyringError::KeyUnsafe {
                selector: what,
                reason: "the private key must have CKA_SENSITIVE true and CKA_EXTRACTABLE \
                         false (generate it with `rempart-signer keygen`)"
                    .into(),
            });
        }
        let params = params.unwrap_or_default();
        let key_type = curve_of(&params).ok_or_else(|| KeyringError::UnsupportedCurve {
            selector: what.clone(),
            params: hex::encode(&params),
        })?;
        let public = self.find_one(ObjectClass::PUBLIC_KEY, sel)?;
        let attrs = self
            .session()
            .and_then(|s| s.get_attributes(public, &[AttributeType::EcPoint]))
            .map_err(ck("C_GetAttributeValue"))?;
        let point = attrs
            .into_iter()
            .find_map(|a| if let Attribute::EcPoint(p) = a { Some(p) } else { None })
            .unwrap_or_default();
        let bytes = ec_point_bytes(&point).ok_or_else(|| KeyringError::KeyUnsafe {
            selector: what.clone(),
            reason: format!("CKA_EC_POINT {} is not an EC point", hex::encode(&point)),
        })?;
        let key = PublicKey::from_sec1(key_type, bytes).map_err(|e| KeyringError::KeyUnsafe {
            selector: what,
            reason: format!("public key: {e}"),
        })?;
        Ok((private, key))
    }
}

/// Signing keys inside a PKCS#11 token, reached through two sessions so that two signatures
/// can be made at once (see [`Backend::parallel`]).
pub struct Pkcs11Backend {
    token: Mutex<Token>,
    /// The second session: taken when free, else the token's own is used. `None` after it
    /// was found dead, until the next re-login opens another.
    spare: Mutex<Option<Session>>,
    /// Only ever appended to, after `handles`: an index into it is an index into `handles`.
    keys: RwLock<Vec<(PublicKey, KeySelector)>>,
    handles: Mutex<Vec<ObjectHandle>>,
}

impl Pkcs11Backend {
    /// Loads the module, logs in and opens every configured key.
    pub fn open(config: &Pkcs11Config) -> Result<Pkcs11Backend, KeyringError> {
        let pin = read_pin(&config.pin)?;
        let token = Token::open(&config.module, &config.token_label, pin)?;
        let mut keys = Vec::new();
        let mut handles = Vec::new();
        for sel in &config.keys {
            let (h, k) = token.open_key(sel)?;
            keys.push((k, sel.clone()));
            handles.push(h);
        }
        let spare = token.open_spare()?;
        Ok(Pkcs11Backend {
            spare: Mutex::new(Some(spare)),
            token: Mutex::new(token),
            keys: RwLock::new(keys),
            handles: Mutex::new(handles),
        })
    }

    fn sign_once(
        session: &Session,
        handle: ObjectHandle,
        digest: &[u8; 32],
    ) -> Result<[u8; 64], CkError> {
        let raw = session.sign(&Mechanism::Ecdsa, handle, digest)?;
        raw.as_slice().try_into().map_err(|_| CkError::InvalidValue)
    }

    /// One signature on the spare session, if it is free and alive (`None`: use the token's).
    fn sign_on_spare(
        &self,
        index: usize,
        digest: &[u8; 32],
    ) -> Option<Result<[u8; 64], KeyringError>> {
        let mut spare = self.spare.try_lock().ok()?;
        let session = spare.as_ref()?;
        let handle = self.handles.lock().unwrap_or_else(|e| e.into_inner())[index];
        match Self::sign_once(session, handle, digest) {
            Ok(rs) => Some(Ok(rs)),
            // Dead (token removed, HSM restarted) or its handle stale: the token's session
            // logs in again and finds the key; a new spare is opened after that.
            Err(e) if session_lost(&e) => {
                tracing::warn!(error = %e, "PKCS#11 spare session lost");
                *spare = None;
                None
            }
            Err(e) => Some(Err(ck("C_Sign")(e))),
        }
    }
}

impl Backend for Pkcs11Backend {
    fn kind(&self) -> &'static str {
        "pkcs11"
    }

    fn parallel(&self) -> bool {
        true
    }

    fn public_keys(&self) -> Vec<PublicKey> {
        self.keys.read().unwrap_or_else(|e| e.into_inner()).iter().map(|(k, _)| *k).collect()
    }

    fn adopt(&self, key: &PublicKey) -> Result<(), KeyringError> {
        let token = self.token.lock().unwrap_or_else(|e| e.into_inner());
        let mut handles = self.handles.lock().unwrap_or_else(|e| e.into_inner());
        if self.keys.read().unwrap_or_else(|e| e.into_inner()).iter().any(|(k, _)| k == key) {
            return Ok(());
        }
        let label = token.label.clone();
        let id = token
            .id_of(key)?
            .ok_or_else(|| KeyringError::KeyNotFound { selector: key.to_string(), label })?;
        let sel = KeySelector::Id(id);
        let (handle, found) = token.open_key(&sel)?;
        if found != *key {
            return Err(KeyringError::KeyUnsafe {
                selector: selector_text(&sel),
                reason: format!("its private half is key {found}, not {key}"),
            });
        }
        handles.push(handle);
        self.keys.write().unwrap_or_else(|e| e.into_inner()).push((*key, sel));
        Ok(())
    }

    fn sign_raw(&self, key: &PublicKey, digest: &[u8; 32]) -> Result<[u8; 64], KeyringError> {
        let (index, sel) = {
            let keys = self.keys.read().unwrap_or_else(|e| e.into_inner());
            let index =
                keys.iter().position(|(k, _)| k == key).ok_or(KeyringError::UnknownKey(*key))?;
            (index, keys[index].1.clone())
        };
        if let Some(signed) = self.sign_on_spare(index, digest) {
            return signed;
        }
        let mut token = self.token.lock().unwrap_or_else(|e| e.into_inner());
        let handle = self.handles.lock().unwrap_or_else(|e| e.into_inner())[index];
        let signed = token.session().and_then(|session| Self::sign_once(session, handle, digest));
        match signed {
            Ok(rs) => Ok(rs),
            Err(e) if session_lost(&e) => {
                // The session or the key handle died (token removed, maybe back, HSM
                // restarted): log in again, find the same key (handles may change) and check it
                // is still the same key. A token still absent is a TokenAbsent error.
                tracing::warn!(error = %e, "PKCS#11 session lost; logging in again");
                // The spare goes first, waiting for a signature in progress on it: a re-login
                // may finalize the module, which no other session may be inside of (nor open).
                let mut spare = self.spare.lock().unwrap_or_else(|e| e.into_inner());
                if let Some(old) = spare.take() {
                    let _ = old.close();
                }
                token.reopen()?;
                let (h, k) = token.open_key(&sel)?;
                if k != *key {
                    return Err(KeyringError::KeyUnsafe {
                        selector: selector_text(&sel),
                        reason: format!("after re-login it is key {k}, no longer {key}"),
                    });
                }
                self.handles.lock().unwrap_or_else(|e| e.into_inner())[index] = h;
                // The spare gets a session of the new login.
                *spare = token.open_spare().ok();
                drop(spare);
                token.session().and_then(|s| Self::sign_once(s, h, digest)).map_err(ck("C_Sign"))
            }
            Err(e) => Err(ck("C_Sign")(e)),
        }
    }
}

/// Generates a key pair inside the token (sensitive, never extractable, persistent) labelled
/// `label`, and returns its public key. Refuses a label already in use.
pub fn generate(
    module: &Path,
    token_label: &str,
    pin: &PinSource,
    key_type: KeyType,
    label: &str,
) -> Result<PublicKey, KeyringError> {
    generate_with_pin(module, token_label, read_pin(pin)?, key_type, label)
}

/// [`generate`] with the PIN already read: a sandboxed daemon read it before the sandbox
/// closed the file.
pub fn generate_with_pin(
    module: &Path,
    token_label: &str,
    pin: Zeroizing<String>,
    key_type: KeyType,
    label: &str,
) -> Result<PublicKey, KeyringError> {
    let token = Token::open(module, token_label, pin)?;
    let sel = KeySelector::Label(label.to_string());
    let existing = token
        .session()
        .and_then(|s| s.find_objects(&[selector_attr(&sel)]))
        .map_err(ck("C_FindObjects"))?;
    if !existing.is_empty() {
        return Err(KeyringError::Keygen(format!(
            "the token already holds objects labelled {label:?}; choose another label"
        )));
    }
    let params = match key_type {
        KeyType::K1 => EC_PARAMS_K1,
        KeyType::R1 => EC_PARAMS_R1,
    };
    let id =
        token.session().and_then(|s| s.generate_random_vec(8)).map_err(ck("C_GenerateRandom"))?;
    let public_template = [
        Attribute::Token(true),
        Attribute::Private(false),
        Attribute::Verify(true),
        Attribute::EcParams(params.to_vec()),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id.clone()),
    ];
    let private_template = [
        Attribute::Token(true),
        Attribute::Private(true),
        Attribute::Sensitive(true),
        Attribute::Extractable(false),
        Attribute::Sign(true),
        Attribute::Label(label.as_bytes().to_vec()),
        Attribute::Id(id),
    ];
    token
        .session()
        .and_then(|s| {
            s.generate_key_pair(&Mechanism::EccKeyPairGen, &public_template, &private_template)
        })
        .map_err(|e| KeyringError::Keygen(format!("C_GenerateKeyPair: {e}")))?;
    let (_, key) = token.open_key(&sel)?;
    Ok(key)
}

/// Destroys the key pair whose public key is `key` (both halves, matched by `CKA_ID`) in the
/// token: an administrator retired it with `destroy`. Refuses when no public object matches.
pub fn destroy(
    module: &Path,
    token_label: &str,
    pin: Zeroizing<String>,
    key: &PublicKey,
) -> Result<(), KeyringError> {
    let token = Token::open(module, token_label, pin)?;
    let id = token.id_of(key)?.ok_or_else(|| KeyringError::KeyNotFound {
        selector: key.to_string(),
        label: token_label.to_string(),
    })?;
    let session = token.session().map_err(ck("C_OpenSession"))?;
    let pair = session.find_objects(&[Attribute::Id(id)]).map_err(ck("C_FindObjects"))?;
    for o in pair {
        session.destroy_object(o).map_err(ck("C_DestroyObject"))?;
    }
    Ok(())
}
