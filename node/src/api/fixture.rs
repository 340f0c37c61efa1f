//! Test support: a real store initialised from the shipped genesis (with the eosio ABI) and a
//! way to append signed blocks carrying real signed transactions, without the chain's rules.
//! Used by the API and peer unit tests; never compiled outside tests.

use std::path::PathBuf;
use std::sync::Arc;

use rempart_core::block::{
    BlockHeader, SignedBlock, SignedBlockHeader, TransactionReceipt, TransactionReceiptHeader,
    TransactionStatus, TransactionVariant,
};
use rempart_core::key::PrivateKey;
use rempart_core::transaction::{
    Action, Compression, PackedTransaction, PermissionLevel, SignedTransaction, Transaction,
    TransactionHeader,
};
use rempart_core::{BlockTimestamp, Checksum256, Name, TimePointSec, VarUint32, to_bytes};
use serde_json::{Value, json};

use crate::store::{Head, Store, StoreError};

/// The well-known development key of the shipped genesis.
pub(crate) const DEV_WIF: &str = "5KQwrPbwdL6PhXujxW37FSSQZ1JiwsST4cqQzDeyXtP79zkvFD3";

pub(crate) fn dev_key() -> PrivateKey {
    DEV_WIF.parse().expect("dev key")
}

/// A store in a fresh temp directory, removed on drop.
pub(crate) struct Fixture {
    pub(crate) store: Arc<Store>,
    pub(crate) chain_id: Checksum256,
    dir: PathBuf,
}

impl Drop for Fixture {
    fn drop(&mut self) {
        let _ = std::fs::remove_dir_all(&self.dir);
    }
}

impl Fixture {
    /// Genesis installed (eosio with the bios ABI), no block yet.
    pub(crate) fn new(name: &str) -> Fixture {
        static N: std::sync::atomic::AtomicU32 = std::sync::atomic::AtomicU32::new(0);
        let n = N.fetch_add(1, std::sync::atomic::Ordering::Relaxed);
        let dir =
            std::env::temp_dir().join(format!("rempart-n2-{name}-{}-{n}", std::process::id()));
        let _ = std::fs::remove_dir_all(&dir);
        std::fs::create_dir_all(&dir).expect("temp dir");
        let store = Store::open(&dir.join("state.redb")).expect("open");
        let genesis = crate::genesis::Genesis::load(
            &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("../policies/genesis.json"),
        )
        .expect("genesis");
        let abi = rempart_core::abi::eosio_system_abi().def().to_bin();
        store.write(|w| genesis.install(w, Some(&abi))).expect("install");
        Fixture { store: Arc::new(store), chain_id: genesis.chain_id(), dir }
    }

    pub(crate) fn head(&self) -> Option<Head> {
        self.store.read().expect("read").head().expect("head")
    }

    /// The next block on top of the head carrying `trxs`, signed with the dev key; not stored.
    pub(crate) fn make_block(&self, trxs: &[PackedTransaction]) -> SignedBlock {
        let head = self.head();
        let (previous, timestamp) = match &head {
            Some(h) => (h.block_id, BlockTimestamp(h.timestamp.0 + 1)),
            None => (
                Checksum256::ZERO,
                BlockTimestamp::from_time_point(rempart_core::TimePoint::from_millis(
                    1_704_067_200_500,
                )),
            ),
        };
        let header = BlockHeader {
            timestamp,
            producer: Name::from_const("eosio"),
            confirmed: 0,
            previous,
            transaction_mroot: Checksum256::ZERO,
            action_mroot: Checksum256::ZERO,
            schedule_version: 0,
            new_producers: None,
            header_extensions: Vec::new(),
        };
        let producer_signature =
            dev_key().sign(&header.signing_digest(&Checksum256::ZERO, &Checksum256::ZERO));
        SignedBlock {
            signed_header: SignedBlockHeader { header, producer_signature },
            transactions: trxs
                .iter()
                .map(|p| TransactionReceipt {
                    header: TransactionReceiptHeader {
                        status: TransactionStatus::Executed,
                        cpu_usage_us: 100,
                        net_usage_words: VarUint32(16),
                    },
                    trx: TransactionVariant::Packed(p.clone()),
                })
                .collect(),
            block_extensions: Vec::new(),
        }
    }

    /// Stores `block` as the new head (no validation: the fixture is not the chain).
    pub(crate) fn store_block(store: &Store, block: &SignedBlock) -> Result<(), StoreError> {
        let num = block.block_num();
        let id = block.id();
        store.write(|w| -> Result<(), StoreError> {
            w.append_block(num, &id, &to_bytes(block))?;
            for (i, r) in (0u32..).zip(&block.transactions) {
                if let TransactionVariant::Packed(p) = &r.trx {
                    let trx = p.unpack_transaction(&Default::default()).expect("fixture trx");
                    w.record_transaction(&trx.id(), trx.header.expiration.0, num)?;
                    w.record_actions(num, i, &trx.actions);
                }
            }
            w.set_head(&Head {
                block_num: num,
                block_id: id,
                timestamp: block.signed_header.header.timestamp,
                producer: block.signed_header.header.producer,
                lib_num: num,
                lib_id: id,
                schedule_version: 0,
            })
        })
    }

    /// Makes and stores the next block.
    pub(crate) fn push_block(&self, trxs: &[PackedTransaction]) -> SignedBlock {
        let b = self.make_block(trxs);
        Fixture::store_block(&self.store, &b).expect("store block");
        b
    }
}

/// An eosio action with JSON data serialized by the bios ABI.
pub(crate) fn eosio_action(name: &str, auth: &str, data: Value) -> Action {
    let abi = rempart_core::abi::eosio_system_abi();
    let name: Name = name.parse().expect("action name");
    let bin = abi.action_json_to_bin(name, &data).expect("action data");
    let actor: Name = auth.parse().expect("actor");
    Action {
        account: Name::from_const("eosio"),
        name,
        authorization: vec![PermissionLevel { actor, permission: Name::from_const("active") }],
        data: rempart_core::Bytes(bin),
    }
}

/// A `newaccount` by eosio for `name`, keyed with the dev key.
pub(crate) fn newaccount(name: &str) -> Action {
    let key = dev_key().public_key().to_string();
    let auth =
        json!({"threshold": 1, "keys": [{"key": key, "weight": 1}], "accounts": [], "waits": []});
    eosio_action(
        "newaccount",
        "eosio",
        json!({"creator": "eosio", "name": name, "owner": auth, "active": auth}),
    )
}

/// `actions` in a transaction signed with the dev key for `chain_id`.
pub(crate) fn signed(
    chain_id: &Checksum256,
    actions: Vec<Action>,
    compression: Compression,
) -> PackedTransaction {
    let trx = Transaction {
        header: TransactionHeader {
            expiration: TimePointSec(1_704_070_000),
            ref_block_num: 1,
            ref_block_prefix: 2,
            ..Default::default()
        },
        context_free_actions: Vec::new(),
        actions,
        transaction_extensions: Vec::new(),
    };
    let mut s = SignedTransaction::new(trx);
    s.sign(&dev_key(), chain_id);
    PackedTransaction::from_signed(&s, compression)
}
