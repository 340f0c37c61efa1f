//! Running a transaction's actions as Antelope does: each action runs on its contract, then on
//! every account it notified (`require_recipient`), then its inline actions (`send_inline`)
//! run the same way, depth first, up to [`MAX_INLINE_DEPTH`]. The `eosio` contract's actions
//! are native ([`crate::native`]); any other code runs in the contract VM ([`crate::vm`]); an
//! account without code does nothing, as in nodeos.
//!
//! Everything happens in the transaction's overlay with one fuel budget for the whole
//! transaction; an error anywhere fails the whole transaction (the caller drops the overlay).
//! Nothing here reads the clock: times are the block's.

use std::collections::BTreeSet;

use rempart_core::transaction::{Action, PermissionLevel};
use rempart_core::{BlockTimestamp, Checksum256, Name, VarUint32};

use super::error::TxError;
use super::trace::{ActionReceipt, ActionTrace};
use crate::account::Permissions;
use crate::authority::Checker;
use crate::config::Limits;
use crate::native::{self, NativeContext};
use crate::store::Overlay;
use crate::vm::{ApplyContext, Host, Vm, VmError};

const EOSIO: Name = Name::from_const("eosio");
const EOSIO_CODE: Name = Name::from_const("eosio.code");

/// Deepest chain of inline actions (nodeos's `max_inline_action_depth`).
pub(super) const MAX_INLINE_DEPTH: u32 = 4;
/// Most accounts one action may notify.
const MAX_NOTIFIED: usize = 64;
/// Most actions (with notifications and inline actions) one transaction may run.
const MAX_ACTIONS: usize = 1024;

/// What one transaction's actions run with.
pub(super) struct Execution<'a> {
    pub(super) vm: &'a Vm,
    pub(super) limits: &'a Limits,
    pub(super) now: BlockTimestamp,
    /// The last global action sequence; each action run takes the next.
    pub(super) sequence: u64,
    /// Fuel left for the transaction.
    pub(super) fuel: u64,
    /// The traces so far, in execution order.
    pub(super) traces: Vec<ActionTrace>,
    /// The transaction's action about to run had its native data checked off the apply thread
    /// ([`crate::native::data_is_valid`]); never true for inline actions.
    pub(super) validated: bool,
}

/// Collects what a running contract asks of the chain.
struct ActionHost {
    receiver: Name,
    notified: Vec<Name>,
    inline: Vec<Action>,
    max_depth: usize,
}

impl Host for ActionHost {
    fn require_recipient(&mut self, _: &Overlay<'_, '_>, recipient: Name) -> Result<(), String> {
        if !self.notified.contains(&recipient) {
            if self.notified.len() >= MAX_NOTIFIED {
                return Err(format!("an action may notify at most {MAX_NOTIFIED} accounts"));
            }
            self.notified.push(recipient);
        }
        Ok(())
    }

    fn send_inline(&mut self, state: &Overlay<'_, '_>, action: Action) -> Result<(), String> {
        let exists = crate::account::account(state, action.account).map_err(|e| e.to_string())?;
        if exists.is_none() {
            return Err(format!("inline action's code account {} does not exist", action.account));
        }
        // As Antelope: the sending contract's `eosio.code` permission must satisfy every
        // authorization the inline action declares.
        let none = BTreeSet::new();
        let mut checker = Checker::new(&none, self.max_depth);
        checker.provide_level(PermissionLevel { actor: self.receiver, permission: EOSIO_CODE });
        for l in &action.authorization {
            checker.require(&Permissions(state), *l).map_err(|_| {
                format!(
                    "inline action {}::{} declares {}@{}, which {}@eosio.code does not satisfy; \
                     add {}@eosio.code to that permission",
                    action.account,
                    action.name,
                    l.actor,
                    l.permission,
                    self.receiver,
                    self.receiver
                )
            })?;
        }
        self.inline.push(action);
        Ok(())
    }
}

fn vm_error(e: VmError) -> TxError {
    match e {
        VmError::Store(s) => TxError::Store(s),
        e => TxError::Contract { nodeos: e.nodeos(), message: e.to_string() },
    }
}

