//! The `env` functions a contract imports, with Antelope's semantics and error behaviour: action
//! data, authorization, assertions, console, time, the i64 database, hashes and key recovery,
//! inline actions, the libc memory helpers and harmless stand-ins for the privileged intrinsics
//! that CDT links into every contract.
//!
//! These functions run inside the contract's call and see only its memory and the per-action
//! [`State`]. Anything that needs the chain state (database rows, accounts, notifications, inline
//! actions) is handed to the driver in `vm.rs` as a [`Request`] and answered there. Nothing here
//! reads the clock, the environment or randomness, and a bad pointer or length is a contract
//! error, never a panic.

use std::future::Future;
use std::pin::Pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll};

use rempart_core::codec::Reader;
use rempart_core::transaction::{Action, PermissionLevel};
use rempart_core::{Checksum160, Checksum256, Checksum512, Name, Unpack, from_bytes, to_bytes};
use wasmtime::{Caller, Linker, Memory, ResourceLimiter};

use super::VmError;

/// Every function a contract may import from `env`. `setcode` refuses any other import.
pub(crate) const SUPPORTED_IMPORTS: &[&str] = &[
    "read_action_data",
    "action_data_size",
    "current_receiver",
    "get_sender",
    "require_auth",
    "require_auth2",
    "has_auth",
    "require_recipient",
    "is_account",
    "eosio_assert",
    "eosio_assert_message",
    "eosio_assert_code",
    "eosio_exit",
    "abort",
    "prints",
    "prints_l",
    "printi",
    "printui",
    "printi128",
    "printui128",
    "printsf",
    "printdf",
    "printn",
    "printhex",
    "current_time",
    "publication_time",
    "db_store_i64",
    "db_update_i64",
    "db_remove_i64",
    "db_get_i64",
    "db_next_i64",
    "db_previous_i64",
    "db_find_i64",
    "db_lowerbound_i64",
    "db_upperbound_i64",
    "db_end_i64",
    "sha256",
    "sha1",
    "sha512",
    "ripemd160",
    "assert_sha256",
    "assert_sha1",
    "assert_sha512",
    "assert_ripemd160",
    "recover_key",
    "assert_recover_key",
    "send_inline",
    "memcpy",
    "memmove",
    "memset",
    "memcmp",
    "get_active_producers",
    "set_proposed_producers",
    "get_blockchain_parameters_packed",
    "set_blockchain_parameters_packed",
    "is_privileged",
    "set_privileged",
    "get_resource_limits",
    "set_resource_limits",
    "is_feature_activated",
    "preactivate_feature",
    "__ashlti3",
    "__ashrti3",
    "__lshlti3",
    "__lshrti3",
    "__multi3",
    "__divti3",
    "__udivti3",
    "__modti3",
    "__umodti3",
];

/// Longest assertion message kept (Antelope's `max_assert_message`).
const MAX_ASSERT_MESSAGE: usize = 1024;
/// Fuel every host call costs, on top of its per-byte cost (`charge` bills 1 fuel per 8 "bytes";
/// callers scale the bytes by how slow their work is per byte).
const CALL_FUEL: u64 = 50;
/// Extra fuel for a call the driver answers (a fiber round trip and a store lookup).
const STATE_CALL_BYTES: u64 = 8_000;
/// Bytes billed per row a database call visits.
const ROW_BYTES: u64 = 1_600;
/// Bytes billed per key recovery (about 50 µs of work).
const RECOVER_BYTES: u64 = 400_000;
/// Fuel a `memory.grow` refused at the limit counts for against the action's budget. The
/// instruction itself costs one unit but about a microsecond of host work (a libcall and the
/// limiter), so without this a contract looping on a refused grow would run for seconds
/// before its fuel ran out.
pub(crate) const REFUSED_GROW_FUEL: u64 = 20_000;

/// What the driver must do for the contract, with the borrowed chain state in hand.
#[derive(Debug)]
pub(crate) enum Request {
    /// `db_store_i64` in the receiver's table.
    Store { scope: u64, table: u64, payer: u64, id: u64, data: Vec<u8> },
    /// `db_update_i64`.
    Update { itr: i32, payer: u64, data: Vec<u8> },
    /// `db_remove_i64`.
    Remove { itr: i32 },
    /// `db_get_i64`: the row's bytes.
    Get { itr: i32 },
    /// `db_next_i64`.
    Next { itr: i32 },
    /// `db_previous_i64`.
    Previous { itr: i32 },
    /// `db_find_i64` (`Bound::Exact`), `db_lowerbound_i64`, `db_upperbound_i64`.
    Seek { code: u64, scope: u64, table: u64, id: u64, how: Seek },
    /// `db_end_i64`.
    End { code: u64, scope: u64, table: u64 },
    /// `is_account`.
    IsAccount(Name),
    /// `require_recipient`.
    RequireRecipient(Name),
    /// `send_inline`.
    SendInline(Action),
}

