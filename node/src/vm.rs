//! The contract VM: WebAssembly in wasmtime, deterministic and bounded, with the `env` host
//! functions an Antelope contract imports.
//!
//! [`Vm::validate`] is what `setcode` runs: the module must be WebAssembly, within the size
//! limit, import only the supported `env` functions and export `apply(i64, i64, i64)`. Accepted
//! modules are rewritten to export their memory (CDT keeps it private), compiled once per code
//! hash and kept in a bounded cache as an `InstancePre`. [`Vm::apply`] runs one action of one
//! receiver over the transaction's [`Overlay`], with a fuel budget shared by the whole
//! transaction; anything the action needs from the chain beyond the state (notifications, inline
//! actions) goes through the [`Host`] the chain provides.
//!
//! Determinism: NaN canonicalization, no threads, no SIMD (so no relaxed SIMD), no clock, no
//! randomness, no WASI; time is the block's. Fuel, not wall time, bounds execution, so two nodes
//! agree on which transactions run out. A failed action may leave partial writes in the overlay:
//! the caller must then drop the transaction's overlay, as it does for any failed transaction.
//!
//! How host calls reach the borrowed overlay: wasmtime requires `Store<T: 'static>`, so the state
//! cannot live in the store. Each action runs on a wasmtime fiber; a host function that needs the
//! state posts a request in a mailbox and suspends, and the driver here (which holds the overlay)
//! answers and resumes it. No `unsafe`, no threads, about a fiber switch per database call.

pub mod db;
mod host;
mod module;
mod pool;

use std::collections::HashMap;
use std::pin::pin;
use std::sync::{Arc, Mutex};
use std::task::{Context, Poll, Waker};

use rempart_core::transaction::Action;
use rempart_core::{Checksum256, Name, TimePoint, from_bytes};
use wasmtime::{Config, Engine, InstancePre, Linker, Module, Store, Trap};

use crate::store::{Overlay, StoreError, key};
use host::{Exchange, Exit, Request, Response, State};

pub use db::{decode_row, encode_row};

/// Limits and budgets of the VM.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct VmConfig {
    /// Largest module `setcode` accepts (bytes).
    pub max_code_bytes: usize,
    /// Largest linear memory a contract may have (bytes). Antelope's is 33 MiB.
    pub max_memory_bytes: usize,
    /// Native stack the contract may use (bytes); deeper recursion traps.
    pub max_wasm_stack: usize,
    /// Fuel (about one unit per WebAssembly instruction, plus host work) one transaction may
    /// burn across all its actions: the node's CPU limit per transaction. The chain takes it
    /// from `[limits] max_transaction_fuel` in `node.toml`.
    pub max_transaction_fuel: u64,
    /// Compiled modules kept in memory.
    pub cache_modules: usize,
    /// Console bytes kept per action; more is dropped.
    pub max_console_bytes: usize,
    /// Largest inline action (bytes).
    pub max_inline_action_bytes: usize,
    /// Actions that may run at the same time: the instance slots the pooling allocator reserves
    /// (each a linear memory's 4 GiB of address space plus guard, a table and a fiber stack).
    /// The node runs contracts only on its chain thread, one action at a time, so it needs one;
    /// more concurrent [`Vm::apply`] calls wait for a free slot, and an action started from
    /// inside another on the same thread with every slot taken fails with [`VmError::Busy`].
    pub concurrent_actions: u32,
}

impl Default for VmConfig {
    fn default() -> Self {
        VmConfig {
            max_code_bytes: 1024 * 1024,
            max_memory_bytes: 33 * 1024 * 1024,
            max_wasm_stack: 256 * 1024,
            max_transaction_fuel: 50_000_000,
            cache_modules: 64,
            max_console_bytes: 64 * 1024,
            max_inline_action_bytes: 512 * 1024,
            concurrent_actions: 1,
        }
    }
}

