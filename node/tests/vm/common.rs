//! A small chain for VM tests: a real redb [`Store`] in a temp directory, accounts, code
//! deployed the way `setcode` stores it, and actions applied through [`Vm::apply`] in one write
//! transaction each (committed on success, aborted on failure), with notifications run on the
//! notified accounts that have code.

use std::path::Path;

use rempart_core::transaction::{Action, PermissionLevel};
use rempart_core::{Asset, BlockTimestamp, Bytes, Name, Pack, TimePoint, from_bytes, to_bytes};
use rempart_node::account::AccountRecord;
use rempart_node::store::{Entry, Overlay, Store, key};
use rempart_node::vm::{ApplyContext, ApplyOutcome, CodeInfo, Host, Vm, VmConfig, VmError};

/// A name from its string form.
pub(crate) fn n(s: &str) -> Name {
    s.parse().expect("name")
}

/// An asset from its string form.
pub(crate) fn asset(s: &str) -> Asset {
    s.parse().expect("asset")
}

/// Concatenated packed values: action data.
pub(crate) fn pack(parts: &[&dyn Pack]) -> Vec<u8> {
    let mut out = Vec::new();
    for p in parts {
        p.pack(&mut out);
    }
    out
}

/// Records what the contract asked of the chain.
#[derive(Default)]
pub(crate) struct TestHost {
    /// Accounts to notify, in order, without duplicates.
    pub(crate) recipients: Vec<Name>,
    /// Inline actions sent.
    pub(crate) inline: Vec<Action>,
}

impl Host for TestHost {
    fn require_recipient(&mut self, _: &Overlay<'_, '_>, recipient: Name) -> Result<(), String> {
        if !self.recipients.contains(&recipient) {
            self.recipients.push(recipient);
        }
        Ok(())
    }
    fn send_inline(&mut self, _: &Overlay<'_, '_>, action: Action) -> Result<(), String> {
        self.inline.push(action);
        Ok(())
    }
}

/// What one pushed action did.
#[derive(Debug)]
pub(crate) struct Pushed {
    /// Console of the contract's own run.
    pub(crate) outcome: ApplyOutcome,
    /// Accounts notified (beyond the receiver).
    pub(crate) notified: Vec<Name>,
    /// Inline actions the contract sent.
    pub(crate) inline: Vec<Action>,
    /// Console of each notified account that has code, in order.
    pub(crate) notified_console: Vec<String>,
}

/// The test chain.
pub(crate) struct Chain {
    _dir: tempfile::TempDir,
    /// The state.
    pub(crate) store: Store,
    /// The VM.
    pub(crate) vm: Vm,
    /// Block time used for every action.
    pub(crate) now: TimePoint,
}

impl Chain {
    /// A chain with the default VM limits and these accounts.
    pub(crate) fn new(accounts: &[&str]) -> Chain {
        Chain::with_config(accounts, VmConfig::default())
    }

    /// A chain with `config` and these accounts.
    pub(crate) fn with_config(accounts: &[&str], config: VmConfig) -> Chain {
        let dir = tempfile::tempdir().expect("temp dir");
        let store = Store::open(&dir.path().join("state.redb")).expect("store");
        let chain = Chain {
            _dir: dir,
            store,
            vm: Vm::new(config).expect("vm"),
            now: TimePoint(1_700_000_000_000_000),
        };
        chain
            .store
            .write(|w| {
                let mut o = Overlay::new(w);
                for a in accounts {
                    let rec = AccountRecord {
                        name: n(a),
                        creation_date: BlockTimestamp(0),
                        privileged: false,
                        last_code_update: BlockTimestamp(0),
                    };
                    o.put_record(key::account(n(a)), &rec);
                }
                o.commit()
            })
            .expect("accounts");
        chain
    }

    /// `setcode`: validates and stores `code` for `account`.
    pub(crate) fn set_code(&self, account: &str, code: &[u8]) -> Result<CodeInfo, VmError> {
        let info = self.vm.validate(code)?;
        self.store.write(|w| {
            let mut o = Overlay::new(w);
            o.put(key::code(&info.hash), code.to_vec());
            o.put(key::code_hash(n(account)), to_bytes(&info.hash));
            o.commit()
        })?;
        Ok(info)
    }

