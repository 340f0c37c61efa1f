//! The native actions of the `eosio` account: `newaccount`, `updateauth`, `deleteauth`,
//! `linkauth`, `unlinkauth`, `setcode`, `setabi`, `setprods` and `regproducer`, applied to a
//! transaction's [`Overlay`] so that a failure anywhere in the transaction leaves the state
//! untouched. `setprods` and `regproducer` only propose a schedule: the chain announces it in
//! the next block's header and brings it into force at the block after (see `chain::worker`).
//!
//! Each handler checks its own preconditions (the account exists, the authority is valid, the
//! declared authorization is the one the action needs) and names the nodeos exception it maps
//! to. Handlers must never read the wall clock or anything outside the overlay: the block time
//! is handed in, so replaying a block gives the same state on every node.

use rempart_core::{BlockTimestamp, Bytes, Checksum256, Name, from_bytes, packed_struct, to_bytes};

use crate::account::{self, AccountRecord, PermissionRecord};
use crate::authority::{Authority, Level};
use crate::config::Limits;
use crate::genesis::{ProducerKey, ProducerSchedule, validate_schedule};
use crate::store::{Overlay, StoreError, key};

const EOSIO: Name = Name::from_const("eosio");
const OWNER: Name = Name::from_const("owner");
const ACTIVE: Name = Name::from_const("active");
const EOSIO_CODE: Name = Name::from_const("eosio.code");

packed_struct! {
    /// `newaccount` data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct NewAccount {
        /// Who pays and authorises.
        pub creator: Name,
        /// The new account.
        pub name: Name,
        /// Its owner authority.
        pub owner: Authority,
        /// Its active authority.
        pub active: Authority,
    }
}

packed_struct! {
    /// `updateauth` data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct UpdateAuth {
        /// The account.
        pub account: Name,
        /// The permission created or changed.
        pub permission: Name,
        /// Its parent (zero for `owner`).
        pub parent: Name,
        /// The new authority.
        pub auth: Authority,
    }
}

packed_struct! {
    /// `deleteauth` data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct DeleteAuth {
        /// The account.
        pub account: Name,
        /// The permission removed.
        pub permission: Name,
    }
}

packed_struct! {
    /// `linkauth` data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct LinkAuth {
        /// The account whose permission is linked.
        pub account: Name,
        /// The contract.
        pub code: Name,
        /// The action (zero: every action of the contract).
        pub action_type: Name,
        /// The permission now required.
        pub requirement: Name,
    }
}

packed_struct! {
    /// `unlinkauth` data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct UnlinkAuth {
        /// The account.
        pub account: Name,
        /// The contract.
        pub code: Name,
        /// The action.
        pub action_type: Name,
    }
}

packed_struct! {
    /// `setcode` data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SetCode {
        /// The account.
        pub account: Name,
        /// VM type (0: WebAssembly).
        pub vmtype: u8,
        /// VM version (0).
        pub vmversion: u8,
        /// The code (empty clears it).
        pub code: Bytes,
    }
}

packed_struct! {
    /// `setabi` data.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SetAbi {
        /// The account.
        pub account: Name,
        /// The packed ABI (empty clears it).
        pub abi: Bytes,
    }
}

packed_struct! {
    /// `setprods` data (the bios contract's action, native here).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct SetProds {
        /// The proposed producers.
        pub schedule: Vec<ProducerKey>,
    }
}

packed_struct! {
    /// `regproducer` data, as `eosio.system` defines it: a scheduled producer announces its
    /// block-signing key (see [`apply`] for who may and what it changes).
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct RegProducer {
        /// The producer account.
        pub producer: Name,
        /// The key its blocks will be signed with.
        pub producer_key: rempart_core::key::PublicKey,
        /// Its website (at most 512 bytes, as `eosio.system` allows).
        pub url: String,
        /// Its location code.
        pub location: u16,
    }
}

/// Why a native action failed; each maps to a nodeos exception.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum NativeError {
    /// The action data does not decode into the action's type.
    #[error("{action}: action data is malformed: {source}")]
    BadData {
        /// The action.
        action: Name,
        /// Why.
        source: rempart_core::DecodeError,
    },
    /// A precondition failed (bad argument, missing account, ...).
    #[error("{0}")]
    Invalid(String),
    /// The account being created exists.
    #[error("account {0} already exists; pick another name")]
    AccountExists(Name),
    /// The action is not authorised by the account it changes.
    #[error("missing authority of {0}")]
    MissingAuth(Name),
    /// The declared permission is lower than the one the action needs.
    #[error("action declares irrelevant authority {0}@{1}; it needs {0}@{2} or a parent of it")]
    IrrelevantAuth(Name, Name, Name),
    /// An `eosio` action that does not exist.
    #[error("eosio has no native action {0}")]
    UnknownAction(Name),
    /// The store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
}