/// How a [`Request::Seek`] picks its row.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub(crate) enum Seek {
    /// The row with this primary key.
    Exact,
    /// The first row at or after it.
    Lower,
    /// The first row after it.
    Upper,
}

/// The driver's answer to a [`Request`].
#[derive(Debug)]
pub(crate) enum Response {
    /// An iterator, with how many rows the driver visited to find it (billed as fuel).
    Iter { itr: i32, primary: Option<u64>, scanned: u64 },
    /// Row bytes.
    Bytes(Vec<u8>),
    /// A yes/no answer.
    Bool(bool),
    /// Done.
    Unit,
    /// The request failed; the contract aborts with this error.
    Fail(VmError),
}

/// The mailbox between a suspended host call and the driver.
#[derive(Debug, Default)]
pub(crate) struct Exchange {
    pub(crate) request: Option<Request>,
    pub(crate) response: Option<Response>,
}

/// Locks the mailbox; a poisoned lock still holds consistent data (plain options).
pub(crate) fn lock(m: &Mutex<Exchange>) -> std::sync::MutexGuard<'_, Exchange> {
    m.lock().unwrap_or_else(|e| e.into_inner())
}

/// A host call waiting for the driver: the first poll posts the request and suspends the
/// contract's fiber; the poll after the driver answered returns the response.
struct Ask {
    mailbox: Arc<Mutex<Exchange>>,
    request: Option<Request>,
}

impl Future for Ask {
    type Output = Response;
    fn poll(self: Pin<&mut Self>, _: &mut Context<'_>) -> Poll<Response> {
        let this = self.get_mut();
        let mut mailbox = lock(&this.mailbox);
        if let Some(request) = this.request.take() {
            mailbox.request = Some(request);
            return Poll::Pending;
        }
        match mailbox.response.take() {
            Some(r) => Poll::Ready(r),
            None => Poll::Pending,
        }
    }
}

/// Ends the action successfully (`eosio_exit`); not an error to report.
#[derive(Debug, thiserror::Error)]
#[error("eosio_exit")]
pub(crate) struct Exit;

/// Per-action data every host function sees.
pub(crate) struct State {
    /// Memory 0, once the instance exists.
    pub(crate) memory: Option<Memory>,
    /// The account whose code runs.
    pub(crate) receiver: Name,
    /// The action's declared authorizations.
    pub(crate) authorization: Vec<PermissionLevel>,
    /// The packed action data.
    pub(crate) data: Vec<u8>,
    /// Block time, µs since the epoch.
    pub(crate) now: i64,
    /// Publication time of the transaction, µs since the epoch.
    pub(crate) published: i64,
    /// Sender of an inline action (zero otherwise).
    pub(crate) sender: Name,
    /// Console output so far.
    pub(crate) console: String,
    /// Console cap in bytes; output past it is dropped.
    pub(crate) max_console: usize,
    /// Largest memory in bytes.
    pub(crate) max_memory: usize,
    /// `memory.grow` calls refused because of `max_memory` (each returned -1).
    pub(crate) refused_grows: u64,
    /// Refused grows the action's fuel pays for ([`REFUSED_GROW_FUEL`] each); one more runs
    /// out of fuel.
    pub(crate) refused_grow_allowance: u64,
    /// Largest inline action in bytes.
    pub(crate) max_inline: usize,
    /// The mailbox to the driver.
    pub(crate) mailbox: Arc<Mutex<Exchange>>,
}

