//! Account-level state records: accounts, their permissions and `linkauth` links, as stored
//! under [`crate::store::key`], and the read helpers both the apply path and the API use.
//!
//! These are plain records; the rules that create or change them live in [`crate::native`].
//! Nothing here reads the clock: times are block times handed in by the caller.

use rempart_core::{BlockTimestamp, Name, packed_struct};

use crate::authority::{Authority, AuthorityError, Level, PermissionSource};
use crate::store::{Overlay, Snapshot, StoreError, key};

packed_struct! {
    /// An account.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct AccountRecord {
        /// Its name.
        pub name: Name,
        /// Block time of the `newaccount` that created it.
        pub creation_date: BlockTimestamp,
        /// Whether it may run privileged actions.
        pub privileged: bool,
        /// Block time of its last `setcode` (0 if never).
        pub last_code_update: BlockTimestamp,
    }
}

packed_struct! {
    /// One permission of an account.
    #[derive(Debug, Clone, PartialEq, Eq)]
    pub struct PermissionRecord {
        /// Parent permission (zero for `owner`).
        pub parent: Name,
        /// Who satisfies it.
        pub auth: Authority,
        /// Block time of its last change.
        pub last_updated: BlockTimestamp,
    }
}

/// Read access to account state, from a transaction's overlay or an API snapshot.
pub trait AccountView {
    /// Raw state value.
    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError>;
}

impl AccountView for Overlay<'_, '_> {
    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(key)
    }
}

impl AccountView for Snapshot {
    fn raw(&self, key: &[u8]) -> Result<Option<Vec<u8>>, StoreError> {
        self.get(key)
    }
}

fn decode<T: rempart_core::Unpack>(
    v: Option<Vec<u8>>,
    what: &'static str,
) -> Result<Option<T>, StoreError> {
    v.map(|b| rempart_core::from_bytes(&b).map_err(|source| StoreError::Corrupt { what, source }))
        .transpose()
}

/// The account record, if it exists.
pub fn account(view: &dyn AccountView, name: Name) -> Result<Option<AccountRecord>, StoreError> {
    decode(view.raw(&key::account(name))?, "account")
}

/// A permission, if it exists.
pub fn permission(
    view: &dyn AccountView,
    account: Name,
    perm: Name,
) -> Result<Option<PermissionRecord>, StoreError> {
    decode(view.raw(&key::permission(account, perm))?, "permission")
}

/// The permission `linkauth` requires of `account` for `code::action` (`None`: no link, the
/// default `active` applies).
pub fn linked_permission(
    view: &dyn AccountView,
    account: Name,
    code: Name,
    action: Name,
) -> Result<Option<Name>, StoreError> {
    if let Some(n) = decode(view.raw(&key::link(account, code, action))?, "link")? {
        return Ok(Some(n));
    }
    decode(view.raw(&key::link(account, code, Name(0)))?, "link")
}

/// Whether permission `have` of `account` is `want` or one of its ancestors (so it satisfies
/// whatever `want` satisfies). Bounded by `max_depth` parent steps.
pub fn satisfies(
    view: &dyn AccountView,
    account: Name,
    have: Name,
    want: Name,
    max_depth: usize,
) -> Result<bool, StoreError> {
    let mut current = want;
    for _ in 0..=max_depth {
        if current == have {
            return Ok(true);
        }
        match permission(view, account, current)? {
            Some(p) if p.parent != Name(0) => current = p.parent,
            _ => return Ok(false),
        }
    }
    Ok(false)
}

/// Adapts an [`AccountView`] to the authority checker.
#[derive(Clone, Copy)]
pub struct Permissions<'v>(pub &'v dyn AccountView);

impl std::fmt::Debug for Permissions<'_> {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Permissions")
    }
}

impl PermissionSource for Permissions<'_> {
    fn authority(&self, level: Level) -> Result<Option<Authority>, AuthorityError> {
        permission(self.0, level.actor, level.permission)
            .map(|p| p.map(|p| p.auth))
            .map_err(|e| AuthorityError::State(e.to_string()))
    }
}