/// Why code was refused or an action failed.
#[derive(Debug, thiserror::Error)]
#[non_exhaustive]
pub enum VmError {
    /// The module is larger than the limit.
    #[error("code of {size} bytes exceeds the limit of {limit} bytes; shrink the contract")]
    TooBig {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The bytes are not a WebAssembly module.
    #[error("code is not WebAssembly (no \\0asm header); deploy the compiled .wasm file")]
    NotWasm,
    /// The module does not parse or has a shape contracts may not have.
    #[error("code is malformed WebAssembly: {0}")]
    Malformed(String),
    /// The module imports something this node does not provide.
    #[error(
        "code imports {module}.{name}, which this node does not provide; rebuild the contract without it"
    )]
    UnknownImport {
        /// Import module.
        module: String,
        /// Import name.
        name: String,
    },
    /// The module has no `apply` export.
    #[error("code does not export apply(i64, i64, i64); build it as a contract")]
    MissingApply,
    /// wasmtime refused the module (validation, types, compilation).
    #[error("code was refused by the compiler: {0}")]
    Compile(String),
    /// The receiver has no code.
    #[error("account {0} has no contract code")]
    NoCode(Name),
    /// The receiver's code hash names code missing from the state.
    #[error("code {0} is missing from the state; the data directory is damaged")]
    CodeMissing(Checksum256),
    /// The transaction's fuel ran out.
    #[error(
        "transaction exceeded its CPU budget of {budget} fuel units; split the work, or raise [limits] max_transaction_fuel in the node policy (node.toml)"
    )]
    OutOfFuel {
        /// The budget the transaction started with.
        budget: u64,
    },
    /// The contract's initial memory exceeds the limit (a `memory.grow` past the limit is not an
    /// error: it returns -1 to the contract).
    #[error(
        "contract memory of its initial size exceeds the limit of {limit} bytes; shrink the \
         contract's static data"
    )]
    MemoryLimit {
        /// The limit.
        limit: usize,
    },
    /// The contract's call stack overflowed.
    #[error("contract call stack exhausted (recursion too deep)")]
    StackOverflow,
    /// The contract trapped.
    #[error("contract trapped: {0}")]
    Trap(String),
    /// `eosio_assert` or `eosio_assert_message` failed.
    #[error("assertion failure with message: {0}")]
    Assert(String),
    /// `eosio_assert_code` failed.
    #[error("assertion failure with error code: {0}")]
    AssertCode(u64),
    /// `abort()` was called.
    #[error("abort() called")]
    Abort,
    /// `require_auth` (or a RAM payer) names an account that did not authorise the action.
    #[error("missing authority of {0}")]
    MissingAuth(Name),
    /// A pointer or length outside the contract's memory.
    #[error("access violation: {0}")]
    Access(String),
    /// `memcpy` with overlapping ranges.
    #[error("memcpy can only accept non-aliasing pointers")]
    Overlap,
    /// A database call broke Antelope's rules (bad iterator, foreign table, duplicate key).
    #[error("{0}")]
    Db(String),
    /// A hash or key check failed.
    #[error("{0}")]
    Crypto(String),
    /// A privileged intrinsic called by a contract that is not privileged.
    #[error("{0} is a privileged API this contract may not call")]
    Unaccessible(&'static str),
    /// An inline action larger than the limit.
    #[error("inline action of {size} bytes exceeds the limit of {limit} bytes")]
    InlineTooBig {
        /// Its size.
        size: usize,
        /// The limit.
        limit: usize,
    },
    /// The chain refused a notification or an inline action.
    #[error("{0}")]
    Host(String),
    /// The state store failed.
    #[error(transparent)]
    Store(#[from] StoreError),
    /// Every instance slot is taken and the calling thread holds one: an action was started
    /// from inside another, and waiting would wait for itself.
    #[error(
        "all {slots} contract instance slots are in use, one by this thread: an action cannot \
         run from inside another; raise VmConfig::concurrent_actions if it must"
    )]
    Busy {
        /// Slots the VM has.
        slots: u32,
    },
    /// wasmtime failed in a way no contract should cause.
    #[error("WebAssembly engine: {0}; report this as a bug")]
    Engine(String),
}