impl ResourceLimiter for State {
    fn memory_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        if desired <= self.max_memory {
            return Ok(true);
        }
        if self.memory.is_none() {
            // Instantiation: the module's initial memory alone is over the limit (setcode
            // refuses such code, but the limit may have been lowered since).
            return Err(wasmtime::Error::new(VmError::MemoryLimit { limit: self.max_memory }));
        }
        // `memory.grow` past the limit returns -1 to the contract, as core WebAssembly and
        // eos-vm do; a contract that cannot cope asserts or traps on its own, and one that
        // keeps asking burns its fuel.
        self.refused_grows = self.refused_grows.saturating_add(1);
        if self.refused_grows > self.refused_grow_allowance {
            return Err(wasmtime::Error::new(wasmtime::Trap::OutOfFuel));
        }
        Ok(false)
    }

    fn table_growing(
        &mut self,
        _current: usize,
        desired: usize,
        _maximum: Option<usize>,
    ) -> wasmtime::Result<bool> {
        Ok(desired <= 65_536)
    }

    fn instances(&self) -> usize {
        1
    }
    fn tables(&self) -> usize {
        1
    }
    fn memories(&self) -> usize {
        1
    }
}

type Res<T> = wasmtime::Result<T>;
type C<'a> = Caller<'a, State>;

fn fail<T>(e: VmError) -> Res<T> {
    Err(wasmtime::Error::new(e))
}

/// Bills `bytes` of host work (plus the call itself) against the transaction's fuel.
fn charge(c: &mut C<'_>, bytes: u64) -> Res<()> {
    let cost = CALL_FUEL.saturating_add(bytes / 8);
    let fuel = c.get_fuel()?;
    if fuel < cost {
        c.set_fuel(0)?;
        return Err(wasmtime::Error::new(wasmtime::Trap::OutOfFuel));
    }
    c.set_fuel(fuel - cost)
}

fn memory(c: &C<'_>) -> Res<Memory> {
    match c.data().memory {
        Some(m) => Ok(m),
        None => fail(VmError::Access("the contract has no memory".into())),
    }
}

fn range(c: &C<'_>, mem: Memory, ptr: i32, len: i32) -> Res<std::ops::Range<usize>> {
    let start = ptr as u32 as usize;
    let end = start.checked_add(len as u32 as usize);
    match end {
        Some(end) if end <= mem.data_size(c) => Ok(start..end),
        _ => fail(VmError::Access(format!(
            "{} bytes at {} are outside the contract's memory",
            len as u32, ptr as u32
        ))),
    }
}

fn read(c: &C<'_>, ptr: i32, len: i32) -> Res<Vec<u8>> {
    let mem = memory(c)?;
    let r = range(c, mem, ptr, len)?;
    Ok(mem.data(c)[r].to_vec())
}

fn write(c: &mut C<'_>, ptr: i32, bytes: &[u8]) -> Res<()> {
    let mem = memory(c)?;
    let r = range(c, mem, ptr, bytes.len() as i32)?;
    mem.data_mut(c)[r].copy_from_slice(bytes);
    Ok(())
}

/// A NUL-terminated string at `ptr`, at most `max` bytes kept; the scan is billed.
fn c_string(c: &mut C<'_>, ptr: i32, max: usize) -> Res<String> {
    let (s, scanned) = scan_c_string(c, ptr, max)?;
    charge(c, scanned as u64)?;
    Ok(s)
}

fn scan_c_string(c: &C<'_>, ptr: i32, max: usize) -> Res<(String, usize)> {
    let mem = memory(c)?;
    let data = mem.data(c);
    let start = ptr as u32 as usize;
    let Some(tail) = data.get(start..) else {
        return fail(VmError::Access(format!("string at {start} is outside the memory")));
    };
    match tail.iter().position(|&b| b == 0) {
        Some(n) => Ok((String::from_utf8_lossy(&tail[..n.min(max)]).into_owned(), n)),
        None => fail(VmError::Access(format!("string at {start} is not NUL-terminated"))),
    }
}

fn print(c: &mut C<'_>, text: &str) {
    let s = c.data_mut();
    let room = s.max_console.saturating_sub(s.console.len());
    if text.len() <= room {
        s.console.push_str(text);
    } else {
        let mut cut = room;
        while !text.is_char_boundary(cut) {
            cut -= 1;
        }
        s.console.push_str(&text[..cut]);
    }
}

fn has_auth(c: &C<'_>, account: Name) -> bool {
    c.data().authorization.iter().any(|l| l.actor == account)
}

async fn ask(mailbox: Arc<Mutex<Exchange>>, request: Request) -> Response {
    Ask { mailbox, request: Some(request) }.await
}

/// Sends `request` to the driver and waits; a failure becomes the contract's error.
async fn call(c: &mut C<'_>, request: Request) -> Res<Response> {
    charge(c, STATE_CALL_BYTES)?;
    let mailbox = c.data().mailbox.clone();
    match ask(mailbox, request).await {
        Response::Fail(e) => fail(e),
        Response::Iter { itr, primary, scanned } => {
            charge(c, scanned.saturating_mul(ROW_BYTES))?;
            Ok(Response::Iter { itr, primary, scanned })
        }
        r => Ok(r),
    }
}

