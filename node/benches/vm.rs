//! Criterion benchmark of the contract VM: one `eosio.token` `transfer` applied through
//! [`Vm::apply`] on the C token contract over a real redb store (the transaction's overlay is
//! committed into one open block write; no signatures, no fsync), and the same transfer end to
//! end through the node's chain: signed transactions pushed with [`Chain::push_transaction`]
//! (decoding and signature recovery on the pushing threads, authority check, apply and trace on
//! the apply thread) into blocks of [`BLOCK`] transfers, each sealed, signed and committed with
//! its fsync. Results are in BENCHMARKS.md.
//!
//! A bench measures; it must never assert behaviour that the tests own.

use std::path::Path;
use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use rempart_core::key::{KeyType, PrivateKey};
use rempart_core::transaction::{Action, PackedTransaction, PermissionLevel, Transaction};
use rempart_core::{Asset, BlockTimestamp, Bytes, Name, TimePoint, TimePointSec, to_bytes};
use rempart_node::account::AccountRecord;
use rempart_node::authority::Authority;
use rempart_node::chain::{Chain, sign_transaction};
use rempart_node::config::Limits;
use rempart_node::genesis::Genesis;
use rempart_node::native::{NewAccount, SetAbi, SetCode};
use rempart_node::producer::clock;
use rempart_node::store::{Overlay, Store, StoreError, key};
use rempart_node::vm::{ApplyContext, Host, Vm, VmConfig, VmError};

#[path = "support/cpu.rs"]
mod cpu;
use cpu::apply_thread_cpu;

/// The allocator the `rempart-node` binary ships with (node/src/main.rs), so the figures are
/// the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

/// Transfers per block in the end-to-end bench.
const BLOCK: u64 = 1000;
/// The genesis producer's development key (policies/genesis.json).
const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

struct NoHost;

impl Host for NoHost {
    fn require_recipient(&mut self, _: &Overlay<'_, '_>, _: Name) -> Result<(), String> {
        Ok(())
    }
    fn send_inline(&mut self, _: &Overlay<'_, '_>, _: Action) -> Result<(), String> {
        Ok(())
    }
}

fn name(s: &str) -> Name {
    s.parse().expect("name")
}

fn action(contract: &str, act: &str, actor: &str, parts: &[Vec<u8>]) -> Action {
    Action {
        account: name(contract),
        name: name(act),
        authorization: vec![PermissionLevel { actor: name(actor), permission: name("active") }],
        data: Bytes(parts.concat()),
    }
}

fn apply(vm: &Vm, o: &mut Overlay<'_, '_>, act: &Action) -> Result<(), VmError> {
    let ctx = ApplyContext {
        receiver: act.account,
        action: act,
        block_time: TimePoint(1_700_000_000_000_000),
        publication_time: TimePoint(1_700_000_000_000_000),
        sender: Name(0),
    };
    let mut fuel = vm.config().max_transaction_fuel;
    vm.apply(o, &mut NoHost, &ctx, &mut fuel).map(drop)
}