impl VmError {
    /// The nodeos exception (code, name, what) this error maps to.
    pub fn nodeos(&self) -> (u64, &'static str, &'static str) {
        use VmError::*;
        match self {
            TooBig { .. }
            | NotWasm
            | Malformed(_)
            | UnknownImport { .. }
            | MissingApply
            | Compile(_) => {
                (3_070_003, "wasm_serialization_error", "Serialization Error Processing WASM")
            }
            NoCode(_) | CodeMissing(_) => {
                (3_060_004, "contract_query_exception", "Contract Query Exception")
            }
            OutOfFuel { .. } => (
                3_080_004,
                "tx_cpu_usage_exceeded",
                "Transaction exceeded the current CPU usage limit imposed on the transaction",
            ),
            MemoryLimit { .. } => (3_070_001, "page_memory_error", "Error in WASM page memory"),
            StackOverflow | Trap(_) | Access(_) | Engine(_) => {
                (3_070_002, "wasm_execution_error", "Runtime Error Processing WASM")
            }
            Assert(_) => (
                3_050_003,
                "eosio_assert_message_exception",
                "eosio_assert_message assertion failure",
            ),
            AssertCode(_) => {
                (3_050_004, "eosio_assert_code_exception", "eosio_assert_code assertion failure")
            }
            Abort => (3_050_008, "abort_called", "Abort Called"),
            MissingAuth(_) => (3_090_004, "missing_auth_exception", "Missing required authority"),
            Overlap => (3_070_004, "overlapping_memory_error", "memcpy with overlapping memory"),
            Db(_) | Store(_) => (3_060_000, "database_exception", "Database exception"),
            Crypto(_) => (3_230_000, "crypto_api_exception", "Crypto API Exception"),
            Unaccessible(_) => (3_050_007, "unaccessible_api", "Attempt to use unaccessible API"),
            InlineTooBig { .. } => {
                (3_050_009, "inline_action_too_big", "Inline Action exceeds maximum size limit")
            }
            Host(_) => (3_050_000, "action_validate_exception", "Action validate exception"),
            Busy { .. } => {
                (3_080_000, "resource_exhausted_exception", "Resource exhausted exception")
            }
        }
    }
}

/// What [`Vm::validate`] learned about accepted code.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CodeInfo {
    /// sha256 of the code as deployed (the `code_hash` nodeos reports).
    pub hash: Checksum256,
    /// The `env` functions it imports.
    pub imports: Vec<String>,
    /// Initial memory in 64 KiB pages.
    pub initial_pages: u64,
}

/// The action one [`Vm::apply`] runs.
#[derive(Debug, Clone, Copy)]
pub struct ApplyContext<'a> {
    /// The account whose code runs: the action's contract, or a notified account.
    pub receiver: Name,
    /// The action (its `account` is the contract `code` passed to `apply`).
    pub action: &'a Action,
    /// Time of the block being applied (never the wall clock).
    pub block_time: TimePoint,
    /// When the transaction was published (the block time for input transactions).
    pub publication_time: TimePoint,
    /// For an inline action, the account whose code sent it; `Name(0)` otherwise.
    pub sender: Name,
}

/// What the chain provides to a running action beyond the state.
pub trait Host {
    /// `require_recipient`: schedule `recipient` to be notified of the current action once the
    /// receiver's code returns. The chain deduplicates against every account already notified
    /// of this action (including the receiver itself, which is not notified twice).
    fn require_recipient(&mut self, state: &Overlay<'_, '_>, recipient: Name)
    -> Result<(), String>;

    /// `send_inline`: check `action` (its contract exists, its authorizations are satisfied by
    /// the sender's `eosio.code` permission as Antelope does) and queue it to run after the
    /// current action. An `Err` aborts the action with that message.
    fn send_inline(&mut self, state: &Overlay<'_, '_>, action: Action) -> Result<(), String>;
}

/// The result of one successful [`Vm::apply`].
#[derive(Debug, Clone, PartialEq, Eq, Default)]
pub struct ApplyOutcome {
    /// Console output (`prints` and friends), for the action trace.
    pub console: String,
    /// Fuel the action burned.
    pub fuel_used: u64,
}

struct Compiled {
    pre: InstancePre<State>,
    memory_export: Option<String>,
}

#[derive(Default)]
struct Cache {
    modules: HashMap<Checksum256, Arc<Compiled>>,
    ticks: HashMap<Checksum256, u64>,
    tick: u64,
}

/// The contract VM: one engine and linker, and the compiled-module cache. Share it (it is
/// `Sync`); each [`Vm::apply`] gets its own store.
pub struct Vm {
    engine: Engine,
    linker: Linker<State>,
    config: VmConfig,
    cache: Mutex<Cache>,
    slots: pool::Slots,
}