impl NativeError {
    /// The nodeos exception (code, name, what) this error maps to.
    pub fn nodeos(&self) -> (u64, &'static str, &'static str) {
        match self {
            NativeError::BadData { .. } | NativeError::Invalid(_) => {
                (3_050_002, "invalid_action_args_exception", "Invalid Action Arguments")
            }
            NativeError::AccountExists(_) => {
                (3_050_001, "account_name_exists_exception", "Account name already exists")
            }
            NativeError::MissingAuth(_) => {
                (3_090_004, "missing_auth_exception", "Missing required authority")
            }
            NativeError::IrrelevantAuth(..) => {
                (3_090_005, "irrelevant_auth_exception", "Irrelevant authority included")
            }
            NativeError::UnknownAction(_) => {
                (3_050_005, "action_not_found_exception", "Action can not be found")
            }
            NativeError::Store(_) => (3_060_000, "database_exception", "Database exception"),
        }
    }
}

/// What an action runs with.
pub struct NativeContext<'a> {
    /// Time of the block being built or replayed.
    pub now: BlockTimestamp,
    /// The action's declared authorizations.
    pub authorization: &'a [Level],
    /// Size and depth limits.
    pub limits: &'a Limits,
    /// Validates a packed ABI (core's ABI codec); `Err` says why it is refused.
    pub check_abi: &'a dyn Fn(&[u8]) -> Result<(), String>,
    /// Validates contract code (the VM's `validate`); `Err` says why it is refused.
    pub check_code: &'a dyn Fn(&[u8]) -> Result<(), String>,
}

impl std::fmt::Debug for NativeContext<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("NativeContext")
            .field("now", &self.now)
            .field("authorization", &self.authorization)
            .finish_non_exhaustive()
    }
}

/// Applies one `eosio` action.
pub fn apply(
    o: &mut Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    action: Name,
    data: &[u8],
) -> Result<(), NativeError> {
    dispatch(o, ctx, action, data, false)
}

/// [`apply`] for `data` that [`data_is_valid`] accepted for this very `action` (the chain runs
/// that check off the apply thread, with signature recovery): its public keys are not checked
/// on their curve a second time.
pub fn apply_validated(
    o: &mut Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    action: Name,
    data: &[u8],
) -> Result<(), NativeError> {
    dispatch(o, ctx, action, data, true)
}

/// Whether `data` decodes as `action`'s data with every public key checked on its curve; only
/// the actions whose data carries authorities (`newaccount`, `updateauth`) answer `true`.
pub fn data_is_valid(action: Name, data: &[u8]) -> bool {
    const NEWACCOUNT: Name = Name::from_const("newaccount");
    const UPDATEAUTH: Name = Name::from_const("updateauth");
    match action {
        NEWACCOUNT => from_bytes::<NewAccount>(data).is_ok(),
        UPDATEAUTH => from_bytes::<UpdateAuth>(data).is_ok(),
        _ => false,
    }
}

fn dispatch(
    o: &mut Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    action: Name,
    data: &[u8],
    validated: bool,
) -> Result<(), NativeError> {
    fn decode<T: rempart_core::Unpack>(
        action: Name,
        data: &[u8],
        validated: bool,
    ) -> Result<T, NativeError> {
        let r = if validated {
            rempart_core::codec::from_trusted_bytes(data)
        } else {
            from_bytes(data)
        };
        r.map_err(|source| NativeError::BadData { action, source })
    }
    let v = validated;
    match action.to_string().as_str() {
        "newaccount" => new_account(o, ctx, decode(action, data, v)?),
        "updateauth" => update_auth(o, ctx, decode(action, data, v)?),
        "deleteauth" => delete_auth(o, ctx, decode(action, data, v)?),
        "linkauth" => link_auth(o, ctx, decode(action, data, v)?),
        "unlinkauth" => unlink_auth(o, ctx, decode(action, data, v)?),
        "setcode" => set_code(o, ctx, decode(action, data, v)?),
        "setabi" => set_abi(o, ctx, decode(action, data, v)?),
        "setprods" => set_prods(o, ctx, decode(action, data, v)?),
        "regproducer" => reg_producer(o, ctx, decode(action, data, v)?),
        _ => Err(NativeError::UnknownAction(action)),
    }
}

