//! The i64 database as one action sees it: rows of the contract tables over the transaction's
//! [`Overlay`], with Antelope's iterator semantics (a per-action iterator cache; row iterators
//! are small non-negative integers, each table's end iterator is `-(index + 2)`, `-1` means "no
//! such table").
//!
//! A stored row is keyed by [`key::row`] and its value is the payer (8 bytes, a packed name)
//! followed by the row bytes, which is what the chain API reads back. Only the receiver's own
//! tables may be written. This module never decides anything about authority beyond the RAM
//! payer rule, and never touches rows outside the contract tables.

use std::collections::HashMap;

use rempart_core::Name;
use rempart_core::transaction::PermissionLevel;

use super::VmError;
use super::host::{Response, Seek};
use crate::store::{Overlay, StoreError, key};

/// Packs a stored row value: payer, then the row bytes.
pub fn encode_row(payer: Name, data: &[u8]) -> Vec<u8> {
    let mut v = Vec::with_capacity(8 + data.len());
    v.extend_from_slice(&payer.value().to_le_bytes());
    v.extend_from_slice(data);
    v
}

/// Splits a stored row value into payer and row bytes; `None` when it is shorter than a payer.
pub fn decode_row(value: &[u8]) -> Option<(Name, &[u8])> {
    if value.len() < 8 {
        return None;
    }
    let (p, data) = value.split_at(8);
    let mut b = [0u8; 8];
    b.copy_from_slice(p);
    Some((Name(u64::from_le_bytes(b)), data))
}

/// A row an iterator points at, with its stored value once read (the cache Antelope keeps too).
struct Row {
    table: usize,
    primary: u64,
    value: Option<Vec<u8>>,
}

#[derive(Debug, Clone, Copy, PartialEq, Eq, Hash)]
struct Table {
    code: Name,
    scope: Name,
    table: Name,
}

/// One action's view of the contract tables.
pub(crate) struct Db<'a, 'b, 't> {
    state: &'a mut Overlay<'b, 't>,
    receiver: Name,
    /// Whether the receiver is the action's contract (not a notified account).
    notified: bool,
    authorization: &'a [PermissionLevel],
    tables: Vec<Table>,
    table_index: HashMap<Table, usize>,
    /// Iterator → its row; `None` once removed.
    rows: Vec<Option<Row>>,
    row_index: HashMap<(usize, u64), i32>,
}

fn db_err<T>(msg: impl Into<String>) -> Result<T, VmError> {
    Err(VmError::Db(msg.into()))
}

impl<'a, 'b, 't> Db<'a, 'b, 't> {
    /// The database for an action of `code` running on `receiver`.
    pub(crate) fn new(
        state: &'a mut Overlay<'b, 't>,
        receiver: Name,
        code: Name,
        authorization: &'a [PermissionLevel],
    ) -> Self {
        Db {
            state,
            receiver,
            notified: receiver != code,
            authorization,
            tables: Vec::new(),
            table_index: HashMap::new(),
            rows: Vec::new(),
            row_index: HashMap::new(),
        }
    }

    /// The overlay, for the requests that are not about tables.
    pub(crate) fn state(&self) -> &Overlay<'b, 't> {
        self.state
    }

    fn table_of(&mut self, t: Table) -> usize {
        if let Some(&i) = self.table_index.get(&t) {
            return i;
        }
        self.tables.push(t);
        self.table_index.insert(t, self.tables.len() - 1);
        self.tables.len() - 1
    }

    fn end_of(table: usize) -> i32 {
        -(table as i32) - 2
    }

    /// The iterator of a row, remembering its stored value when the caller has it.
    fn iterator(&mut self, table: usize, primary: u64, value: Option<Vec<u8>>) -> i32 {
        if let Some(&i) = self.row_index.get(&(table, primary)) {
            if let (Some(v), Some(Some(row))) = (value, self.rows.get_mut(i as usize)) {
                row.value = Some(v);
            }
            return i;
        }
        self.rows.push(Some(Row { table, primary, value }));
        let i = (self.rows.len() - 1) as i32;
        self.row_index.insert((table, primary), i);
        i
    }