fn token_transfer(c: &mut Criterion) {
    let dir = tempfile::tempdir().expect("temp dir");
    let store = Store::open(&dir.path().join("state.redb")).expect("store");
    let vm = Vm::new(VmConfig::default()).expect("vm");
    let code = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/token.wasm"))
        .expect("token.wasm");
    let info = vm.validate(&code).expect("token accepted");
    let asset = |s: &str| to_bytes(&s.parse::<Asset>().expect("asset"));
    let memo = to_bytes("bench");
    store
        .write(|w| -> Result<(), VmError> {
            let mut o = Overlay::new(w);
            for a in ["eosio.token", "issuer", "alice"] {
                let rec = AccountRecord {
                    name: name(a),
                    creation_date: BlockTimestamp(0),
                    privileged: false,
                    last_code_update: BlockTimestamp(0),
                };
                o.put_record(key::account(name(a)), &rec);
            }
            o.put(key::code(&info.hash), code.clone());
            o.put(key::code_hash(name("eosio.token")), to_bytes(&info.hash));
            let issuer = to_bytes(&name("issuer"));
            let create = [issuer.clone(), asset("1000000000.0000 SYS")];
            apply(&vm, &mut o, &action("eosio.token", "create", "eosio.token", &create))?;
            let issue = [issuer, asset("1000000000.0000 SYS"), memo.clone()];
            apply(&vm, &mut o, &action("eosio.token", "issue", "issuer", &issue))?;
            o.commit()?;
            Ok(())
        })
        .expect("token set up");

    let transfer = action(
        "eosio.token",
        "transfer",
        "issuer",
        &[to_bytes(&name("issuer")), to_bytes(&name("alice")), asset("0.0001 SYS"), memo],
    );
    let result: Result<(), StoreError> = store.write(|w| {
        c.bench_function("vm/token transfer (apply, overlay commit)", |b| {
            b.iter(|| {
                let mut o = Overlay::new(w);
                apply(&vm, &mut o, &transfer).expect("transfer");
                o.commit().expect("commit");
            })
        });
        Ok(())
    });
    result.expect("block write");

    // The fixed cost of one action: store, instance, fiber, an `apply` that returns at once.
    let empty =
        wat::parse_str(r#"(module (memory 1) (func (export "apply") (param i64 i64 i64)))"#)
            .expect("wat");
    let info = vm.validate(&empty).expect("empty accepted");
    let noop = action("alice", "noop", "alice", &[]);
    let result: Result<(), StoreError> = store.write(|w| {
        let mut o = Overlay::new(w);
        o.put(key::code(&info.hash), empty.clone());
        o.put(key::code_hash(name("alice")), to_bytes(&info.hash));
        c.bench_function("vm/empty action", |b| {
            b.iter(|| apply(&vm, &mut o, &noop).expect("noop"))
        });
        Ok(())
    });
    result.expect("block write");
}

/// A chain on the shipped genesis with the token contract deployed, `SYS` created and issued to
/// alice, who holds `key`.
struct TokenChain {
    _dir: tempfile::TempDir,
    chain: Chain,
    dev: PrivateKey,
    alice: PrivateKey,
    memo: u64,
}

impl TokenChain {
    fn new() -> TokenChain {
        let dir = tempfile::tempdir().expect("temp dir");
        let genesis =
            Genesis::load(&Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"))
                .expect("genesis");
        let store = Arc::new(Store::open(&dir.path().join("state.redb")).expect("store"));
        let limits = Limits { max_block_transactions: 10_000_000, ..Limits::default() };
        let chain = Chain::open(store, &genesis, limits).expect("chain");
        let t = TokenChain {
            _dir: dir,
            chain,
            dev: DEV_WIF.parse().expect("dev key"),
            alice: PrivateKey::generate(KeyType::K1),
            memo: 0,
        };
        let account = |n: &str, k: &PrivateKey| {
            let a = Authority::single_key(k.public_key());
            let data =
                NewAccount { creator: name("eosio"), name: name(n), owner: a.clone(), active: a };
            action("eosio", "newaccount", "eosio", &[to_bytes(&data)])
        };
        let accounts = vec![
            account("eosio.token", &t.dev),
            account("alice", &t.alice),
            account("bob", &t.dev),
        ];
        t.block(&[t.sign(accounts, &t.dev)]);
        let code = std::fs::read(concat!(env!("CARGO_MANIFEST_DIR"), "/contracts/token.wasm"))
            .expect("token.wasm");
        let setcode =
            SetCode { account: name("eosio.token"), vmtype: 0, vmversion: 0, code: Bytes(code) };
        let abi = rempart_core::abi::eosio_token_abi().def().to_bin();
        let setabi = SetAbi { account: name("eosio.token"), abi: Bytes(abi) };
        let deploy = vec![
            action("eosio", "setcode", "eosio.token", &[to_bytes(&setcode)]),
            action("eosio", "setabi", "eosio.token", &[to_bytes(&setabi)]),
        ];
        t.block(&[t.sign(deploy, &t.dev)]);
        let asset = |s: &str| to_bytes(&s.parse::<Asset>().expect("asset"));
        let alice = to_bytes(&name("alice"));
        let create = action(
            "eosio.token",
            "create",
            "eosio.token",
            &[alice.clone(), asset("1000000000.0000 SYS")],
        );
        let issue = action(
            "eosio.token",
            "issue",
            "alice",
            &[alice, asset("1000000000.0000 SYS"), to_bytes("")],
        );
        t.block(&[t.sign(vec![create], &t.dev)]);
        t.block(&[t.sign(vec![issue], &t.alice)]);
        t
    }

    /// `actions` in a transaction on the current head, signed by `key`.
    fn sign(&self, actions: Vec<Action>, key: &PrivateKey) -> PackedTransaction {
        let info = self.chain.info();
        let mut t = Transaction { actions, ..Default::default() };
        t.header.expiration =
            TimePointSec((info.head_block_time.to_time_point().0 / 1_000_000) as u32 + 3000);
        t.set_reference_block(&info.head_block_id);
        sign_transaction(t, &[key], &self.chain.chain_id())
    }

    /// `n` transfers of 0.0001 SYS from alice to bob, each with its own memo (so its own id).
    fn transfers(&mut self, n: u64) -> Vec<PackedTransaction> {
        let fixed = [
            to_bytes(&name("alice")),
            to_bytes(&name("bob")),
            to_bytes(&"0.0001 SYS".parse::<Asset>().expect("asset")),
        ];
        (0..n)
            .map(|_| {
                self.memo += 1;
                let memo = to_bytes(self.memo.to_string().as_str());
                let t = action("eosio.token", "transfer", "alice", &[fixed.concat(), memo]);
                self.sign(vec![t], &self.alice)
            })
            .collect()
    }

    /// [`TokenChain::transfers`] with their signatures recovered ([`Chain::prepare`]), as the
    /// node does on its callers' threads.
    fn prepared_transfers(&mut self, n: u64) -> Vec<rempart_node::chain::PreparedTransaction> {
        self.transfers(n).into_iter().map(|p| self.chain.prepare(p).expect("prepares")).collect()
    }

    /// One block holding `trxs`, pushed from as many threads as there are cores; panics on any
    /// refused transaction (a bench that measured failures would measure nothing).
    fn block(&self, trxs: &[PackedTransaction]) {
        let slot = self.chain.info().head_block_time.next();
        self.chain.start_block(slot).expect("start");
        let threads = std::thread::available_parallelism().map_or(1, |n| n.get());
        let share = trxs.len().div_ceil(threads).max(1);
        std::thread::scope(|s| {
            for part in trxs.chunks(share) {
                s.spawn(move || {
                    for trx in part {
                        self.chain.push_transaction(trx.clone()).expect("transaction applies");
                    }
                });
            }
        });
        self.chain.finish_block(|req| Ok(self.dev.sign(&req.digest()))).expect("block");
    }
}

fn token_push_transaction(c: &mut Criterion) {
    let mut t = TokenChain::new();
    let mut g = c.benchmark_group("vm_end_to_end");
    g.sample_size(10)
        .measurement_time(Duration::from_secs(20))
        .throughput(Throughput::Elements(BLOCK));
    g.bench_function("block of 1000 token transfers via push_transaction", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                // Signing is the clients' work: done before the clock starts.
                let trxs = t.transfers(BLOCK);
                let started = clock::instant();
                t.block(&trxs);
                total += started.elapsed();
            }
            total
        })
    });
    // The same blocks with the signatures recovered before the clock starts: what is left is
    // the apply thread's share (authority check, VM, trace) plus sealing and the commit.
    g.bench_function("block of 1000 token transfers, signatures recovered beforehand", |b| {
        b.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let trxs = t.prepared_transfers(BLOCK);
                let started = clock::instant();
                t.chain.start_block(t.chain.info().head_block_time.next()).expect("start");
                let results = t.chain.push_prepared_many(trxs);
                t.chain.finish_block(|req| Ok(t.dev.sign(&req.digest()))).expect("block");
                total += started.elapsed();
                assert!(results.iter().all(Result::is_ok), "every transfer applies");
            }
            total
        })
    });
    g.finish();
}