    /// Applies `contract::action` with `auth` (each `actor@active`) and `data`, then its
    /// notifications, in one transaction with the default fuel budget.
    pub(crate) fn push(
        &self,
        contract: &str,
        action: &str,
        auth: &[&str],
        data: Vec<u8>,
    ) -> Result<Pushed, VmError> {
        let mut fuel = self.vm.config().max_transaction_fuel;
        self.push_with_fuel(contract, action, auth, data, &mut fuel)
    }

    /// [`Chain::push`] with an explicit fuel budget, left in `fuel` afterwards.
    pub(crate) fn push_with_fuel(
        &self,
        contract: &str,
        action: &str,
        auth: &[&str],
        data: Vec<u8>,
        fuel: &mut u64,
    ) -> Result<Pushed, VmError> {
        let act = Action {
            account: n(contract),
            name: n(action),
            authorization: auth
                .iter()
                .map(|a| PermissionLevel { actor: n(a), permission: n("active") })
                .collect(),
            data: Bytes(data),
        };
        self.store.write(|w| {
            let mut o = Overlay::new(w);
            let mut host = TestHost::default();
            let ctx = ApplyContext {
                receiver: act.account,
                action: &act,
                block_time: self.now,
                publication_time: self.now,
                sender: Name(0),
            };
            let outcome = self.vm.apply(&mut o, &mut host, &ctx, fuel)?;
            let notified: Vec<Name> =
                host.recipients.iter().copied().filter(|r| *r != act.account).collect();
            let mut notified_console = Vec::new();
            for r in &notified {
                if Vm::code_hash(&o, *r)?.is_some() {
                    let ctx = ApplyContext { receiver: *r, ..ctx };
                    let out = self.vm.apply(&mut o, &mut TestHost::default(), &ctx, fuel)?;
                    notified_console.push(out.console);
                }
            }
            o.commit()?;
            Ok(Pushed { outcome, notified, inline: host.inline, notified_console })
        })
    }

    /// Every state entry, in key order.
    pub(crate) fn state(&self) -> Vec<Entry> {
        self.store.read().expect("snapshot").scan(b"", b"", usize::MAX).expect("scan")
    }

    /// The `accounts` row of `owner` for `symbol_code` in `contract`'s token tables.
    pub(crate) fn balance(&self, contract: &str, owner: &str, symbol_code: &str) -> Option<Asset> {
        let code: rempart_core::SymbolCode = symbol_code.parse().expect("symbol code");
        let k = key::row(n(contract), n(owner), n("accounts"), code.0);
        let v = self.store.read().expect("snapshot").get(&k).expect("get")?;
        let (_, row) = rempart_node::vm::decode_row(&v).expect("row has a payer");
        Some(from_bytes(row).expect("asset row"))
    }

    /// The payer stored with a row.
    pub(crate) fn payer(
        &self,
        contract: &str,
        scope: &str,
        table: &str,
        primary: u64,
    ) -> Option<Name> {
        let k = key::row(n(contract), n(scope), n(table), primary);
        let v = self.store.read().expect("snapshot").get(&k).expect("get")?;
        rempart_node::vm::decode_row(&v).map(|(p, _)| p)
    }
}

/// A file under `node/contracts/`.
pub(crate) fn contract_file(name: &str) -> Vec<u8> {
    let path = Path::new(env!("CARGO_MANIFEST_DIR")).join("contracts").join(name);
    std::fs::read(&path).unwrap_or_else(|e| panic!("{}: {e}", path.display()))
}

/// A hostile contract from `node/contracts/hostile/NAME.wat`, assembled.
pub(crate) fn hostile(name: &str) -> Vec<u8> {
    let text = String::from_utf8(contract_file(&format!("hostile/{name}.wat"))).expect("utf-8");
    wat::parse_str(text).expect("wat")
}

/// The committed token contract.
pub(crate) fn token_wasm() -> Vec<u8> {
    contract_file("token.wasm")
}