    /// The stored value (payer and bytes) of the row at `itr`, read once per action.
    fn value(&mut self, itr: i32) -> Result<&[u8], VmError> {
        let (ti, primary) = self.row(itr)?;
        let cached = matches!(&self.rows[itr as usize], Some(Row { value: Some(_), .. }));
        if !cached {
            let k = self.key_of(ti, primary);
            let Some(v) = self.state.get(&k)? else {
                return db_err("dereference of deleted object");
            };
            if let Some(row) = self.rows[itr as usize].as_mut() {
                row.value = Some(v);
            }
        }
        match &self.rows[itr as usize] {
            Some(Row { value: Some(v), .. }) => Ok(v),
            _ => db_err("dereference of deleted object"),
        }
    }

    fn row(&self, itr: i32) -> Result<(usize, u64), VmError> {
        if itr == -1 {
            return db_err("invalid iterator");
        }
        if itr < 0 {
            return db_err("dereference of end iterator");
        }
        match self.rows.get(itr as usize) {
            None => db_err("iterator out of range"),
            Some(None) => db_err("dereference of deleted object"),
            Some(Some(r)) => Ok((r.table, r.primary)),
        }
    }

    fn key_of(&self, table: usize, primary: u64) -> Vec<u8> {
        let t = self.tables[table];
        key::row(t.code, t.scope, t.table, primary)
    }

    fn prefix_of(&self, table: usize) -> Vec<u8> {
        let t = self.tables[table];
        key::table_prefix(t.code, t.scope, t.table)
    }