impl std::fmt::Debug for Vm {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("Vm").field("config", &self.config).finish_non_exhaustive()
    }
}

impl Vm {
    /// A VM with these limits.
    pub fn new(config: VmConfig) -> Result<Vm, VmError> {
        let engine_err = |e: wasmtime::Error| VmError::Engine(format!("{e:#}"));
        let mut c = Config::new();
        c.consume_fuel(true)
            .cranelift_nan_canonicalization(true)
            .cranelift_opt_level(wasmtime::OptLevel::Speed)
            .wasm_simd(false)
            .wasm_relaxed_simd(false)
            .wasm_multi_memory(false)
            .wasm_memory64(false)
            .wasm_wide_arithmetic(false)
            .wasm_stack_switching(false)
            .wasm_features(
                wasmtime::WasmFeatures::THREADS | wasmtime::WasmFeatures::SHARED_EVERYTHING_THREADS,
                false,
            )
            .max_wasm_stack(config.max_wasm_stack)
            .async_stack_size(config.max_wasm_stack + 256 * 1024);
        // Slots for memories, tables, instances and fiber stacks are reserved once and reused,
        // so an action costs no mmap/munmap; the first pages of a memory are reset with memset.
        let slots = config.concurrent_actions.max(1);
        let mut pool = wasmtime::PoolingAllocationConfig::default();
        pool.total_core_instances(slots)
            .total_memories(slots)
            .total_tables(slots)
            .total_stacks(slots)
            .max_memories_per_module(1)
            .max_tables_per_module(1)
            .max_memory_size(config.max_memory_bytes)
            .linear_memory_keep_resident(128 * 1024)
            .table_keep_resident(64 * 1024);
        c.allocation_strategy(wasmtime::InstanceAllocationStrategy::Pooling(pool));
        let engine = Engine::new(&c).map_err(engine_err)?;
        let mut linker = Linker::new(&engine);
        host::define(&mut linker).map_err(engine_err)?;
        let slots = pool::Slots::new(slots);
        Ok(Vm { engine, linker, config, cache: Mutex::new(Cache::default()), slots })
    }

    /// The limits this VM runs with.
    pub fn config(&self) -> &VmConfig {
        &self.config
    }

    /// What `setcode` runs: checks `code`, compiles it and caches the result under its hash.
    pub fn validate(&self, code: &[u8]) -> Result<CodeInfo, VmError> {
        let hash = Checksum256::hash(code);
        let (compiled, info) = self.compile(code, hash)?;
        self.insert(hash, compiled);
        Ok(info)
    }

    fn compile(&self, code: &[u8], hash: Checksum256) -> Result<(Compiled, CodeInfo), VmError> {
        let accepted =
            module::accept(code, self.config.max_code_bytes, self.config.max_memory_bytes)?;
        let module = Module::new(&self.engine, &accepted.rewritten)
            .map_err(|e| VmError::Compile(format!("{e:#}")))?;
        let pre =
            self.linker.instantiate_pre(&module).map_err(|e| VmError::Compile(format!("{e:#}")))?;
        let apply_ok =
            module.get_export("apply").and_then(|e| e.func().cloned()).is_some_and(|f| {
                let params: Vec<_> = f.params().collect();
                params.len() == 3
                    && params.iter().all(|p| matches!(p, wasmtime::ValType::I64))
                    && f.results().len() == 0
            });
        if !apply_ok {
            return Err(VmError::MissingApply);
        }
        let info =
            CodeInfo { hash, imports: accepted.imports, initial_pages: accepted.initial_pages };
        Ok((Compiled { pre, memory_export: accepted.memory_export }, info))
    }

