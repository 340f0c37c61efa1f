//! Criterion benchmark of the chain's apply path: native `eosio` transactions (`newaccount`,
//! each creating a new account: authority check, account checks, three records, the duplicate
//! check and the history indexes) applied in the pending block through
//! [`Chain::push_prepared_many`], with signature recovery done beforehand ([`Chain::prepare`],
//! not timed), over a real redb store. Whole blocks of 1000 such transactions are timed too:
//! apply, seal, sign with a local key and the one fsync'd commit, in wall time and in the apply
//! thread's CPU, and end to end through [`Chain::push_transaction`] from two threads (signature
//! recovery included). Results are in BENCHMARKS.md.
//!
//! A bench measures; it must never assert behaviour that the tests own.

use std::sync::Arc;
use std::time::Duration;

use criterion::{Criterion, criterion_group, criterion_main};
use rempart_core::key::{KeyType, PrivateKey, Signature};
use rempart_core::protocol::SignBlockRequest;
use rempart_core::transaction::{Action, PackedTransaction, PermissionLevel, Transaction};
use rempart_core::{BlockTimestamp, Bytes, Name, TimePointSec, to_bytes};
use rempart_node::authority::Authority;
use rempart_node::chain::{Chain, PreparedTransaction, SignFailure, sign_transaction};
use rempart_node::config::Limits;
use rempart_node::genesis::Genesis;
use rempart_node::native::NewAccount;
use rempart_node::producer::clock;
use rempart_node::store::Store;

#[path = "support/cpu.rs"]
mod cpu;
use cpu::apply_thread_cpu;

/// The allocator the `rempart-node` binary ships with (node/src/main.rs), so the figures are
/// the binary's.
#[global_allocator]
static ALLOCATOR: mimalloc::MiMalloc = mimalloc::MiMalloc;

const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

struct Bench {
    _dir: tempfile::TempDir,
    chain: Chain,
    dev: PrivateKey,
    owner: Authority,
    next: u64,
}

impl Bench {
    fn new() -> Bench {
        let dir = tempfile::tempdir().expect("tempdir");
        let genesis = Genesis::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"),
        )
        .expect("genesis");
        let store = Arc::new(Store::open(&dir.path().join("state.redb")).expect("store"));
        let limits = Limits { max_block_transactions: 10_000_000, ..Limits::default() };
        let chain = Chain::open(store, &genesis, limits).expect("chain");
        let owner = Authority::single_key(PrivateKey::generate(KeyType::K1).public_key());
        Bench { _dir: dir, chain, dev: DEV_WIF.parse().expect("key"), owner, next: 0 }
    }

    fn sign(&self) -> impl FnOnce(&SignBlockRequest) -> Result<Signature, SignFailure> + '_ {
        |req| Ok(self.dev.sign(&req.digest()))
    }

    /// `n` signed, prepared newaccount transactions referencing the head.
    fn prepared(&mut self, n: u64) -> Vec<PreparedTransaction> {
        let signed = self.signed(n);
        signed.into_iter().map(|p| self.chain.prepare(p).expect("prepares")).collect()
    }

    /// `n` signed newaccount transactions referencing the head, as a client sends them.
    fn signed(&mut self, n: u64) -> Vec<PackedTransaction> {
        let info = self.chain.info();
        let eosio = Name::from_const("eosio");
        let exp = (info.head_block_time.to_time_point().0 / 1_000_000) as u32 + 3000;
        (0..n)
            .map(|_| {
                self.next += 1;
                // Names from the counter in base 31 over the name alphabet's letters and digits.
                let mut s = String::from("b");
                let mut v = self.next;
                for _ in 0..11 {
                    let c = b"abcdefghijklmnopqrstuvwxyz12345"[(v % 31) as usize];
                    s.push(c as char);
                    v /= 31;
                }
                let data = NewAccount {
                    creator: eosio,
                    name: s.parse().expect("name"),
                    owner: self.owner.clone(),
                    active: self.owner.clone(),
                };
                let mut t = Transaction {
                    actions: vec![Action {
                        account: eosio,
                        name: Name::from_const("newaccount"),
                        authorization: vec![PermissionLevel {
                            actor: eosio,
                            permission: Name::from_const("active"),
                        }],
                        data: Bytes(to_bytes(&data)),
                    }],
                    ..Default::default()
                };
                t.header.expiration = TimePointSec(exp);
                t.set_reference_block(&info.head_block_id);
                sign_transaction(t, &[&self.dev], &self.chain.chain_id())
            })
            .collect()
    }

    fn next_slot(&self) -> BlockTimestamp {
        self.chain.info().head_block_time.next()
    }
}