/// Errors unless `account` declared a permission that is `min` or a parent of it.
fn require_auth(
    o: &Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    account: Name,
    min: Name,
) -> Result<(), NativeError> {
    let mut found = None;
    for l in ctx.authorization.iter().filter(|l| l.actor == account) {
        if account::satisfies(o, account, l.permission, min, ctx.limits.max_authority_depth)? {
            return Ok(());
        }
        found = Some(l.permission);
    }
    match found {
        Some(p) => Err(NativeError::IrrelevantAuth(account, p, min)),
        None => Err(NativeError::MissingAuth(account)),
    }
}

fn require_account(o: &Overlay<'_, '_>, name: Name) -> Result<AccountRecord, NativeError> {
    account::account(o, name)?
        .ok_or_else(|| NativeError::Invalid(format!("account {name} does not exist")))
}

/// The authority is well formed and every account permission it names exists.
fn check_authority(o: &Overlay<'_, '_>, auth: &Authority, what: &str) -> Result<(), NativeError> {
    auth.validate().map_err(|e| NativeError::Invalid(format!("{what}: {e}")))?;
    for pw in &auth.accounts {
        let l = pw.permission;
        // `eosio.code` is virtual (granted to a contract's inline actions): only its account
        // must exist, as in Antelope.
        if l.permission == EOSIO_CODE {
            require_account(o, l.actor)?;
            continue;
        }
        if account::permission(o, l.actor, l.permission)?.is_none() {
            return Err(NativeError::Invalid(format!(
                "{what}: permission {}@{} does not exist",
                l.actor, l.permission
            )));
        }
    }
    Ok(())
}

fn new_account(
    o: &mut Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    a: NewAccount,
) -> Result<(), NativeError> {
    require_auth(o, ctx, a.creator, ACTIVE)?;
    let creator = require_account(o, a.creator)?;
    let name = a.name.to_string();
    if a.name == Name(0) || name.len() > 12 && !creator.privileged {
        return Err(NativeError::Invalid(format!(
            "account name {name:?} must be 1 to 12 characters"
        )));
    }
    if name.starts_with("eosio.") && !creator.privileged {
        return Err(NativeError::Invalid("only privileged accounts create eosio.* names".into()));
    }
    if account::account(o, a.name)?.is_some() {
        return Err(NativeError::AccountExists(a.name));
    }
    check_authority(o, &a.owner, "owner")?;
    check_authority(o, &a.active, "active")?;
    o.put_record(
        key::account(a.name),
        &AccountRecord {
            name: a.name,
            creation_date: ctx.now,
            privileged: false,
            last_code_update: BlockTimestamp(0),
        },
    );
    o.put_record(
        key::permission(a.name, OWNER),
        &PermissionRecord { parent: Name(0), auth: a.owner, last_updated: ctx.now },
    );
    o.put_record(
        key::permission(a.name, ACTIVE),
        &PermissionRecord { parent: OWNER, auth: a.active, last_updated: ctx.now },
    );
    Ok(())
}

fn update_auth(
    o: &mut Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    u: UpdateAuth,
) -> Result<(), NativeError> {
    require_account(o, u.account)?;
    if u.permission == Name(0) || u.permission.to_string().starts_with("eosio.") {
        return Err(NativeError::Invalid(format!("permission name {} is reserved", u.permission)));
    }
    let existing = account::permission(o, u.account, u.permission)?;
    if u.permission == OWNER {
        if u.parent != Name(0) {
            return Err(NativeError::Invalid("owner has no parent; set parent to \"\"".into()));
        }
    } else {
        if u.parent == Name(0) || u.parent == u.permission {
            return Err(NativeError::Invalid(format!(
                "{} needs a parent permission",
                u.permission
            )));
        }
        if account::permission(o, u.account, u.parent)?.is_none() {
            return Err(NativeError::Invalid(format!(
                "parent permission {}@{} does not exist",
                u.account, u.parent
            )));
        }
        if let Some(p) = &existing
            && p.parent != u.parent
        {
            return Err(NativeError::Invalid(format!(
                "changing the parent of {}@{} is not supported; delete and recreate it",
                u.account, u.permission
            )));
        }
    }
    // The permission itself (or, for a new one, its parent) or higher must authorise.
    let min = if existing.is_some() { u.permission } else { u.parent };
    require_auth(o, ctx, u.account, min)?;
    check_authority(o, &u.auth, "auth")?;
    o.put_record(
        key::permission(u.account, u.permission),
        &PermissionRecord { parent: u.parent, auth: u.auth, last_updated: ctx.now },
    );
    Ok(())
}