    fn insert(&self, hash: Checksum256, compiled: Compiled) -> Arc<Compiled> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.tick += 1;
        let tick = cache.tick;
        if !cache.modules.contains_key(&hash) && cache.modules.len() >= self.config.cache_modules {
            // Evict the least recently used module.
            if let Some(old) = cache.ticks.iter().min_by_key(|(_, t)| **t).map(|(h, _)| *h) {
                cache.modules.remove(&old);
                cache.ticks.remove(&old);
            }
        }
        let entry = Arc::new(compiled);
        cache.modules.insert(hash, entry.clone());
        cache.ticks.insert(hash, tick);
        entry
    }

    fn lookup(&self, hash: &Checksum256) -> Option<Arc<Compiled>> {
        let mut cache = self.cache.lock().unwrap_or_else(|e| e.into_inner());
        cache.tick += 1;
        let tick = cache.tick;
        let found = cache.modules.get(hash).cloned();
        if found.is_some() {
            cache.ticks.insert(*hash, tick);
        }
        found
    }

    /// Actions running now (instance slots in use).
    pub fn running_actions(&self) -> usize {
        self.slots.in_use()
    }

    /// [`Vm::apply`] calls waiting for a free instance slot now.
    pub fn waiting_actions(&self) -> usize {
        self.slots.waiting()
    }

    /// Number of compiled modules in the cache.
    pub fn cached_modules(&self) -> usize {
        self.cache.lock().unwrap_or_else(|e| e.into_inner()).modules.len()
    }

    /// The code hash of `account`, `None` when it has no code.
    pub fn code_hash(
        state: &Overlay<'_, '_>,
        account: Name,
    ) -> Result<Option<Checksum256>, VmError> {
        match state.get(&key::code_hash(account))? {
            None => Ok(None),
            Some(bytes) => from_bytes(&bytes).map(Some).map_err(|source| {
                VmError::Store(StoreError::Corrupt { what: "code hash", source })
            }),
        }
    }

    fn module_for(
        &self,
        state: &Overlay<'_, '_>,
        receiver: Name,
    ) -> Result<Arc<Compiled>, VmError> {
        let hash = Self::code_hash(state, receiver)?.ok_or(VmError::NoCode(receiver))?;
        if let Some(c) = self.lookup(&hash) {
            return Ok(c);
        }
        let code = state.get(&key::code(&hash))?.ok_or(VmError::CodeMissing(hash))?;
        let (compiled, _) = self.compile(&code, hash)?;
        Ok(self.insert(hash, compiled))
    }

    /// Runs `apply(receiver, code, action)` of `ctx.receiver`'s contract over `state`.
    ///
    /// `fuel` is what the transaction has left; the action's use is subtracted from it (also
    /// on failure). On `Err`, `state` may hold part of the action's writes: drop the
    /// transaction's overlay.
    pub fn apply(
        &self,
        state: &mut Overlay<'_, '_>,
        host: &mut dyn Host,
        ctx: &ApplyContext<'_>,
        fuel: &mut u64,
    ) -> Result<ApplyOutcome, VmError> {
        let compiled = self.module_for(state, ctx.receiver)?;
        let _slot = self.slots.acquire()?;
        let mailbox = Arc::new(Mutex::new(Exchange::default()));
        let data = State {
            memory: None,
            receiver: ctx.receiver,
            authorization: ctx.action.authorization.clone(),
            data: ctx.action.data.0.clone(),
            now: ctx.block_time.0,
            published: ctx.publication_time.0,
            sender: ctx.sender,
            console: String::new(),
            max_console: self.config.max_console_bytes,
            max_memory: self.config.max_memory_bytes,
            refused_grows: 0,
            refused_grow_allowance: *fuel / host::REFUSED_GROW_FUEL,
            max_inline: self.config.max_inline_action_bytes,
            mailbox: mailbox.clone(),
        };
        let mut store = Store::new(&self.engine, data);
        store.limiter(|s| s as &mut dyn wasmtime::ResourceLimiter);
        let budget = *fuel;
        store.set_fuel(budget).map_err(|e| VmError::Engine(format!("{e:#}")))?;

        let args = (
            ctx.receiver.value() as i64,
            ctx.action.account.value() as i64,
            ctx.action.name.value() as i64,
        );
        let mut db =
            db::Db::new(state, ctx.receiver, ctx.action.account, &ctx.action.authorization);
        let mut fatal: Option<VmError> = None;
        let run = async {
            let instance = compiled.pre.instantiate_async(&mut store).await?;
            if let Some(name) = &compiled.memory_export {
                let memory = instance.get_memory(&mut store, name);
                store.data_mut().memory = memory;
            }
            let apply = instance.get_typed_func::<(i64, i64, i64), ()>(&mut store, "apply")?;
            apply.call_async(&mut store, args).await
        };
        let result = drive(run, &mailbox, |request| {
            serve(request, &mut db, host).unwrap_or_else(|e| match e {
                VmError::Store(_) => {
                    fatal = Some(e);
                    Response::Fail(VmError::Engine("state store failed".into()))
                }
                e => Response::Fail(e),
            })
        });
        let left = store.get_fuel().unwrap_or(0);
        *fuel = left;
        if let Some(e) = fatal {
            return Err(e);
        }
        match result? {
            Ok(()) => {}
            Err(e) if e.is::<Exit>() => {}
            Err(e) => {
                let refused = store.data().refused_grows;
                return Err(match classify(e, budget) {
                    VmError::Trap(m) if refused > 0 => VmError::Trap(format!(
                        "{m} (after {refused} memory.grow call(s) returned -1 at the limit of \
                         {} bytes)",
                        self.config.max_memory_bytes
                    )),
                    e @ VmError::OutOfFuel { .. } => {
                        // Also when the refused grows used up the budget the store never saw.
                        *fuel = 0;
                        e
                    }
                    other => other,
                });
            }
        }
        Ok(ApplyOutcome {
            console: std::mem::take(&mut store.data_mut().console),
            fuel_used: budget - left,
        })
    }
}