/// A transfer's whole cost to the apply thread (authority check, the VM, the trace, the
/// duplicate and history records into the pending block), measured as that thread's own CPU
/// time: issue 5's figure against Leap's ~25 µs. Signatures are recovered beforehand, as they
/// are off the apply thread in production; sealing and the commit are per block, not counted.
///
/// One iteration is one block of [`BLOCK`] transfers, as a busy producer fills them: a block's
/// first writes copy the store pages they touch, so tiny blocks would mostly measure that.
fn token_apply_thread_cpu(c: &mut Criterion) {
    let mut t = TokenChain::new();
    let mut g = c.benchmark_group("vm_apply_thread");
    g.sample_size(20)
        .measurement_time(Duration::from_secs(4))
        .throughput(Throughput::Elements(BLOCK));
    g.bench_function("block of 1000 token transfers, apply-thread CPU", |b| {
        b.iter_custom(|iters| {
            let mut took = Duration::ZERO;
            for _ in 0..iters {
                let trxs = t.prepared_transfers(BLOCK);
                t.chain.start_block(t.chain.info().head_block_time.next()).expect("start");
                let before = apply_thread_cpu();
                let results = t.chain.push_prepared_many(trxs);
                took += apply_thread_cpu().saturating_sub(before);
                assert!(results.iter().all(Result::is_ok), "every transfer applies");
                t.chain.finish_block(|req| Ok(t.dev.sign(&req.digest()))).expect("block");
            }
            took
        })
    });
    g.finish();
}

criterion_group!(benches, token_transfer, token_push_transaction, token_apply_thread_cpu);
criterion_main!(benches);