fn iter_of(r: Response) -> Res<(i32, Option<u64>)> {
    match r {
        Response::Iter { itr, primary, .. } => Ok((itr, primary)),
        other => fail(VmError::Engine(format!("expected an iterator, got {other:?}"))),
    }
}

fn digest<const N: usize>(
    c: &mut C<'_>,
    ptr: i32,
    len: i32,
    hash: fn(&[u8]) -> [u8; N],
) -> Res<[u8; N]> {
    charge(c, (len as u32 as u64).saturating_mul(16))?;
    let data = read(c, ptr, len)?;
    Ok(hash(&data))
}

fn sha256_of(d: &[u8]) -> [u8; 32] {
    Checksum256::hash(d).0
}
fn sha1_of(d: &[u8]) -> [u8; 20] {
    use sha1::Digest;
    sha1::Sha1::digest(d).into()
}
fn sha512_of(d: &[u8]) -> [u8; 64] {
    Checksum512::hash(d).0
}
fn ripemd160_of(d: &[u8]) -> [u8; 20] {
    Checksum160::ripemd160(d).0
}

/// Registers a hash function and its `assert_` twin.
fn define_hash<const N: usize>(
    linker: &mut Linker<State>,
    name: &'static str,
    assert_name: &'static str,
    hash: fn(&[u8]) -> [u8; N],
) -> Res<()> {
    linker.func_wrap("env", name, move |mut c: C<'_>, ptr: i32, len: i32, out: i32| {
        let h = digest(&mut c, ptr, len, hash)?;
        write(&mut c, out, &h)
    })?;
    linker.func_wrap(
        "env",
        assert_name,
        move |mut c: C<'_>, ptr: i32, len: i32, expected: i32| {
            let h = digest(&mut c, ptr, len, hash)?;
            let want = read(&c, expected, N as i32)?;
            if want != h {
                return fail(VmError::Crypto(format!("{name} hash mismatch")));
            }
            Ok(())
        },
    )?;
    Ok(())
}

/// A value unpacked from the front of `bytes`; bytes after it are ignored, as Leap's
/// `fc::raw::unpack` from a datastream ignores them in `recover_key` and `assert_recover_key`.
fn unpack_front<T: Unpack>(bytes: &[u8]) -> Result<T, rempart_core::DecodeError> {
    T::unpack(&mut Reader::new(bytes))
}

/// The key that signed `digest` with the packed signature at `sig`.
fn recover(
    c: &mut C<'_>,
    digest: i32,
    sig: i32,
    sig_len: i32,
) -> Res<rempart_core::key::PublicKey> {
    charge(c, RECOVER_BYTES)?;
    let d = read(c, digest, 32)?;
    let s = read(c, sig, sig_len)?;
    let signature: rempart_core::key::Signature = match unpack_front(&s) {
        Ok(s) => s,
        Err(e) => return fail(VmError::Crypto(format!("signature does not unpack: {e}"))),
    };
    let mut digest = [0u8; 32];
    digest.copy_from_slice(&d);
    match signature.recover(&Checksum256(digest)) {
        Ok(k) => Ok(k),
        Err(e) => fail(VmError::Crypto(format!("key recovery failed: {e}"))),
    }
}