/// Polls the contract's call to completion, answering each host request with `serve`.
fn drive<F: Future>(
    fut: F,
    mailbox: &Mutex<Exchange>,
    mut serve: impl FnMut(Request) -> Response,
) -> Result<F::Output, VmError> {
    let mut fut = pin!(fut);
    let mut cx = Context::from_waker(Waker::noop());
    loop {
        match fut.as_mut().poll(&mut cx) {
            Poll::Ready(v) => return Ok(v),
            Poll::Pending => {
                let request = host::lock(mailbox).request.take();
                let Some(request) = request else {
                    return Err(VmError::Engine("the contract suspended without a request".into()));
                };
                let response = serve(request);
                host::lock(mailbox).response = Some(response);
            }
        }
    }
}

/// Answers one host request with the borrowed state.
fn serve(
    request: Request,
    db: &mut db::Db<'_, '_, '_>,
    host: &mut dyn Host,
) -> Result<Response, VmError> {
    match request {
        Request::Store { scope, table, payer, id, data } => db.store(scope, table, payer, id, data),
        Request::Update { itr, payer, data } => db.update(itr, payer, data),
        Request::Remove { itr } => db.remove(itr),
        Request::Get { itr } => db.get(itr),
        Request::Next { itr } => db.next(itr),
        Request::Previous { itr } => db.previous(itr),
        Request::Seek { code, scope, table, id, how } => db.seek(code, scope, table, id, how),
        Request::End { code, scope, table } => db.end(code, scope, table),
        Request::IsAccount(name) => {
            Ok(Response::Bool(db.state().get(&key::account(name))?.is_some()))
        }
        Request::RequireRecipient(name) => {
            host.require_recipient(db.state(), name).map_err(VmError::Host)?;
            Ok(Response::Unit)
        }
        Request::SendInline(action) => {
            host.send_inline(db.state(), action).map_err(VmError::Host)?;
            Ok(Response::Unit)
        }
    }
}

/// Maps a failed call to the error the contract caused.
fn classify(e: wasmtime::Error, budget: u64) -> VmError {
    if let Some(trap) = e.downcast_ref::<Trap>() {
        return match trap {
            Trap::OutOfFuel => VmError::OutOfFuel { budget },
            Trap::StackOverflow => VmError::StackOverflow,
            other => VmError::Trap(other.to_string()),
        };
    }
    if let Some(pool) = e.downcast_ref::<wasmtime::PoolConcurrencyLimitError>() {
        // The slots in front of the pool make this unreachable; say so if it ever is not.
        return VmError::Engine(format!("instance pool exhausted past its admission: {pool}"));
    }
    match e.downcast::<VmError>() {
        Ok(v) => v,
        Err(e) => VmError::Trap(format!("{e:#}")),
    }
}

#[cfg(test)]
mod tests;