fn delete_auth(
    o: &mut Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    d: DeleteAuth,
) -> Result<(), NativeError> {
    if d.permission == OWNER || d.permission == ACTIVE {
        return Err(NativeError::Invalid("owner and active cannot be deleted".into()));
    }
    if account::permission(o, d.account, d.permission)?.is_none() {
        return Err(NativeError::Invalid(format!(
            "permission {}@{} does not exist",
            d.account, d.permission
        )));
    }
    require_auth(o, ctx, d.account, d.permission)?;
    // A permission with children cannot go: they would be orphaned.
    let prefix = key::permission_prefix(d.account);
    let mut from = prefix.clone();
    let mut inclusive = true;
    while let Some((k, v)) = o.next(&prefix, &from, inclusive)? {
        let rec: PermissionRecord =
            from_bytes(&v).map_err(|source| StoreError::Corrupt { what: "permission", source })?;
        if rec.parent == d.permission {
            return Err(NativeError::Invalid(format!(
                "{}@{} has child permissions; delete them first",
                d.account, d.permission
            )));
        }
        from = k;
        inclusive = false;
    }
    o.delete(key::permission(d.account, d.permission));
    Ok(())
}

/// Native actions whose required permission cannot be changed by a link.
fn unlinkable(code: Name, action: Name) -> bool {
    code == EOSIO
        && ["updateauth", "deleteauth", "linkauth", "unlinkauth", "canceldelay"]
            .contains(&action.to_string().as_str())
}

fn link_auth(
    o: &mut Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    l: LinkAuth,
) -> Result<(), NativeError> {
    require_account(o, l.account)?;
    require_account(o, l.code)?;
    if unlinkable(l.code, l.action_type) {
        return Err(NativeError::Invalid(format!(
            "{}::{} cannot be linked to a permission",
            l.code, l.action_type
        )));
    }
    if account::permission(o, l.account, l.requirement)?.is_none() {
        return Err(NativeError::Invalid(format!(
            "permission {}@{} does not exist",
            l.account, l.requirement
        )));
    }
    require_auth(o, ctx, l.account, ACTIVE)?;
    o.put_record(key::link(l.account, l.code, l.action_type), &l.requirement);
    Ok(())
}

fn unlink_auth(
    o: &mut Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    u: UnlinkAuth,
) -> Result<(), NativeError> {
    require_auth(o, ctx, u.account, ACTIVE)?;
    let k = key::link(u.account, u.code, u.action_type);
    if o.get(&k)?.is_none() {
        return Err(NativeError::Invalid(format!(
            "no link of {}::{} for {}",
            u.code, u.action_type, u.account
        )));
    }
    o.delete(k);
    Ok(())
}

fn set_code(
    o: &mut Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    s: SetCode,
) -> Result<(), NativeError> {
    let mut rec = require_account(o, s.account)?;
    require_auth(o, ctx, s.account, ACTIVE)?;
    if s.vmtype != 0 || s.vmversion != 0 {
        return Err(NativeError::Invalid("vmtype and vmversion must be 0 (WebAssembly)".into()));
    }
    if s.code.0.len() > ctx.limits.max_code_bytes {
        return Err(NativeError::Invalid(format!(
            "code of {} bytes exceeds the limit of {} bytes",
            s.code.0.len(),
            ctx.limits.max_code_bytes
        )));
    }
    if s.code.0.is_empty() {
        o.delete(key::code_hash(s.account));
    } else {
        (ctx.check_code)(&s.code.0)
            .map_err(|e| NativeError::Invalid(format!("invalid code: {e}")))?;
        let hash = Checksum256::hash(&s.code.0);
        if o.get(&key::code_hash(s.account))?.as_deref() == Some(hash.as_bytes().as_slice()) {
            return Err(NativeError::Invalid(
                "contract is already running this version of code".into(),
            ));
        }
        o.put(key::code(&hash), s.code.0);
        o.put(key::code_hash(s.account), to_bytes(&hash));
    }
    rec.last_code_update = ctx.now;
    o.put_record(key::account(s.account), &rec);
    Ok(())
}