/// Defines every `env` function on `linker`.
pub(crate) fn define(linker: &mut Linker<State>) -> Res<()> {
    // Action data and context.
    linker.func_wrap("env", "read_action_data", |mut c: C<'_>, ptr: i32, len: i32| {
        let size = c.data().data.len();
        if len == 0 {
            return Ok(size as i32);
        }
        let n = size.min(len as u32 as usize);
        charge(&mut c, n as u64)?;
        let bytes = c.data().data[..n].to_vec();
        write(&mut c, ptr, &bytes)?;
        Ok(n as i32)
    })?;
    linker.func_wrap("env", "action_data_size", |c: C<'_>| c.data().data.len() as i32)?;
    linker.func_wrap("env", "current_receiver", |c: C<'_>| c.data().receiver.value() as i64)?;
    linker.func_wrap("env", "get_sender", |c: C<'_>| c.data().sender.value() as i64)?;
    linker.func_wrap("env", "current_time", |c: C<'_>| c.data().now)?;
    linker.func_wrap("env", "publication_time", |c: C<'_>| c.data().published)?;

    // Authorization.
    linker.func_wrap("env", "require_auth", |c: C<'_>, account: i64| {
        let account = Name(account as u64);
        if !has_auth(&c, account) {
            return fail(VmError::MissingAuth(account));
        }
        Ok(())
    })?;
    linker.func_wrap("env", "require_auth2", |c: C<'_>, account: i64, permission: i64| {
        let level =
            PermissionLevel { actor: Name(account as u64), permission: Name(permission as u64) };
        if !c.data().authorization.contains(&level) {
            return fail(VmError::MissingAuth(level.actor));
        }
        Ok(())
    })?;
    linker.func_wrap("env", "has_auth", |c: C<'_>, account: i64| {
        i32::from(has_auth(&c, Name(account as u64)))
    })?;
    linker.func_wrap_async("env", "require_recipient", |mut c: C<'_>, (account,): (i64,)| {
        Box::new(async move {
            charge(&mut c, 0)?;
            call(&mut c, Request::RequireRecipient(Name(account as u64))).await?;
            Ok(())
        })
    })?;
    linker.func_wrap_async("env", "is_account", |mut c: C<'_>, (account,): (i64,)| {
        Box::new(async move {
            charge(&mut c, 0)?;
            match call(&mut c, Request::IsAccount(Name(account as u64))).await? {
                Response::Bool(b) => Ok(i32::from(b)),
                other => fail(VmError::Engine(format!("is_account answered {other:?}"))),
            }
        })
    })?;

    // Assertions.
    linker.func_wrap("env", "eosio_assert", |c: C<'_>, test: i32, msg: i32| {
        if test == 0 {
            let (message, _) = scan_c_string(&c, msg, MAX_ASSERT_MESSAGE)?;
            return fail(VmError::Assert(message));
        }
        Ok(())
    })?;
    linker.func_wrap(
        "env",
        "eosio_assert_message",
        |c: C<'_>, test: i32, msg: i32, len: i32| {
            if test == 0 {
                let n = (len as u32 as usize).min(MAX_ASSERT_MESSAGE) as i32;
                let bytes = read(&c, msg, n)?;
                return fail(VmError::Assert(String::from_utf8_lossy(&bytes).into_owned()));
            }
            Ok(())
        },
    )?;
    linker.func_wrap("env", "eosio_assert_code", |_: C<'_>, test: i32, code: i64| {
        if test == 0 {
            return fail(VmError::AssertCode(code as u64));
        }
        Ok(())
    })?;
    linker.func_wrap("env", "eosio_exit", |_: C<'_>, _code: i32| -> Res<()> {
        Err(wasmtime::Error::new(Exit))
    })?;
    linker.func_wrap("env", "abort", |_: C<'_>| -> Res<()> { fail(VmError::Abort) })?;

    // Console.
    linker.func_wrap("env", "prints", |mut c: C<'_>, ptr: i32| {
        let max = c.data().max_console;
        let s = c_string(&mut c, ptr, max)?;
        print(&mut c, &s);
        Ok(())
    })?;
    linker.func_wrap("env", "prints_l", |mut c: C<'_>, ptr: i32, len: i32| {
        charge(&mut c, len as u32 as u64)?;
        let bytes = read(&c, ptr, len)?;
        print(&mut c, &String::from_utf8_lossy(&bytes));
        Ok(())
    })?;
    linker.func_wrap("env", "printi", |mut c: C<'_>, v: i64| print(&mut c, &v.to_string()))?;
    linker.func_wrap("env", "printui", |mut c: C<'_>, v: i64| {
        print(&mut c, &(v as u64).to_string())
    })?;
    linker.func_wrap("env", "printi128", |mut c: C<'_>, ptr: i32| {
        let b = read(&c, ptr, 16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(&b);
        print(&mut c, &i128::from_le_bytes(a).to_string());
        Ok(())
    })?;
    linker.func_wrap("env", "printui128", |mut c: C<'_>, ptr: i32| {
        let b = read(&c, ptr, 16)?;
        let mut a = [0u8; 16];
        a.copy_from_slice(&b);
        print(&mut c, &u128::from_le_bytes(a).to_string());
        Ok(())
    })?;
    linker.func_wrap("env", "printsf", |mut c: C<'_>, v: f32| print(&mut c, &format!("{v:e}")))?;
    linker.func_wrap("env", "printdf", |mut c: C<'_>, v: f64| print(&mut c, &format!("{v:e}")))?;
    linker.func_wrap("env", "printn", |mut c: C<'_>, v: i64| {
        print(&mut c, &Name(v as u64).to_string())
    })?;
    linker.func_wrap("env", "printhex", |mut c: C<'_>, ptr: i32, len: i32| {
        charge(&mut c, len as u32 as u64)?;
        let bytes = read(&c, ptr, len)?;
        print(&mut c, &hex::encode(bytes));
        Ok(())
    })?;

    // The i64 database.
    linker.func_wrap_async(
        "env",
        "db_store_i64",
        |mut c: C<'_>, (scope, table, payer, id, ptr, len): (i64, i64, i64, i64, i32, i32)| {
            Box::new(async move {
                charge(&mut c, 8 * len as u32 as u64)?;
                let data = read(&c, ptr, len)?;
                let r = call(
                    &mut c,
                    Request::Store {
                        scope: scope as u64,
                        table: table as u64,
                        payer: payer as u64,
                        id: id as u64,
                        data,
                    },
                )
                .await?;
                Ok(iter_of(r)?.0)
            })
        },
    )?;
    linker.func_wrap_async(
        "env",
        "db_update_i64",
        |mut c: C<'_>, (itr, payer, ptr, len): (i32, i64, i32, i32)| {
            Box::new(async move {
                charge(&mut c, 8 * len as u32 as u64)?;
                let data = read(&c, ptr, len)?;
                call(&mut c, Request::Update { itr, payer: payer as u64, data }).await?;
                Ok(())
            })
        },
    )?;
    linker.func_wrap_async("env", "db_remove_i64", |mut c: C<'_>, (itr,): (i32,)| {
        Box::new(async move {
            charge(&mut c, 0)?;
            call(&mut c, Request::Remove { itr }).await?;
            Ok(())
        })
    })?;
    linker.func_wrap_async(
        "env",
        "db_get_i64",
        |mut c: C<'_>, (itr, ptr, len): (i32, i32, i32)| {
            Box::new(async move {
                charge(&mut c, 0)?;
                let bytes = match call(&mut c, Request::Get { itr }).await? {
                    Response::Bytes(b) => b,
                    other => {
                        return fail(VmError::Engine(format!("db_get_i64 answered {other:?}")));
                    }
                };
                if len == 0 {
                    return Ok(bytes.len() as i32);
                }
                let n = bytes.len().min(len as u32 as usize);
                charge(&mut c, n as u64)?;
                write(&mut c, ptr, &bytes[..n])?;
                Ok(n as i32)
            })
        },
    )?;
    for (name, previous) in [("db_next_i64", false), ("db_previous_i64", true)] {
        linker.func_wrap_async("env", name, move |mut c: C<'_>, (itr, out): (i32, i32)| {
            Box::new(async move {
                charge(&mut c, 0)?;
                let request =
                    if previous { Request::Previous { itr } } else { Request::Next { itr } };
                let (next, primary) = iter_of(call(&mut c, request).await?)?;
                if let Some(p) = primary {
                    write(&mut c, out, &p.to_le_bytes())?;
                }
                Ok(next)
            })
        })?;
    }
    for (name, how) in [
        ("db_find_i64", Seek::Exact),
        ("db_lowerbound_i64", Seek::Lower),
        ("db_upperbound_i64", Seek::Upper),
    ] {
        linker.func_wrap_async(
            "env",
            name,
            move |mut c: C<'_>, (code, scope, table, id): (i64, i64, i64, i64)| {
                Box::new(async move {
                    charge(&mut c, 0)?;
                    let request = Request::Seek {
                        code: code as u64,
                        scope: scope as u64,
                        table: table as u64,
                        id: id as u64,
                        how,
                    };
                    Ok(iter_of(call(&mut c, request).await?)?.0)
                })
            },
        )?;
    }
    linker.func_wrap_async(
        "env",
        "db_end_i64",
        |mut c: C<'_>, (code, scope, table): (i64, i64, i64)| {
            Box::new(async move {
                charge(&mut c, 0)?;
                let request =
                    Request::End { code: code as u64, scope: scope as u64, table: table as u64 };
                Ok(iter_of(call(&mut c, request).await?)?.0)
            })
        },
    )?;

    // Hashes and keys.
    define_hash(linker, "sha256", "assert_sha256", sha256_of)?;
    define_hash(linker, "sha1", "assert_sha1", sha1_of)?;
    define_hash(linker, "sha512", "assert_sha512", sha512_of)?;
    define_hash(linker, "ripemd160", "assert_ripemd160", ripemd160_of)?;
    linker.func_wrap(
        "env",
        "recover_key",
        |mut c: C<'_>, digest: i32, sig: i32, sig_len: i32, out: i32, out_len: i32| {
            let key = recover(&mut c, digest, sig, sig_len)?;
            let packed = to_bytes(&key);
            // Leap copies min(buffer, size) and returns the size only for key types newer than
            // K1 and R1 (WebAuthn, which rempart refuses); K1 and R1 keys are packed into the
            // buffer and a buffer shorter than the packed key fails the action, as here.
            if (out_len as u32 as usize) < packed.len() {
                return fail(VmError::Crypto(format!(
                    "public key buffer of {} bytes is smaller than the {} the key needs",
                    out_len as u32,
                    packed.len()
                )));
            }
            write(&mut c, out, &packed)?;
            Ok(packed.len() as i32)
        },
    )?;
    linker.func_wrap(
        "env",
        "assert_recover_key",
        |mut c: C<'_>, digest: i32, sig: i32, sig_len: i32, key: i32, key_len: i32| {
            let recovered = recover(&mut c, digest, sig, sig_len)?;
            let bytes = read(&c, key, key_len)?;
            let expected: rempart_core::key::PublicKey = match unpack_front(&bytes) {
                Ok(k) => k,
                Err(e) => {
                    return fail(VmError::Crypto(format!("public key does not unpack: {e}")));
                }
            };
            if expected != recovered {
                return fail(VmError::Crypto(
                    "Error expected key different than recovered key".into(),
                ));
            }
            Ok(())
        },
    )?;

    // Inline actions.
    linker.func_wrap_async("env", "send_inline", |mut c: C<'_>, (ptr, len): (i32, i32)| {
        Box::new(async move {
            let size = len as u32 as usize;
            let limit = c.data().max_inline;
            if size > limit {
                return fail(VmError::InlineTooBig { size, limit });
            }
            charge(&mut c, size as u64)?;
            let bytes = read(&c, ptr, len)?;
            let action: Action = match from_bytes(&bytes) {
                Ok(a) => a,
                Err(e) => {
                    return fail(VmError::Host(format!("inline action does not unpack: {e}")));
                }
            };
            call(&mut c, Request::SendInline(action)).await?;
            Ok(())
        })
    })?;

    // libc memory helpers.
    linker.func_wrap("env", "memcpy", |mut c: C<'_>, dest: i32, src: i32, len: i32| {
        let n = len as u32 as u64;
        if (dest as u32 as i64 - src as u32 as i64).unsigned_abs() < n {
            return fail(VmError::Overlap);
        }
        copy(&mut c, dest, src, len)?;
        Ok(dest)
    })?;
    linker.func_wrap("env", "memmove", |mut c: C<'_>, dest: i32, src: i32, len: i32| {
        copy(&mut c, dest, src, len)?;
        Ok(dest)
    })?;
    linker.func_wrap("env", "memset", |mut c: C<'_>, dest: i32, value: i32, len: i32| {
        charge(&mut c, len as u32 as u64)?;
        let mem = memory(&c)?;
        let r = range(&c, mem, dest, len)?;
        mem.data_mut(&mut c)[r].fill(value as u8);
        Ok(dest)
    })?;
    linker.func_wrap("env", "memcmp", |mut c: C<'_>, a: i32, b: i32, len: i32| {
        charge(&mut c, len as u32 as u64)?;
        let mem = memory(&c)?;
        let ra = range(&c, mem, a, len)?;
        let rb = range(&c, mem, b, len)?;
        let data = mem.data(&c);
        Ok(match data[ra].cmp(&data[rb]) {
            std::cmp::Ordering::Less => -1,
            std::cmp::Ordering::Equal => 0,
            std::cmp::Ordering::Greater => 1,
        })
    })?;

    // Producer and parameter intrinsics: CDT links them into every contract. Reads answer
    // "nothing"; the privileged writes refuse, as they do for a non-privileged account.
    linker.func_wrap("env", "get_active_producers", |_: C<'_>, _ptr: i32, _len: i32| 0i32)?;
    linker.func_wrap("env", "is_privileged", |_: C<'_>, _account: i64| 0i32)?;
    linker.func_wrap("env", "is_feature_activated", |_: C<'_>, _digest: i32| 0i32)?;
    linker.func_wrap(
        "env",
        "get_resource_limits",
        |mut c: C<'_>, _account: i64, ram: i32, net: i32, cpu: i32| {
            for ptr in [ram, net, cpu] {
                write(&mut c, ptr, &(-1i64).to_le_bytes())?;
            }
            Ok(())
        },
    )?;
    linker.func_wrap(
        "env",
        "set_proposed_producers",
        |_: C<'_>, _p: i32, _l: i32| -> Res<i64> {
            fail(VmError::Unaccessible("set_proposed_producers"))
        },
    )?;
    linker.func_wrap(
        "env",
        "get_blockchain_parameters_packed",
        |_: C<'_>, _p: i32, _l: i32| -> Res<i32> {
            fail(VmError::Unaccessible("get_blockchain_parameters_packed"))
        },
    )?;
    linker.func_wrap(
        "env",
        "set_blockchain_parameters_packed",
        |_: C<'_>, _p: i32, _l: i32| -> Res<()> {
            fail(VmError::Unaccessible("set_blockchain_parameters_packed"))
        },
    )?;
    linker.func_wrap("env", "set_privileged", |_: C<'_>, _a: i64, _p: i32| -> Res<()> {
        fail(VmError::Unaccessible("set_privileged"))
    })?;
    linker.func_wrap(
        "env",
        "set_resource_limits",
        |_: C<'_>, _a: i64, _r: i64, _n: i64, _c: i64| -> Res<()> {
            fail(VmError::Unaccessible("set_resource_limits"))
        },
    )?;
    linker.func_wrap("env", "preactivate_feature", |_: C<'_>, _d: i32| -> Res<()> {
        fail(VmError::Unaccessible("preactivate_feature"))
    })?;
    define_int128(linker)
}