fn apply(c: &mut Criterion) {
    let mut g = c.benchmark_group("apply");
    g.measurement_time(Duration::from_secs(8));
    let mut b = Bench::new();
    g.bench_function("newaccount_in_pending_block", |bench| {
        bench.iter_custom(|iters| {
            let trxs = b.prepared(iters);
            b.chain.start_block(b.next_slot()).expect("start");
            let started = clock::instant();
            let results = b.chain.push_prepared_many(trxs);
            let took = started.elapsed();
            assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().find(|r| r.is_err()));
            b.chain.finish_block(b.sign()).expect("block");
            took
        })
    });
    // The same work, measured as the apply thread's own CPU time (Leap's "apply-thread CPU per
    // transaction"): independent of the other threads and processes sharing the two cores.
    g.bench_function("newaccount_apply_thread_cpu", |bench| {
        bench.iter_custom(|iters| {
            let trxs = b.prepared(iters);
            b.chain.start_block(b.next_slot()).expect("start");
            let before = apply_thread_cpu();
            let results = b.chain.push_prepared_many(trxs);
            let took = apply_thread_cpu().saturating_sub(before);
            assert!(results.iter().all(Result::is_ok), "{:?}", results.iter().find(|r| r.is_err()));
            b.chain.finish_block(b.sign()).expect("block");
            took
        })
    });
    g.sample_size(10);
    g.bench_function("block_of_1000_newaccount_with_commit", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let trxs = b.prepared(1000);
                let started = clock::instant();
                b.chain.start_block(b.next_slot()).expect("start");
                let results = b.chain.push_prepared_many(trxs);
                b.chain.finish_block(b.sign()).expect("block");
                total += started.elapsed();
                assert!(results.iter().all(Result::is_ok));
            }
            total
        })
    });
    // The whole block on the apply thread, in CPU: the 1000 pushes, then sealing (receipt
    // digests, merkle roots, packing), the signature check, the history indexes and the redb
    // commit (the fsync's wait is not CPU). Signing runs on the caller's thread, as with a
    // signer. This is what a transaction costs the apply thread all in.
    g.bench_function("block_of_1000_newaccount_apply_thread_cpu", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let trxs = b.prepared(1000);
                let before = apply_thread_cpu();
                b.chain.start_block(b.next_slot()).expect("start");
                let results = b.chain.push_prepared_many(trxs);
                b.chain.finish_block(b.sign()).expect("block");
                total += apply_thread_cpu().saturating_sub(before);
                assert!(results.iter().all(Result::is_ok));
            }
            total
        })
    });
    // End to end through `Chain::push_transaction` from two threads (one per core), each push
    // unpacking and recovering its K1 signature on its own thread and waiting for its answer,
    // then the block sealed, signed and committed: the node's path without HTTP.
    g.bench_function("block_of_1000_newaccount_via_push_transaction", |bench| {
        bench.iter_custom(|iters| {
            let mut total = Duration::ZERO;
            for _ in 0..iters {
                let mut left = b.signed(1000);
                let right = left.split_off(500);
                let started = clock::instant();
                b.chain.start_block(b.next_slot()).expect("start");
                let chain = &b.chain;
                let ok = std::thread::scope(|s| {
                    let push = |part: Vec<PackedTransaction>| {
                        part.into_iter().all(|t| chain.push_transaction(t).is_ok())
                    };
                    let other = s.spawn(move || push(right));
                    push(left) & other.join().expect("pushing thread")
                });
                b.chain.finish_block(b.sign()).expect("block");
                total += started.elapsed();
                assert!(ok);
            }
            total
        })
    });
    g.finish();
}

criterion_group!(benches, apply);
criterion_main!(benches);