impl Execution<'_> {
    /// Runs `act` (a transaction's action when `creator` is 0, else an inline action sent by
    /// the action with ordinal `creator`), its notifications and its inline actions.
    pub(super) fn run(
        &mut self,
        o: &mut Overlay<'_, '_>,
        act: &Action,
        creator: u32,
        sender: Name,
        depth: u32,
    ) -> Result<(), TxError> {
        if depth > MAX_INLINE_DEPTH {
            return Err(TxError::Contract {
                // Antelope: transaction_exception, "max inline action depth per transaction reached".
                nodeos: (3_040_000, "transaction_exception", "Transaction exception"),
                message: format!("inline actions nest deeper than {MAX_INLINE_DEPTH}"),
            });
        }
        let mut host = ActionHost {
            receiver: act.account,
            notified: vec![act.account],
            inline: Vec::new(),
            max_depth: self.limits.max_authority_depth,
        };
        let mut first_ordinal = 0;
        let mut inline: Vec<(Action, Name, u32)> = Vec::new();
        // The action's digest is the same in every receiver's receipt: hashed once.
        let act_digest = Checksum256::hash_packed(act);
        let mut i = 0;
        while i < host.notified.len() {
            if self.traces.len() >= MAX_ACTIONS {
                return Err(TxError::Contract {
                    nodeos: (3_050_000, "action_validate_exception", "Action validate exception"),
                    message: format!("a transaction may run at most {MAX_ACTIONS} actions"),
                });
            }
            let receiver = host.notified[i];
            host.receiver = receiver;
            let validated = std::mem::take(&mut self.validated) && depth == 0 && i == 0;
            let console = self.run_one(o, &mut host, receiver, act, sender, validated)?;
            self.sequence += 1;
            let ordinal = u32::try_from(self.traces.len() + 1).unwrap_or(u32::MAX);
            if i == 0 {
                first_ordinal = ordinal;
            }
            let s = self.sequence;
            self.traces.push(ActionTrace {
                action_ordinal: ordinal,
                creator_action_ordinal: if i == 0 { creator } else { first_ordinal },
                closest_unnotified_ancestor_action_ordinal: if i == 0 {
                    creator
                } else {
                    first_ordinal
                },
                receiver,
                act: act.clone(),
                receipt: ActionReceipt {
                    receiver,
                    act_digest,
                    global_sequence: s,
                    recv_sequence: s,
                    auth_sequence: act.authorization.iter().map(|l| (l.actor, s)).collect(),
                    code_sequence: VarUint32(0),
                    abi_sequence: VarUint32(0),
                },
                console,
            });
            inline.extend(host.inline.drain(..).map(|a| (a, receiver, ordinal)));
            i += 1;
        }
        for (a, from, ordinal) in inline {
            self.run(o, &a, ordinal, from, depth + 1)?;
        }
        Ok(())
    }

    /// Runs `act` on `receiver`'s code: native for `eosio`, the VM for deployed code, nothing
    /// for an account without code. Returns the console output.
    fn run_one(
        &mut self,
        o: &mut Overlay<'_, '_>,
        host: &mut ActionHost,
        receiver: Name,
        act: &Action,
        sender: Name,
        validated: bool,
    ) -> Result<String, TxError> {
        if receiver == EOSIO && act.account == EOSIO {
            let vm = self.vm;
            let check_abi = |b: &[u8]| {
                rempart_core::abi::Abi::from_bin(b).map(|_| ()).map_err(|e| e.to_string())
            };
            let check_code = |b: &[u8]| vm.validate(b).map(|_| ()).map_err(|e| e.to_string());
            let ctx = NativeContext {
                now: self.now,
                authorization: &act.authorization,
                limits: self.limits,
                check_abi: &check_abi,
                check_code: &check_code,
            };
            if validated {
                native::apply_validated(o, &ctx, act.name, &act.data.0)?;
            } else {
                native::apply(o, &ctx, act.name, &act.data.0)?;
            }
        }
        if Vm::code_hash(o, receiver).map_err(vm_error)?.is_none() {
            return Ok(String::new());
        }
        let time = self.now.to_time_point();
        let ctx = ApplyContext {
            receiver,
            action: act,
            block_time: time,
            publication_time: time,
            sender,
        };
        let out = self.vm.apply(o, host, &ctx, &mut self.fuel).map_err(vm_error)?;
        Ok(out.console)
    }
}