    fn primary_of(k: &[u8]) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&k[k.len() - 8..]);
        u64::from_be_bytes(b)
    }

    fn table_exists(&self, t: Table) -> Result<bool, StoreError> {
        let prefix = key::table_prefix(t.code, t.scope, t.table);
        Ok(self.state.next(&prefix, &prefix, true)?.is_some())
    }

    /// The receiver may only bill RAM to itself or to an account that authorised the action,
    /// and never to another account from a notification.
    fn check_payer(&self, payer: Name) -> Result<(), VmError> {
        if payer.value() == 0 {
            return db_err("must specify a valid account to pay for new record");
        }
        if payer == self.receiver {
            return Ok(());
        }
        if self.notified {
            return db_err("cannot charge RAM to other accounts during notify");
        }
        if !self.authorization.iter().any(|l| l.actor == payer) {
            return Err(VmError::MissingAuth(payer));
        }
        Ok(())
    }

    fn own(&self, table: usize) -> Result<(), VmError> {
        if self.tables[table].code != self.receiver {
            return db_err("db access violation");
        }
        Ok(())
    }

    fn iter(itr: i32, primary: Option<u64>, scanned: u64) -> Response {
        Response::Iter { itr, primary, scanned }
    }

    /// `db_store_i64`.
    pub(crate) fn store(
        &mut self,
        scope: u64,
        table: u64,
        payer: u64,
        id: u64,
        data: Vec<u8>,
    ) -> Result<Response, VmError> {
        self.check_payer(Name(payer))?;
        let t = Table { code: self.receiver, scope: Name(scope), table: Name(table) };
        let ti = self.table_of(t);
        let k = self.key_of(ti, id);
        if self.state.get(&k)?.is_some() {
            return db_err(format!(
                "could not insert object, most likely a uniqueness constraint was violated \
                 (primary key {id} exists in table {})",
                t.table
            ));
        }
        let value = encode_row(Name(payer), &data);
        self.state.put(k, value.clone());
        Ok(Self::iter(self.iterator(ti, id, Some(value)), None, 0))
    }

    /// `db_update_i64`.
    pub(crate) fn update(
        &mut self,
        itr: i32,
        payer: u64,
        data: Vec<u8>,
    ) -> Result<Response, VmError> {
        let (ti, primary) = self.row(itr)?;
        self.own(ti)?;
        let old_payer = decode_row(self.value(itr)?).map(|(p, _)| p).unwrap_or(self.receiver);
        let payer = if payer == 0 { old_payer } else { Name(payer) };
        if payer != old_payer {
            self.check_payer(payer)?;
        }
        let k = self.key_of(ti, primary);
        let value = encode_row(payer, &data);
        self.state.put(k, value.clone());
        if let Some(row) = self.rows[itr as usize].as_mut() {
            row.value = Some(value);
        }
        Ok(Response::Unit)
    }

    /// `db_remove_i64`.
    pub(crate) fn remove(&mut self, itr: i32) -> Result<Response, VmError> {
        let (ti, primary) = self.row(itr)?;
        self.own(ti)?;
        let k = self.key_of(ti, primary);
        self.state.delete(k);
        self.rows[itr as usize] = None;
        self.row_index.remove(&(ti, primary));
        Ok(Response::Unit)
    }

    /// `db_get_i64`: the row bytes, without the payer.
    pub(crate) fn get(&mut self, itr: i32) -> Result<Response, VmError> {
        match decode_row(self.value(itr)?) {
            Some((_, data)) => Ok(Response::Bytes(data.to_vec())),
            None => Err(VmError::Store(StoreError::Corrupt {
                what: "contract row",
                source: rempart_core::DecodeError::UnexpectedEnd { at: 0, needed: 8 },
            })),
        }
    }

    /// `db_next_i64`.
    pub(crate) fn next(&mut self, itr: i32) -> Result<Response, VmError> {
        if itr < -1 {
            return Ok(Self::iter(-1, None, 0));
        }
        let (ti, primary) = self.row(itr)?;
        let prefix = self.prefix_of(ti);
        let from = self.key_of(ti, primary);
        match self.state.next(&prefix, &from, false)? {
            Some((k, v)) => {
                let p = Self::primary_of(&k);
                Ok(Self::iter(self.iterator(ti, p, Some(v)), Some(p), 1))
            }
            None => Ok(Self::iter(Self::end_of(ti), None, 1)),
        }
    }

    /// `db_previous_i64`: the row before `itr` in its table (the last row for an end
    /// iterator), `-1` before the first row. One ordered lookup in the overlay.
    pub(crate) fn previous(&mut self, itr: i32) -> Result<Response, VmError> {
        let (ti, before) = if itr < -1 {
            let ti = (-(itr as i64) - 2) as usize;
            if ti >= self.tables.len() {
                return db_err("not a valid end iterator");
            }
            (ti, None)
        } else {
            let (ti, p) = self.row(itr)?;
            (ti, Some(self.key_of(ti, p)))
        };
        let prefix = self.prefix_of(ti);
        match self.state.previous(&prefix, before.as_deref())? {
            Some((k, v)) => {
                let p = Self::primary_of(&k);
                Ok(Self::iter(self.iterator(ti, p, Some(v)), Some(p), 1))
            }
            None => Ok(Self::iter(-1, None, 1)),
        }
    }

    /// `db_find_i64`, `db_lowerbound_i64`, `db_upperbound_i64`.
    pub(crate) fn seek(
        &mut self,
        code: u64,
        scope: u64,
        table: u64,
        id: u64,
        how: Seek,
    ) -> Result<Response, VmError> {
        let t = Table { code: Name(code), scope: Name(scope), table: Name(table) };
        let prefix = key::table_prefix(t.code, t.scope, t.table);
        let k = key::row(t.code, t.scope, t.table, id);
        let found: Option<(u64, Vec<u8>)> = match how {
            Seek::Exact => self.state.get(&k)?.map(|v| (id, v)),
            Seek::Lower | Seek::Upper => self
                .state
                .next(&prefix, &k, how == Seek::Lower)?
                .map(|(k, v)| (Self::primary_of(&k), v)),
        };
        // A table exists while it has rows; only a miss needs to ask.
        if found.is_none() && !self.table_exists(t)? {
            return Ok(Self::iter(-1, None, 1));
        }
        let ti = self.table_of(t);
        Ok(match found {
            Some((p, v)) => Self::iter(self.iterator(ti, p, Some(v)), Some(p), 1),
            None => Self::iter(Self::end_of(ti), None, 1),
        })
    }

    /// `db_end_i64`.
    pub(crate) fn end(&mut self, code: u64, scope: u64, table: u64) -> Result<Response, VmError> {
        let t = Table { code: Name(code), scope: Name(scope), table: Name(table) };
        if !self.table_exists(t)? {
            return Ok(Self::iter(-1, None, 1));
        }
        let ti = self.table_of(t);
        Ok(Self::iter(Self::end_of(ti), None, 1))
    }
}