fn set_abi(o: &mut Overlay<'_, '_>, ctx: &NativeContext<'_>, s: SetAbi) -> Result<(), NativeError> {
    require_account(o, s.account)?;
    require_auth(o, ctx, s.account, ACTIVE)?;
    if s.abi.0.len() > ctx.limits.max_abi_bytes {
        return Err(NativeError::Invalid(format!(
            "ABI of {} bytes exceeds the limit of {} bytes",
            s.abi.0.len(),
            ctx.limits.max_abi_bytes
        )));
    }
    if s.abi.0.is_empty() {
        o.delete(key::abi(s.account));
    } else {
        (ctx.check_abi)(&s.abi.0).map_err(|e| NativeError::Invalid(format!("invalid ABI: {e}")))?;
        o.put(key::abi(s.account), s.abi.0);
    }
    Ok(())
}

/// Key of the schedule proposed by `setprods` or `regproducer`, announced in the next block's
/// `new_producers`.
pub fn pending_schedule_key() -> Vec<u8> {
    vec![b'S']
}

/// Key of the schedule a block's header announced, in force from the next block.
pub fn announced_schedule_key() -> Vec<u8> {
    vec![b'P']
}

/// The version a newly proposed schedule takes: one above the active and the announced ones.
fn next_version(o: &Overlay<'_, '_>) -> Result<(ProducerSchedule, u32), NativeError> {
    let active: ProducerSchedule = o
        .get_record(&key::schedule(), "schedule")?
        .ok_or_else(|| NativeError::Invalid("no active producer schedule".into()))?;
    let announced: Option<ProducerSchedule> =
        o.get_record(&announced_schedule_key(), "announced schedule")?;
    let version = announced.as_ref().map_or(active.version, |a| a.version.max(active.version));
    let latest = announced.unwrap_or(active);
    Ok((latest, version + 1))
}

fn set_prods(
    o: &mut Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    s: SetProds,
) -> Result<(), NativeError> {
    require_auth(o, ctx, EOSIO, ACTIVE)?;
    validate_schedule(&s.schedule).map_err(NativeError::Invalid)?;
    for p in &s.schedule {
        require_account(o, p.producer_name)?;
    }
    let (_, version) = next_version(o)?;
    let proposed = ProducerSchedule { version, producers: s.schedule };
    o.put_record(pending_schedule_key(), &proposed);
    Ok(())
}

/// `regproducer`: a producer already in the schedule announces its new block-signing key with
/// its own `active` permission, as Antelope producers rotate keys with `eosio.system`'s
/// `regproducer` (no `eosio` signature needed, and no other producer can change it). Here it
/// proposes at once the latest schedule — the proposed one if any, else the announced, else
/// the active — with that producer's key replaced, under the next version; like `setprods`'
/// proposal it is announced in the next block's `new_producers` and in force at the block
/// after, so the switch of key falls on a block boundary and the old key signs up to it. The
/// same key again changes nothing. Joining the schedule is `setprods`' job (by `eosio`): this
/// chain has no voting, so an unscheduled producer is refused.
fn reg_producer(
    o: &mut Overlay<'_, '_>,
    ctx: &NativeContext<'_>,
    r: RegProducer,
) -> Result<(), NativeError> {
    require_account(o, r.producer)?;
    require_auth(o, ctx, r.producer, ACTIVE)?;
    if r.url.len() > 512 {
        return Err(NativeError::Invalid("url too long: at most 512 bytes".into()));
    }
    let proposed: Option<ProducerSchedule> =
        o.get_record(&pending_schedule_key(), "proposed schedule")?;
    let (latest, version) = next_version(o)?;
    let (mut schedule, version) = match proposed {
        Some(p) => {
            let v = p.version;
            (p, v)
        }
        None => (latest, version),
    };
    let Some(entry) = schedule.producers.iter_mut().find(|p| p.producer_name == r.producer) else {
        return Err(NativeError::Invalid(format!(
            "{} is not in the producer schedule: regproducer changes a scheduled producer's key; \
             eosio adds producers with setprods",
            r.producer
        )));
    };
    if entry.block_signing_key == r.producer_key {
        return Ok(());
    }
    entry.block_signing_key = r.producer_key;
    schedule.version = version;
    o.put_record(pending_schedule_key(), &schedule);
    Ok(())
}

#[cfg(test)]
mod tests;