fn i128_of(low: i64, high: i64) -> i128 {
    ((high as i128) << 64) | (low as u64 as i128)
}

/// compiler-rt's 128-bit integer helpers, which Antelope provides as intrinsics and older CDTs
/// import. Results are written little-endian at `ret`; division by zero is a contract error.
fn define_int128(linker: &mut Linker<State>) -> Res<()> {
    type Shift = fn(i128, u32) -> i128;
    let shifts: [(&str, Shift); 4] = [
        ("__ashlti3", |v, s| v.checked_shl(s).unwrap_or(0)),
        ("__lshlti3", |v, s| v.checked_shl(s).unwrap_or(0)),
        ("__ashrti3", |v, s| v.checked_shr(s).unwrap_or(if v < 0 { -1 } else { 0 })),
        ("__lshrti3", |v, s| (v as u128).checked_shr(s).unwrap_or(0) as i128),
    ];
    for (name, op) in shifts {
        linker.func_wrap(
            "env",
            name,
            move |mut c: C<'_>, ret: i32, low: i64, high: i64, shift: i32| {
                write(&mut c, ret, &op(i128_of(low, high), shift as u32).to_le_bytes())
            },
        )?;
    }
    type Arith = fn(i128, i128) -> Option<i128>;
    let ops: [(&str, Arith); 5] = [
        ("__multi3", |a, b| Some(a.wrapping_mul(b))),
        ("__divti3", |a, b| (b != 0).then(|| a.wrapping_div(b))),
        ("__modti3", |a, b| (b != 0).then(|| a.wrapping_rem(b))),
        ("__udivti3", |a, b| (b != 0).then(|| ((a as u128) / (b as u128)) as i128)),
        ("__umodti3", |a, b| (b != 0).then(|| ((a as u128) % (b as u128)) as i128)),
    ];
    for (name, op) in ops {
        linker.func_wrap(
            "env",
            name,
            move |mut c: C<'_>, ret: i32, la: i64, ha: i64, lb: i64, hb: i64| match op(
                i128_of(la, ha),
                i128_of(lb, hb),
            ) {
                Some(v) => write(&mut c, ret, &v.to_le_bytes()),
                None => fail(VmError::Trap("divide by zero".into())),
            },
        )?;
    }
    Ok(())
}

fn copy(c: &mut C<'_>, dest: i32, src: i32, len: i32) -> Res<()> {
    charge(c, len as u32 as u64)?;
    let mem = memory(c)?;
    let from = range(c, mem, src, len)?;
    let to = range(c, mem, dest, len)?;
    mem.data_mut(c).copy_within(from, to.start);
    Ok(())
}
